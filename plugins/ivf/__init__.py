"""Infrared-visible fusion (IVF): a built-in fusecli task plugin, registered like any other."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fusecli.color import ColorPolicy, luminance
from fusecli.hookspecs import InputRole, TaskSpec, hookimpl

if TYPE_CHECKING:
    import torch

# torch is imported where the demo inputs are made: the plugin is imported by `fuse --help`
# and shell completion too, which must not wait seconds for torch.


def demo_inputs(scene: torch.Tensor) -> list[torch.Tensor]:
    """Thermal image (warm objects bright) and a dim, noisy night-time visible image."""
    import torch

    from fusecli.filters import gaussian_blur

    _, _, height, width = scene.shape
    y = torch.linspace(0, 1, height).view(-1, 1)
    x = torch.linspace(0, 1, width).view(1, -1)
    # Two warm "pedestrians" in the dark right part of the scene.
    people = torch.zeros(height, width)
    for cx in (0.72, 0.86):
        people += torch.exp(-(((x - cx) / 0.025) ** 2) - ((y - 0.7) / 0.1) ** 2)
    structure = 0.35 + 0.3 * gaussian_blur(luminance(scene), 1.0, radius=3)[0, 0]
    thermal = (structure + 0.6 * people).clamp(0, 1)
    shadow = 1 - 0.85 * torch.sigmoid((x - 0.6) * 30)  # the right part lies in deep shadow
    generator = torch.Generator().manual_seed(0)
    noise = 0.02 * torch.randn(1, 3, height, width, generator=generator)
    visible = (scene * 0.7 * shadow + noise).clamp(0, 1)
    return [thermal[None, None], visible]


TASK = TaskSpec(
    name="ivf",
    help="Infrared-visible fusion: add thermal targets to a visible image, keeping its colour.",
    roles=(
        InputRole("infrared", "thermal (long-wave infrared) image, usually grayscale"),
        InputRole("visible", "visible-light image of the same view, grayscale or colour"),
    ),
    faf_set=2,
    # The infrared image has no colour of its own: the output keeps the visible image's chroma.
    color=ColorPolicy(mode="chroma_from", source=1),
    batch_names=(("ir", "vi"), ("ir", "vis"), ("infrared", "visible"), ("thermal", "visible")),
    demo_inputs=demo_inputs,
)


@hookimpl
def fusecli_register_tasks(registry):
    """Register the ivf task."""
    registry.register(TASK)
