"""The names of the fusion quality metrics and colour modes, without numpy.

``fuse eval --help`` lists them and must not wait for numpy and the metric code:
:mod:`fusecli.metrics` registers its metrics under these names, in this order (a test keeps
the two in step), and takes its colour modes from here.
"""

from __future__ import annotations

METRIC_NAMES: tuple[str, ...] = (
    "EN", "MI", "SSIM", "MS_SSIM", "PSNR", "Qabf", "Nabf", "FMI", "Qcb", "Qcv", "NMI", "SF",
    "AG", "SD", "CE", "EI", "RMSE", "MEF_SSIM", "PSNR_ref", "SSIM_ref", "MS_SSIM_ref",
)  # fmt: skip
COLOUR_MODES: tuple[str, ...] = ("channels", "gray")
