"""The task-plugin contract: hook markers, the registration hook and the TaskSpec a plugin declares.

A task plugin is a module (or any object) with a function decorated by ``hookimpl`` named
``fusecli_register_tasks``. fusecli finds it through the ``fusecli`` entry-point group, calls it
once per process and builds ``fuse <task>`` from each TaskSpec it registers::

    from fusecli.color import ColorPolicy
    from fusecli.hookspecs import InputRole, TaskSpec, hookimpl

    @hookimpl
    def fusecli_register_tasks(registry):
        registry.register(TaskSpec(name="rgbnir", help="...", roles=(...), faf_set=2,
                                   color=ColorPolicy(mode="chroma_from", source=0)))

Only this module, ``fusecli.color`` and ``fusecli.errors`` are needed to write a plugin;
``fusecli.filters`` helps to simulate demo inputs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import pluggy

from fusecli.color import ColorPolicy
from fusecli.errors import PluginError

if TYPE_CHECKING:
    import torch

PROJECT_NAME = "fusecli"
"""pluggy project name; also the entry-point group that plugins are published under."""

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

PREPROCESSING_STEPS: dict[str, str] = {
    "luminance": "Y of YCbCr (BT.601 full range); a grayscale input is used as it is",
    "channel_mean": "mean of the colour channels; a grayscale input is used as it is",
}
"""Named preprocessing an input role can ask for, each turning (1, C, H, W) into (1, 1, H, W)."""

Preprocessing = Callable[["torch.Tensor"], "torch.Tensor"]
"""A plugin's own preprocessing of one input: (1, C, H, W) float in [0, 1], C 1 or 3, to the
(1, 1, H, W) float in [0, 1] the network fuses (e.g. log-scaling a SAR image, inverting a
white-hot thermal palette)."""

RESERVED_NAMES = frozenset(
    {"batch", "tasks", "plugins", "weights", "demo", "train", "eval", "help", "version", "methods"}
)
"""Names of fusecli's own commands, which a task cannot take."""

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_FOLDER = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


@dataclass(frozen=True)
class InputRole:
    """One input of a task, as the user sees it in ``fuse <task> --help``.

    Attributes:
        name: short role name, e.g. ``"infrared"``; it names the argument in ``--help``.
        description: one line saying what image the user gives for this role.
        preprocessing: how this input becomes the network's single channel: a key of
            PREPROCESSING_STEPS (default: luminance, Y of YCbCr; a grey input is used as it
            is), or a :data:`Preprocessing` function of the plugin's own, which gets every
            input, grey or colour.
    """

    name: str
    description: str
    preprocessing: str | Preprocessing = "luminance"


