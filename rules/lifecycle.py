"""Session lifecycle rules (skill section "Pattern: AsyncSession Lifecycle")."""

from __future__ import annotations

import libcst as cst

from bot.findings import Severity
from bot.rule import SESSION_TOKENS, Invalid, Rule, Valid
from bot.semantics import BindingKind, ScopeKind

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
    TOKENS = (SESSION_TOKENS,)
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
