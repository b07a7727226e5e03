"""KD losses. Each is a `LossTerm` whose docstring states its formula and conventions; a list of
`schemas.kd.losses` specs becomes one `CombinedLoss` through `build_loss`."""

from components.losses.base import KDBatch, LossOutput, LossTerm
from components.losses.combine import CombinedLoss, build_loss
from components.losses.topk import densify_topk

__all__ = ["CombinedLoss", "KDBatch", "LossOutput", "LossTerm", "build_loss", "densify_topk"]
