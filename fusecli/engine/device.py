"""Device selection (CUDA, then MPS, then CPU) and reduced-precision inference."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from fusecli.errors import FuseError

PRECISIONS = ("fp32", "bf16", "fp16")


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
            raise FuseError("--device cuda was asked for but no CUDA GPU is available; use cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise FuseError(
                f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    elif device.type == "mps" and not _mps_available():
        raise FuseError("--device mps was asked for but MPS is not available; use cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise FuseError(f"unsupported device {spec!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


@contextlib.contextmanager
def precision(device: torch.device, name: str = "fp32") -> Iterator[None]:
    """Run the enclosed inference in ``fp32`` (default), ``bf16`` or ``fp16`` autocast.

    fp16 is offered on CUDA and MPS only (CPU kernels for it are slow or missing); bf16 works on
    CPU and on GPUs that support it. The error against fp32 is measured in benchmarks/.

    Raises:
        FuseError: unknown precision, or one the device cannot run.
    """
    if name not in PRECISIONS:
        raise FuseError(f"unknown precision {name!r}; use one of {', '.join(PRECISIONS)}")
    if name == "fp32":
        yield
        return
    dtype = torch.bfloat16 if name == "bf16" else torch.float16
    if name == "fp16" and device.type == "cpu":
        raise FuseError("fp16 is not supported on the CPU; use bf16 or fp32")
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield
