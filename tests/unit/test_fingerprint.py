"""Code fingerprints in cache keys: behaviour changes count, comments and docs do not."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.storage import fingerprint
from orchestrator.storage.fingerprint import ParseCache, code_fingerprint, packages_for
from tests.support.edits import rewrite

LIB = '''
"""A library module."""

def double(x):
    """Twice x."""
    return 2 * x  # the doubling
'''
COMP = """
from pydantic import Field

from fpkg import lib


def run(x):
    from fpkg.sub import helper  # imported inside a function: still part of the closure
    return helper.go(lib.double(x), Field(1, description="shown in help"))
"""
HELPER = """
def go(x, y):
    return x
"""


@pytest.fixture()
def package(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "fpkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sub" / "__init__.py").write_text("")
    (root / "lib.py").write_text(textwrap.dedent(LIB))
    (root / "comp.py").write_text(textwrap.dedent(COMP))
    (root / "sub" / "helper.py").write_text(textwrap.dedent(HELPER))
    (root / "unused.py").write_text("X = 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        yield root
    finally:
        sys.path.remove(str(tmp_path))


def test_the_closure_follows_imports_including_local_ones(package: Path) -> None:
    assert sorted(code_fingerprint("fpkg.comp")) == [
        "fpkg/__init__.py",
        "fpkg/comp.py",
        "fpkg/lib.py",
        "fpkg/sub/__init__.py",
        "fpkg/sub/helper.py",
    ]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("# the doubling", "# twice, reworded"),
        ('"""Twice x."""', '"""Two times x, documented at length."""'),
        ("return 2 * x", "return (2 *   x)"),
    ],
)
def test_comments_docstrings_and_formatting_do_not_count(package: Path, old: str, new: str) -> None:
    before = code_fingerprint("fpkg.comp")
    rewrite(package / "lib.py", old, new)
    assert code_fingerprint("fpkg.comp") == before


def test_help_texts_do_not_count(package: Path) -> None:
    before = code_fingerprint("fpkg.comp")
    rewrite(package / "comp.py", "shown in help", "explained differently")
    assert code_fingerprint("fpkg.comp") == before


def test_a_changed_function_body_counts_and_names_its_file(package: Path) -> None:
    before = code_fingerprint("fpkg.comp")
    rewrite(package / "sub" / "helper.py", "return x", "return x + 1")
    after = code_fingerprint("fpkg.comp")
    assert [f for f in before if before[f] != after[f]] == ["fpkg/sub/helper.py"]


def test_a_module_listing_its_package_counts_every_module_beside_it(package: Path) -> None:
    (package / "sub" / "registry.py").write_text(
        "import importlib, pkgutil\n\n"
        "def load(path):\n"
        "    for m in pkgutil.iter_modules(path):\n"
        "        importlib.import_module(f'fpkg.sub.{m.name}')\n"
    )
    (package / "sub" / "plugin.py").write_text("Y = 2\n")
    assert sorted(code_fingerprint("fpkg.sub.registry")) == [
        "fpkg/__init__.py",
        "fpkg/sub/__init__.py",
        "fpkg/sub/helper.py",
        "fpkg/sub/plugin.py",
        "fpkg/sub/registry.py",
    ]


def test_kdorch_components_see_their_own_libraries_only() -> None:
    distill = code_fingerprint("components.training.distill")
    train = code_fingerprint("components.training.train")
    assert "components/losses/dkd.py" in distill and "components/training/loop.py" in distill
    assert "components/training/loop.py" in train
    assert not [f for f in train if f.startswith("components/losses/")]  # train: CE only
    assert not [f for f in distill if f.startswith("orchestrator/")]  # the framework is not


def test_package_versions() -> None:
    assert set(packages_for("components.training.distill")) == {"torch", "ray"}
    assert "kdorch" in packages_for("someone_elses.component")


def test_a_single_file_module_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's ``my_models.py`` (a model factory beside the pipeline) is fingerprinted too."""
    module = tmp_path / "my_models.py"
    module.write_text("def net():\n    return 1  # one\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = code_fingerprint("my_models")
    assert list(first) == ["my_models.py"]
    rewrite(module, "# one", "# a comment")
    assert code_fingerprint("my_models") == first
    rewrite(module, "return 1", "return 2")
    assert code_fingerprint("my_models") != first
    assert code_fingerprint("my_models.sub") == {}  # a file has no submodules


@pytest.fixture()
def parses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """`code_fingerprint` with a disk cache of its own (``tmp_path/parses.json``), starting as a
    new process would: nothing parsed in memory yet."""
    path = tmp_path / "parses.json"
    monkeypatch.setattr(fingerprint, "_PARSES", ParseCache(path))
    fingerprint._parse.cache_clear()
    yield path
    fingerprint._parse.cache_clear()


def as_a_new_process(path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Forget what this process parsed and read ``path`` afresh; returns the files parsed from
    now on (the disk cache's misses)."""
    monkeypatch.setattr(fingerprint, "_PARSES", ParseCache(path))
    fingerprint._parse.cache_clear()
    parsed: list[Path] = []
    real = fingerprint._parse_source

    def counting(source: bytes, file: Path) -> tuple[str, tuple[str, ...]]:
        parsed.append(file)
        return real(source, file)

    monkeypatch.setattr(fingerprint, "_parse_source", counting)
    return parsed


def test_parses_are_kept_on_disk_for_the_next_process(
    package: Path, parses: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = code_fingerprint("fpkg.comp")
    assert parses.is_file()
    parsed = as_a_new_process(parses, monkeypatch)
    assert code_fingerprint("fpkg.comp") == first
    assert parsed == []  # every file came from the disk cache
    rewrite(package / "sub" / "helper.py", "return x", "return x + 1")
    parsed = as_a_new_process(parses, monkeypatch)
    after = code_fingerprint("fpkg.comp")
    assert parsed == [package / "sub" / "helper.py"]  # the edited file only
    assert [f for f in first if first[f] != after[f]] == ["fpkg/sub/helper.py"]


def test_a_cached_parse_still_lists_the_modules_beside_it_now(
    package: Path, parses: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registry imports whatever its folder holds: a module added later is in its closure
    even when the registry's own parse comes from the disk cache."""
    (package / "sub" / "registry.py").write_text(
        "import importlib, pkgutil\n\n"
        "def load(path):\n"
        "    for m in pkgutil.iter_modules(path):\n"
        "        importlib.import_module(f'fpkg.sub.{m.name}')\n"
    )
    assert "fpkg/sub/plugin.py" not in code_fingerprint("fpkg.sub.registry")
    (package / "sub" / "plugin.py").write_text("Y = 2\n")
    parsed = as_a_new_process(parses, monkeypatch)
    assert "fpkg/sub/plugin.py" in code_fingerprint("fpkg.sub.registry")
    assert parsed == [package / "sub" / "plugin.py"]


def test_an_unreadable_or_unwritable_cache_is_ignored(
    package: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = code_fingerprint("fpkg.comp")
    broken = tmp_path / "parses.json"
    broken.write_text("{not json")
    as_a_new_process(broken, monkeypatch)
    assert code_fingerprint("fpkg.comp") == expected
    assert json.loads(broken.read_text())  # rewritten whole (atomically), valid again
    blocked = tmp_path / "a-file" / "parses.json"  # its folder is a file: cannot be written
    (tmp_path / "a-file").write_text("")
    as_a_new_process(blocked, monkeypatch)
    assert code_fingerprint("fpkg.comp") == expected
