"""Multi-exposure fusion (MEF): a built-in fusecli task plugin, registered like any other."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fusecli.color import ColorPolicy
from fusecli.hookspecs import InputRole, TaskSpec, hookimpl

if TYPE_CHECKING:
    import torch

# torch only for the annotations: the plugin is imported by `fuse --help` and shell completion
# too, which must not wait seconds for torch.

# Display values are about linear light to the power 1 / 2.2.
_GAMMA = 2.2


def demo_inputs(scene: torch.Tensor) -> list[torch.Tensor]:
    """Under- and over-exposure: linear light times 1/4 and times 4, clipped as a sensor does."""
    linear = scene.clamp(0, 1) ** _GAMMA
    return [(exposed.clamp(0, 1) ** (1 / _GAMMA)) for exposed in (linear / 4, linear * 4)]


TASK = TaskSpec(
    name="mef",
    help="Multi-exposure fusion: merge a bracketed exposure series into one well-exposed image.",
    roles=(InputRole("exposure", "one exposure of the bracket (same framing for all)"),),
    faf_set=1,
    # Each source's chroma is weighted per pixel by its distance from neutral, as in the paper.
    color=ColorPolicy(mode="chroma_weighted"),
    min_inputs=2,
    max_inputs=None,
    batch_names=(("under", "over"), ("under", "mid", "over"), ("dark", "bright"), ("low", "high")),
    demo_inputs=demo_inputs,
    # Which exposure each region takes is judged from the whole scene seen at about the
    # network's training scale; on MEFB development pairs MEF-SSIM rose from 0.975 to 0.982
    # (benchmarks/README.md, "Multi-exposure: the whole scene at once").
    global_view=160,
    # The network decides brightness and which exposure each region follows; the four finest
    # pyramid bands come from the sources' own detail, which the encoder-decoder round trip
    # smooths. On every 3rd MEFB pair Qabf rose from 0.725 to 0.750 and MEF-SSIM from 0.968
    # to 0.978 (benchmarks/README.md, "Multi-exposure: the sources' own detail").
    compose="detail",
)


@hookimpl
def fusecli_register_tasks(registry):
    """Register the mef task."""
    registry.register(TASK)
