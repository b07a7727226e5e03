"""How much does a top-k logit cache change the KD loss? One table per rule, k and T.

For two sets of teacher/student logits, prints the dense Hinton KD term
alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)) with alpha = 1 (the top-k losses use the
same alpha, so CE plays no part), the top-k loss for each rule, and their absolute and relative
difference:

- digits: softmax-regression teacher (all 64 pixels) and a weaker student (8 PCA components)
  fitted on scikit-learn's bundled 8x8 digits, logits on the held-out rows (K = 10);
- peaked: synthetic K = 100 teacher logits, one dominant class per row, a few runners-up and a
  long noisy tail; the student is a noisy, flatter copy.

Run: ``python benchmarks/topk_missing_mass.py`` (a few seconds on a CPU).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.losses import KDBatch
from components.losses.kd import HintonKD
from components.losses.topk import RULES, TopKKD
from schemas.kd.losses import KDLoss, TopKKLLoss

KS = (1, 2, 5, 10)
TEMPERATURES = (1.0, 4.0)


def digits_logits() -> tuple[np.ndarray, np.ndarray, str]:
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    scaler = StandardScaler().fit(x_tr)
    x_tr, x_te = scaler.transform(x_tr), scaler.transform(x_te)
    teacher = LogisticRegression(C=1.0, max_iter=2000).fit(x_tr, y_tr)
    pca = PCA(n_components=8, random_state=0).fit(x_tr)
    student = LogisticRegression(C=0.1, max_iter=2000).fit(pca.transform(x_tr), y_tr)
    z_t = teacher.decision_function(x_te)
    z_s = student.decision_function(pca.transform(x_te))
    note = (
        f"teacher acc {teacher.score(x_te, y_te):.3f}, "
        f"student acc {student.score(pca.transform(x_te), y_te):.3f}, {len(y_te)} rows"
    )
    return z_t, z_s, note


def peaked_logits(rows: int = 512, classes: int = 100) -> tuple[np.ndarray, np.ndarray, str]:
    rng = np.random.default_rng(0)
    z_t = rng.normal(0.0, 1.0, size=(rows, classes))  # the long tail
    top = rng.integers(0, classes, size=rows)
    z_t[np.arange(rows), top] += 8.0  # one dominant class
    runners = rng.integers(0, classes, size=(rows, 3))
    z_t[np.arange(rows)[:, None], runners] += 4.0  # a few plausible alternatives
    z_s = 0.6 * z_t + rng.normal(0.0, 1.0, size=z_t.shape)
    p = np.exp(z_t - z_t.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    note = f"teacher top-1 prob {np.sort(p, 1)[:, -1].mean():.3f} on average, {rows} rows"
    return z_t, z_s, note


def rows_for(name: str, z_t: np.ndarray, z_s: np.ndarray) -> list[tuple]:
    teacher = torch.tensor(z_t, dtype=torch.float32)
    student = torch.tensor(z_s, dtype=torch.float32)
    probs = torch.softmax(teacher, dim=1)
    out = []
    for T in TEMPERATURES:
        full = KDBatch(student_logits=student, teacher_logits=teacher)
        dense = float(HintonKD(KDLoss(temperature=T, alpha=1.0))(full).total)
        for k in KS:
            values, indices = teacher.topk(k, dim=1)
            rest = 1.0 - probs.gather(1, indices).sum(1)
            batch = KDBatch(
                student_logits=student,
                teacher_topk_indices=indices,
                teacher_topk_values=values,
                teacher_rest_mass=rest,
            )
            for rule in RULES:
                term = TopKKD(
                    TopKKLLoss(temperature=T, alpha=1.0, rule=rule), num_classes=teacher.shape[1]
                )
                approx = float(term(batch).total)
                err = abs(approx - dense)
                mass = float(rest.mean())
                out.append((name, T, k, rule, mass, dense, approx, err, err / dense))
    return out


def main() -> None:
    torch.set_grad_enabled(False)
    header = (
        f"{'data':<7} {'T':>3} {'k':>3} {'rule':<11} {'rest':>6} {'dense':>9} {'top-k':>9} "
        f"{'abs err':>9} {'rel err':>8}"
    )
    for name, (z_t, z_s, note) in {"digits": digits_logits(), "peaked": peaked_logits()}.items():
        print(f"\n{name}: K = {z_t.shape[1]}, {note}")
        print(header)
        print("-" * len(header))
        for data, T, k, rule, mass, dense, approx, err, rel in rows_for(name, z_t, z_s):
            print(
                f"{data:<7} {T:>3.0f} {k:>3} {rule:<11} {mass:>6.3f} {dense:>9.4f} "
                f"{approx:>9.4f} {err:>9.4f} {rel:>8.1%}"
            )
    print(
        "\nrest: mean teacher mass outside the top-k at T = 1. Losses are alpha * T^2 * KL with "
        "alpha = 1 (batch mean)."
    )


if __name__ == "__main__":
    main()
