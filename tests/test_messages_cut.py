"""Refusal messages cut to a readable length (issue 25, "Weaknesses"): a message that quotes a hostile file or name
(a 42 KB config dump, a 100,000-character name) stays a message, in the CLI and on the pages, while an ordinary
one, paths and all, is shown whole."""

from __future__ import annotations

from cifar_core.base.errors import MESSAGE_LINES, MESSAGE_WIDTH, readable
from cifar_core.cli import main as cli
from cifar_core.runs.record import RunError
from studio.text import plain


def test_a_dump_in_a_message_is_cut_keeping_what_is_wrong_and_what_to_do():
    dump = repr({f"layer_{i}": {"module": "os", "fn": "system", "args": ["rm -rf /"] * 3} for i in range(500)})
    assert len(dump) > 40_000
    text = readable(f"The model file x.keras is refused: its config holds {dump}. Use another model file.")
    assert len(text) <= MESSAGE_WIDTH and "\n" not in text
    assert text.startswith("The model file x.keras is refused: its config holds {") and text.endswith("Use another model file.")


def test_a_long_word_loses_its_middle_first_and_ordinary_paths_stay_whole():
    name = "\U0001F600" * 100_000
    text = readable(f"Class {name} cannot be used: it is longer than 200 characters. Rename it.")
    assert len(text) < 250 and text.endswith("Rename it.") and " … " in text
    ordinary = ("The calibration file /home/someone/projects/studio/artifacts/runs/20301231-235959-abcd/calibration.json "
                "cannot be used: it is not valid JSON. Fit it again with `python -m cifar_core calibrate --model "
                "/home/someone/projects/studio/artifacts/runs/20301231-235959-abcd`, or delete it.")
    assert readable(ordinary) == ordinary


def test_many_lines_are_cut_to_a_few():
    text = readable("\n".join(f"problem {i}" for i in range(1000)))
    assert text.count("\n") == MESSAGE_LINES and text.endswith("… and 988 more lines")


def test_the_cli_cuts_a_message_quoting_a_long_path(tmp_path, capsys):
    code = cli.main(["runs", "--runs-dir", str(tmp_path / ("x" * 5000))])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert all(len(line) <= MESSAGE_WIDTH + len("error: ") for line in err.splitlines()), err


def test_the_pages_cut_an_error_message():
    shown = plain(RunError("Run x cannot be used: " + "y" * 100_000 + " end."))
    assert len(shown) < 2 * MESSAGE_WIDTH and shown.endswith("end\\.")
    assert plain("z" * 1000) == "z" * 1000  # text that is not an error (a name) is shown as it is
