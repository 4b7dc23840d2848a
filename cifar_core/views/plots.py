"""Figures shared by the dashboard's pages: interactive plotly charts and PNG exports.

Plotly figures are what the pages show; the PNG exports (matplotlib / seaborn,
drawn on figures that belong to no global pyplot state) are what the download
buttons hand out.
"""

from __future__ import annotations

import html
import io
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

TRAIN_COLOUR, VAL_COLOUR = "#1f77b4", "#ff7f0e"
HIGHLIGHT_COLOUR = "#d62728"
CLASS_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
MAX_BATCH_POINTS = 2000
BATCH_SMOOTHING = 0.1  # weight of the newest point in the batch curves' moving average


def shown(text: object) -> str:
    """`text` (a class or run name: the user's) as plotly shows it literally: plotly reads titles, axis ticks, legends
    and hover text as HTML (<a href>, <b>, <br>...), and decodes &amp;, &lt; and &gt; only (so quotes stay as they are)."""
    return html.escape(str(text), quote=False)


# A longer name is cut on a chart's axis or legend (its hover text has all of it): class names may have 200
# characters, and one that long as a tick label would squeeze the plot itself to nothing.
TICK_CHARS = 24


def tick(name: str) -> str:
    """A class name as an axis tick or legend entry: escaped (`shown`), cut to TICK_CHARS with an ellipsis."""
    return shown(name if len(name) <= TICK_CHARS else name[:TICK_CHARS - 1] + "…")


def _mpl_text(text: object) -> str:
    """`text` as matplotlib draws it literally: a pair of $ would start its math notation (and a bad formula fails the PNG)."""
    return str(text).replace("$", r"\$")


def phase_boundary(metrics: pd.DataFrame, x: str) -> float | None:
    """Where fine-tuning starts on the `x` axis (between the last head point and the first fine-tune point)."""
    if metrics.empty or "phase" not in metrics or not (metrics["phase"] == "head").any():
        return None
    finetune = metrics[metrics["phase"] == "finetune"]
    if finetune.empty:
        return None
    return (metrics.loc[metrics["phase"] == "head", x].max() + finetune[x].min()) / 2


def _mark_boundary(fig: go.Figure, boundary: float | None, cols: int) -> None:
    if boundary is None:
        return
    for col in range(1, cols + 1):
        fig.add_vline(x=boundary, line_dash="dash", line_color="grey", row=1, col=col)
    fig.add_annotation(x=boundary, y=1.0, yref="paper", text="fine-tune →", showarrow=False, xanchor="left", yanchor="bottom", font_color="grey")


def curves_figure(epochs: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Loss and accuracy per epoch, train vs validation, with the phase boundary dashed."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"))
    for col, metric in ((1, "loss"), (2, "accuracy")):
        for key, name, colour in ((metric, "train", TRAIN_COLOUR), (f"val_{metric}", "validation", VAL_COLOUR)):
            if key in epochs:
                fig.add_trace(go.Scatter(x=epochs["epoch"], y=epochs[key], name=name, mode="lines+markers",
                                         line_color=colour, legendgroup=name, showlegend=col == 1), row=1, col=col)
    _mark_boundary(fig, phase_boundary(epochs, "epoch"), 2)
    fig.update_yaxes(range=[0, 1], tickformat=".0%", row=1, col=2)
    fig.update_xaxes(title_text="epoch", dtick=1 if len(epochs) <= 20 else None)
    fig.update_layout(title=title, height=340, margin=dict(t=60, b=40, l=40, r=20), legend=dict(orientation="h", y=-0.2))
    return fig


