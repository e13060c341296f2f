"""Small torch image filters: Gaussian kernels, separable blur, Sobel gradients.

One implementation for the training losses, the training-data simulation, the demo's simulated
inputs and the classical baselines. Images are float (N, C, H, W) tensors; every filter works
on each channel on its own. The metrics keep their own numpy filters in
fusecli/metrics/_matlab.py on purpose: they reproduce MATLAB's boundary rules and rounding to
match published benchmark numbers, which these filters do not try to do.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

Border = Literal["replicate", "symmetric", "wrap"]
"""How a filter sees beyond the image: ``replicate`` repeats the edge pixel, ``symmetric`` mirrors
the image including the edge pixel (numpy's and MATLAB's "symmetric"), ``wrap`` repeats the image
periodically. ``symmetric`` and ``wrap`` reach any distance, however small the image."""


def gaussian_taps(
    sigma: float,
    radius: int | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Normalised 1-D Gaussian ``exp(-x^2 / (2 sigma^2))`` for x in -radius..radius.

    Args:
        sigma: standard deviation in pixels (> 0).
        radius: taps on each side of the centre; default ``max(1, ceil(3 sigma))``.

    Returns:
        (2 * radius + 1,) tensor summing to 1.
    """
    if radius is None:
        radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    taps = torch.exp(-(x**2) / (2 * sigma * sigma))
    return taps / taps.sum()


def gaussian_window(
    size: int = 11,
    sigma: float = 1.5,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Normalised 2-D Gaussian window (SSIM's is 11 x 11 with sigma 1.5).

    Args:
        size: side length, odd.
        sigma: standard deviation in pixels.

    Returns:
        (1, 1, size, size) tensor summing to 1.
    """
    if size % 2 != 1:
        raise ValueError(f"the window side must be odd, got {size}")
    taps = gaussian_taps(sigma, size // 2, dtype=dtype, device=device)
    return (taps[:, None] * taps[None, :]).reshape(1, 1, size, size)


def _pad_index(length: int, before: int, after: int, border: Border, device) -> torch.Tensor:
    """Indices into an axis of ``length`` that extend it by ``before`` and ``after`` samples."""
    index = torch.arange(-before, length + after, device=device)
    if border == "replicate":
        return index.clamp(0, length - 1)
    if border == "wrap":
        return index % length
    if border == "symmetric":
        # Mirror images alternate with the image itself every `length` samples.
        folded = index % (2 * length)
        return torch.where(folded < length, folded, 2 * length - 1 - folded)
    raise ValueError(f"unknown border {border!r}; use replicate, symmetric or wrap")


def blur_along(
    image: torch.Tensor, taps: torch.Tensor, *, dim: int, border: Border = "replicate"
) -> torch.Tensor:
    """Correlate every row (``dim=-1``) or column (``dim=-2``) with odd-length ``taps``.

    Args:
        image: (N, C, H, W) float.
        taps: (K,) weights, K odd.
        dim: -1 (along W) or -2 (along H).
        border: see :data:`Border`.

    Returns:
        (N, C, H, W).
    """
    if dim not in (-1, -2):
        raise ValueError(f"dim must be -1 (width) or -2 (height), got {dim}")
    channels = image.shape[1]
    half = taps.numel() // 2
    taps = taps.to(image)
    if border == "replicate":
        pad = (half, half, 0, 0) if dim == -1 else (0, 0, half, half)
        padded = F.pad(image, pad, mode="replicate")
    else:
        index = _pad_index(image.shape[dim], half, half, border, image.device)
        padded = image.index_select(image.dim() + dim, index)
    shape = (channels, 1, 1, -1) if dim == -1 else (channels, 1, -1, 1)
    kernel = taps.view(1, 1, -1).expand(channels, 1, -1).reshape(shape)
    return F.conv2d(padded, kernel, groups=channels)


def separable_blur(
    image: torch.Tensor, taps: torch.Tensor, *, border: Border = "replicate"
) -> torch.Tensor:
    """Blur with the rank-one kernel ``outer(taps, taps)``: along W, then along H.

    Args:
        image: (N, C, H, W) float.
        taps: (K,) weights, K odd (e.g. :func:`gaussian_taps` or a binomial [1 4 6 4 1] / 16).
        border: see :data:`Border`.

    Returns:
        (N, C, H, W).
    """
    return blur_along(blur_along(image, taps, dim=-1, border=border), taps, dim=-2, border=border)


def gaussian_blur(
    image: torch.Tensor,
    sigma: float,
    *,
    radius: int | None = None,
    border: Border = "replicate",
) -> torch.Tensor:
    """Separable Gaussian blur; see :func:`gaussian_taps` for ``radius``.

    Args:
        image: (N, C, H, W) float.
        sigma: standard deviation in pixels (> 0).

    Returns:
        (N, C, H, W).
    """
    return separable_blur(image, gaussian_taps(sigma, radius, dtype=image.dtype), border=border)


def sobel_gradients(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """3x3 Sobel responses with replicated borders, by correlation.

    gx correlates with [-1 0 1; -2 0 2; -1 0 1] (left to right), gy with its transpose (top to
    bottom), so a constant image has zero gradient everywhere, borders included.

    Args:
        image: (N, C, H, W) float.

    Returns:
        (gx, gy), each (N, C, H, W).
    """
    channels = image.shape[1]
    kx = torch.tensor(
        [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]],
        dtype=image.dtype,
        device=image.device,
    )
    # (2C, 1, 3, 3): d/dx then d/dy for each channel.
    kernels = torch.stack([kx, kx.t()]).unsqueeze(1).repeat(channels, 1, 1, 1)
    g = F.conv2d(F.pad(image, (1, 1, 1, 1), mode="replicate"), kernels, groups=channels)
    return g[:, 0::2], g[:, 1::2]


def sobel_magnitude(image: torch.Tensor) -> torch.Tensor:
    """Gradient magnitude ``|gx| + |gy|`` of :func:`sobel_gradients`. (N, C, H, W) -> same."""
    gx, gy = sobel_gradients(image)
    return gx.abs() + gy.abs()
