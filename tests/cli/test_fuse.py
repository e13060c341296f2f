"""`fuse <task>`: roles in --help, size/bit depth/colour of the output, errors before work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from typer.testing import CliRunner

from fusecli import pipeline
from fusecli.cli.main import build_app
from fusecli.engine import PSLPT, save_weights
from fusecli.errors import WeightsError
from fusecli.io import read_image, write_image
from tests.plugin_package import RGBNIR_MODULE, make_plugin_distribution

REPO_ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "w.safetensors"
    return save_weights(PSLPT(), path, {"note": "untrained, for tests"})


def _image(path: Path, channels: int, *, size=(32, 48), seed: int = 0, dtype=np.uint8) -> Path:
    rng = np.random.default_rng(seed)
    shape = (*size, channels) if channels > 1 else size
    top = np.iinfo(dtype).max
    array = (rng.random(shape) * top).astype(dtype)
    if path.suffix == ".tif":
        tifffile.imwrite(path, array)
    else:
        import torch

        pixels = torch.from_numpy(array.astype(np.float32) / top)
        pixels = pixels.permute(2, 0, 1) if channels > 1 else pixels[None]
        write_image(path, pixels[None], bit_depth=8)
    return path


def _run(*args: str):
    return runner.invoke(build_app(), list(args), catch_exceptions=False)


def test_help_lists_the_tasks_and_each_task_shows_its_roles() -> None:
    result = _run("--help")
    assert result.exit_code == 0
    for name in ("ivf", "mef", "mff", "mmf"):
        assert name in result.output
    ivf = _run("ivf", "--help").output
    assert "SOURCE 1 (infrared)" in ivf and "SOURCE 2 (visible)" in ivf
    assert "chroma from visible" in ivf
    assert "2 or more" in _run("mef", "--help").output


def test_ivf_keeps_size_and_the_visible_colour(tmp_path: Path, weights: Path) -> None:
    ir = _image(tmp_path / "ir.png", 1)
    vi = _image(tmp_path / "vi.jpg", 3, seed=1)
    out = tmp_path / "out.png"
    result = _run("ivf", str(ir), str(vi), "-o", str(out), "--weights", str(weights), "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["width"] == 48 and record["height"] == 32 and record["channels"] == 3
    fused = read_image(out)
    assert fused.pixels.shape == (1, 3, 32, 48) and fused.bit_depth == 8


def test_sixteen_bit_grey_sources_give_a_sixteen_bit_grey_output(
    tmp_path: Path, weights: Path
) -> None:
    a = _image(tmp_path / "a.tif", 1, dtype=np.uint16)
    b = _image(tmp_path / "b.tif", 1, seed=2, dtype=np.uint16)
    out = tmp_path / "out.tif"
    result = _run("mff", str(a), str(b), "-o", str(out), "--weights", str(weights))
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stderr and result.stdout == ""  # status on stderr
    fused = read_image(out)
    assert fused.bit_depth == 16 and fused.pixels.shape == (1, 1, 32, 48)


def test_a_stack_of_three_exposures_fuses(tmp_path: Path, weights: Path) -> None:
    paths = [str(_image(tmp_path / f"e{i}.png", 3, seed=i)) for i in range(3)]
    out = tmp_path / "out.png"
    result = _run("mef", *paths, "-o", str(out), "--weights", str(weights), "--tile", "32")
    assert result.exit_code == 0, result.output
    assert read_image(out).pixels.shape == (1, 3, 32, 48)


def test_sizes_must_match_unless_resize(tmp_path: Path, weights: Path) -> None:
    a = _image(tmp_path / "a.png", 1)
    b = _image(tmp_path / "b.png", 1, size=(16, 24))
    out = tmp_path / "out.png"
    refused = _run("mmf", str(a), str(b), "-o", str(out), "--weights", str(weights))
    assert refused.exit_code == 1
    assert "is 24x16 but" in refused.stderr and "--resize" in refused.stderr
    assert not out.exists()
    args = ("mmf", str(a), str(b), "-o", str(out), "--weights", str(weights), "--resize")
    assert _run(*args).exit_code == 0
    assert read_image(out).pixels.shape == (1, 1, 32, 48)


def test_errors_come_before_any_work_and_leave_no_file(tmp_path: Path, weights: Path) -> None:
    a = _image(tmp_path / "a.png", 1)
    b = _image(tmp_path / "b.png", 1, seed=3)
    same = _run("ivf", str(a), str(b), "-o", str(a), "--weights", str(weights))
    assert same.exit_code == 1 and "is also the input" in same.stderr
    count = _run("ivf", str(a), str(b), str(a), "-o", str(tmp_path / "o.png"))
    assert count.exit_code == 1 and "takes 2 input images" in count.stderr
    bad_ext = _run("ivf", str(a), str(b), "-o", str(tmp_path / "o.gif"), "--weights", str(weights))
    assert bad_ext.exit_code == 1 and "cannot write .gif" in bad_ext.stderr
    corrupt = tmp_path / "c.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    broken = _run(
        "ivf", str(a), str(corrupt), "-o", str(tmp_path / "o.png"), "--weights", str(weights)
    )
    assert broken.exit_code == 1 and "c.png" in broken.stderr
    missing = _run("ivf", str(a), str(tmp_path / "nope.png"), "-o", str(tmp_path / "o.png"))
    assert missing.exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "c.png"]


def _no_shipped_weights(name: str) -> Path:
    raise WeightsError(f"no shipped weights named {name!r}")


def test_without_shipped_weights_the_error_says_to_pass_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fresh install before weights are trained: the shipped file is missing.
    monkeypatch.setattr(pipeline, "shipped_weights_path", _no_shipped_weights)
    a = _image(tmp_path / "a.png", 1)
    b = _image(tmp_path / "b.png", 1, seed=3)
    result = _run("ivf", str(a), str(b), "-o", str(tmp_path / "o.png"))
    assert result.exit_code == 1 and "--weights" in result.stderr


def test_a_third_party_plugin_package_adds_a_working_task(tmp_path: Path, weights: Path) -> None:
    site = make_plugin_distribution(
        tmp_path / "site", dist="fusecli-rgbnir", module="fusecli_rgbnir", source=RGBNIR_MODULE
    )
    make_plugin_distribution(
        site, dist="fusecli-broken", module="fusecli_broken", source="import no_such_module\n"
    )
    rgb = _image(tmp_path / "rgb.png", 3)
    nir = _image(tmp_path / "nir.png", 1, seed=4)
    env = {k: v for k, v in os.environ.items() if k != "FUSECLI_DISABLE_PLUGIN_AUTOLOAD"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO_ROOT)])
    code = "from fusecli.cli.main import main; main()"
    out = tmp_path / "out.png"

    def fuse(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True
        )

    tasks = fuse("tasks")
    assert tasks.returncode == 0, tasks.stderr
    assert "rgbnir" in tasks.stdout and "fusecli-rgbnir" in tasks.stdout
    assert "ivf" in tasks.stdout  # the broken plugin costs only its own tasks
    warnings = [line for line in tasks.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "fusecli_broken" in warnings[0]
    assert "no_such_module" in warnings[0]
    run = fuse("rgbnir", str(rgb), str(nir), "-o", str(out), "--weights", str(weights))
    assert run.returncode == 0, run.stderr
    assert read_image(out).pixels.shape == (1, 3, 32, 48)


def test_a_plugins_own_preprocessing_feeds_the_network(tmp_path: Path, weights: Path) -> None:
    # The README's black-hot example, verbatim, fuses what `fuse ivf` fuses from the same
    # thermal image inverted to white-hot (8-bit grey: the inversion is exact).
    readme = (REPO_ROOT / "plugins" / "README.md").read_text()
    block = readme.split("```python\n# fusecli_blackhot/__init__.py\n", 1)[1].split("```", 1)[0]
    site = make_plugin_distribution(
        tmp_path / "site", dist="fusecli-blackhot", module="fusecli_blackhot", source=block
    )
    black_hot = _image(tmp_path / "thermal.png", 1, seed=3)
    white_hot = tmp_path / "white.png"
    write_image(white_hot, 1.0 - read_image(black_hot).pixels, bit_depth=8)
    visible = _image(tmp_path / "visible.png", 3, seed=5)
    env = {k: v for k, v in os.environ.items() if k != "FUSECLI_DISABLE_PLUGIN_AUTOLOAD"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO_ROOT)])
    code = "from fusecli.cli.main import main; main()"
    outputs = []
    for task, thermal in (("ivf-blackhot", black_hot), ("ivf", white_hot)):
        out = tmp_path / f"{task}.png"
        args = [task, str(thermal), str(visible), "-o", str(out), "--weights", str(weights)]
        run = subprocess.run(
            [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True
        )
        assert run.returncode == 0, run.stderr
        outputs.append(read_image(out).pixels)
    assert outputs[0].shape == (1, 3, 32, 48)
    assert torch.equal(outputs[0], outputs[1])


def test_medical_pair_from_shared_data(data_dir: Path, tmp_path: Path, weights: Path) -> None:
    pairs = data_dir / "mmf" / "mri-ct"
    stem = sorted(p.name for p in (pairs / "mri").iterdir())[0]
    out = tmp_path / "fused.png"
    args = ("mmf", str(pairs / "mri" / stem), str(pairs / "ct" / stem), "-o", str(out))
    result = _run(*args, "--weights", str(weights), "--json")
    assert result.exit_code == 0, result.output
    source = read_image(pairs / "mri" / stem)
    fused = read_image(out)
    # MRI and CT are grey stored as RGB: the result is grey, at the sources' size and depth.
    assert fused.pixels.shape == (1, 1, source.height, source.width)
    assert fused.bit_depth == source.bit_depth == 8


def test_the_device_is_chosen_once_on_the_root(tmp_path: Path, weights: Path) -> None:
    a = _image(tmp_path / "a.png", 1)
    b = _image(tmp_path / "b.png", 1, seed=3)
    out = tmp_path / "out.png"
    args = ("ivf", str(a), str(b), "-o", str(out), "--weights", str(weights))
    assert _run("--device", "cpu", *args, "--json").exit_code == 0
    assert (
        json.loads(_run("--device", "cpu", *args, "--overwrite", "--json").stdout)["device"]
        == "cpu"
    )
    unknown = runner.invoke(build_app(), ["--device", "tpu", "tasks"])
    assert unknown.exit_code == 1 and unknown.stderr.startswith("error: unknown device 'tpu'")
    # Also after the command (issue 19).
    after = runner.invoke(build_app(), [*args, "--overwrite", "--json", "--device", "cpu"])
    assert after.exit_code == 0 and json.loads(after.stdout)["device"] == "cpu"
    assert runner.invoke(build_app(), [*args, "--device=tpu"]).exit_code == 1
