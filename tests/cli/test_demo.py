"""`fuse demo`: simulated inputs per task, a contact sheet, and no faked result without weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fusecli import pipeline, plugins
from fusecli.cli import demo as demo_command
from fusecli.cli.demo import draw_scene
from fusecli.cli.main import build_app
from fusecli.color import ColorPolicy
from fusecli.engine import PSLPT, save_weights
from fusecli.errors import WeightsError
from fusecli.hookspecs import InputRole, TaskSpec, hookimpl
from fusecli.io import read_image, write_image

runner = CliRunner()


def test_simulated_inputs_have_the_scene_size_and_the_expected_character() -> None:
    scene = draw_scene(64, 48)
    assert scene.shape == (1, 3, 48, 64)
    catalog = plugins.load_catalog(autoload=False)
    simulators = {name: catalog.get(name).spec.demo_inputs for name in ("mff", "mef", "ivf", "mmf")}
    for name, simulate in simulators.items():
        sources = simulate(scene)
        assert len(sources) == 2, name
        for source in sources:
            assert source.shape[-2:] == (48, 64) and source.shape[1] in (1, 3)
            assert float(source.min()) >= 0.0 and float(source.max()) <= 1.0
    under, over = simulators["mef"](scene)
    assert float(under.mean()) < float(scene.mean()) < float(over.mean())
    near, far = simulators["mff"](scene)
    # Complementary focus: each source matches the scene on its own half only.
    assert (near - scene)[..., :16].abs().mean() < (far - scene)[..., :16].abs().mean()
    assert (far - scene)[..., -16:].abs().mean() < (near - scene)[..., -16:].abs().mean()
    infrared, _ = simulators["ivf"](scene)
    anatomical, functional = simulators["mmf"](scene)
    assert infrared.shape[1] == 1 and anatomical.shape[1] == 1 and functional.shape[1] == 3


def test_demo_writes_every_task_and_a_contact_sheet(tmp_path: Path) -> None:
    weights = save_weights(PSLPT(), tmp_path / "w.safetensors", {})
    out = tmp_path / "demo"
    args = ["demo", "-o", str(out), "--weights", str(weights), "--width", "48", "--json"]
    result = runner.invoke(build_app(), args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["simulated"] is True
    assert [t["task"] for t in summary["tasks"]] == ["ivf", "mef", "mff", "mmf"]
    for task in ("mff", "mef", "ivf", "mmf"):
        fused = read_image(out / f"{task}-fused.png")
        assert fused.pixels.shape[-2:] == (36, 48)
        assert (out / f"{task}-1-simulated.png").is_file()
    sheet = read_image(out / "contact-sheet.png")
    assert sheet.is_color and sheet.width > 3 * 48 and sheet.height > 4 * 36
    again = runner.invoke(build_app(), args[:-1])
    assert again.exit_code == 1 and "--overwrite" in again.stderr


def _no_shipped_weights(name: str) -> Path:
    raise WeightsError(f"no shipped weights named {name!r}")


def test_without_weights_the_demo_fails_clearly_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fresh install before weights are trained: the shipped file is missing.
    monkeypatch.setattr(pipeline, "shipped_weights_path", _no_shipped_weights)
    result = runner.invoke(build_app(), ["demo", "-o", str(tmp_path / "demo")])
    assert result.exit_code == 1 and "--weights" in result.stderr
    assert not (tmp_path / "demo").exists()


def test_a_photograph_can_replace_the_drawn_scene(tmp_path: Path) -> None:
    photo = write_image(tmp_path / "photo.png", torch.rand(1, 3, 40, 60)).path
    weights = save_weights(PSLPT(), tmp_path / "w.safetensors", {})
    out = tmp_path / "demo"
    args = [
        "demo",
        "-o",
        str(out),
        "--weights",
        str(weights),
        "--width",
        "32",
        "--image",
        str(photo),
    ]
    result = runner.invoke(build_app(), args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "SIMULATED" in result.stderr and "photo.png" in result.stderr
    assert read_image(out / "ivf-fused.png").pixels.shape[-2:] == (22, 32)


def test_a_third_party_task_with_demo_inputs_joins_the_demo(tmp_path, monkeypatch) -> None:
    def three_greys(scene):
        grey = scene.mean(dim=1, keepdim=True)
        return [grey, grey.flip(-1), 1 - grey]

    spec = TaskSpec(
        name="triple",
        help="a test task with a demo",
        roles=(InputRole("view", "one view"),),
        faf_set=1,
        color=ColorPolicy(mode="chroma_weighted"),
        max_inputs=None,
        demo_inputs=three_greys,
    )

    @hookimpl
    def fusecli_register_tasks(registry):
        registry.register(spec)

    plugin = type("Plugin", (), {"fusecli_register_tasks": staticmethod(fusecli_register_tasks)})
    catalog = plugins.load_catalog(autoload=False, extra_plugins=[("triple", plugin)])
    monkeypatch.setattr(demo_command, "get_catalog", lambda: catalog)
    weights = save_weights(PSLPT(), tmp_path / "w.safetensors", {})
    out = tmp_path / "demo"
    args = ["demo", "-o", str(out), "--weights", str(weights), "--width", "32", "--json"]
    result = runner.invoke(build_app(), args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "triple" in [t["task"] for t in json.loads(result.stdout)["tasks"]]
    assert (out / "triple-3-simulated.png").is_file() and (out / "triple-fused.png").is_file()
