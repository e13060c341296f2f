"""`fuse align`: register hand-held frames to the middle one and write them, without fusing."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from fusecli.cli.common import (
    crop_option,
    json_option,
    output_folder_option,
    overwrite_option,
    status,
    strip_option,
)
from fusecli.errors import FuseError


def align(
    ctx: typer.Context,
    frames: list[Path] = typer.Argument(
        ...,
        metavar="FRAME...",
        exists=True,
        dir_okay=False,
        readable=True,
        help="2 or more frames of one scene (PNG, JPEG, BMP, TIFF, camera RAW), one size.",
        show_default=False,
    ),
    outdir: Path = output_folder_option(
        "Folder for the registered frames (created); each keeps its file name and format."
    ),
    model: str = typer.Option(
        "homography",
        "--model",
        help="Motion model: homography (default; shifts, rotation, scale, perspective) or affine.",
    ),
    crop: bool = crop_option(),
    strip: bool = strip_option(),
    overwrite: bool = overwrite_option("Replace registered frames that already exist."),
    json_out: bool = json_option("Print the estimated motion of every frame as JSON."),
) -> None:
    """Register frames to the middle one with OpenCV ECC and write them, unfused.

    Robust to exposure differences (brackets) and to the slight scale change of focus stacks.
    A frame that cannot be registered (another scene, too little overlap) is an error naming
    it, and then nothing is written.
    """
    # Imported here: OpenCV and torch load only when frames are aligned, not for --help.
    from fusecli.align import MOTION_MODELS
    from fusecli.pipeline import align_files

    if model not in MOTION_MODELS:
        raise FuseError(f"--model {model} is not one of {', '.join(MOTION_MODELS)}")
    outdir.mkdir(parents=True, exist_ok=True)
    result = align_files(
        frames, outdir, overwrite=overwrite, crop=crop, model=model, keep_metadata=not strip
    )
    if json_out:
        record = {
            "reference": str(result.reference),
            "crop": list(result.crop),
            "frames": [
                {"source": str(source), "output": str(output), **motion.as_dict()}
                for source, output, motion in zip(
                    result.sources, result.outputs, result.motions, strict=True
                )
            ],
        }
        typer.echo(json.dumps(record, indent=2))
        return
    for source, motion in zip(result.sources, result.motions, strict=True):
        typer.echo(
            f"{source.name}: shift {motion.shift_x:+.2f}, {motion.shift_y:+.2f} px, "
            f"rotation {motion.rotation_degrees:+.3f} deg, scale {motion.scale:.4f}"
        )
    _, _, height, width = result.crop
    status(ctx, f"wrote {len(result.outputs)} frames ({width}x{height}) to {outdir}")


def register(app: typer.Typer) -> None:
    """Add ``fuse align``."""
    app.command(name="align")(align)
