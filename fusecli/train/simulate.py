"""Labeled MFF and MEF training pairs simulated from one sharp, well-exposed image.

Both simulations take a float32 (H, W) luma image in [0, 1] and a seeded numpy Generator, and
return two sources; the ground truth is the input image itself.

Multi-focus (in the spirit of MFI-WHU, which composited a sharp and a Gaussian-blurred copy of
each COCO image through an object mask): a random mask M splits the image into region A and its
complement; source 1 is sharp in A and blurred elsewhere, source 2 the reverse:

    s1 = M * x + (1 - M) * blur(x),    s2 = (1 - M) * x + M * blur(x)

- Mask shapes, one drawn per sample: ``ellipses`` (union of 1-3 rotated ellipses: object-like
  foregrounds, as MFI-WHU's segmented objects), ``blobs`` (a Gaussian random field smoothed at
  1/6 of the crop side and thresholded: irregular depth layers) and ``half_plane`` (a straight
  boundary at a random angle: near/far halves of a scene). Every shape is thresholded at the
  quantile that makes region A cover a uniformly drawn fraction of the image (default 25-75 %),
  so both sources always hold focused and defocused content.
- Defocus: Gaussian blur with sigma uniform in ``blur_sigma`` (default 1-4 px; MFI-WHU used one
  fixed Gaussian, a range makes the network robust to the depth of field).
- The mask boundary is feathered with a Gaussian of sigma in ``feather_sigma`` (default
  0.5-2 px), because real defocus changes gradually across a depth edge.

Multi-exposure: the image is taken as a well-exposed rendering ``x = E ** (1 / gamma)`` of a linear
irradiance E through a gamma camera response (gamma uniform in 1.8-2.6, sRGB is about 2.2). An
under- and an over-exposure scale E by ``2 ** -u`` and ``2 ** +o`` stops (u, o uniform in 1-3),
add sensor noise in the linear domain (Poisson-like shot noise of variance ``k * E`` with k in
``shot_noise`` plus Gaussian read noise of std in ``read_noise``), clip at the sensor's saturation
(1.0), go back through the response and are quantised to 8 bits. The under-exposure thus loses
shadows to noise and quantisation, the over-exposure loses highlights to clipping, as in SICE.
Optionally (``illumination_stops``) the irradiance is first lit unevenly, ``E * 2 ** (s * L)``
with L a smooth random field in [-0.5, 0.5] (a low-frequency blob field blended with a ramp, as
sky against ground), so the pair spans more than the image's own dynamic range while the ground
truth keeps the even lighting: the network learns to compress illumination and keep local
contrast, which is what real bracket fusion asks for.
"""

from __future__ import annotations

import numpy as np
import torch

from fusecli.filters import blur_along, gaussian_taps
from fusecli.train.recipe import MEFSimulation, MFFSimulation

