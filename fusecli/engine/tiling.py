"""Tiled inference for images too large to fuse at once: overlapping tiles, smooth blending.

Each tile is fused on its own (with the network's reflection padding at its borders), and the
tiles are blended with weights that rise as a raised cosine across the overlap, so the border
effects of one tile are faded out where its neighbour is reliable. With the default overlap the
result differs from whole-image inference by well under one 8-bit grey level (measured in
benchmarks/bench_tiling.py).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from fusecli.engine.model import PSLPT, fold_peak_pyramids, resolve_order
from fusecli.engine.precision import precision_context

# Peak bytes of working memory per pixel of a tile during fuse() of a pair, float32, measured on
# CPU (benchmarks/bench_tiling.py; about 2000 in a fresh process); rounded up for safety. A
# stack folded as a tree holds more pyramids than a pair: fuse_tiled adds those on top.
BYTES_PER_PIXEL = 4000
# Seam error below one 8-bit grey level against whole-image inference at 1024x1024
# (benchmarks/bench_tiling.py --seam).
DEFAULT_OVERLAP = 192
MIN_TILE = 128
MAX_TILE = 2048
# One tile may use this fraction of the available memory, and at most MAX_TILE_BYTES, so that
# fusing a 6000x4000 pair stays under 4 GB peak even on a large machine.
MEMORY_FRACTION = 0.35
MAX_TILE_BYTES = 2_500_000_000
# Without a way to ask the OS, assume a small machine.
FALLBACK_AVAILABLE_BYTES = 4 * 1024**3


def available_memory(device: torch.device) -> int:
    """Bytes of memory that a computation on ``device`` can still use."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    if hasattr(os, "sysconf") and "SC_AVPHYS_PAGES" in os.sysconf_names:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return FALLBACK_AVAILABLE_BYTES


