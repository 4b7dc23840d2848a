"""How far a measured accuracy can be trusted: the 95% Wilson score interval of a proportion (scipy's).

Wilson's interval (not the normal approximation, which leaves [0, 1] and collapses to a point at 0% or 100%)
holds on small test splits: 27 right of 30 gives 74.4%-96.5%, not just "90.0%".
"""

from __future__ import annotations


def wilson(correct: int, total: int) -> tuple[float, float] | None:
    """(low, high) of the 95% Wilson interval of `correct` right out of `total`; None without any image."""
    from scipy.stats import binomtest

    if not total or total <= 0:
        return None
    interval = binomtest(int(min(max(correct, 0), total)), int(total)).proportion_ci(confidence_level=0.95, method="wilson")
    return float(interval.low), float(interval.high)


def accuracy_interval(accuracy: float | None, total: int | None) -> tuple[float, float] | None:
    """The 95% interval of an accuracy measured on `total` images, or None when either is unknown."""
    if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)) or not isinstance(total, int) or total <= 0:
        return None
    return wilson(round(accuracy * total), total)


def interval_text(accuracy: float | None, total: int | None) -> str:
    """'95% interval 74.4%-96.5% (30 test images)', or '' when either is unknown."""
    interval = accuracy_interval(accuracy, total)
    if interval is None:
        return ""
    return f"95% interval {interval[0]:.1%}-{interval[1]:.1%} ({total:,} test images)"


def half_width(total: int) -> float:
    """The widest half-width of the interval on `total` images (at 50% accuracy): how uncertain any accuracy is."""
    low, high = wilson(total // 2, total)
    return (high - low) / 2
