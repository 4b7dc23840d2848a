"""Every dashboard page in three states: no data, data but no model, a tiny completed run.

AppTest runs the real app.py (navigation, sidebar, page) in this process; the
assertions read what the page shows.
"""

from __future__ import annotations

import html
import io
import re
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from PIL import Image
from streamlit.testing.v1 import AppTest

from studio import explanations
from studio.pages import PAGES
from studio.text import plain
from cifar_core.data.classes import CLASS_NAMES
from cifar_core.runs import launcher
from cifar_core.runs.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120  # the first run imports TensorFlow and loads a model


def shown(node) -> str:
    """All the text of an element tree (labels, values, bodies), one piece per line."""
    parts = []
    for attr in ("label", "value", "body", "placeholder"):
        value = getattr(node, attr, None) if attr != "value" or not hasattr(node, "children") else None
        if isinstance(value, str):
            parts.append(value)
    for child in getattr(node, "children", {}).values():
        parts.append(shown(child))
    return "\n".join(p for p in parts if p)


def unescape(markdown: str) -> str:
    """Markdown text with its backslash escapes resolved (what a reader sees)."""
    return re.sub(r"\\(.)", r"\1", markdown)


def open_page(name: str) -> AppTest:
    """app.py run with the page `name` (studio/pages.py's name, e.g. "error_analysis") shown."""
    page = next(p for p in PAGES if p.name == name)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()  # registers the pages
    if not page.default:
        at.switch_page(page.file).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture(autouse=True)
def no_shipped_model(tmp_path, monkeypatch):
    """The shipped default model must not leak into the 'no model' states."""
    monkeypatch.setenv("CIFAR_DEFAULT_MODEL_DIR", str(tmp_path / "no_default_model"))


