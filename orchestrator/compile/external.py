"""Checks that look outside the pipeline (`Component.check_config`): a missing data file or
column is reported by `kdorch validate`, located in the file, instead of failing the run."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import partial

from orchestrator.compile.graph import Node
from orchestrator.compile.problems import Locator
from orchestrator.component import ConfigIssue
from orchestrator.errors import Problem

log = logging.getLogger("kdorch")


def guarded(node: Node, what: str, check: Callable[[], Iterable[ConfigIssue]]) -> list[ConfigIssue]:
    """``check()``'s issues; a check that breaks is itself an issue, never a traceback."""
    try:
        return list(check())
    except Exception as e:
        log.debug("%s of %s failed", what, node.id, exc_info=True)
        return [
            ConfigIssue(
                f"checking the {what} of component '{node.component.key}' failed: "
                f"{type(e).__name__}: {e}",
                hint="--debug logs the traceback",
            )
        ]


def issue_problem(node: Node, issue: ConfigIssue, locate: Locator, kind: str) -> Problem:
    """``issue`` located in the file: under the step's ``config`` or ``inputs``."""
    path: tuple[str | int, ...] = ("steps", node.spec_index, issue.under)
    if issue.field:  # "features.1" -> ("features", 1): list items are indexes
        path += tuple(int(p) if p.isdigit() else p for p in issue.field.split("."))
    return Problem(kind, issue.message, locate(path), issue.hint)


def config_check_problems(nodes: Iterable[Node], locate: Locator) -> list[Problem]:
    """Every node's `check_config` issues as located problems; a config shared by many matrix
    instances is checked once."""
    checked: set[tuple[str, str]] = set()
    problems: list[Problem] = []
    seen: set[Problem] = set()
    for node in nodes:
        memo = (node.component.key, node.config.model_dump_json())
        if memo in checked:
            continue
        checked.add(memo)
        for issue in guarded(node, "config", partial(node.component.check_config, node.config)):
            problem = issue_problem(node, issue, locate, "data")
            if problem not in seen:
                seen.add(problem)
                problems.append(problem)
    return problems
