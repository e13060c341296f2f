"""Gradient and statistics metrics: Qabf, Nabf, AG, EI, SF and SD.

Single-plane float64 images (H, W) on the 8-bit scale; `a`, `b` sources, `f` fused image.
Qabf, AG, EI, SF and SD follow VIFB's `metrics/*.m`; Nabf follows B. K. Shreyamsha Kumar's
`objective_fusion_perform_fn.m` (shipped in VIFB under methods/CBF).
"""

from __future__ import annotations

import numpy as np

from fusecli.metrics._cache import memoised
from fusecli.metrics._matlab import sobel_gradients


def _xydeas_edges(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edge strength and orientation as in VIFB's Qabf: conv2 'same' (zero border).

    The image is scaled by 255 first, as VIFB does (`255 * im2double(double(x))`); the scale
    matters only through the equal-strength rule below.

    Returns:
        (strength, angle), each (H, W); angle = atan(gy/gx), pi/2 where gx == 0.
    """
    gx, gy = sobel_gradients(image, boundary="zero")
    # conv2 with h3 = [-1 0 1; ...] and h1 = [1 2 1; ...] flips them: SAx = -gx, SAy = gy.
    gx, gy = -255.0 * gx, 255.0 * gy
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.where(gx == 0, np.pi / 2, np.arctan(gy / gx))
    return np.sqrt(gx * gx + gy * gy), angle


def _xydeas_preservation(
    g_source: np.ndarray, a_source: np.ndarray, g_fused: np.ndarray, a_fused: np.ndarray
) -> np.ndarray:
    """Q^{SF} map of VIFB's Qabf (sigmoids of relative strength and orientation)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(
            g_source > g_fused,
            g_fused / g_source,
            # VIFB sets G = gF (not 1) where the strengths are equal: kept for comparability.
            np.where(g_source == g_fused, g_fused, g_source / g_fused),
        )
    orientation = 1.0 - np.abs(a_source - a_fused) / (np.pi / 2)
    q_strength = 0.9994 / (1.0 + np.exp(-15.0 * (relative - 0.5)))
    q_orientation = 0.9879 / (1.0 + np.exp(-22.0 * (orientation - 0.8)))
    return q_strength * q_orientation


