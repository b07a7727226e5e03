"""Config of the DisWOT student search: a search space over the zoo's knobs, caps, settings.

A search space lists, per architecture, the values each knob may take; a candidate is one value
per knob of one architecture, and becomes a `schemas.kd.models` spec (`to_spec_fields`)::

    space:
      mlp: {hidden_width: [32, 64, 128, 256], depth: [1, 2, 3]}
      mnist_cnn: {width: [8, 16, 32], depth: [2, 3, 4], kernel_size: [3, 5]}
      resnet_cifar: {depth: [8, 14, 20], width: [8, 16]}
      max_parameters: 200000
      max_macs: 20000000
    search: {strategy: evolution, num_candidates: 100, population: 36, sample_size: 8, seed: 0}
    score: {init: gaussian, width_mismatch: project, correction: none}
    validation: {sample: 8, epochs: 3}

Every knob value is checked here against the zoo's spec classes (ResNet depth 6n+2, odd
kernels, the MNIST CNN's depth range...). What a candidate costs is the zoo's business
(`components.models.layers`); a space whose smallest candidate of every architecture exceeds
a cap whatever the dataset is refused by `kdorch validate` (`StudentSearch.check_config`).

No torch here: `kdorch validate` imports the schemas.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from schemas.base import Model
from schemas.kd.artifacts import (
    Dataset,
    LogitShards,
    ModelCheckpoint,
    SearchRanking,
    SearchValidation,
)
from schemas.kd.components.training import OptimizerConfig
from schemas.kd.losses import KDLoss, LossSpec
from schemas.kd.models import AnyModelSpec, MLPSpec, MnistCNNSpec, ModelSpecValue, ResNetSpec

Choice = dict[str, int]
"""One value per knob of an architecture, e.g. ``{"width": 16, "depth": 3}``."""


def _check_knob(arch: str, knob: str, values: list[int], spec_of: Any) -> list[int]:
    """Sorted, distinct values that each make a valid zoo spec; else one message naming all."""
    duplicates = sorted({v for v in values if values.count(v) > 1})
    if duplicates:
        raise ValueError(f"{arch}.{knob}: values repeat ({duplicates}); list each once")
    problems = []
    for value in values:
        try:
            spec_of(value)
        except ValidationError as error:
            reason = "; ".join(e["msg"].removeprefix("Value error, ") for e in error.errors())
            problems.append(f"{value} ({reason})")
        except ValueError as error:
            problems.append(f"{value} ({error})")
    if problems:
        raise ValueError(f"{arch}.{knob}: not a valid {arch} {knob}: {', '.join(problems)}")
    return sorted(values)


def _values(description: str) -> Any:
    return Field(min_length=1, description=description)


def _kernel_sizes(description: str) -> Any:
    return Field(default_factory=lambda: [3], min_length=1, description=description)


class Knobs(Model):
    """Allowed values of each knob of one architecture, plus its fixed (not searched) fields.

    Each knob value is checked by the zoo spec it makes (`spec_of`); a subclass names its
    architecture, its knobs (in order) and the spec class a knob value sets a field of.
    """

    arch: ClassVar[str]
    knobs: ClassVar[tuple[str, ...]]
    spec_class: ClassVar[type[AnyModelSpec]]

    @classmethod
    def spec_of(cls, knob: str, value: int) -> AnyModelSpec:
        """A spec with ``knob`` at ``value``, the rest at defaults: it validates iff the value
        is valid for the zoo."""
        return cls.spec_class(**{knob: value})

    @field_validator("*")
    @classmethod
    def _valid_knob(cls, value: Any, info: ValidationInfo) -> Any:
        knob = info.field_name
        if knob not in cls.knobs:
            return value  # a fixed field: its own type checks it
        return _check_knob(cls.arch, knob, value, lambda v: cls.spec_of(knob, v))

    def values(self) -> dict[str, list[int]]:
        """Knob name -> allowed values (sorted), in the order of `knobs`."""
        return {k: list(getattr(self, k)) for k in self.knobs}

    def to_spec_fields(self, choice: Mapping[str, int]) -> dict[str, Any]:
        """The `schemas.kd.models` spec fields (without num_classes/input_shape) of a choice:
        the fixed fields, and each knob's value in the spec field of its name."""
        fixed = self.model_dump(exclude=set(self.knobs))
        return {"arch": self.arch, **fixed, **{k: choice[k] for k in self.knobs}}


