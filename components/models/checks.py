"""What `kdorch validate` checks of a model spec before anything runs (`check_spec`).

A zoo spec needs nothing here: its fields validate themselves and torch is never imported. A
model source is built for real, but on PyTorch's ``meta`` device (shapes without memory or
arithmetic: a ResNet-50 in milliseconds); a factory that cannot build on it is built on the CPU
instead. Checked: the builder's name ("did you mean"), that the factory imports (the import
error's last line) and returns an ``nn.Module``, that the weights file exists and fits the
network (from its header or index: no tensor bytes are read), and that ``head.replace``,
``features.map`` and ``features.penultimate`` name modules the network has. What needs the
dataset (the output width against its class count, a feature map that runs before the
classifier) is checked when the step builds the model.

Only steps whose config holds a model source import torch, torchvision, timm or the user's
module; a pipeline of zoo models validates without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from orchestrator.component import ConfigIssue
from schemas.kd.models import AnyModelSpec, SourceModelSpec

if TYPE_CHECKING:
    from torch import nn


def _network(spec: SourceModelSpec) -> nn.Module:
    """The spec's network on the meta device (on the CPU if its builder cannot do that)."""
    import torch

    from components.models.sources import SourceError, build_network

    try:
        with torch.device("meta"):
            return build_network(spec)
    except SourceError as e:
        if e.field != "kwargs":  # the builder raised: it may only dislike the meta device
            raise
    return build_network(spec)  # e.g. a factory that computes on tensor values while building


def _loose_classifier(network: nn.Module, spec: SourceModelSpec) -> tuple[str, ...]:
    """The classifier whose width the dataset decides (not known at validate): its shape is
    not compared with the weights file's. Without a head to replace, the network is built
    with the builder's default class count here and with the dataset's in the run."""
    from components.models.probe import linear_names

    if spec.num_classes is not None or spec.head is not None:
        return ()
    names = linear_names(network)
    return (names[-1],) if names else ()


def _weights_issues(network: nn.Module, spec: SourceModelSpec, at: str) -> list[ConfigIssue]:
    from components.models.weights import WeightsError, mismatch, read_shapes, state_shapes

    try:
        found = read_shapes(spec)
    except (WeightsError, OSError) as e:
        return [ConfigIssue(str(e), field=f"{at}.weights")]
    problem = mismatch(state_shapes(network), found, loose=_loose_classifier(network, spec))
    if problem is None:
        return []
    return [ConfigIssue(f"{spec.weights} does not fit the network: {problem}", f"{at}.weights")]


def _name_issues(network: nn.Module, spec: SourceModelSpec, at: str) -> list[ConfigIssue]:
    from components.models.external import head_module
    from components.models.probe import module_at
    from components.models.sources import SourceError

    issues = []
    if spec.head is not None:
        try:
            head_module(network, spec)
        except SourceError as e:
            issues.append(ConfigIssue(str(e), f"{at}.head.replace"))
    for kind, name in (("map", spec.features.map), ("penultimate", spec.features.penultimate)):
        if name is not None:
            try:
                module_at(network, name, f"features.{kind}")
            except SourceError as e:
                issues.append(ConfigIssue(str(e), f"{at}.features.{kind}"))
    return issues


def check_spec(spec: AnyModelSpec, at: str) -> list[ConfigIssue]:
    """The problems `kdorch validate` can find in a model spec at config field ``at`` (e.g.
    ``model``, ``student``): see the module docstring. [] for a zoo spec."""
    if not isinstance(spec, SourceModelSpec):
        return []
    from components.models.sources import SourceError

    try:
        network = _network(spec)
    except SourceError as e:
        return [ConfigIssue(str(e), f"{at}.{e.field}" if e.field else at)]
    issues = _name_issues(network, spec, at)
    if spec.weights is not None:
        issues += _weights_issues(network, spec, at)
    return issues


def check_specs(specs: list[tuple[str, AnyModelSpec]]) -> list[ConfigIssue]:
    """`check_spec` of every (field path, spec) of a config (`identity.specs_in`)."""
    return [issue for at, spec in specs for issue in check_spec(spec, at)]


class ModelSpecSteps:
    """Mixin of a component whose config holds model specs (`train`, `distill`): `kdorch
    validate` checks each (`check_spec`), and the step's key covers what a model source is
    made of outside kdorch (`components.models.identity.config_identity`)."""

    @classmethod
    def check_config(cls, config: BaseModel) -> list[ConfigIssue]:
        """`check_spec` of every model spec in the config."""
        from components.models.identity import specs_in

        return check_specs(specs_in(config))

    @classmethod
    def external_fingerprint(cls, config: BaseModel) -> dict[str, Any]:
        """The model sources' identity (library version, factory code, weights file)."""
        from components.models.identity import config_identity

        return config_identity(config)
