"""Home: what to do next, and the active model at a glance."""

import streamlit as st

from studio import state
from studio.pages import PAGES
from studio.text import model_caption, plain
from cifar_core.base.intervals import interval_text
from cifar_core.data.classes import ClassesError
from cifar_core.runs import outcome
from cifar_core.runs.record import RunError


def start_metric(ran: dict, summary: dict) -> tuple[str, str]:
    """(value, help) of how the model started, from what ran: a from-scratch run is never called transfer."""
    weights = str(ran.get("weights"))
    epochs = f"{ran.get('epochs_head', 0)}+{ran.get('epochs_finetune', 0)} epochs (head + fine-tuning)"
    measured = "; the 'Your images' preset measured the starts and chose this one" if summary.get("start_choice") else ""
    if weights == "none":
        return "from scratch", f"random weights, {epochs}{measured}"
    if weights == "imagenet":
        return "ImageNet", f"VGG16's ImageNet weights, {epochs}{measured}"
    if not weights.endswith(".keras"):
        return "a weights file", f"the weights file {plain(weights)}, {epochs}"
    kind = "head only" if not ran.get("epochs_finetune") else "fine-tuned"
    return f"transfer, {kind}", f"the base of the trained model {plain(weights)}, {epochs}{measured}"


def run_summary(run_id: str | None) -> dict:
    """The summary of the model's run ({} for the shipped model, or a run deleted since the page started)."""
    try:
        return state.store().get(run_id).summary if run_id else {}
    except RunError:
        return {}


st.title("CIFAR-10 VGG16 studio")
st.write("Train a VGG16 classifier on CIFAR-10 (or any image-folder dataset, or some of its classes) from your browser, "
         "from scratch or from the base of a model you trained before; inspect its mistakes, and use it.")

model = state.active_model()
if not state.data_available():
    st.subheader("1 · Point the studio at CIFAR-10")
    st.warning("No CIFAR-10 data folder is set, so training and the test-set pages cannot run yet.", icon=":material/warning:")
    st.markdown(
        "Set the `CIFAR10_DIR` environment variable to a CIFAR-10 folder before starting the studio "
        "(`CIFAR10_DIR=/path/to/cifar10 streamlit run app.py`), or type the folder into the Train page's form. "
        "Accepted layouts: `train/<class>/*.png` + `test/<class>/*.png` image folders, Kaggle's "
        "`train/` + `trainLabels.csv`, or the python batches `cifar-10-batches-py/`."
    )
    st.page_link("app_pages/data.py", label="…or bring your own images on the Data page", icon=":material/dataset:")
    if model:
        st.info(f"You can already classify your own images with the {plain(model.label)}.", icon=":material/image_search:")
        st.page_link("app_pages/classify.py", label="Classify images", icon=":material/image_search:")
elif model is None:
    st.subheader("Next: train a model")
    if st.session_state.get(state.MODEL_COUNT):  # models exist, but none learned this dataset or a copy of it
        st.info(f"No usable model fits the dataset {plain(state.active_dataset().describe())} yet: train one, or pick a "
                "model of another dataset in the sidebar (each is labelled with the dataset it learned).",
                icon=":material/model_training:")
    else:
        st.info("The data is ready but there is no trained model yet.", icon=":material/model_training:")
    st.page_link("app_pages/train.py", label="Go to Train", icon=":material/model_training:")
else:
    st.subheader("Active model")
    try:
        classes = model.class_names
    except ClassesError as err:  # its classes.json is unusable: say why; the rest of the page still helps
        st.error(plain(err), icon=":material/error:")
        classes = ()
    summary = run_summary(model.run_id)
    ran = outcome.ran_config(model.config, summary)  # what trained it: the start the "Your images" preset chose
    tested = outcome.test_image_count(model.folder, summary)
    c1, c2, c3 = st.columns(3)
    c1.metric("Test accuracy", f"{model.accuracy:.1%}" if model.accuracy is not None else "–",
              help=f"on the test images of its {len(classes)} classes of {plain(model.dataset_name)}"
                   + (", with test-time augmentation" if ran.get("tta") else "")
                   + (f"; {interval_text(model.accuracy, tested)}" if interval_text(model.accuracy, tested) else ""))
    width = ran.get("width", 1.0)
    arch = ran.get("arch", "?") + (f" ×{width:g}" if ran.get("arch") == "vgg16_bn" and width != 1 else "")
    # Values short enough for a third of the page (a metric cuts what does not fit); the rest in label and help.
    c2.metric(f"Architecture · {ran.get('input_size', '?')} px input", arch,
              help="vgg16_bn is VGG16's layout with BatchNorm after every conv; ×w scales its filters (×0.5: half)")
    value, about = start_metric(ran, summary)
    c3.metric("Starting weights", value, help=about)
    if text := interval_text(model.accuracy, tested):
        st.caption(f"Test accuracy {model.accuracy:.1%}: {text}.")
    st.caption(model_caption(model) + f" · learned {plain(model.dataset_name)} · classes: {', '.join(map(plain, classes))}")
    if not model.matches:  # picked on purpose: its accuracy was measured on its own dataset's test images
        st.warning(plain(f"This model learned {model.dataset_name}, not the active dataset "
                         f"{state.active_dataset().name}: its test accuracy was measured on the test images of "
                         f"{model.dataset_name}."),
                   icon=":material/dataset:")
    if model.run_id is None:
        st.info("The shipped model is a half-width VGG16-BN **trained from scratch** on CIFAR-10 on this project's "
                "2-core CPU machine: no ImageNet weights could be downloaded there, so it is not ImageNet transfer "
                "learning. Its model card (artifacts/default/MODEL_CARD.md) has the exact command, the time it took "
                "and per-class results.", icon=":material/info:")

st.subheader("Pages")
for listed in PAGES:
    if not listed.default:  # Home itself
        st.page_link(listed.file, label=f"{listed.title} — {listed.about}", icon=listed.icon)
