"""`fuse <task>`: one command per registered task, built from its TaskSpec."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import typer

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
from fusecli.errors import FuseError
from fusecli.hookspecs import MethodSpec, TaskSpec
from fusecli.methods import DEFAULT_METHOD
from fusecli.plugins import get_catalog

if TYPE_CHECKING:  # the pipeline (and torch) load only when a task runs, not for --help
    import torch
    from rich.console import Console
    from rich.progress import Progress

    from fusecli.pipeline import FusedFile


def chosen_method(name: str) -> MethodSpec | None:
    """The ``--method`` to pass to the pipeline; None for the task's own network (pslpt)."""
    method = get_catalog().get_method(name.strip())  # raises if unknown or ambiguous
    return None if method.spec.name == DEFAULT_METHOD else method.spec


def describe_task(spec: TaskSpec) -> str:
    """The ``--help`` text of ``fuse <task>``: summary, roles in order, colour and FAF set."""
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
            f"{spec.colour_text()} (grey sources give a grey result); alpha is dropped. "
            f"FAF set {spec.faf_set}."
            + (
                " Fine detail: the sources' own, the strongest per pixel; coarser structure "
                "and brightness: the network's."
                if spec.compose == "detail"
                else ""
            ),
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
    # Imported here: `fuse <task> --help` and completion load this module, not the bar.
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

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


def named_as_given(result: FusedFile, given: Sequence[Path]) -> FusedFile:
    """``result`` with its sources, and the one its metadata came from, named as on the command
    line: ``-`` for standard input, not the scratch file that held it, which is deleted by the
    time anyone reads the record."""
    as_given = dict(zip(result.sources, given, strict=True))
    metadata_from = result.metadata_from
    if metadata_from is not None:
        metadata_from = as_given.get(metadata_from, metadata_from)
    return dataclasses.replace(result, sources=tuple(given), metadata_from=metadata_from)


def existing_sources(
    ctx: typer.Context, param: typer.CallbackParam, sources: list[Path]
) -> list[Path]:
    """The parser's exists/readable check of the sources, which lets ``-`` (stdin) through.

    Typer's own ``allow_dash`` does not, for ``Path`` arguments; a missing file is a usage
    error (exit 2) naming the argument, as with ``exists=True``.
    """
    for source in sources:
        if str(source) == "-":
            continue
        if not source.exists():
            problem = "does not exist"
        elif source.is_dir():
            problem = "is a directory"
        elif not os.access(source, os.R_OK):
            problem = "is not readable"
        else:
            continue
        raise typer.BadParameter(f"file {str(source)!r} {problem}.", ctx=ctx, param=param)
    return sources


