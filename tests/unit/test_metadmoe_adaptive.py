"""Meta-DMoE's wiring: one-domain batches, and test-time adaptation that stays in its domain."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from components.metadmoe.adaptive import AdaptiveMetaDMoE, adaptation_batches, predict_per_domain
from components.metadmoe.data import domain_batches
from components.metadmoe.transformer import Aggregator
from components.models.zoo import build_model
from schemas.kd.models import MnistCNNSpec

SHAPE = (1, 12, 12)


def model(width: int, seed: int) -> torch.nn.Module:
    spec = MnistCNNSpec(width=width, depth=2, num_classes=4, input_shape=SHAPE)
    return build_model(spec, seed=seed)


def adaptive() -> AdaptiveMetaDMoE:
    student: Any = model(4, 0)
    experts: list[Any] = [model(8, s) for s in (1, 2, 3)]
    aggregator = Aggregator(experts[0].feature_dim, student.feature_dim, num_heads=2)
    return AdaptiveMetaDMoE(student, aggregator, experts, inner_lr=0.5)


def rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *SHAPE)).astype(np.float32)


def test_each_domain_adapts_on_its_own_rows_only() -> None:
    m = adaptive()
    x = np.concatenate([rows(20, 0), rows(20, 1)])
    row_id = np.arange(40)[::-1].copy()  # batches are cut in row_id order
    domain = np.array([0] * 20 + [1] * 20)
    logits, adapted_on = predict_per_domain(m, x, row_id, domain, support_size=5)
    # 20 rows, batches of 5: four disjoint chunks, each adapting on its 5 rows
    assert adapted_on == {"0": list(range(20, 40)), "1": list(range(20))}

    changed = x.copy()
    changed[20:] = rows(20, 7)  # other rows in domain 1 only
    again, _ = predict_per_domain(m, changed, row_id, domain, support_size=5)
    assert np.array_equal(again[:20], logits[:20])  # domain 0 is untouched
    assert not np.allclose(again[20:], logits[20:])

    with torch.no_grad():
        plain = m.student(torch.from_numpy(x)).numpy()
    assert not np.allclose(plain, logits, atol=1e-5)  # adaptation changed the predictions
    before = {k: v.clone() for k, v in m.student.state_dict().items()}
    predict_per_domain(m, x, row_id, domain, support_size=5)
    assert all(torch.equal(before[k], v) for k, v in m.student.state_dict().items())


def test_no_row_is_predicted_by_an_adaptation_that_saw_it() -> None:
    """Cross-fitting: the rows of chunk k are predicted with chunk k + 1's weights, so a row's
    logits do not depend on the row itself, only on the next chunk's rows."""
    m = adaptive()
    x, row_id = rows(17, 0), np.arange(17)
    logits, adapted_on = predict_per_domain(m, x, row_id, None, support_size=5)
    assert [len(c) for c in adaptation_batches(np.arange(17), 5)] == [6, 6, 5]
    # each chunk adapts on its first 5 rows: 0-4, 6-10, 12-16
    assert adapted_on == {"0": [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16]}
    # rows 0-5 (chunk 0) are predicted with chunk 1's weights: their prediction is the
    # adapted student's on each row alone, so changing row 0 changes only row 0's logits
    expected = m.predict(m.adapt(torch.from_numpy(x[6:11])), torch.from_numpy(x[:6])).numpy()
    np.testing.assert_allclose(logits[:6], expected, rtol=1e-5, atol=1e-6)
    changed = x.copy()
    changed[0] = rows(1, 9)[0]
    again, _ = predict_per_domain(m, changed, row_id, None, support_size=5)
    assert np.array_equal(again[1:12], logits[1:12])  # chunks 0 (but row 0) and 1 unchanged
    assert not np.allclose(again[12:], logits[12:])  # chunk 2 used chunk 0's (changed) rows


def test_small_domains_still_cross_fit() -> None:
    assert [c.tolist() for c in adaptation_batches(np.arange(7), 24)] == [[0, 1, 2, 3], [4, 5, 6]]
    assert [c.tolist() for c in adaptation_batches(np.arange(1), 24)] == [[0]]
    m = adaptive()
    logits, adapted_on = predict_per_domain(m, rows(7, 0), np.arange(7), None, support_size=24)
    assert adapted_on == {"0": list(range(7))} and logits.shape == (7, 4)


def test_entropy_control_needs_no_expert_and_lowers_the_entropy() -> None:
    student: Any = model(4, 0)
    aggregator = Aggregator(8, student.feature_dim, num_heads=2)
    m = AdaptiveMetaDMoE(student, aggregator, [], inner_lr=0.5, entropy=True)
    x = torch.from_numpy(rows(16, 3))

    def entropy(logits: torch.Tensor) -> float:
        log_p = torch.log_softmax(logits, 1)
        return float(-(log_p.exp() * log_p).sum(1).mean())

    with torch.no_grad():
        before = entropy(student(x))
    weights = m.adapt(x)
    assert entropy(m.predict(weights, x)) < before
    assert set(weights) == {n for n, _ in student.named_parameters() if "classifier" not in n}


def test_meta_batches_hold_one_domain_each_and_are_seeded() -> None:
    domains = torch.tensor([0] * 23 + [1] * 17 + [2] * 9)
    first = list(domain_batches(domains, batch_size=8, min_rows=5, seed=3, epoch=0))
    for batch in first:
        assert len(set(domains[batch].tolist())) == 1 and len(batch) >= 5
    covered = torch.cat(first).tolist()
    assert len(covered) == len(set(covered))  # no row twice in an epoch
    assert [b.tolist() for b in first] == [
        b.tolist() for b in domain_batches(domains, batch_size=8, min_rows=5, seed=3, epoch=0)
    ]
    other = list(domain_batches(domains, batch_size=8, min_rows=5, seed=3, epoch=1))
    assert [b.tolist() for b in other] != [b.tolist() for b in first]
