"""What every command module shares: the exit status of a usage error, the argparse number types, how a
command is added (with its --runs-dir), JSON and stderr printing, the progress bars, the run store, and
the data of --data-dir that a model needs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Sequence

from cifar_core.config import parse_number
from cifar_core.data import locate

EXIT_USAGE = 2
MODEL_HELP = "run id, run folder, .keras file or model folder; default: the most accurate model"
SKIP_BAD_HELP = "skip unreadable image files (their count is reported) instead of failing"


def flag(name: str) -> str:
    """The command-line flag of a setting's name: data_dir -> --data-dir."""
    return "--" + name.replace("_", "-")


def _checked(kind: type, ok: Callable[[float], bool], wanted: str):
    """An argparse type: a number of `kind` written with ASCII digits (`parse_number`) for which `ok` holds;
    otherwise a message in words saying it must be `wanted`."""
    def parse(text: str) -> float:
        try:
            value = parse_number(text, kind)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {value}")
        return value
    return parse


def whole(low: int, high: int):
    return _checked(int, lambda v: low <= v <= high, f"a whole number from {low} to {high}")



fraction = _checked(float, lambda v: 0 < v < 1, "a number between 0 and 1")


def add_command(sub: argparse._SubParsersAction, name: str, help_text: str, aliases: Sequence[str] = ()) -> argparse.ArgumentParser:
    """A command's parser, with the --runs-dir option every command that reads runs or models has."""
    p = sub.add_parser(name, help=help_text, description=help_text, aliases=list(aliases))
    p.add_argument("--runs-dir", default=None, help="artifacts folder holding runs.db and runs/ (default: artifacts/ or $CIFAR_ARTIFACTS)")
    return p


def print_json(obj: Any) -> None:
    print(json.dumps(obj, default=float), flush=True)


def stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def tqdm_progress():
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def progress(done: int, total: int, what: str) -> None:
        bar = bars.get(what)
        if bar is None or bar.total != total:
            bar = bars[what] = tqdm(total=total, desc=what, unit="img", file=sys.stderr, leave=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            bars.pop(what, None)

    return progress


def run_store(args: argparse.Namespace):
    """The run store of --runs-dir (default: artifacts/ or $CIFAR_ARTIFACTS)."""
    from cifar_core.runs.store import RunStore

    return RunStore(args.runs_dir)


def data_for_model(args: argparse.Namespace, class_names, skip_bad: bool = False):
    """The dataset of --data-dir (or $CIFAR10_DIR), narrowed to a model's classes in the model's order."""
    from cifar_core.predict.model_data import load_model_data

    return load_model_data(locate.data_dir(args.data_dir), class_names, skip_bad=skip_bad, progress=tqdm_progress()).data
