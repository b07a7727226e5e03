"""The vocabulary of kdorch's built-in components: what they exchange and how they are set up.

- `artifacts`: datasets, model checkpoints, teacher outputs (logit shards), reports, search
  results, Meta-DMoE's checkpoints — each an `ArtifactRef` with typed metadata;
- `models`: model specs (the zoo's architectures);
- `losses`: the KD loss specs a `distill` step combines;
- `components`: each built-in component's Config, Inputs and Outputs.

Types and their own field validation only: what computes (cost formulas, path application,
checks that need data) lives with the code that owns it in `components`.
"""
