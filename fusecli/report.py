"""A self-contained HTML report comparing fusion methods on the same sources.

One file, no network access: thumbnails are embedded as data URIs, full images are linked
relative to the report and loaded only when an image is opened. Plain HTML, CSS and vanilla JS:
a sortable table of every metric per image and on average (best per metric highlighted), bar
charts of the per-method averages (inline SVG), and per image a viewer with a wipe slider
between any two of the sources and results and synchronized zoom.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from fusecli.atomic import atomic_path

THUMBNAIL_SIDE = 160


@dataclass(frozen=True)
class ReportImage:
    """One image of the report: its name, source files and each method's fused file.

    Attributes:
        stem: the image's name (file name without extension).
        sources: (label, file) of each source, e.g. ("SRC_A", Path("ir/01.png")).
        fused: method name -> fused file, in method order.
    """

    stem: str
    sources: tuple[tuple[str, Path], ...]
    fused: Mapping[str, Path]


def thumbnail_uri(path: Path, side: int = THUMBNAIL_SIDE) -> str:
    """A JPEG thumbnail (longest side ``side``) of an image file, as a data URI."""
    with Image.open(path) as image:
        image.thumbnail((side, side))
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _link(path: Path, report: Path) -> str:
    """The URL of ``path`` relative to the report's folder (forward slashes, escaped)."""
    relative = os.path.relpath(path.resolve(), report.resolve().parent)
    return "/".join(html.escape(part, quote=True) for part in Path(relative).parts)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _best(values: Sequence[float | None], higher_is_better: bool) -> float | None:
    finite = [v for v in values if v is not None]
    if len(finite) < 2:
        return None
    return max(finite) if higher_is_better else min(finite)


def _bar_chart(metric: str, means: Mapping[str, float | None], higher: bool) -> str:
    """An inline SVG bar chart of one metric's per-method means."""
    width, bar_height, label_width = 360, 18, 110
    values = [abs(v) for v in means.values() if v is not None]
    top = max(values) if values else 1.0
    top = top or 1.0
    best = _best(list(means.values()), higher)
    rows = []
    for index, (method, value) in enumerate(means.items()):
        y = 22 + index * (bar_height + 6)
        length = 0 if value is None else (width - label_width - 70) * abs(value) / top
        colour = "#2a9d4b" if best is not None and value == best else "#6c8ebf"
        text = "n/a" if value is None else f"{value:.4g}"
        rows.append(
            f'<text x="{label_width - 6}" y="{y + 13}" text-anchor="end">'
            f"{html.escape(method)}</text>"
            f'<rect x="{label_width}" y="{y}" width="{length:.1f}" height="{bar_height}" '
            f'fill="{colour}"/>'
            f'<text x="{label_width + length + 4:.1f}" y="{y + 13}">{text}</text>'
        )
    height = 28 + len(means) * (bar_height + 6)
    arrow = "higher is better" if higher else "lower is better"
    return (
        f'<svg class="chart" role="img" aria-label="{html.escape(metric)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">'
        f'<text x="0" y="14" font-weight="bold">{html.escape(metric)} ({arrow})</text>'
        + "".join(rows)
        + "</svg>"
    )


def render_report(
    report: Path,
    images: Sequence[ReportImage],
    values: Mapping[str, Mapping[str, Mapping[str, float]]],
    higher_is_better: Mapping[str, bool],
    *,
    title: str = "fusecli method comparison",
) -> str:
    """The report's HTML.

    Args:
        report: where the report will be written (links to full images are relative to it).
        images: the images in display order.
        values: method -> image stem -> metric -> value.
        higher_is_better: metric -> True when a larger value is better, in column order.
        title: the page title.

    Returns:
        The HTML text.
    """
    methods = list(values)
    metrics = list(higher_is_better)
    means = {
        method: {
            metric: _finite(
                sum(values[method][i.stem][metric] for i in images) / max(len(images), 1)
            )
            for metric in metrics
        }
        for method in methods
    }
    header = "".join(
        f'<th data-col="{n + 2}" data-higher="{int(higher_is_better[m])}">'
        f"{html.escape(m)} {'↑' if higher_is_better[m] else '↓'}</th>"
        for n, m in enumerate(metrics)
    )
    rows = []
    for image in images:
        for method in methods:
            rows.append(_table_row(image.stem, method, values[method][image.stem], metrics))
    mean_rows = [
        _table_row("mean", method, {m: means[method][m] for m in metrics}, metrics, mean=True)
        for method in methods
    ]
    charts = "".join(
        _bar_chart(m, {method: means[method][m] for method in methods}, higher_is_better[m])
        for m in metrics
    )
    gallery = "".join(_gallery_item(report, image, methods) for image in images)
    data = json.dumps(
        {
            "images": [
                {
                    "stem": image.stem,
                    "layers": [
                        {"label": label, "src": _link(path, report)}
                        for label, path in (*image.sources, *image.fused.items())
                    ],
                }
                for image in images
            ]
        }
    ).replace("</", "<\\/")
    return _PAGE.format(
        title=html.escape(title),
        count=len(images),
        methods=html.escape(", ".join(methods)),
        header=header,
        body="".join(rows),
        means="".join(mean_rows),
        charts=charts,
        gallery=gallery,
        data=data,
        style=_STYLE,
        script=_SCRIPT,
    )


