"""`fuse eval`: files and folders, several methods, JSON/CSV output, one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from typer.testing import CliRunner

from fusecli.cli.main import build_app
from fusecli.metrics import compute_metrics

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
ORACLE = DATA / "metrics-oracle" / "vifb"
FAST = "EN,Qabf,SSIM,Nabf,RMSE"


def _write(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, np.clip(pixels, 0, 255).astype(np.uint8))
    return path


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    """Folders a/, b/, good/, poor/ with images x1, x2 (48x56 greyscale PNG)."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:48, 0:56]
    for stem, phase in (("x1", 0.0), ("x2", 1.3)):
        a = 120 + 80 * np.sin(x / 5.0 + phase) + rng.normal(0, 5, x.shape)
        b = 110 + 70 * np.cos(y / 6.0 + phase) + rng.normal(0, 5, x.shape)
        _write(tmp_path / "a" / f"{stem}.png", a)
        _write(tmp_path / "b" / f"{stem}.png", b)
        _write(tmp_path / "good" / f"{stem}.png", (a + b) / 2)
        _write(tmp_path / "poor" / f"{stem}.png", (a + b) / 2 + rng.normal(0, 40, x.shape))
    return tmp_path


def _run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(build_app(), ["eval", *args], env=env)


def test_single_files_print_a_table_of_every_applicable_metric(pairs: Path) -> None:
    result = _run(str(pairs / "a/x1.png"), str(pairs / "b/x1.png"), str(pairs / "good/x1.png"))
    assert result.exit_code == 0, result.output
    assert "Mean over 1 image (colour: channels)" in result.stdout
    for row in ("EN ↑", "Nabf ↓", "Qcv ↓", "FMI ↑", "MEF_SSIM ↑"):
        assert row in result.stdout
    # 48x56 images are too small for MS-SSIM's five scales: left out with a note.
    assert "MS_SSIM" not in result.stdout
    assert "note: MS_SSIM left out: it needs images of at least 161x161 pixels." in result.stderr


