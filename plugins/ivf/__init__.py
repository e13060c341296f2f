"""Infrared-visible fusion (IVF): a built-in fusecli task plugin, registered like any other."""

from fusecli.color import ColorPolicy
from fusecli.hookspecs import InputRole, TaskSpec, hookimpl

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
)


@hookimpl
def fusecli_register_tasks(registry):
    """Register the ivf task."""
    registry.register(TASK)
