"""The HTML comparison report: self-contained, every section, links relative to the report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

from fusecli.report import ReportImage, render_report, write_report


def _png(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((20, 30, 3), value, np.uint8)).save(path)
    return path


def _inputs(root: Path, count: int = 3) -> tuple[list[ReportImage], dict, dict]:
    images = []
    values: dict[str, dict[str, dict[str, float]]] = {"average": {}, "laplacian": {}}
    for index in range(count):
        stem = f"img{index}"
        images.append(
            ReportImage(
                stem,
                (
                    ("a", _png(root / "a" / f"{stem}.png", 10)),
                    ("b", _png(root / "b" / f"{stem}.png", 200)),
                ),
                {m: _png(root / "out" / m / f"{stem}.png", 100 + index) for m in values},
            )
        )
        values["average"][stem] = {"SSIM": 0.5 + index / 10, "Nabf": 0.1}
        values["laplacian"][stem] = {"SSIM": 0.4, "Nabf": float("nan")}
    return images, values, {"SSIM": True, "Nabf": False}


def test_the_report_has_every_section_and_needs_no_network(tmp_path: Path) -> None:
    images, values, higher = _inputs(tmp_path)
    (tmp_path / "reports").mkdir()
    report = write_report(tmp_path / "reports" / "r.html", images, values, higher)
    text = report.read_text()
    for marker in ('id="averages"', 'id="metrics"', 'id="images"', 'id="viewer"', 'id="wipe"'):
        assert marker in text
    assert text.count("<svg") == 2  # one bar chart per metric
    assert text.count('<tr class="image"') == 6 and text.count('<tr class="mean"') == 2
    assert text.count('loading="lazy"') == 3 * 4 and text.count("data:image/jpeg;base64,") == 12
    assert not re.search(r"(src|href)=\"https?:", text) and "<link" not in text
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', text, re.S).group(1))
    layers = data["images"][0]["layers"]
    assert [layer["label"] for layer in layers] == ["a", "b", "average", "laplacian"]
    assert layers[2]["src"] == "../out/average/img0.png"
    assert (report.parent / layers[2]["src"]).resolve() == images[0].fused["average"].resolve()


def test_means_skip_nothing_and_non_finite_values_show_as_missing(tmp_path: Path) -> None:
    images, values, higher = _inputs(tmp_path, count=2)
    text = render_report(tmp_path / "r.html", images, values, higher)
    mean_rows = re.findall(r'<tr class="mean".*?</tr>', text)
    assert 'data-value="0.55"' in mean_rows[0]  # (0.5 + 0.6) / 2
    assert 'data-metric="Nabf" data-value="">n/a' in mean_rows[1]
    assert 'data-higher="0"' in text and 'data-higher="1"' in text
