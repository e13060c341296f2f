"""`fuse demo`: fuse simulated inputs for every task that has a demo; a labelled contact sheet.

No image data is needed: none of fusecli's dependencies ships a photograph that can be read
offline (imageio's standard images are downloaded on first use), so the demo draws a test scene
itself, or takes ``--image``, and each task simulates its inputs from it (``TaskSpec.
demo_inputs``; the built-in tasks' simulations are described in their plugins). The results and
the contact sheet say that the inputs are simulated.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from fusecli.cli.common import (
    json_option,
    options_of,
    output_folder_option,
    overwrite_option,
    status,
    weights_option,
)
from fusecli.errors import FuseError
from fusecli.hookspecs import TaskSpec
from fusecli.plugins import get_catalog

# torch, the pipeline, numpy, Pillow and fusecli.io load only when the demo runs: `fuse --help`
# and shell completion load this module too.
if TYPE_CHECKING:
    import torch
    from PIL import Image, ImageFont

SIMULATED_NOTE = "inputs are SIMULATED from one image"
_LABEL_HEIGHT = 18


def draw_scene(width: int, height: int) -> torch.Tensor:
    """A colourful test scene with fine texture, edges and text, drawn from scratch.

    Returns:
        (1, 3, height, width) float in [0, 1].
    """
    import numpy as np
    import torch
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):  # sky: blue at the top to pale near the horizon
        t = y / max(height - 1, 1)
        draw.line([(0, y), (width, y)], fill=(int(70 + 150 * t), int(130 + 90 * t), 235))
    ground = int(height * 0.62)
    draw.rectangle([0, ground, width, height], fill=(70, 140, 60))
    for x in range(0, width, max(width // 40, 2)):  # grass blades: fine detail for focus
        draw.line([(x, height), (x + 2, ground + (x * 7) % max(height - ground, 1))], (40, 95, 35))
    r = max(height // 10, 3)
    draw.ellipse([width * 0.78 - r, height * 0.18 - r, width * 0.78 + r, height * 0.18 + r],
                 fill=(255, 225, 90))  # fmt: skip
    houses = ((0.08, (200, 60, 50)), (0.36, (235, 200, 80)), (0.6, (90, 80, 170)))
    for left, colour in houses:
        x0, x1 = int(width * left), int(width * (left + 0.2))
        top = int(height * 0.38)
        draw.rectangle([x0, top, x1, ground], fill=colour, outline=(30, 30, 30))
        draw.polygon([(x0 - 4, top), ((x0 + x1) // 2, top - height // 7), (x1 + 4, top)],
                     fill=(120, 50, 40))  # fmt: skip
        for wx in range(x0 + 4, x1 - 6, 10):  # windows: a regular high-frequency pattern
            draw.rectangle([wx, top + 6, wx + 5, top + 12], fill=(250, 250, 210))
    font = ImageFont.load_default(size=max(height // 12, 8))
    draw.text((width * 0.05, height * 0.05), "fusecli", fill=(255, 255, 255), font=font)
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)[None].contiguous()


def _tile(pixels: torch.Tensor, label: str, font: ImageFont.ImageFont) -> Image.Image:
    import numpy as np
    from PIL import Image, ImageDraw

    array = (pixels[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    picture = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).convert("RGB")
    cell = Image.new("RGB", (picture.width, picture.height + _LABEL_HEIGHT), "white")
    cell.paste(picture, (0, _LABEL_HEIGHT))
    ImageDraw.Draw(cell).text((3, 3), label, fill="black", font=font)
    return cell


def contact_sheet(rows: list[list[tuple[torch.Tensor, str]]], title: Sequence[str]) -> Image.Image:
    """Lay labelled images out in rows (one per task): sources first, result last.

    Args:
        rows: per row, (image (1, C, H, W) in [0, 1], label) pairs.
        title: lines printed at the top.

    Returns:
        An RGB Pillow image.
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=11)
    title_font = ImageFont.load_default(size=13)
    tiles = [[_tile(p, label, font) for p, label in row] for row in rows]
    gap, line = 6, 17
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    title_width = max(int(measure.textlength(text, font=title_font)) for text in title)
    width = max(
        title_width + 2 * gap,
        *(sum(t.width for t in row) + gap * (len(row) + 1) for row in tiles),
    )
    header = gap + line * len(title) + gap
    height = header + sum(max(t.height for t in row) + gap for row in tiles)
    sheet = Image.new("RGB", (width, height), (235, 235, 235))
    draw = ImageDraw.Draw(sheet)
    for index, text in enumerate(title):
        draw.text((gap, gap + index * line), text, fill="black", font=title_font)
    top = header
    for row in tiles:
        left = gap
        for tile in row:
            sheet.paste(tile, (left, top))
            left += tile.width + gap
        top += max(t.height for t in row) + gap
    return sheet


