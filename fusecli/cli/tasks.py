"""`fuse tasks` and `fuse plugins`: what can be fused, and which plugins provided it."""

from __future__ import annotations

import json
import textwrap
from typing import TYPE_CHECKING

import typer

from fusecli.plugins import DISABLE_AUTOLOAD_ENV, TaskCatalog, get_catalog

# rich's tables load only when one is printed: `fuse --help` and completion load this module.
if TYPE_CHECKING:
    from rich.console import Console


def task_rows(catalog: TaskCatalog) -> list[dict[str, object]]:
    """One record per task: name, roles, inputs, FAF set, colour policy, how the output is
    composed and the global view (0: none), plugin, batch names."""
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
                "colour": spec.colour_text(),
                "compose": spec.compose,
                "global_view": spec.global_view,
                "batch_names": ["/".join(names) for names in spec.batch_names],
                "plugin": task.plugin,
                "package": task.package,
                "conflict": catalog.conflicts.get(name, ""),
            }
        )
    return rows


def shared_rules(catalog: TaskCatalog) -> list[str]:
    """One sentence per group of tasks that run the same FAF set with the same colour rule,
    output composition and global view.

    Such tasks (today ivf and mmf) fuse alike and differ only in their inputs' names and batch
    folders; users comparing them should hear it rather than guess it from the table.
    """
    groups: dict[tuple[int, object, str, int], list[str]] = {}
    for name in sorted(catalog.tasks):
        spec = catalog.tasks[name].spec
        key = (spec.faf_set, spec.color, spec.compose, spec.global_view)
        groups.setdefault(key, []).append(name)
    sentences = []
    for (faf_set, color, _, _), names in groups.items():
        if len(names) > 1:
            listed = ", ".join(names[:-1]) + f" and {names[-1]}"
            sentences.append(
                f"{listed} share FAF set {faf_set} and one colour rule "
                f"({color.describe()}): they fuse alike and differ in their inputs' names "
                "and batch folders."
            )
    return sentences


TASK_COLUMNS = ("task", "roles", "inputs", "FAF set", "colour", "batch folders", "plugin")


def task_cells(row: dict[str, object]) -> list[str]:
    """The table cells of one ``task_rows`` record, in TASK_COLUMNS order."""
    plugin = f"{row['plugin']} ({row['package']})"
    if row["conflict"]:
        plugin += " conflict"
    return [
        str(row["task"]),
        ", ".join(row["roles"]),  # type: ignore[arg-type]
        str(row["inputs"]),
        str(row["faf_set"]),
        str(row["colour"]),
        ", ".join(row["batch_names"]),  # type: ignore[arg-type]
        plugin,
    ]


def print_tasks(rows: list[dict[str, object]], notes: list[str], console: Console) -> None:
    """A table when the terminal is wide enough for one line per task, else a paragraph each.

    Rich fits a wide table into a narrow terminal by cutting words (``backgrou`` / ``nd``);
    paragraphs wrapped at spaces read better than that.
    """
    from rich import box
    from rich.table import Table

    cells = [task_cells(row) for row in rows]
    widths = [max(map(len, column)) for column in zip(TASK_COLUMNS, *cells, strict=True)]
    # One line per task, with a space of padding either side of each column and a border
    # (drawn blank) between and around them; rich would otherwise squeeze the columns until
    # words break.
    if sum(widths) + 3 * len(TASK_COLUMNS) + 1 <= console.width:
        table = Table(title="Fusion tasks (fuse <task> --help for details)", box=box.SIMPLE_HEAD)
        for column in TASK_COLUMNS:
            table.add_column(column, no_wrap=True)
        for row_cells in cells:
            table.add_row(*row_cells)
        console.print(table)
    else:
        for row in rows:
            named = dict(zip(TASK_COLUMNS, task_cells(row), strict=True))
            text = (
                f"{named['task']}: {named['roles']} ({named['inputs']}); FAF set "
                f"{named['FAF set']}; colour: {named['colour']}; batch folders: "
                f"{named['batch folders']}; plugin: {named['plugin']}"
            )
            console.print(_wrapped(text, console.width), highlight=False)
    for note in notes:
        console.print(_wrapped(note, console.width), highlight=False)


def _wrapped(text: str, width: int) -> str:
    return textwrap.fill(
        text, width, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False
    )


def tasks(json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")):
    """List the fusion tasks: roles, number of inputs, FAF set, colour policy and plugin."""
    catalog = get_catalog()
    rows = task_rows(catalog)
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console

    print_tasks(rows, shared_rules(catalog), Console())


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
    from rich.console import Console
    from rich.table import Table

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
