"""Class names are the user's text: file names built from them are valid, and charts show them literally."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar_core.data import identity
from cifar_core.views import plots
from cifar_core.base.paths import FILE_PART_BYTES, file_part
from tests.conftest import synthetic_images

ROOT = Path(__file__).resolve().parent.parent
# Ten names a classes.json or a data folder may hold: Markdown, HTML, a path, right-to-left text, 200 characters...
HOSTILE_CLASSES = [
    "![b](http://127.0.0.1:9/beacon.png)", "<img src=http://127.0.0.1:9/x>", "cats/dogs", "قطة", "חתול",
    "x" * 200, "**bold**", ":red[x]", "$x$", "..",
]


IMAGES_PER_CLASS = 20  # the Kaggle layout holds out 10% of them as the test split: 2 per class


def hostile_model(root: Path, names: list[str]) -> tuple[Path, Path, Path]:
    """The shipped model renamed to `names` (its classes.json) and a tiny dataset labelled with them, in the Kaggle
    layout (its labels file can hold a "/", which no folder name can): (artifacts, model folder, data folder)."""
    data = root / "data"
    (data / "train").mkdir(parents=True)
    x, y = synthetic_images(IMAGES_PER_CLASS, seed=5)
    with open(data / "trainLabels.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "label"])
        for i, (image, label) in enumerate(zip(x, y), start=1):
            Image.fromarray(image).save(data / "train" / f"{i}.png")
            writer.writerow([i, names[label]])
    artifacts = root / "artifacts"
    artifacts.mkdir()
    shipped = artifacts / "default"
    shutil.copytree(ROOT / "artifacts" / "default", shipped, ignore=shutil.ignore_patterns("test_probs.npz", "*.png"))
    (shipped / "classes.json").write_text(json.dumps({"class_names": names}), encoding="utf-8")
    config = json.loads((shipped / "config.json").read_text())
    (shipped / "config.json").write_text(json.dumps({**config, "data_dir": str(data)}))
    # The dataset it learned (issue 24): this data, so that it is the default model while the data is active.
    identity.write_record(shipped, identity.record_for(str(data), tuple(names)))
    return artifacts, shipped, data


@pytest.mark.parametrize("name", [*HOSTILE_CLASSES, "CON", "nul.txt", "a\\b:c*d?e", "é" * 150, ". hidden ."])
def test_a_file_part_is_one_valid_name_of_bounded_length(tmp_path, name):
    part = file_part(name)
    assert part and "/" not in part and "\\" not in part and "\0" not in part and part not in (".", "..")
    assert len(part.encode()) <= FILE_PART_BYTES and not part.endswith((".", " ")) and not part.startswith((".", " "))
    assert part.split(".")[0].upper() not in ("CON", "NUL")
    (tmp_path / f"001_{part}.png").write_bytes(b"x")  # the file system takes it as one file in the folder
    assert [p.name for p in tmp_path.iterdir()] == [f"001_{part}.png"]


def test_file_parts_keep_readable_names_and_different_names_apart():
    assert file_part("cat") == "cat" and file_part("قطة") == "قطة" and file_part("snow leopard") == "snow leopard"
    assert file_part("cats/dogs").startswith("cats_dogs~")
    assert len({file_part(n) for n in ("a/b", "a_b", "a:b", "a?b")}) == 4


def test_predict_writes_overlays_for_a_class_name_with_a_slash(tmp_path, capsys):
    from cifar_core.cli.main import main

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copy(ROOT / "artifacts" / "default" / "model.keras", model_dir / "model.keras")
    names = ["cats/dogs" if i == 0 else f"../{i}" for i in range(10)]  # every top class holds a "/"
    (model_dir / "classes.json").write_text(json.dumps({"class_names": names}))
    images = []
    for i, colour in enumerate([(200, 30, 30), (30, 200, 30)]):
        images.append(tmp_path / f"in{i}.png")
        Image.fromarray(np.full((32, 32, 3), colour, np.uint8)).save(images[-1])
    out = tmp_path / "overlays"
    assert main(["predict", "--model", str(model_dir), "--gradcam", str(out), *map(str, images)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    written = sorted(out.iterdir())
    assert len(rows) == 2 and len(written) == 2  # nothing written anywhere else (a "../" name stays in the folder)
    assert sorted(Path(r["gradcam"]) for r in rows) == written
    for row in rows:
        assert row["top"][0]["label"] in names and Image.open(row["gradcam"]).size == (128, 128)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["in0.png", "in1.png"]  # only the inputs beside the folder


def test_charts_show_class_names_as_text_not_html():
    names = tuple(HOSTILE_CLASSES)
    cm = np.arange(100).reshape(10, 10)
    fig = plots.confusion_figure(cm, names, highlight=(0, 1))
    assert list(fig.layout.xaxis.tickvals) == list(names)  # a click still reports the names themselves
    assert fig.layout.xaxis.type == "category" and "&lt;img src=http://127.0.0…" in fig.layout.xaxis.ticktext
    assert "**bold**" in fig.layout.xaxis.ticktext and max(map(len, fig.layout.yaxis.ticktext)) <= plots.TICK_CHARS + 6
    assert "true &lt;img src=http://127.0.0.1:9/x&gt;<br>" in fig.data[1].text[10]  # the hover text has the whole name
    assert all("<img" not in t for t in fig.data[1].text)
    probs = plots.probs_figure(dict(zip(names, np.linspace(0, 1, 10))))
    assert "&lt;img src=http://127.0.0.1:9/x&gt;" in probs.data[0].y and not any("<img" in y for y in probs.data[0].y)
    assert len(set(probs.data[0].y)) == 10  # two long names with one beginning stay two bars
    emb = plots.embedding_figure(np.zeros((10, 2)), np.arange(10), np.roll(np.arange(10), 1), names)
    assert not any("<img" in (t.name or "") or any("<img" in s for s in t.text) for t in emb.data)


def test_the_confusion_png_draws_dollar_signs_as_text():
    png = plots.confusion_png(np.eye(3, dtype=int), ("$x$", "$\\frac{$", "a"))  # a bad formula would fail the drawing
    assert png.startswith(b"\x89PNG")


def test_the_model_card_writes_class_names_as_text():
    from types import SimpleNamespace

    from markdown_it import MarkdownIt

    from cifar_core.predict.evaluate import Interpretation
    from cifar_core.ship.publish import model_card

    names = ("![b](http://127.0.0.1:9/beacon.png)", "a|b", "**bold**")
    interp = Interpretation(np.eye(3)[[0, 1, 2, 1, 0, 2]], np.array([0, 1, 2, 0, 1, 2]), names)
    run = SimpleNamespace(id="r1", status="completed", config={"weights": "none"}, summary={}, started=0.0, finished=60.0)
    card = model_card(run, interp, data_note="", machine_note="")
    html = MarkdownIt("commonmark").enable("table").render(card)
    assert not re.search(r"<img[^>]*127\.0\.0\.1", html) and "<strong>bold" not in html
    assert html.count("127.0.0.1") >= 3 and "<td>a|b</td>" in html  # the name, as text, in one table cell


@pytest.mark.parametrize("page", ["home", "classify", "predictions", "train", "runs"])
def test_a_model_with_an_unusable_classes_json_is_a_message_on_the_pages(tmp_path, monkeypatch, tiny_data, page):
    from html import unescape

    from streamlit.testing.v1 import AppTest

    shipped = tmp_path / "default"
    shutil.copytree(ROOT / "artifacts" / "default", shipped, ignore=shutil.ignore_patterns("*.png", "test_probs.npz"))
    (shipped / "classes.json").write_text(json.dumps({"class_names": ["cat"] * 10}))
    monkeypatch.setenv("CIFAR_DEFAULT_MODEL_DIR", str(shipped))
    monkeypatch.setenv("CIFAR10_DIR", str(tiny_data))  # Home lists the classes only once there is data
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    if page != "home":
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    said = [unescape(e.value).replace("\\", "") for e in at.error]
    if page == "train":  # the model is still offered as a base (its weights are fine), labelled
        assert not said and any("unusable classes.json" in str(o) for s in at.selectbox for o in s.options)
    else:
        assert any("each class must be named once; repeated: 'cat'" in s for s in said), said


@pytest.mark.parametrize("page", ["predictions", "classify"])
def test_a_classes_json_of_another_model_is_a_message_where_the_model_is_used(tmp_path, monkeypatch, tiny_data, page):
    from html import unescape

    from streamlit.testing.v1 import AppTest

    from cifar_core.data.classes import CLASS_NAMES

    shipped = tmp_path / "default"
    shutil.copytree(ROOT / "artifacts" / "default", shipped, ignore=shutil.ignore_patterns("*.png", "test_probs.npz"))
    (shipped / "classes.json").write_text(json.dumps({"class_names": list(CLASS_NAMES[:9])}))  # the model has 10 outputs
    config = json.loads((shipped / "config.json").read_text())
    (shipped / "config.json").write_text(json.dumps({**config, "data_dir": str(tiny_data)}))
    monkeypatch.setenv("CIFAR_DEFAULT_MODEL_DIR", str(shipped))
    monkeypatch.setenv("CIFAR10_DIR", str(tiny_data))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
    at.switch_page(f"app_pages/{page}.py").run()
    if page == "classify":
        image = next((tiny_data / "test" / "cat").iterdir())
        at.file_uploader[0].set_value([(image.name, image.read_bytes(), "image/png")]).run()
    assert not at.exception, [e.value for e in at.exception]
    said = [unescape(e.value).replace("\\", "") for e in at.error]
    assert any("names 9 classes but the model beside it has 10 outputs" in s for s in said), said


@pytest.mark.parametrize("page", ["home", "classify", "predictions", "error_analysis"])
def test_no_page_feeds_a_class_name_to_markdown(tmp_path, monkeypatch, page):
    """The fast check of what the browser test sees: every Markdown element (text, captions, headings, alerts,
    labels and help) holds the class names only escaped, whatever page shows them."""
    from streamlit.testing.v1 import AppTest

    from studio.text import plain

    names = [n for n in HOSTILE_CLASSES if n != ".."] + ["[link](http://127.0.0.1:9/l)"]
    artifacts, shipped, data = hostile_model(tmp_path, names)
    monkeypatch.setenv("CIFAR_ARTIFACTS", str(artifacts))
    monkeypatch.setenv("CIFAR_DEFAULT_MODEL_DIR", str(shipped))
    monkeypatch.setenv("CIFAR10_DIR", str(data))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
    if page != "home":
        at.switch_page(f"app_pages/{page}.py").run()
    if page == "classify":
        at.file_uploader[0].set_value([("1.png", (data / "train" / "1.png").read_bytes(), "image/png")]).run()
    assert not at.exception, [e.value for e in at.exception]
    elements = [*at.markdown, *at.caption, *at.subheader, *at.error, *at.warning, *at.info, *at.success]
    texts = [e.value for e in elements] + [w.label for w in (*at.selectbox, *at.multiselect, *at.toggle)]
    texts += [w.help for w in (*at.selectbox, *at.multiselect, *at.toggle, *at.metric) if w.help]
    marked_up = [n for n in names if re.search(r"[!-/:-@\[-`{-~]", n)]  # names Markdown would read as markup
    leaks = [(n, t) for t in texts for n in marked_up if n in t]
    assert not leaks, leaks
    escaped = [n for n in marked_up if any(plain(n) in t for t in texts)]  # what was shown, escaped
    assert escaped == marked_up if page in ("home", "predictions") else escaped  # Home lists every class, each tile its own


def test_an_old_runs_unusable_classes_json_does_not_stop_the_runs_list(tmp_path):
    from types import SimpleNamespace

    from cifar_core.runs.outcome import class_count

    (tmp_path / "classes.json").write_text("{broken")
    run = SimpleNamespace(summary={}, config={}, dir=tmp_path)  # a run from before class lists were recorded
    assert class_count(run) == 10  # such runs trained on CIFAR-10; using its model says what is wrong with the file
