"""Bad input to `fuse <task>`: one line naming the file, exit 1, no output, no traceback."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from typer.testing import CliRunner

from fusecli.cli.main import build_app
from fusecli.engine import PSLPT, save_weights
from fusecli.io import read_image

runner = CliRunner()


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_weights(PSLPT(), tmp_path_factory.mktemp("w") / "w.safetensors", {})


def _grey(path: Path, size=(24, 40), value: int | None = None, dtype=np.uint8) -> Path:
    top = np.iinfo(dtype).max
    rng = np.random.default_rng(len(path.name))
    array = (rng.random(size) * top).astype(dtype) if value is None else np.full(size, value, dtype)
    Image.fromarray(array).save(path) if dtype == np.uint8 else tifffile.imwrite(path, array)
    return path


def _bomb(path: Path) -> Path:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", 200_000, 200_000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def _truncated(path: Path) -> Path:
    _grey(path, size=(64, 64))
    path.write_bytes(path.read_bytes()[:100])
    return path


def _nan_tiff(path: Path) -> Path:
    values = np.random.default_rng(0).random((24, 40)).astype(np.float32)
    values[3, 4] = np.nan
    tifffile.imwrite(path, values)
    return path


def _cmyk(path: Path) -> Path:
    Image.new("CMYK", (40, 24)).save(path)
    return path


def _five_channel_tiff(path: Path) -> Path:
    tifffile.imwrite(
        path, np.zeros((24, 40, 5), np.uint8), photometric="minisblack", planarconfig="contig"
    )
    return path


BAD_SECOND_SOURCE: dict[str, tuple[str, Callable[[Path], Path], str]] = {
    "empty": ("empty.png", lambda p: (p.write_bytes(b""), p)[1], "empty"),
    "truncated": ("cut.png", _truncated, "not a readable PNG"),
    "not an image": ("text.jpg", lambda p: (p.write_text("hello"), p)[1], "not a readable JPEG"),
    "bomb": ("bomb.png", _bomb, "limit"),
    "other size": ("big.png", lambda p: _grey(p, size=(30, 40)), "size"),
    "cmyk": ("cmyk.jpg", _cmyk, "CMYK"),
    "odd channels": ("five.tif", _five_channel_tiff, "channels"),
    "nan": ("nan.tif", _nan_tiff, "NaN"),
}


@pytest.mark.parametrize("case", sorted(BAD_SECOND_SOURCE))
def test_bad_source_is_one_line_exit_1_and_no_output(tmp_path, weights, case) -> None:
    name, make, message = BAD_SECOND_SOURCE[case]
    good = _grey(tmp_path / "good.png")
    bad = make(tmp_path / name)
    out = tmp_path / "out.png"
    result = runner.invoke(
        build_app(), ["mff", str(good), str(bad), "-o", str(out), "--weights", str(weights)]
    )
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert name in lines[0] and message.lower() in lines[0].lower()
    assert "Traceback" not in result.output
    assert not out.exists()


def test_a_folder_or_missing_source_fails_in_the_parser(tmp_path, weights) -> None:
    good = _grey(tmp_path / "good.png")
    (tmp_path / "dir.png").mkdir()
    for bad, message in [("dir.png", "directory"), ("nope.png", "exist")]:
        out = tmp_path / "out.png"
        args = ["mff", str(good), str(tmp_path / bad), "-o", str(out), "--weights", str(weights)]
        result = runner.invoke(build_app(), args)
        assert result.exit_code == 2 and message in " ".join(result.output.split())
        assert "Traceback" not in result.output and not out.exists()


@pytest.mark.parametrize(
    ("case", "make_output"),
    [
        ("missing folder", lambda t: t / "nope" / "out.png"),
        ("output is an input", lambda t: t / "good.png"),
    ],
)
def test_bad_output_is_refused_before_work(tmp_path, weights, case, make_output) -> None:
    good = _grey(tmp_path / "good.png")
    other = _grey(tmp_path / "other.png")
    before = good.read_bytes()
    out = make_output(tmp_path)
    result = runner.invoke(
        build_app(), ["mff", str(good), str(other), "-o", str(out), "--weights", str(weights)]
    )
    assert result.exit_code == 1 and result.stderr.startswith("error: ")
    assert good.read_bytes() == before


@pytest.mark.parametrize(
    ("case", "first", "second"),
    [
        ("all black", lambda p: _grey(p, value=0), lambda p: _grey(p, value=0)),
        ("all white", lambda p: _grey(p, value=255), lambda p: _grey(p, value=255)),
        ("1x1", lambda p: _grey(p, size=(1, 1)), lambda p: _grey(p, size=(1, 1))),
        ("1xN", lambda p: _grey(p, size=(1, 37)), lambda p: _grey(p, size=(1, 37))),
        (
            "8 and 16 bit",
            lambda p: _grey(p),
            lambda p: _grey(p.with_suffix(".tif"), dtype=np.uint16),
        ),
    ],
)
def test_awkward_but_valid_sources_fuse_without_nan(tmp_path, weights, case, first, second) -> None:
    a = first(tmp_path / "a.png")
    b = second(tmp_path / "b.png")
    out = tmp_path / "out.png"
    result = runner.invoke(
        build_app(), ["mff", str(a), str(b), "-o", str(out), "--weights", str(weights)]
    )
    assert result.exit_code == 0, result.output
    fused = read_image(out)
    assert fused.pixels.shape[-2:] == read_image(a).pixels.shape[-2:]
    assert bool(fused.pixels.isfinite().all())
    if case == "8 and 16 bit":
        assert fused.bit_depth == 16


def test_a_misnamed_jpeg_is_fused_with_one_note_naming_it(tmp_path: Path) -> None:
    misnamed = tmp_path / "near.png"
    Image.fromarray(np.full((16, 16), 90, np.uint8)).save(misnamed, format="JPEG")
    far = _grey(tmp_path / "far.png", size=(16, 16))
    out = tmp_path / "out.png"
    args = ["mff", str(misnamed), str(far), "-o", str(out), "--method", "average"]
    result = runner.invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert notes == [f"note: {misnamed} is a JPEG file with a .png name; read as JPEG"]
    assert out.is_file()
