"""Build a throwaway third-party plugin distribution (dist-info + module) in a folder.

Putting the folder on ``sys.path`` (or PYTHONPATH) makes ``importlib.metadata`` see it exactly as
a ``pip install``-ed package, entry points included.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

RGBNIR_MODULE = '''
"""RGB / near-infrared fusion, a third-party fusecli task plugin used by the tests."""

from fusecli.color import ColorPolicy
from fusecli.hookspecs import InputRole, TaskSpec, hookimpl


@hookimpl
def fusecli_register_tasks(registry):
    registry.register(
        TaskSpec(
            name="rgbnir",
            help="RGB and near-infrared fusion: add NIR detail to a colour photograph.",
            roles=(
                InputRole("rgb", "colour photograph"),
                InputRole("nir", "near-infrared image of the same view"),
            ),
            faf_set=2,
            color=ColorPolicy(mode="chroma_from", source=0),
            batch_names=(("rgb", "nir"),),
        )
    )
'''


def make_plugin_distribution(
    root: Path, *, dist: str, module: str, source: str, entry_name: str | None = None
) -> Path:
    """Write ``module.py`` and ``<dist>-1.0.dist-info`` declaring it in the ``fusecli`` group.

    Args:
        root: folder to put on sys.path.
        dist: distribution name, e.g. ``"fusecli-rgbnir"``.
        module: top-level module name.
        source: the module's code.
        entry_name: entry-point name (default: ``module``).

    Returns:
        ``root``.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[fusecli]\n{entry_name or module} = {module}\n")
    return root


MAXIMUM_METHOD_MODULE = '''
"""Per-pixel maximum, a third-party fusecli method plugin used by the tests and the docs."""

import torch

from fusecli.hookspecs import MethodSpec, hookimpl


def fuse_maximum(request):
    return torch.stack(request.images).amax(dim=0)


@hookimpl
def fusecli_register_methods(registry):
    registry.register(
        MethodSpec(
            name="maximum",
            help="Per-pixel maximum of the sources.",
            fuse=fuse_maximum,
            faf_sets=(2,),
            stacks=False,
        )
    )
'''
