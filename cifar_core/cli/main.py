"""`python -m cifar_core`: train, evaluate, calibrate, predict, similar, explain (gradcam), inspect, export, runs, stop, bench, publish, data.

Machine-readable contract: `train` and `evaluate` end with one JSON line;
`predict` and `similar` print one JSON line per file and exit 1 if any file failed; invalid
arguments exit 2 with a message naming each bad value.

Why one module of ~700 lines: one `cmd_*` function per command plus the one parser
that describes them all, so `--help` and the commands stay side by side; each
command only parses, calls the engine and prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from cifar_core.base import paths
from cifar_core.data import locate
from cifar_core.training import presets
from cifar_core.config import ConfigError, TrainConfig, field_kind, parse_config, parse_number

EXIT_USAGE = 2


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, from its description, all parsed as text by `parse_config`
    so that every bad value is reported at once."""
    for f in dataclasses.fields(TrainConfig):
        help_text = f"{f.metadata['help']} (default: {f.default})"
        if field_kind(f) == "bool":
            parser.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif field_kind(f) == "ints":
            parser.add_argument(_flag(f.name), nargs="+", default=None, metavar="N", help=help_text)
        elif field_kind(f) == "words":
            parser.add_argument(_flag(f.name), nargs="+", default=None, metavar="NAME", help=help_text + "; comma- or space-separated")
        else:
            choices = f.metadata["choices"]
            metavar = "{" + ",".join(choices) + "}" if choices else f.name.upper()
            parser.add_argument(_flag(f.name), default=None, metavar=metavar, help=help_text)


def config_from_args(args: argparse.Namespace, base: dict[str, Any] | None = None) -> TrainConfig:
    """A validated TrainConfig from parsed flags (over `base` values); ConfigError lists every bad value."""
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    return parse_config({name: getattr(args, name, None) for name in names}, base)


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


def _whole(low: int, high: int):
    return _checked(int, lambda v: low <= v <= high, f"a whole number from {low} to {high}")


def _number(low: float, high: float):
    return _checked(float, lambda v: low < v <= high, f"a number above {low:g} and at most {high:g}")


_fraction = _checked(float, lambda v: 0 < v < 1, "a number between 0 and 1")


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, default=float), flush=True)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _tqdm_progress():
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


def _store(args: argparse.Namespace):
    from cifar_core.runs.store import RunStore

    return RunStore(args.runs_dir)


# ---------------------------------------------------------------- commands


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


