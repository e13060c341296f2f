"""`fuse <task>` output options: metadata kept or stripped, --depth, --quality, --compression."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from fusecli.cli.main import build_app
from fusecli.engine import PSLPT, save_weights
from fusecli.io import read_image, write_image
from tests.test_metadata import photo, srgb_profile

runner = CliRunner()


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "w.safetensors"
    return save_weights(PSLPT(), path, {"note": "untrained, for tests"})


def _run(*args: str):
    return runner.invoke(build_app(), list(args), catch_exceptions=False)


def test_the_middle_frame_gives_the_metadata_and_strip_drops_it(tmp_path, weights) -> None:
    frames = [photo(tmp_path / f"f{i}.jpg") for i in range(3)]
    out = tmp_path / "out.png"
    result = _run("mff", *map(str, frames), "-o", str(out), "--weights", str(weights), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["metadata_from"] == str(frames[1])
    with Image.open(out) as image:
        assert image.info["icc_profile"] == srgb_profile()
        assert image.getexif()[0x010F] == "Fusecam"
    stripped = tmp_path / "stripped.png"
    args = ("mff", *map(str, frames), "-o", str(stripped), "--weights", str(weights), "--strip")
    assert _run(*args).exit_code == 0
    with Image.open(stripped) as image:
        assert "icc_profile" not in image.info and len(image.getexif()) == 0


def test_depth_float_writes_a_float_tiff_and_refuses_png(tmp_path, weights) -> None:
    frames = [photo(tmp_path / f"f{i}.jpg") for i in range(2)]
    out = tmp_path / "out.tif"
    common = (*map(str, frames), "--weights", str(weights))
    assert _run("mef", *common, "-o", str(out), "--depth", "float").exit_code == 0
    assert read_image(out).bit_depth == 32
    refused = _run("mef", *common, "-o", str(tmp_path / "o.png"), "--depth", "float")
    assert refused.exit_code == 1
    assert "error: " in refused.output and "cannot store 32-bit float" in refused.output
    assert not (tmp_path / "o.png").exists()
    assert _run("mef", *common, "-o", str(tmp_path / "o.jpg"), "--depth", "12").exit_code == 1


def test_sixteen_bit_sources_to_jpeg_say_they_drop_to_8_bits(tmp_path, weights) -> None:
    rng = np.random.default_rng(0)
    frames = []
    for i in range(2):
        pixels = torch.from_numpy(rng.random((3, 16, 16)).astype(np.float32))[None]
        frames.append(write_image(tmp_path / f"f{i}.png", pixels, bit_depth=16).path)
    out = tmp_path / "o.jpg"
    result = _run("mff", *map(str, frames), "-o", str(out), "--weights", str(weights))
    assert result.exit_code == 0
    assert "note: the sources are 16-bit but JPG stores 8 bits per channel" in result.stderr
    quiet = _run("mff", *map(str, frames), "-o", str(tmp_path / "o.png"), "--weights", str(weights))
    assert "note:" not in quiet.stderr


def test_quality_and_compression_reach_the_file(tmp_path, weights) -> None:
    frames = [photo(tmp_path / f"f{i}.jpg", size=(48, 48)) for i in range(2)]
    common = (*map(str, frames), "--weights", str(weights))
    low, high = tmp_path / "low.jpg", tmp_path / "high.jpg"
    assert _run("mff", *common, "-o", str(low), "--quality", "5").exit_code == 0
    assert _run("mff", *common, "-o", str(high), "--quality", "100").exit_code == 0
    assert low.stat().st_size < high.stat().st_size
    raw = tmp_path / "raw.tif"
    assert _run("mff", *common, "-o", str(raw), "--compression", "none").exit_code == 0
    wrong = _run("mff", *common, "-o", str(tmp_path / "x.jpg"), "--compression", "lzw")
    assert wrong.exit_code == 1 and "TIFF and PNG only" in wrong.output
