"""The project's documents — the README (the front page) and the guides in docs/ — read the way
the tests that execute and check them need: fenced examples with where they are, relative links,
heading anchors."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCUMENTS: tuple[Path, ...] = (README, *sorted((ROOT / "docs").glob("*.md")))

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.DOTALL | re.MULTILINE)
# [text](target): the target up to whitespace or ')'; images (![..](..)) match too.
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", flags=re.IGNORECASE)  # https:, mailto:, ...
_TOP_FOLDERS = "components|orchestrator|schemas|pipelines|tests|infra|benchmarks|docs"
_CODE_PATH = re.compile(rf"`((?:{_TOP_FOLDERS})/[\w./-]*)`")


@dataclass(frozen=True)
class Example:
    """One fenced block of a document: its language, its text and where it starts."""

    document: Path
    line: int  # of the opening fence, 1-based
    language: str
    text: str

    @property
    def where(self) -> str:
        """`docs/tune.md:12`, for test ids and messages."""
        return f"{self.document.relative_to(ROOT)}:{self.line}"

    def is_pipeline(self) -> bool:
        """A whole pipeline (not a fragment of one): YAML that starts with its name."""
        return self.language == "yaml" and self.text.startswith("name:")


@dataclass(frozen=True)
class Link:
    """A relative link of a document: the file it names and the anchor, if any."""

    document: Path
    line: int
    target: str

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"

    @property
    def path(self) -> Path:
        return (self.document.parent / self.target.partition("#")[0]).resolve()

    @property
    def anchor(self) -> str:
        return self.target.partition("#")[2]


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def examples(document: Path) -> list[Example]:
    """Every fenced block of a document, in order."""
    text = document.read_text()
    return [
        Example(document, _line_of(text, m.start()), m.group(1), m.group(2))
        for m in _FENCE.finditer(text)
    ]


def all_examples(language: str) -> list[Example]:
    """The fenced blocks of one language across the README and every guide."""
    return [e for document in DOCUMENTS for e in examples(document) if e.language == language]


def relative_links(document: Path) -> list[Link]:
    """The links of a document's prose (not inside fenced blocks) that name a file of the
    repository; an anchor-only link (`#section`) names the document itself."""
    text = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), document.read_text())
    links = []
    for m in _LINK.finditer(text):
        target = m.group(1)
        if _EXTERNAL.match(target):
            continue
        if target.startswith("#"):
            target = document.name + target
        links.append(Link(document, _line_of(text, m.start()), target))
    return links


def code_paths(document: Path) -> list[tuple[int, str]]:
    """Repository paths the prose names in code spans (`components/training/distill.py`), with
    their lines; placeholders (`components/<library>/`) are not paths and are left out."""
    text = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), document.read_text())
    return [(_line_of(text, m.start()), m.group(1)) for m in _CODE_PATH.finditer(text)]


def anchors(document: Path) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings: lower case, punctuation dropped,
    spaces as hyphens (`## Where Ray runs` -> `where-ray-runs`)."""
    text = _FENCE.sub("", document.read_text())
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", text, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}
