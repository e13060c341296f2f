"""Folding stacks: the tree's shape, its memory bound, and the map of which source won."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
import torch
from torch import nn

from fusecli.engine import PSLPT, ModelConfig, TensorFrames, decide_tiled, fuse_tiled
from fusecli.engine.model import (
    TREE_MIN_FRAMES,
    first_slot,
    fold_peak_pyramids,
    fold_tree,
    resolve_order,
)

ORDERS = ("tree", "sequential")


class _ImagePyramid(nn.Module):
    """Stands in for an encoder: a one-band pyramid that is the image itself."""

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        return [image]

    def finest_band(self, image: torch.Tensor) -> torch.Tensor:
        return image


class _FinestBand(nn.Module):
    """Stands in for the decoder: the finest band is the image."""

    def forward(self, bands: list[torch.Tensor]) -> torch.Tensor:
        return bands[0]


class _AveragingFaf(nn.Module):
    def fuse_with_weight(self, a, b):
        return (a + b) / 2, torch.full_like(a[:, :1], 0.5)

    def forward(self, a, b):
        return self.fuse_with_weight(a, b)[0]


class _MaxFaf(nn.Module):
    """Keeps the larger value, so the fused image is the stack's maximum."""

    def fuse_with_weight(self, a, b):
        weight = self.weight(a, b)
        return torch.where(weight > 0, a, b), weight

    def weight(self, a, b):
        return (a[:, :1] >= b[:, :1]).to(a.dtype)

    def forward(self, a, b):
        return self.fuse_with_weight(a, b)[0]


def _stub_net(faf: nn.Module) -> PSLPT:
    """The real folding code around stand-in encoders, decoder and FAF modules."""
    net = PSLPT().eval()
    net.encoder1, net.encoder2 = _ImagePyramid(), _ImagePyramid()
    net.decoder = _FinestBand()
    net.faf1.bands = nn.ModuleList([faf])
    return net


def _one_hot_stack(count: int, side: int = 8) -> list[torch.Tensor]:
    """Frame i is 1 at pixel i (row-major) and 0 elsewhere: the fusion shows each frame's share."""
    frames = torch.zeros(count, 1, 1, side * side)
    frames[torch.arange(count), 0, 0, torch.arange(count)] = 1.0
    return list(frames.reshape(count, 1, 1, side, side))


def _shares(net: PSLPT, count: int, order: str) -> list[float]:
    fused = net.fuse_many(_one_hot_stack(count), clamp=False, order=order)
    return fused.flatten()[:count].tolist()


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (2, [1 / 2] * 2),
        (3, [1 / 4, 1 / 4, 1 / 2]),
        (5, [1 / 8] * 4 + [1 / 2]),
        (8, [1 / 8] * 8),
        (9, [1 / 16] * 8 + [1 / 2]),
        (30, [1 / 32] * 28 + [1 / 16] * 2),
    ],
)
def test_tree_gives_each_frame_its_share(count, expected) -> None:
    assert _shares(_stub_net(_AveragingFaf()), count, "tree") == expected


def test_sequential_halves_the_share_of_every_earlier_frame() -> None:
    assert _shares(_stub_net(_AveragingFaf()), 4, "sequential") == [1 / 8, 1 / 8, 1 / 4, 1 / 2]


def test_auto_keeps_short_stacks_sequential() -> None:
    net = _stub_net(_AveragingFaf())
    for count in (2, 5, TREE_MIN_FRAMES - 1, TREE_MIN_FRAMES, 30):
        expected = "tree" if count >= TREE_MIN_FRAMES else "sequential"
        assert resolve_order("auto", count) == expected
        assert _shares(net, count, "auto") == _shares(net, count, expected)
    with pytest.raises(ValueError, match="order must be one of auto, tree, sequential"):
        resolve_order("random", 3)


