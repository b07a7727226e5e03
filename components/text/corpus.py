"""The `corpus` component: text files into documents split by document, as a `TextCorpus`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from orchestrator import Component, StepContext
from orchestrator.component import ConfigIssue, Wiring
from schemas.engine.pipeline import Resources
from schemas.kd.text import CorpusConfig, CorpusOutputs, CorpusPromise


class CorpusComponent(Component[CorpusConfig, BaseModel, CorpusOutputs]):
    """Read `.txt`, `.jsonl` or Parquet text files (one file or a folder, local or s3://) and
    split their documents into train/val/test by document, seeded (`components.text.documents`).

    Output: a `TextCorpus`, one Parquet folder per split (``doc_id``, ``text``) with its
    documents and characters. The source's content is part of the step's key (each file's
    hash locally, size and ETag on S3): rewrite a file with other text and the step runs again.
    `kdorch validate` checks the listing and the Parquet footers (`check_config`).
    """

    key = "corpus"
    version = "1"
    Config = CorpusConfig
    Outputs = CorpusOutputs
    default_resources = Resources(num_cpus=1)

    @classmethod
    def check_config(cls, config: CorpusConfig) -> list[ConfigIssue]:
        from components.text.checks import corpus_issues

        return corpus_issues(config)

    @classmethod
    def promise(cls, config: CorpusConfig, wiring: Wiring) -> dict[str, Any]:
        return {"corpus": CorpusPromise(source=config.uri, splits=list(config.splits))}

    @classmethod
    def external_fingerprint(cls, config: CorpusConfig) -> dict[str, Any]:
        from components.text.sources import open_source, source_identity

        return {"files": source_identity(open_source(config))}

    def run(self, inputs: BaseModel, ctx: StepContext) -> CorpusOutputs:
        from components.text.documents import build_corpus

        return CorpusOutputs(corpus=build_corpus(self.config, ctx))
