"""Checks that look outside the pipeline (`Component.check_config`): a missing data file or
column is reported by `kdorch validate`, located in the file, instead of failing the run."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from orchestrator.compile.graph import Node
from orchestrator.compile.problems import Locator
from orchestrator.component import ConfigIssue
from orchestrator.errors import Problem

log = logging.getLogger("kdorch")


def _issues(node: Node) -> list[ConfigIssue]:
    try:
        return list(node.component.check_config(node.config))
    except Exception as e:  # a check that breaks is itself a problem, never a traceback
        log.debug("check_config of %s failed", node.id, exc_info=True)
        return [
            ConfigIssue(
                f"checking the config of component '{node.component.key}' failed: "
                f"{type(e).__name__}: {e}",
                hint="--debug logs the traceback",
            )
        ]


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
        for issue in _issues(node):
            path: tuple[str | int, ...] = ("steps", node.spec_index, "config")
            if issue.field:  # "features.1" -> ("features", 1): list items are indexes
                path += tuple(int(p) if p.isdigit() else p for p in issue.field.split("."))
            problem = Problem("data", issue.message, locate(path), issue.hint)
            if problem not in seen:
                seen.add(problem)
                problems.append(problem)
    return problems