@pytest.fixture
def with_data(tiny_data, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", str(tiny_data))
    return tiny_data


@pytest.fixture
def with_run(tiny_run, with_data, monkeypatch):
    store, summary = tiny_run
    monkeypatch.setenv("CIFAR_ARTIFACTS", str(store.root))
    return store, summary


# ---------------------------------------------------------------- no data


def test_no_data_every_page_explains(tmp_path):
    expected = {  # what a page says without data (every page of the list is opened; these also say why)
        "home": "No CIFAR-10 data folder is set",
        "data": "No CIFAR-10 folder is set",
        "train": "No CIFAR-10 data folder is set",
        "classify": "no trained model yet",
        "predictions": "no trained model yet",
        "error_analysis": "no trained model yet",
        "runs": "No runs yet",
    }
    for page in PAGES:
        at = open_page(page.name)
        assert "No CIFAR-10 data found." in shown(at.sidebar), page.name
        assert "How to get the data" in shown(at.sidebar)
        assert "No trained model yet" in shown(at.sidebar)
        assert expected.get(page.name, "") in shown(at.main), (page.name, shown(at.main))
    assert set(expected) <= {page.name for page in PAGES}


def test_no_data_start_is_refused_on_the_data_field():
    at = open_page("train")
    at.button(key="FormSubmitter:train_form-Start training").click().run()
    errors = [e.value for e in at.error]
    assert any("No data folder set" in e for e in errors), errors
    assert any("need fixing" in e for e in errors)


# ---------------------------------------------------------------- data, no model


def test_data_no_model_home_says_go_train(with_data):
    at = open_page("home")
    assert "CIFAR-10 found (folders layout): 120 train, 40 test images" in shown(at.sidebar)
    assert "there is no trained model yet" in shown(at.main)
    assert "Go to Train" in shown(at.main)


def test_data_no_model_model_pages_point_to_train(with_data):
    for name in ("classify", "predictions", "error_analysis"):
        at = open_page(name)
        assert "There is no trained model yet" in shown(at.main), name
        assert not at.file_uploader


def test_train_form_covers_the_config_and_rejects_bad_values_per_field(with_data):
    at = open_page("train")
    assert at.text_input(key="cfg_data_dir").value == str(with_data)
    keys = {w.key for kind in ("text_input", "number_input", "selectbox", "toggle") for w in getattr(at, kind)}
    from cifar_core.views.train_form import sections

    assert {f"cfg_{f.name}" for fields in sections().values() for f in fields} <= keys
    at.selectbox(key="train_preset").select_index(2).run()  # the seed notebook: ImageNet weights
    at.text_input(key="cfg_lr").input("fast")
    at.text_input(key="cfg_batch_size").input("0")
    at.text_input(key="cfg_epochs_finetune").input("abc")  # text is refused, never read as 0
    at.selectbox(key="cfg_arch").select("vgg16_bn")  # with ImageNet weights: refused
    at.button(key="FormSubmitter:train_form-Start training").click().run()
    errors = [unescape(e.value) for e in at.error]
    assert "must be a number such as 0.1 or 1e-4, got 'fast'" in errors
    assert "must be a whole number written with the digits 0-9, got 'abc'" in errors
    assert any(e.startswith("must be a whole number from 1 to 4096") for e in errors)
    assert any("vgg16_bn has no ImageNet weights" in e for e in errors)
    assert "4 setting(s) need fixing before the training can start." in errors


def test_quick_preset_fills_the_form(with_data):
    at = open_page("train")
    at.selectbox(key="train_preset").select_index(0).run()
    assert at.selectbox(key="cfg_arch").value == "vgg16_bn"
    assert at.text_input(key="cfg_weights").value == "none"
    assert at.text_input(key="cfg_limit").value == "1000"


# ---------------------------------------------------------------- a completed run


def test_run_home_shows_accuracy(with_run):
    store, summary = with_run
    at = open_page("home")
    assert at.selectbox(key="model_pick").value == summary["run_id"]  # the key; the label shows "run <id> · test acc"
    assert at.metric[0].label == "Test accuracy"
    assert at.metric[0].value == f"{summary['test_accuracy']:.1%}"


def encoded(fmt: str, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).convert(mode).save(buf, format=fmt)
    return buf.getvalue()


def test_run_classify_every_accepted_format_and_odd_modes(with_run):
    at = open_page("classify")
    assert set(at.file_uploader[0].allowed_type) >= {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"}
    files = [("a.webp", encoded("WEBP"), "image/webp"), ("b.bmp", encoded("BMP"), "image/bmp"),
             ("c.gif", encoded("GIF", "P"), "image/gif"), ("d.jpg", encoded("JPEG", "CMYK"), "image/jpeg"),
             ("e.png", encoded("PNG", "I;16"), "image/png"), ("f.png", encoded("PNG", "RGBA"), "image/png"),
             ("cut.png", encoded("PNG")[:200], "image/png")]
    at.file_uploader[0].set_value(files).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "6 of 7 image(s) classified" in [s.value for s in at.subheader]
    assert len(at.error) == 1 and "cut.png" not in at.error[0].value and "not a readable image" in at.error[0].value


def test_run_classify_good_and_bad_files(with_run, tiny_data):
    at = open_page("classify")
    cat = next((tiny_data / "test" / "cat").iterdir()).read_bytes()
    at.file_uploader[0].set_value([
        ("cat.png", cat, "image/png"),
        ("notes.png", b"this is not an image", "image/png"),
        ("empty.jpg", b"", "image/jpeg"),
    ])
    at.run()
    assert not at.exception
    text = shown(at.main)
    assert "2 of 3" not in text and "1 of 3 image(s) classified" in text
    errors = [e.value for e in at.error]
    assert any("not a readable image" in e for e in errors)
    assert any("the file is empty" in e for e in errors)
    top = [m.value for m in at.markdown if m.value.startswith("### ")]
    assert len(top) == 1 and top[0].split(" · ")[0][4:] in CLASS_NAMES
    assert "top 3 of 10 classes" in text


def test_run_predictions_grid_filters_and_detail(with_run, with_data):
    store, summary = with_run
    at = open_page("predictions")
    text = shown(at.main)
    assert "of 40 test images" in text
    assert at.button(key="picked_image-0") is not None
    at.segmented_control[0].set_value("wrong").run()
    wrong = int(round(40 * (1 - summary["test_accuracy"])))
    assert (f"**{wrong:,}** of 40 test images" in shown(at.main)) or (wrong == 0 and "No test image matches" in shown(at.main))
    at.segmented_control[0].set_value("all")
    at.multiselect[0].set_value(["cat"]).run()
    assert "**4** of 40 test images" in shown(at.main)
    shown_buttons = [b.key for b in at.button if b.key and b.key.startswith("picked_image-")]
    assert len(shown_buttons) == 4
    at.button(key=shown_buttons[0]).click().run()
    picked = int(shown_buttons[0].split("-")[1])
    # The detail opens as a dialog (outside the main block): the image's labels and loss.
    assert any(m.value.startswith("true **") and "loss" in m.value for m in at.markdown)

    # The detail explains the predicted class first; any other class gives another map.
    from cifar_core.predict.evaluate import Interpretation

    predicted = CLASS_NAMES[Interpretation.load(store.get(summary["run_id"]).dir).preds[picked]]
    assert at.selectbox(key=f"cam_class_{picked}").value == predicted
    urls = lambda: {img.url for element in at.get("image") for img in element.proto.imgs}  # noqa: E731
    before = urls()
    from cifar_core.predict.split_predictions import load_test_set

    # The map of the method the dialog shows (the first that passes the check on this model).
    heat, _ = picked_explainer(at, "picked_image_cam_layer", store.get(summary["run_id"]).model_path).heatmaps(
        np.repeat(load_test_set(str(with_data), CLASS_NAMES)[0][[picked]], 10, axis=0), np.arange(10))
    mine = CLASS_NAMES.index(predicted)
    other = next(CLASS_NAMES[c] for c in range(10) if not np.allclose(heat[c], heat[mine], atol=0.01))
    at.selectbox(key=f"cam_class_{picked}").select(other).run()
    assert not at.exception and len(urls() - before) == 1  # only the overlay changed


def test_run_error_analysis_cell_gallery_and_tables(with_run):
    store, summary = with_run
    at = open_page("error_analysis")
    assert at.metric[0].value == f"{summary['test_accuracy']:.1%}"
    at.selectbox(key="cell_true").select("cat")
    at.selectbox(key="cell_pred").select("cat").run()
    from cifar_core.predict.evaluate import Interpretation

    interp = Interpretation.load(store.get(summary["run_id"]).dir)
    n = len(interp.cell(CLASS_NAMES.index("cat"), CLASS_NAMES.index("cat")))
    assert f"cat predicted as cat: {n} image(s)" in [s.value for s in at.subheader]
    assert any(list(df.value.index) == list(CLASS_NAMES) for df in at.dataframe)  # the per-class scores
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Confusion matrix (PNG)", "Training curves (PNG)", "Predictions (CSV)"]


def test_run_runs_page_lists_and_deletes_with_confirmation(with_run, tmp_path, monkeypatch):
    store, summary = with_run
    at = open_page("runs")
    table = at.dataframe[0].value
    assert summary["run_id"] in table.index and table.loc[summary["run_id"], "status"] == "completed"
    assert any(b.label.startswith("Download model") for b in at.get("download_button"))
    # Deleting needs the confirmation box; try it on a copy of the store so the shared run survives.
    copy = tmp_path / "copy"
    shutil.copytree(store.root, copy)
    monkeypatch.setenv("CIFAR_ARTIFACTS", str(copy))
    at = open_page("runs")
    delete = at.button(key=f"delete_{summary['run_id']}")
    assert delete.disabled
    at.checkbox(key=f"confirm_delete_{summary['run_id']}").check().run()
    at.button(key=f"delete_{summary['run_id']}").click().run()
    assert RunStore(copy).list() == []
    assert "No runs yet" in shown(at.main)


def test_run_train_page_shows_no_live_run_and_starts_one(with_run, tmp_path, monkeypatch):
    """Start goes through the launcher (a separate process); stop it right away."""
    from cifar_core.runs.store import RunStore

    monkeypatch.setenv("CIFAR_ARTIFACTS", str(tmp_path / "fresh"))
    at = open_page("train")
    assert not at.get("progress")
    at.selectbox(key="train_preset").select_index(0).run()
    at.text_input(key="cfg_epochs_finetune").set_value("500")  # still running when checked, on any machine
    at.button(key="FormSubmitter:train_form-Start training").click().run()
    store = RunStore(tmp_path / "fresh")
    run = store.list()[0]
    try:
        assert run.config["epochs_finetune"] == 500
        assert run.status in ("queued", "running")
        assert run.pid and run.pid != __import__("os").getpid()
        assert f"Training run {run.id}" in [s.value for s in at.subheader]
        # One training at a time: Start is disabled while this one trains, and says why.
        start = at.button(key="FormSubmitter:train_form-Start training")
        assert start.disabled and run.id in start.help
        # A reload (a new session) re-attaches to the live run instead of offering a second one.
        assert f"Training run {run.id}" in [s.value for s in open_page("train").subheader]
    finally:
        launcher.stop_training(run.id, store)  # nothing to do if it has ended
        import os
        import signal
        import time

        # The child may still be importing TensorFlow; SIGTERM ends it as 'stopped' too.
        # (A quick run on the tiny test data may also have finished already.)
        with __import__("contextlib").suppress(ProcessLookupError):
            os.kill(run.pid, signal.SIGTERM)
        for _ in range(100):
            if store.get(run.id).status not in ("queued", "running"):
                break
            time.sleep(0.2)


def test_run_without_saved_predictions_computes_them_once(with_run, tmp_path, monkeypatch):
    """A model folder without test_probs.npz gets its predictions computed on first view, then saved."""
    import shutil

    from cifar_core.runs.store import RunStore

    store, summary = with_run
    copy = tmp_path / "copy"
    shutil.copytree(store.root, copy)
    monkeypatch.setenv("CIFAR_ARTIFACTS", str(copy))
    saved = RunStore(copy).get(summary["run_id"]).dir / "test_probs.npz"
    saved.unlink()
    at = open_page("predictions")
    assert "of 40 test images" in shown(at.main)
    assert saved.is_file()


def test_shipped_model_without_data_degrades_gracefully(tiny_run, tmp_path, monkeypatch):
    """The shipped default model and no data folder: saved predictions still give the scores, not the images."""
    import json
    import shutil

    store, summary = tiny_run
    shipped = tmp_path / "default"
    run_dir = store.get(summary["run_id"]).dir
    shipped.mkdir()
    for name in ("model.keras", "test_probs.npz", "evaluation.json", "history.csv"):
        shutil.copy(run_dir / name, shipped / name)
    (shipped / "config.json").write_text(json.dumps({**store.get(summary["run_id"]).config, "data_dir": None}))
    monkeypatch.setenv("CIFAR_DEFAULT_MODEL_DIR", str(shipped))

    at = open_page("home")
    assert at.selectbox(key="model_pick").value == "default"  # the shipped model's key
    assert "No CIFAR-10 data folder is set" in shown(at.main)
    at = open_page("predictions")
    assert "Test images are not available" in shown(at.main)
    at = open_page("error_analysis")
    assert at.metric[0].value == f"{summary['test_accuracy']:.1%}"
    assert "The galleries need the test images" in shown(at.main)
    assert at.dataframe  # per-class scores still shown


def image_captions(at: AppTest) -> list[str]:
    return [img.caption for element in at.get("image") for img in element.proto.imgs]


def picked_explainer(at: AppTest, key: str, model_path):
    """The explainer a page's method picker shows."""
    from cifar_core.explain import check as explain
    from cifar_core.predict.inference import Classifier

    method, _, layer = at.selectbox(key=key).value.partition(":")
    return explain.make(Classifier(model_path), method, layer or None)


def default_explanation_of(store: RunStore, run_id: str, data_dir) -> str:
    """The picker's value for the first method, in `explain.candidates` order, that passes the check on the
    sample of test images the pages check (read from the checks the page kept on disk)."""
    from cifar_core.explain import check as explain
    from cifar_core.explain.faithfulness import check_images
    from cifar_core.predict.inference import Classifier
    from cifar_core.predict.split_predictions import load_test_set

    row = explain.default_explanation(Classifier(store.get(run_id).model_path),
                                      check_images(load_test_set(str(data_dir), CLASS_NAMES)[0], explanations.CHECK_IMAGES))
    return row["method"] if row["layer"] is None else f"{row['method']}:{row['layer']}"


def test_run_classify_explanation_overlays_each_classified_image(with_run, tiny_data):
    store, summary = with_run
    at = open_page("classify")
    at.toggle(key="classify_explain").set_value(True).run()
    # The default method is the first that passes the check on the test images (4 per class here)...
    assert at.selectbox(key="classify_cam_layer").value == default_explanation_of(store, summary["run_id"], tiny_data)
    assert at.selectbox(key="classify_cam_layer").options[:2] == ["Occlusion (8×8 grey patch every 4 px)", "Grad-CAM · block3_relu3"]
    # ...and the page says what the check found for it.
    assert [c.value for c in at.caption if "Check on 40 test images" in c.value]
    files = [(f"{name}.png", next((tiny_data / "test" / name).iterdir()).read_bytes(), "image/png") for name in ("cat", "ship")]
    at.file_uploader[0].set_value([*files, ("notes.png", b"not an image", "image/png")]).run()
    assert not at.exception
    top = [m.value[4:].split(" · ")[0] for m in at.markdown if m.value.startswith("### ")]
    assert len(top) == 2
    name = "Occlusion" if at.selectbox(key="classify_cam_layer").value == "occlusion" else "Grad-CAM"
    assert [c for c in image_captions(at) if c.startswith(name)] == [f"{name}: {label}" for label in top]

    # Grad-CAM's layers can still be picked, each with its own check.
    at.selectbox(key="classify_cam_layer").set_value("gradcam:block2_relu2").run()
    assert not at.exception and len([c for c in image_captions(at) if c.startswith("Grad-CAM: ")]) == 2
    assert [c.value for c in at.caption if unescape(c.value).startswith("Grad-CAM · block2_relu2. Check on 40 test images")]
    at.selectbox(key="classify_cam_layer").set_value("occlusion").run()
    assert not at.exception and len([c for c in image_captions(at) if c.startswith("Occlusion: ")]) == 2
    at.toggle(key="classify_explain").set_value(False).run()
    assert not [c for c in image_captions(at) if c.startswith(("Grad-CAM", "Occlusion"))]


@pytest.fixture
def with_mistakes(tiny_run, with_data, tmp_path, monkeypatch):
    """A copy of the tiny run whose saved test predictions hold mistakes (the tiny model may make none):
    the first image of each class is predicted as the next class."""
    from cifar_core.predict.evaluate import Interpretation

    store, summary = tiny_run
    root = tmp_path / "copy"
    shutil.copytree(store.root, root)
    monkeypatch.setenv("CIFAR_ARTIFACTS", str(root))
    copy = RunStore(root)
    interp = Interpretation.load(copy.get(summary["run_id"]).dir)
    probs = interp.probs.copy()
    for c in range(10):
        i = int(np.flatnonzero(interp.y == c)[0])
        probs[i] = np.eye(10, dtype=np.float32)[(c + 1) % 10] * 0.9 + 0.01
    Interpretation(probs, interp.y, interp.class_names).save(copy.get(summary["run_id"]).dir)
    return copy, summary


def test_run_error_analysis_explanations_show_predicted_or_true_class(with_mistakes, tiny_data):
    store, summary = with_mistakes
    from cifar_core.predict.evaluate import Interpretation

    true_name, pred_name, n = Interpretation.load(store.get(summary["run_id"]).dir).most_confused()[0]
    at = open_page("error_analysis")
    at.selectbox(key="cell_true").select(true_name)
    at.selectbox(key="cell_pred").select(pred_name).run()

    def tiles() -> list[str]:  # media URLs are content hashes: equal URLs, equal pixels
        return [img.url for element in at.get("image") for img in element.proto.imgs]

    plain = tiles()
    at.segmented_control(key="cam_mode").set_value("predicted class").run()
    assert not at.exception
    assert at.selectbox(key="error_cam_layer").value == default_explanation_of(store, summary["run_id"], tiny_data)
    predicted = tiles()
    at.segmented_control(key="cam_mode").set_value("true class").run()
    for_true = tiles()
    assert len(plain) == len(predicted) == len(for_true) > 0
    assert not set(predicted) & set(plain)  # every tile became an overlay
    assert predicted != for_true  # a mistake's two classes are explained by different evidence


# ---------------------------------------------------------------- user-supplied text is text


HOSTILE_NAMES = [
    "![t](http://127.0.0.1:9/beacon).png",
    "[click](javascript:alert(1)) **bold** _it_ $x^2$.png",
    ":red[alarm] :material/home: <b>x</b> `code`.png",
    "# heading\n- item.png",
]


def test_uploaded_file_names_are_shown_as_text_not_markdown(with_run, tiny_data):
    at = open_page("classify")
    cat = next((tiny_data / "test" / "cat").iterdir()).read_bytes()
    at.file_uploader[0].set_value([(name, cat if i % 2 else b"not an image", "image/png") for i, name in enumerate(HOSTILE_NAMES)])
    at.run()
    assert not at.exception
    assert [t.value for t in at.text] == HOSTILE_NAMES  # verbatim, as plain text
    for element in [*at.markdown, *at.error, *at.caption]:
        for name in HOSTILE_NAMES:  # never fed to Markdown
            assert name not in element.value and "](" not in element.value, element.value
    assert len(at.error) == 2 and all(unescape(e.value).startswith("Could not classify this file: not a readable image") for e in at.error)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=60))
