"""How the pages write what they show: user text made literal, a model's caption, a percent column."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from cifar_core.base.errors import is_text, readable
from cifar_core.base.markup import markdown_literal
from cifar_core.runs.model_choice import ModelChoice

def plain(text: object) -> str:
    """User text made literal in Markdown: every page shows names and messages through it. An error's message
    is cut to a readable length first (it may quote a hostile file or a 100,000-character name), and a name
    that is not UTF-8 is shown with its odd bytes escaped (see `printable`)."""
    return markdown_literal(printable(readable(text) if isinstance(text, BaseException) else str(text)))


def printable(text: str) -> str:
    """`text` that the browser can be sent: a file name that is not UTF-8 (Python reads its odd bytes as
    surrogates, "caf\\udce9") shows them escaped ("caf\\xe9"); Streamlit fails a page on a surrogate."""
    if is_text(text):
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def model_caption(choice: ModelChoice) -> str:
    """Which model, as Markdown for a caption: its label and file (a folder's name is the user's)."""
    return plain(f"Model: {choice.label} ({Path(choice.model_path).parent.name}/{Path(choice.model_path).name})")


def percent_column(label: str, help: str | None = None, *, bar: bool = True) -> dict:
    """A table column of 0-1 scores as percentages with one decimal in every row (Streamlit's plain
    "percent" drops trailing zeros: 89% beside 64.76%; the step's 3 decimals make it 1 as a percentage),
    with a bar, or without one where values may be missing: a bar column leaves them blank, while a
    number column shows the table's placeholder."""
    column = st.column_config.ProgressColumn if bar else st.column_config.NumberColumn
    return column(label, help=help, format="percent", min_value=0, max_value=1, step=0.001)
