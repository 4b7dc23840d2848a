"""Error analysis: where the active model goes wrong, after fastai's interpretation tools."""

import streamlit as st

import studio_ui
from cifar_core import CLASS_NAMES, model_choice, plots, test_predictions

GALLERY_MAX = 40

st.title("Error analysis")

model = studio_ui.require_model()

# With the test images at hand everything works; without them, the saved predictions
# still give the matrix and the scores, only the galleries are missing.
images = studio_ui.test_set(test_predictions.data_dir_for(model))
interp = studio_ui.predictions(model, images) if images is not None else test_predictions.saved_predictions(model)
if interp is None:
    st.info("This model has no saved test predictions, and without the test images none can be made.", icon=":material/info:")
    st.stop()
x_test = images[0] if images is not None else None

c1, c2, c3 = st.columns(3)
c1.metric("Test accuracy", f"{interp.accuracy:.1%}")
c2.metric("Test images", f"{len(interp.y):,}")
c3.metric("Mistakes", f"{int((interp.preds != interp.y).sum()):,}")

st.header("Confusion matrix", divider="gray")
normalized = st.segmented_control("Show", ["counts", "row-normalised"], default="counts", required=True) == "row-normalised"
if "cell_true" not in st.session_state:
    true_name, pred_name, _ = (interp.most_confused() or [(CLASS_NAMES[0], CLASS_NAMES[0], 0)])[0]
    st.session_state["cell_true"], st.session_state["cell_pred"] = true_name, pred_name


def select_cell() -> None:
    """A click on the matrix picks the cell shown in the gallery below it."""
    points = st.session_state["confusion_chart"].selection.points
    if points:
        st.session_state["cell_true"], st.session_state["cell_pred"] = points[0]["y"], points[0]["x"]


cm = interp.confusion_matrix(normalize=normalized)
st.plotly_chart(plots.confusion_figure(cm, CLASS_NAMES, normalized), key="confusion_chart", on_select=select_cell,
                selection_mode="points", config={"displayModeBar": False})
st.caption("Rows are the true classes, columns the predictions. Click a cell to see its images.")

left, right = st.columns(2)
true_name = left.selectbox("True class", CLASS_NAMES, key="cell_true")
pred_name = right.selectbox("Predicted as", CLASS_NAMES, key="cell_pred")
cell = interp.cell(CLASS_NAMES.index(true_name), CLASS_NAMES.index(pred_name))
st.subheader(f"{true_name} predicted as {pred_name}: {len(cell)} image(s)")
cam, explained = None, None
if x_test is not None:
    mode_col, layer_col = st.columns([2, 1])
    explained = mode_col.segmented_control(
        "Grad-CAM overlay", ["off", "predicted class", "true class"], default="off", required=True, key="cam_mode",
        help="where the model found evidence for the class it predicted, or for the class it should have predicted")
    if explained != "off":
        with layer_col:
            cam = studio_ui.gradcam_picker(model, key="error_cam_layer")
        st.caption(f"The overlays show where the model found evidence for each image's {explained}; "
                   "they apply to the top losses below too.")


def explain(indices):
    """Overlays for the gallery when Grad-CAM is on, else None (the plain images)."""
    if cam is None:
        return None
    return cam.overlays(x_test[indices], interp.preds[indices] if explained == "predicted class" else interp.y[indices])


if x_test is None:
    st.caption("The galleries need the test images (see the sidebar).")
elif len(cell):
    if len(cell) > GALLERY_MAX:
        st.caption(f"The {GALLERY_MAX} most confident of {len(cell)}.")
    studio_ui.gallery(cell[:GALLERY_MAX], x_test, interp, columns=10, overlays=explain(cell[:GALLERY_MAX]))

st.header("Per-class scores", divider="gray")
scores, pairs = st.columns([3, 2])
scores.dataframe(interp.per_class(), column_config={
    "precision": st.column_config.ProgressColumn("precision", format="percent", min_value=0, max_value=1),
    "recall": st.column_config.ProgressColumn("recall", format="percent", min_value=0, max_value=1),
    "f1": st.column_config.NumberColumn("F1", format="%.3f"),
})
pairs.markdown("**Most confused pairs**")
pairs.dataframe(
    [{"true": t, "predicted as": p, "images": n} for t, p, n in interp.most_confused()[:10]],
    hide_index=True, column_config={"images": st.column_config.NumberColumn()},
)

st.header("Top losses", divider="gray")
st.caption("The model's most confident mistakes: worth a look for mislabelled or ambiguous images.")
top = interp.top_losses(16)
if x_test is None:
    st.caption("The gallery needs the test images (see the sidebar).")
elif len(top):
    studio_ui.gallery(top, x_test, interp, columns=8, overlays=explain(top))
else:
    st.write("No mistakes on the test set.")

st.header("Downloads", divider="gray")
d1, d2, d3 = st.columns(3)
d1.download_button("Confusion matrix (PNG)", lambda: plots.confusion_png(cm, CLASS_NAMES, normalized),
                   file_name="confusion_matrix.png", mime="image/png", icon=":material/download:")
curves = model_choice.history(model, studio_ui.store())
d2.download_button("Training curves (PNG)", lambda: plots.curves_png(curves), file_name="training_curves.png",
                   mime="image/png", icon=":material/download:", disabled=curves.empty)
d3.download_button("Predictions (CSV)", lambda: interp.table().to_csv(index_label="image").encode(),
                   file_name="test_predictions.csv", mime="text/csv", icon=":material/download:")
