"""Plugin manager: built-in tasks, third-party entry points, broken and duplicate plugins."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from fusecli import plugins
from fusecli.color import ColorPolicy
from fusecli.errors import PluginError
from fusecli.hookspecs import InputRole, TaskSpec, hookimpl
from tests.plugin_package import RGBNIR_MODULE, make_plugin_distribution

BUILTIN = {"ivf", "mef", "mff", "mmf"}


def _plugin(*specs: TaskSpec) -> types.SimpleNamespace:
    @hookimpl
    def fusecli_register_tasks(registry):
        for spec in specs:
            registry.register(spec)

    return types.SimpleNamespace(fusecli_register_tasks=fusecli_register_tasks)


def _pair_task(name: str, **fields) -> TaskSpec:
    return TaskSpec(
        name=name,
        help="a test task",
        roles=(InputRole("left", "left image"), InputRole("right", "right image")),
        faf_set=1,
        color=ColorPolicy(mode="chroma_weighted"),
        **fields,
    )


def test_builtin_tasks_load_through_entry_points_with_autoload_disabled() -> None:
    catalog = plugins.load_catalog(autoload=False)
    assert set(catalog.tasks) >= BUILTIN
    assert not catalog.warnings
    for name in BUILTIN:
        task = catalog.get(name)
        assert task.package.startswith("fusecli ")
        assert task.spec.name == name
    modules = {info.module for info in catalog.plugins if info.status == "loaded"}
    assert {f"fusecli_tasks.{name}" for name in BUILTIN} <= modules
    assert catalog.get("ivf").spec.faf_set == 2 and catalog.get("mff").spec.faf_set == 1
    assert catalog.get("mef").spec.is_stack


def test_in_process_plugin_adds_a_task() -> None:
    catalog = plugins.load_catalog(
        autoload=False, extra_plugins=[("extra", _plugin(_pair_task("x2")))]
    )
    assert catalog.get("x2").plugin == "extra"


def test_a_broken_plugin_gives_one_warning_and_the_rest_keep_working() -> None:
    @hookimpl
    def fusecli_register_tasks(registry):
        raise RuntimeError("boom")

    raising = types.SimpleNamespace(fusecli_register_tasks=fusecli_register_tasks)

    @hookimpl
    def nonsense(registry):
        registry.register(_pair_task("Not A Name"))

    invalid = types.SimpleNamespace(fusecli_register_tasks=nonsense)
    catalog = plugins.load_catalog(
        autoload=False,
        extra_plugins=[
            ("raising", raising),
            ("invalid", invalid),
            ("ok", _plugin(_pair_task("ok"))),
        ],
    )
    assert len(catalog.warnings) == 2
    assert "'raising'" in catalog.warnings[0] and "boom" in catalog.warnings[0]
    assert "'invalid'" in catalog.warnings[1] and "name must be" in catalog.warnings[1]
    assert set(catalog.tasks) == BUILTIN | {"ok"}
    failed = {info.name for info in catalog.plugins if info.status == "failed"}
    assert failed == {"raising", "invalid"}


def test_a_duplicate_task_name_is_an_error_naming_both_packages() -> None:
    catalog = plugins.load_catalog(
        autoload=False,
        extra_plugins=[
            ("first", _plugin(_pair_task("dup"))),
            ("second", _plugin(_pair_task("dup"))),
        ],
    )
    with pytest.raises(PluginError, match=r"'first'.*'second'"):
        catalog.get("dup")
    # A built-in name is no conflict: the built-in wins (tests/test_plugin_robustness.py).
    clone = plugins.load_catalog(
        autoload=False, extra_plugins=[("clone", _plugin(_pair_task("ivf")))]
    )
    assert clone.get("ivf").package.startswith("fusecli ")


def test_an_unknown_task_lists_the_known_ones() -> None:
    with pytest.raises(PluginError, match=r"no task named 'nope'.*ivf"):
        plugins.load_catalog(autoload=False).get("nope")


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_plugin_distribution(
        tmp_path / "site", dist="fusecli-rgbnir", module="fusecli_rgbnir", source=RGBNIR_MODULE
    )
    make_plugin_distribution(
        root,
        dist="fusecli-broken",
        module="fusecli_broken",
        source="raise ImportError('missing dependency foo')\n",
    )
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in ("fusecli_rgbnir", "fusecli_broken"):
        sys.modules.pop(name, None)


def test_a_third_party_distribution_loads_and_a_broken_one_warns(third_party: Path) -> None:
    catalog = plugins.load_catalog(autoload=True)
    task = catalog.get("rgbnir")
    assert task.package == "fusecli-rgbnir 1.0"
    assert len(catalog.warnings) == 1
    assert (
        "fusecli_broken" in catalog.warnings[0] and "missing dependency foo" in catalog.warnings[0]
    )
    assert set(catalog.tasks) == BUILTIN | {"rgbnir"}


def test_the_environment_variable_disables_third_party_autoload(
    third_party: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(plugins.DISABLE_AUTOLOAD_ENV, "1")
    catalog = plugins.load_catalog()
    assert set(catalog.tasks) == BUILTIN
    disabled = {info.name: info.status for info in catalog.plugins if info.status == "disabled"}
    assert disabled == {"fusecli_rgbnir": "disabled", "fusecli_broken": "disabled"}
    monkeypatch.setenv(plugins.DISABLE_AUTOLOAD_ENV, "0")
    assert "rgbnir" in plugins.load_catalog().tasks
