"""Checkpoints: atomic write, weights-only read, RNG states restored exactly."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from fusecli.errors import FuseError
from fusecli.train.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


def _draw() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    np.random.randn()  # leave a cached Gaussian in numpy's state
    path = save_checkpoint(tmp_path / "c.pt", {"rng": rng_state(), "step": 7})
    expected = _draw()
    loaded = load_checkpoint(path)  # torch.load(weights_only=True) inside
    assert loaded["step"] == 7
    set_rng_state(loaded["rng"])
    assert _draw() == expected
    assert not list(tmp_path.glob("*.tmp"))


def test_load_refuses_missing_corrupt_and_foreign_files(tmp_path):
    with pytest.raises(FuseError, match="no checkpoint"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(FuseError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"model": {}}, tmp_path / "foreign.pt")
    with pytest.raises(FuseError, match="unknown format"):
        load_checkpoint(tmp_path / "foreign.pt")


class Payload:
    """An arbitrary class: unpickling it could run code, so weights_only must refuse it."""


def test_weights_only_load_rejects_arbitrary_objects(tmp_path):
    torch.save({"format": 1, "x": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(FuseError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