@dataclass(frozen=True)
class TaskSpec:
    """Everything fusecli needs to run one fusion task; a plugin registers one per task.

    Attributes:
        name: command name, lower case (``fuse <name>``), e.g. ``"ivf"``.
        help: one-line summary shown by ``fuse --help`` and ``fuse tasks``.
        roles: the inputs in order. A task with a fixed number of inputs has one role per
            input; a stack task (several images of the same kind) has exactly one role,
            which every input takes.
        faf_set: which fusion (FAF) module set of PSLPT fuses this task: 1 (multi-focus,
            multi-exposure) or 2 (infrared/visible, medical).
        color: how the colour of the output is made from the sources' chroma; its
            ``source`` indexes ``roles``.
        min_inputs: fewest inputs, at least 2.
        max_inputs: most inputs, or None for no limit (stacks).
        batch_names: folder names (and file-name suffixes) that ``fuse batch`` recognises
            for this task, one tuple per naming scheme, in role order for fixed-input tasks,
            e.g. ``(("ir", "vi"), ("infrared", "visible"))``. Compared case-insensitively.
        default_weights: name of the weights file (without ``.safetensors``) in the
            ``fusecli.weights`` package used when no other weights are given.
        demo_inputs: makes the task's inputs for ``fuse demo`` from one scene, or None (the
            demo leaves the task out). It gets a (1, 3, H, W) RGB image in [0, 1] and returns
            the inputs in role order, each (1, C, H, W) in [0, 1] with C in {1, 3}, as many as
            the task takes. They are simulations, and the demo says so.
        compose: how the network's fusion becomes the output. ``network`` (the default): the
            fused luminance the network decodes, with colour by ``color``. ``select``: every
            output pixel is taken from the sources, in full colour, by the network's decision
            (the source each pixel mostly came from, see ``--save-map``), blended over a few
            pixels at the boundaries. For multi-focus, where every pixel is sharp in some
            source and any re-synthesis of it loses detail. ``detail``: the network's fused
            luminance with its finest pyramid bands replaced by the sources' (per band and
            pixel, the detail of largest magnitude, see
            :func:`fusecli.classical.with_source_detail`): the network decides brightness and
            which source each region follows, the sources give the fine texture that the
            network's encoder-decoder round trip smooths. For exposure brackets, where every
            source holds real detail somewhere. Classical methods ignore ``compose``.
        global_view: 0 (the default), or a side in pixels: images larger than that are also
            fused whole, scaled down to it, and the output's coarse structure comes from that
            fusion (see :func:`fusecli.engine.tiling.fuse_global_view`). For tasks where
            the network must judge large regions against each other (which part of a bracket
            is well exposed), which its windows and training crops see only locally.
    """

    name: str
    help: str
    roles: tuple[InputRole, ...]
    faf_set: int
    color: ColorPolicy
    min_inputs: int = 2
    max_inputs: int | None = 2
    batch_names: tuple[tuple[str, ...], ...] = ()
    default_weights: str = "pslpt-general"
    demo_inputs: Callable[[torch.Tensor], Sequence[torch.Tensor]] | None = None
    compose: str = "network"
    global_view: int = 0

    def __post_init__(self) -> None:
        problems = list(_spec_problems(self))
        if problems:
            raise PluginError(f"task {self.name!r} is invalid: {'; '.join(problems)}")

    @property
    def is_stack(self) -> bool:
        """True when the task takes a variable number of inputs of one role."""
        return self.max_inputs != self.min_inputs

    def colour_text(self) -> str:
        """How the output's colour is made, in words, for help texts and ``fuse tasks``."""
        policy = self.color.describe([role.name for role in self.roles])
        if self.compose == "select":
            return (
                "each pixel taken from the sources by the network's decision; with a "
                f"classical method, {policy}"
            )
        return policy

    def role_of(self, index: int) -> InputRole:
        """Return the role of the ``index``-th input (every input of a stack has the same role)."""
        return self.roles[0] if self.is_stack else self.roles[index]

    def inputs_text(self) -> str:
        """Describe how many inputs the task takes, e.g. ``"2"`` or ``"2 or more"``."""
        if not self.is_stack:
            return str(self.min_inputs)
        if self.max_inputs is None:
            return f"{self.min_inputs} or more"
        return f"{self.min_inputs} to {self.max_inputs}"


MIN_GLOBAL_VIEW = 64
"""Smallest ``TaskSpec.global_view``: below it the network sees too few pixels to judge."""

COMPOSE_MODES = ("network", "select", "detail")
"""How a task's output is made from the network's fusion (see ``TaskSpec.compose``)."""


def _spec_problems(spec: TaskSpec) -> list[str]:
    """List everything wrong with a TaskSpec (empty when it is usable)."""
    problems: list[str] = []
    if not isinstance(spec.name, str) or not _NAME.match(spec.name):
        problems.append("name must be 1-32 lower-case letters, digits, '-' or '_'")
    elif spec.name in RESERVED_NAMES:
        problems.append(f"name {spec.name!r} is one of fusecli's own commands")
    if not isinstance(spec.help, str) or not spec.help.strip() or "\n" in spec.help:
        problems.append("help must be one non-empty line")
    problems += _count_problems(spec)
    problems += _role_problems(spec)
    if spec.faf_set not in (1, 2) or isinstance(spec.faf_set, bool):
        problems.append(f"faf_set must be 1 or 2, not {spec.faf_set!r}")
    if not isinstance(spec.color, ColorPolicy):
        problems.append("color must be a fusecli.color.ColorPolicy")
    elif spec.color.mode == "chroma_from" and not (
        isinstance(spec.roles, tuple) and 0 <= spec.color.source < len(spec.roles)
    ):
        problems.append(f"color takes chroma from input {spec.color.source}, which has no role")
    problems += _batch_problems(spec)
    if not isinstance(spec.default_weights, str) or not _NAME.match(spec.default_weights):
        problems.append("default_weights must name a weights file, e.g. 'pslpt-general'")
    if spec.demo_inputs is not None and not callable(spec.demo_inputs):
        problems.append("demo_inputs must be None or a function of a scene")
    if spec.compose not in COMPOSE_MODES:
        problems.append(f"compose must be one of {', '.join(COMPOSE_MODES)}, not {spec.compose!r}")
    view = spec.global_view
    if (
        isinstance(view, bool)
        or not isinstance(view, int)
        or (view != 0 and view < MIN_GLOBAL_VIEW)
    ):
        problems.append(f"global_view must be 0 or a side of at least {MIN_GLOBAL_VIEW} pixels")
    return problems


