"""Medical multi-modal fusion (MMF): a built-in fusecli task plugin, registered like any other."""

from fusecli.color import ColorPolicy
from fusecli.hookspecs import InputRole, TaskSpec, hookimpl

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
)


@hookimpl
def fusecli_register_tasks(registry):
    """Register the mmf task."""
    registry.register(TASK)
