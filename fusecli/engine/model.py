"""PSLPT: the pseudo-siamese Laplacian pyramid transformer of Wang, Deng and Vivone (2024).

Two encoders decompose each source into a Laplacian pyramid of features (one low-frequency band
and ``levels - 1`` high-frequency bands), a FAF set fuses the two pyramids band by band, and one
shared decoder turns a pyramid back into an image. FAF set 1 serves multi-focus and
multi-exposure fusion, FAF set 2 infrared/visible and medical fusion.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from fusecli.engine.config import ModelConfig
from fusecli.engine.layers import (
    FrequencyAdaptiveFusion,
    SwinConvStage,
    SwinV2Block,
    downsample2,
    reflect_pad,
    upsample2,
)

FAF_SETS = (1, 2)
STACK_ORDERS = ("auto", "tree", "sequential")
# From this many frames on, order="auto" folds a stack in a tree: at 10 and 30 frames the
# sequential fold loses detail and depends on the frame order, while below 9 frames a fold of two
# fused pyramids costs 1-2 dB against one with a fresh frame (benchmarks/bench_stacks.py).
TREE_MIN_FRAMES = 9

Node = TypeVar("Node")


def _stage(config: ModelConfig, with_norms: bool) -> SwinConvStage:
    return SwinConvStage(config, with_norms=with_norms)


def _stem_conv(conv: nn.Conv2d, padded: torch.Tensor) -> torch.Tensor:
    """A 3x3 valid convolution with few input channels, as one matrix product.

    oneDNN is slow for a single input channel (and its output would need a channels-last copy);
    im2col with 9 values per pixel and a (9 -> C) product writes channels-last directly.

    Args:
        conv: a 3x3 conv without bias, stride 1, no padding.
        padded: (B, C_in, H + 2, W + 2).

    Returns:
        (B, C, H, W) in channels-last memory.
    """
    b, _, height, width = padded.shape
    patches = F.unfold(padded, kernel_size=3)  # (B, C_in * 9, H * W)
    weight = conv.weight.flatten(1)  # (C, C_in * 9), the same (c_in, ky, kx) order as unfold
    tokens = patches.transpose(1, 2) @ weight.t()  # (B, H * W, C)
    return tokens.view(b, height - 2, width - 2, -1).permute(0, 3, 1, 2)


class Encoder(nn.Module):
    """Image -> feature pyramid.

    Level k has resolution 1/2^k. Band k < levels-1 is the high-frequency residual
    ``F_k - upsample2(F_{k+1})``; the last band is the low-frequency ``F_{levels-1}``.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.stem = nn.Conv2d(config.in_channels, config.channels, 3, bias=False)
        self.stages = nn.ModuleList(
            _stage(config, with_norms=level == 0) for level in range(config.levels)
        )

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """(B, in_channels, H, W) -> [(B, C, H/2^k, W/2^k) for k in range(levels)]."""
        x = self.stages[0](_stem_conv(self.stem, reflect_pad(image)))
        features = [x]
        for stage in self.stages[1:]:
            x = stage(downsample2(x))
            features.append(x)
        if torch.is_grad_enabled():
            bands = [fine - upsample2(coarse) for fine, coarse in pairwise(features)]
        else:
            # Fine to coarse, each map is changed in place only after its upsampling was taken.
            bands = [fine.sub_(upsample2(coarse)) for fine, coarse in pairwise(features)]
        bands.append(features[-1])
        return bands

    def finest_band(self, image: torch.Tensor) -> torch.Tensor:
        """``forward(image)[0]`` alone: the two finest stages, none of the coarser ones."""
        fine = self.stages[0](_stem_conv(self.stem, reflect_pad(image)))
        if len(self.stages) == 1:
            return fine
        coarse = self.stages[1](downsample2(fine))
        if torch.is_grad_enabled():
            return fine - upsample2(coarse)
        return fine.sub_(upsample2(coarse))


