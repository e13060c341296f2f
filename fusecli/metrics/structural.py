"""Structural and error metrics: SSIM, MS-SSIM, MEF-SSIM, PSNR and RMSE.

Single-plane float64 images (H, W) on the 8-bit scale. The pairwise functions
(`structural_similarity`, `multiscale_structural_similarity`, `peak_signal_noise_ratio`) are
the textbook definitions; the `fusion_*` functions combine them over two sources the way VIFB
does, and `mef_structural_similarity` is Ma et al.'s MEF-SSIM as run by MEFB.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fusecli.errors import FuseError
from fusecli.metrics._cache import memoised
from fusecli.metrics._matlab import (
    box_sum_valid,
    correlate_separable,
    downsample_by_two,
    gaussian_taps,
)

_WINDOW = 11
_SIGMA = 1.5
# Wang, Simoncelli, Bovik (2003), Table 1; the first four scales use contrast-structure only.
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
# Ma, Zeng, Wang (2015): three scales, the first three MS-SSIM weights renormalised.
MEF_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001)


def _gaussian_means(stack: np.ndarray) -> np.ndarray:
    """Means under fspecial('gaussian', 11, 1.5), 'valid': (..., H, W) -> (..., H-10, W-10)."""
    taps = gaussian_taps(_WINDOW, _SIGMA)
    return correlate_separable(stack, taps, taps, mode="valid")


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian local mean and mean square of one image ('valid')."""
    mean, mean_square = _gaussian_means(np.stack([x, x * x]))
    return mean, mean_square


