"""`fuse tasks` and `fuse plugins`: what is installed, as a table and as JSON."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from fusecli.cli.main import build_app

runner = CliRunner()


def test_tasks_lists_roles_inputs_faf_set_colour_and_plugin() -> None:
    rows = {
        row["task"]: row
        for row in json.loads(runner.invoke(build_app(), ["tasks", "--json"]).stdout)
    }
    assert set(rows) >= {"ivf", "mef", "mff", "mmf"}
    assert rows["ivf"]["roles"] == ["infrared", "visible"]
    assert rows["ivf"]["colour"] == "chroma from visible" and rows["ivf"]["faf_set"] == 2
    assert rows["mmf"]["roles"] == ["anatomical", "functional"]
    assert rows["mef"]["inputs"] == "2 or more" and rows["mef"]["faf_set"] == 1
    assert (rows["mef"]["compose"], rows["mef"]["global_view"]) == ("detail", 160)
    assert (rows["mff"]["compose"], rows["mff"]["global_view"]) == ("select", 0)
    assert rows["mff"]["package"].startswith("fusecli ")
    assert "mri/pet" in rows["mmf"]["batch_names"]
    table = runner.invoke(build_app(), ["tasks"], terminal_width=160)
    assert table.exit_code == 0
    for text in ("infrared, visible", "chroma from visible", "FAF set"):
        assert text in table.stdout


def test_plugins_lists_the_builtin_entry_points_as_loaded() -> None:
    records = json.loads(runner.invoke(build_app(), ["plugins", "--json"]).stdout)
    loaded = {r["module"]: r for r in records if r["status"] == "loaded"}
    for task in ("ivf", "mef", "mff", "mmf"):
        assert loaded[f"fusecli_tasks.{task}"]["tasks"] == [task]
    table = runner.invoke(build_app(), ["plugins"]).stdout
    assert "fusecli_tasks.ivf" in table and "FUSECLI_DISABLE_PLUGIN_AUTOLOAD" in table
