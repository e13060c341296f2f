"""Building blocks of PSLPT: SwinV2 window attention, SwinV2 blocks, Swin-CNN stages, FAF modules.

Feature maps between modules are ``(B, C, H, W)`` in channels-last memory; inside a stage the
transformer works on the token grid ``(B, H, W, C)`` that is the same memory, so no permute copies.

Speed (CPU): a SwinV2 block with a 2x2 window is dominated by memory traffic, not arithmetic.
The blocks therefore work on "window planes": tokens gathered (one index_select, which also does
the cyclic shift) into ``(B, P, n, C)`` with ``P = window^2`` positions of ``n`` windows, so the
4x4 attention is a handful of elementwise products between whole planes instead of many tiny
matrix products, and the 4-way softmax is a reduction over an outer dimension. Under no_grad the
grid is processed in chunks of windows small enough that every intermediate (qkv, attention
products, MLP hidden layer) stays in cache. Per-token operations (LayerNorm, linears, MLP)
commute with the gather, so the result equals the window_partition/roll formulation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache, wraps
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from fusecli.engine.config import ModelConfig

# The attention logit scale is clamped at log(1/0.01) as in SwinV2: scale <= 100.
_MAX_LOGIT_SCALE = math.log(100.0)
# Masked logits get -100 (not -inf), as the reference; exp(-100) is 0 in float32 anyway.
_MASK_VALUE = -100.0
# F.normalize divides by max(norm, 1e-12); we multiply by rsqrt(max(norm^2, 1e-24)).
_NORM_EPS_SQUARED = 1e-24
# Tokens per chunk of the no_grad block loop: large enough that per-op overhead stays small,
# small enough that a chunk's intermediates (about 1 KB per token) stay in the L2/L3 caches.
CHUNK_TOKENS = 8192


def _constant_cache(build: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Memoise a tensor that depends only on its arguments (indices, masks, 0/1 matrices).

    The tensor is built outside inference mode: a constant first built inside
    ``torch.inference_mode()`` (as the CLI fuses) would be an inference tensor, which a later
    training forward in the same process could not save for backward.
    """

    @lru_cache(maxsize=64)
    @wraps(build)
    def cached(*args):
        with torch.inference_mode(False), torch.no_grad():
            return build(*args)

    return cached


def reflect_pad(x: torch.Tensor, pad: int = 1) -> torch.Tensor:
    """Reflection-pad the last two dims by ``pad`` on every side.

    Falls back to edge replication where a side is too short to reflect (a 1-pixel side).
    """
    height, width = x.shape[-2:]
    if pad == 1 and _is_channels_last_map(x) and not (torch.is_grad_enabled() and x.requires_grad):
        # F.pad's channels-last reflection kernel is about 2x slower than these two copies.
        b, c = x.shape[:2]
        padded = x.new_empty(b, height + 2, width + 2, c)
        padded[:, 1:-1, 1:-1] = x.permute(0, 2, 3, 1)
        return fill_pad_border(padded).permute(0, 3, 1, 2)
    if height > pad and width > pad:
        return F.pad(x, (pad, pad, pad, pad), mode="reflect")
    return F.pad(x, (pad, pad, pad, pad), mode="replicate")


def _is_channels_last_map(x: torch.Tensor) -> bool:
    # A 4-D map whose (B, H, W, C) permutation is contiguous (a 1-channel map is NCHW too).
    return x.dim() == 4 and x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """Bilinear 2x upsampling, ``align_corners=False``. (B, C, H, W) -> (B, C, 2H, 2W)."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def downsample2(x: torch.Tensor) -> torch.Tensor:
    """Reflection pad 1, then 3x3 max pooling with stride 2. (B, C, H, W) -> (B, C, H/2, W/2)."""
    return F.max_pool2d(reflect_pad(x, 1), kernel_size=3, stride=2)


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """Split a token grid into windows.

    Args:
        x: (B, H, W, C) with H and W multiples of ``window``.

    Returns:
        (B * H/window * W/window, window * window, C), windows in row-major order.
    """
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def log_spaced_relative_coords(window: int) -> torch.Tensor:
    """SwinV2's log-spaced relative coordinates of a window.

    Returns:
        (2 * window - 1, 2 * window - 1, 2): for each offset (dy, dx) the value
        ``sign(t) * log2(1 + 8 |t|) / log2(8)`` with ``t = offset / (window - 1)``.
    """
    offsets = torch.arange(-(window - 1), window, dtype=torch.float32)
    table = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), dim=-1)
    table = table / max(window - 1, 1) * 8.0
    return torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8.0)


def relative_position_index(window: int) -> torch.Tensor:
    """Index into the flattened coordinate table per (query, key) pair: (window^2, window^2)."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return relative[..., 0] * (2 * window - 1) + relative[..., 1]


