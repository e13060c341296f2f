"""The fast layer paths (window planes, chunks, fused padding) equal the textbook formulation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fusecli.engine import layers
from fusecli.engine.config import ModelConfig
from fusecli.engine.layers import (
    FrequencyAdaptiveFusion,
    SwinBlocks,
    SwinV2Block,
    WindowAttention,
    fill_pad_border,
    reflect_pad,
    window_partition,
)
from fusecli.engine.model import PSLPT, _stem_conv

DIM, HEADS, WINDOW, MLP_RATIO, CPB_HIDDEN = 48, 6, 2, 3.0, 64


def _nudged(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter moved off its initial value, so none can be ignored unnoticed."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=generator))
    return module


def _window_merge(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """Inverse of window_partition. (B * nW, window^2, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, height // window, width // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, c)


def _reference_attention(
    attn: WindowAttention, windows: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """SwinV2 window attention as the authors write it, on window-major tokens.

    Args:
        windows: (B * nW, N, C) tokens, N = window^2.
        mask: (nW, N, N) additive mask, or None.

    Returns:
        (B * nW, N, C).
    """
    count, n, c = windows.shape
    heads = attn.num_heads
    qkv = F.linear(windows, attn.qkv.weight, attn.qkv_bias())
    # (3, B*nW, heads, N, head_dim)
    q, k, v = qkv.view(count, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4).unbind(0)
    logits = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
    scale = torch.clamp(attn.logit_scale, max=math.log(100.0)).exp()
    logits = logits * scale + attn.position_bias()
    if mask is not None:
        num_windows = mask.shape[0]
        logits = logits.view(-1, num_windows, heads, n, n) + mask[None, :, None]
        logits = logits.view(count, heads, n, n)
    out = (logits.softmax(dim=-1) @ v).transpose(1, 2).reshape(count, n, c)
    return attn.proj(out)


def _reference_block(block: SwinV2Block, x: torch.Tensor) -> torch.Tensor:
    """The SwinV2 block as the authors write it: roll, partition, attend, merge, roll back."""
    _, height, width, _ = x.shape
    shortcut, mask = x, None
    if block.shift:
        x = torch.roll(x, shifts=(-block.shift, -block.shift), dims=(1, 2))
        mask = layers._shift_mask_cpu(height, width, block.window, block.shift)
    windows = _reference_attention(block.attn, window_partition(x, block.window), mask)
    x = _window_merge(windows, block.window, height, width)
    if block.shift:
        x = torch.roll(x, shifts=(block.shift, block.shift), dims=(1, 2))
    x = shortcut + block.norm1(x)
    return x + block.norm2(block.mlp(x))


def _block(shift: int) -> SwinV2Block:
    return _nudged(SwinV2Block(DIM, HEADS, WINDOW, shift, MLP_RATIO, CPB_HIDDEN), seed=shift)


@pytest.mark.parametrize("shift", [0, 1])
@pytest.mark.parametrize("shape", [(2, 6, 10), (1, 2, 2), (1, 8, 4)])
def test_block_on_planes_equals_roll_and_partition(shift, shape, monkeypatch) -> None:
    # A tiny chunk size makes the no_grad path run many chunks, the last one partial.
    monkeypatch.setattr(layers, "CHUNK_TOKENS", 12)
    block = _block(shift)
    x = torch.randn(*shape, DIM)
    with torch.no_grad():
        expected = _reference_block(block, x)
        chunked = block(x)
    whole = block(x)  # grad enabled: the one-piece autograd path
    assert (chunked - expected).abs().max() < 1e-5
    assert (whole - expected).abs().max() < 1e-5


def test_block_gradients_equal_the_reference() -> None:
    block = _block(1)
    x = torch.randn(2, 4, 6, DIM, requires_grad=True)
    _reference_block(block, x).square().sum().backward()
    expected = {n: p.grad.clone() for n, p in block.named_parameters()}
    expected_x = x.grad.clone()
    block.zero_grad()
    x.grad = None
    block(x).square().sum().backward()
    for name, p in block.named_parameters():
        assert torch.allclose(p.grad, expected[name], rtol=1e-4, atol=1e-4), name
    assert torch.allclose(x.grad, expected_x, rtol=1e-4, atol=1e-4)


def test_compiled_training_blocks_equal_eager_mode() -> None:
    # PSLPT.compile_for_training(): a shifted and an unshifted block (two graphs), two sizes
    # (dynamic shapes), gradients of every parameter and of the input.
    blocks = [_block(0), _block(1)]

    def gradients(compiled: bool, x: torch.Tensor) -> list[torch.Tensor]:
        for block in blocks:
            block.compiled_training = compiled
            block.zero_grad()
        x = x.clone().requires_grad_(True)
        out = x
        for block in blocks:
            out = block(out)
        out.square().sum().backward()
        return [out.detach(), x.grad] + [p.grad for b in blocks for p in b.parameters()]

    for shape in [(2, 4, 6), (1, 8, 4)]:
        x = torch.randn(*shape, DIM)
        eager, compiled = gradients(False, x), gradients(True, x)
        for expected, got in zip(eager, compiled, strict=True):
            # Relative to the tensor's scale: inductor sums in another order.
            assert (got - expected).abs().max() <= 1e-4 * expected.abs().max() + 1e-6


@pytest.mark.parametrize("grad", [False, True])
def test_padded_output_is_the_reflection_pad_of_the_output(grad, monkeypatch) -> None:
    monkeypatch.setattr(layers, "CHUNK_TOKENS", 16)
    blocks = _nudged(SwinBlocks(DIM, 2, HEADS, WINDOW, MLP_RATIO, CPB_HIDDEN))
    norm = _nudged(torch.nn.LayerNorm(DIM), seed=3)
    x = torch.randn(1, 6, 8, DIM)
    with torch.set_grad_enabled(grad):
        plain = blocks(x, norm, norm)
        padded = blocks(x, norm, norm, padded_output=True)
    expected = reflect_pad(plain.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    assert padded.shape == (1, 8, 10, DIM)
    assert (padded - expected).abs().max() < 1e-5


@pytest.mark.parametrize("size", [(1, 1), (1, 5), (4, 1), (3, 4)])
def test_fill_pad_border_matches_reflect_pad(size) -> None:
    grid = torch.randn(2, *size, 3)
    padded = torch.zeros(2, size[0] + 2, size[1] + 2, 3)
    padded[:, 1:-1, 1:-1] = grid
    expected = reflect_pad(grid.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    assert torch.equal(fill_pad_border(padded), expected)


def test_faf_forward_equals_its_softmax_weights() -> None:
    config = ModelConfig(
        channels=DIM, depth=2, num_heads=HEADS, window_size=WINDOW, mlp_ratio=MLP_RATIO,
        cpb_hidden=CPB_HIDDEN,
    )  # fmt: skip
    faf = _nudged(FrequencyAdaptiveFusion(config))
    a, b = torch.randn(2, 1, DIM, 4, 6)
    with torch.no_grad():
        m = faf._logits(a - b).softmax(dim=1)
        fused = faf(a, b)
    assert torch.allclose(m.sum(1), torch.ones(1, 4, 6))
    assert (fused - (m[:, 0:1] * a + m[:, 1:2] * b)).abs().max() < 1e-5


@pytest.mark.parametrize("in_channels", [1, 3])
def test_stem_conv_as_matrix_product_equals_conv2d(in_channels) -> None:
    conv = torch.nn.Conv2d(in_channels, DIM, 3, bias=False)
    padded = torch.randn(2, in_channels, 7, 9)
    out = _stem_conv(conv, padded)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out, F.conv2d(padded, conv.weight), atol=1e-5)


@pytest.mark.parametrize("grad", [False, True])
def test_a_grid_that_is_no_whole_number_of_windows_is_refused(grad) -> None:
    # 30 px is 15 px at the second level: windows of 2 would miss a row and a column, and
    # putting the planes back would leave those tokens as whatever memory held before.
    with torch.set_grad_enabled(grad), pytest.raises(ValueError, match="pad it first"):
        PSLPT().encoder1(torch.rand(1, 1, 30, 30))
