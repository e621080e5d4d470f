"""Connection pool rules (skill section "Pattern: Connection Pool Management")."""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from bot.findings import Severity
from bot.paths import is_alembic_env, is_test_path
from bot.rule import FileContext, Invalid, Rule, Valid
from bot.semantics import CREATE_ASYNC_ENGINE, Scope, ScopeKind, Semantics
from bot.walker import iter_children, iter_descendants
from rules._shared import (
    assign_targets,
    declares_nonlocal,
    decorator_qualnames,
    name_occurrences,
    own_nodes,
)

SECTION = "Pattern: Connection Pool Management"

NULL_POOL = frozenset(
    {"sqlalchemy.NullPool", "sqlalchemy.pool.NullPool", "sqlalchemy.pool.impl.NullPool"}
)
FIXTURES = frozenset({"pytest.fixture", "pytest_asyncio.fixture", "pytest_asyncio.plugin.fixture"})
CLI_MODULES = ("click.", "typer.", "asyncclick.")
CLI_DECORATOR_ATTRIBUTES = frozenset({"command", "group", "callback"})
# Calls that keep what they are given beyond the function.
STORING_CALLS = frozenset(
    {"append", "add", "extend", "insert", "setdefault", "update", "set", "put", "register"}
)
CACHE_DECORATORS = frozenset({"lru_cache", "cache", "alru_cache", "cached", "cached_property"})


def is_fixture(semantics: Semantics, function: cst.FunctionDef) -> bool:
    """Decorated `@pytest.fixture` / `@pytest_asyncio.fixture` (with or without arguments)."""
    return any(name in FIXTURES for name in decorator_qualnames(semantics, function))


def enclosing_functions(semantics: Semantics) -> Iterator[cst.FunctionDef]:
    """The `def`s around the current node, innermost first."""
    scope: Scope | None = semantics.scope
    while scope is not None:
        if scope.kind is ScopeKind.FUNCTION and isinstance(scope.node, cst.FunctionDef):
            yield scope.node
        scope = scope.parent