def _ssim_maps(
    x: np.ndarray,
    y: np.ndarray,
    data_range: float,
    moments_x: tuple[np.ndarray, np.ndarray],
    moments_y: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """SSIM and contrast-structure maps of Wang et al. ('valid' Gaussian window).

    moments_x, moments_y are `_moments` of x and y (computed once per image by callers).
    """
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    (mu_x, xx), (mu_y, yy) = moments_x, moments_y
    xy = _gaussian_means(x * y)
    var_x = xx - mu_x * mu_x
    var_y = yy - mu_y * mu_y
    cov = xy - mu_x * mu_y
    contrast_structure = (2 * cov + c2) / (var_x + var_y + c2)
    luminance = (2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    return luminance * contrast_structure, contrast_structure


def _pyramid(x: np.ndarray, levels: int) -> list[np.ndarray]:
    """[x, down(x), down(down(x)), ...] with MATLAB's 2x2 mean downsampling; `levels` entries."""
    pyramid = [x]
    for _ in range(levels - 1):
        pyramid.append(downsample_by_two(pyramid[-1]))
    return pyramid


def _pyramid_moments(
    x: np.ndarray, levels: int
) -> list[tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]]:
    """Every pyramid level of x with its Gaussian moments."""
    return [(level, _moments(level)) for level in _pyramid(x, levels)]


def pyramid_min_size(levels: int) -> int:
    """Smallest image side whose coarsest level (sides halved, rounded up) still fits 11x11."""
    return (_WINDOW - 1) * 2 ** (levels - 1) + 1


def _require_size(x: np.ndarray, minimum: int, metric: str) -> None:
    if min(x.shape) < minimum:
        raise FuseError(
            f"{metric} needs images of at least {minimum}x{minimum} pixels, got "
            f"{x.shape[1]}x{x.shape[0]}",
            remedy="leave it out of the metric names.",
            hint="metrics",
        )


def structural_similarity(x: np.ndarray, y: np.ndarray, *, data_range: float) -> float:
    """Mean SSIM with an 11x11 Gaussian window (sigma 1.5), K = (0.01, 0.03), 'valid' borders.

    Reference: Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality
    assessment: from error visibility to structural similarity", IEEE TIP 13 (4) (2004).
    Same computation as VIFB's `ssim` and Wang's `ssim_index.m`.

    Args:
        x, y: (H, W) images, H, W >= 11.
        data_range: L, the dynamic range (255 for 8-bit).

    Returns:
        Mean SSIM, at most 1; higher is better.
    """
    _require_size(x, _WINDOW, "SSIM")
    moments_x = memoised("gaussian_moments", _moments, x)
    moments_y = memoised("gaussian_moments", _moments, y)
    ssim_map, _ = _ssim_maps(x, y, data_range, moments_x, moments_y)
    return float(ssim_map.mean())


def multiscale_structural_similarity(
    x: np.ndarray,
    y: np.ndarray,
    *,
    data_range: float,
    weights: tuple[float, ...] = MS_SSIM_WEIGHTS,
) -> float:
    """MS-SSIM of Wang et al.: contrast-structure at fine scales, full SSIM at the coarsest.

    Reference: Z. Wang, E. P. Simoncelli, A. C. Bovik, "Multiscale structural similarity for
    image quality assessment", Asilomar 2003; follows the authors' `msssim.m` (5 scales,
    2x2 mean filter with symmetric borders then decimation). msssim.m refuses images whose
    short side is under 176 px; we only need the coarsest scale to hold one 11x11 window
    (161 px). A negative mean contrast-structure term (strongly anti-correlated images) is
    clamped to 0, where MATLAB would return a complex number.

    Args:
        x, y: (H, W) images, short side >= 10 * 2**(len(weights) - 1) + 1 (161 px by default).
        data_range: L, the dynamic range (255 for 8-bit).
        weights: per-scale exponents.

    Returns:
        MS-SSIM, at most 1; higher is better.
    """
    levels = len(weights)
    _require_size(x, pyramid_min_size(levels), "MS_SSIM")
    # Cached under the full-resolution image, so forgetting it drops every level.
    pyramid_x = memoised(f"pyramid{levels}", lambda image: _pyramid_moments(image, levels), x)
    pyramid_y = memoised(f"pyramid{levels}", lambda image: _pyramid_moments(image, levels), y)
    values = []
    for level, ((x_level, m_x), (y_level, m_y)) in enumerate(
        zip(pyramid_x, pyramid_y, strict=True)
    ):
        ssim_map, cs_map = _ssim_maps(x_level, y_level, data_range, m_x, m_y)
        values.append(ssim_map.mean() if level == levels - 1 else cs_map.mean())
    return float(math.prod(max(v, 0.0) ** w for v, w in zip(values, weights, strict=True)))


def fusion_structural_similarity(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """SSIM: SSIM(a, f) + SSIM(b, f) (VIFB `metricsSsim.m`), range up to 2; higher is better.

    Args:
        a, b: (H, W) sources; f: (H, W) fused image; all 0..255.
    """
    return structural_similarity(a, f, data_range=255.0) + structural_similarity(
        b, f, data_range=255.0
    )


def fusion_multiscale_structural_similarity(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """MS_SSIM: mean of MS-SSIM(a, f) and MS-SSIM(b, f), range up to 1; higher is better.

    The mean (not VIFB's sum used for SSIM) is what the PSLPT paper's tables report.

    Args:
        a, b: (H, W) sources; f: (H, W) fused image; all 0..255.
    """
    return 0.5 * (
        multiscale_structural_similarity(a, f, data_range=255.0)
        + multiscale_structural_similarity(b, f, data_range=255.0)
    )


def peak_signal_noise_ratio(x: np.ndarray, y: np.ndarray, *, data_range: float) -> float:
    """Textbook PSNR = 10 log10(L^2 / MSE) in dB (used against a reference image).

    Args:
        x, y: (H, W) images.
        data_range: L (255 for 8-bit).

    Returns:
        PSNR in dB (inf for identical images); higher is better.
    """
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def _vifb_error(x: np.ndarray, y: np.ndarray) -> float:
    """VIFB's `mse`: sqrt(sum of squared differences) / number of pixels (not the usual MSE)."""
    return float(np.sqrt(np.sum((x - y) ** 2)) / x.size)


def fusion_root_mean_square_error(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """RMSE as defined by VIFB `metricsRmse.m`: mean of e(a, f) and e(b, f).

    e(x, y) = sqrt(sum (x - y)^2) / (H W), which is the usual RMSE divided by sqrt(H W);
    kept for comparability with the VIFB tables.
    Reference: P. Jagalingam, A. V. Hegde, "A review of quality metrics for fused image",
    Aquatic Procedia 4 (2015).

    Args:
        a, b: (H, W) sources; f: (H, W) fused image; all 0..255.

    Returns:
        Error; lower is better.
    """
    return 0.5 * (_vifb_error(a, f) + _vifb_error(b, f))


def fusion_peak_signal_noise_ratio(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """PSNR as defined by VIFB `metricsPsnr.m`: 20 log10(255 / sqrt((e(a,f) + e(b,f)) / 2)).

    e is VIFB's error (see `fusion_root_mean_square_error`), so values sit near 60 dB and
    are not comparable with textbook PSNR. Reference: Jagalingam and Hegde (2015).

    Args:
        a, b: (H, W) sources; f: (H, W) fused image; all 0..255.

    Returns:
        PSNR in dB; higher is better.
    """
    error = fusion_root_mean_square_error(a, b, f)
    return math.inf if error == 0 else 20.0 * math.log10(255.0 / math.sqrt(error))


@dataclass(frozen=True)
class _MefReference:
    """Source-side quantities of MEF-SSIM at one scale (all maps over 'valid' windows).

    The reference patch of each window is sum_k coefficient_k (s_k - mean_k) scaled by
    `scale`; its Gaussian-weighted variance is `scale^2 * variance` and its covariance with
    the fused image is `scale * sum_k coefficient_k cov_G(s_k, f)`.
    """

    sources: np.ndarray  # (K, H, W)
    coefficient: np.ndarray  # (K, h, w)
    scale: np.ndarray  # (h, w)
    variance: np.ndarray  # (h, w), before scaling
    gaussian_means: np.ndarray  # (K, h, w)


def _mef_reference(sources: np.ndarray) -> _MefReference:
    """Ma et al.'s desired-structure model of one scale, in closed form over all windows.

    Per window, MEF-SSIM's reference patch is the weighted mean of the mean-removed,
    unit-strength source patches, rescaled to the largest source contrast. Every statistic
    of it is a linear combination of the sources' local (co)variances, so no patch is formed.

    Args:
        sources: (K, H, W) source images.
    """
    n = _WINDOW * _WINDOW
    count = sources.shape[0]
    eps = np.finfo(np.float64).eps
    pairs = [(k, j) for k in range(count) for j in range(k, count)]

    # Uniform-window sums are exact for 8-bit data, so a flat patch has exactly zero variance.
    sums = box_sum_valid(sources, _WINDOW)
    products = box_sum_valid(np.stack([sources[k] * sources[j] for k, j in pairs]), _WINDOW)
    # scatter[k, j] = sum over the window of (s_k - mean_k)(s_j - mean_j)
    scatter = np.empty((count, count, *sums.shape[1:]))
    for index, (k, j) in enumerate(pairs):
        value = (n * products[index] - sums[k] * sums[j]) / n
        scatter[k, j] = scatter[j, k] = value
    strength = np.sqrt(np.maximum(np.stack([scatter[k, k] for k in range(count)]), 0.0))
    flat = strength == 0

    signal = strength + 0.001  # MATLAB's `ed`
    consistency = (np.sqrt(np.maximum(scatter.sum(axis=(0, 1)), 0.0)) + eps) / (
        strength.sum(axis=0) + eps
    )
    consistency = np.where(consistency > 1, 1 - eps, consistency)
    consistency = np.where(consistency < 0, eps, consistency)
    exponent = np.minimum(np.tan(np.pi / 2 * consistency), 10.0)
    weight = (signal / _WINDOW) ** exponent + eps
    weight /= weight.sum(axis=0)
    coefficient = np.where(flat, 0.0, weight / signal)
    norm_sq = sum(
        coefficient[k] * coefficient[j] * scatter[k, j] for k in range(count) for j in range(count)
    )
    # MATLAB rescales the patch to the largest source strength unless it is all zero.
    scale = np.where(norm_sq > 0, signal.max(axis=0) / np.sqrt(np.maximum(norm_sq, 1e-300)), 0.0)

    means = _gaussian_means(np.stack([*sources, *(sources[k] * sources[j] for k, j in pairs)]))
    gaussian_means = means[:count]
    variance = np.zeros(scale.shape)
    for index, (k, j) in enumerate(pairs):
        covariance = means[count + index] - gaussian_means[k] * gaussian_means[j]
        term = coefficient[k] * coefficient[j] * covariance
        variance += term if k == j else 2 * term
    return _MefReference(sources, coefficient, scale, variance, gaussian_means)


def _mef_ssim_single_scale(reference: _MefReference, f: np.ndarray) -> float:
    """Mean MEF-SSIM map of one scale: structure comparison of the reference patch and f."""
    count = reference.sources.shape[0]
    means = _gaussian_means(np.stack([f, f * f, *(reference.sources[k] * f for k in range(count))]))
    mean_f = means[0]
    var_f = means[1] - mean_f * mean_f
    cov_rf = np.zeros_like(var_f)
    for k in range(count):
        covariance = means[2 + k] - reference.gaussian_means[k] * mean_f
        cov_rf += reference.coefficient[k] * covariance
    var_r = reference.variance * reference.scale**2
    cov_rf *= reference.scale
    c = (0.03 * 255.0) ** 2
    return float(((2 * cov_rf + c) / (var_r + var_f + c)).mean())


def _mef_references(sources: np.ndarray) -> list[_MefReference]:
    return [_mef_reference(level) for level in _pyramid(sources, len(MEF_SSIM_WEIGHTS))]


def mef_structural_similarity(sources: np.ndarray, f: np.ndarray) -> float:
    """MEF_SSIM: Ma et al.'s multi-exposure fusion quality over three scales.

    Reference: K. Ma, K. Zeng, Z. Wang, "Perceptual quality assessment for multi-exposure
    image fusion", IEEE TIP 24 (11) (2015). Definition: MEFB `metricsMEF_SSIM.m`, which runs
    the authors' `mef_ms_ssim.m` on greyscale images (3 scales, K = 0.03, Gaussian 11x11
    window of sigma 1.5, weights 0.0448/0.2856/0.3001 renormalised).

    Args:
        sources: (K, H, W) source images (K >= 2); f: (H, W) fused image; all 0..255,
            short side >= 41 px.

    Returns:
        MEF-SSIM, at most 1; higher is better.
    """
    levels = len(MEF_SSIM_WEIGHTS)
    _require_size(f, pyramid_min_size(levels), "MEF_SSIM")
    references = memoised("mef_references", _mef_references, sources)
    total_weight = sum(MEF_SSIM_WEIGHTS)
    score = 1.0
    for reference, f_level, weight in zip(
        references, _pyramid(f, levels), MEF_SSIM_WEIGHTS, strict=True
    ):
        # A negative score cannot be raised to a fractional power: clamped like MS-SSIM's.
        score *= max(_mef_ssim_single_scale(reference, f_level), 0.0) ** (weight / total_weight)
    return float(score)
