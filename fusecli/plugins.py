"""Task plugins: the pluggy manager, entry-point loading and the task catalog.

Plugins are found through the ``fusecli`` entry-point group (``[project.entry-points.fusecli]``
in a package's pyproject.toml). fusecli's own four tasks (mff, mef, ivf, mmf) are declared
there too, by the ``fusecli`` distribution, and load through the very same path.

Setting ``FUSECLI_DISABLE_PLUGIN_AUTOLOAD=1`` stops the loading of entry points of every other
distribution (third-party plugins); the built-in entry points of the ``fusecli`` distribution
still load, because without them the command has no tasks at all. The tests set it, so that a
plugin installed in a developer's environment cannot change their results.

``FUSECLI_DISABLE_PLUGINS=name1,name2`` turns off single plugins by entry-point name (built-in
ones too).

A plugin that fails to import or has a malformed hook (a wrong argument name is named) is
skipped with one warning naming it; every other task keeps working. A plugin that registers
nothing (a misspelled hook name, a missing ``@hookimpl``) gets one warning. One invalid
registration costs only that task: the plugin's valid ones stay, and so do those it registered
before raising. A ``default_weights`` that is not installed is reported at registration. A
third-party task or method named like a built-in one is ignored with one warning (built-ins
win); two third-party packages registering the same name is an error naming both, raised when
that name is used. Running a task is fusecli.pipeline's job.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import TypeVar

import pluggy

from fusecli import hookspecs
from fusecli.errors import PluginError
from fusecli.hookspecs import MethodSpec, TaskSpec

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME
DISABLE_AUTOLOAD_ENV = "FUSECLI_DISABLE_PLUGIN_AUTOLOAD"
DISABLE_PLUGINS_ENV = "FUSECLI_DISABLE_PLUGINS"
HOOK_NAMES = ("fusecli_register_tasks", "fusecli_register_methods")
BUILTIN_DISTRIBUTION = "fusecli"


@dataclass(frozen=True)
class PluginInfo:
    """One plugin as ``fuse plugins`` shows it.

    Attributes:
        name: entry-point name (or the name given to an in-process plugin).
        package: distribution that declared it, with its version, e.g. ``"fusecli 0.1.0"``.
        module: the module the entry point names.
        status: ``"loaded"``, ``"failed"`` or ``"disabled"`` (autoload turned off, or named
            in FUSECLI_DISABLE_PLUGINS).
        tasks: names of the tasks it registered.
        message: why it failed or was not loaded.
        methods: names of the fusion methods it registered.
    """

    name: str
    package: str
    module: str
    status: str
    tasks: tuple[str, ...] = ()
    message: str = ""
    methods: tuple[str, ...] = ()


@dataclass(frozen=True)
class RegisteredTask:
    """A task together with the plugin and package it came from."""

    spec: TaskSpec
    plugin: str
    package: str


@dataclass(frozen=True)
class RegisteredMethod:
    """A fusion method together with the plugin and package it came from."""

    spec: MethodSpec
    plugin: str
    package: str


_Registration = TypeVar("_Registration", RegisteredTask, RegisteredMethod)


def _registered(
    name: str,
    registrations: dict[str, _Registration],
    conflicts: dict[str, str],
    *,
    kind: str,
    plural: str,
    hint: str = "",
) -> _Registration:
    """Look ``name`` up in one of the catalog's tables; tasks and methods fail the same way.

    Args:
        name: the name asked for.
        registrations: name -> the first registration of that name.
        conflicts: name -> one line naming every package that registered it.
        kind: what the message calls one entry, e.g. "task".
        plural: what the message calls the known names, e.g. "tasks".
        hint: the setting the fix involves (see FuseError), or "".

    Raises:
        PluginError: no such name, or two packages registered it.
    """
    if name in conflicts:
        raise PluginError(conflicts[name])
    if name not in registrations:
        known = ", ".join(sorted(registrations)) or "none"
        raise PluginError(f"no {kind} named {name!r} is installed ({plural}: {known})", hint=hint)
    return registrations[name]


@dataclass
class TaskCatalog:
    """Every task that loaded, the plugins behind them and the problems met on the way.

    Attributes:
        tasks: task name -> the first registration of that name.
        plugins: every plugin found, loaded or not, in load order.
        warnings: one line per broken plugin.
        conflicts: task name -> one line naming every package that registered it.
        methods: method name -> the first registration of that name.
        method_conflicts: method name -> one line naming every package that registered it.
    """

    tasks: dict[str, RegisteredTask] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    conflicts: dict[str, str] = field(default_factory=dict)
    methods: dict[str, RegisteredMethod] = field(default_factory=dict)
    method_conflicts: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> RegisteredTask:
        """Return the task called ``name``.

        Raises:
            PluginError: no such task, or two packages registered it.
        """
        return _registered(name, self.tasks, self.conflicts, kind="task", plural="tasks")

    def get_method(self, name: str) -> RegisteredMethod:
        """Return the fusion method called ``name``.

        Raises:
            PluginError: no such method, or two packages registered it.
        """
        return _registered(
            name,
            self.methods,
            self.method_conflicts,
            kind="fusion method",
            plural="methods",
            hint="method",
        )


class _PluginRegistrar:
    """The ``registry`` one plugin's hook receives; it stamps each task with its origin.

    A wrong registration is noted in ``problems`` rather than raised, so that the plugin's
    other registrations still happen.
    """

    def __init__(self, plugin: str, package: str) -> None:
        self.plugin = plugin
        self.package = package
        self.registered: list[RegisteredTask] = []
        self.problems: list[str] = []

    def register(self, spec: TaskSpec) -> None:
        if not isinstance(spec, TaskSpec):
            self.problems.append(f"register() takes a fusecli.hookspecs.TaskSpec, not {spec!r}")
            return
        missing = _missing_weights(spec.default_weights)
        if missing:
            self.problems.append(
                f"task {spec.name!r}: {missing}; it runs only with weights given by the caller"
            )
        self.registered.append(RegisteredTask(spec, self.plugin, self.package))


class _MethodRegistrar:
    """The ``registry`` one plugin's method hook receives; it stamps each method with its origin."""

    def __init__(self, plugin: str, package: str) -> None:
        self.plugin = plugin
        self.package = package
        self.registered: list[RegisteredMethod] = []
        self.problems: list[str] = []

    def register(self, spec: MethodSpec) -> None:
        if not isinstance(spec, MethodSpec):
            self.problems.append(f"register() takes a fusecli.hookspecs.MethodSpec, not {spec!r}")
            return
        self.registered.append(RegisteredMethod(spec, self.plugin, self.package))


