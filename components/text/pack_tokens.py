"""The `pack_tokens` component: a corpus tokenised and packed into fixed-length rows."""

from __future__ import annotations

from typing import Any

from orchestrator import Component, StepContext
from orchestrator.component import ConfigIssue, Wiring
from schemas.engine.pipeline import Resources
from schemas.kd.text import PackConfig, PackInputs, PackOutputs


class PackTokens(Component[PackConfig, PackInputs, PackOutputs]):
    """Tokenise each corpus split and pack it into rows of ``seq_len + 1`` token ids, documents
    joined by the end-of-document id and their starts marked (`components.text.packing`: the
    layout, the masks, and how it streams a corpus larger than memory).

    Output: `TokenSequences`, one Parquet folder per split (``row_id``, ``tokens``,
    ``doc_starts``, ``length``) with its tokens, rows and stored bytes of ids per split.
    """

    key = "pack_tokens"
    version = "1"
    Config = PackConfig
    Inputs = PackInputs
    Outputs = PackOutputs
    default_resources = Resources(num_cpus=1)

    @classmethod
    def promise(cls, config: PackConfig, wiring: Wiring) -> dict[str, Any]:
        from components.text.promises import sequences_promise

        return {"sequences": sequences_promise(config, wiring)}

    @classmethod
    def check_wiring(cls, config: PackConfig, wiring: Wiring) -> list[ConfigIssue]:
        from components.text.checks import pack_wiring_issues

        return pack_wiring_issues(config.splits, wiring)

    def run(self, inputs: PackInputs, ctx: StepContext) -> PackOutputs:
        from components.text.packing import pack_corpus

        return PackOutputs(sequences=pack_corpus(self.config, inputs.corpus, inputs.tokenizer, ctx))