def cmd_train(args: argparse.Namespace) -> int:
    from cifar_core.data.loader import DataError, match_classes, missing_classes
    from cifar_core.data.health import blocking_message
    from cifar_core.model.vgg import WeightsError
    from cifar_core.base.errors import disk_full, error_text
    from cifar_core.runs.record import LIVE, RunBusyError, RunError
    from cifar_core.training.trainer import train

    store = _store(args)
    try:
        if args.resume:
            given = [_flag(f.name) for f in dataclasses.fields(TrainConfig) if getattr(args, f.name, None) is not None]
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
            run_id = run.id
        elif args.run_id:  # launched by the dashboard: the run row already holds the config from its form
            # Launched by the dashboard: the run row already holds the config from its form.
            run = store.get(args.run_id)
            config = config_from_args(args, base=run.usable_config())
            run_id = run.id
        else:
            config = config_from_args(args, base=presets.preset_settings(args.preset) if args.preset else None)
            run_id = None
            if problem := blocking_message(config.resolved_data_dir()):  # an empty class, a link loop, ...
                raise ConfigError({"data_dir": problem})
            if problem := missing_classes(config.resolved_data_dir(), config.classes):
                raise ConfigError({"classes": problem})  # before a run is registered
            # Stored as the data spells them ("Cat" -> "cat"); validated again, as "cat Cat" is then one class twice.
            config = dataclasses.replace(config, classes=match_classes(config.resolved_data_dir(), config.classes)).validate()
        if config.strategy == "multiworker":
            from cifar_core.training.distribute import DistributeError, worker_task

            try:
                worker_task()
            except DistributeError as err:
                raise ConfigError({"strategy": str(err)}) from None
        store.check_writable()  # full or read-only artifacts: say so before loading any data
    except ConfigError as err:
        for name, message in err.errors.items():
            _stderr(f"error: {_flag(name)}: {message}")
        return EXIT_USAGE
    except RunError as err:
        _stderr(f"error: {err}")
        return EXIT_USAGE

    # SIGTERM (e.g. `kill`) becomes a clean stop: the run ends 'stopped' with its model saved.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    started: list = []  # the run, once registered: named in the JSON line even if the index fails later
    try:
        summary = train(config, store=store, run_id=run_id, resume=bool(args.resume), progress=_tqdm_progress(), echo=_stderr,
                        registered=started.append)
    except RunBusyError as err:  # another training won the race; nothing was started or written
        _stderr(f"error: {err}")
        return EXIT_USAGE
    except (Exception, KeyboardInterrupt) as err:
        if not isinstance(err, (DataError, WeightsError, RunError, KeyboardInterrupt)) and not disk_full(err, store.root):
            import traceback

            traceback.print_exc()
        failed_id = run_id or (started[0].id if started else None)
        try:
            failed = store.get(failed_id) if failed_id else None
        except RunError:  # the index cannot be read now; the error below still says what happened
            failed = None
        run_dir = failed.dir if failed else (started[0].dir if started else None)
        special = isinstance(err, KeyboardInterrupt) or disk_full(err, store.root)
        message = error_text(err, failed_id, store.root) if special or not str(err) else str(err)
        _stderr(f"error: {message}")
        # The row may still say 'running' when a full disk kept the trainer from updating it.
        ended = "stopped" if isinstance(err, KeyboardInterrupt) else "failed"
        status = failed.status if failed and failed.status not in LIVE else ended
        _print_json({"run_id": failed_id, "run_dir": str(run_dir) if run_dir else None,
                     "status": status, "error": message, "val_accuracy": None, "test_accuracy": None})
        return 1
    _print_json(summary)
    return 0 if summary["status"] in ("completed", "stopped") else 1


