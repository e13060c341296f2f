"""Building blocks of PSLPT: SwinV2 window attention, SwinV2 blocks, Swin-CNN stages, FAF modules.

Feature maps between modules are ``(B, C, H, W)``; inside a stage the transformer works on
channels-last token grids ``(B, H, W, C)``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

# The attention logit scale is clamped at log(1/0.01) as in SwinV2: scale <= 100.
_MAX_LOGIT_SCALE = math.log(100.0)
# Masked logits get -100 (not -inf), as the reference; exp(-100) is 0 in float32 anyway.
_MASK_VALUE = -100.0


def reflect_pad(x: torch.Tensor, pad: int = 1) -> torch.Tensor:
    """Reflection-pad the last two dims by ``pad`` on every side.

    Falls back to edge replication where a side is too short to reflect (a 1-pixel side).
    """
    height, width = x.shape[-2:]
    if height > pad and width > pad:
        return F.pad(x, (pad, pad, pad, pad), mode="reflect")
    return F.pad(x, (pad, pad, pad, pad), mode="replicate")


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


def window_merge(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`. (B * nW, window^2, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, height // window, width // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, c)


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


@lru_cache(maxsize=64)
def _shift_mask_cpu(height: int, width: int, window: int, shift: int) -> torch.Tensor:
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


def shifted_window_mask(
    height: int, width: int, window: int, shift: int, device: torch.device
) -> torch.Tensor:
    """Attention mask of a cyclically shifted window layout.

    Tokens that the roll brought together from opposite borders must not attend to each other.

    Returns:
        (nW, window^2, window^2) with 0 where attention is allowed and -100 elsewhere.
    """
    return _shift_mask_cpu(height, width, window, shift).to(device)


class WindowAttention(nn.Module):
    """SwinV2 scaled-cosine window attention with a continuous (log-spaced) position bias."""

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

    def forward(self, windows: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend within each window.

        Args:
            windows: (B * nW, N, C) tokens, N = window^2.
            mask: (nW, N, N) additive mask, or None.

        Returns:
            (B * nW, N, C).
        """
        count, n, c = windows.shape
        head_dim = c // self.num_heads
        qkv_bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(windows, self.qkv.weight, qkv_bias)
        # (3, B*nW, heads, N, head_dim)
        qkv = qkv.view(count, n, 3, self.num_heads, head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        scale = torch.clamp(self.logit_scale, max=_MAX_LOGIT_SCALE).exp()
        attn = attn * scale + self.position_bias()
        if mask is not None:
            num_windows = mask.shape[0]
            attn = attn.view(-1, num_windows, self.num_heads, n, n) + mask[None, :, None]
            attn = attn.view(count, self.num_heads, n, n)
        attn = attn.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(count, n, c)
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C); H and W multiples of the window."""
        _, height, width, _ = x.shape
        shortcut = x
        mask = None
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
            mask = shifted_window_mask(height, width, self.window, self.shift, x.device)
        windows = self.attn(window_partition(x, self.window), mask)
        x = window_merge(windows, self.window, height, width)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        x = shortcut + self.norm1(x)
        return x + self.norm2(self.mlp(x))


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class SwinConvStage(nn.Module):
    """Swin-CNN stage (Fig. 4d): conv, SwinV2 blocks, conv, plus a shortcut around all three.

    ``with_norms`` adds a LayerNorm before and after the blocks; the reference network uses it
    only in each encoder's full-resolution stage.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window: int,
        mlp_ratio: float,
        cpb_hidden: int,
        with_norms: bool,
    ) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(dim, dim, 3, bias=False)
        self.norm_in = nn.LayerNorm(dim) if with_norms else nn.Identity()
        self.blocks = SwinBlocks(dim, depth, num_heads, window, mlp_ratio, cpb_hidden)
        self.norm_out = nn.LayerNorm(dim) if with_norms else nn.Identity()
        self.conv_out = nn.Conv2d(dim, dim, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        shortcut = x
        tokens = self.conv_in(reflect_pad(x)).permute(0, 2, 3, 1)
        tokens = self.norm_out(self.blocks(self.norm_in(tokens)))
        x = self.conv_out(reflect_pad(tokens.permute(0, 3, 1, 2)))
        return x + shortcut


class FrequencyAdaptiveFusion(nn.Module):
    """FAF module (Fig. 4d, Eq. 1): learns per-pixel weights of two feature maps of one band.

    The weights come from the difference of the two sources' features, through conv, SwinV2
    blocks and conv to two channels, normalised by a softmax.
    """

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
        self.proj_in = nn.Conv2d(dim, dim, 3)
        self.norm_in = nn.LayerNorm(dim)
        self.blocks = SwinBlocks(dim, depth, num_heads, window, mlp_ratio, cpb_hidden)
        self.norm_out = nn.LayerNorm(dim)
        self.proj_out = nn.Conv2d(dim, 2, 3)

    def weights(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Fusion weights. a, b: (B, C, H, W) -> (B, 2, H, W); channel 0 weights ``a``."""
        tokens = self.proj_in(reflect_pad(a - b)).permute(0, 2, 3, 1)
        tokens = self.norm_out(self.blocks(self.norm_in(tokens)))
        logits = self.proj_out(reflect_pad(tokens.permute(0, 3, 1, 2)))
        return logits.softmax(dim=1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Fused features ``m_a * a + m_b * b``. a, b: (B, C, H, W) -> (B, C, H, W)."""
        m = self.weights(a, b)
        return m[:, 0:1] * a + m[:, 1:2] * b
