"""Data: bring your own images (an archive or a folder), see whether the dataset is healthy, make it the active one.

After Teachable Machine (a few images per class, in the browser) and FiftyOne (import a dataset
first, then look at it). The import and the health check are the engine's (`cifar_core.data.imported`,
`cifar_core.data.health`); this page draws them.
"""

import os
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from studio import gallery, loading, resources, state
from studio.text import plain, printable
from cifar_core.data import duplicates
from cifar_core.data import health as dataset_health
from cifar_core.data import imported as datasets
from cifar_core.data import locate
from cifar_core.views import plots
from cifar_core.views import previews
from cifar_core.data.archive_import import ArchiveError
from cifar_core.data.images import DataError
from cifar_core.data.loader import describe_source

ARCHIVE_TYPES = ["zip", "tar", "gz", "tgz"]  # .tar.gz ends in .gz; the import says when a .gz holds no tar
SAMPLES = 8  # images per class in the grid
TILE = 96  # pixels of a tile's side
COUNT = st.column_config.NumberColumn(format="localized")  # 60,000 rather than 60000
REFUSED = (datasets.DatasetError, ArchiveError, DataError, OSError)  # each says why in words

st.title("Data")
st.write("Bring your own images: an archive or a folder of class folders (`<class>/…`, or `train/<class>/…` and "
         "`test/<class>/…`). Each dataset is checked before anything trains on it: images per class, sizes, unreadable "
         "files, duplicates and leaks between the splits. Pick it as the active dataset (here or in the sidebar) and "
         "the Train, Predictions and Error analysis pages use it.")


def default_name(filename: str) -> str:
    """A dataset name from a file or folder name: its stem (before the first dot)."""
    return Path(filename).name.split(".")[0] or "my-images"


def run_import(source: Path, name: str, replace: bool) -> None:
    """Import `source` as dataset `name` with a progress bar drawn here; on success make it the active dataset."""
    bar = st.progress(0.0, text="Importing…")

    def progress(done: int, total: int, what: str) -> None:
        bar.progress(min(done / max(total, 1), 1.0), text=f"{what.capitalize()}: {done:,}/{total:,}")

    try:
        report = datasets.import_dataset(source, name, replace=replace, progress=progress)
    except REFUSED as err:
        st.error(f"The dataset could not be imported: {plain(err)}", icon=":material/error:")
        return
    finally:
        bar.empty()
    st.session_state["data_imported"] = report
    # New keys empty the upload and name boxes: importing the same archive again is then a new choice.
    st.session_state["data_form"] = st.session_state.get("data_form", 0) + 1
    state.set_active_data(report["name"])
    st.rerun()


# ---------------------------------------------------------------- bring a dataset

form = st.session_state.get("data_form", 0)
with st.container(border=True):
    archive_tab, folder_tab = st.tabs(["Upload an archive", "A folder on this machine"])
    with archive_tab:
        archive = st.file_uploader("Archive of class folders (.zip, .tar, .tar.gz)", type=ARCHIVE_TYPES, key=f"data_archive_{form}",
                                   help="drag it here; with or without one folder around the class folders (what zipping a "
                                        "folder gives). Without train/ and test/ folders, 20% of each class becomes the test split. Up to "
                                        f"{st.get_option('server.maxUploadSize')} MB (the server's maxUploadSize); a bigger "
                                        "dataset: name its folder in the next tab, or `python -m cifar_core data import`.")
        name_col, replace_col = st.columns([3, 1], vertical_alignment="bottom")
        name = name_col.text_input("Dataset name", key=f"data_archive_name_{form}",
                                   placeholder=default_name(archive.name) if archive else "e.g. flowers-5",
                                   help="letters, digits, '-', '_' and '.'; empty: the archive's name")
        replace = replace_col.checkbox("Replace", key="data_archive_replace", help="replace a dataset of this name")
        if st.button("Import", key="data_import_archive", type="primary", icon=":material/upload:", disabled=archive is None):
            with tempfile.TemporaryDirectory() as tmp:
                # The engine reads a file: the upload is written to a private folder, removed after the import.
                path = Path(tmp) / ("upload" + "".join(Path(archive.name).suffixes[-2:]))
                path.write_bytes(archive.getvalue())
                run_import(path, name or default_name(archive.name), replace)
    with folder_tab:
        folder = st.text_input("Folder", key="data_folder", placeholder="/path/to/images",
                               help="a folder on the machine the studio runs on, in either layout")
        name_col, replace_col = st.columns([3, 1], vertical_alignment="bottom")
        folder_name = name_col.text_input("Dataset name", key="data_folder_name",
                                          placeholder=default_name(folder) if folder else "e.g. flowers-5",
                                          help="for 'Import a copy'; empty: the folder's name")
        folder_replace = replace_col.checkbox("Replace", key="data_folder_replace", help="replace a dataset of this name")
        left, right = st.columns(2)
        if left.button("Import a copy", key="data_import_folder", icon=":material/content_copy:", disabled=not folder,
                       help="copies the images (resized to 32×32) into the studio's datasets; makes the test split if "
                            "there is none", width="stretch"):
            run_import(Path(folder), folder_name or default_name(folder.rstrip("/\\")), folder_replace)
        if right.button("Use it in place", key="data_use_folder", icon=":material/folder_open:", disabled=not folder,
                        help="reads the folder where it is: it needs train/<class>/ and test/<class>/ folders", width="stretch"):
            where = os.path.abspath(folder)  # the address keeps it: a relative path would depend on the server's folder
            if refused := state.param_problem(where):
                st.error(f"This folder cannot be used in place: its path {refused}. Import a copy instead.", icon=":material/error:")
            elif state.folder_in_place(where):
                state.set_active_data(where)
                st.rerun()
            else:
                st.error(f"{plain(folder)} is not a folder on this machine.", icon=":material/error:")