def cmd_evaluate(args: argparse.Namespace) -> int:
    from cifar_core.predict import calibration
    from cifar_core.data import loader as data_lib
    from cifar_core.data.classes import model_class_names
    from cifar_core.predict.evaluate import evaluate_model
    from cifar_core.model.vgg import load_model
    from cifar_core.runs.model_choice import resolve_model
    from cifar_core.runs.record import RunError

    store = _store(args)
    choice = resolve_model(store, args.model)
    if choice.run_id:
        store.get(choice.run_id).usable_config()  # a run without its folder or settings is refused, never defaulted
    stored = calibration.read(choice.folder)  # a damaged calibration.json is reported before any work
    saved = TrainConfig.of_saved_model(choice.config) if choice.config else None
    if args.split == "val" and saved is None:
        raise RunError(f"{choice.model_path} has no config.json beside it, so its validation split is unknown; use --split test.")
    # weights "none": the saved model holds its weights, so the base weights file the
    # run started from may be gone without stopping an evaluation.
    config = dataclasses.replace(saved or TrainConfig(weights="none"), data_dir=args.data_dir or (saved.data_dir if saved else None))
    if args.data_dir:
        config.validate()
    tta = bool(config.tta) if args.tta is None else args.tta  # the model's own TTA unless told otherwise
    model = load_model(choice.model_path)
    class_names = model_class_names(choice.model_path, int(model.output_shape[-1]))
    data = data_lib.load_dataset(config.resolved_data_dir(), skip_bad=config.skip_bad or args.skip_bad, progress=_tqdm_progress())
    data = data_lib.select_classes(data, class_names)  # the model's classes, labelled in its output order
    splits = data_lib.make_splits(data, val_fraction=config.val_fraction, seed=config.seed, limit=config.limit)
    x, y = (splits.x_test, splits.y_test) if args.split == "test" else (splits.x_val, splits.y_val)
    interp = evaluate_model(model, x, y, input_size=int(model.input_shape[1]), tta=tta, progress=_tqdm_progress(),
                            class_names=class_names)
    if choice.run_id:  # results go to run folders only: the shipped model and arbitrary files are never written to
        interp.save(choice.folder, args.split)
    # A temperature fitted with the other TTA setting does not fit these probabilities: reported uncalibrated.
    t = stored.temperature if stored is not None and stored.tta == tta else 1.0
    scored = calibration.summary(interp.probs, interp.y, t)
    fitted_on = f"{stored.images} validation images, tta={stored.tta}" if stored is not None else None
    _stderr(f"calibration ({args.split}): ECE {scored['ece_uncalibrated']:.4f} uncalibrated, {scored['ece']:.4f} with temperature "
            f"{t:.4f}" + (f" (fitted on {fitted_on})" if t != 1.0 else " (no temperature stored for this model and TTA setting)")
            + f"; NLL {scored['nll']:.4f}, Brier {scored['brier']:.4f}")
    _print_json({"model": str(choice.model_path), "run_id": choice.run_id, "split": args.split, "tta": tta, **interp.to_dict(),
                 **scored, "temperature_fitted_on": fitted_on})
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from cifar_core.predict import calibration
    from cifar_core.runs.model_choice import resolve_model
    from cifar_core.runs.record import RunError

    store = _store(args)
    choice = resolve_model(store, args.model)
    if choice.run_id:
        store.get(choice.run_id).usable_config()  # a run without its folder or settings is refused, never defaulted
    if not choice.config:
        raise RunError(f"{choice.model_path} has no config.json beside it, so its validation split is unknown "
                       "and there are no held-out images to fit a temperature on.")
    config = TrainConfig.of_saved_model(choice.config)
    if args.data_dir:
        config = dataclasses.replace(config, data_dir=args.data_dir)
        config.validate()
    fitted = calibration.fit_for_model(choice.model_path, config, progress=_tqdm_progress())
    _print_json({"model": str(choice.model_path), "run_id": choice.run_id,
                 "file": str(choice.model_path.parent / calibration.CALIBRATION_FILE), **fitted.to_dict()})
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from cifar_core.predict.inference import Classifier
    from cifar_core.runs.model_choice import resolve_model

    folder = Path(args.gradcam) if args.gradcam else None
    if folder:  # made first, so that a bad folder is reported before any work is done
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            reason = "it exists and is not a folder" if folder.exists() else err.strerror
            _stderr(f"error: --gradcam: cannot write overlays to {folder}: {reason}")
            return EXIT_USAGE
    path = resolve_model(_store(args), args.model).model_path
    classifier = Classifier(path)
    if args.top > len(classifier.class_names):
        _stderr(f"error: --top: must be a whole number from 1 to {len(classifier.class_names)} (the model's classes), got {args.top}")
        return EXIT_USAGE
    results = classifier.classify_files(args.files, top_k=args.top)
    method = args.explain_method or ("gradcam" if args.layer else "occlusion")
    overlays = _write_overlays(classifier, results, folder, method, args.layer) if folder else {}
    for r in results:
        _print_json({**r.to_json(), "model": str(path), "temperature": classifier.temperature, **({"gradcam": overlays[r.file]} if r.file in overlays else {})})
    return 1 if any(r.error for r in results) else 0


def _write_overlays(classifier, results, folder: Path, method: str, layer: str | None) -> dict[str, str]:
    """Explanation overlays (`method`: occlusion or Grad-CAM) of each classified file's top class, as PNGs in
    `folder`; {file: png path}."""
    import numpy as np
    from PIL import Image

    from cifar_core.explain import check as explain
    from cifar_core.views.previews import upscale

    good = [r for r in results if r.error is None]
    if not good:
        return {}
    overlays = explain.make(classifier, method, layer).overlays(np.stack([r.image for r in good]))
    written = {}
    for i, (r, image) in enumerate(zip(good, overlays)):
        # The index keeps same-named files apart; file_part makes a class name such as "a/b" one valid name part.
        out = folder / f"{i:03d}_{paths.file_part(Path(r.file).stem)}_{paths.file_part(r.top[0]['label'])}.png"
        Image.fromarray(upscale(image, 4)).save(out)
        written[r.file] = str(out)
    return written


