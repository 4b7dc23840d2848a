"""Runs: every training so far, side by side; compare, download, delete."""


import pandas as pd
import streamlit as st

import studio_ui
from cifar_core import launcher, outcome, plots
from cifar_core.runs import LIVE, RunError

st.title("Runs")
store = studio_ui.store()
runs = store.list()
if not runs:
    st.info("No runs yet: start one on the Train page.", icon=":material/model_training:")
    st.page_link("app_pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

table = pd.DataFrame([outcome.run_row(r) for r in runs]).set_index("run")
st.dataframe(table, column_config={
    "val acc": st.column_config.NumberColumn(format="percent"),
    "test acc": st.column_config.NumberColumn(format="percent"),
    "problem": st.column_config.TextColumn(width="large"),
})
broken = table[table["status"] == "broken"]
if len(broken):
    st.warning(f"{len(broken)} run(s) are broken (their files are incomplete); see the problem column.", icon=":material/warning:")

st.header("Compare curves", divider="gray")
ids = st.multiselect("Runs to overlay", table.index.tolist(), default=table.index.tolist()[:3])
metric = st.segmented_control("Metric", ["val_accuracy", "accuracy", "val_loss", "loss"], default="val_accuracy", required=True)
curves = {run_id: store.metrics(run_id, "epoch") for run_id in ids}
if any(not df.empty for df in curves.values()):
    st.plotly_chart(plots.overlay_figure(curves, metric), key="overlay")
elif ids:
    st.caption("The selected runs have no completed epoch yet.")

st.header("One run", divider="gray")
run_id = st.selectbox("Run", table.index.tolist())
try:
    run = store.get(run_id)
except RunError as err:  # a damaged row whose id is not a run id
    st.error(studio_ui.plain(err), icon=":material/error:")
    st.stop()
left, right = st.columns(2)
with left:
    st.json({"status": run.status, "error": run.error, "config": run.config, "summary": run.summary}, expanded=1)
with right:
    if run.model_path.is_file():
        st.download_button(f"Download model ({run.model_path.stat().st_size / 2**20:.0f} MB)",
                           run.model_path.read_bytes, file_name=f"{run.id}.keras",
                           mime="application/octet-stream", icon=":material/download:")
    else:
        st.caption("This run has no saved model.")
    if st.button("New run from these settings", icon=":material/content_copy:", key=f"copy_{run.id}",
                 help="opens the Train page with this run's settings in the form"):
        studio_ui.fill_train_form(run.config, f"run {run.id}")
        st.switch_page("app_pages/train.py")
    if run.status in ("stopped", "failed") and run.dir is not None and run.dir.is_dir():
        if st.button("Resume", icon=":material/play_arrow:", key=f"resume_{run.id}",
                     help="continue from the last completed epoch (train --resume) and watch it on the Train page"):
            try:
                launcher.resume_training(run.id, store)
            except RunError as err:
                st.error(str(err), icon=":material/block:")
            else:
                st.switch_page("app_pages/train.py")
    elif run.status in LIVE:
        st.page_link("app_pages/train.py", label="Watch it on the Train page", icon=":material/monitoring:")
    with st.popover("Delete this run", icon=":material/delete:"):
        st.write(f"Delete run **{run.id}**, its model and its metrics? This cannot be undone.")
        confirm = st.checkbox(f"Yes, delete {run.id}", key=f"confirm_delete_{run.id}")
        if st.button("Delete", type="primary", disabled=not confirm, key=f"delete_{run.id}"):
            try:
                store.delete(run.id)
            except RunError as err:  # a live run must be stopped first
                st.error(studio_ui.plain(err))
            else:
                st.toast(f"Run {run.id} deleted")
                st.rerun()
