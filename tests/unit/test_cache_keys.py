"""Golden cache keys: if one of these changes, every user's cache is invalidated. That must be
a deliberate decision (bump KEY_FORMAT and say so in the CHANGELOG), never an accident."""

from __future__ import annotations

from orchestrator.storage.cache import canonical_json, data_version, key_material, step_key
from tests.support.toy_components import Numbers, ScaleConfig, SourceConfig

NUMBERS = Numbers(path="objects/aa/anywhere/numbers", data_version="d" * 64, count=3)


def test_golden_source_key() -> None:
    material = key_material("toy_source", "1", SourceConfig(count=3), {})
    assert canonical_json(material) == (
        '{"code":{},"component":"toy_source","config":{"count":3,"sleep":0.0,"start":0.0},'
        '"external":{},"format":2,"inputs":{},"packages":{},"version":"1"}'
    )
    assert step_key(material) == "4e7444986f20cb8a2d3b89343dd216ceedf2035bb00a849aaba9687e3c8c774f"


def test_golden_key_with_input() -> None:
    material = key_material("toy_scale", "1", ScaleConfig(factor=3), {"numbers": NUMBERS})
    assert canonical_json(material) == (
        '{"code":{},"component":"toy_scale","config":{"block_file":null,"factor":3.0,'
        '"fail":false,"marker_dir":null,"sleep":0.0},"external":{},"format":2,'
        '"inputs":{"numbers":"' + "d" * 64 + '"},"packages":{},"version":"1"}'
    )
    assert step_key(material) == "ca9c10076cbcefec41c849d0d3306e48f3dad69cf9e4abb622b79e65b0e38d1c"


def test_key_ignores_where_data_lives_but_not_what_it_is() -> None:
    moved = NUMBERS.model_copy(update={"path": "objects/bb/elsewhere/numbers"})
    changed = NUMBERS.model_copy(update={"data_version": "e" * 64})
    base = step_key(key_material("toy_scale", "1", ScaleConfig(), {"numbers": NUMBERS}))
    assert step_key(key_material("toy_scale", "1", ScaleConfig(), {"numbers": moved})) == base
    assert step_key(key_material("toy_scale", "1", ScaleConfig(), {"numbers": changed})) != base


def test_key_changes_with_config_and_version_only() -> None:
    base = step_key(key_material("toy_source", "1", SourceConfig(), {}))
    assert step_key(key_material("toy_source", "1", SourceConfig(count=3), {})) == base  # default
    assert step_key(key_material("toy_source", "1", SourceConfig(count=4), {})) != base
    assert step_key(key_material("toy_source", "2", SourceConfig(), {})) != base


def test_list_inputs_keep_order_and_plain_values_hash_their_json() -> None:
    a, b = NUMBERS, NUMBERS.model_copy(update={"data_version": "e" * 64})
    ab = key_material("toy_gather", "1", ScaleConfig(), {"parts": [a, b]})
    ba = key_material("toy_gather", "1", ScaleConfig(), {"parts": [b, a]})
    assert step_key(ab) != step_key(ba)
    assert data_version(1.5) == data_version(1.5) != data_version(1.25)
