"""The `tune` step without Ray: fusion of two teachers with weights (by hand, through distill's
objective), how a finished sweep becomes rows, a table and a selected trial, and the plots."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from components.losses.base import teacher_log_probs
from components.training.objective import DistillObjective
from components.tuning import plots
from components.tuning.results import SweepFailed, collect, select_best, summary, table
from components.tuning.sweep import SweepOutcome
from schemas.kd.components.distill import DistillConfig
from schemas.kd.components.tune import TuneConfig
from schemas.kd.losses import KDLoss

# Two teachers, B = 2 rows, K = 3 classes.
Z1 = np.array([[3.0, 1.0, -2.0], [-0.5, 2.0, 1.0]])
Z2 = np.array([[0.0, 2.5, 0.5], [1.0, -1.0, 0.0]])
ZS = np.array([[2.0, 0.5, -1.0], [0.1, 1.2, 0.3]])
Y = np.array([0, 2])


def softmax(z: np.ndarray, t: float = 1.0) -> np.ndarray:
    e = np.exp(z / t - (z / t).max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ---- weighted fusion of two teachers --------------------------------------------------------


@pytest.mark.parametrize("weights", [(0.75, 0.25), (0.0, 1.0), (0.5, 0.5)])
def test_teacher_mixture_is_the_weighted_mean_of_softmaxes(weights: tuple[float, float]) -> None:
    T = 2.0
    mixture = weights[0] * softmax(Z1, T) + weights[1] * softmax(Z2, T)
    stacked = torch.tensor(np.stack([Z1, Z2]), dtype=torch.float16)  # caches hold float16
    got = teacher_log_probs(stacked, T, torch.tensor(weights)).exp().numpy()
    z1, z2 = (z.astype(np.float16).astype(np.float64) for z in (Z1, Z2))  # as the cache holds them
    expected = weights[0] * softmax(z1, T) + weights[1] * softmax(z2, T)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got, mixture, atol=2e-3)  # float16 logits, float32 maths


def test_distill_fuses_two_cached_teachers_with_normalised_config_weights() -> None:
    """`teacher_weights: [3, 1]` in a distill config -> a KD target of 0.75 p1 + 0.25 p2."""
    T, alpha = 4.0, 0.8
    cfg = DistillConfig.model_validate(
        {"student": {"arch": "mlp"}, "losses": [{"type": "kd", "temperature": T, "alpha": alpha}],
         "teacher_weights": [3.0, 1.0]}
    )  # fmt: skip
    assert cfg.normalised_teacher_weights() == [0.75, 0.25]
    objective = DistillObjective(
        losses=list(cfg.losses),
        num_classes=3,
        num_teachers=2,
        teacher_weights=cfg.normalised_teacher_weights(),
    )

    class Fixed(torch.nn.Module):  # a "student" whose logits are ZS
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    module = objective.build(Fixed(), total_steps=1, store=None)
    batch = {
        "x": torch.tensor(ZS, dtype=torch.float32),
        "y": torch.tensor(Y),
        "t0_logits": torch.tensor(Z1, dtype=torch.float32),
        "t1_logits": torch.tensor(Z2, dtype=torch.float32),
    }
    loss, _ = module(batch)
    target = 0.75 * softmax(Z1, T) + 0.25 * softmax(Z2, T)
    student = softmax(ZS, T)
    kl = float(np.mean(np.sum(target * np.log(target / student), -1)))
    ce = float(np.mean(-np.log(softmax(ZS)[np.arange(2), Y])))
    assert float(loss) == pytest.approx(alpha * T * T * kl + (1 - alpha) * ce, rel=1e-5)
    assert isinstance(cfg.losses[0], KDLoss)


# ---- a finished sweep as rows ------------------------------------------------------------


def sweep_config(**overrides: Any) -> TuneConfig:
    return TuneConfig.model_validate(
        {
            "distill": {"student": {"arch": "mlp"}, "epochs": 3, "losses": [{"type": "kd"}]},
            "space": {
                "losses[0].alpha": {"uniform": [0.1, 0.9]},
                "losses[0].temperature": {"choice": [1, 2, 4]},
            },
            **overrides,
        }
    )


def fake_result(
    n: int, alpha: float, temp: float, accuracies: list[float], error: str | None = None
) -> Any:
    """What Tune's ResultGrid yields for one trial."""
    rows = [
        {"training_iteration": i + 1, "val_accuracy": a, "seconds": 0.5}
        for i, a in enumerate(accuracies)
    ]
    params = {"losses[0].alpha": alpha, "losses[0].temperature": temp}
    last = {**rows[-1], "trial_id": f"abc_{n:05d}", "config": params} if rows else {}
    return SimpleNamespace(
        metrics=last or {"trial_id": f"abc_{n:05d}"},
        config=params if rows else None,
        path=f"/store/experiment/sweep_abc_{n:05d}",
        error=RuntimeError(f"Traceback ...\n{error}") if error else None,
        metrics_dataframe=pd.DataFrame(rows) if rows else None,
        checkpoint=None,
    )


