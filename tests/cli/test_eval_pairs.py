"""`fuse eval PAIRS FUSED`: batch's layouts, matched by relative path, unmatched files skipped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from fusecli.cli.main import build_app

runner = CliRunner()


def _image(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    _, x = np.mgrid[0:40, 0:48]
    pixels = 120 + 80 * np.sin(x / (4.0 + seed) + seed) + rng.normal(0, 8, x.shape)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
    return path


def _run(*args: object):
    return runner.invoke(build_app(), [str(a) for a in args], catch_exceptions=False)


def test_batch_with_two_methods_then_eval_of_the_pairs(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs"
    for index in range(3):
        _image(pairs / "road" / "ir" / f"s{index}.png", index)
        _image(pairs / "road" / "vi" / f"s{index}.png", 10 + index)
    _image(pairs / "road" / "ir" / "stray.png", 20)  # no visible partner
    for index in range(3):
        _image(pairs / "mef" / "hall" / f"e{index}.png", 30 + index)  # a stack of three
    out = tmp_path / "out"
    fused = _run("batch", pairs, "-o", out, "--method", "average,laplacian", "--skip-unmatched")
    assert fused.exit_code == 0, fused.output
    assert (out / "average" / "mef" / "hall.png").is_file()
    (out / "laplacian" / "road" / "s2.png").unlink()  # one method lacks one result
    _image(out / "average" / "road" / "extra.png", 40)  # a result of no pair

    report = tmp_path / "report.html"
    args = ("eval", pairs, out, "--metrics", "SSIM,Qabf", "--report", report)
    result = _run(*args, "--json")
    assert result.exit_code == 0, result.output
    summaries = json.loads(result.stdout)
    assert set(summaries) == {"average", "laplacian"}
    assert set(summaries["average"]["images"]) == {"road/s0", "road/s1"}
    problems = [line for line in result.stderr.splitlines() if line.startswith("problem: ")]
    assert len(problems) == 4, problems
    expected = (
        "road/stray: no image",
        "mef/hall: a stack of 3",
        "road/s2: no fused image in laplacian",
        "extra.png: matches no pair",
    )
    for words in expected:
        assert sum(words in line for line in problems) == 1, words
    assert "laplacian/road/s1.png" in report.read_text()

    # One method's tree alone (FUSED without method folders) works the same way.
    alone = _run("eval", pairs, out / "average", "--metrics", "SSIM", "--json")
    assert alone.exit_code == 0 and json.loads(alone.stdout)["n"] == 3


def test_json_failures_are_json_on_stdout_and_one_error_line(tmp_path: Path) -> None:
    _image(tmp_path / "pairs" / "ir" / "a.png", 0)
    result = runner.invoke(
        build_app(), ["eval", str(tmp_path / "pairs"), str(tmp_path / "nope"), "--json"]
    )
    assert result.exit_code == 1
    record = json.loads(result.stdout)
    assert "nope" in record["error"] and "does not exist" in record["error"]
    assert result.stderr.splitlines() == [f"error: {record['error']}"]
    empty = tmp_path / "out"
    empty.mkdir()
    _image(tmp_path / "pairs" / "vi" / "a.png", 1)
    nothing = runner.invoke(build_app(), ["eval", str(tmp_path / "pairs"), str(empty), "--json"])
    assert nothing.exit_code == 1 and "no pair in" in json.loads(nothing.stdout)["error"]
