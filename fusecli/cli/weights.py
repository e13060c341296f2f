"""`fuse weights`: the shipped weights (checksum, training summary), and import of the authors'."""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from fusecli.cli.common import overwrite_option, status
from fusecli.errors import WeightsError

# rich's tables load only when one is printed: `fuse --help` and completion load this module.
if TYPE_CHECKING:  # the engine (and torch) load only when a subcommand runs, not for --help
    import torch

# Header keys shown as the training summary, in this order, when a weights file has them.
SUMMARY_KEYS = ("stage", "step", "val_loss", "trained_on", "training", "source", "note")
# Containers the authors' or other training scripts wrap a state dict in.
WRAPPER_KEYS = ("state_dict", "model", "net", "model_state_dict")


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (what a download page would list)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shipped_weights() -> list[Path]:
    """Every ``.safetensors`` file installed in the ``fusecli.weights`` package, by name."""
    folder = Path(str(resources.files("fusecli.weights")))
    return sorted(folder.glob("*.safetensors"))


def recipe_summary(recipe: object) -> str:
    """One line from a resolved training recipe: each enabled stage's length and rate, seed."""
    if not isinstance(recipe, dict):
        return "(unreadable)"
    parts = []
    for name in ("stage1", "stage2"):
        stage = recipe.get(name)
        if isinstance(stage, dict) and stage.get("enabled", True):
            parts.append(f"{name} {stage.get('length')} {stage.get('unit')} lr {stage.get('lr')}")
    parts.append(f"seed {recipe.get('seed')}")
    return ", ".join(parts)


def describe_weights(path: Path) -> dict[str, object]:
    """Name, size, checksums, architecture and training summary of one weights file.

    Raises:
        WeightsError: not a fusecli weights file.
    """
    from fusecli.engine import read_weights_metadata

    metadata = read_weights_metadata(path)
    summary = {key: metadata[key] for key in SUMMARY_KEYS if key in metadata}
    recipe = metadata.get("recipe")
    if recipe:
        try:
            summary["recipe"] = recipe_summary(json.loads(recipe))
        except json.JSONDecodeError:
            summary["recipe"] = "(unreadable)"
    return {
        "name": path.stem,
        "path": str(path),
        "bytes": path.stat().st_size,
        "file_sha256": file_sha256(path),
        "tensors_sha256": metadata.get("tensors_sha256", ""),
        "fusecli_version": metadata.get("fusecli_version", ""),
        "architecture": json.loads(metadata.get("architecture", "{}")),
        "training": summary,
    }


def _print(records: list[dict[str, object]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for record in records:
        table = Table(title=str(record["name"]), show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        for key in ("path", "bytes", "file_sha256", "tensors_sha256", "fusecli_version"):
            table.add_row(key, str(record[key]))
        training = record["training"]
        assert isinstance(training, dict)
        for key, value in training.items():
            table.add_row(f"training.{key}", str(value))
        if not training:
            table.add_row("training", "no training summary in the header")
        console.print(table)


def load_authors_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """Read the authors' ``.pth`` safely: tensors only, never code.

    Args:
        path: a PyTorch checkpoint holding a state dict (optionally under ``state_dict``,
            ``model`` or ``net``; a DataParallel ``module.`` prefix is removed).

    Raises:
        WeightsError: the file holds code or other objects, is not a checkpoint, or holds no
            state dict.
    """
    import torch

    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # Code in a pickle needs a GLOBAL (a callable to import); anything else is damage.
        if "global" not in str(exc).lower():
            raise WeightsError(f"{path} is not a readable PyTorch checkpoint ({exc})") from None
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" (it references {found.group(1)})" if found else ""
        raise WeightsError(
            f"{path} was refused: it holds Python objects other than tensors{what}, which could "
            "run code when loaded; only plain state dicts are converted"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise WeightsError(f"{path} is not a readable PyTorch checkpoint ({exc})") from None
    if isinstance(loaded, dict):
        for key in WRAPPER_KEYS:
            if isinstance(loaded.get(key), dict) and len(loaded) <= 4:
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise WeightsError(f"{path} does not hold a state dict (a dict of tensors)")
    return {str(k).removeprefix("module."): v for k, v in loaded.items()}


def weights_list(
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Show the shipped weights: file and tensor checksums and the training summary."""
    records = [describe_weights(path) for path in shipped_weights()]
    if json_out:
        typer.echo(json.dumps(records, indent=2))
        return
    if not records:
        typer.echo(
            "no weights are shipped in this installation; pass --weights PATH to the fusion "
            "commands (e.g. a file made by `fuse weights convert`)"
        )
        return
    _print(records)


def weights_show(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="A .safetensors file."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show checksums, architecture and training summary of any fusecli weights file."""
    record = describe_weights(path)
    if json_out:
        typer.echo(json.dumps(record, indent=2))
    else:
        _print([record])


def weights_convert(
    ctx: typer.Context,
    checkpoint: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="The authors' checkpoint, e.g. two_fuse_rule.pth."
    ),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Weights file to write (.safetensors).", show_default=False
    ),
    overwrite: bool = overwrite_option(),
) -> None:
    """Convert the authors' PyTorch checkpoint into a fusecli weights file (tensors only)."""
    if output.suffix != ".safetensors":
        raise WeightsError(f"{output}: the output must end in .safetensors")
    if output.exists() and not overwrite:
        raise WeightsError(f"{output} already exists; pass --overwrite to replace it")
    from fusecli.engine import from_authors_state_dict, save_weights

    net = from_authors_state_dict(load_authors_checkpoint(checkpoint))
    metadata = {
        "source": f"converted from {checkpoint.name}",
        "source_sha256": file_sha256(checkpoint),
    }
    save_weights(net, output, metadata)
    status(ctx, f"wrote {output} ({net.num_parameters():,} parameters)")


def register(app: typer.Typer) -> None:
    """Add ``fuse weights``, ``fuse weights show`` and ``fuse weights convert``."""
    group = typer.Typer(
        help="Shipped weights (checksums, training summary); convert the authors' checkpoint.",
        no_args_is_help=False,
        invoke_without_command=True,
    )

    @group.callback()
    def default(
        ctx: typer.Context,
        json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    ) -> None:
        """Show the shipped weights; `show` inspects any file, `convert` imports the authors'."""
        if ctx.invoked_subcommand is None:
            weights_list(json_out)

    group.command(name="show")(weights_show)
    group.command(name="convert")(weights_convert)
    app.add_typer(group, name="weights")