def _table_row(
    stem: str,
    method: str,
    row: Mapping[str, float | None],
    metrics: Sequence[str],
    *,
    mean: bool = False,
) -> str:
    cells = []
    for metric in metrics:
        value = row[metric]
        value = None if value is None else _finite(value)
        shown = "n/a" if value is None else f"{value:.4f}"
        sort = "" if value is None else repr(value)
        cells.append(f'<td data-metric="{html.escape(metric)}" data-value="{sort}">{shown}</td>')
    kind = "mean" if mean else "image"
    return (
        f'<tr class="{kind}" data-image="{html.escape(stem)}"><td>{html.escape(stem)}</td>'
        f"<td>{html.escape(method)}</td>{''.join(cells)}</tr>"
    )


def _gallery_item(report: Path, image: ReportImage, methods: Sequence[str]) -> str:
    figures = []
    for label, path in (*image.sources, *((m, image.fused[m]) for m in methods)):
        figures.append(
            f'<figure><img loading="lazy" alt="{html.escape(label)}" '
            f'src="{thumbnail_uri(path)}"><figcaption>{html.escape(label)}</figcaption></figure>'
        )
    stem = html.escape(image.stem, quote=True)
    return (
        f'<section class="item" id="image-{stem}"><h3>{html.escape(image.stem)} '
        f'<button class="open" data-stem="{stem}">compare full size</button></h3>'
        f'<div class="thumbs">{"".join(figures)}</div></section>'
    )


def write_report(
    report: str | os.PathLike,
    images: Sequence[ReportImage],
    values: Mapping[str, Mapping[str, Mapping[str, float]]],
    higher_is_better: Mapping[str, bool],
) -> Path:
    """Render the report and write it atomically (see :func:`render_report`)."""
    path = Path(report)
    text = render_report(path, images, values, higher_is_better)
    with atomic_path(path) as temporary:
        Path(temporary).write_text(text, encoding="utf-8")
    return path


_STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
.table-scroll{overflow-x:auto;max-height:80vh}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#eef;cursor:pointer;user-select:none;position:sticky;top:0}
th.sorted-asc::after{content:" ▲"} th.sorted-desc::after{content:" ▼"}
td:first-child,td:nth-child(2){text-align:left}
td.best{background:#c8f0c8;font-weight:bold}
tr.mean td{border-top:2px solid #888;font-style:italic}
.charts{display:flex;flex-wrap:wrap;gap:1em} .chart text{font-size:12px}
.thumbs{display:flex;flex-wrap:wrap;gap:6px} figure{margin:0;text-align:center}
figure img{max-width:160px;max-height:160px;display:block}
#viewer{display:none;border:1px solid #888;padding:.5em;margin:1em 0;background:#fafafa}
#viewer.open{display:block}
#stage{position:relative;overflow:hidden;width:100%;height:60vh;background:#333;cursor:grab}
#stage img{position:absolute;top:0;left:0;transform-origin:0 0;max-width:none}
#top-layer{clip-path:inset(0 50% 0 0)}
#wipe-line{position:absolute;top:0;bottom:0;width:2px;background:#ff0;left:50%}
"""

_SCRIPT = r"""
const data = JSON.parse(document.getElementById('report-data').textContent);
// Sortable table: a click sorts by that column, a second click reverses.
const table = document.getElementById('metrics');
function sortBy(th) {
  const col = Number(th.dataset.col);
  const desc = !th.classList.contains('sorted-desc');
  table.querySelectorAll('th').forEach(h => h.classList.remove('sorted-asc', 'sorted-desc'));
  th.classList.add(desc ? 'sorted-desc' : 'sorted-asc');
  const body = table.tBodies[0];
  const key = r => { const c = r.cells[col]; const v = c.dataset.value;
    return v === undefined ? c.textContent : (v === '' ? NaN : Number(v)); };
  const rows = Array.from(body.rows).sort((a, b) => {
    const x = key(a), y = key(b);
    if (typeof x === 'string') return desc ? y.localeCompare(x) : x.localeCompare(y);
    if (isNaN(x)) return 1; if (isNaN(y)) return -1;
    return desc ? y - x : x - y; });
  rows.forEach(r => body.appendChild(r));
}
table.querySelectorAll('th').forEach(th => th.addEventListener('click', () => sortBy(th)));
// Best value per metric: per image among methods, and among the means.
function markBest(rows) {
  table.querySelectorAll('th[data-higher]').forEach(th => {
    const col = Number(th.dataset.col), higher = th.dataset.higher === '1';
    const cells = rows.map(r => r.cells[col]).filter(c => c.dataset.value !== '');
    if (cells.length < 2) return;
    const vals = cells.map(c => Number(c.dataset.value));
    const best = higher ? Math.max(...vals) : Math.min(...vals);
    cells.forEach((c, i) => { if (vals[i] === best) c.classList.add('best'); });
  });
}
const groups = {};
table.querySelectorAll('tbody tr.image').forEach(r => (groups[r.dataset.image] ||= []).push(r));
Object.values(groups).forEach(markBest);
markBest(Array.from(table.querySelectorAll('tfoot tr.mean')));
// Viewer: full-size images only on demand; wipe between any two layers, synchronized zoom.
const viewer = document.getElementById('viewer'), stage = document.getElementById('stage');
const bottom = document.getElementById('bottom-layer'), top_ = document.getElementById('top-layer');
const leftSel = document.getElementById('left'), rightSel = document.getElementById('right');
const slider = document.getElementById('wipe'), line = document.getElementById('wipe-line');
let current = null, zoom = 1, panX = 0, panY = 0;
function applyView() {
  const t = `translate(${panX}px,${panY}px) scale(${zoom})`;
  bottom.style.transform = t; top_.style.transform = t;
  document.getElementById('zoom-level').textContent = zoom.toFixed(2) + 'x';
}
function applyWipe() {
  const p = Number(slider.value);
  top_.style.clipPath = `inset(0 ${100 - p}% 0 0)`; line.style.left = p + '%';
}
function showLayers() {
  top_.src = current.layers[leftSel.value].src; bottom.src = current.layers[rightSel.value].src;
}
function openImage(stem) {
  current = data.images.find(i => i.stem === stem);
  document.getElementById('viewer-title').textContent = stem;
  for (const sel of [leftSel, rightSel]) {
    sel.innerHTML = '';
    current.layers.forEach((l, i) => sel.add(new Option(l.label, i)));
  }
  leftSel.value = 0; rightSel.value = current.layers.length - 1;
  zoom = 1; panX = 0; panY = 0; applyView(); showLayers(); applyWipe();
  viewer.classList.add('open'); viewer.scrollIntoView();
}
document.querySelectorAll('button.open').forEach(b =>
  b.addEventListener('click', () => openImage(b.dataset.stem)));
leftSel.addEventListener('change', showLayers); rightSel.addEventListener('change', showLayers);
slider.addEventListener('input', applyWipe);
stage.addEventListener('wheel', e => { e.preventDefault();
  const r = stage.getBoundingClientRect(), x = e.clientX - r.left, y = e.clientY - r.top;
  const f = e.deltaY < 0 ? 1.25 : 0.8; panX = x - (x - panX) * f; panY = y - (y - panY) * f;
  zoom *= f; applyView(); }, {passive: false});
let drag = null;
stage.addEventListener('mousedown', e => { drag = [e.clientX - panX, e.clientY - panY]; });
window.addEventListener('mouseup', () => { drag = null; });
window.addEventListener('mousemove', e => { if (drag) {
  panX = e.clientX - drag[0]; panY = e.clientY - drag[1]; applyView(); } });
document.getElementById('zoom-reset').addEventListener('click', () => {
  zoom = 1; panX = 0; panY = 0; applyView(); });
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{style}</style></head>
<body>
<h1>{title}</h1>
<p>{count} images; methods: {methods}. Click a column header to sort; the best value per
metric (per image and on average) is highlighted.</p>
<h2 id="averages">Averages per method</h2>
<div class="charts">{charts}</div>
<h2 id="table">Metrics per image</h2>
<div class="table-scroll"><table id="metrics"><thead><tr>
<th data-col="0">image</th><th data-col="1">method</th>{header}
</tr></thead><tbody>{body}</tbody><tfoot>{means}</tfoot></table></div>
<h2 id="images">Images</h2>
<div id="viewer"><h3 id="viewer-title"></h3>
<label>left <select id="left"></select></label>
<label>right <select id="right"></select></label>
<label>wipe <input id="wipe" type="range" min="0" max="100" value="50"></label>
<button id="zoom-reset">reset zoom</button> <span id="zoom-level">1.00x</span>
(wheel to zoom, drag to pan; both sides move together)
<div id="stage"><img id="bottom-layer" alt="right"><img id="top-layer" alt="left">
<div id="wipe-line"></div></div></div>
<div id="gallery">{gallery}</div>
<script type="application/json" id="report-data">{data}</script>
<script>{script}</script>
</body></html>
"""
