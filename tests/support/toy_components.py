"""Small components for orchestrator tests: they write and read real artifacts in the store.

They exist to exercise the scheduler, cache and errors with steps that take milliseconds;
kdorch's real components are under `components/`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from pydantic import BaseModel, Field

from orchestrator import Component, StepContext, register
from schemas.base import Model
from schemas.engine.artifacts import ArtifactRef, JsonArtifact


class Numbers(JsonArtifact):
    """A JSON list of numbers."""

    count: int


def write_numbers(ctx: StepContext, port: str, values: list[float]) -> Numbers:
    path = ctx.output_path(port)
    ctx.store.write_bytes(f"{path}/values.json", json.dumps(values).encode())
    return Numbers(path=path, count=len(values))


def read_numbers(ctx: StepContext, ref: ArtifactRef) -> list[float]:
    return json.loads(ctx.store.read_file(ref, "values.json"))


class SourceConfig(Model):
    count: int = Field(3, ge=0, description="How many numbers.")
    start: float = 0.0
    sleep: float = Field(0.0, ge=0, description="Seconds to wait before writing.")


class SourceOutputs(BaseModel):
    numbers: Numbers
    started: float
    ended: float


@register
class Source(Component):
    """Writes start, start+1, ... as a JSON artifact."""

    key = "toy_source"
    version = "1"
    Config = SourceConfig
    Outputs = SourceOutputs

    def run(self, inputs: BaseModel, ctx: StepContext) -> SourceOutputs:
        started = time.time()
        time.sleep(self.config.sleep)
        values = [self.config.start + i for i in range(self.config.count)]
        return SourceOutputs(
            numbers=write_numbers(ctx, "numbers", values), started=started, ended=time.time()
        )


class ScaleConfig(Model):
    factor: float = 2.0
    fail: bool = False
    sleep: float = 0.0
    marker_dir: str | None = Field(None, description="Touch a file here when running (tests).")
    block_file: str | None = Field(None, description="Wait while this file exists (tests).")


class ScaleInputs(BaseModel):
    numbers: Numbers


class ScaleOutputs(BaseModel):
    numbers: Numbers
    total: float


@register
class Scale(Component):
    """Multiplies every number; can be told to fail or to take its time."""

    key = "toy_scale"
    version = "1"
    Config = ScaleConfig
    Inputs = ScaleInputs
    Outputs = ScaleOutputs

    def run(self, inputs: ScaleInputs, ctx: StepContext) -> ScaleOutputs:
        if self.config.marker_dir:
            Path(self.config.marker_dir, f"{ctx.step_id}.{os.getpid()}").touch()
        time.sleep(self.config.sleep)
        deadline = time.time() + 120
        while (
            self.config.block_file
            and Path(self.config.block_file).exists()
            and time.time() < deadline
        ):
            time.sleep(0.05)
        if self.config.fail:
            raise ValueError(f"toy_scale was told to fail (factor={self.config.factor})")
        values = [v * self.config.factor for v in read_numbers(ctx, inputs.numbers)]
        ctx.log("scaled %d numbers by %g", len(values), self.config.factor)
        return ScaleOutputs(numbers=write_numbers(ctx, "numbers", values), total=sum(values))


class GatherInputs(BaseModel):
    parts: list[Numbers]
    bias: float | None = None


class GatherOutputs(BaseModel):
    total: float
    numbers: Numbers


@register
class Gather(Component):
    """Concatenates several number lists (a fan-in), optionally adding a bias."""

    key = "toy_gather"
    version = "1"
    Config = ScaleConfig
    Inputs = GatherInputs
    Outputs = GatherOutputs

    def run(self, inputs: GatherInputs, ctx: StepContext) -> GatherOutputs:
        values: list[float] = []
        for part in inputs.parts:
            values += read_numbers(ctx, part)
        values = [v + (inputs.bias or 0.0) for v in values]
        return GatherOutputs(total=sum(values), numbers=write_numbers(ctx, "numbers", values))


class Report(JsonArtifact):
    pass


class NeedsReportInputs(BaseModel):
    report: Report


@register
class NeedsReport(Component):
    """Takes a Report: binding Numbers to it is a type error."""

    key = "toy_needs_report"
    version = "1"
    Config = ScaleConfig
    Inputs = NeedsReportInputs
    Outputs = GatherOutputs


class ChatterConfig(SourceConfig):
    lines: int = Field(3, ge=0, description="Progress lines to log first ('line i/n').")
    every: float = Field(0.0, ge=0, description="Seconds between two progress lines.")
    fail: bool = Field(False, description="Raise after the last progress line.")


@register
class Chatter(Source):
    """A `toy_source` that logs progress lines first (and can fail after them)."""

    key = "toy_chatter"
    Config = ChatterConfig

    def run(self, inputs: BaseModel, ctx: StepContext) -> SourceOutputs:
        for i in range(self.config.lines):
            if i and self.config.every:
                time.sleep(self.config.every)
            ctx.log("line %d/%d", i + 1, self.config.lines)
        if self.config.fail:
            raise ValueError("toy_chatter was told to fail after its last line")
        return super().run(inputs, ctx)
