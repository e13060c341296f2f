"""Weights files: safetensors holding parameters only, with architecture and checksum metadata.

Header metadata (all strings):
    format            "fusecli-pslpt/1"
    architecture      ModelConfig as JSON
    fusecli_version   version that wrote the file
    tensors_sha256    sha256 over every tensor's name, dtype, shape and bytes, in name order
    plus whatever the caller adds (training summary, recipe, ...).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from fusecli import __version__
from fusecli.atomic import atomic_path
from fusecli.engine.config import ModelConfig
from fusecli.engine.model import PSLPT
from fusecli.errors import WeightsError

# Re-exported: the lookup lives beside the files, where it needs no torch.
from fusecli.weights import DEFAULT_WEIGHTS_NAME, shipped_weights_path  # noqa: F401

FORMAT = "fusecli-pslpt/1"
RESERVED_KEYS = ("format", "architecture", "fusecli_version", "tensors_sha256")


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """Checksum of a state dict that does not depend on how the file was laid out."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def save_weights(
    net: PSLPT, path: str | os.PathLike, metadata: Mapping[str, object] | None = None
) -> Path:
    """Write ``net``'s parameters to a safetensors file, atomically.

    Args:
        net: the network (a DDP or compiled wrapper must be unwrapped first).
        path: destination; written to a temporary file beside it, then renamed.
        metadata: extra header entries; non-string values are stored as JSON.

    Returns:
        The path written.
    """
    path = Path(path)
    tensors = {
        k: v.detach().to("cpu", torch.float32).contiguous() for k, v in net.state_dict().items()
    }
    header = {
        key: value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        for key, value in (metadata or {}).items()
        if key not in RESERVED_KEYS
    }
    header.update(
        format=FORMAT,
        architecture=net.config.to_json(),
        fusecli_version=__version__,
        tensors_sha256=tensors_sha256(tensors),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".tmp") as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


def read_weights_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The header metadata of a weights file, without loading the tensors.

    Raises:
        WeightsError: missing file, not a safetensors file, or not written by fusecli.
    """
    path = _existing_file(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(
            f"{path} is not a readable safetensors file ({_short(exc)})",
            remedy="re-download it or use another weights file",
            hint="weights",
        ) from None
    if metadata.get("format") != FORMAT:
        raise WeightsError(
            f"{path} is a safetensors file but not fusecli PSLPT weights (format "
            f"{metadata.get('format')!r})",
            remedy="convert the authors' .pth with from_authors_state_dict and save_weights",
            hint="convert",
        )
    return metadata


def load_weights(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> PSLPT:
    """Build a PSLPT from a weights file written by :func:`save_weights`.

    The architecture comes from the file; the tensors must match its checksum and the network.

    Returns:
        The network in eval mode, with ``net.weights_metadata`` holding the header.

    Raises:
        WeightsError: unreadable, corrupted (checksum), or for another architecture.
    """
    path = Path(path)
    metadata = read_weights_metadata(path)
    config = ModelConfig.from_json(metadata.get("architecture", "{}"))
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(
            f"{path} is damaged ({_short(exc)}); re-download it or pass another file"
        ) from None
    if tensors_sha256(tensors) != metadata.get("tensors_sha256"):
        raise WeightsError(
            f"{path} is corrupted: its tensors do not match the checksum in its header; "
            "re-download or re-export it"
        )
    net = PSLPT(config)
    expected = net.state_dict()
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    wrong = [k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape]
    if missing or unexpected or wrong:
        raise WeightsError(
            f"{path} does not fit the PSLPT architecture it declares "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shapes {wrong[:3]})"
        )
    net.load_state_dict(tensors)
    net.weights_metadata = metadata
    return net.to(map_location).eval()


def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"weights file {path} does not exist; check the path")
    if not path.is_file():
        raise WeightsError(f"weights path {path} is not a file; pass a .safetensors file")
    if path.stat().st_size == 0:
        raise WeightsError(f"weights file {path} is empty (0 bytes); re-download it")
    return path


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]
