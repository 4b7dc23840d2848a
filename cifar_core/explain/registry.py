"""The explanation methods, each an `Explainer` subclass in its own module, listed once here.

The order is the preference order: `check.candidates` tries the methods in it, and a model's default
explanation is the first whose maps pass the deletion check. The CLI's `--method` and `--explain-method`
choices, the pages' picker and `check` read this list, so a new method is one module plus one entry here.
"""

from __future__ import annotations

from cifar_core.explain.base import ExplainError, Explainer
from cifar_core.explain.gradcam import GradCam
from cifar_core.explain.occlusion import Occlusion

METHODS: tuple[type[Explainer], ...] = (Occlusion, GradCam)


def names() -> tuple[str, ...]:
    """The methods' names, in preference order."""
    return tuple(method.method for method in METHODS)


def method_named(name: str) -> type[Explainer]:
    """The method called `name`; ExplainError naming the others when there is none."""
    for method in METHODS:
        if method.method == name:
            return method
    raise ExplainError(f"unknown explanation method {name!r}; use one of {', '.join(names())}.")
