"""Code fingerprints: what a component's behaviour depends on, for its cache keys.

A component's fingerprint maps every source file of ours that it runs to a hash of that file's
*normalised* code: the module is parsed, docstrings and ``description=`` texts are dropped, and
the tree is printed back (`ast.unparse`), so comments, docstrings, help texts and formatting do
not count while any change to what the code does does. "Ours" is the packages ``components`` and
``schemas`` plus the component's own top-level package (a plugin's, or a top-level single-file
module: a user's model factory, `components.models.identity`); the files are the
component's module and, transitively, every module of ours it imports — at module level or
inside functions, found by reading the source (nothing is imported, so fingerprinting needs no
torch). A module that lists its own package with ``pkgutil.iter_modules`` (a registry that
imports every module of its package, as `components.losses.registry` does) counts as importing
each module beside it. The orchestrator itself is not part of it: how it runs steps does not
change what a step computes, and `orchestrator.storage.cache.KEY_FORMAT` covers the key recipe.

Third-party code counts through package versions (`PACKAGES`: torch and ray, plus kdorch's own
version for a component that is not part of kdorch).

Parsing and printing back ~120 files costs a process ~0.3-0.5 s, which every `kdorch run` paid
before its first step. What a file's parse gives (its normalised hash and the names it imports)
is a function of its bytes, this module's code and the Python version, so it is kept on disk
between processes (`ParseCache`, in ``$XDG_CACHE_HOME/kdorch``, else ``~/.cache/kdorch``), keyed
by the sha256 of those three: an edited file, a changed normaliser or another Python misses and is
parsed again. The cache is only a shortcut; it is ignored when it cannot be read or written.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

#: Packages whose version is part of every fingerprint (their code decides what a step computes).
PACKAGES = ("torch", "ray")
OUR_PACKAGES = ("components", "schemas")


@dataclass(frozen=True)
class Fingerprint:
    code: dict[str, str]  # "components/losses/dkd.py" -> hash of its normalised code
    packages: dict[str, str]  # "torch" -> "2.13.0"


class _Normalise(ast.NodeTransformer):
    """Drops what does not change behaviour: docstrings and ``description=`` help texts."""

    def _strip_docstring(self, node: ast.AST) -> ast.AST:
        body = getattr(node, "body", None)
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
        self.generic_visit(node)
        return node

    visit_Module = _strip_docstring
    visit_ClassDef = _strip_docstring
    visit_FunctionDef = _strip_docstring
    visit_AsyncFunctionDef = _strip_docstring

    def visit_Call(self, node: ast.Call) -> ast.AST:
        node.keywords = [k for k in node.keywords if k.arg != "description"]
        self.generic_visit(node)
        return node


@dataclass(frozen=True)
class _Module:
    name: str
    file: Path
    is_package: bool


def _package_root(top: str) -> Path | None:
    """The folder of a top-level package, or the file of a top-level single-file module (a
    user's ``my_models.py``), found without importing it."""
    module = sys.modules.get(top)
    spec = module.__spec__ if module is not None else importlib.util.find_spec(top)
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    if spec.origin and spec.origin.endswith(".py"):
        return Path(spec.origin)
    return None


def _locate(name: str, roots: dict[str, Path | None]) -> _Module | None:
    parts = name.split(".")
    if parts[0] not in roots:
        return None
    root = roots[parts[0]]
    if root is None:
        return None
    if root.is_file():  # a single-file module has no submodules
        return _Module(name, root, False) if len(parts) == 1 else None
    base = root.joinpath(*parts[1:])
    if (base / "__init__.py").is_file():
        return _Module(name, base / "__init__.py", True)
    if base.with_suffix(".py").is_file():
        return _Module(name, base.with_suffix(".py"), False)
    return None


def _lists_its_package(node: ast.AST) -> bool:
    """Whether ``node`` is a call of ``pkgutil.iter_modules`` (module discovery)."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "iter_modules"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "pkgutil"
    )


def _siblings(file: Path) -> list[str]:
    """The modules and packages beside ``file``, as relative names (``.name``)."""
    names = [p.stem for p in file.parent.glob("*.py") if p.name != "__init__.py"]
    names += [p.parent.name for p in file.parent.glob("*/__init__.py")]
    return sorted(f".{name}" for name in names)


class ParseCache:
    """`_parse`'s results across processes: one JSON file mapping the sha256 of (a file's bytes,
    this module's code, the Python version) to [normalised hash, imported names]. Read once per
    process, written back (atomically, merged with what other processes wrote meanwhile) when a
    fingerprint parsed something new; the oldest entries beyond `LIMIT` are dropped."""

    LIMIT = 4096

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, list[Any]] | None = None
        self._new: dict[str, list[Any]] = {}
        self._salt = hashlib.sha256(Path(__file__).read_bytes() + sys.version.encode()).digest()

    @staticmethod
    def default_path() -> Path:
        root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(root) / "kdorch" / "code-parses.json"

    def key(self, source: bytes) -> str:
        return hashlib.sha256(self._salt + source).hexdigest()

    def _read(self) -> dict[str, list[Any]]:
        if self.path is None:
            return {}
        try:
            entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return entries if isinstance(entries, dict) else {}

    def get(self, key: str) -> tuple[str, tuple[str, ...]] | None:
        if self._entries is None:
            self._entries = self._read()
        entry = self._new.get(key) or self._entries.get(key)
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            return None
        return entry[0], tuple(entry[1])

    def put(self, key: str, value: tuple[str, tuple[str, ...]]) -> None:
        self._new[key] = [value[0], list(value[1])]

    def flush(self) -> None:
        """Write what this process parsed (merged with the file as it is now), if anything."""
        if not self._new or self.path is None:
            return
        entries = {**self._read(), **self._new}
        entries = dict(list(entries.items())[-self.LIMIT :])
        with contextlib.suppress(OSError):  # a temp file renamed, as `LocalCluster.write` does
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            temp.write_text(json.dumps(entries, separators=(",", ":")))
            temp.replace(self.path)
        self._entries, self._new = entries, {}


_PARSES = ParseCache(ParseCache.default_path())


@cache
def _parse(file: Path, stamp: tuple[int, int]) -> tuple[str, tuple[str, ...]]:
    """(hash of the normalised code, every module name it imports or may import, relative
    names with their leading dots); from `_PARSES` when this very code was parsed before."""
    source = file.read_bytes()
    key = _PARSES.key(source)
    parsed = _PARSES.get(key)
    if parsed is None:
        parsed = _parse_source(source, file)
        _PARSES.put(key, parsed)
    digest, imported = parsed
    if SIBLINGS in imported:  # the folder's listing, as it is now (not part of the bytes)
        imported = tuple(n for n in imported if n != SIBLINGS) + tuple(_siblings(file))
    return digest, imported


#: Stands, among a parse's imports, for every module beside the file (`_lists_its_package`).
SIBLINGS = "<siblings>"


def _parse_source(source: bytes, file: Path) -> tuple[str, tuple[str, ...]]:
    tree = ast.parse(source, filename=str(file))
    imported: list[str] = []
    for node in ast.walk(tree):
        if _lists_its_package(node):
            imported.append(SIBLINGS)
        elif isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            imported.append(f"{'.' * node.level}{node.module or ''}")
            # `from pkg import sub` may name a submodule: record both readings.
            imported += [f"{'.' * node.level}{node.module or ''}.{a.name}" for a in node.names]
    normalised = ast.unparse(_Normalise().visit(tree))
    return hashlib.sha256(normalised.encode()).hexdigest(), tuple(imported)


def _absolute(name: str, module: _Module) -> str:
    """Resolve a relative import (leading dots) against ``module``."""
    level = len(name) - len(name.lstrip("."))
    if not level:
        return name
    package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    base = package[: len(package) - (level - 1)]
    rest = name[level:].strip(".")
    return ".".join([*base, rest] if rest else base)


def code_fingerprint(module_name: str) -> dict[str, str]:
    """Hash of every source file of ours that ``module_name`` runs (see the module docstring)."""
    top = module_name.split(".")[0]
    roots = {name: _package_root(name) for name in dict.fromkeys((*OUR_PACKAGES, top))}
    start = _locate(module_name, roots)
    if start is None:
        return {}
    code: dict[str, str] = {}
    queue = [start]
    seen = {start.name}
    while queue:
        module = queue.pop()
        stat = module.file.stat()
        digest, imports = _parse(module.file, (stat.st_mtime_ns, stat.st_size))
        package = module.name.split(".")[0]
        root = roots[package]
        assert root is not None
        where = root.name if root.is_file() else f"{package}/{module.file.relative_to(root)}"
        code[Path(where).as_posix()] = digest
        names = {_absolute(n, module) for n in imports}
        # Importing a.b.c runs a/__init__.py and a/b/__init__.py too.
        for name in list(names):
            parts = name.split(".")
            names.update(".".join(parts[:i]) for i in range(1, len(parts)))
        for name in sorted(names):
            if name in seen:
                continue
            seen.add(name)
            found = _locate(name, roots)
            if found is not None:
                queue.append(found)
    _PARSES.flush()
    return dict(sorted(code.items()))


@cache
def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def packages_for(module_name: str) -> dict[str, str]:
    """Versions of the third-party packages that decide what a component computes."""
    names = list(PACKAGES)
    if module_name.split(".")[0] not in OUR_PACKAGES:
        names.append("kdorch")
    return {n: package_version(n) for n in names}


def fingerprint(module_name: str) -> Fingerprint:
    return Fingerprint(code_fingerprint(module_name), packages_for(module_name))
