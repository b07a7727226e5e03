"""The `tokenizer` component: a byte-level BPE trained on a corpus, or a tokenizer file."""

from __future__ import annotations

from typing import Any

from orchestrator import Component, StepContext
from orchestrator.component import ConfigIssue, Wiring
from schemas.engine.pipeline import Resources
from schemas.kd.text import TokenizerConfig, TokenizerInputs, TokenizerOutputs


class TokenizerComponent(Component[TokenizerConfig, TokenizerInputs, TokenizerOutputs]):
    """Train a byte-level BPE (Hugging Face `tokenizers`) on the corpus's train split only, or
    load a local `tokenizer.json` / tokenizer folder (JSON only: no code runs, no download);
    `components.text.bpe` does the work.

    Output: a `TextTokenizer` (``tokenizer.json``, read back verified) with its vocabulary
    size and the end-of-document and padding ids. Its key: trained, the corpus's data version
    and the config; loaded, the files' content (`external_fingerprint`).
    """

    key = "tokenizer"
    version = "1"
    Config = TokenizerConfig
    Inputs = TokenizerInputs
    Outputs = TokenizerOutputs
    default_resources = Resources(num_cpus=1)

    @classmethod
    def check_config(cls, config: TokenizerConfig) -> list[ConfigIssue]:
        from components.text.checks import tokenizer_issues

        return tokenizer_issues(config)

    @classmethod
    def promise(cls, config: TokenizerConfig, wiring: Wiring) -> dict[str, Any]:
        from components.text.promises import tokenizer_promise

        promised = tokenizer_promise(config, wiring)
        return {"tokenizer": promised} if promised else {}

    @classmethod
    def check_wiring(cls, config: TokenizerConfig, wiring: Wiring) -> list[ConfigIssue]:
        from components.text.checks import tokenizer_wiring_issues

        return tokenizer_wiring_issues(config, wiring)

    @classmethod
    def external_fingerprint(cls, config: TokenizerConfig) -> dict[str, Any]:
        from components.text.bpe import file_identity

        return {"files": file_identity(config)} if config.source == "file" else {}

    def run(self, inputs: TokenizerInputs, ctx: StepContext) -> TokenizerOutputs:
        from components.text.bpe import build_tokenizer

        return TokenizerOutputs(tokenizer=build_tokenizer(self.config, inputs.corpus, ctx))
