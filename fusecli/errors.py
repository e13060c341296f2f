"""Errors a user can fix: one sentence saying what went wrong and what to do."""

from __future__ import annotations


class FuseError(Exception):
    """A failure caused by input, configuration or environment, not by a bug.

    The CLI prints ``error: <message>`` and exits 1 (no traceback unless ``--debug``).
    Messages name the file or key involved and say what to do.

    Code below the CLI names no command-line flag. When the fix is a setting of the caller
    (replace an existing output, resize sources, give weights), it says so in ``remedy`` and
    names the setting in ``hint``, so that a front end can state the fix its own way (the CLI
    names its flag).

    Attributes:
        problem: what went wrong.
        remedy: what to do, in the terms of the Python API ("" when ``problem`` says it all).
        hint: key of the setting the fix involves, e.g. ``"overwrite"``, or "".
    """

    def __init__(self, problem: str, *, remedy: str = "", hint: str = "") -> None:
        self.problem = problem
        self.remedy = remedy
        self.hint = hint
        super().__init__(f"{problem}; {remedy}" if remedy else problem)


class ImageReadError(FuseError):
    """An image file could not be read or is not usable."""


class ImageWriteError(FuseError):
    """An output image could not be written."""


class WeightsError(FuseError):
    """A weights file is missing, corrupted, or for another architecture."""


class RecipeError(FuseError):
    """A training recipe is malformed."""


class PluginError(FuseError):
    """A task plugin is broken or conflicts with another."""


class InternalError(FuseError):
    """A result only a bug can produce, such as NaN pixels from the network.

    Raised instead of repairing the result, so that a bug in fusecli or a plugin is reported
    with the inputs that trigger it rather than hidden in a plausible-looking image.
    """
