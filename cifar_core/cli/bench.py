"""`bench`: the benchmarks (speed, the recipe's ablation, transfer learning, the dashboard, the similar-images
search, the 'Your images' preset); one JSON line per measurement.

The benchmarks are imported by the command only, so that importing the CLI imports neither them nor Playwright.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cifar_core.base import paths
from cifar_core.cli.common import add_command, load_for_model, model_and_data, print_json, run_store, stderr, tqdm_progress
from cifar_core.config import ConfigError, TrainConfig
from cifar_core.data import locate


def add_bench(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "bench", "speed benchmark against the seed's recipe, the recipe's ablation, or the transfer-learning experiment")
    p.add_argument("which", nargs="?", choices=("speed", "ablation", "transfer", "ui", "similar", "yours", "duplicates", "ood"),
                   default="speed",
                   help="speed (default): the speed benchmark; ablation: each technique of the recipe off in a short budget, "
                        "one JSON line per variant; transfer: pre-train on five classes, then learn the other five from 100 "
                        "images per class from scratch, with a head on the frozen base, and with head + fine-tuning; "
                        "ui: each dashboard page's first and warm visit, the image-detail dialog and the duplicates tab, "
                        "through a real server and Chromium (one JSON line); similar: whether the similar-images search "
                        "finds shifted, mirrored and JPEG re-encoded training images' originals, its similarity spread and "
                        "query time (one JSON line); yours: the 'Your images' preset against from-scratch and head-only "
                        "training on a 5-class CIFAR-10 subset (50 images per class) and scikit-learn's digits, one JSON line "
                        "per dataset and variant; duplicates: the duplicate finder's counts on the data (CIFAR-10), a seeded sample "
                        "of its pairs drawn to artifacts/bench/duplicates-sample.png for a person to judge, whether the health "
                        "report agrees, and its pairs on scikit-learn's digits (pairs of different digits must be none); "
                        "ood: the 'none of these' scores' AUROC and false alarms at 95%% recall of the "
                        "model's test images against digits, noise, flat colours, blurred noise, and CIFAR-10 classes held out "
                        "from a 5-class model trained here, one JSON line per set and score, then a Markdown table on stderr")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--quick", action="store_true", help="small version (minutes), e.g. for CI")
    p.add_argument("--model", default=None, metavar="FOLDER",
                   help="bench ui: the model folder the measured studio ships (default: artifacts/default); "
                        "bench similar and ood: the model measured, a run id or path (default: the most accurate model)")
    p.add_argument("--quick-try", action="store_true",
                   help="bench ui: also start the Train page's Quick try on fresh artifacts and time it to the end")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    data_dir = locate.data_dir(args.data_dir)
    if args.which in ("transfer", "yours", "ablation"):
        for row in _training_rows(args.which, data_dir, args.quick):
            print_json(row)
        return 0
    if args.which == "ui":
        from cifar_core.bench.ui import run_ui_bench

        model_dir = Path(args.model) if args.model else paths.default_model_dir()
        print_json(run_ui_bench(data_dir, model_dir, echo=stderr, quick_try=args.quick_try))
        return 0
    if args.which == "duplicates":
        from cifar_core.bench.duplicates import run_duplicates_bench

        if not data_dir:
            raise ConfigError({"data_dir": "bench duplicates reads an image-folder dataset: give its folder (--data-dir DIR "
                                           "or $CIFAR10_DIR)"})
        print_json(run_duplicates_bench(data_dir, paths.artifacts_dir() / "bench"))
        return 0
    if args.which == "similar":
        print_json(_bench_similar(args))
        return 0
    if args.which == "ood":
        return _bench_ood(args, data_dir)
    from cifar_core.bench.speed import run_bench

    print_json(run_bench(data_dir=data_dir, quick=args.quick, echo=stderr))
    return 0


def _training_rows(which: str, data_dir: str | None, quick: bool):
    """The rows of the benchmarks that train (transfer, yours, ablation), one per variant."""
    if which == "transfer":
        from cifar_core.bench.transfer import run_transfer

        return run_transfer(data_dir, quick=quick, echo=stderr)
    if which == "yours":
        from cifar_core.bench.yours import run_yours

        if not data_dir:
            raise ConfigError({"data_dir": "bench yours builds its 5-class subset from CIFAR-10: give its folder "
                                           "(--data-dir DIR or $CIFAR10_DIR)"})
        return run_yours(data_dir, quick=quick, echo=stderr)
    from cifar_core.training.recipe import run_ablation

    return run_ablation(data_dir, quick=quick, echo=stderr)


def _bench_similar(args: argparse.Namespace) -> dict:
    from cifar_core.data.classes import model_class_names
    from cifar_core.model.vgg import load_model
    from cifar_core.bench.similar import bench_similar

    choice, data_dir = model_and_data(args)  # without --model: the default for the data it is measured on
    path = choice.model_path
    data = load_for_model(data_dir, model_class_names(path, int(load_model(path).output_shape[-1])))
    return bench_similar(path, data.x_train, data.x_test, data.y_train, data.y_test,
                         queries=100 if args.quick else 500, progress=tqdm_progress())


def _bench_ood(args: argparse.Namespace, data_dir: str | None) -> int:
    from cifar_core.bench.ood import markdown_table, run_ood_bench
    from cifar_core.runs.model_choice import resolve_model

    if not data_dir:
        raise ConfigError({"data_dir": "bench ood measures on the model's test images and trains a 5-class CIFAR-10 model: "
                                       "give the CIFAR-10 folder (--data-dir DIR or $CIFAR10_DIR)"})
    choice = resolve_model(run_store(args), args.model)
    config = TrainConfig.of_saved_model({**choice.config, "data_dir": data_dir})
    lines = []
    for row in run_ood_bench(choice.model_path, config, data_dir, quick=args.quick, progress=tqdm_progress(), echo=stderr):
        print_json(row)
        lines.append(row)
    stderr(markdown_table(lines))
    return 0
