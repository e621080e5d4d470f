"""General async correctness rules (skill section "Common Issues").

AG901 missing-await, AG902 sync-db-in-async, AG903 blocking-call-in-async, AG904 raw-sql-string.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import libcst as cst

from bot.facts import RepoFacts
from bot.findings import FixSafety, Severity
from bot.fixes import ImportPlan, ensure_from_import, ensure_import
from bot.rule import FixPlan, Invalid, Rule, RuleOptions, Valid
from bot.semantics import (
    ENDPOINT_METHODS,
    SESSION_COROUTINE_METHODS,
    SYNC_SESSION_CLASSES,
    Binding,
    BindingKind,
    Scope,
    ScopeKind,
    Semantics,
    parameters,
)
from bot.walker import iter_children, iter_descendants
from rules._shared import one_line, own_nodes, target_names

SECTION = "Common Issues"

# AsyncEngine / AsyncConnection methods that are coroutines (SQLAlchemy 2.0 and 2.1).
ENGINE_COROUTINE_METHODS = frozenset({"dispose"})
CONNECTION_COROUTINE_METHODS = frozenset(
    {
        "execute", "exec_driver_sql", "scalar", "scalars", "commit", "rollback", "close",
        "run_sync", "invalidate", "start",
    }
)  # fmt: skip
# AsyncSession methods that are NOT coroutines: awaiting their result is a TypeError.
SESSION_PLAIN_METHODS = {
    "add": "NoneType",
    "add_all": "NoneType",
    "expunge": "NoneType",
    "expunge_all": "NoneType",
    "in_transaction": "bool",
    "is_modified": "bool",
}
ASYNCIO_SLEEP = frozenset({"asyncio.sleep", "asyncio.tasks.sleep"})
# Decorators that leave an `async def` a plain coroutine function.
NEUTRAL_DECORATORS = frozenset(
    {
        "builtins.staticmethod",
        "builtins.classmethod",
        "abc.abstractmethod",
        "typing.override",
        "typing_extensions.override",
        "functools.wraps",
    }
)
# Attributes of a coroutine object that are fine to touch (driving or closing it by hand).
COROUTINE_ATTRIBUTES = frozenset({"send", "throw", "close", "cr_frame", "cr_code", "__await__"})

# ---------------------------------------------------------------------- AG902 constants
DRIVER_CONNECT = frozenset({"psycopg2.connect", "sqlite3.connect", "pymysql.connect"})
DRIVER_EXECUTE = frozenset({"execute", "executemany", "executescript"})
SYNC_SESSION_IO = frozenset({"execute", "exec", "scalar", "scalars", "get", "get_one", "query"})
SYNC_CONNECTION_IO = frozenset({"execute", "exec_driver_sql", "scalar", "scalars"})
USE_ASYNC_SESSION = "use AsyncSession or a plain `def`"
USE_ASYNC_DRIVER = "use an async driver (asyncpg, aiosqlite, aiomysql) or a plain `def`"

# ---------------------------------------------------------------------- AG903 constants
HTTP_VERBS = ("get", "post", "put", "patch", "delete", "head", "options", "request")
USE_SLEEP = "use `await asyncio.sleep(...)`"
USE_HTTPX = "use `httpx.AsyncClient`"
USE_THREAD = "run it in `await asyncio.to_thread(...)`"
BLOCKING_FUNCTIONS: dict[str, str] = {
    "time.sleep": USE_SLEEP,
    **{f"requests.{verb}": USE_HTTPX for verb in HTTP_VERBS},
    **{f"requests.api.{verb}": USE_HTTPX for verb in HTTP_VERBS},
    **{f"httpx.{verb}": USE_HTTPX for verb in (*HTTP_VERBS, "stream")},
    "httpx.Client": USE_HTTPX,
    "urllib.request.urlopen": USE_HTTPX,
    "subprocess.run": "use `asyncio.create_subprocess_exec(...)`",
    "subprocess.call": "use `asyncio.create_subprocess_exec(...)`",
    "subprocess.check_output": "use `asyncio.create_subprocess_exec(...)`",
    "subprocess.check_call": "use `asyncio.create_subprocess_exec(...)`",
    "os.system": "use `asyncio.create_subprocess_shell(...)`",
    "builtins.open": "use `aiofiles`/`anyio`, or `await asyncio.to_thread(...)`",
    "hashlib.pbkdf2_hmac": USE_THREAD,
    "hashlib.scrypt": USE_THREAD,
    "bcrypt.hashpw": USE_THREAD,
    "bcrypt.checkpw": USE_THREAD,
}
# Objects whose methods block, by the call that made them: (methods, or None for all; advice).
BLOCKING_OBJECTS: dict[str, tuple[frozenset[str] | None, str]] = {
    "requests.Session": (frozenset({*HTTP_VERBS, "send"}), USE_HTTPX),
    "requests.session": (frozenset({*HTTP_VERBS, "send"}), USE_HTTPX),
    "requests.sessions.Session": (frozenset({*HTTP_VERBS, "send"}), USE_HTTPX),
    "httpx.Client": (frozenset({*HTTP_VERBS, "send", "stream"}), USE_HTTPX),
    "passlib.context.CryptContext": (frozenset({"hash", "verify"}), USE_THREAD),
    "argon2.PasswordHasher": (frozenset({"hash", "verify"}), USE_THREAD),
    "argon2.password_hasher.PasswordHasher": (frozenset({"hash", "verify"}), USE_THREAD),
}
# boto3 clients and resources: every method does network I/O, except these (signing, lazy
# paginators and waiters, closing) and the CamelCase sub-resource constructors (`s3.Bucket(...)`).
BOTO3_ORIGINS = frozenset(
    {
        "boto3.client", "boto3.resource", "boto3.Session.client", "boto3.Session.resource",
        "boto3.session.Session.client", "boto3.session.Session.resource",
    }
)  # fmt: skip
BOTO3_LOCAL_METHODS = frozenset(
    {
        "generate_presigned_url", "generate_presigned_post", "get_paginator", "get_waiter",
        "can_paginate", "close",
    }
)  # fmt: skip
USE_AIOBOTO3 = "use `aioboto3`, or `await asyncio.to_thread(...)`"
# Objects whose creation is already reported: their methods are reported only when the object
# comes from outside the function (one bug, one finding).
REPORTED_AT_CREATION = frozenset({"httpx.Client"})
BLOCKING_MEASURE = "10 concurrent 0.2 s requests took 2.0 s instead of 0.2 s"

# ---------------------------------------------------------------------- AG904 constants
SQL_METHODS = frozenset({"execute", "scalar", "scalars", "stream"})
# What `text()` takes for a bound parameter (SQLAlchemy's own pattern): wrapping a string with
# one of these changes what it means, so that fix is not safe.
BIND_PARAM = re.compile(r"(?<![:\w\\]):\w+(?!:)")

# What `FixPlan.insertions` holds: (node, text, "before" | "after").
Insertions = tuple[tuple[cst.CSTNode, str, str], ...]


# ====================================================================== shared helpers
# Helpers that belong in bot/semantics.py (reported to the lead): which expressions are the
# session itself (not an object built around it), AsyncConnections from `await s.connection()`,
# sync sessions from annotations, and the parent of an expression inside its statement.


def _is_fallback_param(binding: Binding) -> bool:
    """A session known only by its parameter name (`db=Depends(get_db)`, no annotation)."""
    return isinstance(binding.node, cst.Param) and binding.node.annotation is None


def _method_scope(semantics: Semantics) -> Scope | None:
    """The method whose `self` an expression here refers to (also inside nested functions)."""
    function = semantics.function_scope()
    while function is not None and function.enclosing_class() is None:
        parent = function.parent
        function = parent if parent is not None and parent.is_function else None
    return function


def _class_assignments(
    cls: cst.ClassDef, attribute: str
) -> list[tuple[cst.FunctionDef | None, cst.BaseExpression | None, cst.CSTNode]]:
    """(method, value, node) for `self.<attribute> = value` in the class's methods, and the
    class-level `attribute: T` / `attribute = value` (method None)."""
    return _class_attribute_index(cls).get(attribute, [])


@lru_cache(maxsize=64)
def _class_attribute_index(
    cls: cst.ClassDef,
) -> dict[str, list[tuple[cst.FunctionDef | None, cst.BaseExpression | None, cst.CSTNode]]]:
    """Every attribute assignment of a class, by attribute, from one walk of its body."""
    index: dict[
        str, list[tuple[cst.FunctionDef | None, cst.BaseExpression | None, cst.CSTNode]]
    ] = {}
    for statement in cls.body.body:
        if isinstance(statement, cst.SimpleStatementLine):
            for small in statement.body:
                if isinstance(small, cst.AnnAssign):
                    names = [small.target]
                elif isinstance(small, cst.Assign):
                    names = [t.target for t in small.targets]
                else:
                    continue
                for name in names:
                    if isinstance(name, cst.Name):
                        index.setdefault(name.value, []).append((None, small.value, small))
        if not isinstance(statement, cst.FunctionDef):
            continue
        for node in iter_descendants(statement.body):
            value: cst.BaseExpression | None
            if isinstance(node, cst.Assign):
                targets = [t.target for t in node.targets]
                value = node.value
            elif isinstance(node, cst.AnnAssign):
                targets = [node.target]
                value = node.value
            else:
                continue
            for target in targets:
                if (
                    isinstance(target, cst.Attribute)
                    and isinstance(target.value, cst.Name)
                    and target.value.value == "self"
                ):
                    index.setdefault(target.attr.value, []).append((statement, value, node))
    return index


class _Model:
    """Per-file answers the four rules share, computed lazily and cached."""

    def __init__(self, semantics: Semantics, module: cst.Module) -> None:
        self.semantics = semantics
        self.module = module
        self._parents: dict[int, dict[int, cst.CSTNode]] = {}
        self._module_names: dict[str, list[cst.CSTNode]] | None = None
        self._defined: dict[int, frozenset[str]] = {}

    # ---------------------------------------------------------------- parents
    def parents(self, statement: cst.CSTNode) -> dict[int, cst.CSTNode]:
        """Child id -> parent for the expressions that belong to `statement` itself (a compound
        statement's header, not its indented body: those statements are their own)."""
        found = self._parents.get(id(statement))
        if found is None:
            found = {}
            stack = [statement]
            while stack:
                node = stack.pop()
                for child in iter_children(node):
                    if isinstance(child, cst.IndentedBlock):
                        continue
                    found[id(child)] = node
                    stack.append(child)
            self._parents[id(statement)] = found
        return found

    def in_body(self, node: cst.CSTNode, statement: cst.CSTNode | None) -> bool:
        """The node is in the body of the current function (not its decorators or defaults)."""
        scope = self.semantics.function_scope()
        if scope is None or statement is None or statement is not scope.node:
            return True
        function = scope.node
        if not isinstance(function, cst.FunctionDef):
            return True
        body = function.body
        return isinstance(body, cst.SimpleStatementSuite) and any(
            n is node for n in iter_descendants(body)
        )

    # ---------------------------------------------------------------- sessions
    def direct_session(self, expr: cst.BaseExpression) -> Binding | None:
        return self.semantics.direct_session(expr)

    def async_connection(self, expr: cst.BaseExpression) -> Binding | None:
        """An AsyncConnection: semantics' own, or `conn = await session.connection()`."""
        semantics = self.semantics
        known = semantics.connection_binding(expr)
        if known is not None:
            return known
        if isinstance(expr, cst.Name):
            binding = semantics.lookup(expr.value)
            value = binding.value if binding is not None else None
            if (
                binding is not None
                and isinstance(value, cst.Await)
                and isinstance(value.expression, cst.Call)
                and isinstance(value.expression.func, cst.Attribute)
                and value.expression.func.attr.value == "connection"
                and self.direct_session(value.expression.func.value) is not None
            ):
                return binding
        return None

    # ---------------------------------------------------------------- names
    def module_names(self) -> dict[str, list[cst.CSTNode]]:
        """Every binding of each module-level name (definitions, assignments, imports)."""
        if self._module_names is None:
            found: dict[str, list[cst.CSTNode]] = {}
            for name, node in _bound_names(self.module.body):
                found.setdefault(name, []).append(node)
            self._module_names = found
        return self._module_names

    def defined_in(self, function: cst.CSTNode, name: str) -> bool:
        """`name` is a local of `function` (a parameter, a def, an assignment...)."""
        names = self._defined.get(id(function))
        if names is None:
            bound: set[str] = set()
            if isinstance(function, (cst.FunctionDef, cst.Lambda)):
                bound.update(p.name.value for p in parameters(function.params))
            if isinstance(function, cst.FunctionDef):
                bound.update(n for n, _ in _bound_names([function.body]))
            names = self._defined[id(function)] = frozenset(bound)
        return name in names


class _ModelRule(Rule):
    """A rule of this module: it asks the shared per-file `_Model` (`self._model`)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._model = _Model(self.semantics, self.context.module)


def _kind_in(semantics: Semantics, name: str, function: cst.FunctionDef) -> BindingKind | None:
    scope = semantics.scope_of(function)
    if scope is None:
        return None
    binding = scope.bindings.get(name)
    return binding.kind if binding is not None else None


def _bound_names(roots: Sequence[cst.CSTNode]) -> Iterator[tuple[str, cst.CSTNode]]:
    """(name, binding node) for the names that statements bind in their own namespace: nested
    functions and classes bind their name, their bodies are not searched. Only statements are
    walked (an assignment expression is too rare to pay for walking every expression)."""
    stack: list[cst.CSTNode] = list(reversed(list(roots)))
    while stack:
        node = stack.pop()
        if isinstance(node, (cst.FunctionDef, cst.ClassDef)):
            yield node.name.value, node
            continue
        if isinstance(node, cst.Assign):
            for target in node.targets:
                for name in target_names(target.target):
                    yield name, node
        elif isinstance(node, (cst.AnnAssign, cst.AugAssign, cst.For)):
            for name in target_names(node.target):
                yield name, node
        elif isinstance(node, cst.With):
            for item in node.items:
                if item.asname is not None:
                    for name in target_names(item.asname.name):
                        yield name, node
        elif isinstance(node, (cst.Import, cst.ImportFrom)) and not isinstance(
            node.names, cst.ImportStar
        ):
            for alias in node.names:
                if alias.asname is not None:
                    asname = alias.asname.name
                    if isinstance(asname, cst.Name):
                        yield asname.value, node
                else:
                    dotted: cst.BaseExpression = alias.name
                    while isinstance(dotted, cst.Attribute):
                        dotted = dotted.value
                    if isinstance(dotted, cst.Name):
                        yield dotted.value, node
        stack.extend(reversed(_statement_children(node)))


def _statement_children(node: cst.CSTNode) -> list[cst.CSTNode]:
    """The statements (and blocks) directly inside a statement or block."""
    if isinstance(node, (cst.SimpleStatementLine, cst.SimpleStatementSuite, cst.IndentedBlock)):
        return list(node.body)
    children: list[cst.CSTNode] = []
    for field in ("body", "handlers", "orelse", "finalbody", "cases"):
        value = getattr(node, field, None)
        if isinstance(value, cst.CSTNode):
            children.append(value)
        elif isinstance(value, (list, tuple)):
            children.extend(v for v in value if isinstance(v, cst.CSTNode))
    return children


def _is_generator(function: cst.FunctionDef) -> bool:
    return any(isinstance(node, cst.Yield) for node in own_nodes(function.body))


def _call_text(module: cst.Module, call: cst.Call, limit: int = 40) -> str:
    """`s.commit()`, or `s.execute(...)` when the arguments are long."""
    full = one_line(module, call)
    if len(full) <= limit:
        return full
    return f"{one_line(module, call.func)}(...)"


def _string_kind(expr: cst.BaseExpression) -> str | None:
    """ "plain" for a string literal, "formatted" when values are pasted into it, else None."""
    if isinstance(expr, cst.SimpleString):
        return None if "b" in expr.prefix.lower() else "plain"
    if isinstance(expr, cst.FormattedString):
        if "b" in expr.prefix.lower():
            return None
        pasted = any(isinstance(p, cst.FormattedStringExpression) for p in expr.parts)
        return "formatted" if pasted else "plain"
    if isinstance(expr, cst.ConcatenatedString):
        left, right = _string_kind(expr.left), _string_kind(expr.right)
        if left is None or right is None:
            return None
        return "formatted" if "formatted" in (left, right) else "plain"
    if (
        isinstance(expr, cst.Call)
        and isinstance(expr.func, cst.Attribute)
        and expr.func.attr.value == "format"
        and _string_kind(expr.func.value) is not None
    ):
        return "formatted"
    if isinstance(expr, cst.BinaryOperation):
        if isinstance(expr.operator, cst.Modulo) and _string_kind(expr.left) is not None:
            return "formatted"
        if isinstance(expr.operator, cst.Add) and (
            _string_kind(expr.left) is not None or _string_kind(expr.right) is not None
        ):
            return "formatted"
    return None


def _literal_text(expr: cst.BaseExpression) -> str | None:
    if isinstance(expr, (cst.SimpleString, cst.ConcatenatedString)):
        value = expr.evaluated_value
        return value if isinstance(value, str) else None
    return None


# ====================================================================== AG901
@dataclass
class _Pending:
    function: cst.FunctionDef
    name: str
    target: cst.Name
    call: cst.Call
    label: str
    statement: cst.CSTNode | None
    scope: str
    fixable: bool


class MissingAwait(_ModelRule):
    CODE = "AG901"
    NAME = "missing-await"
    SEVERITY = Severity.ERROR
    SECTION = SECTION
    SUMMARY = "A coroutine is called but never awaited, or a plain session method is awaited."
    DOC = """
    ## What it does
    Flags a call that creates a coroutine which is then never awaited:

    * an `AsyncSession` coroutine method (`commit`, `rollback`, `execute`, `scalar`,
      `scalars`, `get`, `get_one`, `flush`, `refresh`, `delete`, `merge`, `close`,
      `connection`, `run_sync`, `stream`, ... as of SQLAlchemy 2.0 and 2.1);
    * `AsyncEngine.dispose()` and the coroutine methods of an `AsyncConnection` (`execute`,
      `exec_driver_sql`, `scalar`, `scalars`, `commit`, `rollback`, `close`, `run_sync`,
      `invalidate`, `start`);
    * `asyncio.sleep(...)`;
    * an `async def` of the same file (or a method of the same class called as `self.m()`).

    The call is reported when it is a statement on its own, a condition (`if not
    check_access(user):`), compared, iterated, used as a context manager, has an attribute read
    from it (`session.execute(q).scalars()`), or is assigned to a name that is never awaited.
    It also flags `await` in front of the session methods that are *not* coroutines: `add`,
    `add_all`, `expunge`, `expunge_all`, `in_transaction`, `is_modified`.

    ## Why is this bad?
    Calling a coroutine function only builds a coroutine object; nothing runs until it is
    awaited. A forgotten `await session.commit()` commits nothing, and Python only prints
    "RuntimeWarning: coroutine 'AsyncSession.commit' was never awaited" when the object is
    garbage-collected. A coroutine object is always truthy, so an un-awaited permission check
    in an `if` never takes the branch it was written for. Awaiting `session.add(...)` fails
    with "TypeError: object NoneType can't be used in 'await' expression".

    ## Example
    ```python
    async def rename(session: AsyncSession, user: User, name: str) -> None:
        user.name = name
        session.commit()


    async def delete_post(post_id: int, user: User) -> None:
        if not can_delete(user, post_id):  # `async def can_delete`
            raise HTTPException(403)
    ```

    ## Use instead
    ```python
    async def rename(session: AsyncSession, user: User, name: str) -> None:
        user.name = name
        await session.commit()


    async def delete_post(post_id: int, user: User) -> None:
        if not await can_delete(user, post_id):
            raise HTTPException(403)
    ```
    Handing the coroutine to something that runs it (`asyncio.gather`, `create_task`,
    `wait_for`, a `TaskGroup`, `asyncio.run`) or returning it is fine.

    ## Fix safety
    Adding `await` to a call that stands alone as a statement inside an `async def` is safe:
    it makes the call do what it was written for. When the coroutine is used as a condition, in
    a comparison, for an attribute or as an iterable, adding `await` changes which branch runs
    or what value flows on, so that fix is unsafe and worth a look. No fix is offered outside
    `async def` (the function has to become async first). Removing `await` in front of a plain
    session method is safe.
    """
    TOKENS = (("async", "Async"),)
    NEEDS = frozenset({"repo-index"})

    VALID = (
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def rename(session: AsyncSession, user, name: str) -> None:
                user.name = name
                await session.commit()
                await session.refresh(user)
            """
        ),
        Valid(
            """
            import asyncio
            from sqlalchemy.ext.asyncio import async_sessionmaker

            factory = async_sessionmaker(engine)

            async def load(query):
                async with factory() as session:
                    return await session.execute(query)

            async def both(q1, q2):
                return await asyncio.gather(load(q1), load(q2))
            """
        ),
        Valid(
            """
            import asyncio

            async def tick() -> None:
                await asyncio.sleep(1)

            async def main() -> None:
                task = asyncio.create_task(tick())
                await asyncio.wait_for(tick(), timeout=5)
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(tick())
                await task

            asyncio.run(main())
            """
        ),
        Valid(
            """
            import asyncio

            async def job() -> None:
                await asyncio.sleep(0)

            loop = asyncio.new_event_loop()
            loop.run_until_complete(job())
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def transfer(session: AsyncSession) -> None:
                async with session.begin():
                    session.add(Entry())
                nested = await session.begin_nested()
                await nested.commit()
                outer = await session.begin()
            """
        ),
        Valid(
            """
            from sqlalchemy import text
            from sqlalchemy.ext.asyncio import create_async_engine

            engine = create_async_engine("postgresql+asyncpg://localhost/app")

            async def ping() -> None:
                async with engine.connect() as conn:
                    await conn.execute(text("select 1"))
                async with engine.begin() as conn:
                    await conn.execute(text("select 1"))
                conn = await engine.connect()
                await conn.close()
                await engine.dispose()
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def query(session: AsyncSession, statement):
                pending = session.execute(statement)
                result = await pending
                return result.scalars().all()
            """
        ),
        Valid(
            """
            # The repository's own `commit` may be a plain method: only the session's are known.
            from sqlalchemy.ext.asyncio import AsyncSession

            async def save(session: AsyncSession, user) -> None:
                repo = UserRepository(session)
                repo.add(user)
                repo.commit()
            """
        ),
        Valid(
            """
            # A sync session: its commit is a plain method.
            from sqlalchemy.orm import Session

            def save(engine, user) -> None:
                with Session(engine) as session:
                    session.add(user)
                    session.commit()
            """
        ),
        Valid(
            """
            from contextlib import asynccontextmanager

            @asynccontextmanager
            async def lifespan(app):
                yield

            async def events():
                yield 1

            async def main(app) -> None:
                async with lifespan(app):
                    async for _ in events():
                        pass
            """
        ),
        Valid(
            """
            from typing import Annotated
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            SessionDep = Annotated[AsyncSession, Depends(get_session)]

            async def schedule(session: SessionDep, background) -> None:
                background.add_task(session.close)
                callback = lambda: session.commit()
                coros = [session.get(User, i) for i in (1, 2)]
                await run_all(coros, callback)
            """
        ),
        Valid(
            """
            # `db` is only known by its name here, and this is a plain def: a sync Session.
            from fastapi import Depends

            @router.post("/items")
            def create_item(item: ItemIn, db=Depends(get_db)):
                db.add(Item(**item.dict()))
                db.commit()
            """
        ),
        Valid(
            """
            # `self.users` is built around the session: its `commit` is the repository's.
            from sqlalchemy.ext.asyncio import AsyncSession

            class SignupService:
                def __init__(self, session: AsyncSession) -> None:
                    self.session = session
                    self.users = UserRepository(session)

                async def signup(self, user) -> None:
                    self.users.add(user)
                    self.users.commit()
                    repo = self.users
                    repo.flush()
                    await self.session.commit()
            """
        ),
        Valid(
            """
            class Service:
                async def _notify(self, user) -> None:
                    ...

                async def run(self, user) -> None:
                    await self._notify(user)
                    return None
            """
        ),
    )
    INVALID = (
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def rename(session: AsyncSession, user, name: str) -> None:
                user.name = name
                session.commit()
            """,
            line=5,
            message="coroutine 'AsyncSession.commit' was never awaited",
            fixed="""
            from sqlalchemy.ext.asyncio import AsyncSession

            async def rename(session: AsyncSession, user, name: str) -> None:
                user.name = name
                await session.commit()
            """,
        ),
        Invalid(
            """
            from fastapi import Depends, HTTPException

            async def can_delete(user, post_id: int) -> bool:
                return user.is_admin

            @router.delete("/posts/{post_id}")
            async def delete_post(post_id: int, user=Depends(current_user)) -> None:
                if not can_delete(user, post_id):
                    raise HTTPException(403)
            """,
            line=8,
            message="always truthy",
            fixed="""
            from fastapi import Depends, HTTPException

            async def can_delete(user, post_id: int) -> bool:
                return user.is_admin

            @router.delete("/posts/{post_id}")
            async def delete_post(post_id: int, user=Depends(current_user)) -> None:
                if not await can_delete(user, post_id):
                    raise HTTPException(403)
            """,
        ),
        Invalid(
            """
            import asyncio as aio

            async def backoff(attempt: int) -> None:
                aio.sleep(2 ** attempt)
            """,
            line=4,
            message="coroutine 'sleep' was never awaited",
            fixed="""
            import asyncio as aio

            async def backoff(attempt: int) -> None:
                await aio.sleep(2 ** attempt)
            """,
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def add_user(session: AsyncSession, user) -> None:
                await session.add(user)
                await session.commit()
            """,
            line=4,
            message="TypeError: object NoneType can't be used in 'await' expression",
            fixed="""
            from sqlalchemy.ext.asyncio import AsyncSession

            async def add_user(session: AsyncSession, user) -> None:
                session.add(user)
                await session.commit()
            """,
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def names(query) -> list[str]:
                async with async_session() as db:
                    rows = db.execute(query).scalars().all()
                return list(rows)
            """,
            line=7,
            message="'coroutine' object has no attribute 'scalars'",
            fixed="""
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)

            async def names(query) -> list[str]:
                async with async_session() as db:
                    rows = (await db.execute(query)).scalars().all()
                return list(rows)
            """,
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            def cleanup(session: AsyncSession, obj) -> None:
                session.delete(obj)
            """,
            line=4,
            message="coroutine 'AsyncSession.delete' was never awaited",
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import create_async_engine

            engine = create_async_engine("postgresql+asyncpg://localhost/app")

            async def shutdown() -> None:
                engine.dispose()
            """,
            line=6,
            message="coroutine 'AsyncEngine.dispose' was never awaited",
        ),
        Invalid(
            """
            from sqlalchemy import text
            from sqlalchemy.ext.asyncio import AsyncEngine

            async def migrate(engine: AsyncEngine) -> None:
                async with engine.begin() as conn:
                    conn.execute(text("vacuum"))
            """,
            line=6,
            message="coroutine 'AsyncConnection.execute' was never awaited",
        ),
        Invalid(
            """
            class AuditService:
                async def record(self, event: str) -> None:
                    ...

                async def handle(self, event: str) -> None:
                    self.record(event)
            """,
            line=6,
            message="coroutine 'AuditService.record' was never awaited",
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def find(session: AsyncSession, user_id: int):
                user = session.get(User, user_id)
                return user.name
            """,
            line=4,
            message="`user`",
        ),
        Invalid(
            """
            from typing import Annotated
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            SessionDep = Annotated[AsyncSession, Depends(get_session)]

            @router.post("/users")
            async def create_user(data: UserIn, session: SessionDep):
                user = User(**data.model_dump())
                session.add(user)

                def audit() -> None:
                    log.info("created")

                session.flush()
                return user
            """,
            line=15,
            message="AsyncSession.flush",
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            class UserRepository:
                def __init__(self, session: AsyncSession) -> None:
                    self.session = session

                async def exists(self, user_id: int) -> bool:
                    if self.session.get(User, user_id) is None:
                        return False
                    return True
            """,
            line=8,
            message="compared",
        ),
        Invalid(
            """
            # SQLAlchemy 2.1: merge_all() is a coroutine too.
            from sqlalchemy.ext.asyncio import AsyncSession as AS

            async def sync_users(db: AS, users) -> None:
                db.merge_all(users)
                await db.commit()
            """,
            line=5,
            message="coroutine 'AsyncSession.merge_all' was never awaited",
            fixed="""
            # SQLAlchemy 2.1: merge_all() is a coroutine too.
            from sqlalchemy.ext.asyncio import AsyncSession as AS

            async def sync_users(db: AS, users) -> None:
                await db.merge_all(users)
                await db.commit()
            """,
        ),
        Invalid(
            """
            from sqlalchemy import func, select
            from sqlalchemy.ext.asyncio import AsyncSession

            async def next_number(session: AsyncSession) -> int:
                return session.scalar(select(func.max(Invoice.number))) + 1
            """,
            line=5,
            message="unsupported operand",
            fixed="""
            from sqlalchemy import func, select
            from sqlalchemy.ext.asyncio import AsyncSession

            async def next_number(session: AsyncSession) -> int:
                return (await session.scalar(select(func.max(Invoice.number)))) + 1
            """,
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def stream_names(session: AsyncSession, query):
                async for row in session.stream(query):
                    yield row.name
            """,
            line=4,
            message="__aiter__",
        ),
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._pending: list[_Pending] = []
        self._awaited_names: dict[int, frozenset[str]] = {}
        self._members: dict[int, dict[str, list[cst.CSTNode]]] = {}

    # ---------------------------------------------------------------- handlers
    def visit_Call(self, node: cst.Call) -> None:
        label = self._coroutine(node)
        from_repository = False
        if label is None:
            label = self._repository_coroutine(node)
            from_repository = True
        if label is None:
            return
        statement = self.context.statement
        if statement is None:
            return
        usage, holder = _usage(node, self._model.parents(statement))
        # A function from another file is known only by its `async def` line: it may be an
        # async generator, so only the uses that are wrong for any async callable count.
        if from_repository and usage not in ("statement", "condition", "compared"):
            return
        async_here = _can_await_here(self.semantics)
        text = _call_text(self.context.module, node)
        never = f"(\"RuntimeWarning: coroutine '{label}' was never awaited\")"
        if usage == "statement":
            direct = isinstance(holder, cst.Expr) and holder.value is node
            safety = FixSafety.SAFE if direct else FixSafety.UNSAFE
            self._report(node, f"`{text}` is never awaited, so it does not run {never}", safety)
        elif usage == "assigned" and isinstance(holder, cst.Assign):
            target = holder.targets[0].target if len(holder.targets) == 1 else None
            if not isinstance(target, cst.Name):
                return
            if target.value == "_":
                self._report(
                    node, f"`{text}` is assigned to `_` and never awaited {never}", FixSafety.UNSAFE
                )
                return
            scope = self.semantics.scope
            if scope.kind is ScopeKind.FUNCTION and isinstance(scope.node, cst.FunctionDef):
                self._pending.append(
                    _Pending(
                        scope.node,
                        target.value,
                        target,
                        node,
                        label,
                        statement,
                        scope.qualname,
                        async_here,
                    )
                )
        elif usage == "condition":
            self._report(
                node,
                f"`{text}` is used as a condition without `await`: a coroutine object is always "
                f"truthy, so the test never sees the real result {never}",
                FixSafety.UNSAFE,
            )
        elif usage == "compared":
            self._report(
                node,
                f"`{text}` is compared without `await`: the coroutine object is never None nor "
                f"equal to a result {never}",
                FixSafety.UNSAFE,
            )
        elif usage == "attribute":
            attribute = holder.attr.value if isinstance(holder, cst.Attribute) else "..."
            self._report(
                node,
                f'`{text}` is not awaited before `.{attribute}` is read ("AttributeError: '
                f"'coroutine' object has no attribute '{attribute}'\")",
                FixSafety.UNSAFE,
                parenthesize=True,
            )
        elif usage == "subscript":
            self._report(
                node,
                f"`{text}` is indexed without `await` (\"TypeError: 'coroutine' object is not "
                'subscriptable")',
                FixSafety.UNSAFE,
                parenthesize=True,
            )
        elif usage == "operand":
            self._report(
                node,
                f"`{text}` is used as an operand without `await`: the operation gets the "
                'coroutine object, not its result (arithmetic fails with "TypeError: '
                'unsupported operand type(s)")',
                FixSafety.UNSAFE,
                parenthesize=True,
            )
        elif usage == "iterated":
            asynchronous = isinstance(holder, (cst.For, cst.CompFor)) and holder.asynchronous
            error = (
                "TypeError: 'async for' requires an object with __aiter__ method, got coroutine"
                if asynchronous
                else "TypeError: 'coroutine' object is not iterable"
            )
            self._report(
                node, f'`{text}` is iterated without `await` ("{error}")', FixSafety.UNSAFE
            )
        elif usage == "context":
            self._report(
                node,
                f'`{text}` is used as a context manager without `await` ("TypeError: '
                "'coroutine' object does not support the asynchronous context manager "
                'protocol")',
                None,
            )

    def visit_Await(self, node: cst.Await) -> None:
        call = node.expression
        if not (isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute)):
            return
        method = call.func.attr.value
        returned = SESSION_PLAIN_METHODS.get(method)
        if returned is None or self._model.direct_session(call.func.value) is None:
            return
        code = self.context.module.code_for_node(call)
        self.report(
            node,
            f"`{_call_text(self.context.module, call)}` is not a coroutine: awaiting it fails "
            f"(\"TypeError: object {returned} can't be used in 'await' expression\"); remove "
            "`await`",
            fix=FixPlan("Remove `await`", FixSafety.SAFE, replacements=((node, code),)),
        )

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        if not self._pending:
            return
        mine = [p for p in self._pending if p.function is node]
        if not mine:
            return
        self._pending = [p for p in self._pending if p.function is not node]
        parents: dict[int, cst.CSTNode] = {}
        for parent in iter_descendants(node):
            for child in iter_children(parent):
                parents[id(child)] = parent
        for pending in mine:
            misuse = self._misuse(node, pending, parents)
            if misuse is None:
                continue
            how = (
                f"its result is used as if awaited (`{pending.name}.{misuse}`)"
                if misuse
                else "it is never awaited"
            )
            text = _call_text(self.context.module, pending.call)
            self._report(
                pending.call,
                f"`{pending.name} = {text}` keeps a coroutine in `{pending.name}` but {how} "
                f"(\"RuntimeWarning: coroutine '{pending.label}' was never awaited\")",
                FixSafety.UNSAFE if pending.fixable else None,
                statement=pending.statement,
                scope=pending.scope,
                fixable=pending.fixable,
            )

    # ---------------------------------------------------------------- helpers
    def _misuse(
        self, function: cst.FunctionDef, pending: _Pending, parents: dict[int, cst.CSTNode]
    ) -> str | None:
        """None when the name is used in a way that may await it; else "" (unused) or the
        attribute read from the coroutine."""
        attribute = ""
        for node in iter_descendants(function.body):
            if not isinstance(node, cst.Name) or node.value != pending.name:
                continue
            if node is pending.target:
                continue
            parent = parents.get(id(node))
            if isinstance(parent, cst.Attribute) and parent.attr is node:
                continue
            if isinstance(parent, cst.Arg) and parent.keyword is node:
                continue
            if isinstance(parent, cst.AssignTarget) and parent.target is node:
                continue
            if isinstance(parent, cst.Attribute) and parent.value is node:
                if parent.attr.value in COROUTINE_ATTRIBUTES:
                    return None
                attribute = attribute or parent.attr.value
                continue
            return None
        return attribute

    def _report(
        self,
        call: cst.Call,
        message: str,
        safety: FixSafety | None,
        *,
        parenthesize: bool = False,
        statement: cst.CSTNode | None = None,
        scope: str | None = None,
        fixable: bool | None = None,
    ) -> None:
        fix = None
        if fixable is None:
            fixable = _can_await_here(self.semantics)
        if safety is not None and fixable:
            fix = FixPlan("Add `await`", safety, insertions=_await_insertions(call, parenthesize))
        self.report(call, message, fix=fix, statement=statement, scope=scope)

    def _coroutine(self, call: cst.Call) -> str | None:
        """The coroutine's name as Python prints it, when `call` certainly makes a coroutine."""
        func = call.func
        model = self._model
        if isinstance(func, cst.Attribute):
            method = func.attr.value
            receiver = func.value
            if method in SESSION_COROUTINE_METHODS:
                session = model.direct_session(receiver)
                if session is not None and self._session_is_async(session, receiver):
                    return f"AsyncSession.{method}"
            if method in CONNECTION_COROUTINE_METHODS and model.async_connection(receiver):
                return f"AsyncConnection.{method}"
            if method in ENGINE_COROUTINE_METHODS and self.semantics.is_async_engine(receiver):
                return f"AsyncEngine.{method}"
            if isinstance(receiver, cst.Name) and receiver.value == "self":
                return self._own_method(method)
        elif isinstance(func, cst.Name):
            return self._local_function(func.value)
        if self.semantics.qualified_name(func) in ASYNCIO_SLEEP:
            return "sleep"
        return None

    def _repository_coroutine(self, call: cst.Call) -> str | None:
        """An undecorated module-level `async def` of another file, reached through an import."""
        func = call.func
        root = func
        while isinstance(root, cst.Attribute):
            root = root.value
        if not isinstance(root, cst.Name):
            return None
        binding = self.semantics.lookup(root.value)
        if binding is None or binding.kind is not BindingKind.IMPORT:
            return None
        qualname = self.semantics.qualified_name(func)
        if qualname is None or not self.semantics.facts.is_async_function(qualname):
            return None
        return qualname.rsplit(".", 1)[-1]

    def _session_is_async(self, session: Binding, receiver: cst.BaseExpression) -> bool:
        """A session known only by its parameter name is trusted inside `async def` when the
        function also awaits something on it (a plain def with `db=Depends(...)` has a sync one)."""
        if not _is_fallback_param(session):
            return True
        function = self.semantics.function_scope()
        if function is None or not function.is_async or not isinstance(receiver, cst.Name):
            return False
        return receiver.value in self._awaited_receivers(function.node)

    def _awaited_receivers(self, function: cst.CSTNode) -> frozenset[str]:
        names = self._awaited_names.get(id(function))
        if names is None:
            found = set()
            for node in iter_descendants(function):
                if (
                    isinstance(node, cst.Await)
                    and isinstance(node.expression, cst.Call)
                    and isinstance(node.expression.func, cst.Attribute)
                    and isinstance(node.expression.func.value, cst.Name)
                    and node.expression.func.attr.value in SESSION_COROUTINE_METHODS
                ):
                    found.add(node.expression.func.value.value)
            names = self._awaited_names[id(function)] = frozenset(found)
        return names

    def _own_method(self, method: str) -> str | None:
        scope = _method_scope(self.semantics)
        cls = scope.enclosing_class() if scope else None
        if cls is None or not isinstance(cls.node, cst.ClassDef):
            return None
        members = self._members.get(id(cls.node))
        if members is None:
            members = {}
            for name, member in _bound_names(cls.node.body.body):
                members.setdefault(name, []).append(member)
            self._members[id(cls.node)] = members
        found = members.get(method, [])
        if (
            len(found) == 1
            and isinstance(found[0], cst.FunctionDef)
            and self._is_coroutine_function(found[0])
        ):
            return f"{cls.node.name.value}.{method}"
        return None

    def _local_function(self, name: str) -> str | None:
        semantics = self.semantics
        binding = semantics.lookup(name)
        module_binding = semantics.module_scope.bindings.get(name)
        if binding is not None and binding is not module_binding:
            # A nested function (or a local that shadows one).
            if (
                binding.kind is BindingKind.FUNCTION
                and isinstance(binding.node, cst.FunctionDef)
                and self._is_coroutine_function(binding.node)
            ):
                return name
            return None
        # Module level: the one and only binding of the name, possibly defined further down,
        # and not a local of an enclosing function bound further down either.
        definitions = self._model.module_names().get(name, [])
        if not (
            len(definitions) == 1
            and isinstance(definitions[0], cst.FunctionDef)
            and self._is_coroutine_function(definitions[0])
        ):
            return None
        scope: Scope | None = semantics.scope
        while scope is not None and scope.kind is not ScopeKind.MODULE:
            if scope.is_function and self._model.defined_in(scope.node, name):
                return None
            scope = scope.parent
        return name

    def _is_coroutine_function(self, function: cst.FunctionDef) -> bool:
        if function.asynchronous is None or _is_generator(function):
            return False
        for decorator in function.decorators:
            expr = decorator.decorator
            if (
                isinstance(expr, cst.Call)
                and isinstance(expr.func, cst.Attribute)
                and expr.func.attr.value in ENDPOINT_METHODS
            ):
                continue
            target = expr.func if isinstance(expr, cst.Call) else expr
            if self.semantics.qualified_name(target) not in NEUTRAL_DECORATORS:
                return False
        return True


