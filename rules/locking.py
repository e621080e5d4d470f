"""Locking rules (skill section "Pattern: Avoiding Deadlocks")."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field

import libcst as cst

from bot.findings import FixSafety, Severity
from bot.flow import FlowGraph, FlowNode, ForwardAnalysis
from bot.rule import SESSION_TOKENS, FixPlan, Invalid, Rule, Valid
from bot.semantics import BindingKind, ScopeKind
from bot.walker import iter_descendants
from rules._shared import dotted, one_line, positional_args, target_names

SECTION = "Pattern: Avoiding Deadlocks"

# The keyword arguments of AsyncSession.get() and AsyncSession.get_one() (SQLAlchemy 2.0 and
# 2.1; measured by introspection in research/truth.md, claim 8).
GET_KEYWORDS = frozenset(
    {"options", "populate_existing", "with_for_update", "identity_token", "execution_options"}
)
GET_METHODS = frozenset({"get", "get_one"})
SELECTS = frozenset(
    {
        "sqlalchemy.select",
        "sqlalchemy.sql.select",
        "sqlalchemy.sql.expression.select",
        "sqlalchemy.future.select",
        "sqlmodel.select",
        "sqlmodel.sql.expression.select",
    }
)
# Calls whose result is in a consistent order, whatever order their input had.
ORDERING_CALLS = frozenset({"builtins.sorted", "builtins.min", "builtins.max"})
# Calls that keep the order (and the origin) of their first argument.
ORDER_KEEPING_CALLS = frozenset(
    {
        "builtins.int",
        "builtins.str",
        "builtins.list",
        "builtins.tuple",
        "builtins.set",
        "builtins.frozenset",
        "builtins.enumerate",
        "builtins.reversed",
        "uuid.UUID",
    }
)
FILTER_METHODS = frozenset({"where", "filter"})
MULTI_ROW_OPERATORS = frozenset({"in_", "any_"})


# ---------------------------------------------------------------------- shared helpers
def _is_sync_session(rule: Rule, expr: cst.BaseExpression) -> bool:
    if not isinstance(expr, cst.Name):
        return False
    binding = rule.semantics.lookup(expr.value)
    return binding is not None and binding.kind is BindingKind.SYNC_SESSION


def _names(node: cst.CSTNode) -> Iterator[str]:
    for child in iter_descendants(node):
        if isinstance(child, cst.Name):
            yield child.value


# ---------------------------------------------------------------------- AG601
@dataclass(eq=False)
class _Loop:
    node: cst.CSTNode  # a For, or a comprehension
    targets: frozenset[str]
    iterable: cst.BaseExpression
    origin: _Origin


@dataclass(frozen=True)
class _Origin:
    """Where a lock's id (or a loop's iterable) comes from."""

    kind: str  # "param", "ordered", "loop" or "unknown"
    names: frozenset[str] = frozenset()  # every name the value passed through
    loop: _Loop | None = None


UNKNOWN = _Origin("unknown")
# Flow facts: the locks taken on some path so far, and the names sorted on every path so far.
_Facts = tuple[frozenset[int], frozenset[str]]


@dataclass(eq=False)
class _Lock:
    index: int
    node: cst.CSTNode  # the `get(...)` call, or the `.with_for_update(...)` call
    model: str
    ident: str
    origin: _Origin
    statement: cst.CSTNode | None
    scope: str


@dataclass(eq=False)
class _Function:
    node: cst.FunctionDef
    locks: list[_Lock] = field(default_factory=list)
    loops: list[_Loop] = field(default_factory=list)


class UnorderedRowLocks(Rule):
    CODE = "AG601"
    NAME = "unordered-row-locks"
    SEVERITY = Severity.WARNING
    SECTION = SECTION
    SUMMARY = "Rows are locked in the order the caller gave, so two requests can deadlock."
    DOC = """
    ## What it does
    Flags row locks (`FOR UPDATE`) taken in an order that depends on the caller:

    * two or more locks on rows of one model in one function (`await session.get(Model, x,
      with_for_update=True)`, `select(Model).where(Model.id == x).with_for_update()`) whose ids
      come straight from the function's parameters, with no `sorted(...)`, `min`/`max` or
      comparison putting them in a fixed order first;
    * a multi-row `select(...).where(Model.id.in_(ids)).with_for_update()` without
      `.order_by(...)`;
    * locks taken one by one in a loop over a parameter that was never sorted
      (`for account_id in account_ids: ... with_for_update ...`).

    ## Why is this bad?
    A transaction that locks row A and then waits for row B deadlocks against one that holds B
    and waits for A. With ids in caller order, `transfer(a, b)` and `transfer(b, a)` running at
    the same time do exactly that; the database breaks the tie by aborting one of them
    ("deadlock detected"), so under load some requests fail at random. A multi-row
    `FOR UPDATE` without `ORDER BY` locks rows in whatever order the query plan reads them,
    which can differ between two queries over overlapping rows.

    ## Example
    ```python
    async def transfer(from_id: int, to_id: int, amount: int, session: AsyncSession) -> None:
        source = await session.get(Account, from_id, with_for_update=True)
        target = await session.get(Account, to_id, with_for_update=True)
        source.balance -= amount
        target.balance += amount
        await session.commit()
    ```

    ## Use instead
    Lock the rows in one global order, for instance by primary key:
    ```python
    async def transfer(from_id: int, to_id: int, amount: int, session: AsyncSession) -> None:
        low, high = sorted([from_id, to_id])
        locked = {
            account_id: await session.get(Account, account_id, with_for_update=True)
            for account_id in (low, high)
        }
        locked[from_id].balance -= amount
        locked[to_id].balance += amount
        await session.commit()
    ```
    For many rows, one query with `ORDER BY`:
    `select(Account).where(Account.id.in_(ids)).order_by(Account.id).with_for_update()`.
    """
    TOKENS = (("with_for_update",),)
    NEEDS = frozenset({"repo-index"})

    VALID = (
        # The skill's own correct example: the ids are sorted first.
        Valid(
            """
            from uuid import UUID
            from sqlalchemy.ext.asyncio import AsyncSession

            async def transfer_credits(from_id: UUID, to_id: UUID, amount: int, session: AsyncSession):
                first_id, second_id = sorted([from_id, to_id])
                first = await session.get(Account, first_id, with_for_update=True)
                second = await session.get(Account, second_id, with_for_update=True)
                await session.commit()
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def lock_one(account_id: int, session: AsyncSession):
                account = await session.get(Account, account_id, with_for_update=True)
                account.balance += 1
                await session.commit()
            """
        ),
        Valid(
            """
            from sqlalchemy import select
            from sqlalchemy.ext.asyncio import AsyncSession

            async def lock_many(ids: list[int], session: AsyncSession):
                stmt = (
                    select(Account)
                    .where(Account.id.in_(ids))
                    .order_by(Account.id)
                    .with_for_update()
                )
                return (await session.scalars(stmt)).all()
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def pair(a: int, b: int, session: AsyncSession):
                low, high = min(a, b), max(a, b)
                first = await session.get(Account, low, with_for_update=True)
                second = await session.get(Account, high, with_for_update=True)
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def lock_all(account_ids: list[int], session: AsyncSession):
                for account_id in sorted(account_ids):
                    await session.get(Account, account_id, with_for_update=True)
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def lock_all(account_ids: list[int], session: AsyncSession):
                account_ids.sort()
                for account_id in account_ids:
                    await session.get(Account, account_id, with_for_update=True)
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def user_and_wallet(user_id: int, wallet_id: int, session: AsyncSession):
                user = await session.get(User, user_id, with_for_update=True)
                wallet = await session.get(Wallet, wallet_id, with_for_update=True)
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def either(a: int, b: int, first: bool, session: AsyncSession):
                if first:
                    row = await session.get(Account, a, with_for_update=True)
                else:
                    row = await session.get(Account, b, with_for_update=True)
                return row
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def transfer(from_id: int, to_id: int, session: AsyncSession):
                if from_id > to_id:
                    from_id, to_id = to_id, from_id
                a = await session.get(Account, from_id, with_for_update=True)
                b = await session.get(Account, to_id, with_for_update=True)
            """
        ),
        Valid(
            """
            from sqlalchemy import select
            from sqlalchemy.ext.asyncio import AsyncSession

            async def claim_jobs(ids: list[int], session: AsyncSession):
                stmt = select(Job).where(Job.id.in_(ids)).with_for_update(skip_locked=True)
                return (await session.scalars(stmt)).all()
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def read_two(a: int, b: int, session: AsyncSession):
                first = await session.get(Account, a)
                second = await session.get(Account, b)
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def same_row(a: int, session: AsyncSession):
                first = await session.get(Account, a, with_for_update=True)
                again = await session.get(Account, a, with_for_update=True)
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def each_in_its_transaction(ids: list[int], session: AsyncSession):
                for account_id in ids:
                    account = await session.get(Account, account_id, with_for_update=True)
                    account.touched = True
                    await session.commit()
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def one_at_a_time(a: int, b: int, session: AsyncSession):
                first = await session.get(Account, a, with_for_update=True)
                first.balance -= 1
                await session.commit()
                second = await session.get(Account, b, with_for_update=True)
                second.balance += 1
                await session.commit()
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def settle(transfer_id: int, session: AsyncSession):
                transfer = await session.get(Transfer, transfer_id)
                for line in transfer.lines:
                    await session.get(Account, line.account_id, with_for_update=True)
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def outer(a: int, b: int, session: AsyncSession):
                first = await session.get(Account, a, with_for_update=True)

                async def later():
                    return await session.get(Account, b, with_for_update=True)

                return first, later
            """
        ),
    )
    INVALID = (
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def transfer(from_id: int, to_id: int, amount: int, session: AsyncSession):
                source = await session.get(Account, from_id, with_for_update=True)
                target = await session.get(Account, to_id, with_for_update=True)
                source.balance -= amount
                target.balance += amount
                await session.commit()
            """,
            line=5,
            related_lines=(4,),
            message="deadlock detected",
        ),
        Invalid(
            """
            from typing import Annotated
            from fastapi import Depends
            from sqlalchemy import select
            from sqlalchemy.ext.asyncio import AsyncSession

            SessionDep = Annotated[AsyncSession, Depends(get_session)]

            @router.post("/transfers")
            async def create_transfer(body: TransferIn, session: SessionDep):
                source = (
                    await session.execute(
                        select(Account).where(Account.id == body.source_id).with_for_update()
                    )
                ).scalar_one()
                target = (
                    await session.execute(
                        select(Account).where(Account.id == body.target_id).with_for_update()
                    )
                ).scalar_one()
            """,
            line=17,
            related_lines=(12,),
            message="`body.target_id`",
        ),
        Invalid(
            """
            import sqlalchemy as sa
            from sqlalchemy.ext.asyncio import AsyncSession

            async def lock_many(ids: list[int], session: AsyncSession):
                stmt = sa.select(Account).where(Account.id.in_(ids)).with_for_update()
                return (await session.scalars(stmt)).all()
            """,
            line=5,
            message="order_by",
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def lock_all(account_ids: list[int], session: AsyncSession):
                for account_id in account_ids:
                    await session.get(Account, account_id, with_for_update=True)
            """,
            line=5,
            related_lines=(4,),
            message="`account_ids`",
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            class Ledger:
                def __init__(self, session: AsyncSession) -> None:
                    self.session = session

                async def move(self, a: int, b: int) -> None:
                    left = await self.session.get_one(Account, a, with_for_update={"read": False})
                    right = await self.session.get_one(Account, b, with_for_update={"read": False})
            """,
            line=9,
            related_lines=(8,),
        ),
        Invalid(
            """
            from sqlmodel import select
            from sqlmodel.ext.asyncio.session import AsyncSession

            async def reserve(items: list[Item], session: AsyncSession):
                rows = [
                    (await session.exec(select(Stock).where(Stock.id == item.stock_id).with_for_update())).one()
                    for item in items
                ]
            """,
            line=6,
            related_lines=(7,),
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def swap(a: int, b: int, session: AsyncSession):
                first_id = a
                second_id = b
                first = await session.get(Account, first_id, with_for_update=True)
                second = await session.get(Account, second_id, with_for_update=True)
            """,
            line=7,
            related_lines=(6,),
        ),
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._functions: list[_Function] = []

    # ---------------------------------------------------------------- traversal
    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._functions.append(_Function(node))

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        function = self._functions.pop()
        if function.locks:
            self._check_function(function)

    def visit_For(self, node: cst.For) -> None:
        if self._functions:
            self._push_loop(node, node.target, node.iter)

    def visit_Call(self, node: cst.Call) -> None:
        scope = self.semantics.function_scope()
        if not self._functions or scope is None or scope.kind is not ScopeKind.FUNCTION:
            return
        func = node.func
        if not isinstance(func, cst.Attribute):
            return
        if func.attr.value in GET_METHODS:
            self._get_lock(node, func)
        elif func.attr.value == "with_for_update":
            self._select_lock(node, func)

    # ---------------------------------------------------------------- loops
    def _push_loop(
        self, node: cst.CSTNode, target: cst.BaseExpression, iterable: cst.BaseExpression
    ) -> None:
        function = self._functions[-1]
        origin = self._origin(iterable)
        function.loops.append(_Loop(node, frozenset(target_names(target)), iterable, origin))

    def _push_comprehension(self, node: cst.BaseComp | cst.DictComp) -> None:
        if not self._functions:
            return
        clause: cst.CompFor | None = node.for_in
        while clause is not None:
            self._push_loop(node, clause.target, clause.iter)
            clause = clause.inner_for_in

    def _pop_loops(self, node: cst.CSTNode) -> None:
        if not self._functions:
            return
        loops = self._functions[-1].loops
        while loops and loops[-1].node is node:
            loops.pop()

    # Comprehensions are loops too: one per `for` clause.
    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _push_comprehension
    leave_For = leave_ListComp = leave_SetComp = leave_DictComp = leave_GeneratorExp = _pop_loops

    # ---------------------------------------------------------------- lock sites
    def _get_lock(self, call: cst.Call, func: cst.Attribute) -> None:
        if self.semantics.direct_session(func.value) is None and not _is_sync_session(
            self, func.value
        ):
            return
        positional = positional_args(call)
        lock = next(
            (
                arg.value
                for arg in call.args
                if arg.keyword is not None and arg.keyword.value == "with_for_update"
            ),
            None,
        )
        if len(positional) < 2 or lock is None or not _waits_for_lock(lock):
            return
        self._add_lock(call, positional[0].value, positional[1].value)

    def _select_lock(self, call: cst.Call, func: cst.Attribute) -> None:
        if any(
            arg.keyword is not None
            and arg.keyword.value in ("nowait", "skip_locked")
            and not _is_false(arg.value)
            for arg in call.args
        ):
            return  # never waits, so it cannot take part in a deadlock
        chain = self._chain(func.value, depth=0)
        if chain is None:
            return
        model, methods, filters = chain
        if "order_by" in methods:
            return
        if any(_multi_row(expression) for expression in filters):
            self.report(
                call,
                "this `SELECT ... FOR UPDATE` locks several rows without `order_by(...)`, so rows "
                'are locked in plan order and overlapping requests can deadlock ("deadlock '
                'detected"); add `.order_by(<primary key>)` before `.with_for_update()`',
            )
            return
        ident = _equality_key(filters, model)
        if ident is not None:
            self._add_lock(call, model, ident)

    def _chain(
        self, expr: cst.BaseExpression, depth: int
    ) -> tuple[cst.BaseExpression, set[str], list[cst.CSTNode]] | None:
        """(the selected model, the methods called, the filter expressions) of a select chain."""
        methods: set[str] = set()
        filters: list[cst.CSTNode] = []
        while True:
            if isinstance(expr, cst.Name) and depth < 3:
                binding = self.semantics.lookup(expr.value)
                if (
                    binding is None
                    or binding.value is None
                    or binding.kind is not BindingKind.OTHER
                ):
                    return None
                inner = self._chain(binding.value, depth + 1)
                if inner is None:
                    return None
                return inner[0], methods | inner[1], filters + inner[2]
            if not isinstance(expr, cst.Call):
                return None
            func = expr.func
            if self.semantics.qualified_name(func) in SELECTS:
                if not expr.args:
                    return None
                return expr.args[0].value, methods, filters
            if not isinstance(func, cst.Attribute):
                return None
            name = func.attr.value
            methods.add(name)
            if name in FILTER_METHODS:
                filters.extend(arg.value for arg in expr.args)
            elif name == "filter_by":
                filters.extend(arg for arg in expr.args)
            expr = func.value

    def _add_lock(
        self, call: cst.Call, model: cst.BaseExpression, ident: cst.BaseExpression
    ) -> None:
        function = self._functions[-1]
        module = self.context.module
        function.locks.append(
            _Lock(
                len(function.locks),
                call,
                one_line(module, model),
                one_line(module, ident),
                self._origin(ident),
                self.context.statement,
                self.semantics.scope.qualname,
            )
        )

    # ---------------------------------------------------------------- where ids come from
    def _origin(self, expr: cst.BaseExpression, depth: int = 0) -> _Origin:
        if depth > 6:
            return UNKNOWN
        semantics = self.semantics
        if isinstance(expr, (cst.Attribute, cst.Subscript)):
            return self._origin(expr.value, depth + 1)
        if isinstance(expr, cst.Call):
            qualname = semantics.qualified_name(expr.func)
            if qualname in ORDERING_CALLS:
                return _Origin("ordered")
            if qualname in ORDER_KEEPING_CALLS and expr.args:
                return self._origin(expr.args[0].value, depth + 1)
            return UNKNOWN
        if not isinstance(expr, cst.Name):
            return UNKNOWN
        name = expr.value
        for loop in reversed(self._functions[-1].loops if self._functions else []):
            if name in loop.targets:
                return _Origin("loop", frozenset({name}), loop)
        binding = semantics.lookup(name)
        if binding is None:
            return UNKNOWN
        if isinstance(binding.node, cst.Param):
            return _Origin("param", frozenset({name}))
        value = binding.value
        if value is None and isinstance(binding.node, cst.Assign):
            value = _unpacked(binding.node, name)
        if value is None:
            return UNKNOWN
        inner = self._origin(value, depth + 1)
        return _Origin(inner.kind, inner.names | {name}, inner.loop)

    # ---------------------------------------------------------------- path facts
    def _check_function(self, function: _Function) -> None:
        looped = [lock for lock in function.locks if lock.origin.kind == "loop"]
        pairs = [lock for lock in function.locks if lock.origin.kind == "param"]
        if not looped and len(pairs) < 2:
            return
        graph = self.semantics.flow(function.node)
        analysis, where = _analyse(graph, function)
        reported_loops: set[int] = set()
        for lock in looped:
            loop = lock.origin.loop
            assert loop is not None
            if id(loop.node) in reported_loops or loop.origin.kind != "param":
                continue
            if isinstance(loop.node, cst.For) and _ends_transaction(loop.node.body):
                continue  # each pass commits: one lock held at a time
            header = graph.containing(loop.iterable)
            before = analysis.facts_before(header) if header is not None else None
            if before is None or loop.origin.names & before[1]:
                continue
            reported_loops.add(id(loop.node))
            iterable = one_line(self.context.module, loop.iterable)
            self.report(
                lock.node,
                f"`{lock.model}` rows are locked one by one in the caller's order of "
                f"`{iterable}`: requests with overlapping ids in another order can deadlock "
                '("deadlock detected"); iterate over `sorted(...)` instead',
                related=[(loop.iterable, f"`{iterable}` is not sorted before the loop")],
                statement=lock.statement,
                scope=lock.scope,
            )
        compared = _compared_names(function.node)
        reported_models: set[str] = set()
        for second in pairs:
            if second.model in reported_models:
                continue
            node = where.get(second.index)
            before = analysis.facts_before(node) if node is not None else None
            if before is None:
                continue
            earlier = [
                pairs_first
                for pairs_first in pairs
                if pairs_first.index < second.index
                and (pairs_first.index in before[0] or where.get(pairs_first.index) is node)
            ]
            for first in earlier:
                if first.model != second.model or first.ident == second.ident:
                    continue
                first_node = where.get(first.index)
                first_before = analysis.facts_before(first_node) if first_node else None
                if first_before is None:
                    continue
                if (first.origin.names & first_before[1]) or (second.origin.names & before[1]):
                    continue  # sorted (or min/max) on every path before the lock
                if any(
                    (left & first.origin.names and right & second.origin.names)
                    or (left & second.origin.names and right & first.origin.names)
                    for left, right in compared
                ):
                    continue  # ordered by hand: `if a > b: a, b = b, a`
                reported_models.add(second.model)
                self.report(
                    second.node,
                    f"`{second.model}` rows are locked by `{first.ident}`, then `{second.ident}`, "
                    "in caller order: a concurrent call with the ids swapped deadlocks "
                    '("deadlock detected"); lock in a fixed order, e.g. `sorted([...])`',
                    related=[(first.node, f"first lock, on `{first.ident}`")],
                    statement=second.statement,
                    scope=second.scope,
                )
                break


def _analyse(
    graph: FlowGraph, function: _Function
) -> tuple[ForwardAnalysis[_Facts], dict[int, FlowNode]]:
    """Locks taken on some path before each node, and names sorted on every path before it."""
    where: dict[int, FlowNode] = {}
    at_node: dict[int, list[int]] = {}
    for lock in function.locks:
        node = graph.containing(lock.node)
        if node is not None:
            where[lock.index] = node
            at_node.setdefault(node.index, []).append(lock.index)

    def transfer(node: FlowNode, facts: _Facts) -> _Facts:
        locks, ordered = facts
        taken = at_node.get(node.index)
        if taken:
            locks = locks | frozenset(taken)
        if node.kind == "stmt" and _ends_transaction(node.node):
            locks = frozenset()  # commit/rollback releases every row lock
        return locks, _ordered_after(node.node, ordered)

    def join(a: _Facts, b: _Facts) -> _Facts:
        return a[0] | b[0], a[1] & b[1]

    initial: _Facts = (frozenset(), frozenset())
    analysis: ForwardAnalysis[_Facts] = ForwardAnalysis(graph, initial, transfer, join)
    return analysis, where


def _ends_transaction(statement: cst.CSTNode | None) -> bool:
    if statement is None:
        return False
    return any(
        isinstance(node, cst.Call)
        and isinstance(node.func, cst.Attribute)
        and node.func.attr.value in ("commit", "rollback")
        for node in iter_descendants(statement)
    )


def _ordered_after(statement: cst.CSTNode | None, ordered: frozenset[str]) -> frozenset[str]:
    """Names holding values in a fixed order after `statement` ran."""
    if isinstance(statement, cst.Assign):
        names: list[str] = []
        for target in statement.targets:
            names.extend(target_names(target.target))
        if _is_ordering(statement.value, ordered):
            return ordered | frozenset(names)
        return ordered - frozenset(names)
    if isinstance(statement, (cst.AnnAssign, cst.AugAssign)):
        names = list(target_names(statement.target))
        value = statement.value
        if (
            isinstance(statement, cst.AnnAssign)
            and value is not None
            and _is_ordering(value, ordered)
        ):
            return ordered | frozenset(names)
        return ordered - frozenset(names)
    if isinstance(statement, cst.For):
        return ordered - frozenset(target_names(statement.target))
    if (
        isinstance(statement, cst.Expr)
        and isinstance(statement.value, cst.Call)
        and isinstance(statement.value.func, cst.Attribute)
        and statement.value.func.attr.value == "sort"
        and isinstance(statement.value.func.value, cst.Name)
    ):
        return ordered | {statement.value.func.value.value}
    return ordered


def _is_ordering(value: cst.BaseExpression, ordered: frozenset[str]) -> bool:
    if isinstance(value, cst.Call) and isinstance(value.func, cst.Name):
        return value.func.value in ("sorted", "min", "max")
    if isinstance(value, (cst.Tuple, cst.List)) and value.elements:
        return all(_is_ordering(e.value, ordered) for e in value.elements)
    if isinstance(value, (cst.Subscript, cst.Attribute)):
        return _is_ordering(value.value, ordered)
    if isinstance(value, cst.Name):
        return value.value in ordered
    return False


def _unpacked(assign: cst.Assign, name: str) -> cst.BaseExpression | None:
    """The element of `a, b = x, y` (or `= sorted(...)`) that `name` receives."""
    for target in assign.targets:
        elements = target.target
        if not isinstance(elements, (cst.Tuple, cst.List)):
            continue
        value = assign.value
        if isinstance(value, cst.Call):
            return value  # a, b = sorted([...]): both come from the call
        if isinstance(value, (cst.Tuple, cst.List)) and len(value.elements) == len(
            elements.elements
        ):
            for element, source in zip(elements.elements, value.elements, strict=True):
                if isinstance(element.value, cst.Name) and element.value.value == name:
                    return source.value
    return None


def _compared_names(function: cst.FunctionDef) -> list[tuple[frozenset[str], frozenset[str]]]:
    """(left names, right names) of every `<`, `>`, `<=`, `>=` comparison in the function."""
    found = []
    for node in iter_descendants(function.body):
        if not isinstance(node, cst.Comparison):
            continue
        left: cst.BaseExpression = node.left
        for target in node.comparisons:
            if isinstance(
                target.operator,
                (cst.LessThan, cst.GreaterThan, cst.LessThanEqual, cst.GreaterThanEqual),
            ):
                found.append((frozenset(_names(left)), frozenset(_names(target.comparator))))
            left = target.comparator
    return found


def _waits_for_lock(value: cst.BaseExpression) -> bool:
    """`with_for_update=True` or a dict of lock options that still waits (no nowait/skip_locked)."""
    if isinstance(value, cst.Name):
        return value.value == "True"
    if isinstance(value, cst.Dict):
        for element in value.elements:
            if (
                isinstance(element, cst.DictElement)
                and isinstance(element.key, cst.SimpleString)
                and element.key.evaluated_value in ("nowait", "skip_locked")
                and not _is_false(element.value)
            ):
                return False
        return True
    if (
        isinstance(value, cst.Call)
        and isinstance(value.func, cst.Name)
        and value.func.value == "dict"
    ):
        return not any(
            arg.keyword is not None
            and arg.keyword.value in ("nowait", "skip_locked")
            and not _is_false(arg.value)
            for arg in value.args
        )
    return False


def _is_false(value: cst.BaseExpression) -> bool:
    return isinstance(value, cst.Name) and value.value in ("False", "None")


def _multi_row(expression: cst.CSTNode) -> bool:
    """A filter that selects several rows by construction: `Model.id.in_(ids)`, `any_(...)`."""
    for node in iter_descendants(expression):
        if isinstance(node, cst.Call):
            func = node.func
            name = (
                func.attr.value
                if isinstance(func, cst.Attribute)
                else (func.value if isinstance(func, cst.Name) else None)
            )
            if name in MULTI_ROW_OPERATORS:
                return True
    return False


def _equality_key(
    filters: list[cst.CSTNode], model: cst.BaseExpression
) -> cst.BaseExpression | None:
    """The value a single-row lock is keyed by: `x` in `Model.id == x` or `filter_by(id=x)`."""
    model_text = dotted(model)
    for expression in filters:
        if isinstance(expression, cst.Arg):
            if expression.keyword is not None and expression.keyword.value in ("id", "pk"):
                return expression.value
            continue
        for node in iter_descendants(expression):
            if not isinstance(node, cst.Comparison) or len(node.comparisons) != 1:
                continue
            target = node.comparisons[0]
            if not isinstance(target.operator, cst.Equal):
                continue
            for column, value in ((node.left, target.comparator), (target.comparator, node.left)):
                if (
                    isinstance(column, cst.Attribute)
                    and dotted(column.value) == model_text
                    and model_text is not None
                    and (column.attr.value == "id" or column.attr.value.endswith("_id"))
                    and not (isinstance(value, cst.Attribute) and dotted(value.value) == model_text)
                ):
                    return value
    return None


# ---------------------------------------------------------------------- AG602
# Spellings of `with_for_update` that people reach for: renamed by the fix.
_LOCK_SPELLINGS = frozenset({"forupdate", "withforupdate", "lockforupdate", "selectforupdate"})


def _meant_with_for_update(keyword: str) -> bool:
    squashed = keyword.lower().replace("_", "").rstrip("s")
    if squashed in _LOCK_SPELLINGS:
        return True
    ratio = difflib.SequenceMatcher(None, keyword.lower(), "with_for_update").ratio()
    return ratio >= 0.85


class MisspeltLockArgument(Rule):
    CODE = "AG602"
    NAME = "misspelt-lock-argument"
    SEVERITY = Severity.ERROR
    SECTION = SECTION
    SUMMARY = "`AsyncSession.get()` is called with a keyword it does not accept (`for_update=`)."
    DOC = """
    ## What it does
    Flags a keyword argument that `AsyncSession.get()` / `AsyncSession.get_one()` do not accept,
    such as `for_update=True` where `with_for_update=True` was meant. Their keywords are
    `options`, `populate_existing`, `with_for_update`, `identity_token` and
    `execution_options` (SQLAlchemy 2.0 and 2.1).

    ## Why is this bad?
    The call raises as soon as it runs: "TypeError: AsyncSession.get() got an unexpected
    keyword argument 'for_update'". Code paths that are rarely run, or tests that mock the
    session, let it reach production, and the row lock the author wanted is never taken.

    ## Example
    ```python
    account = await session.get(Account, account_id, for_update=True)
    ```

    ## Use instead
    ```python
    account = await session.get(Account, account_id, with_for_update=True)
    ```

    ## Fix safety
    The fix renames a near-miss spelling of `with_for_update` (`for_update=`,
    `with_for_updates=`, ...) and is safe: the call could only raise before. Other unknown
    keywords have no fix, because what was meant cannot be known.
    """
    TOKENS = ((".get(", ".get_one("), SESSION_TOKENS)
    NEEDS = frozenset({"repo-index"})

    VALID = (
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def lock(session: AsyncSession, account_id: int):
                return await session.get(Account, account_id, with_for_update=True)
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession
            from sqlalchemy.orm import selectinload

            async def load(session: AsyncSession, user_id: int):
                return await session.get_one(
                    User,
                    user_id,
                    options=[selectinload(User.orders)],
                    populate_existing=True,
                    identity_token=None,
                    execution_options={"yield_per": 10},
                )
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            class UserRepository:
                def __init__(self, session: AsyncSession) -> None:
                    self.session = session

            async def lock(session: AsyncSession, user_id: int):
                repository = UserRepository(session)
                return await repository.get(user_id, for_update=True)
            """
        ),
        Valid(
            """
            async def lookup(cache, key: str):
                return await cache.get(key, for_update=True)
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def load(session: AsyncSession, user_id: int, **options):
                return await session.get(User, user_id, **options)
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def headers(session: AsyncSession, request):
                return request.headers.get("x-user", default=None)
            """
        ),
        Valid(
            """
            from sqlalchemy.orm import Session

            def load(session: Session, user_id: int):
                return session.get(User, user_id, bind_arguments={"mapper": User})
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def settings(session: AsyncSession, data: dict):
                return data.get("for_update", False)
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def lock(session: AsyncSession, account_id: int):
                await session.refresh(account, with_for_update=True)
            """
        ),
    )
    INVALID = (
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def lock(session: AsyncSession, account_id: int):
                return await session.get(Account, account_id, for_update=True)
            """,
            line=4,
            message="got an unexpected keyword argument 'for_update'",
            fixed="""
            from sqlalchemy.ext.asyncio import AsyncSession

            async def lock(session: AsyncSession, account_id: int):
                return await session.get(Account, account_id, with_for_update=True)
            """,
        ),
        Invalid(
            """
            from typing import Annotated
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            SessionDep = Annotated[AsyncSession, Depends(get_session)]

            @router.post("/accounts/{account_id}/debit")
            async def debit(account_id: int, session: SessionDep):
                account = await session.get_one(
                    Account,
                    account_id,
                    with_for_updates={"nowait": True},
                )
            """,
            line=12,
            fixed="""
            from typing import Annotated
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            SessionDep = Annotated[AsyncSession, Depends(get_session)]

            @router.post("/accounts/{account_id}/debit")
            async def debit(account_id: int, session: SessionDep):
                account = await session.get_one(
                    Account,
                    account_id,
                    with_for_update={"nowait": True},
                )
            """,
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            factory = async_sessionmaker(engine)

            async def load(user_id: int):
                async with factory() as s:
                    return await s.get(User, user_id, lock=True)
            """,
            line=7,
            message="'lock'",
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession as AS

            class Ledger:
                def __init__(self, session: AS) -> None:
                    self.session = session

                async def lock(self, account_id: int):
                    return await self.session.get(Account, account_id, forupdate=True)
            """,
            line=8,
            fixed="""
            from sqlalchemy.ext.asyncio import AsyncSession as AS

            class Ledger:
                def __init__(self, session: AS) -> None:
                    self.session = session

                async def lock(self, account_id: int):
                    return await self.session.get(Account, account_id, with_for_update=True)
            """,
        ),
        Invalid(
            """
            from fastapi import Depends

            @router.get("/users/{user_id}")
            async def read_user(user_id: int, db=Depends(get_db)):
                return await db.get(User, user_id, load_options=[joinedload(User.orders)])
            """,
            line=5,
            message="'load_options'",
        ),
        Invalid(
            """
            import sqlalchemy.ext.asyncio as sa_async

            async def read(session: sa_async.AsyncSession, user_id: int):
                coroutine = session.get(User, user_id, for_update=True)
                return await coroutine
            """,
            line=4,
        ),
    )

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if not isinstance(func, cst.Attribute) or func.attr.value not in GET_METHODS:
            return
        if self.semantics.direct_session(func.value) is None:
            return
        for arg in node.args:
            if arg.keyword is None or arg.star or arg.keyword.value in GET_KEYWORDS:
                continue
            keyword = arg.keyword.value
            method = f"AsyncSession.{func.attr.value}()"
            error = f"TypeError: {method} got an unexpected keyword argument '{keyword}'"
            if _meant_with_for_update(keyword):
                already = any(
                    a.keyword is not None and a.keyword.value == "with_for_update"
                    for a in node.args
                )
                fix = (
                    None
                    if already
                    else FixPlan(
                        f"Rename `{keyword}=` to `with_for_update=`",
                        FixSafety.SAFE,
                        replacements=((arg.keyword, "with_for_update"),),
                    )
                )
                self.report(
                    arg,
                    f'`{keyword}=` is not an argument of `{method}` ("{error}"); the row lock '
                    "is spelt `with_for_update=`",
                    fix=fix,
                )
            else:
                self.report(
                    arg,
                    f'`{keyword}=` is not an argument of `{method}` ("{error}"); it accepts '
                    "`options`, `populate_existing`, `with_for_update`, `identity_token`, "
                    "`execution_options`",
                )
            return  # Python stops at the first unexpected keyword: one finding per call
