"""`--precision` on `fuse <task>` and `fuse batch`: refused before any work where not native."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fusecli.cli.main import build_app
from fusecli.engine import PSLPT, precision, save_weights

runner = CliRunner()


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_weights(PSLPT(), tmp_path_factory.mktemp("weights") / "w.safetensors")


@pytest.fixture
def pair(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for role in ("ir", "vi"):
        (tmp_path / "in" / role).mkdir(parents=True)
        pixels = (rng.random((24, 32)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(tmp_path / "in" / role / "x.png")
    return tmp_path / "in"


@pytest.fixture(autouse=True)
def avx2_only(monkeypatch) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx", "avx2", "fma"}))


def _run(*args: str):
    return runner.invoke(build_app(), ["--device", "cpu", *args], catch_exceptions=False)


def _assert_refused(result) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: bf16 needs native support")


def test_fuse_with_bf16_on_an_avx2_cpu_is_one_error_line_and_no_output(pair, weights, tmp_path):
    out = tmp_path / "f.png"
    result = _run("ivf", str(pair / "ir/x.png"), str(pair / "vi/x.png"), "-o", str(out),
                  "--weights", str(weights), "--precision", "bf16")  # fmt: skip
    _assert_refused(result)
    assert not out.exists()


def test_batch_with_bf16_on_an_avx2_cpu_is_refused_before_any_work(pair, weights, tmp_path):
    out = tmp_path / "out"
    result = _run("batch", str(pair), "-o", str(out), "--weights", str(weights),
                  "--precision", "bf16")  # fmt: skip
    _assert_refused(result)
    assert not out.exists()


def test_auto_on_an_avx2_cpu_fuses_as_fp32(pair, weights, tmp_path) -> None:
    outputs = {}
    for choice in ("auto", "fp32"):
        out = tmp_path / f"{choice}.png"
        result = _run("ivf", str(pair / "ir/x.png"), str(pair / "vi/x.png"), "-o", str(out),
                      "--weights", str(weights), "--precision", choice)  # fmt: skip
        assert result.exit_code == 0, result.output
        outputs[choice] = np.asarray(Image.open(out))
    assert np.array_equal(outputs["auto"], outputs["fp32"])