def batch_means(batches: pd.DataFrame, metric: str) -> pd.Series:
    """`metric` averaged over the batches since the record before, one value per batch record.

    Keras logs a metric's running average since the epoch began (it resets its metrics each
    epoch), so drawn as logged the line restarts at every epoch boundary. A record also holds
    its batch number in the epoch (callbacks.RunLogger), so two records j < k of one
    epoch give the mean of the batches between them: (k·avg_k − j·avg_j) / (k − j); the first of
    an epoch is the mean since the epoch began. Exact for equal batches (an epoch's last, smaller
    batch counts as a whole one). Records without a batch number are returned as logged.
    """
    if "batch" not in batches:
        return batches[metric]
    n = batches["batch"].astype(float)
    total = n * batches[metric]
    same_epoch = batches["epoch"].eq(batches["epoch"].shift())
    done = n - n.shift().where(same_epoch, 0.0)
    return ((total - total.shift().where(same_epoch, 0.0)) / done.where(done > 0)).rename(metric)


def batch_figure(batches: pd.DataFrame) -> go.Figure:
    """The training loss and accuracy between batch records (`batch_means`), light, with their moving
    average across epochs, dark, against the global batch step."""
    if len(batches) > MAX_BATCH_POINTS:
        # A long run logs tens of thousands of batches; the browser redraws this every 2 s.
        # batch_means stays exact on the kept records: each then averages more batches.
        batches = batches.iloc[:: math.ceil(len(batches) / MAX_BATCH_POINTS)]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Training loss", "Training accuracy"))
    for col, metric in ((1, "loss"), (2, "accuracy")):
        if metric in batches:
            means = batch_means(batches, metric)
            fig.add_trace(go.Scatter(x=batches["step"], y=means, mode="lines", line=dict(color=TRAIN_COLOUR, width=1),
                                     opacity=0.35, name="since the previous point", legendgroup="raw",
                                     showlegend=col == 1), row=1, col=col)
            fig.add_trace(go.Scatter(x=batches["step"], y=means.ewm(alpha=BATCH_SMOOTHING).mean(), mode="lines",
                                     line_color=TRAIN_COLOUR, name="moving average", legendgroup="smooth",
                                     showlegend=col == 1), row=1, col=col)
    _mark_boundary(fig, phase_boundary(batches, "step"), 2)
    fig.update_xaxes(title_text="batch")
    fig.update_yaxes(tickformat=".0%", row=1, col=2)
    fig.update_layout(height=300, margin=dict(t=50, b=40, l=40, r=20), legend=dict(orientation="h", y=-0.3),
                      title=dict(text="Per batch: the mean over the batches since the previous point, and its moving "
                                      "average (epoch boundaries do not reset either)", font_size=13))
    return fig


def overlay_figure(curves: dict[str, pd.DataFrame], metric: str) -> go.Figure:
    """One line per run for `metric` (e.g. 'val_accuracy') against the epoch."""
    fig = go.Figure()
    for name, df in curves.items():
        if metric in df:
            fig.add_trace(go.Scatter(x=df["epoch"], y=df[metric], name=shown(name), mode="lines+markers"))
    fig.update_layout(xaxis_title="epoch", yaxis_title=metric, height=360, margin=dict(t=30, b=40, l=40, r=20))
    if "accuracy" in metric:
        fig.update_yaxes(range=[0, 1], tickformat=".0%")
    return fig


