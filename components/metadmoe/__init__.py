"""Meta-DMoE (Zhong et al., NeurIPS 2022): "Meta-DMoE: Adapting to Domain Shift by
Meta-Distillation from Mixture-of-Experts".

Frozen domain experts feed their penultimate features to a transformer aggregator, whose output
is the target of one inner MSE step on the student's feature extractor; the outer loss is the
adapted student's CE on a query set from the same domain (second order). At test time the
student adapts once per target domain on an unlabeled batch. During meta-training the expert
trained on each sample's own domain is hidden.

The modules, one job each:
- the method, pure PyTorch: `transformer` (the aggregator network and its pre-training head),
  `masking` (which expert to hide), `meta` (the meta-step, test-time adaptation, prediction),
  `adaptive` (the adaptive model `evaluate` scores: student + aggregator + experts);
- its data and artifacts: `experts` (which expert caches a step may use), `data` (source rows
  with their experts' cached features, one-domain batches), `checkpoints` (the aggregator and
  adaptive-model artifacts in the store);
- the two steps, each with its library: `aggregator` (the step) runs `pretraining`;
  `meta_distill` (the step) runs `meta_distillation`.

Nothing is re-exported here: importing a step module for its config (`kdorch validate`) stays
light.
"""