__all__ = ["focus_mask", "gaussian_blur", "illumination_field", "simulate_mef", "simulate_mff"]


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (radius ``ceil(3 sigma)``) with mirrored borders.

    Where the image is narrower than the radius it wraps around instead, as the simulation has
    always done.

    Args:
        image: (H, W) float32.
        sigma: standard deviation in pixels; 0 returns a copy.

    Returns:
        (H, W) float32.
    """
    if sigma <= 0:
        return image.copy()
    taps = gaussian_taps(sigma)
    radius = taps.numel() // 2
    out = torch.tensor(image, dtype=torch.float32)[None, None]
    for dim in (-2, -1):
        border = "symmetric" if radius <= out.shape[dim] else "wrap"
        out = blur_along(out, taps, dim=dim, border=border)
    return out[0, 0].numpy()


def _uniform(rng: np.random.Generator, bounds: tuple[float, ...]) -> float:
    low, high = bounds
    return float(rng.uniform(low, high)) if high > low else float(low)


def _mask_field(shape: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A scalar field whose upper level sets are the focus regions of the given shape."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy, xx = yy / max(height - 1, 1), xx / max(width - 1, 1)
    if shape == "ellipses":
        field = np.full((height, width), -np.inf, dtype=np.float32)
        for _ in range(int(rng.integers(1, 4))):
            cy, cx = rng.uniform(0.1, 0.9, size=2)
            ry, rx = rng.uniform(0.15, 0.5, size=2)
            theta = rng.uniform(0, np.pi)
            dy, dx = yy - cy, xx - cx
            u = (dx * np.cos(theta) + dy * np.sin(theta)) / rx
            v = (-dx * np.sin(theta) + dy * np.cos(theta)) / ry
            field = np.maximum(field, -(u * u + v * v))
        return field
    if shape == "blobs":
        noise = rng.standard_normal((height, width)).astype(np.float32)
        return gaussian_blur(noise, max(height, width) / 6)
    if shape == "half_plane":
        theta = rng.uniform(0, 2 * np.pi)
        return (xx * np.cos(theta) + yy * np.sin(theta)).astype(np.float32)
    raise ValueError(f"unknown focus mask shape {shape!r}; use ellipses, blobs or half_plane")


def focus_mask(
    height: int, width: int, rng: np.random.Generator, config: MFFSimulation
) -> np.ndarray:
    """Random soft focus mask: 1 where source 1 is in focus.

    Args:
        height, width: mask size.
        rng: seeded generator.
        config: shapes, foreground fraction and feathering ranges.

    Returns:
        (H, W) float32 in [0, 1].
    """
    shape = config.shapes[int(rng.integers(len(config.shapes)))]
    field = _mask_field(shape, height, width, rng)
    fraction = _uniform(rng, config.foreground_fraction)
    hard = (field > np.quantile(field, 1 - fraction)).astype(np.float32)
    return np.clip(gaussian_blur(hard, _uniform(rng, config.feather_sigma)), 0.0, 1.0)


def simulate_mff(
    image: np.ndarray, rng: np.random.Generator, config: MFFSimulation
) -> tuple[np.ndarray, np.ndarray]:
    """Two complementary partially focused sources of a sharp image.

    Args:
        image: (H, W) float32 in [0, 1], the ground truth.
        rng: seeded generator.
        config: see module docstring.

    Returns:
        source 1, source 2: (H, W) float32 in [0, 1].
    """
    mask = focus_mask(*image.shape, rng, config)
    blurred = gaussian_blur(image, _uniform(rng, config.blur_sigma))
    return mask * image + (1 - mask) * blurred, (1 - mask) * image + mask * blurred


def _expose(
    linear: np.ndarray, scale: float, gamma: float, rng: np.random.Generator, config: MEFSimulation
) -> np.ndarray:
    signal = linear * scale
    std = np.sqrt(_uniform(rng, config.shot_noise) * signal + _uniform(rng, config.read_noise) ** 2)
    noisy = signal + std * rng.standard_normal(signal.shape).astype(np.float32)
    rendered = np.clip(noisy, 0.0, 1.0) ** (1.0 / gamma)
    return (np.round(rendered * 255.0) / 255.0).astype(np.float32)


def illumination_field(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth random lighting map spanning exactly [-0.5, 0.5] (0.5 up to 0 if flat).

    A Gaussian random field smoothed at a third of the longer side, blended with a linear ramp at
    a random angle in a random proportion.

    Returns:
        (H, W) float32.
    """

    def unit(field: np.ndarray) -> np.ndarray:
        span = float(field.max() - field.min())
        return (field - field.min()) / span if span > 0 else np.zeros_like(field)

    noise = rng.standard_normal((height, width)).astype(np.float32)
    blobs = unit(gaussian_blur(noise, max(height, width) / 3))
    ramp = unit(_mask_field("half_plane", height, width, rng))
    weight = float(rng.uniform())
    return (unit(weight * blobs + (1 - weight) * ramp) - 0.5).astype(np.float32)


def simulate_mef(
    image: np.ndarray, rng: np.random.Generator, config: MEFSimulation
) -> tuple[np.ndarray, np.ndarray]:
    """An under- and an over-exposed rendering of a well-exposed image.

    Args:
        image: (H, W) float32 in [0, 1], the ground truth.
        rng: seeded generator.
        config: see module docstring.

    Returns:
        under, over: (H, W) float32 in [0, 1], 8-bit quantised.
    """
    gamma = _uniform(rng, config.gamma)
    linear = np.clip(image, 0.0, 1.0).astype(np.float32) ** gamma
    stops = _uniform(rng, config.illumination_stops)
    if stops > 0:
        linear = linear * np.exp2(stops * illumination_field(*image.shape, rng))
    under = _expose(linear, 2.0 ** -_uniform(rng, config.under_stops), gamma, rng, config)
    over = _expose(linear, 2.0 ** _uniform(rng, config.over_stops), gamma, rng, config)
    return under, over
