"""Fuzzing the readers: random bytes and valid images raise nothing but our own error."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fusecli.errors import ImageReadError
from fusecli.io import SUPPORTED_EXTENSIONS, read_image

_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(data=st.binary(max_size=2048), suffix=st.sampled_from(sorted(SUPPORTED_EXTENSIONS)))
def test_random_bytes_raise_only_our_error(data, suffix) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"f{suffix}"
        path.write_bytes(data)
        try:
            image = read_image(path)
        except ImageReadError:
            return
        assert image.pixels.dim() == 4


@_SETTINGS
@given(
    height=st.integers(1, 24),
    width=st.integers(1, 24),
    channels=st.sampled_from([1, 2, 3, 4]),
    dtype=st.sampled_from(["uint8", "uint16", "float32"]),
    writer=st.sampled_from(["png", "tif", "jpg", "bmp"]),
    seed=st.integers(0, 2**16),
)
def test_valid_images_are_read_or_refused_cleanly(
    height, width, channels, dtype, writer, seed
) -> None:
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    if dtype == "float32":
        array = rng.random(shape, dtype=np.float32)
    else:
        array = rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"f.{writer}"
        try:
            if writer == "tif":
                photometric = "rgb" if channels >= 3 else "minisblack"
                extrasamples = ["unassalpha"] if channels in (2, 4) else None
                tifffile.imwrite(path, array, photometric=photometric, extrasamples=extrasamples)
            else:
                Image.fromarray(array).save(path)
        except (TypeError, ValueError, OSError, KeyError):
            return  # a combination the writer library itself cannot produce
        try:
            image = read_image(path)
        except ImageReadError:
            return
        assert image.pixels.shape[-2:] == (height, width)
        assert image.pixels.shape[1] in (1, 3)
        assert float(image.pixels.min()) >= 0.0 and float(image.pixels.max()) <= 1.0
