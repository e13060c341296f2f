"""BT.601 colour conversion and the colour policies."""

from __future__ import annotations

import pytest
import torch

from fusecli.color import (
    ChromaAccumulator,
    ColorPolicy,
    apply_chroma,
    luminance,
    restore_color,
    rgb_to_ycbcr,
    saturation_weighted_chroma,
    ycbcr_to_rgb,
)


def test_round_trip_is_exact_to_float_precision() -> None:
    rgb = torch.rand(2, 3, 17, 9)
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-5)


@pytest.mark.parametrize(
    ("rgb", "ycbcr"),
    [
        ((1.0, 0.0, 0.0), (0.299, 0.5 - 0.168736, 1.0)),
        ((0.0, 0.0, 1.0), (0.114, 1.0, 0.5 - 0.081312)),
        ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        ((1.0, 1.0, 1.0), (1.0, 0.5, 0.5)),
    ],
)
def test_known_values_follow_bt601_full_range(rgb, ycbcr) -> None:
    pixel = torch.tensor(rgb).view(1, 3, 1, 1)
    assert torch.allclose(rgb_to_ycbcr(pixel).flatten(), torch.tensor(ycbcr), atol=1e-5)


def test_luminance_of_grey_is_identity_and_of_rgb_is_y() -> None:
    grey = torch.rand(1, 1, 4, 4)
    assert luminance(grey) is grey
    rgb = torch.rand(1, 3, 4, 4)
    assert torch.allclose(luminance(rgb), rgb_to_ycbcr(rgb)[:, :1], atol=1e-6)


def test_a_grey_source_does_not_wash_out_a_colourful_one() -> None:
    colourful = torch.tensor([0.9, 0.2, 0.1]).view(1, 3, 1, 1).expand(1, 3, 8, 8)
    grey = torch.full((1, 3, 8, 8), 0.4)
    fused_y = luminance(colourful)
    result = restore_color(fused_y, [grey, colourful], ColorPolicy("chroma_weighted"))
    assert torch.allclose(result, colourful, atol=1e-5)


def test_weighted_chroma_of_neutral_sources_has_no_nan() -> None:
    neutral = torch.full((1, 2, 3, 3), 0.5)
    assert torch.equal(saturation_weighted_chroma([neutral, neutral]), neutral)


def test_chroma_from_takes_the_named_source() -> None:
    ir = torch.rand(1, 1, 5, 5)
    visible = torch.rand(1, 3, 5, 5)
    result = restore_color(luminance(visible), [ir, visible], ColorPolicy("chroma_from", source=1))
    assert torch.allclose(result, visible, atol=1e-5)
    assert ColorPolicy("chroma_from", 1).describe(["infrared", "visible"]) == "chroma from visible"


def test_grey_sources_give_a_grey_result() -> None:
    fused_y = torch.rand(1, 1, 5, 5)
    greys = [torch.rand(1, 1, 5, 5), torch.rand(1, 1, 5, 5)]
    assert restore_color(fused_y, greys, ColorPolicy("chroma_weighted")) is fused_y
    assert restore_color(fused_y, greys, ColorPolicy("chroma_from", 1)) is fused_y


def test_shape_errors_name_the_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(1, 2, 4, 4\)"):
        rgb_to_ycbcr(torch.rand(1, 2, 4, 4))


def test_ycbcr_of_every_rgb_corner_stays_in_unit_range() -> None:
    corners = torch.tensor(
        [[r, g, b] for r in (0.0, 1.0) for g in (0.0, 1.0) for b in (0.0, 1.0)]
    ).T.reshape(1, 3, 8, 1)
    ycbcr = rgb_to_ycbcr(corners)
    assert float(ycbcr.min()) >= -1e-6 and float(ycbcr.max()) <= 1 + 1e-6


def test_ycbcr_to_rgb_clamps_out_of_gamut_values() -> None:
    out_of_gamut = torch.tensor([1.0, 0.0, 1.0]).view(1, 3, 1, 1)  # bright Y, extreme chroma
    rgb = ycbcr_to_rgb(out_of_gamut)
    assert float(rgb.min()) >= 0.0 and float(rgb.max()) <= 1.0


