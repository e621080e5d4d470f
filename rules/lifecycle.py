"""Session lifecycle rules (skill section "Pattern: AsyncSession Lifecycle")."""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from bot.findings import FixSafety, Severity
from bot.flow import Condition, FlowNode, ForwardAnalysis
from bot.rule import FACTORY_TOKENS, SESSION_TOKENS, FileContext, FixPlan, Invalid, Rule, Valid
from bot.semantics import Binding, BindingKind, ScopeKind
from bot.walker import iter_descendants
from rules._shared import (
    assign_targets,
    declares_nonlocal,
    decorator_qualnames,
    name_occurrences,
    spawns_task,
)

SECTION = "Pattern: AsyncSession Lifecycle"


class GlobalSession(Rule):
    CODE = "AG101"
    NAME = "global-session"
    SEVERITY = Severity.ERROR
    SECTION = SECTION
    SUMMARY = "An AsyncSession instance lives at module or class level instead of per request."
    DOC = """
    ## What it does
    Flags an `AsyncSession` *instance* created at module level or as a class attribute
    (`session = async_session()`, `_db = AsyncSession(engine)`), and a function that declares a
    name `global` and then binds a new session to it.

    ## Why is this bad?
    A session is one unit of work with its own transaction and identity map. A session shared
    by every request serves stale objects, mixes the writes of unrelated requests in one
    transaction, and holds its pooled connection for the life of the process. Under concurrency
    it is also used by several tasks at once, which SQLAlchemy forbids ("This session is
    provisioning a new connection; concurrent operations are not permitted").

    The engine and the session *factory* belong at module level; only sessions must not.

    ## Example
    ```python
    engine = create_async_engine(DATABASE_URL)
    async_session = async_sessionmaker(engine)
    session = async_session()  # one session for the whole process


    @router.get("/users/{user_id}")
    async def read_user(user_id: int) -> User:
        return await session.get(User, user_id)
    ```

    ## Use instead
    ```python
    async def get_session() -> AsyncIterator[AsyncSession]:
        async with async_session() as session:
            yield session


    @router.get("/users/{user_id}")
    async def read_user(user_id: int, session: AsyncSession = Depends(get_session)) -> User:
        return await session.get(User, user_id)
    ```
    """
    TOKENS = (FACTORY_TOKENS,)
    NEEDS = frozenset({"repo-index"})

    VALID = (
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

            engine = create_async_engine("postgresql+asyncpg://localhost/app")
            async_session = async_sessionmaker(engine, expire_on_commit=False)
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
            from sqlalchemy.orm import sessionmaker

            engine = create_async_engine("sqlite+aiosqlite://")
            SessionLocal = sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
            """
        ),
        Valid(
            """
            from contextvars import ContextVar
            from sqlalchemy.ext.asyncio import AsyncSession

            current_session: ContextVar[AsyncSession] = ContextVar("current_session")
            """
        ),
        Valid(
            """
            import asyncio
            from sqlalchemy.ext.asyncio import async_scoped_session, async_sessionmaker

            factory = async_sessionmaker(engine)
            Session = async_scoped_session(factory, scopefunc=asyncio.current_task)
            """
        ),
        Valid(
            """
            from collections.abc import AsyncIterator
            from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def get_session() -> AsyncIterator[AsyncSession]:
                async with async_session() as session:
                    yield session
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def count_users() -> int:
                session = async_session()
                try:
                    return await session.scalar(query)
                finally:
                    await session.close()
            """
        ),
        Valid(
            """
            # A sync session is not an AsyncSession; other rules deal with sync code.
            from sqlalchemy.orm import sessionmaker

            SessionLocal = sessionmaker(bind=engine)
            db = SessionLocal()
            """
        ),
        Valid(
            """
            # Where `get_session` comes from is unknown, so its result type is too.
            from app.sessions import get_session

            session = get_session()
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import create_async_engine

            _engine = None

            def get_engine():
                global _engine
                if _engine is None:
                    _engine = create_async_engine("sqlite+aiosqlite://")
                return _engine
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            class UserRepository:
                session: AsyncSession

                def __init__(self, session: AsyncSession) -> None:
                    self.session = session
            """
        ),
    )
    INVALID = (
        Invalid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

            engine = create_async_engine("postgresql+asyncpg://localhost/app")
            async_session = async_sessionmaker(engine)
            session = async_session()
            """,
            line=5,
            message="`session`",
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            _db = AsyncSession(engine)
            """,
            line=3,
        ),
        Invalid(
            """
            import sqlalchemy.ext.asyncio as sa_async

            Session = sa_async.async_sessionmaker(engine)

            class UserService:
                db = Session()
            """,
            line=6,
            message="class attribute",
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

            factory = async_sessionmaker(engine)
            _session: AsyncSession | None = None

            async def get_session() -> AsyncSession:
                global _session
                if _session is None:
                    _session = factory()
                return _session
            """,
            line=9,
            message="global",
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession
            from sqlalchemy.orm import sessionmaker

            SessionLocal = sessionmaker(bind=engine, class_=AsyncSession)
            db: AsyncSession = SessionLocal()
            """,
            line=5,
        ),
        Invalid(
            """
            from sqlmodel.ext.asyncio.session import AsyncSession as SQLModelSession

            session = SQLModelSession(engine)
            """,
            line=3,
        ),
    )

    def visit_Assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            self._check(node, target.target, node.value)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if node.value is not None:
            self._check(node, node.target, node.value)

    def _check(
        self, node: cst.CSTNode, target: cst.BaseExpression, value: cst.BaseExpression
    ) -> None:
        if not isinstance(target, cst.Name) or not isinstance(value, cst.Call):
            return
        scope = self.semantics.scope
        name = target.value
        if scope.kind is ScopeKind.MODULE:
            where = "at module level"
        elif scope.kind is ScopeKind.CLASS:
            where = "as a class attribute"
        elif name in scope.declared_global:
            where = "in a global variable"
        else:
            return
        if self.semantics.call_makes(value) is not BindingKind.SESSION:
            return
        self.report(
            node,
            f"`{name}` holds one AsyncSession {where}, shared by every request: create a session "
            "per request or unit of work (`async with factory() as session`) instead",
        )


# ---------------------------------------------------------------------- AG102
CLOSE_METHODS = frozenset({"close", "aclose"})
# Session methods and attributes that do no I/O (they never check out a connection).
PLAIN_SESSION_METHODS = frozenset(
    {
        "add", "add_all", "expunge", "expunge_all", "in_transaction", "in_nested_transaction",
        "is_modified", "get_bind", "begin", "begin_nested", "get_transaction",
        "get_nested_transaction", "enable_relationship_loading",
    }
)  # fmt: skip
# Calls that take over what they are given: collections, exit stacks, context variables, tasks.
OWNING_CALLS = frozenset(
    {
        "append", "add", "extend", "insert", "appendleft", "put", "put_nowait", "setdefault",
        "update", "set", "enter_async_context", "enter_context", "push_async_callback",
        "push_async_exit", "push", "callback", "create_task", "ensure_future", "start_soon",
        "add_task", "submit", "run_in_executor", "to_thread", "aclosing", "closing",
    }
)  # fmt: skip
CONTEXT_MANAGER_DECORATORS = frozenset(
    {"contextlib.asynccontextmanager", "contextlib.contextmanager"}
)
BASE_EXCEPTION = frozenset({"builtins.BaseException"})

# What one occurrence of a session's name means for AG102.
IGNORE, BIND, CLOSE, IO, PLAIN, ESCAPE, MANAGED = (
    "ignore", "bind", "close", "io", "plain", "escape", "managed"
)  # fmt: skip

SessionFacts = frozenset[tuple[int, str]]  # (candidate index or -1, "none"|"fresh"|"used"|"closed")


@dataclass(frozen=True)
class _NewSession:
    """`s = F()` inside a function: a session the function created itself."""

    function: cst.FunctionDef
    name: str
    assign: cst.CSTNode
    binding: Binding
    statement: cst.CSTNode | None
    scope: str


class UnclosedSession(Rule):
    CODE = "AG102"
    NAME = "unclosed-session"
    SEVERITY = Severity.ERROR
    SECTION = SECTION
    SUMMARY = "A session created with `F()` is not closed on every path, so its connection leaks."
    DOC = """
    ## What it does
    Flags `s = factory()` / `s = AsyncSession(engine)` inside a function when the function uses
    the session but does not make sure it is closed: it is not the target of `async with`, no
    `finally` closes it (a `close()` at the end of the happy path is not enough), and it is not
    handed back to a caller (returned, yielded, stored on an object) that would own it.

    Also flags a FastAPI dependency (a function passed to `Depends(...)`) that `return`s a new
    session: FastAPI runs clean-up code only for dependencies that `yield`.

    ## Why is this bad?
    A session that ran a query holds a pooled connection until it is closed. Dropping the
    object does not give the connection back in time: the pool runs dry and requests wait for
    `pool_timeout` and then fail ("QueuePool limit of size 5 overflow 10 reached, connection
    timed out"), while SQLAlchemy logs "The garbage collector is trying to clean up
    non-checked-in connection". A close that only runs when nothing raised leaks the same way
    on every error, including a cancelled request.

    ## Example
    ```python
    async def count_users() -> int:
        session = async_session()
        total = await session.scalar(select(func.count(User.id)))
        await session.close()  # skipped when the query raises
        return total


    async def get_session() -> AsyncSession:  # used as Depends(get_session)
        return async_session()
    ```

    ## Use instead
    ```python
    async def count_users() -> int:
        async with async_session() as session:
            return await session.scalar(select(func.count(User.id)))


    async def get_session() -> AsyncIterator[AsyncSession]:
        async with async_session() as session:
            yield session
    ```
    """
    TOKENS = (FACTORY_TOKENS,)
    NEEDS = frozenset({"repo-index"})

    VALID = (
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def count_users() -> int:
                async with async_session() as session:
                    return await session.scalar(query)
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine, expire_on_commit=False)

            async def create_user(user: User) -> None:
                async with async_session.begin() as session:
                    session.add(user)
            """
        ),
        Valid(
            """
            import sqlalchemy.ext.asyncio as sa_async

            Session = sa_async.async_sessionmaker(engine)

            async def count_users() -> int:
                session = Session()
                try:
                    return await session.scalar(query)
                finally:
                    await session.close()
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

            factory = async_sessionmaker(engine)

            def make_session() -> AsyncSession:
                return factory()
            """
        ),
        Valid(
            """
            from collections.abc import AsyncIterator
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def get_session() -> AsyncIterator[AsyncSession]:
                async with async_session() as session:
                    yield session

            @router.get("/users")
            async def list_users(session: AsyncSession = Depends(get_session)):
                return await session.scalars(select(User))
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def rename(user_id: int, name: str) -> None:
                session = async_session()
                async with session:
                    user = await session.get(User, user_id)
                    user.name = name
                    await session.commit()
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

            factory = async_sessionmaker(engine)
            _session: AsyncSession | None = None

            async def shared() -> AsyncSession:
                global _session
                _session = factory()
                await _session.execute(query)
                return _session
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            class Database:
                def __init__(self, engine) -> None:
                    self.engine = engine

                async def open(self) -> None:
                    session = AsyncSession(self.engine)
                    await session.execute(query)
                    self.session = session
            """
        ),
        Valid(
            """
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import async_sessionmaker

            SessionLocal = async_sessionmaker(engine)

            async def get_db():
                db = SessionLocal()
                try:
                    yield db
                finally:
                    await db.close()

            @router.get("/items")
            async def items(db=Depends(get_db)):
                return await db.scalars(select(Item))
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            factory = async_sessionmaker(engine)

            async def load(user_id: int):
                session = None
                try:
                    session = factory()
                    return await session.get(User, user_id)
                finally:
                    if session is not None:
                        await session.close()
            """
        ),
        Valid(
            """
            from contextlib import AsyncExitStack
            from sqlalchemy.ext.asyncio import async_sessionmaker

            factory = async_sessionmaker(engine)

            async def run(stack: AsyncExitStack):
                session = factory()
                stack.push_async_callback(session.close)
                await session.execute(query)
            """
        ),
        Valid(
            """
            # Not a session: where `make` comes from is unknown.
            from app.sessions import make

            async def count() -> int:
                session = make()
                return await session.scalar(query)
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            factory = async_sessionmaker(engine)

            class UserService:
                async def fetch(self, user_id: int):
                    session = factory()
                    try:
                        return await session.get(User, user_id)
                    except BaseException:
                        await session.close()
                        raise
                    finally:
                        await session.close()
            """
        ),
        Valid(
            """
            # SQLAlchemy 2.1 also spells close() as aclose().
            from sqlalchemy.ext.asyncio import async_sessionmaker

            factory = async_sessionmaker(engine)

            async def names() -> list[str]:
                session = factory()
                try:
                    return list(await session.scalars(select(User.name)))
                finally:
                    await session.aclose()
            """
        ),
        Valid(
            """
            # No query runs, so no connection is checked out.
            from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

            TestSession = async_sessionmaker(engine, class_=AsyncSession)

            async def test_factory_makes_async_sessions() -> None:
                session = TestSession()
                assert isinstance(session, AsyncSession)
                assert session.is_active
            """
        ),
        Valid(
            """
            # Joined to an outside transaction: closing the connection is what gives it back.
            from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

            engine = create_async_engine("postgresql+asyncpg://localhost/test")

            async def run_in_rolled_back_transaction(test) -> None:
                async with engine.connect() as conn:
                    transaction = await conn.begin()
                    session = AsyncSession(bind=conn, join_transaction_mode="create_savepoint")
                    await test(session)
                    await transaction.rollback()
            """
        ),
    )
    INVALID = (
        Invalid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def count_users() -> int:
                session = async_session()
                result = await session.execute(query)
                return result.scalar_one()
            """,
            line=6,
            message="`session` is never closed",
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker as make_factory

            Session = make_factory(engine)

            async def count_users() -> int:
                session = Session()
                total = await session.scalar(query)
                await session.close()
                return total
            """,
            line=6,
            message="only on some paths",
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            class Repository:
                def __init__(self, engine) -> None:
                    self.engine = engine

                async def names(self) -> list[str]:
                    db = AsyncSession(self.engine)
                    rows = await db.scalars(select(User.name))
                    return list(rows)
            """,
            line=8,
            message="`db`",
        ),
        Invalid(
            """
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

            SessionLocal = async_sessionmaker(engine)

            async def get_db() -> AsyncSession:
                return SessionLocal()

            @router.get("/items")
            async def items(db: AsyncSession = Depends(get_db)):
                return await db.scalars(select(Item))
            """,
            line=7,
            message="dependency `get_db` returns",
        ),
        Invalid(
            """
            from typing import Annotated
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

            SessionLocal = async_sessionmaker(engine)

            async def get_db():
                db = SessionLocal()
                await db.execute(text("SET search_path TO app"))
                return db

            DB = Annotated[AsyncSession, Depends(get_db)]
            """,
            line=10,
            message="dependency `get_db` returns",
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            factory = async_sessionmaker(engine)

            async def import_rows(rows):
                for row in rows:
                    session = factory()
                    session.add(Row(**row))
                    await session.commit()
            """,
            line=7,
        ),
        Invalid(
            """
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import async_sessionmaker

            SessionLocal = async_sessionmaker(engine)

            async def get_db():
                db = SessionLocal()
                yield db
                await db.close()

            @router.get("/items")
            async def items(db=Depends(get_db)):
                return await db.scalars(select(Item))
            """,
            line=7,
            message="only on some paths",
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            factory = async_sessionmaker(engine)

            async def outer():
                async def inner(user_id: int):
                    session = factory()
                    try:
                        return await session.get(User, user_id)
                    except Exception:
                        await session.close()
                        raise
                return await inner(1)
            """,
            line=7,
        ),
    )

    def __init__(self, context: FileContext) -> None:
        super().__init__(context)
        self._candidates: list[_NewSession] = []

    # ---------------------------------------------------------------- traversal
    def visit_Assign(self, node: cst.Assign) -> None:
        if len(node.targets) == 1:
            self._candidate(node, node.targets[0].target, node.value)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if node.value is not None:
            self._candidate(node, node.target, node.value)

    def visit_Return(self, node: cst.Return) -> None:
        """A dependency that hands FastAPI a new session it will never close."""
        value = node.value
        scope = self.semantics.function_scope()
        if value is None or scope is None or not isinstance(scope.node, cst.FunctionDef):
            return
        function = scope.node
        if isinstance(value, cst.Call):
            if self.semantics.call_makes(value) is not BindingKind.SESSION:
                return
            what = "a new AsyncSession"
        elif isinstance(value, cst.Name):
            binding = scope.bindings.get(value.value)
            if (
                binding is None
                or binding.kind is not BindingKind.SESSION
                or not isinstance(binding.node, (cst.Assign, cst.AnnAssign))
                or not isinstance(binding.value, cst.Call)
                or _closes_or_manages(function, value.value)
            ):
                return
            what = f"the new AsyncSession `{value.value}`"
        else:
            return
        if not self.semantics.is_dependency(function):
            return  # a plain factory helper: its caller owns the session
        self.report(
            node,
            f"dependency `{function.name.value}` returns {what} that nothing closes (FastAPI "
            'cleans up only `yield` dependencies: "The garbage collector is trying to clean up '
            'non-checked-in connection"); yield it inside `async with`',
        )

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        mine = [c for c in self._candidates if c.function is node]
        if not mine:
            return
        self._candidates = [c for c in self._candidates if c.function is not node]
        by_name: dict[str, list[_NewSession]] = {}
        for candidate in mine:
            by_name.setdefault(candidate.name, []).append(candidate)
        for candidates in by_name.values():
            for candidate, closed_somewhere in _SessionPaths(self, node, candidates).leaks():
                how = (
                    "is closed only on some paths, not in a `finally`: an error leaves"
                    if closed_somewhere
                    else "is never closed (no `async with`, no `finally`): it leaves"
                )
                self.report(
                    candidate.assign,
                    f'`{candidate.name}` {how} its connection checked out ("The garbage '
                    'collector is trying to clean up non-checked-in connection"); use '
                    f"`async with factory() as {candidate.name}:`",
                    statement=candidate.statement,
                    scope=candidate.scope,
                )

    # ---------------------------------------------------------------- helpers
    def _candidate(
        self, node: cst.CSTNode, target: cst.BaseExpression, value: cst.BaseExpression
    ) -> None:
        if not isinstance(target, cst.Name) or not isinstance(value, cst.Call):
            return
        scope = self.semantics.scope
        if scope.kind is not ScopeKind.FUNCTION or not isinstance(scope.node, cst.FunctionDef):
            return
        name = target.value
        if self.semantics.call_makes(value) is not BindingKind.SESSION:
            return
        if name in scope.declared_global or declares_nonlocal(scope.node, name):
            return
        if self._bound_to_connection(value):
            return  # the connection's owner gives it back, not the session
        binding = scope.bindings.get(name)
        if binding is None:
            return
        self._candidates.append(
            _NewSession(scope.node, name, node, binding, self.context.statement, scope.qualname)
        )

    def _bound_to_connection(self, call: cst.Call) -> bool:
        """`AsyncSession(conn)` / `factory(bind=conn)` with `conn` from `engine.connect()`."""
        for position, arg in enumerate(call.args):
            keyword = arg.keyword.value if arg.keyword is not None else None
            if keyword != "bind" and not (keyword is None and position == 0):
                continue
            if not isinstance(arg.value, cst.Name):
                continue
            binding = self.semantics.lookup(arg.value.value)
            if binding is None:
                continue
            if binding.kind is BindingKind.CONNECTION:
                return True
            source: cst.BaseExpression | None = binding.value
            if isinstance(binding.node, cst.With):
                source = next(
                    (
                        item.item
                        for item in binding.node.items
                        if item.asname is not None
                        and isinstance(item.asname.name, cst.Name)
                        and item.asname.name.value == arg.value.value
                    ),
                    None,
                )
            if isinstance(source, cst.Await):
                source = source.expression
            if (
                isinstance(source, cst.Call)
                and isinstance(source.func, cst.Attribute)
                and source.func.attr.value in ("connect", "begin")
            ):
                return True
        return False

    def lends_on_yield(self, function: cst.FunctionDef) -> bool:
        """A `yield` lends the session (FastAPI dependency, context manager) rather than hands it over."""
        if self.semantics.is_dependency(function):
            return True
        return any(
            name in CONTEXT_MANAGER_DECORATORS
            for name in decorator_qualnames(self.semantics, function)
        )


class _SessionPaths:
    """Whether the sessions one name is bound to in one function are closed on every path.

    A use of the session that can do I/O must sit inside a `try` whose `finally` (or bare
    `except`/`except BaseException` that re-raises) closes it, and no path may leave the
    function with a used session still open (solved on the function's flow graph).
    """

    def __init__(
        self, rule: UnclosedSession, function: cst.FunctionDef, candidates: list[_NewSession]
    ) -> None:
        self.rule = rule
        self.semantics = rule.semantics
        self.function = function
        self.candidates = candidates
        self.name = candidates[0].name
        self.tracked = {self.name, *self._aliases()}

    def _aliases(self) -> set[str]:
        scope = self.semantics.scope_of(self.function)
        if scope is None:
            return set()
        sessions = {id(c.binding) for c in self.candidates}
        return {
            name
            for name, binding in scope.bindings.items()
            if binding.kind is BindingKind.WRAPPER
            and binding.wraps is not None
            and id(binding.wraps) in sessions
        }

    def leaks(self) -> list[tuple[_NewSession, bool]]:
        occurrences = [
            (name, parents, self._classify(name, parents))
            for name, parents in name_occurrences(self.function.body, self.tracked)
        ]
        kinds = {kind for _, _, kind in occurrences}
        if ESCAPE in kinds or MANAGED in kinds or IO not in kinds:
            return []
        graph = self.semantics.flow(self.function)
        finally_regions, protected = self._protection(occurrences)
        close_at: set[int] = set()
        io_at: dict[int, bool] = {}  # flow node -> some I/O use there is unprotected
        reset_at: set[int] = set()
        for name, parents, kind in occurrences:
            flow_node = graph.containing(name)
            if flow_node is None:
                continue
            index = flow_node.index
            in_finally = any(id(p) in finally_regions for p in parents)
            if kind == CLOSE or (in_finally and kind == IO):
                close_at.add(index)
            elif kind == IO:
                unprotected = not any(id(p) in protected for p in parents)
                io_at[index] = io_at.get(index, False) or unprotected
            elif kind == BIND and name.value == self.name:
                reset_at.add(index)
        # A `finally` that closes the session counts as closing it on every path through it,
        # even when the close itself is conditional (`if own_session: await s.close()`).
        for block in finally_regions.values():
            statements = block.body.body if isinstance(block.body, cst.IndentedBlock) else ()
            first = graph.node_for(statements[0]) if statements else None
            if first is not None:
                close_at.add(first.index)
        assign_at: dict[int, int] = {}
        for position, candidate in enumerate(self.candidates):
            flow_node = graph.node_for(candidate.assign)
            if flow_node is not None:
                assign_at[flow_node.index] = position
                reset_at.discard(flow_node.index)
        jumps_closed = self._closing_jumps(graph.nodes)
        flagged: set[int] = set()
        closed: set[int] = set()  # candidates closed on at least one path

        def transfer(flow_node: FlowNode, facts: SessionFacts) -> SessionFacts:
            index = flow_node.index
            if index in assign_at:
                facts = frozenset({(assign_at[index], "fresh")})
            elif index in reset_at:
                facts = frozenset({(-1, "none")})
            if index in io_at:
                if io_at[index]:
                    flagged.update(c for c, state in facts if state in ("fresh", "used"))
                facts = frozenset((c, "used" if s == "fresh" else s) for c, s in facts)
            if index in close_at or index in jumps_closed:
                closed.update(c for c, state in facts if state in ("fresh", "used"))
                facts = frozenset((c, "closed" if s in ("fresh", "used") else s) for c, s in facts)
            return facts

        def refine(condition: Condition, facts: SessionFacts) -> SessionFacts:
            if _means_none(condition, self.tracked):
                return frozenset((c, s) for c, s in facts if s == "closed") | {(-1, "none")}
            return facts

        analysis = ForwardAnalysis(
            graph, frozenset({(-1, "none")}), transfer, lambda a, b: a | b, refine
        )
        at_exit = analysis.facts_before(graph.exit) or frozenset()
        flagged.update(c for c, state in at_exit if state == "used")
        return [
            (candidate, position in closed)
            for position, candidate in enumerate(self.candidates)
            if position in flagged
        ]

    # ---------------------------------------------------------------- occurrences
    def _classify(self, name: cst.Name, parents: tuple[cst.CSTNode, ...]) -> str:
        parent = parents[-1] if parents else None
        if isinstance(parent, cst.Attribute) and parent.attr is name:
            return IGNORE  # `obj.session`: another object's attribute
        if isinstance(parent, cst.Arg) and parent.keyword is name:
            return IGNORE  # `f(session=...)`: a keyword, not the variable
        for ancestor in parents:
            if (
                isinstance(ancestor, (cst.FunctionDef, cst.Lambda))
                and ancestor is not self.function
            ):
                scope = self.semantics.scope_of(ancestor)
                if isinstance(parent, cst.Param) and parent.name is name:
                    return IGNORE
                if scope is not None and name.value in scope.bindings:
                    return IGNORE
                return ESCAPE  # captured by a closure: its lifetime is not this function's
            if isinstance(ancestor, cst.ClassDef):
                return ESCAPE
        if parent is None:
            return PLAIN
        if _is_binding_target(name, parent):
            return BIND
        if any(isinstance(p, cst.WithItem) for p in parents):
            return MANAGED  # `async with s:`, `async with s.begin():`, `async with aclosing(s):`
        if isinstance(parent, cst.Attribute) and parent.value is name:
            grand = parents[-2] if len(parents) > 1 else None
            is_call = isinstance(grand, cst.Call) and grand.func is parent
            if parent.attr.value in CLOSE_METHODS:
                return CLOSE if is_call else ESCAPE  # `stack.push_async_callback(s.close)`
            if not is_call or parent.attr.value in PLAIN_SESSION_METHODS:
                return PLAIN
            return IO
        if _is_none_check(name, parent):
            return IGNORE
        awaited = any(isinstance(p, cst.Await) for p in parents)
        for ancestor in parents:
            if isinstance(ancestor, cst.Call) and _call_name(ancestor) in OWNING_CALLS:
                return ESCAPE
        if not awaited:
            for ancestor in reversed(parents):
                if isinstance(ancestor, cst.Return):
                    return ESCAPE  # handed to the caller, who owns it now
                if isinstance(ancestor, cst.Yield):
                    return IO if self.rule.lends_on_yield(self.function) else ESCAPE
                if isinstance(ancestor, (cst.Assign, cst.AnnAssign, cst.AugAssign)):
                    return self._stored(ancestor)
        if awaited:
            return IO
        # Handed to a function that is not awaited: in an `async def` that call cannot run the
        # session's queries (they need an `await`); a plain `def` may drive them with
        # `loop.run_until_complete(...)`. Builtins (`isinstance(s, ...)`) never do.
        calls = [p for p in parents if isinstance(p, cst.Call)]
        if (
            calls
            and self.function.asynchronous is None
            and not all(self._is_builtin_call(c) for c in calls)
        ):
            return IO
        return PLAIN

    def _is_builtin_call(self, call: cst.Call) -> bool:
        return (self.semantics.qualified_name(call.func) or "").startswith("builtins.")

    def _stored(self, assign: cst.Assign | cst.AnnAssign | cst.AugAssign) -> str:
        """The session is part of an assigned value: an alias is fine, anything else keeps it."""
        scope = self.semantics.scope_of(self.function)
        for target in assign_targets(assign):
            if not isinstance(target, cst.Name) or target.value not in self.tracked:
                return ESCAPE
            if scope is not None and target.value in scope.declared_global:
                return ESCAPE
        return IGNORE

    def _protection(
        self, occurrences: list[tuple[cst.Name, tuple[cst.CSTNode, ...], str]]
    ) -> tuple[dict[int, cst.Finally], set[int]]:
        """(protecting `finally` blocks by id, ids of every node a protecting `try` covers)."""
        finally_regions: dict[int, cst.Finally] = {}
        protected: set[int] = set()
        for name, parents, kind in occurrences:
            if kind not in (CLOSE, IO):
                continue
            for depth, ancestor in enumerate(parents):
                if not isinstance(ancestor, (cst.Try, cst.TryStar)):
                    continue
                inner = parents[depth + 1] if depth + 1 < len(parents) else name
                if ancestor.finalbody is not None and inner is ancestor.finalbody:
                    finally_regions[id(ancestor.finalbody)] = ancestor.finalbody
                    protected.update(id(n) for n in iter_descendants(ancestor))
                elif (
                    kind == CLOSE
                    and isinstance(inner, cst.ExceptHandler)
                    and self._catches_everything(inner)
                    and _reraises(inner)
                ):
                    protected.update(id(n) for n in iter_descendants(ancestor.body))
        return finally_regions, protected

    def _catches_everything(self, handler: cst.ExceptHandler) -> bool:
        if handler.type is None:
            return True
        return self.semantics.qualified_name(handler.type) in BASE_EXCEPTION

    def _closing_jumps(self, nodes: list[FlowNode]) -> set[int]:
        """`return`/`raise`/`break`/`continue` inside a try whose finally closes the session.

        The flow graph sends them straight to their target; the `finally` still runs first.
        """
        covered: set[int] = set()
        for node in iter_descendants(self.function.body):
            if not isinstance(node, cst.Try) or node.finalbody is None:
                continue
            closes = any(
                isinstance(n, cst.Name) and n.value in self.tracked
                for n in iter_descendants(node.finalbody)
            )
            if closes:
                for part in (node.body, *node.handlers, node.orelse):
                    if part is not None:
                        covered.update(id(n) for n in iter_descendants(part))
        return {
            flow_node.index
            for flow_node in nodes
            if isinstance(flow_node.node, (cst.Return, cst.Raise, cst.Break, cst.Continue))
            and id(flow_node.node) in covered
        }


def _is_binding_target(name: cst.Name, parent: cst.CSTNode) -> bool:
    if isinstance(parent, cst.AssignTarget):
        return parent.target is name
    if isinstance(parent, (cst.AnnAssign, cst.AugAssign)):
        return parent.target is name
    if isinstance(parent, cst.AsName):
        return parent.name is name
    if isinstance(parent, (cst.For, cst.CompFor)):
        return parent.target is name
    if isinstance(parent, cst.NamedExpr):
        return parent.target is name
    return isinstance(parent, (cst.NameItem, cst.ImportAlias, cst.Param))


def _is_none_check(name: cst.Name, parent: cst.CSTNode) -> bool:
    """`s is None`, `s is not None`, `if s:`, `not s`: no use of the session."""
    if isinstance(parent, cst.Comparison):
        return parent.left is name and all(
            isinstance(c.operator, (cst.Is, cst.IsNot))
            and isinstance(c.comparator, cst.Name)
            and c.comparator.value == "None"
            for c in parent.comparisons
        )
    if isinstance(parent, (cst.If, cst.While, cst.IfExp)):
        return parent.test is name
    if isinstance(parent, cst.UnaryOperation):
        return isinstance(parent.operator, cst.Not)
    return isinstance(parent, cst.BooleanOperation)


def _means_none(condition: Condition, names: set[str]) -> bool:
    """The branch taken when the session variable is None (never assigned on that path)."""
    test, truth = condition.test, condition.truth
    if isinstance(test, cst.Name) and test.value in names:
        return not truth
    if (
        isinstance(test, cst.UnaryOperation)
        and isinstance(test.operator, cst.Not)
        and isinstance(test.expression, cst.Name)
        and test.expression.value in names
    ):
        return truth
    if (
        isinstance(test, cst.Comparison)
        and isinstance(test.left, cst.Name)
        and test.left.value in names
        and len(test.comparisons) == 1
        and isinstance(test.comparisons[0].comparator, cst.Name)
        and test.comparisons[0].comparator.value == "None"
    ):
        operator = test.comparisons[0].operator
        if isinstance(operator, cst.Is):
            return truth
        if isinstance(operator, cst.IsNot):
            return not truth
    return False


def _call_name(call: cst.Call) -> str | None:
    func = call.func
    if isinstance(func, cst.Attribute):
        return func.attr.value
    if isinstance(func, cst.Name):
        return func.value
    return None


def _reraises(handler: cst.ExceptHandler) -> bool:
    return any(isinstance(n, cst.Raise) for n in iter_descendants(handler.body))


def _closes_or_manages(function: cst.FunctionDef, name: str) -> bool:
    """`name.close()`/`aclose()` or `async with name` anywhere in the function."""
    for node in iter_descendants(function.body):
        if (
            isinstance(node, cst.Attribute)
            and isinstance(node.value, cst.Name)
            and node.value.value == name
            and node.attr.value in CLOSE_METHODS
        ):
            return True
        if isinstance(node, cst.WithItem) and any(
            isinstance(n, cst.Name) and n.value == name for n in iter_descendants(node.item)
        ):
            return True
    return False


# ---------------------------------------------------------------------- AG103
class SyncWithAsyncSession(Rule):
    CODE = "AG103"
    NAME = "sync-with-async-session"
    SEVERITY = Severity.ERROR
    SECTION = SECTION
    SUMMARY = "A plain `with` on an AsyncSession, an async session factory or its `begin()`."
    DOC = """
    ## What it does
    Flags a plain `with` statement whose context manager is an `AsyncSession`
    (`with factory() as s:`, `with AsyncSession(engine) as s:`, `with s:`), the context manager
    of an async session factory (`with factory.begin() as s:`) or a session's transaction
    (`with s.begin():`, `with s.begin_nested():`).

    ## Why is this bad?
    These objects implement only the asynchronous context manager protocol (`__aenter__` /
    `__aexit__`). A plain `with` fails as soon as it runs, with
    `TypeError: 'AsyncSession' object does not support the context manager protocol`
    (`'AsyncSessionTransaction'` for `s.begin()`), so the block never executes. A sync
    `Session` from `sqlalchemy.orm` is a different object and is not flagged.

    ## Example
    ```python
    async def rename(user_id: int, name: str) -> None:
        with async_session() as session:
            with session.begin():
                user = await session.get(User, user_id)
                user.name = name
    ```

    ## Use instead
    ```python
    async def rename(user_id: int, name: str) -> None:
        async with async_session() as session:
            async with session.begin():
                user = await session.get(User, user_id)
                user.name = name
    ```

    ## Fix safety
    Inside an `async def`, turning `with` into `async with` is safe: it is the only form that
    runs at all. Outside an `async def`, `async with` is a syntax error and the function itself
    has to become async, so no fix is offered there, nor when the same `with` also enters a
    context manager that is not asynchronous.
    """
    TOKENS = (("with",), SESSION_TOKENS)
    NEEDS = frozenset({"repo-index"})

    VALID = (
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def rename(user_id: int, name: str) -> None:
                async with async_session() as session:
                    async with session.begin():
                        user = await session.get(User, user_id)
                        user.name = name
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def create(user: User) -> None:
                async with async_session.begin() as session:
                    session.add(user)
            """
        ),
        Valid(
            """
            from sqlalchemy.orm import Session, sessionmaker

            SessionLocal = sessionmaker(bind=engine)

            def rename(user_id: int, name: str) -> None:
                with SessionLocal() as session:
                    with session.begin():
                        session.get(User, user_id).name = name
            """
        ),
        Valid(
            """
            from sqlalchemy.orm import Session

            def count(engine) -> int:
                with Session(engine) as session, session.begin():
                    return session.scalar(query)
            """
        ),
        Valid(
            """
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            @router.post("/users")
            async def create(user: UserIn, session: AsyncSession = Depends(get_session)):
                async with session.begin_nested():
                    session.add(User(**user.model_dump()))
                with open("audit.log", "a") as log:
                    log.write("created")
            """
        ),
        Valid(
            """
            # Where `get_session` comes from is unknown, so what it returns is too.
            from app.sessions import get_session

            async def count() -> int:
                with get_session() as session:
                    return await session.scalar(query)
            """
        ),
        Valid(
            """
            import sqlalchemy.ext.asyncio as sa_async

            engine = sa_async.create_async_engine("sqlite+aiosqlite://")

            async def ping() -> None:
                async with engine.connect() as conn:
                    await conn.execute(text("select 1"))
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            class Repository:
                def __init__(self, session: AsyncSession) -> None:
                    self.session = session

                async def save(self, user: User) -> None:
                    async with self.session.begin():
                        self.session.add(user)
            """
        ),
        Valid(
            """
            # Untyped: a session injected into a plain `def` endpoint is most likely sync.
            from fastapi import Depends

            @router.post("/users")
            def create(user: UserIn, db=Depends(get_db)):
                with db.begin():
                    db.add(User(**user.model_dump()))
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def bulk(session: AsyncSession, rows) -> None:
                with session.no_autoflush:
                    for row in rows:
                        session.add(Row(**row))
                await session.commit()
            """
        ),
    )
    INVALID = (
        Invalid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def count() -> int:
                with async_session() as session:
                    return await session.scalar(query)
            """,
            line=6,
            message="'AsyncSession' object does not support the context manager protocol",
            fixed="""
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def count() -> int:
                async with async_session() as session:
                    return await session.scalar(query)
            """,
        ),
        Invalid(
            """
            from typing import Annotated
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            SessionDep = Annotated[AsyncSession, Depends(get_session)]

            @router.post("/users/{user_id}/rename")
            async def rename(user_id: int, name: str, session: SessionDep) -> None:
                with session.begin():
                    user = await session.get(User, user_id)
                    user.name = name
            """,
            line=9,
            message="AsyncSessionTransaction",
            fixed="""
            from typing import Annotated
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            SessionDep = Annotated[AsyncSession, Depends(get_session)]

            @router.post("/users/{user_id}/rename")
            async def rename(user_id: int, name: str, session: SessionDep) -> None:
                async with session.begin():
                    user = await session.get(User, user_id)
                    user.name = name
            """,
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession as AS
            from sqlalchemy.orm import sessionmaker

            Session = sessionmaker(engine, class_=AS, expire_on_commit=False)

            class UserService:
                async def create(self, user: User) -> None:
                    with Session.begin() as session:
                        session.add(user)
            """,
            line=8,
            message="_AsyncSessionContextManager",
            fixed="""
            from sqlalchemy.ext.asyncio import AsyncSession as AS
            from sqlalchemy.orm import sessionmaker

            Session = sessionmaker(engine, class_=AS, expire_on_commit=False)

            class UserService:
                async def create(self, user: User) -> None:
                    async with Session.begin() as session:
                        session.add(user)
            """,
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            def open_session(engine):
                with AsyncSession(engine) as session:
                    return session
            """,
            line=4,
            message="`AsyncSession(engine)`",
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            factory = async_sessionmaker(engine)

            async def import_rows(rows) -> None:
                with factory() as session, open("rows.log") as log:
                    for row in rows:
                        session.add(Row(**row))
                    await session.commit()
            """,
            line=6,
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            class Repository:
                def __init__(self, session: AsyncSession) -> None:
                    self.session = session

                async def save(self, user: User) -> None:
                    with self.session:
                        self.session.add(user)
                        await self.session.commit()
            """,
            line=8,
            fixed="""
            from sqlalchemy.ext.asyncio import AsyncSession

            class Repository:
                def __init__(self, session: AsyncSession) -> None:
                    self.session = session

                async def save(self, user: User) -> None:
                    async with self.session:
                        self.session.add(user)
                        await self.session.commit()
            """,
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            factory = async_sessionmaker(engine)

            async def outer() -> None:
                def helper() -> None:
                    with factory() as session:
                        session.add(Row())
                helper()
            """,
            line=7,
        ),
    )

    def visit_With(self, node: cst.With) -> None:
        if node.asynchronous is not None:
            return
        offending: tuple[cst.WithItem, str] | None = None
        all_async = True
        for item in node.items:
            kind = self._async_only(item.item)
            if kind is None:
                all_async = False
            elif offending is None:
                offending = (item, kind)
        if offending is None:
            return
        item, kind = offending
        fix = None
        if all_async and self.semantics.in_async_function():
            fix = FixPlan(
                "Use `async with`", FixSafety.SAFE, insertions=((node, "async ", "before"),)
            )
        spelled = self.context.module.code_for_node(item.item)
        self.report(
            item,
            f"plain `with` on `{spelled}`, which only supports `async with` (TypeError: "
            f"'{kind}' object does not support the context manager protocol); write "
            "`async with`",
            fix=fix,
        )

    def _async_only(self, expr: cst.BaseExpression) -> str | None:
        """The class name of an async-only context manager, or None."""
        semantics = self.semantics
        if isinstance(expr, cst.Call):
            func = expr.func
            if isinstance(func, cst.Attribute) and func.attr.value in ("begin", "begin_nested"):
                if func.attr.value == "begin" and semantics.is_session_factory(func.value):
                    return "_AsyncSessionContextManager"
                if _is_session_itself(self, func.value):
                    return "AsyncSessionTransaction"
                return None
            if semantics.call_makes(expr) is BindingKind.SESSION:
                return "AsyncSession"
            return None
        if _is_session_itself(self, expr):
            return "AsyncSession"
        return None


