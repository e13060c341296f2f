"""Information-theoretic fusion metrics: EN, CE, MI, NMI and FMI.

All functions take single-plane float64 images (H, W) on the 8-bit scale (0..255), as the
benchmarks' MATLAB code receives them from `imread`; `a` and `b` are the sources, `f` the fused
image. Definitions follow VIFB (EN, CE, MI) and MEFB (NMI, FMI) exactly, including their quirks,
so that values can be compared with the published tables.
"""

from __future__ import annotations

import numpy as np

from fusecli.metrics._cache import memoised
from fusecli.metrics._matlab import matlab_round, normalize_to_255, sobel_gradients

_LEVELS = 256


def _histogram(x: np.ndarray) -> np.ndarray:
    """256-bin probability histogram of floor(x), x in 0..255."""
    bins = np.clip(np.floor(x), 0, _LEVELS - 1).astype(np.intp).ravel()
    return np.bincount(bins, minlength=_LEVELS) / bins.size


def _joint_histogram(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(256, 256) joint count histogram of two integer images in 0..255."""
    index = x.astype(np.intp).ravel() * _LEVELS + y.astype(np.intp).ravel()
    return np.bincount(index, minlength=_LEVELS * _LEVELS).reshape(_LEVELS, _LEVELS)


def _entropy_of(p: np.ndarray, log: np.ufunc = np.log2) -> float:
    """-sum p log p over the non-zero entries."""
    nonzero = p[p > 0]
    return float(-(nonzero * log(nonzero)).sum())


def entropy(f: np.ndarray) -> float:
    """EN: Shannon entropy (bits) of the 256-bin grey-level histogram.

    Reference: J. W. Roberts, J. van Aardt, F. Ahmed, "Assessment of image fusion procedures
    using entropy, image quality, and multispectral classification", J. Appl. Remote Sens. 2
    (2008). Definition: VIFB `metricsEntropy.m` (values are floored into 256 bins).

    Args:
        f: (H, W) fused image, 0..255.

    Returns:
        Entropy in bits, 0..8; higher is better.
    """
    return _entropy_of(memoised("histogram", _histogram, f))


def cross_entropy(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """CE: mean of the relative entropies KL(h_a || h_f) and KL(h_b || h_f), in bits.

    Reference: D. M. Bulanon, T. F. Burks, V. Alchanatis, "Image fusion of visible and thermal
    images for fruit detection", Biosystems Engineering 103 (2009). Definition: VIFB
    `metricsCross_entropy.m`: bins where either histogram is empty are skipped.

    Args:
        a, b: (H, W) sources; f: (H, W) fused image; all 0..255.

    Returns:
        Cross entropy (bits); lower is better.
    """
    hf = memoised("histogram", _histogram, f)
    total = 0.0
    for source in (a, b):
        hs = memoised("histogram", _histogram, source)
        both = (hs > 0) & (hf > 0)
        total += float((hs[both] * np.log2(hs[both] / hf[both])).sum())
    return total / 2.0


def _vifb_quantise(image: np.ndarray) -> np.ndarray:
    """VIFB mutinf binning: min-max stretch, then int16(255 x) (rounds half away from zero)."""
    low, high = float(image.min()), float(image.max())
    if high == low:
        return np.zeros(image.shape, dtype=np.intp)
    return matlab_round((image - low) / (high - low) * 255.0).astype(np.intp)


def _vifb_mutual_information(x: np.ndarray, y: np.ndarray) -> float:
    """VIFB's `mutinf(a, b)` in nats (natural logarithm) on quantised images."""
    joint = _joint_histogram(
        memoised("vifb_quantised", _vifb_quantise, x), memoised("vifb_quantised", _vifb_quantise, y)
    ).astype(np.float64)
    joint /= joint.sum()
    h_xy = _entropy_of(joint, np.log)
    h_x = _entropy_of(joint.sum(axis=1), np.log)
    h_y = _entropy_of(joint.sum(axis=0), np.log)
    return h_x + h_y - h_xy


def mutual_information(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """MI: MI(a, f) + MI(b, f), in nats, each on min-max stretched 256-bin histograms.

    Reference: G. Qu, D. Zhang, P. Yan, "Information measure for performance of image
    fusion", Electronics Letters 38 (7) (2002). Definition: VIFB `metricsMutinf.m` (natural
    logarithm; each image is stretched to 0..255 before binning).

    Args:
        a, b: (H, W) sources; f: (H, W) fused image; all 0..255.

    Returns:
        Mutual information (nats); higher is better.
    """
    return _vifb_mutual_information(a, f) + _vifb_mutual_information(b, f)


def _liu_mutual_information(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Z. Liu's `mutual_info`: (I(x;y), H(x), H(y)) in bits on 0..255 integer images."""
    joint = _joint_histogram(x, y).astype(np.float64)
    joint /= joint.sum()
    h_x = _entropy_of(joint.sum(axis=1))
    h_y = _entropy_of(joint.sum(axis=0))
    return h_x + h_y - _entropy_of(joint), h_x, h_y


def normalized_mutual_information(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """NMI: 2 [I(a;f) / (H(a) + H(f)) + I(b;f) / (H(b) + H(f))], range 0..2.

    Reference: M. Hossny, S. Nahavandi, D. Creighton, "Comments on 'Information measure for
    performance of image fusion'", Electronics Letters 44 (18) (2008). Definition: MEFB
    `metricsNMI.m` (Z. Liu's `metricMI.m`): each image is min-max stretched and rounded to
    0..255 first, logarithms base 2.

    Args:
        a, b: (H, W) sources; f: (H, W) fused image; all 0..255.

    Returns:
        Normalised mutual information; higher is better.
    """
    fused = memoised("normalized", normalize_to_255, f)
    total = 0.0
    for source in (a, b):
        normalized = memoised("normalized", normalize_to_255, source)
        information, h_source, h_fused = _liu_mutual_information(normalized, fused)
        total += information / (h_source + h_fused)
    return 2.0 * total


# --- FMI -------------------------------------------------------------------------------------

_EDGE_TOLERANCE = 100 * np.finfo(np.float64).eps


def sobel_edges(image: np.ndarray) -> np.ndarray:
    """MATLAB `edge(image)` with its defaults: Sobel, automatic threshold, thinning.

    The threshold is sqrt(4 mean(gx^2 + gy^2)); a pixel above it is kept where it is a local
    maximum across the dominant gradient direction (left/right when |gx| >= |gy|, up/down when
    |gy| >= |gx|), which is MATLAB's edge thinning with zero offsets.

    Args:
        image: (H, W) float64.

    Returns:
        (H, W) bool edge map.
    """
    # MATLAB's masks are fspecial('sobel')/8 and its transpose: the Sobel pair negated, / 8.
    gx, gy = sobel_gradients(image, boundary="replicate")
    gx, gy = gx / 8.0, gy / 8.0
    magnitude = gx * gx + gy * gy
    cutoff = 4.0 * magnitude.mean()
    gx, gy = np.abs(gx), np.abs(gy)
    # Neighbour comparisons; outside the image a comparison counts as passed.
    left = np.ones_like(magnitude, dtype=bool)
    right = np.ones_like(left)
    up = np.ones_like(left)
    down = np.ones_like(left)
    left[:, 1:] = magnitude[:, :-1] <= magnitude[:, 1:]
    right[:, :-1] = magnitude[:, :-1] > magnitude[:, 1:]
    up[1:, :] = magnitude[:-1, :] <= magnitude[1:, :]
    down[:-1, :] = magnitude[:-1, :] > magnitude[1:, :]
    horizontal = (gx >= gy - _EDGE_TOLERANCE) & left & right
    vertical = (gy >= gx - _EDGE_TOLERANCE) & up & down
    return (magnitude > cutoff) & (horizontal | vertical)


def _window_patterns(edges: np.ndarray) -> np.ndarray:
    """9-bit code of every interior 3x3 window, bit k = k-th element in MATLAB order (x(:)).

    Args:
        edges: (H, W) bool.

    Returns:
        (H-2, W-2) int codes in 0..511.
    """
    height, width = edges.shape
    codes = np.zeros((height - 2, width - 2), dtype=np.intp)
    for col in range(3):
        for row in range(3):
            bit = col * 3 + row  # column-major, as MATLAB's aSub(:)
            codes |= edges[row : row + height - 2, col : col + width - 2].astype(np.intp) << bit
    return codes


def _pattern_pdfs(codes: np.ndarray) -> np.ndarray:
    """(N,) window codes -> (N, 9) marginal pdfs of Haghighat's FMI (all-0/all-1 -> uniform)."""
    bits = ((codes[:, None] >> np.arange(9)) & 1).astype(np.float64)
    flat = (codes == 0) | (codes == 511)
    bits[flat] = 1.0
    return bits / bits.sum(axis=1, keepdims=True)


def _entropy_rows(p: np.ndarray) -> np.ndarray:
    """Row-wise -sum p log2 p over non-zero entries; p: (N, 9)."""
    safe = np.where(p > 0, p, 1.0)
    return -(p * np.log2(safe)).sum(axis=1)


def _fmi_pairs(codes_s: np.ndarray, codes_f: np.ndarray) -> np.ndarray:
    """Haghighat's normalised feature MI of each (source window, fused window) pair.

    Follows the fast-FMI code in MEFB `metricsFMI.m`: marginal pdfs from the window values,
    a joint pdf mixing the Frechet bound (upper for positive correlation, lower for negative)
    with the independent product so that it has the pdfs' Pearson correlation, then
    2 I / (H_s + H_f). Identical windows score 1.

    Args:
        codes_s, codes_f: (N,) window codes.

    Returns:
        (N,) values.
    """
    ps, pf = _pattern_pdfs(codes_s), _pattern_pdfs(codes_f)
    cs, cf = np.cumsum(ps, axis=1), np.cumsum(pf, axis=1)
    ds, df = ps - ps.mean(axis=1, keepdims=True), pf - pf.mean(axis=1, keepdims=True)
    cross = (ds * df).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(cross == 0, 0.0, cross / np.sqrt((ds * ds).sum(1) * (df * df).sum(1)))
    index = np.arange(1, 10, dtype=np.float64)
    sd_s = np.sqrt(np.maximum((index**2 * ps).sum(1) - (index * ps).sum(1) ** 2, 0.0))
    sd_f = np.sqrt(np.maximum((index**2 * pf).sum(1) - (index * pf).sum(1) ** 2, 0.0))

    # Bivariate Frechet bounds of the two cdfs: (N, 9 fused, 9 source).
    fi, sj = cf[:, :, None], cs[:, None, :]
    upper = np.minimum(fi, sj)
    lower = np.maximum(fi + sj - 1.0, 0.0)
    positive = corr >= 0
    bound = np.where(positive[:, None, None], upper, lower)
    covariance = (bound - fi * sj).sum(axis=(1, 2))
    degenerate = (sd_s == 0) | (sd_f == 0) | (corr == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mix = np.where(degenerate, 0.0, corr / (covariance / (sd_f * sd_s)))
    # Probability mass of each cell from the bound cdf (zero outside the first row/column).
    padded = np.pad(bound, ((0, 0), (1, 0), (1, 0)))
    cell = padded[:, 1:, 1:] - padded[:, :-1, 1:] - padded[:, 1:, :-1] + padded[:, :-1, :-1]
    joint = mix[:, None, None] * cell + (1.0 - mix[:, None, None]) * pf[:, :, None] * ps[:, None, :]
    # A mixing factor above 1 can make cells negative; MATLAB keeps real(-p log2 p).
    magnitude = np.where(joint != 0, np.abs(joint), 1.0)
    joint_entropy = -(joint * np.log2(magnitude)).sum(axis=(1, 2))

    h_s, h_f = _entropy_rows(ps), _entropy_rows(pf)
    information = h_s + h_f - joint_entropy
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(information == 0, 0.0, 2.0 * information / (h_s + h_f))
    return np.where(codes_s == codes_f, 1.0, value)


def _edge_codes(image: np.ndarray) -> np.ndarray:
    return _window_patterns(sobel_edges(image))


def _fmi_mean(codes_s: np.ndarray, codes_f: np.ndarray) -> float:
    """Mean FMI over windows: each distinct (source, fused) code pair is evaluated once."""
    counts = np.bincount((codes_s * 512 + codes_f).ravel(), minlength=512 * 512)
    pairs = np.flatnonzero(counts)
    values = _fmi_pairs(pairs // 512, pairs % 512)
    return float((values * counts[pairs]).sum() / codes_s.size)


def feature_mutual_information(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """FMI: feature mutual information on Sobel edge maps, 3x3 sliding windows.

    Reference: M. B. A. Haghighat, A. Aghagolzadeh, H. Seyedarabi, "A non-reference image
    fusion metric based on mutual information of image features", Computers & Electrical
    Engineering 37 (5) (2011); fast version: M. Haghighat, M. A. Razian, AICT 2014.
    Definition: MEFB `metricsFMI.m` with its default feature ('edge', i.e. MATLAB
    `edge(I)`) and window (3). Edge maps are binary, so every 3x3 window is one of 512
    patterns and each distinct pair of patterns is evaluated once (vectorised).

    Args:
        a, b: (H, W) sources; f: (H, W) fused image; all 0..255; H, W >= 3.

    Returns:
        Mean of (FMI(a, f) + FMI(b, f)) / 2 over windows, 0..1; higher is better.
    """
    codes_f = memoised("edge_codes", _edge_codes, f)
    codes_a = memoised("edge_codes", _edge_codes, a)
    codes_b = memoised("edge_codes", _edge_codes, b)
    return (_fmi_mean(codes_a, codes_f) + _fmi_mean(codes_b, codes_f)) / 2.0
