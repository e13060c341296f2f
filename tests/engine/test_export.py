"""Exported networks (TorchScript, ONNX) give the engine's result without fusecli's engine."""

from __future__ import annotations

import sys

import pytest
import torch

from fusecli.engine import load_weights, shipped_weights_path
from fusecli.engine.export import export_network, shift_mask
from fusecli.engine.layers import _shift_mask_cpu
from fusecli.errors import FuseError

# Odd sizes: the padding to 16 differs on both sides, and neither is the export's example size.
SIZES = [(67, 45), (130, 97)]


@pytest.fixture(scope="module")
def net():
    return load_weights(shipped_weights_path())


def _pair(batch: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(height * width)
    a = torch.rand(batch, 1, height, width, generator=generator)
    # Something for the FAF set to choose between: a blurred, brighter copy of a.
    b = (torch.nn.functional.avg_pool2d(a, 5, 1, 2) * 1.3).clamp(0, 1)
    return a, b


@pytest.mark.parametrize(("height", "width", "window", "shift"), [(6, 10, 2, 1), (8, 8, 4, 2)])
def test_shift_mask_from_run_time_sizes_equals_the_engine_mask(height, width, window, shift):
    assert torch.equal(
        shift_mask(height, width, window, shift), _shift_mask_cpu(height, width, window, shift)
    )


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_file_matches_the_engine_at_odd_sizes(net, tmp_path) -> None:
    path = export_network(net, 1, tmp_path / "mff.pt", "torchscript")
    module = torch.jit.load(str(path))  # plain TorchScript: no fusecli module is needed
    for height, width in SIZES:
        a, b = _pair(2, height, width)
        expected = net.fuse(a, b, faf_set=1)
        with torch.no_grad():
            got = module(a, b)
        assert got.shape == (2, 1, height, width)
        assert (got - expected).abs().max().item() < 1e-4


@pytest.mark.slow
def test_onnx_file_matches_the_engine_at_odd_sizes(net, tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    path = export_network(net, 2, tmp_path / "ivf.onnx", "onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["a", "b"]
    for batch, (height, width) in zip((1, 2), SIZES):
        a, b = _pair(batch, height, width)
        expected = net.fuse(a, b, faf_set=2).numpy()
        (got,) = session.run(["fused"], {"a": a.numpy(), "b": b.numpy()})
        assert got.shape == (batch, 1, height, width)
        assert abs(got - expected).max() < 1e-4


def test_onnx_without_the_onnx_package_names_the_extra(net, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(FuseError, match=r"pip install 'fusecli\[export\]'"):
        export_network(net, 2, tmp_path / "ivf.onnx", "onnx")
    assert list(tmp_path.iterdir()) == []


def test_unknown_format_and_faf_set_are_refused(net, tmp_path) -> None:
    with pytest.raises(ValueError, match="export format"):
        export_network(net, 2, tmp_path / "x.bin", "tflite")
    with pytest.raises(ValueError, match="faf_set"):
        export_network(net, 3, tmp_path / "x.pt", "torchscript")
    assert list(tmp_path.iterdir()) == []
