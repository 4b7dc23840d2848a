"""Error analysis: where the active model goes wrong, and what in the data may be to blame.

After fastai's ClassificationInterpretation (confusion matrix, most confused,
top losses) and FiftyOne's brain (an embedding map, similar images, likely
label mistakes, duplicates and leaks). Each tab runs only when it is open.
"""

import numpy as np
import pandas as pd
import streamlit as st

from studio import explanations, gallery, loading, state
from studio.text import percent_column, plain
from cifar_core.base.intervals import interval_text
from cifar_core.predict import calibration
from cifar_core.data import duplicates
from cifar_core.analysis import embeddings
from cifar_core.runs import model_choice
from cifar_core.views import plots
from cifar_core.views import downloads
from cifar_core.predict import split_predictions

DETAIL = "error_detail"  # the session key of the image whose details are open

st.title("Error analysis")

model = state.require_model(fits_data=True)

# With the test images at hand everything works; without them, the saved predictions
# still give the matrix and the scores, only the galleries are missing.
data_dir = state.active_data_dir(model)
images = loading.test_set(data_dir, model.class_names)
interp = loading.predictions(model, images) if images is not None else split_predictions.saved_predictions(model)
if interp is None:
    st.info("This model has no saved test predictions, and without the test images none can be made.", icon=":material/info:")
    st.stop()
x_test = images[0] if images is not None else None
names = interp.class_names
data_id = f"{data_dir}|{len(interp.y)}"
NO_IMAGES = "The galleries need the test images (see the sidebar)."

c1, c2, c3 = st.columns(3)
c1.metric("Test accuracy", f"{interp.accuracy:.1%}")
c2.metric("Test images", f"{len(interp.y):,}")
c3.metric("Mistakes", f"{int((interp.preds != interp.y).sum()):,}")
st.caption(f"Test accuracy {interp.accuracy:.1%}: {interval_text(interp.accuracy, len(interp.y))}.")

cam, explained = None, None
if x_test is not None:
    mode_col, layer_col = st.columns([2, 1])
    explained = mode_col.segmented_control(
        "Explanation overlay", ["off", "predicted class", "true class"], default="off", required=True, key="cam_mode",
        help="where the model found evidence for the class it predicted, or for the class it should have predicted")
    if explained != "off":
        with layer_col:
            cam = explanations.explanation_picker(model, key="error_cam_layer")
        st.caption(f"The galleries show where the model found evidence for each image's {explained}.")
        explanations.explanation_check(model, cam)


def explain(indices: np.ndarray) -> np.ndarray | None:
    """Overlays for a gallery page when explanations are on, else None (the plain images)."""
    if cam is None:
        return None
    classes = interp.preds[indices] if explained == "predicted class" else interp.y[indices]
    return explanations.explanation_overlays(model, cam, x_test[indices], classes)


confusion_tab, losses_tab, map_tab, labels_tab, duplicates_tab, calibration_tab = st.tabs(
    ["Confusion matrix", "Top losses", "Embedding map", "Label mistakes", "Duplicates and leaks", "Calibration"],
    key="error_tab", on_change="rerun")

# ---------------------------------------------------------------- confusion matrix
if st.session_state.get("cell_true") not in names or st.session_state.get("cell_pred") not in names:  # first visit, or another model's classes
    true_name, pred_name, _ = (interp.most_confused() or [(names[0], names[0], 0)])[0]
    st.session_state["cell_true"], st.session_state["cell_pred"] = true_name, pred_name
st.session_state.setdefault("cm_show", "counts")
# Widgets in a closed tab are not drawn, and Streamlit forgets the state of widgets it
# did not draw; set again, the picked cell survives a visit to another tab.
for name in ("cell_true", "cell_pred", "cm_show"):
    st.session_state[name] = st.session_state[name]
pairs = interp.most_confused()[:10]


