"""Predictions: browse the test images with the active model's verdict on each."""

import streamlit as st

from studio import gallery, loading, state
from cifar_core.base.intervals import interval_text
from cifar_core.predict import calibration
from cifar_core.predict import split_predictions

st.title("Predictions")

model = state.require_model(fits_data=True)

images = loading.test_set(state.active_data_dir(model), model.class_names)
if images is None:
    st.stop()
x_test, _ = images
interp = loading.predictions(model, images)
table = interp.table()

with st.container(border=True):
    # The verdict's column fits its four options ("uncertain" included) beside the sidebar at 1400 px.
    c1, c2, c3 = st.columns([3, 3, 4])
    true_filter = c1.multiselect("True class", model.class_names, placeholder="any")
    pred_filter = c2.multiselect("Predicted class", model.class_names, placeholder="any")
    # "uncertain" (calibrated confidence below 50%: more likely wrong than right) only where probabilities are calibrated.
    verdicts = ["all", "right", "wrong"] + (["uncertain"] if interp.temperature != 1.0 else [])
    verdict = c3.segmented_control("Verdict", verdicts, default="all", required=True,
                                   help=f"uncertain: the calibrated probability of the predicted class is below {calibration.UNCERTAIN_BELOW:.0%}")
    c4, c5, c6 = st.columns([2, 2, 1])
    conf_range = c4.slider("Confidence", 0.0, 1.0, (0.0, 1.0), step=0.01,
                           help=(f"the predicted class's probability, calibrated (temperature {interp.temperature:.3f}, fitted on "
                                 "validation images): of the images at 70%, about 70% are right" if interp.temperature != 1.0
                                 else "the predicted class's probability, as the model gives it (no temperature stored)"))
    sort = c5.selectbox("Sort by", ["confidence, highest first", "confidence, lowest first", "loss, highest first", "loss, lowest first"])
    columns = c6.selectbox("Columns", [5, 8, 10], index=1)

shown = split_predictions.filter_predictions(
    table, true=true_filter, predicted=pred_filter, correct={"right": True, "wrong": False}.get(verdict), uncertain=verdict == "uncertain",
    confidence=conf_range, sort_by=sort.split(",")[0], descending="highest" in sort,
)
st.write(f"**{len(shown):,}** of {len(table):,} test images · accuracy of the model on them: "
         f"{shown['correct'].mean():.1%} ({interval_text(shown['correct'].mean(), len(shown))})" if len(shown)
         else "No test image matches these filters.")

if len(shown):
    by_loss = sort.startswith("loss")
    gallery.paged_gallery(shown.index.to_numpy(), x_test, interp, key="predictions", order=f"Sorted by {sort}",
                          columns=columns, pick_key="picked_image", show_loss=by_loss)
    if by_loss:
        st.caption("The loss is −log of the probability the model gave the true class (after \"true:\" on each tile).")
gallery.detail_dialog(model, x_test, interp, "picked_image")