@_constant_cache
def _shift_mask_cpu(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    """Attention mask of a cyclically shifted window layout.

    Tokens that the roll brought together from opposite borders must not attend to each other.

    Returns:
        (nW, window^2, window^2) with 0 where attention is allowed and -100 elsewhere.
    """
    region = torch.zeros(height, width)
    bounds = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for rows in bounds:
        for cols in bounds:
            region[rows, cols] = label
            label += 1
    region_windows = window_partition(region[None, :, :, None], window).squeeze(-1)
    different = region_windows[:, None, :] != region_windows[:, :, None]
    return torch.zeros(different.shape).masked_fill(different, _MASK_VALUE)


@_constant_cache
def _plane_index_cpu(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    if height % window or width % window:
        # The windows would miss the last rows or columns, and the inverse index (which puts
        # planes back into the grid) would leave those tokens as uninitialised memory.
        raise ValueError(
            f"a {height}x{width} token grid is not a whole number of {window}x{window} windows; "
            "pad it first (PSLPT.fuse and the tiling do)"
        )
    offsets = torch.arange(window)
    rows = (torch.arange(0, height, window)[:, None] + offsets + shift) % height
    cols = (torch.arange(0, width, window)[:, None] + offsets + shift) % width
    # (nWh, nWw, window_row, window_col) flat grid index, then positions first.
    flat = rows[:, None, :, None] * width + cols[None, :, None, :]
    return flat.permute(2, 3, 0, 1).reshape(window * window, -1).contiguous()


def window_plane_index(
    height: int, width: int, window: int, shift: int, device: torch.device
) -> torch.Tensor:
    """Flat grid index of every token of the (cyclically shifted) window layout.

    Window ``k`` of ``roll(x, (-shift, -shift))`` in row-major order holds, at position ``p``
    (row-major inside the window), the token ``x.flatten(1, 2)[:, index[p, k]]``.

    Returns:
        (window^2, nW) int64.
    """
    return _plane_index_cpu(height, width, window, shift).to(device)


@_constant_cache
def _inverse_plane_index_cpu(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    flat = _plane_index_cpu(height, width, window, shift).flatten()
    inverse = torch.empty_like(flat)
    inverse[flat] = torch.arange(flat.numel())
    return inverse


@_constant_cache
def _padded_plane_index_cpu(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    # The same tokens' flat index in the (H + 2, W + 2) grid padded by one on every side.
    index = _plane_index_cpu(height, width, window, shift)
    return (index // width + 1) * (width + 2) + index % width + 1


def fill_pad_border(padded: torch.Tensor) -> torch.Tensor:
    """Fill the one-token border of a (B, H + 2, W + 2, C) grid in place, as :func:`reflect_pad`.

    The interior must already hold the grid; with a side of one token both sides are
    replicated instead, as :func:`reflect_pad` does.
    """
    height, width = padded.shape[1] - 2, padded.shape[2] - 2
    row = col = 2 if height > 1 and width > 1 else 1
    padded[:, 0, 1:-1] = padded[:, row, 1:-1]
    padded[:, -1, 1:-1] = padded[:, -1 - row, 1:-1]
    padded[:, :, 0] = padded[:, :, col]
    padded[:, :, -1] = padded[:, :, -1 - col]
    return padded


@_constant_cache
def _plane_mask_cpu(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    # (nW, query, key) -> (query, key, nW, 1): broadcasts over the heads of (B, P, P, n, heads).
    mask = _shift_mask_cpu(height, width, window, shift)
    return mask.permute(1, 2, 0).unsqueeze(-1).contiguous()


@_constant_cache
def _head_sum_matrix(
    channels: int, heads: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    head_of_channel = torch.arange(channels) // (channels // heads)
    sums = (head_of_channel[:, None] == torch.arange(heads)[None, :]).to(dtype)
    return sums.to(device)


class PlaneConstants(NamedTuple):
    """What a block's attention needs besides the tokens; it depends only on the weights.

    Computed once per block call (:meth:`WindowAttention.plane_constants`), not per window batch.

    Attributes:
        qkv_bias: (3C,) from :meth:`WindowAttention.qkv_bias`.
        scales: (heads,) from :meth:`WindowAttention.logit_scales`.
        bias: (P, P, 1, heads), :meth:`WindowAttention.position_bias` as [query, key, 1, head].
        sums: (C, heads) 0/1 matrix, ``x @ sums`` adds up each head's channels.
    """

    qkv_bias: torch.Tensor
    scales: torch.Tensor
    bias: torch.Tensor
    sums: torch.Tensor


def gather_planes(grid: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Tokens of the windows in ``index`` as planes.

    Args:
        grid: (B, H, W, C) token grid.
        index: (P, n) flat grid indices, a slice of :func:`window_plane_index`.

    Returns:
        (B, P, n, C).
    """
    b, h, w, c = grid.shape
    flat = grid.reshape(b, h * w, c).index_select(1, index.reshape(-1))
    return flat.view(b, index.shape[0], index.shape[1], c)


def _attend_for_training(
    qkv: torch.Tensor, constants: PlaneConstants, mask: torch.Tensor | None, heads: int
) -> torch.Tensor:
    """Scaled-cosine attention on window planes, out of place for autograd.

    The arithmetic of the in-place no_grad path of :meth:`WindowAttention.forward_planes`.
    q, k and v come from one ``unbind``: its backward stacks the three gradients into one
    tensor, where slicing ``qkv`` three times would zero-fill and add a full-size gradient per
    slice (about a tenth of a block's training time).

    Args:
        qkv: (B, P, n, 3C) projected tokens.
        constants: the block's :class:`PlaneConstants`.
        mask: (P, P, n, 1) additive shift mask, or None.
        heads: number of heads.

    Returns:
        (B, P, n, C), before the output projection.
    """
    c = qkv.shape[-1] // 3
    sums, scales = constants.sums, constants.scales
    q, k, v = qkv.unflatten(-1, (3, c)).unbind(-2)
    dots = (q.unsqueeze(2) * k.unsqueeze(1)) @ sums
    inv_q = ((q * q) @ sums).clamp_min(_NORM_EPS_SQUARED).rsqrt() * scales
    inv_k = ((k * k) @ sums).clamp_min(_NORM_EPS_SQUARED).rsqrt()
    logits = dots * inv_q.unsqueeze(2) * inv_k.unsqueeze(1) + constants.bias
    if mask is not None:
        logits = logits + mask
    weights = logits.softmax(dim=2).unsqueeze(-1)
    v = v.unflatten(-1, (heads, -1))
    out = weights[:, :, 0] * v[:, 0:1]
    for key in range(1, qkv.shape[1]):
        out = out.addcmul_(weights[:, :, key], v[:, key : key + 1])
    return out.flatten(-2)


class WindowAttention(nn.Module):
    """SwinV2 scaled-cosine window attention with a continuous (log-spaced) position bias.

    It runs on window planes through :meth:`forward_planes`, called by :class:`SwinV2Block`; the
    textbook formulation on partitioned windows lives in the tests as the reference it must equal.
    """

    def __init__(self, dim: int, window: int, num_heads: int, cpb_hidden: int) -> None:
        super().__init__()
        self.dim = dim
        self.window = window
        self.num_heads = num_heads
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones(num_heads, 1, 1)))
        self.cpb_mlp = nn.Sequential(
            nn.Linear(2, cpb_hidden, bias=True),
            nn.ReLU(inplace=True),
            nn.Linear(cpb_hidden, num_heads, bias=False),
        )
        # The key has no bias in SwinV2: q and v biases are separate parameters.
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)
        self.register_buffer("coords_table", log_spaced_relative_coords(window), persistent=False)
        self.register_buffer(
            "position_index", relative_position_index(window).flatten(), persistent=False
        )

    def position_bias(self) -> torch.Tensor:
        """(heads, window^2, window^2): 16 * sigmoid(cpb_mlp(coords)), depends only on weights."""
        n = self.window * self.window
        table = self.cpb_mlp(self.coords_table).view(-1, self.num_heads)
        bias = table[self.position_index].view(n, n, self.num_heads).permute(2, 0, 1)
        return 16.0 * torch.sigmoid(bias)

    def qkv_bias(self) -> torch.Tensor:
        """(3 * dim,): the q bias, zeros for the key, the v bias."""
        return torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))

    def logit_scales(self) -> torch.Tensor:
        """(heads,): ``exp(min(logit_scale, log 100))``."""
        return torch.clamp(self.logit_scale, max=_MAX_LOGIT_SCALE).exp().view(self.num_heads)

    def plane_constants(self, device: torch.device, dtype: torch.dtype) -> PlaneConstants:
        """The weight-only inputs of :meth:`forward_planes`, for one call of the block."""
        return PlaneConstants(
            qkv_bias=self.qkv_bias(),
            scales=self.logit_scales(),
            bias=self.position_bias().permute(1, 2, 0).unsqueeze(2),
            sums=_head_sum_matrix(self.dim, self.num_heads, device, dtype),
        )

    def forward_planes(
        self, planes: torch.Tensor, constants: PlaneConstants, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Attend within each window, tokens as window planes.

        Args:
            planes: (B, P, n, C), position p of window k at ``[:, p, k]``.
            constants: from :meth:`plane_constants`.
            mask: (P, P, n, 1) additive mask of these windows, or None.

        Returns:
            (B, P, n, C).
        """
        c = planes.shape[-1]
        heads = self.num_heads
        qkv = F.linear(planes, self.qkv.weight, constants.qkv_bias)
        if torch.is_grad_enabled():
            return self.proj(_attend_for_training(qkv, constants, mask, heads))
        sums, scales, bias = constants.sums, constants.scales, constants.bias
        positions = planes.shape[1]
        q, k, v = qkv[..., :c], qkv[..., c : 2 * c], qkv[..., 2 * c :]
        # Per-head dot products of every (query, key) pair: (B, P, P, n, heads). The head sums
        # are matrix products, which beat a reduction over 8 contiguous channels by far.
        dots = (q.unsqueeze(2) * k.unsqueeze(1)) @ sums
        qk = qkv[..., : 2 * c]
        squares = (qk * qk) @ _head_sum_matrix(2 * c, 2 * heads, planes.device, planes.dtype)
        # Cosine similarity: the dot products times both inverse norms, as F.normalize does.
        inv_norms = squares.clamp_min(_NORM_EPS_SQUARED).rsqrt()
        inv_q = (inv_norms[..., :heads] * scales).unsqueeze(2)
        inv_k = inv_norms[..., heads:].unsqueeze(1)
        # In place; the softmax over the keys (dim 2, an outer dimension) vectorises over
        # windows and heads, unlike a softmax over a last dimension of 4.
        logits = dots.mul_(inv_q).mul_(inv_k).add_(bias)
        if mask is not None:
            logits = logits.add_(mask)
        weights = logits.sub_(logits.amax(2, keepdim=True)).exp_()
        weights = weights.div_(weights.sum(2, keepdim=True))
        # Weighted sum of the values over the keys, each head's weight broadcast over its
        # channels: (B, P, n, heads, head_dim).
        weights = weights.unsqueeze(-1)
        v = v.unflatten(-1, (heads, -1))
        out = weights[:, :, 0] * v[:, 0:1]
        for key in range(1, positions):
            out = out.addcmul_(weights[:, :, key], v[:, key : key + 1])
        out = out.flatten(-2)
        return self.proj(out)


class Mlp(nn.Module):
    """Two linear layers with a GELU between them."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinV2Block(nn.Module):
    """SwinV2 block with post-norm residuals: ``x + norm1(attn(x))``, then ``x + norm2(mlp(x))``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: int,
        shift: int,
        mlp_ratio: float,
        cpb_hidden: int,
    ) -> None:
        super().__init__()
        self.window = window
        self.shift = shift
        self.attn = WindowAttention(dim, window, num_heads, cpb_hidden)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm2 = nn.LayerNorm(dim)
        # Set by PSLPT.compile_for_training(): the training path runs through torch.compile.
        self.compiled_training = False

    def forward(
        self,
        x: torch.Tensor,
        norm_before: nn.Module | None = None,
        norm_after: nn.Module | None = None,
        padded_output: bool = False,
    ) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C); H and W multiples of the window.

        ``norm_before`` / ``norm_after`` are per-token modules applied to the block's input and
        output (a stage's LayerNorms), fused into the block's gather and scatter. With
        ``padded_output`` the result is reflection-padded by one token, (B, H + 2, W + 2, C),
        written straight into the padded grid (the conv after the blocks needs it).
        """
        b, height, width, c = x.shape
        window, shift = self.window, self.shift
        index = window_plane_index(height, width, window, shift, x.device)
        mask = None
        if shift:
            mask = _plane_mask_cpu(height, width, window, shift).to(x.device)
        constants = self.attn.plane_constants(x.device, x.dtype)

        def run(windows: torch.Tensor, window_mask: torch.Tensor | None) -> torch.Tensor:
            planes = gather_planes(x, windows)
            if norm_before is not None:
                planes = norm_before(planes)
            planes = self.forward_planes(planes, constants, window_mask)
            if norm_after is not None:
                planes = norm_after(planes)
            return planes.reshape(b, -1, c)

        if torch.is_grad_enabled():
            # One piece, out-of-place: autograd records a plain gather / scatter.
            inverse = _inverse_plane_index_cpu(height, width, window, shift)
            out = run(index, mask).index_select(1, inverse.to(x.device))
            out = out.view(b, height, width, c)
            if padded_output:
                out = reflect_pad(out.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
            return out
        out_height, out_width = height, width
        out_index = index
        if padded_output:
            out_height, out_width = height + 2, width + 2
            out_index = _padded_plane_index_cpu(height, width, window, shift).to(x.device)
        per_chunk = max(1, CHUNK_TOKENS // (b * index.shape[0]))
        out = None
        for start in range(0, index.shape[1], per_chunk):
            windows = index[:, start : start + per_chunk]
            window_mask = None if mask is None else mask[:, :, start : start + per_chunk]
            piece = run(windows, window_mask)
            if out is None:
                out = piece.new_empty(b, out_height * out_width, c)
            out.index_copy_(1, out_index[:, start : start + per_chunk].reshape(-1), piece)
        out = out.view(b, out_height, out_width, c)
        return fill_pad_border(out) if padded_output else out

    def forward_planes(
        self, planes: torch.Tensor, constants: PlaneConstants, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """The block on window planes (B, P, n, C); see :meth:`WindowAttention.forward_planes`."""
        if torch.is_grad_enabled():
            train_planes = _compiled_block_planes() if self.compiled_training else _block_planes
            return train_planes(self, planes, constants, mask)
        attended = self.norm1(self.attn.forward_planes(planes, constants, mask))
        # In place without autograd (same sums: addition commutes exactly).
        x = attended.add_(planes)
        return self.norm2(self.mlp(x)).add_(x)


def _block_planes(
    block: SwinV2Block, planes: torch.Tensor, constants: PlaneConstants, mask: torch.Tensor | None
) -> torch.Tensor:
    """:meth:`SwinV2Block.forward_planes` out of place, for autograd."""
    attended = block.attn.forward_planes(planes, constants, mask)
    x = planes + block.norm1(attended)
    return x + block.norm2(block.mlp(x))


@lru_cache(maxsize=1)
def _compiled_block_planes() -> Callable[..., torch.Tensor]:
    """:func:`_block_planes` through torch.compile, built on first use.

    Training spends most of its time in elementwise work between window planes (the 4x4
    attention, its softmax, LayerNorm, GELU) and in their backward; inductor fuses it into a few
    loops, about 1.5x faster per block on CPU. Only the blocks are compiled: a shift mask or
    not gives two graphs, and shapes are dynamic, so new crop sizes do not recompile. Compiling
    takes one to two minutes per graph on these CPUs (cached by inductor afterwards).
    """
    return torch.compile(_block_planes, dynamic=True)


class SwinBlocks(nn.Module):
    """``depth`` SwinV2 blocks, every second one shifted by half a window."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window: int,
        mlp_ratio: float,
        cpb_hidden: int,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinV2Block(
                dim,
                num_heads,
                window,
                shift=0 if i % 2 == 0 else window // 2,
                mlp_ratio=mlp_ratio,
                cpb_hidden=cpb_hidden,
            )
            for i in range(depth)
        )

    @classmethod
    def of(cls, config: ModelConfig) -> SwinBlocks:
        """The blocks of one stage or FAF module of a network with ``config``."""
        return cls(
            config.channels,
            config.depth,
            config.num_heads,
            config.window_size,
            config.mlp_ratio,
            config.cpb_hidden,
        )

    def forward(
        self,
        x: torch.Tensor,
        norm_before: nn.Module | None = None,
        norm_after: nn.Module | None = None,
        padded_output: bool = False,
    ) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C), optionally ``norm_after(blocks(norm_before(x)))``.

        ``padded_output``: return the result reflection-padded by one, (B, H + 2, W + 2, C).
        """
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            if i < last:
                x = block(x, norm_before if i == 0 else None)
            else:
                x = block(x, norm_before if i == 0 else None, norm_after, padded_output)
        return x


def _optional(module: nn.Module) -> nn.Module | None:
    return None if isinstance(module, nn.Identity) else module


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


class SwinConvStage(nn.Module):
    """Swin-CNN stage (Fig. 4d): conv, SwinV2 blocks, conv, plus a shortcut around all three.

    ``with_norms`` adds a LayerNorm before and after the blocks; the reference network uses it
    only in each encoder's full-resolution stage.
    """

    def __init__(self, config: ModelConfig, with_norms: bool) -> None:
        super().__init__()
        dim = config.channels
        self.conv_in = nn.Conv2d(dim, dim, 3, bias=False)
        self.norm_in = nn.LayerNorm(dim) if with_norms else nn.Identity()
        self.blocks = SwinBlocks.of(config)
        self.norm_out = nn.LayerNorm(dim) if with_norms else nn.Identity()
        self.conv_out = nn.Conv2d(dim, dim, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W), channels-last memory."""
        shortcut = x = _channels_last(x)
        # Channels-last conv output: its (B, H, W, C) permutation is contiguous, no copy.
        tokens = self.conv_in(reflect_pad(x)).permute(0, 2, 3, 1)
        padded = self.blocks(
            tokens, _optional(self.norm_in), _optional(self.norm_out), padded_output=True
        )
        x = self.conv_out(padded.permute(0, 3, 1, 2))
        # In place without autograd: no second full-size buffer (fresh pages are costly).
        return x + shortcut if torch.is_grad_enabled() else x.add_(shortcut)


class FrequencyAdaptiveFusion(nn.Module):
    """FAF module (Fig. 4d, Eq. 1): learns per-pixel weights of two feature maps of one band.

    The weights come from the difference of the two sources' features, through conv, SwinV2
    blocks and conv to two channels, normalised by a softmax.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        dim = config.channels
        self.proj_in = nn.Conv2d(dim, dim, 3)
        self.norm_in = nn.LayerNorm(dim)
        self.blocks = SwinBlocks.of(config)
        self.norm_out = nn.LayerNorm(dim)
        self.proj_out = nn.Conv2d(dim, 2, 3)

    def _logits(self, diff: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) difference of the sources -> (B, 2, H, W) logits, channels-last."""
        tokens = self.proj_in(reflect_pad(diff)).permute(0, 2, 3, 1)
        padded = self.blocks(tokens, self.norm_in, self.norm_out, padded_output=True)
        return self.proj_out(padded.permute(0, 3, 1, 2))

    def fuse_with_weight(
        self, a: torch.Tensor, b: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused features ``m_a * a + m_b * b`` and the weight ``m_a`` (``m_b = 1 - m_a``).

        Args:
            a, b: (B, C, H, W).

        Returns:
            (B, C, H, W) fused features and (B, 1, H, W) weight of ``a`` in [0, 1].
        """
        diff = _channels_last(a - b)
        weight_a = self._weight_of_difference(diff)
        # m_b = 1 - m_a, so m_a * a + m_b * b = b + m_a * (a - b): one pass over the features
        # instead of three.
        return torch.addcmul(b, weight_a, diff), weight_a

    def weight(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The (B, 1, H, W) weight ``m_a`` alone, as :meth:`fuse_with_weight` computes it."""
        return self._weight_of_difference(_channels_last(a - b))

    def _weight_of_difference(self, diff: torch.Tensor) -> torch.Tensor:
        logits = self._logits(diff)
        # A softmax over two channels is a sigmoid of their difference.
        return torch.sigmoid(logits[:, 0:1] - logits[:, 1:2])

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Fused features ``m_a * a + m_b * b``. a, b: (B, C, H, W) -> (B, C, H, W)."""
        return self.fuse_with_weight(a, b)[0]
