"""BT.601 colour conversion and the colour policies."""

from __future__ import annotations

import pytest
import torch

from fusecli.color import (
    ColorPolicy,
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
