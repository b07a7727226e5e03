"""The artifacts kdorch's built-in components exchange: datasets, model checkpoints, teacher
outputs, reports, search results, Meta-DMoE's aggregator and adaptive model.

Each is an `ArtifactRef` (`schemas.engine.artifacts`) with typed metadata; the typed readers
and writers are in `components.artifacts` (and `components.metadmoe.checkpoints`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer

from schemas.base import Model
from schemas.engine.artifacts import ArtifactRef
from schemas.kd.augment import AugmentSpec
from schemas.kd.comparisons import Comparison, RecipeSummary
from schemas.kd.models import ModelSpec


class Normalization(Model):
    """Standardisation already applied to ``x`` in every split of the dataset:
    ``x = (raw - mean) / std``, with ``mean`` and ``std`` fitted on one split only (``fitted_on``,
    the training split) so that no statistic of the evaluation rows leaks into training.

    ``kind`` says what the statistics are per: ``standard`` has one value per feature of the
    flattened example (prod(feature_shape)); ``channel`` one per channel of an image (the first
    axis of feature_shape [C, H, W]; ``raw`` is the image scaled to [0, 1]). A constant feature
    or channel gets ``std = 1`` (it becomes 0 everywhere instead of a division by zero).
    """

    kind: Literal["standard", "channel"] = "standard"
    fitted_on: str = Field(description="The split the statistics were computed on.")
    mean: list[float]
    std: list[float] = Field(description="Per-feature (or per-channel) scale (1 if constant).")


class SkippedRows(Model):
    """Rows of the source left out because they could not be read (``on_bad_row: skip``)."""

    count: int = Field(description="How many rows were left out.")
    examples: list[str] = Field(
        default_factory=list, description="A few of them: the file (and row) and why."
    )


class Dataset(ArtifactRef):
    """A labelled dataset as Parquet, one folder per split (``<uri>/<split>/part-*.parquet``).

    Columns: ``row_id`` (int64, stable: the row's index in its source, so caches keyed by it
    stay valid), ``x`` (fixed_size_list<float32>[prod(feature_shape)]) and ``y`` (int64); a
    multi-domain dataset adds ``domain`` (int64, an index into ``domains``).

    Every consumer (teacher inference, training, evaluation) reads ``x`` as float32, already
    scaled or standardised: stored so (``x_storage: float32``), or, for images, stored as uint8
    pixels (``x_storage: uint8``: fixed_size_binary[prod(feature_shape)], one byte a value, in
    C order) that the reader scales by 1/255 and standardises per channel with
    ``normalization`` (`components.artifacts.datasets.XReader`). ``transform`` names what was
    applied, ``normalization`` holds a standardisation's statistics; all three are part of the
    manifest, hence of the data version.
    """

    splits: dict[str, int] = Field(description="Rows per split, e.g. {'train': 3000, ...}.")
    feature_shape: list[int] = Field(description="Shape of one example: [C, H, W] or [D].")
    num_classes: int
    class_names: list[str] = Field(default_factory=list)
    source: str = Field(description="Where the rows came from (e.g. 'mnist5k').")
    domain: str = Field("", description="Domain variant, e.g. 'rot30' (empty: the original).")
    domains: list[str] = Field(
        default_factory=list,
        description="A multi-domain dataset's domain names; rows carry an index into this list.",
    )
    transform: str = Field(
        "", description="Deterministic preprocessing applied to x (part of logit-cache identity)."
    )
    normalization: Normalization | None = Field(
        None, description="The standardisation applied to x (None: features as loaded/scaled)."
    )
    skipped: SkippedRows | None = Field(
        None, description="Unreadable rows left out of every split (`on_bad_row: skip`)."
    )
    x_storage: str = Field(
        "float32",
        description="How x is stored: 'float32' (as read) or 'uint8' (image pixels, scaled and "
        "normalised by the reader). A reader refuses a value it does not know.",
    )

    @model_serializer(mode="wrap")
    def _without_unset_skipped(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # The manifest holds this metadata, so it is part of the data version: a dataset that
        # skipped nothing keeps the version it had before `skipped` existed, and what was
        # computed from it (teachers, logits) stays cached.
        data: dict[str, Any] = handler(self)
        if self.skipped is None:
            data.pop("skipped", None)
        if self.x_storage == "float32":  # likewise: datasets stored as before keep their version
            data.pop("x_storage", None)
        return data

    def domain_ids(self, names: list[str]) -> list[int]:
        """The indices of domain ``names``; a clear error for a name the dataset lacks."""
        unknown = [n for n in names if n not in self.domains]
        if unknown:
            raise KeyError(
                f"dataset {self.source} has no domain {unknown} (domains: {self.domains or 'none'})"
            )
        return [self.domains.index(n) for n in names]

    def split_path(self, split: str) -> str:
        if split not in self.splits:
            raise KeyError(
                f"dataset {self.source} has no split '{split}' (has {list(self.splits)})"
            )
        return f"{self.path}/{split}"


class ModelCheckpoint(ArtifactRef):
    """A trained model: ``model.json`` (its spec: enough to rebuild it) and ``weights.pt``."""

    model: ModelSpec = Field(description="The architecture (rebuilds the network).")
    num_parameters: int = 0
    metrics: dict[str, float] = Field(default_factory=dict)
    trained_domains: list[str] = Field(
        default_factory=list,
        description="Domains whose labelled rows trained it (multi-domain data; empty: all).",
    )


class LogitShards(ArtifactRef):
    """A teacher's outputs over a dataset: Parquet shards keyed by ``row_id``.

    Per split ``<uri>/<split>/shard-NNNNN.parquet`` with columns ``row_id`` and either
    ``logits`` (fixed_size_list<float16|float32>[K]) or, with top-k, ``topk_indices``
    (fixed_size_list<int32>[k]), ``topk_values`` (the teacher's logits there) and ``rest_mass``
    (float32: softmax mass outside the top-k); plus ``feature`` when an intermediate was kept.

    ``teacher_version``, ``dataset_version`` and ``transform`` say what the logits were computed
    from; consumers refuse logits whose dataset or transform differ from their own.

    With ``views`` = N > 0 each row holds the teacher's outputs for N augmented views of the
    row, view after view in one list: ``logits`` is fixed_size_list[N*K] (view v at
    ``[v*K, (v+1)*K)``), top-k columns [N*k], ``rest_mass`` [N], ``feature`` [N*feature_dim].
    ``augment`` and ``view_seed`` say how each view was made (`schemas.kd.augment`); a reader
    regenerates view v of a row from them, never guesses.
    """

    splits: dict[str, int]
    num_classes: int
    dtype: str = Field(description="'float16' or 'float32'.")
    top_k: int | None = None
    feature: str | None = None
    feature_dim: int | None = Field(None, description="Width of one view's feature.")
    teacher_version: str
    dataset_version: str
    transform: str = ""
    teacher_domains: list[str] = Field(
        default_factory=list, description="The teacher's `trained_domains`."
    )
    views: int = Field(0, ge=0, description="Augmented views per row (0: the clean rows).")
    augment: AugmentSpec | None = Field(None, description="How each view was made (views > 0).")
    view_seed: int | None = Field(None, description="The views' seed (views > 0).")


class EvalReport(ArtifactRef):
    """``report.json``, ``report.md`` and plots comparing one or more models on a split."""

    split: str
    metrics: dict[str, dict[str, float]] = Field(
        description="Per model: top1, top5 (more than 5 classes), agreement, ece, parameters, "
        "macs, latency, per class; against the teacher: top1_kept, params_ratio, macs_ratio, "
        "latency_ratio_b1 (teacher's value / the model's)."
    )
    groups: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Models sharing a name (e.g. seeds): '<metric>_mean' and '<metric>_std' "
        "(sample std, ddof=1).",
    )
    baselines: dict[str, float] = Field(
        default_factory=dict,
        description="Top-1 of trivial predictors on the same rows: 'majority' (always the train "
        "split's most frequent class).",
    )
    rows: int = Field(0, description="Rows scored (one row = 100 / rows points of top-1).")
    recipes: dict[str, RecipeSummary] = Field(
        default_factory=dict,
        description="Per label (a recipe: the models sharing it): mean top-1 and its 95% t "
        "interval over the models.",
    )
    comparisons: list[Comparison] = Field(
        default_factory=list,
        description="Chosen pairs of recipes (`compare`): the paired mean difference of top-1, "
        "its 95% intervals and a verdict; McNemar over rows with one model each.",
    )
    predictions: str | None = Field(
        None,
        description="The Parquet file of per-row predictions (row_id, label, one column per "
        "model) in the report's folder.",
    )


class SearchRanking(ArtifactRef):
    """``ranking.parquet``: every distinct candidate a student search scored, best first.

    Columns: ``rank`` (1 = best), ``key`` (arch and knobs, readable), ``arch``, ``knobs`` and
    ``spec`` (JSON), ``parameters``, ``macs`` (per input row), ``score`` and its terms
    (``semantic``, ``relation``: the distances M_s, M_r), ``origin`` (random or mutation) and
    ``first_seen`` (position in the search). ``history.json`` lists every evaluation in order.
    """

    candidates: int = Field(description="Rows of the table (distinct candidates).")
    evaluations: int = Field(description="Evaluations of the search, repeats included.")
    best: str = Field(description="Key of the best candidate.")
    notes: list[str] = Field(
        default_factory=list,
        description="Where the search did less than asked, and why (a space with fewer "
        "candidates under the caps than num_candidates, a smaller validation sample).",
    )


class SearchValidation(ArtifactRef):
    """``validation.json`` (per sampled candidate: score, terms, size, distilled accuracy; rank
    correlations) and ``scatter_<predictor>.png`` (accuracy against each predictor)."""

    sample: int = Field(description="Candidates distilled.")
    correlations: dict[str, dict[str, float | None]] = Field(
        description="Per predictor (score, semantic, relation, parameters, macs): kendall_tau, "
        "spearman_rho, their p-values, n; null where undefined (a constant predictor)."
    )


class AggregatorCheckpoint(ArtifactRef):
    """A Meta-DMoE aggregator: ``aggregator.pt`` (state dict) for the settings below.

    ``expert_domains[i]`` are the domains expert ``i`` was trained on, in the order of the expert
    features it was built for; meta-training hides, for each sample, the experts of its domain.
    """

    expert_dim: int
    student_dim: int
    num_heads: int
    dropout: float
    expert_versions: list[str] = Field(description="Data versions of the experts, in order.")
    expert_domains: list[list[str]]
    metrics: dict[str, float] = Field(default_factory=dict)


class Adaptation(Model):
    """How an adaptive model adapts to a new domain before predicting it."""

    support_size: int = Field(description="Unlabeled rows of the domain it adapts on.")
    inner_lr: float = Field(description="Step size of each adaptation step.")
    steps: int = Field(1, description="Adaptation steps.")


class AdaptiveModelCheckpoint(ModelCheckpoint):
    """A model that adapts to each test domain on an unlabeled batch, then predicts it.

    The contract `evaluate` relies on (not Meta-DMoE's internals): per domain, the rows are cut
    into disjoint batches of about ``adaptation.support_size`` (unlabeled), each batch adapts a
    copy of the weights, and every row is predicted with the weights adapted on another batch —
    cross-fitted, so no row is scored by an adaptation that saw it
    (`components.metadmoe.adaptive.predict_per_domain`, loaded by
    `components.metadmoe.checkpoints.load_adaptive`). The files
    are the student's (``model.json``, ``weights.pt``) plus ``aggregator.pt``; the frozen
    ``experts`` are referenced (same store) and run on the adaptation batch.
    """

    kind: str = Field("meta_dmoe", description="What adapts (the loader dispatches on it).")
    adaptation: Adaptation
    experts: list[ModelCheckpoint]
    aggregator: AggregatorCheckpoint
