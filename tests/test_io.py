"""Image reading and writing: formats, bit depths, orientation, limits, and clear failures."""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from fusecli.errors import ImageReadError, ImageWriteError
from fusecli.io import output_bit_depth, read_image, same_file, write_image


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG header that declares a huge size (a decompression bomb's signature)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("suffix", [".png", ".tif", ".bmp", ".jpg"])
@pytest.mark.parametrize("channels", [1, 3])
def test_8_bit_round_trip(tmp_path, suffix, channels) -> None:
    pixels = torch.rand(1, channels, 13, 21)
    path = write_image(tmp_path / f"x{suffix}", pixels)
    image = read_image(path)
    assert image.bit_depth == 8 and image.pixels.shape == pixels.shape
    tolerance = 0.08 if suffix == ".jpg" else 0.5 / 255 + 1e-6
    assert (image.pixels - pixels).abs().max() <= tolerance


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("channels", [1, 3])
def test_16_bit_colour_and_grey_survive(tmp_path, suffix, channels) -> None:
    pixels = torch.rand(1, channels, 7, 5)
    path = write_image(tmp_path / f"x{suffix}", pixels, bit_depth=16)
    image = read_image(path)
    assert image.bit_depth == 16
    assert (image.pixels - pixels).abs().max() <= 0.5 / 65535 + 1e-7


def test_float_tiff_keeps_32_bit(tmp_path) -> None:
    pixels = torch.rand(1, 1, 6, 6)
    image = read_image(write_image(tmp_path / "f.tiff", pixels, bit_depth=32))
    assert image.bit_depth == 32 and torch.allclose(image.pixels, pixels)


def test_jpeg_and_bmp_store_8_bits_whatever_is_asked(tmp_path) -> None:
    image = read_image(write_image(tmp_path / "x.jpg", torch.rand(1, 3, 8, 8), bit_depth=16))
    assert image.bit_depth == 8


def test_grey_stored_as_rgb_is_read_as_one_channel(tmp_path) -> None:
    grey = (np.random.rand(9, 9) * 255).astype(np.uint8)
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(tmp_path / "g.png")
    image = read_image(tmp_path / "g.png")
    assert image.pixels.shape == (1, 1, 9, 9) and image.stored_channels == 3


def test_alpha_is_split_off(tmp_path) -> None:
    rgba = (np.random.rand(4, 6, 4) * 255).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.pixels.shape[1] == 3 and image.alpha.shape == (1, 1, 4, 6)
    assert torch.allclose(image.alpha[0, 0], torch.from_numpy(rgba[..., 3] / 255).float())


def test_exif_orientation_is_applied(tmp_path) -> None:
    stored = np.zeros((4, 8, 3), np.uint8)
    stored[:, :4] = 255  # left half white as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # the viewer rotates 90 degrees clockwise
    Image.fromarray(stored).save(tmp_path / "o.jpg", exif=exif, quality=100)
    image = read_image(tmp_path / "o.jpg")
    assert image.pixels.shape[-2:] == (8, 4)
    # After the rotation the stored left half is the top half.
    assert image.pixels[0, 0, :4].mean() > 0.9 and image.pixels[0, 0, 4:].mean() < 0.1


def test_output_depth_is_the_deepest_source(tmp_path) -> None:
    a = read_image(write_image(tmp_path / "a.png", torch.rand(1, 1, 4, 4)))
    b = read_image(write_image(tmp_path / "b.png", torch.rand(1, 1, 4, 4), bit_depth=16))
    assert output_bit_depth([a, b]) == 16


def test_constant_and_tiny_images_are_fine(tmp_path) -> None:
    for shape in [(1, 1), (1, 9), (5, 5)]:
        path = tmp_path / f"c{shape[0]}x{shape[1]}.png"
        Image.fromarray(np.zeros(shape, np.uint8)).save(path)
        assert read_image(path).pixels.shape[-2:] == shape


# ------------------------------------------------------------------ failures


def _bad(tmp_path, name: str, content: bytes | None):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.png", None, "no such file"),
        ("empty.png", b"", "empty"),
        ("text.png", b"hello, this is not an image", "not a readable PNG"),
        ("text.jpg", b"\xff\xd8\xff garbage", "not a readable JPEG"),
        ("text.tif", b"II*\x00garbage", "not a readable TIF"),
        ("notes.txt", b"abc", "unsupported file type"),
    ],
)
def test_unreadable_files_give_one_clear_error(tmp_path, name, content, message) -> None:
    path = _bad(tmp_path, name, content)
    with pytest.raises(ImageReadError, match=message) as info:
        read_image(path)
    assert name in str(info.value) and "\n" not in str(info.value)


