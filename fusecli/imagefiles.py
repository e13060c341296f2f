"""Which files are images, in which order, and which format their first bytes announce.

Standard library only: the command line lists, plans and names files with this module while
answering ``--help`` and shell completion, which must not wait for numpy, Pillow or the codecs
that :mod:`fusecli.io` needs to decode pixels. :mod:`fusecli.io` re-exports these names.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# The image files every part of fusecli writes, and reads without extras (lower case, with the dot).
SUPPORTED_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
# Camera RAW files, read (never written) through the optional ``raw`` extra (rawpy, LibRaw).
RAW_EXTENSIONS = frozenset({".dng", ".cr2", ".nef", ".arw"})
# Everything a source may be.
READABLE_EXTENSIONS = SUPPORTED_EXTENSIONS | RAW_EXTENSIONS
_DIGITS = re.compile(r"(\d+)")
# The first bytes of each format we read (classic and big TIFF, both byte orders), and the
# extension that stands for it here.
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
    (b"II+\x00", ".tif"),
    (b"MM\x00+", ".tif"),
    (b"BM", ".bmp"),
)


def natural_key(name: str | os.PathLike) -> tuple[str | int, ...]:
    """Sort key of a file name that orders embedded numbers numerically (``img2`` before ``img10``).

    Only the last part of a path counts. Letters compare case-sensitively (``Z`` before ``a``),
    the order the training data splits were made in.
    """
    parts = _DIGITS.split(os.path.basename(os.fspath(name)))
    # re.split with one group alternates text and digit runs: the digit runs are the odd parts.
    return tuple(int(part) if index % 2 else part for index, part in enumerate(parts))


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files directly in ``folder`` (readable extensions, camera RAW included, not
    hidden), natural order."""
    found = (
        path
        for path in Path(folder).iterdir()
        if path.suffix.lower() in READABLE_EXTENSIONS
        and not path.name.startswith(".")
        and path.is_file()
    )
    return sorted(found, key=natural_key)


def writable_name(source: str | os.PathLike) -> str:
    """The file name an output made from ``source`` gets: its own, or ``.tif`` for camera RAW
    (fusecli writes no RAW; TIFF keeps its 16 bits)."""
    path = Path(source)
    return path.with_suffix(".tif").name if path.suffix.lower() in RAW_EXTENSIONS else path.name


def sniff_format(head: bytes) -> str | None:
    """The format a file's first bytes announce, as its usual extension, or None.

    Args:
        head: the first bytes of the file (8 are enough).

    Returns:
        ``.png``, ``.jpg``, ``.tif`` or ``.bmp``; None when no signature matches.
    """
    for signature, suffix in _SIGNATURES:
        if head.startswith(signature):
            return suffix
    return None
