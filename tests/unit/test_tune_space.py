"""The `tune` step's config: search-space parsing, validation messages, `apply`, the Ray Tune
objects built from it (sampled without a cluster) and the ``--set`` lines that reproduce a trial.
"""

from __future__ import annotations

import math
import re
import shlex
from typing import Annotated, Any

import pytest
import yaml
from pydantic import Field, ValidationError

from components.tuning import ray_config as ray_space
from components.tuning.reproduce import set_assignments, set_lines, to_yaml, tune_step_prefix
from components.tuning.resources import trains_in_trial, trial_resources
from orchestrator.compile.problems import problems_from_validation_error
from orchestrator.frontend.overrides import apply_overrides, parse_assignment
from orchestrator.frontend.yaml_source import load_yaml
from schemas.base import Model
from schemas.engine.paths import PathError, apply, format_path, get_value, parse_path
from schemas.kd.components.distill import DistillConfig
from schemas.kd.components.tune import TuneConfig
from schemas.kd.components.tune_space import Choice, Grid, LogUniform, RandInt, Uniform
from schemas.kd.losses import DKDLoss, TAIDLoss

BASE: dict[str, Any] = {
    "student": {"arch": "mlp", "hidden": [32]},
    "epochs": 6,
    "losses": [{"type": "kd"}],
}

EXAMPLE = """
distill:
  student: {arch: mlp, hidden: [32]}
  epochs: 6
  losses: [{type: kd, temperature: 4}]
space:
  losses[0].alpha: {uniform: [0.1, 0.95]}
  losses[0].temperature: {choice: [1, 2, 4, 8]}
  optimizer.lr: {loguniform: [1.0e-4, 1.0e-2]}
  batch_size: {randint: [32, 257]}
  seed: {grid: [0, 1]}
search: random
num_samples: 4
max_concurrent_trials: 2
asha: {grace_period: 2, reduction_factor: 2}
"""


def tune(space: dict[str, Any], distill: dict[str, Any] | None = None, **kw: Any) -> TuneConfig:
    return TuneConfig.model_validate({"distill": distill or BASE, "space": space, **kw})


def messages(space: dict[str, Any], distill: dict[str, Any] | None = None, **kw: Any) -> dict:
    """{location: message} of every error the config reports (all at once)."""
    with pytest.raises(ValidationError) as info:
        tune(space, distill, **kw)
    return {e["loc"]: e["msg"] for e in info.value.errors(include_url=False)}


# ---- parsing ----------------------------------------------------------------------------


def test_yaml_example_parses_with_defaults() -> None:
    config = TuneConfig.model_validate(yaml.safe_load(EXAMPLE))
    assert isinstance(config.space["losses[0].alpha"], Uniform)
    assert isinstance(config.space["losses[0].temperature"], Choice)
    assert isinstance(config.space["optimizer.lr"], LogUniform)
    assert isinstance(config.space["batch_size"], RandInt)
    assert isinstance(config.space["seed"], Grid)
    assert (config.metric, config.mode, config.scheduler, config.fail_fast) == (
        "val_accuracy",
        "max",
        "asha",
        False,
    )
    assert config.max_t == 6  # distill's epochs
    assert config.samples == 4 and ray_space.num_trials(config) == 8  # 2-value grid x 4 samples
    # one worker: the trial trains in its own process and reserves that worker's CPU
    assert trains_in_trial(config) and trial_resources(config) == {"CPU": 1.0}


def test_round_trip_through_json() -> None:
    config = TuneConfig.model_validate(yaml.safe_load(EXAMPLE))
    dumped = config.model_dump(mode="json", exclude_unset=True)
    assert dumped["space"]["losses[0].alpha"] == {"uniform": [0.1, 0.95]}
    assert TuneConfig.model_validate(dumped) == config