def test_json_of_one_method_has_mean_images_and_count(pairs: Path) -> None:
    result = _run(
        str(pairs / "a"), str(pairs / "b"), str(pairs / "good"), "--json", "--metrics", FAST
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["n"] == 2 and list(payload["images"]) == ["x1", "x2"]
    assert list(payload["mean"]) == FAST.split(",")
    a, b, f = (iio.imread(pairs / folder / "x2.png") for folder in ("a", "b", "good"))
    expected = compute_metrics(a, b, f, names=FAST.split(","))
    assert payload["images"]["x2"] == pytest.approx(expected, rel=1e-12)
    assert payload["mean"]["EN"] == pytest.approx(
        (payload["images"]["x1"]["EN"] + payload["images"]["x2"]["EN"]) / 2
    )


def test_several_methods_side_by_side_with_csv(pairs: Path, tmp_path: Path) -> None:
    table = tmp_path / "out.csv"
    args = [str(pairs / d) for d in ("a", "b", "good", "poor")]
    result = _run(*args, "--metrics", FAST, "--json", "--csv", str(table))
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert list(payload) == ["good", "poor"]
    assert payload["good"]["mean"]["Qabf"] > payload["poor"]["mean"]["Qabf"]
    assert payload["good"]["mean"]["Nabf"] < payload["poor"]["mean"]["Nabf"]
    rows = list(csv.reader(table.open()))
    assert rows[0] == ["method", "image", *FAST.split(",")]
    assert [row[:2] for row in rows[1:]] == [
        ["good", "x1"], ["good", "x2"], ["good", "mean"],
        ["poor", "x1"], ["poor", "x2"], ["poor", "mean"],
    ]  # fmt: skip
    assert float(rows[3][2]) == pytest.approx(payload["good"]["mean"]["EN"], rel=1e-15)


def test_sixteen_bit_and_grey_as_rgb_files_read_like_their_8_bit_grey(pairs: Path) -> None:
    grey = iio.imread(pairs / "good/x1.png")
    _write(pairs / "rgb/x1.png", np.stack([grey] * 3, axis=-1))
    (pairs / "wide").mkdir()
    iio.imwrite(pairs / "wide/x1.png", grey.astype(np.uint16) * 257)
    base = [str(pairs / "a/x1.png"), str(pairs / "b/x1.png")]
    outputs = [
        json.loads(_run(*base, str(pairs / d / "x1.png"), "--metrics", FAST, "--json").stdout)
        for d in ("good", "rgb", "wide")
    ]
    assert outputs[1] == outputs[0]
    assert outputs[2]["mean"] == pytest.approx(outputs[0]["mean"], rel=1e-12)


def test_parallel_jobs_give_the_same_values(pairs: Path) -> None:
    args = [str(pairs / d) for d in ("a", "b", "good", "poor")] + ["--metrics", FAST, "--json"]
    serial = _run(*args)
    parallel = _run(*args, "--jobs", "2")
    assert serial.exit_code == parallel.exit_code == 0, parallel.output
    assert json.loads(parallel.stdout) == json.loads(serial.stdout)


def test_table_highlights_the_best_method_per_direction(pairs: Path) -> None:
    args = [str(pairs / d) for d in ("a", "b", "good", "poor")]
    result = _run(*args, "--metrics", "Qabf,Nabf", env={"FORCE_COLOR": "1", "TERM": "xterm"})
    assert result.exit_code == 0, result.output
    qabf = next(line for line in result.output.splitlines() if "Qabf" in line)
    nabf = next(line for line in result.output.splitlines() if "Nabf" in line)
    # Qabf is better high, Nabf better low: "good" wins both, so its cell is styled.
    for line in (qabf, nabf):
        cells = line.split("│")
        assert "\x1b[" in cells[2] and "\x1b[" not in cells[3], line


def test_reference_adds_the_reference_metrics(pairs: Path) -> None:
    result = _run(
        str(pairs / "a"), str(pairs / "b"), str(pairs / "poor"),
        "--ref", str(pairs / "good"), "--metrics", "PSNR_ref,SSIM_ref", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    mean = json.loads(result.stdout)["mean"]
    assert list(mean) == ["PSNR_ref", "SSIM_ref"] and 5 < mean["PSNR_ref"] < 40


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda p: [p / "a", p / "b", p / "missing"], "does not exist; check the path"),
        (lambda p: [p / "a", p / "b/x1.png", p / "good"], "either files or folders"),
        (lambda p: [p / "a", p / "b", p / "subset"], "has no image named 'x2'"),
        (lambda p: [p / "a/x1.png", p / "b/x1.png", p / "small.png"], "must have the same size"),
        (lambda p: [p / "a", p / "b", p / "good", "--metrics", "EN,VIF"], "unknown metric VIF"),
        (lambda p: [p / "a", p / "b", p / "good", "--colour", "rgb"], "unknown --colour"),
        (lambda p: [p / "a", p / "b", p / "good", "--metrics", "PSNR_ref"], "--ref"),
    ],
    ids=["missing", "mixed", "unmatched", "size", "metric", "colour", "needs-ref"],
)
def test_user_errors_are_one_line(pairs: Path, mangle, message: str) -> None:
    _write(pairs / "subset" / "x1.png", np.zeros((48, 56)))
    _write(pairs / "small.png", np.zeros((20, 56)))
    result = _run(*(str(arg) for arg in mangle(pairs)))
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


@pytest.mark.data
def test_vifb_folders_reproduce_the_published_means(tmp_path: Path) -> None:
    if not ORACLE.is_dir():
        pytest.skip(f"metric oracle not found at {ORACLE}")
    published = json.loads((ORACLE / "values.json").read_text())
    images = [name for name in published if not name.startswith("_")]
    for method in ("ADF", "GFF"):
        (tmp_path / method).mkdir()
        for image in images:
            (tmp_path / method / f"{image}.jpg").symlink_to(
                ORACLE / "fused" / f"{image}_{method}.jpg"
            )
    result = _run(
        str(ORACLE / "vi"), str(ORACLE / "ir"), str(tmp_path / "ADF"), str(tmp_path / "GFF"),
        "--metrics", "EN,Qabf,SSIM,Qcb,SF", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    vifb = {
        "EN": "Entropy",
        "Qabf": "Qabf",
        "SSIM": "Ssim",
        "Qcb": "Qcb",
        "SF": "Spatial_frequency",
    }
    for method in ("ADF", "GFF"):
        assert payload[method]["n"] == 5
        for ours, theirs in vifb.items():
            expected = np.mean([published[image][method][theirs] for image in images])
            assert payload[method]["mean"][ours] == pytest.approx(expected, rel=1e-3)


def test_help_names_every_registered_metric_in_order() -> None:
    # `fuse eval --help` lists fusecli.metric_names, so that it need not import numpy.
    from fusecli.metric_names import METRIC_NAMES
    from fusecli.metrics import METRICS

    assert tuple(METRICS) == METRIC_NAMES
