"""Fuzzing the readers: random bytes and valid images raise nothing but our own error."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import tifffile
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fusecli.errors import ImageReadError
from fusecli.io import SUPPORTED_EXTENSIONS, read_image, write_image

_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _read_or_refuse(path: Path):
    """read_image, or None when it refused with our error; anything else fails the test."""
    try:
        image = read_image(path)
    except ImageReadError as error:
        assert "\n" not in str(error) and path.name in str(error)
        return None
    assert image.pixels.dim() == 4 and image.pixels.shape[1] in (1, 3)
    assert image.pixels.dtype == torch.float32
    assert float(image.pixels.min()) >= 0.0 and float(image.pixels.max()) <= 1.0
    return image


def _expected(array: np.ndarray) -> np.ndarray:
    """What read_image gives for a lossless file: (C, H, W), alpha off, grey-as-RGB reduced."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.dtype == np.uint8:
        values = array.astype(np.float32) / 255
    elif array.dtype == np.uint16:
        values = array.astype(np.float32) / 65535
    else:
        values = array.astype(np.float32)
    if values.shape[2] in (2, 4):
        values = values[..., :-1]
    if values.shape[2] == 3 and (array[..., 1:3] == array[..., :1]).all():
        values = values[..., :1]
    return values.transpose(2, 0, 1)


@_SETTINGS
@given(data=st.binary(max_size=2048), suffix=st.sampled_from(sorted(SUPPORTED_EXTENSIONS)))
def test_random_bytes_raise_only_our_error(data, suffix) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"f{suffix}"
        path.write_bytes(data)
        _read_or_refuse(path)


_SHAPES = {
    "height": st.integers(1, 24),
    "width": st.integers(1, 24),
    "channels": st.sampled_from([1, 2, 3, 4]),
    "dtype": st.sampled_from(["uint8", "uint16", "float32"]),
    "seed": st.integers(0, 2**16),
}


def _random_array(height, width, channels, dtype, seed) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    if dtype == "float32":
        return rng.random(shape, dtype=np.float32)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)


def _write_foreign(path: Path, array: np.ndarray, writer: str) -> bool:
    """Write with tifffile or Pillow; False when that library cannot store the combination."""
    channels = 1 if array.ndim == 2 else array.shape[2]
    try:
        if writer == "tif":
            photometric = "rgb" if channels >= 3 else "minisblack"
            extrasamples = ["unassalpha"] if channels in (2, 4) else None
            tifffile.imwrite(path, array, photometric=photometric, extrasamples=extrasamples)
        else:
            Image.fromarray(array).save(path)
    except (TypeError, ValueError, OSError, KeyError):
        return False
    return True


@_SETTINGS
@given(writer=st.sampled_from(["png", "tif", "jpg", "bmp"]), **_SHAPES)
def test_valid_images_from_other_writers_round_trip(
    height, width, channels, dtype, writer, seed
) -> None:
    array = _random_array(height, width, channels, dtype, seed)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"f.{writer}"
        if not _write_foreign(path, array, writer):
            return
        image = _read_or_refuse(path)
        assert image is not None, f"{writer} {array.dtype} {array.shape} was refused"
        assert image.pixels.shape[-2:] == (height, width)
        # Pillow stores what it can losslessly in PNG and BMP only for 8-bit and grey 16-bit;
        # the TIFF writer is lossless for every combination here.
        stored = None
        if writer in ("png", "bmp"):
            with Image.open(path) as written:
                stored = written.mode
        if writer == "tif" or (writer == "png" and stored in ("L", "LA", "RGB", "RGBA")):
            expected = _expected(array)
            assert tuple(image.pixels.shape[1:]) == expected.shape
            assert np.abs(image.pixels[0].numpy() - expected).max() <= 1e-6


@_SETTINGS
@given(
    writer=st.sampled_from(["png", "tif", "jpg"]),
    cut=st.floats(0.0, 0.99),
    flips=st.lists(st.tuples(st.floats(0.0, 0.999), st.integers(1, 255)), max_size=4),
    **_SHAPES,
)
def test_damaged_valid_images_raise_only_our_error(
    height, width, channels, dtype, writer, seed, cut, flips
) -> None:
    array = _random_array(height, width, channels, dtype, seed)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"f.{writer}"
        if not _write_foreign(path, array, writer):
            return
        data = bytearray(path.read_bytes())
        for where, mask in flips:
            data[int(where * len(data))] ^= mask
        path.write_bytes(bytes(data[: max(1, int(len(data) * (1 - cut)))]))
        _read_or_refuse(path)


@_SETTINGS
@given(
    suffix=st.sampled_from(sorted(SUPPORTED_EXTENSIONS)),
    bit_depth=st.sampled_from([8, 16, 32]),
    alpha=st.booleans(),
    **_SHAPES,
)
def test_our_writer_round_trips(height, width, channels, dtype, seed, suffix, bit_depth, alpha):
    colour = 3 if channels >= 3 else 1
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.rand(1, colour, height, width, generator=generator)
    mask = torch.rand(1, 1, height, width, generator=generator) if alpha else None
    with tempfile.TemporaryDirectory() as folder:
        path = write_image(
            Path(folder) / f"f{suffix}", pixels, bit_depth=bit_depth, alpha=mask
        ).path
        image = _read_or_refuse(path)
        assert image is not None
        assert image.pixels.shape[-2:] == (height, width)
        if suffix in (".jpg", ".jpeg"):
            return  # lossy; its round trip is checked with a tolerance in test_io.py
        step = {8: 1 / 255, 16: 1 / 65535, 32: 0.0}[image.bit_depth]
        expected = pixels
        if colour == 3 and image.pixels.shape[1] == 1:
            # Only possible when quantisation made the three channels equal.
            expected = pixels[:, :1]
        assert (image.pixels - expected).abs().max() <= step / 2 + 1e-6
