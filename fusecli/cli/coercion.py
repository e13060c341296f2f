"""Typer's coercion of a parameter's value, built only when a value needs it.

Typer (0.2x) coerces every parameter's value through a Pydantic ``TypeAdapter``, built the
first time the parameter is processed, even when its value is absent (None), is text for a
text option or is an option's own default (``fuse eval -j <Tab>`` processes the int default of
``-j``). Building the first one imports Pydantic: 0.1 s and more on a busy machine, paid by
``fuse TASK --help`` (the root's ``--device`` is processed) and by every shell completion, which
convert nothing. :func:`coercion_when_needed` passes those values through and builds Typer's
coercion for the first value that needs it, so Typer still checks every real value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# A value of one of these types, when the option is declared with that very type, needs no
# conversion. The command line gives text, so an int, float or bool here is the declared default
# (a user's ``-j 0`` arrives as "0" and Typer still converts and range-checks it).
_PLAIN = (str, int, float, bool)


class _UntilNeeded:
    """Stands in for Typer's coercion of one parameter until a value needs converting."""

    def __init__(self, typer_coercion: Callable[[], Any]) -> None:
        self.typer_coercion = typer_coercion

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        if value is None:  # absent: what Typer's coercion returns for it
            return () if param.multiple or param.nargs == -1 else None
        if type(value) is param.type_descriptor.annotation and type(value) in _PLAIN:
            return value
        return self.typer_coercion().coerce(value, param=param, ctx=ctx)


def coercion_when_needed(param: Any, typer_coercion: Callable[[], Any]) -> Any:
    """What a parameter's ``get_runtime_param`` returns: Typer's coercion once it is built
    (``typer_coercion`` builds and caches it), else a stand-in that builds it when needed."""
    if getattr(param, "_runtime_param", None) is not None:
        return param._runtime_param
    return _UntilNeeded(typer_coercion)
