"""Multi-focus fusion (MFF): a built-in fusecli task plugin, registered like any other."""

from fusecli.color import ColorPolicy
from fusecli.hookspecs import InputRole, TaskSpec, hookimpl

TASK = TaskSpec(
    name="mff",
    help="Multi-focus fusion: merge shots focused at different depths into one sharp image.",
    roles=(
        InputRole("focus plane", "a shot of the scene focused at one depth (same framing for all)"),
    ),
    faf_set=1,
    # Each source's chroma is weighted per pixel by its distance from neutral, as in the paper.
    color=ColorPolicy(mode="chroma_weighted"),
    min_inputs=2,
    max_inputs=None,
    batch_names=(("a", "b"), ("near", "far"), ("fore", "back"), ("foreground", "background")),
)


@hookimpl
def fusecli_register_tasks(registry):
    """Register the mff task."""
    registry.register(TASK)
