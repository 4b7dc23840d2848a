"""The model card writes a path from the checkout (`../shared/...`) only where it is really inside the checkout's
parent folder, wherever the checkout is (issue 24: a checkout under /tmp broke the suite)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cifar_core.ship import publish


@pytest.fixture
def checkout(tmp_path, monkeypatch) -> Path:
    """A checkout at <tmp>/ab/studio: its parent is <tmp>/ab."""
    root = tmp_path / "ab" / "studio"
    root.mkdir(parents=True)
    monkeypatch.setattr(publish, "PROJECT_ROOT", root)
    return root


def test_only_paths_inside_the_parent_by_whole_folder_names_are_rewritten(checkout, tmp_path):
    parent = checkout.parent
    assert publish._relative(f"image folders at {parent}/shared/data/cifar10") == "image folders at ../shared/data/cifar10"
    assert publish._relative(f"image folders at {parent}") == "image folders at .."
    # <tmp>/abc starts with the parent's text but is another folder: left as it is.
    assert publish._relative(f"image folders at {tmp_path}/abc/data") == f"image folders at {tmp_path}/abc/data"
    assert publish._relative(f"python batches at /elsewhere{parent}/x") == f"python batches at /elsewhere{parent}/x"
    assert publish._relative(f"folders at {parent}/with space/x, then") == "folders at ../with space/x, then"


def test_a_commands_path_is_from_the_project_then_from_the_checkout_else_as_it_is(checkout, tmp_path):
    assert publish._shown_path(checkout / "artifacts" / "default") == "artifacts/default"
    assert publish._shown_path(checkout.parent / "models" / "x") == "../models/x"
    assert publish._shown_path(tmp_path / "abc" / "x") == str((tmp_path / "abc" / "x").resolve())
