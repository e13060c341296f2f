"""Multi-exposure fusion (MEF): a built-in fusecli task plugin, registered like any other."""

from fusecli.color import ColorPolicy
from fusecli.hookspecs import InputRole, TaskSpec, hookimpl

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
)


@hookimpl
def fusecli_register_tasks(registry):
    """Register the mef task."""
    registry.register(TASK)