def test_a_folder_is_not_an_image(tmp_path) -> None:
    (tmp_path / "d.png").mkdir()
    with pytest.raises(ImageReadError, match="is a folder"):
        read_image(tmp_path / "d.png")


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_truncated_files_are_refused(tmp_path, suffix) -> None:
    path = write_image(tmp_path / f"t{suffix}", torch.rand(1, 3, 64, 64))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ImageReadError, match=path.name):
        read_image(path)


def test_declared_size_beyond_the_limit_is_refused_before_decoding(tmp_path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_declaring(100_000, 100_000))
    with pytest.raises(ImageReadError, match="limit"):
        read_image(path)
    ok = write_image(tmp_path / "ok.png", torch.rand(1, 1, 10, 10))
    with pytest.raises(ImageReadError, match="limit"):
        read_image(ok, max_pixels=99)


def test_cmyk_and_odd_channel_counts_are_refused(tmp_path) -> None:
    Image.new("CMYK", (4, 4)).save(tmp_path / "c.jpg")
    with pytest.raises(ImageReadError, match="CMYK"):
        read_image(tmp_path / "c.jpg")
    tifffile.imwrite(
        tmp_path / "five.tif",
        np.zeros((4, 4, 5), np.uint8),
        photometric="minisblack",
        planarconfig="contig",
    )
    with pytest.raises(ImageReadError, match="5 channels"):
        read_image(tmp_path / "five.tif")


def test_float_tiff_with_nan_is_refused(tmp_path) -> None:
    values = np.random.rand(4, 4).astype(np.float32)
    values[1, 2] = np.nan
    values[0, 0] = np.inf
    tifffile.imwrite(tmp_path / "n.tif", values)
    with pytest.raises(ImageReadError, match="2 pixel value"):
        read_image(tmp_path / "n.tif")


@pytest.mark.parametrize("where", ["missing-folder", "existing"])
def test_writes_refuse_bad_destinations(tmp_path, where) -> None:
    pixels = torch.rand(1, 1, 4, 4)
    if where == "missing-folder":
        with pytest.raises(ImageWriteError, match="does not exist"):
            write_image(tmp_path / "nope" / "x.png", pixels)
    else:
        path = write_image(tmp_path / "x.png", pixels)
        before = path.read_bytes()
        with pytest.raises(ImageWriteError, match="--overwrite"):
            write_image(path, torch.rand(1, 1, 4, 4))
        assert path.read_bytes() == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_folder_is_refused(tmp_path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    with pytest.raises(ImageWriteError, match="not writable"):
        write_image(folder / "x.png", torch.rand(1, 1, 4, 4))


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch) -> None:
    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", explode)
    with pytest.raises(ImageWriteError, match="disk full"):
        write_image(tmp_path / "x.png", torch.rand(1, 1, 4, 4))
    assert list(tmp_path.iterdir()) == []


def test_same_file_sees_through_relative_paths(tmp_path, monkeypatch) -> None:
    path = write_image(tmp_path / "x.png", torch.rand(1, 1, 2, 2))
    monkeypatch.chdir(tmp_path)
    assert same_file("x.png", path) and not same_file("y.png", path)
