"""The Data page: import an archive or a folder, read a dataset's health report, pick the active dataset.

AppTest runs the real app.py (navigation, sidebar, page); the datasets are a few PNGs per class made here.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_pages import no_shipped_model, open_page, shown, unescape, with_data, with_run  # noqa: F401 (fixtures)

# A class name that would fetch a URL, render bold and link if it reached Markdown.
HOSTILE = "![b](http:﹕﹕127.0.0.1:9﹕x.png) **bold** [link](javascript:x) :red[red] <b>"
CLASSES = ("cat", "dog", HOSTILE)


def png(seed: int, size: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def write_dataset(root: Path, *, train: int = 4, test: int = 2, missing_test: str | None = None) -> Path:
    """train/<class>/ and test/<class>/ folders of random PNGs (all different), plus one exact copy of a
    training image in test (a leak); `missing_test` has no test folder (a blocking problem)."""
    seed = 0
    for cls in CLASSES:
        for split, n in (("train", train), ("test", test)):
            if split == "test" and cls == missing_test:
                continue
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                seed += 1
                (folder / f"{i}.png").write_bytes(png(seed))
    (root / "test" / "cat" / "leak.png").write_bytes((root / "train" / "cat" / "0.png").read_bytes())
    return root


def open_data_page(at_url_data: str | None = None):
    at = open_page("data")
    if at_url_data is not None:
        at.query_params["data"] = at_url_data
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def button(at, label: str):
    return next(b for b in at.button if b.label == label)


def test_the_data_page_is_in_the_navigation_and_explains_without_data():
    at = open_data_page()
    assert "No dataset imported yet." in shown(at.main)
    assert "No CIFAR-10 folder is set" in shown(at.main)
    assert button(at, "Import").disabled and button(at, "Import a copy").disabled


def test_a_healthy_folder_shows_counts_sizes_duplicates_samples_and_names_as_text(tmp_path, monkeypatch):
    data = write_dataset(tmp_path / "pets")
    monkeypatch.setenv("CIFAR10_DIR", str(data))
    at = open_data_page()
    text = unescape(shown(at.main))
    assert not [e.value for e in at.error], "nothing here blocks training"
    assert [m.value for m in at.metric][:2] == ["3", "19"]  # 3 classes; 12 train + 6 test + the leak
    sizes = next(d.value for d in at.dataframe if "size" in d.value.columns)
    assert sizes.values.tolist() == [["32x32", 19]]
    dup = next(d.value for d in at.dataframe if "kind" in d.value.columns).set_index("kind")
    assert dup.loc["exact", "test images with a copy in train (leak)"] == 1 and dup.loc["exact", "training images with a copy in train"] == 0
    assert "1 test image(s) have a copy in train (1 exact, 0 near" in text  # the leak is a named (non-blocking) warning
    assert "No problem found." not in text
    # The same count is the page's headline: test images with a copy in train.
    assert next(m.value for m in at.metric if m.label == "Leaked test images") == "1"
    assert len(at.get("plotly_chart")) == 1
    # The sample grid (4 training images per class) and the leak's pair; each class named once, the hostile name escaped.
    assert len(at.image) == 3 * 4 + 1
    assert [c.value for c in at.caption if c.value.startswith("exact duplicates")] == ["exact duplicates across train and test"]
    assert f"**{HOSTILE}** · 4 training, 2 test" in text
    for element in [*at.markdown, *at.caption, *at.warning, *at.success]:
        assert "](" not in element.value.replace("\\](", ""), element.value  # every link escaped
        assert "**bold**" not in element.value


def test_a_blocking_problem_is_an_error_that_says_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", str(write_dataset(tmp_path / "pets", missing_test="dog")))
    at = open_data_page()
    errors = [unescape(e.value) for e in at.error]
    assert any("test/ has no folder for: dog" in e and "add test/dog/" in e for e in errors), errors
    assert any(e.startswith("Training on this dataset is blocked until the 1 problem(s) above are fixed") for e in errors)


def zipped(root: Path) -> bytes:
    """A zip of `root`'s class folders inside one wrapping folder (what zipping a folder gives)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(root.rglob("*.png")):
            zf.write(path, f"my-photos/{path.relative_to(root)}")
    return buf.getvalue()


