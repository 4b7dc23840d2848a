"""The one base of the errors the studio reports to a user in words.

Each module raises its own kind (RunError, DataError, ModelLoadError, ...); all
derive from StudioError, whose message is the whole report (no traceback, no
type name), so the CLI and the pages catch one type.
"""

from __future__ import annotations


class StudioError(Exception):
    """An error worded for the user. `exit_code`: what the CLI exits with (2: the command or its arguments
    cannot be used as given; 1: the work itself failed)."""

    exit_code = 1
