"""The shared torch filters: kernels, borders, and equality with the filters they replace."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fusecli import classical, filters
from fusecli.train import losses


def test_gaussian_taps_are_normalised_and_default_to_three_sigma() -> None:
    taps = filters.gaussian_taps(1.5)
    assert taps.shape == (11,) and torch.isclose(taps.sum(), torch.tensor(1.0))
    assert torch.equal(taps, taps.flip(0)) and int(taps.argmax()) == 5
    assert filters.gaussian_taps(0.2).shape == (3,)  # at least one tap on each side
    assert filters.gaussian_taps(2.0, 2).shape == (5,)


@pytest.mark.parametrize("border", ["replicate", "symmetric", "wrap"])
@pytest.mark.parametrize("size", [(6, 9), (2, 3), (1, 1)])
def test_borders_extend_the_image_as_numpy_pad_does(border, size) -> None:
    image = torch.rand(1, 2, *size, dtype=torch.float64)
    taps = torch.zeros(9, dtype=torch.float64)
    taps[0] = 1.0  # picks the sample 4 to the left (above): the padding itself shows
    mode = {"replicate": "edge", "symmetric": "symmetric", "wrap": "wrap"}[border]
    padded = np.pad(image.numpy(), [(0, 0), (0, 0), (4, 4), (4, 4)], mode=mode)
    along_w = filters.blur_along(image, taps, dim=-1, border=border)
    along_h = filters.blur_along(image, taps, dim=-2, border=border)
    assert np.array_equal(along_w.numpy(), padded[:, :, 4:-4, : size[1]])
    assert np.array_equal(along_h.numpy(), padded[:, :, : size[0], 4:-4])


def test_gaussian_blur_keeps_constants_per_channel() -> None:
    image = torch.full((2, 3, 5, 40), 0.25)
    image[:, 1] = 0.75
    for border in ("replicate", "symmetric", "wrap"):
        blurred = filters.gaussian_blur(image, 3.0, border=border)
        assert torch.allclose(blurred, image, atol=1e-6)


def test_the_loss_filters_can_come_from_here_unchanged() -> None:
    # The training losses keep their own copies until they switch to this module.
    assert torch.equal(filters.gaussian_window(11, 1.5), losses.gaussian_window(11, 1.5))
    image = torch.rand(3, 1, 17, 12)
    assert torch.equal(filters.sobel_magnitude(image), losses.sobel_magnitude(image))


def test_sobel_gradients_point_uphill_and_vanish_on_constants() -> None:
    ramp = torch.arange(6.0).view(1, 1, 1, 6).expand(2, 3, 5, 6)
    gx, gy = filters.sobel_gradients(ramp)
    assert torch.equal(gx[..., 1:-1], torch.full((2, 3, 5, 4), 8.0)) and not gy.any()
    assert not filters.sobel_magnitude(torch.full((1, 2, 4, 4), 0.3)).any()


def test_the_classical_baselines_blur_is_a_separable_blur() -> None:
    image = torch.rand(1, 3, 9, 14)
    binomial = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
    # The same filter, summed in another order (shifted slices rather than a convolution).
    torch.testing.assert_close(
        classical._blur(image), filters.separable_blur(image, binomial), rtol=0, atol=1e-6
    )
