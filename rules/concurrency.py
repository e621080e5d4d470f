"""Concurrency rules (skill section "Pattern: Concurrent vs Sequential Queries")."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import libcst as cst

from bot.findings import Severity
from bot.rule import SESSION_TOKENS, Invalid, Rule, Valid
from bot.semantics import Binding, BindingKind
from bot.walker import iter_children, iter_descendants

SECTION = "Pattern: Concurrent vs Sequential Queries"

GATHERERS = frozenset({"asyncio.gather", "asyncio.tasks.gather"})
WAITERS = frozenset(
    {"asyncio.wait", "asyncio.as_completed", "asyncio.tasks.wait", "asyncio.tasks.as_completed"}
)
# Calls that wrap an awaitable and run it as it is.
PASS_THROUGH = frozenset(
    {
        "asyncio.create_task",
        "asyncio.ensure_future",
        "asyncio.wait_for",
        "asyncio.shield",
        "asyncio.timeout",
    }
)
TASK_SPAWNERS = frozenset({"asyncio.create_task", "asyncio.ensure_future"})
TASK_GROUPS = frozenset({"asyncio.TaskGroup", "asyncio.taskgroups.TaskGroup"})
COMPREHENSIONS = (cst.GeneratorExp, cst.ListComp, cst.SetComp)


@dataclass(frozen=True)
class Use:
    """One awaitable's use of a session: which session, through which expression."""

    session: Binding
    node: cst.CSTNode
    repeated: bool  # the awaitable is a comprehension: it runs once per item, concurrently


