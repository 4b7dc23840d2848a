"""Train: configure a run, launch it in the background, watch every stage live, stop or resume it."""

import streamlit as st

from studio import state
from studio.text import plain
from cifar_core.base.intervals import interval_text
from cifar_core.runs import launcher
from cifar_core.runs import model_choice
from cifar_core.runs import outcome
from cifar_core.views import plots
from cifar_core.runs import run_progress
from cifar_core.training import start_choice
from cifar_core.model import start_weights
from cifar_core.views import train_form
from cifar_core.config import ConfigError, field_kind
from cifar_core.runs.record import Run, RunBusyError, RunError

st.title("Train")
store = state.store()


@st.fragment(run_every=2)
def run_panel(shown: str | None) -> None:
    """The live run, or else the latest run's outcome, as the run store and its process say now,
    refreshed every 2 seconds. `shown` is the live run's id when the page was drawn (None: none was)."""
    active = store.active()  # a run whose process has died is marked failed here
    if (active.id if active else None) != shown:
        st.rerun()  # a run started or ended: redraw the whole page (the live view, the Start button)
    if active is not None:
        live_view(active)
    elif (latest := store.list()[0] if store.list() else None) is not None:
        finished_view(latest.id)
    if st.session_state.get("train_error"):
        st.error(plain(st.session_state.pop("train_error")), icon=":material/block:")


def live_view(run: Run) -> None:
    """The live run: its stage, progress, curves and the stop button."""
    st.subheader(f"Training run {run.id}")
    st.caption(f"{run.status} · training process pid {run.pid}")
    batches = store.metrics(run.id, "batch")
    epochs = store.metrics(run.id, "epoch")
    progress = run_progress.live_progress(run, batches)
    st.progress(progress.fraction, text=progress.text)
    if choice := run.summary.get("start_choice"):
        st.caption(plain(start_choice.describe(choice)))
    if run.stop_requested:
        st.warning("Stop requested: training ends after the current batch; the best model so far is then evaluated "
                   "on the test set and kept. The line above says what the run is doing until it is final.",
                   icon=":material/hourglass:")
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
    """The outcome of the latest run: its result, or why it failed, and what to do next."""
    try:
        run = store.get(run_id)
    except RunError:
        return  # deleted meanwhile
    st.subheader(f"Latest run: {run.id}")
    summary = run.summary
    if choice := summary.get("start_choice"):
        st.caption(plain(start_choice.describe(choice)))
    not_learned = outcome.verdict(run)
    if run.status == "failed":
        st.error(f"Run {run.id} failed.", icon=":material/error:")
        st.text(run.error or "(no error recorded)")
        with st.expander("Process output"):
            st.code(launcher.process_log(run) or "(no output)", language=None)
    elif not outcome.usable(run):
        st.warning(f"Run {run.id} {run.status} before its first epoch ended: **not usable**. Its model holds untrained "
                   f"weights (test accuracy {summary.get('test_accuracy') or 0:.1%}, chance level), so it is never offered as "
                   "a model; resume it to train it.", icon=":material/warning:")
    elif not_learned:
        st.error(f"Run {run.id} {run.status} but **did not learn**: its validation accuracy "
                 f"({(summary.get('val_accuracy') or 0):.1%}) is at chance level ({1 / outcome.class_count(run):.0%} for "
                 f"{outcome.class_count(run)} classes). It is never chosen as the default model.",
                 icon=":material/error:")
        st.text("Likely reasons:\n- " + "\n- ".join(summary.get("did_not_learn") or outcome.likely_reasons(run.config, summary)))
    else:
        test_acc = summary.get("test_accuracy")
        interval = interval_text(test_acc, summary.get("test_images"))  # 100% on 10 images means little: say so
        st.success(f"Run {run.id} {run.status}" + (f": test accuracy {test_acc:.1%}" if test_acc is not None else "")
                   + (f" ({interval})" if interval else "") + f" after {summary.get('epochs_completed', 0)} epoch(s).",
                   icon=":material/check_circle:")
    left, right = st.columns(2)
    if run.status == "completed" and outcome.usable(run) and not not_learned:
        use_model_button(run, left)
    if run.status in ("stopped", "failed") and (blocked := start_weights.missing_start_weights(run.config)):
        left.info(plain(blocked), icon=":material/block:")  # instead of a Resume that can only fail again
    elif run.status in ("stopped", "failed"):
        # Drawn only while no run is live (the panel shows the live one then); a second click that
        # lands before the page has redrawn is refused by the store (RunBusyError), never a second --resume.
        if left.button("Resume this run", icon=":material/play_arrow:", key="resume_latest",
                       help="continue from its last completed epoch (train --resume)", on_click=resume, args=(run.id,)):
            st.rerun()  # the whole page: the live view, and Start disabled
    if right.button("New run from these settings", icon=":material/content_copy:", key="copy_latest",
                    on_click=state.fill_train_form, args=(run.config, f"run {run.id}")):
        st.rerun()  # the form lies outside this fragment
    epochs = store.metrics(run.id, "epoch")
    if not epochs.empty:
        st.plotly_chart(plots.curves_figure(epochs, "Per epoch"), key="done_epochs")


