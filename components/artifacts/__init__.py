"""Typed readers and writers of kdorch's artifacts, one module per kind.

Components read and write artifacts only through these (never by building filesystems from
URIs): every write goes through the step's store into its attempt folder, and every read is
verified against the artifact's manifest by the store (sizes always, hashes once per process).

- `datasets`: `Dataset` splits as Parquet (`write_dataset`, `read_split`, `split_source`).
- `logits`: `LogitShards` (`ShardWriter`, `read_teacher_table`).
- `checkpoints`: `ModelCheckpoint` (`save_model`, `load_model`).
Small files (reports, JSON) are written with `StepContext.write_bytes` and read with the store's
`read_json`. Meta-DMoE's checkpoints are in `components.metadmoe.checkpoints`.
"""
