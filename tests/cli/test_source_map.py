"""`fuse <task> --save-map`: which source each pixel came from, and refusals before any output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fusecli.cli.main import build_app
from fusecli.filters import gaussian_blur
from fusecli.io import read_image, write_image

runner = CliRunner()
SIDE = 96


def _run(*args: str):
    return runner.invoke(build_app(), list(args), catch_exceptions=False)


def _grey(path: Path, pixels: torch.Tensor) -> Path:
    write_image(path, pixels, bit_depth=8)
    return path


def _random_frames(folder: Path, count: int, size=(32, 56)) -> list[str]:
    frames = torch.rand(count, 1, 1, *size, generator=torch.Generator().manual_seed(3))
    return [str(_grey(folder / f"f{i}.png", frame)) for i, frame in enumerate(frames)]


def _map_levels(path: Path) -> np.ndarray:
    image = read_image(path)
    assert image.bit_depth == 8 and image.pixels.shape[1] == 1
    return np.rint(image.pixels[0, 0].numpy() * 255).astype(int)


def test_map_of_a_half_sharp_pair_picks_the_sharp_half(tmp_path: Path, data_dir: Path) -> None:
    # Textured everywhere: where the sharp and the blurred frame agree (flat sky or skin),
    # neither is the source, and the map may pick either.
    photo = read_image(data_dir / "natural" / "CSet5" / "butterfly.png").pixels
    sharp = torch.nn.functional.interpolate(photo, size=(SIDE, SIDE), mode="area")
    sharp = sharp.mean(dim=1, keepdim=True)
    blurred = gaussian_blur(sharp, 2.5)
    left = torch.zeros(1, 1, SIDE, SIDE, dtype=torch.bool)
    left[..., : SIDE // 2] = True
    a = _grey(tmp_path / "a.png", torch.where(left, sharp, blurred))
    b = _grey(tmp_path / "b.png", torch.where(left, blurred, sharp))
    out, source_map = tmp_path / "out.png", tmp_path / "map.png"
    result = _run("mff", str(a), str(b), "-o", str(out), "--save-map", str(source_map))
    assert result.exit_code == 0, result.output
    assert f"wrote source map {source_map}" in result.stderr
    levels = _map_levels(source_map)
    assert set(np.unique(levels)) <= {0, 255}
    # Frame a (0, black) is sharp on the left, frame b (255, white) on the right.
    assert (levels[:, : SIDE // 2] == 0).mean() > 0.9
    assert (levels[:, SIDE // 2 :] == 255).mean() > 0.9


def test_tiled_stack_map_has_one_grey_level_per_frame(tmp_path: Path) -> None:
    frames = _random_frames(tmp_path, 3)
    out, source_map = tmp_path / "out.tif", tmp_path / "map.tif"
    result = _run(
        "mff",
        *frames,
        "-o",
        str(out),
        "--tile",
        "32",
        "--save-map",
        str(source_map),
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["source_map"] == str(source_map)
    levels = _map_levels(source_map)
    assert levels.shape == (32, 56)
    assert set(np.unique(levels)) <= {0, 128, 255}


@pytest.mark.parametrize(
    ("map_name", "extra", "message"),
    [
        ("map.jpg", [], "a source map must be stored losslessly, not as .jpg"),
        ("map.png", ["--method", "average"], "which the fusion method 'average' does not have"),
        ("out.png", [], "is also the output"),
        ("f0.png", [], "is also the input"),
        ("old.png", [], "already exists; pass --overwrite"),
    ],
)
def test_refused_before_anything_is_written(
    tmp_path: Path, map_name: str, extra: list[str], message: str
) -> None:
    # Refused before the network is opened, so no weights are needed.
    frames = _random_frames(tmp_path, 2)
    old = _grey(tmp_path / "old.png", torch.zeros(1, 1, 4, 4))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    out = tmp_path / "out.png"
    result = _run(
        "mff",
        *frames,
        "-o",
        str(out),
        "--save-map",
        str(tmp_path / map_name),
        *extra,
    )
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert old.read_bytes() == before["old.png"]


def test_batch_writes_a_map_beside_each_output(tmp_path: Path) -> None:
    for scene, count in (("chair", 2), ("table", 3)):
        (tmp_path / "in" / "mff" / scene).mkdir(parents=True)
        _random_frames(tmp_path / "in" / "mff" / scene, count, size=(16, 24))
    out = tmp_path / "out"
    result = _run("batch", str(tmp_path / "in"), "-o", str(out), "--ext", "tif", "--save-map")
    assert result.exit_code == 0, result.output
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["mff/chair.map.png", "mff/chair.tif", "mff/table.map.png", "mff/table.tif"]
    assert set(np.unique(_map_levels(out / "mff" / "chair.map.png"))) <= {0, 255}
    assert set(np.unique(_map_levels(out / "mff" / "table.map.png"))) <= {0, 128, 255}
    # A rerun skips the outputs and their maps; another method cannot make a map.
    again = _run("batch", str(tmp_path / "in"), "-o", str(out), "--ext", "tif", "--save-map")
    assert again.exit_code == 0 and "0 fused, 2 skipped" in again.stderr
    other = _run(
        "batch", str(tmp_path / "in"), "-o", str(tmp_path / "o2"), "--save-map",
        "--method", "pslpt,average",
    )  # fmt: skip
    assert other.exit_code == 1
    assert "--save-map needs the network's fusion weights" in other.stderr
    assert not (tmp_path / "o2").exists()


def test_batch_dry_run_and_json_name_the_maps_it_writes(tmp_path: Path) -> None:
    for scene, count in (("chair", 2), ("table", 3)):
        (tmp_path / "in" / "mff" / scene).mkdir(parents=True)
        _random_frames(tmp_path / "in" / "mff" / scene, count, size=(16, 24))
    out = tmp_path / "out"
    args = ("batch", str(tmp_path / "in"), "-o", str(out), "--ext", "tif", "--save-map")
    maps = {str(out / "mff" / f"{scene}.map.png") for scene in ("chair", "table")}

    dry = _run(*args, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"-> {out / 'mff' / 'chair.tif'}, map {out / 'mff' / 'chair.map.png'}" in dry.stdout
    dry_json = _run(*args, "--dry-run", "--json")
    assert dry_json.exit_code == 0, dry_json.output
    assert {row["source_map"] for row in json.loads(dry_json.stdout)["jobs"]} == maps
    assert not out.exists()

    real = _run(*args, "--json")
    assert real.exit_code == 0, real.output
    assert set(json.loads(real.stdout)["source_maps"]) == maps
    assert all(Path(path).is_file() for path in maps)

    # Without --save-map the dry run's rows and the summary keep their keys.
    plain = ("batch", str(tmp_path / "in"), "-o", str(tmp_path / "o2"), "--ext", "tif", "--json")
    plain_dry = json.loads(_run(*plain, "--dry-run").stdout)
    assert all("source_map" not in row for row in plain_dry["jobs"])
    assert "source_maps" not in json.loads(_run(*plain).stdout)
