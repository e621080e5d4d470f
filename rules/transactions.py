"""Transaction rules (skill section "Pattern: Transaction Boundaries").

All four rules ask "what happened earlier on this path" inside one function, so they share one
collector: during the engine's single traversal it records the session events of each function
(awaited session calls, `add`, `begin()` blocks, ORM instances loaded, attribute reads, returns)
while the semantic model still knows what each name means at that point of the source; when the
function ends, each rule runs a `ForwardAnalysis` over the function's control-flow graph.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import libcst as cst

from bot.findings import Severity
from bot.flow import Condition, FlowGraph, FlowNode, ForwardAnalysis
from bot.rule import SESSION_TOKENS, Invalid, Rule, Valid
from bot.semantics import Binding, BindingKind
from bot.walker import iter_descendants
from rules._shared import is_none, one_line

SECTION = "Pattern: Transaction Boundaries"

# Awaited session methods that start the session's transaction when none is active.
AUTOBEGIN_METHODS = frozenset(
    {
        "execute", "get", "get_one", "scalar", "scalars", "flush", "stream", "stream_scalars",
        "refresh", "merge", "merge_all", "delete", "delete_all", "connection",
    }
)  # fmt: skip
# Awaited session methods after which no transaction is active any more.
ENDING_METHODS = frozenset({"commit", "rollback", "close", "aclose", "reset", "invalidate"})
# Session methods that neither need nor touch the transaction (cleanup and introspection).
NEUTRAL_METHODS = frozenset(
    {
        "close", "aclose", "expunge", "expunge_all", "in_transaction", "in_nested_transaction",
        "is_active", "info", "get_bind", "bind",
    }
)  # fmt: skip
# Everything one can call or read on an AsyncSession without handing the session to someone else.
SESSION_ATTRIBUTES = frozenset(
    {
        "aclose", "add", "add_all", "begin", "begin_nested", "close", "close_all", "commit",
        "connection", "delete", "delete_all", "execute", "expire", "expire_all", "expunge",
        "expunge_all", "flush", "get", "get_bind", "get_one", "in_nested_transaction",
        "in_transaction", "info", "invalidate", "is_active", "is_modified", "merge", "merge_all",
        "refresh", "reset", "rollback", "run_sync", "scalar", "scalars", "stream",
        "stream_scalars", "dirty", "new", "deleted", "identity_map", "bind", "no_autoflush",
    }
)  # fmt: skip
# Data-changing statements, after import resolution (`from sqlalchemy import insert as ins`).
DML_CONSTRUCTORS = frozenset(
    f"{module}.{verb}"
    for module in (
        "sqlalchemy",
        "sqlalchemy.sql",
        "sqlalchemy.sql.expression",
        "sqlalchemy.sql.dml",
        "sqlalchemy.future",
        "sqlalchemy.dialects.postgresql",
        "sqlalchemy.dialects.sqlite",
        "sqlalchemy.dialects.mysql",
        "sqlmodel",
    )
    for verb in ("insert", "update", "delete")
)

Facts = TypeVar("Facts")


@dataclass(eq=False)
class Event:
    """One thing a function does with a session, in source order.

    kind: "await" (an awaited session method: `method`), "add" (`s.add`/`s.add_all`), "begin"
    (an `async with` header: `method` is "begin", "begin_nested" or "factory_begin", `block` the
    statement), "own" (`async with F() as s`), "reset" (the session name is bound anew),
    "mention" (any other use of the session that may run SQL), "load" / "attach" (an ORM
    instance is bound / handed to `s.add`), "read" (an attribute of an instance is read:
    `attr`), "return" (an instance is returned), "write" (an attribute of an instance is
    assigned: `attr`), "revive" (`obj.awaitable_attrs`, which reloads expired state).
    """

    kind: str
    seq: int
    node: cst.CSTNode
    statement: cst.CSTNode | None
    scope: str
    session: Binding | None = None
    instance: Binding | None = None
    method: str = ""
    attr: str = ""
    block: cst.With | None = None
    # The `async with <session>.begin()` blocks of this event's session around it (outer first).
    blocks: tuple[cst.With, ...] = ()
    dml: bool = False  # "await" execute: the statement is an insert/update/delete
    expires: bool = False  # "await" commit: the session's factory expires instances on commit


@dataclass
class FunctionEvents:
    function: cst.FunctionDef
    events: list[Event]


class _SessionPaths(Rule):
    """Collects session events per function; subclasses analyse them when the function ends."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._functions: dict[int, FunctionEvents] = {}
        self._seq = 0
        # `async with <session>.begin()` blocks open at this point: (function, session, block).
        self._begin_stack: list[tuple[cst.CSTNode, Binding, cst.With]] = []
        # Transactions bound by `async with s.begin() as tx`: tx -> session.
        self._transactions: dict[Binding, Binding] = {}
        # Nodes that are not reads: assignment targets, called attributes.
        self._not_read: set[int] = set()
        # Session names in a position that keeps the session here (`s.execute(...)`).
        self._kept_uses: set[int] = set()
        # Session expressions used only for cleanup or introspection (`s.close()`).
        self._neutral_uses: set[int] = set()
        # Names bound by `async with ... as name` (not uses of the session).
        self._with_targets: set[int] = set()
        # Owned sessions (`async with F() as s`): the function that owns each.
        self.owner: dict[Binding, cst.CSTNode] = {}
        # Owned sessions handed to other code (an argument, a closure, an attribute...).
        self.escaped: set[Binding] = set()
        self._body_ids: dict[int, frozenset[int]] = {}
        # `s.in_transaction()` calls: id(call) -> session.
        self.transaction_checks: dict[int, Binding] = {}
        # Parameters handed to `s.add(...)`: the session they now belong to.
        self.added: dict[Binding, Binding] = {}

    # ------------------------------------------------------------------ recording
    def _function_node(self) -> cst.FunctionDef | None:
        scope = self.semantics.function_scope()
        if scope is None or not isinstance(scope.node, cst.FunctionDef):
            return None
        return scope.node

    def _record(
        self,
        kind: str,
        node: cst.CSTNode,
        *,
        session: Binding | None = None,
        instance: Binding | None = None,
        method: str = "",
        attr: str = "",
        block: cst.With | None = None,
        dml: bool = False,
        expires: bool = False,
    ) -> None:
        """Record an event of the function being traversed (events in lambdas are dropped)."""
        function = self._function_node()
        if function is None:
            return
        entry = self._functions.get(id(function))
        if entry is None:
            entry = self._functions[id(function)] = FunctionEvents(function, [])
        self._seq += 1
        blocks = tuple(
            with_node
            for owner, held, with_node in self._begin_stack
            if owner is function and held is session
        )
        entry.events.append(
            Event(
                kind,
                self._seq,
                node,
                self.context.statement,
                self.semantics.scope.qualname,
                session=session,
                instance=instance,
                method=method,
                attr=attr,
                block=block,
                blocks=blocks,
                dml=dml,
                expires=expires,
            )
        )

    def direct_session(self, expr: cst.BaseExpression) -> Binding | None:
        return self.semantics.direct_session(expr)

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if isinstance(func, cst.Attribute):
            self._not_read.add(id(func))
            if func.attr.value in ("in_transaction", "in_nested_transaction"):
                session = self.direct_session(func.value)
                if session is not None:
                    self.transaction_checks[id(node)] = session
            if func.attr.value in ("add", "add_all") and node.args:
                session = self.direct_session(func.value)
                if session is not None:
                    self._record("add", node, session=session, method=func.attr.value)
                    self._attach(node, session)

    def _attach(self, call: cst.Call, session: Binding) -> None:
        value = call.args[0].value
        items = (
            [e.value for e in value.elements]
            if isinstance(value, (cst.List, cst.Tuple))
            else [value]
        )
        for item in items:
            if not isinstance(item, cst.Name):
                continue
            binding = self.semantics.lookup(item.value)
            if binding is None:
                continue
            if binding.kind is BindingKind.PARAM:
                # A parameter handed to `s.add()` is an ORM instance of `s` from here on.
                self.added[binding] = session
            if self.origin(binding) is session:
                self._record("attach", call, session=session, instance=binding)

    def origin(self, binding: Binding) -> Binding | None:
        """The session an ORM instance belongs to (None when it is not one)."""
        if binding.kind is BindingKind.ORM:
            return binding.origin
        return self.added.get(binding)

    def instance(self, expr: cst.BaseExpression) -> Binding | None:
        """The ORM instance `expr` names: loaded from a session, or added to one."""
        if not isinstance(expr, cst.Name):
            return None
        binding = self.semantics.lookup(expr.value)
        return binding if binding is not None and self.origin(binding) is not None else None

    def visit_Await(self, node: cst.Await) -> None:
        call = node.expression
        if not isinstance(call, cst.Call) or not isinstance(call.func, cst.Attribute):
            return
        method = call.func.attr.value
        session = self.direct_session(call.func.value)
        if session is None:
            transaction = self._transaction_of(call.func.value)
            if transaction is None or method not in ("commit", "rollback"):
                return
            session = transaction
        instance = self.instance(call.args[0].value) if method == "refresh" and call.args else None
        expires = False
        if method == "commit":
            expires = self._expires_on_commit(session)
        dml = method == "execute" and bool(call.args) and self._is_dml(call.args[0].value)
        self._record(
            "await",
            call,
            session=session,
            method=method,
            instance=instance,
            expires=expires,
            dml=dml,
        )

    def _expires_on_commit(self, session: Binding) -> bool:
        """True only when committing `session` is known to expire its instances."""
        configured = self.context.options.expire_on_commit
        if configured is not None:
            return configured
        # The session's own constructor or factory may set the keyword in a way the shared
        # model reads as "default" (a non-literal value, `**options`): unknown, stay silent.
        for call in (session.value, self._factory_call(session)):
            if isinstance(call, cst.Call):
                setting = _expire_setting(call)
                if setting is not _UNSET:
                    return setting is True
        return self.semantics.expire_on_commit(session) is True

    def _factory_call(self, session: Binding) -> cst.BaseExpression | None:
        factory = session.factory
        if isinstance(factory, cst.Name):
            binding = self.semantics.lookup(factory.value)
            if binding is not None and binding.kind is BindingKind.FACTORY:
                return binding.value
        return None

    def _transaction_of(self, expr: cst.BaseExpression) -> Binding | None:
        if isinstance(expr, cst.Name):
            binding = self.semantics.lookup(expr.value)
            if binding is not None:
                return self._transactions.get(binding)
        return None

    def _is_dml(self, expr: cst.BaseExpression, depth: int = 0) -> bool:
        """`insert(M).values(...)`, `update(M).where(...)`, or a local name bound to one."""
        while (
            isinstance(expr, cst.Call)
            and isinstance(expr.func, cst.Attribute)
            and isinstance(expr.func.value, cst.Call)
        ):
            expr = expr.func.value
        if isinstance(expr, cst.Call):
            return self.semantics.qualified_name(expr.func) in DML_CONSTRUCTORS
        if isinstance(expr, cst.Name) and depth == 0:
            binding = self.semantics.lookup(expr.value)
            if (
                binding is not None
                and binding.kind is BindingKind.OTHER
                and binding.value is not None
            ):
                return self._is_dml(binding.value, depth + 1)
        return False

    def visit_With(self, node: cst.With) -> None:
        if node.asynchronous is None:
            return
        function = self._function_node()
        for item in node.items:
            call = item.item
            target = item.asname.name if item.asname is not None else None
            bound = self.semantics.lookup(target.value) if isinstance(target, cst.Name) else None
            if isinstance(target, cst.Name):
                self._kept_uses.add(id(target))
                self._with_targets.add(id(target))
            if bound is not None and bound.kind is BindingKind.SESSION and bound.node is node:
                self._record("reset", call, session=bound)
                if (
                    isinstance(call, cst.Call)
                    and isinstance(call.func, cst.Attribute)
                    and call.func.attr.value == "begin"
                ):
                    self._record("begin", call, session=bound, method="factory_begin", block=node)
                    if function is not None:
                        self._begin_stack.append((function, bound, node))
                else:
                    self._record("own", item, session=bound, block=node)
                    if function is not None:
                        self.owner[bound] = function
                continue
            if not (
                isinstance(call, cst.Call)
                and isinstance(call.func, cst.Attribute)
                and call.func.attr.value in ("begin", "begin_nested")
            ):
                continue
            session = self.direct_session(call.func.value)
            if session is None:
                continue
            method = call.func.attr.value
            self._record("begin", call, session=session, method=method, block=node)
            if method == "begin":
                if function is not None:
                    self._begin_stack.append((function, session, node))
                if bound is not None:
                    self._transactions[bound] = session

    def leave_With(self, node: cst.With) -> None:
        while self._begin_stack and self._begin_stack[-1][2] is node:
            self._begin_stack.pop()

    def visit_Attribute(self, node: cst.Attribute) -> None:
        value = node.value
        if node.attr.value in NEUTRAL_METHODS:
            self._neutral_uses.add(id(value))
        if (
            isinstance(value, cst.Name)
            and value.value == "self"
            and id(node) not in self._with_targets
        ):
            held = self.semantics.session_binding(node)
            if held is not None:
                self._mention(node, held)
            return
        if not isinstance(value, cst.Name):
            return
        binding = self.semantics.lookup(value.value)
        if binding is None:
            return
        if binding.kind is BindingKind.SESSION:
            attr = node.attr.value
            if attr in SESSION_ATTRIBUTES and (
                attr not in AUTOBEGIN_METHODS | ENDING_METHODS or id(node) in self._not_read
            ):
                self._kept_uses.add(id(value))
            return
        origin = self.origin(binding)
        if origin is None:
            return
        if node.attr.value == "awaitable_attrs":
            # `await obj.awaitable_attrs.x` loads the expired state with proper I/O.
            self._record("revive", node, session=origin, instance=binding)
        elif id(node) not in self._not_read:
            self._record("read", node, session=origin, instance=binding, attr=node.attr.value)

    def visit_Name(self, node: cst.Name) -> None:
        if id(node) in self._with_targets:
            return
        binding = self.semantics.lookup(node.value)
        if binding is None:
            return
        held = binding.session
        if held is not None:
            self._mention(node, held)
        if binding in self.owner and (
            self._function_node() is not self.owner[binding] or id(node) not in self._kept_uses
        ):
            self.escaped.add(binding)

    def _mention(self, node: cst.BaseExpression, session: Binding) -> None:
        """A use of the session (directly or through a wrapper) that may run SQL."""
        if id(node) not in self._neutral_uses:
            self._record("mention", node, session=session)

    def visit_Return(self, node: cst.Return) -> None:
        if isinstance(node.value, cst.Name):
            instance = self.instance(node.value)
            if instance is not None:
                self._record("return", node, session=self.origin(instance), instance=instance)

    def _assigned_attributes(self, targets: Iterable[cst.BaseExpression]) -> None:
        for target in targets:
            if not isinstance(target, cst.Attribute):
                continue
            self._not_read.add(id(target))
            instance = self.instance(target.value)
            if instance is not None:
                self._record(
                    "write",
                    target,
                    session=self.origin(instance),
                    instance=instance,
                    attr=target.attr.value,
                )

    def visit_Assign(self, node: cst.Assign) -> None:
        self._assigned_attributes(t.target for t in node.targets)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        self._assigned_attributes([node.target])

    def leave_AugAssign(self, node: cst.AugAssign) -> None:
        # `obj.count += 1` reads the attribute first (recorded as a read), then assigns it.
        if isinstance(node.target, cst.Attribute):
            instance = self.instance(node.target.value)
            if instance is not None:
                self._record(
                    "write",
                    node.target,
                    session=self.origin(instance),
                    instance=instance,
                    attr=node.target.attr.value,
                )

    def visit_Del(self, node: cst.Del) -> None:
        self._not_read.add(id(node.target))

    def _bound_here(self, target: cst.BaseExpression, node: cst.CSTNode) -> None:
        if not isinstance(target, cst.Name):
            return
        binding = self.semantics.lookup(target.value)
        if binding is None or binding.node is not node:
            return
        if binding.kind is BindingKind.ORM:
            self._record("load", node, session=binding.origin, instance=binding)
        elif binding.kind is BindingKind.SESSION:
            self._record("reset", node, session=binding)

    def leave_Assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            self._bound_here(target.target, node)

    def leave_AnnAssign(self, node: cst.AnnAssign) -> None:
        self._bound_here(node.target, node)

    def leave_NamedExpr(self, node: cst.NamedExpr) -> None:
        self._bound_here(node.target, node)

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        entry = self._functions.pop(id(node), None)
        if entry is not None and entry.events:
            self.analyse(entry.function, entry.events)

    # ------------------------------------------------------------------ analysis helpers
    def analyse(self, function: cst.FunctionDef, events: list[Event]) -> None:
        raise NotImplementedError

    def body_ids(self, block: cst.With | cst.Try | cst.TryStar) -> frozenset[int]:
        """Ids of every node inside a block's body (not its header, handlers or finally)."""
        found = self._body_ids.get(id(block))
        if found is None:
            found = self._body_ids[id(block)] = frozenset(
                id(n) for n in iter_descendants(block.body)
            )
        return found

    def inside(self, block: cst.With, node: cst.CSTNode | None) -> bool:
        return node is not None and id(node) in self.body_ids(block)

    def solve(
        self,
        function: cst.FunctionDef,
        events: Sequence[Event],
        initial: Facts,
        apply: Callable[[Event, Facts], Facts],
        join: Callable[[Facts, Facts], Facts],
        at_node: Callable[[FlowNode, Facts], Facts] | None = None,
        refine: Callable[[Condition, Facts], Facts] | None = None,
    ) -> tuple[FlowGraph, ForwardAnalysis[Facts], dict[int, list[Event]]]:
        """Run the events of each flow node in order, to a fixed point over the function's graph.

        `at_node(node, facts)` adjusts the facts on entry to a node (before its events).
        """
        graph = self.semantics.flow(function)
        by_node: dict[int, list[Event]] = {}
        for event in events:
            flow_node = graph.containing(event.node)
            if flow_node is not None:
                by_node.setdefault(flow_node.index, []).append(event)

        def transfer(flow_node: FlowNode, facts: Facts) -> Facts:
            if at_node is not None:
                facts = at_node(flow_node, facts)
            for event in by_node.get(flow_node.index, ()):
                facts = apply(event, facts)
            return facts

        return graph, ForwardAnalysis(graph, initial, transfer, join, refine), by_node

    def replay(
        self,
        solved: tuple[FlowGraph, ForwardAnalysis[Facts], dict[int, list[Event]]],
        apply: Callable[[Event, Facts], Facts],
        at_node: Callable[[FlowNode, Facts], Facts],
    ) -> Iterator[tuple[Event, Facts]]:
        """Each event of each reachable flow node of a `solve` result, with the facts just
        before it."""
        graph, analysis, by_node = solved
        for flow_node in graph.nodes:
            before = analysis.facts_before(flow_node)
            if before is None:
                continue
            facts = at_node(flow_node, before)
            for event in by_node.get(flow_node.index, ()):
                yield event, facts
                facts = apply(event, facts)

    def raised_in(
        self, tries: dict[int, cst.Try | cst.TryStar], flow_node: FlowNode
    ) -> frozenset[int] | None:
        """At an `except` handler: the ids of the nodes in its `try` body (any of them may be
        where the exception came from); None elsewhere."""
        try_node = tries.get(id(flow_node.node)) if flow_node.kind == "except" else None
        return None if try_node is None else self.body_ids(try_node)

    def handler_tries(self, function: cst.FunctionDef) -> dict[int, cst.Try | cst.TryStar]:
        """id(except handler) -> its `try` statement."""
        tries: dict[int, cst.Try | cst.TryStar] = {}
        for node in iter_descendants(function.body):
            if isinstance(node, (cst.Try, cst.TryStar)):
                for handler in node.handlers:
                    tries[id(handler)] = node
        return tries

    def code(self, node: cst.CSTNode) -> str:
        return one_line(self.context.module, node)


