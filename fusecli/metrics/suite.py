"""Metric registry and `compute_metrics`: colour handling and dispatch over image planes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np

from fusecli.errors import FuseError
from fusecli.metric_names import COLOUR_MODES
from fusecli.metrics import gradient, information, perceptual, structural
from fusecli.metrics._cache import forget, shared_intermediates
from fusecli.metrics._matlab import rgb_to_gray

ColourMode = Literal["channels", "gray"]

# How a metric is called: on the fused image only, on (a, b, fused), on the greyscale source
# stack and fused image (MEF-SSIM), or on (reference, fused).
Kind = Literal["fused", "fusion", "sequence", "reference"]


@dataclass(frozen=True)
class Metric:
    """One registered metric.

    Attributes:
        name: printed name (e.g. "Qabf").
        higher_is_better: direction for ranking methods.
        kind: call signature, see `Kind`.
        function: the implementation on single planes (H, W) in 0..255.
        citation: the paper that defines it.
        definition: the benchmark code our implementation reproduces.
        min_size: smallest image side it is defined for; by default `compute_metrics` leaves
            out metrics that do not apply to the image size.
    """

    name: str
    higher_is_better: bool
    kind: Kind
    function: Callable[..., float]
    citation: str
    definition: str
    min_size: int = 1


def _reference_psnr(reference: np.ndarray, fused: np.ndarray) -> float:
    return structural.peak_signal_noise_ratio(reference, fused, data_range=255.0)


def _reference_ssim(reference: np.ndarray, fused: np.ndarray) -> float:
    return structural.structural_similarity(reference, fused, data_range=255.0)


def _reference_ms_ssim(reference: np.ndarray, fused: np.ndarray) -> float:
    return structural.multiscale_structural_similarity(reference, fused, data_range=255.0)


_WANG_2004 = "Wang, Bovik, Sheikh, Simoncelli, IEEE TIP 13(4), 2004"
_WANG_2003 = "Wang, Simoncelli, Bovik, Asilomar Conf. Signals, Systems and Computers, 2003"
_JAGALINGAM = "Jagalingam, Hegde, Aquatic Procedia 4, 2015"
_MS_SSIM_SIZE = structural.pyramid_min_size(len(structural.MS_SSIM_WEIGHTS))

# One row per metric, written out rather than built in a loop: each row names the paper and
# the benchmark code (VIFB, MEFB, Kumar's) that its implementation matches to the digit, so
# rows look alike but every value in them is the metric's own.
METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric("EN", True, "fused", information.entropy,
               "Roberts, van Aardt, Ahmed, J. Appl. Remote Sens. 2, 2008",
               "VIFB metricsEntropy.m"),
        Metric("MI", True, "fusion", information.mutual_information,
               "Qu, Zhang, Yan, Electronics Letters 38(7), 2002", "VIFB metricsMutinf.m"),
        Metric("SSIM", True, "fusion", structural.fusion_structural_similarity,
               _WANG_2004, "VIFB metricsSsim.m (sum over the two sources)", 11),
        Metric("MS_SSIM", True, "fusion", structural.fusion_multiscale_structural_similarity,
               _WANG_2003, "Wang's msssim.m, mean over the two sources", _MS_SSIM_SIZE),
        Metric("PSNR", True, "fusion", structural.fusion_peak_signal_noise_ratio,
               _JAGALINGAM, "VIFB metricsPsnr.m"),
        Metric("Qabf", True, "fusion", gradient.edge_transfer_quality,
               "Xydeas, Petrovic, Electronics Letters 36(4), 2000", "VIFB metricsQabf.m"),
        Metric("Nabf", False, "fusion", gradient.fusion_artifacts,
               "Shreyamsha Kumar, Signal Image Video Process. 7(6), 2013",
               "Kumar's objective_fusion_perform_fn.m (VIFB methods/CBF)", 2),
        Metric("FMI", True, "fusion", information.feature_mutual_information,
               "Haghighat, Aghagolzadeh, Seyedarabi, Comput. Electr. Eng. 37(5), 2011",
               "MEFB metricsFMI.m (edge features, 3x3 windows)", 3),
        Metric("Qcb", True, "fusion", perceptual.chen_blum_quality,
               "Chen, Blum, Image Vis. Comput. 27(10), 2009", "VIFB metricsQcb.m"),
        Metric("Qcv", False, "fusion", perceptual.chen_varshney_quality,
               "Chen, Varshney, Information Fusion 8(2), 2007", "VIFB metricsQcv.m"),
        Metric("NMI", True, "fusion", information.normalized_mutual_information,
               "Hossny, Nahavandi, Creighton, Electronics Letters 44(18), 2008",
               "MEFB metricsNMI.m"),
        Metric("SF", True, "fused", gradient.spatial_frequency,
               "Eskicioglu, Fisher, IEEE Trans. Commun. 43(12), 1995",
               "VIFB metricsSpatial_frequency.m"),
        Metric("AG", True, "fused", gradient.average_gradient,
               "Cui, Feng, Xu, Li, Chen, Optics Communications 341, 2015",
               "VIFB metricsAvg_gradient.m", 2),
        Metric("SD", True, "fused", gradient.standard_deviation,
               "Rao, Meas. Sci. Technol. 8(4), 1997", "VIFB metricsVariance.m"),
        Metric("CE", False, "fusion", information.cross_entropy,
               "Bulanon, Burks, Alchanatis, Biosystems Engineering 103(1), 2009",
               "VIFB metricsCross_entropy.m"),
        Metric("EI", True, "fused", gradient.edge_intensity,
               "Rajalingam, Priya, Int. J. Eng. Sci. Invention, 2018",
               "VIFB metricsEdge_intensity.m"),
        Metric("RMSE", False, "fusion", structural.fusion_root_mean_square_error,
               _JAGALINGAM, "VIFB metricsRmse.m"),
        Metric("MEF_SSIM", True, "sequence", structural.mef_structural_similarity,
               "Ma, Zeng, Wang, IEEE TIP 24(11), 2015", "MEFB metricsMEF_SSIM.m",
               structural.pyramid_min_size(len(structural.MEF_SSIM_WEIGHTS))),
        Metric("PSNR_ref", True, "reference", _reference_psnr,
               "textbook PSNR against the reference", "10 log10(255^2 / MSE)"),
        Metric("SSIM_ref", True, "reference", _reference_ssim,
               _WANG_2004, "Wang's ssim_index.m against the reference", 11),
        Metric("MS_SSIM_ref", True, "reference", _reference_ms_ssim,
               _WANG_2003, "Wang's msssim.m against the reference", _MS_SSIM_SIZE),
    )
}  # fmt: skip

DEFAULT_METRICS: tuple[str, ...] = tuple(n for n, m in METRICS.items() if m.kind != "reference")
REFERENCE_METRICS: tuple[str, ...] = tuple(n for n, m in METRICS.items() if m.kind == "reference")


def as_planes(image: Any, role: str) -> np.ndarray:
    """Bring an image to float64 (C, H, W) on the 0..255 scale.

    Args:
        image: numpy array or torch tensor, (H, W), (C, H, W) or (1, C, H, W), C in {1, 3},
            values on the 8-bit scale 0..255 (a floating-point image whose maximum is at most
            1 is taken for a [0, 1] image and refused).
        role: name used in error messages ("source A", "fused", ...).

    Returns:
        (C, H, W) float64 array.
    """
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    original = np.asarray(image)
    array = original.astype(np.float64)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[0] not in (1, 3):
        raise FuseError(
            f"{role} image has shape {tuple(np.shape(image))}; expected (H, W), (C, H, W) or "
            "(1, C, H, W) with 1 or 3 channels."
        )
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 255:
        raise FuseError(f"{role} image has values in {low:g}..{high:g}; metrics need 0..255.")
    # The engine's tensors are in [0, 1]: passing one unscaled would silently give nonsense.
    if np.issubdtype(original.dtype, np.floating) and 0 < high <= 1:
        raise FuseError(
            f"{role} image is floating point with values up to {high:g}; metrics use the "
            "8-bit scale, so multiply [0, 1] images by 255."
        )
    return array


def _gray(planes: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (1, H, W): MATLAB rgb2gray (rounded, as for 8-bit input) when C == 3."""
    return planes if planes.shape[0] == 1 else rgb_to_gray(planes)[None]


