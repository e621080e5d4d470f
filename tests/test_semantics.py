"""The shared semantic model: import resolution, scopes, sessions, factories, endpoints."""

from __future__ import annotations

import textwrap

import libcst as cst

from bot.facts import RepoFacts
from bot.semantics import BindingKind, Semantics
from bot.walker import walk


def model(
    source: str, module: str = "app.routes", facts: RepoFacts | None = None
) -> tuple[Semantics, cst.Module]:
    tree = cst.parse_module(textwrap.dedent(source))
    semantics = Semantics(module, facts or RepoFacts())
    walk(tree, semantics.enter, semantics.leave)
    return semantics, tree


def test_import_aliases_resolve_to_qualified_names() -> None:
    semantics, _ = model(
        """
        import asyncio as aio
        from asyncio import create_task as ct
        import sqlalchemy.ext.asyncio as sa_async
        import os.path
        """
    )
    assert semantics.qualified_name(cst.parse_expression("aio.gather")) == "asyncio.gather"
    assert semantics.qualified_name(cst.parse_expression("ct")) == "asyncio.create_task"
    assert (
        semantics.qualified_name(cst.parse_expression("sa_async.AsyncSession"))
        == "sqlalchemy.ext.asyncio.AsyncSession"
    )
    assert semantics.qualified_name(cst.parse_expression("os.path.join")) == "os.path.join"
    assert semantics.qualified_name(cst.parse_expression("open")) == "builtins.open"
    assert semantics.qualified_name(cst.parse_expression("unknown_name")) is None


def test_relative_imports_resolve_against_the_package() -> None:
    semantics, _ = model(
        "from ..db import async_session\nfrom . import deps\n", module="app.api.routes"
    )
    assert semantics.qualified_name(cst.parse_expression("async_session")) == "app.db.async_session"
    assert semantics.qualified_name(cst.parse_expression("deps")) == "app.api.deps"


def test_factories_sessions_and_aliases() -> None:
    semantics, _ = model(
        """
        from typing import Annotated, TypeAlias
        from fastapi import Depends
        from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
        from sqlalchemy.orm import sessionmaker

        engine = create_async_engine("sqlite+aiosqlite://")
        factory = async_sessionmaker(engine)
        legacy = sessionmaker(engine, class_=AsyncSession)
        sync_factory = sessionmaker(engine)
        SessionDep = Annotated[AsyncSession, Depends(get_session)]
        OtherDep: TypeAlias = Annotated["AsyncSession", Depends(get_session)]
        session = factory()
        """
    )
    kinds = {name: b.kind for name, b in semantics.module_scope.bindings.items()}
    assert kinds["engine"] is BindingKind.ENGINE
    assert kinds["factory"] is BindingKind.FACTORY
    assert kinds["legacy"] is BindingKind.FACTORY
    assert kinds["sync_factory"] is BindingKind.SYNC_FACTORY
    assert kinds["SessionDep"] is BindingKind.SESSION_ALIAS
    assert kinds["OtherDep"] is BindingKind.SESSION_ALIAS
    assert kinds["session"] is BindingKind.SESSION


def test_session_parameters_and_fallback() -> None:
    source = """
        from typing import Annotated, Optional
        from fastapi import Depends
        from sqlalchemy.ext.asyncio import AsyncSession

        async def endpoint(
            a: AsyncSession,
            b: Optional[AsyncSession],
            c: "AsyncSession | None",
            d: Annotated[AsyncSession, Depends(get_db)],
            db=Depends(get_db),
            user_session=Depends(get_db),
            settings=Depends(get_settings),
            session: str = "x",
        ):
            pass
        """
    semantics, tree = model(source)
    function = tree.body[-1]
    scope = semantics.scope_of(function)
    assert scope is not None
    kinds = {name: b.kind for name, b in scope.bindings.items()}
    for name in ("a", "b", "c", "d", "db", "user_session"):
        assert kinds[name] is BindingKind.SESSION, name
    assert kinds["settings"] is BindingKind.PARAM
    assert kinds["session"] is BindingKind.PARAM
    assert scope.bindings["d"].request_scoped and scope.bindings["db"].request_scoped
    assert not scope.bindings["a"].request_scoped


def test_factories_from_other_files_come_from_facts() -> None:
    facts = RepoFacts.build({"src.app.db.SessionLocal"}, {"src.app.deps.SessionDep"})
    semantics, tree = model(
        """
        from app.db import SessionLocal
        from app.deps import SessionDep

        session = SessionLocal()

        async def handler(s: SessionDep):
            pass
        """,
        facts=facts,
    )
    assert semantics.module_scope.bindings["session"].kind is BindingKind.SESSION
    scope = semantics.scope_of(tree.body[-1])
    assert scope is not None and scope.bindings["s"].kind is BindingKind.SESSION


def test_wrappers_and_self_attributes_reach_the_session() -> None:
    semantics, tree = model(
        """
        from sqlalchemy.ext.asyncio import AsyncSession

        class Service:
            def __init__(self, session: AsyncSession) -> None:
                self.session = session

        async def run(session: AsyncSession):
            repo = UserRepository(session)
            total = compute(session)
        """
    )
    service = semantics.scope_of(tree.body[1])
    assert service is not None and "session" in service.session_attributes
    run = semantics.scope_of(tree.body[2])
    assert run is not None
    assert run.bindings["repo"].kind is BindingKind.WRAPPER
    assert run.bindings["repo"].session is run.bindings["session"]
    # A lower-case function's result is not assumed to hold the session.
    assert run.bindings["total"].session is None


def test_nested_functions_are_their_own_scope() -> None:
    semantics, tree = model(
        """
        from sqlalchemy.ext.asyncio import AsyncSession

        async def outer(session: AsyncSession):
            def helper(session):
                return session
            async def job():
                return await session.execute(q)
        """
    )
    outer = tree.body[1]
    assert isinstance(outer, cst.FunctionDef)
    helper, job = outer.body.body[0], outer.body.body[1]
    assert isinstance(helper, cst.FunctionDef) and isinstance(job, cst.FunctionDef)
    assert semantics.free_session_uses(helper) == []
    uses = semantics.free_session_uses(job)
    assert [node.value for _, node in uses if isinstance(node, cst.Name)] == ["session"]


def test_endpoints() -> None:
    _, tree = model(
        """
        @router.get("/a")
        async def a(): ...

        @app.websocket("/ws")
        async def b(ws): ...

        @router.get
        async def c(): ...

        @functools.cache
        def d(): ...
        """
    )
    semantics = Semantics("m", RepoFacts())
    functions = [n for n in tree.body if isinstance(n, cst.FunctionDef)]
    assert [semantics.is_endpoint(f) for f in functions] == [True, True, False, False]
