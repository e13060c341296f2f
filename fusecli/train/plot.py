"""Loss curves of a training log (log.jsonl) drawn to a PNG with Pillow, without matplotlib.

Pillow is already installed as imageio's dependency; a plot needs only lines, dots and the
default bitmap font, so a plotting library would be a heavy dependency for little gain. One
panel per stage: the training loss (thin, light: every logged step; thick: moving average) and
the validation loss (red, with dots), on a log10 y axis because losses fall over decades.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fusecli.errors import FuseError

__all__ = ["moving_average", "nice_ticks", "plot_log", "read_log"]

PANEL_W, PANEL_H = 560, 380
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 64, 16, 30, 40
LIGHT, TRAIN, VAL, AXIS, GRID = (
    (170, 190, 230),
    (30, 80, 200),
    (210, 40, 40),
    (0, 0, 0),
    (225, 225, 225),
)


def read_log(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL training log.

    Raises:
        FuseError: unreadable file or a line that is not JSON.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise FuseError(f"cannot read training log {path}: {exc.strerror}") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise FuseError(
                f"{path} line {number} is not JSON; is it a log.jsonl of fuse train?"
            ) from None
    return rows


def moving_average(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` values (shorter at the start), same length as input."""
    v = np.asarray(values, dtype=np.float64)
    c = np.concatenate([[0.0], np.cumsum(v)])
    idx = np.arange(1, len(v) + 1)
    start = np.maximum(idx - window, 0)
    return (c[idx] - c[start]) / (idx - start)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (1, 2, 5 x 10^k steps) covering [low, high]."""
    if high <= low:
        return [low]
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _label(v: float) -> str:
    return f"{v:.3g}"


def _panel(rows: list[dict[str, Any]], stage: int, title: str) -> Image.Image:
    img = Image.new("RGB", (PANEL_W, PANEL_H), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    train = [
        (r["step"], r["loss"]) for r in rows if r.get("kind") == "train" and r["stage"] == stage
    ]
    val = [
        (r["step"], r["val_loss"]) for r in rows if r.get("kind") == "val" and r["stage"] == stage
    ]
    points = [p for p in train + val if p[1] > 0 and math.isfinite(p[1])]
    draw.text((MARGIN_L, 8), title, fill=AXIS, font=font)
    x0, y0, x1, y1 = MARGIN_L, MARGIN_T, PANEL_W - MARGIN_R, PANEL_H - MARGIN_B
    draw.rectangle((x0, y0, x1, y1), outline=AXIS)
    if not points:
        draw.text((x0 + 10, y0 + 10), "no data", fill=AXIS, font=font)
        return img
    steps = [p[0] for p in points]
    logs = [math.log10(p[1]) for p in points]
    smin, smax = min(0, *steps), max(steps)
    lmin, lmax = min(logs), max(logs)
    if lmax - lmin < 1e-6:
        lmin, lmax = lmin - 0.5, lmax + 0.5
    pad = 0.05 * (lmax - lmin)
    lmin, lmax = lmin - pad, lmax + pad
    smax = smax if smax > smin else smin + 1

    def to_px(step: float, value: float) -> tuple[float, float]:
        x = x0 + (step - smin) / (smax - smin) * (x1 - x0)
        y = y1 - (math.log10(value) - lmin) / (lmax - lmin) * (y1 - y0)
        return x, y

    for t in nice_ticks(smin, smax):
        x = to_px(t, 10**lmin)[0]
        draw.line((x, y0, x, y1), fill=GRID)
        draw.line((x, y1, x, y1 + 4), fill=AXIS)
        draw.text((x - 3 * len(_label(t)), y1 + 6), _label(t), fill=AXIS, font=font)
    for e in nice_ticks(lmin, lmax):
        y = to_px(smin, 10**e)[1]
        draw.line((x0, y, x1, y), fill=GRID)
        draw.line((x0 - 4, y, x0, y), fill=AXIS)
        draw.text((4, y - 5), _label(10**e), fill=AXIS, font=font)
    draw.rectangle((x0, y0, x1, y1), outline=AXIS)
    draw.text(((x0 + x1) // 2 - 12, PANEL_H - 16), "step", fill=AXIS, font=font)
    train = [p for p in train if p[1] > 0 and math.isfinite(p[1])]
    if len(train) > 1:
        draw.line([to_px(s, v) for s, v in train], fill=LIGHT, width=1)
        smooth = moving_average([v for _, v in train], max(1, len(train) // 30))
        draw.line(
            [to_px(s, v) for (s, _), v in zip(train, smooth, strict=True)], fill=TRAIN, width=2
        )
    val = [p for p in val if p[1] > 0 and math.isfinite(p[1])]
    if len(val) > 1:
        draw.line([to_px(s, v) for s, v in val], fill=VAL, width=2)
    for s, v in val:
        x, y = to_px(s, v)
        draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=VAL)
    draw.line((x1 - 150, y0 + 12, x1 - 130, y0 + 12), fill=TRAIN, width=2)
    draw.text((x1 - 126, y0 + 6), "train loss", fill=AXIS, font=font)
    draw.line((x1 - 150, y0 + 26, x1 - 130, y0 + 26), fill=VAL, width=2)
    draw.text((x1 - 126, y0 + 20), "validation loss", fill=AXIS, font=font)
    return img


def plot_log(log: Path, output: Path) -> Path:
    """Draw one loss panel per stage found in ``log`` and write them side by side to ``output``.

    Args:
        log: log.jsonl written by the training loop.
        output: PNG path.

    Returns:
        ``output``.
    """
    rows = read_log(log)
    stages = sorted({r["stage"] for r in rows if "stage" in r})
    if not stages:
        raise FuseError(f"{log} holds no training rows; nothing to plot")
    names = {1: "stage 1: supervised MFF + MEF (Eq. 2)", 2: "stage 2: semi-supervised (Eq. 5)"}
    panels = [_panel(rows, s, names.get(s, f"stage {s}")) for s in stages]
    canvas = Image.new("RGB", (PANEL_W * len(panels), PANEL_H), "white")
    for i, panel in enumerate(panels):
        canvas.paste(panel, (i * PANEL_W, 0))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        canvas.save(output, format="PNG")
    except OSError as exc:
        raise FuseError(f"cannot write {output}: {exc}") from None
    return output
