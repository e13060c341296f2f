"""`fuse train`: runs the smoke recipe, resumes, plots, and reports recipe errors in one line."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import pytest
from typer.testing import CliRunner

from fusecli.cli.main import build_app

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / ".." / "shared" / "data"
SMOKE = REPO / "recipes" / "smoke.yaml"


def _run(*args: str):
    return CliRunner().invoke(build_app(), ["train", *args])


needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA}")


@pytest.mark.data
@pytest.mark.slow
@needs_data
def test_train_runs_both_stages_then_resume_and_plot(tmp_path):
    run = tmp_path / "run"
    common = [str(SMOKE), "-o", str(run), "--set", f"data.root={DATA.resolve()}"]
    result = _run(*common, "--max-steps", "3")
    assert result.exit_code == 0, result.output
    assert f"stopped at stage 1 step 3 in {run}" in result.stderr and result.stdout == ""
    # The run's own recipe.yaml (data root made absolute) resumes it from anywhere.
    result = _run(str(run / "recipe.yaml"), "-o", str(run), "--resume")
    assert result.exit_code == 0, result.output
    assert "finished at stage 2 step 2" in result.stderr
    assert (run / "stage2_best.safetensors").is_file()

    png = tmp_path / "curves.png"
    result = _run("--plot", str(run / "log.jsonl"), "-o", str(png))
    assert result.exit_code == 0, result.output
    pixels = iio.imread(png)
    assert pixels.shape == (380, 2 * 560, 3) and pixels.std() > 0


@pytest.mark.data
@needs_data
def test_running_over_an_existing_run_is_a_one_line_error(tmp_path):
    common = [str(SMOKE), "-o", str(tmp_path), "--set", f"data.root={DATA.resolve()}"]
    assert _run(*common, "--stage", "1", "--set", "stage1.length=1").exit_code == 0
    result = _run(*common, "--stage", "1", "--set", "stage1.length=1")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "pass --resume" in result.stderr


def test_recipe_errors_are_one_line_with_key_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 0\nstage1:\n  lenght: 3\n")
    result = _run(str(bad))
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "stage1.lenght (line 3) is not a known key" in result.stderr


def test_unknown_override_and_missing_recipe(tmp_path):
    result = _run(str(SMOKE), "--set", "stage9.length=1")
    assert result.exit_code == 1 and "names no recipe key" in result.stderr
    assert _run(str(tmp_path / "nope.yaml")).exit_code == 2  # parser-level path check
    result = _run()
    assert result.exit_code == 1 and "give a recipe file" in result.stderr


def test_plot_rejects_a_file_that_is_not_a_log(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text(
        json.dumps({"kind": "train", "stage": 1, "step": 1, "loss": 1.0}) + "\nnot json\n"
    )
    result = _run("--plot", str(log), "-o", str(tmp_path / "c.png"))
    assert result.exit_code == 1 and "line 2 is not JSON" in result.stderr


def test_status_lines_go_to_stderr(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text(
        "".join(
            json.dumps({"kind": "train", "stage": 1, "step": s, "loss": 1 / s}) + "\n"
            for s in (1, 2, 3)
        )
    )
    png = tmp_path / "c.png"
    result = _run("--plot", str(log), "-o", str(png))
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and result.stderr == f"wrote {png}\n"