class MLPKnobs(Knobs):
    """MLP candidates: ``depth`` hidden layers, all ``hidden_width`` wide."""

    arch: ClassVar[str] = "mlp"
    knobs: ClassVar[tuple[str, ...]] = ("hidden_width", "depth")
    spec_class: ClassVar[type[AnyModelSpec]] = MLPSpec

    hidden_width: list[int] = _values("Widths of the hidden layers (all layers share one).")
    depth: list[int] = _values("Numbers of hidden layers (>= 1).")
    activation: Literal["relu", "gelu"] = Field("relu", description="Fixed for every candidate.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Fixed for every candidate.")

    @classmethod
    def spec_of(cls, knob: str, value: int) -> AnyModelSpec:
        if knob == "hidden_width":
            return MLPSpec(hidden=[value])
        if value < 1:
            raise ValueError(f"an MLP needs at least one hidden layer, got {value}")
        return MLPSpec(hidden=[1] * value)

    def to_spec_fields(self, choice: Mapping[str, int]) -> dict[str, Any]:
        return {
            "arch": "mlp",
            "hidden": [choice["hidden_width"]] * choice["depth"],
            "activation": self.activation,
            "dropout": self.dropout,
        }


class MnistCNNKnobs(Knobs):
    """DomainBed MNIST CNN candidates (channels width, 2·width, ...; stride 2 on conv 2)."""

    arch: ClassVar[str] = "mnist_cnn"
    knobs: ClassVar[tuple[str, ...]] = ("width", "depth", "kernel_size")
    spec_class: ClassVar[type[AnyModelSpec]] = MnistCNNSpec

    width: list[int] = _values("Channels of the first conv (later ones: 2 x width).")
    depth: list[int] = _values("Numbers of conv layers (2..8).")
    kernel_size: list[int] = _kernel_sizes("Odd kernel sizes (1..7).")
    norm: Literal["group", "batch", "none"] = Field(
        "group", description="Fixed for every candidate."
    )


class ResNetKnobs(Knobs):
    """CIFAR ResNet candidates: depth 6n+2, stage widths w, 2w, 4w, k x k BasicBlock convs."""

    arch: ClassVar[str] = "resnet_cifar"
    knobs: ClassVar[tuple[str, ...]] = ("depth", "width", "kernel_size")
    spec_class: ClassVar[type[AnyModelSpec]] = ResNetSpec

    depth: list[int] = _values("Depths, each 6n+2: 8, 14, 20, 32, 44, 56, 110.")
    width: list[int] = _values("Channels of the first stage.")
    kernel_size: list[int] = _kernel_sizes("Odd BasicBlock kernels (1..7).")


class SearchSpace(Model):
    """Allowed values of each architecture's knobs, and caps every candidate must respect."""

    mlp: MLPKnobs | None = Field(None, description="MLP candidates (omit: none).")
    mnist_cnn: MnistCNNKnobs | None = Field(None, description="MNIST CNN candidates (omit: none).")
    resnet_cifar: ResNetKnobs | None = Field(
        None, description="CIFAR ResNet candidates (omit: none)."
    )
    max_parameters: int | None = Field(None, ge=1, description="Cap on parameters (all of them).")
    max_macs: int | None = Field(
        None, ge=1, description="Cap on multiply-accumulates for one input row (convs, linears)."
    )

    def arches(self) -> dict[str, Knobs]:
        """Architecture key -> its knobs, for the architectures present (zoo order)."""
        blocks: dict[str, Knobs | None] = {
            "mlp": self.mlp,
            "mnist_cnn": self.mnist_cnn,
            "resnet_cifar": self.resnet_cifar,
        }
        return {arch: block for arch, block in blocks.items() if block is not None}

    @model_validator(mode="after")
    def _names_an_architecture(self) -> SearchSpace:
        if not self.arches():
            raise ValueError(
                "the search space names no architecture; give at least one of mlp, mnist_cnn, "
                "resnet_cifar with the values of its knobs"
            )
        return self


