"""The plugin contract: TaskSpec validation and documented hooks."""

from __future__ import annotations

import inspect

import pytest

from fusecli import hookspecs
from fusecli.color import ColorPolicy
from fusecli.errors import PluginError
from fusecli.hookspecs import InputRole, TaskSpec

PAIR = (InputRole("rgb", "colour image"), InputRole("nir", "near-infrared image"))


def _spec(**changes: object) -> TaskSpec:
    fields: dict[str, object] = {
        "name": "rgbnir",
        "help": "RGB and near-infrared fusion.",
        "roles": PAIR,
        "faf_set": 2,
        "color": ColorPolicy(mode="chroma_from", source=0),
        "batch_names": (("rgb", "nir"),),
    }
    fields.update(changes)
    return TaskSpec(**fields)  # type: ignore[arg-type]


def test_a_valid_spec_describes_its_inputs() -> None:
    spec = _spec()
    assert not spec.is_stack
    assert spec.inputs_text() == "2"
    assert spec.role_of(1).name == "nir"
    stack = _spec(roles=(InputRole("frame", "one frame"),), max_inputs=None, batch_names=())
    assert stack.is_stack and stack.inputs_text() == "2 or more"
    assert stack.role_of(5).name == "frame"


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"name": "Bad Name"}, "name must be"),
        ({"name": "batch"}, "fusecli's own commands"),
        ({"help": ""}, "help must be one non-empty line"),
        ({"help": "two\nlines"}, "help must be one non-empty line"),
        ({"faf_set": 3}, "faf_set must be 1 or 2"),
        ({"faf_set": True}, "faf_set must be 1 or 2"),
        ({"min_inputs": 1}, "min_inputs"),
        ({"max_inputs": 1}, "max_inputs"),
        ({"roles": PAIR[:1]}, "2 inputs need 2 roles"),
        ({"roles": (PAIR[0], PAIR[0])}, "role names must differ"),
        ({"roles": (PAIR[0], InputRole("nir", "x", preprocessing="fft"))}, "unknown preprocessing"),
        ({"color": ColorPolicy(mode="chroma_from", source=2)}, "has no role"),
        ({"color": "visible"}, "ColorPolicy"),
        ({"batch_names": (("rgb",),)}, "wrong number of names"),
        ({"batch_names": (("rgb", "rgb"),)}, "repeats a name"),
        ({"batch_names": (("RGB", "nir"),)}, "lower-case names"),
        ({"default_weights": "../x"}, "default_weights"),
        ({"compose": "pick"}, "compose must be one of network, select"),
        ({"global_view": 10}, "global_view must be 0 or a side of at least 64 pixels"),
        ({"global_view": True}, "global_view must be 0"),
        ({"global_view": 160.0}, "global_view must be 0"),
    ],
)
def test_nonsense_is_refused_with_the_reason(changes: dict, fragment: str) -> None:
    with pytest.raises(PluginError, match=r"task .* is invalid") as info:
        _spec(**changes)
    assert fragment in str(info.value)


def test_a_spec_is_frozen() -> None:
    spec = _spec()
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]


def test_every_hook_is_documented() -> None:
    hooks = [
        obj
        for name, obj in vars(hookspecs).items()
        if name.startswith("fusecli_") and inspect.isfunction(obj)
    ]
    assert hooks, "no hook specifications found"
    for hook in hooks:
        doc = inspect.getdoc(hook) or ""
        assert "When it runs" in doc and "Args:" in doc and "Returns:" in doc, hook.__name__
        assert hasattr(hook, "fusecli_spec"), f"{hook.__name__} is not marked @hookspec"
