"""Runs: every training so far and the shipped model, side by side; compare, export, download, delete."""


import pandas as pd
import streamlit as st

from studio import loading, state
from studio.text import percent_column, plain
from cifar_core.data import identity
from cifar_core.data.identity import DatasetRecord
from cifar_core.runs import comparable
from cifar_core.ship import bundle, export
from cifar_core.runs import launcher
from cifar_core.runs import model_choice
from cifar_core.runs import outcome
from cifar_core.views import plots
from cifar_core.model import start_weights
from cifar_core.runs.record import LIVE, RunBusyError, RunError

WRAPPED_ROW_PX = 84  # 4 lines of text
EXPORT_LABELS = {"savedmodel": "SavedModel", "tflite": "TFLite", "tflite-int8": "TFLite int8", "onnx": "ONNX"}

st.title("Runs")
store = state.store()
runs = store.list()
if unwritable := store.cannot_write():
    st.warning(f"Runs can be listed, but not started, resumed or deleted now: {plain(unwritable)}.", icon=":material/block:")
choices = model_choice.model_choices(store)
# The shipped model is listed too, so that a user's runs can be compared with it.
shipped = next((c for c in choices if c.key == "default"), None)
# A model whose classes.json or calibration.json is damaged is listed as broken, saying why.
damaged = {c.key: problem for c in choices if (problem := state.model_problem(c))}
if not runs:
    st.info("No runs yet: start one on the Train page.", icon=":material/model_training:")
    st.page_link("app_pages/train.py", label="Go to Train", icon=":material/model_training:")
    if shipped is None:
        st.stop()


def dataset_record(run) -> DatasetRecord | None:
    """The dataset a run learned from (None when its record is damaged or its folder gone: its row says so)."""
    try:
        return identity.read_record(run.dir, run.config) if run.dir is not None else None
    except identity.RecordError:
        return None


records = {r.id: dataset_record(r) for r in runs}
rows = [outcome.run_row(r) for r in runs]
if shipped is not None:
    records[outcome.SHIPPED] = shipped.dataset
    rows.append(outcome.shipped_row(shipped.config, shipped.accuracy, model_choice.history(shipped, store), shipped.folder))
for row in rows:
    if problem := damaged.get("default" if row["run"] == outcome.SHIPPED else row["run"]):
        row.update(status="broken", problem=" ".join(problem.split()))
table = pd.DataFrame(rows).set_index("run")
# Which test set each accuracy was measured on: the dataset a run learned from, right after its status.
table.insert(1, "dataset", [records[name].name if records.get(name) else None for name in table.index])
# Rows tall enough for the settings and a problem to wrap (Streamlit wraps text only in rows taller
# than 4rem), and columns narrow enough to fit beside the sidebar at 1400 px without scrolling.
st.dataframe(table, placeholder="—", row_height=WRAPPED_ROW_PX, column_config={
    "status": st.column_config.TextColumn("status", width=90),
    "dataset": st.column_config.TextColumn("dataset", width=90, help="the dataset the run learned from: its accuracies "
                                           "are on that dataset's own images"),
    "val acc": percent_column("val acc", "validation accuracy of the model kept (the best epoch)", bar=False),
    "test acc": percent_column("test acc", "accuracy on the test images of the run's classes", bar=False),
    "test 95% interval": st.column_config.TextColumn("test 95%", width=95, help="the 95% interval (Wilson) of the test "
                                                     "accuracy on that many test images: on few images it is wide"),
    "classes": st.column_config.TextColumn("classes", width=90),
    "settings": st.column_config.TextColumn("settings", width=200, help="architecture, head, input size · how it started "
                                            "(for the 'Your images' preset: the start it measured and chose, with that start's "
                                            "base and epochs), optimizer, batch size · epochs run of those planned (head + fine-tuning)"),
    "problem": st.column_config.TextColumn("problem", width=200, help="why a run failed, is broken or did not learn; "
                                           "click a cell to read all of it"),
})
if table["dataset"].nunique() > 1:
    st.caption("Each accuracy is measured on its own dataset's images: compare accuracies only between rows of the "
               "same dataset.")
broken = table[table["status"] == "broken"]
if len(broken):
    st.warning(f"{len(broken)} run(s) are broken (a damaged row or file); see the problem column.", icon=":material/warning:")


def curves_of(name: str) -> pd.DataFrame:
    return model_choice.history(shipped, store) if name == outcome.SHIPPED else store.metrics(name, "epoch")


st.header("Compare curves", divider="gray")
keys = {r.id: comparable.data_key(r.config, records[r.id]) for r in runs}
if shipped is not None:
    keys[outcome.SHIPPED] = comparable.data_key(shipped.config, shipped.dataset)