class SearchSettings(Model):
    """How candidates are proposed, and the scoring batch."""

    strategy: Literal["evolution", "random"] = Field(
        "evolution",
        description="evolution: regularised (aging) evolution; random: distinct random candidates.",
    )
    num_candidates: int = Field(
        100, ge=1, description="Candidates to evaluate (evolution: initial population included)."
    )
    population: int = Field(36, ge=2, description="evolution: individuals kept alive.")
    sample_size: int = Field(8, ge=1, description="evolution: tournament size.")
    children_per_round: int = Field(
        1,
        ge=1,
        description="evolution: children proposed (and scored at once) per round; each replaces "
        "the oldest individual. 1 is Real et al.'s algorithm.",
    )
    seed: int = Field(0, description="Seeds proposals, weight initialisation and the batch.")
    batch_size: int = Field(64, ge=2, description="Rows of the one batch every score uses.")

    @model_validator(mode="after")
    def _consistent(self) -> SearchSettings:
        evolution_only = {"population", "sample_size", "children_per_round"} & self.model_fields_set
        if self.strategy == "random" and evolution_only:
            raise ValueError(
                f"{', '.join(sorted(evolution_only))}: only used with `strategy: evolution`"
            )
        if self.strategy == "evolution":
            if self.sample_size > self.population:
                raise ValueError(
                    f"sample_size ({self.sample_size}) is larger than population "
                    f"({self.population}); a tournament draws from the population"
                )
            if self.children_per_round > self.population:
                raise ValueError(
                    f"children_per_round ({self.children_per_round}) is larger than population "
                    f"({self.population})"
                )
            if self.population > self.num_candidates:
                raise ValueError(
                    f"population ({self.population}) is larger than num_candidates "
                    f"({self.num_candidates}): evolution would never mutate; lower population "
                    "or use `strategy: random`"
                )
        return self


class ScoreSettings(Model):
    """How the DisWOT score is computed (see `components.search.diswot`)."""

    init: Literal["default", "gaussian"] = Field(
        "gaussian",
        description="Weights of the networks scored: gaussian = the official correlation "
        "scripts' N(0, 1) conv/linear weights, zero biases, norm weight 1 and bias 0 (zoo "
        "`diswot_init_`); default = PyTorch's initialisation (the official evolutionary searches).",
    )
    teacher_weights: Literal["init", "trained"] = Field(
        "init",
        description="init: the teacher is freshly initialised like the candidates (the paper); "
        "trained: the teacher's trained weights are used (a variant, not the paper's).",
    )
    width_mismatch: Literal["project", "fold"] = Field(
        "project",
        description="Semantic term when student and teacher feature widths differ: project the "
        "wider gradient map to the narrower width (fixed seeded projection), or fold it into "
        "groups of consecutive channels (the official code; the widths must divide).",
    )
    terms: Literal["both", "semantic", "relation"] = Field(
        "both",
        description="Score = -(semantic + relation) (the official NAS-Bench-201 correlation "
        "script), or one term alone (its searches: semantic on NAS-Bench-201, relation on "
        "ImageNet).",
    )
    correction: Literal["none", "null_expectation"] = Field(
        "none",
        description="none: the paper's score; null_expectation: the semantic term minus its "
        "expectation over random channel matchings (its width-dependent chance level), and "
        "channels constant over the batch left out of both terms (dead channels not rewarded).",
    )

    @model_validator(mode="after")
    def _correction_projects(self) -> ScoreSettings:
        if self.correction != "none" and self.width_mismatch == "fold":
            raise ValueError(
                "correction: null_expectation leaves dead channels out, after which folding "
                "consecutive channels no longer lines up (or divides); use width_mismatch: project"
            )
        return self


