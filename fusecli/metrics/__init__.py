"""Fusion quality metrics with the definitions of the VIFB and MEFB benchmarks.

Images are float64 planes on the 8-bit scale (0..255). `compute_metrics` handles colour and
dispatch; the single-plane functions below are the individual metrics (see docs/metrics.md).
"""

from fusecli.metrics.gradient import (
    average_gradient,
    edge_intensity,
    edge_transfer_quality,
    fusion_artifacts,
    spatial_frequency,
    standard_deviation,
)
from fusecli.metrics.information import (
    cross_entropy,
    entropy,
    feature_mutual_information,
    mutual_information,
    normalized_mutual_information,
    sobel_edges,
)
from fusecli.metrics.perceptual import chen_blum_quality, chen_varshney_quality
from fusecli.metrics.structural import (
    fusion_multiscale_structural_similarity,
    fusion_peak_signal_noise_ratio,
    fusion_root_mean_square_error,
    fusion_structural_similarity,
    mef_structural_similarity,
    multiscale_structural_similarity,
    peak_signal_noise_ratio,
    structural_similarity,
)
from fusecli.metrics.suite import (
    COLOUR_MODES,
    DEFAULT_METRICS,
    METRICS,
    REFERENCE_METRICS,
    ColourMode,
    Metric,
    as_planes,
    compute_metrics,
    compute_metrics_many,
)

__all__ = [
    "COLOUR_MODES",
    "DEFAULT_METRICS",
    "METRICS",
    "REFERENCE_METRICS",
    "ColourMode",
    "Metric",
    "as_planes",
    "average_gradient",
    "chen_blum_quality",
    "chen_varshney_quality",
    "compute_metrics",
    "compute_metrics_many",
    "cross_entropy",
    "edge_intensity",
    "edge_transfer_quality",
    "entropy",
    "feature_mutual_information",
    "fusion_artifacts",
    "fusion_multiscale_structural_similarity",
    "fusion_peak_signal_noise_ratio",
    "fusion_root_mean_square_error",
    "fusion_structural_similarity",
    "mef_structural_similarity",
    "multiscale_structural_similarity",
    "mutual_information",
    "normalized_mutual_information",
    "peak_signal_noise_ratio",
    "sobel_edges",
    "spatial_frequency",
    "standard_deviation",
    "structural_similarity",
]
