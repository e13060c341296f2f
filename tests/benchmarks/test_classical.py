"""Tests of the classical baselines used by the results table."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from classical import average_fusion, laplacian_fusion, laplacian_pyramid, reconstruct_pyramid


def test_pyramid_reconstructs_exactly() -> None:
    image = torch.rand(1, 1, 37, 50, generator=torch.Generator().manual_seed(0))
    bands = laplacian_pyramid(image, 4)
    assert len(bands) == 5
    assert torch.allclose(reconstruct_pyramid(bands), image, atol=1e-6)


def test_average_of_identical_images_is_the_image() -> None:
    image = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    assert torch.equal(average_fusion(image, image), image)


def test_laplacian_fusion_of_identical_images_is_the_image() -> None:
    image = torch.rand(1, 1, 33, 29, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(laplacian_fusion(image, image), image, atol=1e-6)


def test_laplacian_fusion_keeps_the_sharper_detail() -> None:
    sharp = torch.zeros(1, 1, 32, 32)
    sharp[..., ::2, :] = 1.0
    flat = torch.full((1, 1, 32, 32), 0.5)
    fused = laplacian_fusion(sharp, flat)
    # Stripes survive (average would halve their contrast).
    assert (fused[..., 8:24:2, 8:24] - fused[..., 9:24:2, 8:24]).mean() > 0.75