class SharedSessionConcurrency(Rule):
    CODE = "AG201"
    NAME = "shared-session-concurrency"
    SEVERITY = Severity.ERROR
    SECTION = SECTION
    SUMMARY = "One AsyncSession is used by awaitables that run concurrently."
    DOC = """
    ## What it does
    Flags `asyncio.gather(...)`, `asyncio.wait(...)` and `asyncio.as_completed(...)`, and tasks
    started in one `TaskGroup` or in a loop of `create_task`, when two or more of the
    concurrent awaitables use the **same** `AsyncSession`: they call its methods, receive it as
    an argument, capture it in a closure or lambda, or reach it through an object built around
    it (`self.session`, `UserRepository(session)`).

    ## Why is this bad?
    An `AsyncSession` is one transaction on one connection and must not be used by concurrent
    tasks. When the session still has to check out its connection, every call but one fails
    with "This session is provisioning a new connection; concurrent operations are not
    permitted" (or `IllegalStateChangeError`), and the connection can be left checked out. When
    it already holds one, SQLAlchemy serialises the statements, so the "parallel" queries run
    one after another anyway (measured: 99 ms on one session against 21.5 ms with a session per
    task for five 20 ms queries).

    ## Example
    ```python
    async def dashboard(session: AsyncSession) -> Dashboard:
        users, orders = await asyncio.gather(
            session.execute(select(User)),
            session.execute(select(Order)),
        )
    ```

    ## Use instead
    Run the queries one after another on the one session, or give each task its own session:
    ```python
    async def load(query: Select[Any]) -> Result[Any]:
        async with async_session() as session:
            return await session.execute(query)


    users, orders = await asyncio.gather(load(select(User)), load(select(Order)))
    ```
    Often one query (`IN (...)`, `selectinload`) replaces N concurrent ones.
    """
    CORRECTION = """
    The skill suggests `asyncio.gather` over several `session.execute(...)` calls on one
    session. SQLAlchemy forbids concurrent use of one AsyncSession: on a fresh connection the
    extra calls fail ("This session is provisioning a new connection; concurrent operations are
    not permitted") and can leak the connection; on a warm one they silently run one at a time.
    Use one session per concurrent task, or a single query instead of N.
    """
    TOKENS = (
        ("gather", "wait", "as_completed", "TaskGroup", "create_task", "ensure_future"),
        SESSION_TOKENS,
    )
    NEEDS = frozenset({"repo-index"})

    VALID = (
        Valid(
            """
            import asyncio
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def load(user_id: int):
                async with async_session() as session:
                    return await session.get(User, user_id)

            async def load_both():
                return await asyncio.gather(load(1), load(2))
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def report(session: AsyncSession):
                users = await session.execute(select(User))
                orders = await session.execute(select(Order))
                return users, orders
            """
        ),
        Valid(
            """
            import asyncio
            import httpx

            async def fetch_all(client: httpx.AsyncClient):
                return await asyncio.gather(client.get("/a"), client.get("/b"))
            """
        ),
        Valid(
            """
            import asyncio
            from sqlalchemy.ext.asyncio import AsyncSession

            async def mixed(session: AsyncSession, client):
                return await asyncio.gather(session.execute(query), client.get("/stats"))
            """
        ),
        Valid(
            """
            import asyncio
            from sqlalchemy.ext.asyncio import async_sessionmaker

            factory = async_sessionmaker(engine)

            async def per_task(ids):
                async def one(i):
                    async with factory() as s:
                        return await s.get(User, i)

                return await asyncio.gather(*(one(i) for i in ids))
            """
        ),
        Valid(
            """
            import asyncio
            from sqlalchemy.ext.asyncio import AsyncSession

            async def two_sessions(a: AsyncSession, b: AsyncSession):
                return await asyncio.gather(a.execute(q1), b.execute(q2))
            """
        ),
        Valid(
            """
            import asyncio
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            @router.get("/items")
            async def items(session: AsyncSession = Depends(get_session)):
                for item_id in ids:
                    task = asyncio.create_task(load(session, item_id))
                    await task
            """
        ),
        Valid(
            """
            import asyncio
            from sqlalchemy.ext.asyncio import async_sessionmaker

            factory = async_sessionmaker(engine)

            async def refresh_all(ids):
                async with asyncio.TaskGroup() as tg:
                    for i in ids:
                        tg.create_task(refresh_one(factory, i))
            """
        ),
        Valid(
            """
            import asyncio
            from sqlalchemy.ext.asyncio import AsyncSession

            async def notify(session: AsyncSession, users):
                rows = (await session.execute(select(User))).scalars().all()
                await asyncio.gather(*(send_email(row.email) for row in rows))
            """
        ),
        Valid(
            """
            import asyncio
            from sqlalchemy.ext.asyncio import AsyncSession

            async def per_session(sessions: list[AsyncSession]):
                await asyncio.gather(*(s.execute(query) for s in sessions))
            """
        ),
    )
    INVALID = (
        Invalid(
            """
            import asyncio
            from sqlalchemy.ext.asyncio import AsyncSession

            async def dashboard(session: AsyncSession):
                users, orders = await asyncio.gather(
                    session.execute(select(User)),
                    session.execute(select(Order)),
                )
                return users, orders
            """,
            line=5,
            related_lines=(6, 7),
            message="`session` is used by 2 concurrent awaitables",
        ),
        Invalid(
            """
            import asyncio as aio
            from fastapi import Depends

            @router.get("/users/{user_id}")
            async def profile(user_id: int, db=Depends(get_db)):
                return await aio.gather(get_user(db, user_id), get_orders(db, user_id))
            """,
            line=6,
        ),
        Invalid(
            """
            from asyncio import gather
            from sqlalchemy.ext.asyncio import async_sessionmaker

            factory = async_sessionmaker(engine)

            async def load_many(ids):
                async with factory() as session:
                    return await gather(*(session.get(User, i) for i in ids))
            """,
            line=8,
        ),
        Invalid(
            """
            import asyncio
            from sqlalchemy.ext.asyncio import AsyncSession

            async def totals(session: AsyncSession):
                async def count_users():
                    return await session.scalar(select(func.count(User.id)))

                async def count_orders():
                    return await session.scalar(select(func.count(Order.id)))

                return await asyncio.gather(count_users(), count_orders())
            """,
            line=11,
            related_lines=(6, 9),
        ),
        Invalid(
            """
            import asyncio
            from typing import Annotated
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            SessionDep = Annotated[AsyncSession, Depends(get_session)]

            @router.get("/stats")
            async def stats(session: SessionDep):
                async with asyncio.TaskGroup() as tg:
                    users = tg.create_task(count_users(session))
                    orders = tg.create_task(count_orders(session))
                return users.result(), orders.result()
            """,
            line=11,
        ),
        Invalid(
            """
            import asyncio
            from sqlalchemy.ext.asyncio import AsyncSession

            class ReportService:
                def __init__(self, session: AsyncSession) -> None:
                    self.session = session

                async def build(self):
                    done, _ = await asyncio.wait(
                        [self.session.execute(q1), self.session.execute(q2)]
                    )
                    return done
            """,
            line=9,
        ),
        Invalid(
            """
            import asyncio
            from sqlalchemy.ext.asyncio import AsyncSession

            async def sync_all(session: AsyncSession, ids):
                repo = UserRepository(session)
                tasks = []
                for i in ids:
                    tasks.append(asyncio.create_task(repo.sync(i)))
                await asyncio.gather(*tasks)
            """,
            line=8,
        ),
        Invalid(
            """
            import asyncio
            from sqlalchemy.ext.asyncio import AsyncSession

            async def run(session: AsyncSession):
                coros = [session.execute(q) for q in queries]
                for result in asyncio.as_completed(coros):
                    print(await result)
            """,
            line=6,
        ),
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._loops: list[cst.CSTNode] = []
        # create_task calls per TaskGroup binding, checked when the `async with` block ends.
        self._groups: dict[Binding, list[tuple[cst.Call, cst.CSTNode | None]]] = {}
        self._reported_calls: set[int] = set()
        self._reported_uses: set[int] = set()
        self._awaited_calls: set[int] = set()

    # ---------------------------------------------------------------- traversal
    def visit_For(self, node: cst.For) -> None:
        self._loops.append(node)

    def leave_For(self, node: cst.For) -> None:
        self._loops.pop()

    def visit_While(self, node: cst.While) -> None:
        self._loops.append(node)

    def leave_While(self, node: cst.While) -> None:
        self._loops.pop()

    def visit_ListComp(self, node: cst.ListComp) -> None:
        self._loops.append(node)

    def leave_ListComp(self, node: cst.ListComp) -> None:
        self._loops.pop()

    def visit_SetComp(self, node: cst.SetComp) -> None:
        self._loops.append(node)

    def leave_SetComp(self, node: cst.SetComp) -> None:
        self._loops.pop()

    def visit_GeneratorExp(self, node: cst.GeneratorExp) -> None:
        self._loops.append(node)

    def leave_GeneratorExp(self, node: cst.GeneratorExp) -> None:
        self._loops.pop()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        # A loop around a `def` does not make the function's own body a loop.
        self._loops.append(node)

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._loops.pop()

    def visit_Await(self, node: cst.Await) -> None:
        # `await create_task(...)` finishes the task before the next one starts.
        if isinstance(node.expression, cst.Call):
            self._awaited_calls.add(id(node.expression))

    def visit_Call(self, node: cst.Call) -> None:
        qualname = self.semantics.qualified_name(node.func)
        if qualname in GATHERERS:
            self._check_concurrent(
                node,
                [
                    arg.value if arg.star != "*" else cst.StarredElement(arg.value)
                    for arg in node.args
                    if arg.keyword is None
                ],
                "asyncio.gather",
            )
        elif qualname in WAITERS and node.args:
            kind = qualname.rsplit(".", 1)[-1]
            self._check_concurrent(
                node, list(self._collection_items(node.args[0].value)), f"asyncio.{kind}"
            )
        elif qualname in TASK_SPAWNERS and node.args:
            self._check_task_in_loop(node, node.args[0].value)
        elif (
            isinstance(node.func, cst.Attribute)
            and node.func.attr.value == "create_task"
            and node.args
        ):
            group = self._task_group(node.func.value)
            if group is not None:
                self._groups.setdefault(group, []).append((node, self.context.statement))

    def leave_With(self, node: cst.With) -> None:
        for item in node.items:
            if item.asname is None or not isinstance(item.asname.name, cst.Name):
                continue
            binding = self.semantics.lookup(item.asname.name.value)
            calls = self._groups.pop(binding, None) if binding is not None else None
            if calls:
                self._check_group(calls)

    # ---------------------------------------------------------------- checks
    def _check_concurrent(
        self, call: cst.Call, awaitables: Sequence[cst.BaseExpression], label: str
    ) -> None:
        by_session: dict[Binding, list[Use]] = {}
        count: dict[Binding, int] = {}
        for awaitable in awaitables:
            seen: set[Binding] = set()
            for use in self._uses(awaitable):
                by_session.setdefault(use.session, []).append(use)
                if use.session not in seen:
                    seen.add(use.session)
                    count[use.session] = count.get(use.session, 0) + (2 if use.repeated else 1)
        shared = [s for s, n in count.items() if n >= 2]
        if not shared:
            return
        session = max(shared, key=lambda s: count[s])
        uses = by_session[session]
        if any(use.repeated for use in uses):
            how = "by every awaitable this comprehension produces"
        else:
            how = f"by {count[session]} concurrent awaitables"
        self._report_shared(call, session, uses, f"{how} in this `{label}`")

    def _check_task_in_loop(self, call: cst.Call, coroutine: cst.BaseExpression) -> None:
        loop = self._loops[-1] if self._loops else None
        if loop is None or isinstance(loop, cst.FunctionDef) or id(call) in self._awaited_calls:
            return
        uses = list(self._uses(coroutine))
        if not uses or (isinstance(loop, (cst.For, cst.While)) and self._awaited_in_loop(loop)):
            return
        self._report_shared(
            call, uses[0].session, uses, "by a task created on every pass of this loop"
        )

    def _check_group(self, calls: list[tuple[cst.Call, cst.CSTNode | None]]) -> None:
        first_use: dict[Binding, tuple[cst.Call, cst.CSTNode | None]] = {}
        all_uses: dict[Binding, list[Use]] = {}
        tasks: dict[Binding, int] = {}
        for call, statement in calls:
            for session in {use.session for use in self._uses(call.args[0].value)}:
                first_use.setdefault(session, (call, statement))
                tasks[session] = tasks.get(session, 0) + 1
            for use in self._uses(call.args[0].value):
                all_uses.setdefault(use.session, []).append(use)
        for session, n in tasks.items():
            if n >= 2:
                call, statement = first_use[session]
                self._report_shared(
                    call, session, all_uses[session], f"by {n} tasks of this TaskGroup", statement
                )
                return

    def _report_shared(
        self,
        node: cst.Call,
        session: Binding,
        uses: Sequence[Use],
        how: str,
        statement: cst.CSTNode | None = None,
    ) -> None:
        # One bug, one finding: a gather over tasks already reported at their create_task is not new.
        if id(node) in self._reported_calls or (
            uses and all(id(u.node) in self._reported_uses for u in uses)
        ):
            return
        self._reported_calls.add(id(node))
        self._reported_uses.update(id(u.node) for u in uses)
        self.report(
            node,
            f"{self._label(session, uses)} is used {how}: an AsyncSession cannot run queries "
            'concurrently ("This session is provisioning a new connection; concurrent operations '
            'are not permitted"); give each task its own session or await the queries one by one',
            related=[
                (use.node, f"uses `{self.context.module.code_for_node(use.node)}`")
                for use in _distinct(uses)
            ],
            statement=statement,
        )

    def _label(self, session: Binding, uses: Sequence[Use]) -> str:
        """`session`, or `session` (through `users`, `orders`) when reached through other objects."""
        through = []
        for use in uses:
            text = self.context.module.code_for_node(use.node)
            if text != session.name and text not in through:
                through.append(text)
        if not through:
            return f"`{session.name}`"
        return f"`{session.name}` (through {', '.join(f'`{t}`' for t in through)})"

    # ---------------------------------------------------------------- which sessions an awaitable uses
    def _uses(self, expr: cst.BaseExpression, depth: int = 0) -> Iterator[Use]:
        if depth > 3:
            return
        if isinstance(expr, cst.StarredElement):
            yield from self._starred_uses(expr.value, depth)
            return
        if isinstance(expr, COMPREHENSIONS):
            bound = _comprehension_targets(expr)
            for use in self._uses(expr.elt, depth + 1):
                if not (isinstance(use.node, cst.Name) and use.node.value in bound):
                    yield Use(use.session, use.node, repeated=True)
            return
        if isinstance(expr, cst.Await):
            yield from self._uses(expr.expression, depth + 1)
            return
        if isinstance(expr, cst.Lambda):
            yield from self._closure_uses(expr)
            return
        if isinstance(expr, cst.Name):
            binding = self.semantics.lookup(expr.value)
            if (
                binding is not None
                and binding.kind is BindingKind.OTHER
                and isinstance(binding.value, cst.Call)
            ):
                yield from self._uses(
                    binding.value, depth + 1
                )  # coro = s.execute(q); gather(coro, ...)
            return
        if not isinstance(expr, cst.Call):
            return
        qualname = self.semantics.qualified_name(expr.func)
        if qualname in PASS_THROUGH:
            if expr.args:
                yield from self._uses(expr.args[0].value, depth + 1)
            return
        func = expr.func
        if isinstance(func, cst.Attribute):
            held = self.semantics.session_binding(func.value)
            if held is not None:
                yield Use(held, func.value, repeated=False)
        elif isinstance(func, cst.Name):
            binding = self.semantics.lookup(func.value)
            if (
                binding is not None
                and binding.kind is BindingKind.FUNCTION
                and isinstance(binding.node, cst.FunctionDef)
            ):
                yield from self._closure_uses(binding.node)
        for arg in expr.args:
            if isinstance(arg.value, cst.Lambda):
                yield from self._closure_uses(arg.value)
                continue
            held = self.semantics.session_binding(arg.value)
            if held is not None:
                yield Use(held, arg.value, repeated=False)

    def _closure_uses(self, function: cst.FunctionDef | cst.Lambda) -> Iterator[Use]:
        for session, node in self.semantics.free_session_uses(function):
            yield Use(session, node, repeated=False)

    def _starred_uses(self, expr: cst.BaseExpression, depth: int) -> Iterator[Use]:
        """`*(...)`, `*[...]`, or `*tasks` where `tasks` was built in this function."""
        items = list(self._collection_items(expr))
        if len(items) == 1 and isinstance(items[0], COMPREHENSIONS):
            yield from self._uses(items[0], depth + 1)
            return
        for item in items:
            yield from self._uses(item, depth + 1)

    def _collection_items(self, expr: cst.BaseExpression) -> Iterator[cst.BaseExpression]:
        if isinstance(expr, (cst.List, cst.Tuple, cst.Set)):
            for element in expr.elements:
                yield element.value if not isinstance(element, cst.StarredElement) else element
        elif isinstance(expr, COMPREHENSIONS):
            yield expr
        elif isinstance(expr, cst.Name):
            binding = self.semantics.lookup(expr.value)
            if binding is None or binding.kind is not BindingKind.OTHER:
                return
            if isinstance(binding.value, (cst.List, cst.Tuple, cst.Set, *COMPREHENSIONS)):
                if (
                    isinstance(binding.value, (cst.List, cst.Tuple, cst.Set))
                    and not binding.value.elements
                ):
                    yield from self._appended_items(expr.value)
                else:
                    yield from self._collection_items(binding.value)

    def _appended_items(self, name: str) -> Iterator[cst.BaseExpression]:
        """Items added with `name.append(x)`; one added inside a loop counts as many."""
        function = self.semantics.function_scope()
        if function is None:
            return
        for call, in_loop in _calls_with_loop_flag(function.node):
            func = call.func
            if (
                isinstance(func, cst.Attribute)
                and func.attr.value in ("append", "add")
                and isinstance(func.value, cst.Name)
                and func.value.value == name
                and call.args
            ):
                item = call.args[0].value
                if in_loop:
                    yield cst.GeneratorExp(
                        elt=item, for_in=cst.CompFor(target=cst.Name("_"), iter=cst.Name("_"))
                    )
                else:
                    yield item

    def _task_group(self, expr: cst.BaseExpression) -> Binding | None:
        if not isinstance(expr, cst.Name):
            return None
        binding = self.semantics.lookup(expr.value)
        if binding is None or not isinstance(binding.value, cst.Call):
            return None
        return binding if self.semantics.qualified_name(binding.value.func) in TASK_GROUPS else None

    def _awaited_in_loop(self, loop: cst.CSTNode) -> bool:
        """`t = create_task(...); await t` in the same pass: the tasks do not overlap."""
        statement = self.context.statement
        if not isinstance(statement, cst.SimpleStatementLine):
            return False
        small = statement.body[0] if statement.body else None
        if not isinstance(small, cst.Assign) or not isinstance(small.targets[0].target, cst.Name):
            return False
        name = small.targets[0].target.value
        return any(
            isinstance(node, cst.Await)
            and isinstance(node.expression, cst.Name)
            and node.expression.value == name
            for node in iter_descendants(loop)
        )


def _comprehension_targets(comprehension: cst.BaseComp) -> set[str]:
    names: set[str] = set()
    clause: cst.CompFor | None = comprehension.for_in
    while clause is not None:
        names.update(n.value for n in iter_descendants(clause.target) if isinstance(n, cst.Name))
        clause = clause.inner_for_in
    return names


def _calls_with_loop_flag(
    root: cst.CSTNode, in_loop: bool = False
) -> Iterator[tuple[cst.Call, bool]]:
    for child in iter_children(root):
        if isinstance(child, (cst.FunctionDef, cst.Lambda, cst.ClassDef)):
            continue
        if isinstance(child, cst.Call):
            yield child, in_loop
        yield from _calls_with_loop_flag(child, in_loop or isinstance(child, (cst.For, cst.While)))


def _distinct(uses: Sequence[Use]) -> list[Use]:
    seen: set[int] = set()
    result = []
    for use in uses:
        if id(use.node) not in seen:
            seen.add(id(use.node))
            result.append(use)
    return result
