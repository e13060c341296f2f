"""Device selection: CUDA, then MPS, then CPU."""

from __future__ import annotations

import torch

from fusecli.errors import FuseError


def select_device(spec: str = "auto") -> torch.device:
    """Resolve a device name.

    Args:
        spec: ``auto`` (cuda, then mps, then cpu), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Raises:
        FuseError: the device is unknown or not available on this machine.
    """
    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise FuseError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise FuseError("device cuda was asked for but no CUDA GPU is available; use cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise FuseError(
                f"device {spec}: only {torch.cuda.device_count()} CUDA device(s) here; "
                "choose cuda:0 or another that exists"
            )
    elif device.type == "mps" and not _mps_available():
        raise FuseError("device mps was asked for but MPS is not available; use cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise FuseError(f"unsupported device {spec!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())
