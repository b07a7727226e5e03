"""Meta-DMoE (Zhong et al., NeurIPS 2022) as a library: aggregator, masking, meta-distillation.

"Meta-DMoE: Adapting to Domain Shift by Meta-Distillation from Mixture-of-Experts". Frozen
domain experts feed their penultimate features to a transformer `Aggregator`, whose output is
the target of one inner MSE step on the student's feature extractor; the outer loss is the
adapted student's CE on a query set from the same domain (`meta_step`, second order). At test
time the student adapts once per target domain on an unlabeled batch (`adapt`, `predict`).
`expert_mask` hides the expert trained on each sample's own domain during meta-training.

Pure PyTorch, no Ray and no I/O, apart from the two step modules that wire it into pipelines
(`aggregator`, `meta_distill`) and the checkpoints they write (`checkpoints`). Nothing is
re-exported here: importing a step module for its config (`kdorch validate`) stays light.
"""
