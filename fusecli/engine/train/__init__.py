"""Two-stage multi-task semi-supervised training of PSLPT: recipes, data, loop, checkpoints."""

from fusecli.engine.train.loop import TrainResult, train
from fusecli.engine.train.recipe import Recipe

__all__ = ["Recipe", "TrainResult", "train"]