def _is_session_itself(rule: Rule, expr: cst.BaseExpression) -> bool:
    """`expr` is a session itself (not a wrapper), and not only guessed to be one: an
    unannotated `db=Depends(get_db)` used with a plain `with` is more likely a sync Session."""
    session = rule.semantics.direct_session(expr)
    if session is None:
        return False
    return not (isinstance(session.node, cst.Param) and session.node.annotation is None)


# ---------------------------------------------------------------------- AG104
BACKGROUND_TASKS = frozenset(
    {
        "fastapi.BackgroundTasks",
        "fastapi.background.BackgroundTasks",
        "starlette.background.BackgroundTasks",
    }
)
TO_THREAD = frozenset({"asyncio.to_thread", "asyncio.threads.to_thread"})
PARTIAL = frozenset({"functools.partial"})

# How the work outlives the request: BackgroundTasks, a task, a thread.
AFTER_RESPONSE, TASK, THREAD = "after-response", "task", "thread"


@dataclass(frozen=True)
class _Carried:
    """A request-scoped session reaching background work, and how (`what` names it)."""

    session: Binding
    what: str


class SessionOutlivesRequest(Rule):
    CODE = "AG104"
    NAME = "session-outlives-request"
    SEVERITY = Severity.WARNING
    SECTION = SECTION
    SUMMARY = "The request's session, or an object loaded from it, is handed to background work."
    DOC = """
    ## What it does
    Flags a session injected with `Depends(...)`, an object built around it, or an ORM instance
    loaded from it, passed to work that runs outside the request: `background_tasks.add_task(...)`
    on a FastAPI/Starlette `BackgroundTasks`, `asyncio.create_task(...)` /
    `asyncio.ensure_future(...)` / `loop.create_task(...)`, `loop.run_in_executor(...)` and
    `asyncio.to_thread(...)` (as an argument, through `functools.partial`, or captured by a
    lambda or nested function).

    The finding is a warning for `BackgroundTasks`, and an error for tasks and threads, for a
    dependency declared with `Depends(..., scope="function")`, and when the repository pins
    FastAPI 0.106 to 0.117.

    ## Why is this bad?
    The request's session belongs to the dependency that opened it. What happens when a
    background job uses it depends on the FastAPI version: from 0.106 to 0.117, and with
    `scope="function"` on current versions, the dependency has already closed the session when
    the job runs; the closed session quietly opens a new connection that nobody returns, and
    lazy attributes of its objects raise `DetachedInstanceError`. On other versions the
    request's pooled connection stays checked out for the whole job, and lazy loads raise
    `MissingGreenlet`. A task made with `create_task` can outlive the request entirely, so its
    session is closed under it, and an executor or `to_thread` moves the session to another
    thread, which an `AsyncSession` does not support.

    ## Example
    ```python
    @router.post("/orders/{order_id}/receipt")
    async def send_receipt(
        order_id: int,
        background_tasks: BackgroundTasks,
        session: AsyncSession = Depends(get_session),
    ) -> None:
        order = await session.get(Order, order_id)
        background_tasks.add_task(email_receipt, session, order)
    ```

    ## Use instead
    Pass primary keys, and let the job open its own session:
    ```python
    async def email_receipt(order_id: int) -> None:
        async with async_session() as session:
            order = await session.get(Order, order_id)
            ...


    background_tasks.add_task(email_receipt, order_id)
    ```
    """
    CORRECTION = """
    Handing the request's session to a background job is not safe on any FastAPI version. On
    0.106 to 0.117, and with `Depends(..., scope="function")`, the session is already closed
    when the job runs, yet it still runs queries by silently opening a new connection that is
    never returned. On the other versions it keeps a pooled connection busy for the whole job.
    Give the job primary keys and open a new session inside it.
    """
    TOKENS = (
        ("add_task", "create_task", "ensure_future", "run_in_executor", "to_thread"),
        SESSION_TOKENS,
    )
    NEEDS = frozenset({"repo-index"})

    VALID = (
        Valid(
            """
            from fastapi import BackgroundTasks, Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            @router.post("/orders/{order_id}/receipt")
            async def receipt(
                order_id: int,
                background_tasks: BackgroundTasks,
                session: AsyncSession = Depends(get_session),
            ) -> None:
                order = await session.get(Order, order_id)
                background_tasks.add_task(email_receipt, order.id, order.customer_email)
            """
        ),
        Valid(
            """
            from fastapi import BackgroundTasks
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def email_receipt(order_id: int) -> None:
                async with async_session() as session:
                    order = await session.get(Order, order_id)
                    await send(order)

            @router.post("/orders/{order_id}/receipt")
            async def receipt(order_id: int, background_tasks: BackgroundTasks) -> None:
                background_tasks.add_task(email_receipt, order_id)
            """
        ),
        Valid(
            """
            import asyncio
            from sqlalchemy.ext.asyncio import async_sessionmaker

            factory = async_sessionmaker(engine)

            async def refresh(user_id: int) -> None:
                async with factory() as session:
                    await session.execute(query, {"id": user_id})

            async def schedule(user_id: int, tasks: set[asyncio.Task[None]]) -> None:
                task = asyncio.create_task(refresh(user_id))
                tasks.add(task)
            """
        ),
        Valid(
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
                return users.result()
            """
        ),
        Valid(
            """
            # Not request-scoped: the caller owns this session.
            import asyncio
            from sqlalchemy.ext.asyncio import AsyncSession

            async def start_sync(session: AsyncSession, pending: set) -> None:
                pending.add(asyncio.create_task(sync_all(session)))
            """
        ),
        Valid(
            """
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            class Jobs:
                def add_task(self, func, *args) -> None: ...

            @router.post("/sync")
            async def sync(jobs: Jobs, session: AsyncSession = Depends(get_session)) -> None:
                jobs.add_task(sync_all, session)
            """
        ),
        Valid(
            """
            import asyncio
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            @router.get("/report")
            async def report(session: AsyncSession = Depends(get_session)):
                rows = (await session.execute(query)).all()
                return await asyncio.to_thread(render_pdf, [tuple(r) for r in rows])
            """
        ),
        Valid(
            """
            from fastapi import BackgroundTasks, Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            @router.post("/users/{user_id}/welcome")
            async def welcome(
                user_id: int, tasks: BackgroundTasks, session: AsyncSession = Depends(get_session)
            ) -> None:
                user = await session.get(User, user_id)
                tasks.add_task(send_welcome, email=user.email, name=str(user.name))
            """
        ),
    )
    INVALID = (
        Invalid(
            """
            from fastapi import BackgroundTasks, Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            @router.post("/orders/{order_id}/receipt")
            async def receipt(
                order_id: int,
                background_tasks: BackgroundTasks,
                session: AsyncSession = Depends(get_session),
            ) -> None:
                background_tasks.add_task(email_receipt, session, order_id)
            """,
            line=10,
            related_lines=(8,),
            message="the request's session `session`",
        ),
        Invalid(
            """
            from typing import Annotated
            from fastapi import Depends
            from starlette.background import BackgroundTasks as Tasks
            from sqlalchemy.ext.asyncio import AsyncSession

            SessionDep = Annotated[AsyncSession, Depends(get_session)]

            @router.post("/orders/{order_id}/receipt")
            async def receipt(order_id: int, session: SessionDep, tasks: Tasks) -> None:
                order = await session.get(Order, order_id)
                tasks.add_task(email_receipt, order=order)
            """,
            line=11,
            related_lines=(9,),
            message="`order`, loaded from the request's session `session`",
        ),
        Invalid(
            """
            import asyncio as aio
            from fastapi import Depends

            @router.post("/sync")
            async def sync(db=Depends(get_db)) -> dict[str, str]:
                aio.create_task(sync_all(db))
                return {"status": "started"}
            """,
            line=6,
            message="error:",
        ),
        Invalid(
            """
            import asyncio
            from functools import partial
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            @router.get("/export")
            async def export(session: AsyncSession = Depends(get_session)):
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(None, partial(write_csv, session))
            """,
            line=9,
            message="must not cross threads",
        ),
        Invalid(
            """
            from fastapi import BackgroundTasks, Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            @router.post("/audit")
            async def audit(
                background: BackgroundTasks,
                session: AsyncSession = Depends(get_session, scope="function"),
            ) -> None:
                background.add_task(lambda: record_audit(session))
            """,
            line=9,
            message='scope="function"',
        ),
        Invalid(
            """
            import asyncio
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            class UserRepository:
                def __init__(self, session: AsyncSession) -> None:
                    self.session = session

            @router.post("/users/{user_id}/refresh")
            async def refresh(user_id: int, session: AsyncSession = Depends(get_session)):
                repo = UserRepository(session)
                await asyncio.to_thread(repo.refresh_sync, user_id)
                return {"ok": True}
            """,
            line=12,
            message="`repo`",
        ),
        Invalid(
            """
            import asyncio
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            @router.post("/users/{user_id}/touch")
            async def touch(user_id: int, session: AsyncSession = Depends(get_session)):
                async def later() -> None:
                    await asyncio.sleep(5)
                    await session.execute(query, {"id": user_id})

                asyncio.get_running_loop().create_task(later())
            """,
            line=11,
            related_lines=(6,),
        ),
        Invalid(
            """
            from asyncio import create_task as spawn
            from typing import Annotated
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            type SessionDep = Annotated[AsyncSession, Depends(get_session)]
            running: set = set()

            @router.post("/users/{user_id}/sync")
            async def sync_user(user_id: int, session: SessionDep) -> None:
                user = await session.get(User, user_id)
                running.add(spawn(push_to_crm(user)))
            """,
            line=12,
            related_lines=(10,),
            message="`user`, loaded from the request's session `session`",
        ),
    )

    def leave_Call(self, node: cst.Call) -> None:
        # On leaving, lambdas among the arguments have their scopes (for closure lookups).
        target = self._background_call(node)
        if target is None:
            return
        how, values, callables = target
        carried = self._first_carried(values, callables)
        if carried is None:
            return
        session = carried.session
        callee = self.context.module.code_for_node(node.func)
        reasons = []
        if how == TASK:
            reasons.append("the task can outlive the request and its session")
        elif how == THREAD:
            reasons.append("an AsyncSession must not cross threads")
        if self._function_scoped(session):
            reasons.append('`scope="function"` closes it before the job runs')
        if how == AFTER_RESPONSE and self.semantics.facts.fastapi_exits_dependencies_early():
            version = self.semantics.facts.fastapi_version
            reasons.append(f"FastAPI {version} closes it before background tasks run")
        if reasons:
            consequence = f"(error: {'; '.join(reasons)})"
        else:
            consequence = (
                "(it holds the request's pooled connection for the whole job; lazy loads raise "
                "MissingGreenlet)"
            )
        message = (
            f"{carried.what} goes to `{callee}(...)` {consequence}: pass primary keys and open "
            "a session in the job"
        )
        related = []
        if isinstance(session.node, cst.Param):
            related.append((session.node, f"the request-scoped session `{session.name}`"))
        self.report(
            node,
            message,
            related=related,
            severity=Severity.ERROR if reasons else None,
        )

    # ---------------------------------------------------------------- which calls
    def _background_call(
        self, call: cst.Call
    ) -> tuple[str, list[cst.BaseExpression], list[cst.BaseExpression]] | None:
        """(how, values handed over, callables run) for a call that starts background work."""
        args = [arg.value for arg in call.args]
        func = call.func
        qualname = self.semantics.qualified_name(func)
        if not args:
            return None
        if isinstance(func, cst.Attribute) and func.attr.value == "add_task":
            if self._is_background_tasks(func.value):
                return AFTER_RESPONSE, args[1:], args[:1]
            return None
        if spawns_task(self.semantics, call):
            coroutine = args[0]
            if not isinstance(coroutine, cst.Call):
                return None
            values = [arg.value for arg in coroutine.args]
            return TASK, values, [coroutine.func]
        if isinstance(func, cst.Attribute) and func.attr.value == "run_in_executor":
            return (THREAD, args[2:], args[1:2]) if len(args) >= 2 else None
        if qualname in TO_THREAD:
            return THREAD, args[1:], args[:1]
        return None

    def _is_background_tasks(self, expr: cst.BaseExpression) -> bool:
        if not isinstance(expr, cst.Name):
            return False
        binding = self.semantics.lookup(expr.value)
        if binding is None:
            return False
        node = binding.node
        if isinstance(node, cst.Param) and node.annotation is not None:
            return self._is_background_tasks_type(node.annotation.annotation)
        value = binding.value
        return (
            isinstance(value, cst.Call)
            and self.semantics.qualified_name(value.func) in BACKGROUND_TASKS
        )

    def _is_background_tasks_type(self, annotation: cst.BaseExpression) -> bool:
        semantics = self.semantics
        if isinstance(annotation, cst.Subscript) and annotation.slice:
            base = semantics.qualified_name(annotation.value) or ""
            first = annotation.slice[0].slice
            if base.rsplit(".", 1)[-1] == "Annotated" and isinstance(first, cst.Index):
                return self._is_background_tasks_type(first.value)
            return False
        return semantics.qualified_name(annotation) in BACKGROUND_TASKS

    # ---------------------------------------------------------------- what is handed over
    def _first_carried(
        self, values: list[cst.BaseExpression], callables: list[cst.BaseExpression]
    ) -> _Carried | None:
        for value in values:
            found = self._carried_value(value, depth=0)
            if found is not None:
                return found
        for function in callables:
            found = self._carried_callable(function, depth=0)
            if found is not None:
                return found
        return None

    def _carried_value(self, expr: cst.BaseExpression, depth: int) -> _Carried | None:
        semantics = self.semantics
        session = semantics.session_binding(expr)
        if session is not None and session.request_scoped:
            spelled = self.context.module.code_for_node(expr)
            if spelled == session.name:
                return _Carried(session, f"the request's session `{session.name}`")
            return _Carried(
                session, f"`{spelled}` (built around the request's session `{session.name}`)"
            )
        orm = semantics.orm_binding(expr)
        if orm is not None and orm.origin is not None and orm.origin.request_scoped:
            return _Carried(
                orm.origin,
                f"`{orm.name}`, loaded from the request's session `{orm.origin.name}`,",
            )
        if (
            isinstance(expr, cst.Call)
            and depth < 2
            and semantics.qualified_name(expr.func) in PARTIAL
            and expr.args
        ):
            for arg in expr.args[1:]:
                found = self._carried_value(arg.value, depth + 1)
                if found is not None:
                    return found
            return self._carried_callable(expr.args[0].value, depth + 1)
        if isinstance(expr, cst.Lambda):
            return self._carried_callable(expr, depth + 1)
        return None

    def _carried_callable(self, expr: cst.BaseExpression, depth: int) -> _Carried | None:
        """A function run in the background that reaches the session itself."""
        semantics = self.semantics
        function: cst.FunctionDef | cst.Lambda | None = None
        if isinstance(expr, cst.Lambda):
            function = expr
        elif isinstance(expr, cst.Name):
            binding = semantics.lookup(expr.value)
            scope = semantics.function_scope()
            if (
                binding is not None
                and binding.kind is BindingKind.FUNCTION
                and isinstance(binding.node, cst.FunctionDef)
                and scope is not None
                and scope.bindings.get(expr.value) is binding
            ):
                function = binding.node  # defined in this function: a closure
        elif isinstance(expr, cst.Attribute):
            # `session.commit` or `repo.refresh_sync` run as the job.
            found = self._carried_value(expr.value, depth + 1)
            if found is not None:
                return found
        elif isinstance(expr, cst.Call) and depth < 2:
            return self._carried_value(expr, depth + 1)
        if function is None:
            return None
        for session, node in semantics.free_session_uses(function):
            if session.request_scoped:
                spelled = self.context.module.code_for_node(node)
                through = "" if spelled == session.name else f" as `{spelled}`"
                return _Carried(
                    session,
                    f"the request's session `{session.name}` (captured by a closure{through})",
                )
        return None

    def _function_scoped(self, session: Binding) -> bool:
        """The session's dependency is declared `Depends(..., scope="function")`."""
        param = session.node
        if not isinstance(param, cst.Param):
            return False
        call = self._depends_call(param)
        if call is None:
            return False
        for arg in call.args:
            if arg.keyword is not None and arg.keyword.value == "scope":
                value = arg.value
                return isinstance(value, cst.SimpleString) and value.evaluated_value == "function"
        return False

    def _depends_call(self, param: cst.Param) -> cst.Call | None:
        semantics = self.semantics
        if param.default is not None and semantics.is_depends_call(param.default):
            return param.default if isinstance(param.default, cst.Call) else None
        if param.annotation is None:
            return None
        annotation: cst.BaseExpression | None = param.annotation.annotation
        for _ in range(4):
            if isinstance(annotation, cst.Name):
                binding = semantics.lookup(annotation.value)
                annotation = binding.value if binding is not None else None
                continue
            if isinstance(annotation, cst.Subscript):
                for element in annotation.slice[1:]:
                    meta = element.slice
                    if (
                        isinstance(meta, cst.Index)
                        and isinstance(meta.value, cst.Call)
                        and semantics.is_depends_call(meta.value)
                    ):
                        return meta.value
            return None
        return None
