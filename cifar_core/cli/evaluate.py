"""`evaluate`, `calibrate` and `inspect`: a model's accuracy and calibration on a split, its fitted temperature,
and the data issues it sees (likely label mistakes, near duplicates, train/test leaks); one JSON line each."""

from __future__ import annotations

import argparse

from cifar_core.cli.common import (DATA_HELP, MODEL_HELP, SKIP_BAD_HELP, add_command, dataset_json, load_for_model, model_and_data,
                                   print_json, run_store, stderr, tqdm_progress)
from cifar_core.config import TrainConfig

def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "evaluate", "evaluate a model on the test split (or a run's validation split)")
    p.add_argument("--model", "--run", dest="model", default=None, metavar="RUN_OR_PATH",
                   help="a run id or run folder, a .keras file, or a folder holding model.keras such as artifacts/default "
                        "(default: the most accurate usable model of the dataset evaluated on)")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--data-dir", default=None, help=DATA_HELP)
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="test-time augmentation (image, mirror, 1-pixel shifts); default: as the model was trained")
    p.add_argument("--skip-bad", action="store_true", help=SKIP_BAD_HELP)
    p.set_defaults(func=cmd_evaluate)


def _saved_config(choice, data_dir: str | None, split: str = "test") -> TrainConfig:
    """The settings the model was trained with (its validation split), reading the data from `data_dir` (the
    folder the command uses: the model's stored folder is only a default, never required to exist). RunError
    when the validation split is asked of a model whose settings are unknown."""
    from cifar_core.runs.record import RunError

    if not choice.config:
        if split == "val":
            raise RunError(f"{choice.model_path} has no config.json beside it, so its validation split is unknown; use --split test.")
        # weights "none": the saved model holds its weights, so the base weights file the
        # run started from may be gone without stopping an evaluation.
        return TrainConfig(weights="none", data_dir=data_dir).validate()
    return TrainConfig.of_saved_model({**choice.config, "data_dir": data_dir})


def cmd_evaluate(args: argparse.Namespace) -> int:
    from cifar_core.predict import calibration
    from cifar_core.data.classes import model_class_names
    from cifar_core.predict.evaluate import evaluate_model
    from cifar_core.predict.model_data import load_model_data
    from cifar_core.model.vgg import load_model

    store = run_store(args)
    choice, data_dir = model_and_data(args, store)
    if choice.run_id:
        store.get(choice.run_id).usable_config()  # a run without its folder or settings is refused, never defaulted
    stored = calibration.read(choice.folder)  # a damaged calibration.json is reported before any work
    config = _saved_config(choice, data_dir, args.split)
    tta = bool(config.tta) if args.tta is None else args.tta  # the model's own TTA unless told otherwise
    model = load_model(choice.model_path)
    class_names = model_class_names(choice.model_path, int(model.output_shape[-1]))
    splits = load_model_data(data_dir, class_names, skip_bad=config.skip_bad or args.skip_bad,
                             progress=tqdm_progress(), splits_of=config).splits
    x, y = (splits.x_test, splits.y_test) if args.split == "test" else (splits.x_val, splits.y_val)
    interp = evaluate_model(model, x, y, input_size=int(model.input_shape[1]), tta=tta, progress=tqdm_progress(),
                            class_names=class_names)
    if choice.run_id:  # results go to run folders only: the shipped model and arbitrary files are never written to
        interp.save(choice.folder, args.split)
    # A temperature fitted with the other TTA setting does not fit these probabilities: reported uncalibrated.
    t = stored.temperature if stored is not None and stored.tta == tta else 1.0
    scored = calibration.summary(interp.probs, interp.y, t)
    fitted_on = f"{stored.images} validation images, tta={stored.tta}" if stored is not None else None
    basis = stored.basis() if stored is not None and stored.tta == tta else None  # its images, mistakes, and why it was kept
    stderr(f"calibration ({args.split}): ECE {scored['ece_uncalibrated']:.4f} uncalibrated, {scored['ece']:.4f} with temperature "
           f"{t:.4f}" + (f" ({basis})" if basis else " (no temperature stored for this model and TTA setting)")
           + f"; NLL {scored['nll_uncalibrated']:.4f} uncalibrated, {scored['nll']:.4f} calibrated; Brier {scored['brier']:.4f}")
    print_json({"model": str(choice.model_path), "run_id": choice.run_id, "dataset": dataset_json(data_dir),
                "split": args.split, "tta": tta, **interp.to_dict(), **scored, "temperature_fitted_on": fitted_on,
                "calibration_basis": basis})
    return 0


def add_calibrate(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "calibrate", "fit a model's temperature on its run's validation split and store it beside the model "
                                      "(calibration.json)")
    p.add_argument("--model", "--run", dest="model", default=None, metavar="RUN_OR_PATH",
                   help="a run id or run folder, a .keras file, or a folder holding model.keras such as artifacts/default "
                        "(default: the most accurate usable model of the dataset in --data-dir)")
    p.add_argument("--data-dir", default=None,
                   help="the data folder (or imported dataset's name) holding the model's training images, whose validation "
                        "split the temperature is fitted on (default: the model's own data folder when it is on this "
                        "machine, else $CIFAR10_DIR)")
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from cifar_core.predict import calibration
    from cifar_core.runs.record import RunError

    store = run_store(args)
    choice, data_dir = model_and_data(args, store)
    if choice.run_id:
        store.get(choice.run_id).usable_config()  # a run without its folder or settings is refused, never defaulted
    if not choice.config:
        raise RunError(f"{choice.model_path} has no config.json beside it, so its validation split is unknown "
                       "and there are no held-out images to fit a temperature on.")
    config = _saved_config(choice, data_dir, "val")
    fitted = calibration.fit_for_model(choice.model_path, config, progress=tqdm_progress())
    print_json({"model": str(choice.model_path), "run_id": choice.run_id,
                "file": str(choice.model_path.parent / calibration.CALIBRATION_FILE), **fitted.to_dict()})
    return 0


def add_inspect(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "inspect", "data issues of a model's classes: likely label mistakes (through the model), exact and near duplicates, train/test leaks "
                                    "(one JSON line)")
    p.add_argument("--model", default=None, metavar="RUN_OR_PATH", help=MODEL_HELP)
    p.add_argument("--data-dir", default=None, help=DATA_HELP)
    p.add_argument("--skip-bad", action="store_true", help=SKIP_BAD_HELP)
    p.set_defaults(func=cmd_inspect)


def cmd_inspect(args: argparse.Namespace) -> int:
    import time

    from cifar_core.data.classes import model_class_names
    from cifar_core.analysis.inspection import inspect_model
    from cifar_core.model.vgg import load_model

    choice, data_dir = model_and_data(args)
    path = choice.model_path
    model = load_model(path)  # a bad model path fails here, before the data is loaded
    start = time.perf_counter()
    data = load_for_model(data_dir, model_class_names(path, int(model.output_shape[-1])), skip_bad=args.skip_bad)
    load_s = time.perf_counter() - start
    result = inspect_model(path, data, model=model, progress=tqdm_progress())
    result["timings"] = {"data_load_s": round(load_s, 3), **result["timings"]}
    print_json(result)
    return 0