def _usage(node: cst.CSTNode, parents: dict[int, cst.CSTNode]) -> tuple[str, cst.CSTNode | None]:
    """How an expression's value is used: (kind, the node that uses it)."""
    current = node
    while True:
        parent = parents.get(id(current))
        if parent is None:
            return "other", None
        if isinstance(parent, cst.IfExp) and current is not parent.test:
            current = parent
            continue
        if isinstance(parent, cst.BooleanOperation) and current is parent.right:
            current = parent
            continue
        if isinstance(parent, cst.Await):
            return "awaited", parent
        if isinstance(parent, cst.Expr):
            return "statement", parent
        if (
            isinstance(parent, (cst.If, cst.While, cst.Assert, cst.IfExp))
            and current is parent.test
        ):
            return "condition", parent
        if isinstance(parent, cst.UnaryOperation) and isinstance(parent.operator, cst.Not):
            return "condition", parent
        if isinstance(parent, (cst.BooleanOperation, cst.CompIf)):
            return "condition", parent
        if isinstance(parent, (cst.Comparison, cst.ComparisonTarget)):
            return "compared", parent
        if isinstance(parent, cst.Attribute) and current is parent.value:
            return "attribute", parent
        if isinstance(parent, cst.Subscript) and current is parent.value:
            return "subscript", parent
        if isinstance(parent, (cst.BinaryOperation, cst.UnaryOperation)):
            return "operand", parent
        if isinstance(parent, (cst.For, cst.CompFor)) and current is parent.iter:
            return "iterated", parent
        if isinstance(parent, cst.WithItem) and current is parent.item:
            return "context", parent
        if isinstance(parent, cst.Assign) and current is parent.value:
            return "assigned", parent
        return "other", parent


