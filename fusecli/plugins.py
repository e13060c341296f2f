"""Task plugins: the pluggy manager, entry-point loading, the task catalog and running a task.

Plugins are found through the ``fusecli`` entry-point group (``[project.entry-points.fusecli]``
in a package's pyproject.toml). fusecli's own four tasks (mff, mef, ivf, mmf) are declared
there too, by the ``fusecli`` distribution, and load through the very same path.

Setting ``FUSECLI_DISABLE_PLUGIN_AUTOLOAD=1`` stops the loading of entry points of every other
distribution (third-party plugins); the built-in entry points of the ``fusecli`` distribution
still load, because without them the command has no tasks at all. The tests set it, so that a
plugin installed in a developer's environment cannot change their results.

A plugin that fails to import, has a malformed hook or declares an invalid task is skipped with
one warning naming it; every other task keeps working. Two plugins registering the same task
name is an error naming both packages, raised when that task is used.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import pluggy
import torch
import torch.nn.functional as F

from fusecli import hookspecs
from fusecli.color import luminance, restore_color
from fusecli.engine import PSLPT, fuse_tiled, load_weights, shipped_weights_path
from fusecli.errors import FuseError, PluginError, WeightsError
from fusecli.hookspecs import TaskSpec
from fusecli.io import check_writable, output_bit_depth, read_image, same_file, write_image

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME
DISABLE_AUTOLOAD_ENV = "FUSECLI_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN_DISTRIBUTION = "fusecli"


@dataclass(frozen=True)
class PluginInfo:
    """One plugin as ``fuse plugins`` shows it.

    Attributes:
        name: entry-point name (or the name given to an in-process plugin).
        package: distribution that declared it, with its version, e.g. ``"fusecli 0.1.0"``.
        module: the module the entry point names.
        status: ``"loaded"``, ``"failed"`` or ``"disabled"`` (autoload turned off).
        tasks: names of the tasks it registered.
        message: why it failed or was not loaded.
    """

    name: str
    package: str
    module: str
    status: str
    tasks: tuple[str, ...] = ()
    message: str = ""


@dataclass(frozen=True)
class RegisteredTask:
    """A task together with the plugin and package it came from."""

    spec: TaskSpec
    plugin: str
    package: str


@dataclass
class TaskCatalog:
    """Every task that loaded, the plugins behind them and the problems met on the way.

    Attributes:
        tasks: task name -> the first registration of that name.
        plugins: every plugin found, loaded or not, in load order.
        warnings: one line per broken plugin.
        conflicts: task name -> one line naming every package that registered it.
    """

    tasks: dict[str, RegisteredTask] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    conflicts: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> RegisteredTask:
        """Return the task called ``name``.

        Raises:
            PluginError: no such task, or two packages registered it.
        """
        if name in self.conflicts:
            raise PluginError(self.conflicts[name])
        if name not in self.tasks:
            known = ", ".join(sorted(self.tasks)) or "none"
            raise PluginError(f"no task named {name!r} is installed (tasks: {known})")
        return self.tasks[name]


class _PluginRegistrar:
    """The ``registry`` one plugin's hook receives; it stamps each task with its origin."""

    def __init__(self, plugin: str, package: str) -> None:
        self.plugin = plugin
        self.package = package
        self.registered: list[RegisteredTask] = []

    def register(self, spec: TaskSpec) -> None:
        if not isinstance(spec, TaskSpec):
            raise PluginError(f"register() takes a fusecli.hookspecs.TaskSpec, not {spec!r}")
        self.registered.append(RegisteredTask(spec, self.plugin, self.package))


def autoload_enabled() -> bool:
    """False when FUSECLI_DISABLE_PLUGIN_AUTOLOAD is set to anything but ``""`` or ``"0"``."""
    return os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip() in ("", "0")


def _package_of(entry_point: EntryPoint) -> tuple[str, bool]:
    """``"name version"`` of the distribution declaring an entry point, and whether it is ours."""
    dist = entry_point.dist
    if dist is None:
        return "unknown package", False
    name = dist.metadata["Name"] or dist.name
    builtin = name.lower().replace("_", "-") == BUILTIN_DISTRIBUTION
    return f"{name} {dist.version}", builtin


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _entry_points() -> list[EntryPoint]:
    """Entry points of the group, built-in ones first, each group sorted by name."""
    found = list(entry_points(group=ENTRY_POINT_GROUP))
    return sorted(found, key=lambda ep: (not _package_of(ep)[1], ep.name))


