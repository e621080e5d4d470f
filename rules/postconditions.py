"""Post-condition rules (skill section "Pattern: Post-Condition Validation").

AG701: a one-row lookup by a request parameter in an endpoint that raises NoResultFound (HTTP 500
instead of 404). AG702: a lookup that may give None, dereferenced before any None check.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import libcst as cst

from bot.findings import Severity
from bot.flow import Condition, FlowNode, ForwardAnalysis, own_expressions
from bot.rule import SESSION_TOKENS, Invalid, Rule, Valid
from bot.semantics import BindingKind, ScopeKind, Semantics, parameters
from bot.walker import iter_children, iter_descendants
from rules._shared import OPAQUE, dotted, is_none, one_line, own_nodes, target_names

SECTION = "Pattern: Post-Condition Validation"

# NoResultFound and the SQLAlchemy classes it derives from: catching or handling any of them
# turns the missing row into something other than an unhandled 500.
NO_RESULT_FAMILY = frozenset({"NoResultFound", "InvalidRequestError", "SQLAlchemyError"})
BROAD_EXCEPTIONS = frozenset({"Exception", "BaseException"})
# SQL aggregate functions: a select of one of them (without GROUP BY) always gives one row.
AGGREGATE_FUNCTIONS = frozenset(
    {
        "count", "sum", "max", "min", "avg", "array_agg", "json_agg", "jsonb_agg",
        "json_object_agg", "jsonb_object_agg", "string_agg", "group_concat", "bool_and",
        "bool_or", "every", "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop",
        "var_samp", "percentile_cont", "percentile_disc", "mode",
    }
)  # fmt: skip
STATEMENT_CONSTRUCTORS = frozenset({"select", "insert", "update", "delete", "text", "union"})
# FastAPI parameter markers that say "this value comes from the request".
REQUEST_MARKERS = frozenset({"Path", "Query", "Body", "Form", "Header", "Cookie", "File"})
# Annotations of parameters FastAPI fills with framework objects, not request values.
FRAMEWORK_PARAMETERS = frozenset(
    {
        "Request", "WebSocket", "HTTPConnection", "Response", "BackgroundTasks", "SecurityScopes",
        "AsyncSession", "Session",
    }
)  # fmt: skip
FRAMEWORK_PARAMETER_NAMES = frozenset(
    {"self", "cls", "request", "response", "websocket", "background_tasks"}
)
# Builtin and standard scalar types of path and query parameters.
SCALAR_TYPES = frozenset(
    {
        "builtins.int", "builtins.str", "builtins.float", "builtins.bool", "builtins.bytes",
        "uuid.UUID", "pydantic.UUID1", "pydantic.UUID3", "pydantic.UUID4", "pydantic.UUID5",
        "pydantic.EmailStr", "pydantic.types.UUID4", "datetime.date", "datetime.datetime",
        "decimal.Decimal", "builtins.list", "typing.List", "typing.Optional", "typing.Union",
    }
)  # fmt: skip
_PATH_PARAMETER = re.compile(r"\{([A-Za-z_]\w*)(?::[^}]*)?\}")


# ---------------------------------------------------------------------- shared helpers
def _last_segment(semantics: Semantics, expr: cst.BaseExpression) -> str | None:
    """The last segment of what `expr` names: `sa.exc.NoResultFound` -> `NoResultFound`."""
    qualname = semantics.qualified_name(expr) or dotted(expr)
    return qualname.rsplit(".", 1)[-1] if qualname else None


def _callee(semantics: Semantics, call: cst.Call) -> str | None:
    """The last segment of a call's callee when it is an import or an unresolved bare name.

    `items.insert(0, x)` on a local object gives None: only names we can place count.
    """
    func = call.func
    qualname = semantics.qualified_name(func)
    if qualname is not None:
        return qualname.rsplit(".", 1)[-1]
    if isinstance(func, cst.Name) and semantics.lookup(func.value) is None:
        return func.value
    return None


def _load_names(root: cst.CSTNode) -> Iterator[cst.Name]:
    """Names read in an expression (not attribute names, not keyword names)."""
    stack: list[cst.CSTNode] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, cst.Name):
            yield node
        elif isinstance(node, (cst.Attribute, cst.Arg)):
            stack.append(node.value)
        elif isinstance(node, cst.Lambda):
            stack.append(node.body)
        else:
            stack.extend(iter_children(node))


class _Assignments:
    """Every value assigned to each local name so far, per function.

    The semantic model keeps only a name's latest binding; `stmt = select(User).where(...)`
    followed by `stmt = stmt.options(...)` needs the earlier value too.
    """

    def __init__(self) -> None:
        self._by_function: dict[int, dict[str, list[cst.BaseExpression]]] = {}

    def record(
        self, semantics: Semantics, target: cst.BaseExpression, value: cst.BaseExpression
    ) -> None:
        scope = semantics.function_scope()
        if scope is not None and isinstance(target, cst.Name):
            names = self._by_function.setdefault(id(scope.node), {})
            names.setdefault(target.value, []).append(value)

    def values(self, semantics: Semantics, name: str) -> list[cst.BaseExpression] | None:
        scope = semantics.function_scope()
        if scope is None:
            return None
        return self._by_function.get(id(scope.node), {}).get(name)


class _AssignmentsRule(Rule):
    """A rule that keeps every assignment of the function being traversed (`self._assignments`);
    `_assigned` is called for each one."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._assignments = _Assignments()

    def visit_Assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            self._assigned(node, target.target, node.value)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if node.value is not None:
            self._assigned(node, node.target, node.value)

    def visit_NamedExpr(self, node: cst.NamedExpr) -> None:
        self._assigned(node, node.target, node.value)

    def _assigned(
        self, node: cst.CSTNode, target: cst.BaseExpression, value: cst.BaseExpression
    ) -> None:
        self._assignments.record(self.semantics, target, value)


def _followed(
    semantics: Semantics, roots: list[cst.BaseExpression], assignments: _Assignments
) -> list[cst.BaseExpression]:
    """The expressions plus the values assigned earlier to the names they read (transitively)."""
    found = list(roots)
    seen: set[int] = {id(r) for r in roots}
    queue = list(roots)
    while queue and len(found) < 64:
        expr = queue.pop()
        for name in _load_names(expr):
            values = assignments.values(semantics, name.value)
            if values is None:
                binding = semantics.lookup(name.value)
                if (
                    binding is None
                    or binding.value is None
                    or binding.kind in (BindingKind.IMPORT, BindingKind.FUNCTION, BindingKind.CLASS)
                ):
                    continue
                values = [binding.value]
            for value in values:
                if id(value) not in seen:
                    seen.add(id(value))
                    found.append(value)
                    queue.append(value)
    return found


