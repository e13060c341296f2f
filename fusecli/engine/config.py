"""ModelConfig: the architecture hyper-parameters of PSLPT."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from fusecli.errors import WeightsError


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a pseudo-siamese Laplacian pyramid transformer.

    The defaults are the paper's configuration (Section 3.1): 48 channels, SwinV2 blocks with
    window 2, 6 heads, MLP ratio 3 and depth 2 per stage, a 4-level pyramid.

    Attributes:
        in_channels: channels of each source image (the Y channel: 1).
        channels: feature channels of every stage and FAF module.
        levels: pyramid levels (full, 1/2, 1/4, 1/8 resolution for 4).
        depth: SwinV2 blocks per stage; odd blocks are shifted by ``window_size // 2``.
        num_heads: attention heads per block.
        window_size: side of the square attention window, in tokens.
        mlp_ratio: hidden width of the block MLP as a multiple of ``channels``.
        cpb_hidden: hidden width of the continuous position bias MLP.
    """

    in_channels: int = 1
    channels: int = 48
    levels: int = 4
    depth: int = 2
    num_heads: int = 6
    window_size: int = 2
    mlp_ratio: float = 3.0
    cpb_hidden: int = 512

    def __post_init__(self) -> None:
        problems = []
        if self.num_heads < 1 or self.channels % self.num_heads:
            problems.append(
                f"channels ({self.channels}) must be divisible by num_heads ({self.num_heads})"
            )
        if self.levels < 1 or self.depth < 1 or self.window_size < 1:
            problems.append("levels, depth and window_size must be at least 1")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def size_multiple(self) -> int:
        """Height and width the network needs: every level even and a whole number of windows."""
        return self.window_size * 2 ** (self.levels - 1)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise WeightsError(f"the architecture metadata is not valid JSON ({exc})") from None
        known = {f.name for f in fields(cls)}
        if not isinstance(values, dict) or set(values) - known:
            raise WeightsError(
                f"the architecture metadata has unknown fields {sorted(set(values) - known)}; "
                "the file was written by a newer or different fusecli"
            )
        return cls(**values)