def _is_boto3_object(origin: str) -> bool:
    """A boto3 client or resource, or a sub-resource of one (`boto3.resource.Bucket`)."""
    for key in BOTO3_ORIGINS:
        if origin == key:
            return True
        if origin.startswith(key + "."):
            rest = origin[len(key) + 1 :].split(".")
            return all(part[:1].isupper() for part in rest)
    return False


def _can_await_here(semantics: Semantics) -> bool:
    """`await` is allowed here: directly in an `async def` (not a lambda or class body in it)."""
    return semantics.in_async_function() and semantics.scope.kind is ScopeKind.FUNCTION


def _function_name(semantics: Semantics) -> str:
    scope = semantics.function_scope()
    node = scope.node if scope is not None else None
    return node.name.value if isinstance(node, cst.FunctionDef) else "<function>"


def _await_insertions(call: cst.Call, parenthesize: bool) -> Insertions:
    """`await call`, or `(await call)` where the value is used inside an expression."""
    if parenthesize:
        return ((call, "(await ", "before"), (call, ")", "after"))
    return ((call, "await ", "before"),)


def _with_import(insertions: Insertions, plan: ImportPlan) -> Insertions:
    """The fix's insertions, plus the import it needs when that is not there yet."""
    return insertions if plan.insertion is None else (*insertions, plan.insertion)


