"""Classical fusion baselines (average, Laplacian pyramid) for the results table; not in fusecli."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# 5-tap binomial kernel (Burt & Adelson 1983), separable; sums to 1 so flat regions stay flat.
_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def average_fusion(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel mean of two sources.

    Args:
        a: (B, C, H, W) float image in [0, 1].
        b: (B, C, H, W) float image in [0, 1], same shape as ``a``.

    Returns:
        (B, C, H, W) fused image.
    """
    if a.shape != b.shape:
        raise ValueError(
            f"sources must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return (a + b) / 2.0


def _blur(image: torch.Tensor) -> torch.Tensor:
    """Separable binomial blur with reflect padding; (B, C, H, W) -> (B, C, H, W)."""
    channels = image.shape[1]
    kernel = _BINOMIAL.to(image)
    horizontal = kernel.view(1, 1, 1, 5).repeat(channels, 1, 1, 1)
    vertical = kernel.view(1, 1, 5, 1).repeat(channels, 1, 1, 1)
    # replicate works for any size (reflect needs side > 2 pixels).
    out = F.conv2d(F.pad(image, (2, 2, 0, 0), mode="replicate"), horizontal, groups=channels)
    return F.conv2d(F.pad(out, (0, 0, 2, 2), mode="replicate"), vertical, groups=channels)


def _down(image: torch.Tensor) -> torch.Tensor:
    """Blur then keep every second pixel; (B, C, H, W) -> (B, C, ceil(H/2), ceil(W/2))."""
    return _blur(image)[:, :, ::2, ::2]


def _up(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Upsample to ``size`` by blurring the image; (B, C, h, w) -> (B, C, *size)."""
    return _blur(F.interpolate(image, size=size, mode="bilinear", align_corners=False))


def laplacian_pyramid(image: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Laplacian pyramid: ``levels`` detail bands (fine to coarse) then the base band.

    Args:
        image: (B, C, H, W) float image.
        levels: number of detail bands, >= 0; stops early when the image gets below 2 pixels.

    Returns:
        Tensors; band k is about (H / 2**k, W / 2**k); the last one is the low-pass base.
    """
    bands: list[torch.Tensor] = []
    current = image
    for _ in range(levels):
        if min(current.shape[-2:]) < 2:
            break
        smaller = _down(current)
        bands.append(current - _up(smaller, tuple(current.shape[-2:])))
        current = smaller
    bands.append(current)
    return bands


def reconstruct_pyramid(bands: list[torch.Tensor]) -> torch.Tensor:
    """Invert :func:`laplacian_pyramid`; exact up to float rounding.

    Args:
        bands: detail bands (fine to coarse) then the base, as returned by ``laplacian_pyramid``.

    Returns:
        (B, C, H, W) image of the size of the finest band.
    """
    current = bands[-1]
    for detail in reversed(bands[:-1]):
        current = detail + _up(current, tuple(detail.shape[-2:]))
    return current


def laplacian_fusion(a: torch.Tensor, b: torch.Tensor, *, levels: int = 4) -> torch.Tensor:
    """Laplacian-pyramid fusion: choose-max-abs on detail bands, average of the base band.

    Args:
        a: (B, C, H, W) float image in [0, 1].
        b: (B, C, H, W) float image in [0, 1], same shape as ``a``.
        levels: number of detail bands.

    Returns:
        (B, C, H, W) fused image clamped to [0, 1].
    """
    if a.shape != b.shape:
        raise ValueError(
            f"sources must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    bands_a = laplacian_pyramid(a, levels)
    bands_b = laplacian_pyramid(b, levels)
    fused = [
        torch.where(da.abs() >= db.abs(), da, db)
        for da, db in zip(bands_a[:-1], bands_b[:-1], strict=True)
    ]
    fused.append((bands_a[-1] + bands_b[-1]) / 2.0)
    return reconstruct_pyramid(fused).clamp(0.0, 1.0)
