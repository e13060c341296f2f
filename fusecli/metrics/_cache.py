"""Reuse of per-image intermediates (edge maps, local moments, ...) within one evaluation.

Comparing several fused images with the same two sources recomputes the same source-side
quantities for every metric and every fused image. Inside `shared_intermediates()`, metric
helpers called through `memoised` compute them once per image plane object. Outside it,
`memoised` simply computes. Results are identical either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

_ACTIVE: ContextVar[dict[tuple[Any, ...], tuple[tuple[np.ndarray, ...], Any]] | None] = ContextVar(
    "fusecli_metrics_intermediates", default=None
)


@contextmanager
def shared_intermediates() -> Iterator[None]:
    """Cache intermediates by plane identity until the block ends.

    Callers must not modify the planes they pass to metrics inside the block.
    """
    token = _ACTIVE.set({})
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def forget(planes: Iterable[np.ndarray]) -> None:
    """Drop cached intermediates that involve any of `planes` (e.g. a finished fused image)."""
    cache = _ACTIVE.get()
    if cache is None:
        return
    ids = {id(plane) for plane in planes}
    for key in [key for key in cache if ids.intersection(key[1:])]:
        del cache[key]


def memoised(kind: str, compute: Callable[..., T], *planes: np.ndarray) -> T:
    """compute(*planes), cached under (kind, identities of planes) when a cache is active."""
    cache = _ACTIVE.get()
    if cache is None:
        return compute(*planes)
    key = (kind, *(id(plane) for plane in planes))
    if key not in cache:
        # Keeping the planes alive in the entry guarantees their ids are not reused.
        cache[key] = (planes, compute(*planes))
    return cache[key][1]