def test_defaults_and_trial_resources() -> None:
    config = tune({"losses[0].alpha": {"grid": [0.5, 0.9]}}, search="grid")
    assert config.samples == 1 and ray_space.num_trials(config) == 2
    assert tune({"losses[0].alpha": {"uniform": [0.1, 0.9]}}).samples == 8
    multi = {**BASE, "scaling": {"num_workers": 2, "cpus_per_worker": 0.5}}
    coordinated = tune({"losses[0].alpha": {"uniform": [0.1, 0.9]}}, multi)
    assert not trains_in_trial(coordinated) and trial_resources(coordinated) == {"CPU": 0.01}
    explicit = tune({"losses[0].alpha": {"uniform": [0.1, 0.9]}}, trial_cpus=0.5)
    assert trial_resources(explicit) == {"CPU": 0.5}
    assert tune({"seed": {"choice": [0, 1]}}, asha={"max_t": 3}).max_t == 3
    assert tune({"epochs": {"choice": [4, 12]}}).max_t == 12  # the longest searched run


@pytest.mark.parametrize(
    ("domain", "pattern"),
    [
        ({"unifrom": [0.1, 0.9]}, r"unknown search domain 'unifrom'; did you mean 'uniform'\?"),
        (0.5, r"a search domain is a mapping with one key"),
        ({"uniform": [0.1, 0.9], "choice": [1]}, r"a mapping with one key"),
        ({"uniform": [0.9, 0.1]}, r"low must be below high, got \[0.9, 0.1\]"),
        ({"loguniform": [0, 0.1]}, r"a log scale needs low > 0"),
        ({"randint": [3, 3]}, r"low must be below high \(high is excluded"),
        ({"choice": []}, r"at least 1 item"),
        ({"grid": [1, 2, 1]}, r"values repeat \(\[1\]\)"),
    ],
)
def test_domain_shapes_and_bounds(domain: Any, pattern: str) -> None:
    found = messages({"losses[0].alpha": domain})
    assert any(loc[:2] == ("space", "losses[0].alpha") for loc in found), found
    assert any(re.search(pattern, m) for m in found.values()), found


# ---- paths and values checked against distill ------------------------------------------


@pytest.mark.parametrize(
    ("path", "domain", "expected"),
    [
        (
            "losses[0].alpah",
            {"uniform": [0.1, 0.9]},
            "losses[0]: KDLoss (type: kd) has no field 'alpah'; did you mean 'losses[0].alpha'?",
        ),
        (
            "optimiser.lr",
            {"loguniform": [1e-4, 1e-2]},
            "DistillConfig has no field 'optimiser'; did you mean 'optimizer.lr'?",
        ),
        (
            "losses[3].alpha",
            {"uniform": [0.1, 0.9]},
            "index [3] is out of range: 'losses' has 1 item(s) in the base config (valid: [0])",
        ),
        (
            "losses[0].beta",
            {"uniform": [1, 8]},
            "'losses[0]' is a KDLoss (type: kd), which has no field 'beta'; 'beta' belongs to "
            "DKDLoss (type: dkd), TAIDLoss (type: taid)",
        ),
        (
            "losses[0].alpha",
            {"uniform": [0.1, 1.5]},
            "distill refuses the high end 1.5: Input should be less than or equal to 1 (got 1.5)",
        ),
        (
            "losses[0].temperature",
            {"choice": [0, 2, 4]},
            "distill refuses the choice 0: Input should be greater than 0 (got 0)",
        ),
        (
            "epochs",
            {"uniform": [2, 10]},
            "distill refuses a value inside 4.546",  # an int field wants randint
        ),
        ("losses.alpha", {"uniform": [0.1, 0.9]}, "'losses' is a list; index it first, e.g. "),
        ("losses[0", {"uniform": [0.1, 0.9]}, "cannot read segment 'losses[0'"),
        (  # the --set spelling names the same place, but a space key is also a column name
            "losses.0.alpha",
            {"uniform": [0.1, 0.9]},
            "write it 'losses[0].alpha': list indices in brackets",
        ),
        ("optimizer.lr[0]", {"uniform": [0.1, 0.9]}, "'optimizer.lr' is a float, not a list"),
        ("scaling.num_workers", {"choice": [1, 2]}, "'scaling' sizes every trial's resources"),
        (
            "deepspeed.zero_stage",
            {"choice": [1, 2]},
            "distill refuses the choice 1, the choice 2: `deepspeed` settings are only used "
            "with `strategy: deepspeed`",
        ),
    ],
)
def test_path_and_value_messages(path: str, domain: dict[str, Any], expected: str) -> None:
    found = messages({path: domain})
    assert list(found) == [("space", path)]
    assert expected in found[("space", path)]


