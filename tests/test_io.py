"""Image reading and writing: formats, bit depths, orientation, limits, and clear failures."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from fusecli.errors import ImageReadError, ImageWriteError
from fusecli.io import (
    image_files,
    natural_key,
    output_bit_depth,
    read_image,
    same_file,
    sniff_format,
    write_image,
)


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
    path = write_image(tmp_path / f"x{suffix}", pixels).path
    image = read_image(path)
    assert image.bit_depth == 8 and image.pixels.shape == pixels.shape
    tolerance = 0.08 if suffix == ".jpg" else 0.5 / 255 + 1e-6
    assert (image.pixels - pixels).abs().max() <= tolerance


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("channels", [1, 3])
def test_16_bit_colour_and_grey_survive(tmp_path, suffix, channels) -> None:
    pixels = torch.rand(1, channels, 7, 5)
    path = write_image(tmp_path / f"x{suffix}", pixels, bit_depth=16).path
    image = read_image(path)
    assert image.bit_depth == 16
    assert (image.pixels - pixels).abs().max() <= 0.5 / 65535 + 1e-7


def test_float_tiff_keeps_32_bit(tmp_path) -> None:
    pixels = torch.rand(1, 1, 6, 6)
    image = read_image(write_image(tmp_path / "f.tiff", pixels, bit_depth=32).path)
    assert image.bit_depth == 32 and torch.allclose(image.pixels, pixels)


def test_jpeg_and_bmp_store_8_bits_whatever_is_asked(tmp_path) -> None:
    image = read_image(write_image(tmp_path / "x.jpg", torch.rand(1, 3, 8, 8), bit_depth=16).path)
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
    a = read_image(write_image(tmp_path / "a.png", torch.rand(1, 1, 4, 4)).path)
    b = read_image(write_image(tmp_path / "b.png", torch.rand(1, 1, 4, 4), bit_depth=16).path)
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
    path = write_image(tmp_path / f"t{suffix}", torch.rand(1, 3, 64, 64)).path
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ImageReadError, match=path.name):
        read_image(path)


def test_declared_size_beyond_the_limit_is_refused_before_decoding(tmp_path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_declaring(100_000, 100_000))
    with pytest.raises(ImageReadError, match="limit"):
        read_image(path)
    ok = write_image(tmp_path / "ok.png", torch.rand(1, 1, 10, 10)).path
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
        path = write_image(tmp_path / "x.png", pixels).path
        before = path.read_bytes()
        # io names the setting; the CLI turns the hint into its flag (tests/cli).
        with pytest.raises(ImageWriteError, match="already exists") as refused:
            write_image(path, torch.rand(1, 1, 4, 4))
        assert refused.value.hint == "overwrite"
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
    path = write_image(tmp_path / "x.png", torch.rand(1, 1, 2, 2)).path
    monkeypatch.chdir(tmp_path)
    assert same_file("x.png", path) and not same_file("y.png", path)


# ------------------------------------------------------------------ more layouts


def _bomb(tmp_path, suffix: str):
    """A tiny valid file whose header is then patched to declare 100000 x 100000 pixels."""
    path = tmp_path / f"bomb{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(path, np.zeros((2, 2), np.uint8))
        with tifffile.TiffFile(path, mode="r+b") as tif:
            tif.pages.first.tags["ImageWidth"].overwrite(100_000)
            tif.pages.first.tags["ImageLength"].overwrite(100_000)
        return path
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    if suffix == ".bmp":
        # BITMAPINFOHEADER: width and height are little-endian int32 at bytes 18 and 22.
        data[18:26] = struct.pack("<ii", 100_000, 100_000)
    else:
        # Baseline JPEG: SOF0 marker, length (2), precision (1), height (2), width (2).
        sof = data.index(b"\xff\xc0")
        data[sof + 5 : sof + 9] = struct.pack(">HH", 60_000, 60_000)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("suffix", [".tif", ".bmp", ".jpg"])
def test_bombs_in_every_format_are_refused_from_the_header(tmp_path, suffix) -> None:
    path = _bomb(tmp_path, suffix)
    assert path.stat().st_size < 2000  # the refusal cannot come from decoding gigapixels
    with pytest.raises(ImageReadError, match=r"declares .* more than the limit"):
        read_image(path)


def test_the_pixel_limit_comes_from_the_environment(tmp_path, monkeypatch) -> None:
    path = write_image(tmp_path / "x.png", torch.rand(1, 1, 10, 10)).path
    monkeypatch.setenv("FUSECLI_MAX_PIXELS", "50")
    with pytest.raises(ImageReadError, match="limit of 50"):
        read_image(path)
    assert read_image(path, max_pixels=100).pixels.shape == (1, 1, 10, 10)
    monkeypatch.setenv("FUSECLI_MAX_PIXELS", "lots")
    with pytest.raises(ImageReadError, match="FUSECLI_MAX_PIXELS"):
        read_image(path)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillow(tmp_path, orientation) -> None:
    from PIL import ImageOps

    stored = np.zeros((6, 10), np.uint8)
    stored[:3, :2] = 255  # an asymmetric mark, so every flip and rotation differs
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path / "o.jpg", exif=exif, quality=100)
    with Image.open(tmp_path / "o.jpg") as shown:
        expected = np.asarray(ImageOps.exif_transpose(shown), dtype=np.float32) / 255
    image = read_image(tmp_path / "o.jpg")
    assert image.pixels.shape[-2:] == expected.shape
    assert np.abs(image.pixels[0, 0].numpy() - expected).max() < 0.02


def test_grey_plus_alpha_is_one_channel_with_alpha(tmp_path) -> None:
    la = (np.random.rand(5, 7, 2) * 255).astype(np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    image = read_image(tmp_path / "la.png")
    assert image.pixels.shape == (1, 1, 5, 7) and image.stored_channels == 2
    assert torch.allclose(image.alpha[0, 0], torch.from_numpy(la[..., 1] / 255).float())


def test_grey_rgba_drops_to_one_channel_and_keeps_alpha(tmp_path) -> None:
    grey = (np.random.rand(4, 4) * 255).astype(np.uint8)
    alpha = np.full((4, 4), 128, np.uint8)
    Image.fromarray(np.stack([grey, grey, grey, alpha], -1), "RGBA").save(tmp_path / "g.png")
    image = read_image(tmp_path / "g.png")
    assert image.pixels.shape == (1, 1, 4, 4) and image.alpha is not None


def test_alpha_is_written_where_the_format_holds_it(tmp_path) -> None:
    pixels, alpha = torch.rand(1, 3, 4, 4), torch.rand(1, 1, 4, 4)
    for suffix in (".png", ".tif"):
        image = read_image(write_image(tmp_path / f"a{suffix}", pixels, alpha=alpha).path)
        assert image.stored_channels == 4
        assert (image.alpha - alpha).abs().max() <= 0.5 / 255 + 1e-6
    image = read_image(write_image(tmp_path / "a.jpg", pixels, alpha=alpha).path)
    assert image.alpha is None and image.stored_channels == 3


def test_16_bit_grey_png_from_another_writer(tmp_path) -> None:
    values = np.array([[0, 1000, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")  # Pillow picks mode I;16
    image = read_image(tmp_path / "g16.png")
    assert image.bit_depth == 16
    assert torch.allclose(
        image.pixels.flatten(), torch.from_numpy(values / 65535).float().flatten()
    )


def test_palette_and_min_is_white_tiffs_are_read_as_displayed(tmp_path) -> None:
    colormap = np.zeros((3, 256), np.uint16)
    colormap[0, 1] = 255 * 257  # index 1 is pure red
    tifffile.imwrite(
        tmp_path / "p.tif", np.array([[0, 1]], np.uint8), photometric="palette", colormap=colormap
    )
    image = read_image(tmp_path / "p.tif")
    assert image.bit_depth == 8 and image.pixels.shape == (1, 3, 1, 2)
    assert image.pixels[0, :, 0, 1].tolist() == [1.0, 0.0, 0.0]
    tifffile.imwrite(tmp_path / "w.tif", np.zeros((2, 2), np.uint8), photometric="miniswhite")
    assert float(read_image(tmp_path / "w.tif").pixels.min()) == 1.0


def test_palette_png_and_bmp_are_expanded_to_rgb(tmp_path) -> None:
    palette = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
    palette.putpalette([0, 0, 255, 255, 255, 0] + [0] * 762)
    for suffix in (".png", ".bmp"):
        palette.save(tmp_path / f"p{suffix}")
        image = read_image(tmp_path / f"p{suffix}")
        assert image.pixels.shape == (1, 3, 2, 2)
        assert image.pixels[0, :, 0, 0].tolist() == [0.0, 0.0, 1.0]


@pytest.mark.parametrize("value", [0, 255])
def test_constant_colour_images_are_fine(tmp_path, value) -> None:
    Image.fromarray(np.full((3, 5, 3), value, np.uint8)).save(tmp_path / "c.png")
    image = read_image(tmp_path / "c.png")
    assert image.pixels.shape == (1, 1, 3, 5) and float(image.pixels.mean()) == value / 255


def test_non_integer_tiff_samples_are_refused(tmp_path) -> None:
    tifffile.imwrite(tmp_path / "i.tif", np.zeros((3, 3), np.int16))
    with pytest.raises(ImageReadError, match="int16"):
        read_image(tmp_path / "i.tif")


def test_float_tiff_outside_unit_range_is_refused(tmp_path) -> None:
    tifffile.imwrite(tmp_path / "f.tif", np.full((3, 3), 4.0, np.float32))
    with pytest.raises(ImageReadError, match="rescale"):
        read_image(tmp_path / "f.tif")


def test_writing_refuses_an_unknown_extension(tmp_path) -> None:
    with pytest.raises(ImageWriteError, match=r"\.webp"):
        write_image(tmp_path / "x.webp", torch.rand(1, 1, 2, 2))
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_write_leaves_nothing(tmp_path, monkeypatch) -> None:
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_image(tmp_path / "x.png", torch.rand(1, 1, 4, 4))
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ shared data

_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.mark.data
@pytest.mark.skipif(not _DATA.is_dir(), reason="../shared/data is not present")
@pytest.mark.parametrize(
    ("folder", "channels"),
    [
        ("ivf/roadscene/ir", 1),
        ("ivf/roadscene/vi", 3),
        ("mmf/mri-ct/mri", 1),  # greyscale published as three identical channels
        ("mmf/mri-ct/ct", 1),
        ("mmf/mri-pet/pet", 3),
        ("mff/mffw/a", 3),
    ],
)
def test_shared_data_reads_with_the_expected_channels(folder, channels) -> None:
    first = sorted((_DATA / folder).iterdir())[0]
    image = read_image(first)
    assert image.pixels.shape[1] == channels and image.bit_depth == 8
    assert image.pixels.dtype == torch.float32 and float(image.pixels.min()) >= 0.0


def test_outputs_get_the_usual_file_mode_not_the_temporary_one(tmp_path) -> None:
    umask = os.umask(0o027)
    try:
        path = write_image(tmp_path / "x.png", torch.rand(1, 1, 2, 2)).path
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o640


def test_a_failure_to_create_the_temporary_file_is_our_error(tmp_path, monkeypatch) -> None:
    import tempfile

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", no_space)
    with pytest.raises(ImageWriteError, match="No space left"):
        write_image(tmp_path / "x.png", torch.rand(1, 1, 2, 2))
    assert list(tmp_path.iterdir()) == []


def test_tifffile_log_lines_do_not_reach_the_user(tmp_path, caplog) -> None:
    path = tmp_path / "es.tif"
    tifffile.imwrite(
        path, np.zeros((2, 2, 2), np.uint8), photometric="minisblack", extrasamples=["unassalpha"]
    )
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages.first.tags["ExtraSamples"].overwrite(7)  # tifffile logs "not a valid EXTRASAMPLE"
    with caplog.at_level("DEBUG"):
        image = read_image(path)
    assert image.pixels.shape == (1, 1, 2, 2)
    assert [r for r in caplog.records if r.name.startswith("tifffile")] == []


def test_an_unreadable_file_says_permission_denied(tmp_path, monkeypatch) -> None:
    path = write_image(tmp_path / "x.png", torch.rand(1, 1, 2, 2)).path
    # Simulated, because the tests may run as root, who can read anything.
    monkeypatch.setattr(os, "access", lambda p, mode: mode != os.R_OK)
    with pytest.raises(ImageReadError, match="permission denied"):
        read_image(path)


@pytest.mark.parametrize(
    ("name", "channels", "asked", "stored"),
    [("x.png", 3, 32, 16), ("x.tif", 1, 32, 32), ("x.jpg", 3, 16, 8), ("x.bmp", 1, 16, 8)],
)
def test_write_image_returns_what_it_stored(tmp_path, name, channels, asked, stored) -> None:
    alpha = torch.rand(1, 1, 5, 7)
    written = write_image(
        tmp_path / name, torch.rand(1, channels, 5, 7), bit_depth=asked, alpha=alpha
    )
    image = read_image(written.path)
    assert (written.width, written.height, written.channels) == (7, 5, channels)
    assert written.bit_depth == stored == image.bit_depth
    assert written.alpha == (image.alpha is not None) == (name.endswith((".png", ".tif")))


def test_natural_key_orders_numbers_numerically_and_reads_only_the_name() -> None:
    names = ["im10.png", "im2.png", "Im3.png", "im1.png", "1².png"]
    assert sorted(names, key=natural_key) == ["1².png", "Im3.png", "im1.png", "im2.png", "im10.png"]
    assert natural_key(Path("z") / "a2.png") == natural_key("a2.png") == ("a", 2, ".png")


def test_image_files_lists_visible_images_in_natural_order(tmp_path) -> None:
    for name in ("b10.png", "b9.JPG", ".hidden.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder.png").mkdir()
    assert [p.name for p in image_files(tmp_path)] == ["b9.JPG", "b10.png"]


@pytest.mark.parametrize(
    ("name", "pillow_format", "says"),
    [("photo.png", "JPEG", "a JPEG file with a .png name"), ("scan", "PNG", "no extension")],
)
def test_the_format_is_recognised_by_content(tmp_path, name, pillow_format, says) -> None:
    path = tmp_path / name
    Image.fromarray(np.full((8, 8, 3), (200, 40, 40), np.uint8)).save(path, format=pillow_format)
    image = read_image(path)
    assert image.is_color and image.width == 8 and image.bit_depth == 8
    assert len(image.notes) == 1 and str(path) in image.notes[0] and says in image.notes[0]
    plain = tmp_path / "plain.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(plain)
    assert read_image(plain).notes == ()


def test_sniff_format_knows_each_signature() -> None:
    assert sniff_format(b"\x89PNG\r\n\x1a\n") == ".png"
    assert sniff_format(b"\xff\xd8\xff\xe0") == ".jpg"
    assert sniff_format(b"MM\x00*") == sniff_format(b"II*\x00") == ".tif"
    assert sniff_format(b"BM\x00\x00") == ".bmp"
    assert sniff_format(b"hello") is None


def test_reading_in_threads_keeps_pillows_limit_for_everyone_else(tmp_path, monkeypatch) -> None:
    # Readers turn Pillow's global bomb limit off while they decode (ours runs first). Threads
    # read at once in fuse batch: none may find the limit back on mid-read, and once all are
    # done it must be what it was. A limit below these images makes either mistake fail.
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    paths = []
    for index, fmt in enumerate(("png", "jpg", "bmp", "tif") * 2):
        path = tmp_path / f"{index}.{fmt}"
        Image.fromarray(np.full((48, 64, 3), (index * 20, 90, 200), np.uint8)).save(path)
        paths.append(path)

    def read_many(path):
        return [read_image(path).pixels.shape for _ in range(15)]

    with ThreadPoolExecutor(8) as pool:
        shapes = [shape for shapes in pool.map(read_many, paths) for shape in shapes]
    assert shapes == [(1, 3, 48, 64)] * 120
    assert Image.MAX_IMAGE_PIXELS == 500
