"""Alignment: frames made from a natural image with known motion are registered to < 0.5 px."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from fusecli import align
from fusecli.align import AlignmentError, align_frames, common_region
from fusecli.errors import FuseError
from fusecli.filters import gaussian_blur
from fusecli.io import read_image

cv2 = pytest.importorskip("cv2")

SIDE = 160  # frames are cut from the middle of a 256 x 256 scene
MARGIN = (256 - SIDE) // 2


@pytest.fixture(scope="module")
def scene(request) -> torch.Tensor:
    from tests.conftest import DATA

    path = DATA / "natural" / "CSet5" / "baby.png"
    if not path.is_file():
        pytest.skip(f"shared data not found at {path}")
    pixels = read_image(path).pixels
    return torch.nn.functional.interpolate(pixels, size=(256, 256), mode="area")


def motion(shift=(0.0, 0.0), degrees=0.0, scale=1.0) -> np.ndarray:
    """3x3 similarity about the scene centre: scene pixel -> frame pixel."""
    centre = np.array([[1, 0, -127.5], [0, 1, -127.5], [0, 0, 1]])
    angle = math.radians(degrees)
    rotate = np.array(
        [
            [scale * math.cos(angle), -scale * math.sin(angle), 0],
            [scale * math.sin(angle), scale * math.cos(angle), 0],
            [0, 0, 1],
        ]
    )
    back = np.array([[1, 0, 127.5 + shift[0]], [0, 1, 127.5 + shift[1]], [0, 0, 1]])
    return back @ rotate @ centre


def frame(scene: torch.Tensor, moved: np.ndarray, *, gain=1.0, gamma=1.0, blur=0.0):
    """The scene seen through ``moved``, exposed and focused differently, cut to SIDE."""
    pixels = scene[0].permute(1, 2, 0).numpy().astype(np.float32)
    warped = cv2.warpPerspective(pixels, moved, (256, 256), flags=cv2.INTER_CUBIC)
    tensor = torch.from_numpy(warped).permute(2, 0, 1)[None].clamp(0, 1)
    if blur:
        tensor = gaussian_blur(tensor, blur, radius=round(3 * blur))
    tensor = (gain * tensor**gamma).clamp(0, 1)
    return tensor[..., MARGIN : MARGIN + SIDE, MARGIN : MARGIN + SIDE].contiguous()


def residual(estimated: tuple, moved: np.ndarray) -> float:
    """Mean distance (pixels) between where the estimate and the truth send reference pixels."""
    offset = np.array([[1, 0, MARGIN], [0, 1, MARGIN], [0, 0, 1]], dtype=float)
    # A frame pixel y shows scene point moved^-1 (y + o); the reference shows it at that - o.
    truth = np.linalg.inv(offset) @ moved @ offset
    ys, xs = np.mgrid[8 : SIDE - 8 : 16, 8 : SIDE - 8 : 16]
    points = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])

    def project(matrix):
        mapped = matrix @ points
        return mapped[:2] / mapped[2]

    return float(np.linalg.norm(project(np.array(estimated)) - project(truth), axis=0).mean())


CASES = {
    "shift": dict(shift=(6.3, -4.7)),
    "rotation": dict(shift=(2.0, 1.0), degrees=2.5),
    "focus breathing": dict(scale=1.03),
    "hand-held": dict(shift=(-5.5, 3.2), degrees=-1.5, scale=0.98),
}


# A bracket frame is exposed differently; a focus-stack frame is focused elsewhere.
LOOKS = {
    "darker": dict(gain=0.6, gamma=1.2),
    "brighter": dict(gain=1.3, gamma=0.8),
    "defocused": dict(blur=1.2),
}


@pytest.mark.parametrize("model", ["affine", "homography"])
@pytest.mark.parametrize("look", list(LOOKS))
@pytest.mark.parametrize("case", list(CASES))
def test_known_motion_is_recovered_under_half_a_pixel(scene, case, look, model) -> None:
    moved = motion(**CASES[case])
    reference = frame(scene, np.eye(3))
    other = frame(scene, moved, **LOOKS[look])
    aligned = align_frames([reference, other], ["ref.png", "other.png"], reference=0, model=model)
    assert residual(aligned.motions[1].matrix, moved) < 0.5
    assert aligned.motions[0].matrix == tuple(tuple(r) for r in np.eye(3))


def test_reported_motion_reads_like_the_truth(scene) -> None:
    moved = motion(shift=(4.0, -3.0), degrees=2.0, scale=1.02)
    frames = [frame(scene, np.eye(3)), frame(scene, moved)]
    found = align_frames(frames, ["a", "b"], reference=0, model="affine").motions[1]
    # The estimate maps reference pixels to frame pixels, as the scene motion does.
    assert found.rotation_degrees == pytest.approx(2.0, abs=0.05)
    assert found.scale == pytest.approx(1.02, abs=0.002)


def test_cropping_keeps_only_what_every_frame_covers(scene) -> None:
    frames = [frame(scene, motion(shift=(s, -s))) for s in (-6.0, 0.0, 6.0)]
    cropped = align_frames(frames, ["a", "b", "c"], reference=1)
    filled = align_frames(frames, ["a", "b", "c"], reference=1, crop=False)
    assert all(f.shape[-2:] == (SIDE, SIDE) for f in filled.frames)
    top, left, height, width = cropped.crop
    assert SIDE - 16 <= height < SIDE and SIDE - 16 <= width < SIDE
    # Inside the crop every registered frame shows the reference's content.
    for registered in cropped.frames:
        reference = frames[1][..., top : top + height, left : left + width]
        assert (registered - reference).abs().mean() < 0.02


def test_streaming_registration_holds_two_frames_and_matches_the_in_memory_one(scene) -> None:
    # A long stack of camera files must not be held whole: the registrar reads each frame once
    # and lets it go, and warping the frames read again gives what aligning them all at once does.
    import gc
    import weakref

    frames = [frame(scene, motion(shift=(s, 0.5 * s), degrees=0.3 * s)) for s in range(-2, 3)]
    names = [f"{k}.png" for k in range(len(frames))]
    reads, most_alive, handed_out = [], 0, []

    def read_frame(index: int) -> torch.Tensor:
        nonlocal most_alive
        gc.collect()
        alive = sum(ref() is not None for ref in handed_out)
        most_alive = max(most_alive, alive + 1)
        reads.append(index)
        copy = frames[index].clone()
        handed_out.append(weakref.ref(copy))
        return copy

    registration = align.register_frames(read_frame, names, reference=2, model="affine")
    assert reads == [0, 2, 1, 3, 4]
    assert most_alive <= 2
    whole = align_frames(frames, names, reference=2, model="affine")
    assert registration.motions == tuple(whole.motions)
    assert registration.crop == whole.crop
    for index, aligned in enumerate(whole.frames):
        assert torch.equal(registration.warp(index, frames[index]), aligned)


def test_a_frame_of_another_scene_is_refused_by_name(scene) -> None:
    noise = torch.rand(1, 3, SIDE, SIDE)
    with pytest.raises(AlignmentError, match=r"noise\.png"):
        align_frames([frame(scene, np.eye(3)), noise], ["ref.png", "noise.png"], reference=0)


def test_a_frame_overlapping_too_little_is_refused(scene, monkeypatch) -> None:
    # A registration that succeeds but leaves most of the reference uncovered.
    far_away = np.array([[1.0, 0.0, 100.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    monkeypatch.setattr(align, "estimate_motion", lambda *args, **kwargs: (far_away, 0.9))
    frames = [frame(scene, np.eye(3)), frame(scene, np.eye(3))]
    with pytest.raises(AlignmentError, match=r"far\.png overlaps ref\.png by only 38%"):
        align_frames(frames, ["ref.png", "far.png"], reference=0)


def test_common_region_of_a_rotated_frame() -> None:
    valid = np.zeros((50, 80), bool)
    valid[5:45, 10:70] = True
    assert common_region(valid) == (5, 10, 40, 60)


def test_missing_opencv_is_one_clear_error(scene, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` now raises ImportError
    frames = [frame(scene, np.eye(3))] * 2
    with pytest.raises(FuseError, match=r"needs OpenCV.*pip install 'fusecli\[align\]'"):
        align_frames(frames, ["a", "b"], reference=0)


def test_fine_texture_that_stalled_ecc_from_the_identity_registers(scene) -> None:
    # CSet5/butterfly shifted by (6.3, -4.7) px: ECC alone did not converge; the ORB guess
    # starts it near the answer.
    from tests.conftest import DATA

    pixels = read_image(DATA / "natural" / "CSet5" / "butterfly.png").pixels
    butterfly = torch.nn.functional.interpolate(pixels, size=(256, 256), mode="area")
    moved = motion(shift=(6.3, -4.7))
    frames = [frame(butterfly, np.eye(3)), frame(butterfly, moved, blur=1.2)]
    aligned = align_frames(frames, ["ref.png", "other.png"], reference=0)
    assert residual(aligned.motions[1].matrix, moved) < 0.5