def test_union_member_with_the_field_is_accepted() -> None:
    dkd = {**BASE, "losses": [{"type": "dkd"}]}
    config = tune({"losses[0].beta": {"uniform": [1, 8]}}, dkd)
    assert isinstance(config.space["losses[0].beta"], Uniform)


def test_all_problems_are_reported_together() -> None:
    found = messages(
        {
            "losses[0].alpah": {"uniform": [0.1, 0.9]},
            "losses[0].alpha": {"grid": [0.5, 0.9]},
            "optimizer": {"choice": [{"name": "sgd"}]},
            "optimizer.lr": {"uniform": [0.1, 0.2]},
        },
        search="optuna",
        asha={"grace_period": 7},
    )
    assert set(found) == {
        ("space", "losses[0].alpah"),
        ("space", "losses[0].alpha"),
        ("space", "optimizer.lr"),
        ("asha", "grace_period"),
    }
    assert (
        "search: optuna (TPE) samples and cannot enumerate a grid; write {choice: [0.5, 0.9]}"
        in (found[("space", "losses[0].alpha")])
    )
    assert "overlaps 'optimizer'" in found[("space", "optimizer.lr")]
    assert "grace_period (7) exceeds max_t (6 epochs" in found[("asha", "grace_period")]


def test_grid_search_needs_listed_values() -> None:
    found = messages({"losses[0].alpha": {"uniform": [0.1, 0.9]}}, search="grid")
    assert (
        "search: grid enumerates values, but this is {uniform: [0.1, 0.9]}"
        in (found[("space", "losses[0].alpha")])
    )
    assert (
        ray_space.num_trials(tune({"losses[0].alpha": {"choice": [0.5, 0.9]}}, search="grid")) == 2
    )


def test_asha_settings_need_asha() -> None:
    found = messages({"seed": {"choice": [0, 1]}}, scheduler="none", asha={"grace_period": 2})
    assert found == {("asha",): "`asha` settings are only used with `scheduler: asha`"}


def test_problems_point_at_the_space_key_in_yaml(tmp_path: Any) -> None:
    file = tmp_path / "tune.yaml"
    file.write_text(
        "distill: {student: {arch: mlp}, losses: [{type: kd}]}\n"
        "space:\n"
        "  losses[0].alpha: {uniform: [0.1, 1.5]}\n"
        "  optimiser.lr: {loguniform: [1.0e-4, 1.0e-2]}\n"
    )
    data, source = load_yaml(file)
    with pytest.raises(ValidationError) as info:
        TuneConfig.model_validate(data)

    def locate(path: Any, at_key: bool = False) -> Any:
        return source.locate(path, format_path(path), at_key=at_key)

    problems = problems_from_validation_error(info.value, (), locate, TuneConfig)
    lines = sorted(p.location.line or 0 for p in problems if p.location is not None)
    assert lines == [3, 4]


# ---- apply ------------------------------------------------------------------------------


def test_parse_and_format_paths() -> None:
    assert parse_path("losses[0].alpha") == ("losses", 0, "alpha")
    assert parse_path("teacher_weights[1]") == ("teacher_weights", 1)
    assert parse_path("a[1][2].b") == ("a", 1, 2, "b")
    for text in ("losses[0].alpha", "optimizer.lr", "teacher_weights[1]", "a[1][2].b"):
        assert format_path(parse_path(text)) == text
    for bad in ("", "a..b", "a[-1]", "a[x]", "0a", "a.[0]"):
        with pytest.raises(PathError):
            parse_path(bad)