def _select(names: Sequence[str] | None, has_reference: bool, size: int) -> list[str]:
    """Validate requested names, or choose every metric that applies (reference, image size)."""
    if names is None:
        chosen = list(DEFAULT_METRICS) + (list(REFERENCE_METRICS) if has_reference else [])
        return [name for name in chosen if METRICS[name].min_size <= size]
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise FuseError(f"unknown metric {', '.join(unknown)}; choose from {', '.join(METRICS)}.")
    needs_reference = [name for name in names if METRICS[name].kind == "reference"]
    if needs_reference and not has_reference:
        raise FuseError(
            f"{', '.join(needs_reference)} compare with a reference image",
            remedy="pass one as reference.",
            hint="reference",
        )
    return list(dict.fromkeys(names))


def compute_metrics(
    source_a: Any,
    source_b: Any,
    fused: Any,
    *,
    reference: Any = None,
    names: Sequence[str] | None = None,
    colour: ColourMode = "channels",
) -> dict[str, float]:
    """Compute fusion quality metrics of one fused image.

    Images are numpy arrays or torch tensors on the 8-bit scale (0..255, as a saved 8-bit
    image holds; floats are accepted), shaped (H, W), (C, H, W) or (1, C, H, W) with C = 1 or
    3, all with the same H and W.

    Colour (``colour="channels"``, the benchmarks' convention): a colour fused image is
    evaluated per channel, against the same channel of colour sources or the whole of a
    greyscale source, and the channel values are averaged (SF views the channels side by side,
    as VIFB's MATLAB code does). A greyscale fused image is compared with greyscale versions
    of colour sources; a colour fused image of two greyscale sources is reduced to greyscale.
    ``colour="gray"`` converts every colour image to greyscale first. Greyscale conversion is
    MATLAB's `rgb2gray`, rounded as for 8-bit images. MEF_SSIM is always computed on
    greyscale images, as MEFB does.

    Args:
        source_a: first source (VIFB's visible image; order matters only for reporting).
        source_b: second source (VIFB's infrared image).
        fused: the fused image.
        reference: optional ground truth; enables PSNR_ref, SSIM_ref and MS_SSIM_ref.
        names: metrics to compute (keys of `METRICS`); default: every metric that applies,
            i.e. the reference metrics only with a reference, and only metrics defined for
            the image size (MS_SSIM needs a short side of 161 px, MEF_SSIM 41 px).
        colour: "channels" or "gray", see above.

    Returns:
        {metric name: value}, in the order of `names`.
    """
    (result,) = compute_metrics_many(
        source_a, source_b, [fused], reference=reference, names=names, colour=colour
    )
    return result