def use_model_button(run: Run, where) -> None:
    """"Use this model": the finished run and the dataset it learned become the active model and dataset."""
    choice = model_choice.resolve_model(store, run.id)
    data_key = state.dataset_key_for(choice)
    active = state.active_model()
    if active is not None and active.key == run.id and data_key == state.active_data_key():
        where.caption("This run is the active model, on the dataset it learned.")
    elif data_key is None:
        where.caption(plain(f"The dataset this run learned ({choice.dataset_name}) is not here any more."))
    elif where.button("Use this model", type="primary", icon=":material/check_circle:", key="use_latest",
                      help=f"make run {run.id} the active model, and {state.data_label(data_key)} the active dataset"):
        state.use_model(run.id, data_key)


def resume(run_id: str) -> None:
    try:
        launcher.resume_training(run_id, store)
    except RunBusyError as err:
        # A passing note: the panel shows the live run itself, for as long as it trains.
        st.toast(plain(err), icon=":material/block:")
    except RunError as err:
        st.session_state["train_error"] = str(err)


active = store.active()
run_panel(active.id if active else None)

st.header("New training", divider="gray")
if unwritable := store.cannot_write():  # a read-only folder or a full disk: said before the form is filled in
    st.warning(f"No training can start now: {plain(unwritable)}.", icon=":material/block:")
if not state.data_available():
    st.warning("No CIFAR-10 data folder is set: fill in the data folder below (see the sidebar for the accepted layouts).",
               icon=":material/warning:")
if active is not None:
    st.caption("One training runs at a time: a new one can start when this one ends or is stopped.")

preset = st.selectbox("Start from", list(train_form.PRESETS), format_func=lambda key: train_form.PRESETS[key].name,
                      key="train_preset", help="fills the form below; every value can still be changed (CLI: train --preset KEY, "
                      f"one of {', '.join(train_form.PRESETS)})")
st.caption(train_form.PRESETS[preset].help)
copied = st.session_state.get("form_source")
active_data = state.active_data_dir() or ""  # the sidebar's dataset: what the form trains on
if st.session_state.get("form_preset") != preset or "cfg_seed" not in st.session_state:
    # A new preset, or a visit after another page (Streamlit forgets the widgets of pages
    # not shown), refills the form; edits are kept across this page's reruns.
    values = {**train_form.form_defaults(preset), **({"data_dir": active_data} if active_data else {})}
    for f in train_form.form_fields():
        st.session_state[f"cfg_{f.name}"] = train_form.widget_value(f, values[f.name])
    st.session_state["form_preset"] = preset
    st.session_state.pop("form_source", None)
elif copied:
    st.info(f"The form holds the settings of {copied}.", icon=":material/content_copy:")
elif st.session_state.get("form_data", active_data) != active_data:
    st.session_state["cfg_data_dir"] = active_data  # another dataset was picked in the sidebar
st.session_state["form_data"] = active_data

base_models = train_form.base_model_choices(store)
data_classes = train_form.data_class_names(st.session_state.get("cfg_data_dir"))
with st.form("train_form"):
    slots = {}
    for section, fields in train_form.sections().items():
        st.subheader(section)
        cols = st.columns(3)
        for i, f in enumerate(fields):
            with cols[i % 3]:
                label, help_text, key = f.metadata["label"], f.metadata["help"], f"cfg_{f.name}"
                if f.metadata["choices"]:
                    st.selectbox(label, f.metadata["choices"], key=key, help=help_text)
                elif field_kind(f) == "bool":
                    st.toggle(label, key=key, help=help_text)
                else:
                    st.text_input(label, key=key, help=help_text)
                if f.name == "weights":
                    st.selectbox("…or a trained model's base (transfer learning)", ["—"] + list(base_models),
                                 key="cfg_weights_model", help="the convolutional base of one of your models, with a new head for "
                                 "this run's classes; use the same architecture and width, and choose Phase 1/2 settings for transfer")
                    st.file_uploader("…or upload a base weights file", type=["h5"], key="cfg_weights_upload",
                                     help="a .weights.h5 / .h5 file holding the full convolutional base (include_top=False), "
                                          f"up to {st.get_option('server.maxUploadSize')} MB (the server's maxUploadSize)")
                if f.name == "classes" and data_classes:
                    st.caption(f"Classes in the data folder: {', '.join(map(plain, data_classes))}")
                slots[f.name] = st.empty()
    submitted = st.form_submit_button("Start training", type="primary", icon=":material/play_arrow:",
                                      disabled=active is not None or bool(unwritable),
                                      help=f"run {active.id} is training: one runs at a time" if active else unwritable)

if submitted:
    values = {f.name: st.session_state[f"cfg_{f.name}"] for f in train_form.form_fields()}
    upload = st.session_state.get("cfg_weights_upload")
    if st.session_state.get("cfg_weights_model", "—") != "—":
        values["weights"] = base_models[st.session_state["cfg_weights_model"]]
    try:
        if upload is not None:
            values["weights"] = str(train_form.save_uploaded_weights(upload.name, upload.getvalue()))
        config = train_form.check_data(train_form.config_from_form(values))
        run = launcher.start_training(config, store)
    except ConfigError as err:
        for name, message in err.errors.items():
            (slots[name] if name in slots else st).error(plain(message), icon=":material/error:")
        st.error(f"{len(err.errors)} setting(s) need fixing before the training can start.")
    except RunError as err:  # RunBusyError (one at a time), or no room to write the run
        st.error(plain(err), icon=":material/block:")
    except OSError as err:  # the uploaded weights could not be kept (a full disk)
        st.error(f"The weights file could not be kept: {plain(err.strerror or err)}.", icon=":material/block:")
    else:
        st.rerun()
