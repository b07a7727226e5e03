"""KD losses. Each is a `LossTerm` whose docstring states its formula and conventions; a list of
`schemas.kd.losses` specs becomes one `CombinedLoss` through `build_loss`. Language models'
tokens are rows (`token_rows`; `components.losses.tokens` has the rules for top-k targets)."""

from components.losses.base import KDBatch, LossOutput, LossTerm
from components.losses.combine import CombinedLoss, build_loss
from components.losses.tokens import rest_mass_from_logsumexp, token_rows
from components.losses.topk import densify_topk

__all__ = [
    "CombinedLoss",
    "KDBatch",
    "LossOutput",
    "LossTerm",
    "build_loss",
    "densify_topk",
    "rest_mass_from_logsumexp",
    "token_rows",
]