def _make_command(spec: TaskSpec) -> Callable[..., None]:
    def command(
        ctx: typer.Context,
        sources: list[Path] = typer.Argument(
            ...,
            metavar=_metavar(spec),
            callback=existing_sources,
            help=f"{spec.inputs_text()} registered source images (PNG, JPEG, BMP, TIFF; camera "
            "RAW with the raw extra), in the order above; - reads one of them from standard "
            "input.",
            show_default=False,
        ),
        output: Path = typer.Option(
            ...,
            "-o",
            "--output",
            help="Output image; its extension picks the format (.png, .jpg, .bmp, .tif). "
            "An existing folder gets the output named after the first source (the first file "
            "when that is -); - writes the "
            "image to standard output (with --ext).",
            show_default=False,
        ),
        ext: str | None = typer.Option(
            None,
            "--ext",
            metavar="png|jpg|tif|bmp",
            help="Format of the image written by -o - (required there).",
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
        to_stdout = str(output) == "-"
        stdout_suffix = stream_suffix(ext, to_stdout=to_stdout, json_out=json_out)
        given = list(sources)
        with tempfile.TemporaryDirectory(prefix="fusecli-") as scratch:
            sources = read_stdin_source(sources, Path(scratch))
            shown_as = StreamNames()
            for source, as_given in zip(sources, given, strict=True):
                if str(as_given) == "-":
                    shown_as.add(source, "standard input (-)")
            if to_stdout:  # written to a file first, atomically, like any output
                target = Path(scratch) / f"stdout{stdout_suffix}"
                shown_as.add(target, "<stdout>")
            else:
                # Named after the first source that has a name: standard input has none.
                named = next(s for s, g in zip(sources, given, strict=True) if str(g) != "-")
                target = output_in_folder(output, named)
            with shown_as.in_errors():
                result = _fuse(
                    ctx, spec, sources, target, method_name, shown_as,
                    weights=weights, overwrite=overwrite, resize=resize,
                    tile_size=tile, keep_metadata=not strip, bit_depth=parse_depth(depth),
                    quality=quality, compression=compression, align=align, crop=crop,
                    precision=precision, source_map=save_map,
                )  # fmt: skip
            if to_stdout:
                # Only the image goes to stdout; status lines stay on stderr.
                sys.stdout.buffer.write(result.output.read_bytes())
                sys.stdout.buffer.flush()
        shown = "<stdout>" if to_stdout else result.output
        if json_out:
            shown_result = named_as_given(result, given)
            record = result_record(spec, shown_result, options_of(ctx).device, method_name.strip())
            typer.echo(json.dumps(record))
        colour = "colour" if result.channels == 3 else "grey"
        status(
            ctx,
            f"wrote {shown} ({result.width}x{result.height}, {colour}, "
            f"{result.bit_depth}-bit) in {result.seconds:.1f} s",
        )
        if result.source_map is not None:
            status(ctx, f"wrote source map {result.source_map}")

    command.__doc__ = describe_task(spec)
    return command


def _fuse(
    ctx: typer.Context,
    spec: TaskSpec,
    sources: list[Path],
    output: Path,
    method_name: str,
    shown_as: Callable[[str], str],
    **settings: object,
) -> FusedFile:
    """Run one task on files, with a tile progress bar; print the notes (naming files with
    ``shown_as``) and the -v lines."""
    from rich.console import Console

    from fusecli.pipeline import fuse_files

    task = get_catalog().get(spec.name)  # raises if two packages registered this name
    device = options_of(ctx).device
    status(ctx, f"device {device}, method {method_name.strip()}", verbose=True)
    progress, update = tile_progress(Console(stderr=True))
    with progress or nullcontext():
        result = fuse_files(
            task.spec,
            sources,
            output,
            device=device,
            progress=update,
            method=chosen_method(method_name),
            **settings,  # type: ignore[arg-type]
        )
    if result.weights is not None:
        status(ctx, f"weights {result.weights}", verbose=True)
    for note in result.notes:
        status(ctx, f"note: {shown_as(note)}")
    return result


def stream_suffix(ext: str | None, *, to_stdout: bool, json_out: bool) -> str:
    """The extension of the image written to stdout (``-o -``), or '' when writing a file.

    Raises:
        typer.BadParameter: --ext missing with -o - or given without it, or --json with -o -
            (stdout carries the image alone). A usage error: exit status 2.
    """
    from fusecli.imagefiles import SUPPORTED_EXTENSIONS

    if not to_stdout:
        if ext is not None:
            raise typer.BadParameter(
                "applies to -o - only; a file's extension picks its format", param_hint="--ext"
            )
        return ""
    if ext is None:
        raise typer.BadParameter("-o - needs --ext png, jpg, tif or bmp", param_hint="--ext")
    if json_out:
        raise typer.BadParameter("stdout carries the image with -o -", param_hint="--json")
    suffix = "." + ext.strip().lower().lstrip(".")
    if suffix not in SUPPORTED_EXTENSIONS:
        raise typer.BadParameter(f"{ext} is not png, jpg, tif or bmp", param_hint="--ext")
    if sys.stdout.isatty():
        raise FuseError("refusing to write an image to a terminal; redirect stdout (> out.png)")
    return suffix


class StreamNames:
    """Names standard input and output as the user gave them (``-``) in errors and notes.

    ``-`` sources and ``-o -`` go through scratch files, which are deleted when the command
    ends; a message naming ``/tmp/fusecli-x/stdin.png`` would point at nothing.
    """

    def __init__(self) -> None:
        self._patterns: list[tuple[re.Pattern[str], str]] = []

    def add(self, scratch: Path, shown: str) -> None:
        # The full path first; then the bare file name, which some messages use, as a whole word.
        self._patterns.append((re.compile(re.escape(str(scratch))), shown))
        self._patterns.append((re.compile(rf"(?<![\w./-]){re.escape(scratch.name)}\b"), shown))

    def __call__(self, text: str) -> str:
        for pattern, shown in self._patterns:
            text = pattern.sub(shown, text)
        return text

    @contextmanager
    def in_errors(self) -> Iterator[None]:
        """Rename scratch files in a FuseError raised inside the block."""
        try:
            yield
        except FuseError as exc:
            exc.problem, exc.remedy = self(exc.problem), self(exc.remedy)
            exc.args = tuple(self(a) if isinstance(a, str) else a for a in exc.args)
            raise


def read_stdin_source(sources: Sequence[Path], scratch: Path) -> list[Path]:
    """The sources with ``-`` replaced by a file in ``scratch`` holding standard input.

    The file is named ``stdin`` with the extension of the format its bytes announce, so it is
    read like any other source.

    Raises:
        typer.BadParameter: ``-`` is given more than once (stdin holds one image).
        FuseError: stdin is a terminal, is empty, or holds no PNG, JPEG, TIFF or BMP image.
    """
    from fusecli.imagefiles import sniff_format

    dashes = [i for i, source in enumerate(sources) if str(source) == "-"]
    if not dashes:
        return list(sources)
    if len(dashes) > 1:
        raise typer.BadParameter("- (standard input) may stand for one source only")
    if sys.stdin.isatty():
        raise FuseError("- reads an image from standard input, which is a terminal; pipe one in")
    data = sys.stdin.buffer.read()
    suffix = sniff_format(data[:8])
    if suffix is None:
        what = "is empty" if not data else "holds no PNG, JPEG, TIFF or BMP image"
        raise FuseError(f"standard input (-) {what}; pipe an image file into it")
    path = scratch / f"stdin{suffix}"
    path.write_bytes(data)
    return [path if i == dashes[0] else source for i, source in enumerate(sources)]


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
