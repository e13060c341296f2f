"""`--align` on fuse mff/mef/batch and `fuse align`: registered, reported, refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fusecli.cli.main import build_app
from fusecli.engine import PSLPT, save_weights
from fusecli.filters import gaussian_blur
from fusecli.io import read_image, write_image
from tests.test_align import MARGIN, SIDE, frame, motion, residual

cv2 = pytest.importorskip("cv2")
runner = CliRunner()


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "w.safetensors"
    return save_weights(PSLPT(), path, {"note": "untrained, for tests"})


@pytest.fixture(scope="module")
def scene() -> torch.Tensor:
    from tests.conftest import DATA

    path = DATA / "natural" / "CSet5" / "butterfly.png"
    if not path.is_file():
        pytest.skip(f"shared data not found at {path}")
    return torch.nn.functional.interpolate(read_image(path).pixels, size=(256, 256), mode="area")


def _run(*args: str):
    return runner.invoke(build_app(), list(args), catch_exceptions=False)


HAND_HELD = [
    motion(shift=(-4.5, 3.0), degrees=-1.0),
    np.eye(3),
    motion(shift=(3.5, 2.0), scale=1.02),
]


def focus_stack(scene: torch.Tensor, folder: Path, motions) -> list[Path]:
    """Frames each sharp in one vertical third (as in a focus stack), moved as given."""
    folder.mkdir(parents=True, exist_ok=True)
    blurred = gaussian_blur(scene, 2.5, radius=8)
    paths = []
    for index, moved in enumerate(motions):
        mask = torch.zeros(1, 1, 256, 256)
        mask[..., 85 * index : 85 * (index + 1) + 1] = 1.0
        mask = gaussian_blur(mask, 3.0, radius=9)
        planar = scene * mask + blurred * (1 - mask)
        pixels = frame(planar, moved)
        paths.append(write_image(folder / f"f{index}.png", pixels, bit_depth=16).path)
    return paths


def test_aligned_fusion_is_close_to_fusing_unmoved_frames(tmp_path, scene) -> None:
    # Two frames keep the fusion runs affordable on a busy CPU; the shipped weights are used.
    still = focus_stack(scene, tmp_path / "still", [np.eye(3)] * 2)
    moved = focus_stack(scene, tmp_path / "moved", HAND_HELD[:2])
    assert _run("mff", *map(str, still), "-o", str(tmp_path / "still.png")).exit_code == 0
    unaligned, aligned = tmp_path / "unaligned.png", tmp_path / "aligned.png"
    assert _run("mff", *map(str, moved), "-o", str(unaligned)).exit_code == 0
    result = _run("mff", *map(str, moved), "-o", str(aligned), "--align", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)["alignment"]
    # The reference of two frames is the second; its motion is the identity.
    found = [f["matrix"] for f in record["frames"]]
    assert max(residual(m, truth) for m, truth in zip(found, HAND_HELD)) < 0.5
    top, left, height, width = record["crop"]
    assert read_image(aligned).pixels.shape[-2:] == (height, width) and height < SIDE

    crop = (..., slice(top, top + height), slice(left, left + width))
    target = read_image(tmp_path / "still.png").pixels[crop]
    aligned_error = float((read_image(aligned).pixels - target).abs().mean())
    unaligned_error = float((read_image(unaligned).pixels[crop] - target).abs().mean())
    print(f"mean abs error to the unmoved fusion: {aligned_error=:.4f} {unaligned_error=:.4f}")
    assert aligned_error < 0.01
    assert aligned_error < 0.25 * unaligned_error


def test_fuse_mef_align_registers_a_hand_held_bracket(tmp_path, scene, weights) -> None:
    # Two frames: the reference is the second, the normal exposure, as the middle of a bracket.
    looks = [dict(gain=0.6, gamma=1.2), {}]
    bracket = [
        write_image(tmp_path / f"b{i}.png", frame(scene, moved, **look)).path
        for i, (moved, look) in enumerate(zip(HAND_HELD[:2], looks))
    ]
    out = tmp_path / "hdr.png"
    args = ("mef", *map(str, bracket), "-o", str(out), "--weights", str(weights))
    result = _run(*args, "--align", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)["alignment"]
    found = [f["matrix"] for f in record["frames"]]
    assert max(residual(m, truth) for m, truth in zip(found, HAND_HELD)) < 0.5
    assert read_image(out).pixels.shape[-2:] == tuple(record["crop"][2:])


def test_fuse_align_writes_registered_frames_and_refuses_a_stranger(tmp_path, scene) -> None:
    frames = focus_stack(scene, tmp_path, HAND_HELD)
    result = _run("align", *map(str, frames), "-o", str(tmp_path / "reg"), "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["reference"] == str(frames[1])
    outputs = [Path(f["output"]) for f in record["frames"]]
    registered = [read_image(p) for p in outputs]
    assert all(r.bit_depth == 16 for r in registered)
    still = focus_stack(scene, tmp_path / "still", [np.eye(3)] * 3)
    top, left, height, width = record["crop"]
    for aligned, unmoved in zip(registered, still):
        expected = read_image(unmoved).pixels[..., top : top + height, left : left + width]
        assert (aligned.pixels - expected).abs().mean() < 0.01
    stranger = write_image(tmp_path / "stranger.png", torch.rand(1, 3, SIDE, SIDE)).path
    refused = _run(
        "align", str(frames[0]), str(frames[1]), str(stranger), "-o", str(tmp_path / "r2")
    )
    assert refused.exit_code == 1
    assert "error: stranger.png could not be registered to f1.png" in refused.output
    assert list((tmp_path / "r2").iterdir()) == []


def test_align_is_refused_for_two_modality_tasks(tmp_path, scene, weights) -> None:
    frames = focus_stack(scene, tmp_path, [np.eye(3)] * 2)
    result = _run(
        "ivf",
        *map(str, frames),
        "-o",
        str(tmp_path / "o.png"),
        "--weights",
        str(weights),
        "--align",
    )
    assert result.exit_code == 1 and "alignment cannot register" in result.output


def test_batch_aligns_each_stack(tmp_path, scene, weights) -> None:
    focus_stack(scene, tmp_path / "in" / "mff" / "scene1", HAND_HELD[:2])
    result = _run("batch", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--task", "mff",
                  "--weights", str(weights), "--align", "--depth", "8", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    (output,) = json.loads(result.stdout)["outputs"]
    fused = read_image(output)
    assert fused.height < SIDE  # cropped to the common region
    assert fused.bit_depth == 8  # the 16-bit sources' depth, overridden


def test_batch_refuses_an_encoding_its_format_cannot_take(tmp_path, scene) -> None:
    focus_stack(scene, tmp_path / "in" / "mff" / "scene1", [np.eye(3)] * 2)
    args = ("batch", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--task", "mff")
    result = _run(*args, "--ext", "jpg", "--compression", "lzw")
    assert result.exit_code == 1 and "TIFF and PNG only" in result.output
    assert not (tmp_path / "out").exists()


def test_margin_constants_match_the_frames() -> None:
    assert MARGIN * 2 + SIDE == 256
