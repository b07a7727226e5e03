"""How a step runs a model over its rows: in its own process, or on a Ray Data actor pool
(`teacher_inference`, `lm_inference`; the runner is `components.inference.actor_pool`)."""

from __future__ import annotations

from pydantic import Field

from schemas.base import Model


class ActorPoolSettings(Model):
    """``num_actors`` actors of ``cpus_per_actor`` CPUs and ``gpus_per_actor`` GPUs each."""

    num_actors: int = Field(
        1,
        ge=1,
        description="1: run the teacher in the step's own process (no Ray Data start-up); "
        "more: a Ray Data actor pool of this size.",
    )
    cpus_per_actor: float = Field(1.0, gt=0)
    gpus_per_actor: float = Field(0.0, ge=0, description="> 0 runs the teacher on GPUs.")

    def runs_in_process(self) -> bool:
        """One actor runs in the step's own process; a pool runs on Ray Data."""
        return self.num_actors == 1
