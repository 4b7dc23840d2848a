"""`predict`, `explain` and `similar`: classify image files (with explanation overlays), check the explanation
methods, and find the training images most like each file.

`predict` and `similar` print one JSON line per file and exit 1 if any file failed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cifar_core.base import paths
from cifar_core.cli.common import (DATA_HELP, EXIT_USAGE, MODEL_HELP, SKIP_BAD_HELP, add_command, fraction, load_for_model,
                                   model_and_data, print_json, stderr, tqdm_progress, whole)
from cifar_core.explain import registry as explain_methods


def add_predict(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "predict", "classify image files; each line says whether the image looks like none of the "
                                    "model's classes (none_of_these, with its score and threshold)")
    p.add_argument("--model", default=None, metavar="RUN_OR_PATH", help=MODEL_HELP + " (a model bundle too: its .zip or its unzipped folder)")
    p.add_argument("--data-dir", default=None,
                   help="the dataset whose default model classifies the files, when --model is not given: a data folder or "
                        "an imported dataset's name (default: $CIFAR10_DIR, else the shipped model's dataset)")
    p.add_argument("--top", type=whole(1, 1000), default=3, help="classes to list per file, from 1 to the model's number of classes")
    p.add_argument("--gradcam", default=None, metavar="FOLDER", help="also write an explanation overlay PNG of each top class here")
    p.add_argument("--explain-method", choices=explain_methods.names(), default=None,
                   help="the overlays' method (default: occlusion, whose maps pass the deletion check on the shipped model; "
                        "gradcam when --layer is given)")
    p.add_argument("--layer", default=None, help="the Grad-CAM layer (default: the deepest at least 8x8)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    from cifar_core.predict.inference import Classifier

    folder = Path(args.gradcam) if args.gradcam else None
    if folder:  # made first, so that a bad folder is reported before any work is done
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            reason = "it exists and is not a folder" if folder.exists() else err.strerror
            stderr(f"error: --gradcam: cannot write overlays to {folder}: {reason}")
            return EXIT_USAGE
    choice = model_and_data(args)[0]
    path = choice.model_path
    classifier = Classifier(path)
    _none_of_these(classifier, choice)
    if args.top > len(classifier.class_names):
        stderr(f"error: --top: must be a whole number from 1 to {len(classifier.class_names)} (the model's classes), got {args.top}")
        return EXIT_USAGE
    results = classifier.classify_files(args.files, top_k=args.top)
    method = args.explain_method or ("gradcam" if args.layer else "occlusion")
    overlays = _write_overlays(classifier, results, folder, method, args.layer) if folder else {}
    for r in results:
        print_json({**r.to_json(), "model": str(path), "temperature": classifier.temperature, **({"gradcam": overlays[r.file]} if r.file in overlays else {})})
    return 1 if any(r.error for r in results) else 0


def _none_of_these(classifier, choice) -> None:
    """Give a model from before "none of these" thresholds its threshold once (fitted on its validation images, with
    progress), or say on stderr why its lines have "none_of_these": null."""
    from cifar_core.predict import ood

    if classifier.detector is None and (why := ood.ensure(choice.model_path, choice.config, progress=tqdm_progress())[1]):
        stderr(f'note: no "none of these" threshold for this model: {why}')


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


def add_explain(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "explain", "check that each explanation method (occlusion; Grad-CAM per layer) highlights what the prediction "
                                    "depends on (blank hottest vs coldest part); the last line is the default method", aliases=["gradcam"])
    p.add_argument("--method", choices=("all", *explain_methods.names()), default="all",
                   help="the methods to check (default: all; occlusion is checked first, then Grad-CAM's layers)")
    p.add_argument("--model", default=None, metavar="RUN_OR_PATH", help=MODEL_HELP)
    p.add_argument("--data-dir", default=None, help=DATA_HELP)
    p.add_argument("--images", type=whole(1, 10**6), default=500, help="test images to sample")
    p.add_argument("--fraction", type=fraction, default=0.25, help="share of each image blanked")
    p.add_argument("--layers", nargs="+", default=None, help="Grad-CAM layers to check (default: every rectified conv output of the base)")
    p.add_argument("--seed", type=whole(0, 2**32 - 1), default=0)
    p.add_argument("--skip-bad", action="store_true", help=SKIP_BAD_HELP)
    p.set_defaults(func=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    """The deletion check of each explanation method and layer asked for, one JSON line each; the last
    line is the default, the first in `explain.candidates` order whose maps pass."""
    from cifar_core.explain import check as explain
    from cifar_core.explain.faithfulness import check_images, deletion_check
    from cifar_core.predict.inference import Classifier

    choice, data_dir = model_and_data(args)
    classifier = Classifier(choice.model_path)
    methods = explain_methods.names() if args.method == "all" else (args.method,)
    if args.layers and "gradcam" not in methods:
        stderr("error: --layers: layers are Grad-CAM's; use --method gradcam or all")
        return EXIT_USAGE
    pairs = explain.candidates(classifier.model, methods, args.layers)
    explainers = [explain.make(classifier, method, layer) for method, layer in pairs]  # a bad layer fails before any work
    data = load_for_model(data_dir, classifier.class_names, skip_bad=args.skip_bad)
    images = check_images(data.x_test, args.images, args.seed)
    rows = [{**deletion_check(e, images, classifier.predict_arrays, args.fraction, args.seed), "images": len(images)}
            for e in explainers]
    default = explain.pick_default(rows)
    for row in [r for r in rows if r is not default] + [default]:
        print_json({**row, "default": row is default})
    return 0


def add_similar(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "similar", "the training images most like each image file, on features that keep which image it is "
                                    "(one JSON line per file)")
    p.add_argument("--model", default=None, metavar="RUN_OR_PATH", help=MODEL_HELP)
    p.add_argument("--k", type=whole(1, 1000), default=8, help="neighbours to list per file")
    p.add_argument("--data-dir", default=None, help="the data folder whose training images are searched (default: $CIFAR10_DIR; "
                                                    "with --model, the model's own data folder when it is on this machine)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_similar)


def _read_images(files: list[str]) -> tuple[list, list[str | None]]:
    """Each file as a model input (None when unreadable), and why each could not be read (None when it could)."""
    from cifar_core.data.image_limits import ImageError, read_image_file
    from cifar_core.predict.inference import load_image

    images, errors = [], []
    for f in files:
        try:
            images.append(load_image(read_image_file(f)))
            errors.append(None)
        except ImageError as err:
            images.append(None)
            errors.append(str(err))
    return images, errors


def cmd_similar(args: argparse.Namespace) -> int:
    import numpy as np

    from cifar_core.data.classes import model_class_names
    from cifar_core.model.vgg import load_model
    from cifar_core.predict.model_data import load_model_data
    from cifar_core.analysis.similar import SimilarSearch

    choice, data_dir = model_and_data(args)
    model = load_model(choice.model_path)  # a bad model path fails here, before the data is loaded
    names = model_class_names(choice.model_path, int(model.output_shape[-1]))
    if not data_dir:  # never Keras' download: the neighbours are files of a data folder
        stderr("error: --data-dir: no data folder given; pass --data-dir or set CIFAR10_DIR to the CIFAR-10 folder")
        return EXIT_USAGE
    loaded = load_model_data(data_dir, names, progress=tqdm_progress())
    data, files = loaded.data, loaded.files("train")  # files None: the images have no files (python batches)
    images, errors = _read_images(args.files)
    good = [i for i, e in enumerate(errors) if e is None]
    found = {}
    if good:
        search = SimilarSearch(choice.model_path, data.x_train, model=model, progress=tqdm_progress())
        idx, sim = search.search(np.stack([images[i] for i in good]), args.k)
        found = dict(zip(good, zip(idx, sim)))
    for i, f in enumerate(args.files):
        if errors[i] is not None:
            print_json({"file": f, "error": errors[i]})
            continue
        print_json({"file": f, "model": str(choice.model_path), "neighbours": [
            {"train_index": int(j), "file": files[j] if files else None, "label": names[data.y_train[j]],
             "similarity": round(float(s), 4)} for j, s in zip(*found[i])]})
    return 1 if len(good) < len(args.files) else 0
