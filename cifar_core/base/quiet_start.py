"""TensorFlow's start-up lines, kept off a command's output.

Importing TensorFlow writes lines such as "Could not find cuda drivers on your machine, GPU will not be used",
"This TensorFlow binary is optimized to use available CPU instructions..." and, on a machine with CUDA's
libraries but no usable GPU, "failed call to cuInit: INTERNAL: CUDA error", which reads as a failure. Most
come from C++ before TensorFlow's logging is set up ("All log messages before absl::InitializeLog() is called
are written to STDERR"), so TF_CPP_MIN_LOG_LEVEL cannot hold them back: measured here with TensorFlow 2.21,
`python -c "import tensorflow"` prints them at any level. So `python -m cifar_core` imports TensorFlow (whenever
a command first needs it) with the process's stderr (the file descriptor, which C++ writes to) caught, and
writes back every line that is not one of these. Nothing else of a command's output is held back.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from contextlib import contextmanager
from typing import Iterator

# absl's "I0000 00:00:1796667607.713221   31352 cudart_stub.cc:31] ..." lines (info and warnings), its note
# about logging before initialisation, the CPU-feature note's second line, and the CUDA errors of start-up.
START_UP_LINE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IW]\d{4} [\d:.]+\s+\d+ \S+\]"
    r"|E\d{4} [\d:.]+\s+\d+ \S+\] .*(cuInit|CUDA|cuda|Unable to register cu)"
    r"|To enable the following instructions: .* rebuild TensorFlow)")


@contextmanager
def start_up_lines_dropped() -> Iterator[None]:
    """Inside: what is written to stderr (Python's and C++'s) is held, then written back without START_UP_LINE's."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not START_UP_LINE.match(line)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


class _QuietImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `tensorflow` the usual way, once, and runs its import inside `start_up_lines_dropped`."""

    def __init__(self) -> None:
        self.loader: importlib.abc.Loader | None = None

    def find_spec(self, name, path, target=None):
        if name != "tensorflow" or self.loader is not None:
            return None
        sys.meta_path.remove(self)  # the usual finders find it; this one only wraps its loading
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        self.loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        with start_up_lines_dropped():
            self.loader.exec_module(module)


def drop_tensorflow_start_up_lines() -> None:
    """From now on, TensorFlow's first import (by any module, at any time) keeps its start-up lines off stderr."""
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())