def confusion_figure(cm: np.ndarray, class_names: tuple[str, ...], normalized: bool = False,
                     highlight: tuple[int, int] | None = None) -> go.Figure:
    """A clickable confusion matrix: rows true, columns predicted; `highlight` (true, predicted) is outlined.

    Plotly reports clicks on scatter points more reliably than on heatmap cells,
    so each cell also carries an invisible square marker that is what gets selected.
    """
    names = list(class_names)
    text = [[f"{v:.2f}" if normalized else f"{int(v)}" for v in row] for row in cm]
    fig = go.Figure(go.Heatmap(z=cm, x=names, y=names, colorscale="Blues", text=text, texttemplate="%{text}",
                               hoverinfo="skip", showscale=False))
    # The axes' values stay the names (a click reports them); what is drawn of them is escaped.
    xs, ys = np.meshgrid(names, names)
    hover = [[f"true {shown(t)}<br>predicted {shown(p)}<br>{v}" for p, v in zip(names, row)] for t, row in zip(names, text)]
    fig.add_trace(go.Scatter(x=xs.ravel(), y=ys.ravel(), mode="markers", text=np.ravel(hover), showlegend=False,
                             marker=dict(symbol="square", size=36, opacity=0.0), hovertemplate="%{text}<extra></extra>"))
    if highlight is not None:
        row, col = highlight
        fig.add_shape(type="rect", x0=col - 0.5, x1=col + 0.5, y0=row - 0.5, y1=row + 0.5, xref="x", yref="y",
                      line=dict(color=HIGHLIGHT_COLOUR, width=4))
    # Categories always: class names such as "1" or "2024-01-01" would otherwise make a number or date axis.
    axis = dict(type="category", tickvals=names, ticktext=[tick(n) for n in names])
    fig.update_layout(xaxis_title="predicted", yaxis_title="true", height=560, margin=dict(t=20, b=40, l=40, r=20),
                      yaxis_autorange="reversed", clickmode="event+select", xaxis=axis, yaxis=axis)
    return fig


def embedding_figure(xy: np.ndarray, y: np.ndarray, preds: np.ndarray, class_names: tuple[str, ...],
                     method: str = "PCA") -> go.Figure:
    """The 2-D feature map: one colour per true class, mistakes drawn as crosses.

    Each point's customdata is its image index, which is what a lasso or box selection reports.
    """
    fig = go.Figure()
    right = preds == y
    for c, name in enumerate(class_names):
        for correct in (True, False):
            idx = np.flatnonzero((y == c) & (right == correct))
            if not len(idx):
                continue
            fig.add_trace(go.Scatter(
                x=xy[idx, 0], y=xy[idx, 1], mode="markers", customdata=idx, legendgroup=name,
                name=tick(name) if correct else f"{tick(name)} (mistake)", showlegend=correct,
                marker=dict(color=CLASS_COLOURS[c % len(CLASS_COLOURS)], size=5 if correct else 7,
                            symbol="circle" if correct else "x", opacity=0.6 if correct else 0.9),
                text=[f"#{i} true {shown(name)}, predicted {shown(class_names[preds[i]])}" for i in idx],
                hovertemplate="%{text}<extra></extra>"))
    fig.update_layout(height=620, margin=dict(t=20, b=40, l=40, r=20), dragmode="lasso", legend_title_text="true class",
                      xaxis=dict(title=f"{method} 1", showticklabels=False), yaxis=dict(title=f"{method} 2", showticklabels=False))
    return fig


def reliability_figure(panels: list[tuple[str, pd.DataFrame]], height: int = 420) -> go.Figure:
    """Reliability diagrams side by side, one per (title, `calibration.reliability` table): each confidence bin's
    accuracy as a bar (its image count on it), the bin's mean confidence as a dot, and the diagonal a calibrated
    model would follow."""
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[title for title, _ in panels], shared_yaxes=True)
    for col, (_, table) in enumerate(panels, start=1):
        used = table[table["count"] > 0]
        centre = (used["lower"] + used["upper"]) / 2
        hover = [f"confidence {lo:.0%}–{hi:.0%}: {n:,} images<br>accuracy {a:.1%}, mean confidence {c:.1%}"
                 for lo, hi, n, a, c in zip(used["lower"], used["upper"], used["count"], used["accuracy"], used["confidence"])]
        fig.add_trace(go.Bar(x=centre, y=used["accuracy"], width=used["upper"] - used["lower"], name="accuracy",
                             marker_color=TRAIN_COLOUR, text=[f"{n:,}" for n in used["count"]], textposition="inside",
                             hovertext=hover, hoverinfo="text", showlegend=col == 1, legendgroup="accuracy"), row=1, col=col)
        fig.add_trace(go.Scatter(x=centre, y=used["confidence"], mode="markers", name="mean confidence",
                                 marker=dict(color=VAL_COLOUR, size=8), hovertext=hover, hoverinfo="text",
                                 showlegend=col == 1, legendgroup="confidence"), row=1, col=col)
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="calibrated (accuracy = confidence)",
                                 line=dict(color="grey", dash="dash"), hoverinfo="skip", showlegend=col == 1,
                                 legendgroup="diagonal"), row=1, col=col)
        fig.update_xaxes(title_text="confidence (top-class probability)", range=[0, 1], tickformat=".0%", row=1, col=col)
    fig.update_yaxes(title_text="accuracy", range=[0, 1], tickformat=".0%", row=1, col=1)
    fig.update_layout(height=height, margin=dict(t=40, b=40, l=40, r=20), bargap=0.05,
                      legend=dict(orientation="h", y=-0.2))
    return fig


