"""Inference precision: fp32, or bfloat16 autocast where the hardware computes it natively.

bf16 is only worth it with native support: on a CPU the avx512_bf16 or AMX instructions, or a
CUDA GPU that supports bf16. Elsewhere PyTorch emulates it, which is slower than fp32, so it is
refused. ``auto`` takes bf16 only where it is native and where it was measured to change the
fused 8-bit image by at most one grey level (benchmarks/bench_precision.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from fusecli.errors import FuseError

PRECISIONS = ("fp32", "bf16", "auto")
# CPU flags (/proc/cpuinfo) of native bf16 arithmetic.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# Whether bf16 keeps the 8-bit result within one grey level of fp32 on the development pairs.
# Measured with the shipped weights (benchmarks/bench_precision.py, benchmarks/README.md): it
# does not (6-7 levels at most, 13-28% of the pixels moved by more than one on every set), so
# ``auto`` stays fp32 until weights pass that check.
BF16_WITHIN_ONE_LEVEL = False


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags of the first processor in ``cpuinfo`` (empty where unreadable)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def native_bf16(device: torch.device | str, flags: Iterable[str] | None = None) -> bool:
    """Whether ``device`` computes bfloat16 natively.

    Args:
        device: where the network runs.
        flags: the CPU's feature flags; read from /proc/cpuinfo when None.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    return bool(NATIVE_BF16_FLAGS & set(cpu_flags() if flags is None else flags))


def resolve_precision(
    choice: str, device: torch.device | str, flags: Iterable[str] | None = None
) -> str:
    """``fp32`` or ``bf16`` for a requested ``fp32``, ``bf16`` or ``auto``.

    Raises:
        FuseError: an unknown choice, or bf16 where it would be emulated.
    """
    choice = choice.strip().lower()
    if choice not in PRECISIONS:
        raise FuseError(f"precision {choice!r} is not one of {', '.join(PRECISIONS)}")
    if choice == "fp32":
        return "fp32"
    native = native_bf16(device, flags)
    if choice == "auto":
        return "bf16" if native and BF16_WITHIN_ONE_LEVEL else "fp32"
    if not native:
        raise FuseError(
            f"bf16 needs native support (CPU flags avx512_bf16 or amx_bf16, or a CUDA GPU), "
            f"which {torch.device(device).type} here lacks, so it would run emulated and "
            "slower than fp32; use fp32 or auto"
        )
    return "bf16"


@contextlib.contextmanager
def precision_context(precision: str, device: torch.device | str) -> Iterator[None]:
    """Autocast to bfloat16 for ``bf16``; nothing for ``fp32``."""
    if precision == "bf16":
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            yield
    else:
        yield
