"""Each file in tests/resources/bad/ is a broken pipeline; its `# expect:` lines are regexes that
must all appear in the message `kdorch validate` prints (in order, one per line or more).

Hostile input is in the corpus too (an alias bomb, 10,000 nested brackets, bytes that are not
UTF-8, a self-containing alias, a control character): each must give a located message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator import KdorchError, validate

BAD = sorted((Path(__file__).parent.parent / "resources" / "bad").glob("*.yaml"))


def expectations(path: Path) -> list[str]:
    # Bytes: some cases are deliberately not valid UTF-8 (their `# expect:` lines are ASCII).
    text = path.read_bytes().decode("utf-8", errors="replace")
    return [
        line.split("# expect:", 1)[1].strip()
        for line in text.splitlines()
        if line.startswith("# expect:")
    ]


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_pipeline_message(path: Path) -> None:
    patterns = expectations(path)
    assert patterns, f"{path} has no '# expect:' lines"
    with pytest.raises(KdorchError) as info:
        validate(path)
    message = str(info.value)
    position = 0
    for pattern in patterns:
        match = re.compile(pattern, re.MULTILINE).search(message, position)
        assert match, f"/{pattern}/ not found after position {position} in:\n{message}"
        position = match.start()


def test_caret_points_at_the_value() -> None:
    with pytest.raises(KdorchError) as info:
        validate(Path(__file__).parent.parent / "resources" / "bad" / "config_errors.yaml")
    lines = str(info.value).splitlines()
    source = next(i for i, line in enumerate(lines) if "count: three" in line)
    caret = lines[source + 1]
    assert caret.index("^") == lines[source].index("three")
    assert caret.count("^") == len("three")


def test_a_long_source_line_is_located_but_not_quoted() -> None:
    # deep_nesting.yaml's offending line is 20,000 characters: name its column, do not print it.
    with pytest.raises(KdorchError) as info:
        validate(Path(__file__).parent.parent / "resources" / "bad" / "deep_nesting.yaml")
    message = str(info.value)
    assert "deep_nesting.yaml:4:71:" in message and len(message) < 400