def outcome(*results: Any) -> SweepOutcome:
    records = {
        r.metrics["trial_id"]: {
            "trial": f"sweep_{r.metrics['trial_id']}",
            "config": {"losses[0].alpha": 0.5, "losses[0].temperature": 2.0},
            "wall_s": 2.0,
        }
        for r in results
    }
    return SweepOutcome(grid=list(results), restored=[], records=records, seconds=9.0)


def test_rows_status_table_and_selection() -> None:
    cfg = sweep_config()
    done = outcome(
        fake_result(0, 0.2, 1.0, [0.5, 0.7, 0.88]),
        fake_result(1, 0.8, 4.0, [0.3]),  # stopped by ASHA after one epoch
        fake_result(2, 0.5, 2.0, [0.6, 0.9, 0.85]),
        fake_result(3, 0.5, 2.0, [], error="ValueError: teacher_weights: no teacher left"),
    )
    rows = collect(done, cfg, store=None)  # type: ignore[arg-type]
    assert [r.status for r in rows] == ["completed", "stopped", "completed", "failed"]
    assert rows[3].params == {"losses[0].alpha": 0.5, "losses[0].temperature": 2.0}  # record
    assert rows[0].overhead_s == pytest.approx(2.0 - 1.5)
    # select: last (the default) scores the last epoch; select: best the best epoch
    assert select_best(rows, cfg).name == "sweep_abc_00000"  # last epochs: 0.88 > 0.85
    best_epoch = sweep_config(distill={**cfg.distill.model_dump(exclude_unset=True),
                                       "select": "best"})  # fmt: skip
    assert select_best(rows, best_epoch).name == "sweep_abc_00002"  # best epochs: 0.9 > 0.88
    frame = table(rows, cfg).to_pandas()
    assert list(frame.columns) == [
        "trial", "trial_id", "status", "epochs", "planned_epochs", "val_accuracy",
        "best_val_accuracy", "losses[0].alpha", "losses[0].temperature", "started_s", "ended_s",
        "wall_s", "train_s", "overhead_s", "error",
    ]  # fmt: skip
    assert frame.loc[3, "error"] == "ValueError: teacher_weights: no teacher left"
    assert frame.loc[1, "epochs"] == 1 and frame.loc[1, "planned_epochs"] == 3
    stats = summary(rows, done)
    assert (stats["completed"], stats["stopped"], stats["failed"]) == (2, 1, 1)
    assert stats["median_trial_overhead_s"] == pytest.approx(0.5)  # failed trials left out


def test_a_metric_no_trial_reported_is_named() -> None:
    minimise = sweep_config(metric="val_los", mode="min")
    rows = collect(outcome(fake_result(0, 0.2, 1.0, [0.5, 0.6, 0.7])), minimise, None)  # type: ignore[arg-type]
    with pytest.raises(SweepFailed, match="reported 'val_los'"):
        select_best(rows, minimise)


def test_all_failed_raises_the_first_error() -> None:
    cfg = sweep_config()
    rows = collect(
        outcome(
            fake_result(0, 0.2, 1.0, [], error="ValueError: first"),
            fake_result(1, 0.2, 1.0, [], error="ValueError: second"),
        ),
        cfg,
        store=None,  # type: ignore[arg-type]
    )
    with pytest.raises(SweepFailed, match=r"all 2 trials .* \(sweep_abc_00000.*ValueError: first"):
        select_best(rows, cfg)


# ---- plots ---------------------------------------------------------------------------------


def test_plots_are_pngs_and_the_heat_map_needs_alpha_and_temperature() -> None:
    cfg = sweep_config()
    rows = collect(
        outcome(*(fake_result(i, 0.1 + 0.1 * i, [1.0, 2.0, 4.0][i % 3], [0.5, 0.6 + 0.01 * i, 0.7])
                  for i in range(8))),
        cfg,
        store=None,  # type: ignore[arg-type]
    )  # fmt: skip
    assert plots.alpha_temperature_paths(cfg) == ("losses[0].alpha", "losses[0].temperature")
    assert plots.learning_curves(rows, cfg, rows[0].name)[:4] == b"\x89PNG"
    heat = plots.heat_map(rows, cfg)
    assert heat is not None and heat[:4] == b"\x89PNG"
    only_alpha = sweep_config(space={"losses[0].alpha": {"uniform": [0.1, 0.9]}})
    assert plots.alpha_temperature_paths(only_alpha) is None
    assert plots.heat_map(rows, only_alpha) is None
    assert math.isfinite(rows[0].best or math.nan)