def _usable_spelling(semantics: Semantics, spelling: str) -> bool:
    """The name a fix writes is not shadowed here by something that is not an import."""
    binding = semantics.lookup(spelling.split(".", 1)[0])
    return binding is None or binding.kind is BindingKind.IMPORT


# ====================================================================== AG902
class SyncDbInAsync(_ModelRule):
    CODE = "AG902"
    NAME = "sync-db-in-async"
    SEVERITY = Severity.ERROR
    SECTION = SECTION
    SUMMARY = "A synchronous database session, engine or driver connection is used in `async def`."
    DOC = """
    ## What it does
    Inside an `async def`, flags each call that creates a synchronous database object and each
    query run on one:

    * a sync SQLAlchemy `Session(...)` (resolved through imports to `sqlalchemy.orm` or
      `sqlmodel`), a session from a sync `sessionmaker(...)`, and `create_engine(...)`;
    * `psycopg2.connect(...)`, `sqlite3.connect(...)` and `pymysql.connect(...)`;
    * `execute` (and `scalar`, `scalars`, `get`, `query`, SQLModel's `exec`) on such a
      session, `execute` on its connections, and `execute` on a driver connection or cursor,
      also when the object comes from module level or a parameter annotated `Session`.

    A project's own async factory that happens to be called `Session` is not a sync session.
    Plain `def` functions are left alone, and so is code handed to `await session.run_sync(fn)`.

    ## Why is this bad?
    A synchronous driver waits for the database on the event loop's thread. While one query
    runs, no other request served by that worker makes progress (measured: 10 concurrent
    requests doing 0.2 s of sync `Session` work took 2.0 s instead of 0.2 s, and a health check
    waited as long). FastAPI runs plain `def` endpoints in a thread pool, which is why the same
    code is fine there.

    ## Example
    ```python
    from sqlalchemy.orm import Session


    @router.get("/users")
    async def list_users() -> list[UserOut]:
        with Session(engine) as session:
            return session.scalars(select(User)).all()
    ```

    ## Use instead
    ```python
    @router.get("/users")
    async def list_users(session: AsyncSession = Depends(get_session)) -> list[UserOut]:
        return (await session.scalars(select(User))).all()
    ```
    or declare the endpoint with a plain `def` so that FastAPI runs it in its thread pool.
    """
    TOKENS = (
        ("async",),
        (
            "Session(", "orm import", "sessionmaker", "create_engine", "sqlmodel", "psycopg2",
            "sqlite3", "pymysql",
        ),
    )  # fmt: skip

    VALID = (
        Valid(
            """
            from sqlalchemy.orm import Session

            @router.get("/users")
            def list_users() -> list[str]:
                with Session(engine) as session:
                    return list(session.scalars(select(User.name)))
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            def count_addresses(session) -> int:
                return len(session.execute(select(Address)).all())

            async def addresses(session: AsyncSession) -> int:
                await session.run_sync(lambda s: s.execute(select(User)).all())
                return await session.run_sync(count_addresses)
            """
        ),
        Valid(
            """
            # A project's async factory that happens to be called `Session`.
            from sqlalchemy.ext.asyncio import async_sessionmaker

            Session = async_sessionmaker(engine)

            async def names() -> list[str]:
                async with Session() as session:
                    return list(await session.scalars(select(User.name)))
            """
        ),
        Valid(
            """
            # Imported from a file we cannot see: its type is unknown.
            from app.db import Session

            async def names():
                with Session() as session:
                    return session.execute(query)
            """
        ),
        Valid(
            """
            import asyncio
            import sqlite3

            def read_all(path: str) -> list[tuple[int]]:
                with sqlite3.connect(path) as conn:
                    return conn.execute("select id from t").fetchall()

            async def handler(path: str):
                conn = await asyncio.to_thread(sqlite3.connect, path)
                return await asyncio.to_thread(read_all, path)
            """
        ),
        Valid(
            """
            from fastapi.concurrency import run_in_threadpool
            from sqlalchemy import create_engine
            from sqlalchemy.orm import sessionmaker

            engine = create_engine("postgresql://localhost/app")
            SessionLocal = sessionmaker(bind=engine)

            def report() -> int:
                with SessionLocal() as db:
                    return db.execute(query).scalar_one()

            async def report_endpoint() -> int:
                return await run_in_threadpool(report)
            """
        ),
        Valid(
            """
            import asyncpg

            async def ping(dsn: str) -> None:
                conn = await asyncpg.connect(dsn)
                await conn.execute("select 1")
            """
        ),
        Valid(
            """
            import sqlite3

            async def job(path: str) -> None:
                def work() -> None:
                    conn = sqlite3.connect(path)
                    conn.execute("vacuum")

                await loop.run_in_executor(None, work)
            """
        ),
        Valid(
            """
            import aiosqlite

            async def job(path: str) -> None:
                async with aiosqlite.connect(path) as db:
                    await db.execute("vacuum")
            """
        ),
    )
    INVALID = (
        Invalid(
            """
            from sqlalchemy.orm import Session

            @router.post("/users")
            async def create_user(data: UserIn) -> None:
                with Session(engine) as session:
                    session.add(User(**data.model_dump()))
                    session.commit()
            """,
            line=5,
            message="block the event loop",
        ),
        Invalid(
            """
            from sqlalchemy.orm import sessionmaker

            SessionLocal = sessionmaker(bind=engine)

            async def rename(user_id: int, name: str) -> None:
                db = SessionLocal()
                db.merge(User(id=user_id, name=name))
                db.commit()
            """,
            line=6,
            message="`SessionLocal()`",
        ),
        Invalid(
            """
            import sqlalchemy as sa

            async def make_engine(url: str):
                engine = sa.create_engine(url)
                return engine
            """,
            line=4,
            message="create_engine",
        ),
        Invalid(
            """
            import sqlite3

            conn = sqlite3.connect("app.db")

            async def count(table: str) -> int:
                return conn.execute("select count(*) from items").fetchone()[0]
            """,
            line=6,
            message="`conn`",
        ),
        Invalid(
            """
            import psycopg2 as pg

            async def health(dsn: str) -> bool:
                conn = pg.connect(dsn)
                return conn.closed == 0
            """,
            line=4,
            message="psycopg2",
        ),
        Invalid(
            """
            from fastapi import Depends
            from sqlalchemy.orm import Session

            @router.get("/users")
            async def list_users(db: Session = Depends(get_db)):
                return db.query(User).all()
            """,
            line=6,
            message="`db`",
        ),
        Invalid(
            """
            from typing import Annotated
            from fastapi import Depends
            from sqlmodel import Session, select

            SessionDep = Annotated[Session, Depends(get_session)]

            @router.get("/heroes")
            async def heroes(session: SessionDep):
                return session.exec(select(Hero)).all()
            """,
            line=9,
            message="`session`",
        ),
        Invalid(
            """
            import pymysql

            db = pymysql.connect(host="localhost")

            async def names() -> list[str]:
                with db.cursor() as cursor:
                    cursor.execute("select name from users")
                    return [row[0] for row in cursor.fetchall()]
            """,
            line=7,
            message="`cursor`",
        ),
        Invalid(
            """
            from sqlalchemy.orm import Session as OrmSession

            async def backfill(engine) -> None:
                def report() -> None:
                    print("done")

                session = OrmSession(engine)
                session.add(Row())
                report()
            """,
            line=7,
            message="synchronous SQLAlchemy session",
        ),
    )

    def visit_Call(self, node: cst.Call) -> None:
        semantics = self.semantics
        if not semantics.in_async_function() or not self._model.in_body(
            node, self.context.statement
        ):
            return
        module = self.context.module
        where = f"in `async def {_function_name(semantics)}`"
        created = self._creation(node)
        if created is not None:
            what, advice = created
            self.report(
                node,
                f"`{_call_text(module, node)}` {what} {where}: its queries block the event loop "
                f"({BLOCKING_MEASURE}); {advice}",
            )
            return
        func = node.func
        if not isinstance(func, cst.Attribute):
            return
        kind = self._sync_object(func.value, 0)
        method = func.attr.value
        methods = {
            "session": SYNC_SESSION_IO,
            "connection": SYNC_CONNECTION_IO,
            "driver": DRIVER_EXECUTE,
            "cursor": DRIVER_EXECUTE,
        }.get(kind or "")
        if methods is None or method not in methods:
            return
        receiver = one_line(module, func.value)
        described = {
            "session": "a synchronous SQLAlchemy session",
            "connection": "a synchronous SQLAlchemy connection",
            "driver": "a blocking driver connection",
            "cursor": "a blocking driver cursor",
        }[kind or ""]
        advice = USE_ASYNC_SESSION if kind in ("session", "connection") else USE_ASYNC_DRIVER
        self.report(
            node,
            f"`{receiver}` is {described}: `.{method}(...)` {where} blocks the event loop "
            f"({BLOCKING_MEASURE}); {advice}",
        )

    def _creation(self, call: cst.Call) -> tuple[str, str] | None:
        """(what the call makes, the advice) for a sync session, engine or connection."""
        semantics = self.semantics
        made = semantics.call_makes(call)
        session = "creates a synchronous SQLAlchemy session"
        if made is BindingKind.SYNC_SESSION:
            return session, USE_ASYNC_SESSION
        if made is BindingKind.SYNC_ENGINE:
            return "creates a synchronous engine", "use `create_async_engine` or a plain `def`"
        if (
            isinstance(call.func, cst.Call)
            and semantics.call_makes(call.func) is BindingKind.SYNC_FACTORY
        ):
            return session, USE_ASYNC_SESSION
        qualname = semantics.qualified_name(call.func)
        if qualname in DRIVER_CONNECT:
            driver = qualname.split(".", 1)[0]
            return f"opens a blocking {driver} connection", USE_ASYNC_DRIVER
        return None

    def _sync_object(self, expr: cst.BaseExpression, depth: int) -> str | None:
        """ "session", "connection", "driver" or "cursor" for a synchronous database object."""
        semantics = self.semantics
        if depth > 3:
            return None
        if isinstance(expr, cst.Name):
            binding = semantics.lookup(expr.value)
            if binding is None:
                return None
            if binding.kind is BindingKind.SYNC_SESSION:
                return "session"
            if isinstance(binding.node, cst.Param):
                annotation = binding.node.annotation
                if annotation is not None and self._sync_session_type(annotation.annotation, 0):
                    return "session"
                return None
            if binding.kind is BindingKind.OTHER and isinstance(binding.value, cst.Call):
                return self._sync_object(binding.value, depth + 1)
            return None
        if not isinstance(expr, cst.Call):
            return None
        made = semantics.call_makes(expr)
        if made is BindingKind.SYNC_SESSION:
            return "session"
        if semantics.qualified_name(expr.func) in DRIVER_CONNECT:
            return "driver"
        func = expr.func
        if isinstance(func, cst.Call) and semantics.call_makes(func) is BindingKind.SYNC_FACTORY:
            return "session"
        if not isinstance(func, cst.Attribute):
            return None
        method = func.attr.value
        if method == "cursor" and self._sync_object(func.value, depth + 1) == "driver":
            return "cursor"
        if isinstance(func.value, cst.Name):
            owner = semantics.lookup(func.value.value)
            if owner is not None:
                if owner.kind is BindingKind.SYNC_ENGINE and method in ("connect", "begin"):
                    return "connection"
                if owner.kind is BindingKind.SYNC_FACTORY and method == "begin":
                    return "session"
        return None

    def _sync_session_type(self, annotation: cst.BaseExpression, depth: int) -> bool:
        """`Session`, `Annotated[Session, ...]`, `Session | None`, an alias of one."""
        semantics = self.semantics
        if depth > 3:
            return False
        if isinstance(annotation, cst.Subscript):
            base = semantics.qualified_name(annotation.value) or ""
            elements = [e.slice.value for e in annotation.slice if isinstance(e.slice, cst.Index)]
            if base.rsplit(".", 1)[-1] == "Annotated" and elements:
                return self._sync_session_type(elements[0], depth + 1)
            if base.rsplit(".", 1)[-1] in ("Optional", "Union"):
                return any(self._sync_session_type(e, depth + 1) for e in elements)
            return False
        if isinstance(annotation, cst.BinaryOperation) and isinstance(
            annotation.operator, cst.BitOr
        ):
            return self._sync_session_type(annotation.left, depth + 1) or self._sync_session_type(
                annotation.right, depth + 1
            )
        if isinstance(annotation, (cst.Name, cst.Attribute)):
            if semantics.qualified_name(annotation) in SYNC_SESSION_CLASSES:
                return True
            if isinstance(annotation, cst.Name):
                binding = semantics.lookup(annotation.value)
                if binding is not None and binding.kind is BindingKind.OTHER and binding.value:
                    return self._sync_session_type(binding.value, depth + 1)
        return False


