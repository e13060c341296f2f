"""Medical multi-modal fusion (MMF): a built-in fusecli task plugin, registered like any other."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fusecli.color import ColorPolicy, luminance
from fusecli.hookspecs import InputRole, TaskSpec, hookimpl

if TYPE_CHECKING:
    import torch

# torch is imported where the demo inputs are made: the plugin is imported by `fuse --help`
# and shell completion too, which must not wait seconds for torch.


def _hot(values: torch.Tensor) -> torch.Tensor:
    """'hot' pseudo-colour map: black, red, yellow, white. (1, 1, H, W) -> (1, 3, H, W)."""
    import torch

    v = values.clamp(0, 1)
    return torch.cat([(v * 3).clamp(0, 1), (v * 3 - 1).clamp(0, 1), (v * 3 - 2).clamp(0, 1)], 1)


def demo_inputs(scene: torch.Tensor) -> list[torch.Tensor]:
    """Sharp grayscale structure (MRI-like) and a coarse hot-coloured activity map (PET-like)."""
    import torch.nn.functional as F

    from fusecli.filters import gaussian_blur

    grey = luminance(scene)
    edges = (grey - gaussian_blur(grey, 2.0, radius=6)).abs() * 4
    anatomical = (0.6 * grey + edges).clamp(0, 1)
    _, _, height, width = scene.shape
    coarse = F.interpolate(grey, scale_factor=0.125, mode="area")
    activity = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    activity = gaussian_blur(1 - activity, 2.0, radius=6)
    activity = (activity - activity.min()) / (activity.max() - activity.min()).clamp_min(1e-6)
    # Squared so that most of the slice is dark and only "active" regions light up, as in PET.
    return [anatomical, _hot(activity**2)]


TASK = TaskSpec(
    name="mmf",
    help="Medical fusion: combine an anatomical MRI slice with a functional PET/SPECT/CT slice.",
    roles=(
        InputRole("anatomical", "anatomical MRI slice (grayscale)"),
        InputRole("functional", "registered functional slice: PET/SPECT pseudo-colour, or CT"),
    ),
    faf_set=2,
    # Structure comes from both; the functional image's pseudo-colour carries the information.
    color=ColorPolicy(mode="chroma_from", source=1),
    batch_names=(("mri", "pet"), ("mri", "spect"), ("mri", "ct"), ("anatomical", "functional")),
    demo_inputs=demo_inputs,
)


@hookimpl
def fusecli_register_tasks(registry):
    """Register the mmf task."""
    registry.register(TASK)
