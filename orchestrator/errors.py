"""kdorch's errors: one base class and a few kinds, each saying what, where, and how to fix.

Config and graph problems are collected as `Problem`s and raised together in one
`ValidationFailed`, so a user fixes every mistake of a pipeline file in one go.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

MAX_MESSAGE_CHARS = 4000


class KdorchError(Exception):
    """Base class of every error kdorch raises on purpose."""


@dataclass(frozen=True)
class Location:
    """Where a problem is: a YAML position when the pipeline came from a file, else a spec path."""

    path: str  # e.g. "steps[1] (teacher).config.epochs"
    file: str | None = None
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    source_line: str | None = None
    width: int = 1

    def render(self) -> str:
        if self.file and self.line:
            head = f"{self.file}:{self.line}:{self.column or 1}: {self.path}"
        elif self.file:
            head = f"{self.file}: {self.path}"
        else:
            head = self.path
        if self.source_line is None or self.line is None:
            return head
        gutter = f"{self.line:>5} | "
        caret = " " * (len(gutter) + max((self.column or 1) - 1, 0)) + "^" * max(self.width, 1)
        return f"{head}\n{gutter}{self.source_line}\n{caret}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a pipeline."""

    kind: str  # "config" | "graph" | "resources"
    message: str
    location: Location | None = None
    hint: str | None = None

    def render(self) -> str:
        text = self.message
        if self.location is not None:
            text = f"{self.location.render()}\n  {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class ConfigError(KdorchError):
    """A pipeline file or value that cannot be read or does not fit the schema."""


class GraphError(KdorchError):
    """A pipeline whose steps do not fit together (cycles, ports, types)."""


@dataclass
class ValidationFailed(KdorchError):
    """Every problem found in a pipeline, reported together."""

    problems: Sequence[Problem]
    source: str | None = None
    extra: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.render())

    def render(self) -> str:
        count = len(self.problems)
        where = f" in {self.source}" if self.source else ""
        lines = [p.render() for p in self.problems]
        lines.append(f"{count} error{'s' if count != 1 else ''}{where}")
        return "\n\n".join(lines)

    def __str__(self) -> str:
        return self.render()


class ArtifactError(KdorchError):
    """An artifact that is missing, corrupt (hash mismatch) or unreachable."""


class StorageError(ArtifactError):
    """The artifact store cannot be reached or written."""


class ClusterUnreachable(KdorchError):
    """A Ray cluster address that answers nothing, or not as Ray does (nothing ran)."""


class ComponentError(KdorchError):
    """A component's own code raised; the original exception is the ``__cause__``."""

    def __init__(self, step_id: str, component: str, key: str | None, cause: BaseException):
        self.step_id = step_id
        self.component = component
        self.key = key
        self.cause_type = type(cause).__name__
        self.cause_message = str(cause)
        message = (
            f"step '{step_id}' (component '{component}', key {key[:16] if key else '-'}) failed: "
            f"{self.cause_type}: {self.cause_message}"
        )
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[:MAX_MESSAGE_CHARS] + " ... (full text on __cause__)"
        super().__init__(message)


class RunFailed(KdorchError):
    """A run finished with failed steps; ``record`` holds the whole account."""

    def __init__(self, record: object, failures: Sequence[ComponentError]):
        self.record = record
        self.failures = list(failures)
        lines = [str(f) for f in self.failures]
        super().__init__(f"{len(lines)} step(s) failed:\n" + "\n".join(lines))


def did_you_mean(name: str, candidates: Sequence[str]) -> str | None:
    """A 'did you mean ...?' hint for an unknown name, or None when nothing is close."""
    import difflib

    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
