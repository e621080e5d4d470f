"""Path facts within one function body: a statement-level control-flow graph and a solver.

Several rules ask "what happened earlier on this path": was the session committed before this
attribute read (AG303), did it already start a transaction before this `begin()` (AG302), was
this value checked for None before it is dereferenced (AG702), were the ids sorted before the
locks (AG601). They all ask the same graph, built once per function and cached, and describe
their facts as a transfer function; the solver here runs it to a fixed point.

The graph is deliberately simple: one node per simple statement or compound-statement header,
edges for branches, loops (with `break`/`continue`), `try`/`except`/`finally`, early
`return`/`raise`, and `match`. Branch edges carry their condition, so a rule can learn from
`if x is None: return`. Nested functions and classes are opaque single nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import libcst as cst

from bot.walker import iter_descendants

Facts = TypeVar("Facts")


@dataclass(frozen=True)
class Condition:
    """The branch an edge takes: `test` evaluated to `truth`."""

    test: cst.BaseExpression
    truth: bool


@dataclass(eq=False)
class FlowNode:
    index: int
    node: cst.CSTNode | None  # a small statement, a compound header's node, or None (entry/exit)
    kind: str  # "entry", "exit", "stmt", "if", "while", "for", "with", "try", "match", "def"


@dataclass
class FlowGraph:
    nodes: list[FlowNode] = field(default_factory=list)
    edges: dict[int, list[tuple[int, Condition | None]]] = field(default_factory=dict)
    _owner: dict[int, int] = field(default_factory=dict)  # id(cst node) -> flow node index
    _indexed: bool = False

    @property
    def entry(self) -> FlowNode:
        return self.nodes[0]

    @property
    def exit(self) -> FlowNode:
        return self.nodes[1]

    def add(self, node: cst.CSTNode | None, kind: str) -> FlowNode:
        flow_node = FlowNode(len(self.nodes), node, kind)
        self.nodes.append(flow_node)
        self.edges[flow_node.index] = []
        if node is not None:
            self._owner[id(node)] = flow_node.index
        return flow_node

    def link(self, source: FlowNode, target: FlowNode, condition: Condition | None = None) -> None:
        self.edges[source.index].append((target.index, condition))

    def successors(self, node: FlowNode) -> Iterator[tuple[FlowNode, Condition | None]]:
        for index, condition in self.edges[node.index]:
            yield self.nodes[index], condition

    def node_for(self, statement: cst.CSTNode) -> FlowNode | None:
        """The flow node of a small statement or compound statement."""
        index = self._owner.get(id(statement))
        return None if index is None else self.nodes[index]

    def containing(self, target: cst.CSTNode) -> FlowNode | None:
        """The flow node whose statement contains `target` (any expression in the function)."""
        if not self._indexed:
            self._indexed = True
            for flow_node in self.nodes:
                if flow_node.node is None or flow_node.kind == "def":
                    continue
                for part in _own_parts(flow_node):
                    for descendant in iter_descendants(part):
                        self._owner.setdefault(id(descendant), flow_node.index)
        index = self._owner.get(id(target))
        return None if index is None else self.nodes[index]


def own_expressions(flow_node: FlowNode) -> list[cst.CSTNode]:
    """The parts of a flow node that execute at that node (a header's test, not its body)."""
    return list(_own_parts(flow_node))


def _own_parts(flow_node: FlowNode) -> Iterator[cst.CSTNode]:
    node = flow_node.node
    if node is None:
        return
    if isinstance(node, (cst.If, cst.While)):
        yield node.test
    elif isinstance(node, cst.For):
        yield node.target
        yield node.iter
    elif isinstance(node, cst.With):
        yield from node.items
    elif isinstance(node, cst.Match):
        yield node.subject
    elif isinstance(node, (cst.Try, cst.TryStar, cst.FunctionDef, cst.ClassDef)):
        return
    elif isinstance(node, cst.ExceptHandler):
        if node.type is not None:
            yield node.type
    else:
        yield node


# ---------------------------------------------------------------------- building
@dataclass
class _Targets:
    """Where `return`/`raise`/`break`/`continue` go from the current position."""

    exit: FlowNode
    raise_to: list[FlowNode]
    break_to: FlowNode | None = None
    continue_to: FlowNode | None = None


def build_graph(function: cst.FunctionDef | cst.Lambda) -> FlowGraph:
    graph = FlowGraph()
    entry = graph.add(None, "entry")
    exit_node = graph.add(None, "exit")
    if isinstance(function, cst.Lambda):
        body = graph.add(function.body, "stmt")
        graph.link(entry, body)
        graph.link(body, exit_node)
        return graph
    targets = _Targets(exit_node, [exit_node])
    ends = _block(graph, function.body, [(entry, None)], targets)
    for end, condition in ends:
        graph.link(end, exit_node, condition)
    return graph


Frontier = list[tuple[FlowNode, Condition | None]]


def _connect(graph: FlowGraph, frontier: Frontier, node: FlowNode) -> None:
    for previous, condition in frontier:
        graph.link(previous, node, condition)


def _block(
    graph: FlowGraph,
    block: cst.BaseSuite | Sequence[cst.BaseStatement],
    frontier: Frontier,
    targets: _Targets,
) -> Frontier:
    statements: Sequence[cst.CSTNode]
    if isinstance(block, cst.IndentedBlock):
        statements = block.body
    elif isinstance(block, cst.SimpleStatementSuite):
        statements = [block]
    else:
        statements = block  # type: ignore[assignment]
    for statement in statements:
        frontier = _statement(graph, statement, frontier, targets)
    return frontier


def _statement(
    graph: FlowGraph, statement: cst.CSTNode, frontier: Frontier, targets: _Targets
) -> Frontier:
    if isinstance(statement, (cst.SimpleStatementLine, cst.SimpleStatementSuite)):
        for small in statement.body:
            node = graph.add(small, "stmt")
            graph._owner.setdefault(id(statement), node.index)
            _connect(graph, frontier, node)
            frontier = _jump(graph, small, node, targets)
        return frontier
    if isinstance(statement, cst.If):
        return _if(graph, statement, frontier, targets)
    if isinstance(statement, (cst.While, cst.For)):
        return _loop(graph, statement, frontier, targets)
    if isinstance(statement, cst.With):
        node = graph.add(statement, "with")
        _connect(graph, frontier, node)
        return _block(graph, statement.body, [(node, None)], targets)
    if isinstance(statement, (cst.Try, cst.TryStar)):
        return _try(graph, statement, frontier, targets)
    if isinstance(statement, cst.Match):
        node = graph.add(statement, "match")
        _connect(graph, frontier, node)
        ends: Frontier = [(node, None)]  # no case may match
        for case in statement.cases:
            ends += _block(graph, case.body, [(node, None)], targets)
        return ends
    # Nested function or class definitions: one opaque node.
    node = graph.add(statement, "def")
    _connect(graph, frontier, node)
    return [(node, None)]


def _jump(graph: FlowGraph, small: cst.CSTNode, node: FlowNode, targets: _Targets) -> Frontier:
    if isinstance(small, cst.Return):
        graph.link(node, targets.exit)
        return []
    if isinstance(small, cst.Raise):
        for handler in targets.raise_to:
            graph.link(node, handler)
        return []
    if isinstance(small, cst.Break) and targets.break_to is not None:
        graph.link(node, targets.break_to)
        return []
    if isinstance(small, cst.Continue) and targets.continue_to is not None:
        graph.link(node, targets.continue_to)
        return []
    return [(node, None)]


def _if(graph: FlowGraph, statement: cst.If, frontier: Frontier, targets: _Targets) -> Frontier:
    node = graph.add(statement, "if")
    _connect(graph, frontier, node)
    ends = _block(graph, statement.body, [(node, Condition(statement.test, True))], targets)
    otherwise: Frontier = [(node, Condition(statement.test, False))]
    if isinstance(statement.orelse, cst.If):
        ends += _if(graph, statement.orelse, otherwise, targets)
    elif isinstance(statement.orelse, cst.Else):
        ends += _block(graph, statement.orelse.body, otherwise, targets)
    else:
        ends += otherwise
    return ends


def _loop(
    graph: FlowGraph, statement: cst.While | cst.For, frontier: Frontier, targets: _Targets
) -> Frontier:
    kind = "while" if isinstance(statement, cst.While) else "for"
    header = graph.add(statement, kind)
    _connect(graph, frontier, header)
    after = graph.add(None, "join")
    inner = _Targets(targets.exit, targets.raise_to, break_to=after, continue_to=header)
    entering = Condition(statement.test, True) if isinstance(statement, cst.While) else None
    leaving = Condition(statement.test, False) if isinstance(statement, cst.While) else None
    for end, condition in _block(graph, statement.body, [(header, entering)], inner):
        graph.link(end, header, condition)
    exits: Frontier = [(header, leaving)]
    if statement.orelse is not None:
        exits = _block(graph, statement.orelse.body, exits, targets)
    _connect(graph, exits, after)
    return [(after, None)]


def _try(
    graph: FlowGraph, statement: cst.Try | cst.TryStar, frontier: Frontier, targets: _Targets
) -> Frontier:
    node = graph.add(statement, "try")
    _connect(graph, frontier, node)
    handlers = [graph.add(handler, "except") for handler in statement.handlers]
    final_entry = graph.add(None, "join") if statement.finalbody is not None else None
    raise_to = handlers or ([final_entry] if final_entry is not None else targets.raise_to)
    inner = _Targets(targets.exit, raise_to, targets.break_to, targets.continue_to)
    # Any statement of the body may raise; approximating that with an edge from the start of
    # the body and from its end keeps the graph small and is enough for "earlier on the path".
    for handler in handlers:
        graph.link(node, handler)
    body_ends = _block(graph, statement.body, [(node, None)], inner)
    for handler in handlers:
        for end, _ in body_ends:
            graph.link(end, handler)
    if statement.orelse is not None:
        body_ends = _block(graph, statement.orelse.body, body_ends, targets)
    ends = list(body_ends)
    clauses: Sequence[cst.ExceptHandler | cst.ExceptStarHandler] = statement.handlers
    for handler, clause in zip(handlers, clauses, strict=True):
        ends += _block(graph, clause.body, [(handler, None)], targets)
    if statement.finalbody is not None and final_entry is not None:
        _connect(graph, ends, final_entry)
        return _block(graph, statement.finalbody.body, [(final_entry, None)], targets)
    return ends


# ---------------------------------------------------------------------- solving
class ForwardAnalysis(Generic[Facts]):
    """A forward dataflow problem: what holds on entry to each node.

    `transfer(node, facts)` gives the facts after a node; `refine(condition, facts)` narrows
    them along a branch edge; `join` merges paths (union for "on some path", intersection for
    "on every path").
    """

    def __init__(
        self,
        graph: FlowGraph,
        initial: Facts,
        transfer: Callable[[FlowNode, Facts], Facts],
        join: Callable[[Facts, Facts], Facts],
        refine: Callable[[Condition, Facts], Facts] | None = None,
    ) -> None:
        self.graph = graph
        self.before: dict[int, Facts] = {}
        self._solve(initial, transfer, join, refine)

    def _solve(
        self,
        initial: Facts,
        transfer: Callable[[FlowNode, Facts], Facts],
        join: Callable[[Facts, Facts], Facts],
        refine: Callable[[Condition, Facts], Facts] | None,
    ) -> None:
        graph = self.graph
        self.before[graph.entry.index] = initial
        work = [graph.entry.index]
        budget = 50 * max(1, len(graph.nodes))  # loops converge quickly; this bounds bad cases
        while work and budget > 0:
            budget -= 1
            index = work.pop()
            after = transfer(graph.nodes[index], self.before[index])
            for successor, condition in graph.successors(graph.nodes[index]):
                facts = (
                    refine(condition, after)
                    if condition is not None and refine is not None
                    else after
                )
                known = self.before.get(successor.index)
                merged = facts if known is None else join(known, facts)
                if known is None or merged != known:
                    self.before[successor.index] = merged
                    work.append(successor.index)

    def facts_before(self, node: FlowNode) -> Facts | None:
        """None when the node cannot be reached (after a return, say)."""
        return self.before.get(node.index)
