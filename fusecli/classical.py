"""Classical fusion methods (average, Laplacian pyramid, guided filter, Mertens exposure fusion).

Pure torch on (B, C, H, W) float images in [0, 1]; fusecli.methods registers them as fusion
methods, and benchmarks/ compares them with the network. :func:`with_source_detail` also
serves the network: a ``compose="detail"`` task's output takes its finest bands from it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F


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
    """Separable binomial blur with replicated borders; (B, C, H, W) -> (B, C, H, W)."""
    # Shifted slices added in place, not a depthwise conv2d: on a 24-megapixel plane the
    # convolution took 10 s on one core, this 1.2 s, and it holds one temporary, not several.
    return _binomial_along(_binomial_along(image, -1), -2)


def _binomial_along(image: torch.Tensor, dim: int) -> torch.Tensor:
    """The 5-tap binomial [1 4 6 4 1] / 16 (Burt & Adelson 1983) along W (``dim=-1``) or H
    (``dim=-2``), replicate padding; it sums to 1, so flat regions stay flat."""
    pad = (2, 2, 0, 0) if dim == -1 else (0, 0, 2, 2)
    # replicate works for any size (reflect needs side > 2 pixels).
    padded = F.pad(image, pad, mode="replicate")
    length = image.shape[dim]

    def tap(offset: int) -> torch.Tensor:
        return padded.narrow(dim, offset, length)

    out = tap(0) + tap(4)
    out.add_(tap(1), alpha=4.0).add_(tap(3), alpha=4.0).add_(tap(2), alpha=6.0)
    return out.mul_(1.0 / 16.0)


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


# Guided-filter fusion (Li, Kang, Hu, "Image fusion with guided filtering", IEEE TIP 22(7), 2013),
# written here from the paper's description. Parameters are the paper's: a 31x31 mean filter for the
# two-scale decomposition, a 3x3 Laplacian then an 11x11 Gaussian (sigma 5) for saliency, and the
# guided filter with r1 = 45, eps1 = 0.3 on the base layer, r2 = 7, eps2 = 1e-6 on the detail layer,
# on images in [0, 1]. The paper leaves borders open: every filter here uses replicated borders,
# except the guided filter's box means, which average over the part of the window inside the image
# (He, Sun, Tang's formulation).
GFF_BASE_SIZE = 31
GFF_SALIENCY_RADIUS = 5
GFF_SALIENCY_SIGMA = 5.0
GFF_R1, GFF_EPS1 = 45, 0.3
GFF_R2, GFF_EPS2 = 7, 1e-6
_LAPLACIAN_3x3 = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def _filter_replicate(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """2-D correlation of every channel with ``kernel`` (odd sides), replicated borders."""
    channels = image.shape[1]
    kh, kw = kernel.shape
    padded = F.pad(image, (kw // 2, kw // 2, kh // 2, kh // 2), mode="replicate")
    weight = kernel.to(image).view(1, 1, kh, kw).repeat(channels, 1, 1, 1)
    return F.conv2d(padded, weight, groups=channels)


def _separable_replicate(image: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Correlation with ``taps`` (odd length) along rows then columns; replicated borders."""
    column = taps.view(-1, 1)
    return _filter_replicate(_filter_replicate(image, column.T), column)