_NO_EVENTS: frozenset[Event] = frozenset()
_UNSET = object()


def _expire_setting(call: cst.Call) -> object:
    """`expire_on_commit=` in a call: True/False when literal, None when not, _UNSET when absent
    (a `**options` argument may hold it: None)."""
    for arg in call.args:
        if arg.star == "**":
            return None
        if arg.keyword is not None and arg.keyword.value == "expire_on_commit":
            value = arg.value
            if isinstance(value, cst.Name) and value.value in ("True", "False"):
                return value.value == "True"
            return None
    return _UNSET


def _union(a: frozenset[Event], b: frozenset[Event]) -> frozenset[Event]:
    return a | b


def _first(events: Iterable[Event]) -> Event:
    return min(events, key=lambda e: e.seq)


def _touches(events: Iterable[Event], session: Binding | None) -> bool:
    """Whether these events use `session` for more than cleanup: a query, a write, an object
    of the session (read or assigned), or the session handed to other code."""
    return any(e.session is session and e.kind in ("mention", "read", "write") for e in events)


# ============================================================================ AG301
class CommitInsideBegin(_SessionPaths):
    CODE = "AG301"
    NAME = "commit-inside-begin"
    SEVERITY = Severity.ERROR
    SECTION = SECTION
    SUMMARY = (
        "`commit()`/`rollback()` inside `async with session.begin()` is followed by more work."
    )
    DOC = """
    ## What it does
    Flags `await session.commit()` or `await session.rollback()` inside an
    `async with session.begin():` block (or `async with factory.begin() as session:`) when the
    block goes on, on that path, to use the session again: a query, an `add`, handing the
    session to other code, or reading or changing one of its objects.

    ## Why is this bad?
    `begin()` as a context manager owns the transaction: it commits when the block ends and
    rolls back when it raises. Ending the transaction by hand in the middle of the block closes
    it for good: whatever the block does next fails with "Can't operate on closed transaction
    inside context manager" (measured even for a plain attribute assignment), and the rows
    written before the explicit commit are already permanent, so the block is no longer
    all-or-nothing.

    A commit or rollback that is the block's last statement, or a rollback followed by `raise`,
    does no harm, and neither does cleanup such as `close()` or `expunge_all()`; savepoints
    (`begin_nested()`) are a different thing and are not flagged.

    ## Example
    ```python
    async with session.begin():
        session.add(order)
        await session.commit()
        order.status = "confirmed"  # fails: the transaction is closed
    ```

    ## Use instead
    Let the block commit, and do the follow-up work inside it (or after it):
    ```python
    async with session.begin():
        session.add(order)
        order.status = "confirmed"
    ```
    """
    TOKENS = (SESSION_TOKENS, ("begin(",), ("commit(", "rollback("))
    NEEDS = frozenset({"repo-index"})

    VALID = (
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def place(session: AsyncSession, order):
                async with session.begin():
                    session.add(order)
                await session.commit()
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def place(session: AsyncSession, order):
                async with session.begin():
                    session.add(order)
                    await session.commit()
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def place(session: AsyncSession, order):
                async with session.begin():
                    session.add(order)
                    if not order.valid:
                        await session.rollback()
                        raise ValueError("invalid order")
                    order.status = "placed"
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def place(session: AsyncSession, orders):
                async with session.begin():
                    for order in orders:
                        async with session.begin_nested() as savepoint:
                            session.add(order)
                            await savepoint.commit()
                    session.add(Audit(count=len(orders)))
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def place(session: AsyncSession, order):
                async with session.begin_nested():
                    session.add(order)
                    await session.commit()
                    order.status = "placed"
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def place(order):
                async with async_session.begin() as session:
                    session.add(order)
                    try:
                        await session.flush()
                    except IntegrityError:
                        await session.rollback()
                        raise
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def place(session: AsyncSession, other: AsyncSession, order):
                async with session.begin():
                    session.add(order)
                    await other.commit()
                    order.status = "placed"
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def place(session: AsyncSession, orders):
                for order in orders:
                    async with session.begin():
                        session.add(order)
                        await session.commit()
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def place(session: AsyncSession, order):
                async with session.begin():
                    session.add(order)
                    if order.express:
                        await session.commit()
                        return order
                    order.status = "queued"
            """
        ),
        Valid(
            """
            # Cleanup after the commit does not use the transaction.
            from contextlib import asynccontextmanager
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            @asynccontextmanager
            async def transaction():
                async with async_session() as session:
                    async with session.begin():
                        try:
                            yield session
                            await session.commit()
                        except Exception:
                            await session.rollback()
                            raise
                        finally:
                            session.expunge_all()
                            await session.close()
            """
        ),
    )
    INVALID = (
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def place(session: AsyncSession, order):
                async with session.begin():
                    session.add(order)
                    await session.commit()
                    order.status = "confirmed"
            """,
            line=6,
            related_lines=(4,),
            message="Can't operate on closed transaction inside context manager",
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker as make_factory

            Session = make_factory(engine)

            async def import_rows(rows):
                async with Session.begin() as db:
                    db.add_all(rows)
                    await db.commit()
                    await db.execute(refresh_stats)
            """,
            line=8,
            related_lines=(6,),
            message="goes on using `db`",
        ),
        Invalid(
            """
            from typing import Annotated
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            SessionDep = Annotated[AsyncSession, Depends(get_session)]

            @router.post("/orders")
            async def create_order(payload: OrderIn, session: SessionDep):
                async with session.begin():
                    order = Order(**payload.model_dump())
                    session.add(order)
                    if payload.hold:
                        await session.rollback()
                    session.add(Audit(order=order))
                return {"ok": True}
            """,
            line=13,
            message="rollback",
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            class OrderService:
                def __init__(self, session: AsyncSession) -> None:
                    self.session = session

                async def place_all(self, orders):
                    async with self.session.begin():
                        for order in orders:
                            self.session.add(order)
                            await self.session.commit()
            """,
            line=11,
            related_lines=(8,),
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def place(session: AsyncSession, order):
                async with session.begin() as transaction:
                    session.add(order)
                    await transaction.commit()
                    session.add(Audit(order_id=order.id))
            """,
            line=6,
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def outer(session: AsyncSession, order):
                async def inner():
                    async with session.begin():
                        session.add(order)
                        await session.commit()
                        order.placed_at = now()

                await inner()
            """,
            line=7,
        ),
    )

    def analyse(self, function: cst.FunctionDef, events: list[Event]) -> None:
        commits = {
            e
            for e in events
            if e.kind == "await" and e.method in ("commit", "rollback") and e.blocks
        }
        if not commits:
            return
        tries = self.handler_tries(function)

        def alive(commit: Event, flow_node: FlowNode) -> bool:
            # Join nodes have no statement: they stay where the path was.
            return flow_node.node is None or self.inside(commit.blocks[-1], flow_node.node)

        def at_node(flow_node: FlowNode, facts: frozenset[Event]) -> frozenset[Event]:
            kept = frozenset(c for c in facts if alive(c, flow_node))
            raised = self.raised_in(tries, flow_node)
            if raised is not None:
                # Reaching a handler may mean the commit itself raised: it did not happen.
                kept = frozenset(c for c in kept if id(c.node) not in raised)
            return kept

        def apply(event: Event, facts: frozenset[Event]) -> frozenset[Event]:
            return facts | {event} if event in commits else facts

        graph, analysis, by_node = self.solve(function, events, _NO_EVENTS, apply, _union, at_node)
        reported: set[Event] = set()
        for flow_node in graph.nodes:
            before = analysis.facts_before(flow_node)
            if not before or flow_node.node is None:
                continue
            here = by_node.get(flow_node.index, ())
            for commit in sorted(at_node(flow_node, before), key=lambda e: e.seq):
                if commit not in reported and _touches(here, commit.session):
                    reported.add(commit)
                    self._report(commit)

    def _report(self, commit: Event) -> None:
        block = commit.blocks[-1]
        item = next(
            (
                item
                for item in block.items
                if isinstance(item.item, cst.Call)
                and isinstance(item.item.func, cst.Attribute)
                and item.item.func.attr.value == "begin"
            ),
            block.items[0],
        )
        begin = item.item
        call = commit.node
        assert isinstance(call, cst.Call)
        name = self.code(call.func)
        # `async with F.begin() as db` -> `db`; `async with session.begin()` -> `session`.
        if item.asname is not None and isinstance(item.asname.name, cst.Name):
            session = item.asname.name.value
        elif isinstance(begin, cst.Call) and isinstance(begin.func, cst.Attribute):
            session = self.code(begin.func.value)
        else:
            session = commit.session.name if commit.session is not None else "session"
        self.report(
            call,
            f"`await {name}()` ends the transaction of `async with {self.code(begin)}`, but the "
            f"block goes on using `{session}`: that fails with \"Can't operate on closed "
            'transaction inside context manager" (and earlier rows are already committed)',
            related=[(begin, "the transaction block that owns the commit")],
            statement=commit.statement,
            scope=commit.scope,
        )