def test_plain_text_renders_as_itself_in_commonmark(text):
    rendered = MarkdownIt("commonmark").render(plain(text))
    inner = rendered.removeprefix("<p>").removesuffix("</p>\n").removeprefix("\u2068").removesuffix("\u2069")  # RTL isolated
    assert "<" not in inner, (text, rendered)  # no element inside: no link, image, emphasis, heading, code
    assert " ".join(html.unescape(inner).split()) == " ".join(text.replace("\0", "\ufffd").split())


def test_a_damaged_run_index_is_a_message_on_every_page(tmp_path, monkeypatch):
    art = tmp_path / "damaged"
    art.mkdir()
    (art / "runs.db").write_bytes(b"")
    monkeypatch.setenv("CIFAR_ARTIFACTS", str(art))
    for name in ("home", "runs", "train"):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
        if name != "home":
            at.switch_page(f"app_pages/{name}.py").run()
        assert not at.exception, [e.value for e in at.exception]
        assert any("is empty (0 bytes)" in unescape(e.value) for e in at.error), name


def test_server_config_is_safe_by_default(with_run):
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] in ("localhost", "127.0.0.1")
    assert config["client"]["showErrorDetails"] in ("none", False)
    assert config["server"].get("enableXsrfProtection", True) is True
    from cifar_core.data.image_limits import MAX_FILE_BYTES

    # The weights upload (no limit of its own) must take VGG16's ImageNet base, 58,889,256 bytes.
    assert config["server"]["maxUploadSize"] * 2**20 > 58_889_256
    at = open_page("classify")
    assert at.file_uploader[0].proto.max_upload_size_mb * 2**20 == MAX_FILE_BYTES


