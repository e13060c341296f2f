"""`fuse export`: one task's network as an ONNX or TorchScript file that runs without fusecli."""

from __future__ import annotations

from pathlib import Path

import typer

from fusecli.cli.common import overwrite_option, weights_option
from fusecli.errors import FuseError
from fusecli.plugins import get_catalog

# What -o's extension says when --format is not given.
FORMAT_OF_SUFFIX = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript"}


def _export_format(text: str | None, output: Path) -> str:
    if text is None:
        found = FORMAT_OF_SUFFIX.get(output.suffix.lower())
        if found is None:
            raise FuseError(
                f"cannot tell the format from {output.name}; pass --format onnx or "
                "--format torchscript"
            )
        return found
    chosen = text.strip().lower()
    from fusecli.engine.export import EXPORT_FORMATS  # torch: only once a command runs

    if chosen not in EXPORT_FORMATS:
        raise FuseError(f"--format {text} is not one of {', '.join(EXPORT_FORMATS)}")
    return chosen


def _check_output(output: Path, overwrite: bool) -> None:
    if output.is_dir():
        raise FuseError(f"{output} is a folder; give an output file name")
    if not output.parent.is_dir():
        raise FuseError(f"the output folder {output.parent} does not exist; create it first")
    if output.exists() and not overwrite:
        raise FuseError(f"{output} already exists", hint="overwrite")


def export(
    output: Path = typer.Option(
        ...,
        "-o",
        "--output",
        help="Model file to write (.onnx, or .pt for TorchScript).",
        show_default=False,
    ),
    format_text: str | None = typer.Option(
        None,
        "--format",
        metavar="onnx|torchscript",
        help="File format; default: from the extension of -o (.onnx, .pt, .ts).",
        show_default=False,
    ),
    task: str = typer.Option(
        "ivf", "--task", help="Task whose network (FAF set and weights) to export; default ivf."
    ),
    weights: Path | None = weights_option("the task's shipped weights"),
    overwrite: bool = overwrite_option(),
) -> None:
    """Write one task's network as a model file that runs without fusecli.

    The file takes two float32 planes a, b of shape (N, 1, H, W) in [0, 1] (N, H, W free,
    H, W >= 16) in the task's role order and returns the fused plane; padding to a multiple
    of 16 and the crop back are inside. Colour (luminance in, chroma back) is the caller's:
    README "Deploying a model" shows it. ONNX needs the fusecli[export] extra.
    """
    from fusecli.engine.export import export_network
    from fusecli.pipeline import open_network

    export_format = _export_format(format_text, output)
    spec = get_catalog().get(task).spec  # raises on an unknown task
    if spec.min_inputs != 2:
        raise FuseError(f"task {task!r} does not fuse two images; an export takes two")
    _check_output(output, overwrite)
    net, weights_path = open_network(spec, weights, "cpu")
    export_network(net, spec.faf_set, output, export_format)
    typer.echo(
        f"wrote {output} ({export_format}, task {spec.name}, FAF set {spec.faf_set}, "
        f"weights {weights_path.name})",
        err=True,
    )


def register(app: typer.Typer) -> None:
    """Add ``fuse export``."""
    app.command(name="export")(export)
