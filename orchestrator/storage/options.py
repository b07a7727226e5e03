"""Storage options from the command line (``--storage-option KEY=VALUE``, repeatable), typed as
`schemas.engine.storage.StorageOptions` and merged over a pipeline file's ``storage_options``.

Keys are the fields of `StorageOptions` (``endpoint_url``, ``region``, ``profile``, ``anon``,
``key``, ``secret``, ``token``) or ``client_kwargs.NAME`` / ``options.NAME`` for the free-form
ones, whose values are read as YAML scalars (``options.use_ssl=false`` is a boolean).
Credentials are better left to the ``AWS_*`` environment variables or a ``profile``: a value on
the command line is visible to other users of the machine (``ps``) and in shell history.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator.errors import ConfigError, did_you_mean
from schemas.engine.storage import StorageOptions

FLAG = "--storage-option"
_NESTED = ("client_kwargs", "options")
_TEXT = ("endpoint_url", "region", "profile", "key", "secret", "token")
_EXAMPLES = {
    "client_kwargs": "client_kwargs.endpoint_url=http://127.0.0.1:9000",
    "options": "options.use_ssl=false",
}


def _keys() -> list[str]:
    return [*_TEXT, "anon", *(f"{n}.NAME" for n in _NESTED)]


def parse_storage_options(items: Sequence[str]) -> StorageOptions | None:
    """``["endpoint_url=http://127.0.0.1:9000", "anon=true"]`` -> `StorageOptions`; None for
    no items. A `ConfigError` (exit 2) says which item is wrong and what is accepted."""
    if not items:
        return None
    data: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(
                f"{FLAG} {item!r}: expected KEY=VALUE, e.g. "
                f"{FLAG} endpoint_url=http://127.0.0.1:9000"
            )
        head, dot, rest = key.partition(".")
        if head in _NESTED and not rest:
            raise ConfigError(
                f"{FLAG} {item!r}: '{head}' is a mapping, not one value: set one entry at a time "
                f"as {head}.NAME=VALUE, e.g. {FLAG} {_EXAMPLES[head]}"
            )
        if head in _NESTED:
            data.setdefault(head, {})[rest] = yaml.safe_load(raw) if raw else ""
        elif not dot and head in _TEXT:
            data[head] = raw
        elif not dot and head == "anon":
            data[head] = yaml.safe_load(raw)
        else:
            hint = did_you_mean(key, [*_TEXT, "anon", *_NESTED])
            raise ConfigError(
                f"{FLAG} {item!r}: unknown key '{key}'"
                + (f"; {hint}" if hint else "")
                + f" (keys: {', '.join(_keys())})"
            )
    try:
        return StorageOptions.model_validate(data)
    except ValidationError as e:
        details = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in e.errors(include_url=False)
        )
        raise ConfigError(f"{FLAG}: {details}") from None


def merge_options(base: StorageOptions, override: StorageOptions | None) -> StorageOptions:
    """``base`` (a pipeline file's) with every option ``override`` sets replacing its own;
    ``client_kwargs`` and ``options`` are merged key by key."""
    if override is None:
        return base
    update: dict[str, Any] = {}
    for name in override.model_fields_set:
        value = getattr(override, name)
        if name in _NESTED:
            value = {**getattr(base, name), **value}
        update[name] = value
    return StorageOptions.model_validate({**base.model_dump(), **update})