def load_catalog(
    *, autoload: bool | None = None, extra_plugins: Iterable[tuple[str, object]] = ()
) -> TaskCatalog:
    """Load every task plugin on a fresh plugin manager and collect their tasks.

    Args:
        autoload: load third-party entry points; default: unless FUSECLI_DISABLE_PLUGIN_AUTOLOAD
            is set. Built-in entry points always load.
        extra_plugins: ``(name, plugin)`` pairs registered after the entry points, e.g. a module
            or object with a ``fusecli_register_tasks`` hookimpl (used by tests and embedders).

    Returns:
        The catalog; broken plugins are listed in ``warnings``, never raised.
    """
    if autoload is None:
        autoload = autoload_enabled()
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    catalog = TaskCatalog()
    candidates: list[tuple[str, str, str, object]] = []

    for entry_point in _entry_points():
        package, builtin = _package_of(entry_point)
        if not builtin and not autoload:
            catalog.plugins.append(
                PluginInfo(
                    entry_point.name,
                    package,
                    entry_point.value,
                    "disabled",
                    message=f"{DISABLE_AUTOLOAD_ENV} is set",
                )
            )
            continue
        try:
            module = entry_point.load()
        except Exception as exc:  # a plugin's import error must not take the others down
            _fail(catalog, entry_point.name, package, entry_point.value, "failed to import", exc)
            continue
        candidates.append((entry_point.name, package, entry_point.value, module))
    for name, plugin in extra_plugins:
        candidates.append((name, "in-process", getattr(plugin, "__name__", repr(plugin)), plugin))

    for name, package, module_name, plugin in candidates:
        try:
            manager.register(plugin, name=f"{package}:{name}")
        except Exception as exc:  # pluggy rejects malformed hookimpls and duplicate objects
            _fail(catalog, name, package, module_name, "has a malformed hook", exc)
            continue
        impls = [
            impl
            for impl in manager.hook.fusecli_register_tasks.get_hookimpls()
            if impl.plugin is plugin
        ]
        registrar = _PluginRegistrar(name, package)
        try:
            # Called one plugin at a time (not through manager.hook) so that a plugin raising
            # here loses only its own tasks.
            for impl in impls:
                impl.function(registry=registrar)
        except Exception as exc:
            manager.unregister(plugin)
            _fail(catalog, name, package, module_name, "failed while registering tasks", exc)
            continue
        _add_tasks(catalog, registrar.registered)
        task_names = tuple(task.spec.name for task in registrar.registered)
        catalog.plugins.append(PluginInfo(name, package, module_name, "loaded", task_names))
    return catalog


def _fail(
    catalog: TaskCatalog, name: str, package: str, module: str, what: str, exc: BaseException
) -> None:
    message = f"plugin {name!r} ({package}) {what} ({_one_line(exc)}); its tasks are unavailable"
    catalog.warnings.append(message)
    catalog.plugins.append(PluginInfo(name, package, module, "failed", message=_one_line(exc)))


def _add_tasks(catalog: TaskCatalog, tasks: Sequence[RegisteredTask]) -> None:
    for task in tasks:
        name = task.spec.name
        first = catalog.tasks.get(name)
        if first is None:
            catalog.tasks[name] = task
            continue
        # Keep the first registration for --help, but refuse to run an ambiguous task.
        catalog.conflicts[name] = (
            f"task {name!r} is registered by two packages, {first.package} (plugin "
            f"{first.plugin!r}) and {task.package} (plugin {task.plugin!r}); uninstall one of them"
        )


@functools.cache
def get_catalog() -> TaskCatalog:
    """The catalog of this process, loaded on first use (``get_catalog.cache_clear()`` reloads)."""
    return load_catalog()


# --- running a task -------------------------------------------------------------------------


def resolve_weights(spec: TaskSpec, override: str | os.PathLike | None = None) -> Path:
    """The weights file a task runs with: ``override`` if given, else its shipped default.

    Raises:
        WeightsError: no override and no such weights are installed.
    """
    if override is not None:
        return Path(override)
    try:
        return shipped_weights_path(spec.default_weights)
    except WeightsError:
        raise WeightsError(
            f"no trained weights are installed (fusecli.weights/{spec.default_weights}"
            ".safetensors is missing); pass a weights file with --weights PATH, e.g. one made "
            "by `fuse weights convert two_fuse_rule.pth -o pslpt.safetensors`"
        ) from None


def load_network(path: str | os.PathLike, device: torch.device) -> PSLPT:
    """Load a weights file onto ``device`` in eval mode (WeightsError if it is unusable)."""
    return load_weights(path, map_location=device)


