"""Plugin robustness (issue 19): nothing registered, wrong hook arguments, one bad registration,
missing default weights, built-ins winning, FUSECLI_DISABLE_PLUGINS, quiet completion."""

from __future__ import annotations

import dataclasses
import types

import pytest

from fusecli import plugins
from fusecli.cli import fuse as fuse_command
from fusecli.cli.main import build_app
from fusecli.hookspecs import hookimpl
from tests.test_plugins import _pair_task as _task


def _load(*plugins_: tuple[str, object]) -> plugins.TaskCatalog:
    return plugins.load_catalog(autoload=False, extra_plugins=list(plugins_))


def test_a_plugin_that_registers_nothing_gets_one_warning() -> None:
    @hookimpl
    def fusecli_register_task(registry):  # misspelled: no "s"
        registry.register(_task("lost"))

    def fusecli_register_tasks(registry):  # right name, but no @hookimpl
        registry.register(_task("lost2"))

    catalog = _load(
        ("typo", types.SimpleNamespace(fusecli_register_task=fusecli_register_task)),
        ("unmarked", types.SimpleNamespace(fusecli_register_tasks=fusecli_register_tasks)),
    )
    assert len(catalog.warnings) == 2
    for name, warning in zip(("typo", "unmarked"), catalog.warnings):
        assert f"plugin {name!r}" in warning and "registers nothing" in warning
        assert "misspelled hook name or a missing @hookimpl" in warning
    assert "lost" not in catalog.tasks and "lost2" not in catalog.tasks


def test_a_wrong_hook_argument_is_named_in_one_line() -> None:
    @hookimpl
    def fusecli_register_tasks(reg):
        reg.register(_task("never"))

    catalog = _load(
        ("argues", types.SimpleNamespace(fusecli_register_tasks=fusecli_register_tasks))
    )
    (warning,) = catalog.warnings
    assert "\n" not in warning and "plugin 'argues'" in warning
    assert "fusecli_register_tasks() takes 'reg', but the hook passes only 'registry'" in warning


def test_one_bad_registration_keeps_the_plugins_valid_tasks() -> None:
    @hookimpl
    def fusecli_register_tasks(registry):
        registry.register(_task("good1"))
        registry.register("not a spec")
        registry.register(_task("good2"))
        raise RuntimeError("late failure")

    catalog = _load(("mixed", types.SimpleNamespace(fusecli_register_tasks=fusecli_register_tasks)))
    assert {"good1", "good2"} <= set(catalog.tasks)
    assert len(catalog.warnings) == 2 and all("'mixed'" in w for w in catalog.warnings)
    assert "not a spec" in catalog.warnings[1] and "late failure" in catalog.warnings[0]
    info = next(info for info in catalog.plugins if info.name == "mixed")
    assert info.status == "loaded" and info.tasks == ("good1", "good2")


def test_missing_default_weights_are_reported_at_registration() -> None:
    @hookimpl
    def fusecli_register_tasks(registry):
        registry.register(_task("weightless", default_weights="no-such-weights"))

    catalog = _load(("heavy", types.SimpleNamespace(fusecli_register_tasks=fusecli_register_tasks)))
    (warning,) = catalog.warnings
    assert "plugin 'heavy'" in warning and "'no-such-weights'" in warning
    assert "only with weights given by the caller" in warning and "weightless" in catalog.tasks


def test_builtin_tasks_and_methods_win_over_a_third_party_namesake() -> None:
    average = plugins.load_catalog(autoload=False).get_method("average").spec
    clone_method = dataclasses.replace(average, help="a clone")

    @hookimpl
    def fusecli_register_methods(registry):
        registry.register(clone_method)

    @hookimpl
    def fusecli_register_tasks(registry):
        registry.register(_task("ivf"))
        registry.register(_task("own"))

    clone = types.SimpleNamespace(
        fusecli_register_tasks=fusecli_register_tasks,
        fusecli_register_methods=fusecli_register_methods,
    )
    catalog = _load(("clone", clone))
    assert catalog.get("ivf").package.startswith("fusecli ") and "own" in catalog.tasks
    assert catalog.get_method("average").spec.help != "a clone"
    assert len(catalog.warnings) == 2
    assert "task 'ivf' of plugin 'clone' (in-process) is ignored" in catalog.warnings[0]
    assert "fusion method 'average' of plugin 'clone'" in catalog.warnings[1]


def test_single_plugins_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(plugins.DISABLE_PLUGINS_ENV, "mmf, methods")
    catalog = plugins.load_catalog(autoload=False)
    assert "mmf" not in catalog.tasks and "ivf" in catalog.tasks and not catalog.methods
    disabled = {info.name: info.message for info in catalog.plugins if info.status == "disabled"}
    assert disabled == {
        "mmf": "FUSECLI_DISABLE_PLUGINS names it",
        "methods": "FUSECLI_DISABLE_PLUGINS names it",
    }


def test_no_plugin_warning_during_shell_completion(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    @hookimpl
    def fusecli_register_task(registry):
        pass

    broken = _load(("typo", types.SimpleNamespace(fusecli_register_task=fusecli_register_task)))
    monkeypatch.setattr(fuse_command, "get_catalog", lambda: broken)
    build_app()
    assert "warning: plugin 'typo'" in capsys.readouterr().err
    monkeypatch.setenv("_FUSE_COMPLETE", "bash_complete")
    build_app()
    assert capsys.readouterr().err == ""