# ====================================================================== AG903
class BlockingCallInAsync(_ModelRule):
    CODE = "AG903"
    NAME = "blocking-call-in-async"
    SEVERITY = Severity.WARNING
    SECTION = SECTION
    SUMMARY = "A blocking call (sleep, sync HTTP, subprocess, file, boto3, hashing) in `async def`."
    DOC = """
    ## What it does
    Inside an `async def` (not in a plain `def` nested in it), flags calls that block the thread:
    `time.sleep`, `requests` (its functions and `Session` methods), `httpx.Client(...)` and the
    `httpx.get/post/...` functions, `urllib.request.urlopen`, `subprocess.run/call/check_output/
    check_call`, `os.system`, the builtin `open(...)`, every method of a `boto3` client or
    resource, and CPU-heavy password hashing (`hashlib.pbkdf2_hmac`, `hashlib.scrypt`,
    `bcrypt.hashpw/checkpw`, passlib's `CryptContext.hash/verify`, argon2's
    `PasswordHasher.hash/verify`). Calls whose qualified name matches a glob of the
    `blocking-calls` setting are flagged too (also `obj.method()` when `obj` was made by a
    class matching `"app.storage.S3Storage.*"`).

    ## Why is this bad?
    An event loop runs one thing at a time. While a blocking call waits, every other request on
    the worker waits with it, health checks included (measured: 10 concurrent requests that
    each slept 0.2 s with `time.sleep` took 2.0 s in total instead of 0.2 s).

    ## Example
    ```python
    @router.get("/weather")
    async def weather(city: str) -> dict[str, Any]:
        time.sleep(0.5)  # rate limit
        return requests.get(f"https://api.example.com/{city}").json()
    ```

    ## Use instead
    ```python
    @router.get("/weather")
    async def weather(city: str) -> dict[str, Any]:
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient() as client:
            return (await client.get(f"https://api.example.com/{city}")).json()
    ```
    Work that has no async equivalent can run in a thread: `await asyncio.to_thread(fn, ...)`,
    `await run_in_threadpool(fn, ...)` or `loop.run_in_executor(None, fn, ...)`.

    ## Fix safety
    `time.sleep(x)` becomes `await asyncio.sleep(x)` (adding `import asyncio` when needed). When
    the call is a statement on its own the fix is safe: the pause is the same, only the loop is
    free meanwhile. When its value is used, the fix is unsafe.
    """
    TOKENS = (
        ("async",),
        (
            "sleep", "requests", "httpx", "urlopen", "subprocess", "system(", "open(", "pbkdf2",
            "scrypt", "bcrypt", "CryptContext", "PasswordHasher", "boto3",
        ),
    )  # fmt: skip

    @classmethod
    def prefilter(cls, facts: RepoFacts, options: RuleOptions) -> tuple[tuple[str, ...], ...]:
        """The fixed list, plus the literal parts of the configured `blocking-calls` globs."""
        groups = super().prefilter(facts, options)
        extra = []
        for pattern in options.blocking_calls:
            parts = [p for p in pattern.split(".") if p and not any(c in p for c in "*?[")]
            if not parts:
                return groups[:1]  # a pattern with no literal part: nothing to filter on
            extra.append(parts[-1])
        return (groups[0], (*groups[1], *extra))

    VALID = (
        Valid(
            """
            import asyncio

            async def backoff() -> None:
                await asyncio.sleep(1)
            """
        ),
        Valid(
            """
            import httpx

            async def fetch(url: str) -> bytes:
                async with httpx.AsyncClient() as client:
                    response = await client.get(url)
                return response.content
            """
        ),
        Valid(
            """
            import asyncio
            import time

            import requests

            async def slow(url: str):
                await asyncio.to_thread(time.sleep, 1)
                return await asyncio.to_thread(requests.get, url)
            """
        ),
        Valid(
            """
            from fastapi.concurrency import run_in_threadpool
            from passlib.context import CryptContext

            pwd_context = CryptContext(schemes=["bcrypt"])

            async def login(password: str, hashed: str) -> bool:
                return await run_in_threadpool(pwd_context.verify, password, hashed)
            """
        ),
        Valid(
            """
            import asyncio
            import subprocess

            async def build() -> None:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, subprocess.run, ["make"])
                await loop.run_in_executor(None, lambda: subprocess.run(["make", "test"]))
            """
        ),
        Valid(
            """
            import time

            async def outer() -> None:
                def helper() -> None:
                    time.sleep(1)

                await run_in_threadpool(helper)
            """
        ),
        Valid(
            """
            import requests

            @router.get("/proxy")
            def proxy(url: str) -> bytes:
                return requests.get(url).content
            """
        ),
        Valid(
            """
            from aiofiles import open

            async def read(path: str) -> str:
                async with open(path) as handle:
                    return await handle.read()
            """
        ),
        Valid(
            """
            import aioboto3

            async def upload(data: bytes) -> None:
                session = aioboto3.Session()
                async with session.client("s3") as s3:
                    await s3.put_object(Bucket="b", Key="k", Body=data)
            """
        ),
        Valid(
            """
            import boto3

            s3 = boto3.client("s3")

            def upload(data: bytes) -> None:
                s3.put_object(Bucket="b", Key="k", Body=data)
            """
        ),
        Valid(
            """
            # Signing a URL and building a sub-resource do no network I/O.
            import boto3

            class Files:
                def __init__(self) -> None:
                    self.s3 = boto3.client("s3")
                    self.resource = boto3.Session().resource("s3")

                async def link(self, key: str) -> str:
                    bucket = self.resource.Bucket("uploads")
                    return self.s3.generate_presigned_url(
                        "get_object", Params={"Bucket": bucket.name, "Key": key}
                    )
            """
        ),
    )
    INVALID = (
        Invalid(
            """
            import asyncio
            import time

            async def poll() -> None:
                time.sleep(0.5)
                await asyncio.sleep(0)
            """,
            line=5,
            message="blocks the event loop",
            fixed="""
            import asyncio
            import time

            async def poll() -> None:
                await asyncio.sleep(0.5)
                await asyncio.sleep(0)
            """,
        ),
        Invalid(
            '''
            """Polling helpers."""
            from time import sleep as nap

            async def poll(delay: float) -> None:
                nap(delay)
            ''',
            line=5,
            message="10 concurrent 0.2 s requests took 2.0 s instead of 0.2 s",
            fixed='''
            """Polling helpers."""
            from time import sleep as nap
            import asyncio

            async def poll(delay: float) -> None:
                await asyncio.sleep(delay)
            ''',
        ),
        Invalid(
            """
            import requests

            @router.get("/proxy")
            async def proxy(url: str) -> bytes:
                return requests.get(url, timeout=5).content
            """,
            line=5,
            message="httpx.AsyncClient",
        ),
        Invalid(
            """
            import httpx

            async def fetch(url: str) -> bytes:
                with httpx.Client() as client:
                    return client.get(url).content
            """,
            line=4,
            message="httpx.Client",
        ),
        Invalid(
            """
            async def load_template(name: str) -> str:
                with open(f"templates/{name}") as handle:
                    return handle.read()
            """,
            line=2,
            message="open",
        ),
        Invalid(
            """
            import subprocess

            class Builder:
                async def build(self) -> None:
                    subprocess.run(["make"], check=True)
            """,
            line=5,
        ),
        Invalid(
            """
            import boto3

            s3 = boto3.client("s3")

            async def upload(key: str, data: bytes) -> None:
                s3.put_object(Bucket="uploads", Key=key, Body=data)
            """,
            line=6,
            message="`s3.put_object(",
        ),
        Invalid(
            """
            import boto3

            class Files:
                def __init__(self) -> None:
                    self.resource = boto3.Session().resource("s3")

                async def save(self, key: str, path: str) -> None:
                    self.resource.Bucket("uploads").upload_file(path, key)
            """,
            line=8,
            message="aioboto3",
        ),
        Invalid(
            """
            from passlib.context import CryptContext

            pwd_context = CryptContext(schemes=["bcrypt"], deprecated="auto")

            async def login(form: LoginForm, user: User) -> bool:
                return pwd_context.verify(form.password, user.hashed_password)
            """,
            line=6,
            message="to_thread",
        ),
        Invalid(
            """
            import bcrypt

            async def register(password: str) -> bytes:
                def log() -> None:
                    print("hashing")

                log()
                return bcrypt.hashpw(password.encode(), bcrypt.gensalt())
            """,
            line=8,
        ),
        Invalid(
            """
            import time

            async def wait_ready(delay: float) -> None:
                waited = time.sleep(delay)
            """,
            line=4,
            fixed="""
            import time
            import asyncio

            async def wait_ready(delay: float) -> None:
                waited = (await asyncio.sleep(delay))
            """,
        ),
        Invalid(
            """
            import urllib.request

            async def fetch(url: str) -> bytes:
                return urllib.request.urlopen(url).read()
            """,
            line=4,
        ),
        Invalid(
            """
            from argon2 import PasswordHasher

            async def check(password: str, stored: str) -> bool:
                return PasswordHasher().verify(stored, password)
            """,
            line=4,
        ),
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._attribute_origins: dict[tuple[int, str], str | None] = {}

    def visit_Call(self, node: cst.Call) -> None:
        semantics = self.semantics
        if not semantics.in_async_function():
            return
        found = self._blocking(node)
        if found is None or not self._model.in_body(node, self.context.statement):
            return
        qualname, advice = found
        text = _call_text(self.context.module, node)
        fix = self._sleep_fix(node) if qualname == "time.sleep" else None
        self.report(
            node,
            f"`{text}` blocks the event loop inside `async def {_function_name(semantics)}`: "
            f"other requests wait ({BLOCKING_MEASURE}); {advice}",
            fix=fix,
        )

    def _blocking(self, call: cst.Call) -> tuple[str, str] | None:
        """(what is called, the advice) for a blocking call."""
        semantics = self.semantics
        func = call.func
        qualname = semantics.qualified_name(func)
        if qualname in BLOCKING_FUNCTIONS:
            return qualname, BLOCKING_FUNCTIONS[qualname]
        candidates = [qualname] if qualname else []
        if isinstance(func, cst.Attribute):
            origin = self._origin(func.value, 0)
            method = func.attr.value
            known = BLOCKING_OBJECTS.get(origin or "")
            if origin is not None and known is not None:
                methods, advice = known
                if (methods is None or method in methods) and not self._reported_at_creation(
                    origin, func.value
                ):
                    return f"{origin}.{method}", advice
            if (
                origin is not None
                and _is_boto3_object(origin)
                and not method[:1].isupper()
                and method not in BOTO3_LOCAL_METHODS
            ):
                return f"{origin}.{method}", USE_AIOBOTO3
            if origin is not None:
                candidates.append(f"{origin}.{method}")
        patterns = self.context.options.blocking_calls
        for candidate in candidates:
            if any(fnmatch.fnmatchcase(candidate, pattern) for pattern in patterns):
                return candidate, USE_THREAD
        return None

    def _reported_at_creation(self, origin: str, receiver: cst.BaseExpression) -> bool:
        """`with httpx.Client() as c: c.get(...)`: the `Client(...)` in this function is the
        finding; its methods are not reported again."""
        if origin not in REPORTED_AT_CREATION:
            return False
        if isinstance(receiver, cst.Call):
            return True
        if isinstance(receiver, cst.Name):
            scope = self.semantics.function_scope()
            binding = self.semantics.lookup(receiver.value)
            return (
                scope is not None
                and binding is not None
                and scope.bindings.get(receiver.value) is binding
                and not isinstance(binding.node, cst.Param)
            )
        return False

    def _origin(self, expr: cst.BaseExpression, depth: int) -> str | None:
        """The qualified name of what made an object: `boto3.client` for `boto3.client("s3")`,
        `boto3.Session.client` for `boto3.Session().client("s3")`, a parameter's annotation."""
        semantics = self.semantics
        if depth > 6:
            return None
        if isinstance(expr, cst.Call):
            qualname = semantics.qualified_name(expr.func)
            if qualname is not None:
                return qualname
            if isinstance(expr.func, cst.Attribute):
                inner = self._origin(expr.func.value, depth + 1)
                return f"{inner}.{expr.func.attr.value}" if inner else None
            return None
        if isinstance(expr, cst.Name):
            binding = semantics.lookup(expr.value)
            if binding is None:
                return None
            if isinstance(binding.node, cst.Param):
                annotation = binding.node.annotation
                return (
                    semantics.qualified_name(annotation.annotation)
                    if annotation is not None
                    else None
                )
            if binding.kind is BindingKind.OTHER and isinstance(binding.value, cst.Call):
                return self._origin(binding.value, depth + 1)
            return None
        if (
            isinstance(expr, cst.Attribute)
            and isinstance(expr.value, cst.Name)
            and expr.value.value == "self"
        ):
            method = _method_scope(semantics)
            cls = method.enclosing_class() if method else None
            if cls is None or not isinstance(cls.node, cst.ClassDef):
                return None
            key = (id(cls.node), expr.attr.value)
            if key not in self._attribute_origins:
                origins = {
                    self._origin(value, depth + 1) if isinstance(value, cst.Call) else None
                    for _, value, _ in _class_assignments(cls.node, expr.attr.value)
                }
                self._attribute_origins[key] = origins.pop() if len(origins) == 1 else None
            return self._attribute_origins[key]
        return None

    def _sleep_fix(self, call: cst.Call) -> FixPlan | None:
        semantics = self.semantics
        if semantics.scope.kind is not ScopeKind.FUNCTION:  # a class body inside `async def`
            return None
        module = self.context.module
        plan = ensure_import(semantics, module, "asyncio.sleep")
        if not _usable_spelling(semantics, plan.spelling):
            return None
        statement = self.context.statement
        parents = self._model.parents(statement) if statement is not None else {}
        standalone = isinstance(parents.get(id(call)), cst.Expr)
        return FixPlan(
            f"Use `await {plan.spelling}(...)`",
            FixSafety.SAFE if standalone else FixSafety.UNSAFE,
            replacements=((call.func, plan.spelling),),
            insertions=_with_import(_await_insertions(call, not standalone), plan),
        )


# ====================================================================== AG904
class RawSqlString(_ModelRule):
    CODE = "AG904"
    NAME = "raw-sql-string"
    SEVERITY = Severity.ERROR
    SECTION = SECTION
    SUMMARY = "A plain SQL string is passed to an AsyncSession or AsyncConnection query method."
    DOC = """
    ## What it does
    Flags `execute`, `scalar`, `scalars` and `stream` called on an `AsyncSession` or an
    `AsyncConnection` with a string as the statement: a literal, an f-string, a concatenated or
    formatted string, or a name bound to one.

    ## Why is this bad?
    SQLAlchemy 2.x does not accept a bare string as a statement and raises
    "sqlalchemy.exc.ArgumentError: Textual SQL expression 'select 1' should be explicitly
    declared as text('select 1')" at run time. When the string is built with an f-string,
    `.format()`, `%` or `+`, the values are pasted into the SQL, which is an injection risk
    as well.

    ## Example
    ```python
    async def user_count(session: AsyncSession, tenant: str) -> int:
        return await session.scalar(f"select count(*) from users where tenant = '{tenant}'")
    ```

    ## Use instead
    ```python
    from sqlalchemy import text


    async def user_count(session: AsyncSession, tenant: str) -> int:
        return await session.scalar(
            text("select count(*) from users where tenant = :tenant"), {"tenant": tenant}
        )
    ```
    Raw driver connections that take strings (asyncpg's `conn.execute(str)`) and
    `conn.exec_driver_sql(...)` are not affected.

    ## Fix safety
    The fix wraps the string in `text(...)` and adds `from sqlalchemy import text` when needed.
    For a plain literal this is safe. It is unsafe when the string is built from values (the
    injection risk stays: move the values into bound parameters) or when it contains
    `:name`, which `text()` reads as a bound parameter.
    """
    TOKENS = (("execute", "scalar", "stream"),)
    NEEDS = frozenset({"repo-index"})

    VALID = (
        Valid(
            """
            from sqlalchemy import text
            from sqlalchemy.ext.asyncio import AsyncSession

            async def by_tenant(session: AsyncSession, tenant: str):
                return await session.execute(
                    text("select * from users where tenant = :tenant"), {"tenant": tenant}
                )
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncEngine

            async def vacuum(engine: AsyncEngine) -> None:
                async with engine.connect() as conn:
                    await conn.exec_driver_sql("vacuum")
            """
        ),
        Valid(
            """
            import asyncpg

            async def ping(dsn: str) -> None:
                conn = await asyncpg.connect(dsn)
                await conn.execute("select 1")
            """
        ),
        Valid(
            """
            import sqlite3

            def names(path: str) -> list[str]:
                cursor = sqlite3.connect(path).cursor()
                cursor.execute("select name from users")
                return [row[0] for row in cursor.fetchall()]
            """
        ),
        Valid(
            """
            from sqlalchemy import select
            from sqlalchemy.ext.asyncio import AsyncSession

            async def users(session: AsyncSession):
                return (await session.scalars(select(User))).all()
            """
        ),
        Valid(
            """
            # The repository's own `execute` may accept strings.
            from sqlalchemy.ext.asyncio import AsyncSession

            async def run(session: AsyncSession) -> None:
                repo = Repository(session)
                await repo.execute("refresh")
            """
        ),
        Valid(
            """
            # `db` is only known by its name: it may be a `databases.Database`, which takes strings.
            from fastapi import Depends

            async def count(db=Depends(get_db)) -> int:
                return await db.execute("select count(*) from users")
            """
        ),
        Valid(
            """
            import psycopg2

            def names(dsn: str):
                with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
                    cur.execute(f"select name from users limit {10}")
                    return cur.fetchall()
            """
        ),
        Valid(
            """
            import sqlalchemy as sa
            from sqlalchemy.ext.asyncio import AsyncSession

            QUERY = sa.text("select 1")

            async def ping(session: AsyncSession) -> None:
                await session.execute(QUERY)
            """
        ),
    )
    INVALID = (
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def ping(session: AsyncSession) -> None:
                await session.execute("select 1")
            """,
            line=4,
            message="Textual SQL expression 'select 1' should be explicitly declared as text(",
            fixed="""
            from sqlalchemy.ext.asyncio import AsyncSession
            from sqlalchemy import text

            async def ping(session: AsyncSession) -> None:
                await session.execute(text("select 1"))
            """,
        ),
        Invalid(
            """
            from sqlalchemy import text
            from sqlalchemy.ext.asyncio import AsyncSession

            async def by_name(session: AsyncSession, name: str):
                return await session.scalars(f"select id from users where name = '{name}'")
            """,
            line=5,
            message="injection",
            fixed="""
            from sqlalchemy import text
            from sqlalchemy.ext.asyncio import AsyncSession

            async def by_name(session: AsyncSession, name: str):
                return await session.scalars(text(f"select id from users where name = '{name}'"))
            """,
        ),
        Invalid(
            """
            import sqlalchemy as sa
            from sqlalchemy.ext.asyncio import create_async_engine

            engine = create_async_engine("postgresql+asyncpg://localhost/app")

            async def count() -> int:
                async with engine.connect() as conn:
                    return await conn.scalar(
                        "select count(*) "
                        "from users"
                    )
            """,
            line=8,
            fixed="""
            import sqlalchemy as sa
            from sqlalchemy.ext.asyncio import create_async_engine

            engine = create_async_engine("postgresql+asyncpg://localhost/app")

            async def count() -> int:
                async with engine.connect() as conn:
                    return await conn.scalar(
                        sa.text("select count(*) "
                        "from users")
                    )
            """,
        ),
        Invalid(
            """
            from typing import Annotated
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            SessionDep = Annotated[AsyncSession, Depends(get_session)]

            @router.get("/health")
            async def health(session: SessionDep) -> dict[str, bool]:
                query = "select 1"
                await session.execute(query)
                return {"ok": True}
            """,
            line=10,
            message="`session.execute(query)`",
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            class Stats:
                def __init__(self, session: AsyncSession) -> None:
                    self.session = session

                async def since(self, day: str):
                    return await self.session.stream("select * from events where day > '%s'" % day)
            """,
            line=8,
            message="injection",
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def at_noon(session: AsyncSession):
                return await session.execute("select * from slots where at = '12:00'")
            """,
            line=4,
            fixed="""
            from sqlalchemy.ext.asyncio import AsyncSession
            from sqlalchemy import text

            async def at_noon(session: AsyncSession):
                return await session.execute(text("select * from slots where at = '12:00'"))
            """,
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def raw(session: AsyncSession):
                conn = await session.connection()
                return await conn.execute("select 1")
            """,
            line=5,
        ),
    )

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if not isinstance(func, cst.Attribute) or func.attr.value not in SQL_METHODS:
            return
        statement = _statement_argument(node)
        if statement is None:
            return
        kind, literal = self._string(statement)
        if kind is None:
            return
        receiver = func.value
        session = self._model.direct_session(receiver)
        if session is not None and _is_fallback_param(session):
            return
        if session is None and self._model.async_connection(receiver) is None:
            return
        module = self.context.module
        shown = "..."
        if literal is not None:
            shown = repr(literal if len(literal) <= 20 else literal[:20] + "...")
        string = "an SQL string built from values" if kind == "formatted" else "a plain SQL string"
        advice = (
            "use `text(...)` with bound parameters: pasting values into SQL is an injection risk"
            if kind == "formatted"
            else "wrap it in `text(...)`"
        )
        message = (
            f'`{_call_text(module, node, 30)}` gets {string} ("sqlalchemy.exc.ArgumentError: '
            f'Textual SQL expression {shown} should be explicitly declared as text({shown})"); '
            f"{advice}"
        )
        self.report(node, message, fix=self._fix(statement, kind, literal))

    def _string(self, expr: cst.BaseExpression) -> tuple[str | None, str | None]:
        kind = _string_kind(expr)
        if kind is not None:
            return kind, _literal_text(expr)
        if isinstance(expr, cst.Name):
            binding = self.semantics.lookup(expr.value)
            if (
                binding is not None
                and binding.kind is BindingKind.OTHER
                and binding.value is not None
                and not isinstance(binding.node, (cst.For, cst.With, cst.Param))
            ):
                return _string_kind(binding.value), _literal_text(binding.value)
        return None, None

    def _fix(self, statement: cst.BaseExpression, kind: str, literal: str | None) -> FixPlan | None:
        semantics = self.semantics
        plan = ensure_from_import(semantics, self.context.module, "sqlalchemy", "text")
        if not _usable_spelling(semantics, plan.spelling):
            return None
        safe = kind == "plain" and literal is not None and not BIND_PARAM.search(literal)
        wrap = ((statement, f"{plan.spelling}(", "before"), (statement, ")", "after"))
        return FixPlan(
            f"Wrap the string in `{plan.spelling}(...)`",
            FixSafety.SAFE if safe else FixSafety.UNSAFE,
            insertions=_with_import(wrap, plan),
        )


def _statement_argument(call: cst.Call) -> cst.BaseExpression | None:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == "statement":
            return arg.value
    first = call.args[0] if call.args else None
    if first is not None and first.keyword is None and not first.star:
        return first.value
    return None