# ============================================================================ AG302
class BeginAfterAutobegin(_SessionPaths):
    CODE = "AG302"
    NAME = "begin-after-autobegin"
    SEVERITY = Severity.ERROR
    SECTION = SECTION
    SUMMARY = "`async with session.begin()` on a session that already started a transaction."
    DOC = """
    ## What it does
    Flags `async with session.begin():` when, earlier on the same path in the same function,
    the session already ran something that starts its transaction (an awaited `execute`,
    `get`, `scalar(s)`, `flush`, `refresh`, `merge`, `delete`..., or a plain `add`/`add_all`)
    with no `commit()`/`rollback()` in between.

    ## Why is this bad?
    An `AsyncSession` starts a transaction by itself ("autobegin") on its first operation.
    `begin()` then refuses to open a second one and raises
    "A transaction is already begun on this Session", every time that path runs.

    ## Example
    ```python
    user = await session.get(User, user_id)
    async with session.begin():  # InvalidRequestError
        user.credits -= 1
    ```

    ## Use instead
    Open the transaction first, commit the implicit one before `begin()`, or drop `begin()`
    and commit at the end:
    ```python
    async with session.begin():
        user = await session.get(User, user_id)
        user.credits -= 1
    ```
    `begin_nested()` (a savepoint) is fine inside a running transaction.
    """
    TOKENS = (SESSION_TOKENS, (".begin(",))
    NEEDS = frozenset({"repo-index"})

    VALID = (
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def charge(session: AsyncSession, user_id: int):
                async with session.begin():
                    user = await session.get(User, user_id)
                    user.credits -= 1
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def charge(session: AsyncSession, user_id: int):
                user = await session.get(User, user_id)
                async with session.begin_nested():
                    user.credits -= 1
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def charge(session: AsyncSession, user_id: int):
                user = await session.get(User, user_id)
                await session.commit()
                async with session.begin():
                    session.add(Charge(user_id=user_id))
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            factory = async_sessionmaker(engine)

            async def charge(user_id: int):
                async with factory.begin() as session:
                    user = await session.get(User, user_id)
                    user.credits -= 1
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def two_steps(session: AsyncSession, rows):
                async with session.begin():
                    session.add_all(rows)
                async with session.begin():
                    await session.execute(refresh_stats)
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def charge(session: AsyncSession, other: AsyncSession, user_id: int):
                user = await other.get(User, user_id)
                async with session.begin():
                    session.add(Charge(user_id=user.id))
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def charge(session: AsyncSession, user_id: int, fresh: bool):
                if not fresh:
                    await session.execute(cleanup)
                    await session.rollback()
                async with session.begin():
                    session.add(Charge(user_id=user_id))
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            factory = async_sessionmaker(engine)

            async def batches(chunks):
                for chunk in chunks:
                    async with factory() as session:
                        async with session.begin():
                            session.add_all(chunk)
                        await session.execute(vacuum)
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def charge(session: AsyncSession, user_id: int):
                async def load():
                    return await session.get(User, user_id)

                async with session.begin():
                    user = await load()
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def charge(session: AsyncSession, user_id: int):
                user = await session.get(User, user_id)
                if not session.in_transaction():
                    async with session.begin():
                        session.add(Charge(user_id=user.id))
            """
        ),
    )
    INVALID = (
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def charge(session: AsyncSession, user_id: int):
                user = await session.get(User, user_id)
                async with session.begin():
                    user.credits -= 1
            """,
            line=5,
            related_lines=(4,),
            message="A transaction is already begun on this Session",
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            factory = async_sessionmaker(engine)

            async def register(user):
                async with factory() as db:
                    db.add(user)
                    async with db.begin():
                        db.add(Audit(user=user))
            """,
            line=8,
            related_lines=(7,),
            message="`db`",
        ),
        Invalid(
            """
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            @router.post("/transfer")
            async def transfer(body: TransferIn, session: AsyncSession = Depends(get_session)):
                if body.check:
                    await session.execute(select(Account).where(Account.id == body.source))
                async with session.begin():
                    session.add(Transfer(**body.model_dump()))
            """,
            line=8,
            related_lines=(7,),
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            class Ledger:
                def __init__(self, session: AsyncSession) -> None:
                    self.session = session

                async def post(self, entry):
                    await self.session.flush()
                    async with self.session.begin():
                        self.session.add(entry)
            """,
            line=9,
        ),
        Invalid(
            """
            from typing import Annotated
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            SessionDep = Annotated[AsyncSession, Depends(get_session)]

            async def rebuild(session: SessionDep, rows):
                for row in rows:
                    async with session.begin():
                        session.add(row)
                    await session.scalar(select(func.count(Row.id)))
            """,
            line=9,
            related_lines=(11,),
        ),
        Invalid(
            """
            import sqlalchemy.ext.asyncio as sa_async

            async def charge(session: sa_async.AsyncSession, user_id: int):
                async with session.begin_nested():
                    session.add(Charge(user_id=user_id))
                async with session.begin():
                    session.add(Audit(user_id=user_id))
            """,
            line=6,
            related_lines=(4,),
        ),
        Invalid(
            """
            # SQLAlchemy 2.1: merge_all() autobegins like merge().
            from sqlalchemy.ext.asyncio import AsyncSession

            async def sync_prices(session: AsyncSession, prices):
                await session.merge_all(prices)
                async with session.begin():
                    session.add(SyncRun(count=len(prices)))
            """,
            line=6,
            related_lines=(5,),
            message="`await session.merge_all(...)`",
        ),
    )

    def analyse(self, function: cst.FunctionDef, events: list[Event]) -> None:
        if not any(e.kind == "begin" and e.method == "begin" for e in events):
            return

        def alive(op: Event, flow_node: FlowNode) -> bool:
            if flow_node.node is None:  # a join node: the path stays where it was
                return True
            return all(self.inside(block, flow_node.node) for block in _op_blocks(op))

        def at_node(flow_node: FlowNode, facts: frozenset[Event]) -> frozenset[Event]:
            if all(alive(op, flow_node) for op in facts):
                return facts
            return frozenset(op for op in facts if alive(op, flow_node))

        def apply(event: Event, facts: frozenset[Event]) -> frozenset[Event]:
            session = event.session
            if event.kind == "reset" or (event.kind == "await" and event.method in ENDING_METHODS):
                return frozenset(op for op in facts if op.session is not session)
            if (
                (event.kind == "await" and event.method in AUTOBEGIN_METHODS)
                or event.kind == "add"
                or (event.kind == "begin" and event.method in ("begin", "begin_nested"))
            ):
                return facts | {event}
            return facts

        def refine(condition: Condition, facts: frozenset[Event]) -> frozenset[Event]:
            # `if not s.in_transaction(): async with s.begin()`: the code checks for itself.
            checked = {
                self.transaction_checks[id(n)]
                for n in iter_descendants(condition.test)
                if id(n) in self.transaction_checks
            }
            if not checked:
                return facts
            return frozenset(op for op in facts if op.session not in checked)

        solved = self.solve(function, events, _NO_EVENTS, apply, _union, at_node, refine)
        for event, facts in self.replay(solved, apply, at_node):
            if event.kind == "begin" and event.method == "begin":
                earlier = [op for op in facts if op.session is event.session]
                if earlier:
                    self._report(event, _first(earlier))

    def _report(self, begin: Event, op: Event) -> None:
        assert isinstance(begin.node, cst.Call)
        session = self.code(begin.node.func)[: -len(".begin")]
        self.report(
            begin.node,
            f"`{session}` already began a transaction on this path (`{self._op_text(op)}`), so "
            f'`async with {session}.begin()` raises "A transaction is already begun on this '
            'Session"; commit first, open the transaction first, or use `begin_nested()`',
            related=[(op.node, "this operation began the session's transaction")],
            statement=begin.statement,
            scope=begin.scope,
        )

    def _op_text(self, op: Event) -> str:
        call = op.node
        if op.kind == "begin":
            return f"async with {self.code(call)}"
        if isinstance(call, cst.Call):
            prefix = "await " if op.kind == "await" else ""
            return f"{prefix}{self.code(call.func)}(...)"
        return self.code(call)


