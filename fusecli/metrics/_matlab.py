"""MATLAB-compatible numeric primitives that the benchmark definitions depend on.

The published fusion benchmarks (VIFB, MEFB) are MATLAB code, and several of their numbers
depend on MATLAB details: the boundary mode of `filter2`/`imfilter`/`conv2`, `rgb2gray`
coefficients, `round` (half away from zero), `freqspace` grids, `blkproc` zero padding.
Everything here works on float64 arrays of shape (..., H, W) and filters over the last two axes.
"""

from __future__ import annotations

from functools import cache

import numpy as np

# First row of inv(NTSC->RGB), exactly as MATLAB's rgb2gray derives its weights.
_NTSC_TO_RGB = np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]])
RGB2GRAY_WEIGHTS: np.ndarray = np.linalg.inv(_NTSC_TO_RGB)[0]


def matlab_round(x: np.ndarray) -> np.ndarray:
    """Round half away from zero, like MATLAB `round` and integer casts (numpy rounds to even)."""
    magnitude = np.abs(x)
    rounded = np.floor(magnitude + 0.5)
    # floor(m + 0.5) overshoots only when m + 0.5 itself rounds up (m just below k + 0.5).
    rounded -= magnitude < rounded - 0.5
    return np.copysign(rounded, x)


def rgb_to_gray(rgb: np.ndarray, *, integer: bool = True) -> np.ndarray:
    """MATLAB `rgb2gray`.

    Args:
        rgb: (..., 3, H, W) values in 0..255.
        integer: round and clip to 0..255 as MATLAB does for uint8 input.

    Returns:
        (..., H, W) float64.
    """
    if rgb.shape[-3] != 3:
        raise ValueError(f"rgb_to_gray expects 3 channels on axis -3, got shape {rgb.shape}")
    # tensordot drops the channel axis and keeps the others in order: (..., H, W).
    gray = np.tensordot(RGB2GRAY_WEIGHTS, rgb.astype(np.float64), axes=([0], [rgb.ndim - 3]))
    return np.clip(matlab_round(gray), 0.0, 255.0) if integer else gray


def normalize_to_255(data: np.ndarray) -> np.ndarray:
    """`normalize1` of Z. Liu's toolbox: min-max stretch to 0..255 and round to integers.

    A constant image maps to zeros (MATLAB divides by zero there unless it is all zero).

    Args:
        data: (H, W) array.

    Returns:
        (H, W) float64 integers in 0..255.
    """
    high, low = float(data.max()), float(data.min())
    if high == low:
        return np.zeros_like(data, dtype=np.float64)
    return matlab_round((data - low) / (high - low) * 255.0)


