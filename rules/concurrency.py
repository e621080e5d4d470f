"""Concurrency rules (skill section "Pattern: Concurrent vs Sequential Queries")."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import libcst as cst

from bot.findings import Severity
from bot.rule import SESSION_TOKENS, Invalid, Rule, Valid
from bot.semantics import Binding, BindingKind
from bot.walker import iter_children, iter_descendants
from rules._shared import is_none

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
        ("gather", "wait(", "as_completed", "TaskGroup", "create_task", "ensure_future"),
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
    def _enter_loop(self, node: cst.CSTNode) -> None:
        self._loops.append(node)

    def _leave_loop(self, node: cst.CSTNode) -> None:
        self._loops.pop()

    visit_For = visit_While = visit_ListComp = visit_SetComp = visit_GeneratorExp = _enter_loop
    leave_For = leave_While = leave_ListComp = leave_SetComp = leave_GeneratorExp = _leave_loop
    # A `def` goes on the stack too: a loop around it does not make its own body a loop.
    visit_FunctionDef = _enter_loop
    leave_FunctionDef = _leave_loop

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


# ---------------------------------------------------------------------- AG202
# The first word of a callee's name that marks a read: running such calls together changes
# nothing but the latency. Calls that write or send are left alone, because gathering them
# changes what happens when one fails (the other has already run).
READ_VERBS = frozenset(
    {
        "get", "fetch", "load", "read", "list", "find", "retrieve", "query", "search", "lookup",
        "count", "download", "describe", "head", "exists", "resolve",
    }
)  # fmt: skip
# Binding kinds that are, or hold, a database session or its results.
DB_KINDS = frozenset(
    {
        BindingKind.SESSION, BindingKind.WRAPPER, BindingKind.ORM, BindingKind.RESULT,
        BindingKind.CONNECTION, BindingKind.ENGINE, BindingKind.FACTORY,
        BindingKind.SYNC_SESSION, BindingKind.SYNC_FACTORY, BindingKind.SYNC_ENGINE,
        BindingKind.SESSION_ALIAS,
    }
)  # fmt: skip
# Names and name parts that suggest a database handle or a per-connection object reached
# through something we cannot see (`db.session`, a `crud` module using a context session).
HANDLE_WORDS = frozenset(
    {
        "session", "sessions", "db", "database", "conn", "connection", "cursor", "tx",
        "transaction", "uow", "crud", "repository", "repositories", "repo", "dao", "orm",
        "websocket", "ws", "request", "response", "stream", "socket", "channel",
    }
)  # fmt: skip
# Parameter types whose values are plain data: sharing them between two calls is harmless.
SCALAR_TYPES = frozenset(
    {
        "int", "str", "float", "bool", "bytes", "UUID", "UUID4", "date", "datetime", "time",
        "Decimal", "EmailStr", "HttpUrl", "AnyUrl", "AnyHttpUrl",
    }
)  # fmt: skip
# Parameters that are the connection itself: awaiting on them is the endpoint's own protocol.
CHANNEL_TYPES = ("Request", "WebSocket", "Response", "HTTPConnection", "BackgroundTasks")
FOREIGN_PREFIXES = ("asyncio.", "anyio.", "trio.")


def _words(name: str) -> list[str]:
    """`fetchUserOrders` / `fetch_user_orders` -> ["fetch", "user", "orders"]."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip("_"))
    return [word.lower() for word in spaced.split("_") if word]


def _is_read_name(name: str) -> bool:
    words = _words(name)
    if words and words[0] in ("async", "a") and len(words) > 1:
        words = words[1:]  # async_get_user, aget
    return bool(words) and words[0] in READ_VERBS


def _mentions_handle(name: str) -> bool:
    return any(word in HANDLE_WORDS for word in _words(name))