def test_the_more_saturated_source_dominates_each_pixel() -> None:
    vivid = rgb_to_ycbcr(torch.tensor([0.1, 0.2, 0.9]).view(1, 3, 1, 1))[:, 1:]
    faint = rgb_to_ycbcr(torch.tensor([0.5, 0.5, 0.55]).view(1, 3, 1, 1))[:, 1:]
    mixed = saturation_weighted_chroma([vivid, faint])
    # Nearer the vivid chroma than the plain mean would be.
    assert (mixed - vivid).abs().sum() < ((vivid + faint) / 2 - vivid).abs().sum()
    weights = (torch.stack([vivid, faint]) - 0.5).abs().sum(dim=2, keepdim=True)
    expected = (torch.stack([vivid, faint]) * weights).sum(0) / weights.sum(0)
    assert torch.allclose(mixed, expected)


def test_grey_one_channel_sources_are_ignored_by_weighted_chroma() -> None:
    colourful = torch.tensor([0.2, 0.7, 0.3]).view(1, 3, 1, 1).expand(2, 3, 4, 6)
    result = restore_color(
        luminance(colourful), [torch.rand(2, 1, 4, 6), colourful], ColorPolicy("chroma_weighted")
    )
    assert result.shape == (2, 3, 4, 6)
    assert torch.allclose(result, colourful, atol=1e-5)


@pytest.mark.parametrize("value", [0.0, 1.0, 0.5])
@pytest.mark.parametrize("mode", ["chroma_weighted", "chroma_from"])
def test_constant_inputs_give_no_nan(value, mode) -> None:
    sources = [torch.full((1, 3, 5, 5), value), torch.full((1, 3, 5, 5), value)]
    result = restore_color(torch.full((1, 1, 5, 5), value), sources, ColorPolicy(mode))
    assert result.shape == (1, 3, 5, 5) and not torch.isnan(result).any()
    assert torch.allclose(result, torch.full_like(result, value), atol=1e-6)


def test_policy_descriptions_and_validation() -> None:
    assert ColorPolicy("chroma_weighted").describe(["a", "b"]).startswith("chroma weighted")
    assert ColorPolicy("chroma_from", 2).describe(["a", "b"]) == "chroma from source 3"
    with pytest.raises(ValueError, match="unknown colour policy"):
        ColorPolicy("average")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="source 1"):
        restore_color(
            torch.rand(1, 1, 2, 2), [torch.rand(1, 3, 2, 2)], ColorPolicy("chroma_from", 1)
        )


@pytest.mark.parametrize("mode", ["chroma_weighted", "chroma_from"])
def test_chroma_taken_one_source_at_a_time_equals_restore_color(mode) -> None:
    generator = torch.Generator().manual_seed(7)
    sources = [torch.rand(1, 3 if i % 3 else 1, 6, 5, generator=generator) for i in range(10)]
    sources[1][..., :2, :] = 0.4  # grey in every colour source there: the plain-mean branch
    for source in sources[2:]:
        if source.shape[1] == 3:
            source[..., :2, :] = torch.rand(1, generator=generator)
    policy = ColorPolicy(mode, source=4)
    fused_y = torch.rand(1, 1, 6, 5, generator=generator)
    accumulator = ChromaAccumulator(policy, len(sources))
    for index, source in enumerate(sources):
        accumulator.add(index, source)
    streamed = apply_chroma(fused_y, accumulator.chroma())
    assert torch.allclose(streamed, restore_color(fused_y, sources, policy), rtol=0, atol=1e-6)


def test_accumulated_chroma_of_grey_sources_is_none() -> None:
    grey, colour = torch.rand(1, 1, 4, 4), torch.rand(1, 3, 4, 4)
    cases = [("chroma_weighted", 0, [grey, grey]), ("chroma_from", 1, [colour, grey])]
    for mode, chosen, sources in cases:
        accumulator = ChromaAccumulator(ColorPolicy(mode, source=chosen), 2)
        for index, source in enumerate(sources):
            accumulator.add(index, source)
        assert accumulator.chroma() is None
        assert apply_chroma(grey, accumulator.chroma()) is grey
    with pytest.raises(ValueError, match="takes colour from source 2, got 2"):
        ChromaAccumulator(ColorPolicy("chroma_from", source=2), 2)
