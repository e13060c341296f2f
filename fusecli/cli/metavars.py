"""How arguments and option values read in `--help` and usage lines: as enfuse and git write them.

Typer (0.2x) adds a type column to its help, so every flag reads ``--debug <bool>`` and a list
argument ``SOURCES <list[Path]>``, and it writes required arguments in braces with a second
ellipsis: ``{FOCUS_PLANE...}...``. enfuse and git print ``enfuse [options] --output=IMAGE
INPUT...`` and ``git add [<options>] [--] <pathspec>...``: a value name in capitals, ``...``
once for repeats, brackets for what is optional and nothing after a flag. fuse follows them.

The parameters are built by Typer, which takes no class for them, so :func:`plain_metavars`
walks the finished command tree once (from the root group) and gives each parameter a subclass
that prints it that way, and a value name where the command declared none. The same subclasses
build Typer's value coercion only when a value needs it (see :mod:`fusecli.cli.coercion`).
"""

from __future__ import annotations

from typing import Any

from fusecli.cli.coercion import coercion_when_needed

try:
    from typer.core import TyperArgument, TyperOption
except ImportError:  # pragma: no cover (Typer before 0.12)
    TyperArgument = TyperOption = None  # type: ignore[assignment, misc]

# Value names by type, as enfuse's --help writes them.
PATH_NAMES = {"file": "FILE", "dir": "FOLDER"}


def value_name(param: Any) -> str:
    """The capitalised word shown after an option: FILE, FOLDER, PATH, N, X, or its name."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None and descriptor.is_path:
        return PATH_NAMES.get(descriptor.path_type, "PATH")
    annotation = getattr(descriptor, "annotation", None)
    if annotation is int:
        return "N"
    if annotation is float:
        return "X"
    longest = max(getattr(param, "opts", None) or [param.name or "value"], key=len)
    return longest.lstrip("-").replace("-", "_").upper()


if TyperArgument is not None:

    class PlainArgument(TyperArgument):  # type: ignore[misc, valid-type]
        """``SOURCE...``, ``[RECIPE]``: the name says it all; no type column, no braces."""

        def display_type_rich(self, ctx: Any) -> str | None:
            return None

        def _usage_display_name(self) -> str:
            name = self.metavar or (self.name or "value").upper()
            return name if self.required else f"[{name}]"

        def get_runtime_param(self) -> Any:
            return coercion_when_needed(self, lambda: TyperArgument.get_runtime_param(self))

    class PlainOption(TyperOption):  # type: ignore[misc, valid-type]
        """``--tile N``, ``--weights FILE``; a flag is only its name (no ``<bool>``)."""

        def display_type_rich(self, ctx: Any) -> str | None:
            if self.is_flag or self.count:
                return None
            return super().display_type_rich(ctx)

        def get_runtime_param(self) -> Any:
            return coercion_when_needed(self, lambda: TyperOption.get_runtime_param(self))


def _plain(param: Any) -> None:
    if TyperArgument is None:
        return
    if type(param) is TyperArgument:
        if param.metavar is None:
            # An argument is named for what it is (RECIPE, FOLDER), an option's value for its
            # type (FILE, N): the option's own name already says what it is.
            name = (param.name or "value").upper()
            param.metavar = f"{name}..." if param.nargs != 1 else name
        param.__class__ = PlainArgument
    elif type(param) is TyperOption:
        if param.metavar is None and not (param.is_flag or param.count):
            param.metavar = value_name(param)
        param.__class__ = PlainOption


def plain_metavars(command: Any) -> None:
    """Give every parameter of ``command`` and of its subcommands the enfuse/git look.

    The help is click's plain text, not Rich's boxed table: at 80 columns Rich's six columns
    leave the help text a third of the width, wrapped raggedly, and it reads ``[align]`` in
    ``fusecli[align]`` as markup and drops it.
    """
    if hasattr(command, "rich_markup_mode"):
        command.rich_markup_mode = None
    for param in getattr(command, "params", ()):
        _plain(param)
    if hasattr(command, "get_help_option"):
        _plain_help_option(command)
    for sub in getattr(command, "commands", {}).values():
        plain_metavars(sub)


def _plain_help_option(command: Any) -> None:
    """Make ``-h/--help`` plain too; click creates it on first use, after the walk above."""
    typer_help_option = command.get_help_option

    def get_help_option(ctx: Any) -> Any:
        option = typer_help_option(ctx)
        if option is not None:
            _plain(option)
        return option

    command.get_help_option = get_help_option
