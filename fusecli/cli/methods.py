"""`fuse methods`: the fusion methods that loaded, what they suit and which plugin gave them."""

from __future__ import annotations

import json

import typer

from fusecli.methods import DEFAULT_METHOD
from fusecli.plugins import TaskCatalog, get_catalog

# rich's tables load only when one is printed: `fuse --help` and completion load this module.


def method_rows(catalog: TaskCatalog) -> list[dict[str, object]]:
    """One record per method: name, help, what it suits, plugin, package and any conflict."""
    rows = []
    for name in sorted(catalog.methods, key=lambda n: (n != DEFAULT_METHOD, n)):
        method = catalog.methods[name]
        spec = method.spec
        rows.append(
            {
                "method": name,
                "help": spec.help,
                "default": name == DEFAULT_METHOD,
                "faf_sets": list(spec.faf_sets),
                "tasks": None if spec.tasks is None else list(spec.tasks),
                "stacks": spec.stacks,
                "suits": spec.supports_text(),
                "plugin": method.plugin,
                "package": method.package,
                "conflict": catalog.method_conflicts.get(name, ""),
            }
        )
    return rows


def methods(json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")):
    """List the fusion methods for --method: what each suits and the plugin that gave it."""
    rows = method_rows(get_catalog())
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Fusion methods (fuse <task> --method NAME)")
    for column in ("method", "description", "suits", "plugin"):
        table.add_column(column, overflow="fold")
    for row in rows:
        plugin = f"{row['plugin']} ({row['package']})"
        if row["conflict"]:
            plugin += " [red]conflict[/red]"
        name = f"{row['method']} (default)" if row["default"] else str(row["method"])
        table.add_row(name, str(row["help"]), str(row["suits"]), plugin)
    Console(width=max(Console().width, 120)).print(table)


def register(app: typer.Typer) -> None:
    """Add ``fuse methods``."""
    app.command(name="methods")(methods)
