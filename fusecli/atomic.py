"""Atomic file replacement: write a hidden temporary file beside the target, then rename it.

A crash, a full disk or Ctrl-C leaves either the old file or the new one, never a partial file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = ".part") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    The caller writes the temporary file (by name, so any writer library works). On leaving the
    block normally the file is flushed to disk, given the mode a new file would get (mkstemp
    makes it 0600), and renamed over ``path``; on an exception it is removed.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def new_file_mode() -> int:
    """0o666 minus the process umask (read by setting it back at once; there is no getter)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask
