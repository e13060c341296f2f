"""EXIF and ICC profiles: read beside the pixels, written back into JPEG, PNG and TIFF."""

from __future__ import annotations

import functools
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from fusecli.errors import ImageWriteError
from fusecli.io import check_encoding, read_image, write_image
from fusecli.metadata import ImageMetadata

EXIF_IFD = 0x8769
EXPOSURE_TIME, F_NUMBER, ISO = 0x829A, 0x829D, 0x8827


@functools.cache
def srgb_profile() -> bytes:
    """One sRGB profile per run (lcms stamps the creation time into it)."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def camera_exif(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "Fusecam"  # Make
    exif[0x0110] = "FC-1"  # Model
    exif[0x0112] = orientation
    exif[0x0132] = "2026:01:02 03:04:05"  # DateTime
    exif.get_ifd(EXIF_IFD).update({EXPOSURE_TIME: 0.004, F_NUMBER: 8.0, ISO: 400})
    return exif


def photo(path: Path, *, orientation: int = 1, size=(12, 20)) -> Path:
    """A colour photo with camera EXIF and an sRGB profile, as Pillow writes it.

    Pillow's TIFF writer leaves out the Exif sub-IFD, so a TIFF is made from a JPEG by fusecli.
    """
    rng = np.random.default_rng(0)
    image = Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8))
    if path.suffix == ".tif":
        jpeg = read_image(photo(path.with_suffix(".jpg"), orientation=orientation, size=size))
        return write_image(path, jpeg.pixels, metadata=jpeg.metadata).path
    fmt = {".jpg": "JPEG", ".png": "PNG"}[path.suffix]
    image.save(path, format=fmt, exif=camera_exif(orientation), icc_profile=srgb_profile())
    return path


def exif_of(path: Path) -> tuple[Image.Exif, dict[int, object]]:
    """IFD0 and the Exif sub-IFD, read while the file is open (Pillow reads them lazily)."""
    with Image.open(path) as image:
        exif = image.getexif()
        return exif, dict(exif.get_ifd(EXIF_IFD))


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif"])
def test_exif_and_icc_are_read_beside_the_pixels(tmp_path, suffix) -> None:
    loaded = read_image(photo(tmp_path / f"p{suffix}"))
    assert loaded.metadata.icc_profile == srgb_profile()
    exif = Image.Exif()
    exif.load(b"Exif\x00\x00" + loaded.metadata.exif)
    assert exif[0x010F] == "Fusecam" and exif.get(0x0112, 1) == 1
    assert exif.get_ifd(EXIF_IFD)[ISO] == 400
    assert 256 not in exif and 273 not in exif  # the source's own layout tags are not carried


@pytest.mark.parametrize("source", [".jpg", ".png", ".tif"])
@pytest.mark.parametrize("target", [".jpg", ".png", ".tif"])
@pytest.mark.parametrize("depth", [8, 16])
def test_metadata_survives_every_format_and_depth(tmp_path, source, target, depth) -> None:
    loaded = read_image(photo(tmp_path / f"in{source}", orientation=6))
    out = write_image(
        tmp_path / f"out{target}", loaded.pixels, bit_depth=depth, metadata=loaded.metadata
    ).path
    with Image.open(out) as image:
        assert image.info.get("icc_profile") == srgb_profile()
    exif, sub = exif_of(out)
    assert exif[0x010F] == "Fusecam" and exif[0x0110] == "FC-1"
    assert exif.get(0x0112, 1) == 1  # already applied on reading
    assert float(sub[EXPOSURE_TIME]) == pytest.approx(0.004) and sub[ISO] == 400
    again = read_image(out)
    assert (again.height, again.width) == (loaded.height, loaded.width)
    assert again.metadata.icc_profile == srgb_profile()


def test_pixels_are_unchanged_by_metadata(tmp_path) -> None:
    loaded = read_image(photo(tmp_path / "in.png"))
    plain = write_image(tmp_path / "plain.tif", loaded.pixels, bit_depth=16).path
    tagged = write_image(
        tmp_path / "tagged.tif", loaded.pixels, bit_depth=16, metadata=loaded.metadata
    ).path
    assert torch.equal(read_image(plain).pixels, read_image(tagged).pixels)


def test_no_metadata_means_none_written(tmp_path) -> None:
    out = write_image(tmp_path / "o.jpg", torch.rand(1, 3, 8, 8), metadata=None).path
    with Image.open(out) as image:
        assert "icc_profile" not in image.info and len(image.getexif()) == 0
    assert read_image(out).metadata == ImageMetadata()


def test_bmp_takes_none_and_still_writes(tmp_path) -> None:
    loaded = read_image(photo(tmp_path / "in.jpg"))
    out = write_image(tmp_path / "o.bmp", loaded.pixels, metadata=loaded.metadata).path
    assert read_image(out).metadata == ImageMetadata()


def test_quality_and_compression_change_the_file(tmp_path) -> None:
    pixels = torch.rand(1, 3, 64, 64)
    low = write_image(tmp_path / "low.jpg", pixels, quality=10).path
    high = write_image(tmp_path / "high.jpg", pixels, quality=100).path
    assert low.stat().st_size < high.stat().st_size
    smooth = torch.linspace(0, 1, 64).repeat(1, 3, 64, 1)
    raw = write_image(tmp_path / "raw.tif", smooth, compression="none").path
    for method in ("deflate", "lzw", "packbits"):
        packed = write_image(tmp_path / f"{method}.tif", smooth, compression=method).path
        assert packed.stat().st_size < raw.stat().st_size
        assert torch.equal(read_image(packed).pixels, read_image(raw).pixels)
    stored = write_image(tmp_path / "0.png", smooth, compression="0").path
    packed = write_image(tmp_path / "9.png", smooth, compression="9").path
    assert packed.stat().st_size < stored.stat().st_size


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("o.png", {"bit_depth": 32}, "cannot store 32-bit float"),
        ("o.jpg", {"bit_depth": 16}, "8 bits per channel only"),
        ("o.png", {"quality": 90}, "JPEG output only"),
        ("o.jpg", {"quality": 0}, "1 to 100"),
        ("o.tif", {"compression": "jpeg2000"}, "unknown TIFF compression"),
        ("o.png", {"compression": "lzw"}, "zlib level 0 to 9"),
        ("o.bmp", {"compression": "9"}, "TIFF and PNG only"),
    ],
)
def test_settings_a_format_cannot_honour_are_refused(name, options, message) -> None:
    with pytest.raises(ImageWriteError, match=message):
        check_encoding(Path(name), **options)


def test_damaged_exif_costs_the_metadata_not_the_pixels(tmp_path) -> None:
    buffer = BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buffer, "JPEG")
    data = buffer.getvalue()
    # An APP1 "Exif" segment whose TIFF header is garbage, right after SOI.
    payload = b"Exif\x00\x00" + b"XX" + b"\xff" * 20
    app1 = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    path = tmp_path / "bad.jpg"
    path.write_bytes(data[:2] + app1 + data[2:])
    loaded = read_image(path)
    assert loaded.pixels.shape[-2:] == (4, 4)
    assert loaded.metadata.exif is None
