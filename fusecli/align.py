"""Registering hand-held frames to a reference before fusion (OpenCV ECC, coarse to fine).

Frames are matched on their smoothed, normalised luminance with clipped pixels masked out, so
brackets of different exposure and focus planes of different sharpness still correlate. ECC
(Evangelidis and Psarakis, "Parametric image alignment using enhanced correlation coefficient
maximization", PAMI 2008) estimates an affine or homography warp, which covers shifts,
rotation, the scale change of focus breathing and small perspective changes; it starts from
an ORB keypoint + RANSAC similarity when enough keypoints match. OpenCV is an
optional extra (``fusecli[align]``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fusecli.color import luminance
from fusecli.errors import FuseError

MOTION_MODELS = ("affine", "homography")
# The coarsest pyramid level has at most this many pixels on its long side.
_COARSEST_SIDE = 128
# Frames whose warped valid area covers less of the reference than this are refused.
MIN_OVERLAP = 0.5
# ECC correlation below this means the estimate matched noise, not the scene.
MIN_CORRELATION = 0.3


class AlignmentError(FuseError):
    """A frame could not be registered to the reference."""


@dataclass(frozen=True)
class FrameMotion:
    """How one frame moved relative to the reference.

    Attributes:
        index: position of the frame among the sources.
        matrix: 3x3 homography mapping reference pixel coordinates to this frame's.
        shift_x, shift_y: translation in pixels at the image centre.
        rotation_degrees: rotation, counter-clockwise positive.
        scale: mean scale (focus breathing shows as a scale slightly off 1).
        correlation: ECC correlation at the finest level (1 = perfect match).
    """

    index: int
    matrix: tuple[tuple[float, ...], ...]
    shift_x: float
    shift_y: float
    rotation_degrees: float
    scale: float
    correlation: float

    def as_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "shift_x": round(self.shift_x, 3),
            "shift_y": round(self.shift_y, 3),
            "rotation_degrees": round(self.rotation_degrees, 4),
            "scale": round(self.scale, 5),
            "correlation": round(self.correlation, 4),
            "matrix": [[round(v, 6) for v in row] for row in self.matrix],
        }


@dataclass(frozen=True)
class AlignedFrames:
    """Frames registered to a reference.

    Attributes:
        frames: (1, C, H', W') tensors in [0, 1], all one size (cropped when asked).
        motions: one per frame (the reference has the identity).
        reference: index of the reference frame.
        crop: (top, left, height, width) of the kept region in reference pixels.
    """

    frames: list[torch.Tensor]
    motions: list[FrameMotion]
    reference: int
    crop: tuple[int, int, int, int]


def _opencv():
    try:
        import cv2
    except ImportError:
        raise FuseError(
            "aligning frames needs OpenCV, which is not installed",
            remedy="install the extra: pip install 'fusecli[align]'",
        ) from None
    return cv2


def _features(cv2, image: np.ndarray) -> np.ndarray:
    """A normalised (H, W) float32 image, smoothed.

    Smoothing leaves mostly the low frequencies, which a defocused frame shares with a sharp
    one; ECC itself ignores gain and offset, so exposure differences matter little. (Gradient
    magnitude, tried first, weights sharp regions and biased focus-stack estimates by pixels.)
    """
    normalised = (image - image.mean()) / (image.std() + 1e-6)
    return cv2.GaussianBlur(normalised, (0, 0), 1.5)


def _pyramid(cv2, image: np.ndarray) -> list[np.ndarray]:
    """Finest first; each level half the previous, down to about _COARSEST_SIDE pixels."""
    levels = [image]
    while max(levels[-1].shape) > _COARSEST_SIDE and min(levels[-1].shape) > 48:
        levels.append(cv2.pyrDown(levels[-1]))
    return levels


def _feature_guess(cv2, reference: np.ndarray, moving: np.ndarray) -> np.ndarray | None:
    """A rough 3x3 reference -> moving similarity from ORB keypoints and RANSAC, or None.

    Gives ECC a start near the answer when the motion is large for the coarsest level or the
    correlation surface has several peaks (fine repetitive texture).
    """

    def to_bytes(image: np.ndarray) -> np.ndarray:
        # Stretch each frame over its own range, so exposure does not change which corners fire.
        low, high = np.percentile(image, [1, 99])
        return np.clip((image - low) / max(high - low, 1e-6) * 255, 0, 255).astype(np.uint8)

    # Keypoints on at most ~1024 pixels per side: enough for a start, cheap on camera files.
    factor = min(1.0, 1024 / max(reference.shape))
    if factor < 1.0:
        size = (round(reference.shape[1] * factor), round(reference.shape[0] * factor))
        reference = cv2.resize(reference, size, interpolation=cv2.INTER_AREA)
        moving = cv2.resize(moving, size, interpolation=cv2.INTER_AREA)
    orb = cv2.ORB_create(nfeatures=2000)
    ref_points, ref_descriptors = orb.detectAndCompute(to_bytes(reference), None)
    mov_points, mov_descriptors = orb.detectAndCompute(to_bytes(moving), None)
    if ref_descriptors is None or mov_descriptors is None:
        return None
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(
        ref_descriptors, mov_descriptors
    )
    if len(matches) < 12:
        return None
    source = np.float32([ref_points[m.queryIdx].pt for m in matches])
    target = np.float32([mov_points[m.trainIdx].pt for m in matches])
    matrix, inliers = cv2.estimateAffinePartial2D(source, target, method=cv2.RANSAC)
    if matrix is None or inliers is None or int(inliers.sum()) < 10:
        return None
    guess = np.vstack([matrix, [0.0, 0.0, 1.0]])
    up = np.diag([1 / factor, 1 / factor, 1.0])
    return (up @ guess @ np.linalg.inv(up)).astype(np.float32)


def estimate_motion(
    reference: np.ndarray, moving: np.ndarray, *, model: str = "homography"
) -> tuple[np.ndarray, float]:
    """ECC warp that maps reference coordinates onto ``moving``.

    Args:
        reference, moving: (H, W) float32 luminance in [0, 1], one size.
        model: ``affine`` or ``homography``.

    Returns:
        The 3x3 matrix and the ECC correlation at full resolution.

    Raises:
        cv2.error: ECC did not converge (the caller names the frame).
    """
    cv2 = _opencv()
    motion = cv2.MOTION_HOMOGRAPHY if model == "homography" else cv2.MOTION_AFFINE
    reference_levels = _pyramid(cv2, _features(cv2, reference))
    moving_levels = _pyramid(cv2, _features(cv2, moving))
    # Clipped highlights and shadows differ between exposures and carry false edges at their
    # borders; ECC ignores them (motion is small, so the masks are widened a little).
    clipped = (np.minimum(reference, moving) < 0.02) | (np.maximum(reference, moving) > 0.98)
    clipped = cv2.dilate(clipped.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    usable = (~clipped).astype(np.uint8)
    mask_levels = [usable]
    for level in reference_levels[1:]:
        mask_levels.append(cv2.resize(mask_levels[-1], level.shape[::-1], cv2.INTER_NEAREST))
    if usable.mean() < 0.2:
        mask_levels = [None] * len(reference_levels)
    warp = np.eye(3, dtype=np.float32)
    correlation = 0.0
    coarsest = len(reference_levels) - 1
    guess = _feature_guess(cv2, reference, moving)
    if guess is not None:
        # Coordinates halve at each coarser level: H_coarse = S^-1 H S, S = diag(2^k, 2^k, 1).
        down = np.diag([2.0**coarsest, 2.0**coarsest, 1.0]).astype(np.float32)
        warp = (np.linalg.inv(down) @ guess @ down).astype(np.float32)
    else:
        # Without a guess, a translation first at the coarsest level: a full model started
        # far from the answer can settle on a wrong scale or shear.
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-6)
        _, shift = cv2.findTransformECC(
            reference_levels[coarsest],
            moving_levels[coarsest],
            np.eye(2, 3, dtype=np.float32),
            cv2.MOTION_TRANSLATION,
            criteria,
            mask_levels[coarsest],
            5,
        )
        warp[:2, 2] = shift[:, 2]
    for level in range(coarsest, -1, -1):
        iterations = 200 if level == coarsest else 50
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, 1e-6)
        target = warp if motion == cv2.MOTION_HOMOGRAPHY else warp[:2].copy()
        correlation, target = cv2.findTransformECC(
            reference_levels[level],
            moving_levels[level],
            target,
            motion,
            criteria,
            mask_levels[level],
            5,
        )
        warp = target if target.shape[0] == 3 else np.vstack([target, [0.0, 0.0, 1.0]])
        warp = warp.astype(np.float32)
        if level:
            # Coordinates double from one level to the next finer one: H' = S H S^-1.
            scale = np.diag([2.0, 2.0, 1.0]).astype(np.float32)
            warp = scale @ warp @ np.linalg.inv(scale)
    return warp.astype(np.float64), float(correlation)


def describe_motion(
    index: int, matrix: np.ndarray, size: tuple[int, int], corr: float
) -> FrameMotion:
    """Shift at the image centre, rotation and mean scale of a 3x3 warp."""
    height, width = size
    centre = np.array([(width - 1) / 2, (height - 1) / 2, 1.0])
    moved = matrix @ centre
    moved = moved[:2] / moved[2]
    linear = matrix[:2, :2] / matrix[2, 2]
    rotation = math.degrees(math.atan2(linear[1, 0] - linear[0, 1], linear[0, 0] + linear[1, 1]))
    scale = math.sqrt(abs(np.linalg.det(linear)))
    return FrameMotion(
        index=index,
        matrix=tuple(tuple(float(v) for v in row) for row in matrix),
        shift_x=float(moved[0] - centre[0]),
        shift_y=float(moved[1] - centre[1]),
        rotation_degrees=rotation,
        scale=scale,
        correlation=corr,
    )


def _warp(cv2, image: np.ndarray, matrix: np.ndarray, fill: bool) -> np.ndarray:
    height, width = image.shape[:2]
    return cv2.warpPerspective(
        image,
        matrix.astype(np.float64),
        (width, height),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE if fill else cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def common_region(valid: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, height, width) of an axis-aligned rectangle inside the valid region.

    Shrinks the full frame one border row or column at a time, always the one holding the
    most invalid pixels, until none is left; exact for the convex regions warps produce.
    """
    top, left, bottom, right = 0, 0, valid.shape[0], valid.shape[1]
    while bottom - top > 1 and right - left > 1:
        window = ~valid[top:bottom, left:right]
        if not window.any():
            break
        sides = {
            "top": window[0].sum(),
            "bottom": window[-1].sum(),
            "left": window[:, 0].sum() * window.shape[1] / window.shape[0],
            "right": window[:, -1].sum() * window.shape[1] / window.shape[0],
        }
        worst = max(sides, key=lambda side: sides[side])
        if worst == "top":
            top += 1
        elif worst == "bottom":
            bottom -= 1
        elif worst == "left":
            left += 1
        else:
            right -= 1
    return top, left, bottom - top, right - left