def compute_metrics_many(
    source_a: Any,
    source_b: Any,
    fused_images: Sequence[Any],
    *,
    reference: Any = None,
    names: Sequence[str] | None = None,
    colour: ColourMode = "channels",
) -> list[dict[str, float]]:
    """`compute_metrics` for several fused images of the same sources (e.g. several methods).

    Source-side intermediates (edge maps, local moments, contrast maps, ...) are computed once
    and shared, which makes this several times faster than separate calls; values are
    identical.

    Args:
        source_a, source_b, reference, names, colour: as in `compute_metrics`.
        fused_images: the fused images, each as accepted by `compute_metrics`.

    Returns:
        One {metric name: value} dict per fused image, in order.
    """
    if colour not in COLOUR_MODES:
        raise FuseError(f"unknown colour mode {colour!r}; choose from {', '.join(COLOUR_MODES)}.")
    a = as_planes(source_a, "source A")
    b = as_planes(source_b, "source B")
    ref = None if reference is None else as_planes(reference, "reference")
    for role, image in (("source B", b), ("reference", ref)):
        _check_size(role, image, a)
    selected = _select(names, ref is not None, min(a.shape[1:]))
    channels_of: dict[int, _Inputs] = {}
    results = []
    with shared_intermediates():
        for fused in fused_images:
            f = as_planes(fused, "fused")
            _check_size("fused", f, a)
            if colour == "gray" or f.shape[0] == 1 or (a.shape[0] == 1 and b.shape[0] == 1):
                f = _gray(f)
            if f.shape[0] not in channels_of:
                channels_of[f.shape[0]] = _Inputs(a, b, ref, f.shape[0])
            planes = list(f)
            results.append(_evaluate(channels_of[f.shape[0]], planes, selected))
            # Keep only source-side intermediates: those of this fused image are not reused.
            forget(planes)
    return results


def _check_size(role: str, image: np.ndarray | None, expected: np.ndarray) -> None:
    if image is not None and image.shape[1:] != expected.shape[1:]:
        raise FuseError(
            f"{role} image is {image.shape[2]}x{image.shape[1]} but source A is "
            f"{expected.shape[2]}x{expected.shape[1]}; images must have the same size."
        )


class _Inputs:
    """Source (and reference) planes matched to the evaluated channels of the fused image.

    The same plane objects are reused for every fused image, so intermediates cached by
    identity (`shared_intermediates`) are computed once.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, ref: np.ndarray | None, channels: int) -> None:
        def match(planes: np.ndarray) -> list[np.ndarray]:
            if channels == 1 or planes.shape[0] == 1:
                # One object for every channel, so its intermediates are computed once.
                return [_gray(planes)[0]] * channels
            return [planes[k] for k in range(channels)]

        self._a, self._b = a, b
        self.a = match(a)
        self.b = match(b)
        self.reference = None if ref is None else match(ref)

    @cached_property
    def gray_sources(self) -> np.ndarray:
        """(2, H, W) greyscale sources, for MEF-SSIM."""
        return np.concatenate([_gray(self._a), _gray(self._b)])


def _evaluate(inputs: _Inputs, fused: list[np.ndarray], selected: list[str]) -> dict[str, float]:
    """Every selected metric of one fused image, given as its evaluated planes."""
    results: dict[str, float] = {}
    gray_fused: np.ndarray | None = None
    for name in selected:
        metric = METRICS[name]
        if metric.kind == "sequence":
            if gray_fused is None:
                gray_fused = fused[0] if len(fused) == 1 else _gray(np.stack(fused))[0]
            value = metric.function(inputs.gray_sources, gray_fused)
        elif name == "SF" and len(fused) > 1:
            # MATLAB's [m, n] = size(H x W x 3) gives n = 3W: the channels side by side.
            value = metric.function(np.concatenate(fused, axis=1))
        elif metric.kind == "fused":
            value = np.mean([metric.function(f) for f in fused])
        elif metric.kind == "fusion":
            value = np.mean(
                [
                    metric.function(a, b, f)
                    for a, b, f in zip(inputs.a, inputs.b, fused, strict=True)
                ]
            )
        else:
            assert inputs.reference is not None  # guaranteed by _select
            value = np.mean(
                [metric.function(r, f) for r, f in zip(inputs.reference, fused, strict=True)]
            )
        results[name] = float(value)
    return results