def correlate_1d(x: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """'valid' correlation along `axis` (-1 or -2); output is len(kernel)-1 shorter there."""
    if axis == -1:
        # Windows along rows of the transposed view form BLAS-friendly (H, n) matrices; along
        # the contiguous axis they overlap and numpy falls back to a slow loop (3x slower).
        return correlate_1d(x.swapaxes(-1, -2), kernel, axis=-2).swapaxes(-1, -2)
    windows = np.lib.stride_tricks.sliding_window_view(x, len(kernel), axis=axis)
    return windows @ kernel


def correlate_separable(
    x: np.ndarray, column: np.ndarray, row: np.ndarray, *, mode: str, boundary: str = "zero"
) -> np.ndarray:
    """2-D correlation with the rank-one kernel outer(column, row).

    Args:
        x: (..., H, W).
        column: vertical taps (odd length for 'same').
        row: horizontal taps (odd length for 'same').
        mode: 'valid' (MATLAB filter2 'valid') or 'same' (output (..., H, W)).
        boundary: padding for 'same': 'zero' (filter2/conv2), 'replicate', 'symmetric'.

    Returns:
        (..., H', W') float64.
    """
    if mode == "same":
        x = pad(x, len(column) // 2, len(row) // 2, boundary)
    elif mode != "valid":
        raise ValueError(f"unknown mode {mode!r}")
    return correlate_1d(correlate_1d(x, column, axis=-2), row, axis=-1)


def pad(x: np.ndarray, rows: int, cols: int, boundary: str) -> np.ndarray:
    """Pad the last two axes symmetrically by (rows, cols) with a MATLAB boundary mode."""
    widths = [(0, 0)] * (x.ndim - 2) + [(rows, rows), (cols, cols)]
    return np.pad(x, widths, mode=_NUMPY_PAD_MODES[boundary])


# 'mirror' is Kumar's per_extn_im_fn (used by Nabf): reflection without repeating the edge.
_NUMPY_PAD_MODES = {
    "zero": "constant",
    "replicate": "edge",
    "symmetric": "symmetric",
    "mirror": "reflect",
}


def sobel_gradients(x: np.ndarray, *, boundary: str) -> tuple[np.ndarray, np.ndarray]:
    """Unscaled Sobel responses by correlation, 'same' size, exact for integer images.

    gx correlates with [-1 0 1; -2 0 2; -1 0 1] (left to right), gy with its transpose (top to
    bottom); both are computed in separable form. Metrics that use other signs or a 1/8
    factor rescale these (an exact operation).

    Args:
        x: (..., H, W).
        boundary: 'zero', 'replicate', 'symmetric' or 'mirror'.

    Returns:
        (gx, gy), each (..., H, W) float64.
    """
    padded = pad(x.astype(np.float64, copy=False), 1, 1, boundary)
    rows = padded[..., :-2, :] + 2.0 * padded[..., 1:-1, :] + padded[..., 2:, :]
    cols = padded[..., :, :-2] + 2.0 * padded[..., :, 1:-1] + padded[..., :, 2:]
    return rows[..., :, 2:] - rows[..., :, :-2], cols[..., 2:, :] - cols[..., :-2, :]


@cache
def gaussian_taps(size: int, sigma: float) -> np.ndarray:
    """1-D factor of MATLAB `fspecial('gaussian', size, sigma)` (normalised to sum 1)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    taps = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return taps / taps.sum()


def box_sum_valid(x: np.ndarray, size: int) -> np.ndarray:
    """Sum over every size x size window ('valid'), via integral images.

    Exact when the inputs are dyadic rationals of modest magnitude (8-bit images, their
    products and 2x2 averages), which the MEF-SSIM flat-patch test relies on.

    Args:
        x: (..., H, W).

    Returns:
        (..., H - size + 1, W - size + 1).
    """
    widths = [(0, 0)] * (x.ndim - 2) + [(1, 0), (1, 0)]
    integral = np.pad(x, widths).cumsum(axis=-1).cumsum(axis=-2)
    return (
        integral[..., size:, size:]
        - integral[..., :-size, size:]
        - integral[..., size:, :-size]
        + integral[..., :-size, :-size]
    )


def downsample_by_two(x: np.ndarray) -> np.ndarray:
    """`imfilter(x, ones(2)/4, 'symmetric', 'same')` then `x(1:2:end, 1:2:end)`.

    MATLAB anchors an even kernel at its top-left tap, so each output is the mean of a 2x2
    block starting at an even index; an odd last row/column is averaged with itself.

    Args:
        x: (..., H, W).

    Returns:
        (..., ceil(H/2), ceil(W/2)).
    """
    height, width = x.shape[-2:]
    widths = [(0, 0)] * (x.ndim - 2) + [(0, height % 2), (0, width % 2)]
    x = np.pad(x, widths, mode="edge")
    return (x[..., 0::2, 0::2] + x[..., 1::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 1::2]) / 4


def frequency_radius(height: int, width: int, *, row_scale: float, col_scale: float) -> np.ndarray:
    """|f| on the unshifted FFT grid of `freqspace([height, width], 'meshgrid')`, scaled.

    freqspace gives (k - floor(n/2)) * 2/n on the fftshift-ed grid; after ifftshift that is
    2 * fftfreq(n). The scales are the benchmarks' `u = lie/8 * u; v = hang/8 * v` factors.

    Returns:
        (height, width) radius r = sqrt(u^2 + v^2).
    """
    u = col_scale * 2.0 * np.fft.fftfreq(width)
    v = row_scale * 2.0 * np.fft.fftfreq(height)
    return np.sqrt(u[None, :] ** 2 + v[:, None] ** 2)


def filter_in_frequency(x: np.ndarray, response: np.ndarray) -> np.ndarray:
    """`real(ifft2(ifftshift(fftshift(fft2(x)) .* S)))` with S already ifftshift-ed.

    The benchmark filters are even in frequency, so the MATLAB result is real up to rounding.

    Args:
        x: (..., H, W).
        response: (H, W) filter on the unshifted FFT grid.

    Returns:
        (..., H, W) float64.
    """
    return filter_spectrum(np.fft.rfft2(x), response)


def filter_spectrum(spectrum: np.ndarray, response: np.ndarray) -> np.ndarray:
    """`filter_in_frequency` from a precomputed `np.fft.rfft2` spectrum (linear, so spectra of
    several images may be combined first).

    Args:
        spectrum: (..., H, W // 2 + 1) complex.
        response: (H, W) filter on the unshifted FFT grid.

    Returns:
        (..., H, W) float64.
    """
    height, width = response.shape
    return np.fft.irfft2(spectrum * response[:, : width // 2 + 1], s=(height, width))


def block_sums(x: np.ndarray, block: int) -> np.ndarray:
    """`blkproc(x, [block block], @(b) sum(b(:)))`: partial edge blocks are zero padded.

    Args:
        x: (H, W).

    Returns:
        (ceil(H/block), ceil(W/block)).
    """
    height, width = x.shape
    padded = np.pad(x, ((0, -height % block), (0, -width % block)))
    rows, cols = padded.shape[0] // block, padded.shape[1] // block
    return padded.reshape(rows, block, cols, block).sum(axis=(1, 3))
