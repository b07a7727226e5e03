"""The hashes that verify artifacts' files: BLAKE3 for new manifests, sha256 for format 1.

BLAKE3 is cryptographic like sha256, so a data version (the sha256 of a manifest that lists
every file's hash) stays a content address that neither chance nor anyone's edit can make two
contents share; on this project's 2-core machine it hashes 2.5-3x faster on one core (xxh3 is
faster still, but not collision resistant: a cache key built on it could be forged). Why it
matters: a first verified read hashes every byte it reads (`VerifiedStore.read_parsed`).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

import blake3

from schemas.engine.artifacts import FILE_HASH, HashName

#: Bytes read per update when a file is hashed as a stream.
CHUNK = 4 << 20
_POOL: ThreadPoolExecutor | None = None


def hasher(name: HashName, *, threads: bool = False) -> Any:
    """A fresh hash object; ``threads``: BLAKE3 may hash a large update on every core (not while
    a parser runs beside it: `VerifiedStore.read_parsed` wants that core for the parser)."""
    if name == "blake3":
        return blake3.blake3(max_threads=blake3.blake3.AUTO if threads else 1)
    return hashlib.sha256()


def digest(name: HashName, data: Any, *, threads: bool = False) -> str:
    """The hex hash of a bytes-like ``data`` (both hashes release the GIL on large inputs)."""
    h = hasher(name, threads=threads)
    h.update(data)
    return str(h.hexdigest())


def stream_digest(f: IO[bytes], name: HashName = FILE_HASH) -> str:
    """The hex hash of an open file's bytes, read in chunks (no copy of the whole file)."""
    h = hasher(name, threads=True)
    while chunk := f.read(CHUNK):
        h.update(chunk)
    return str(h.hexdigest())


def pool() -> ThreadPoolExecutor:
    """The thread that hashes a file while another reads it."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kdorch-verify")
    return _POOL
