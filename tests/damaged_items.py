"""An artifacts folder with one of each damaged kind beside usable ones, for the tests that check that no single
file takes a page down: built from tests/snapshots/old_run (a tiny model trained on `conftest.write_folders`'s
images), so it needs no training.

- HOSTILE_ROW: a run whose stored config is 100,000 nested '[' (and whose summary nests as deeply);
- BAD_CALIBRATION: a copy of the usable run whose calibration.json is 20,000 nested brackets (40 KB);
- BAD_CLASSES: a copy whose classes.json nests 20,000 deep;
- DATASET: an imported dataset whose dataset.json nests 20,000 deep and one of whose class folders has a
  latin-1 (not UTF-8) name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import time
from pathlib import Path

from conftest import synthetic_images
from PIL import Image

OLD_RUN = Path(__file__).resolve().parent / "snapshots" / "old_run"
USABLE = "20261207-172112-0d66"  # the snapshot's run: stopped after one epoch, usable
HOSTILE_ROW = "20300101-000000-dead"
BAD_CALIBRATION = "20300101-000001-ca1b"
BAD_CLASSES = "20300101-000002-c1a5"
DATASET = "latin1-set"
LATIN1_CLASS = b"caf\xe9"  # "café" in latin-1: not UTF-8
DEEP = 20_000


def plant(artifacts: Path, usable: bool = True) -> Path:
    """Fill `artifacts` (which must not exist) with one of each damaged kind, and the usable run unless `usable`
    is False; returns it."""
    shutil.copytree(OLD_RUN, artifacts)
    deep = "[" * DEEP + "]" * DEEP
    for run_id, file in ((BAD_CALIBRATION, "calibration.json"), (BAD_CLASSES, "classes.json")):
        shutil.copytree(artifacts / "runs" / USABLE, artifacts / "runs" / run_id)
        (artifacts / "runs" / run_id / file).write_text(deep)
    with contextlib.closing(sqlite3.connect(artifacts / "runs.db")) as db, db:
        db.row_factory = sqlite3.Row
        row = dict(db.execute("SELECT * FROM runs WHERE id=?", (USABLE,)).fetchone())
        for n, run_id in enumerate((BAD_CALIBRATION, BAD_CLASSES), start=1):
            db.execute(f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                       [{"id": run_id, "created": row["created"] + n}.get(k, v) for k, v in row.items()])
        db.execute("INSERT INTO runs (id, status, created, finished, config, summary) VALUES (?,?,?,?,?,?)",
                   (HOSTILE_ROW, "completed", time.time(), time.time(), "[" * 100_000, '{"a":' * 100_000))
        if not usable:
            db.execute("DELETE FROM runs WHERE id=?", (USABLE,))
    if not usable:
        shutil.rmtree(artifacts / "runs" / USABLE)
    (artifacts / "runs" / HOSTILE_ROW).mkdir()
    plant_dataset(artifacts / "datasets" / DATASET)
    return artifacts


def plant_dataset(folder: Path) -> None:
    """An imported dataset of three classes, one of them in a latin-1-named folder, with a hostile dataset.json."""
    x, y = synthetic_images(6, seed=5)
    names = [b"airplane", b"bird", LATIN1_CLASS]
    for split, picks in (("train", range(0, 4)), ("test", range(4, 6))):
        for c, name in enumerate(names):
            folder_bytes = os.fsencode(folder / split) + b"/" + name
            os.makedirs(folder_bytes, exist_ok=True)
            for i in picks:
                Image.fromarray(x[y == c][i]).save(os.fsdecode(folder_bytes + f"/{i}.png".encode()))
    (folder / "dataset.json").write_text("[" * DEEP + "]" * DEEP)
