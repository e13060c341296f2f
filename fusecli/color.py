"""Colour: BT.601 full-range YCbCr and the policies that put colour back on a fused luminance.

The network fuses luminance only (Y in [0, 1]). Chroma (Cb, Cr in [0, 1], neutral grey at 0.5)
comes back from the sources according to a task's :class:`ColorPolicy`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions: every task plugin imports ColorPolicy when it
# registers, which happens for `fuse --help` and shell completion too, and torch takes seconds.

_CHROMA_OFFSET = 0.5
# Below this total saturation weight a pixel is grey in every source; use the plain mean there.
_NEUTRAL_EPS = 1e-6


@functools.cache
def _matrices() -> tuple[torch.Tensor, torch.Tensor]:
    """(RGB -> YCbCr, YCbCr -> RGB), each (3, 3) float64, BT.601 full range (JPEG/JFIF).

    Y = 0.299 R + 0.587 G + 0.114 B; chroma is centred at 0 here and shifted to 0.5 by callers.
    """
    import torch

    rgb_to_ycbcr = torch.tensor(
        [
            [0.299, 0.587, 0.114],
            [-0.168735892, -0.331264108, 0.5],
            [0.5, -0.418687589, -0.081312411],
        ],
        dtype=torch.float64,
    )
    return rgb_to_ycbcr, torch.linalg.inv(rgb_to_ycbcr)


def _apply(matrix: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.einsum("ij,bjhw->bihw", matrix.to(image.device, image.dtype), image)


def rgb_to_ycbcr(image: torch.Tensor) -> torch.Tensor:
    """RGB to YCbCr (BT.601 full range).

    Args:
        image: (B, 3, H, W) RGB in [0, 1].

    Returns:
        (B, 3, H, W): Y in [0, 1], Cb and Cr in [0, 1] with neutral at 0.5.
    """
    import torch

    _check_channels(image, 3, "rgb_to_ycbcr")
    ycbcr = _apply(_matrices()[0], image)
    return torch.cat([ycbcr[:, :1], ycbcr[:, 1:] + _CHROMA_OFFSET], dim=1)


def ycbcr_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """YCbCr (BT.601 full range) to RGB, clamped to [0, 1].

    Args:
        image: (B, 3, H, W) as produced by :func:`rgb_to_ycbcr`.

    Returns:
        (B, 3, H, W) RGB in [0, 1].
    """
    import torch

    _check_channels(image, 3, "ycbcr_to_rgb")
    centred = torch.cat([image[:, :1], image[:, 1:] - _CHROMA_OFFSET], dim=1)
    return _apply(_matrices()[1], centred).clamp(0.0, 1.0)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """Y of an RGB image, or a grey image unchanged. (B, C, H, W), C in {1, 3} -> (B, 1, H, W)."""
    if image.shape[1] == 1:
        return image
    _check_channels(image, 3, "luminance")
    weights = _matrices()[0][0].to(image.device, image.dtype).view(1, 3, 1, 1)
    return (image * weights).sum(dim=1, keepdim=True)


@dataclass(frozen=True)
class ColorPolicy:
    """How a fused luminance gets its colour back.

    Attributes:
        mode: ``chroma_from``: Cb/Cr of one source (IVF: the visible image; MMF: the functional
            PET/SPECT scan). ``chroma_weighted``: per pixel, each colour source's Cb/Cr weighted by
            its saturation (MEF, MFF), so a grey or washed-out source does not dilute the colour
            of a vivid one.
        source: index of the source that gives the colour, for ``chroma_from``.
    """

    mode: Literal["chroma_from", "chroma_weighted"]
    source: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("chroma_from", "chroma_weighted"):
            raise ValueError(f"unknown colour policy mode {self.mode!r}")
        if self.source < 0:
            raise ValueError(f"source index must be >= 0, got {self.source}")

    def describe(self, roles: Sequence[str] = ()) -> str:
        """Short human text, e.g. ``chroma from visible``."""
        if self.mode == "chroma_weighted":
            return "chroma weighted by saturation"
        name = roles[self.source] if self.source < len(roles) else f"source {self.source + 1}"
        return f"chroma from {name}"


def restore_color(
    fused_y: torch.Tensor, sources: Sequence[torch.Tensor], policy: ColorPolicy
) -> torch.Tensor:
    """Combine a fused luminance with chroma taken from the sources.

    Args:
        fused_y: (B, 1, H, W) fused luminance in [0, 1].
        sources: the sources, each (B, 1, H, W) grey or (B, 3, H, W) RGB.
        policy: where the chroma comes from.

    Returns:
        (B, 3, H, W) RGB, or ``fused_y`` itself when no source that the policy uses has colour.
    """
    import torch

    if policy.mode == "chroma_from":
        if policy.source >= len(sources):
            raise ValueError(f"policy takes colour from source {policy.source}, got {len(sources)}")
        chosen = sources[policy.source]
        if chosen.shape[1] == 1:
            return fused_y
        chroma = rgb_to_ycbcr(chosen)[:, 1:]
    else:
        coloured = [rgb_to_ycbcr(s)[:, 1:] for s in sources if s.shape[1] == 3]
        if not coloured:
            return fused_y
        chroma = saturation_weighted_chroma(coloured)
    return ycbcr_to_rgb(torch.cat([fused_y, chroma.to(fused_y.dtype)], dim=1))


class ChromaAccumulator:
    """The chroma :func:`restore_color` takes from a policy's sources, given one at a time.

    For a long stack only running sums are held (5 planes for ``chroma_weighted``, the chosen
    source's 2 for ``chroma_from``), not every source's chroma; the result equals
    :func:`saturation_weighted_chroma` of all colour sources up to float32 rounding.

    Args:
        policy: where the chroma comes from.
        count: how many sources the fusion has.
    """

    def __init__(self, policy: ColorPolicy, count: int) -> None:
        if policy.mode == "chroma_from" and policy.source >= count:
            raise ValueError(f"policy takes colour from source {policy.source}, got {count}")
        self.policy = policy
        self._chosen: torch.Tensor | None = None
        self._weighted_sum: torch.Tensor | None = None  # sum of chroma * weight, (B, 2, H, W)
        self._weight_sum: torch.Tensor | None = None  # (B, 1, H, W)
        self._plain_sum: torch.Tensor | None = None  # for pixels grey in every source
        self._coloured = 0

    def add(self, index: int, source: torch.Tensor) -> None:
        """Take in source ``index``: (B, 1, H, W) grey (ignored) or (B, 3, H, W) RGB."""
        if source.shape[1] == 1:
            return
        if self.policy.mode == "chroma_from":
            if index == self.policy.source:
                # A copy: the slice would keep the whole YCbCr image alive.
                self._chosen = rgb_to_ycbcr(source)[:, 1:].clone()
            return
        chroma = rgb_to_ycbcr(source)[:, 1:]
        weight = _saturation(chroma)
        if self._weighted_sum is None:
            self._weighted_sum, self._weight_sum = chroma * weight, weight
            self._plain_sum = chroma.clone()
        else:
            assert self._weight_sum is not None and self._plain_sum is not None
            self._weighted_sum += chroma * weight
            self._weight_sum += weight
            self._plain_sum = self._plain_sum + chroma
        self._coloured += 1

    def chroma(self) -> torch.Tensor | None:
        """(B, 2, H, W) Cb/Cr, or None when no source the policy uses has colour."""
        import torch

        if self.policy.mode == "chroma_from":
            return self._chosen
        if self._weighted_sum is None:
            return None
        assert self._weight_sum is not None and self._plain_sum is not None
        total = self._weight_sum
        weighted = self._weighted_sum / total.clamp_min(_NEUTRAL_EPS)
        return torch.where(total > _NEUTRAL_EPS, weighted, self._plain_sum / self._coloured)


def apply_chroma(fused_y: torch.Tensor, chroma: torch.Tensor | None) -> torch.Tensor:
    """(B, 3, H, W) RGB of a fused luminance and (B, 2, H, W) chroma; ``fused_y`` if None."""
    import torch

    if chroma is None:
        return fused_y
    return ycbcr_to_rgb(torch.cat([fused_y, chroma.to(fused_y.dtype)], dim=1))


def _saturation(chroma: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) distance of (B, 2, H, W) chroma from neutral grey: |Cb - 0.5| + |Cr - 0.5|."""
    return (chroma - _CHROMA_OFFSET).abs().sum(dim=1, keepdim=True)


def saturation_weighted_chroma(chromas: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-pixel average of chroma planes weighted by their distance from neutral grey.

    The weight of a source is ``|Cb - 0.5| + |Cr - 0.5|``, measured from the neutral point (the
    authors' script measured it from 0 on un-centred chroma, which weighs every pixel about
    equally). Where every source is neutral the plain mean is used, so there is no 0/0.

    Args:
        chromas: (B, 2, H, W) Cb/Cr planes in [0, 1].

    Returns:
        (B, 2, H, W).
    """
    import torch

    stack = torch.stack(list(chromas))
    weights = (stack - _CHROMA_OFFSET).abs().sum(dim=2, keepdim=True)
    total = weights.sum(dim=0)
    weighted = (stack * weights).sum(dim=0) / total.clamp_min(_NEUTRAL_EPS)
    return torch.where(total > _NEUTRAL_EPS, weighted, stack.mean(dim=0))


def _check_channels(image: torch.Tensor, channels: int, name: str) -> None:
    if image.dim() != 4 or image.shape[1] != channels:
        raise ValueError(f"{name} expects (B, {channels}, H, W), got {tuple(image.shape)}")
