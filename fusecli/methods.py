"""fusecli's own fusion methods: the PSLPT network and the classical ones, registered as a plugin.

They load through the ``fusecli`` entry-point group like any third-party method. Each fuses the
single-channel images a task prepares (see :class:`~fusecli.hookspecs.MethodInput`); the task's
colour policy then colours the result, so ``--method`` changes how the luminance is fused and
nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fusecli.hookspecs import MethodInput, MethodSpec, hookimpl

if TYPE_CHECKING:
    import torch

# torch, the engine and the classical methods are imported by the methods when they run: this
# module is loaded with every plugin, also for `fuse --help` and shell completion.

DEFAULT_METHOD = "pslpt"


def fuse_pslpt(request: MethodInput) -> torch.Tensor:
    """The PSLPT network with the task's FAF set and weights (tiled on large images)."""
    import torch

    from fusecli.engine import fuse_tiled
    from fusecli.pipeline import open_network

    net, _ = open_network(request.task, request.weights, request.device)
    device = next(net.parameters()).device
    images = [image.to(device) for image in request.images]
    with torch.inference_mode():
        fused = fuse_tiled(
            net,
            images,
            request.task.faf_set,
            tile_size=request.tile_size,
            progress=request.progress,
            global_view=request.task.global_view,
        )
    return fused.cpu()


def fuse_average(request: MethodInput) -> torch.Tensor:
    """Per-pixel mean of the sources."""
    from fusecli import classical

    return classical.average_fusion_many(list(request.images))


def fuse_laplacian(request: MethodInput) -> torch.Tensor:
    """Laplacian pyramid, 4 detail bands, largest detail per band, mean base."""
    from fusecli import classical

    return classical.laplacian_fusion_many(list(request.images))


def fuse_guided(request: MethodInput) -> torch.Tensor:
    """Guided-filter fusion (Li, Kang, Hu 2013) with the paper's parameters."""
    from fusecli import classical

    return classical.guided_filter_fusion_many(list(request.images))


def fuse_mertens(request: MethodInput) -> torch.Tensor:
    """Mertens exposure fusion on luminance (contrast and well-exposedness)."""
    from fusecli import classical

    return classical.mertens_fusion_many(list(request.images))


METHODS = (
    MethodSpec(
        name=DEFAULT_METHOD,
        help="PSLPT network (Wang, Deng, Vivone 2024) with the task's weights; the default.",
        fuse=fuse_pslpt,
    ),
    MethodSpec(
        name="average",
        help="Per-pixel mean of the sources; the simplest baseline.",
        fuse=fuse_average,
    ),
    MethodSpec(
        name="laplacian",
        help="Laplacian pyramid (Burt & Adelson 1983): largest detail per band, mean base.",
        fuse=fuse_laplacian,
    ),
    MethodSpec(
        name="guided",
        help="Guided-filter fusion (Li, Kang, Hu 2013), the paper's parameters.",
        fuse=fuse_guided,
    ),
    MethodSpec(
        name="mertens",
        help="Exposure fusion (Mertens, Kautz, Van Reeth 2007) on luminance; for exposure stacks.",
        fuse=fuse_mertens,
        faf_sets=(1,),
    ),
)


@hookimpl
def fusecli_register_methods(registry) -> None:
    for method in METHODS:
        registry.register(method)