def _fit(image: torch.Tensor, width: int) -> torch.Tensor:
    """Resize to ``width`` (keeping the aspect ratio, even sides); grey becomes RGB."""
    import torch.nn.functional as F

    if image.shape[1] == 1:
        image = image.repeat(1, 3, 1, 1)
    height = max(2 * round(image.shape[-2] * width / image.shape[-1] / 2), 16)
    return F.interpolate(image, size=(height, width), mode="area").clamp(0, 1)


def _simulated_path(outdir: Path, spec: TaskSpec, index: int) -> Path:
    return outdir / f"{spec.name}-{index + 1}-simulated.png"


def demo(
    ctx: typer.Context,
    outdir: Path = output_folder_option("Folder for the results (created)."),
    weights: Path | None = weights_option("the shipped weights"),
    image: Path | None = typer.Option(
        None,
        "--image",
        exists=True,
        dir_okay=False,
        help="Simulate the inputs from this photograph instead of a drawn test scene.",
        show_default=False,
    ),
    width: int = typer.Option(
        256, "--width", min=32, max=2048, help="Width of the demo images (32-2048)."
    ),
    overwrite: bool = overwrite_option("Replace earlier demo results."),
    json_out: bool = json_option("Print a JSON summary on stdout."),
) -> None:
    """Fuse simulated inputs for every task that has a demo; write a labelled contact sheet PNG."""
    import numpy as np
    import torch

    from fusecli.io import check_writable, read_image, write_image
    from fusecli.pipeline import fuse_sources, open_network, resolve_weights

    catalog = get_catalog()
    specs: list[TaskSpec] = [
        catalog.get(name).spec
        for name in sorted(catalog.tasks)
        if catalog.tasks[name].spec.demo_inputs
    ]
    if not specs:
        raise FuseError("none of the installed tasks has a demo (TaskSpec.demo_inputs)")
    # Resolve (and so check) the weights before any work: never fake a result.
    for spec in specs:
        resolve_weights(spec, weights)
    source = read_image(image).pixels if image is not None else None
    scene = _fit(source if source is not None else draw_scene(width, width * 3 // 4), width)
    origin = f"from {image.name}" if image is not None else "from a drawn test scene"
    simulated = {spec.name: list(spec.demo_inputs(scene)) for spec in specs}

    outdir.mkdir(parents=True, exist_ok=True)
    sheet_path = outdir / "contact-sheet.png"
    planned = [sheet_path]
    for spec in specs:
        planned += [_simulated_path(outdir, spec, i) for i in range(len(simulated[spec.name]))]
        planned.append(outdir / f"{spec.name}-fused.png")
    for path in planned:
        check_writable(path, overwrite=overwrite)

    device = options_of(ctx).device
    # Every network opens before the first file is written.
    networks = {spec.name: open_network(spec, weights, device) for spec in specs}
    rows, records = [], []
    for spec in specs:
        sources = simulated[spec.name]
        fused = fuse_sources(networks[spec.name][0], spec, sources)
        row = []
        for index, pixels in enumerate(sources):
            role = spec.role_of(index).name
            write_image(_simulated_path(outdir, spec, index), pixels, overwrite=overwrite)
            row.append((pixels, f"{spec.name} {index + 1}: {role} (sim.)"))
        write_image(outdir / f"{spec.name}-fused.png", fused, overwrite=overwrite)
        row.append((fused, f"{spec.name}: fused"))
        rows.append(row)
        records.append({"task": spec.name, "output": str(outdir / f"{spec.name}-fused.png")})
    weights_names = ", ".join(sorted({path.name for _, path in networks.values()}))
    title = [
        f"fusecli demo: {SIMULATED_NOTE} ({origin}), not real captures",
        f"weights: {weights_names}; each row: simulated sources, then the fused result",
    ]
    sheet = contact_sheet(rows, title)
    tensor = torch.from_numpy(np.asarray(sheet, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    write_image(sheet_path, tensor, overwrite=overwrite)
    if json_out:
        summary = {"simulated": True, "origin": origin, "weights": weights_names,
                   "contact_sheet": str(sheet_path), "tasks": records}  # fmt: skip
        typer.echo(json.dumps(summary, indent=2))
        return
    status(ctx, f"note: {SIMULATED_NOTE} ({origin}), not real captures")
    for record in records:
        status(ctx, f"wrote {record['output']}")
    status(ctx, f"contact sheet: {sheet_path}")


def register(app: typer.Typer) -> None:
    """Add ``fuse demo``."""
    app.command(name="demo")(demo)
