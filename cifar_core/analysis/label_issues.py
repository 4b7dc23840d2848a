"""Likely label mistakes: images whose given label the model's out-of-sample probabilities contradict.

Confident learning (Northcutt et al., 2021) through `cleanlab.filter.find_label_issues`.
The probabilities must be out-of-sample: the model must not have trained on the
images. The test split qualifies (a run never trains on it); the training split
does not (its probabilities are in-sample, and a network that memorised a wrong
label agrees with it), so training images are only checked with held-out
probabilities, which the studio does not produce.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def find_label_issues(probs: np.ndarray, y: np.ndarray, class_names: tuple[str, ...]) -> pd.DataFrame:
    """Candidates for a person to check, most likely mistake first (cleanlab's self-confidence ranking).

    One row per candidate, indexed by image: the given label, the label the model
    suggests (its top class), and the model's probability of each.
    """
    from cleanlab.filter import find_label_issues as cleanlab_issues

    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    columns = ["given", "suggested", "p_given", "p_suggested"]
    if len(y) == 0:
        return pd.DataFrame(columns=columns, index=pd.Index([], name="image"))
    # cleanlab needs rows that sum to 1 (float32 softmax can miss by ~1e-7).
    probs = probs / probs.sum(axis=1, keepdims=True)
    # n_jobs=1: cleanlab's default forks a process pool, and a fork of a process running
    # TensorFlow's threads can deadlock (seen in the test suite: a child hung for minutes).
    ranked = np.asarray(cleanlab_issues(labels=y, pred_probs=probs, return_indices_ranked_by="self_confidence", n_jobs=1),
                        dtype=np.int64)
    names = np.asarray(class_names)
    suggested = probs[ranked].argmax(axis=1)
    return pd.DataFrame({
        "given": names[y[ranked]],
        "suggested": names[suggested],
        "p_given": probs[ranked, y[ranked]],
        "p_suggested": probs[ranked, suggested],
    }, index=pd.Index(ranked, name="image"))