def test_apply_returns_a_new_validated_config() -> None:
    base = DistillConfig.model_validate(BASE)
    tuned = apply(base, {"losses[0].alpha": 0.73, "optimizer.lr": 3e-3, "epochs": 4})
    assert tuned is not base and get_value(base, "losses[0].alpha") == 0.9  # base untouched
    assert get_value(tuned, "losses[0].alpha") == 0.73
    assert (tuned.optimizer.lr, tuned.epochs) == (3e-3, 4)
    assert "deepspeed" not in tuned.model_fields_set  # unset fields stay unset
    back = apply(tuned, {p: get_value(base, p) for p in ("losses[0].alpha", "optimizer.lr")})
    assert apply(back, {"epochs": 6}).model_dump() == base.model_dump()
    assert apply(base, {}) == base


def test_apply_sees_all_values_at_once() -> None:
    taid = DistillConfig.model_validate({**BASE, "losses": [{"type": "taid", "t_start": 0.9}]})
    tuned = apply(taid, {"losses[0].t_end": 0.3, "losses[0].t_start": 0.2})
    assert tuned.losses[0] == TAIDLoss(t_start=0.2, t_end=0.3)
    with pytest.raises(PathError, match=r"^losses\[0\]\.t_end: .*t_start \(0\.9\) must not"):
        apply(taid, {"losses[0].t_end": 0.3})


def test_apply_errors_name_the_path() -> None:
    base = DistillConfig.model_validate(BASE)
    with pytest.raises(PathError, match=r"^losses\[0\]\.alpha: Input should be less than or"):
        apply(base, {"losses[0].alpha": 1.2})
    with pytest.raises(PathError, match=r"^optimizer\.lrr: .*did you mean 'optimizer\.lr'"):
        apply(base, {"optimizer.lrr": 0.1})
    with pytest.raises(PathError, match="overlaps"):
        apply(base, {"optimizer": {"lr": 0.1}, "optimizer.lr": 0.2})
    # a whole union member may be replaced, and is validated as one
    swapped = apply(base, {"losses[0]": {"type": "dkd", "beta": 2}})
    assert isinstance(swapped.losses[0], DKDLoss) and swapped.losses[0].beta == 2
    with pytest.raises(PathError, match=r"^losses\[0\]: losses\[0\]\.alpha: Input should"):
        apply(base, {"losses[0]": {"type": "kd", "alpha": 2}})


def test_apply_accepts_numpy_scalars() -> None:
    np = pytest.importorskip("numpy")
    tuned = apply(DistillConfig.model_validate(BASE), {"epochs": np.int64(3)})
    assert tuned.epochs == 3 and type(tuned.epochs) is int


class _Fusion(Model):
    """Stands in for distill's coming optional per-teacher list (`teacher_weights`)."""

    weights: list[Annotated[float, Field(ge=0)]] | None = None
    scale: float = 1.0


def test_paths_into_optional_lists() -> None:
    unset = _Fusion()
    with pytest.raises(PathError, match=r"'weights' is not set \(None\) in the base config"):
        apply(unset, {"weights[1]": 0.5})
    base = _Fusion(weights=[0.5, 0.5])
    assert apply(base, {"weights[1]": 0.8}).weights == [0.5, 0.8]
    with pytest.raises(PathError, match=r"index \[2\] is out of range: 'weights' has 2"):
        apply(base, {"weights[2]": 0.8})
    with pytest.raises(PathError, match=r"^weights\[0\]: Input should be greater than or"):
        apply(base, {"weights[0]": -1.0})
    assert apply(base, {"weights": [1.0, 0.0, 2.0]}).weights == [1.0, 0.0, 2.0]