def select_cell() -> None:
    """A click on the matrix picks the cell shown in the gallery below it."""
    points = st.session_state["confusion_chart"].selection.points
    if points:
        st.session_state["cell_true"], st.session_state["cell_pred"] = points[0]["y"], points[0]["x"]


def select_pair() -> None:
    """A click on a most-confused row picks its cell."""
    rows = st.session_state["confused_pairs"].selection.rows
    if rows:
        st.session_state["cell_true"], st.session_state["cell_pred"] = pairs[rows[0]][:2]


normalized = st.session_state["cm_show"] == "row-normalised"
cm = interp.confusion_matrix(normalize=normalized)
if confusion_tab.open:
    with confusion_tab:
        matrix_col, pairs_col = st.columns([3, 2])
        with matrix_col:
            st.segmented_control("Show", ["counts", "row-normalised"], required=True, key="cm_show")
            selected_cell = (names.index(st.session_state["cell_true"]), names.index(st.session_state["cell_pred"]))
            st.plotly_chart(plots.confusion_figure(cm, names, normalized, highlight=selected_cell), key="confusion_chart",
                            on_select=select_cell, selection_mode="points", config={"displayModeBar": False})
            st.caption("Rows are the true classes, columns the predictions. Click a cell to see its images; "
                       "the outlined cell is the one shown below.")
        with pairs_col:
            st.markdown("**Most confused pairs**")
            st.dataframe(pd.DataFrame(pairs, columns=["true", "predicted as", "images"]), hide_index=True, key="confused_pairs",
                         on_select=select_pair, selection_mode="single-row")
            st.caption("Select a row to see its images.")

        left, right = st.columns(2)
        true_name = left.selectbox("True class", names, key="cell_true")
        pred_name = right.selectbox("Predicted as", names, key="cell_pred")
        cell = interp.cell(names.index(true_name), names.index(pred_name))
        st.subheader(f"{plain(true_name)} predicted as {plain(pred_name)}: {len(cell)} image(s)")
        if x_test is None:
            st.caption(NO_IMAGES)
        else:
            gallery.paged_gallery(cell, x_test, interp, key="cell", order="Most confident first", columns=10,
                                  pick_key=DETAIL, overlay=explain)

        st.subheader("Per-class scores")
        st.dataframe(interp.per_class(), column_config={
            "precision": percent_column("precision", "of the images predicted as this class, the share that are"),
            "recall": percent_column("recall", "of the images of this class, the share predicted as it"),
            "f1": st.column_config.NumberColumn("F1", format="%.3f"),
        })

# ---------------------------------------------------------------- top losses
if losses_tab.open:
    with losses_tab:
        st.caption("Misclassified test images, **highest loss first**. The loss is −log of the probability the model gave "
                   "the true class, so it grows as that probability (after \"true:\") shrinks, whatever the predicted "
                   "class's confidence. Worth a look for mislabelled or ambiguous images.")
        top = interp.top_losses(None)
        if x_test is None:
            st.caption(NO_IMAGES)
        elif len(top):
            gallery.paged_gallery(top, x_test, interp, key="top_losses", order="Highest loss first", show_loss=True,
                                  pick_key=DETAIL, overlay=explain)
        else:
            st.write("No mistakes on the test set.")

