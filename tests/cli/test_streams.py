"""`fuse <task> - b.png -o - --ext png`: a source from stdin, the result on stdout (issue 19).

The fusion runs with --method average on 16x16 images, so no network is opened.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fusecli.cli.main import EXIT_USAGE, build_app
from tests.conftest import REPO_ROOT

runner = CliRunner()


def _png(path: Path, level: int) -> Path:
    Image.fromarray(np.full((16, 16), level, np.uint8)).save(path)
    return path


def test_a_pipe_in_and_a_pipe_out_carry_only_the_image(tmp_path: Path) -> None:
    near = _png(tmp_path / "near.png", 100)
    far = _png(tmp_path / "far.png", 200)
    command = [sys.executable, "-m", "fusecli", "mff", "-", str(far), "-o", "-", "--ext", "jpg"]
    command += ["--method", "average"]
    result = subprocess.run(
        command, input=near.read_bytes(), capture_output=True, cwd=REPO_ROOT, check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.startswith(b"\xff\xd8\xff")  # a JPEG and nothing else
    with Image.open(io.BytesIO(result.stdout)) as image:
        assert image.size == (16, 16) and abs(np.asarray(image).mean() - 150) <= 1
    assert result.stderr.decode().startswith("wrote <stdout> (16x16, grey, 8-bit)")


@pytest.mark.parametrize(
    ("extra", "stdin", "named"),
    [
        (["-o", "-"], b"", "--ext"),  # -o - needs --ext
        (["-o", "{tmp}/o.png", "--ext", "png"], b"", "--ext"),  # --ext only with -o -
        (["-o", "-", "--ext", "png", "--json"], b"", "--json"),  # stdout is the image's
        (["-", "-o", "{tmp}/o.png"], b"", "standard input"),  # one - at most
    ],
)
def test_stream_misuse_is_a_usage_error(tmp_path: Path, extra, stdin, named) -> None:
    _png(tmp_path / "a.png", 10)
    args = ["mff", "-", str(tmp_path / "a.png"), *(a.format(tmp=tmp_path) for a in extra)]
    result = runner.invoke(build_app(), args, input=stdin)
    lines = result.output.strip().splitlines()
    assert result.exit_code == EXIT_USAGE
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0]


def test_stdin_that_holds_no_image_is_one_error(tmp_path: Path) -> None:
    a = _png(tmp_path / "a.png", 10)
    out = tmp_path / "o.png"
    result = runner.invoke(
        build_app(), ["mff", "-", str(a), "-o", str(out), "--method", "average"], input=b"hello"
    )
    assert result.exit_code == 1 and not out.exists()
    assert result.stderr == (
        "error: standard input (-) holds no PNG, JPEG, TIFF or BMP image; "
        "pipe an image file into it\n"
    )


def test_help_names_the_stream_options() -> None:
    text = " ".join(runner.invoke(build_app(), ["mff", "--help"], terminal_width=80).stdout.split())
    assert "--ext png|jpg|tif|bmp" in text and "- reads one of them from" in text


def test_json_names_a_source_read_from_stdin_as_a_dash(tmp_path: Path) -> None:
    near = _png(tmp_path / "near.png", 100)
    camera = Image.Exif()
    camera[0x010F] = "TestCam"  # Make: metadata, so that metadata_from names its source
    far = tmp_path / "far.png"
    Image.fromarray(np.full((16, 16), 200, np.uint8)).save(far, exif=camera)
    out = tmp_path / "o.png"
    # The stdin source is the reference (mff's middle frame), whose metadata the output keeps.
    args = ["mff", str(near), "-", "-o", str(out), "--method", "average", "--json"]
    result = runner.invoke(build_app(), args, input=far.read_bytes())
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["sources"] == [str(near), "-"]
    assert record["metadata_from"] == "-"
    assert "stdin" not in result.stdout  # nor the scratch file anywhere else


def _cut_png(path: Path, level: int) -> bytes:
    return _png(path, level).read_bytes()[:60]


@pytest.mark.parametrize(
    ("stdin", "expected"),
    [
        # A damaged image on stdin, then one of another size: named as given, not as the
        # scratch file that held it (deleted by the time the user reads the message).
        (lambda tmp: _cut_png(tmp / "cut.png", 50), "error: standard input (-): not a readable"),
        (
            lambda tmp: _png16(tmp / "big.png", (20, 24)).read_bytes(),
            "error: standard input (-) is 24x20 but ",
        ),
    ],
)
def test_errors_name_a_stdin_source_as_given(tmp_path: Path, stdin, expected) -> None:
    a = _png(tmp_path / "a.png", 10)
    out = tmp_path / "o.png"
    args = ["mff", str(a), "-", "-o", str(out), "--method", "average"]
    result = runner.invoke(build_app(), args, input=stdin(tmp_path))
    assert result.exit_code == 1 and not out.exists()
    assert result.stderr.startswith(expected), result.stderr
    assert "fusecli-" not in result.stderr and "stdin." not in result.stderr


def _png16(path: Path, size: tuple[int, int]) -> Path:
    Image.fromarray(np.full(size, 40000, np.uint16)).save(path)
    return path


def test_a_note_about_stdout_names_it_as_given(tmp_path: Path) -> None:
    # 16-bit sources written as JPEG to stdout: the note says <stdout> drops to 8 bits.
    deep = _png16(tmp_path / "deep.png", (16, 16))
    command = [sys.executable, "-m", "fusecli", "mff", str(deep), "-", "-o", "-", "--ext", "jpg"]
    command += ["--method", "average"]
    result = subprocess.run(
        command, input=deep.read_bytes(), capture_output=True, cwd=REPO_ROOT, check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    notes = [line for line in result.stderr.decode().splitlines() if line.startswith("note:")]
    assert notes == [
        "note: the sources are 16-bit but JPG stores 8 bits per channel; <stdout> is 8-bit"
    ]


def test_an_output_folder_names_the_result_after_the_first_named_source(tmp_path: Path) -> None:
    # Standard input has no name of its own to give the output (it was stdin.png once).
    far = _png(tmp_path / "far.png", 200)
    out = tmp_path / "out"
    out.mkdir()
    args = ["mff", "-", str(far), "-o", str(out), "--method", "average"]
    result = runner.invoke(build_app(), args, input=_png(tmp_path / "near.png", 100).read_bytes())
    assert result.exit_code == 0, result.stderr
    assert [p.name for p in out.iterdir()] == ["far.png"]
