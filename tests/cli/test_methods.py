"""`fuse methods`, `fuse <task> --method` and `fuse batch --method`, and a third-party method."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from fusecli.cli.main import build_app
from fusecli.io import read_image, write_image
from tests.plugin_package import MAXIMUM_METHOD_MODULE, make_plugin_distribution

REPO_ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _image(path: Path, channels: int, *, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    pixels = torch.from_numpy(rng.random((1, channels, 24, 32)).astype(np.float32))
    write_image(path, pixels, bit_depth=8)
    return path


def _run(*args: str):
    return runner.invoke(build_app(), list(args))


def test_methods_lists_the_builtin_methods_with_pslpt_first() -> None:
    rows = json.loads(_run("methods", "--json").stdout)
    assert rows[0]["method"] == "pslpt" and rows[0]["default"]
    assert {r["method"] for r in rows} == {"pslpt", "average", "laplacian", "guided", "mertens"}
    mertens = next(r for r in rows if r["method"] == "mertens")
    assert mertens["faf_sets"] == [1]
    table = _run("methods").stdout
    assert "pslpt (default)" in table and "Mertens" in table


def test_fuse_with_a_classical_method_writes_a_coloured_result(tmp_path: Path) -> None:
    near = _image(tmp_path / "near.png", 3)
    far = _image(tmp_path / "far.png", 3, seed=1)
    out = tmp_path / "out.png"
    result = _run("mff", str(near), str(far), "-o", str(out), "--method", "laplacian", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["method"] == "laplacian" and record["weights"] is None
    assert read_image(out).pixels.shape == (1, 3, 24, 32)


def test_an_unknown_or_unsuitable_method_is_one_error_line_and_no_output(tmp_path: Path) -> None:
    a = _image(tmp_path / "ir.png", 1)
    b = _image(tmp_path / "vi.png", 3, seed=1)
    out = tmp_path / "out.png"
    unknown = _run("ivf", str(a), str(b), "-o", str(out), "--method", "nope")
    assert unknown.exit_code == 1
    assert "no fusion method named 'nope'" in unknown.stderr and "fuse methods" in unknown.stderr
    unsuitable = _run("ivf", str(a), str(b), "-o", str(out), "--method", "mertens")
    assert unsuitable.exit_code == 1
    assert unsuitable.stderr.startswith("error: method 'mertens' does not suit task 'ivf'")
    assert not out.exists()


def test_batch_writes_one_tree_per_method(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs"
    for folder in ("a", "b"):
        (pairs / folder).mkdir(parents=True)
        for index in range(2):
            _image(pairs / folder / f"scene{index}.png", 3, seed=index + (folder == "b"))
    out = tmp_path / "out"
    result = _run("batch", str(pairs), "-o", str(out), "--method", "average, laplacian")
    assert result.exit_code == 0, result.output
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert written == [
        "average/scene0.png",
        "average/scene1.png",
        "laplacian/scene0.png",
        "laplacian/scene1.png",
    ]
    again = _run("batch", str(pairs), "-o", str(out), "--method", "laplacian,nope")
    assert again.exit_code == 1 and "no fusion method named 'nope'" in again.stderr


def test_a_third_party_method_package_works(tmp_path: Path) -> None:
    site = make_plugin_distribution(
        tmp_path / "site",
        dist="fusecli-maximum",
        module="fusecli_maximum",
        source=MAXIMUM_METHOD_MODULE,
    )
    infrared = _image(tmp_path / "ir.png", 1)
    visible = _image(tmp_path / "vi.png", 3, seed=2)
    env = {k: v for k, v in os.environ.items() if k != "FUSECLI_DISABLE_PLUGIN_AUTOLOAD"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO_ROOT)])
    code = "from fusecli.cli.main import main; main()"

    def fuse(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True
        )

    listed = fuse("methods")
    assert listed.returncode == 0, listed.stderr
    assert "maximum" in listed.stdout and "fusecli-maximum" in listed.stdout
    out = tmp_path / "max.png"
    run = fuse("ivf", str(infrared), str(visible), "-o", str(out), "--method", "maximum")
    assert run.returncode == 0, run.stderr
    assert read_image(out).pixels.shape == (1, 3, 24, 32)
    other = tmp_path / "refused.png"
    refused = fuse("mff", str(visible), str(visible), "-o", str(other), "--method", "maximum")
    assert refused.returncode == 1 and "does not suit task 'mff'" in refused.stderr


def test_batch_then_eval_of_the_method_trees_writes_a_report(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs"
    for folder in ("a", "b"):
        (pairs / folder).mkdir(parents=True)
        for index in range(2):
            _image(pairs / folder / f"scene{index}.png", 3, seed=index + 5 * (folder == "b"))
    out = tmp_path / "out"
    fused = _run("batch", str(pairs), "-o", str(out), "--method", "average,laplacian")
    assert fused.exit_code == 0, fused.output
    report = tmp_path / "report.html"
    result = _run(
        "eval", str(pairs / "a"), str(pairs / "b"), str(out), "--metrics", "SSIM,Qabf",
        "--report", str(report), "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)) == {"average", "laplacian"}
    text = report.read_text()
    assert "out/laplacian/scene1.png" in text and text.count('<tr class="mean"') == 2
    missing = _run(
        "eval", str(pairs / "a"), str(pairs / "b"), str(out),
        "--report", str(tmp_path / "no" / "such" / "r.html"),
    )  # fmt: skip
    assert missing.exit_code == 1 and "choose another --report path" in missing.stderr
