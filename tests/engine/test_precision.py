"""--precision: bf16 only where native, auto only where measured to be as good; bf16 runs."""

from __future__ import annotations

import pytest
import torch

from fusecli.engine import PSLPT, fuse_tiled, precision
from fusecli.engine.precision import cpu_flags, native_bf16, resolve_precision
from fusecli.errors import FuseError

AVX2 = {"fpu", "sse2", "avx", "avx2", "fma"}
SAPPHIRE_RAPIDS = AVX2 | {"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}
COOPER_LAKE = AVX2 | {"avx512f", "avx512_bf16"}


def test_cpu_flags_are_read_from_cpuinfo(tmp_path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 avx512_bf16\n\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


@pytest.mark.parametrize(
    ("flags", "native"), [(AVX2, False), (COOPER_LAKE, True), (SAPPHIRE_RAPIDS, True)]
)
def test_native_bf16_follows_the_cpu_flags(flags, native) -> None:
    assert native_bf16("cpu", flags) is native


def test_fp32_machine_auto_is_fp32_and_bf16_is_refused() -> None:
    assert resolve_precision("fp32", "cpu", AVX2) == "fp32"
    assert resolve_precision("auto", "cpu", AVX2) == "fp32"
    with pytest.raises(FuseError, match="emulated") as caught:
        resolve_precision("bf16", "cpu", AVX2)
    assert "\n" not in str(caught.value)


def test_native_machine_takes_bf16_when_asked_and_auto_only_when_it_measured_well(
    monkeypatch,
) -> None:
    assert resolve_precision("bf16", "cpu", SAPPHIRE_RAPIDS) == "bf16"
    monkeypatch.setattr(precision, "BF16_WITHIN_ONE_LEVEL", False)
    assert resolve_precision("auto", "cpu", SAPPHIRE_RAPIDS) == "fp32"
    monkeypatch.setattr(precision, "BF16_WITHIN_ONE_LEVEL", True)
    assert resolve_precision("auto", "cpu", COOPER_LAKE) == "bf16"
    assert resolve_precision("auto", "cpu", AVX2) == "fp32"


def test_a_gpu_with_bf16_counts_as_native(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert resolve_precision("bf16", "cuda", AVX2) == "bf16"
    assert resolve_precision("bf16", "cuda:1", set()) == "bf16"


def test_flags_are_read_from_this_machine_when_not_given(monkeypatch) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(AVX2))
    with pytest.raises(FuseError):
        resolve_precision("bf16", "cpu")
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(COOPER_LAKE))
    assert resolve_precision(" BF16 ", "cpu") == "bf16"


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(FuseError, match="fp16"):
        resolve_precision("fp16", "cpu", SAPPHIRE_RAPIDS)


def test_bf16_autocast_path_runs_and_stays_near_fp32() -> None:
    # Emulated on machines without bf16, hence a tiny image; only the path is checked here,
    # its accuracy with trained weights is measured by benchmarks/bench_precision.py.
    net = PSLPT().eval()
    sources = [torch.rand(1, 1, 32, 24) for _ in range(2)]
    exact = fuse_tiled(net, sources, 2)
    reduced = fuse_tiled(net, sources, 2, precision="bf16")
    assert reduced.dtype == torch.float32 and reduced.shape == exact.shape
    assert (reduced - exact).abs().max().item() < 0.05