# ---------------------------------------------------------------- run states from the store and the process


def _stopped_copy(store_root: Path, tiny_store: RunStore, summary: dict, run_summary: dict) -> str:
    """A stopped run (a copy of the tiny run's model) in the store at `store_root`; its id."""
    from cifar_core.config import TrainConfig

    import subprocess
    import sys

    store = RunStore(store_root)
    run = store.create(TrainConfig.from_dict(tiny_store.get(summary["run_id"]).config), exclusive=False)
    shutil.copy(tiny_store.get(summary["run_id"]).model_path, run.model_path)
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        store.set_pid(run.id, trainer.pid)  # trained by a process of its own, as the launcher's runs are
    finally:
        trainer.kill()
        trainer.wait()
    store.finish(run.id, "stopped", summary=run_summary)
    return run.id


def test_a_resumed_run_shows_live_with_its_own_pid_and_start_disabled(with_run, tmp_path, monkeypatch):
    """Resume on the Train page: the page shows the run training under the training's pid (never 'failed' with
    the server's), Start and Resume are gone or disabled while it trains, and when its process ends the page says so."""
    import subprocess
    import sys

    tiny_store, summary = with_run
    root = tmp_path / "artifacts"
    run_id = _stopped_copy(root, tiny_store, summary, {"epochs_completed": 1, "best_val_accuracy": 0.5, "test_accuracy": 0.5})
    monkeypatch.setenv("CIFAR_ARTIFACTS", str(root))
    trainers = []

    def spawn(run, store, args):  # the launcher's hand-over, with a stand-in for `train --resume`
        trainers.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]))
        store.set_pid(run.id, trainers[-1].pid)
        return store.get(run.id)

    monkeypatch.setattr(launcher, "_spawn", spawn)
    at = open_page("train")
    assert f"Latest run: {run_id}" in [s.value for s in at.subheader]
    at.button(key="resume_latest").click().run()
    try:
        assert len(trainers) == 1
        assert f"Training run {run_id}" in [s.value for s in at.subheader], shown(at.main)
        assert f"pid {trainers[0].pid}" in shown(at.main) and "failed" not in shown(at.main)
        assert not at.error and not [b for b in at.button if b.key == "resume_latest"]
        assert at.button(key="FormSubmitter:train_form-Start training").disabled
        assert RunStore(root).get(run_id).status == "queued"
        # A second Resume (a click that lands before the page redrew) starts nothing.
        with pytest.raises(Exception, match="already training"):
            launcher.resume_training(run_id, RunStore(root))
        assert len(trainers) == 1
    finally:
        for proc in trainers:
            proc.kill()
            proc.wait()
    at.run()  # its process is gone: the store marks it failed, naming the training's own pid
    assert f"Run {run_id} failed." in [e.value for e in at.error]
    assert f"pid {trainers[0].pid}" in shown(at.main)
    assert not at.button(key="FormSubmitter:train_form-Start training").disabled


def test_a_run_stopped_before_its_first_epoch_is_marked_not_usable(with_run, tmp_path, monkeypatch):
    tiny_store, summary = with_run
    root = tmp_path / "artifacts"
    shutil.copytree(tiny_store.root, root)
    run_id = _stopped_copy(root, tiny_store, summary, {"epochs_completed": 0, "test_accuracy": 0.102})
    monkeypatch.setenv("CIFAR_ARTIFACTS", str(root))
    at = open_page("train")
    assert any("not usable" in w.value and run_id in w.value for w in at.warning), shown(at.main)
    assert f"Run {run_id} stopped:" not in shown(at.main)  # not the green "stopped: test accuracy 10.2%"
    picker = at.selectbox(key="model_pick")
    assert picker.value == summary["run_id"] and run_id not in picker.options  # never offered, never the default
    at = open_page("runs")
    assert at.dataframe[0].value.loc[run_id, "status"] == "not usable"