def probs_figure(probs: dict[str, float], height: int = 220) -> go.Figure:
    """Horizontal bars of class probabilities, highest on top."""
    items = sorted(probs.items(), key=lambda kv: kv[1])
    fig = go.Figure(go.Bar(x=[p for _, p in items], y=[shown(k) for k, _ in items], orientation="h",
                           text=[f"{p:.1%}" for _, p in items], textposition="auto", marker_color=TRAIN_COLOUR))
    fig.update_layout(xaxis=dict(range=[0, 1], tickformat=".0%"), height=height,
                      yaxis=dict(type="category", tickvals=[shown(k) for k, _ in items], ticktext=[tick(k) for k, _ in items]),
                      margin=dict(t=10, b=10, l=10, r=10))
    return fig


def class_counts_figure(counts: dict[str, dict[str, int]], height: int = 320) -> go.Figure:
    """Images per class, one bar per split side by side (`counts`: split -> class -> images)."""
    classes = list(dict.fromkeys(c for split in counts.values() for c in split))
    # Bars sit at positions, labelled with the names (escaped, long ones cut): two names cut alike stay two bars.
    ticks = [tick(c) for c in classes]
    fig = go.Figure([go.Bar(name=split, x=list(range(len(classes))), y=[n.get(c, 0) for c in classes], marker_color=colour,
                            hovertext=[shown(c) for c in classes], hovertemplate=f"%{{hovertext}}: %{{y}} {split} images<extra></extra>")
                     for (split, n), colour in zip(counts.items(), (TRAIN_COLOUR, VAL_COLOUR))])
    fig.update_layout(barmode="group", height=height, margin=dict(t=30, b=10, l=10, r=10), yaxis_title="images",
                      xaxis=dict(tickvals=list(range(len(classes))), ticktext=ticks), legend=dict(orientation="h", y=1.12))
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return buf.getvalue()


def confusion_png(cm: np.ndarray, class_names: tuple[str, ...], normalized: bool = False) -> bytes:
    """The confusion matrix as a seaborn heatmap PNG."""
    import seaborn as sns
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 7))
    ax = fig.subplots()
    sns.heatmap(cm, annot=True, fmt=".2f" if normalized else "d", cmap="Blues", cbar=False,
                xticklabels=[_mpl_text(n) for n in class_names], yticklabels=[_mpl_text(n) for n in class_names], ax=ax)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix" + (" (row-normalised)" if normalized else ""))
    return _png(fig)


def curves_png(epochs: pd.DataFrame, title: str = "Training curves") -> bytes:
    """Loss and accuracy per epoch (train vs validation) as a matplotlib PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    boundary = phase_boundary(epochs, "epoch")
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, name, colour in ((metric, "train", TRAIN_COLOUR), (f"val_{metric}", "validation", VAL_COLOUR)):
            if key in epochs:
                ax.plot(epochs["epoch"], epochs[key], marker="o", label=name, color=colour)
        if boundary is not None:
            ax.axvline(boundary, linestyle="--", color="grey", label="fine-tune starts")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    fig.suptitle(title)
    return _png(fig)
