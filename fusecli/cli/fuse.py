"""`fuse <task>`: one command per registered task, built from its TaskSpec."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from fusecli.cli.common import (
    align_option,
    compression_option,
    crop_option,
    depth_option,
    json_option,
    method_option,
    options_of,
    output_in_folder,
    overwrite_option,
    parse_depth,
    precision_option,
    quality_option,
    status,
    strip_option,
    tile_option,
    weights_option,
)
from fusecli.hookspecs import MethodSpec, TaskSpec
from fusecli.methods import DEFAULT_METHOD
from fusecli.plugins import get_catalog

if TYPE_CHECKING:  # the pipeline (and torch) load only when a task runs, not for --help
    import torch

    from fusecli.pipeline import FusedFile


def chosen_method(name: str) -> MethodSpec | None:
    """The ``--method`` to pass to the pipeline; None for the task's own network (pslpt)."""
    method = get_catalog().get_method(name.strip())  # raises if unknown or ambiguous
    return None if method.spec.name == DEFAULT_METHOD else method.spec


def describe_task(spec: TaskSpec) -> str:
    """The ``--help`` text of ``fuse <task>``: summary, roles in order, colour and FAF set."""
    roles = [role.name for role in spec.roles]
    if spec.is_stack:
        role = spec.roles[0]
        inputs = [
            f"SOURCES: {spec.inputs_text()} images, each one {role.name}: {role.description}."
        ]
    else:
        inputs = [
            f"SOURCE {i + 1} ({role.name}): {role.description}."
            for i, role in enumerate(spec.roles)
        ]
    return "\n\n".join(
        [
            spec.help,
            *inputs,
            f"Output: the first source's size and the deepest source's bit depth; colour: "
            f"{spec.color.describe(roles)} (grey sources give a grey result); alpha is dropped. "
            f"FAF set {spec.faf_set}.",
        ]
    )


def _metavar(spec: TaskSpec) -> str:
    if spec.is_stack:
        name = spec.roles[0].name.upper().replace(" ", "_")
        return f"{name}..."
    return " ".join(role.name.upper().replace(" ", "_") for role in spec.roles)


def tile_progress(console: Console) -> tuple[Progress | None, Callable[[int, int], None] | None]:
    """A transient tile progress bar on a terminal; (None, None) when output is not a terminal."""
    if not console.is_terminal:
        return None, None
    progress = Progress(
        TextColumn("fusing tiles"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    task_id = progress.add_task("tiles", total=None)

    def update(done: int, total: int) -> None:
        progress.update(task_id, completed=done, total=total)

    return progress, update


def result_record(
    spec: TaskSpec, result: FusedFile, device: torch.device, method: str = DEFAULT_METHOD
) -> dict[str, object]:
    """The ``--json`` record of one fused file."""
    return {
        "task": spec.name,
        "method": method,
        "sources": [str(p) for p in result.sources],
        "output": str(result.output),
        "width": result.width,
        "height": result.height,
        "channels": result.channels,
        "bit_depth": result.bit_depth,
        "weights": None if result.weights is None else str(result.weights),
        "device": str(device),
        "seconds": round(result.seconds, 3),
        "metadata_from": str(result.metadata_from) if result.metadata_from else None,
        "notes": list(result.notes),
        "source_map": None if result.source_map is None else str(result.source_map),
        "alignment": (
            {"crop": list(result.crop), "frames": [m.as_dict() for m in result.motions]}
            if result.crop is not None
            else None
        ),
    }


def _make_command(spec: TaskSpec) -> Callable[..., None]:
    def command(
        ctx: typer.Context,
        sources: list[Path] = typer.Argument(
            ...,
            metavar=_metavar(spec),
            exists=True,
            dir_okay=False,
            readable=True,
            help=f"{spec.inputs_text()} registered source images (PNG, JPEG, BMP, TIFF), "
            "in the order above.",
            show_default=False,
        ),
        output: Path = typer.Option(
            ...,
            "-o",
            "--output",
            help="Output image; its extension picks the format (.png, .jpg, .bmp, .tif). "
            "An existing folder gets the output named after the first source.",
            show_default=False,
        ),
        weights: Path | None = weights_option(f"the shipped {spec.default_weights}"),
        tile: int | None = tile_option(),
        resize: bool = typer.Option(
            False, "--resize", help="Resize sources to the first one's size instead of refusing."
        ),
        overwrite: bool = overwrite_option(),
        strip: bool = strip_option(),
        depth: str | None = depth_option(),
        quality: int | None = quality_option(),
        compression: str | None = compression_option(),
        align: bool = align_option(),
        crop: bool = crop_option(),
        json_out: bool = json_option("Print a JSON record on stdout."),
        method_name: str = method_option(),
        precision: str = precision_option(),
        save_map: Path | None = typer.Option(
            None,
            "--save-map",
            metavar="PATH",
            dir_okay=False,
            help="Also write a grey map (.png, .tif, .bmp) of which source each output pixel "
            "mostly came from: source k of n is 255*k/(n-1). Network only.",
            show_default=False,
        ),
    ) -> None:
        from fusecli.pipeline import fuse_files

        task = get_catalog().get(spec.name)  # raises if two packages registered this name
        method = chosen_method(method_name)
        device = options_of(ctx).device
        output = output_in_folder(output, sources[0])
        status(ctx, f"device {device}, method {method_name.strip()}", verbose=True)
        progress, update = tile_progress(Console(stderr=True))
        with progress or nullcontext():
            result = fuse_files(
                task.spec,
                sources,
                output,
                weights=weights,
                device=device,
                overwrite=overwrite,
                resize=resize,
                tile_size=tile,
                progress=update,
                keep_metadata=not strip,
                bit_depth=parse_depth(depth),
                quality=quality,
                compression=compression,
                align=align,
                crop=crop,
                method=method,
                precision=precision,
                source_map=save_map,
            )
        if result.weights is not None:
            status(ctx, f"weights {result.weights}", verbose=True)
        for note in result.notes:
            status(ctx, f"note: {note}")
        if json_out:
            record = result_record(task.spec, result, device, method_name.strip())
            typer.echo(json.dumps(record))
        colour = "colour" if result.channels == 3 else "grey"
        status(
            ctx,
            f"wrote {result.output} ({result.width}x{result.height}, {colour}, "
            f"{result.bit_depth}-bit) in {result.seconds:.1f} s",
        )
        if result.source_map is not None:
            status(ctx, f"wrote source map {result.source_map}")

    command.__doc__ = describe_task(spec)
    return command


def register(app: typer.Typer) -> None:
    """Add ``fuse <task>`` for every task in the catalog; print one warning per broken plugin
    (not while the shell asks for completions: they would garble the prompt)."""
    catalog = get_catalog()
    completing = "_FUSE_COMPLETE" in os.environ
    for warning in [] if completing else catalog.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for name in sorted(catalog.tasks):
        spec = catalog.tasks[name].spec
        app.command(name=name, help=describe_task(spec), rich_help_panel="Fusion tasks")(
            _make_command(spec)
        )
