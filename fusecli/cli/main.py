"""Root of the `fuse` command: global options, command registration and error reporting."""

from __future__ import annotations

import importlib
import sys

import typer
from typer.core import TyperGroup

from fusecli import __version__
from fusecli.cli.common import GlobalOptions, error_message, resolve_device
from fusecli.cli.metavars import plain_metavars
from fusecli.errors import FuseError

try:  # typer 0.2x vendors click; earlier releases depend on it
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException, NoArgsIsHelpError, UsageError

# Exit statuses, as README.md documents them.
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Each module exposes `register(app: typer.Typer) -> None`; order is the order in `--help`.
COMMAND_MODULES: tuple[str, ...] = (
    "fuse",
    "batch",
    "align",
    "tasks",
    "methods",
    "weights",
    "export",
    "demo",
    "eval",
    "train",
)


# Root options that may also follow the subcommand (`fuse ivf a b -o c --device cpu`), with
# whether they take a value. No command declares an option of these names.
GLOBAL_OPTIONS: dict[str, bool] = {
    "--debug": False,
    "--device": True,
    "-q": False,
    "--quiet": False,
    "-v": False,
    "--verbose": False,
}
VERSION_OPTIONS = ("--version", "-V")
# ctx.meta key: the command line asks a subcommand for its help.
HELP_REQUESTED = "fusecli.help_requested"


def hoist_global_options(args: list[str]) -> list[str]:
    """Move root options found after the subcommand to before it, where click expects them.

    Everything after ``--`` is left alone, and so is an option's value.
    """
    command_at = next(
        (
            i
            for i, arg in enumerate(args)
            if not arg.startswith("-") and (i == 0 or args[i - 1] != "--device")
        ),
        None,
    )
    if command_at is None:
        return args
    head, rest, hoisted = list(args[:command_at]), [], []
    tail = args[command_at:]
    i = 0
    while i < len(tail):
        arg = tail[i]
        if arg == "--":
            rest += tail[i:]
            break
        name = arg.split("=", 1)[0]
        if name in GLOBAL_OPTIONS and i > 0:
            takes_value = GLOBAL_OPTIONS[name] and "=" not in arg
            hoisted += tail[i : i + 1 + takes_value]
            i += 1 + takes_value
            continue
        rest.append(arg)
        i += 1
    return head + hoisted + rest


def _asks_for_version(args: list[str]) -> bool:
    """``fuse --version`` / ``fuse -V`` (before any command), answered without building the app."""
    for arg in args:
        if arg in VERSION_OPTIONS:
            return True
        if not arg.startswith("-") or arg in ("-h", "--help"):
            return False
    return False


class _FuseGroup(TyperGroup):
    """Every failure is one `error: ...` line on stderr with its exit status.

    A FuseError exits with 1 (its traceback with --debug), a usage error (unknown option,
    missing or unreadable argument) with 2, Ctrl-C with 130. Click would draw usage errors as
    a box of four to six lines and print nothing useful for Ctrl-C.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        # Once, over every command Typer built; here rather than in __init__ because Typer adds
        # --install-completion and --show-completion to the group after building it.
        plain_metavars(self)
        if args is not None:
            args = hoist_global_options(list(args))
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            status = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as exc:
            # The help itself (typer's rich help prints it while the error is built).
            if exc.format_message():
                typer.echo(exc.format_message(), err=True)
            sys.exit(EXIT_USAGE)
        except UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "fuse"
            typer.echo(f"error: {exc.format_message()} (see '{where} --help')", err=True)
            sys.exit(EXIT_USAGE)
        except ClickException as exc:
            typer.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            status = EXIT_INTERRUPTED
        # Without standalone mode click returns the status of typer.Exit instead of exiting
        # (Ctrl-C included, as 130).
        status = status if isinstance(status, int) else 0
        if status == EXIT_INTERRUPTED:
            typer.echo(
                "error: interrupted; finished outputs are kept, none is half-written", err=True
            )
        sys.exit(status)

    def invoke(self, ctx):
        # Click clears the subcommand's arguments before the root callback runs, which must
        # know whether they ask for help; see `root` below.
        pending = [*getattr(ctx, "_protected_args", []), *getattr(ctx, "protected_args", [])]
        pending += ctx.args
        ctx.meta[HELP_REQUESTED] = any(arg in ("-h", "--help") for arg in pending)
        try:
            return super().invoke(ctx)
        except FuseError as exc:
            options = ctx.obj if isinstance(ctx.obj, GlobalOptions) else GlobalOptions()
            if options.debug:
                raise
            typer.echo(f"error: {error_message(exc, ctx.invoked_subcommand or '')}", err=True)
            raise typer.Exit(EXIT_FAILED) from None

    def resolve_command(self, ctx, args):
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            why = unavailable_command(name)
            if why:
                ctx.fail(why)
        return super().resolve_command(ctx, args)


def unavailable_command(name: str) -> str:
    """Why ``fuse NAME`` is missing when a plugin of that name was found but not loaded, else ''.

    Click would only say "No such command"; a user who set FUSECLI_DISABLE_PLUGINS in a shell
    profile long ago, or whose plugin fails to import, needs to hear which plugin and why.
    """
    from fusecli.plugins import (
        DISABLE_AUTOLOAD_ENV,
        DISABLE_PLUGINS_ENV,
        disabled_plugins,
        get_catalog,
    )

    for info in get_catalog().plugins:
        if info.name != name or info.status not in ("disabled", "failed"):
            continue
        where = f"task {name} is provided by plugin {info.name} ({info.package})"
        if info.status == "failed":
            return f"{where}, which failed to load ({info.message})"
        if name in disabled_plugins():
            return f"{where}, disabled by {DISABLE_PLUGINS_ENV}; remove {name} from it to use it"
        return f"{where}, disabled by {DISABLE_AUTOLOAD_ENV}; unset it to use it"
    return ""


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"fusecli {__version__}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    """Build the root app with every command registered (plugins are loaded here)."""
    app = typer.Typer(
        cls=_FuseGroup,
        name="fuse",
        help="Fuse images (infrared/visible, medical, multi-focus, multi-exposure) with PSLPT.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def root(
        ctx: typer.Context,
        debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
        device: str = typer.Option(
            "auto",
            "--device",
            help="Where the network runs: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps.",
        ),
        version: bool = typer.Option(
            False,
            "--version",
            "-V",
            callback=_version_callback,
            is_eager=True,
            help="Print the version.",
        ),
        quiet: bool = typer.Option(
            False, "-q", "--quiet", help="Print no status lines (wrote, note), only errors."
        ),
        verbose: bool = typer.Option(
            False, "-v", "--verbose", help="Also say which device, method and weights are used."
        ),
    ) -> None:
        ctx.obj = GlobalOptions(debug=debug, device_name=device, quiet=quiet, verbose=verbose)
        # Resolved here, so that a device that is unknown or absent fails before any command;
        # but not for help or completion, which must not import torch.
        if not ctx.resilient_parsing and not ctx.meta.get(HELP_REQUESTED):
            ctx.obj.resolved_device = resolve_device(device)
            from fusecli.engine.allocator import retain_freed_memory

            retain_freed_memory()

    for module_name in COMMAND_MODULES:
        importlib.import_module(f"fusecli.cli.{module_name}").register(app)
    return app


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    args = argv if argv is not None else sys.argv[1:]
    if _asks_for_version(args):  # before the commands (and torch, with them) are imported
        print(f"fusecli {__version__}")
        sys.exit(0)
    try:
        app = build_app()
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    app(args=args, prog_name="fuse")
