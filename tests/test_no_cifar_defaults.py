"""No engine function defaults to CIFAR-10's ten classes: a run's classes come from its data or its model.

Every function, method and dataclass of every cifar_core module is inspected; a parameter that
names a class count or class list must not default to 10 or to CIFAR-10's names.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import cifar_core
from cifar_core.data.classes import CLASS_NAMES

CLASS_PARAMETERS = ("num_classes", "class_names", "classes")


def cifar_defaults(func) -> list[str]:
    """The parameters of `func` that name classes and default to CIFAR-10's (count or names)."""
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        return []
    found = []
    for p in parameters:
        if p.name not in CLASS_PARAMETERS or p.default is inspect.Parameter.empty:
            continue
        d = p.default
        if (isinstance(d, int) and not isinstance(d, bool) and d == len(CLASS_NAMES)) or (
                isinstance(d, (tuple, list)) and tuple(d) == CLASS_NAMES):
            found.append(p.name)
    return found


def engine_callables():
    """(qualified name, callable) for each function and class defined in cifar_core, and each class's methods."""
    for info in pkgutil.walk_packages(cifar_core.__path__, "cifar_core."):
        if info.name == "cifar_core.__main__" or info.name.startswith("cifar_core.bench"):
            continue  # importing __main__ runs the CLI; the benchmarks are measurements, not the engine
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if getattr(obj, "__module__", None) != module.__name__:
                continue  # imported from elsewhere: checked in its own module
            if inspect.isfunction(obj):
                yield f"{module.__name__}.{name}", obj
            elif inspect.isclass(obj):
                yield f"{module.__name__}.{name}", obj  # its constructor (a dataclass's fields)
                for attr, member in vars(obj).items():
                    func = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
                    if inspect.isfunction(func):
                        yield f"{module.__name__}.{name}.{attr}", func


def test_the_check_finds_a_cifar_default():
    def counted(x, num_classes=10):
        return x

    def named(x, *, class_names=CLASS_NAMES):
        return x

    def required(x, num_classes, class_names, classes=None):
        return x

    assert cifar_defaults(counted) == ["num_classes"] and cifar_defaults(named) == ["class_names"]
    assert cifar_defaults(required) == []


def test_no_engine_function_defaults_to_cifar10_classes():
    checked = dict(engine_callables())
    assert "cifar_core.predict.evaluate.evaluate_model" in checked and "cifar_core.data.images.ImageData" in checked  # it looked
    offenders = {name: found for name, func in checked.items() if (found := cifar_defaults(func))}
    assert not offenders, f"default to CIFAR-10's classes (pass the run's or the model's instead): {offenders}"
