"""Where a student search did less than its config asked, said in words (the step's log and
the ranking's ``notes``): a space with fewer candidates under the caps than ``num_candidates``
cannot give that many distinct ones, and a validation sample cannot be larger than the
candidates scored."""

from __future__ import annotations

from typing import TYPE_CHECKING

from components.search.candidates import CandidateSpace
from schemas.kd.artifacts import Dataset
from schemas.kd.components.student_search import StudentSearchConfig

if TYPE_CHECKING:
    from components.search.choose import SearchOutcome


def shortfalls(config: StudentSearchConfig, data: Dataset, outcome: SearchOutcome) -> list[str]:
    """One sentence per shortfall of the search ``outcome`` on ``data``."""
    notes = []
    ranking = outcome.ranking
    asked = config.search.num_candidates
    space = CandidateSpace(
        config.space, input_shape=tuple(data.feature_shape), num_classes=data.num_classes
    )
    fit = len(space.enumerate())
    if fit < asked:
        where = (
            f"only {fit} candidates of the space fit the caps for inputs "
            f"{list(data.feature_shape)} and {data.num_classes} classes"
        )
        if ranking.evaluations < asked:
            notes.append(f"{where}: scored {ranking.evaluations} of num_candidates {asked}")
        else:
            notes.append(
                f"{where}: its {asked} evaluations (num_candidates) met {ranking.candidates} "
                "distinct candidates, repeats included"
            )
    if config.validation is not None and outcome.validation is not None:
        wanted, distilled = config.validation.sample, outcome.validation.sample
        if distilled < wanted:
            notes.append(
                f"validation distilled {distilled} candidates, not sample {wanted}: the search "
                f"scored only {ranking.candidates} distinct ones"
            )
    return notes
