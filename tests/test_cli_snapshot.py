"""Every CLI command's options and subcommands are those of the snapshot taken before the redesign (issue 23).

The snapshot, tests/snapshots/cli_options.json, was written by this description of `build_parser()`;
a flag, default, choice, help text or command that changes shows up here as a diff. To change the
CLI on purpose, rewrite the snapshot from `describe(build_parser())` and review its diff.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cifar_core.cli.main import build_parser

SNAPSHOT = Path(__file__).parent / "snapshots" / "cli_options.json"


def describe(parser: argparse.ArgumentParser) -> dict:
    """A parser's options, positionals and subcommands (each described the same way), as argparse holds them."""
    out: dict = {"options": [], "positionals": [], "subcommands": {}}
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, p in a.choices.items():
                out["subcommands"][name] = describe(p)
            continue
        if isinstance(a, argparse._HelpAction):
            continue
        entry = {"flags": list(a.option_strings), "dest": a.dest,
                 "default": repr(a.default) if a.default is not argparse.SUPPRESS else "SUPPRESS",
                 "choices": list(a.choices) if a.choices else None, "nargs": a.nargs, "help": a.help}
        (out["options"] if a.option_strings else out["positionals"]).append(entry)
    return out


def test_every_commands_options_match_the_snapshot():
    now = json.dumps(describe(build_parser()), indent=1, sort_keys=True) + "\n"
    assert now == SNAPSHOT.read_text(encoding="utf-8")


def test_help_lists_the_commands_in_the_snapshots_order():
    """The snapshot's comparison ignores the commands' order; `--help` lists them as before the redesign."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert [action.dest for action in sub._choices_actions] == [
        "train", "evaluate", "calibrate", "predict", "explain", "similar", "runs", "stop", "bench", "inspect", "export",
        "publish", "data"]
