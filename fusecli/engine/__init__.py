"""The PSLPT engine: network, authors' checkpoint import, weights files, tiled inference.

Knows nothing of the CLI or plugins.
"""

from fusecli.engine.authors import from_authors_state_dict
from fusecli.engine.config import MODEL_VARIANTS, ModelConfig
from fusecli.engine.model import PSLPT

__all__ = ["MODEL_VARIANTS", "PSLPT", "ModelConfig", "from_authors_state_dict"]