def _statement_root(
    semantics: Semantics, expr: cst.BaseExpression, assignments: _Assignments
) -> cst.Call | None:
    """The `select(...)`/`insert(...)`/... call a statement expression is built from.

    Walks down method chains (`select(User).where(...).limit(1)`) and the values assigned
    earlier to local names (`stmt = stmt.where(...)` goes on to the previous `stmt`). None
    when the statement comes from somewhere we cannot see.
    """
    position: dict[str, int] = {}
    seen: set[int] = set()
    current: cst.BaseExpression = expr
    for _ in range(32):
        if isinstance(current, cst.Call):
            if _callee(semantics, current) in STATEMENT_CONSTRUCTORS:
                return current
            if isinstance(current.func, cst.Attribute):
                current = current.func.value
                continue
            return None
        if isinstance(current, cst.Name):
            values = assignments.values(semantics, current.value)
            if values is not None:
                index = position.get(current.value, len(values)) - 1
                if index < 0:
                    return None
                position[current.value] = index
                current = values[index]
                continue
            binding = semantics.lookup(current.value)
            if binding is None or binding.value is None or id(binding) in seen:
                return None
            seen.add(id(binding))
            current = binding.value
            continue
        return None
    return None


def _is_aggregate_column(semantics: Semantics, expr: cst.CSTNode) -> bool:
    """`func.count(...)`, `func.max(...).label("m")`, `exists(...)`, `func.coalesce(func.sum(x), 0)`."""
    for node in iter_descendants(expr):
        if not isinstance(node, cst.Call):
            continue
        parts = (dotted(node.func) or "").split(".")
        if len(parts) >= 2 and "func" in parts[:-1] and parts[-1].lower() in AGGREGATE_FUNCTIONS:
            return True
        if _callee(semantics, node) == "exists" or (
            isinstance(node.func, cst.Attribute) and node.func.attr.value == "exists"
        ):
            return True
    return False


def _always_one_row(
    semantics: Semantics, statement: cst.BaseExpression, assignments: _Assignments
) -> bool:
    """An aggregate select (one row, never "no row") or an INSERT (it makes the row)."""
    root = _statement_root(semantics, statement, assignments)
    if root is None:
        return False
    kind = _callee(semantics, root)
    if kind == "insert":
        return True
    if kind == "select":
        return any(
            arg.keyword is None and _is_aggregate_column(semantics, arg.value) for arg in root.args
        )
    if kind == "text" and root.args:
        text = root.args[0].value
        if isinstance(text, cst.SimpleString):
            sql = text.value.lower()
            return sql.lstrip("rbuf\"' \n").startswith("insert") or any(
                f"{name}(" in sql for name in ("count", "sum", "max", "min", "avg", "exists")
            )
    return False


def _is_select(
    semantics: Semantics, statement: cst.BaseExpression, assignments: _Assignments
) -> bool:
    root = _statement_root(semantics, statement, assignments)
    return root is not None and _callee(semantics, root) == "select"


def _session_call(semantics: Semantics, expr: cst.BaseExpression) -> tuple[str, cst.Call] | None:
    """`await s.method(...)` on a session: (method, call)."""
    if (
        isinstance(expr, cst.Await)
        and isinstance(expr.expression, cst.Call)
        and isinstance(expr.expression.func, cst.Attribute)
        and semantics.session_binding(expr.expression.func.value) is not None
    ):
        return expr.expression.func.attr.value, expr.expression
    return None


def _result_call(semantics: Semantics, expr: cst.BaseExpression) -> cst.Call | None:
    """The session call a Result expression came from.

    `(await s.execute(q))`, `result`, `result.scalars()`, `(await s.scalars(q))`.
    """
    seen: set[int] = set()
    current: cst.BaseExpression = expr
    for _ in range(16):
        session_call = _session_call(semantics, current)
        if session_call is not None:
            method, call = session_call
            return call if method in ("execute", "stream", "scalars", "stream_scalars") else None
        if (
            isinstance(current, cst.Call)
            and isinstance(current.func, cst.Attribute)
            and current.func.attr.value in ("scalars", "unique", "tuples", "mappings")
        ):
            current = current.func.value
            continue
        if isinstance(current, cst.Name):
            binding = semantics.lookup(current.value)
            if binding is None or binding.value is None or id(binding) in seen:
                return None
            if binding.kind not in (BindingKind.RESULT, BindingKind.OTHER):
                return None
            seen.add(id(binding))
            current = binding.value
            continue
        return None
    return None


def _statement_of(call: cst.Call) -> cst.BaseExpression | None:
    for arg in call.args:
        if arg.keyword is None or arg.keyword.value == "statement":
            return arg.value
    return None


def _exception_names(handler_type: cst.BaseExpression | None) -> list[cst.BaseExpression]:
    if handler_type is None:
        return []
    if isinstance(handler_type, cst.Tuple):
        return [e.value for e in handler_type.elements]
    return [handler_type]


