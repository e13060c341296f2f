"""Import of the authors' PSLPT state dict (their key names, e.g. ``two_fuse_rule.pth``).

The authors' network registers a few tensors that its forward pass never reads: buffers
(position tables and masks, which we recompute) and parameters of layers it skips (the
decoder's ``in_conv`` and the ``in_ln``/``out_ln`` pair of every stage except each encoder's
full-resolution one, 2,352 values in all). They are accepted and dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from fusecli.engine.config import ModelConfig
from fusecli.engine.model import PSLPT
from fusecli.errors import WeightsError

_BUFFER_SUFFIXES = ("relative_coords_table", "relative_position_index", "attn_mask")
# Authors' FAF module names per band, finest first; set 2 appends "2".
_FAF_NAMES = ("fh_former", "fh2_former", "fh4_former", "fl_former")
_STAGE = re.compile(r"^(encoder[12]\.eformer|decoder\.dformer)(\d+)\.(.+)$")
_FAF = re.compile(r"^(f[hl]\d?_former)(2?)\.(.+)$")


def _stage_suffix(rest: str, with_norms: bool) -> str | None:
    """Map the part of a stage key after the stage name; None for a tensor the forward skips."""
    simple = {"in_conv.weight": "conv_in.weight", "out_conv.weight": "conv_out.weight"}
    if rest in simple:
        return simple[rest]
    norm = re.match(r"^(in|out)_ln\.(weight|bias)$", rest)
    if norm:
        return f"norm_{norm.group(1)}.{norm.group(2)}" if with_norms else None
    if rest.startswith("g.blocks."):
        return "blocks." + rest[len("g.") :]
    raise KeyError(rest)


def _faf_suffix(rest: str) -> str:
    simple = {
        "in_ln": "norm_in",
        "out_ln": "norm_out",
        "proj_in": "proj_in",
        "proj_out": "proj_out",
    }
    head, _, tail = rest.partition(".")
    if head in simple:
        return f"{simple[head]}.{tail}"
    if rest.startswith("glo.blocks."):
        return "blocks." + rest[len("glo.") :]
    raise KeyError(rest)


def translate_authors_key(key: str) -> str | None:
    """Our parameter name for one of the authors' keys, or None for a tensor we drop.

    Raises:
        KeyError: the key is not part of the authors' network.
    """
    if key.endswith(_BUFFER_SUFFIXES):
        return None
    if key == "decoder.in_conv.1.weight":
        return None
    for encoder in ("encoder1", "encoder2"):
        if key == f"{encoder}.in_conv.1.weight":
            return f"{encoder}.stem.weight"
    if key == "decoder.out_conv.1.weight":
        return "decoder.head.weight"
    stage = _STAGE.match(key)
    if stage:
        prefix, scale, rest = stage.groups()
        level = int(scale).bit_length() - 1
        if 2**level != int(scale):
            raise KeyError(key)
        module = prefix.split(".")[0]
        suffix = _stage_suffix(rest, with_norms=module.startswith("encoder") and level == 0)
        return None if suffix is None else f"{module}.stages.{level}.{suffix}"
    faf = _FAF.match(key)
    if faf and faf.group(1) in _FAF_NAMES:
        name, second, rest = faf.groups()
        band = _FAF_NAMES.index(name)
        return f"faf{2 if second else 1}.bands.{band}.{_faf_suffix(rest)}"
    raise KeyError(key)


def convert_authors_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the authors' tensors to ours, dropping those the forward pass never reads.

    The FAF output convolution's two channels are swapped: the authors' channel 1 weights the
    first source, ours channel 0.

    Raises:
        WeightsError: a key is not part of the authors' network.
    """
    converted: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in state_dict.items():
        try:
            ours = translate_authors_key(key)
        except KeyError:
            unknown.append(key)
            continue
        if ours is None:
            continue
        if ".proj_out." in ours:
            tensor = tensor.flip(0)
        converted[ours] = tensor
    if unknown:
        raise WeightsError(
            f"{len(unknown)} key(s) are not part of the authors' PSLPT: {_listing(unknown)}; "
            "is this a checkpoint of Double_Pyramid_Former(num_channel=1, base_filter=48)?"
        )
    return converted


def from_authors_state_dict(state_dict: Mapping[str, torch.Tensor]) -> PSLPT:
    """Build the paper's PSLPT from a state dict with the authors' key names.

    Read their released ``two_fuse_rule.pth`` with
    ``torch.load(path, map_location="cpu", weights_only=True)`` and pass the result.

    Raises:
        WeightsError: unknown or missing keys, or tensors of the wrong shape (all listed).
    """
    converted = convert_authors_state_dict(state_dict)
    net = PSLPT(ModelConfig())
    expected = net.state_dict()
    missing = sorted(set(expected) - set(converted))
    if missing:
        raise WeightsError(
            f"the authors' state dict lacks {len(missing)} tensor(s) the network needs "
            f"(our names): {_listing(missing)}"
        )
    wrong = [
        f"{k} {tuple(v.shape)} != {tuple(expected[k].shape)}"
        for k, v in converted.items()
        if v.shape != expected[k].shape
    ]
    if wrong:
        raise WeightsError(f"tensor shapes do not match the paper's PSLPT: {_listing(wrong)}")
    net.load_state_dict({k: v.to(torch.float32) for k, v in converted.items()})
    return net


def _listing(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
