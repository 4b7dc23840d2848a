"""Train: configure a run, launch it in the background, watch it live, stop it."""

import dataclasses

import streamlit as st

import studio_ui
from cifar_core import launcher, plots, studio
from cifar_core.config import FIELD_HELP, ConfigError, TrainConfig
from cifar_core.data import describe_source
from cifar_core.runs import LIVE, RunError

LABELS = {
    "data_dir": "Data folder", "limit": "Images per class (empty = all)", "val_fraction": "Validation fraction",
    "skip_bad": "Skip unreadable files", "weights": "Base weights", "arch": "Architecture", "input_size": "Input size (px)",
    "cut": "Cut point", "head": "Head", "head_units": "Head layer widths", "dropout": "Dropout",
    "epochs_head": "Epochs, phase 1 (head)", "lr": "Learning rate, phase 1", "epochs_finetune": "Epochs, phase 2 (fine-tune)",
    "finetune_lr": "Learning rate, phase 2", "finetune_freeze": "Phase 2 freezing", "optimizer": "Optimizer",
    "momentum": "Momentum (SGD)", "weight_decay": "Weight decay", "schedule": "LR schedule", "warmup_epochs": "Warmup epochs",
    "label_smoothing": "Label smoothing", "batch_size": "Batch size", "augment": "Augmentation (flip + shift)",
    "patience": "Early-stopping patience (0 = off)", "bf16": "bfloat16 mixed precision", "feature_cache": "Cache frozen features",
    "seed": "Random seed", "strategy": "Distribution strategy",
}
TEXT_FIELDS = ("data_dir", "weights", "head_units", "finetune_freeze", "limit")
DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}

st.title("Train")
store = studio_ui.store()


@st.fragment(run_every=2)
def live_view(run_id: str) -> None:
    """The live run: progress, curves and the stop button, refreshed every 2 seconds."""
    run = store.get(run_id)
    if run.status not in LIVE:
        st.rerun()  # it just ended: redraw the whole page in its finished state
    st.subheader(f"Training run {run.id}")
    batches = store.metrics(run.id, "batch")
    epochs = store.metrics(run.id, "epoch")
    progress = studio.live_progress(run, batches)
    if progress is None:
        st.progress(0.0, text="Starting: loading the data and building the model…")
    else:
        st.progress(progress.fraction, text=progress.describe())
    if run.stop_requested:
        st.warning("Stop requested: the run stops after its current batch and keeps the best model so far.", icon=":material/hourglass:")
    else:
        # A callback, not `if st.button(...)`: it runs even when the 2-second refresh
        # reruns the fragment before the click's own rerun would have.
        st.button("Stop training", type="primary", icon=":material/stop_circle:", key="stop_training",
                  on_click=launcher.stop_training, args=(run.id, store))
    if epochs.empty:
        st.caption("Epoch curves appear when the first epoch ends.")
    else:
        st.plotly_chart(plots.curves_figure(epochs, "Per epoch"), key="live_epochs")
    if not batches.empty:
        st.plotly_chart(plots.batch_figure(batches), key="live_batches")
    with st.expander("Process output"):
        st.code(launcher.process_log(run) or "(nothing yet)", language=None)


def finished_view(run_id: str) -> None:
    """The outcome of the run started from this page."""
    try:
        run = store.get(run_id)
    except RunError:
        return  # deleted meanwhile
    summary = run.summary
    if run.status == "failed":
        st.error(f"Run {run.id} failed: {studio_ui.plain(run.error)}", icon=":material/error:")
        st.code(launcher.process_log(run) or "(no output)", language=None)
        return
    test_acc = summary.get("test_accuracy")
    st.success(f"Run {run.id} {run.status}" + (f": test accuracy {test_acc:.1%}" if test_acc is not None else "")
               + f" after {summary.get('epochs_completed', 0)} epoch(s).", icon=":material/check_circle:")
    epochs = store.metrics(run.id, "epoch")
    if not epochs.empty:
        st.plotly_chart(plots.curves_figure(epochs, "Per epoch"), key="done_epochs")


active = store.active()
if active is not None:
    st.session_state["train_run"] = active.id
    live_view(active.id)
elif st.session_state.get("train_run"):
    finished_view(st.session_state["train_run"])

st.header("New training", divider="gray")
if not studio_ui.data_available():
    st.warning("No CIFAR-10 data folder is set: fill in the data folder below (see the sidebar for the accepted layouts).",
               icon=":material/warning:")
if active is not None:
    st.caption("One training runs at a time: a new one can start when this one ends or is stopped.")

preset = st.selectbox("Start from", list(studio.PRESETS), key="train_preset",
                      help="fills the form below; every value can still be changed")
if st.session_state.get("form_preset") != preset or "cfg_seed" not in st.session_state:
    # A new preset, or a visit after another page (Streamlit forgets the widgets of pages
    # not shown), refills the form; edits are kept across this page's reruns.
    for name, value in studio.form_defaults(preset).items():
        raw = name in studio.FIELD_CHOICES or (isinstance(DEFAULTS[name], int) and name not in TEXT_FIELDS)
        st.session_state[f"cfg_{name}"] = value if raw else studio.form_text(value)
    st.session_state["form_preset"] = preset

with st.form("train_form"):
    slots = {}
    for section, names in studio.FORM_SECTIONS.items():
        st.subheader(section)
        cols = st.columns(3)
        for i, name in enumerate(names):
            with cols[i % 3]:
                label, help_text, key = LABELS[name], FIELD_HELP[name], f"cfg_{name}"
                if name in studio.FIELD_CHOICES:
                    st.selectbox(label, studio.FIELD_CHOICES[name], key=key, help=help_text)
                elif isinstance(DEFAULTS.get(name), bool):
                    st.toggle(label, key=key, help=help_text)
                elif isinstance(DEFAULTS.get(name), int) and name not in TEXT_FIELDS:
                    st.number_input(label, step=1, key=key, help=help_text)
                else:
                    st.text_input(label, key=key, help=help_text)
                if name == "weights":
                    st.file_uploader("…or upload a base weights file", type=["h5"], key="cfg_weights_upload",
                                     help="a .weights.h5 / .h5 file holding the full convolutional base (include_top=False)")
                slots[name] = st.empty()
    submitted = st.form_submit_button("Start training", type="primary", icon=":material/play_arrow:")

if submitted:
    values = {name: st.session_state[f"cfg_{name}"] for names in studio.FORM_SECTIONS.values() for name in names}
    upload = st.session_state.get("cfg_weights_upload")
    if upload is not None:
        values["weights"] = str(studio.save_uploaded_weights(upload.name, upload.getvalue()))
    try:
        config = studio.config_from_form(values)
        data = describe_source(config.resolved_data_dir())
        if not data["ok"]:  # the dashboard never falls back to Keras' download, which needs internet
            raise ConfigError({"data_dir": data["message"]})
        run = launcher.start_training(config, store)
    except ConfigError as err:
        for name, message in err.errors.items():
            (slots[name] if name in slots else st).error(studio_ui.plain(message), icon=":material/error:")
        st.error(f"{len(err.errors)} setting(s) need fixing before the training can start.")
    except RunError as err:  # RunBusyError (one at a time), or no room to write the run
        st.error(studio_ui.plain(err), icon=":material/block:")
    else:
        st.session_state["train_run"] = run.id
        st.rerun()
