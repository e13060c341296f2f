"""Tests of the classical fusion methods (fusecli.classical)."""

import pytest
import torch
import torch.nn.functional as F

from fusecli.classical import (
    average_fusion,
    box_mean,
    guided_filter,
    guided_filter_fusion,
    guided_filter_fusion_many,
    guided_filter_weights,
    laplacian_fusion,
    laplacian_fusion_many,
    laplacian_pyramid,
    reconstruct_pyramid,
    with_source_detail,
)


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


def test_source_detail_over_the_sources_mean_is_laplacian_fusion() -> None:
    # The detail rule is the pyramid method's (ties to the first source), and the pyramid is
    # linear, so the mean's base band is the mean of the sources' base bands.
    sources = [torch.rand(1, 1, 37, 30, generator=_generator(seed)) for seed in (3, 4, 5)]
    mean = torch.stack(sources).mean(dim=0)
    composed = with_source_detail(mean, iter(sources), 4)
    assert torch.allclose(composed.clamp(0, 1), laplacian_fusion_many(sources, levels=4), atol=1e-6)


def test_source_detail_keeps_the_fusions_base_and_the_sources_finest_bands() -> None:
    sources = [torch.rand(2, 3, 40, 24, generator=_generator(seed)) for seed in (6, 7)]
    fused = torch.rand(2, 3, 40, 24, generator=_generator(8))
    first, second = (laplacian_pyramid(s, 2) for s in sources)
    strongest = [torch.where(a.abs() >= b.abs(), a, b) for a, b in zip(first[:2], second[:2])]
    expected = reconstruct_pyramid([*strongest, laplacian_pyramid(fused, 2)[-1]])
    assert torch.allclose(with_source_detail(fused, sources, 2), expected, atol=1e-6)
    # A fusion whose sources are all itself is unchanged.
    assert torch.allclose(with_source_detail(fused, [fused, fused], 3), fused, atol=1e-6)


def test_source_detail_refuses_mismatched_or_missing_sources() -> None:
    fused = torch.rand(1, 1, 16, 16, generator=_generator(9))
    with pytest.raises(ValueError, match="source 1 has shape"):
        with_source_detail(fused, [fused, torch.rand(1, 1, 16, 15)], 2)
    with pytest.raises(ValueError, match="at least one source"):
        with_source_detail(fused, [], 2)
    with pytest.raises(ValueError, match="at least 1"):
        with_source_detail(fused, [fused], 0)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("radius", [0, 2, 7, 45])
def test_box_mean_averages_the_window_inside_the_image(radius: int) -> None:
    image = torch.rand(1, 1, 23, 31, generator=_generator(3), dtype=torch.float64)
    window = torch.ones(1, 1, 2 * radius + 1, 2 * radius + 1, dtype=torch.float64)
    pad = (radius, radius, radius, radius)
    sums = F.conv2d(F.pad(image, pad), window)
    counts = F.conv2d(F.pad(torch.ones_like(image), pad), window)
    assert torch.allclose(box_mean(image, radius), sums / counts, atol=1e-12)


def test_guided_filter_limits() -> None:
    guide = torch.rand(1, 1, 40, 40, generator=_generator(4), dtype=torch.float64)
    # Filtering the guide itself with a tiny eps keeps it (a = 1, b = 0 in every window).
    assert torch.allclose(guided_filter(guide, guide, 3, 1e-12), guide, atol=1e-6)
    # A huge eps turns it into a box mean of the input (a -> 0).
    src = torch.rand(1, 1, 40, 40, generator=_generator(5), dtype=torch.float64)
    smooth = box_mean(box_mean(src, 3), 3)
    assert torch.allclose(guided_filter(guide, src, 3, 1e9), smooth, atol=1e-8)


def test_guided_fusion_of_identical_images_is_the_image() -> None:
    image = torch.rand(1, 1, 48, 40, generator=_generator(6))
    assert torch.allclose(guided_filter_fusion(image, image), image, atol=1e-6)


def test_guided_fusion_weights_sum_to_one() -> None:
    sources = [torch.rand(1, 1, 50, 60, generator=_generator(7 + k)) for k in range(3)]
    base, detail = guided_filter_weights(sources)
    for maps in (base, detail):
        stacked = torch.stack(maps)
        assert stacked.min() >= 0.0
        assert torch.allclose(stacked.sum(dim=0), torch.ones_like(stacked[0]), atol=1e-12)


def _blur(image: torch.Tensor, passes: int = 6) -> torch.Tensor:
    kernel = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
    for _ in range(passes):
        image = F.conv2d(F.pad(image, (2, 2, 0, 0), mode="replicate"), kernel.view(1, 1, 1, 5))
        image = F.conv2d(F.pad(image, (0, 0, 2, 2), mode="replicate"), kernel.view(1, 1, 5, 1))
    return image


def test_guided_fusion_takes_each_half_from_the_source_in_focus() -> None:
    # Multi-focus: the left half is sharp in a, the right half in b.
    sharp = torch.rand(1, 1, 64, 128, generator=_generator(9))
    blurred = _blur(sharp)
    a = torch.cat([sharp[..., :64], blurred[..., 64:]], dim=-1)
    b = torch.cat([blurred[..., :64], sharp[..., 64:]], dim=-1)
    fused = guided_filter_fusion(a, b)
    interior = (..., slice(8, -8), slice(None))  # the seam column and its neighbours aside
    error = (fused - sharp).abs()
    left, right = error[..., 8:-8, :48], error[..., 8:-8, 80:]
    average_error = (average_fusion(a, b) - sharp).abs()
    assert left.mean() < 0.005 and right.mean() < 0.005
    assert error[interior].mean() < 0.25 * average_error[interior].mean()


def test_guided_fusion_rejects_colour_or_mismatched_sources() -> None:
    with pytest.raises(ValueError):
        guided_filter_fusion(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError):
        guided_filter_fusion(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))
    with pytest.raises(ValueError):
        guided_filter_fusion_many([torch.rand(1, 1, 8, 8)])
