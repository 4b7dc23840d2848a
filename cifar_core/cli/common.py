"""What every command module shares: the exit status of a usage error, the argparse number types, how a
command is added (with its --runs-dir), JSON and stderr printing, the progress bars, the run store, and
the data of --data-dir that a model needs."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable, Sequence

from cifar_core.config import parse_number
from cifar_core.data import locate

EXIT_USAGE = 2
MODEL_HELP = ("run id, run folder, .keras file or model folder; default: the most accurate usable model of the dataset in "
              "--data-dir (else $CIFAR10_DIR, else the shipped model's dataset)")
DATA_HELP = ("data folder or imported dataset's name (default: $CIFAR10_DIR; with --model, the model's own data folder "
             "when it is on this machine)")
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


def model_and_data(args: argparse.Namespace, store=None):
    """The model of --model and the data folder to use with it, (ModelChoice, folder or None for Keras' download).

    The folder the user gives always wins: --data-dir, which must exist. Without it, with --model, the model's
    own stored data folder when it is on this machine (a relative one resolved against the checkout), else
    $CIFAR10_DIR; without --model, $CIFAR10_DIR, else the shipped model's folder. Without --model the model is
    the default for that dataset (its fingerprint, or its class list): RunError naming the dataset when none fits.
    """
    from cifar_core.config import ConfigError
    from cifar_core.runs import model_choice
    from cifar_core.data.identity import stored_folder

    store = store or run_store(args)
    given = getattr(args, "data_dir", None)
    folder = locate.resolve_data_dir(given) if given else None
    if given and not os.path.isdir(folder):
        raise ConfigError({"data_dir": f"data folder {given!r} does not exist, and no imported dataset has that name "
                                       "(`python -m cifar_core data list`)"})
    if args.model is not None:
        choice = model_choice.resolve_model(store, args.model)
        return choice, folder or stored_folder(choice.config.get("data_dir")) or locate.data_dir(None)
    folder = folder or model_choice.default_data_dir()
    dataset = model_choice.dataset_of(folder)
    if folder and not dataset.class_names:  # e.g. $CIFAR10_DIR naming a missing folder: the loader's reason, in words
        from cifar_core.data.loader import describe_source

        raise ConfigError({"data_dir": describe_source(folder).get("message") or f"{folder} holds no dataset"})
    choices = model_choice.model_choices(store, dataset)
    choice = model_choice.default_choice(choices)
    if choice is None:
        from cifar_core.runs.record import RunError

        raise RunError(model_choice.no_model_message(dataset, given) if choices else
                       "No trained model yet: train one (python -m cifar_core train ...) or pass --model.")
    return choice, folder


def dataset_json(folder: str | None) -> dict:
    """Which dataset a command used, for its JSON: its name, folder and fingerprint."""
    from cifar_core.data import identity

    return {"name": identity.dataset_name(folder), "path": folder, "fingerprint": identity.fingerprint(folder)}


def load_for_model(folder: str | None, class_names, skip_bad: bool = False):
    """The dataset in `folder`, narrowed to a model's classes in the model's order."""
    from cifar_core.predict.model_data import load_model_data

    return load_model_data(folder, class_names, skip_bad=skip_bad, progress=tqdm_progress()).data