# ---------------------------------------------------------------------- AG401
class EnginePerCall(Rule):
    CODE = "AG401"
    NAME = "engine-per-call"
    SEVERITY = Severity.ERROR
    SECTION = SECTION
    SUMMARY = "`create_async_engine(...)` runs on every call of a function: a new pool each time."
    DOC = """
    ## What it does
    Flags `create_async_engine(...)` called inside a function that runs many times: a request
    handler, a dependency, a helper. It leaves alone the places where one engine per process is
    made: module level, the app's `lifespan` (or a function passed as `FastAPI(lifespan=...)`)
    and `@app.on_event("startup")` hooks, functions that return or store the engine for reuse
    (also when cached with `functools.lru_cache`/`cache`), pytest fixtures and test files,
    click/typer commands and code run from `if __name__ == "__main__":` or other module-level
    code. A helper that disposes the engine it made is left alone too. Endpoints and FastAPI
    dependencies run once per request, so for them returning, yielding or disposing the engine
    does not help, unless the function is cached.

    ## Why is this bad?
    An engine owns a connection pool. Creating one per call throws the pool away each time:
    every call pays for new connections (TCP, TLS, authentication), and an engine that is never
    disposed keeps its connections open until garbage collection, so a busy service piles up
    idle connections until the database refuses new ones. At shutdown the leftovers surface as
    `ResourceWarning: unclosed connection`.

    ## Example
    ```python
    @router.get("/users/count")
    async def count_users() -> int:
        engine = create_async_engine(settings.database_url)
        async with engine.connect() as conn:
            return await conn.scalar(select(func.count(User.id)))
    ```

    ## Use instead
    ```python
    engine = create_async_engine(settings.database_url)


    @router.get("/users/count")
    async def count_users() -> int:
        async with engine.connect() as conn:
            return await conn.scalar(select(func.count(User.id)))
    ```
    """
    TOKENS = (("create_async_engine",),)
    NEEDS = frozenset({"repo-index"})  # dependencies used with `Depends` in other files

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
            from contextlib import asynccontextmanager
            from fastapi import FastAPI
            from sqlalchemy.ext.asyncio import create_async_engine

            @asynccontextmanager
            async def lifespan(app: FastAPI):
                engine = create_async_engine(settings.database_url)
                async with engine.begin() as conn:
                    await conn.run_sync(Base.metadata.create_all)
                yield
                await engine.dispose()

            app = FastAPI(lifespan=lifespan)
            """
        ),
        Valid(
            """
            from contextlib import asynccontextmanager
            from fastapi import FastAPI
            from sqlalchemy.ext.asyncio import create_async_engine

            @asynccontextmanager
            async def setup(app: FastAPI):
                engine = create_async_engine(settings.database_url)
                async with engine.connect() as conn:
                    await conn.exec_driver_sql("select 1")
                yield

            app = FastAPI(lifespan=setup)
            """
        ),
        Valid(
            """
            from functools import lru_cache
            from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

            @lru_cache
            def get_engine() -> AsyncEngine:
                return create_async_engine(settings.database_url, pool_pre_ping=True)
            """
        ),
        Valid(
            """
            from fastapi import FastAPI
            from sqlalchemy.ext.asyncio import create_async_engine

            app = FastAPI()

            @app.on_event("startup")
            async def startup() -> None:
                engine = create_async_engine(settings.database_url)
                async with engine.begin() as conn:
                    await conn.run_sync(Base.metadata.create_all)
            """
        ),
        Valid(
            """
            import pytest_asyncio
            from sqlalchemy.ext.asyncio import create_async_engine

            @pytest_asyncio.fixture
            async def schema() -> None:
                engine = create_async_engine("sqlite+aiosqlite://")
                async with engine.begin() as conn:
                    await conn.run_sync(Base.metadata.create_all)
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import create_async_engine

            async def test_count_users() -> None:
                engine = create_async_engine("sqlite+aiosqlite://")
                async with engine.connect() as conn:
                    assert await conn.scalar(query) == 0
            """,
            path="tests/test_users.py",
        ),
        Valid(
            """
            import asyncio
            from sqlalchemy.ext.asyncio import create_async_engine

            async def main() -> None:
                engine = create_async_engine(settings.database_url)
                async with engine.begin() as conn:
                    await conn.run_sync(Base.metadata.create_all)

            if __name__ == "__main__":
                asyncio.run(main())
            """
        ),
        Valid(
            """
            import typer
            from sqlalchemy.ext.asyncio import create_async_engine as make_engine

            cli = typer.Typer()

            @cli.command()
            def reset_db(url: str) -> None:
                engine = make_engine(url)
                asyncio.run(drop_all(engine))
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

            class Database:
                def __init__(self, url: str) -> None:
                    self.engine = create_async_engine(url)
                    self.session_factory = async_sessionmaker(self.engine)
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

            def make_session_factory(url: str):
                engine = create_async_engine(url, pool_size=10)
                return async_sessionmaker(engine, expire_on_commit=False)
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import create_async_engine

            async def backfill(url: str) -> None:
                engine = create_async_engine(url)
                try:
                    async with engine.begin() as conn:
                        await conn.execute(update_query)
                finally:
                    await engine.dispose()
            """
        ),
        Valid(
            """
            # A script: the function runs once, from module-level code.
            import asyncio
            from sqlalchemy.ext.asyncio import create_async_engine

            async def run_migrations() -> None:
                connectable = create_async_engine(settings.database_url)
                async with connectable.connect() as connection:
                    await connection.run_sync(do_run_migrations)

            asyncio.run(run_migrations())
            """,
            path="scripts/migrate.py",
        ),
        Valid(
            """
            import click
            from sqlalchemy.ext.asyncio import create_async_engine

            @click.command()
            @click.option("--url")
            def create_schema(url: str) -> None:
                engine = create_async_engine(url)
                asyncio.run(create_all(engine))
            """
        ),
        Valid(
            """
            from functools import lru_cache
            from typing import Annotated
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

            @lru_cache(maxsize=1)
            def get_engine() -> AsyncEngine:
                return create_async_engine(settings.database_url)

            EngineDep = Annotated[AsyncEngine, Depends(get_engine)]
            """
        ),
    )
    INVALID = (
        Invalid(
            """
            from fastapi import APIRouter
            from sqlalchemy.ext.asyncio import create_async_engine

            router = APIRouter()

            @router.get("/users/count")
            async def count_users() -> int:
                engine = create_async_engine(settings.database_url)
                async with engine.connect() as conn:
                    return await conn.scalar(query)
            """,
            line=8,
            message="`count_users`",
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession
            from sqlalchemy.ext.asyncio import create_async_engine as make_engine

            async def count_users() -> int:
                async with AsyncSession(make_engine(DATABASE_URL)) as session:
                    return await session.scalar(query)
            """,
            line=5,
            message="never disposes it",
        ),
        Invalid(
            """
            import sqlalchemy.ext.asyncio as sa_async

            class UserRepository:
                def __init__(self, url: str) -> None:
                    self.url = url

                async def names(self) -> list[str]:
                    engine = sa_async.create_async_engine(self.url)
                    async with engine.connect() as conn:
                        return list(await conn.scalars(query))
            """,
            line=8,
        ),
        Invalid(
            """
            from fastapi import APIRouter
            from sqlalchemy.ext.asyncio import create_async_engine

            router = APIRouter()

            @router.post("/reports")
            async def build_report() -> dict[str, int]:
                engine = create_async_engine(settings.database_url)
                try:
                    async with engine.connect() as conn:
                        total = await conn.scalar(query)
                finally:
                    await engine.dispose()
                return {"total": total}
            """,
            line=8,
        ),
        Invalid(
            """
            from collections.abc import AsyncIterator
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

            async def get_session() -> AsyncIterator[AsyncSession]:
                engine = create_async_engine(settings.database_url)
                async with async_sessionmaker(engine)() as session:
                    yield session

            @router.get("/users")
            async def users(session: AsyncSession = Depends(get_session)):
                return await session.scalars(query)
            """,
            line=6,
        ),
        Invalid(
            """
            from contextlib import asynccontextmanager
            from sqlalchemy.ext.asyncio import create_async_engine

            @asynccontextmanager
            async def connection():
                engine = create_async_engine(settings.database_url)
                async with engine.connect() as conn:
                    yield conn
            """,
            line=6,
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import create_async_engine

            def make_worker(url: str):
                async def work(job_id: int) -> None:
                    engine = create_async_engine(url)
                    async with engine.begin() as conn:
                        await conn.execute(query, {"id": job_id})

                return work
            """,
            line=5,
        ),
        Invalid(
            """
            from collections.abc import AsyncIterator
            from typing import Annotated
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

            async def get_engine() -> AsyncIterator[AsyncEngine]:
                engine = create_async_engine(settings.database_url)
                yield engine
                await engine.dispose()

            EngineDep = Annotated[AsyncEngine, Depends(get_engine)]
            """,
            line=7,
            message="dispose of it after one use",
        ),
    )

    def __init__(self, context: FileContext) -> None:
        super().__init__(context)
        # Test files and Alembic's env.py (a script run once per migration command).
        self._skip_file = is_test_path(context.path) or is_alembic_env(context.path)
        self._entry_names: set[str] = set()
        self._main_defs: set[int] = set()

    def visit_Module(self, node: cst.Module) -> None:
        if not self._skip_file:
            self._find_entry_points(node)

    def visit_Call(self, node: cst.Call) -> None:
        if self._skip_file:
            return
        if self.semantics.qualified_name(node.func) not in CREATE_ASYNC_ENGINE:
            return
        scope = self.semantics.function_scope()
        if scope is None or scope.kind is not ScopeKind.FUNCTION:
            return  # module or class level, or a lambda (which returns what it makes)
        if not isinstance(scope.node, cst.FunctionDef):
            return
        function = scope.node
        if any(self._runs_once(f) for f in enclosing_functions(self.semantics)):
            return
        # An endpoint or a dependency runs once per request: handing the engine to its caller
        # (FastAPI) or disposing it does not make it one engine per process, unless cached.
        per_request = (
            self.semantics.is_endpoint(function) or self.semantics.is_dependency(function)
        ) and not self._cached(function)
        kept, disposed = self._engine_fate(node, function, hands_out=not per_request)
        if kept or (disposed and not per_request):
            return
        spelled = self.context.module.code_for_node(node.func)
        ending = (
            "only to dispose of it after one use"
            if disposed
            else 'and never disposes it ("ResourceWarning: unclosed connection")'
        )
        self.report(
            node,
            f"`{spelled}(...)` in `{function.name.value}` builds a new connection pool on every "
            f"call {ending}: create one engine at module level or in the lifespan and reuse it",
        )

    # ---------------------------------------------------------------- where engines belong
    def _find_entry_points(self, module: cst.Module) -> None:
        """Functions run once: from `if __name__ == "__main__":` or other module-level code
        (`asyncio.run(main())`), lifespans and startup handlers."""
        for statement in module.body:
            if isinstance(statement, cst.If) and _is_main_guard(statement.test):
                for node in iter_descendants(statement):
                    if isinstance(node, cst.Name):
                        self._entry_names.add(node.value)
                    elif isinstance(node, cst.FunctionDef):
                        self._main_defs.add(id(node))
            elif not isinstance(statement, (cst.FunctionDef, cst.ClassDef)):
                self._entry_names.update(_called_at_import(statement))
        for node in iter_descendants(module):
            if not isinstance(node, cst.Call):
                continue
            for arg in node.args:
                keyword = arg.keyword.value if arg.keyword is not None else None
                if keyword in ("lifespan", "on_startup"):
                    self._entry_names.update(_last_names(arg.value))
            func = node.func
            if (
                isinstance(func, cst.Attribute)
                and func.attr.value == "add_event_handler"
                and len(node.args) >= 2
                and _string_value(node.args[0].value) == "startup"
            ):
                self._entry_names.update(_last_names(node.args[1].value))

    def _runs_once(self, function: cst.FunctionDef) -> bool:
        name = function.name.value
        if (
            "lifespan" in name.lower()
            or name in self._entry_names
            or id(function) in self._main_defs
        ):
            return True
        if is_fixture(self.semantics, function):
            return True
        for decorator in function.decorators:
            expr = decorator.decorator
            args: list[cst.Arg] = []
            if isinstance(expr, cst.Call):
                args = list(expr.args)
                expr = expr.func
            qualname = self.semantics.qualified_name(expr) or ""
            if qualname.startswith(CLI_MODULES):
                return True
            if isinstance(expr, cst.Attribute):
                attribute = expr.attr.value
                if attribute in CLI_DECORATOR_ATTRIBUTES:
                    return True
                if attribute == "on_event" and args and _string_value(args[0].value) == "startup":
                    return True
        return False

    def _cached(self, function: cst.FunctionDef) -> bool:
        """`@functools.lru_cache` / `@cache` (and async or cachetools variants): made once."""
        return any(
            (name or "").rsplit(".", 1)[-1] in CACHE_DECORATORS
            for name in decorator_qualnames(self.semantics, function)
        )

    def _engine_fate(
        self, call: cst.Call, function: cst.FunctionDef, *, hands_out: bool
    ) -> tuple[bool, bool]:
        """(kept beyond the call: returned or yielded when `hands_out`, stored; disposed)."""
        statement = self.context.statement
        small = _small_statement_of(statement, call)
        if small is None:
            return False, False
        path = _path_to(small, call)
        if hands_out and any(isinstance(node, (cst.Return, cst.Yield)) for node in path):
            return True, False
        tracked: set[str] = set()
        if isinstance(small, (cst.Assign, cst.AnnAssign)) and small.value is not None:
            for target in assign_targets(small):
                if not isinstance(target, cst.Name) or self._outlives(target.value, function):
                    return True, False
                tracked.add(target.value)
        elif any(isinstance(node, cst.Call) for node in path[1:-1]):
            return True, False  # handed straight to another call, which may keep it
        if not tracked:
            return False, False
        return self._follow(tracked, function, hands_out)

    def _outlives(self, name: str, function: cst.FunctionDef) -> bool:
        scope = self.semantics.scope_of(function)
        if scope is not None and name in scope.declared_global:
            return True
        return declares_nonlocal(function, name)

    def _follow(
        self, tracked: set[str], function: cst.FunctionDef, hands_out: bool
    ) -> tuple[bool, bool]:
        """Where the names holding the engine (or objects built from it) end up."""
        disposed = False
        for _ in range(4):
            grown = False
            for name, parents in name_occurrences(function.body, set(tracked)):
                parent = parents[-1]
                nested = next(
                    (
                        p
                        for p in parents
                        if isinstance(p, (cst.FunctionDef, cst.Lambda, cst.ClassDef))
                    ),
                    None,
                )
                if nested is not None:
                    scope = self.semantics.scope_of(nested)
                    if scope is None or name.value not in scope.bindings:
                        return True, disposed  # captured by a closure
                    continue
                if isinstance(parent, cst.Attribute) and parent.attr is name:
                    continue
                if isinstance(parent, cst.Arg) and parent.keyword is name:
                    continue
                if isinstance(parent, cst.Attribute) and parent.value is name:
                    if parent.attr.value == "dispose":
                        disposed = True
                    continue  # `engine.connect()`: a use, the engine stays here
                if isinstance(parent, cst.AssignTarget) and parent.target is name:
                    continue
                if hands_out and any(isinstance(p, (cst.Return, cst.Yield)) for p in parents):
                    return True, disposed
                for ancestor in parents:
                    if isinstance(ancestor, cst.Call):
                        func = ancestor.func
                        if isinstance(func, cst.Attribute) and func.attr.value in STORING_CALLS:
                            return True, disposed
                        if isinstance(func, cst.Name) and func.value == "setattr":
                            return True, disposed
                assign = next(
                    (p for p in reversed(parents) if isinstance(p, (cst.Assign, cst.AnnAssign))),
                    None,
                )
                if assign is None:
                    continue
                for target in assign_targets(assign):
                    if not isinstance(target, cst.Name) or self._outlives(target.value, function):
                        return True, disposed
                    if target.value not in tracked:
                        tracked.add(target.value)
                        grown = True
            if not grown:
                break
        return False, disposed


# ---------------------------------------------------------------------- AG402
class NullPoolTradeoff(Rule):
    CODE = "AG402"
    NAME = "nullpool-tradeoff"
    SEVERITY = Severity.INFO
    SECTION = SECTION
    SUMMARY = "`poolclass=NullPool` gives up connection pooling; make sure that is what you need."
    DOC = """
    ## What it does
    Points at `poolclass=NullPool` in a `create_async_engine(...)` call (NullPool imported from
    `sqlalchemy` or `sqlalchemy.pool`, under any alias). Test files, pytest fixtures and
    Alembic's `env.py` are left alone: using NullPool there is the usual, documented idiom.

    ## Why is this bad?
    With NullPool every checkout opens a brand-new database connection and every release closes
    it: measured on loopback, a checkout plus `SELECT 1` took about 20 times longer than with
    the default pool, and more with TLS or a remote database. There is also no ceiling any
    more, so a leak or a burst of traffic reaches the database's own connection limit instead
    of waiting on the pool.

    NullPool is the right tool for one specific problem: one engine used from several event
    loops (a test suite with a loop per test, a worker that calls `asyncio.run` per job), where
    a pooled connection fails with "attached to a different loop". It does not fix PgBouncer's
    `prepared statement "__asyncpg_stmt_..." already exists` errors (unique statement names or
    disabled statement caches do), nor concurrent use of one session.

    ## Example
    ```python
    engine = create_async_engine(settings.database_url, poolclass=NullPool)
    ```

    ## Use instead
    The default pool, sized for the service:
    ```python
    engine = create_async_engine(
        settings.database_url, pool_size=10, max_overflow=5, pool_pre_ping=True
    )
    ```
    Keep NullPool where an engine really crosses event loops, or call `await engine.dispose()`
    before reusing it in a new loop.
    """
    CORRECTION = """
    The skill offers NullPool as the way around "asyncpg + connection reuse" problems. It only
    helps when a single engine is used from more than one event loop. It does not cure
    PgBouncer prepared-statement errors or concurrent use of one session, and since nothing
    caps the number of connections any more, a leak now runs into the database's connection
    limit rather than the pool's.
    """
    TOKENS = (("NullPool",), ("create_async_engine",))

    VALID = (
        Valid(
            """
            from sqlalchemy.ext.asyncio import create_async_engine

            engine = create_async_engine(settings.database_url, pool_size=10, max_overflow=5)
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import create_async_engine
            from sqlalchemy.pool import AsyncAdaptedQueuePool

            engine = create_async_engine(settings.database_url, poolclass=AsyncAdaptedQueuePool)
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import create_async_engine
            from sqlalchemy.pool import NullPool

            engine = create_async_engine("postgresql+asyncpg://localhost/test", poolclass=NullPool)
            """,
            path="tests/conftest.py",
        ),
        Valid(
            """
            import pytest_asyncio
            from sqlalchemy import NullPool
            from sqlalchemy.ext.asyncio import create_async_engine

            @pytest_asyncio.fixture
            async def engine():
                engine = create_async_engine(TEST_DATABASE_URL, poolclass=NullPool)
                yield engine
                await engine.dispose()
            """,
            path="app/testing_support.py",
        ),
        Valid(
            """
            from alembic import context
            from sqlalchemy import pool
            from sqlalchemy.ext.asyncio import async_engine_from_config

            async def run_async_migrations() -> None:
                connectable = async_engine_from_config(
                    config.get_section(config.config_ini_section, {}),
                    prefix="sqlalchemy.",
                    poolclass=pool.NullPool,
                )
                async with connectable.connect() as connection:
                    await connection.run_sync(do_run_migrations)
                await connectable.dispose()
            """,
            path="migrations/env.py",
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import create_async_engine
            from sqlalchemy.pool import NullPool

            async def run_migrations_online() -> None:
                connectable = create_async_engine(settings.database_url, poolclass=NullPool)
                async with connectable.connect() as connection:
                    await connection.run_sync(do_run_migrations)
            """,
            path="src/app/alembic/env.py",
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import create_async_engine

            class NullPool:
                pass

            engine = create_async_engine(settings.database_url, poolclass=NullPool)
            """
        ),
        Valid(
            """
            from sqlalchemy import create_engine
            from sqlalchemy.pool import NullPool

            engine = create_engine(settings.sync_database_url, poolclass=NullPool)
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import create_async_engine
            from sqlalchemy.pool import AsyncAdaptedQueuePool, NullPool

            engine = create_async_engine(
                settings.database_url,
                poolclass=NullPool if settings.testing else AsyncAdaptedQueuePool,
            )
            """
        ),
    )
    INVALID = (
        Invalid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
            from sqlalchemy.pool import NullPool

            engine = create_async_engine(settings.database_url, poolclass=NullPool)
            async_session = async_sessionmaker(engine, expire_on_commit=False)
            """,
            line=4,
            message="`poolclass=NullPool`",
        ),
        Invalid(
            """
            from sqlalchemy import NullPool as NoPool
            from sqlalchemy.ext.asyncio import create_async_engine

            engine = create_async_engine(settings.database_url, poolclass=NoPool)
            """,
            line=4,
            message="20x",
        ),
        Invalid(
            """
            from sqlalchemy import pool
            from sqlalchemy.ext.asyncio import create_async_engine

            engine = create_async_engine(
                settings.database_url,
                echo=False,
                poolclass=pool.NullPool,
            )
            """,
            line=7,
        ),
        Invalid(
            """
            import sqlalchemy
            import sqlalchemy.ext.asyncio as sa_async

            def make_engine(url: str) -> sa_async.AsyncEngine:
                return sa_async.create_async_engine(url, poolclass=sqlalchemy.pool.NullPool)
            """,
            line=5,
        ),
        Invalid(
            """
            from functools import lru_cache
            from sqlalchemy.ext.asyncio import AsyncEngine
            from sqlalchemy.ext.asyncio import create_async_engine as make_engine
            from sqlalchemy.pool import NullPool

            class Database:
                @staticmethod
                @lru_cache
                def engine() -> AsyncEngine:
                    return make_engine(settings.database_url, poolclass=NullPool, echo=True)
            """,
            line=10,
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import create_async_engine
            from sqlalchemy.pool import NullPool

            engine = create_async_engine(settings.database_url, poolclass=NullPool)
            """,
            path="app/migrations_helper.py",
            line=4,
        ),
    )

    def __init__(self, context: FileContext) -> None:
        super().__init__(context)
        path = context.path
        self._skip_file = is_test_path(path) or is_alembic_env(path)

    def visit_Call(self, node: cst.Call) -> None:
        if self._skip_file:
            return
        semantics = self.semantics
        if semantics.qualified_name(node.func) not in CREATE_ASYNC_ENGINE:
            return
        for arg in node.args:
            if arg.keyword is None or arg.keyword.value != "poolclass":
                continue
            if semantics.qualified_name(arg.value) not in NULL_POOL:
                return
            if any(is_fixture(semantics, f) for f in enclosing_functions(semantics)):
                return
            spelled = self.context.module.code_for_node(arg.value)
            self.report(
                arg,
                f"`poolclass={spelled}` opens a new connection per checkout (about 20x slower, "
                "measured) and removes the pool's cap; it only helps an engine used from several "
                'event loops ("attached to a different loop"), not PgBouncer errors',
            )
            return


# ---------------------------------------------------------------------- helpers
def _is_main_guard(test: cst.BaseExpression) -> bool:
    """`__name__ == "__main__"` (either way round)."""
    if not isinstance(test, cst.Comparison) or len(test.comparisons) != 1:
        return False
    comparison = test.comparisons[0]
    if not isinstance(comparison.operator, cst.Equal):
        return False
    sides = [test.left, comparison.comparator]
    names = [s for s in sides if isinstance(s, cst.Name) and s.value == "__name__"]
    strings = [s for s in sides if _string_value(s) == "__main__"]
    return bool(names) and bool(strings)


def _called_at_import(statement: cst.CSTNode) -> set[str]:
    """Functions a module-level statement calls: `main()`, `asyncio.run(main())`, `anyio.run(main)`."""
    names: set[str] = set()
    for node in own_nodes(statement):  # a definition here runs later
        if not isinstance(node, cst.Call):
            continue
        if isinstance(node.func, cst.Name):
            names.add(node.func.value)
        runner = node.func.attr.value if isinstance(node.func, cst.Attribute) else None
        if runner in ("run", "run_until_complete") and node.args:
            first = node.args[0].value
            if isinstance(first, cst.Name):
                names.add(first.value)
    return names


def _string_value(expr: cst.BaseExpression) -> str | None:
    if isinstance(expr, cst.SimpleString):
        value = expr.evaluated_value
        return value if isinstance(value, str) else None
    return None


def _last_names(expr: cst.BaseExpression) -> set[str]:
    """`lifespan`, `app.lifespan`, `[startup, connect]` -> the function names they end in."""
    if isinstance(expr, cst.Name):
        return {expr.value}
    if isinstance(expr, cst.Attribute):
        return {expr.attr.value}
    if isinstance(expr, (cst.List, cst.Tuple)):
        names: set[str] = set()
        for element in expr.elements:
            names |= _last_names(element.value)
        return names
    if isinstance(expr, cst.Call) and expr.args:  # functools.partial(lifespan, ...)
        return _last_names(expr.args[0].value)
    return set()


def _small_statement_of(statement: cst.CSTNode | None, node: cst.CSTNode) -> cst.CSTNode | None:
    """The small statement (`x = ...`, `return ...`) of a simple statement line holding `node`."""
    if not isinstance(statement, (cst.SimpleStatementLine, cst.SimpleStatementSuite)):
        return None
    for small in statement.body:
        if any(n is node for n in iter_descendants(small)):
            return small
    return None


def _path_to(root: cst.CSTNode, target: cst.CSTNode) -> list[cst.CSTNode]:
    """The nodes from `root` down to `target`, both included (empty when not below it)."""
    stack: list[tuple[cst.CSTNode, list[cst.CSTNode]]] = [(root, [root])]
    while stack:
        node, path = stack.pop()
        if node is target:
            return path
        for child in iter_children(node):
            stack.append((child, [*path, child]))
    return []