# ---------------------------------------------------------------------- AG701
class UnguardedScalarOne(_AssignmentsRule):
    CODE = "AG701"
    NAME = "unguarded-scalar-one"
    SEVERITY = Severity.WARNING
    SECTION = SECTION
    SUMMARY = (
        "An endpoint looks a row up by a request parameter with `scalar_one()`/`one()`/`get_one()`"
        " and nothing turns NoResultFound into a 404."
    )
    DOC = """
    ## What it does
    Flags `.scalar_one()`, `.one()` and `await session.get_one(...)` in a FastAPI endpoint when
    the lookup uses a path or query parameter of the endpoint (directly, or through a statement
    built from it earlier), the call is not inside `try/except NoResultFound` (or one of its
    SQLAlchemy bases, or a broad `except`), and no exception handler for `NoResultFound`,
    `InvalidRequestError` or `SQLAlchemyError` is registered anywhere in the repository.

    ## Why is this bad?
    A client controls the parameter, so "no such row" is an ordinary outcome, not a bug. These
    methods raise `sqlalchemy.exc.NoResultFound: No row was found when one was required` when
    nothing matches; with no handler, FastAPI answers HTTP 500 Internal Server Error instead of
    404, error trackers fill with noise, and clients cannot tell a missing resource from a
    crash. Aggregate queries (`select(func.count(...))`) always return one row and are left alone.

    ## Example
    ```python
    @router.get("/users/{user_id}")
    async def read_user(user_id: int, session: SessionDep) -> UserOut:
        result = await session.execute(select(User).where(User.id == user_id))
        return result.scalar_one()
    ```

    ## Use instead
    ```python
    @router.get("/users/{user_id}")
    async def read_user(user_id: int, session: SessionDep) -> UserOut:
        result = await session.execute(select(User).where(User.id == user_id))
        user = result.scalar_one_or_none()
        if user is None:
            raise HTTPException(status_code=404, detail="User not found")
        return user
    ```
    or register one handler for the whole application:
    ```python
    @app.exception_handler(NoResultFound)
    async def not_found(request: Request, exc: NoResultFound) -> JSONResponse:
        return JSONResponse({"detail": "Not found"}, status_code=404)
    ```
    """
    TOKENS = (("scalar_one(", ".one(", "get_one("), SESSION_TOKENS)
    NEEDS = frozenset({"repo-index"})

    VALID = (
        Valid(
            """
            from fastapi import APIRouter, Depends, HTTPException
            from sqlalchemy import select
            from sqlalchemy.ext.asyncio import AsyncSession

            router = APIRouter()

            @router.get("/users/{user_id}")
            async def read_user(user_id: int, session: AsyncSession = Depends(get_session)):
                result = await session.execute(select(User).where(User.id == user_id))
                user = result.scalar_one_or_none()
                if user is None:
                    raise HTTPException(status_code=404, detail="User not found")
                return user
            """
        ),
        Valid(
            """
            from typing import Annotated
            from fastapi import APIRouter, Depends, HTTPException
            from sqlalchemy.ext.asyncio import AsyncSession

            SessionDep = Annotated[AsyncSession, Depends(get_session)]
            router = APIRouter()

            @router.get("/users/{user_id}")
            async def read_user(user_id: int, session: SessionDep):
                user = await session.get(User, user_id)
                if not user:
                    raise HTTPException(404)
                return user
            """
        ),
        Valid(
            """
            # An aggregate always returns exactly one row.
            from fastapi import APIRouter, Depends
            from sqlalchemy import func, select
            from sqlalchemy.ext.asyncio import AsyncSession

            router = APIRouter()

            @router.get("/orgs/{org_id}/members/count")
            async def count_members(org_id: int, session: AsyncSession = Depends(get_session)):
                stmt = select(func.count(Member.id)).where(Member.org_id == org_id)
                return (await session.execute(stmt)).scalar_one()
            """
        ),
        Valid(
            """
            # Not an endpoint: the caller decides what a missing row means.
            from sqlalchemy import select
            from sqlalchemy.ext.asyncio import AsyncSession

            async def load_user(session: AsyncSession, user_id: int) -> User:
                result = await session.execute(select(User).where(User.id == user_id))
                return result.scalar_one()
            """
        ),
        Valid(
            """
            from fastapi import APIRouter, Depends, HTTPException
            from sqlalchemy import select
            from sqlalchemy.exc import NoResultFound
            from sqlalchemy.ext.asyncio import AsyncSession

            router = APIRouter()

            @router.get("/users/{user_id}")
            async def read_user(user_id: int, session: AsyncSession = Depends(get_session)):
                try:
                    return (await session.execute(select(User).where(User.id == user_id))).scalar_one()
                except NoResultFound:
                    raise HTTPException(status_code=404) from None
            """
        ),
        Valid(
            """
            import sqlalchemy as sa
            from fastapi import FastAPI, Request
            from fastapi.responses import JSONResponse
            from sqlalchemy.ext.asyncio import AsyncSession

            app = FastAPI()

            @app.exception_handler(sa.exc.NoResultFound)
            async def not_found(request: Request, exc: Exception) -> JSONResponse:
                return JSONResponse({"detail": "Not found"}, status_code=404)

            @app.get("/users/{user_id}")
            async def read_user(user_id: int, session: AsyncSession = Depends(get_session)):
                return await session.get_one(User, user_id)
            """
        ),
        Valid(
            """
            from fastapi import FastAPI
            from sqlalchemy.exc import SQLAlchemyError

            app = FastAPI()
            app.add_exception_handler(SQLAlchemyError, database_error_handler)

            @app.get("/users/{user_id}")
            async def read_user(user_id: int, db=Depends(get_db)):
                return (await db.execute(select(User).where(User.id == user_id))).scalar_one()
            """
        ),
        Valid(
            """
            # The lookup does not depend on anything the client sends.
            from fastapi import APIRouter, Depends
            from sqlalchemy import select
            from sqlalchemy.ext.asyncio import AsyncSession

            router = APIRouter()

            @router.get("/settings")
            async def settings(session: AsyncSession = Depends(get_session)):
                result = await session.execute(select(Settings).where(Settings.id == 1))
                return result.scalar_one()
            """
        ),
        Valid(
            """
            # A value injected by a dependency is not a request parameter.
            from typing import Annotated
            from fastapi import APIRouter, Depends
            from sqlalchemy import select
            from sqlalchemy.ext.asyncio import AsyncSession

            router = APIRouter()
            CurrentUser = Annotated[User, Depends(get_current_user)]

            @router.get("/me/profile")
            async def my_profile(user: CurrentUser, session: AsyncSession = Depends(get_session)):
                stmt = select(Profile).where(Profile.user_id == user.id)
                return (await session.execute(stmt)).scalar_one()
            """
        ),
        Valid(
            """
            # INSERT ... RETURNING always gives the row it made.
            from fastapi import APIRouter, Depends
            from sqlalchemy import insert
            from sqlalchemy.ext.asyncio import AsyncSession

            router = APIRouter()

            @router.post("/tags")
            async def create_tag(name: str, session: AsyncSession = Depends(get_session)):
                stmt = insert(Tag).values(name=name).returning(Tag.id)
                tag_id = (await session.execute(stmt)).scalar_one()
                await session.commit()
                return {"id": tag_id}
            """
        ),
        Valid(
            """
            from fastapi import APIRouter, Depends
            from sqlalchemy import select
            from sqlalchemy.ext.asyncio import AsyncSession

            router = APIRouter()

            @router.get("/users/{user_id}")
            async def read_user(user_id: int, session: AsyncSession = Depends(get_session)):
                try:
                    result = await session.execute(select(User).where(User.id == user_id))
                    return result.scalar_one()
                except Exception:
                    logger.exception("lookup failed")
                    raise
            """
        ),
        Valid(
            """
            # A nested helper is not the endpoint.
            from fastapi import APIRouter, Depends
            from sqlalchemy import select
            from sqlalchemy.ext.asyncio import AsyncSession

            router = APIRouter()

            @router.get("/users/{user_id}")
            async def read_user(user_id: int, session: AsyncSession = Depends(get_session)):
                async def load(uid: int):
                    return (await session.execute(select(User).where(User.id == uid))).scalar_one()
                return await safe(load, user_id)
            """
        ),
        Valid(
            """
            from fastapi import FastAPI
            from sqlalchemy.orm.exc import NoResultFound

            app = FastAPI(exception_handlers={NoResultFound: not_found_handler})

            @app.get("/users/{user_id}")
            async def read_user(user_id: int, session: AsyncSession = Depends(get_session)):
                return (await session.scalars(select(User).where(User.id == user_id))).one()
            """
        ),
    )
    INVALID = (
        Invalid(
            """
            from fastapi import APIRouter, Depends
            from sqlalchemy import select
            from sqlalchemy.ext.asyncio import AsyncSession

            router = APIRouter()

            @router.get("/users/{user_id}")
            async def read_user(user_id: int, session: AsyncSession = Depends(get_session)):
                result = await session.execute(select(User).where(User.id == user_id))
                return result.scalar_one()
            """,
            line=10,
            message="`user_id`",
        ),
        Invalid(
            """
            from typing import Annotated
            from fastapi import APIRouter, Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            SessionDep = Annotated[AsyncSession, Depends(get_session)]
            router = APIRouter()

            @router.get("/orders/{order_id}")
            async def read_order(order_id: int, session: SessionDep):
                return await session.get_one(Order, order_id)
            """,
            line=10,
            message="HTTP 500",
        ),
        Invalid(
            """
            import sqlalchemy as sa
            from fastapi import APIRouter, Depends, Query
            from sqlalchemy.ext.asyncio import AsyncSession

            router = APIRouter()

            @router.get("/users/by-email")
            async def by_email(
                email: str = Query(...), db: AsyncSession = Depends(get_session)
            ):
                stmt = sa.select(User).where(User.email == email)
                stmt = stmt.options(selectinload(User.roles))
                result = await db.execute(stmt)
                user = result.scalars().one()
                return {"id": user.id}
            """,
            line=14,
            message="No row was found when one was required",
        ),
        Invalid(
            """
            from fastapi import APIRouter
            from sqlalchemy import select
            from sqlalchemy.ext.asyncio import async_sessionmaker

            async_session = async_sessionmaker(engine)
            router = APIRouter()

            @router.delete("/items/{item_id}")
            async def delete_item(item_id: str):
                async with async_session() as session:
                    item = (await session.scalars(select(Item).filter_by(id=item_id))).one()
                    await session.delete(item)
                    await session.commit()
            """,
            line=11,
        ),
        Invalid(
            """
            from fastapi import APIRouter, Depends
            from sqlalchemy import select
            from sqlalchemy.exc import MultipleResultsFound
            from sqlalchemy.ext.asyncio import AsyncSession

            router = APIRouter()

            @router.get("/users/{user_id}/name")
            async def user_name(user_id: int, session: AsyncSession = Depends(get_session)):
                try:
                    row = (await session.execute(select(User.id, User.name).where(User.id == user_id))).one()
                except MultipleResultsFound:
                    raise HTTPException(409)
                return {"name": row.name}
            """,
            line=11,
            message="`.one()`",
        ),
        Invalid(
            """
            from uuid import UUID
            from fastapi import APIRouter, Depends
            from sqlalchemy import select
            from sqlalchemy.ext.asyncio import AsyncSession

            router = APIRouter()

            @router.get("/orgs/{slug}")
            async def read_org(slug, session: AsyncSession = Depends(get_session)):
                result = await session.execute(select(Org).where(Org.slug == slug.lower()))
                org = result.scalar_one()
                return org
            """,
            line=11,
            message="`slug`",
        ),
        Invalid(
            """
            from typing import Annotated
            from fastapi import APIRouter, Depends, Path
            from sqlalchemy import select
            from sqlalchemy.ext.asyncio import AsyncSession

            type SessionDep = Annotated[AsyncSession, Depends(get_session)]
            router = APIRouter()

            @router.put("/orders/{order_id}/status")
            async def set_status(order_id: Annotated[int, Path(gt=0)], status: str, session: SessionDep):
                order = (
                    await session.execute(select(Order).where(Order.id == order_id).with_for_update())
                ).scalar_one()
                order.status = status
                await session.commit()
            """,
            line=11,
            message="`order_id`",
        ),
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._guarded: set[int] = set()  # ids of nodes inside `try: ... except NoResultFound`
        self._handler_in_file: bool | None = None

    # -- guards ---------------------------------------------------------------------------------
    def visit_Try(self, node: cst.Try) -> None:
        if any(self._catches_no_result(handler.type) for handler in node.handlers):
            self._guarded.update(id(n) for n in iter_descendants(node.body))

    def visit_With(self, node: cst.With) -> None:
        """`with contextlib.suppress(NoResultFound):` also keeps the error from the client."""
        for item in node.items:
            call = item.item
            if (
                isinstance(call, cst.Call)
                and _last_segment(self.semantics, call.func) == "suppress"
                and any(
                    _last_segment(self.semantics, arg.value) in NO_RESULT_FAMILY | BROAD_EXCEPTIONS
                    for arg in call.args
                )
            ):
                self._guarded.update(id(n) for n in iter_descendants(node.body))

    def _catches_no_result(self, handler_type: cst.BaseExpression | None) -> bool:
        if handler_type is None:  # a bare `except:`
            return True
        return any(
            _last_segment(self.semantics, name) in NO_RESULT_FAMILY | BROAD_EXCEPTIONS
            for name in _exception_names(handler_type)
        )

    def _handler_registered(self) -> bool:
        if self.semantics.facts.no_result_handler:
            return True
        if self._handler_in_file is None:
            self._handler_in_file = any(
                isinstance(node, cst.Call) and self._registers_handler(node)
                for node in iter_descendants(self.context.module)
            )
        return self._handler_in_file

    def _registers_handler(self, call: cst.Call) -> bool:
        """`app.exception_handler(NoResultFound)`, `app.add_exception_handler(...)`, and
        `FastAPI(exception_handlers={NoResultFound: ...})`."""
        func = call.func
        if (
            isinstance(func, cst.Attribute)
            and func.attr.value in ("exception_handler", "add_exception_handler")
            and call.args
        ):
            return _last_segment(self.semantics, call.args[0].value) in NO_RESULT_FAMILY
        for arg in call.args:
            if (
                arg.keyword is not None
                and arg.keyword.value == "exception_handlers"
                and isinstance(arg.value, cst.Dict)
            ):
                for element in arg.value.elements:
                    if (
                        isinstance(element, cst.DictElement)
                        and _last_segment(self.semantics, element.key) in NO_RESULT_FAMILY
                    ):
                        return True
        return False

    # -- the check ------------------------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if not isinstance(func, cst.Attribute):
            return
        method = func.attr.value
        if method not in ("scalar_one", "one", "get_one"):
            return
        semantics = self.semantics
        scope = semantics.function_scope()
        if (
            scope is None
            or scope.kind is not ScopeKind.FUNCTION
            or not isinstance(scope.node, cst.FunctionDef)
            or not semantics.is_endpoint(scope.node)
        ):
            return
        if method == "get_one":
            session = semantics.session_binding(func.value)
            if session is None:
                return
            inputs = [arg.value for arg in node.args]
            statement: cst.BaseExpression | None = None
            receiver = one_line(self.context.module, func.value)
            alternative = f"`await {receiver}.get(...)` plus a None check"
        else:
            if node.args:
                return
            source = _result_call(semantics, func.value)
            if source is None:
                return
            inputs = [arg.value for arg in source.args]
            statement = _statement_of(source)
            alternative = f"`{method}_or_none()` plus a None check"
        if id(node) in self._guarded or self._handler_registered():
            return
        if statement is not None and _always_one_row(semantics, statement, self._assignments):
            return
        parameter = self._request_parameter_in(scope.node, inputs)
        if parameter is None:
            return
        self.report(
            node,
            f"`.{method}()` raises NoResultFound when no row matches request parameter "
            f'`{parameter}`: the client gets HTTP 500 ("sqlalchemy.exc.NoResultFound: No row was '
            f'found when one was required"), not 404; use {alternative} and raise '
            "HTTPException(404)",
        )

    def _request_parameter_in(
        self, endpoint: cst.FunctionDef, inputs: list[cst.BaseExpression]
    ) -> str | None:
        requested = self._request_parameters(endpoint)
        if not requested:
            return None
        for expr in _followed(self.semantics, inputs, self._assignments):
            for name in _load_names(expr):
                if name.value in requested:
                    return name.value
        return None

    def _request_parameters(self, endpoint: cst.FunctionDef) -> set[str]:
        """Parameters whose values the client sends: path, query, header, body values."""
        semantics = self.semantics
        path_names = set(_PATH_PARAMETER.findall(_route_path(endpoint)))
        found = set()
        for param in parameters(endpoint.params):
            name = param.name.value
            if semantics.is_request_scoped(param) or _has_marker(semantics, param, "Security"):
                continue
            annotation = param.annotation.annotation if param.annotation is not None else None
            if annotation is not None and (
                semantics.is_session_type(annotation)
                or _annotation_names(semantics, annotation) & FRAMEWORK_PARAMETERS
            ):
                continue
            if name in path_names:
                found.add(name)
            elif annotation is None:
                if name not in FRAMEWORK_PARAMETER_NAMES:
                    found.add(name)
            elif any(_has_marker(semantics, param, m) for m in REQUEST_MARKERS) or _is_scalar(
                semantics, annotation
            ):
                found.add(name)
        return found


def _route_path(endpoint: cst.FunctionDef) -> str:
    for decorator in endpoint.decorators:
        call = decorator.decorator
        if not isinstance(call, cst.Call):
            continue
        for arg in call.args:
            if (arg.keyword is None or arg.keyword.value == "path") and isinstance(
                arg.value, cst.SimpleString
            ):
                evaluated = arg.value.evaluated_value
                return evaluated if isinstance(evaluated, str) else ""
    return ""


def _annotation_names(semantics: Semantics, annotation: cst.BaseExpression) -> set[str]:
    """Last segments of every name in an annotation (`Annotated[Request, ...]` -> Request, ...)."""
    names = set()
    for node in iter_descendants(annotation):
        if isinstance(node, (cst.Name, cst.Attribute)):
            last = _last_segment(semantics, node)
            if last:
                names.add(last)
    return names


def _has_marker(semantics: Semantics, param: cst.Param, marker: str) -> bool:
    """`x: int = Query(...)` or `x: Annotated[int, Query()]` (marker = "Query")."""
    places: list[cst.CSTNode] = []
    if param.default is not None:
        places.append(param.default)
    if param.annotation is not None:
        places.append(param.annotation.annotation)
    for place in places:
        for node in iter_descendants(place):
            if isinstance(node, cst.Call) and _last_segment(semantics, node.func) == marker:
                return True
    return False


def _is_scalar(semantics: Semantics, annotation: cst.BaseExpression) -> bool:
    """int, str, UUID, `int | None`, `Optional[UUID]`, `list[int]`..."""
    if isinstance(annotation, cst.BinaryOperation):
        return all(
            is_none(side) or _is_scalar(semantics, side)
            for side in (annotation.left, annotation.right)
        )
    if isinstance(annotation, cst.Subscript):
        if semantics.qualified_name(annotation.value) not in SCALAR_TYPES:
            return False
        elements = [e.slice.value for e in annotation.slice if isinstance(e.slice, cst.Index)]
        return all(is_none(e) or _is_scalar(semantics, e) for e in elements)
    return semantics.qualified_name(annotation) in SCALAR_TYPES


# ---------------------------------------------------------------------- AG702
@dataclass(frozen=True)
class _Deref:
    node: cst.CSTNode  # the attribute access, subscript or call
    name: str | None  # the variable dereferenced (None: a direct call result)
    origin: cst.BaseExpression | None = None  # for a direct call result: the call
    label: str | None = None  # for `(x := lookup).attr`: the walrus name


@dataclass
class _NodeInfo:
    derefs: list[_Deref] = field(default_factory=list)
    binds: list[tuple[str, int | None]] = field(default_factory=list)  # (name, origin id)
    assertion: cst.BaseExpression | None = None
    bare_call: bool = False


# maybe-None (name, origin id) pairs; names found None (or falsy) by an explicit check.
_Facts = tuple[frozenset[tuple[str, int]], frozenset[str]]
_EMPTY: _Facts = (frozenset(), frozenset())


def _narrow(test: cst.BaseExpression, truth: bool) -> tuple[set[str], set[str]]:
    """(names not None, names possibly None after an explicit check) when `test` is `truth`."""
    if isinstance(test, cst.Name):
        return ({test.value}, set()) if truth else (set(), {test.value})
    if isinstance(test, cst.NamedExpr) and isinstance(test.target, cst.Name):
        return _narrow(test.target, truth)
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        return _narrow(test.expression, not truth)
    if isinstance(test, cst.BooleanOperation):
        is_and = isinstance(test.operator, cst.And)
        left_nonnull, left_none = _narrow(test.left, truth)
        right_nonnull, right_none = _narrow(test.right, truth)
        if is_and == truth:  # `a and b` true, `a or b` false: both sides hold
            return left_nonnull | right_nonnull, left_none | right_none
        return left_nonnull & right_nonnull, left_none | right_none
    if isinstance(test, cst.Comparison) and len(test.comparisons) == 1:
        target = test.comparisons[0]
        left, right = test.left, target.comparator
        subject = right if is_none(left) else left if is_none(right) else None
        if isinstance(subject, cst.NamedExpr):
            subject = subject.target
        if isinstance(subject, cst.Name):
            operator = target.operator
            if isinstance(operator, (cst.Is, cst.Equal)):
                return (set(), {subject.value}) if truth else ({subject.value}, set())
            if isinstance(operator, (cst.IsNot, cst.NotEqual)):
                return ({subject.value}, set()) if truth else (set(), {subject.value})
        return set(), set()
    if (
        isinstance(test, cst.Call)
        and isinstance(test.func, cst.Name)
        and test.func.value in ("isinstance", "bool")
        and test.args
        and truth
    ):
        subject = test.args[0].value
        if isinstance(subject, cst.Name):
            return {subject.value}, set()
    return set(), set()


_COMPREHENSIONS = (cst.ListComp, cst.SetComp, cst.GeneratorExp, cst.DictComp)
_QUIET_CALL_ROOTS = frozenset({"print", "logger", "log", "logging", "structlog", "warnings"})


class UncheckedOptionalResult(_AssignmentsRule):
    CODE = "AG702"
    NAME = "unchecked-optional-result"
    SEVERITY = Severity.WARNING
    SECTION = SECTION
    SUMMARY = "A lookup that returns None for a missing row is dereferenced before a None check."
    DOC = """
    ## What it does
    Flags the first attribute access, subscript or call on the result of `await session.get(...)`,
    `.scalar_one_or_none()`, `.one_or_none()`, `.first()` or `await session.scalar(select(...))`
    when, on some path from the lookup to that use, nothing checked it for `None`: no
    `if x is None: raise/return`, `if not x`, `assert x`, `if x:` around the use, no
    `x is not None and x.attr` or `x.attr if x else ...`. A direct dereference such as
    `(await session.get(User, id)).name` is flagged too. Aggregate queries
    (`select(func.count(...))`) are left alone: they never give None for a count.

    ## Why is this bad?
    These methods return `None` when no row matches, which for a lookup by an id from a request
    is an everyday event. Reading the missing row fails with
    `AttributeError: 'NoneType' object has no attribute ...` (or `TypeError: 'NoneType' object
    is not subscriptable`), which the client sees as HTTP 500 rather than 404 and the logs show
    far from its cause.

    ## Example
    ```python
    async def rename(session: AsyncSession, user_id: int, name: str) -> None:
        user = await session.get(User, user_id)
        user.name = name
        await session.commit()
    ```

    ## Use instead
    ```python
    async def rename(session: AsyncSession, user_id: int, name: str) -> None:
        user = await session.get(User, user_id)
        if user is None:
            raise HTTPException(status_code=404, detail="User not found")
        user.name = name
        await session.commit()
    ```
    """
    TOKENS = (
        SESSION_TOKENS,
        ("get(", "scalar_one_or_none", "one_or_none", "first(", "scalar("),
    )

    VALID = (
        Valid(
            """
            from fastapi import HTTPException
            from sqlalchemy.ext.asyncio import AsyncSession

            async def rename(session: AsyncSession, user_id: int, name: str) -> None:
                user = await session.get(User, user_id)
                if user is None:
                    raise HTTPException(status_code=404)
                user.name = name
                await session.commit()
            """
        ),
        Valid(
            """
            from sqlalchemy import select
            from sqlalchemy.ext.asyncio import AsyncSession

            async def email_of(session: AsyncSession, user_id: int) -> str | None:
                result = await session.execute(select(User).where(User.id == user_id))
                user = result.scalar_one_or_none()
                if not user:
                    return None
                return user.email
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def name_of(session: AsyncSession, user_id: int) -> str:
                user = await session.get(User, user_id)
                assert user is not None, "seeded user"
                return user.name
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def greet(session: AsyncSession, user_id: int) -> str:
                user = await session.get(User, user_id)
                if user:
                    return f"hello {user.name}"
                return "hello stranger"
            """
        ),
        Valid(
            """
            from sqlalchemy import select
            from sqlalchemy.ext.asyncio import AsyncSession

            async def is_admin(session: AsyncSession, user_id: int) -> bool:
                user = (await session.execute(select(User).where(User.id == user_id))).scalars().first()
                return user is not None and user.is_admin
            """
        ),
        Valid(
            """
            from sqlalchemy import func, select
            from sqlalchemy.ext.asyncio import AsyncSession

            async def member_count(session: AsyncSession, org_id: int) -> int:
                total = await session.scalar(select(func.count()).select_from(Member).where(Member.org_id == org_id))
                return total.real
            """
        ),
        Valid(
            """
            from fastapi import APIRouter, Depends, HTTPException
            from sqlalchemy.ext.asyncio import AsyncSession

            router = APIRouter()

            @router.get("/users/{user_id}")
            async def read_user(user_id: int, session: AsyncSession = Depends(get_session)):
                if (user := await session.get(User, user_id)) is None:
                    raise HTTPException(404)
                return {"name": user.name}
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def get_or_create(session: AsyncSession, slug: str) -> Tag:
                tag = await session.get(Tag, slug)
                if tag is None:
                    tag = Tag(slug=slug)
                    session.add(tag)
                tag.uses += 1
                return tag
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def label(session: AsyncSession, user_id: int) -> str:
                user = await session.get(User, user_id)
                return user.name if user else "unknown"
            """
        ),
        Valid(
            """
            # A helper that raises (abort / raise_not_found) is trusted to end the branch.
            from sqlalchemy.ext.asyncio import AsyncSession

            async def show(session: AsyncSession, user_id: int):
                user = await session.get(User, user_id)
                if user is None:
                    abort(404)
                return user.name
            """
        ),
        Valid(
            """
            # The statement behind `scalar()` is not visible here: stay silent.
            from sqlalchemy.ext.asyncio import AsyncSession

            async def latest(session: AsyncSession, query):
                value = await session.scalar(query)
                return value.isoformat()
            """
        ),
        Valid(
            """
            # Not a session: `first()` of an unknown object.
            async def head(items):
                first = items.first()
                return first.name
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def names(session: AsyncSession, ids: list[int]) -> list[str]:
                out = []
                for user_id in ids:
                    user = await session.get(User, user_id)
                    if user is None:
                        continue
                    out.append(user.name)
                return out
            """
        ),
        Valid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def owner_name(session: AsyncSession, org_id: int) -> str | None:
                org = await session.get(Org, org_id)
                if org is None or org.owner is None:
                    return None
                return org.owner.name
            """
        ),
        Valid(
            """
            # The nested function checks its own lookup; the outer one checks before the call.
            from sqlalchemy.ext.asyncio import AsyncSession

            async def sync_all(session: AsyncSession, ids: list[int]) -> None:
                async def one(user_id: int) -> None:
                    user = await session.get(User, user_id)
                    if user is None:
                        return
                    user.synced = True

                owner = await session.get(User, ids[0])
                if owner is None:
                    raise LookupError(ids[0])
                for user_id in ids:
                    await one(user_id)
                owner.synced = True
            """
        ),
    )
    INVALID = (
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def rename(session: AsyncSession, user_id: int, name: str) -> None:
                user = await session.get(User, user_id)
                user.name = name
                await session.commit()
            """,
            line=5,
            related_lines=(4,),
            message="`user`",
        ),
        Invalid(
            """
            from typing import Annotated
            from fastapi import APIRouter, Depends
            from sqlalchemy import select
            from sqlalchemy.ext.asyncio import AsyncSession

            SessionDep = Annotated[AsyncSession, Depends(get_session)]
            router = APIRouter()

            @router.get("/users/{user_id}")
            async def read_user(user_id: int, session: SessionDep):
                result = await session.execute(select(User).where(User.id == user_id))
                user = result.scalar_one_or_none()
                return {"name": user.name, "email": user.email}
            """,
            line=13,
            related_lines=(12,),
            message="AttributeError: 'NoneType' object has no attribute 'name'",
        ),
        Invalid(
            """
            from sqlalchemy import select
            from sqlalchemy.ext.asyncio import AsyncSession

            async def first_row(session: AsyncSession, org_id: int):
                row = (await session.execute(select(Org.id, Org.name).where(Org.id == org_id))).first()
                return row[1]
            """,
            line=6,
            message="not subscriptable",
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def greet(session: AsyncSession, user_id: int) -> str:
                user = await session.get(User, user_id)
                if user:
                    print("found")
                return user.name
            """,
            line=7,
        ),
        Invalid(
            """
            import sqlalchemy as sa
            from sqlalchemy.ext.asyncio import AsyncSession

            class UserService:
                def __init__(self, session: AsyncSession) -> None:
                    self.session = session

                async def email(self, user_id: int) -> str:
                    user = await self.session.scalar(sa.select(User).where(User.id == user_id))
                    return user.email.lower()
            """,
            line=10,
            related_lines=(9,),
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import async_sessionmaker

            factory = async_sessionmaker(engine)

            async def rename(user_id: int, name: str) -> str:
                async with factory() as db:
                    return (await db.get(User, user_id)).name
            """,
            line=7,
            message="`await db.get(...)`",
        ),
        Invalid(
            """
            from sqlalchemy.ext.asyncio import AsyncSession

            async def rename(session: AsyncSession, user_id: int, name: str) -> None:
                user = await session.get(User, user_id)
                if user is None:
                    print("missing user", user_id)
                user.name = name
                user.touched = True
            """,
            line=7,
        ),
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # Per function (id of its node): assignments that may bind None, (id(node), name) -> value.
        self._optional: dict[int, dict[tuple[int, str], cst.BaseExpression]] = {}
        # Call results dereferenced directly: id(call expression) -> call expression.
        self._direct: dict[int, dict[int, cst.BaseExpression]] = {}

    # -- recording, during the traversal ---------------------------------------------------------
    def _assigned(
        self, node: cst.CSTNode, target: cst.BaseExpression, value: cst.BaseExpression
    ) -> None:
        self._record(node, target, value)
        super()._assigned(node, target, value)

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self._record_direct(node.value)

    def visit_Subscript(self, node: cst.Subscript) -> None:
        self._record_direct(node.value)

    def _function_key(self) -> int | None:
        scope = self.semantics.function_scope()
        if scope is None or not isinstance(scope.node, cst.FunctionDef):
            return None
        return id(scope.node)

    def _record(
        self, node: cst.CSTNode, target: cst.BaseExpression, value: cst.BaseExpression
    ) -> None:
        if not isinstance(target, cst.Name):
            return
        key = self._function_key()
        if key is None:
            return
        binding = self.semantics.lookup(target.value)
        if binding is None:
            return
        optional = binding.kind is BindingKind.ORM and binding.optional
        if not optional and binding.kind is BindingKind.OTHER:
            optional = self._optional_row_of_scalars(value)
        if optional and self._may_be_none(value):
            self._optional.setdefault(key, {})[(id(node), target.value)] = value

    def _optional_row_of_scalars(self, value: cst.BaseExpression) -> bool:
        """`(await s.scalars(q)).first()`: a ScalarResult row (the semantic model only knows
        Results from `execute`/`stream`)."""
        return (
            isinstance(value, cst.Call)
            and isinstance(value.func, cst.Attribute)
            and value.func.attr.value in ("first", "one_or_none", "scalar_one_or_none")
            and not value.args
            and _result_call(self.semantics, value.func.value) is not None
        )

    def _record_direct(self, receiver: cst.BaseExpression) -> None:
        if not isinstance(receiver, (cst.Await, cst.Call)):
            return
        key = self._function_key()
        if key is None:
            return
        loaded = self.semantics.loaded_from_session(receiver)
        optional = loaded is not None and loaded[0] is BindingKind.ORM and loaded[2]
        if (optional or self._optional_row_of_scalars(receiver)) and self._may_be_none(receiver):
            self._direct.setdefault(key, {})[id(receiver)] = receiver

    def _may_be_none(self, value: cst.BaseExpression) -> bool:
        """The lookup can give None; aggregates and statements we cannot see stay silent."""
        semantics = self.semantics
        session_call = _session_call(semantics, value)
        if session_call is not None:
            method, call = session_call
            if method != "scalar":
                return True
            statement = _statement_of(call)
            return (
                statement is not None
                and _is_select(semantics, statement, self._assignments)
                and not _always_one_row(semantics, statement, self._assignments)
            )
        if isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute):
            source = _result_call(semantics, value.func.value)
            statement = _statement_of(source) if source is not None else None
            return statement is None or not _always_one_row(semantics, statement, self._assignments)
        return False

    # -- solving, when the function ends ---------------------------------------------------------
    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        optional = self._optional.pop(id(node), {})
        direct = self._direct.pop(id(node), {})
        if not optional and not direct:
            return
        graph = self.semantics.flow(node)
        guarded = _inside_attribute_error_try(node, self.semantics)
        origins: dict[int, cst.BaseExpression] = {id(v): v for v in optional.values()}
        origin_by_bind = {key: id(value) for key, value in optional.items()}
        infos = {
            flow_node.index: self._info(flow_node, origin_by_bind, direct)
            for flow_node in graph.nodes
        }

        def transfer(flow_node: FlowNode, facts: _Facts) -> _Facts:
            info = infos[flow_node.index]
            maybe, found_none = facts
            if info.derefs:
                # Past an unguarded dereference the value was not None (else it raised).
                used = {d.name for d in info.derefs if d.name is not None}
                maybe = frozenset(p for p in maybe if p[0] not in used)
            for name, origin in info.binds:
                maybe = frozenset(p for p in maybe if p[0] != name)
                found_none = found_none - {name}
                if origin is not None:
                    maybe = maybe | {(name, origin)}
            if info.assertion is not None:
                maybe, found_none = refine(Condition(info.assertion, True), (maybe, found_none))
            if info.bare_call and found_none:
                # `if user is None: abort(404)`: a call in the branch that found None is
                # presumed to be a helper that raises.
                maybe = frozenset(p for p in maybe if p[0] not in found_none)
                found_none = frozenset()
            names = {p[0] for p in maybe}
            return maybe, frozenset(found_none & names)

        def refine(condition: Condition, facts: _Facts) -> _Facts:
            nonnull, none = _narrow(condition.test, condition.truth)
            maybe, found_none = facts
            if nonnull:
                maybe = frozenset(p for p in maybe if p[0] not in nonnull)
            names = {p[0] for p in maybe}
            return maybe, frozenset((found_none | none) & names - nonnull)

        def join(a: _Facts, b: _Facts) -> _Facts:
            return a[0] | b[0], a[1] | b[1]

        analysis = ForwardAnalysis(graph, _EMPTY, transfer, join, refine)
        reported: set[frozenset[int]] = set()
        for flow_node in graph.nodes:
            info = infos[flow_node.index]
            if not info.derefs:
                continue
            facts = analysis.facts_before(flow_node)
            if facts is None:
                continue
            for deref in info.derefs:
                if id(deref.node) in guarded:
                    continue
                if deref.name is None and deref.origin is not None:
                    key = frozenset({id(deref.origin)})
                    related = [deref.origin]
                else:
                    ids = sorted(o for n, o in facts[0] if n == deref.name)
                    if not ids:
                        continue
                    key = frozenset(ids)
                    related = [origins[i] for i in ids]
                if key in reported:
                    continue
                reported.add(key)
                self._report(deref, related, flow_node)

    def _info(
        self,
        flow_node: FlowNode,
        origin_by_bind: dict[tuple[int, str], int],
        direct: dict[int, cst.BaseExpression],
    ) -> _NodeInfo:
        info = _NodeInfo()
        if flow_node.node is None or flow_node.kind == "def":
            return info
        statement = flow_node.node
        for part in own_expressions(flow_node):
            self._scan(part, frozenset(), info.derefs, direct, origin_by_bind)
            for named in own_nodes(part):
                if isinstance(named, cst.NamedExpr) and isinstance(named.target, cst.Name):
                    name = named.target.value
                    info.binds.append((name, origin_by_bind.get((id(named), name))))
        for name in _bound_targets(statement):
            info.binds.append((name, origin_by_bind.get((id(statement), name))))
        if isinstance(statement, cst.Assert):
            info.assertion = statement.test
        if isinstance(statement, cst.Expr):
            value = statement.value
            if isinstance(value, cst.Await):
                value = value.expression
            if isinstance(value, cst.Call):
                root = dotted(value.func) or ""
                quiet = root.split(".")[0] in _QUIET_CALL_ROOTS or (
                    isinstance(value.func, cst.Attribute)
                    and self.semantics.session_binding(value.func.value) is not None
                )
                info.bare_call = not quiet
        return info

    def _scan(
        self,
        node: cst.CSTNode,
        safe: frozenset[str],
        out: list[_Deref],
        direct: dict[int, cst.BaseExpression],
        origin_by_bind: dict[tuple[int, str], int],
    ) -> None:
        """Dereferences in an expression, minus those guarded by `x and x.a`, `x.a if x else`."""
        if isinstance(node, OPAQUE):
            return
        if isinstance(node, cst.BooleanOperation):
            self._scan(node.left, safe, out, direct, origin_by_bind)
            nonnull, _ = _narrow(node.left, isinstance(node.operator, cst.And))
            self._scan(node.right, safe | nonnull, out, direct, origin_by_bind)
            return
        if isinstance(node, cst.IfExp):
            self._scan(node.test, safe, out, direct, origin_by_bind)
            self._scan(node.body, safe | _narrow(node.test, True)[0], out, direct, origin_by_bind)
            self._scan(
                node.orelse, safe | _narrow(node.test, False)[0], out, direct, origin_by_bind
            )
            return
        if isinstance(node, _COMPREHENSIONS):
            # Names bound by the comprehension's `for` are other variables.
            shadowed = {
                name
                for part in iter_descendants(node)
                if isinstance(part, cst.CompFor)
                for name in target_names(part.target)
            }
            for child in iter_children(node):
                self._scan(child, safe | shadowed, out, direct, origin_by_bind)
            return
        receiver: cst.BaseExpression | None = None
        if isinstance(node, (cst.Attribute, cst.Subscript)):
            receiver = node.value
        elif isinstance(node, cst.Call):
            receiver = node.func
        if receiver is not None:
            if isinstance(receiver, cst.Name) and receiver.value not in safe:
                out.append(_Deref(node, receiver.value))
            elif id(receiver) in direct:
                out.append(_Deref(node, None, direct[id(receiver)]))
            elif isinstance(receiver, cst.NamedExpr) and isinstance(receiver.target, cst.Name):
                key = (id(receiver), receiver.target.value)
                if key in origin_by_bind:
                    out.append(_Deref(node, None, receiver.value, receiver.target.value))
        for child in iter_children(node):
            self._scan(child, safe, out, direct, origin_by_bind)

    def _report(
        self, deref: _Deref, related: list[cst.BaseExpression], flow_node: FlowNode
    ) -> None:
        node = deref.node
        if isinstance(node, cst.Attribute):
            error = f"AttributeError: 'NoneType' object has no attribute '{node.attr.value}'"
        elif isinstance(node, cst.Subscript):
            error = "TypeError: 'NoneType' object is not subscriptable"
        else:
            error = "TypeError: 'NoneType' object is not callable"
        lookup = _describe_lookup(self, related[0])
        name = deref.name or deref.label
        if name is not None:
            module = self.context.module
            used = one_line(module, node) if deref.name is not None else _deref_text(node, name)
            if len(used) > 40:
                used = used[:37] + "..."
            message = (
                f"`{name}` may be None (`{lookup}` gives None when no row matches) and "
                f"`{used}` reads it unchecked: {error}; check `if {name} is None:` first "
                "(raise HTTPException(404))"
            )
        else:
            message = (
                f"`{lookup}` gives None when no row matches and its result is used directly "
                f"({error}); bind it and check for None first"
            )
        function = self.semantics.function_scope()
        self.report(
            node,
            message,
            related=[(r, "this lookup returns None when no row matches") for r in related],
            statement=flow_node.node,
            scope=function.qualname if function is not None else None,
        )


