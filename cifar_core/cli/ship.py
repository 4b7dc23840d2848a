"""`export` and `publish`: a model for other runtimes (checked against Keras), and a finished run as the
shipped model."""

from __future__ import annotations

import argparse
from pathlib import Path

from cifar_core.cli.common import MODEL_HELP, SKIP_BAD_HELP, add_command, load_for_model, model_and_data, print_json, run_store, stderr, tqdm_progress, whole


def add_export(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "export", "export a model for other runtimes, checked against Keras on test images, or as a bundle "
                                   "that keeps its class names, temperature and threshold (one JSON line)")
    p.add_argument("--model", default=None, metavar="RUN_OR_PATH", help=MODEL_HELP)
    p.add_argument("--format", required=True, choices=("savedmodel", "tflite", "tflite-int8", "onnx", "bundle"),
                   help="bundle: one .zip with model.keras, classes.json, calibration.json, ood.json, the dataset record, "
                        "config.json, the model card and preprocessing.json, which predict --model and Classify load")
    p.add_argument("--out", default=None, metavar="DIR", help="default: the run's exports/ folder, or artifacts/exports/ for other models")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--images", type=whole(1, 10**6), default=1000, help="test images of the parity check")
    p.add_argument("--skip-bad", action="store_true", help=SKIP_BAD_HELP)
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from cifar_core.ship.export import ExportError, export_model, failure_message
    from cifar_core.predict.inference import Classifier

    choice, data_dir = model_and_data(args)  # without --model: the default for the data exported with
    path = choice.model_path
    classifier = Classifier(path)  # a bad model path fails here, before the data is loaded
    if args.format == "bundle":
        return _export_bundle(args, choice, classifier)
    data = load_for_model(data_dir, classifier.class_names, skip_bad=args.skip_bad)
    try:
        report = export_model(path, args.format, data.x_test, data.y_test, x_train=data.x_train, classifier=classifier,
                              out_dir=Path(args.out) if args.out else None, images=args.images)
    except ExportError as err:
        stderr(f"error: {err}")
        return 1
    print_json(report)
    if not report["passed"]:
        stderr(f"error: {failure_message(report)}")
        return 1
    return 0


def _export_bundle(args: argparse.Namespace, choice, classifier) -> int:
    """Write the model's bundle; a model from before "none of these" thresholds gets its threshold first."""
    from cifar_core.predict import ood
    from cifar_core.ship import bundle
    from cifar_core.ship.export import default_out_dir

    if classifier.detector is None and (why := ood.ensure(choice.model_path, choice.config, args.data_dir, tqdm_progress())[1]):
        stderr(f'note: the bundle has no "none of these" threshold: {why}')
    out = Path(args.out) if args.out else default_out_dir(choice.model_path)
    print_json(bundle.write_bundle(choice.folder, out / bundle.download_name(choice.run_id or choice.folder.name)))
    return 0


def add_publish(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "publish", "copy a finished run, with figures and a model card, to artifacts/default/ (the shipped model)")
    p.add_argument("run", metavar="RUN_ID_OR_DIR")
    p.add_argument("--to", default=None, help="destination folder (default: artifacts/default/)")
    p.add_argument("--data-note", default="", help="a sentence on the data's provenance for the model card")
    p.add_argument("--machine-note", default="", help="a sentence on the machine's conditions (e.g. other load) for the model card")
    p.set_defaults(func=cmd_publish)


def cmd_publish(args: argparse.Namespace) -> int:
    from cifar_core.ship.publish import publish_run

    dest = publish_run(run_store(args), args.run, Path(args.to) if args.to else None, data_note=args.data_note,
                       machine_note=args.machine_note)
    print(f"published {args.run} to {dest}")
    return 0
