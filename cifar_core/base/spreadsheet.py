"""CSV that a spreadsheet cannot run: text cells and headers that begin with '=', '+', '-', '@', a tab or a
carriage return are formulas to Excel, LibreOffice and Sheets, so they are written with a leading quote
(OWASP's rule for CSV injection). Numbers stay numbers: only text is escaped."""

from __future__ import annotations

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_text(value):
    """`value` with a leading quote if it is text a spreadsheet would read as a formula; anything else as it is."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` whose text cells, column names and index labels are safe_text."""
    out = frame.copy()
    for column in out.columns:
        # Every column that may hold text (object, string, categorical); numbers and booleans are left as they are.
        if not pd.api.types.is_numeric_dtype(out[column]) and not pd.api.types.is_datetime64_any_dtype(out[column]):
            out[column] = out[column].map(safe_text)
    out.columns = [safe_text(c) for c in out.columns]
    out.index = out.index.map(safe_text)
    if out.index.name is not None:
        out.index.name = safe_text(out.index.name)
    return out


def to_csv(frame: pd.DataFrame, **kwargs) -> bytes:
    """`frame` as UTF-8 CSV bytes that a spreadsheet opens as data (kwargs go to DataFrame.to_csv).

    Lines end in CRLF (RFC 4180): then a cell holding a lone carriage return is quoted too. With pandas' "\n",
    "x\r=HYPERLINK(…)" would be written bare, and a spreadsheet would start a row at the "=", a formula."""
    label = kwargs.pop("index_label", None)
    kwargs.setdefault("lineterminator", "\r\n")
    return safe_frame(frame).to_csv(index_label=safe_text(label) if label is not None else None, **kwargs).encode("utf-8")
