"""The CSV files the pages offer for download, as bytes: every one goes through base.spreadsheet, so that a
class name such as `=HYPERLINK(...)` is data in a spreadsheet, never a formula. (Files the studio reads back,
history.csv and a Kaggle trainLabels.csv, are written and read as they are: they are no downloads.)"""

from __future__ import annotations

import pandas as pd

from cifar_core.base import spreadsheet
from cifar_core.predict.evaluate import Interpretation


def predictions_csv(interp: Interpretation) -> bytes:
    """Error analysis' "Predictions (CSV)": one row per test image, with each class's probability (p_<class>)."""
    return spreadsheet.to_csv(interp.table(), index_label="image")


def candidates_csv(issues: pd.DataFrame) -> bytes:
    """Error analysis' "Candidates (CSV)": cleanlab's label-issue candidates (given and suggested class)."""
    return spreadsheet.to_csv(issues)
