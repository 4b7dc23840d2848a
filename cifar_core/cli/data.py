"""`data import`, `data list` and `data check`: datasets of your own images, kept under artifacts/datasets/NAME
(`--data-dir NAME` uses one); one JSON line each."""

from __future__ import annotations

import argparse

from cifar_core.cli.common import fraction, print_json, stderr, tqdm_progress, whole


def add_data(sub: argparse._SubParsersAction) -> None:
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
    q.add_argument("--test-fraction", type=fraction, default=0.2, help="share of each class held out as the test split "
                   "when the source has no test/ folder (default: 0.2)")
    q.add_argument("--seed", type=whole(0, 2**32 - 1), default=0, help="seed of that split (default: 0)")
    q.add_argument("--replace", action="store_true", help="replace an existing dataset of that name")
    data_sub.add_parser("list", help="the imported datasets, one JSON line each")
    q = data_sub.add_parser("check", help="a dataset's health report (one JSON line); exits 1 if a problem blocks training")
    q.add_argument("dataset", metavar="DIR_OR_NAME", help="an image-folder dataset's folder, or an imported dataset's name")
    q.add_argument("--structure-only", action="store_true",
                   help="only the folders and counts (no image is opened: no sizes, modes, unreadable files or duplicates)")
    p.set_defaults(func=cmd_data)


def cmd_data(args: argparse.Namespace) -> int:
    from cifar_core.data import health as dataset_health
    from cifar_core.data import imported as datasets

    if args.action == "import":
        print_json(datasets.import_dataset(args.source, args.name, test_fraction=args.test_fraction, seed=args.seed,
                                           replace=args.replace, progress=tqdm_progress()))
        return 0
    if args.action == "list":
        for row in datasets.list_datasets():
            print_json(row)
        return 0
    report = dataset_health.check_dataset(args.dataset, deep=not args.structure_only, progress=tqdm_progress())
    print_json(report)
    if report["blocking"]:
        stderr(f"error: {dataset_health.blocking_message(args.dataset)}")
        return 1
    return 0
