"""Plugin manager: built-in tasks, third-party entry points, broken and duplicate plugins."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

from fusecli import plugins
from fusecli.color import ColorPolicy
from fusecli.engine import PSLPT
from fusecli.errors import FuseError, PluginError
from fusecli.hookspecs import InputRole, TaskSpec, hookimpl
from tests.plugin_package import RGBNIR_MODULE, make_plugin_distribution

BUILTIN = {"ivf", "mef", "mff", "mmf"}


def _plugin(*specs: TaskSpec) -> types.SimpleNamespace:
    @hookimpl
    def fusecli_register_tasks(registry):
        for spec in specs:
            registry.register(spec)

    return types.SimpleNamespace(fusecli_register_tasks=fusecli_register_tasks)


def _pair_task(name: str) -> TaskSpec:
    return TaskSpec(
        name=name,
        help="a test task",
        roles=(InputRole("left", "left image"), InputRole("right", "right image")),
        faf_set=1,
        color=ColorPolicy(mode="chroma_weighted"),
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
    with pytest.raises(PluginError, match=r"registered by two packages, fusecli .* and in-process"):
        plugins.load_catalog(
            autoload=False, extra_plugins=[("clone", _plugin(_pair_task("ivf")))]
        ).get("ivf")


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


def test_sources_of_different_sizes_are_refused_or_resized() -> None:
    a, b = torch.rand(1, 3, 8, 10), torch.rand(1, 1, 6, 5)
    with pytest.raises(FuseError, match=r"b.png is 5x6 but a.png is 10x8.*--resize"):
        plugins.match_sizes([a, b], ["a.png", "b.png"], resize=False)
    matched = plugins.match_sizes([a, b], ["a.png", "b.png"], resize=True)
    assert matched[1].shape == (1, 1, 8, 10)
    assert float(matched[1].min()) >= 0.0 and float(matched[1].max()) <= 1.0


def test_fuse_sources_keeps_size_and_takes_colour_per_policy() -> None:
    catalog = plugins.load_catalog(autoload=False)
    net = PSLPT().eval()
    infrared, visible = torch.rand(1, 1, 20, 24), torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        fused = plugins.fuse_sources(net, catalog.get("ivf").spec, [infrared, visible])
        grey = plugins.fuse_sources(net, catalog.get("mff").spec, [infrared, infrared])
    assert fused.shape == (1, 3, 20, 24) and grey.shape == (1, 1, 20, 24)
    assert float(fused.min()) >= 0.0 and float(fused.max()) <= 1.0
    with pytest.raises(FuseError, match="takes 2 input images"):
        plugins.fuse_sources(net, catalog.get("ivf").spec, [infrared, visible, visible])


def test_resolve_weights_without_shipped_weights_says_what_to_do(tmp_path: Path) -> None:
    spec = plugins.load_catalog(autoload=False).get("ivf").spec
    assert plugins.resolve_weights(spec, tmp_path / "w.safetensors") == tmp_path / "w.safetensors"
    try:
        path = plugins.resolve_weights(spec)
    except FuseError as exc:
        assert "--weights" in str(exc)
    else:
        assert path.is_file()


@pytest.mark.parametrize("name", sorted(plugins.load_catalog(autoload=False).tasks))
def test_every_registered_task_fuses_a_small_random_input(name: str) -> None:
    # Contract over every task: the real network, one colour and grey sources, odd size.
    spec = plugins.load_catalog(autoload=False).get(name).spec
    torch.manual_seed(0)
    net = PSLPT().eval()
    sources = [torch.rand(1, 3 if i == 0 else 1, 19, 23) for i in range(spec.min_inputs)]
    with torch.no_grad():
        fused = plugins.fuse_sources(net, spec, sources)
    assert fused.shape[0] == 1 and fused.shape[-2:] == (19, 23) and fused.shape[1] in (1, 3)
    assert not torch.isnan(fused).any()
    assert float(fused.min()) >= 0.0 and float(fused.max()) <= 1.0
