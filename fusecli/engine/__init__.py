"""The PSLPT engine: network, authors' checkpoint import, weights files, tiled inference, precision.

Knows nothing of the CLI or plugins.
"""

from fusecli.engine.authors import from_authors_state_dict
from fusecli.engine.config import ModelConfig
from fusecli.engine.device import select_device
from fusecli.engine.model import PSLPT
from fusecli.engine.tiling import (
    FrameStack,
    TensorFrames,
    auto_tile_size,
    decide_tiled,
    fuse_tiled,
)
from fusecli.engine.weights import (
    load_weights,
    read_weights_metadata,
    save_weights,
    shipped_weights_path,
)

__all__ = [
    "PSLPT",
    "FrameStack",
    "ModelConfig",
    "TensorFrames",
    "auto_tile_size",
    "decide_tiled",
    "from_authors_state_dict",
    "fuse_tiled",
    "load_weights",
    "read_weights_metadata",
    "save_weights",
    "select_device",
    "shipped_weights_path",
]