def box_mean(image: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the (2r+1)^2 window clipped to the image, from cumulative sums; O(1) per pixel.

    Args:
        image: (B, C, H, W) float tensor (use float64 for large radii: the sums get large).
        radius: window radius r >= 0.

    Returns:
        (B, C, H, W) local means; near the borders only the pixels inside the image count.
    """

    def along(x: torch.Tensor, dim: int) -> torch.Tensor:
        n = x.shape[dim]
        cumulative = x.cumsum(dim)
        # Sums of x[i - r .. i + r] are c[i + 2r + 1] - c[i] on the cumulative sums padded with
        # r + 1 zeros before and r copies of the total after.
        head = torch.zeros_like(cumulative.narrow(dim, 0, 1)).expand(
            *[radius + 1 if d == dim else s for d, s in enumerate(cumulative.shape)]
        )
        tail = cumulative.narrow(dim, n - 1, 1).expand(
            *[radius if d == dim else s for d, s in enumerate(cumulative.shape)]
        )
        padded = torch.cat([head, cumulative, tail], dim)
        total = padded.narrow(dim, 2 * radius + 1, n) - padded.narrow(dim, 0, n)
        index = torch.arange(n, device=x.device)
        count = (index + radius + 1).clamp(max=n) - (index - radius).clamp(min=0)
        shape = [1, 1, 1, 1]
        shape[dim] = n
        return total / count.to(x.dtype).view(shape)

    return along(along(image, 2), 3)


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """Grey-guidance guided filter (He, Sun, Tang, ECCV 2010): q = mean(a) I + mean(b).

    Args:
        guide: (B, 1, H, W) guidance image I.
        src: (B, C, H, W) image p to filter.
        radius: window radius r.
        eps: regularisation; larger values smooth more.

    Returns:
        (B, C, H, W) filtered ``src``, computed in float64 and returned in ``src``'s dtype.
    """
    guide64, src64 = guide.double(), src.double()
    mean_i = box_mean(guide64, radius)
    mean_p = box_mean(src64, radius)
    cov_ip = box_mean(guide64 * src64, radius) - mean_i * mean_p
    var_i = box_mean(guide64 * guide64, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return (box_mean(a, radius) * guide64 + box_mean(b, radius)).to(src.dtype)


def _gaussian_taps(radius: int, sigma: float) -> torch.Tensor:
    """1-D Gaussian of 2r+1 taps summing to one (its outer product is MATLAB's fspecial one)."""
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-(offsets**2) / (2.0 * sigma**2))
    return taps / taps.sum()


def guided_filter_weights(sources: list[torch.Tensor]) -> tuple[list, list]:
    """The base- and detail-layer weight maps of guided-filter fusion.

    Saliency S_n = Gaussian(|Laplacian(I_n)|); P_n = 1 where S_n is the largest of all sources
    (every tied source gets 1), then W^B_n = G_{r1,eps1}(P_n, I_n) and
    W^D_n = G_{r2,eps2}(P_n, I_n).
    The paper normalises each set of maps to sum to one; a guided filter can also return small
    negative values, which the paper does not discuss: they are clipped to 0 first, and a pixel
    whose maps are all 0 gets equal weights.

    Args:
        sources: N >= 2 single-channel (B, 1, H, W) images in [0, 1], one size.

    Returns:
        (base weights, detail weights): two lists of N (B, 1, H, W) float64 maps, each list
        summing to one at every pixel.
    """
    images = [s.double() for s in sources]
    gauss = _gaussian_taps(GFF_SALIENCY_RADIUS, GFF_SALIENCY_SIGMA)
    saliency = torch.stack(
        [_separable_replicate(_filter_replicate(i, _LAPLACIAN_3x3).abs(), gauss) for i in images]
    )
    masks = (saliency == saliency.max(dim=0).values).double()

    def normalised(radius: int, eps: float) -> list[torch.Tensor]:
        raw = torch.stack([guided_filter(i, m, radius, eps) for i, m in zip(images, masks)]).clamp(
            min=0.0
        )
        total = raw.sum(dim=0, keepdim=True)
        equal = torch.full_like(raw, 1.0 / len(images))
        return list(torch.where(total > 1e-12, raw / total.clamp(min=1e-12), equal))

    return normalised(GFF_R1, GFF_EPS1), normalised(GFF_R2, GFF_EPS2)


def guided_filter_fusion_many(sources: list[torch.Tensor]) -> torch.Tensor:
    """Guided-filter fusion of N >= 2 registered single-channel sources.

    Two-scale decomposition B_n = mean_31x31(I_n), D_n = I_n - B_n; fused
    F = sum W^B_n B_n + sum W^D_n D_n (see :func:`guided_filter_weights`).

    Args:
        sources: (B, 1, H, W) float images in [0, 1], one size.

    Returns:
        (B, 1, H, W) fused image clamped to [0, 1], in the first source's dtype.
    """
    if len(sources) < 2:
        raise ValueError(f"guided-filter fusion takes at least two sources, got {len(sources)}")
    shape = sources[0].shape
    if any(s.shape != shape for s in sources) or shape[1] != 1:
        raise ValueError(
            "sources must be single-channel and of one shape, got "
            + ", ".join(str(tuple(s.shape)) for s in sources)
        )
    images = [s.double() for s in sources]
    mean_taps = torch.full((GFF_BASE_SIZE,), 1.0 / GFF_BASE_SIZE, dtype=torch.float64)
    bases = [_separable_replicate(i, mean_taps) for i in images]
    base_w, detail_w = guided_filter_weights(sources)
    fused = sum(w * b for w, b in zip(base_w, bases)) + sum(
        w * (i - b) for w, i, b in zip(detail_w, images, bases)
    )
    return fused.clamp(0.0, 1.0).to(sources[0].dtype)


def guided_filter_fusion(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Guided-filter fusion of two single-channel (B, 1, H, W) sources in [0, 1]."""
    return guided_filter_fusion_many([a, b])


def average_fusion_many(sources: list[torch.Tensor]) -> torch.Tensor:
    """Per-pixel mean of N >= 1 sources of one shape; (B, C, H, W) each -> (B, C, H, W)."""
    _check_same_shape(sources)
    return torch.stack(list(sources)).mean(dim=0)


def laplacian_fusion_many(sources: list[torch.Tensor], *, levels: int = 4) -> torch.Tensor:
    """Laplacian-pyramid fusion of N >= 1 sources: per band, the detail of largest magnitude.

    Args:
        sources: (B, C, H, W) float images in [0, 1], one shape.
        levels: number of detail bands.

    Returns:
        (B, C, H, W) fused image clamped to [0, 1]; the base band is the mean of the sources'.
    """
    _check_same_shape(sources)
    pyramids = [laplacian_pyramid(s, levels) for s in sources]
    fused = []
    for band in range(len(pyramids[0]) - 1):
        details = torch.stack([p[band] for p in pyramids])
        choice = details.abs().argmax(dim=0, keepdim=True)
        fused.append(details.gather(0, choice)[0])
    fused.append(torch.stack([p[-1] for p in pyramids]).mean(dim=0))
    return reconstruct_pyramid(fused).clamp(0.0, 1.0)


def with_source_detail(
    fused: torch.Tensor, sources: Iterable[torch.Tensor], bands: int
) -> torch.Tensor:
    """``fused`` with its ``bands`` finest Laplacian bands taken from the sources instead.

    Per band and pixel the detail of largest magnitude among the sources, the rule of
    :func:`laplacian_fusion_many` (the first source wins a tie); everything coarser, the
    pyramid's base, stays ``fused``'s own. Sources are taken one at a time, so a long stack
    read from disk holds one source's pyramid, not all of them.

    Args:
        fused: (B, C, H, W) float image.
        sources: one or more (B, C, H, W) float images of ``fused``'s shape.
        bands: how many of the finest bands to replace, >= 1.

    Returns:
        (B, C, H, W) image, not clamped.
    """
    if bands < 1:
        raise ValueError(f"bands must be at least 1, got {bands}")
    detail: list[torch.Tensor] = []
    for index, source in enumerate(sources):
        if source.shape != fused.shape:
            raise ValueError(
                f"source {index} has shape {tuple(source.shape)}, the fusion {tuple(fused.shape)}"
            )
        source_detail = laplacian_pyramid(source.to(fused), bands)[:-1]
        if not detail:
            detail = source_detail
            continue
        for level, band in enumerate(source_detail):
            # Magnitudes are recomputed rather than kept: at 24 megapixels a kept copy of the
            # pyramid's magnitudes is 128 MB more at the peak.
            detail[level] = torch.where(band.abs() > detail[level].abs(), band, detail[level])
    if not detail:
        raise ValueError("with_source_detail needs at least one source")
    base = fused
    for _ in range(len(detail)):
        base = _down(base)
    return reconstruct_pyramid([*detail, base])


# Exposure fusion (Mertens, Kautz, Van Reeth, "Exposure Fusion", Pacific Graphics 2007), written
# from the paper: per-pixel weights contrast^wc * well-exposedness^we (Gaussian around 0.5,
# sigma 0.2), normalised over the sources, then blended in a Laplacian pyramid of the images with
# a Gaussian pyramid of the weights. fusecli fuses luminance and puts colour back with the task's
# colour policy, so the paper's saturation term (which needs RGB) is left out here.
MERTENS_SIGMA = 0.2
MERTENS_EPS = 1e-12


def mertens_weights(
    sources: list[torch.Tensor], *, contrast_weight: float = 1.0, exposure_weight: float = 1.0
) -> torch.Tensor:
    """Normalised Mertens weights of N single-channel sources.

    Args:
        sources: N (B, 1, H, W) float images in [0, 1], one shape.
        contrast_weight: exponent of the contrast measure (absolute 3x3 Laplacian).
        exposure_weight: exponent of the well-exposedness measure.

    Returns:
        (N, B, 1, H, W) weights summing to one over N at every pixel (equal where all are 0).
    """
    images = torch.stack(list(sources))
    contrast = torch.stack([_filter_replicate(s, _LAPLACIAN_3x3).abs() for s in sources])
    exposure = torch.exp(-((images - 0.5) ** 2) / (2 * MERTENS_SIGMA**2))
    raw = contrast**contrast_weight * exposure**exposure_weight + MERTENS_EPS
    return raw / raw.sum(dim=0, keepdim=True)


def mertens_fusion_many(sources: list[torch.Tensor], *, levels: int | None = None) -> torch.Tensor:
    """Mertens exposure fusion of N >= 1 registered single-channel sources.

    Args:
        sources: (B, 1, H, W) float images in [0, 1], one shape.
        levels: detail bands of the blending pyramid; default: down to about 8 pixels.

    Returns:
        (B, 1, H, W) fused image clamped to [0, 1].
    """
    _check_same_shape(sources)
    if sources[0].shape[1] != 1:
        raise ValueError(
            f"Mertens fusion takes single-channel sources, got {tuple(sources[0].shape)}"
        )
    if levels is None:
        levels = max(int(math.log2(max(min(sources[0].shape[-2:]), 1))) - 3, 1)
    weights = mertens_weights(sources)
    fused: list[torch.Tensor] | None = None
    for source, weight in zip(sources, weights, strict=True):
        bands = laplacian_pyramid(source, levels)
        weight_bands = [weight]
        for _ in bands[1:]:
            weight_bands.append(_down(weight_bands[-1]))
        blended = [b * w for b, w in zip(bands, weight_bands, strict=True)]
        fused = blended if fused is None else [f + b for f, b in zip(fused, blended, strict=True)]
    assert fused is not None
    return reconstruct_pyramid(fused).clamp(0.0, 1.0)


def _check_same_shape(sources: list[torch.Tensor]) -> None:
    if not sources:
        raise ValueError("fusion needs at least one source")
    shape = sources[0].shape
    if any(s.shape != shape for s in sources):
        raise ValueError(
            "sources must have one shape, got " + ", ".join(str(tuple(s.shape)) for s in sources)
        )