# By default the newest run with curves (an epoch ended: it has a best validation accuracy; a broken run's may
# be lost), the next one on the same data and classes, and the shipped model if it is on them too.
with_curves = [r.id for r in runs if r.summary.get("best_val_accuracy") is not None and table.loc[r.id, "status"] != "broken"]
with_curves += [outcome.SHIPPED] if shipped else []
names = table.index.tolist()
# One dataset at a time: curves and accuracies measured on different test sets are never drawn as one comparison.
groups = comparable.datasets(keys, list(dict.fromkeys(with_curves + names)))
if len(groups) > 1:
    labels = [g.name if [h.name for h in groups].count(g.name) == 1 else f"{g.name} ({i + 1})" for i, g in enumerate(groups)]
    # First the active dataset's runs (those that learned it or a copy of it), when there are any.
    active = state.active_dataset()
    fitting = [name for name in with_curves + names
               if records.get(name) and identity.fit(records[name], active) in (identity.SAME, identity.COPY)]
    shown = st.selectbox("Dataset", range(len(groups)), format_func=lambda i: labels[i],
                         index=next((i for i, g in enumerate(groups) if fitting and g.same_dataset(keys[fitting[0]])), 0),
                         help="runs of one dataset at a time: accuracies on different test sets do not compare")
    st.caption(f"Only the runs that learned {plain(labels[shown])} are listed: accuracies on another dataset's test "
               "images do not compare with these.")
    names = comparable.same_dataset(keys, groups[shown])
    with_curves = [name for name in with_curves if name in names]
same = [name for name in comparable.same_data(keys, (with_curves or names)[0]) if name in with_curves]
default = same[:2] + [name for name in same[2:] if name == outcome.SHIPPED]
ids = st.multiselect("Runs to overlay", names, default=default,
                     help="by default the newest run and others trained on the same data and classes")
if warning := comparable.not_comparable(keys, ids):
    st.warning(plain(warning), icon=":material/compare_arrows:")
metric = st.segmented_control("Metric", ["val_accuracy", "accuracy", "val_loss", "loss"], default="val_accuracy", required=True)
curves = {name: curves_of(name) for name in ids}
if any(not df.empty for df in curves.values()):
    st.plotly_chart(plots.overlay_figure(curves, metric), key="overlay")
elif ids:
    st.caption("The selected runs have no completed epoch yet.")


def export_panel(choice: model_choice.ModelChoice) -> None:
    """A button per export format; an export is offered for download only once it passed its parity check."""
    st.markdown("**Export for other runtimes**")
    if problem := choice.classes_problem:  # an export carries the class names: none without usable ones
        st.error(plain(problem), icon=":material/error:")
        return
    st.caption(f"Each export takes float32 RGB pixels 0–255, shape (N, 32, 32, 3), and returns the model's class probabilities (in the order of its classes.json). "
               f"Before it is offered, it classifies {export.PARITY_IMAGES:,} test images next to the Keras model: the top-1 "
               f"class must agree on at least {export.FLOAT_MIN_AGREEMENT:.1%} of them ({export.INT8_MIN_AGREEMENT:.0%} for int8).")
    data_dir = state.active_data_dir(choice)
    has_data = state.data_available(data_dir)
    out_dir = export.default_out_dir(choice.model_path)
    for fmt, label in EXPORT_LABELS.items():
        button_col, result_col = st.columns([1, 2], vertical_alignment="center")
        clicked = button_col.button(label, key=f"export_{fmt}_{choice.key}", disabled=not has_data, width="stretch",
                                    icon=":material/ios_share:", help=f"export to {label} and check it against the Keras model")
        report = export.read_report(out_dir, fmt)
        if clicked:
            with result_col:
                images = loading.test_set(data_dir, choice.class_names)
                if images is None:  # the active dataset lacks this model's classes (test_set said so)
                    continue
                train = loading.train_set(data_dir, choice.class_names) if fmt == "tflite-int8" else None
                try:
                    with st.spinner(f"Exporting to {label} and checking it against Keras…"):
                        report = export.export_model(choice.model_path, fmt, *images, x_train=train[0] if train else None,
                                                     out_dir=out_dir, classifier=loading.classifier(choice))
                except export.ExportError as err:
                    st.error(plain(err), icon=":material/block:")
                    continue
        if report is None:
            continue
        summary = (f"{report['size_bytes'] / 2**20:.1f} MB (Keras {report['keras_size_bytes'] / 2**20:.1f} MB) · agrees on "
                   f"{report['agreement']:.1%} of {report['images']:,} test images · accuracy {report['export_accuracy']:.1%} "
                   f"(Keras {report['keras_accuracy']:.1%}) · {report['latency_ms']:.1f} ms per image (Keras {report['keras_latency_ms']:.1f} ms)")
        if report["passed"]:
            with result_col:
                st.download_button(f"Download {label}", lambda path=report["path"]: export.download_bytes(path),
                                   file_name=export.download_name(choice.key, fmt), mime="application/octet-stream",
                                   icon=":material/download:", key=f"download_{fmt}_{choice.key}")
                st.caption(summary)
        else:
            result_col.error(plain(f"{export.failure_message(report)} ({summary})"), icon=":material/block:")
    if not has_data:
        st.caption("Exports are checked on the test images: set a data folder (see the sidebar).")


