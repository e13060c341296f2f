"""Every failure is one `error: ...` line with a documented exit status (README, "Exit status")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from fusecli import pipeline
from fusecli.cli.main import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, build_app
from fusecli.plugins import get_catalog

runner = CliRunner()


def _image(path: Path) -> Path:
    Image.fromarray(np.full((16, 16), 100, np.uint8)).save(path)
    return path


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["ivf", "{tmp}/nope.png", "{tmp}/a.png", "-o", "{tmp}/o.png"], ["nope.png", "INFRARED"]),
        (["ivf", "{tmp}/a.png", "{tmp}/a.png", "--bogus"], ["--bogus"]),
        (["ivf"], ["Missing argument"]),
        (["no-such-command"], ["no-such-command"]),
        (["batch", "{tmp}/a.png"], ["a.png"]),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(tmp_path, args, names) -> None:
    _image(tmp_path / "a.png")
    result = runner.invoke(build_app(), [a.format(tmp=tmp_path) for a in args])
    lines = _error_lines(result.output)
    assert result.exit_code == EXIT_USAGE
    assert len(lines) == 1 and lines[0].startswith("error: ")
    for name in names:
        assert name in lines[0]
    assert "--help" in lines[0] and "╭" not in result.output


def test_failures_exit_1_with_one_line(tmp_path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    result = runner.invoke(
        build_app(), ["ivf", str(text), str(text), "-o", str(tmp_path / "o.png")]
    )
    lines = _error_lines(result.output)
    assert result.exit_code == EXIT_FAILED
    assert len(lines) == 1 and lines[0].startswith("error: ") and "notes.txt" in lines[0]


def test_success_and_version_exit_0() -> None:
    assert runner.invoke(build_app(), ["--version"]).exit_code == 0
    assert runner.invoke(build_app(), ["tasks"]).exit_code == 0


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path, monkeypatch) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "fuse_files", interrupted)
    a = _image(tmp_path / "a.png")
    result = runner.invoke(build_app(), ["ivf", str(a), str(a), "-o", str(tmp_path / "o.png")])
    assert result.exit_code == EXIT_INTERRUPTED
    assert _error_lines(result.output) == [
        "error: interrupted; finished outputs are kept, none is half-written"
    ]


def test_a_task_of_a_disabled_plugin_names_the_plugin(monkeypatch) -> None:
    monkeypatch.setenv("FUSECLI_DISABLE_PLUGINS", "mef")
    get_catalog.cache_clear()
    try:
        result = runner.invoke(build_app(), ["mef", "a.png", "b.png", "-o", "c.png"])
    finally:
        get_catalog.cache_clear()  # the next test loads the catalog without the variable
    lines = _error_lines(result.output)
    assert result.exit_code == EXIT_USAGE and len(lines) == 1
    assert lines[0].startswith("error: task mef is provided by plugin mef (fusecli ")
    assert "disabled by FUSECLI_DISABLE_PLUGINS" in lines[0]


@pytest.mark.parametrize("command", ["ivf", "batch"])
def test_nan_from_the_network_is_an_internal_error_naming_the_inputs(
    tmp_path, monkeypatch, command
) -> None:
    # A bug that makes NaN must not be painted over with black pixels (issue 19).
    def broken_network(net, spec, frames, **options):
        return torch.full((1, 1, 16, 16), float("nan")), None

    monkeypatch.setattr(pipeline, "run_network", broken_network)
    (tmp_path / "in").mkdir()
    ir, vi = _image(tmp_path / "in" / "ir.png"), _image(tmp_path / "in" / "vi.png")
    out = tmp_path / "out"
    out.mkdir()
    if command == "batch":
        args = ["batch", str(tmp_path / "in"), "--task", "ivf", "-o", str(out)]
    else:
        args = ["ivf", str(ir), str(vi), "-o", str(out / "o.png")]
    result = runner.invoke(build_app(), args)
    # fuse batch reports a failed pair on its own line and goes on with the next one.
    prefix = "failed: " if command == "batch" else "error: "
    lines = [line for line in _error_lines(result.output) if line.startswith(prefix)]
    assert result.exit_code == EXIT_FAILED
    assert len(lines) == 1 and "NaN" in lines[0] and "ir.png, vi.png" in lines[0]
    assert "bug" in lines[0] and "--debug" in lines[0]
    assert not list(out.iterdir())
