"""A safe YAML loader that also bounds what a small file can cost to read.

`yaml.SafeLoader` refuses tags that run code, but not input that is merely expensive:

- an *alias bomb* (nine anchors, each a list of nine aliases of the previous one) is a few
  hundred bytes that stand for 9^9 values; composing it is cheap because aliases share nodes,
  but everything that walks the data afterwards (source maps, validation, cache keys) expands it;
- ten thousand nested ``[`` make PyYAML's recursive composer hit Python's recursion limit;
- an alias to a value that contains it (``a: &a [*a]``) builds a list that contains itself.

`BoundedLoader` counts while it composes (the parser is lazy, so it stops at the first node
past a limit without reading the rest) and raises `YAMLLimitExceeded`, a marked YAML error
that points at that node. The limits are far above what a pipeline file needs.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_DEPTH = 64
"""Nesting levels of collections; a pipeline file uses about six."""

MAX_ALIASES = 10_000
"""``*alias`` nodes in one file."""

MAX_ALIAS_VALUES = 100_000
"""Values (scalars and collections) that all aliases together stand for once expanded."""


class YAMLLimitExceeded(yaml.MarkedYAMLError):
    """Well-formed YAML that kdorch refuses to expand (too deep, too many aliases, a cycle)."""


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


class BoundedLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` with limits on nesting depth and alias expansion."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0
        self._alias_values = 0
        # Expanded size of every finished node, by id (nodes stay alive in the tree meanwhile).
        # A node reached through an alias before its size is known is one of its own ancestors.
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            return self._compose_alias(parent, index)
        if self._depth >= MAX_DEPTH:
            raise self._refuse(
                f"nesting deeper than {MAX_DEPTH} levels (a pipeline needs a handful); "
                "is a bracket or brace left open?"
            )
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        # Children were composed (or aliased) before their parent finishes: sizes are known.
        self._sizes[id(node)] = 1 + sum(self._sizes[id(c)] for c in _children(node))
        return node

    def _compose_alias(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        node = super().compose_node(parent, index)  # raises for an undefined alias
        size = self._sizes.get(id(node))
        if size is None:
            raise self._refuse(
                f"alias '*{event.anchor}' refers to a value that contains it, which would "
                "make a value that contains itself; copy the parts you need instead",
                event,
            )
        self._aliases += 1
        self._alias_values += size
        if self._aliases > MAX_ALIASES:
            raise self._refuse(
                f"more than {MAX_ALIASES:,} aliases; write the values out or use fewer aliases",
                event,
            )
        if self._alias_values > MAX_ALIAS_VALUES:
            raise self._refuse(
                f"aliases expand to more than {MAX_ALIAS_VALUES:,} values (this "
                f"'*{event.anchor}' alone stands for {size:,}); refusing to expand what looks "
                "like an alias bomb — write the values out or use fewer, smaller aliases",
                event,
            )
        return node

    def _refuse(self, message: str, event: yaml.Event | None = None) -> YAMLLimitExceeded:
        mark = (event or self.peek_event()).start_mark
        return YAMLLimitExceeded(problem=message, problem_mark=mark)


def unshare(value: Any) -> Any:
    """A copy in which no dict or list appears twice.

    The constructor gives every alias the very object of its anchor, so editing the data in
    place (``--set``, profiles) through one path would change every place that uses the alias.
    Depth and total size are bounded by the loader's limits.
    """
    if isinstance(value, dict):
        return {k: unshare(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unshare(v) for v in value]
    return value


def load_value(text: str) -> Any:
    """One YAML value (a `--set` value, say) read with the same limits as a file."""
    loader = BoundedLoader(text)
    try:
        return unshare(loader.get_single_data())
    finally:
        loader.dispose()