@dataclass
class AwaitStep:
    """One statement `x = await f(...)` / `await f(...)` that could join a gather."""

    node: cst.Await
    callee: str
    targets: frozenset[str]
    uses: frozenset[str]  # every name the call reads (callee, receiver and arguments)
    shareable: frozenset[str]  # the names of `uses` that are plain values (fine to share)
    receiver: str | None  # the object the method is called on, by root name


@dataclass
class EndpointBody:
    node: cst.FunctionDef
    scope: str
    loops: int = 0
    steps: dict[int, AwaitStep | None] = field(default_factory=dict)


class SequentialIndependentAwaits(Rule):
    CODE = "AG202"
    NAME = "sequential-independent-awaits"
    SEVERITY = Severity.INFO
    SECTION = SECTION
    SUMMARY = "An endpoint awaits independent reads one after another instead of together."
    DOC = """
    ## What it does
    In a FastAPI endpoint, flags two or more consecutive statements that each await one read
    (`profile = await fetch_profile(user_id)`, `rates = await http_client.get(url)`) when
    none of them uses a value another one produced, and none touches a database session.

    To stay quiet where running the calls together could be wrong, it only considers calls
    whose name starts with a read verb (`get`, `fetch`, `load`, `list`, `find`, `search`, ...),
    made on module-level objects or module-level functions, whose arguments share nothing but
    plain values (path and query parameters, literals). Calls on a session, on an object built
    around one, on a repository or service injected with `Depends`, on `self`, the request or a
    websocket, and calls inside loops are never flagged.

    ## Why is this bad?
    Each `await` waits for the previous one to finish, so the request takes the sum of the
    latencies instead of the longest one. Independent network reads can run at the same time.

    ## Example
    ```python
    @router.get("/dashboard/{user_id}")
    async def dashboard(user_id: int) -> Dashboard:
        profile = await fetch_profile(user_id)
        weather = await fetch_weather(user_id)
        return Dashboard(profile=profile, weather=weather)
    ```

    ## Use instead
    ```python
    @router.get("/dashboard/{user_id}")
    async def dashboard(user_id: int) -> Dashboard:
        profile, weather = await asyncio.gather(fetch_profile(user_id), fetch_weather(user_id))
        return Dashboard(profile=profile, weather=weather)
    ```
    Never do this with calls that share one `AsyncSession` (see AG201): a session runs one
    statement at a time, and concurrent use fails.
    """
    TOKENS = (("await",), ("get(", "post(", "put(", "patch(", "delete(", "api_route(", "head("))
    NEEDS = frozenset({"repo-index"})

    VALID = (
        Valid(
            """
            import httpx

            http = httpx.AsyncClient()

            @router.get("/user/{user_id}")
            async def user(user_id: int):
                token = await fetch_token(user_id)
                profile = await http.get(f"/users/{user_id}", headers={"token": token})
                return profile.json()
            """
        ),
        Valid(
            """
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            @router.get("/report")
            async def report(session: AsyncSession = Depends(get_session)):
                users = await session.scalars(select(User))
                orders = await session.scalars(select(Order))
                return {"users": users.all(), "orders": orders.all()}
            """
        ),
        Valid(
            """
            import httpx

            client = httpx.AsyncClient()

            @router.get("/pages")
            async def pages():
                first = await client.get("/a")
                second = await client.get("/b")
                return [first.json(), second.json()]
            """
        ),
        Valid(
            """
            from fastapi import WebSocket

            @router.websocket("/ws")
            async def ws(websocket: WebSocket):
                await websocket.accept()
                data = await websocket.receive_json()
                await websocket.send_json(data)
            """
        ),
        Valid(
            """
            from typing import Annotated
            from fastapi import Depends

            UsersDep = Annotated[UserRepository, Depends(get_user_repository)]
            OrdersDep = Annotated[OrderRepository, Depends(get_order_repository)]

            @router.get("/users/{user_id}/summary")
            async def summary(user_id: int, users: UsersDep, orders: OrdersDep):
                user = await users.get(user_id)
                recent = await orders.list_for_user(user_id)
                return {"user": user, "orders": recent}
            """
        ),
        Valid(
            """
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            @router.get("/users/{user_id}")
            async def user_page(user_id: int, session: AsyncSession = Depends(get_session)):
                user = await get_user(session, user_id)
                orders = await get_orders(session, user_id)
                return {"user": user, "orders": orders}
            """
        ),
        Valid(
            """
            @router.get("/prices")
            async def prices(symbols: list[str]):
                result = {}
                for symbol in symbols:
                    quote = await fetch_quote(symbol)
                    history = await fetch_history(symbol)
                    result[symbol] = (quote, history)
                return result
            """
        ),
        Valid(
            """
            async def fetch_a():
                ...

            async def fetch_b():
                ...

            async def not_an_endpoint():
                a = await fetch_a()
                b = await fetch_b()
                return a, b
            """
        ),
        Valid(
            """
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            @router.post("/orders")
            async def create_order(body: OrderIn, session: AsyncSession = Depends(get_session)):
                service = OrderService(session)
                stock = await service.get_stock(body.item_id)
                price = await service.get_price(body.item_id)
                return {"stock": stock, "price": price}
            """
        ),
        Valid(
            """
            @router.post("/checkout")
            async def checkout(body: CheckoutIn):
                charge = await create_charge(body.card, body.amount)
                receipt = await send_receipt(body.email)
                return {"charge": charge, "receipt": receipt}
            """
        ),
        Valid(
            """
            from fastapi import Request

            @router.post("/upload")
            async def upload(request: Request):
                body = await request.body()
                form = await request.form()
                return {"size": len(body), "fields": len(form)}
            """
        ),
        Valid(
            """
            @router.get("/both")
            async def both(cart: Cart):
                items = await fetch_items(cart)
                totals = await fetch_totals(cart)
                return {"items": items, "totals": totals}
            """
        ),
        Valid(
            """
            import asyncio

            @router.get("/slow")
            async def slow():
                await asyncio.sleep(1)
                await asyncio.sleep(2)
                return {}
            """
        ),
        Valid(
            """
            from app.crud import get_orders, get_user

            @router.get("/users/{user_id}/page")
            async def page(user_id: int):
                user = await get_user(user_id)
                orders = await get_orders(user_id)
                return {"user": user, "orders": orders}
            """
        ),
        Valid(
            """
            from fastapi_async_sqlalchemy import db

            async def load_user(user_id: int):
                return await db.session.get(User, user_id)

            async def load_orders(user_id: int):
                return (await db.session.scalars(select(Order))).all()

            @router.get("/users/{user_id}/orders")
            async def user_orders(user_id: int):
                user = await load_user(user_id)
                orders = await load_orders(user_id)
                return {"user": user, "orders": orders}
            """
        ),
        Valid(
            """
            async def fetch_a():
                ...

            async def fetch_b():
                ...

            @router.get("/lazy")
            async def lazy():
                async def both():
                    a = await fetch_a()
                    b = await fetch_b()
                    return a, b

                return await both()
            """
        ),
    )
    INVALID = (
        Invalid(
            """
            import httpx

            async def fetch_profile(user_id: int) -> dict:
                async with httpx.AsyncClient() as client:
                    return (await client.get(f"https://profiles/{user_id}")).json()

            async def fetch_weather(city: str) -> dict:
                async with httpx.AsyncClient() as client:
                    return (await client.get(f"https://weather/{city}")).json()

            @router.get("/dashboard/{user_id}")
            async def dashboard(user_id: int, city: str):
                profile = await fetch_profile(user_id)
                weather = await fetch_weather(city)
                return {"profile": profile, "weather": weather}
            """,
            line=13,
            related_lines=(14,),
            message="`fetch_profile(...)`",
        ),
        Invalid(
            """
            import httpx
            from redis.asyncio import Redis

            http = httpx.AsyncClient(base_url="https://rates.example")
            cache = Redis()

            @app.get("/rates/{currency}")
            async def rates(currency: str):
                cached = await cache.get(f"rates:{currency}")
                live = await http.get(f"/latest/{currency}")
                return {"cached": cached, "live": live.json()}
            """,
            line=9,
            related_lines=(10,),
        ),
        Invalid(
            """
            from typing import Annotated
            from fastapi import Depends, Path
            from sqlalchemy.ext.asyncio import AsyncSession
            from app.clients import github, gitlab

            SessionDep = Annotated[AsyncSession, Depends(get_session)]

            @router.get("/repos/{owner}")
            async def repos(owner: Annotated[str, Path()], session: SessionDep):
                account = await session.get(Account, owner)
                from_github = await github.list_repos(owner)
                from_gitlab = await gitlab.list_projects(owner)
                account.synced = True
                return from_github + from_gitlab
            """,
            line=11,
            related_lines=(12,),
        ),
        Invalid(
            """
            import asyncio as aio
            import aiohttp

            session_pool = None

            async def load_a(key: str):
                await aio.sleep(0)

            async def load_b(key: str):
                await aio.sleep(0)

            async def load_c(key: str):
                await aio.sleep(0)

            @router.get("/items/{key}")
            async def items(key: str):
                if key:
                    await load_a(key)
                    b = await load_b(key)
                    c = await load_c("other")
                    return b, c
            """,
            line=18,
            related_lines=(19, 20),
            message="`load_a(...)`, `load_b(...)` and `load_c(...)` are awaited",
        ),
        Invalid(
            """
            from app.clients import stripe_client as stripe, tax_client

            @router.get("/invoices/{invoice_id}")
            async def invoice(invoice_id: str, background: BackgroundTasks):
                try:
                    data = await stripe.retrieve_invoice(invoice_id)
                    tax = await tax_client.fetchRates("eu")
                except TimeoutError:
                    raise HTTPException(504)
                return {"invoice": data, "tax": tax}
            """,
            line=6,
            related_lines=(7,),
        ),
        Invalid(
            """
            async def get_quote(symbol):
                ...

            async def get_news(symbol):
                ...

            class Api:
                @router.get("/stock")
                async def stock(symbol: str):
                    quote = await get_quote(symbol)
                    news = await get_news(symbol)
                    return quote, news
            """,
            line=10,
            related_lines=(11,),
        ),
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._bodies: list[EndpointBody | None] = []

    # ---------------------------------------------------------------- traversal
    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        is_endpoint = node.asynchronous is not None and self.semantics.is_endpoint(node)
        self._bodies.append(
            EndpointBody(node, self.semantics.scope.qualname) if is_endpoint else None
        )

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        body = self._bodies.pop()
        if body is not None and any(step is not None for step in body.steps.values()):
            self._check_blocks(body, node.body)

    def _enter_loop(self, node: cst.For | cst.While) -> None:
        self._count_loops(1)

    def _leave_loop(self, node: cst.For | cst.While) -> None:
        self._count_loops(-1)

    visit_For = visit_While = _enter_loop
    leave_For = leave_While = _leave_loop

    def _count_loops(self, change: int) -> None:
        body = self._bodies[-1] if self._bodies else None
        if body is not None:
            body.loops += change

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        body = self._bodies[-1] if self._bodies else None
        scope = self.semantics.function_scope()
        if body is None or body.loops or scope is None or scope.node is not body.node:
            return
        for small in node.body:
            body.steps[id(small)] = self._step(small)

    # ---------------------------------------------------------------- one statement
    def _step(self, small: cst.BaseSmallStatement) -> AwaitStep | None:
        targets: list[str] = []
        value: cst.BaseExpression | None
        if isinstance(small, cst.Expr):
            value = small.value
        elif isinstance(small, cst.Assign):
            value = small.value
            for target in small.targets:
                names = _plain_targets(target.target)
                if names is None:
                    return None
                targets.extend(names)
        elif isinstance(small, cst.AnnAssign) and isinstance(small.target, cst.Name):
            value = small.value
            targets.append(small.target.value)
        else:
            return None
        if not isinstance(value, cst.Await) or not isinstance(value.expression, cst.Call):
            return None
        call = value.expression
        callee = self._callee(call.func)
        if callee is None:
            return None
        receiver = callee[1]
        uses: set[str] = set()
        shareable: set[str] = set()
        if receiver is not None:
            uses.add(receiver)
        elif isinstance(call.func, cst.Name):
            uses.add(call.func.value)
            shareable.add(call.func.value)
        for arg in call.args:
            for loaded in _loaded_names(arg.value):
                if loaded is None:
                    return None  # an await, lambda or comprehension inside the arguments
                verdict = self._argument(loaded)
                if verdict is None:
                    return None
                uses.add(loaded)
                if verdict:
                    shareable.add(loaded)
        return AwaitStep(
            value,
            self.context.module.code_for_node(call.func),
            frozenset(targets),
            frozenset(uses),
            frozenset(shareable),
            receiver,
        )

    def _callee(self, func: cst.BaseExpression) -> tuple[str, str | None] | None:
        """(the called name, the receiver's root name) when the callee is clearly plain I/O."""
        semantics = self.semantics
        qualname = semantics.qualified_name(func) or ""
        if qualname.startswith(FOREIGN_PREFIXES):
            return None
        if isinstance(func, cst.Name):
            binding = semantics.lookup(func.value)
            if binding is None or not self._module_level(func.value, binding):
                return None
            if binding.kind is BindingKind.FUNCTION:
                if not binding.is_async or not isinstance(binding.node, cst.FunctionDef):
                    return None
                if self._touches_handles(binding.node) or semantics.free_session_uses(binding.node):
                    return None
            elif binding.kind is BindingKind.IMPORT:
                if any(_mentions_handle(part) for part in (binding.qualname or "").split(".")):
                    return None
            else:
                return None
            return (func.value, None) if _is_read_name(func.value) else None
        if not isinstance(func, cst.Attribute):
            return None
        parts: list[str] = [func.attr.value]
        root: cst.BaseExpression = func.value
        while isinstance(root, cst.Attribute):
            parts.append(root.attr.value)
            root = root.value
        if not isinstance(root, cst.Name) or root.value in ("self", "cls"):
            return None
        binding = semantics.lookup(root.value)
        if (
            binding is None
            or not self._module_level(root.value, binding)
            or binding.kind not in (BindingKind.IMPORT, BindingKind.OTHER, BindingKind.CLASS)
            or semantics.is_session_factory(root)
            or semantics.is_async_engine(root)
            or any(_mentions_handle(part) for part in [root.value, *parts[1:]])
            or (binding.qualname and any(_mentions_handle(p) for p in binding.qualname.split(".")))
        ):
            return None
        return (func.attr.value, root.value) if _is_read_name(func.attr.value) else None

    def _touches_handles(self, function: cst.FunctionDef) -> bool:
        """A module-level helper whose body names a session-like handle it did not open itself
        (`db.session` from a context variable, a global `conn`); one that opens its own session
        from a factory (`async with async_session() as session`) is independent."""
        semantics = self.semantics
        scope = semantics.scope_of(function)
        if scope is None:
            return True
        for node in iter_descendants(function.body):
            if not isinstance(node, cst.Name) or not _mentions_handle(node.value):
                continue
            binding = semantics.lookup(node.value, scope)
            if binding is None:
                return True
            own = scope.bindings.get(node.value) is binding
            if own and binding.kind is BindingKind.SESSION and binding.factory is not None:
                continue  # opened here: `async with factory() as session`
            if binding.kind is BindingKind.FACTORY or semantics.is_session_factory(node):
                continue  # the factory itself: every call opens a new session
            return True
        return False

    def _module_level(self, name: str, binding: Binding) -> bool:
        return self.semantics.module_scope.bindings.get(name) is binding

    def _argument(self, name: str, depth: int = 0) -> bool | None:
        """None: the call may reach shared state through `name`; True: a plain value that two
        calls may share; False: fine for one call, not to be shared."""
        if name in ("self", "cls"):
            return None
        semantics = self.semantics
        binding = semantics.lookup(name)
        if binding is None:
            return name in BUILTIN_VALUES
        if binding.kind in DB_KINDS or semantics.is_session_factory(cst.Name(name)):
            return None
        if isinstance(binding.node, cst.Param):
            return self._parameter(binding.node)
        if self._module_level(name, binding):
            if binding.kind is BindingKind.OTHER and _is_literal(binding.value):
                return True
            return None if _mentions_handle(name) else False
        if binding.kind is BindingKind.OTHER and binding.value is not None:
            if _is_literal(binding.value):
                return True
            if depth >= 2:
                return None
            for loaded in _loaded_names(binding.value):
                if loaded is None or self._argument(loaded, depth + 1) is None:
                    return None
            return False
        return None

    def _parameter(self, param: cst.Param) -> bool | None:
        semantics = self.semantics
        name = param.name.value
        if semantics.is_request_scoped(param) or _mentions_handle(name):
            return None
        annotation = param.annotation.annotation if param.annotation is not None else None
        if annotation is None:
            return True  # a query parameter: a string
        type_name = self._type_name(annotation)
        if type_name is None:
            return False
        if any(channel in type_name for channel in CHANNEL_TYPES):
            return None
        return type_name in SCALAR_TYPES

    def _type_name(self, annotation: cst.BaseExpression) -> str | None:
        """The last name of a parameter's type, through Annotated, Optional and `| None`."""
        semantics = self.semantics
        if isinstance(annotation, cst.BinaryOperation) and isinstance(
            annotation.operator, cst.BitOr
        ):
            sides = [s for s in (annotation.left, annotation.right) if not is_none(s)]
            return self._type_name(sides[0]) if len(sides) == 1 else None
        if isinstance(annotation, cst.Subscript):
            base = (semantics.qualified_name(annotation.value) or "").rsplit(".", 1)[-1]
            elements = [e.slice.value for e in annotation.slice if isinstance(e.slice, cst.Index)]
            if base in ("Annotated", "Optional") and elements:
                return self._type_name(elements[0])
            return None
        if isinstance(annotation, cst.Name):
            return annotation.value
        if isinstance(annotation, cst.Attribute):
            return annotation.attr.value
        return None

    # ---------------------------------------------------------------- groups
    def _check_blocks(self, body: EndpointBody, suite: cst.BaseSuite) -> None:
        for block in _blocks(suite):
            group: list[AwaitStep] = []
            for small in block:
                step = body.steps.get(id(small)) if small is not None else None
                if step is None:
                    self._report_group(body, group)
                    group = []
                    continue
                if group and _conflicts(step, group):
                    self._report_group(body, group)
                    group = []
                group.append(step)
            self._report_group(body, group)

    def _report_group(self, body: EndpointBody, group: list[AwaitStep]) -> None:
        if len(group) < 2:
            return
        first, rest = group[0], group[1:]
        names = [f"`{step.callee}(...)`" for step in group[:3]]
        if len(group) > 3:
            names.append(f"{len(group) - 3} more calls")
        what = f"{', '.join(names[:-1])} and {names[-1]}"
        self.report(
            first.node,
            f"{what} are awaited one by one though none uses another's result, so the request "
            "waits for each in turn; run them together with `asyncio.gather(...)` or a "
            "`TaskGroup`",
            related=[
                (step.node, f"`{step.callee}(...)` does not depend on `{first.callee}(...)`")
                for step in rest
            ],
            statement=_statement_of(body.node, first.node),
            scope=body.scope,
        )


BUILTIN_VALUES = frozenset({"None", "True", "False", "len", "str", "int", "float", "bool"})


def _plain_targets(target: cst.BaseExpression) -> list[str] | None:
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, (cst.Tuple, cst.List)):
        names: list[str] = []
        for element in target.elements:
            inner = _plain_targets(element.value)
            if inner is None:
                return None
            names.extend(inner)
        return names
    return None  # attribute or subscript targets: a write to shared state


