"""The `seqkd` component: a teacher LM's continuations of prompts, packed as token sequences
for a student to train on (sequence-level KD)."""

from __future__ import annotations

from orchestrator import Component, StepContext
from orchestrator.component import ConfigIssue, Wiring
from schemas.engine.pipeline import Resources
from schemas.kd.components.seqkd import SeqKDConfig, SeqKDInputs, SeqKDOutputs


class SeqKD(Component[SeqKDConfig, SeqKDInputs, SeqKDOutputs]):
    """Sequence-level knowledge distillation's data (Kim & Rush, 2016): the teacher continues
    ``prompts`` prompts of ``prompt_tokens`` ids cut from split ``split`` of the sequences
    (seeded, each within one document), greedy or sampled (temperature, top-k, top-p, seeded),
    for at most ``max_new_tokens``; each prompt and its continuation is a document, packed by
    `pack_tokens`' rules into a `TokenSequences` that replaces the split (the other splits are
    copied), which `train` takes as any sequences: a student trained on it with next-token
    cross-entropy is the SeqKD student (`components.lm.sequence_kd`).

    The prompts are part of the text (not masked). Keyed by the teacher, the sequences and the
    config, so a second run reuses the samples; ``samples.md`` shows the first ones decoded.
    """

    key = "seqkd"
    version = "1"
    Config = SeqKDConfig
    Inputs = SeqKDInputs
    Outputs = SeqKDOutputs
    default_resources = Resources(num_cpus=1)

    def run(self, inputs: SeqKDInputs, ctx: StepContext) -> SeqKDOutputs:
        from components.lm.sequence_kd import write_generated

        return SeqKDOutputs(
            sequences=write_generated(
                ctx, self.config, inputs.teacher, inputs.sequences, inputs.tokenizer
            )
        )

    @classmethod
    def check_wiring(cls, config: SeqKDConfig, wiring: Wiring) -> list[ConfigIssue]:
        from components.lm.lm_checks import seqkd_wiring_issues

        return seqkd_wiring_issues(config, wiring)
