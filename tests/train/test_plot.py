"""Loss-curve plotting helpers and the PNG they produce."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest

from fusecli.errors import FuseError
from fusecli.train.plot import moving_average, nice_ticks, plot_log


def test_moving_average_is_trailing_mean():
    assert np.allclose(moving_average([1, 2, 3, 4], 2), [1, 1.5, 2.5, 3.5])
    assert np.allclose(moving_average([5, 5, 5], 10), [5, 5, 5])


def test_nice_ticks_are_round_and_cover_the_range():
    assert nice_ticks(0, 100, 5) == [0, 50, 100]
    assert nice_ticks(0.3, 2.2, 5) == pytest.approx([0.5, 1.0, 1.5, 2.0])
    assert nice_ticks(3, 3) == [3]


def test_plot_draws_one_panel_per_stage_with_red_validation(tmp_path):
    rows = [{"kind": "train", "stage": 1, "step": s, "loss": 1 / s} for s in range(1, 50)]
    rows += [{"kind": "val", "stage": 1, "step": s, "val_loss": 1.2 / s} for s in (10, 20, 40)]
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    png = plot_log(log, tmp_path / "out" / "c.png")
    pixels = iio.imread(png)
    assert pixels.shape == (380, 560, 3)
    red = (pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    blue = (pixels[..., 2] > 150) & (pixels[..., 0] < 80)
    assert red.sum() > 50 and blue.sum() > 50


def test_plot_of_an_empty_log_is_an_error(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("")
    with pytest.raises(FuseError, match="no training rows"):
        plot_log(log, tmp_path / "c.png")