@pytest.mark.parametrize("count", [1, 2, 7, 8, 9, 30, 100])
def test_tree_holds_at_most_log2_n_plus_one_subtrees(count) -> None:
    alive, peak = 0, 0

    def leaves():
        nonlocal alive, peak
        for index in range(count):
            alive += 1
            peak = max(peak, alive)
            yield frozenset([index])

    def merge(a, b):
        nonlocal alive
        assert max(a) < min(b)  # earlier frames always come first
        alive -= 1
        return a | b

    assert fold_tree(leaves(), merge) == frozenset(range(count))
    assert peak <= math.floor(math.log2(count)) + 1
    # What the automatic tile allows for (a pair, or any stack of up to three: two).
    assert max(peak, 2) == fold_peak_pyramids(max(count, 2), "tree")


def test_each_frame_enters_the_slot_of_its_encoder() -> None:
    assert [first_slot(i, 5, "sequential") for i in range(5)] == [1, 2, 2, 2, 2]
    assert [first_slot(i, 5, "tree") for i in range(5)] == [1, 2, 1, 2, 2]
    assert [first_slot(i, 2, "tree") for i in range(2)] == [1, 2]


def test_two_sources_fuse_alike_in_every_order() -> None:
    net = PSLPT().eval()
    a, b = torch.rand(2, 1, 1, 16, 24)
    pair = net.fuse(a, b)
    for order in ORDERS:
        assert torch.equal(net.fuse_many([a, b], order=order), pair)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("count", [3, 5, 12])
def test_source_map_of_a_max_selecting_fusion_is_the_argmax(order, count) -> None:
    net = _stub_net(_MaxFaf())
    stack = list(torch.rand(count, 1, 1, 21, 35, generator=torch.Generator().manual_seed(count)))
    for sources in (stack, stack[::-1]):
        fused, source_map = net.fuse_with_map(sources, order=order)
        values, argmax = torch.stack(sources).max(dim=0)
        assert torch.equal(fused, values)
        assert source_map.dtype == torch.int64 and torch.equal(source_map, argmax)


def test_tiled_source_map_is_the_argmax() -> None:
    net = _stub_net(_MaxFaf())
    stack = list(torch.rand(10, 1, 1, 50, 70, generator=torch.Generator().manual_seed(1)))
    source_map = torch.full(stack[0].shape, -1, dtype=torch.int64)
    fused = fuse_tiled(net, stack, tile_size=32, overlap=8, order="tree", source_map=source_map)
    values, argmax = torch.stack(stack).max(dim=0)
    assert torch.equal(source_map, argmax)
    assert torch.allclose(fused, values)


def test_tiles_fold_stacks_in_the_order_asked() -> None:
    net = _stub_net(_AveragingFaf())
    frames = list(torch.rand(5, 1, 1, 40, 56, generator=torch.Generator().manual_seed(2)))
    for order in ORDERS:
        whole = net.fuse_many(frames, order=order)
        assert torch.allclose(fuse_tiled(net, frames, tile_size=32, order=order), whole)
    tree, sequential = (fuse_tiled(net, frames, tile_size=32, order=o) for o in ORDERS)
    assert not torch.allclose(tree, sequential)


class _LoggedFrames(Sequence[torch.Tensor]):
    """Frames made only when indexed, each index logged: stands in for a stack on disk."""

    def __init__(self, frames: list[torch.Tensor], log: list[str]) -> None:
        self.frames, self.log = frames, log

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index):
        self.log.append(f"frame {index}")
        return self.frames[index]


class _LoggedFaf(_AveragingFaf):
    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def fuse_with_weight(self, a, b):
        self.log.append("merge")
        return super().fuse_with_weight(a, b)


@pytest.mark.parametrize("order", ORDERS)
def test_a_lazy_stack_is_read_once_per_frame_as_the_fold_needs_it(order) -> None:
    log: list[str] = []
    frames = list(torch.rand(4, 1, 1, 8, 8, generator=torch.Generator().manual_seed(4)))
    lazy = _LoggedFrames(frames, log)
    fused = _stub_net(_LoggedFaf(log)).fuse_many(lazy, order=order)
    assert torch.equal(fused, _stub_net(_AveragingFaf()).fuse_many(frames, order=order))
    if order == "tree":
        expected = ["frame 0", "frame 1", "merge", "frame 2", "frame 3", "merge", "merge"]
    else:
        expected = ["frame 0", "frame 1", "merge", "frame 2", "merge", "frame 3", "merge"]
    assert log == expected