def cmd_explain(args: argparse.Namespace) -> int:
    """The deletion check of each explanation method and layer asked for, one JSON line each; the last
    line is the default, the first in `explain.candidates` order whose maps pass."""
    from cifar_core.explain import check as explain
    from cifar_core.explain.faithfulness import check_images, deletion_check
    from cifar_core.predict.inference import Classifier
    from cifar_core.runs.model_choice import resolve_model

    classifier = Classifier(resolve_model(_store(args), args.model).model_path)
    methods = tuple(explain.METHODS if args.method == "all" else [args.method])
    if args.layers and "gradcam" not in methods:
        _stderr("error: --layers: layers are Grad-CAM's; use --method gradcam or all")
        return EXIT_USAGE
    pairs = explain.candidates(classifier.model, methods, args.layers)
    explainers = [explain.make(classifier, method, layer) for method, layer in pairs]  # a bad layer fails before any work
    data = _load_for_model(args, classifier.class_names, skip_bad=args.skip_bad)
    images = check_images(data.x_test, args.images, args.seed)
    rows = [{**deletion_check(e, images, classifier.predict_arrays, args.fraction, args.seed), "images": len(images)}
            for e in explainers]
    default = explain.pick_default(rows)
    for row in [r for r in rows if r is not default] + [default]:
        _print_json({**row, "default": row is default})
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    import numpy as np

    from cifar_core.predict import split_predictions
    from cifar_core.data.classes import model_class_names
    from cifar_core.data.loader import load_dataset, select_classes, split_files
    from cifar_core.data.image_limits import ImageError, read_image_file
    from cifar_core.predict.inference import load_image
    from cifar_core.model.vgg import load_model
    from cifar_core.runs.model_choice import resolve_model
    from cifar_core.analysis.similar import SimilarSearch

    choice = resolve_model(_store(args), args.model)
    model = load_model(choice.model_path)  # a bad model path fails here, before the data is loaded
    names = model_class_names(choice.model_path, int(model.output_shape[-1]))
    data_dir = locate.data_dir(args.data_dir) or split_predictions.data_dir_for(choice)
    if not data_dir:  # never Keras' download: the neighbours are files of a data folder
        _stderr("error: --data-dir: no data folder given; pass --data-dir or set CIFAR10_DIR to the CIFAR-10 folder")
        return EXIT_USAGE
    full = load_dataset(data_dir, progress=_tqdm_progress())
    data = select_classes(full, names)
    files = split_files(data_dir, full, "train", names)  # None: the images have no files (python batches)
    images, errors = [], []
    for f in args.files:
        try:
            images.append(load_image(read_image_file(f)))
            errors.append(None)
        except ImageError as err:
            images.append(None)
            errors.append(str(err))
    good = [i for i, e in enumerate(errors) if e is None]
    found = {}
    if good:
        search = SimilarSearch(choice.model_path, data.x_train, model=model, progress=_tqdm_progress())
        idx, sim = search.search(np.stack([images[i] for i in good]), args.k)
        found = dict(zip(good, zip(idx, sim)))
    for i, f in enumerate(args.files):
        if errors[i] is not None:
            _print_json({"file": f, "error": errors[i]})
            continue
        _print_json({"file": f, "model": str(choice.model_path), "neighbours": [
            {"train_index": int(j), "file": files[j] if files else None, "label": names[data.y_train[j]],
             "similarity": round(float(s), 4)} for j, s in zip(*found[i])]})
    return 1 if len(good) < len(args.files) else 0