@pytest.mark.skipif(
    "teacher_weights" not in DistillConfig.model_fields, reason="distill has no teacher_weights"
)
def test_teacher_weights_paths() -> None:  # pragma: no cover - runs once the field exists
    two = {**BASE, "teacher_weights": [0.5, 0.5]}
    config = tune({"teacher_weights[1]": {"uniform": [0, 1]}}, two)
    tuned = apply(config.distill, {"teacher_weights[1]": 0.25})
    assert get_value(tuned, "teacher_weights") == [0.5, 0.25]
    found = messages({"teacher_weights[2]": {"uniform": [0, 1]}}, two)
    assert "index [2] is out of range" in found[("space", "teacher_weights[2]")]


# ---- Ray Tune objects (no cluster) ------------------------------------------------------


def test_ray_domains_sample_within_bounds() -> None:
    config = TuneConfig.model_validate(yaml.safe_load(EXAMPLE))
    space = ray_space.param_space(config)
    for _ in range(200):
        alpha = space["losses[0].alpha"].sample()
        lr = space["optimizer.lr"].sample()
        batch = space["batch_size"].sample()
        assert 0.1 <= alpha <= 0.95 and 1e-4 <= lr <= 1e-2 and 32 <= batch <= 256
        assert space["losses[0].temperature"].sample() in (1.0, 2.0, 4.0, 8.0)
        assert isinstance(batch, int)
    assert space["seed"] == {"grid_search": [0, 1]}
    # every sample builds a valid trial config
    params = {path: domain.sample() for path, domain in space.items() if path != "seed"}
    trial = ray_space.trial_config(config, {**params, "seed": 1, "unrelated": "ignored"})
    assert get_value(trial, "losses[0].alpha") == params["losses[0].alpha"] and trial.seed == 1


def test_listed_values_are_typed_through_their_field() -> None:
    # YAML reads 1e-4 (no dot) as a string; the field turns it into the float it means
    config = TuneConfig.model_validate(
        yaml.safe_load(
            "distill: {student: {arch: mlp}}\nspace: {optimizer.lr: {choice: [1e-4, 1.0e-3]}}"
        )
    )
    assert config.space["optimizer.lr"] == Choice(choice=["1e-4", 1e-3])
    assert ray_space.param_space(config)["optimizer.lr"].categories == [1e-4, 1e-3]


def test_grid_search_enumerates_every_combination() -> None:
    from ray.tune.search.variant_generator import generate_variants

    config = tune(
        {"losses[0].alpha": {"grid": [0.5, 0.7, 0.9]}, "losses[0].temperature": {"choice": [2, 4]}},
        search="grid",
    )
    space = ray_space.param_space(config)
    assert space["losses[0].temperature"] == {"grid_search": [2.0, 4.0]}
    variants = [v for _, v in generate_variants(space)]
    assert len(variants) == ray_space.num_trials(config) == 6
    assert {(v["losses[0].alpha"], v["losses[0].temperature"]) for v in variants} == {
        (a, t) for a in (0.5, 0.7, 0.9) for t in (2.0, 4.0)
    }


def test_search_algorithms_scheduler_and_tune_config() -> None:
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    config = TuneConfig.model_validate(yaml.safe_load(EXAMPLE))
    algorithm = ray_space.search_algorithm(config)
    assert isinstance(algorithm, BasicVariantGenerator) and algorithm.max_concurrent == 2
    asha = ray_space.scheduler(config)
    assert isinstance(asha, ASHAScheduler)
    assert (asha._max_t, asha._reduction_factor) == (6, 2)
    assert ray_space.scheduler(tune({"seed": {"choice": [0, 1]}}, scheduler="none")) is None
    ray_config = ray_space.tune_config(config)
    assert (ray_config.metric, ray_config.mode, ray_config.num_samples) == (
        "val_accuracy",
        "max",
        4,
    )
    assert ray_config.max_concurrent_trials is None  # applied on the search algorithm instead
    failure = ray_space.failure_config(config)
    assert (failure.fail_fast, failure.max_failures) == (False, 0)