def _loaded_names(expr: cst.BaseExpression) -> Iterator[str | None]:
    """The names an expression reads (attribute names and keywords excluded); None for parts
    that hide what runs (awaits, lambdas, comprehensions, walrus)."""
    stack: list[cst.CSTNode] = [expr]
    while stack:
        node = stack.pop()
        if isinstance(
            node,
            (cst.Await, cst.Lambda, cst.NamedExpr, cst.Yield, *COMPREHENSIONS, cst.DictComp),
        ):
            yield None
            return
        if isinstance(node, cst.Name):
            yield node.value
        elif isinstance(node, (cst.Attribute, cst.Arg)):
            stack.append(node.value)
        else:
            stack.extend(iter_children(node))


def _is_literal(value: cst.BaseExpression | None) -> bool:
    return isinstance(
        value,
        (cst.SimpleString, cst.ConcatenatedString, cst.Integer, cst.Float, cst.FormattedString),
    ) or (isinstance(value, cst.Name) and value.value in ("None", "True", "False"))


def _conflicts(step: AwaitStep, group: Sequence[AwaitStep]) -> bool:
    for other in group:
        if step.uses & other.targets or step.targets & other.uses:
            return True  # a data dependency (or a rebinding of a name the other reads)
        if step.targets & other.targets:
            return True
        if step.receiver is not None and step.receiver == other.receiver:
            return True  # two calls on one object stay in order
        shared = step.uses & other.uses
        if shared - (step.shareable & other.shareable):
            return True  # they share an object that is not a plain value
    return False


