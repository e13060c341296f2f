"""Errors a user can fix: one sentence saying what went wrong and what to do."""


class FuseError(Exception):
    """A failure caused by input, configuration or environment, not by a bug.

    The CLI prints ``error: <message>`` and exits 1 (no traceback unless ``--debug``).
    Messages name the file or key involved and say what to do.
    """


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