def auto_tile_size(
    device: torch.device,
    multiple: int = 16,
    budget_bytes: int | None = None,
    *,
    extra_bytes_per_pixel: float = 0.0,
) -> int:
    """Largest square tile side whose working memory fits the budget.

    Args:
        device: where the network runs.
        multiple: the tile side is rounded down to this (the network's size multiple).
        budget_bytes: memory a tile may use; by default a fraction of what is available.
        extra_bytes_per_pixel: working memory beyond a pair's :data:`BYTES_PER_PIXEL` (the
            extra pyramids a long stack's tree fold holds).
    """
    if budget_bytes is None:
        budget_bytes = min(int(available_memory(device) * MEMORY_FRACTION), MAX_TILE_BYTES)
    per_pixel = BYTES_PER_PIXEL + max(0.0, extra_bytes_per_pixel)
    side = int(math.sqrt(max(budget_bytes, 1) / per_pixel))
    side = max(MIN_TILE, min(MAX_TILE, side))
    return side - side % multiple


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles covering ``[0, length)``, neighbours overlapping by >= ``overlap``."""
    if length <= tile:
        return [0]
    step = tile - overlap
    count = math.ceil((length - tile) / step) + 1
    # Spread the tiles evenly so every overlap is at least `overlap` and the last ends at length.
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def _ramp(length: int, start: int, tile: int, overlap: int, total: int) -> torch.Tensor:
    """1-D blending weight of one tile: raised cosine over the overlap, 1 at image borders."""
    weight = torch.ones(length, dtype=torch.float64)
    ramp = min(overlap, length // 2)
    if ramp > 0:
        rise = 0.5 - 0.5 * torch.cos(
            torch.pi * (torch.arange(ramp, dtype=torch.float64) + 0.5) / ramp
        )
        if start > 0:
            weight[:ramp] = rise
        if start + tile < total:
            weight[-ramp:] = rise.flip(0)
    return weight


@runtime_checkable
class FrameStack(Protocol):
    """Frames of one shape that hand out any window of a frame on request.

    What :func:`fuse_tiled` reads a long stack from: only the window of the tile being fused is
    asked for, one frame at a time as the fold consumes it, so the frames need not be held as
    full float tensors (e.g. they may sit in a file).
    """

    @property
    def shape(self) -> torch.Size:
        """(N, C, H, W) of every frame."""
        ...

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def device(self) -> torch.device:
        """Where the windows are made, and where a fused result goes back to."""
        ...

    def __len__(self) -> int: ...

    def window(self, index: int, rows: slice, cols: slice) -> torch.Tensor:
        """(N, C, h, w) rows x cols of frame ``index``; slices with a start and a stop."""
        ...


class TensorFrames:
    """A sequence of (N, C, H, W) tensors as a :class:`FrameStack` (the shape of the first)."""

    def __init__(self, frames: Sequence[torch.Tensor]) -> None:
        if len(frames) == 0:
            raise ValueError("a frame stack needs at least one frame")
        self._frames = frames

    @property
    def shape(self) -> torch.Size:
        return self._frames[0].shape

    @property
    def dtype(self) -> torch.dtype:
        return self._frames[0].dtype

    @property
    def device(self) -> torch.device:
        return self._frames[0].device

    def __len__(self) -> int:
        return len(self._frames)

    def window(self, index: int, rows: slice, cols: slice) -> torch.Tensor:
        return self._frames[index][..., rows, cols]


class _Windows(Sequence[torch.Tensor]):
    """One window of every frame of a stack, each made on the device when indexed."""

    def __init__(self, frames: FrameStack, rows: slice, cols: slice, device: torch.device) -> None:
        self._frames, self._rows, self._cols, self._device = frames, rows, cols, device

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        if not -len(self) <= index < len(self):
            raise IndexError(f"frame {index} of {len(self)}")
        window = self._frames.window(index % len(self), self._rows, self._cols)
        return window.to(self._device)


def fuse_tiled(
    net: PSLPT,
    sources: Sequence[torch.Tensor] | FrameStack,
    faf_set: int = 1,
    *,
    tile_size: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    clamp: bool = True,
    progress: Callable[[int, int], None] | None = None,
    precision: str = "fp32",
    order: str = "auto",
    source_map: torch.Tensor | None = None,
    global_view: int = 0,
) -> torch.Tensor:
    """Fuse images of any size in overlapping tiles (or at once, when they fit one tile).

    Args:
        net: the network, already on its device.
        sources: two or more (N, 1, H, W) float tensors in [0, 1], on any device, or a
            :class:`FrameStack` of them. Each frame's tile is made (and moved to the network's
            device) only when the fold takes it in, so with a stack that reads windows from
            elsewhere no full frame is held.
        faf_set: FAF set, see :meth:`PSLPT.fuse`.
        tile_size: tile side in pixels (rounded down to a multiple of 16); None picks the largest
            that fits in memory, allowing for the pyramids the stack's fold holds.
        overlap: pixels shared by neighbouring tiles (at most a third of the tile side).
        clamp: clamp the result to [0, 1].
        progress: called as ``progress(done, total)`` after each tile.
        precision: ``fp32``, or ``bf16`` to run the network under bfloat16 autocast (see
            :func:`~fusecli.engine.precision.resolve_precision`); the result is float32.
        order: how a stack is folded, see :meth:`PSLPT.fuse_many`.
        source_map: an (N, 1, H, W) int64 tensor on the sources' device, filled in place with
            the index of the source each output pixel mostly came from (see
            :meth:`PSLPT.fuse_with_map`); each pixel takes it from the tile that weighs most
            there in the blend, since indices cannot be blended. None: no map.
        global_view: when the images' long side exceeds this many pixels, the frames are
            also fused whole, scaled down to it, and the result's coarse structure (what is
            coarser than one pixel of that view) is taken from that fusion (see
            :func:`with_coarse_structure`). 0: never.

    Returns:
        (N, 1, H, W) on the sources' device.
    """
    device = next(net.parameters()).device
    multiple = net.config.size_multiple
    frames = sources if isinstance(sources, FrameStack) else TensorFrames(sources)
    home, shape = frames.device, frames.shape
    if source_map is not None and (source_map.shape != shape or source_map.dtype != torch.int64):
        raise ValueError(
            f"source_map must be int64 of shape {tuple(shape)}, "
            f"got {source_map.dtype} {tuple(source_map.shape)}"
        )
    if global_view and max(shape[-2:]) > global_view:
        fused = fuse_tiled(
            net, frames, faf_set, tile_size=tile_size, overlap=overlap, clamp=False,
            progress=progress, precision=precision, order=order, source_map=source_map,
        )  # fmt: skip
        view = fuse_global_view(net, frames, faf_set, global_view, precision=precision, order=order)
        fused = with_coarse_structure(fused, view.to(home))
        return fused.clamp(0.0, 1.0) if clamp else fused
    with_map = source_map is not None

    def fuse(
        tiles: Sequence[torch.Tensor], clamp: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        with precision_context(precision, device):
            if with_map:
                fused, tile_map = net.fuse_with_map(
                    tiles, faf_set=faf_set, clamp=clamp, order=order
                )
                return fused.float(), tile_map
            return net.fuse_many(tiles, faf_set=faf_set, clamp=clamp, order=order).float(), None

    if tile_size is None:
        count = len(frames)
        held = fold_peak_pyramids(count, resolve_order(order, count))
        extra = (held - 2) * net.pyramid_bytes_per_pixel
        tile_size = auto_tile_size(device, multiple, extra_bytes_per_pixel=extra)
    tile_size = max(multiple, tile_size - tile_size % multiple)
    height, width = shape[-2:]
    if height <= tile_size and width <= tile_size:
        fused, whole_map = fuse(_Windows(frames, slice(0, height), slice(0, width), device), clamp)
        if source_map is not None and whole_map is not None:
            source_map.copy_(whole_map)
        if progress:
            progress(1, 1)
        return fused.to(home)
    # Small tiles cannot afford the full overlap: keep at least a third of each tile its own.
    overlap = min(overlap, tile_size // 3)
    accumulated = torch.zeros(shape, dtype=torch.float64, device=home)
    weight_sum = torch.zeros((height, width), dtype=torch.float64, device=home)
    map_writer = _MapWriter(source_map) if source_map is not None else None
    tiles = _tiles(height, width, tile_size, overlap, home)
    for done, (window, weight, total) in enumerate(tiles, start=1):
        tile, tile_map = fuse(_Windows(frames, *window, device), False)
        accumulated[..., window[0], window[1]] += tile.to(home) * weight
        weight_sum[window] += weight
        if map_writer is not None and tile_map is not None:
            map_writer.add(window, weight, tile_map)
        if progress:
            progress(done, total)
    fused = (accumulated / weight_sum).to(frames.dtype)
    return fused.clamp(0.0, 1.0) if clamp else fused


def fuse_global_view(
    net: PSLPT,
    sources: Sequence[torch.Tensor] | FrameStack,
    faf_set: int,
    side: int,
    *,
    precision: str = "fp32",
    order: str = "auto",
) -> torch.Tensor:
    """The frames fused whole, scaled down so that their long side is ``side`` pixels.

    The network works in windows and learned from crops of about a hundred pixels, so in a
    large image it decides brightness from a small neighbourhood: a bright sky beside a dark
    wall each look well exposed on their own. Seen whole at about its training scale, the scene
    shows which exposure each region should take. Each frame is scaled down (area averaging)
    when the fold takes it in, one at a time.

    Returns:
        (N, 1, h, w) float32 on the network's device, unclamped; max(h, w) == side.
    """
    device = next(net.parameters()).device
    frames = sources if isinstance(sources, FrameStack) else TensorFrames(sources)
    height, width = frames.shape[-2:]
    scale = side / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    whole = (slice(0, height), slice(0, width))

    class Scaled(Sequence[torch.Tensor]):
        def __len__(self) -> int:
            return len(frames)

        def __getitem__(self, index):  # type: ignore[override]
            frame = frames.window(index, *whole).to(device)
            return F.interpolate(frame, size=size, mode="area")

    with precision_context(precision, device):
        view = net.fuse_many(Scaled(), faf_set=faf_set, clamp=False, order=order)
    return view.float()


def with_coarse_structure(fused: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
    """``fused`` with its structure coarser than one pixel of ``view`` replaced by ``view``'s:
    ``fused - up(down(fused)) + up(view)``, down by area averaging to the view's size, up
    bilinearly. The detail finer than the view's pixels stays ``fused``'s own."""
    size = fused.shape[-2:]

    def up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    coarse = F.interpolate(fused, size=view.shape[-2:], mode="area")
    return fused - up(coarse) + up(view)


def decide_tiled(
    net: PSLPT,
    sources: Sequence[torch.Tensor] | FrameStack,
    faf_set: int = 1,
    *,
    tile_size: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    progress: Callable[[int, int], None] | None = None,
    precision: str = "fp32",
    symmetric: bool | None = None,
) -> torch.Tensor:
    """:meth:`PSLPT.decide_many` of images of any size, in overlapping tiles.

    Arguments as :func:`fuse_tiled`; ``symmetric`` as :meth:`PSLPT.decide_many`. Each pixel
    takes its decision from the tile in which it lies deepest (indices cannot be blended).

    Returns:
        (N, 1, H, W) int64 source indices on the sources' device.
    """
    device = next(net.parameters()).device
    multiple = net.config.size_multiple
    frames = sources if isinstance(sources, FrameStack) else TensorFrames(sources)
    home, shape = frames.device, frames.shape
    count = len(frames)
    if symmetric is None:
        symmetric = count > 2

    def decide(window: tuple[slice, slice]) -> torch.Tensor:
        with precision_context(precision, device):
            tiles = _Windows(frames, *window, device)
            return net.decide_many(tiles, faf_set=faf_set, symmetric=symmetric).to(home)

    if tile_size is None:
        held = fold_peak_pyramids(count, "tree")
        choice_bytes = net.choice_bytes_per_pixel(both_slots=symmetric or count > 2)
        extra = held * choice_bytes - 2 * net.pyramid_bytes_per_pixel
        tile_size = auto_tile_size(device, multiple, extra_bytes_per_pixel=extra)
    tile_size = max(multiple, tile_size - tile_size % multiple)
    height, width = shape[-2:]
    if height <= tile_size and width <= tile_size:
        decision = decide((slice(0, height), slice(0, width)))
        if progress:
            progress(1, 1)
        return decision
    overlap = min(overlap, tile_size // 3)
    decision = torch.zeros((*shape[:-3], 1, height, width), dtype=torch.int64, device=home)
    map_writer = _MapWriter(decision)
    tiles = _tiles(height, width, tile_size, overlap, home)
    for done, (window, weight, total) in enumerate(tiles, start=1):
        map_writer.add(window, weight, decide(window))
        if progress:
            progress(done, total)
    return decision


def _tiles(
    height: int, width: int, tile_size: int, overlap: int, device: torch.device
) -> Iterator[tuple[tuple[slice, slice], torch.Tensor, int]]:
    """Each tile's window, its (h, w) float64 blending weight, and the number of tiles."""
    rows, cols = tile_starts(height, tile_size, overlap), tile_starts(width, tile_size, overlap)
    total = len(rows) * len(cols)
    tile_h, tile_w = min(tile_size, height), min(tile_size, width)
    for top in rows:
        row_weight = _ramp(tile_h, top, tile_size, overlap, height)
        for left in cols:
            col_weight = _ramp(tile_w, left, tile_size, overlap, width)
            window = (slice(top, top + tile_h), slice(left, left + tile_w))
            yield window, (row_weight[:, None] * col_weight[None, :]).to(device), total


class _MapWriter:
    """Fills a map of source indices tile by tile: each pixel keeps the index of the tile that
    weighs most there in the blend, since indices cannot be blended."""

    def __init__(self, source_map: torch.Tensor) -> None:
        self.source_map = source_map
        self.best_weight = torch.zeros(
            source_map.shape[-2:], dtype=torch.float64, device=source_map.device
        )

    def add(
        self, window: tuple[slice, slice], weight: torch.Tensor, tile_map: torch.Tensor
    ) -> None:
        # The first tile wins a tie, so every pixel gets a source from some tile.
        heavier = weight > self.best_weight[window]
        region = self.source_map[..., window[0], window[1]]
        region.copy_(torch.where(heavier, tile_map.to(region.device), region))
        self.best_weight[window] = torch.where(heavier, weight, self.best_weight[window])
