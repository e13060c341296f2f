"""Root of the `fuse` command: global options, command registration and error reporting."""

from __future__ import annotations

import importlib
import sys

import typer
from typer.core import TyperGroup

from fusecli import __version__
from fusecli.cli.common import GlobalOptions, error_message, resolve_device
from fusecli.errors import FuseError

# Each module exposes `register(app: typer.Typer) -> None`; order is the order in `--help`.
COMMAND_MODULES: tuple[str, ...] = (
    "fuse",
    "batch",
    "tasks",
    "methods",
    "weights",
    "demo",
    "eval",
    "train",
)


class _FuseGroup(TyperGroup):
    """Turns a FuseError into one `error: ...` line and exit status 1 (traceback with --debug)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FuseError as exc:
            options = ctx.obj if isinstance(ctx.obj, GlobalOptions) else GlobalOptions()
            if options.debug:
                raise
            typer.echo(f"error: {error_message(exc, ctx.invoked_subcommand or '')}", err=True)
            raise typer.Exit(1) from None


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
            False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
        ),
    ) -> None:
        ctx.obj = GlobalOptions(debug=debug, device_name=device)
        # Resolved once, here: a device that is unknown or absent fails before any command.
        ctx.obj.device = resolve_device(device)

    for module_name in COMMAND_MODULES:
        importlib.import_module(f"fusecli.cli.{module_name}").register(app)
    return app


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    app = build_app()
    app(args=argv if argv is not None else sys.argv[1:], prog_name="fuse")
