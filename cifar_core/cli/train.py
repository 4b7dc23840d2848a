"""`train`, `runs` and `stop`: start or resume a training run, list the runs, ask one to stop.

`train` ends with one JSON line (the run's summary, or its error); a setting it refuses exits 2 before
any run is registered, one line per bad flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
from typing import Any

from cifar_core.cli.common import EXIT_USAGE, add_command, flag, print_json, run_store, stderr, tqdm_progress
from cifar_core.config import ConfigError, TrainConfig, field_kind, parse_config
from cifar_core.training import presets


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, from its description, all parsed as text by `parse_config`
    so that every bad value is reported at once."""
    for f in dataclasses.fields(TrainConfig):
        help_text = f"{f.metadata['help']} (default: {f.default})"
        if field_kind(f) == "bool":
            parser.add_argument(flag(f.name), action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif field_kind(f) == "ints":
            parser.add_argument(flag(f.name), nargs="+", default=None, metavar="N", help=help_text)
        elif field_kind(f) == "words":
            parser.add_argument(flag(f.name), nargs="+", default=None, metavar="NAME", help=help_text + "; comma- or space-separated")
        else:
            choices = f.metadata["choices"]
            metavar = "{" + ",".join(choices) + "}" if choices else f.name.upper()
            parser.add_argument(flag(f.name), default=None, metavar=metavar, help=help_text)


def config_from_args(args: argparse.Namespace, base: dict[str, Any] | None = None) -> TrainConfig:
    """A validated TrainConfig from parsed flags (over `base` values); ConfigError lists every bad value."""
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    return parse_config({name: getattr(args, name, None) for name in names}, base)


def add_train(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "train", "train a run (head on a frozen base, then fine-tuning)")
    p.add_argument("--preset", choices=presets.names(), default=None,
                   help="start from a preset's settings (the Train page's 'Start from'); flags given with it override its values: "
                        + "; ".join(f"{key}: {preset.name}" for key, preset in presets.PRESETS.items()))
    _add_config_flags(p)
    p.add_argument("--resume", metavar="RUN", help="continue a stopped or interrupted run from its last completed epoch")
    p.add_argument("--run-id", help=argparse.SUPPRESS)  # set by the dashboard's launcher
    p.set_defaults(func=cmd_train)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


def _resumed_config(args: argparse.Namespace, store) -> tuple[TrainConfig, str]:
    """The settings and id of the run `--resume` names, which must be resumable; RunError in words when not."""
    from cifar_core.runs.record import RunError

    given = [flag(f.name) for f in dataclasses.fields(TrainConfig) if getattr(args, f.name, None) is not None]
    given += ["--preset"] if args.preset else []
    if given:  # a resumed run keeps the settings it recorded, or its record would describe another training
        raise RunError(f"--resume continues run {args.resume} with its own settings; {', '.join(given)} cannot change them. "
                       "To train with other settings, start a new run (the Runs page's 'New run from these settings').")
    run = store.resolve(args.resume)
    config = config_from_args(args, base=run.usable_config())
    queued_for_us = run.status == "queued" and args.run_id == run.id  # the dashboard's Resume
    if run.unknown and not queued_for_us:
        raise RunError(f"Run {run.id} is {run.status}, but {run.unknown}. If it no longer trains, "
                       f"`python -m cifar_core runs --repair {run.id}` marks it failed; then resume it.")
    if run.status in ("queued", "running") and not queued_for_us:
        raise RunError(f"Run {run.id} is still {run.status}; it cannot be resumed twice.")
    if config.strategy == "multiworker":
        # Non-chief workers keep no backups to resume from.
        raise RunError(f"Run {run.id} trained on several workers; it cannot be resumed. Start a new run.")
    store.clear_stop(run.id)
    return config, run.id


def _run_config(args: argparse.Namespace, store) -> tuple[TrainConfig, str | None]:
    """The settings to train with and the id of the run they belong to (None: a new run, registered by training);
    ConfigError or RunError, before any data is loaded, when they cannot be trained."""
    from cifar_core.training.data_check import check_training_data

    if args.resume:
        config, run_id = _resumed_config(args, store)
    elif args.run_id:
        # Launched by the dashboard: the run row already holds the config from its form.
        run = store.get(args.run_id)
        config, run_id = config_from_args(args, base=run.usable_config()), run.id
    else:
        config = config_from_args(args, base=presets.preset_settings(args.preset) if args.preset else None)
        run_id = None
        config = check_training_data(config)  # an empty class, a link loop, an unknown class: before a run is registered
    if config.strategy == "multiworker":
        from cifar_core.training.distribute import DistributeError, worker_task

        try:
            worker_task()
        except DistributeError as err:
            raise ConfigError({"strategy": str(err)}) from None
    store.check_writable()  # full or read-only artifacts: say so before loading any data
    return config, run_id


def cmd_train(args: argparse.Namespace) -> int:
    from cifar_core.runs.record import RunBusyError, RunError
    from cifar_core.training.trainer import train

    store = run_store(args)
    try:
        config, run_id = _run_config(args, store)
    except ConfigError as err:
        for name, message in err.errors.items():
            stderr(f"error: {flag(name)}: {message}")
        return EXIT_USAGE
    except RunError as err:
        stderr(f"error: {err}")
        return EXIT_USAGE

    # SIGTERM (e.g. `kill`) becomes a clean stop: the run ends 'stopped' with its model saved.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    started: list = []  # the run, once registered: named in the JSON line even if the index fails later
    try:
        summary = train(config, store=store, run_id=run_id, resume=bool(args.resume), progress=tqdm_progress(), echo=stderr,
                        registered=started.append)
    except RunBusyError as err:  # another training won the race; nothing was started or written
        stderr(f"error: {err}")
        return EXIT_USAGE
    except (Exception, KeyboardInterrupt) as err:
        _report_failure(err, store, run_id or (started[0].id if started else None), started[0].dir if started else None)
        return 1
    print_json(summary)
    return 0 if summary["status"] in ("completed", "stopped") else 1


def _report_failure(err: BaseException, store, failed_id: str | None, started_dir) -> None:
    """Say why training ended early (a traceback only for an unexpected error) and print its JSON line."""
    from cifar_core.base.errors import disk_full, error_text
    from cifar_core.data.images import DataError
    from cifar_core.model.vgg import WeightsError
    from cifar_core.runs.record import LIVE, RunError

    if not isinstance(err, (DataError, WeightsError, RunError, KeyboardInterrupt)) and not disk_full(err, store.root):
        import traceback

        traceback.print_exc()
    try:
        failed = store.get(failed_id) if failed_id else None
    except RunError:  # the index cannot be read now; the error below still says what happened
        failed = None
    run_dir = failed.dir if failed else started_dir
    special = isinstance(err, KeyboardInterrupt) or disk_full(err, store.root)
    message = error_text(err, failed_id, store.root) if special or not str(err) else str(err)
    stderr(f"error: {message}")
    # The row may still say 'running' when a full disk kept the trainer from updating it.
    ended = "stopped" if isinstance(err, KeyboardInterrupt) else "failed"
    status = failed.status if failed and failed.status not in LIVE else ended
    print_json({"run_id": failed_id, "run_dir": str(run_dir) if run_dir else None,
                "status": status, "error": message, "val_accuracy": None, "test_accuracy": None})


def add_runs(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "runs", "list runs with status and metrics")
    p.add_argument("--json", action="store_true", help="one JSON object per run")
    p.add_argument("--repair", nargs="*", default=None, metavar="RUN_ID",
                   help="mark failed the live runs whose process cannot be checked (another host's, or one without a "
                        "recorded start time): all of them, or the ones named")
    p.set_defaults(func=cmd_runs)


def cmd_runs(args: argparse.Namespace) -> int:
    store = run_store(args)
    if args.repair is not None:
        marked = store.repair(args.repair or None)
        for run_id in marked:
            print(f"marked failed: {run_id} (its process could not be checked)")
        if not marked:
            print("nothing to repair: no live run has a process that cannot be checked")
        return 0
    rows = [_run_row(r) for r in store.list()]
    if args.json:
        for row in rows:
            print_json(row)
        return 0
    if not rows:
        print("no runs yet")
    for row in rows:
        print(_run_line(row))
    return 0


def _run_row(r) -> dict:
    """A run's row in `runs`: what trained its model (a "Your images" run's chosen start: weights, epochs; not the
    preset's values), its accuracies with the test accuracy's 95% interval, and its problems."""
    from cifar_core.base.intervals import accuracy_interval
    from cifar_core.runs.outcome import ran_config, test_image_count, verdict
    from cifar_core.training import start_choice

    ran = ran_config(r.config, r.summary)
    return {
        "run_id": r.id, "status": r.status, "arch": ran.get("arch"), "weights": ran.get("weights"),
        "epochs": f"{ran.get('epochs_head', '?')}+{ran.get('epochs_finetune', '?')}",
        "val_accuracy": r.summary.get("val_accuracy") or r.summary.get("best_val_accuracy"),
        "test_accuracy": r.summary.get("test_accuracy"), "error": r.error or r.health(),
        "test_accuracy_ci95": accuracy_interval(r.summary.get("test_accuracy"), test_image_count(r.dir, r.summary) if r.dir else None),
        "broken": r.health(),  # why the run's files or row are unusable; None when fine
        "did_not_learn": verdict(r),  # why a finished run is at chance level; None when it learned
        "unknown": r.unknown,  # why a live run's process cannot be checked; None when it can
        "start_choice": start_choice.describe(r.summary["start_choice"]) if r.summary.get("start_choice") else None,
    }


def _run_line(row: dict) -> str:
    """A run's line in the text listing: id, status, architecture, weights, accuracies, then its problem and start."""
    acc = lambda v: f"{v:.4f}" if isinstance(v, (int, float)) else "-"  # noqa: E731
    status = "broken" if row["broken"] else "no-learn" if row["did_not_learn"] else "unknown" if row["unknown"] else row["status"]
    ci = row["test_accuracy_ci95"]
    line = (f"{row['run_id']}  {status:<9} {row['arch']!s:<9} weights={row['weights']!s:<9} epochs={row['epochs']} "
            f"val={acc(row['val_accuracy'])} test={acc(row['test_accuracy'])}" + (f" (95% {ci[0]:.4f}-{ci[1]:.4f})" if ci else ""))
    problem = row["broken"] or row["did_not_learn"] or (row["unknown"] and f"{row['unknown']}; `runs --repair` marks it failed") or row["error"]
    return line + (f"  ({problem})" if problem else "") + (f"  [{row['start_choice']}]" if row["start_choice"] else "")


def add_stop(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "stop", "ask a running training to stop after its current batch")
    p.add_argument("run", metavar="RUN_ID")
    p.set_defaults(func=cmd_stop)


def cmd_stop(args: argparse.Namespace) -> int:
    store = run_store(args)
    run = store.resolve(args.run)
    if run.unknown:
        stderr(f"error: run {run.id} is {run.status}, but {run.unknown}; a stop request may never be read. "
               f"If it no longer trains, `python -m cifar_core runs --repair {run.id}` marks it failed.")
        return 1
    store.request_stop(run.id)
    print(f"stop requested for {run.id}")
    return 0