class Decoder(nn.Module):
    """Feature pyramid -> image, coarse to fine: ``F_k = H_k + upsample2(stage(F_{k+1}))``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        # stages[k] works at level k (resolution 1/2^k).
        self.stages = nn.ModuleList(_stage(config, with_norms=False) for _ in range(config.levels))
        self.head = nn.Conv2d(config.channels, config.in_channels, 3, bias=False)

    def forward(self, bands: Sequence[torch.Tensor]) -> torch.Tensor:
        """[(B, C, H/2^k, W/2^k)] -> (B, in_channels, H, W), unclamped."""
        x = bands[-1]
        for level in range(len(bands) - 2, -1, -1):
            up = upsample2(self.stages[level + 1](x))
            x = bands[level] + up if torch.is_grad_enabled() else up.add_(bands[level])
        return self.head(reflect_pad(self.stages[0](x)))


class FusionSet(nn.Module):
    """One set of FAF modules, one per pyramid band (index k fuses band k)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.bands = nn.ModuleList(FrequencyAdaptiveFusion(config) for _ in range(config.levels))

    def forward(
        self, bands_a: Sequence[torch.Tensor], bands_b: Sequence[torch.Tensor]
    ) -> list[torch.Tensor]:
        return [faf(a, b) for faf, a, b in zip(self.bands, bands_a, bands_b)]

    def fuse_with_weight(
        self, bands_a: Sequence[torch.Tensor], bands_b: Sequence[torch.Tensor]
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The fused pyramid and the finest band's (B, 1, H, W) weight of ``bands_a``."""
        finest, weight = self.bands[0].fuse_with_weight(bands_a[0], bands_b[0])
        coarser = [faf(a, b) for faf, a, b in zip(self.bands[1:], bands_a[1:], bands_b[1:])]
        return [finest, *coarser], weight


def resolve_order(order: str, count: int) -> str:
    """The fold a stack of ``count`` frames gets: ``tree`` or ``sequential``.

    ``auto`` is the tree from :data:`TREE_MIN_FRAMES` frames on, else sequential.
    """
    if order not in STACK_ORDERS:
        raise ValueError(f"order must be one of {', '.join(STACK_ORDERS)}, got {order!r}")
    if order == "auto":
        return "tree" if count >= TREE_MIN_FRAMES else "sequential"
    return order


def fold_tree(leaves: Iterable[Node], merge: Callable[[Node, Node], Node]) -> Node:
    """Fold leaves in a balanced binary tree, built bottom-up as they arrive.

    Like a binary counter, a stack holds finished subtrees of strictly decreasing size; a new
    leaf is merged with the top while the sizes are equal, so at most ``log2(n) + 1`` subtrees
    are alive at a time. At the end the rest are merged from the smallest (latest) up. Earlier
    leaves are always the first argument of ``merge``. For 2^k leaves every leaf is k merges
    deep; for other counts the depths differ by at most one above the power of two below
    (30 leaves: 28 at depth 5, 2 at depth 4).

    Args:
        leaves: one or more items, consumed one at a time.
        merge: ``merge(earlier, later)`` -> item.

    Returns:
        The root.
    """
    stack: list[tuple[int, Node]] = []
    for leaf in leaves:
        size, node = 1, leaf
        while stack and stack[-1][0] == size:
            left_size, left = stack.pop()
            node = merge(left, node)
            size += left_size
        stack.append((size, node))
    if not stack:
        raise ValueError("fold_tree needs at least one leaf")
    _, node = stack.pop()
    while stack:
        node = merge(stack.pop()[1], node)
    return node


def fold_peak_pyramids(count: int, order: str) -> int:
    """Most pyramids a fold of ``count`` frames keeps alive between merges (a pair: two).

    The sequential fold holds the running pyramid and the next frame's. :func:`fold_tree` holds
    one finished subtree per set bit of the number of leaves seen so far, and the new leaf.
    Each merge's output comes on top, as it does for a pair.
    """
    if order == "sequential" or count <= 2:
        return 2
    return max(bin(seen).count("1") for seen in range(count)) + 1


def first_slot(index: int, count: int, order: str) -> int:
    """The FAF input (1 or 2) that frame ``index`` of ``count`` first enters, in a fold.

    Slot 1 takes what encoder 1 produced, slot 2 a fresh encoder-2 pyramid, as in training. In
    the sequential fold only frame 0 seeds slot 1. In :func:`fold_tree` a frame is the earlier
    argument of its first merge when its index is even and a later frame exists.
    """
    if order == "sequential":
        return 1 if index == 0 else 2
    return 1 if index % 2 == 0 and index + 1 < count else 2


@dataclass
class _Fold:
    """A (partly) fused stack: its pyramid and, when a source map is wanted, for every pixel
    the source that weighs most so far (int64) and the log of its weight (float32), each
    (B, 1, H, W) at the finest band's resolution."""

    bands: list[torch.Tensor]
    source: torch.Tensor | None = None
    log_share: torch.Tensor | None = None


@dataclass
class _Choice:
    """A decided (sub-)stack: for every pixel the source chosen so far, and that source's own
    finest-band features under encoder 1 and encoder 2 (the FAF slot each may enter next;
    None where a pair never needs it)."""

    slot1: torch.Tensor | None
    slot2: torch.Tensor | None
    source: torch.Tensor


def _where(
    condition: torch.Tensor, a: torch.Tensor | None, b: torch.Tensor | None
) -> torch.Tensor | None:
    return None if a is None or b is None else torch.where(condition, a, b)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflection-pad (B, C, H, W) so H and W become multiples of ``multiple``.

    The padding is split between both sides. Sides shorter than the padding are reflected
    repeatedly (edge replication for a 1-pixel side), so any size >= 1 works.

    Returns:
        The padded tensor and the (top, left) offset of the original inside it.
    """
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    top, left = pad_h // 2, pad_w // 2
    remaining = [left, pad_w - left, top, pad_h - top]
    while any(remaining):
        h, w = x.shape[-2:]
        step = [
            min(remaining[0], w - 1),
            min(remaining[1], w - 1),
            min(remaining[2], h - 1),
            min(remaining[3], h - 1),
        ]
        if not any(step):
            x = F.pad(x, tuple(remaining), mode="replicate")
            break
        x = F.pad(x, tuple(step), mode="reflect")
        remaining = [r - s for r, s in zip(remaining, step)]
    return x, (top, left)


def _check_sources(sources: Sequence[torch.Tensor], in_channels: int) -> None:
    if len(sources) < 2:
        raise ValueError(f"fusion needs at least 2 sources, got {len(sources)}")
    first = sources[0]
    for i, source in enumerate(sources):
        _check_source(i, source, first.shape, in_channels)


def _check_source(
    index: int, source: torch.Tensor, first_shape: torch.Size, in_channels: int
) -> None:
    if source.dim() != 4 or source.shape[1] != in_channels:
        raise ValueError(
            f"source {index} must be (N, {in_channels}, H, W), got {tuple(source.shape)}"
        )
    if source.shape != first_shape:
        raise ValueError(
            f"all sources must have the same shape: source 0 is {tuple(first_shape)}, "
            f"source {index} is {tuple(source.shape)}"
        )
    if not source.is_floating_point():
        raise ValueError(f"source {index} must be a float tensor in [0, 1], got {source.dtype}")


class PSLPT(nn.Module):
    """Pseudo-siamese Laplacian pyramid transformer.

    Args:
        config: architecture; the paper's configuration by default.

    Attributes:
        encoder1, encoder2: the two (unshared) encoders, for the first and second source.
        decoder: the shared decoder.
        faf1, faf2: FAF set 1 (MFF/MEF) and set 2 (IVF/MMF).
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        self.encoder1 = Encoder(self.config)
        self.encoder2 = Encoder(self.config)
        self.decoder = Decoder(self.config)
        self.faf1 = FusionSet(self.config)
        self.faf2 = FusionSet(self.config)

    def faf_set(self, index: int) -> FusionSet:
        """FAF set 1 (multi-focus, multi-exposure) or 2 (infrared/visible, medical)."""
        if index not in FAF_SETS:
            raise ValueError(f"faf_set must be 1 or 2, got {index!r}")
        return self.faf1 if index == 1 else self.faf2

    def _check_trainable_size(self, a: torch.Tensor) -> None:
        multiple = self.config.size_multiple
        if a.shape[-2] % multiple or a.shape[-1] % multiple:
            raise ValueError(
                f"the training forward needs H and W that are multiples of {multiple}, "
                f"got {tuple(a.shape[-2:])}; crop training patches accordingly or use fuse()"
            )

    def forward(
        self, a: torch.Tensor, b: torch.Tensor, faf_set: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training forward: fused image and both reconstructions, unclamped.

        Args:
            a, b: (N, in_channels, H, W), H and W multiples of ``config.size_multiple``.
            faf_set: which FAF set fuses the pyramids.

        Returns:
            fused, recon_a, recon_b, each (N, in_channels, H, W).
        """
        _check_sources((a, b), self.config.in_channels)
        self._check_trainable_size(a)
        bands_a = self.encoder1(a)
        bands_b = self.encoder2(b)
        fused = self.decoder(self.faf_set(faf_set)(bands_a, bands_b))
        return fused, self.decoder(bands_a), self.decoder(bands_b)

    @torch.no_grad()
    def fuse(
        self, a: torch.Tensor, b: torch.Tensor, faf_set: int = 1, clamp: bool = True
    ) -> torch.Tensor:
        """Fuse two images of any size.

        Args:
            a, b: (N, in_channels, H, W) float in [0, 1], any H, W >= 1.
            faf_set: 1 for multi-focus / multi-exposure, 2 for infrared-visible / medical.
            clamp: clamp the result to [0, 1].

        Returns:
            (N, in_channels, H, W).
        """
        return self.fuse_many([a, b], faf_set=faf_set, clamp=clamp)

    @property
    def pyramid_bytes_per_pixel(self) -> float:
        """Bytes per source pixel of one encoded float32 pyramid (PSLPT's default: 255)."""
        config = self.config
        return 4 * config.channels * sum(4.0**-level for level in range(config.levels))

    def choice_bytes_per_pixel(self, both_slots: bool = True) -> float:
        """Bytes per source pixel that :meth:`decide_many` keeps for one (sub-)stack: its
        finest-band features under one or both encoders, and its source indices."""
        return 4 * self.config.channels * (2 if both_slots else 1) + 8

    @torch.no_grad()
    def fuse_many(
        self,
        sources: Sequence[torch.Tensor],
        faf_set: int = 1,
        clamp: bool = True,
        *,
        order: str = "auto",
    ) -> torch.Tensor:
        """Fuse a stack (exposure bracket, focus stack) of two or more images.

        The FAF set folds the sources' pyramids band by band, two at a time. ``sequential``
        seeds a running pyramid with the first source (encoder 1) and folds every further one
        in (encoder 2) in the order given: ``acc = FAF(acc, next)``; it holds two pyramids
        whatever the stack size. ``tree`` folds in a balanced binary tree (:func:`fold_tree`),
        built as the frames are encoded, holding at most ``log2(n) + 1`` pyramids: every frame
        passes through about log2(n) folds instead of up to n - 1, so long stacks keep their
        detail and barely depend on the frame order. ``auto`` takes the tree from
        :data:`TREE_MIN_FRAMES` frames on. Each frame goes through the encoder of the FAF slot
        it first enters (:func:`first_slot`). For two sources every order is :meth:`fuse`.

        Args:
            sources: (N, in_channels, H, W) tensors of one shape, floats in [0, 1]. Each is
                indexed once, when the fold needs it, so a sequence that makes a frame only
                when indexed keeps no more than the fold's pyramids in memory.
            faf_set: FAF set, see :meth:`fuse`.
            clamp: clamp the result to [0, 1].
            order: ``auto``, ``tree`` or ``sequential``.

        Returns:
            (N, in_channels, H, W).
        """
        return self._fuse_stack(sources, faf_set, clamp, order, with_map=False)[0]

    @torch.no_grad()
    def fuse_with_map(
        self,
        sources: Sequence[torch.Tensor],
        faf_set: int = 1,
        clamp: bool = True,
        *,
        order: str = "auto",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`fuse_many`, and which source each output pixel mostly came from.

        A source's share of a pixel is the product of the finest band's FAF weights along its
        path through the folds; the map holds the source with the largest share. Only the best
        source and its share are carried through each fold, not one share per source.

        Returns:
            The fused (N, in_channels, H, W) and an (N, 1, H, W) int64 map of source indices.
        """
        fused, source_map = self._fuse_stack(sources, faf_set, clamp, order, with_map=True)
        assert source_map is not None
        return fused, source_map

    def _fuse_stack(
        self,
        sources: Sequence[torch.Tensor],
        faf_set: int,
        clamp: bool,
        order: str,
        with_map: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # `sources` may produce each frame only when indexed (a long stack read from disk), so
        # every frame is indexed once, when its leaf is made, and checked then.
        count = len(sources)
        if count < 2:
            raise ValueError(f"fusion needs at least 2 sources, got {count}")
        order = resolve_order(order, count)
        # Frame 0 gives the shape the others must have; it is held until its leaf is made.
        unused_first = [sources[0]]
        first_shape = unused_first[0].shape
        _check_source(0, unused_first[0], first_shape, self.config.in_channels)
        height, width = first_shape[-2:]
        multiple = self.config.size_multiple
        fusion = self.faf_set(faf_set)
        # Where the sources sit inside their padding, as pad_to_multiple places them.
        top, left = ((-height) % multiple) // 2, ((-width) % multiple) // 2

        def leaf(index: int) -> _Fold:
            if index == 0 and unused_first:
                frame = unused_first.pop()
            else:
                frame = sources[index]
                _check_source(index, frame, first_shape, self.config.in_channels)
            padded = pad_to_multiple(frame, multiple)[0]
            slot = first_slot(index, count, order)
            bands = (self.encoder1 if slot == 1 else self.encoder2)(padded)
            if not with_map:
                return _Fold(bands)
            shape = (padded.shape[0], 1, *padded.shape[-2:])
            source = torch.full(shape, index, dtype=torch.int64, device=padded.device)
            return _Fold(bands, source, torch.zeros(shape, device=padded.device))

        def merge(a: _Fold, b: _Fold) -> _Fold:
            if not with_map:
                return _Fold(fusion(a.bands, b.bands))
            assert a.log_share is not None and b.log_share is not None
            bands, weight = fusion.fuse_with_weight(a.bands, b.bands)
            # Logs, because a product of 30 small weights underflows float32.
            share_a = a.log_share + weight.float().clamp_min(1e-30).log()
            share_b = b.log_share + (1.0 - weight.float()).clamp_min(1e-30).log()
            take_a = share_a >= share_b
            source = torch.where(take_a, a.source, b.source)
            return _Fold(bands, source, torch.where(take_a, share_a, share_b))

        leaves = (leaf(index) for index in range(count))
        root = fold_tree(leaves, merge) if order == "tree" else functools.reduce(merge, leaves)
        window = (slice(top, top + height), slice(left, left + width))
        fused = self.decoder(root.bands)[..., window[0], window[1]]
        source_map = None if root.source is None else root.source[..., window[0], window[1]]
        return (fused.clamp(0.0, 1.0) if clamp else fused), source_map

    @torch.no_grad()
    def decide_many(
        self, sources: Sequence[torch.Tensor], faf_set: int = 1, *, symmetric: bool | None = None
    ) -> torch.Tensor:
        """Which source each pixel should be taken from, for a result made of the sources' own
        pixels (a focus stack): no fused image is decoded.

        Two sources are decided as :meth:`fuse_with_map` decides them (FAF's finest-band
        weight of ``a`` at least one half), at the cost of the two finest encoder stages and
        one FAF module. A longer stack is decided in a knockout tree (:func:`fold_tree`): each
        merge decides between the winners of two sub-stacks, pixel by pixel, comparing their
        chosen frames' own encoder features, never features already blended by FAF, so every
        decision is the kind the FAF modules were trained for, however deep in the tree. With
        ``symmetric`` each merge averages the decision with the sub-stacks in swapped FAF
        slots (FAF prefers its first slot), so the result barely depends on the frame order;
        that costs twice the encoding and FAF work. None: symmetric for three or more sources.

        Args:
            sources: (N, in_channels, H, W) tensors of one shape, each indexed once.
            faf_set: FAF set, see :meth:`fuse`.
            symmetric: see above.

        Returns:
            (N, 1, H, W) int64 source indices.
        """
        count = len(sources)
        if count < 2:
            raise ValueError(f"a decision needs at least 2 sources, got {count}")
        if symmetric is None:
            symmetric = count > 2
        # Frame 0 gives the shape; it is held only until its leaf is made (as in _fuse_stack).
        unused_first = [sources[0]]
        first_shape = unused_first[0].shape
        _check_source(0, unused_first[0], first_shape, self.config.in_channels)
        height, width = first_shape[-2:]
        multiple = self.config.size_multiple
        finest_faf = self.faf_set(faf_set).bands[0]
        top, left = ((-height) % multiple) // 2, ((-width) % multiple) // 2

        def leaf(index: int) -> _Choice:
            frame = unused_first.pop() if index == 0 else sources[index]
            _check_source(index, frame, first_shape, self.config.in_channels)
            padded = pad_to_multiple(frame, multiple)[0]
            # A pair without the swap needs each frame under its own slot's encoder only; in a
            # longer stack a frame's winners may enter either slot later.
            slot1 = symmetric or count > 2 or index == 0
            slot2 = symmetric or count > 2 or index > 0
            shape = (padded.shape[0], 1, *padded.shape[-2:])
            return _Choice(
                self.encoder1.finest_band(padded) if slot1 else None,
                self.encoder2.finest_band(padded) if slot2 else None,
                torch.full(shape, index, dtype=torch.int64, device=padded.device),
            )

        def merge(a: _Choice, b: _Choice) -> _Choice:
            weight_a = finest_faf.weight(a.slot1, b.slot2)
            if symmetric:
                weight_a = 0.5 * (weight_a + 1.0 - finest_faf.weight(b.slot1, a.slot2))
            take_a = weight_a >= 0.5
            return _Choice(
                _where(take_a, a.slot1, b.slot1),
                _where(take_a, a.slot2, b.slot2),
                torch.where(take_a, a.source, b.source),
            )

        root = fold_tree((leaf(index) for index in range(count)), merge)
        return root.source[..., top : top + height, left : left + width]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def no_weight_decay(self) -> set[str]:
        """Names of the parameters an optimiser should not decay (timm's convention).

        The SwinV2 continuous position-bias MLPs (``cpb_mlp``) and the attention logit scales:
        decaying them pulls the relative position bias and the attention temperature towards
        zero, which is not regularisation.
        """
        return {
            name
            for name, _ in self.named_parameters()
            if "cpb_mlp" in name or "logit_scale" in name
        }

    def compile_for_training(self, enabled: bool = True) -> None:
        """Run the SwinV2 blocks' training (autograd) path through torch.compile.

        The same arithmetic as eager mode up to float rounding (gradients within about 1e-5
        relative, tests/engine/test_layers.py); inference (no_grad) is unaffected. The first
        steps pay for compiling.
        """
        for module in self.modules():
            if isinstance(module, SwinV2Block):
                module.compiled_training = enabled
