"""Meta-DMoE (Zhong et al., NeurIPS 2022) as a library: aggregator, masking, meta-distillation.

"Meta-DMoE: Adapting to Domain Shift by Meta-Distillation from Mixture-of-Experts". Frozen
domain experts feed their penultimate features to a transformer `Aggregator`, whose output is
the target of one inner MSE step on the student's feature extractor; the outer loss is the
adapted student's CE on a query set from the same domain (`meta_step`, second order). At test
time the student adapts once per target domain on an unlabeled batch (`adapt`, `predict`).
`expert_mask` hides the expert trained on each sample's own domain during meta-training.

Pure PyTorch, no Ray and no I/O: a component wires it into a pipeline.
"""

from components.metadmoe.aggregator import Aggregator, aggregator_head
from components.metadmoe.masking import expert_mask
from components.metadmoe.meta import (
    FastWeights,
    MetaStepOutput,
    adapt,
    adapted_copy,
    eval_mode,
    feature_parameters,
    inner_step,
    meta_step,
    predict,
    student_features,
)

__all__ = [
    "Aggregator",
    "FastWeights",
    "MetaStepOutput",
    "adapt",
    "adapted_copy",
    "aggregator_head",
    "eval_mode",
    "expert_mask",
    "feature_parameters",
    "inner_step",
    "meta_step",
    "predict",
    "student_features",
]