def edge_transfer_quality(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """Qabf: gradient-weighted preservation of source edges in the fused image.

    Reference: C. S. Xydeas, V. Petrovic, "Objective image fusion performance measure",
    Electronics Letters 36 (4) (2000). Definition: VIFB `metricsQabf.m` (L = 1,
    Tg = 0.9994, kg = -15, Dg = 0.5, Ta = 0.9879, ka = -22, Da = 0.8).

    Args:
        a, b: (H, W) sources; f: (H, W) fused image; all 0..255.

    Returns:
        Qabf in 0..1; higher is better.
    """
    g_f, a_f = memoised("xydeas_edges", _xydeas_edges, f)
    numerator = 0.0
    denominator = 0.0
    for source in (a, b):
        g_s, a_s = memoised("xydeas_edges", _xydeas_edges, source)
        numerator += float((_xydeas_preservation(g_s, a_s, g_f, a_f) * g_s).sum())
        denominator += float(g_s.sum())
    return numerator / denominator


def _kumar_edges(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kumar's `sobel_fn`: Sobel/8 with mirrored borders -> (strength, angle).

    Kept apart from :func:`_xydeas_edges` on purpose: Qabf and Nabf each reproduce their own
    MATLAB code to the digit, and the two differ in border (mirror vs zero), scale (1/8 vs
    255) and the angle where gh == 0 (signed vs pi/2). A shared helper would need a switch
    for each, and a fix to one metric could silently move the other's scores.
    """
    gx, gy = sobel_gradients(image, boundary="mirror")
    gv, gh = gx / 8.0, gy / 8.0
    with np.errstate(divide="ignore", invalid="ignore"):
        # atan(gv/gh): +-pi/2 where gh == 0 (MATLAB's atan(+-Inf)), 0 where both vanish.
        angle = np.where(gh == 0, np.sign(gv) * np.pi / 2, np.arctan(gv / gh))
    return np.sqrt(gv * gv + gh * gh), angle


def _kumar_preservation(
    g_source: np.ndarray, a_source: np.ndarray, g_fused: np.ndarray, a_fused: np.ndarray
) -> np.ndarray:
    """Petrovic's Q^{SF} map with Kumar's constants (sqrt of the two sigmoids).

    Kept apart from :func:`_xydeas_preservation` on purpose: besides the constants, Kumar
    scores 0 where either strength is 0 (VIFB's Qabf keeps gF where they are equal), measures
    orientation from pi/2 and takes the square root; each follows its own MATLAB code exactly.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(
            (g_source == 0) | (g_fused == 0),
            0.0,
            np.where(g_source > g_fused, g_fused / g_source, g_source / g_fused),
        )
    orientation = np.abs(np.abs(a_source - a_fused) - np.pi / 2) * 2 / np.pi
    q_strength = 0.9999 / (1.0 + np.exp(-19.0 * (relative - 0.5)))
    q_orientation = 0.9995 / (1.0 + np.exp(-22.0 * (orientation - 0.5)))
    return np.sqrt(q_strength * q_orientation)


def fusion_artifacts(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """Nabf: modified fusion-artifact measure (noise added where the fused edge is stronger).

    Reference: B. K. Shreyamsha Kumar, "Multifocus and multispectral image fusion based on
    pixel significance using discrete cosine harmonic wavelet transform", Signal, Image and
    Video Processing 7 (6) (2013). Definition: Kumar's `objective_fusion_perform_fn.m` (as
    shipped in VIFB, methods/CBF): Td = 2, wt_min = 0.001, Lg = 1.5, Nrg = 0.9999, kg = 19,
    sigma_g = 0.5, Nra = 0.9995, ka = 22, sigma_a = 0.5.

    Args:
        a, b: (H, W) sources; f: (H, W) fused image; all 0..255.

    Returns:
        Nabf in 0..1; lower is better.
    """
    g_f, a_f = memoised("kumar_edges", _kumar_edges, f)
    g_a, a_a = memoised("kumar_edges", _kumar_edges, a)
    g_b, a_b = memoised("kumar_edges", _kumar_edges, b)
    weight_a = np.where(g_a >= 2.0, g_a**1.5, 0.001)
    weight_b = np.where(g_b >= 2.0, g_b**1.5, 0.001)
    artifact = (g_f > g_a) & (g_f > g_b)
    loss = (1 - _kumar_preservation(g_a, a_a, g_f, a_f)) * weight_a
    loss += (1 - _kumar_preservation(g_b, a_b, g_f, a_f)) * weight_b
    return float((loss * artifact).sum() / (weight_a + weight_b).sum())


def average_gradient(f: np.ndarray) -> float:
    """AG: sum of sqrt((dx^2 + dy^2)/2) over MATLAB `gradient` differences, / ((H-1)(W-1)).

    Reference: G. Cui, H. Feng, Z. Xu, Q. Li, Y. Chen, "Detail preserved fusion of visible and
    infrared images using regional saliency extraction and multi-scale image decomposition",
    Optics Communications 341 (2015). Definition: VIFB `metricsAvg_gradient.m`.

    Args:
        f: (H, W) fused image, 0..255, H, W >= 2.

    Returns:
        Average gradient; higher is better.
    """
    dy, dx = np.gradient(f)
    height, width = f.shape
    return float(np.sqrt((dx * dx + dy * dy) / 2.0).sum() / ((height - 1) * (width - 1)))


def edge_intensity(f: np.ndarray) -> float:
    """EI: mean Sobel gradient magnitude (imfilter, replicated borders).

    Reference: B. Rajalingam, R. Priya, "Hybrid multimodality medical image fusion technique
    for feature enhancement in medical diagnosis", Int. J. Eng. Sci. Invention (2018).
    Definition: VIFB `metricsEdge_intensity.m`.

    Args:
        f: (H, W) fused image, 0..255.

    Returns:
        Edge intensity; higher is better.
    """
    # fspecial('sobel') and its transpose: the negated Sobel pair (signs do not matter here).
    gx, gy = sobel_gradients(f, boundary="replicate")
    return float(np.sqrt(gx * gx + gy * gy).mean())


def spatial_frequency(f: np.ndarray) -> float:
    """SF: sqrt(RF^2 + CF^2) of row and column first differences, both divided by H W.

    Reference: A. M. Eskicioglu, P. S. Fisher, "Image quality measures and their performance",
    IEEE Trans. Communications 43 (12) (1995). Definition: VIFB
    `metricsSpatial_frequency.m`. (For a colour image VIFB views the H x W x 3 array as
    H x 3W, channels side by side; `compute_metrics` reproduces that.)

    Args:
        f: (H, W) image, 0..255.

    Returns:
        Spatial frequency; higher is better.
    """
    rows = np.diff(f, axis=1)
    cols = np.diff(f, axis=0)
    return float(np.sqrt(((rows * rows).sum() + (cols * cols).sum()) / f.size))


def standard_deviation(f: np.ndarray) -> float:
    """SD: population standard deviation of the grey levels (VIFB `metricsVariance.m`).

    Reference: Y.-J. Rao, "In-fibre Bragg grating sensors", Measurement Science and
    Technology 8 (4) (1997), as cited by VIFB.

    Args:
        f: (H, W) fused image, 0..255.

    Returns:
        Standard deviation; higher is better.
    """
    return float(np.sqrt(np.mean((f - f.mean()) ** 2)))