def test_tiles_of_a_frame_stack_are_read_window_by_window() -> None:
    frames = list(torch.rand(5, 1, 1, 40, 56, generator=torch.Generator().manual_seed(5)))
    windows: list[tuple[int, int, int]] = []

    class Recording(TensorFrames):
        def window(self, index, rows, cols):
            windows.append((index, rows.stop - rows.start, cols.stop - cols.start))
            return super().window(index, rows, cols)

    net = _stub_net(_AveragingFaf())
    stacked = fuse_tiled(net, Recording(frames), tile_size=32, order="tree")
    assert torch.equal(stacked, fuse_tiled(net, frames, tile_size=32, order="tree"))
    assert len(windows) == 6 * 5  # 2 x 3 tiles, each frame read once per tile
    assert {(h, w) for _, h, w in windows} == {(32, 32)}
    with pytest.raises(ValueError, match=r"source 3 is \(1, 1, 9, 9\)"):
        net.fuse_many(_LoggedFrames([*frames[:3], torch.rand(1, 1, 9, 9), frames[4]], []))


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("count", [2, 3, 5, 12])
def test_decision_of_a_max_selecting_fusion_is_the_argmax(count, symmetric) -> None:
    net = _stub_net(_MaxFaf())
    stack = list(torch.rand(count, 1, 1, 21, 35, generator=torch.Generator().manual_seed(count)))
    for sources in (stack, stack[::-1]):
        decision = net.decide_many(sources, symmetric=symmetric)
        assert decision.dtype == torch.int64
        assert torch.equal(decision, torch.stack(sources).argmax(dim=0))


def test_tiled_decision_is_the_argmax() -> None:
    net = _stub_net(_MaxFaf())
    stack = list(torch.rand(10, 1, 1, 50, 70, generator=torch.Generator().manual_seed(1)))
    progress = []
    decision = decide_tiled(
        net, TensorFrames(stack), tile_size=32, overlap=8, progress=lambda *p: progress.append(p)
    )
    assert torch.equal(decision, torch.stack(stack).argmax(dim=0))
    assert progress[-1] == (len(progress), len(progress)) and len(progress) > 1


SMALL = ModelConfig(channels=8, num_heads=2, depth=1, window_size=4, levels=3)


def test_a_pair_is_decided_as_its_fusion_maps_it() -> None:
    net = PSLPT(SMALL).eval()
    a, b = torch.rand(2, 1, 1, 30, 45, generator=torch.Generator().manual_seed(3))
    _, source_map = net.fuse_with_map([a, b])
    assert torch.equal(net.decide_many([a, b]), source_map)
    # The finest band and the FAF weight alone are what the full passes compute.
    image = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(5))
    for encoder in (net.encoder1, net.encoder2):
        assert torch.allclose(encoder.finest_band(image), encoder(image)[0], atol=1e-6)
    features = net.encoder1(image)[0], net.encoder2(image.flip(-1))[0]
    faf = net.faf1.bands[0]
    assert torch.equal(faf.weight(*features), faf.fuse_with_weight(*features)[1])


def test_a_symmetric_decision_does_not_depend_on_the_frame_order() -> None:
    # Four frames make a tree that reversing mirrors; every merge weighs both FAF slots alike.
    net = PSLPT(SMALL).eval()
    stack = list(torch.rand(4, 1, 1, 32, 40, generator=torch.Generator().manual_seed(4)))
    forward = net.decide_many(stack)
    reverse = 3 - net.decide_many(stack[::-1])
    assert (forward == reverse).float().mean() > 0.999
    one_sided = net.decide_many(stack, symmetric=False)
    assert not torch.equal(one_sided, 3 - net.decide_many(stack[::-1], symmetric=False))