def _count_problems(spec: TaskSpec) -> list[str]:
    if not isinstance(spec.min_inputs, int) or spec.min_inputs < 2:
        return ["min_inputs must be an integer of at least 2"]
    if spec.max_inputs is not None and (
        not isinstance(spec.max_inputs, int) or spec.max_inputs < spec.min_inputs
    ):
        return ["max_inputs must be None or an integer of at least min_inputs"]
    return []


def _role_problems(spec: TaskSpec) -> list[str]:
    roles = spec.roles
    if not isinstance(roles, tuple) or not roles:
        return ["roles must be a non-empty tuple of InputRole"]
    if not all(isinstance(role, InputRole) for role in roles):
        return ["every role must be an InputRole"]
    problems = []
    stack = spec.max_inputs != spec.min_inputs
    if stack and len(roles) != 1:
        problems.append("a task with a variable number of inputs has exactly one role")
    if not stack and len(roles) != spec.min_inputs:
        problems.append(f"{spec.min_inputs} inputs need {spec.min_inputs} roles, not {len(roles)}")
    names = [role.name for role in roles]
    if len(set(names)) != len(names):
        problems.append("role names must differ")
    for role in roles:
        if not isinstance(role.name, str) or not re.match(r"^[a-z][a-z0-9 _/-]*$", role.name):
            problems.append(f"role name {role.name!r} must be lower-case words")
        if not isinstance(role.description, str) or not role.description.strip():
            problems.append(f"role {role.name!r} needs a one-line description")
        if not callable(role.preprocessing) and role.preprocessing not in PREPROCESSING_STEPS:
            known = ", ".join(PREPROCESSING_STEPS)
            problems.append(
                f"role {role.name!r}: unknown preprocessing (known: {known}, or a function)"
            )
    return problems


def _batch_problems(spec: TaskSpec) -> list[str]:
    if not isinstance(spec.batch_names, tuple):
        return ["batch_names must be a tuple of tuples of folder names"]
    problems = []
    for names in spec.batch_names:
        if not isinstance(names, tuple) or not all(
            isinstance(n, str) and _FOLDER.match(n) for n in names
        ):
            problems.append(f"batch_names entry {names!r} must be a tuple of lower-case names")
            continue
        if len(set(names)) != len(names):
            problems.append(f"batch_names entry {names!r} repeats a name")
        too_many = spec.max_inputs is not None and len(names) > spec.max_inputs
        if len(names) < spec.min_inputs or too_many:
            problems.append(f"batch_names entry {names!r} has the wrong number of names")
    return problems


class TaskRegistrar(Protocol):
    """What ``fusecli_register_tasks`` receives: something to register tasks on."""

    def register(self, spec: TaskSpec) -> None:
        """Add one task; raises PluginError if another plugin already took its name."""


@hookspec
def fusecli_register_tasks(registry: TaskRegistrar) -> None:
    """Register the fusion tasks that this plugin provides.

    When it runs: once per process, the first time fusecli needs the list of tasks (when the
    ``fuse`` command line is built, or when ``fusecli.plugins.load_catalog()`` is called),
    after every plugin of the ``fusecli`` entry-point group has been imported. Each plugin's
    implementation is called on its own, so a plugin that raises only loses its own tasks.

    Args:
        registry: call ``registry.register(TaskSpec(...))`` once per task. A plugin whose
            implementation raises (an invalid TaskSpec raises PluginError when it is built)
            registers none of its tasks; fusecli prints one warning naming it.

    Returns:
        Nothing: tasks are added through ``registry``.
    """