def network_inputs(spec: TaskSpec, sources: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Turn each source into the single channel the network fuses, per its role's preprocessing.

    Args:
        spec: the task.
        sources: (1, C, H, W) float tensors in [0, 1], C in {1, 3}.

    Returns:
        (1, 1, H, W) tensors in [0, 1], one per source.
    """
    prepared = []
    for index, source in enumerate(sources):
        step = spec.role_of(index).preprocessing
        if source.shape[1] == 1:
            prepared.append(source)
        elif step == "luminance":
            prepared.append(luminance(source))
        elif step == "channel_mean":
            prepared.append(source.mean(dim=1, keepdim=True))
        else:  # TaskSpec validation makes this unreachable
            raise AssertionError(f"unknown preprocessing {step!r}")
    return prepared


def check_input_count(spec: TaskSpec, count: int) -> None:
    """Raise FuseError unless ``count`` sources suit the task."""
    too_many = spec.max_inputs is not None and count > spec.max_inputs
    if count < spec.min_inputs or too_many:
        roles = ", ".join(role.name for role in spec.roles)
        raise FuseError(
            f"task {spec.name!r} takes {spec.inputs_text()} input images ({roles}), "
            f"got {count}; see `fuse {spec.name} --help`"
        )


def match_sizes(
    sources: Sequence[torch.Tensor], names: Sequence[str], *, resize: bool
) -> list[torch.Tensor]:
    """Check that all sources have the first one's size, or resize them to it.

    Args:
        sources: (1, C, H, W) tensors.
        names: file names for the error message, one per source.
        resize: resample differing sources (bilinear, antialiased) instead of refusing.

    Returns:
        (1, C, H0, W0) tensors, H0, W0 the first source's size.

    Raises:
        FuseError: sizes differ and ``resize`` is False.
    """
    height, width = sources[0].shape[-2:]
    matched = [sources[0]]
    for source, name in zip(sources[1:], names[1:], strict=True):
        if source.shape[-2:] == (height, width):
            matched.append(source)
            continue
        if not resize:
            raise FuseError(
                f"{name} is {source.shape[-1]}x{source.shape[-2]} but {names[0]} is "
                f"{width}x{height}; register the images to one size or pass --resize"
            )
        resized = F.interpolate(
            source, size=(height, width), mode="bilinear", align_corners=False, antialias=True
        )
        matched.append(resized.clamp(0.0, 1.0))
    return matched


def fuse_sources(
    net: PSLPT,
    spec: TaskSpec,
    sources: Sequence[torch.Tensor],
    *,
    tile_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Fuse registered sources with a task's preprocessing, FAF set and colour policy.

    Args:
        net: the network, on its device, in eval mode.
        spec: the task.
        sources: (1, C, H, W) float tensors in [0, 1] of one size, C in {1, 3}, in role order.
        tile_size: tile side for tiled inference; None picks one that fits in memory.
        progress: called as ``progress(done_tiles, total_tiles)``.

    Returns:
        (1, C_out, H, W) float in [0, 1] on the CPU; C_out is 1 when every source is grayscale.
    """
    check_input_count(spec, len(sources))
    luma = network_inputs(spec, sources)
    with torch.inference_mode():
        fused_y = fuse_tiled(net, luma, spec.faf_set, tile_size=tile_size, progress=progress)
    fused = restore_color(fused_y, list(sources), spec.color)
    return torch.nan_to_num(fused, nan=0.0).clamp(0.0, 1.0).cpu()


@dataclass(frozen=True)
class FusedFile:
    """What :func:`fuse_files` wrote.

    Attributes:
        output: the file written.
        sources: the source files, in role order.
        width, height: size of the output (the first source's size).
        channels: 1 (grey) or 3 (colour).
        bit_depth: bits per channel stored (JPEG and BMP hold 8 whatever the sources).
        seconds: wall time of reading, fusing and writing.
    """

    output: Path
    sources: tuple[Path, ...]
    width: int
    height: int
    channels: int
    bit_depth: int
    seconds: float


def check_output(sources: Sequence[Path], output: Path, *, overwrite: bool) -> None:
    """Fail before any work if ``output`` is one of the sources or cannot be written.

    Raises:
        FuseError: the output names a source, or ImageWriteError from ``check_writable``.
    """
    for source in sources:
        if same_file(source, output):
            raise FuseError(
                f"the output {output} is also the input {source}; choose another output name"
            )
    check_writable(output, overwrite=overwrite)


def fuse_files(
    net: PSLPT,
    spec: TaskSpec,
    sources: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    overwrite: bool = False,
    resize: bool = False,
    tile_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> FusedFile:
    """Read source files, fuse them with a task and write the result atomically.

    The output has the first source's size, the deepest source's bit depth (as far as its
    format holds it) and the colour the task's policy gives; alpha is not carried over, the
    output is opaque. Nothing is written unless fusion succeeded.

    Args:
        net: the network, on its device, in eval mode.
        spec: the task.
        sources: image files in role order.
        output: destination file; its extension picks the format.
        overwrite: replace an existing output.
        resize: resample sources to the first one's size instead of refusing.
        tile_size: tile side for tiled inference; None picks one that fits in memory.
        progress: called as ``progress(done_tiles, total_tiles)``.

    Raises:
        FuseError: wrong number of sources, unreadable source, output equal to a source or
            not writable, sizes differ without ``resize``.
    """
    start = time.perf_counter()
    paths = tuple(Path(p) for p in sources)
    output = Path(output)
    check_input_count(spec, len(paths))
    check_output(paths, output, overwrite=overwrite)
    images = [read_image(path) for path in paths]
    pixels = match_sizes([i.pixels for i in images], [str(p) for p in paths], resize=resize)
    fused = fuse_sources(net, spec, pixels, tile_size=tile_size, progress=progress)
    depth = output_bit_depth(images)
    write_image(output, fused, bit_depth=depth, overwrite=overwrite)
    stored = depth if output.suffix.lower() in (".png", ".tif", ".tiff") else 8
    if output.suffix.lower() == ".png":
        stored = min(stored, 16)
    return FusedFile(
        output=output,
        sources=paths,
        width=int(fused.shape[-1]),
        height=int(fused.shape[-2]),
        channels=int(fused.shape[1]),
        bit_depth=stored,
        seconds=time.perf_counter() - start,
    )