def _op_blocks(op: Event) -> tuple[cst.With, ...]:
    """The blocks an operation's transaction lives in: `begin()` lasts until its block ends."""
    if op.kind == "begin" and op.method == "begin" and op.block is not None:
        return (*op.blocks, op.block)
    return op.blocks


# ============================================================================ AG303
ExpiryFacts = tuple[
    frozenset[Binding],  # instances in the session on this path
    frozenset[tuple[Binding, Event]],  # instances expired by a commit
    frozenset[tuple[Binding, str]],  # attributes assigned since that commit
]


def _join_expiry(a: ExpiryFacts, b: ExpiryFacts) -> ExpiryFacts:
    return a[0] | b[0], a[1] | b[1], a[2] & b[2]


class ExpiredAttributeAfterCommit(_SessionPaths):
    CODE = "AG303"
    NAME = "expired-attribute-after-commit"
    SEVERITY = Severity.ERROR
    SECTION = SECTION
    SUMMARY = "An ORM instance is read or returned after `commit()` expired it."
    DOC = """
    ## What it does
    Flags reading an attribute of an ORM instance that came from a session (`await s.get(...)`,
    `(await s.execute(...)).scalar_one()`, `s.add(obj)`...), or returning the instance, after
    `await s.commit()` on the same path with no `await s.refresh(obj)` in between, when the
    session's factory keeps the default `expire_on_commit=True`. The session may be a local,
    a parameter or `self.session`. Factories created with `expire_on_commit=False` anywhere in
    the repository (or config `expire-on-commit = false`) turn the rule off.

    ## Why is this bad?
    Committing expires every instance of the session. The next attribute read, even of the
    primary key, has to reload the row, which is implicit I/O that asyncio cannot do there: it
    raises `MissingGreenlet` ("greenlet_spawn has not been called; can't call await_only()
    here", `await_()` in SQLAlchemy 2.1). An endpoint that returns the instance fails the same way while FastAPI serialises
    it (HTTP 500), and any other caller gets an instance whose first read fails.

    ## Example
    ```python
    user = User(name=payload.name)
    session.add(user)
    await session.commit()
    return {"id": user.id}  # MissingGreenlet
    ```

    ## Use instead
    Read what you need after `flush()` (the INSERT's RETURNING already fetched the generated
    values), or refresh, or build the factory with `expire_on_commit=False`:
    ```python
    user = User(name=payload.name)
    session.add(user)
    await session.flush()
    user_id = user.id
    await session.commit()
    return {"id": user_id}
    ```
    """
    CORRECTION = """
    The skill says to `refresh` after commit to get database-generated values. On PostgreSQL,
    SQLite and MariaDB the INSERT ... RETURNING of `flush()` already loads them, so read them
    after `await session.flush()`, or create the factory with `expire_on_commit=False` as the
    SQLAlchemy asyncio documentation does; `refresh` is only needed for values set by
    `onupdate` or triggers.
    """
    TOKENS = (SESSION_TOKENS, (".commit(",))
    NEEDS = frozenset({"repo-index"})

    VALID = (
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine, expire_on_commit=False)

            async def rename(user_id: int, name: str):
                async with async_session() as session:
                    user = await session.get(User, user_id)
                    user.name = name
                    await session.commit()
                    return user.name
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def rename(user_id: int, name: str):
                async with async_session() as session:
                    user = await session.get(User, user_id)
                    user.name = name
                    await session.commit()
                    await session.refresh(user)
                    return user.name
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def create(name: str) -> int:
                async with async_session() as session:
                    user = User(name=name)
                    session.add(user)
                    await session.flush()
                    user_id = user.id
                    await session.commit()
                    return user_id
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def create(name: str):
                async with async_session() as session:
                    user = User(name=name)
                    session.add(user)
                    await session.flush()
                    return user
            """
        ),
        Valid(
            """
            # The factory lives in another file we know nothing about: stay silent.
            from app.db import async_session

            async def rename(user_id: int, name: str):
                async with async_session() as session:
                    user = await session.get(User, user_id)
                    await session.commit()
                    return user.name
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def rename(user_id: int, name: str):
                async with async_session() as session:
                    user = await session.get(User, user_id)
                    await session.commit()
                    user = await session.get(User, user_id)
                    return user.name
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def rename(user_id: int, name: str):
                async with async_session() as session:
                    user = await session.get(User, user_id)
                    await session.commit()
                    labels = await user.awaitable_attrs.labels
                    return user.name, labels
            """
        ),
        Valid(
            """
            from sqlalchemy.exc import IntegrityError
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def create(name: str):
                async with async_session() as session:
                    user = User(name=name)
                    session.add(user)
                    try:
                        await session.commit()
                    except IntegrityError:
                        await session.rollback()
                        raise Conflict(user.name)
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def rename(user_id: int, name: str):
                async with async_session() as session:
                    user = await session.get(User, user_id)
                    await session.commit()
                    user.name = name
                    changed = user.name
                    await session.commit()
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def rename(user_id: int, name: str, save: bool):
                async with async_session() as session:
                    user = await session.get(User, user_id)
                    if save:
                        await session.commit()
                        return None
                    return user.name
            """
        ),
        Valid(
            """
            # The setting is not a literal: whether commits expire objects is unknown.
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine, expire_on_commit=settings.DB_EXPIRE)

            async def rename(user_id: int, name: str):
                async with async_session() as session:
                    user = await session.get(User, user_id)
                    user.name = name
                    await session.commit()
                    return user.name
            """
        ),
    )
    INVALID = (
        Invalid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def create(name: str) -> int:
                async with async_session() as session:
                    user = User(name=name)
                    session.add(user)
                    await session.commit()
                    return user.id
            """,
            line=10,
            related_lines=(9,),
            message="MissingGreenlet",
        ),
        Invalid(
            """
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

            SessionLocal = async_sessionmaker(engine)

            @router.patch("/users/{user_id}")
            async def rename(user_id: int, body: RenameIn, db: AsyncSession = Depends(get_db)):
                user = (await db.execute(select(User).where(User.id == user_id))).scalar_one()
                user.name = body.name
                await db.commit()
                return user
            """,
            line=11,
            related_lines=(10,),
            message="`user` is returned",
        ),
        Invalid(
            """
            from typing import Annotated
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker as maker

            factory = maker(engine)
            SessionDep = Annotated[AsyncSession, Depends(get_session)]

            @router.post("/users/{user_id}/ban")
            async def ban(user_id: int, session: SessionDep):
                user = await session.get(User, user_id)
                user.banned = True
                await session.commit()
                log.info("banned", email=user.email, name=user.name)
                return {"status": "ok"}
            """,
            line=13,
            related_lines=(12,),
            message="`user.email`",
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

            factory = async_sessionmaker(engine)

            class UserService:
                def __init__(self, session: AsyncSession) -> None:
                    self.session = session

                async def activate(self, user_id: int) -> User:
                    user = await self.session.get(User, user_id)
                    user.active = True
                    await self.session.commit()
                    return user
            """,
            line=13,
            related_lines=(12,),
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            factory = async_sessionmaker(engine)

            async def bump(ids):
                async with factory() as session:
                    for i in ids:
                        counter = await session.get(Counter, i)
                        if counter.value > 10:
                            await session.commit()
                        print(counter.name)
            """,
            line=11,
            related_lines=(10,),
            message="`counter.name`",
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            factory = async_sessionmaker(engine)

            async def create(name: str):
                async def inner():
                    async with factory() as session:
                        if (user := await session.get(User, name)) is None:
                            user = User(name=name)
                            session.add(user)
                        await session.commit()
                        return user.id

                return await inner()
            """,
            line=12,
            related_lines=(11,),
        ),
    )

    def analyse(self, function: cst.FunctionDef, events: list[Event]) -> None:
        if not any(e.kind == "await" and e.method == "commit" and e.expires for e in events):
            return
        tries = self.handler_tries(function)
        empty: ExpiryFacts = (frozenset(), frozenset(), frozenset())

        def at_node(flow_node: FlowNode, facts: ExpiryFacts) -> ExpiryFacts:
            raised = self.raised_in(tries, flow_node)
            if raised is None:
                return facts
            # The commit may have raised: it did not happen.
            return facts[0], frozenset(x for x in facts[1] if id(x[1].node) not in raised), facts[2]

        def apply(event: Event, facts: ExpiryFacts) -> ExpiryFacts:
            live, expired, assigned = facts
            instance = event.instance
            if event.kind in ("load", "attach") and instance is not None:
                if event.kind == "load":
                    expired = frozenset(x for x in expired if x[0] is not instance)
                return live | {instance}, expired, assigned
            if event.kind == "await" and event.method == "commit" and event.expires:
                session = event.session
                hit = {b for b in live if self.origin(b) is session}
                return (
                    live,
                    expired | {(b, event) for b in hit},
                    frozenset(x for x in assigned if x[0] not in hit),
                )
            if (
                event.kind == "revive" or (event.kind == "await" and event.method == "refresh")
            ) and instance is not None:
                return live, frozenset(x for x in expired if x[0] is not instance), assigned
            if event.kind == "write" and instance is not None:
                return live, expired, assigned | {(instance, event.attr)}
            return facts

        solved = self.solve(function, events, empty, apply, _join_expiry, at_node)
        reported: set[tuple[Binding, Event]] = set()
        for event, facts in self.replay(solved, apply, at_node):
            instance = event.instance
            if event.kind in ("read", "return") and instance is not None:
                commits = sorted((c for b, c in facts[1] if b is instance), key=lambda e: e.seq)
                fresh = event.kind == "read" and (instance, event.attr) in facts[2]
                if commits and not fresh and not any((instance, c) in reported for c in commits):
                    reported.update((instance, c) for c in commits)
                    self._report(event, instance, commits)

    def _report(self, event: Event, instance: Binding, commits: list[Event]) -> None:
        commit = commits[0]
        assert isinstance(commit.node, cst.Call)
        session = self.code(commit.node.func)[: -len(".commit")]
        name = instance.name
        fix = f"`await {session}.refresh({name})` after the commit, read it before, or use expire_on_commit=False"
        if event.kind == "read":
            message = (
                f"`{name}.{event.attr}` is read after `await {session}.commit()` expired `{name}`: "
                f"the implicit reload raises MissingGreenlet; {fix}"
            )
        else:
            message = (
                f"`{name}` is returned after `await {session}.commit()` expired it: its first "
                f"attribute read (or the response serialisation) raises MissingGreenlet; {fix}"
            )
        self.report(
            event.node,
            message,
            related=[(c.node, f"`{session}.commit()` expires `{name}`") for c in commits],
            statement=event.statement,
            scope=event.scope,
        )


# ============================================================================ AG304
class UncommittedWrite(_SessionPaths):
    CODE = "AG304"
    NAME = "uncommitted-write"
    SEVERITY = Severity.WARNING
    SECTION = SECTION
    SUMMARY = "A function opens a session, writes through it and never commits."
    DOC = """
    ## What it does
    Flags a function that opens its own session (`async with factory() as session`) and writes
    through it (`add`, `add_all`, `await delete(...)`, `await execute(insert/update/delete...)`,
    or an attribute assignment on an instance loaded from it) when no `commit()` follows the
    write on any path.

    Sessions opened with `factory.begin()` or written inside `async with session.begin():`
    commit by themselves and are not flagged; neither are sessions the function received (the
    caller owns the transaction) or handed to other code, which may commit them, functions that
    flush and hand the object back (`return obj`), and `test_*` functions, which roll back on
    purpose.

    ## Why is this bad?
    Leaving `async with factory() as session` closes the session, and closing rolls back
    whatever the transaction did. The writes vanish without an error or a warning.

    ## Example
    ```python
    async def record_login(user_id: int) -> None:
        async with async_session() as session:
            session.add(Login(user_id=user_id))
    ```

    ## Use instead
    ```python
    async def record_login(user_id: int) -> None:
        async with async_session.begin() as session:
            session.add(Login(user_id=user_id))
    ```
    or `await session.commit()` at the end of the block.
    """
    TOKENS = (SESSION_TOKENS, ("async with",))
    NEEDS = frozenset({"repo-index"})

    VALID = (
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def record_login(user_id: int) -> None:
                async with async_session.begin() as session:
                    session.add(Login(user_id=user_id))
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def record_login(user_id: int) -> None:
                async with async_session() as session:
                    async with session.begin():
                        session.add(Login(user_id=user_id))
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def record_login(user_id: int) -> None:
                async with async_session() as session, session.begin():
                    session.add(Login(user_id=user_id))
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def record_login(session: AsyncSession, user_id: int) -> None:
                session.add(Login(user_id=user_id))
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def create(name: str):
                async with async_session() as session:
                    user = User(name=name)
                    session.add(user)
                    await session.flush()
                    return user
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def record_login(user_id: int) -> None:
                async with async_session() as session:
                    session.add(Login(user_id=user_id))
                    try:
                        await session.commit()
                    except Exception:
                        await session.rollback()
                        raise
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def record_login(user_id: int) -> None:
                async with async_session() as session:
                    session.add(Login(user_id=user_id))
                    await save_and_commit(session)
            """
        ),
        Valid(
            """
            from sqlalchemy import select
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def names() -> list[str]:
                async with async_session() as session:
                    rows = await session.execute(select(User.name))
                    return list(rows.scalars())
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def get_session():
                async with async_session() as session:
                    yield session
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def rename(user_id: int, name: str) -> None:
                async with async_session() as session:
                    user = await session.get(User, user_id)
                    user.name = name
                    if user.vip:
                        await session.commit()
                        return
                    await session.commit()
            """
        ),
        Valid(
            """
            # A test rolls its writes back on purpose.
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def test_login_is_recorded():
                async with async_session() as session:
                    session.add(Login(user_id=1))
                    await session.flush()
                    assert await session.scalar(select(func.count(Login.id))) == 1
            """
        ),
    )
    INVALID = (
        Invalid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def record_login(user_id: int) -> None:
                async with async_session() as session:
                    session.add(Login(user_id=user_id))
            """,
            line=7,
            related_lines=(6,),
            message="`session`",
        ),
        Invalid(
            """
            from sqlalchemy import update as sa_update
            from sqlalchemy.ext.asyncio import async_sessionmaker

            factory = async_sessionmaker(engine)

            async def deactivate(ids: list[int]) -> None:
                async with factory() as db:
                    await db.execute(sa_update(User).where(User.id.in_(ids)).values(active=False))
            """,
            line=8,
            related_lines=(7,),
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            factory = async_sessionmaker(engine)

            async def rename(user_id: int, name: str) -> None:
                async with factory() as session:
                    user = await session.get(User, user_id)
                    user.name = name
            """,
            line=8,
        ),
        Invalid(
            """
            import sqlalchemy as sa
            from sqlalchemy.ext.asyncio import async_sessionmaker

            factory = async_sessionmaker(engine)

            async def purge(user_id: int) -> None:
                async with factory() as session:
                    stmt = sa.delete(Token).where(Token.user_id == user_id)
                    await session.execute(stmt)
                    user = await session.get(User, user_id)
                    await session.delete(user)
            """,
            line=9,
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            factory = async_sessionmaker(engine)

            class Importer:
                async def run(self, rows) -> None:
                    async with factory() as session:
                        for row in rows:
                            session.add(Row(**row))
                        if rows:
                            await session.flush()
            """,
            line=9,
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            factory = async_sessionmaker(engine)

            async def record(event) -> None:
                async with factory() as session:
                    session.add_all([Event(**event), Audit(kind="event")])
                    if event.get("urgent"):
                        await session.commit()
                        return
                    session.add(Queue(event=event))
            """,
            line=11,
        ),
        Invalid(
            """
            # SQLAlchemy 2.1: delete_all() is a write too.
            from sqlalchemy.ext.asyncio import async_sessionmaker

            factory = async_sessionmaker(engine)

            async def forget(user_ids: list[int]) -> None:
                async with factory() as session:
                    users = (await session.scalars(select(User).where(User.id.in_(user_ids)))).all()
                    await session.delete_all(users)
            """,
            line=9,
            related_lines=(7,),
        ),
    )

    def analyse(self, function: cst.FunctionDef, events: list[Event]) -> None:
        if function.name.value.startswith("test_"):
            return  # a test discards its writes on purpose
        owned = [
            e
            for e in events
            if e.kind == "own" and e.session is not None and e.session not in self.escaped
        ]
        if not owned:
            return
        for own in owned:
            self._check(function, events, own)

    def _check(self, function: cst.FunctionDef, events: list[Event], own: Event) -> None:
        session = own.session
        block = own.block
        assert session is not None and block is not None
        writes = {
            e
            for e in events
            if e.session is session
            and not e.blocks
            and self.inside(block, e.node)
            and (
                e.kind in ("add", "write")
                or (e.kind == "await" and (e.method in ("delete", "delete_all") or e.dml))
            )
        }
        if not writes:
            return
        committed: set[Event] = set()
        flushed: set[Event] = set()

        def apply(event: Event, facts: frozenset[Event]) -> frozenset[Event]:
            if event in writes:
                return facts | {event}
            if event.session is session and event.kind == "await":
                if event.method == "commit":
                    committed.update(facts)
                    return frozenset()
                if event.method == "flush":
                    flushed.update(facts)
            return facts

        self.solve(function, events, _NO_EVENTS, apply, _union)
        lost = writes - committed
        if not lost:
            return
        if lost <= flushed and _returns_value(function):
            return  # the object goes back to a caller with its flushed state
        first = _first(lost)
        item = own.node
        assert isinstance(item, cst.WithItem)
        opener = self.code(item.item)
        self.report(
            first.node,
            f"`{session.name}` writes here but is never committed on any path after it: leaving "
            f"`async with {opener}` rolls the writes back silently; `await {session.name}.commit()` "
            "or open the session with `.begin()`",
            related=[(item, f"`{session.name}` is opened and closed here")],
            statement=first.statement,
            scope=first.scope,
        )


def _returns_value(function: cst.FunctionDef) -> bool:
    """The function hands a value back to its caller (`return x` or `yield x`)."""
    return any(
        isinstance(node, (cst.Return, cst.Yield))
        and isinstance(node.value, cst.BaseExpression)
        and not is_none(node.value)
        for node in iter_descendants(function.body)
    )
