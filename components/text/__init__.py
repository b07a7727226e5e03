"""The text path: a corpus split by document (step `corpus`), a tokenizer (`tokenizer`) and
packed token sequences (`pack_tokens`), and the library they share.

- `sources`: text files (.txt, .jsonl, Parquet) local or on s3://: listing, content identity,
  documents counted and read in batches, errors naming the file and line;
- `documents`: the seeded split by document and the corpus written part by part;
- `bpe`: a byte-level BPE trained with Hugging Face `tokenizers`, or one loaded from a file;
- `packing`: documents tokenised and packed into rows of ``seq_len + 1`` ids, and the helpers
  that turn the rows' document boundaries into masks;
- `artifacts`: the readers (verified) and the part writer of the three artifacts;
- `checks`: what `kdorch validate` checks from listings and footers;
- `bundled`: the Python standard library's source as a Parquet corpus (no download).

The artifacts and configs are in `schemas.kd.text`; docs/language_models.md is the guide.
"""
