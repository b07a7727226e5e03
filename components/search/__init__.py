"""Training-free student search (DisWOT): a library, imported like the model zoo.

- `diswot`: the score of a candidate against a teacher on one batch (`DiswotScorer`).
- `space`: candidates of a `SearchSpace` for one dataset, sized on the zoo and capped.
- `evolution`: regularised (aging) evolution and random search, given a batch scoring callable.
- `correlation`: Kendall tau / Spearman rho against measured accuracy, and a scatter plot (PNG).
"""

from components.search.correlation import (
    RankCorrelation,
    correlation_report,
    rank_correlation,
    scatter_png,
)
from components.search.diswot import (
    DiswotScore,
    DiswotScorer,
    Probe,
    diswot_score,
    initialised_model,
    probe,
)
from components.search.evolution import (
    Evaluation,
    ScoreFn,
    SearchResult,
    random_search,
    regularized_evolution,
    run_search,
)
from components.search.space import Candidate, CandidateSpace, SearchSpaceError

__all__ = [
    "Candidate",
    "CandidateSpace",
    "DiswotScore",
    "DiswotScorer",
    "Evaluation",
    "Probe",
    "RankCorrelation",
    "ScoreFn",
    "SearchResult",
    "SearchSpaceError",
    "correlation_report",
    "diswot_score",
    "initialised_model",
    "probe",
    "random_search",
    "rank_correlation",
    "regularized_evolution",
    "run_search",
    "scatter_png",
]