# ---------------------------------------------------------------- embedding map
if map_tab.open:
    with map_tab:
        if x_test is None:
            st.caption("The map needs the test images (see the sidebar).")
        else:
            feats = loading.features(model, "test", x_test, data_id)
            methods = ["PCA", "UMAP"] if embeddings.umap_available() else ["PCA"]
            method = st.segmented_control("Projection", methods, default="PCA", required=True, key="map_method",
                                          help="PCA keeps the two directions of largest spread; UMAP keeps neighbourhoods")
            if len(methods) == 1:
                st.caption("UMAP needs the umap-learn package (pip install umap-learn); PCA is shown.")
            xy = loading.projection(model, x_test, feats, method.lower(), data_id)
            event = st.plotly_chart(plots.embedding_figure(xy, interp.y, interp.preds, names, method), key="embedding_map",
                                    on_select="rerun", selection_mode=("lasso", "box"))
            st.caption(f"Each point is a test image, placed by the model's penultimate-layer features ({feats.shape[1]} numbers "
                       f"per image) reduced to two dimensions by {method}; colour is the true class, crosses are mistakes. "
                       "Draw a lasso or a box (toolbar, top right) to see those images.")
            selected = np.unique([int(np.ravel(p["customdata"])[0]) for p in event.selection.points if "customdata" in p])
            if len(selected):
                right = float(np.mean(interp.preds[selected] == interp.y[selected]))
                st.subheader(f"{len(selected):,} selected image(s) · the model is right on {right:.0%} of them")
                order = selected[np.argsort(-interp.losses[selected], kind="stable")]
                gallery.paged_gallery(order, x_test, interp, key="map_selection", order="Highest loss first", show_loss=True,
                                      pick_key=DETAIL, overlay=explain)

# ---------------------------------------------------------------- label mistakes
if labels_tab.open:
    with labels_tab:
        issues = loading.label_issue_candidates(model, interp, data_id)
        st.info("These are **candidates for a person to check**, not verdicts: images whose given label the model's "
                "probabilities contradict.", icon=":material/person_search:")
        st.caption("Found by cleanlab's confident learning (find_label_issues) on the model's test-set probabilities. They "
                   "are out-of-sample: the model never trained on the test images. Training images are not checked, "
                   "because the model's probabilities on them are in-sample (a network that memorised a wrong label agrees with it).")
        st.metric("Candidates among the test images", f"{len(issues):,}")
        if x_test is None:
            st.dataframe(issues)
        elif len(issues):
            st.caption("Each tile: the label the model suggests (its top class) with its probability, then the given label with its probability.")
            gallery.paged_gallery(issues.index.to_numpy(), x_test, interp, key="label_issues", true_word="given",
                                  order="Most likely mistake first (cleanlab's self-confidence ranking)", pick_key=DETAIL)
            st.download_button("Candidates (CSV)", lambda: downloads.candidates_csv(issues), file_name="label_issue_candidates.csv",
                               mime="text/csv", icon=":material/download:")

# ---------------------------------------------------------------- duplicates and leaks
def draw_duplicates(found: duplicates.Found, x_train: np.ndarray, y_train: np.ndarray) -> None:
    """The counts (the Data page's table), the model's accuracy on leaked test images, and the pairs."""
    counts = found.counts()
    m1, m2, m3 = st.columns(3)
    m1.metric("Test images with a copy in train", f"{counts['leaked_test_images']:,}", help="a leak: their score partly measures memory")
    m2.metric("Test images with a copy in test", f"{counts['exact']['within_test'] + counts['near']['within_test']:,}")
    m3.metric("Training images with a copy in train", f"{counts['exact']['within_train'] + counts['near']['within_train']:,}")
    st.dataframe(pd.DataFrame(duplicates.count_rows(counts)), hide_index=True, width="stretch")
    leaked = found.copies["across"][found.n_train:] > 0
    right = interp.preds == interp.y
    if leaked.any() and not leaked.all():
        st.markdown(f"The model is right on **{right[leaked].mean():.1%}** of the test images with a copy in train, "
                    f"and on **{right[~leaked].mean():.1%}** of the others.")
    st.caption(f"{duplicates.RULE} Found without the model, by the finder the Data page uses, over the test and "
               "training images of the model's classes.")
    shown = st.segmented_control("Show", ["train/test leaks", "duplicates within test"], default="train/test leaks",
                                 required=True, key="duplicate_kind")
    if shown == "train/test leaks":
        gallery.paged_pairs(found.leak_pairs(), key="leaks", tile=lambda row: gallery.pair_tile(
            x_test[int(row["test"])], x_train[int(row["train"])],
            f"test #{int(row['test'])} {plain(names[interp.y[int(row['test'])]])} · train #{int(row['train'])} "
            f"{plain(names[y_train[int(row['train'])]])} · {row['kind']} {row['similarity']:.3f}"))
    else:
        gallery.paged_pairs(found.test_pairs(), key="test_duplicates", tile=lambda row: gallery.pair_tile(
            x_test[int(row["a"])], x_test[int(row["b"])],
            f"test #{int(row['a'])} {plain(names[interp.y[int(row['a'])]])} · test #{int(row['b'])} "
            f"{plain(names[interp.y[int(row['b'])]])} · {row['kind']} {row['similarity']:.3f}"))


