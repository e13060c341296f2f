"""Simulated MFF / MEF supervision: reproducible, complementary, physically ordered."""

from __future__ import annotations

import numpy as np
import pytest

from fusecli.train.recipe import MEFSimulation, MFFSimulation
from fusecli.train.simulate import (
    focus_mask,
    gaussian_blur,
    illumination_field,
    simulate_mef,
    simulate_mff,
)


def _image(seed: int = 0, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return gaussian_blur(rng.random((size, size), dtype=np.float32), 1.0)


def test_gaussian_blur_keeps_constants_and_mean():
    flat = np.full((20, 30), 0.3, dtype=np.float32)
    assert np.allclose(gaussian_blur(flat, 2.0), 0.3, atol=1e-6)
    x = np.random.default_rng(0).random((40, 40), dtype=np.float32)
    y = gaussian_blur(x, 2.0)
    assert y.std() < x.std() / 2 and abs(y.mean() - x.mean()) < 0.01
    assert np.array_equal(gaussian_blur(x, 0), x)


@pytest.mark.parametrize("shape", ["ellipses", "blobs", "half_plane"])
def test_focus_mask_covers_the_requested_fraction(shape):
    config = MFFSimulation(
        foreground_fraction=(0.4, 0.4), feather_sigma=(0.0, 0.0), shapes=(shape,)
    )
    mask = focus_mask(64, 64, np.random.default_rng(3), config)
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert mask.mean() == pytest.approx(0.4, abs=0.03)


def test_mff_sources_are_complementary_and_reproducible():
    gt = _image()
    config = MFFSimulation(feather_sigma=(0.0, 0.0))
    a, b = simulate_mff(gt, np.random.default_rng(7), config)
    a2, b2 = simulate_mff(gt, np.random.default_rng(7), config)
    assert np.array_equal(a, a2) and np.array_equal(b, b2)
    sharp_in_a = np.isclose(a, gt, atol=1e-6)
    sharp_in_b = np.isclose(b, gt, atol=1e-6)
    # Each pixel is sharp in exactly one source (blurred pixels differ from the original).
    assert (sharp_in_a | sharp_in_b).mean() > 0.99
    assert 0.2 < sharp_in_a.mean() < 0.8
    # Sum of the sources is image + blurred image everywhere.
    blurred = a + b - gt
    assert blurred.std() < gt.std()


def test_mef_under_is_darker_and_over_brighter_and_8_bit():
    gt = np.clip(_image(1) * 0.6 + 0.2, 0, 1)
    under, over = simulate_mef(gt, np.random.default_rng(0), MEFSimulation())
    assert under.mean() < gt.mean() < over.mean()
    for x in (under, over):
        assert x.min() >= 0 and x.max() <= 1
        assert np.allclose(x * 255, np.round(x * 255), atol=1e-4)
    under2, _ = simulate_mef(gt, np.random.default_rng(0), MEFSimulation())
    assert np.array_equal(under, under2)


def test_mef_without_noise_follows_the_response_curve():
    gt = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    config = MEFSimulation(
        under_stops=(1.0, 1.0), over_stops=(1.0, 1.0), gamma=(2.0, 2.0),
        shot_noise=(0.0, 0.0), read_noise=(0.0, 0.0),
    )  # fmt: skip
    under, over = simulate_mef(gt, np.random.default_rng(0), config)
    # One stop under with gamma 2: y = sqrt(x^2 / 2) = x / sqrt(2); over clips at x >= 1/sqrt(2).
    assert np.allclose(under, np.round(gt / np.sqrt(2) * 255) / 255, atol=1e-6)
    assert np.all(over[gt >= 1 / np.sqrt(2) + 1e-3] == 1.0)


def test_illumination_field_is_smooth_and_spans_one_unit():
    field = illumination_field(64, 48, np.random.default_rng(3))
    assert field.shape == (64, 48) and field.dtype == np.float32
    assert np.isclose(field.min(), -0.5) and np.isclose(field.max(), 0.5)
    # Smooth: neighbouring pixels differ by a small fraction of the span.
    assert np.abs(np.diff(field, axis=0)).max() < 0.1
    assert np.abs(np.diff(field, axis=1)).max() < 0.1


def test_uneven_illumination_lights_the_pair_but_not_the_ground_truth():
    gt = np.full((32, 32), 0.5, dtype=np.float32)
    quiet = dict(
        under_stops=(2.0, 2.0), over_stops=(2.0, 2.0), gamma=(2.0, 2.0),
        shot_noise=(0.0, 0.0), read_noise=(0.0, 0.0),
    )  # fmt: skip
    flat_under, _ = simulate_mef(gt, np.random.default_rng(0), MEFSimulation(**quiet))
    lit_under, _ = simulate_mef(
        gt, np.random.default_rng(0), MEFSimulation(illumination_stops=(3.0, 3.0), **quiet)
    )
    assert flat_under.std() == 0
    # 3 stops of lighting with gamma 2: the rendered under-exposure spans 2 ** 1.5 in value.
    ratio = lit_under.max() / lit_under.min()
    assert 2**1.5 * 0.9 < ratio < 2**1.5 * 1.1


def _numpy_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """The simulation's blur as it was written in numpy before it moved to fusecli.filters."""
    radius = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    taps = np.exp(-(x**2) / (2 * sigma * sigma))
    taps /= taps.sum()
    out = image
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        mode = "symmetric" if radius <= out.shape[axis] else "wrap"
        padded = np.pad(out, pad, mode=mode)
        n = out.shape[axis]
        acc = np.zeros_like(out)
        for k, w in enumerate(taps):
            acc += w * (padded[k : k + n] if axis == 0 else padded[:, k : k + n])
        out = acc
    return out


@pytest.mark.parametrize(
    ("shape", "sigma"), [((64, 64), 1.0), ((64, 48), 21.3), ((7, 5), 4.0), ((1, 9), 1.0)]
)
def test_gaussian_blur_keeps_the_training_data_of_the_numpy_version(shape, sigma):
    # Same data within float rounding, also where the image is narrower than the radius.
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    blurred = gaussian_blur(x, sigma)
    assert blurred.dtype == np.float32 and blurred.shape == shape
    assert np.abs(blurred - _numpy_blur(x, sigma)).max() < 1e-6
