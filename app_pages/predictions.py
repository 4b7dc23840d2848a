"""Predictions: browse the test images with the active model's verdict on each."""

import numpy as np
import streamlit as st

import studio_ui
from cifar_core import CLASS_NAMES, plots, previews, test_predictions

PAGE_SIZE = 40

st.title("Predictions")

model = studio_ui.require_model()

images = studio_ui.test_set(test_predictions.data_dir_for(model))
if images is None:
    st.stop()
x_test, _ = images
interp = studio_ui.predictions(model, images)
table = interp.table()

with st.container(border=True):
    c1, c2, c3 = st.columns([2, 2, 1])
    true_filter = c1.multiselect("True class", CLASS_NAMES, placeholder="any")
    pred_filter = c2.multiselect("Predicted class", CLASS_NAMES, placeholder="any")
    verdict = c3.segmented_control("Verdict", ["all", "right", "wrong"], default="all", required=True)
    c4, c5, c6 = st.columns([2, 2, 1])
    conf_range = c4.slider("Confidence", 0.0, 1.0, (0.0, 1.0), step=0.01)
    sort = c5.selectbox("Sort by", ["confidence, highest first", "confidence, lowest first", "loss, highest first", "loss, lowest first"])
    columns = c6.selectbox("Columns", [5, 8, 10], index=1)

shown = test_predictions.filter_predictions(
    table, true=true_filter, predicted=pred_filter, correct={"all": None, "right": True, "wrong": False}[verdict],
    confidence=conf_range, sort_by=sort.split(",")[0], descending="highest" in sort,
)
st.write(f"**{len(shown):,}** of {len(table):,} test images · accuracy of the model on them: "
         f"{shown['correct'].mean():.1%}" if len(shown) else "No test image matches these filters.")

picked = st.session_state.get("picked_image")
if picked is not None and picked < len(table):
    with st.container(border=True):
        left, middle, right = st.columns([1, 1, 2])
        row = table.loc[picked]
        left.markdown(f"**Test image #{picked}**")
        left.image(previews.upscale(x_test[picked], 6))
        left.markdown(f"true **{row['true']}** · predicted **{row['predicted']}** · loss {row['loss']:.3f}")
        with middle:
            explained = st.selectbox("Grad-CAM: evidence for", CLASS_NAMES, index=int(interp.preds[picked]), key=f"cam_class_{picked}")
            cam = studio_ui.gradcam_picker(model, key="predictions_cam_layer")
            st.image(previews.upscale(cam.overlays(x_test[[picked]], np.array([CLASS_NAMES.index(explained)]))[0], 6))
        right.plotly_chart(plots.probs_figure(dict(zip(CLASS_NAMES, interp.probs[picked].tolist())), height=300),
                           key="picked_probs", config={"displayModeBar": False})
        left.button("Close", on_click=st.session_state.pop, args=("picked_image",))

if len(shown):
    pages = int(np.ceil(len(shown) / PAGE_SIZE))
    # Keyed by the filters, so that changing them goes back to page 1.
    filters_key = hash((tuple(true_filter), tuple(pred_filter), verdict, conf_range, sort))
    page = st.pagination(pages, key=f"predictions_page_{filters_key}") if pages > 1 else 1
    indices = shown.index.to_numpy()[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    st.caption(f"Page {page} of {pages} · click an image's number for all ten probabilities")
    studio_ui.gallery(indices, x_test, interp, columns=columns, pick_key="picked_image")
