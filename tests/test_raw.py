"""Camera RAW sources (issue 18): DNG files made here, read through rawpy (LibRaw).

The files are Bayer (RGGB) DNGs whose colour matrix makes the camera's space linear sRGB, so
what LibRaw returns can be checked against the sRGB encoding of the light written into them.
"""

from __future__ import annotations

import builtins
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from typer.testing import CliRunner

from fusecli.cli.main import build_app
from fusecli.errors import ImageReadError
from fusecli.imagefiles import image_files
from fusecli.io import read_image

# XYZ (D65) -> linear sRGB: DNG's ColorMatrix1 maps XYZ to the camera's space.
XYZ_TO_SRGB = (
    (3.2406, -1.5372, -0.4986),
    (-0.9689, 1.8758, 0.0415),
    (0.0557, -0.2040, 1.0570),
)
WHITE = 4095


def write_dng(path: Path, linear_rgb: np.ndarray, camera: str = "") -> Path:
    """A 12-bit RGGB mosaic of ``linear_rgb`` ((H, W, 3) in [0, 1], H and W even) as DNG,
    with EXIF Make and Model when ``camera`` ("MAKE MODEL") is given."""
    height, width, _ = linear_rgb.shape
    mosaic = np.empty((height, width))
    mosaic[0::2, 0::2] = linear_rgb[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = linear_rgb[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = linear_rgb[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = linear_rgb[1::2, 1::2, 2]
    matrix = [v for row in XYZ_TO_SRGB for x in row for v in (round(x * 10000), 10000)]
    tags = [
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, (0, 1, 1, 2), True),  # CFAPattern: R G / G B
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50708, "s", 0, "fusecli test camera", True),  # UniqueCameraModel
        (50717, "I", 1, WHITE, True),  # WhiteLevel
        (50714, "H", 1, 0, True),  # BlackLevel
        (50721, "2i", 9, matrix, True),  # ColorMatrix1
        (50728, "2I", 3, (1, 1, 1, 1, 1, 1), True),  # AsShotNeutral: white is white
        (50778, "H", 1, 21, True),  # CalibrationIlluminant1: D65
    ]
    if camera:
        make, model = camera.split(" ", 1)
        tags += [(271, "s", 0, make, True), (272, "s", 0, model, True)]
    data = np.round(np.clip(mosaic, 0, 1) * WHITE).astype(np.uint16)
    tifffile.imwrite(path, data, photometric=32803, subfiletype=0, extratags=tags, metadata=None)
    return path


def srgb(linear: np.ndarray) -> np.ndarray:
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def scene(height: int = 48, width: int = 64) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack(
        [0.05 + 0.3 * xs / width, 0.1 + 0.25 * ys / height, 0.15 + 0.1 * np.sin(xs / 5) ** 2], -1
    )


rawpy = pytest.importorskip("rawpy")


def test_a_dng_reads_as_16_bit_srgb_of_the_light_it_holds(tmp_path: Path) -> None:
    light = scene()
    image = read_image(write_dng(tmp_path / "frame.dng", light))
    assert image.bit_depth == 16 and image.pixels.shape == (1, 3, 48, 64)
    got = image.pixels[0].permute(1, 2, 0).numpy()
    # Away from the border (demosaicking there has half its neighbours): demosaicking the
    # texture costs a few 12-bit steps at most, less than one 8-bit level on average.
    error = np.abs(got - srgb(light))[4:-4, 4:-4]
    assert error.mean() < 1e-3 and error.max() < 1e-2


def test_a_brighter_exposure_stays_brighter(tmp_path: Path) -> None:
    # No automatic brightening: the frames of a bracket keep their exposures.
    light = scene()
    under = read_image(write_dng(tmp_path / "under.dng", light * 0.5)).pixels
    over = read_image(write_dng(tmp_path / "over.dng", np.clip(light * 2, 0, 1))).pixels
    assert float(over.mean()) > float(under.mean()) * 1.6


def test_a_bracket_of_dngs_fuses_into_a_16_bit_tiff(tmp_path: Path) -> None:
    light = scene()
    under = write_dng(tmp_path / "under.dng", light * 0.5)
    over = write_dng(tmp_path / "over.dng", np.clip(light * 2, 0, 1))
    out = tmp_path / "out"
    out.mkdir()
    result = CliRunner().invoke(
        build_app(), ["mef", str(under), str(over), "-o", str(out), "--method", "average"]
    )
    assert result.exit_code == 0, result.stderr
    fused = read_image(out / "under.tif")  # -o FOLDER names a RAW source's output as TIFF
    assert fused.bit_depth == 16 and fused.pixels.shape == (1, 3, 48, 64)
    assert [p.name for p in image_files(tmp_path)] == ["over.dng", "under.dng"]


def test_the_cameras_exif_reaches_the_fused_file(tmp_path: Path) -> None:
    light = scene()
    under = write_dng(tmp_path / "under.dng", light * 0.5, camera="Fusecam Model 7")
    over = write_dng(tmp_path / "over.dng", np.clip(light * 2, 0, 1), camera="Fusecam Model 7")
    assert read_image(under).metadata.icc_profile is None  # pixels are sRGB, not camera space
    for extra, expected in (([], ("Fusecam", "Model 7")), (["--strip"], (None, None))):
        out = tmp_path / f"out{len(extra)}.tif"
        result = CliRunner().invoke(
            build_app(),
            ["mef", str(under), str(over), "-o", str(out), "--method", "average", *extra],
        )
        assert result.exit_code == 0, result.stderr
        exif = Image.Exif()
        exif_bytes = read_image(out).metadata.exif
        if exif_bytes is not None:
            exif.load(b"Exif\x00\x00" + exif_bytes)
        assert (exif.get(271), exif.get(272)) == expected
        assert 50706 not in exif and 33422 not in exif  # DNG and CFA tags describe the sensor


def test_a_damaged_raw_file_is_one_clear_error(tmp_path: Path) -> None:
    good = write_dng(tmp_path / "good.dng", scene()).read_bytes()
    damaged = tmp_path / "cut.nef"
    damaged.write_bytes(good[:200])
    with pytest.raises(ImageReadError, match=r"cut\.nef: not a readable camera RAW image"):
        read_image(damaged)


def test_the_pixel_limit_holds_before_demosaicking(tmp_path: Path) -> None:
    path = write_dng(tmp_path / "frame.dng", scene())
    with pytest.raises(ImageReadError, match="declares 64x48 pixels, more than the limit"):
        read_image(path, max_pixels=1000)


def test_without_rawpy_the_error_names_the_extra(tmp_path: Path, monkeypatch) -> None:
    path = write_dng(tmp_path / "frame.dng", scene())
    real_import = builtins.__import__

    def no_rawpy(name, *args, **kwargs):
        if name == "rawpy":
            raise ImportError("No module named 'rawpy'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_rawpy)
    with pytest.raises(ImageReadError, match=r"frame\.dng: .*pip install 'fusecli\[raw\]'"):
        read_image(path)


def test_outputs_named_after_a_raw_source_are_tiff() -> None:
    from fusecli.imagefiles import writable_name

    assert writable_name("shots/IMG_1.NEF") == "IMG_1.tif"
    assert writable_name("shots/a.png") == "a.png"