def _blocks(suite: cst.CSTNode) -> Iterator[list[cst.BaseSmallStatement | None]]:
    """Each statement list of a function body outside loops and nested definitions, as its
    small statements in order (None stands for a compound statement, which ends a group)."""
    pending: list[cst.CSTNode] = [suite]
    while pending:
        node = pending.pop()
        statements: Sequence[cst.CSTNode]
        if isinstance(node, cst.IndentedBlock):
            statements = node.body
        elif isinstance(node, cst.SimpleStatementSuite):
            yield list(node.body)
            continue
        else:
            continue
        sequence: list[cst.BaseSmallStatement | None] = []
        for statement in statements:
            if isinstance(statement, cst.SimpleStatementLine):
                sequence.extend(statement.body)
                continue
            sequence.append(None)
            if isinstance(statement, (cst.For, cst.While, cst.FunctionDef, cst.ClassDef)):
                continue
            pending.extend(_suites_of(statement))
        yield sequence


def _suites_of(statement: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """The bodies of an if/with/try/match statement (and of its else/except/finally parts)."""
    if isinstance(statement, cst.If):
        yield statement.body
        if isinstance(statement.orelse, cst.If):
            yield from _suites_of(statement.orelse)
        elif isinstance(statement.orelse, cst.Else):
            yield statement.orelse.body
    elif isinstance(statement, cst.With):
        yield statement.body
    elif isinstance(statement, (cst.Try, cst.TryStar)):
        yield statement.body
        for handler in statement.handlers:
            yield handler.body
        if statement.orelse is not None:
            yield statement.orelse.body
        if statement.finalbody is not None:
            yield statement.finalbody.body
    elif isinstance(statement, cst.Match):
        for case in statement.cases:
            yield case.body


def _statement_of(function: cst.FunctionDef, target: cst.CSTNode) -> cst.CSTNode | None:
    """The statement line holding `target` (for suppression comments on its first line)."""
    for node in iter_descendants(function.body):
        if isinstance(node, cst.SimpleStatementLine) and any(
            child is target for child in iter_descendants(node)
        ):
            return node
    return None
