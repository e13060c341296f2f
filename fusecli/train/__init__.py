"""Two-stage multi-task semi-supervised training of PSLPT: recipes, losses, data, loop."""

from fusecli.train.loop import ProgressCallback, TrainProgress, TrainResult, train
from fusecli.train.recipe import Recipe

__all__ = ["ProgressCallback", "Recipe", "TrainProgress", "TrainResult", "train"]