@dataclass(frozen=True)
class Registration:
    """Where every frame of a stack goes: what :class:`FrameRegistrar` measured.

    Attributes:
        motions: one per frame, in frame order (the reference has the identity).
        reference: index of the reference frame.
        crop: (top, left, height, width) of the kept region in reference pixels.
        fill: whether borders a frame does not cover repeat its edge pixels (no crop).
    """

    motions: tuple[FrameMotion, ...]
    reference: int
    crop: tuple[int, int, int, int]
    fill: bool

    def warp(self, index: int, frame: torch.Tensor) -> torch.Tensor:
        """Frame ``index`` ((1, C, H, W) in [0, 1]) registered and cropped: (1, C, H', W')."""
        cv2 = _opencv()
        pixels = frame[0].permute(1, 2, 0).numpy().astype(np.float32)
        moved = _warp(cv2, pixels, np.array(self.motions[index].matrix), fill=self.fill)
        if moved.ndim == 2:
            moved = moved[..., None]
        top, left, height, width = self.crop
        kept = moved[top : top + height, left : left + width].transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(kept))[None].clamp(0.0, 1.0)


class FrameRegistrar:
    """Registers the frames of a stack to a reference one frame at a time.

    Only the reference's luminance and the region every frame covers are kept between frames,
    so a long stack of camera files is registered in the memory of about two frames: the
    caller reads each frame, hands it to :meth:`add` and lets it go, then warps the frames
    with the :class:`Registration` from :meth:`finish` as it reads them again.

    Args:
        reference_frame: (1, C, H, W) float tensor in [0, 1], C in {1, 3}.
        reference: index of the reference frame among all frames.
        reference_name: its file name, for error messages.
        model: ``affine`` or ``homography``.
        crop: keep only the region every frame covers; otherwise fill the border by repeating
            each frame's edge pixels.
    """

    def __init__(
        self,
        reference_frame: torch.Tensor,
        *,
        reference: int,
        reference_name: str,
        model: str = "homography",
        crop: bool = True,
    ) -> None:
        if model not in MOTION_MODELS:
            raise ValueError(f"model must be one of {MOTION_MODELS}, got {model!r}")
        self._cv2 = _opencv()
        self._reference = reference
        self._reference_name = reference_name
        self._model = model
        self._crop = crop
        self._size = tuple(reference_frame.shape[-2:])
        self._reference_luma = _luma(reference_frame)
        self._valid = np.ones(self._size, bool)
        self._motions = {reference: describe_motion(reference, np.eye(3), self._size, 1.0)}

    def add(self, index: int, frame: torch.Tensor, name: str) -> FrameMotion:
        """Estimate frame ``index``'s motion (same size as the reference) and record it.

        Raises:
            AlignmentError: the frame did not converge, matched too weakly, or overlaps the
                reference too little; the message names it.
        """
        cv2 = self._cv2
        height, width = self._size
        try:
            matrix, correlation = estimate_motion(
                self._reference_luma, _luma(frame), model=self._model
            )
        except cv2.error:
            raise AlignmentError(
                f"{name} could not be registered to {self._reference_name} (the estimate did "
                "not converge)",
                remedy="check that it shows the same scene, or leave it out",
            ) from None
        if correlation < MIN_CORRELATION:
            raise AlignmentError(
                f"{name} could not be registered to {self._reference_name} (match "
                f"{correlation:.2f}, too weak)",
                remedy="check that it shows the same scene, or leave it out",
            )
        coverage = _warp(cv2, np.ones((height, width), np.float32), matrix, fill=False) > 0.999
        if coverage.mean() < MIN_OVERLAP:
            raise AlignmentError(
                f"{name} overlaps {self._reference_name} by only {100 * coverage.mean():.0f}% "
                "after registration",
                remedy="shoot with more overlap, or leave it out",
            )
        self._valid &= coverage
        motion = describe_motion(index, matrix, (height, width), correlation)
        self._motions[index] = motion
        return motion

    def finish(self) -> Registration:
        """The registration of every frame added so far (indices 0..n-1, none missing)."""
        count = len(self._motions)
        if sorted(self._motions) != list(range(count)):
            raise ValueError(f"frames {sorted(self._motions)} were added, not 0..{count - 1}")
        region = common_region(self._valid) if self._crop else (0, 0, *self._size)
        return Registration(
            motions=tuple(self._motions[i] for i in range(count)),
            reference=self._reference,
            crop=region,
            fill=not self._crop,
        )