def cmd_runs(args: argparse.Namespace) -> int:
    from cifar_core.training import start_choice
    from cifar_core.runs.outcome import verdict

    store = _store(args)
    if args.repair is not None:
        marked = store.repair(args.repair or None)
        for run_id in marked:
            print(f"marked failed: {run_id} (its process could not be checked)")
        if not marked:
            print("nothing to repair: no live run has a process that cannot be checked")
        return 0
    runs = store.list()
    rows = [{
        "run_id": r.id, "status": r.status, "arch": r.config.get("arch"), "weights": r.config.get("weights"),
        "val_accuracy": r.summary.get("val_accuracy") or r.summary.get("best_val_accuracy"),
        "test_accuracy": r.summary.get("test_accuracy"), "error": r.error or r.health(),
        "broken": r.health(),  # why the run's files or row are unusable; None when fine
        "did_not_learn": verdict(r),  # why a finished run is at chance level; None when it learned
        "unknown": r.unknown,  # why a live run's process cannot be checked; None when it can
        "start_choice": start_choice.describe(r.summary["start_choice"]) if r.summary.get("start_choice") else None,
    } for r in runs]
    if args.json:
        for row in rows:
            _print_json(row)
        return 0
    if not rows:
        print("no runs yet")
    for row in rows:
        acc = lambda v: f"{v:.4f}" if isinstance(v, (int, float)) else "-"  # noqa: E731
        status = "broken" if row["broken"] else "no-learn" if row["did_not_learn"] else "unknown" if row["unknown"] else row["status"]
        line = f"{row['run_id']}  {status:<9} {row['arch']!s:<9} weights={row['weights']!s:<9} val={acc(row['val_accuracy'])} test={acc(row['test_accuracy'])}"
        problem = row["broken"] or row["did_not_learn"] or (row["unknown"] and f"{row['unknown']}; `runs --repair` marks it failed") or row["error"]
        print(line + (f"  ({problem})" if problem else "") + (f"  [{row['start_choice']}]" if row["start_choice"] else ""))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    store = _store(args)
    run = store.resolve(args.run)
    if run.unknown:
        _stderr(f"error: run {run.id} is {run.status}, but {run.unknown}; a stop request may never be read. "
                f"If it no longer trains, `python -m cifar_core runs --repair {run.id}` marks it failed.")
        return 1
    store.request_stop(run.id)
    print(f"stop requested for {run.id}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    data_dir = locate.data_dir(args.data_dir)
    if args.which == "transfer":
        from cifar_core.bench.transfer import run_transfer

        for row in run_transfer(data_dir, quick=args.quick, echo=_stderr):
            _print_json(row)
        return 0
    if args.which == "yours":
        from cifar_core.bench.yours import run_yours

        if not data_dir:
            raise ConfigError({"data_dir": "bench yours builds its 5-class subset from CIFAR-10: give its folder "
                                           "(--data-dir DIR or $CIFAR10_DIR)"})
        for row in run_yours(data_dir, quick=args.quick, echo=_stderr):
            _print_json(row)
        return 0
    if args.which == "ablation":
        from cifar_core.training.recipe import run_ablation

        for row in run_ablation(data_dir, quick=args.quick, echo=_stderr):
            _print_json(row)
        return 0
    if args.which == "ui":
        from cifar_core.bench.ui import run_ui_bench

        model_dir = Path(args.model) if args.model else paths.default_model_dir()
        _print_json(run_ui_bench(data_dir, model_dir, echo=_stderr, quick_try=args.quick_try))
        return 0
    if args.which == "similar":
        from cifar_core.data.classes import model_class_names
        from cifar_core.model.vgg import load_model
        from cifar_core.runs.model_choice import resolve_model
        from cifar_core.bench.similar import bench_similar

        path = resolve_model(_store(args), args.model).model_path
        data = _load_for_model(args, model_class_names(path, int(load_model(path).output_shape[-1])))
        _print_json(bench_similar(path, data.x_train, data.x_test, data.y_train, data.y_test,
                                  queries=100 if args.quick else 500, progress=_tqdm_progress()))
        return 0
    from cifar_core.bench.speed import run_bench

    _print_json(run_bench(data_dir=data_dir, quick=args.quick, echo=_stderr))
    return 0


def _load_for_model(args: argparse.Namespace, class_names, skip_bad: bool = False):
    """The dataset of --data-dir (or $CIFAR10_DIR), narrowed to a model's classes in the model's order."""
    from cifar_core.data.loader import load_dataset, select_classes

    return select_classes(load_dataset(locate.data_dir(args.data_dir), skip_bad=skip_bad, progress=_tqdm_progress()), class_names)


def cmd_publish(args: argparse.Namespace) -> int:
    from cifar_core.ship.publish import publish_run

    dest = publish_run(_store(args), args.run, Path(args.to) if args.to else None, data_note=args.data_note, machine_note=args.machine_note)
    print(f"published {args.run} to {dest}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    import time

    from cifar_core.data.classes import model_class_names
    from cifar_core.analysis.duplicates import DEFAULT_THRESHOLD
    from cifar_core.analysis.inspection import inspect_model
    from cifar_core.model.vgg import load_model
    from cifar_core.runs.model_choice import resolve_model

    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    path = resolve_model(_store(args), args.model).model_path
    model = load_model(path)  # a bad model path fails here, before the data is loaded
    start = time.perf_counter()
    data = _load_for_model(args, model_class_names(path, int(model.output_shape[-1])), skip_bad=args.skip_bad)
    load_s = time.perf_counter() - start
    result = inspect_model(path, data, model=model, threshold=threshold, progress=_tqdm_progress())
    result["timings"] = {"data_load_s": round(load_s, 3), **result["timings"]}
    _print_json(result)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from cifar_core.ship.export import ExportError, export_model, failure_message
    from cifar_core.predict.inference import Classifier
    from cifar_core.runs.model_choice import resolve_model

    path = resolve_model(_store(args), args.model).model_path
    classifier = Classifier(path)  # a bad model path fails here, before the data is loaded
    data = _load_for_model(args, classifier.class_names, skip_bad=args.skip_bad)
    try:
        report = export_model(path, args.format, data.x_test, data.y_test, x_train=data.x_train, classifier=classifier,
                              out_dir=Path(args.out) if args.out else None, images=args.images)
    except ExportError as err:
        _stderr(f"error: {err}")
        return 1
    _print_json(report)
    if not report["passed"]:
        _stderr(f"error: {failure_message(report)}")
        return 1
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from cifar_core.data import health as dataset_health
    from cifar_core.data import imported as datasets

    if args.action == "import":
        _print_json(datasets.import_dataset(args.source, args.name, test_fraction=args.test_fraction, seed=args.seed,
                                            replace=args.replace, progress=_tqdm_progress()))
        return 0
    if args.action == "list":
        for row in datasets.list_datasets():
            _print_json(row)
        return 0
    report = dataset_health.check_dataset(args.dataset, deep=not args.structure_only, progress=_tqdm_progress())
    _print_json(report)
    if report["blocking"]:
        _stderr(f"error: {dataset_health.blocking_message(args.dataset)}")
        return 1
    return 0


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cifar_core", description="VGG16 transfer learning on CIFAR-10.")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str, aliases: Sequence[str] = ()) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, aliases=list(aliases))
        p.add_argument("--runs-dir", default=None, help="artifacts folder holding runs.db and runs/ (default: artifacts/ or $CIFAR_ARTIFACTS)")
        return p

    p = add("train", "train a run (head on a frozen base, then fine-tuning)")
    p.add_argument("--preset", choices=presets.names(), default=None,
                   help="start from a preset's settings (the Train page's 'Start from'); flags given with it override its values: "
                        + "; ".join(f"{key}: {preset.name}" for key, preset in presets.PRESETS.items()))
    _add_config_flags(p)
    p.add_argument("--resume", metavar="RUN", help="continue a stopped or interrupted run from its last completed epoch")
    p.add_argument("--run-id", help=argparse.SUPPRESS)  # set by the dashboard's launcher
    p.set_defaults(func=cmd_train)

    p = add("evaluate", "evaluate a model on the test split (or a run's validation split)")
    p.add_argument("--model", "--run", dest="model", default=None, metavar="RUN_OR_PATH",
                   help="a run id or run folder, a .keras file, or a folder holding model.keras such as artifacts/default "
                        "(default: the studio's default model, the most accurate one)")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="test-time augmentation (image, mirror, 1-pixel shifts); default: as the model was trained")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable image files (their count is reported) instead of failing")
    p.set_defaults(func=cmd_evaluate)

    p = add("calibrate", "fit a model's temperature on its run's validation split and store it beside the model (calibration.json)")
    p.add_argument("--model", "--run", dest="model", default=None, metavar="RUN_OR_PATH",
                   help="a run id or run folder, a .keras file, or a folder holding model.keras such as artifacts/default "
                        "(default: the studio's default model)")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=cmd_calibrate)

    p = add("predict", "classify image files")
    p.add_argument("--model", default=None, metavar="RUN_OR_PATH", help="run id, run folder, .keras file or model folder; default: the most accurate model")
    p.add_argument("--top", type=_whole(1, 1000), default=3, help="classes to list per file, from 1 to the model's number of classes")
    p.add_argument("--gradcam", default=None, metavar="FOLDER", help="also write an explanation overlay PNG of each top class here")
    p.add_argument("--explain-method", choices=("occlusion", "gradcam"), default=None,
                   help="the overlays' method (default: occlusion, whose maps pass the deletion check on the shipped model; "
                        "gradcam when --layer is given)")
    p.add_argument("--layer", default=None, help="the Grad-CAM layer (default: the deepest at least 8x8)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_predict)

    p = add("explain", "check that each explanation method (occlusion; Grad-CAM per layer) highlights what the prediction "
                       "depends on (blank hottest vs coldest part); the last line is the default method", aliases=["gradcam"])
    p.add_argument("--method", choices=("all", "occlusion", "gradcam"), default="all",
                   help="the methods to check (default: all; occlusion is checked first, then Grad-CAM's layers)")
    p.add_argument("--model", default=None, metavar="RUN_OR_PATH", help="run id, run folder, .keras file or model folder; default: the most accurate model")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--images", type=_whole(1, 10**6), default=500, help="test images to sample")
    p.add_argument("--fraction", type=_fraction, default=0.25, help="share of each image blanked")
    p.add_argument("--layers", nargs="+", default=None, help="Grad-CAM layers to check (default: every rectified conv output of the base)")
    p.add_argument("--seed", type=_whole(0, 2**32 - 1), default=0)
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable image files (their count is reported) instead of failing")
    p.set_defaults(func=cmd_explain)

    p = add("similar", "the training images most like each image file, on features that keep which image it is (one JSON line per file)")
    p.add_argument("--model", default=None, metavar="RUN_OR_PATH", help="run id, run folder, .keras file or model folder; default: the most accurate model")
    p.add_argument("--k", type=_whole(1, 1000), default=8, help="neighbours to list per file")
    p.add_argument("--data-dir", default=None, help="the data folder whose training images are searched (default: $CIFAR10_DIR, else the model's own)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_similar)

    p = add("runs", "list runs with status and metrics")
    p.add_argument("--json", action="store_true", help="one JSON object per run")
    p.add_argument("--repair", nargs="*", default=None, metavar="RUN_ID",
                   help="mark failed the live runs whose process cannot be checked (another host's, or one without a "
                        "recorded start time): all of them, or the ones named")
    p.set_defaults(func=cmd_runs)

    p = add("stop", "ask a running training to stop after its current batch")
    p.add_argument("run", metavar="RUN_ID")
    p.set_defaults(func=cmd_stop)

    p = add("bench", "speed benchmark against the seed's recipe, the recipe's ablation, or the transfer-learning experiment")
    p.add_argument("which", nargs="?", choices=("speed", "ablation", "transfer", "ui", "similar", "yours"), default="speed",
                   help="speed (default): the speed benchmark; ablation: each technique of the recipe off in a short budget, "
                        "one JSON line per variant; transfer: pre-train on five classes, then learn the other five from 100 "
                        "images per class from scratch, with a head on the frozen base, and with head + fine-tuning; "
                        "ui: each dashboard page's first and warm visit, the image-detail dialog and the duplicates tab, "
                        "through a real server and Chromium (one JSON line); similar: whether the similar-images search "
                        "finds shifted, mirrored and JPEG re-encoded training images' originals, its similarity spread and "
                        "query time (one JSON line); yours: the 'Your images' preset against from-scratch and head-only "
                        "training on a 5-class CIFAR-10 subset (50 images per class) and scikit-learn's digits, one JSON line "
                        "per dataset and variant")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--quick", action="store_true", help="small version (minutes), e.g. for CI")
    p.add_argument("--model", default=None, metavar="FOLDER",
                   help="bench ui: the model folder the measured studio ships (default: artifacts/default); "
                        "bench similar: the model searched, a run id or path (default: the most accurate model)")
    p.add_argument("--quick-try", action="store_true",
                   help="bench ui: also start the Train page's Quick try on fresh artifacts and time it to the end")
    p.set_defaults(func=cmd_bench)

    p = add("inspect", "data issues seen through a model: likely label mistakes, near duplicates, train/test leaks (one JSON line)")
    p.add_argument("--model", default=None, metavar="RUN_OR_PATH", help="run id, run folder, .keras file or model folder; default: the most accurate model")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threshold", type=_number(0, 1), default=None,
                   help="cosine similarity above 0 and at most 1 at which two images count as near duplicates (default: the studio's, printed in the JSON)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable image files (their count is reported) instead of failing")
    p.set_defaults(func=cmd_inspect)

    p = add("export", "export a model for other runtimes, checked against Keras on test images (one JSON line)")
    p.add_argument("--model", default=None, metavar="RUN_OR_PATH", help="run id, run folder, .keras file or model folder; default: the most accurate model")
    p.add_argument("--format", required=True, choices=("savedmodel", "tflite", "tflite-int8", "onnx"))
    p.add_argument("--out", default=None, metavar="DIR", help="default: the run's exports/ folder, or artifacts/exports/ for other models")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--images", type=_whole(1, 10**6), default=1000, help="test images of the parity check")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable image files (their count is reported) instead of failing")
    p.set_defaults(func=cmd_export)

    p = add("publish", "copy a finished run, with figures and a model card, to artifacts/default/ (the shipped model)")
    p.add_argument("run", metavar="RUN_ID_OR_DIR")
    p.add_argument("--to", default=None, help="destination folder (default: artifacts/default/)")
    p.add_argument("--data-note", default="", help="a sentence on the data's provenance for the model card")
    p.add_argument("--machine-note", default="", help="a sentence on the machine's conditions (e.g. other load) for the model card")
    p.set_defaults(func=cmd_publish)

    # Datasets live under the artifacts folder ($CIFAR_ARTIFACTS or artifacts/), so no --runs-dir here.
    p = sub.add_parser("data", help="import, list and check datasets of your own images",
                       description="Datasets of your own images, kept under artifacts/datasets/NAME; --data-dir NAME uses one.")
    data_sub = p.add_subparsers(dest="action", required=True)
    q = data_sub.add_parser("import", help="import a .zip, .tar(.gz) or folder of class folders as a dataset (one JSON line)",
                            description="Import <class>/image files (a stratified test split is made) or train/<class>/ + "
                                        "test/<class>/, with or without one folder around them. Every image is resized "
                                        "once to 32x32; links, devices, nested archives, non-images and unreadable "
                                        "images are skipped and counted; a path leaving the archive, too many files or "
                                        "a decompression bomb refuse the whole archive.")
    q.add_argument("source", metavar="SOURCE", help="a .zip, .tar, .tar.gz (.bz2, .xz) or a folder")
    q.add_argument("--name", required=True, help="the dataset's name: 1-64 letters, digits, '-', '_' or '.'")
    q.add_argument("--test-fraction", type=_fraction, default=0.2, help="share of each class held out as the test split "
                   "when the source has no test/ folder (default: 0.2)")
    q.add_argument("--seed", type=_whole(0, 2**32 - 1), default=0, help="seed of that split (default: 0)")
    q.add_argument("--replace", action="store_true", help="replace an existing dataset of that name")
    q = data_sub.add_parser("list", help="the imported datasets, one JSON line each")
    q = data_sub.add_parser("check", help="a dataset's health report (one JSON line); exits 1 if a problem blocks training")
    q.add_argument("dataset", metavar="DIR_OR_NAME", help="an image-folder dataset's folder, or an imported dataset's name")
    q.add_argument("--structure-only", action="store_true",
                   help="only the folders and counts (no image is opened: no sizes, modes, unreadable files or duplicates)")
    p.set_defaults(func=cmd_data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # A log line that cannot be written (a full disk) must not print a traceback; the error is reported anyway.
    logging.raiseExceptions = False
    args = build_parser().parse_args(argv)
    from cifar_core.base.errors import StudioError

    try:
        return args.func(args)
    except ConfigError as err:  # e.g. evaluate --data-dir naming a missing folder: one line per setting
        for name, message in err.errors.items():
            _stderr(f"error: {_flag(name)}: {message}")
        return err.exit_code
    except StudioError as err:  # bad runs, data, models, images, explanations: worded for the user already
        _stderr(f"error: {err}")
        return err.exit_code
    except OSError as err:  # e.g. a full disk or a read-only folder while writing results
        _stderr(f"error: {err.strerror or err}" + (f": {err.filename}" if err.filename else ""))
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
