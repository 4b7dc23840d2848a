"""User text made literal where it would be read as Markdown: the pages (through studio.text.plain) and the model card.

Class, file, dataset and model names and error messages come from users and the files they bring.
Unescaped, `![x](http://host/)` in a class name makes every viewer's browser fetch that address, and
links, bold, colours, icons and LaTeX render. (Charts escape for plotly's HTML: plots.shown.)
"""

from __future__ import annotations

import re
import unicodedata


def markdown_literal(text: object) -> str:
    """`text` made literal inside Markdown (st.markdown, st.error, st.caption..., a model card's table).

    Every ASCII punctuation mark is backslash-escaped (CommonMark reads each as itself; GitHub's tables
    read `\\|` as a "|" in a cell), and line breaks and leading spaces go, so the text cannot open a block
    (heading, list, code) either. Text with right-to-left letters (Arabic, Hebrew) is wrapped in Unicode's
    invisible isolation marks (FSI...PDI), so that it does not reorder what is written beside it
    ("true: קטן 3%" read as "3% קטן"). A bare URL stays as it is written: GitHub-flavoured Markdown
    makes it a link to exactly that.
    """
    text = re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", " ".join(str(text).splitlines()).strip())
    return f"\u2068{text}\u2069" if any(unicodedata.bidirectional(c) in ("R", "AL") for c in text) else text
