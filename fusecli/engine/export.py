"""One task's network as plain tensor operations, for TorchScript and ONNX files.

The engine's fast path (window planes, cached index tensors, in-place chunks) depends on Python
ints and caches that neither ``torch.jit.script`` nor an ONNX graph can hold. The modules here
share the engine's parameters but compute the textbook formulation from the input's own shape:
roll, window partition, attention, merge; the shift mask and the padding to a multiple of 16
are built from tensor shapes, so the exported graph accepts any N, H and W (H, W >= 16).
Weight-only quantities (position bias, logit scales, q/v bias) are folded into constants.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fusecli.atomic import atomic_path
from fusecli.engine.layers import (
    FrequencyAdaptiveFusion,
    SwinBlocks,
    SwinConvStage,
    SwinV2Block,
)
from fusecli.engine.model import PSLPT, Decoder, Encoder
from fusecli.errors import FuseError

EXPORT_FORMATS = ("onnx", "torchscript")
ONNX_OPSET = 18
# The smallest side the exported graph takes: the padding reflects at most 8 pixels per side.
MIN_SIDE = 16


def _pad1(x: torch.Tensor) -> torch.Tensor:
    """Reflection padding by one pixel. (B, C, H, W) -> (B, C, H + 2, W + 2)."""
    return F.pad(x, [1, 1, 1, 1], mode="reflect")


def _upsample2(x: torch.Tensor) -> torch.Tensor:
    """Bilinear 2x upsampling (``align_corners=False``) as slices and sums.

    Output pixel 2i is ``0.75 x[i] + 0.25 x[i - 1]`` and 2i + 1 is ``0.75 x[i] + 0.25 x[i + 1]``,
    edges repeated; unlike ``F.interpolate`` with a scale factor, ONNX export needs no static
    rank for it. (B, C, H, W) -> (B, C, 2H, 2W).
    """
    b, c, height, width = x.shape
    before = torch.cat([x[:, :, :1], x[:, :, :-1]], dim=2)
    after = torch.cat([x[:, :, 1:], x[:, :, -1:]], dim=2)
    x = torch.stack([0.75 * x + 0.25 * before, 0.75 * x + 0.25 * after], dim=3)
    x = x.reshape(b, c, 2 * height, width)
    before = torch.cat([x[..., :1], x[..., :-1]], dim=3)
    after = torch.cat([x[..., 1:], x[..., -1:]], dim=3)
    x = torch.stack([0.75 * x + 0.25 * before, 0.75 * x + 0.25 * after], dim=4)
    return x.reshape(b, c, 2 * height, 2 * width)


def shift_mask(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    """Additive mask of the cyclically shifted window layout, from sizes known at run time.

    Tokens that the roll brought together from opposite borders get -100, as in the engine.

    Returns:
        (nW, window^2, window^2).
    """
    rows = torch.arange(height)
    cols = torch.arange(width)
    row_label = (rows >= height - window).long() + (rows >= height - shift).long()
    col_label = (cols >= width - window).long() + (cols >= width - shift).long()
    region = row_label[:, None] * 3 + col_label[None, :]
    region = region.view(height // window, window, width // window, window)
    region = region.permute(0, 2, 1, 3).reshape(-1, window * window)
    different = region[:, None, :] != region[:, :, None]
    return torch.zeros(different.shape).masked_fill(different, -100.0)


class ExportBlock(nn.Module):
    """A SwinV2 block (post-norm residuals) on a (B, H, W, C) grid, roll and partition style."""

    # Constants to TorchScript, so the shift's branches are resolved when scripting.
    __constants__ = ("heads", "shift", "window")

    def __init__(self, block: SwinV2Block) -> None:
        super().__init__()
        attn = block.attn
        self.window, self.shift, self.heads = block.window, block.shift, attn.num_heads
        self.qkv, self.proj = attn.qkv, attn.proj
        self.norm1, self.norm2 = block.norm1, block.norm2
        self.fc1, self.act, self.fc2 = block.mlp.fc1, block.mlp.act, block.mlp.fc2
        with torch.no_grad():
            self.register_buffer("qkv_bias", attn.qkv_bias().detach().clone())
            self.register_buffer("scales", attn.logit_scales().detach().view(-1, 1, 1).clone())
            self.register_buffer("position_bias", attn.position_bias().detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C); H and W multiples of the window."""
        b, height, width, c = x.shape
        window, heads = self.window, self.heads
        n = window * window
        shortcut = x
        if self.shift > 0:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        # (B * nW, n, C), windows row-major
        windows = x.view(b, height // window, window, width // window, window, c)
        windows = windows.permute(0, 1, 3, 2, 4, 5).reshape(-1, n, c)
        qkv = F.linear(windows, self.qkv.weight, self.qkv_bias)
        # (3, B * nW, heads, n, head_dim)
        q, k, v = qkv.view(-1, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4).unbind(0)
        logits = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        logits = logits * self.scales + self.position_bias
        if self.shift > 0:
            mask = shift_mask(height, width, window, self.shift).to(logits.device)
            logits = logits.view(b, -1, heads, n, n) + mask[None, :, None]
            logits = logits.view(-1, heads, n, n)
        attended = (logits.softmax(dim=-1) @ v).transpose(1, 2).reshape(-1, n, c)
        attended = self.proj(attended)
        merged = attended.view(b, height // window, width // window, window, window, c)
        x = merged.permute(0, 1, 3, 2, 4, 5).reshape(b, height, width, c)
        if self.shift > 0:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        x = shortcut + self.norm1(x)
        return x + self.norm2(self.fc2(self.act(self.fc1(x))))


def _blocks(blocks: SwinBlocks) -> nn.ModuleList:
    return nn.ModuleList(ExportBlock(block) for block in blocks.blocks)


def _norm_or_identity(module: nn.Module) -> nn.Module:
    return module if isinstance(module, nn.LayerNorm) else nn.Identity()


class ExportStage(nn.Module):
    """Swin-CNN stage: conv, (norm,) blocks, (norm,) conv, plus the shortcut."""

    def __init__(self, stage: SwinConvStage) -> None:
        super().__init__()
        self.conv_in, self.conv_out = stage.conv_in, stage.conv_out
        self.norm_in = _norm_or_identity(stage.norm_in)
        self.norm_out = _norm_or_identity(stage.norm_out)
        self.blocks = _blocks(stage.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        tokens = self.norm_in(self.conv_in(_pad1(x)).permute(0, 2, 3, 1))
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.norm_out(tokens).permute(0, 3, 1, 2)
        return self.conv_out(_pad1(tokens)) + x


class ExportFusion(nn.Module):
    """FAF module: ``b + sigmoid(l_a - l_b) * (a - b)`` with logits from the difference."""

    def __init__(self, faf: FrequencyAdaptiveFusion) -> None:
        super().__init__()
        self.proj_in, self.proj_out = faf.proj_in, faf.proj_out
        self.norm_in, self.norm_out = faf.norm_in, faf.norm_out
        self.blocks = _blocks(faf.blocks)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a, b: (B, C, H, W) -> (B, C, H, W)."""
        diff = a - b
        tokens = self.norm_in(self.proj_in(_pad1(diff)).permute(0, 2, 3, 1))
        for block in self.blocks:
            tokens = block(tokens)
        logits = self.proj_out(_pad1(self.norm_out(tokens).permute(0, 3, 1, 2)))
        return b + torch.sigmoid(logits[:, 0:1] - logits[:, 1:2]) * diff


class ExportEncoder(nn.Module):
    """Image -> Laplacian feature pyramid, fine to coarse (see :class:`Encoder`)."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.stem = encoder.stem
        self.first = ExportStage(encoder.stages[0])
        self.rest = nn.ModuleList(ExportStage(stage) for stage in encoder.stages[1:])

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = self.first(self.stem(_pad1(image)))
        bands: list[torch.Tensor] = []
        for stage in self.rest:
            coarse = stage(F.max_pool2d(_pad1(x), kernel_size=3, stride=2))
            bands.append(x - _upsample2(coarse))
            x = coarse
        bands.append(x)
        return bands


class ExportDecoder(nn.Module):
    """Feature pyramid -> image, coarse to fine (see :class:`Decoder`)."""

    def __init__(self, decoder: Decoder) -> None:
        super().__init__()
        # Coarse to fine: stages[levels - 1] first; stages[0] runs at full resolution.
        coarse_to_fine = range(len(decoder.stages) - 1, 0, -1)
        self.upper = nn.ModuleList(ExportStage(decoder.stages[k]) for k in coarse_to_fine)
        self.finest = ExportStage(decoder.stages[0])
        self.head = decoder.head

    def forward(self, bands: list[torch.Tensor]) -> torch.Tensor:
        x = bands[-1]
        level = len(bands) - 2
        for stage in self.upper:
            x = bands[level] + _upsample2(stage(x))
            level -= 1
        return self.head(_pad1(self.finest(x)))


class ExportedNetwork(nn.Module):
    """One task's whole network: two (N, 1, H, W) planes in [0, 1] -> fused (N, 1, H, W).

    Pads H and W by reflection to a multiple of 16 (split between both sides), encodes each
    source with its encoder, fuses every band with one FAF set, decodes, crops back and clamps
    to [0, 1]: what :meth:`PSLPT.fuse` does for two sources.
    """

    __constants__ = ("multiple",)

    def __init__(self, net: PSLPT, faf_set: int) -> None:
        super().__init__()
        self.multiple = net.config.size_multiple
        self.encoder1 = ExportEncoder(net.encoder1)
        self.encoder2 = ExportEncoder(net.encoder2)
        self.fusion = nn.ModuleList(ExportFusion(faf) for faf in net.faf_set(faf_set).bands)
        self.decoder = ExportDecoder(net.decoder)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        height, width = a.shape[2], a.shape[3]
        pad_h = (self.multiple - height % self.multiple) % self.multiple
        pad_w = (self.multiple - width % self.multiple) % self.multiple
        top, left = pad_h // 2, pad_w // 2
        pads = [left, pad_w - left, top, pad_h - top]
        bands_a = self.encoder1(F.pad(a, pads, mode="reflect"))
        bands_b = self.encoder2(F.pad(b, pads, mode="reflect"))
        fused: list[torch.Tensor] = []
        for level, faf in enumerate(self.fusion):
            fused.append(faf(bands_a[level], bands_b[level]))
        image = self.decoder(fused)
        return image[:, :, top : top + height, left : left + width].clamp(0.0, 1.0)


def require_onnx() -> None:
    """Raise FuseError unless the ``onnx`` package, which torch's ONNX exporter needs, imports."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise FuseError(
            "exporting to ONNX needs the onnx package, which is not installed",
            remedy="install the extra: pip install 'fusecli[export]'",
        ) from None


def _plain(net: PSLPT, faf_set: int) -> ExportedNetwork:
    net.faf_set(faf_set)  # raises on a wrong set
    module = ExportedNetwork(net, faf_set).to("cpu").eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


def exportable(net: PSLPT, faf_set: int) -> torch.jit.ScriptModule:
    """The network of one FAF set as a TorchScript module on the CPU, in eval mode.

    Raises:
        ValueError: ``faf_set`` is not 1 or 2.
    """
    return torch.jit.script(_plain(net, faf_set))


def export_network(net: PSLPT, faf_set: int, path: str | os.PathLike, export_format: str) -> Path:
    """Write one FAF set's network as a TorchScript (.pt) or ONNX file.

    Inputs of the file: ``a`` and ``b``, float32 (N, 1, H, W) in [0, 1], N, H and W dynamic
    (H, W >= 16); output ``fused`` of the same shape. The file is written to a temporary name
    beside ``path`` and renamed, so a failed export leaves nothing.

    Args:
        net: the network (its weights are copied; it is not modified).
        faf_set: 1 (multi-focus, multi-exposure) or 2 (infrared/visible, medical).
        path: destination.
        export_format: ``onnx`` (opset 18, needs the ``onnx`` package) or ``torchscript``.

    Returns:
        The path written.
    """
    if export_format not in EXPORT_FORMATS:
        raise ValueError(f"export format must be one of {EXPORT_FORMATS}, got {export_format!r}")
    if export_format == "onnx":
        require_onnx()
    path = Path(path)
    with atomic_path(path) as temporary, warnings.catch_warnings():
        # The tracer's notes on shape arithmetic and the exporter's on constant folding:
        # expected here (the sizes are meant to stay dynamic), and checked by the tests.
        warnings.simplefilter("ignore")
        if export_format == "torchscript":
            exportable(net, faf_set).save(str(temporary))
        else:
            example = torch.rand(1, 1, 32, 48)
            dynamic = {0: "batch", 2: "height", 3: "width"}
            torch.onnx.export(
                _plain(net, faf_set),
                (example, example),
                str(temporary),
                input_names=["a", "b"],
                output_names=["fused"],
                dynamic_axes={"a": dynamic, "b": dynamic, "fused": dynamic},
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
    return path
