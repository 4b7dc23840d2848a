"""`python -m cifar_core`: train, evaluate, calibrate, predict, similar, explain (gradcam), inspect, export, runs, stop, bench, publish, data.

Machine-readable contract: `train` and `evaluate` end with one JSON line;
`predict` and `similar` print one JSON line per file and exit 1 if any file failed; invalid
arguments exit 2 with a message naming each bad value.

Each command's parser sits next to its handler in its group's module (train, evaluate, predict, ship, data,
bench); this module assembles them, in the order `--help` lists them, and turns the engine's errors into
messages and exit statuses. Each command only parses, calls the engine and prints.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from cifar_core.cli import bench, data, evaluate, predict, ship, train
from cifar_core.cli.common import flag, stderr
from cifar_core.config import ConfigError

COMMANDS = (train.add_train, evaluate.add_evaluate, evaluate.add_calibrate, predict.add_predict, predict.add_explain,
            predict.add_similar, train.add_runs, train.add_stop, bench.add_bench, evaluate.add_inspect, ship.add_export,
            ship.add_publish, data.add_data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cifar_core", description="VGG16 transfer learning on CIFAR-10.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI; `python -m cifar_core` (__main__.py) first keeps TensorFlow's start-up lines off stderr."""
    # A log line that cannot be written (a full disk) must not print a traceback; the error is reported anyway.
    logging.raiseExceptions = False
    args = build_parser().parse_args(argv)
    from cifar_core.base.errors import StudioError, readable

    try:
        return args.func(args)
    except ConfigError as err:  # e.g. evaluate --data-dir naming a missing folder: one line per setting
        for name, message in err.errors.items():
            stderr(f"error: {flag(name)}: {message}")
        return err.exit_code
    except StudioError as err:  # bad runs, data, models, images, explanations: worded for the user already
        stderr(f"error: {readable(err)}")  # cut: a message may quote a hostile file or name
        return err.exit_code
    except OSError as err:  # e.g. a full disk or a read-only folder while writing results
        stderr(readable(f"error: {err.strerror or err}" + (f": {err.filename}" if err.filename else "")))
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
