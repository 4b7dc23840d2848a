"""Classify: drop in your own images and see what the active model makes of them."""

import math

import numpy as np
import streamlit as st

from studio import explanations, gallery, loading, state
from studio.text import plain
from cifar_core.base.errors import StudioError
from cifar_core.runs import model_choice
from cifar_core.views import plots
from cifar_core.views import previews
from cifar_core.data.image_limits import MAX_FILE_BYTES, MAX_PIXELS, UPLOAD_TYPES


def none_of_these(result, problem: str | None) -> None:
    """Beside the top classes: whether the image looks like none of them, with its score against the threshold."""
    if result.none_of_these:
        st.warning(f"**This looks like none of the classes the model knows.** Its \"none of these\" score "
                   f"{result.ood_score:.2f} is below the threshold {result.ood_threshold:.2f}, which 95% of the model's own "
                   "validation images reach: the classes above are the closest it knows, not an answer.", icon=":material/help:")
    elif result.none_of_these is False:
        st.caption(f"Looks like the images the model learned from: \"none of these\" score {result.ood_score:.2f}, "
                   f"threshold {result.ood_threshold:.2f}.")
    elif problem:
        st.caption(f"No \"none of these\" check for this model: {plain(problem)}")


st.title("Classify")
st.write("Drag images here (or pick them), or take a photo: each is resized to 32×32, as CIFAR-10 images are, and classified.")

model = state.require_model()
upload_col, camera_col = st.columns([3, 2])
files = upload_col.file_uploader("Images", type=UPLOAD_TYPES, accept_multiple_files=True,
                                 help=f"several at once, each up to {MAX_FILE_BYTES // 2**20} MB and {MAX_PIXELS:,} pixels (e.g. "
                                      f"{math.isqrt(MAX_PIXELS):,}×{math.isqrt(MAX_PIXELS):,}); any colour mode or orientation",
                                 max_upload_size=MAX_FILE_BYTES // 2**20)
photo = None
# Behind a switch: the camera widget asks the browser for the camera as soon as it is drawn.
if camera_col.toggle("Use the camera", key="classify_use_camera", help="take a photo with this device's camera and classify it"):
    photo = camera_col.camera_input("Photo", key="classify_camera", help="the photo goes through the same checks as an uploaded image")
# The photo is one more image, classified and shown like the uploads (same checks, same results).
inputs = [(f.name, f.getvalue()) for f in files or []] + ([("camera photo.jpg", photo.getvalue())] if photo else [])
with st.expander("Use a downloaded model bundle instead", icon=":material/folder_zip:"):
    bundle = st.file_uploader("Model bundle (.zip)", type=["zip"], key="classify_bundle", max_upload_size=200,
                              help="a bundle from the Runs page's download or `export --format bundle`: its model with its "
                                   "class names, temperature and \"none of these\" threshold; used on this page only")
if bundle is not None:
    try:
        model = model_choice.bundle_choice(bundle.getvalue(), f"bundle {bundle.name}")
        loading.classifier(model)  # a damaged model, or class names that do not fit it, stop here in words
    except StudioError as err:
        st.error(f"This bundle cannot be used: {plain(err)}", icon=":material/error:")
        st.stop()
    st.caption(f"Classifying with the uploaded bundle {plain(bundle.name)}: {len(model.class_names)} classes "
               f"({plain(', '.join(model.class_names))}).")
toggle_col, layer_col = st.columns([2, 1], vertical_alignment="bottom")
explain = toggle_col.toggle("Show where the model looked", key="classify_explain",
                            help="a heatmap of the parts of the 32×32 image the top class depends on (occlusion or Grad-CAM)")
similar = toggle_col.toggle("Show similar training images", key="classify_similar",
                            help="the training images most like each upload, compared on the model's mid-level feature map (where colours "
                                 "and shapes are): what it has seen that looks like this")
with layer_col:
    cam = explanations.explanation_picker(model, key="classify_cam_layer") if explain else None
if cam is not None:
    explanations.explanation_check(model, cam)
if not inputs:
    st.stop()

ood_problem = loading.none_of_these_problem(model)
results = loading.classifier(model).classify_bytes(inputs)
good = [i for i, r in enumerate(results) if r.error is None]
st.subheader(f"{len(good)} of {len(results)} image(s) classified")
overlays = {}
if cam is not None and good:
    overlays = dict(zip(good, explanations.explanation_overlays(model, cam, np.stack([results[i].image for i in good]))))
found = None
if similar and good:
    found = loading.similar_search(model)
    if found is None:
        st.info("Similar images need the training images: no CIFAR-10 data folder with a train split is set (see the sidebar).",
                icon=":material/image_not_supported:")
for i, ((_, data), result) in enumerate(zip(inputs, results)):
    with st.container(border=True):
        thumb, chart = st.columns([1, 3])
        with thumb:
            preview = previews.thumbnail(data) if result.error is None else None
            if preview is not None:
                st.image(preview, width=160)
            if i in overlays:
                st.image(previews.upscale(overlays[i], 5), width=160, caption=f"{cam.name}: {plain(result.top[0]['label'])}")
            st.text(result.file)  # a user's file name: shown as typed, never as Markdown
        with chart:
            if result.error is not None:
                st.error(f"Could not classify this file: {plain(result.error)}", icon=":material/broken_image:")
            else:
                best = result.top[0]
                st.markdown(f"### {plain(best['label'])} · {best['prob']:.1%}")
                none_of_these(result, ood_problem)  # before the chart: it says how far to trust it
                st.plotly_chart(plots.probs_figure({t["label"]: t["prob"] for t in result.top}, height=160),
                                key=f"top3-{i}", config={"displayModeBar": False})
                t = loading.classifier(model).temperature
                st.caption(f"top {len(result.top)} of {len(model.class_names)} classes · {plain(model.label)}"
                           + (f" · calibrated probabilities (temperature {t:.3f}, fitted on validation images)" if t != 1.0 else ""))
        if found is not None and result.error is None:
            gallery.similar_training_images(result.image, found, model.class_names)
