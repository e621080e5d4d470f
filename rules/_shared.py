"""Helpers that several rule modules use (this module defines no rule).

Most are questions about the syntax tree alone; `decorator_qualnames` and `spawns_task` also
ask the semantic model what names mean.
"""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from bot.semantics import Semantics
from bot.walker import iter_children, iter_descendants

# Calls that start an asyncio task, after import resolution.
TASK_SPAWNERS = frozenset(
    {
        "asyncio.create_task",
        "asyncio.ensure_future",
        "asyncio.tasks.create_task",
        "asyncio.tasks.ensure_future",
    }
)
# Definitions whose bodies run at another time than the code around them.
OPAQUE = (cst.FunctionDef, cst.Lambda, cst.ClassDef)

# (a `Name`, its ancestors from the search root down to its parent)
Occurrence = tuple[cst.Name, tuple[cst.CSTNode, ...]]


# ---------------------------------------------------------------------- expressions
def one_line(module: cst.Module, node: cst.CSTNode) -> str:
    """The node's source with every run of whitespace (newlines too) made one space."""
    return " ".join(module.code_for_node(node).split())


def dotted(expr: cst.CSTNode) -> str | None:
    """`a.b.c` as written, for a chain of names and attributes; None for anything else."""
    if isinstance(expr, cst.Name):
        return expr.value
    if isinstance(expr, cst.Attribute):
        base = dotted(expr.value)
        return f"{base}.{expr.attr.value}" if base is not None else None
    return None


def is_none(expr: cst.BaseExpression) -> bool:
    return isinstance(expr, cst.Name) and expr.value == "None"


def positional_args(call: cst.Call) -> list[cst.Arg]:
    """The arguments passed by position (not `*args`, `**kwargs` or keywords)."""
    return [arg for arg in call.args if arg.keyword is None and not arg.star]


# ---------------------------------------------------------------------- assignments
def target_names(target: cst.BaseExpression) -> Iterator[str]:
    """The names an assignment target binds: `a`, `a, (b, *c)`, `[a, b]` (attributes and
    subscripts bind none)."""
    if isinstance(target, cst.Name):
        yield target.value
    elif isinstance(target, (cst.Tuple, cst.List)):
        for element in target.elements:
            yield from target_names(element.value)
    elif isinstance(target, cst.StarredElement):
        yield from target_names(target.value)


def assign_targets(node: cst.Assign | cst.AnnAssign | cst.AugAssign) -> list[cst.BaseExpression]:
    """The targets of an assignment statement (`a = b = ...` has two)."""
    if isinstance(node, cst.Assign):
        return [t.target for t in node.targets]
    return [node.target]


def declares_nonlocal(function: cst.FunctionDef, name: str) -> bool:
    """`nonlocal name` anywhere in the function's body."""
    return any(
        isinstance(node, cst.Nonlocal) and any(item.name.value == name for item in node.names)
        for node in iter_descendants(function.body)
    )


# ---------------------------------------------------------------------- walking
def own_nodes(root: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """`root` and its descendants, not entering nested functions, lambdas or classes (nothing
    at all when `root` is one)."""
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, OPAQUE):
            continue
        yield node
        stack.extend(iter_children(node))


def name_occurrences(root: cst.CSTNode, names: set[str]) -> Iterator[Occurrence]:
    """Every `Name` in `names` below `root`, with its ancestors (root first), in source order."""
    stack: list[tuple[cst.CSTNode, tuple[cst.CSTNode, ...]]] = [(root, ())]
    while stack:
        node, parents = stack.pop()
        if isinstance(node, cst.Name) and node.value in names:
            yield node, parents
        chain = (*parents, node)
        children = list(iter_children(node))
        children.reverse()
        stack.extend((child, chain) for child in children)


# ---------------------------------------------------------------------- meanings
def decorator_qualnames(semantics: Semantics, function: cst.FunctionDef) -> Iterator[str | None]:
    """The qualified name of each decorator, `@d` and `@d(...)` alike (None when unknown)."""
    for decorator in function.decorators:
        expr = decorator.decorator
        yield semantics.qualified_name(expr.func if isinstance(expr, cst.Call) else expr)


def spawns_task(semantics: Semantics, call: cst.Call) -> bool:
    """`asyncio.create_task(...)`, `asyncio.ensure_future(...)` or `loop.create_task(...)`."""
    if semantics.qualified_name(call.func) in TASK_SPAWNERS:
        return True
    func = call.func
    return (
        isinstance(func, cst.Attribute)
        and func.attr.value == "create_task"
        and semantics.is_event_loop(func.value)
    )
