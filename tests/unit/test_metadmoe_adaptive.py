"""Meta-DMoE's wiring: one-domain batches, and test-time adaptation that stays in its domain."""

from __future__ import annotations

import numpy as np
import torch

from components.metadmoe.adaptive import AdaptiveMetaDMoE, predict_per_domain
from components.metadmoe.data import domain_batches
from components.metadmoe.transformer import Aggregator
from components.models.zoo import build_model
from schemas.kd.models import MnistCNNSpec

SHAPE = (1, 12, 12)


def model(width: int, seed: int) -> torch.nn.Module:
    spec = MnistCNNSpec(width=width, depth=2, num_classes=4, input_shape=SHAPE)
    return build_model(spec, seed=seed)


def adaptive() -> AdaptiveMetaDMoE:
    student = model(4, 0)
    experts = [model(8, s) for s in (1, 2, 3)]
    aggregator = Aggregator(experts[0].feature_dim, student.feature_dim, num_heads=2)
    return AdaptiveMetaDMoE(student, aggregator, experts, inner_lr=0.5)  # type: ignore[arg-type]


def rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *SHAPE)).astype(np.float32)


def test_each_domain_adapts_on_its_own_rows_only() -> None:
    m = adaptive()
    x = np.concatenate([rows(20, 0), rows(20, 1)])
    row_id = np.arange(40)[::-1].copy()  # adaptation takes the first rows by row_id
    domain = np.array([0] * 20 + [1] * 20)
    logits, adapted_on = predict_per_domain(m, x, row_id, domain, support_size=5)
    assert adapted_on == {"0": [20, 21, 22, 23, 24], "1": [0, 1, 2, 3, 4]}

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