def test_an_uploaded_archive_is_imported_listed_made_active_and_survives_page_changes(tmp_path):
    classes_only = tmp_path / "flat"
    for c, cls in enumerate(("apple", "pear")):
        (classes_only / cls).mkdir(parents=True)
        for i in range(10):
            (classes_only / cls / f"{i}.png").write_bytes(png(100 * c + i))
    at = open_data_page()
    at.file_uploader(key="data_archive_0").set_value([("my photos.zip", zipped(classes_only), "application/zip")]).run()
    at.text_input(key="data_archive_name_0").set_value("fruit").run()
    button(at, "Import").click().run()
    assert not at.exception, [e.value for e in at.exception]
    text = unescape(shown(at.main))
    assert "Imported fruit: 2 classes, 16 training and 4 test images (the test split made from 20% of each class, seed 0)" in text
    assert at.query_params["data"] == "fruit"  # kept in the URL
    assert at.selectbox(key="data_pick").value == "fruit"
    assert "2 classes (folders layout): 16 train, 4 test images" in shown(at.sidebar)
    assert at.dataframe[0].value["name"].tolist() == ["fruit"]
    # 8 training images per class and 4 test images: warned about, never "No problem found".
    assert "No problem found." not in text
    assert "fewer than about 20 per class" in text and "the test split holds only 4 image(s)" in text

    # The upload box is empty again; the same name again is refused in words, nothing replaced...
    assert not at.file_uploader(key="data_archive_1").value and button(at, "Import").disabled
    at.file_uploader(key="data_archive_1").set_value([("again.zip", zipped(classes_only), "application/zip")]).run()
    at.text_input(key="data_archive_name_1").set_value("fruit").run()
    button(at, "Import").click().run()
    assert any("could not be imported" in e.value and "exists already" in unescape(e.value) for e in at.error)

    # ...and the pick holds on the other pages: the Train form's data folder is the dataset's.
    at.switch_page("app_pages/train.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.text_input(key="cfg_data_dir").value.endswith(str(Path("datasets") / "fruit"))
    assert at.selectbox(key="data_pick").value == "fruit"


def test_a_hostile_archive_is_refused_in_words(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../escape/cat/0.png", png(1))
    at = open_data_page()
    at.file_uploader(key="data_archive_0").set_value([("evil.zip", buf.getvalue(), "application/zip")]).run()
    button(at, "Import").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert [e for e in at.error if e.value.startswith("The dataset could not be imported: ")]
    assert not (tmp_path / "escape").exists() and not any((tmp_path / "artifacts" / "datasets").glob("evil*"))


@pytest.mark.parametrize("how", ["link", "picker"])
def test_the_active_dataset_comes_from_the_url_or_the_sidebar(tmp_path, monkeypatch, how):
    monkeypatch.setenv("CIFAR10_DIR", str(write_dataset(tmp_path / "pets")))
    other = write_dataset(tmp_path / "other", missing_test="dog")
    if how == "link":
        at = open_data_page(str(other))
    else:
        at = open_data_page()
        assert at.selectbox(key="data_inspect").value == "default"
        at.text_input(key="data_folder").set_value(str(other)).run()
        button(at, "Use it in place").click().run()
    assert at.query_params["data"] == str(other)
    assert at.selectbox(key="data_pick").value == str(other)
    assert any("test/ has no folder for: dog" in unescape(e.value) for e in at.error)  # the report is the picked one's
    # Back to the default through the sidebar: the URL follows.
    at.selectbox(key="data_pick").set_value("default").run()
    assert at.query_params["data"] == "default" and not at.error


def test_a_stale_link_falls_back_to_the_default_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", str(write_dataset(tmp_path / "pets")))
    at = open_data_page("no-such-dataset")
    assert at.selectbox(key="data_pick").value == "default"
    assert any("Dataset no\\-such\\-dataset not found; using the default." in w.value for w in at.sidebar.warning)


def test_the_dataset_picker_follows_every_pick_in_a_row(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", str(write_dataset(tmp_path / "pets")))
    for name in ("one", "two"):
        write_dataset(tmp_path / "artifacts" / "datasets" / name)
    at = open_data_page()
    for pick in ("one", "two", "default", "one"):  # the URL names the previous pick when the next one is made
        at.selectbox(key="data_pick").set_value(pick).run()
        assert at.selectbox(key="data_pick").value == pick and at.query_params["data"] == pick
        assert at.selectbox(key="data_inspect").value == pick  # the page checks the newly active dataset


def test_the_model_picker_follows_every_pick_in_a_row(with_run, monkeypatch):
    from cifar_core.base.paths import PROJECT_ROOT

    monkeypatch.setenv("CIFAR_DEFAULT_MODEL_DIR", str(PROJECT_ROOT / "artifacts" / "default"))  # a second model
    from cifar_core.runs import model_choice

    keys = [c.key for c in model_choice.model_choices(with_run[0])]
    assert len(keys) == 2
    at = open_page("home")
    for pick in (keys[1], keys[0], keys[1]):
        at.selectbox(key="model_pick").set_value(pick).run()
        assert at.selectbox(key="model_pick").value == pick and at.query_params["model"] == pick


def test_another_layout_is_said_not_checked(tmp_path, monkeypatch):
    from tests.conftest import write_batches

    monkeypatch.setenv("CIFAR10_DIR", str(write_batches(tmp_path / "batches")))
    at = open_data_page()
    assert not at.error and "in the batches layout: the health report reads image-folder datasets" in shown(at.main)


def test_the_train_form_follows_the_picked_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", str(write_dataset(tmp_path / "pets")))
    one = write_dataset(tmp_path / "artifacts" / "datasets" / "one")
    at = open_page("train")
    assert at.text_input(key="cfg_data_dir").value == str(tmp_path / "pets")  # the default: CIFAR10_DIR
    for pick, folder in (("one", one), ("default", tmp_path / "pets")):  # picked while the form is open
        at.selectbox(key="data_pick").set_value(pick).run()
        assert at.text_input(key="cfg_data_dir").value == str(folder)
