"""What the commands share: the root's global options, option declarations, error messages."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from fusecli.errors import FuseError

if TYPE_CHECKING:  # torch is imported only by commands that run a network (fast --version)
    import torch

# How the command line fixes what FuseError.hint names; "{command}" is the failing command.
HINTS: dict[str, str] = {
    "overwrite": "pass --overwrite to replace it",
    "resize": "register the images to one size or pass --resize",
    "weights": "pass a weights file with --weights PATH, e.g. one made by "
    "`fuse weights convert two_fuse_rule.pth -o pslpt.safetensors`",
    "convert": "convert the authors' .pth with `fuse weights convert`",
    "sources": "see `fuse {command} --help`",
    "reference": "pass one with --ref.",
    "metrics": "leave it out with --metrics.",
    "method": "see `fuse methods` for the methods and what they suit",
    "init": "run the previous stage first or pass --init WEIGHTS",
    "resume": "pass --resume to continue it or choose another folder with -o",
    "no-resume": "start without --resume or give the run's folder with -o",
    "internal": "this is a bug in fusecli or the task's plugin: please report it with the input "
    "images and what `--debug` prints",
    "source-map-method": "leave out --method (a source map needs the network) or --save-map",
}


def error_message(exc: FuseError, command: str = "") -> str:
    """The one-line message of a FuseError, its fix phrased with this command line's flags."""
    hint = HINTS.get(exc.hint)
    if hint is None:
        return str(exc)
    return f"{exc.problem}; {hint.format(command=command or 'COMMAND')}"


@dataclass
class GlobalOptions:
    """Options of the root callback, shared by every command through ``ctx.obj``.

    Attributes:
        debug: show tracebacks.
        device_name: ``--device`` as given (``auto`` lets ``fuse train`` use the recipe's).
        quiet: ``-q``: no status lines ("wrote", "note"), only errors and data.
        verbose: ``-v``: also say which device, method and weights were used.
    """

    debug: bool = False
    device_name: str = "auto"
    quiet: bool = False
    verbose: bool = False
    resolved_device: torch.device | None = field(default=None, repr=False)

    @property
    def device(self) -> torch.device:
        """``--device`` resolved, where the fusion commands run the network.

        Resolved on first use, because resolving imports torch, which ``--help`` and shell
        completion must not wait for; the root resolves it before any command runs.
        """
        if self.resolved_device is None:
            self.resolved_device = resolve_device(self.device_name)
        return self.resolved_device


def resolve_device(name: str) -> torch.device:
    """``--device``: under torchrun with CUDA, ``auto`` takes the GPU of this LOCAL_RANK."""
    import torch

    from fusecli.engine import select_device

    local_rank = os.environ.get("LOCAL_RANK")
    if name.strip().lower() == "auto" and local_rank is not None and torch.cuda.is_available():
        return select_device(f"cuda:{int(local_rank)}")
    return select_device(name)


def options_of(ctx: typer.Context) -> GlobalOptions:
    """The root's options (defaults when a command is invoked without the root app)."""
    options = ctx.find_root().obj
    return options if isinstance(options, GlobalOptions) else GlobalOptions()


def status(ctx: typer.Context, line: str, *, verbose: bool = False) -> None:
    """A status line ("wrote ...", "note: ...") on stderr, so stdout carries only data.

    Nothing with ``-q``; a ``verbose`` line only with ``-v``.
    """
    options = options_of(ctx)
    if options.quiet or (verbose and not options.verbose):
        return
    print(line, file=sys.stderr)


def output_in_folder(output: Path, first_source: Path) -> Path:
    """``-o FOLDER``: an existing folder gets the output named after the first source (as a
    TIFF when that is camera RAW)."""
    if output.is_dir():
        from fusecli.imagefiles import writable_name

        return output / writable_name(first_source)
    return output


def weights_option(default: str) -> Any:
    """``--weights PATH``; ``default`` says what is used without it."""
    return typer.Option(
        None,
        "--weights",
        exists=True,
        dir_okay=False,
        help=f"PSLPT weights (.safetensors); default: {default}.",
        show_default=False,
    )


def output_folder_option(help_text: str) -> Any:
    """``-o/--output FOLDER`` of the commands that write several files."""
    return typer.Option(..., "-o", "--output", file_okay=False, help=help_text, show_default=False)


def tile_option() -> Any:
    """``--tile N``: the tile side of tiled inference."""
    return typer.Option(
        None,
        "--tile",
        min=16,
        help="Tile side in pixels for large images (>= 16, rounded to 16); "
        "default: the largest that fits in memory.",
        show_default=False,
    )


def overwrite_option(help_text: str = "Replace an existing output.") -> Any:
    """``--overwrite``, also spelled ``--force``."""
    return typer.Option(False, "--overwrite", "--force", help=help_text)


def json_option(help_text: str) -> Any:
    """``--json``."""
    return typer.Option(False, "--json", help=help_text)


# ---------------------------------------------------------------- output file options

DEPTHS = {"8": 8, "16": 16, "float": 32}


def parse_depth(text: str | None) -> int | None:
    """``--depth 8|16|float`` as bits (float = 32); None keeps the deepest source's depth."""
    if text is None:
        return None
    depth = DEPTHS.get(text.strip().lower())
    if depth is None:
        raise FuseError(f"--depth {text} is not one of 8, 16, float")
    return depth


def strip_option() -> Any:
    """``--strip``."""
    return typer.Option(
        False,
        "--strip",
        help="Write no EXIF or ICC profile; default: keep the reference frame's (JPEG, PNG, TIFF).",
    )


def depth_option() -> Any:
    """``--depth 8|16|float``."""
    return typer.Option(
        None,
        "--depth",
        metavar="8|16|float",
        help="Bits per channel of the output: 8, 16 (PNG, TIFF) or float (32-bit TIFF); "
        "default: the deepest source's, as far as the format holds it.",
        show_default=False,
    )


def quality_option() -> Any:
    """``--quality N`` (JPEG)."""
    return typer.Option(
        None,
        "--quality",
        min=1,
        max=100,
        help="JPEG quality 1-100; default 95.",
        show_default=False,
    )


def compression_option() -> Any:
    """``--compression`` (TIFF, PNG)."""
    return typer.Option(
        None,
        "--compression",
        help="TIFF: none, deflate (default), lzw or packbits; PNG: zlib level 0-9 (default 6).",
        show_default=False,
    )


def align_option() -> Any:
    """``--align``."""
    return typer.Option(
        False,
        "--align",
        help="Register every frame to the middle one first (hand-held stacks and brackets; "
        "needs the fusecli[align] extra).",
    )


def crop_option() -> Any:
    """``--crop/--no-crop``."""
    return typer.Option(
        True,
        "--crop/--no-crop",
        help="After --align, keep only the region every frame covers (default), or keep the "
        "full frame and fill its border by repeating edge pixels.",
    )


def precision_option() -> Any:
    """``--precision fp32|bf16|auto``."""
    return typer.Option(
        "auto",
        "--precision",
        metavar="fp32|bf16|auto",
        help="Arithmetic of the network: fp32, bf16 (only where the CPU has avx512_bf16 or AMX, "
        "or on a GPU) or auto (bf16 where native and measured to be as good; else fp32). "
        "Default: auto.",
    )


def method_option(help_text: str = "") -> typer.models.OptionInfo:
    """``--method``: a fusion method from ``fuse methods``; the network (pslpt) by default."""
    return typer.Option(
        "pslpt",
        "--method",
        help=help_text or "Fusion method, from `fuse methods` (default: pslpt, the network).",
    )