@dataclass(frozen=True)
class MethodInput:
    """What a fusion method gets: the sources as the task prepared them, and where to run.

    Attributes:
        images: the sources in role order, each (1, 1, H, W) float in [0, 1] on the CPU, one
            size; already reduced to one channel by each role's preprocessing. The method
            returns the fused (1, 1, H, W) image in [0, 1]; fusecli puts the colour back with
            the task's colour policy, as it does for the network.
        task: the task being run.
        weights: a weights file the user gave, or None (only methods with weights use it).
        device: where the user asked fusion to run, e.g. ``"cpu"``.
        tile_size: tile side for tiled inference, or None to choose.
        progress: called as ``progress(done, total)`` by methods that work in steps, or None.
    """

    images: tuple[torch.Tensor, ...]
    task: TaskSpec
    weights: str | None = None
    device: str = "cpu"
    tile_size: int | None = None
    progress: Callable[[int, int], None] | None = None


@dataclass(frozen=True)
class MethodSpec:
    """A fusion method a plugin registers: how images are fused, whatever the task.

    Attributes:
        name: method name, lower case, e.g. ``"laplacian"`` (``--method laplacian``).
        help: one-line summary shown by ``fuse methods``.
        fuse: the method, called with a :class:`MethodInput`; returns (1, 1, H, W) in [0, 1].
        faf_sets: the task families it suits, by their FAF set (1: multi-focus and
            multi-exposure, 2: infrared/visible and medical); default both.
        tasks: task names it is limited to, or None for every task of ``faf_sets``.
        stacks: True if it fuses any number of sources, False if only two.
    """

    name: str
    help: str
    fuse: Callable[[MethodInput], torch.Tensor]
    faf_sets: tuple[int, ...] = (1, 2)
    tasks: tuple[str, ...] | None = None
    stacks: bool = True

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            problems.append("name must be 1-32 lower-case letters, digits, '-' or '_'")
        if not isinstance(self.help, str) or not self.help.strip() or "\n" in self.help:
            problems.append("help must be one non-empty line")
        if not callable(self.fuse):
            problems.append("fuse must be a function of a MethodInput")
        if not isinstance(self.faf_sets, tuple) or not set(self.faf_sets) <= {1, 2}:
            problems.append(f"faf_sets must be a tuple of 1 and/or 2, not {self.faf_sets!r}")
        if self.tasks is not None and not (
            isinstance(self.tasks, tuple) and all(isinstance(t, str) for t in self.tasks)
        ):
            problems.append("tasks must be None or a tuple of task names")
        if problems:
            raise PluginError(f"method {self.name!r} is invalid: {'; '.join(problems)}")

    def unsuitable_for(self, task: TaskSpec, count: int) -> str | None:
        """Why this method cannot fuse ``count`` sources of ``task``, or None if it can."""
        if self.tasks is not None and task.name not in self.tasks:
            return f"method {self.name!r} fuses only the tasks {', '.join(self.tasks)}"
        if self.tasks is None and task.faf_set not in self.faf_sets:
            return f"method {self.name!r} does not suit task {task.name!r}"
        if not self.stacks and count != 2:
            return f"method {self.name!r} fuses exactly two sources, got {count}"
        return None

    def supports_text(self) -> str:
        """What it suits, e.g. ``"mff, mef; pairs and stacks"`` (tasks) or ``"FAF sets 1, 2"``."""
        which = (
            ", ".join(self.tasks)
            if self.tasks is not None
            else "FAF set"
            + ("s " if len(self.faf_sets) > 1 else " ")
            + ", ".join(str(s) for s in self.faf_sets)
        )
        return f"{which}; {'pairs and stacks' if self.stacks else 'pairs only'}"


class MethodRegistrar(Protocol):
    """What ``fusecli_register_methods`` receives: something to register methods on."""

    def register(self, spec: MethodSpec) -> None:
        """Add one method; two packages registering one name is an error when it is used."""


@hookspec
def fusecli_register_methods(registry: MethodRegistrar) -> None:
    """Register the fusion methods that this plugin provides.

    When it runs: once per process, right after the same plugin's ``fusecli_register_tasks``
    (when the task catalog is loaded). A plugin may implement either hook or both.

    Args:
        registry: call ``registry.register(MethodSpec(...))`` once per method. A plugin whose
            implementation raises registers none of its methods (nor its tasks); fusecli prints
            one warning naming it.

    Returns:
        Nothing: methods are added through ``registry``.
    """