def _luma(frame: torch.Tensor) -> np.ndarray:
    return luminance(frame)[0, 0].numpy().astype(np.float32)


def register_frames(
    read_frame: Callable[[int], torch.Tensor],
    names: Sequence[str],
    *,
    reference: int,
    model: str = "homography",
    crop: bool = True,
) -> Registration:
    """Register frames read one at a time by ``read_frame(index)`` to frame ``reference``.

    Frame 0 is read first (readers that take the size from the first frame rely on it), then
    the reference, then the others in order; at most two frames are held at once.

    Args:
        read_frame: returns frame ``index``, (1, C, H, W) in [0, 1], all one size.
        names: the frames' file names, for error messages; one per frame.
        reference, model, crop: see :func:`align_frames`.

    Raises:
        AlignmentError: see :meth:`FrameRegistrar.add`.
    """
    first = read_frame(0)
    registrar = FrameRegistrar(
        first if reference == 0 else read_frame(reference),
        reference=reference,
        reference_name=names[reference],
        model=model,
        crop=crop,
    )
    if reference != 0:
        registrar.add(0, first, names[0])
    del first
    for index in range(1, len(names)):
        if index != reference:
            registrar.add(index, read_frame(index), names[index])
    return registrar.finish()


def align_frames(
    frames: Sequence[torch.Tensor],
    names: Sequence[str],
    *,
    reference: int,
    model: str = "homography",
    crop: bool = True,
) -> AlignedFrames:
    """Register every frame to ``frames[reference]``, all frames in memory at once.

    Streaming callers use :func:`register_frames`, which this wraps.

    Args:
        frames: (1, C, H, W) float tensors in [0, 1] of one size, C in {1, 3}.
        names: the frames' file names, for error messages.
        reference: index of the frame the others are registered to.
        model: ``affine`` or ``homography``.
        crop: keep only the region every frame covers; otherwise fill the border by repeating
            each frame's edge pixels.

    Returns:
        See :class:`AlignedFrames`.

    Raises:
        AlignmentError: a frame did not converge, matched too weakly, or overlaps the reference
            too little; the message names it.
    """
    registration = register_frames(
        frames.__getitem__, names, reference=reference, model=model, crop=crop
    )
    warped = [registration.warp(index, frame) for index, frame in enumerate(frames)]
    return AlignedFrames(warped, list(registration.motions), reference, registration.crop)