def _missing_weights(name: str) -> str:
    """'' when the shipped weights ``name`` are installed, else what is wrong."""
    from fusecli.errors import WeightsError
    from fusecli.weights import shipped_weights_path

    try:
        shipped_weights_path(name)
    except WeightsError as exc:
        return f"default_weights: {exc.problem}"
    return ""


def disabled_plugins() -> set[str]:
    """Entry-point names listed in FUSECLI_DISABLE_PLUGINS (comma-separated)."""
    names = os.environ.get(DISABLE_PLUGINS_ENV, "").split(",")
    return {name.strip() for name in names if name.strip()}


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
    turned_off = disabled_plugins()

    for entry_point in _entry_points():
        package, builtin = _package_of(entry_point)
        if entry_point.name in turned_off:
            why = f"{DISABLE_PLUGINS_ENV} names it"
        elif not builtin and not autoload:
            why = f"{DISABLE_AUTOLOAD_ENV} is set"
        else:
            why = ""
        if why:
            catalog.plugins.append(
                PluginInfo(entry_point.name, package, entry_point.value, "disabled", message=why)
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
            _fail(catalog, name, package, module_name, "has a malformed hook", exc, plugin)
            continue
        registrar = _PluginRegistrar(name, package)
        method_registrar = _MethodRegistrar(name, package)
        task_impls = _impls_of(manager.hook.fusecli_register_tasks, plugin)
        method_impls = _impls_of(manager.hook.fusecli_register_methods, plugin)
        where = f"plugin {name!r} ({package})"
        try:
            # Called one plugin at a time (not through manager.hook) so that a plugin raising
            # here loses only what it had not registered yet.
            for impl in task_impls:
                impl.function(registry=registrar)
            for impl in method_impls:
                impl.function(registry=method_registrar)
        except Exception as exc:
            catalog.warnings.append(f"{where} failed while registering ({_one_line(exc)})")
        for problem in registrar.problems + method_registrar.problems:
            catalog.warnings.append(f"{where}: {problem}")
        if not registrar.registered and not method_registrar.registered:
            manager.unregister(plugin)
            _nothing_registered(
                catalog, name, package, module_name, bool(task_impls or method_impls)
            )
            continue
        tasks = _add_registrations(
            catalog, "task", registrar.registered, catalog.tasks, catalog.conflicts
        )
        methods = _add_registrations(
            catalog,
            "fusion method",
            method_registrar.registered,
            catalog.methods,
            catalog.method_conflicts,
        )
        catalog.plugins.append(
            PluginInfo(name, package, module_name, "loaded", tasks, methods=methods)
        )
    return catalog


def _nothing_registered(
    catalog: TaskCatalog, name: str, package: str, module: str, has_hooks: bool
) -> None:
    if has_hooks:
        why = "its hooks registered no valid task or method"
    else:
        why = (
            f"it has no function marked @hookimpl named {' or '.join(HOOK_NAMES)} "
            "(a misspelled hook name or a missing @hookimpl?)"
        )
    message = f"plugin {name!r} ({package}) registers nothing: {why}"
    if not any(warning.startswith(f"plugin {name!r} ({package})") for warning in catalog.warnings):
        catalog.warnings.append(message)
    catalog.plugins.append(PluginInfo(name, package, module, "failed", message=why))


def _impls_of(hook: pluggy.HookCaller, plugin: object) -> list[pluggy.HookImpl]:
    return [impl for impl in hook.get_hookimpls() if impl.plugin is plugin]


def _is_builtin(package: str) -> bool:
    return package.split(" ")[0].lower().replace("_", "-") == BUILTIN_DISTRIBUTION


def _shadowed(catalog: TaskCatalog, kind: str, name: str, first_package: str, new) -> bool:
    """True (with one warning) when ``new`` reuses the name of a built-in task or method."""
    if not _is_builtin(first_package) or _is_builtin(new.package):
        return False
    catalog.warnings.append(
        f"{kind} {name!r} of plugin {new.plugin!r} ({new.package}) is ignored: fusecli's "
        f"built-in {kind} has that name; rename it in that package"
    )
    return True


def _add_registrations(
    catalog: TaskCatalog,
    kind: str,
    registered: Sequence[RegisteredTask] | Sequence[RegisteredMethod],
    known: dict,
    conflicts: dict[str, str],
) -> tuple[str, ...]:
    """Add one plugin's tasks or methods to ``known``; returns the names kept.

    A name a built-in already has is ignored with a warning; a name two third-party packages
    register keeps the first registration (for --help) and is refused when run.
    """
    kept = []
    for item in registered:
        name = item.spec.name
        first = known.get(name)
        if first is None:
            known[name] = item
            kept.append(name)
            continue
        if _shadowed(catalog, kind, name, first.package, item):
            continue
        kept.append(name)
        conflicts[name] = (
            f"{kind} {name!r} is registered by two packages, {first.package} (plugin "
            f"{first.plugin!r}) and {item.package} (plugin {item.plugin!r}); uninstall one of them"
        )
    return tuple(kept)


def _fail(
    catalog: TaskCatalog,
    name: str,
    package: str,
    module: str,
    what: str,
    exc: BaseException,
    plugin: object = None,
) -> None:
    detail = _argument_problem(plugin) or _one_line(exc)
    message = (
        f"plugin {name!r} ({package}) {what} ({detail}); its tasks and methods are unavailable"
    )
    catalog.warnings.append(message)
    catalog.plugins.append(PluginInfo(name, package, module, "failed", message=_one_line(exc)))


def _argument_problem(plugin: object) -> str:
    """'' or which argument of a hook function the hook does not pass (pluggy takes 3 lines)."""
    for hook in HOOK_NAMES:
        function = getattr(plugin, hook, None)
        if not callable(function):
            continue
        passed = list(inspect.signature(getattr(hookspecs, hook)).parameters)
        taken = list(inspect.signature(function).parameters)
        unknown = [arg for arg in taken if arg not in passed]
        if unknown:
            return (
                f"{hook}() takes {', '.join(map(repr, unknown))}, but the hook passes only "
                f"{', '.join(map(repr, passed))}"
            )
    return ""


@functools.cache
def get_catalog() -> TaskCatalog:
    """The catalog of this process, loaded on first use (``get_catalog.cache_clear()`` reloads)."""
    return load_catalog()
