"""A fast traversal of libcst trees.

libcst's own `visit` rebuilds every node on the way back up, even for read-only visitors; on our
measurements that costs about as much as parsing. We only read, so we walk the dataclass fields
directly and skip the fields that hold nothing but whitespace and punctuation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import libcst as cst

# Fields that only ever hold whitespace, comments or punctuation tokens.
_SKIPPED_FIELDS = frozenset(
    {
        "lpar", "rpar", "lbracket", "rbracket", "lbrace", "rbrace", "comma", "semicolon", "colon",
        "equal", "star", "dot", "relative", "header", "footer", "leading_lines",
        "lines_after_decorators", "trailing_whitespace", "empty_lines", "newline", "operator",
        "asynchronous", "whitespace", "whitespace_before", "whitespace_after", "import_alias_comma",
        "evaluated_value", "prefix", "quote", "encoding", "default_indent", "default_newline",
        "has_trailing_newline", "__slots__",
    }
)  # fmt: skip

# Source order matters to the semantic model (decorators before the body they decorate).
_ORDER_OVERRIDES: dict[type[cst.CSTNode], tuple[str, ...]] = {
    cst.FunctionDef: ("decorators", "name", "params", "returns", "body"),
    cst.ClassDef: ("decorators", "name", "bases", "keywords", "body"),
    cst.Assign: ("value", "targets"),
    cst.AnnAssign: ("annotation", "value", "target"),
    cst.AugAssign: ("value", "target"),
}

_fields_cache: dict[type[cst.CSTNode], tuple[str, ...]] = {}
# Every concrete libcst node class. `isinstance(x, cst.CSTNode)` goes through the ABC machinery
# and was the walk's single largest cost; a set lookup on the exact type is several times cheaper.
_NODE_TYPES: frozenset[type] = frozenset(
    value
    for value in vars(cst).values()
    if isinstance(value, type) and issubclass(value, cst.CSTNode)
)
_SEQUENCES = (list, tuple)


def child_fields(cls: type[cst.CSTNode]) -> tuple[str, ...]:
    names = _fields_cache.get(cls)
    if names is None:
        names = _ORDER_OVERRIDES.get(cls) or tuple(
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in _SKIPPED_FIELDS and not f.name.startswith("whitespace")
        )
        _fields_cache[cls] = names
    return names


def iter_children(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    for name in child_fields(type(node)):
        value = getattr(node, name, None)
        kind = type(value)
        if kind in _NODE_TYPES:
            yield value  # type: ignore[misc]
        elif kind in _SEQUENCES:
            for item in value:  # type: ignore[union-attr]
                if type(item) in _NODE_TYPES:
                    yield item


def iter_descendants(root: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """`root` and everything below it, depth first in source order."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        children = list(iter_children(node))
        children.reverse()
        stack.extend(children)


Handler = Callable[[cst.CSTNode], None]


def walk(
    root: cst.CSTNode,
    on_enter: Callable[[cst.CSTNode], None],
    on_leave: Callable[[cst.CSTNode], None],
) -> None:
    """Depth-first traversal calling `on_enter` before and `on_leave` after each node's children.

    Iterative, so deeply nested expressions cannot hit the recursion limit; a marker object on
    the stack stands for "leave the node below it".
    """
    leave_marker = _LEAVE
    node_types = _NODE_TYPES
    sequences = _SEQUENCES
    stack: list[object] = [root]
    pop = stack.pop
    push = stack.append
    while stack:
        item = pop()
        if item is leave_marker:
            on_leave(pop())  # type: ignore[arg-type]
            continue
        node: cst.CSTNode = item  # type: ignore[assignment]
        on_enter(node)
        push(node)
        push(leave_marker)
        children: list[cst.CSTNode] = []
        for name in child_fields(type(node)):
            value = getattr(node, name, None)
            kind = type(value)
            if kind in node_types:
                children.append(value)  # type: ignore[arg-type]
            elif kind in sequences:
                children.extend(item for item in value if type(item) in node_types)  # type: ignore[union-attr]
        children.reverse()
        stack.extend(children)


_LEAVE = object()
