"""`fuse tasks` and `fuse plugins`: what can be fused, and which plugins provided it."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from fusecli.plugins import DISABLE_AUTOLOAD_ENV, TaskCatalog, get_catalog


def task_rows(catalog: TaskCatalog) -> list[dict[str, object]]:
    """One record per task: name, roles, inputs, FAF set, colour policy, plugin, batch names."""
    rows = []
    for name in sorted(catalog.tasks):
        task = catalog.tasks[name]
        spec = task.spec
        roles = [role.name for role in spec.roles]
        rows.append(
            {
                "task": name,
                "help": spec.help,
                "roles": roles,
                "inputs": spec.inputs_text(),
                "faf_set": spec.faf_set,
                "colour": spec.color.describe(roles),
                "batch_names": ["/".join(names) for names in spec.batch_names],
                "plugin": task.plugin,
                "package": task.package,
                "conflict": catalog.conflicts.get(name, ""),
            }
        )
    return rows


def tasks(json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")):
    """List the fusion tasks: roles, number of inputs, FAF set, colour policy and plugin."""
    rows = task_rows(get_catalog())
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="Fusion tasks (fuse <task> --help for details)")
    for column in ("task", "roles", "inputs", "FAF set", "colour", "batch folders", "plugin"):
        table.add_column(column, overflow="fold")
    for row in rows:
        plugin = f"{row['plugin']} ({row['package']})"
        if row["conflict"]:
            plugin += " [red]conflict[/red]"
        table.add_row(
            str(row["task"]),
            ", ".join(row["roles"]),  # type: ignore[arg-type]
            str(row["inputs"]),
            str(row["faf_set"]),
            str(row["colour"]),
            ", ".join(row["batch_names"]),  # type: ignore[arg-type]
            plugin,
        )
    Console(width=max(Console().width, 120)).print(table)


def plugins(json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")):
    """List the plugins found in the `fusecli` entry-point group and whether they loaded."""
    catalog = get_catalog()
    records = [
        {
            "plugin": info.name,
            "package": info.package,
            "module": info.module,
            "status": info.status,
            "tasks": list(info.tasks),
            "message": info.message,
        }
        for info in catalog.plugins
    ]
    if json_out:
        typer.echo(json.dumps(records, indent=2))
        return
    table = Table(
        title=f"Plugins (entry-point group 'fusecli'; {DISABLE_AUTOLOAD_ENV}=1 skips "
        "third-party ones)"
    )
    for column in ("plugin", "package", "module", "status", "tasks", "message"):
        table.add_column(column, overflow="fold")
    for record in records:
        style = {"loaded": "green", "failed": "red"}.get(str(record["status"]), "yellow")
        table.add_row(
            str(record["plugin"]),
            str(record["package"]),
            str(record["module"]),
            f"[{style}]{record['status']}[/{style}]",
            ", ".join(record["tasks"]),  # type: ignore[arg-type]
            str(record["message"]),
        )
    Console(width=max(Console().width, 120)).print(table)


def register(app: typer.Typer) -> None:
    """Add ``fuse tasks`` and ``fuse plugins``."""
    app.command(name="tasks")(tasks)
    app.command(name="plugins")(plugins)
