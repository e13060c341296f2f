"""Tiled inference covers the image exactly and agrees with whole-image inference."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch

from fusecli.engine import PSLPT, ModelConfig, auto_tile_size, fuse_tiled, tiling
from fusecli.engine.tiling import fuse_global_view, tile_starts, with_coarse_structure


@pytest.mark.parametrize(
    ("length", "tile", "overlap"), [(100, 64, 16), (1000, 256, 64), (64, 64, 8), (65, 64, 8)]
)
def test_tiles_cover_everything_with_at_least_the_overlap(length, tile, overlap) -> None:
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile >= length
    for before, after in pairwise(starts):
        assert before + tile - after >= overlap


def test_one_tile_equals_whole_image() -> None:
    net = PSLPT().eval()
    a, b = torch.rand(2, 1, 1, 40, 50)
    assert torch.equal(fuse_tiled(net, [a, b], tile_size=64), net.fuse(a, b))


def test_tiles_blend_smoothly_towards_the_whole_image() -> None:
    net = PSLPT().eval()
    a, b = torch.rand(2, 1, 1, 96, 130)
    whole = net.fuse(a, b, clamp=False)
    seen = []
    tiled = fuse_tiled(
        net,
        [a, b],
        tile_size=64,
        overlap=24,
        clamp=False,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert tiled.shape == whole.shape and torch.isfinite(tiled).all()
    assert seen[-1][0] == seen[-1][1] > 1
    # An untrained network sees far; the check is that blending stays close, not exact.
    assert (tiled - whole).abs().mean() < 0.1 * (whole.max() - whole.min())


def test_auto_tile_size_follows_the_budget() -> None:
    small = auto_tile_size(torch.device("cpu"), budget_bytes=256 * 1024**2)
    large = auto_tile_size(torch.device("cpu"), budget_bytes=2 * 1024**3)
    assert small % 16 == 0 and large % 16 == 0 and small < large


def test_pyramid_bytes_are_what_the_encoder_returns() -> None:
    net = PSLPT(ModelConfig(channels=12, levels=3)).eval()
    with torch.inference_mode():
        bands = net.encoder1(torch.rand(1, 1, 64, 64))
    stored = sum(band.numel() * band.element_size() for band in bands)
    assert net.pyramid_bytes_per_pixel == pytest.approx(stored / 64**2)


def test_the_automatic_tile_allows_for_a_long_stacks_tree(monkeypatch) -> None:
    # 30 frames folded as a tree hold 5 pyramids where a pair holds 2: the tile must shrink by
    # what the three extra pyramids take; a sequential fold and a pair keep the pair's tile.
    net = PSLPT(ModelConfig(channels=12, levels=3)).eval()
    asked = []
    real = tiling.auto_tile_size

    def spy(device, multiple, **kwargs):
        asked.append(kwargs.get("extra_bytes_per_pixel", 0.0))
        return real(device, multiple, **kwargs)

    monkeypatch.setattr(tiling, "auto_tile_size", spy)
    frames = [torch.rand(1, 1, 16, 16) for _ in range(30)]
    with torch.inference_mode():
        fuse_tiled(net, frames, order="tree")
        fuse_tiled(net, frames, order="sequential")
        fuse_tiled(net, frames[:2])
    assert asked == [pytest.approx(3 * net.pyramid_bytes_per_pixel), 0.0, 0.0]
    cpu, budget = torch.device("cpu"), 2 * 1024**3
    assert real(cpu, 16, budget, extra_bytes_per_pixel=765) < real(cpu, 16, budget)


def test_coarse_structure_comes_from_the_view_and_detail_stays() -> None:
    fused = torch.rand(1, 1, 60, 90, generator=torch.Generator().manual_seed(0))
    own_view = torch.nn.functional.interpolate(fused, size=(20, 30), mode="area")
    assert torch.allclose(with_coarse_structure(fused, own_view), fused, atol=1e-6)
    # A view 0.1 brighter everywhere lifts the whole image by 0.1, and nothing else.
    assert torch.allclose(with_coarse_structure(fused, own_view + 0.1), fused + 0.1, atol=1e-6)


SMALL = ModelConfig(channels=8, num_heads=2, depth=1, window_size=4, levels=3)


def test_a_global_view_sets_the_coarse_structure_of_large_images_only() -> None:
    net = PSLPT(SMALL).eval()
    a, b = torch.rand(2, 1, 1, 60, 90, generator=torch.Generator().manual_seed(1))
    plain = fuse_tiled(net, [a, b], clamp=False)
    # Images within the view are fused as they are.
    assert torch.equal(fuse_tiled(net, [a, b], clamp=False, global_view=90), plain)
    with torch.inference_mode():
        viewed = fuse_tiled(net, [a, b], clamp=False, global_view=45)
        view = fuse_global_view(net, [a, b], 1, 45)
        scaled = [torch.nn.functional.interpolate(x, size=(30, 45), mode="area") for x in (a, b)]
        assert torch.equal(view, net.fuse_many(scaled, clamp=False))
    assert view.shape == (1, 1, 30, 45)
    assert torch.allclose(viewed, with_coarse_structure(plain, view), atol=1e-6)
    assert not torch.allclose(viewed, plain, atol=1e-3)