if (imported := st.session_state.pop("data_imported", None)) is not None:
    counts = imported["counts"]
    split = imported["split"]
    st.success(f"Imported {plain(imported['name'])}: {len(imported['classes'])} classes, "
               f"{sum(counts['train'].values()):,} training and {sum(counts['test'].values()):,} test images"
               + (f" (the test split made from {split['test_fraction']:.0%} of each class, seed {split['seed']})" if split["made"] else "")
               + ". It is now the active dataset.", icon=":material/check_circle:")
    for problem in imported["problems"]:
        (st.error if problem["blocking"] else st.warning)(plain(problem["message"]), icon=":material/warning:")

# ---------------------------------------------------------------- the datasets

st.header("Datasets", divider="gray")
try:
    listed = datasets.list_datasets()
except REFUSED as err:
    listed = None
    st.error(f"The imported datasets cannot be listed: {plain(err)}", icon=":material/error:")
if listed:
    # Table cells are literal text: names and class names need no Markdown escaping here, only the odd bytes of a
    # name that is not UTF-8 (printable). A damaged dataset is listed with why; the picker below leaves it out.
    st.dataframe(pd.DataFrame([{"name": printable(d["name"]), "classes": len(d["classes"]),
                                "train images": sum(d["counts"]["train"].values()),
                                "test images": sum(d["counts"]["test"].values()),
                                "class names": printable(", ".join(d["classes"])), "folder": printable(d["path"]),
                                "problem": state.dataset_problem(d) or ""} for d in listed]),
                 hide_index=True, width="stretch")
elif listed is not None:
    st.caption("No dataset imported yet.")

options = state.dataset_options()
active = state.active_data_key()
if active not in options:  # a folder used in place
    options[active] = active
keys = list(options)
if st.session_state.get("data_inspect") not in keys or st.session_state.get("data_inspect_active") != active:
    st.session_state["data_inspect"] = active  # a newly active dataset (imported, picked in the sidebar) is shown
st.session_state["data_inspect_active"] = active
picked = st.selectbox("Dataset to check", keys, key="data_inspect", format_func=state.data_label)
if picked == active:
    st.caption("This is the active dataset (the sidebar's).")
elif st.button("Make it the active dataset", icon=":material/check:", type="primary",
               help="Train, Predictions and Error analysis then use it; the choice is kept in the page's address"):
    state.set_active_data(picked)
    st.rerun()

data_dir = locate.resolve_data_dir(options[picked])
if not data_dir:
    st.info("No CIFAR-10 folder is set: start the studio with CIFAR10_DIR set, or import a dataset above.", icon=":material/info:")
    st.stop()
if problem := state.folder_problem(data_dir):
    st.error(f"This dataset cannot be checked: {plain(problem)}", icon=":material/error:")
    st.stop()


# ---------------------------------------------------------------- its health


@st.cache_resource(show_spinner=False, max_entries=8)
def _health_slot(data_dir: str, stamp: str) -> resources.Slot:
    return resources.Slot()  # data only: the caller computes the report, drawing its progress


def health(data_dir: str) -> dict:
    """The health report of `data_dir`, once per version of its files in this server (and on disk: the engine
    keeps the image pass beside the decoded arrays), with a progress bar the first time."""
    info = os.stat(data_dir)
    # A dataset replaced under the same name is a new folder (another inode and time); the counts catch edits in place.
    stamp = f"{info.st_ino}|{info.st_mtime_ns}|{describe_source(data_dir).get('counts')}"
    bar = st.empty()

    def progress(done: int, total: int, what: str) -> None:
        bar.progress(min(done / max(total, 1), 1.0), text=f"Checking every image (once per dataset): {done:,}/{total:,}")

    try:
        return loading.fill(_health_slot(data_dir, stamp), lambda: dataset_health.check_dataset(data_dir, progress=progress),
                            "Another session is checking this dataset…")
    finally:
        bar.empty()


