"""The README and the guides in docs/ point at things that exist: every relative link names a
file or folder of the repository (and a heading, when it has an anchor), and every repository
path the prose names in a code span is there."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.docs import DOCUMENTS, README, ROOT, Link, anchors, code_paths, relative_links

LINKS = [link for document in DOCUMENTS for link in relative_links(document)]


def test_the_readme_links_to_every_guide() -> None:
    linked = {link.path for link in relative_links(README)}
    guides = set((ROOT / "docs").glob("*.md"))
    assert guides, "docs/ holds no guide"
    assert guides <= linked, f"guides the README does not link: {sorted(guides - linked)}"


@pytest.mark.parametrize("link", LINKS, ids=[f"{link.where}:{link.target}" for link in LINKS])
def test_relative_links_resolve(link: Link) -> None:
    assert link.path.exists(), f"{link.where}: {link.target} names no file"
    if link.anchor:
        assert link.path.suffix == ".md", f"{link.where}: an anchor into a non-Markdown file"
        assert link.anchor in anchors(link.path), (
            f"{link.where}: {link.path.name} has no heading #{link.anchor}"
        )


@pytest.mark.parametrize("document", DOCUMENTS, ids=[str(d.relative_to(ROOT)) for d in DOCUMENTS])
def test_paths_named_in_the_prose_exist(document: Path) -> None:
    missing = [
        f"{line}: {path}" for line, path in code_paths(document) if not (ROOT / path).exists()
    ]
    assert not missing, f"{document.relative_to(ROOT)}: paths that do not exist: {missing}"