def download_bundle(folder, name: str) -> None:
    """The model as one bundle (.zip) that keeps its class names, temperature and "none of these" threshold."""
    st.download_button(f"Download model bundle ({(folder / 'model.keras').stat().st_size / 2**20:.0f} MB)",
                       lambda: bundle.bundle_bytes(folder), file_name=bundle.download_name(name), mime="application/zip",
                       icon=":material/download:", key=f"bundle_{name}",
                       help="one .zip: model.keras with classes.json, calibration.json, ood.json, the dataset record, config.json, "
                            "the model card and preprocessing.json; `predict --model` and the Classify page load it as it is")


st.header("One run", divider="gray")
run_id = st.selectbox("Run", names)
left, right = st.columns(2)
if run_id == outcome.SHIPPED:
    with left:
        st.json({"status": "shipped", "folder": shipped.folder.name, "config": shipped.config, "test_accuracy": shipped.accuracy}, expanded=1)
    with right:
        download_bundle(shipped.folder, "shipped_model")
        if st.button("New run from these settings", icon=":material/content_copy:", key="copy_shipped",
                     help="opens the Train page with the shipped model's settings in the form"):
            state.fill_train_form(shipped.config, "the shipped model")
            st.switch_page("app_pages/train.py")
        export_panel(shipped)
else:
    try:
        run = store.get(run_id)
    except RunError as err:  # a damaged row whose id is not a run id
        st.error(plain(err), icon=":material/error:")
        st.stop()
    with left:
        st.json({"status": run.status, "error": run.error, "config": run.config, "summary": run.summary}, expanded=1)
    with right:
        if run.model_path.is_file():
            download_bundle(run.dir, run.id)
        else:
            st.caption("This run has no saved model.")
        if st.button("New run from these settings", icon=":material/content_copy:", key=f"copy_{run.id}",
                     help="opens the Train page with this run's settings in the form"):
            state.fill_train_form(run.config, f"run {run.id}")
            st.switch_page("app_pages/train.py")
        resumable = run.status in ("stopped", "failed") and run.dir is not None and run.dir.is_dir()
        if resumable and (blocked := start_weights.missing_start_weights(run.config)):
            st.info(plain(blocked), icon=":material/block:")  # instead of a Resume that can only fail again
        elif resumable:
            live = store.active()  # one training at a time: none can resume while one trains
            if st.button("Resume", icon=":material/play_arrow:", key=f"resume_{run.id}", disabled=live is not None,
                         help=f"run {live.id} is training: one runs at a time" if live else
                         "continue from the last completed epoch (train --resume) and watch it on the Train page"):
                try:
                    launcher.resume_training(run.id, store)
                except RunBusyError as err:  # started since this page was drawn: the Train page shows it
                    st.toast(plain(err), icon=":material/block:")
                except RunError as err:
                    st.error(plain(err), icon=":material/block:")
                else:
                    st.switch_page("app_pages/train.py")
        elif run.status in LIVE and run.unknown:  # never blocks a new run; the user decides what it is
            st.warning(plain(f"This run says {run.status}, but {run.unknown}."), icon=":material/help:")
            if st.button("Mark it failed", icon=":material/healing:", key=f"repair_{run.id}",
                         help="if it no longer trains (e.g. the machine was renamed or restarted); then it can be resumed"):
                try:
                    store.repair([run.id])
                except RunError as err:  # a read-only folder, a full disk
                    st.error(plain(err), icon=":material/block:")
                else:
                    st.rerun()
        elif run.status in LIVE:
            st.page_link("app_pages/train.py", label="Watch it on the Train page", icon=":material/monitoring:")
        with st.popover("Delete this run", icon=":material/delete:"):
            st.write(f"Delete run **{plain(run.id)}**, its model and its metrics? This cannot be undone.")
            confirm = st.checkbox(f"Yes, delete {plain(run.id)}", key=f"confirm_delete_{run.id}")
            if st.button("Delete", type="primary", disabled=not confirm, key=f"delete_{run.id}"):
                try:
                    store.delete(run.id)
                except RunError as err:  # a live run must be stopped first
                    st.error(plain(err))
                else:
                    st.toast(f"Run {plain(run.id)} deleted")
                    st.rerun()
        # Exportable: the models the studio can use (completed or stopped, files intact).
        choice = next((c for c in choices if c.key == run.id), None)
        if choice is not None:
            export_panel(choice)
