"""`fuse export`: the file, refusals before any work, and README's deployment snippet."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fusecli.cli.main import build_app

REPO_ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _run(*args: str):
    return runner.invoke(build_app(), list(args), catch_exceptions=False)


def _one_error_line(result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_existing_output_unknown_format_and_task_are_refused(tmp_path) -> None:
    existing = tmp_path / "ivf.onnx"
    existing.write_bytes(b"keep")
    _one_error_line(_run("export", "-o", str(existing)), "already exists", "--overwrite")
    assert existing.read_bytes() == b"keep"
    _one_error_line(_run("export", "-o", str(tmp_path / "m.bin")), "--format")
    _one_error_line(_run("export", "--format", "tflite", "-o", str(tmp_path / "m.x")), "tflite")
    _one_error_line(_run("export", "-o", str(tmp_path / "no" / "m.onnx")), "does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ivf.onnx"]


def test_missing_onnx_is_one_line_with_the_pip_command(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)
    out = tmp_path / "ivf.onnx"
    _one_error_line(_run("export", "-o", str(out)), "pip install 'fusecli[export]'")
    assert list(tmp_path.iterdir()) == []


def _readme_snippet() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("## Deploying a model", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
@pytest.mark.data
def test_readme_snippet_on_a_roadscene_pair_matches_fuse_ivf(tmp_path, data_dir) -> None:
    pytest.importorskip("onnxruntime")
    pair = "FLIR_00018.jpg"
    shutil.copy(data_dir / "ivf/roadscene/ir" / pair, tmp_path / "ir.jpg")
    shutil.copy(data_dir / "ivf/roadscene/vi" / pair, tmp_path / "vi.jpg")
    result = _run("export", "--format", "onnx", "-o", str(tmp_path / "ivf.onnx"))
    assert result.exit_code == 0, result.output
    result = _run("ivf", str(tmp_path / "ir.jpg"), str(tmp_path / "vi.jpg"), "-o",
                  str(tmp_path / "engine.png"))  # fmt: skip
    assert result.exit_code == 0, result.output
    # Verbatim, in a fresh interpreter, in the folder holding ir.jpg, vi.jpg and ivf.onnx.
    subprocess.run([sys.executable, "-c", _readme_snippet()], cwd=tmp_path, check=True)
    deployed = np.asarray(Image.open(tmp_path / "fused.png"), dtype=np.int16)
    engine = np.asarray(Image.open(tmp_path / "engine.png"), dtype=np.int16)
    assert deployed.shape == engine.shape
    assert np.abs(deployed - engine).max() <= 1