if layout := dataset_health.other_layout(data_dir):
    st.info(f"This dataset is in the {layout} layout: the health report reads image-folder datasets "
            "(train/<class>/ and test/<class>/).", icon=":material/info:")
    st.stop()
try:
    report = health(data_dir)
except REFUSED as err:
    st.error(f"This dataset cannot be checked: {plain(err)}", icon=":material/error:")
    st.stop()

st.header("Health", divider="gray")
st.caption(plain(report["path"]))
blocking = [p for p in report["problems"] if p["blocking"]]
for problem in blocking:
    st.error(plain(problem["message"]), icon=":material/block:")
if blocking:
    st.error(f"Training on this dataset is blocked until the {len(blocking)} problem(s) above are fixed.", icon=":material/block:")
for problem in report["problems"]:
    if not problem["blocking"]:
        st.warning(plain(problem["message"]), icon=":material/warning:")
if not report["problems"]:
    st.success("No problem found.", icon=":material/check_circle:")

counts = report["counts"]
dup = report["duplicates"]
train_n, test_n = sum(counts["train"].values()), sum(counts["test"].values())
c1, c2, c3, c4, c5 = st.columns(5)
c1.metric("Classes", len(report["classes"]))
c2.metric("Images", f"{train_n + test_n:,}", help=f"{train_n:,} training, {test_n:,} test")
c3.metric("Imbalance", f"{report['imbalance']:g}×" if report["imbalance"] else "–",
          help="training images of the largest class over those of the smallest; "
               f"{dataset_health.IMBALANCE_WARNING:g}× or more gets a warning")
c4.metric("Unreadable files", f"{len(report['unreadable']):,}")
c5.metric("Leaked test images", f"{dup['leaked_test_images']:,}",
          help="test images with a copy in train, a leak: their test score partly measures memory (exact and near copies; the table below has all duplicates)")

st.subheader("Images per class")
st.plotly_chart(plots.class_counts_figure(counts), key="data_counts", config={"displayModeBar": False})

sizes_col, modes_col = st.columns(2)
with sizes_col:
    st.markdown("**Image sizes** (width × height)")
    st.dataframe(pd.DataFrame(list(report["sizes"].items()), columns=["size", "images"]), hide_index=True, width="stretch",
                 column_config={"images": COUNT})
with modes_col:
    st.markdown("**Colour modes**", help="RGB: colour; L: greyscale; RGBA: with transparency; P: a palette. "
                "Every image is converted to RGB for training.")
    st.dataframe(pd.DataFrame(list(report["modes"].items()), columns=["mode", "images"]), hide_index=True, width="stretch",
                 column_config={"images": COUNT})

if report["unreadable"]:
    st.subheader("Unreadable files")
    st.dataframe(pd.DataFrame({"file": report["unreadable"]}), hide_index=True, width="stretch")

st.subheader("Duplicates")
st.caption(f"{duplicates.RULE} Counted are images with a copy (one with both kinds counts as exact); a test image with "
           "a copy in train makes the test score partly a measure of memory. Error analysis → Duplicates and leaks and "
           "`inspect` use the same finder.")
st.dataframe(pd.DataFrame(duplicates.count_rows(dup)), hide_index=True, width="stretch")
if dup["examples"]:
    st.caption(f"Examples ({len(dup['examples'])}):")
    for start in range(0, len(dup["examples"]), 4):
        for col, example in zip(st.columns(4), dup["examples"][start:start + 4]):
            with col:
                left, right = (previews.square_tile(Path(report["path"]) / example[side], TILE) for side in ("a", "b"))
                if left is not None and right is not None:
                    across = Path(example["a"]).parts[0] != Path(example["b"]).parts[0]  # train/... and test/...
                    gallery.pair_tile(left, right, f"{example['kind']} duplicates" + (" across train and test" if across else ""))
                st.text(f"{example['a']}\n{example['b']}")  # file names: literal text

st.subheader("Samples per class")
st.caption(f"Up to {SAMPLES} training images per class, spread over its files.")
for cls, files in dataset_health.samples(data_dir, per_class=SAMPLES).items():
    st.markdown(f"**{plain(cls)}** · {counts['train'].get(cls, 0):,} training, {counts['test'].get(cls, 0):,} test")
    tiles = [t for t in (previews.square_tile(f, TILE) for f in files) if t is not None]
    if not tiles:
        st.caption("no readable training image")
    for col, image in zip(st.columns(SAMPLES), tiles):
        col.image(image)