def _describe_lookup(rule: Rule, value: cst.BaseExpression) -> str:
    """`await session.get(...)`, `result.scalar_one_or_none()`, `(await s.scalars(...)).first()`."""
    if isinstance(value, cst.NamedExpr):
        value = value.value
    if isinstance(value, cst.Await) and isinstance(value.expression, cst.Call):
        return f"await {_short(rule, value.expression.func)}(...)"
    return _short(rule, value)


def _short(rule: Rule, expr: cst.BaseExpression) -> str:
    """A short spelling of a call chain: arguments become `...`."""
    if isinstance(expr, cst.Name):
        return expr.value
    if isinstance(expr, cst.Attribute):
        return f"{_short(rule, expr.value)}.{expr.attr.value}"
    if isinstance(expr, cst.Await) and isinstance(expr.expression, cst.Call):
        return f"(await {_short(rule, expr.expression.func)}(...))"
    if isinstance(expr, cst.Call):
        return f"{_short(rule, expr.func)}({'...' if expr.args else ''})"
    text = one_line(rule.context.module, expr)
    return text if len(text) <= 30 else "..."


def _deref_text(node: cst.CSTNode, name: str) -> str:
    if isinstance(node, cst.Attribute):
        return f"{name}.{node.attr.value}"
    if isinstance(node, cst.Subscript):
        return f"{name}[...]"
    return f"{name}(...)"


def _bound_targets(statement: cst.CSTNode) -> Iterator[str]:
    """Names a statement (re)binds: assignment targets, `for` targets, `with ... as` names."""
    if isinstance(statement, cst.Assign):
        for target in statement.targets:
            yield from target_names(target.target)
    elif isinstance(statement, (cst.AnnAssign, cst.AugAssign)):
        if not isinstance(statement, cst.AnnAssign) or statement.value is not None:
            yield from target_names(statement.target)
    elif isinstance(statement, cst.For):
        yield from target_names(statement.target)
    elif isinstance(statement, cst.With):
        for item in statement.items:
            if item.asname is not None:
                yield from target_names(item.asname.name)


def _inside_attribute_error_try(function: cst.FunctionDef, semantics: Semantics) -> set[int]:
    """Nodes in `try:` bodies whose handlers catch AttributeError or TypeError on purpose."""
    inside: set[int] = set()
    for node in iter_descendants(function.body):
        if isinstance(node, cst.Try) and any(
            _last_segment(semantics, name) in ("AttributeError", "TypeError")
            for handler in node.handlers
            for name in _exception_names(handler.type)
        ):
            inside.update(id(n) for n in iter_descendants(node.body))
    return inside
