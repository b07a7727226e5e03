"""Drawing the DAG: Mermaid and Graphviz dot text, PNG through Graphviz when it is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping

from orchestrator.compile.graph import Graph
from orchestrator.errors import KdorchError

_STYLE = {"cached": "#d5f5d5", "run": "#ffe8c2"}


def _mermaid_id(step_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", step_id)


def to_mermaid(graph: Graph, status: Mapping[str, str] | None = None) -> str:
    lines = ["flowchart LR"]
    for node in graph.nodes.values():
        label = f"{node.id}<br/><i>{node.component.key}</i>"
        lines.append(f'  {_mermaid_id(node.id)}["{label}"]')
    for producer, consumer, label in graph.edges():
        lines.append(f'  {_mermaid_id(producer)} -->|"{label}"| {_mermaid_id(consumer)}')
    for node_id, state in (status or {}).items():
        if state in _STYLE:
            lines.append(f"  style {_mermaid_id(node_id)} fill:{_STYLE[state]}")
    return "\n".join(lines) + "\n"


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(graph: Graph, status: Mapping[str, str] | None = None) -> str:
    lines = [
        f"digraph {_dot_quote(graph.spec.name)} {{",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fillcolor=white];',
    ]
    for node in graph.nodes.values():
        fill = _STYLE.get((status or {}).get(node.id, ""), "white")
        label = f"{node.id}\\n({node.component.key})"
        lines.append(f'  {_dot_quote(node.id)} [label="{label}", fillcolor="{fill}"];')
    for producer, consumer, label in graph.edges():
        lines.append(
            f"  {_dot_quote(producer)} -> {_dot_quote(consumer)} [label={_dot_quote(label)}];"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_png(graph: Graph, status: Mapping[str, str] | None = None) -> bytes:
    dot = shutil.which("dot")
    if dot is None:
        raise KdorchError(
            "PNG output needs Graphviz's `dot` (apt install graphviz / brew install graphviz); "
            "use --format mermaid or --format dot for text"
        )
    result = subprocess.run(
        [dot, "-Tpng"], input=to_dot(graph, status).encode(), capture_output=True, check=False
    )
    if result.returncode != 0:
        raise KdorchError(f"graphviz failed: {result.stderr.decode(errors='replace')}")
    return result.stdout
