"""Human-visual-system metrics: Chen-Blum (Qcb) and Chen-Varshney (Qcv).

Single-plane float64 images (H, W) on the 8-bit scale; `a`, `b` sources, `f` fused image.
Both follow Z. Liu's implementations as run by VIFB (`metricsQcb.m`, `metricsQcv.m`),
including their frequency grids (`freqspace`) and image-size dependent filter scaling.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from fusecli.metrics._cache import memoised
from fusecli.metrics._matlab import (
    block_sums,
    correlate_separable,
    filter_spectrum,
    frequency_radius,
    normalize_to_255,
    sobel_gradients,
)


@cache
def _gaussian_31(sigma: float) -> np.ndarray:
    """1-D factor of Liu's `gaussian2d`: exp(-x^2 / 2 sigma^2) on -15..15, 2-D scale folded in."""
    x = np.arange(-15, 16, dtype=np.float64)
    # The 2-D kernel is exp(-(x^2+y^2)/(2 s^2)) / (2 pi s^2): split the constant evenly.
    return np.exp(-(x * x) / (2 * sigma * sigma)) / np.sqrt(2 * np.pi * sigma * sigma)


def _local_contrast(image: np.ndarray) -> np.ndarray:
    """|G2-filtered / G4-filtered - 1| with filter2 'same' (zero borders); (..., H, W)."""
    narrow = _gaussian_31(2.0)
    wide = _gaussian_31(4.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = correlate_separable(image, narrow, narrow, mode="same") / correlate_separable(
            image, wide, wide, mode="same"
        )
    return np.abs(ratio - 1.0)


def chen_blum_quality(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """Qcb: contrast preservation under a contrast-sensitivity filter, saliency weighted.

    Reference: Y. Chen, R. S. Blum, "A new automated quality assessment algorithm for image
    fusion", Image and Vision Computing 27 (10) (2009). Definition: VIFB `metricsQcb.m`
    (Z. Liu's `metricChenBlum.m`): images stretched to 0..255, DoG CSF with f0 = 15.3870,
    f1 = 1.3456, a = 0.7622 on a frequency grid scaled by (H/30, W/30), local contrast from
    Gaussians of sigma 2 and 4, k = h = 1, p = 3, q = 2, Z = 1e-4.

    Args:
        a, b: (H, W) sources; f: (H, W) fused image; all 0..255.

    Returns:
        Qcb in 0..1; higher is better.
    """
    c_a, c_b, c_f = (memoised("chen_blum_contrast", _masked_contrast, x) for x in (a, b, f))
    with np.errstate(divide="ignore", invalid="ignore"):
        q_af = np.where(c_a < c_f, c_a / c_f, c_f / c_a)
        q_bf = np.where(c_b < c_f, c_b / c_f, c_f / c_b)
        saliency_a = c_a * c_a / (c_a * c_a + c_b * c_b)
    return float((saliency_a * q_af + (1.0 - saliency_a) * q_bf).mean())


@cache
def _chen_blum_csf(height: int, width: int) -> np.ndarray:
    """DoG contrast sensitivity of Chen-Blum on the image's frequency grid scaled by 1/30."""
    radius = frequency_radius(height, width, row_scale=height / 30, col_scale=width / 30)
    return np.exp(-((radius / 15.3870) ** 2)) - 0.7622 * np.exp(-((radius / 1.3456) ** 2))


@cache
def _mannos_sakrison_csf(height: int, width: int) -> np.ndarray:
    """Mannos-Sakrison CSF used by Chen-Varshney, frequency grid scaled by 1/8."""
    radius = frequency_radius(height, width, row_scale=height / 8, col_scale=width / 8)
    return 2.6 * (0.0192 + 0.144 * radius) * np.exp(-((0.144 * radius) ** 1.1))


def _normalized_spectrum(image: np.ndarray) -> np.ndarray:
    """rfft2 of the 0..255-stretched image (shared by Qcb and Qcv)."""
    return np.fft.rfft2(memoised("normalized", normalize_to_255, image))


def _masked_contrast(image: np.ndarray) -> np.ndarray:
    """Chen-Blum masked contrast C^p / (C^q + Z) of one image after CSF filtering; (H, W)."""
    spectrum = memoised("normalized_spectrum", _normalized_spectrum, image)
    contrast = _local_contrast(filter_spectrum(spectrum, _chen_blum_csf(*image.shape)))
    return contrast**3 / (contrast**2 + 1e-4)


_CV_WINDOW = 16
_CV_ALPHA = 5


def chen_varshney_quality(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """Qcv: saliency-weighted CSF-filtered squared difference over 16x16 regions.

    Reference: H. Chen, P. K. Varshney, "A human perception inspired quality metric for image
    fusion based on regional information", Information Fusion 8 (2) (2007). Definition:
    VIFB `metricsQcv.m` (Z. Liu's `metricChen.m`): images stretched to 0..255, Sobel
    saliency sum(|grad|^5) per 16x16 block, Mannos-Sakrison CSF on a frequency grid scaled
    by (H/8, W/8), block means of the squared filtered difference (edge blocks zero padded).

    Args:
        a, b: (H, W) sources; f: (H, W) fused image; all 0..255.

    Returns:
        Qcv >= 0; lower is better.
    """
    spectra = [memoised("normalized_spectrum", _normalized_spectrum, x) for x in (a, b, f)]
    # The CSF filter is linear: filtering a - f is filtering the difference of the spectra.
    differences = filter_spectrum(
        np.stack([spectra[0] - spectra[2], spectra[1] - spectra[2]]),
        _mannos_sakrison_csf(*f.shape),
    )
    numerator = 0.0
    denominator = 0.0
    for source, difference in zip((a, b), differences, strict=True):
        normalized = memoised("normalized", normalize_to_255, source)
        saliency = memoised("chen_varshney_saliency", _regional_saliency, normalized)
        # blkproc hands mean2 the zero-padded 16x16 block, so every block divides by 256.
        distortion = block_sums(difference * difference, _CV_WINDOW) / _CV_WINDOW**2
        numerator += float((saliency * distortion).sum())
        denominator += float(saliency.sum())
    return numerator / denominator


def _regional_saliency(normalized: np.ndarray) -> np.ndarray:
    """Sum of |Sobel gradient|^alpha per 16x16 block (filter2, zero borders)."""
    gx, gy = sobel_gradients(normalized, boundary="zero")
    return block_sums(np.sqrt(gx * gx + gy * gy) ** _CV_ALPHA, _CV_WINDOW)
