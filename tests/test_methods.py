"""Fusion methods: the built-in ones, their contract, running them through the pipeline."""

from __future__ import annotations

import types

import pytest
import torch

from fusecli import classical, pipeline, plugins
from fusecli.errors import FuseError, PluginError
from fusecli.filters import gaussian_blur
from fusecli.hookspecs import MethodInput, MethodSpec, hookimpl
from fusecli.methods import METHODS

CLASSICAL = ("average", "laplacian", "guided", "mertens")


def _catalog() -> plugins.TaskCatalog:
    return plugins.load_catalog(autoload=False)


def _scene(size=(48, 64), seed: int = 0) -> torch.Tensor:
    """A textured (1, 1, H, W) image in [0, 1]."""
    noise = torch.rand(1, 1, *size, generator=torch.Generator().manual_seed(seed))
    return (0.5 * noise + 0.5 * gaussian_blur(noise, 2.0, radius=6)).clamp(0, 1)


def test_builtin_methods_load_through_the_entry_point() -> None:
    catalog = _catalog()
    assert set(catalog.methods) == {"pslpt", *CLASSICAL}
    assert all(m.package.startswith("fusecli ") for m in catalog.methods.values())
    info = next(i for i in catalog.plugins if i.module == "fusecli.methods")
    assert info.status == "loaded" and set(info.methods) == set(catalog.methods)


@pytest.mark.parametrize("name", CLASSICAL)
def test_classical_methods_keep_shape_range_and_an_identical_pair(name: str) -> None:
    spec = _catalog().tasks["mef" if name == "mertens" else "mff"].spec
    method = _catalog().get_method(name).spec
    image = _scene()
    other = _scene(seed=1)
    fused = method.fuse(MethodInput(images=(image, other), task=spec))
    assert fused.shape == image.shape and fused.dtype == image.dtype
    assert fused.min() >= 0 and fused.max() <= 1 and not fused.isnan().any()
    same = method.fuse(MethodInput(images=(image, image, image), task=spec))
    assert torch.allclose(same, image, atol=2e-3), name


def test_laplacian_of_a_focus_pair_is_sharper_than_the_average() -> None:
    sharp = _scene(size=(64, 96))
    blurred = gaussian_blur(sharp, 2.5, radius=8)
    left = torch.zeros_like(sharp)
    left[..., :48] = 1
    near, far = sharp * left + blurred * (1 - left), blurred * left + sharp * (1 - left)
    error = {
        name: (fuse([near, far]) - sharp).abs().mean().item()
        for name, fuse in (
            ("average", classical.average_fusion_many),
            ("laplacian", classical.laplacian_fusion_many),
            ("guided", classical.guided_filter_fusion_many),
        )
    }
    assert error["laplacian"] < 0.7 * error["average"]
    assert error["guided"] < 0.7 * error["average"]


def test_mertens_prefers_the_well_exposed_source() -> None:
    scene = 0.25 + 0.5 * _scene()
    under, over = (scene * 0.2).clamp(0, 1), (scene * 3.0).clamp(0, 1)
    fused = classical.mertens_fusion_many([under, scene, over])
    assert (fused - scene).abs().mean() < (
        classical.average_fusion_many([under, scene, over]) - scene
    ).abs().mean()


def test_pipeline_colours_a_method_result_with_the_task_policy() -> None:
    catalog = _catalog()
    spec = catalog.tasks["ivf"].spec  # chroma from the visible image
    infrared = _scene()
    visible = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(3))
    method = catalog.get_method("average").spec
    fused = pipeline.fuse_with_method(method, spec, [infrared, visible])
    assert fused.shape == (1, 3, 48, 64)
    grey = pipeline.fuse_with_method(method, spec, [infrared, infrared])
    assert grey.shape == (1, 1, 48, 64) and torch.allclose(grey, infrared, atol=1e-6)


def test_pipeline_refuses_an_unsuitable_method_and_a_wrong_result() -> None:
    catalog = _catalog()
    mertens = catalog.get_method("mertens").spec
    with pytest.raises(FuseError, match="does not suit task 'ivf'") as caught:
        pipeline.fuse_with_method(mertens, catalog.tasks["ivf"].spec, [_scene(), _scene()])
    assert caught.value.hint == "method"
    broken = MethodSpec(
        name="broken", help="returns a thumbnail", fuse=lambda r: r.images[0][..., :4, :4]
    )
    with pytest.raises(FuseError, match="returned"):
        pipeline.fuse_with_method(broken, catalog.tasks["mff"].spec, [_scene(), _scene()])
    pairs_only = MethodSpec(name="pairs", help="two only", fuse=lambda r: r.images[0], stacks=False)
    with pytest.raises(FuseError, match="exactly two"):
        pipeline.check_method(pairs_only, catalog.tasks["mff"].spec, 3)


def test_an_invalid_method_spec_names_every_problem() -> None:
    with pytest.raises(PluginError, match=r"name must be.*help must be.*fuse must be.*faf_sets"):
        MethodSpec(name="Bad Name", help="", fuse=None, faf_sets=(3,))  # type: ignore[arg-type]


def test_a_method_name_two_plugins_share_is_an_error_naming_both() -> None:
    # A built-in's name taken by a third party is ignored with a warning
    # (tests/test_plugin_robustness.py); two third parties sharing a name is an error.
    def plugin_registering(help_text: str) -> types.SimpleNamespace:
        @hookimpl
        def fusecli_register_methods(registry):
            registry.register(MethodSpec(name="mine", help=help_text, fuse=lambda r: r.images[0]))

        return types.SimpleNamespace(fusecli_register_methods=fusecli_register_methods)

    catalog = plugins.load_catalog(
        autoload=False,
        extra_plugins=[("one", plugin_registering("first")), ("two", plugin_registering("second"))],
    )
    with pytest.raises(PluginError, match=r"one.*two|two.*one"):
        catalog.get_method("mine")
    with pytest.raises(PluginError, match="methods: average, guided"):
        catalog.get_method("nope")


def test_every_builtin_method_has_a_one_line_help_and_is_listed_once() -> None:
    names = [m.name for m in METHODS]
    assert len(names) == len(set(names)) and all(m.help.endswith(".") for m in METHODS)
