"""Causal language models (a library) and the steps `lm_model` and `lm_inference`.

- `specs`: what a ``causal_lm`` spec says without building it (vocabulary, positions), and the
  spec fitted to a tokenizer (torch-free);
- `folder`: a Hugging Face ``save_pretrained`` folder, local or s3://, read as data (no remote
  code, weights as tensors only);
- `models`: the transformers networks behind the `KDModel` interface (logits (B, T, V), last
  hidden states (B, T, D)) and `language_model`, the one function a training step calls;
- `checks`: what `kdorch validate` checks (a folder, vocabularies, k, positions) and what the
  language steps promise before they run;
- `teacher`: a teacher LM over packed sequences, per token its top-k log-probabilities (or all
  of them), in process or on a Ray Data actor pool;
- `cache`: the top-k cache's encodings, its shard writer and its readers (tensors for the
  token losses, aligned with the sequences' positions and masks);
- `lm_evaluate` (step): `assessment` (checks, then scoring), `evaluation` (perplexity, top-1,
  agreement, KL, tokens/s, streamed), `lm_stats` (recipes, paired comparisons),
  `lm_report` (report.md/json, perplexity.png), `lm_checks` (what validate refuses);
- `seqkd` (step): `generation` (prompts cut from sequences, greedy/sampled continuations) and
  `sequence_kd` (the teacher's samples packed as token sequences).

The spec is `schemas.kd.lm.CausalLMSpec`, the cache `schemas.kd.token_cache.TokenCache`;
docs/language_models.md is the guide. Nothing is re-exported here: a torch-free module of this
package imports without torch.
"""
