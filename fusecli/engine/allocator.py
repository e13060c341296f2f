"""Keeping freed memory in the process, so that inference does not pay the kernel for fresh pages.

glibc's malloc serves every block above its mmap threshold (at most 32 MB) with a fresh mmap and
returns it with munmap when freed. A PSLPT fusion allocates and frees feature maps of that size
by the hundred, and the kernel zero-fills every page of each new one: on a 2-core AVX2 machine a
512x512 pair took 371,000 page faults and about 14% of its time for them. Told to use the
heap for large blocks and not to trim it, malloc reuses the freed blocks instead. The cost is a
peak resident size a little higher (freed blocks are kept for the next tile, not returned).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# Largest trim threshold mallopt takes (an int): keep up to 2 GB of freed heap.
_KEEP_BYTES = 2**31 - 1

DISABLE_VARIABLE = "FUSECLI_SYSTEM_MALLOC"
"""Set to 1 to leave malloc as the system configured it."""


def retain_freed_memory() -> bool:
    """Make glibc's malloc keep freed large blocks for reuse, for the rest of the process.

    Called by the command line before it runs the network; a library user may call it too.
    Does nothing (and returns False) off glibc (macOS, Windows, musl), when
    ``FUSECLI_SYSTEM_MALLOC=1``, or when the user already tuned malloc through glibc's own
    ``MALLOC_MMAP_MAX_`` / ``MALLOC_TRIM_THRESHOLD_`` variables.

    Returns:
        Whether malloc was reconfigured.
    """
    if os.environ.get(DISABLE_VARIABLE, "") not in ("", "0"):
        return False
    if "MALLOC_MMAP_MAX_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # musl: other mallopt parameters
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
