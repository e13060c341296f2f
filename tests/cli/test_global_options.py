"""Root options after the command, -q/-v, status lines on stderr, --force, -o FOLDER (issue 19)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fusecli.cli.main import build_app, hoist_global_options
from fusecli.engine import PSLPT, save_weights

runner = CliRunner()


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_weights(PSLPT(), tmp_path_factory.mktemp("w") / "w.safetensors", {})


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    paths = []
    for name in ("ir", "vi"):
        path = tmp_path / name / "scene7.png"
        path.parent.mkdir()
        Image.fromarray((rng.random((24, 32)) * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths[0], paths[1]


def _run(*args: str):
    return runner.invoke(build_app(), [str(a) for a in args], catch_exceptions=False)


def test_root_options_after_the_command_are_moved_before_it() -> None:
    assert hoist_global_options(["ivf", "a", "--device", "cpu", "--debug", "-q"]) == [
        "--device",
        "cpu",
        "--debug",
        "-q",
        "ivf",
        "a",
    ]
    assert hoist_global_options(["--device", "cpu", "ivf", "-v", "--device=mps"]) == [
        "--device",
        "cpu",
        "-v",
        "--device=mps",
        "ivf",
    ]
    # After "--" everything is an argument, even a file named --debug.
    assert hoist_global_options(["ivf", "--", "--debug"]) == ["ivf", "--", "--debug"]


def test_debug_after_the_command_shows_the_traceback(tmp_path: Path, pair) -> None:
    out = tmp_path / "o.png"
    out.write_bytes(b"")
    plain = runner.invoke(build_app(), ["ivf", *map(str, pair), "-o", str(out)])
    assert plain.exit_code == 1 and plain.stderr.startswith("error: ")
    debug = runner.invoke(build_app(), ["ivf", *map(str, pair), "-o", str(out), "--debug"])
    assert debug.exception is not None and type(debug.exception).__name__.endswith("Error")


def test_status_goes_to_stderr(tmp_path: Path, pair, weights) -> None:
    out = tmp_path / "o.png"
    first = _run("ivf", *pair, "-o", out, "--weights", weights)
    assert first.exit_code == 0 and first.stdout == "" and "wrote" in first.stderr
    again = _run("ivf", *pair, "-o", out, "--weights", weights, "--overwrite", "--json")
    assert again.exit_code == 0
    assert json.loads(again.stdout)["output"] == str(out)  # stdout: only the record


def test_quiet_and_verbose(tmp_path: Path, pair, weights) -> None:
    out = tmp_path / "o.png"
    quiet = _run("ivf", *pair, "-o", out, "--weights", weights, "-q")
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""
    verbose = _run("-v", "ivf", *pair, "-o", out, "--weights", weights, "--overwrite")
    lines = verbose.stderr.splitlines()
    assert any(line.startswith("device cpu, method pslpt") for line in lines)
    assert f"weights {weights}" in lines and lines[-1].startswith("wrote")


def test_force_is_overwrite_in_every_command(tmp_path: Path, pair, weights) -> None:
    out = tmp_path / "o.png"
    assert _run("ivf", *pair, "-o", out, "--weights", weights).exit_code == 0
    again = runner.invoke(build_app(), ["ivf", *map(str, pair), "-o", str(out)])
    assert again.exit_code == 1 and "--overwrite" in again.stderr
    assert _run("ivf", *pair, "-o", out, "--weights", weights, "--force").exit_code == 0
    for command in ("ivf", "batch", "align", "demo", ["weights", "convert"]):
        words = command if isinstance(command, list) else [command]
        help_text = runner.invoke(build_app(), [*words, "--help"], terminal_width=200).stdout
        assert "--force" in help_text, command


def test_output_folder_names_the_output_after_the_first_source(
    tmp_path: Path, pair, weights
) -> None:
    folder = tmp_path / "fused"
    folder.mkdir()
    result = _run("ivf", *pair, "-o", folder, "--weights", weights)
    assert result.exit_code == 0, result.output
    assert [p.name for p in folder.iterdir()] == ["scene7.png"]
    # The first source's own folder would mean writing over it: refused, nothing written.
    same = runner.invoke(build_app(), ["ivf", *map(str, pair), "-o", str(pair[0].parent)])
    assert same.exit_code == 1 and len(same.stderr.splitlines()) == 1
    args = ["ivf", *map(str, pair), "-o", str(pair[0].parent), "--force"]
    forced = runner.invoke(build_app(), args)
    assert forced.exit_code == 1 and "scene7.png" in forced.stderr
    assert pair[0].stat().st_size > 100