if duplicates_tab.open:
    with duplicates_tab:
        train = loading.train_set(data_dir, model.class_names)
        if x_test is None or train is None:
            st.caption("Finding duplicates and leaks needs the test and the training images (see the sidebar).")
        else:
            found = loading.duplicates_found(x_test, train[0], f"{data_dir}|{len(x_test)}|{len(train[0])}|{names}")
            draw_duplicates(found, *train)

# ---------------------------------------------------------------- calibration
if calibration_tab.open:
    with calibration_tab:
        raw, t = interp.uncalibrated, interp.temperature
        scored = calibration.summary(raw, interp.y, t)
        panels = [(f"as the model gives them · ECE {scored['ece_uncalibrated']:.3f}", calibration.reliability(raw, interp.y))]
        if t != 1.0:
            panels.append((f"calibrated, T = {t:.3f} · ECE {scored['ece']:.3f}", calibration.reliability(interp.probs, interp.y)))
        st.plotly_chart(plots.reliability_figure(panels), key="reliability_chart", config={"displayModeBar": False})
        st.caption(f"Test images grouped into {calibration.BINS} equal-width bins of the top class's probability: each bar is "
                   "the accuracy in its bin (the number on it: its images), each dot the mean probability the model gave. "
                   "Where bars and dots meet the diagonal, a probability of 70% means right 70% of the time. The expected "
                   "calibration error (ECE) is the image-weighted mean gap.")
        m1, m2, m3 = st.columns(3)
        after = " → {:.3f}" if t != 1.0 else ""
        m1.metric("Expected calibration error", f"{scored['ece_uncalibrated']:.3f}" + after.format(scored["ece"]))
        m2.metric("Negative log-likelihood", f"{scored['nll_uncalibrated']:.3f}" + after.format(scored["nll"]))
        m3.metric("Brier score", f"{scored['brier_uncalibrated']:.3f}" + after.format(scored["brier"]))
        stored = calibration.read(model.folder)
        if stored is not None and (t != 1.0 or stored.temperature == 1.0):  # a stored T = 1 was decided: say why
            st.caption(f"The {plain(stored.basis())}. Fitted on validation images, never the test images; every page shows "
                       "probabilities with it. It never changes a prediction, only how sure the model says it is.")
        else:
            st.info("This model has no temperature for the way it predicts, so its probabilities are shown as it gives them. "
                    "Fit one on its validation images with `python -m cifar_core calibrate --model RUN_OR_PATH`.",
                    icon=":material/thermostat:")

st.header("Downloads", divider="gray")
d1, d2, d3 = st.columns(3)
d1.download_button("Confusion matrix (PNG)", lambda: plots.confusion_png(cm, names, normalized),
                   file_name="confusion_matrix.png", mime="image/png", icon=":material/download:")
curves = model_choice.history(model, state.store())
d2.download_button("Training curves (PNG)", lambda: plots.curves_png(curves), file_name="training_curves.png",
                   mime="image/png", icon=":material/download:", disabled=curves.empty)
d3.download_button("Predictions (CSV)", lambda: downloads.predictions_csv(interp),
                   file_name="test_predictions.csv", mime="text/csv", icon=":material/download:")

if x_test is not None:
    gallery.detail_dialog(model, x_test, interp, DETAIL)