def test_optuna_suggests_values_within_bounds() -> None:
    pytest.importorskip("optuna")
    import optuna
    from ray.tune.search import ConcurrencyLimiter

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = tune(
        {
            "losses[0].alpha": {"uniform": [0.1, 0.95]},
            "losses[0].temperature": {"choice": [1, 2, 4, 8]},
            "optimizer.lr": {"loguniform": [1e-4, 1e-2]},
            "batch_size": {"randint": [16, 65]},
        },
        search="optuna",
        max_concurrent_trials=3,
    )
    searcher = ray_space.search_algorithm(config)
    assert isinstance(searcher, ConcurrencyLimiter)
    assert searcher.set_search_properties("val_accuracy", "max", ray_space.param_space(config))
    for i in range(3):
        params = searcher.suggest(f"trial_{i}")
        assert params is not None
        assert 0.1 <= params["losses[0].alpha"] <= 0.95
        assert params["losses[0].temperature"] in (1.0, 2.0, 4.0, 8.0)
        assert 1e-4 <= params["optimizer.lr"] <= 1e-2 and 16 <= params["batch_size"] <= 64
        assert ray_space.trial_config(config, params).batch_size == params["batch_size"]
    assert searcher.suggest("trial_3") is None  # the limiter holds the fourth back


# ---- --set lines ------------------------------------------------------------------------


def _pipeline(distill: dict[str, Any]) -> dict[str, Any]:
    space = {"losses[0].alpha": {"uniform": [0.1, 0.95]}}
    return {
        "name": "p",
        "steps": [
            {"id": "sweep", "component": "tune", "config": {"distill": distill, "space": space}}
        ],
    }


@pytest.mark.parametrize(
    ("distill", "values", "expected"),
    [
        (  # the list is in the file: the line is the trial's own path
            BASE,
            {"losses[0].alpha": 0.73, "optimizer.lr": 1e-5},
            [
                "--set 'steps.sweep.config.distill.losses[0].alpha=0.73'",
                "--set 'steps.sweep.config.distill.optimizer.lr=1.0e-05'",
            ],
        ),
        (  # the lists are defaults: --set cannot create their items, so the whole list is set
            {"student": {"arch": "mlp"}},
            {"losses[0].alpha": 0.73, "losses[0].temperature": 2.0, "student.hidden[0]": 64},
            [
                "--set 'steps.sweep.config.distill.losses=[{weight: 1.0, type: kd, "
                "temperature: 2.0, alpha: 0.73}]'",
                "--set 'steps.sweep.config.distill.student.hidden=[64, 128]'",
            ],
        ),
    ],
)
def test_set_lines_reproduce_the_trial(
    distill: dict[str, Any], values: dict[str, Any], expected: list[str]
) -> None:
    base = DistillConfig.model_validate(distill)
    lines = set_lines(base, values, prefix=tune_step_prefix("sweep"))
    assert lines == expected
    data = _pipeline(distill)
    assignments = [shlex.split(line)[1] for line in lines]
    for text in assignments:
        parse_assignment(text)  # the CLI's own reading of a --set
    edited = apply_overrides(data, assignments)
    rebuilt = TuneConfig.model_validate(edited["steps"][0]["config"]).distill
    assert rebuilt.model_dump() == apply(base, values).model_dump()


def test_set_assignments_for_a_plain_distill_step() -> None:
    base = DistillConfig.model_validate(BASE)
    assert set_assignments(base, {"epochs": 3}, prefix="steps.student.config") == [
        "steps.student.config.epochs=3"
    ]


@pytest.mark.parametrize(
    "value",
    [0.73, 1e-5, 1e20, -2.5e-7, 3, True, None, "kd", "1e-4", "yes", "a: b", "", [1, 2.5],
     {"type": "kd", "alpha": 0.5}, math.inf],
)  # fmt: skip
def test_yaml_values_read_back(value: Any) -> None:
    assert yaml.safe_load(to_yaml(value)) == value
    _, parsed = parse_assignment(f"x={to_yaml(value)}")
    assert parsed == value or (value == "" and parsed == "")
