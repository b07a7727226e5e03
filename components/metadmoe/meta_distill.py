"""The `meta_distill` component: Meta-DMoE's meta-distillation and its adaptive student."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator import Component, StepContext
from schemas.engine.pipeline import Resources
from schemas.kd.components.metadmoe import MetaDistillConfig, MetaDistillInputs, MetaDistillOutputs

if TYPE_CHECKING:
    from components.metadmoe.data import ExpertRows


class MetaDistill(Component[MetaDistillConfig, MetaDistillInputs, MetaDistillOutputs]):
    """Meta-distil the experts into the student, second order (Zhong et al., NeurIPS 2022).

    Each batch comes from one source domain: its support rows (labels unused) get the target
    A(experts' features), with the expert of that domain hidden; one inner step moves the
    student's feature extractor towards it; the adapted student's cross-entropy on the query
    rows trains the student and, through the inner step, the aggregator. Expert features come
    from their caches. Outputs the student as it is and as an adaptive model that adapts to each
    test domain on an unlabeled batch (`evaluate` runs the adaptation).
    """

    key = "meta_distill"
    version = "1"
    Config = MetaDistillConfig
    Inputs = MetaDistillInputs
    Outputs = MetaDistillOutputs
    default_resources = Resources(num_cpus=1)
    deterministic = False

    def run(self, inputs: MetaDistillInputs, ctx: StepContext) -> MetaDistillOutputs:
        import copy
        import time

        import torch

        from components.artifacts.checkpoints import load_model, save_model
        from components.metadmoe.checkpoints import load_aggregator, save_adaptive
        from components.metadmoe.data import domain_batches, load_expert_rows
        from components.metadmoe.experts import usable_caches
        from components.metadmoe.masking import expert_mask
        from components.metadmoe.meta import meta_step
        from schemas.kd.artifacts import Adaptation

        cfg, data = self.config, inputs.data
        torch.set_num_threads(max(1, int(ctx.resources.num_cpus or 1)))
        caches = self.ordered(usable_caches(inputs.features, data, cfg.exclude_domains), inputs)
        experts = self.experts_for(caches, inputs)
        train = load_expert_rows(ctx.store, data, "train", caches, cfg.exclude_domains)
        val = load_expert_rows(ctx.store, data, cfg.eval_split, caches, cfg.exclude_domains)
        expert_domains = [data.domain_ids(list(c.teacher_domains)) for c in caches]
        student, _ = load_model(ctx.store, inputs.student)
        aggregator = load_aggregator(ctx.store, inputs.aggregator)
        torch.manual_seed(cfg.seed)
        opt_s = torch.optim.Adam(student.parameters(), lr=cfg.student_lr)
        opt_a = torch.optim.Adam(aggregator.parameters(), lr=cfg.aggregator_lr)
        schedules = [
            torch.optim.lr_scheduler.ExponentialLR(o, gamma=cfg.lr_decay) for o in (opt_s, opt_a)
        ]
        history: list[dict[str, Any]] = []
        best: tuple[float, Any, Any] = (-1.0, None, None)
        for epoch in range(cfg.epochs):
            started = time.perf_counter()
            sums = {"inner_mse": 0.0, "outer_ce": 0.0, "accuracy": 0.0}
            steps = 0
            for rows in domain_batches(
                train.domain, cfg.batch_size, cfg.support_size + 1, cfg.seed, epoch
            ):
                support, query = rows[: cfg.support_size], rows[cfg.support_size :]
                out = meta_step(
                    student,
                    aggregator,
                    train.features[support],
                    expert_mask(train.domain[support], expert_domains),
                    train.x[support],
                    train.x[query],
                    train.y[query],
                    inner_lr=cfg.inner_lr,
                )
                if not torch.isfinite(out.loss):
                    raise FloatingPointError(
                        f"the meta-distillation loss became {float(out.loss)} at epoch {epoch} "
                        f"(step {steps}; inner MSE {float(out.inner_mse)}): lower inner_lr or "
                        "the learning rates; nothing was committed"
                    )
                opt_s.zero_grad(set_to_none=True)
                opt_a.zero_grad(set_to_none=True)
                out.loss.backward()
                opt_s.step()
                opt_a.step()
                for name, value in out.metrics().items():
                    if name in sums:
                        sums[name] += value
                steps += 1
            for schedule in schedules:
                schedule.step()
            record = {f"train_{k}": v / max(steps, 1) for k, v in sums.items()}
            record.update(self.validate(student, aggregator, val, expert_domains))
            record.update(epoch=epoch, seconds=time.perf_counter() - started)
            history.append(record)
            ctx.log(
                "epoch %d/%d: query CE %.4f, source val %.4f adapted (%.4f plain)",
                epoch + 1,
                cfg.epochs,
                record["train_outer_ce"],
                record["val_accuracy"],
                record["val_plain_accuracy"],
            )
            if record["val_accuracy"] > best[0] or cfg.select == "last":
                best = (
                    record["val_accuracy"],
                    copy.deepcopy(student.state_dict()),
                    copy.deepcopy(aggregator.state_dict()),
                )
        student.load_state_dict(best[1])
        aggregator.load_state_dict(best[2])
        metrics = {k: float(v) for k, v in history[-1].items() if isinstance(v, int | float)} | {
            "best_val_accuracy": float(best[0]),
            "experts": float(len(caches)),
        }
        metrics.pop("seconds", None)
        sources = [d for d in data.domains if d not in cfg.exclude_domains]
        model = save_model(ctx, "model", student, metrics=metrics)
        model = model.model_copy(update={"trained_domains": sources})
        adaptive = save_adaptive(
            ctx,
            "adaptive",
            student,
            aggregator,
            inputs.aggregator,
            experts,
            Adaptation(support_size=cfg.support_size, inner_lr=cfg.inner_lr, steps=1),
            metrics,
            sources,
        )
        return MetaDistillOutputs(model=model, adaptive=adaptive, metrics=metrics, history=history)

    @staticmethod
    def ordered(caches: list[Any], inputs: MetaDistillInputs) -> list[Any]:
        """The caches in the order the aggregator was built for (its expert versions)."""
        by_teacher = {c.teacher_version: c for c in caches}
        wanted = inputs.aggregator.expert_versions
        missing = [v[:12] for v in wanted if v not in by_teacher]
        if missing or len(wanted) != len(caches):
            raise ValueError(
                f"the aggregator was built for experts {[v[:12] for v in wanted]}, but the "
                f"usable feature caches come from {[c.teacher_version[:12] for c in caches]}: "
                "give meta_distill the same experts and held-out domains as the aggregator"
            )
        return [by_teacher[v] for v in wanted]

    @staticmethod
    def experts_for(caches: list[Any], inputs: MetaDistillInputs) -> list[Any]:
        by_version = {e.data_version: e for e in inputs.experts}
        missing = [c.path for c in caches if c.teacher_version not in by_version]
        if missing:
            raise ValueError(
                f"no expert checkpoint among `experts` produced the feature caches {missing}: "
                "connect the same experts whose features you cached"
            )
        return [by_version[c.teacher_version] for c in caches]

    def validate(
        self,
        student: Any,
        aggregator: Any,
        val: ExpertRows,
        expert_domains: list[list[int]],
    ) -> dict[str, float]:
        """Source-domain validation as at test time: each domain adapts on its first
        ``support_size`` rows, with its own expert hidden (it would not exist for a target)."""
        import torch

        from components.metadmoe.masking import expert_mask
        from components.metadmoe.meta import eval_mode, feature_parameters, inner_step, predict

        correct = plain = 0.0
        for domain in torch.unique(val.domain).tolist():
            rows = torch.nonzero(val.domain == domain).flatten()
            support = rows[: self.config.support_size]
            with eval_mode(student, aggregator), torch.enable_grad():
                with torch.no_grad():
                    target = aggregator(
                        val.features[support], expert_mask(val.domain[support], expert_domains)
                    )
                weights = {
                    n: p.detach().clone().requires_grad_()
                    for n, p in feature_parameters(student).items()
                }
                fast, _ = inner_step(
                    student,
                    weights,
                    val.x[support],
                    target,
                    self.config.inner_lr,
                    create_graph=False,
                )
            fast = {n: w.detach() for n, w in fast.items()}
            correct += float((predict(student, fast, val.x[rows]).argmax(1) == val.y[rows]).sum())
            with eval_mode(student), torch.no_grad():
                plain += float((student(val.x[rows]).argmax(1) == val.y[rows]).sum())
        return {
            "val_accuracy": correct / max(len(val), 1),
            "val_plain_accuracy": plain / max(len(val), 1),
        }
