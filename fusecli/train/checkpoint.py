"""Training checkpoints: atomic writes, weights-only loads, RNG states as plain types."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusecli.atomic import atomic_path
from fusecli.errors import FuseError

__all__ = ["CHECKPOINT_FORMAT", "load_checkpoint", "rng_state", "save_checkpoint", "set_rng_state"]

CHECKPOINT_FORMAT = 1


def rng_state() -> dict[str, Any]:
    """Capture the torch (CPU and CUDA), numpy and Python RNG states as tensors and plain types.

    Returns:
        A dict that ``torch.load(..., weights_only=True)`` can read back.
    """
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "python": {"version": int(py_version), "internal": list(py_internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["gauss"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` with torch.save to a temporary file beside ``path``, then rename it.

    A crash mid-write leaves the previous checkpoint intact (os.replace is atomic on one file
    system).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".tmp") as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **payload}, tmp)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (no arbitrary code from the file).

    Raises:
        FuseError: missing, unreadable, or written by an incompatible version.
    """
    if not path.is_file():
        raise FuseError(
            f"no checkpoint at {path}",
            remedy="start without resuming or give the run's folder",
            hint="no-resume",
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt files
        raise FuseError(f"cannot read checkpoint {path} ({exc}); delete it to start over") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise FuseError(
            f"checkpoint {path} has an unknown format; it was written by another version"
        )
    return payload
