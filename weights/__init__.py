"""Model weights shipped with fusecli (installed as the `fusecli.weights` package).

Finding them needs no torch: plugins check their default weights when they register, which
`fuse --help` and shell completion do too.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fusecli.errors import WeightsError

DEFAULT_WEIGHTS_NAME = "pslpt-general"


def shipped_weights_path(name: str = DEFAULT_WEIGHTS_NAME) -> Path:
    """Path of weights shipped with the package (``weights/<name>.safetensors``).

    Raises:
        WeightsError: no such weights are installed.
    """
    candidate = Path(str(resources.files("fusecli.weights").joinpath(f"{name}.safetensors")))
    if not candidate.is_file():
        available = sorted(p.stem for p in candidate.parent.glob("*.safetensors"))
        raise WeightsError(
            f"no shipped weights named {name!r} (installed: {', '.join(available) or 'none'})",
            remedy="use a weights file of your own",
            hint="weights",
        )
    return candidate