def _default_losses() -> list[LossSpec]:
    return [KDLoss()]


class ValidationSettings(Model):
    """Check the score: distil a few candidates and rank-correlate score with accuracy.

    Each sampled candidate is distilled by the code `distill` runs (in the step's process, one
    worker, no Ray Train start-up) on the cached `logits` when connected, else with the
    `teacher` run online; its accuracy is the last epoch's on the dataset's ``val`` split.
    """

    sample: int = Field(ge=2, description="Candidates to distil (from the evaluated ones).")
    epochs: int = Field(ge=1, description="Distillation epochs for each of them.")
    pick: Literal["spread", "top", "random"] = Field(
        "spread",
        description="spread: evenly over the score ranking; top: the best scores; random.",
    )
    losses: list[LossSpec] = Field(
        default_factory=_default_losses,
        min_length=1,
        description="distill's loss terms for every sampled candidate (default: Hinton KD).",
    )
    batch_size: int = Field(64, ge=1, description="distill's batch size.")
    optimizer: OptimizerConfig = Field(
        default_factory=OptimizerConfig, description="distill's optimizer and schedule."
    )
    seed: int = Field(0, description="distill's seed (weights, shuffling) for every candidate.")


class ParallelSettings(Model):
    """How candidates are scored: batches of them per Ray task (in-process without Ray)."""

    candidates_per_task: int = Field(
        16,
        ge=1,
        description="Candidates one Ray task scores (a score takes milliseconds: batches keep "
        "the per-task overhead small).",
    )
    cpus_per_task: float = Field(
        1.0, gt=0, description="Logical CPUs each scoring task reserves (it uses one thread)."
    )


class StudentSearchConfig(Model):
    """DisWOT student search: space, search and score settings, optional validation."""

    space: SearchSpace
    search: SearchSettings = Field(default_factory=SearchSettings)
    score: ScoreSettings = Field(default_factory=ScoreSettings)
    validation: ValidationSettings | None = Field(
        None, description="Distil a sample of candidates to measure the score's rank correlation."
    )
    parallel: ParallelSettings = Field(default_factory=ParallelSettings)

    @model_validator(mode="after")
    def _enough_candidates(self) -> StudentSearchConfig:
        if self.validation is not None and self.validation.sample > self.search.num_candidates:
            raise ValueError(
                f"validation.sample ({self.validation.sample}) is larger than "
                f"search.num_candidates ({self.search.num_candidates})"
            )
        return self


class StudentSearchInputs(BaseModel):
    data: Dataset = Field(description="Scoring batch (train split); validation distils on it.")
    teacher: ModelCheckpoint = Field(
        description="Its spec is the teacher architecture scored against; its weights are used "
        "only with `score.teacher_weights: trained` (and by validation without `logits`)."
    )
    logits: LogitShards | None = Field(
        None, description="Cached teacher logits for the validation distillations."
    )


class StudentSearchOutputs(BaseModel):
    ranking: SearchRanking
    student: ModelSpecValue = Field(description="The best-scoring candidate's spec.")
    largest: ModelSpecValue = Field(
        description="Baseline: the candidate with the most parameters under the caps (ties: "
        "most MACs), over the whole space."
    )
    random: ModelSpecValue = Field(
        description="Baseline: a random candidate under the caps (seeded by search.seed)."
    )
    metrics: dict[str, float]
    validation: SearchValidation | None = Field(
        None, description="With `validation`: accuracies, rank correlations, scatter plots."
    )
