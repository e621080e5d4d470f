"""End to end for "Pattern: Post-Condition Validation" (AG701, AG702): the real CLI on a git repo.

The session factory and the `SessionDep` alias live in app/db.py, which the routers import: the
repository index is what tells the rules those names are sessions. A NoResultFound handler
registered in another file (app/main.py) silences AG701 everywhere.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import GitRepo, Triple, db_py, run_cli, write_app

MODELS = """
class User:
    id = 0
    name = ""
    email = ""


class Order:
    id = 0
    user_id = 0
"""

USERS = """
from fastapi import APIRouter, HTTPException
from sqlalchemy import func, select

from app.db import SessionDep, async_session
from app.models import Order, User

router = APIRouter()


@router.get("/users/{user_id}")
async def read_user(user_id: int, session: SessionDep) -> dict[str, str]:
    result = await session.execute(select(User).where(User.id == user_id))
    user = result.scalar_one()
    return {"name": user.name}


@router.get("/users/{user_id}/orders/count")
async def count_orders(user_id: int, session: SessionDep) -> int:
    stmt = select(func.count(Order.id)).where(Order.user_id == user_id)
    return (await session.execute(stmt)).scalar_one()


@router.get("/orders/{order_id}")
async def read_order(order_id: int, session: SessionDep) -> dict[str, int]:
    order = await session.get(Order, order_id)
    if order is None:
        raise HTTPException(status_code=404, detail="Order not found")
    return {"id": order.id}


@router.delete("/orders/{order_id}")
async def delete_order(order_id: int, session: SessionDep) -> None:
    order = await session.get_one(Order, order_id)
    await session.delete(order)
    await session.commit()
"""

USERS_ADDED = """

@router.patch("/users/{user_id}")
async def rename_user(user_id: int, name: str) -> dict[str, str]:
    async with async_session() as session:
        user = await session.get(User, user_id)
        user.name = name
        await session.commit()
    return {"name": name}
"""

SERVICES = """
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import User


async def load_user(session: AsyncSession, user_id: int) -> User:
    return (await session.execute(select(User).where(User.id == user_id))).scalar_one()


async def email_of(session: AsyncSession, user_id: int) -> str:
    user = (await session.execute(select(User).where(User.id == user_id))).scalars().first()
    return user.email


async def email_or_none(session: AsyncSession, user_id: int) -> str | None:
    user = await session.get(User, user_id)
    return user.email if user is not None else None
"""

MAIN = """
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import NoResultFound

from app.routers.users import router

app = FastAPI()
app.include_router(router)


async def not_found(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": "Not found"}, status_code=404)


app.add_exception_handler(NoResultFound, not_found)
"""

USERS_PATH = "app/routers/users.py"
SERVICES_PATH = "app/services.py"


def _build(repo: GitRepo, *, with_handler: bool = False) -> GitRepo:
    files = {
        "app/db.py": db_py(typed=False),
        "app/models.py": MODELS,
        USERS_PATH: USERS,
        SERVICES_PATH: SERVICES,
    }
    if with_handler:
        files["app/main.py"] = MAIN
    write_app(repo, files)
    repo.commit("base")
    repo.git("checkout", "-q", "-b", "feature")
    repo.write(USERS_PATH, repo.read(USERS_PATH) + USERS_ADDED)
    return repo


@pytest.fixture
def repo(make_repo: Callable[..., GitRepo]) -> GitRepo:
    return _build(make_repo())


def _scalar_one(repo: GitRepo) -> Triple:
    return ("AG701", USERS_PATH, repo.line_of(USERS_PATH, "user = result.scalar_one()"))


def _get_one(repo: GitRepo) -> Triple:
    return ("AG701", USERS_PATH, repo.line_of(USERS_PATH, "await session.get_one("))


def _rename(repo: GitRepo) -> Triple:
    return ("AG702", USERS_PATH, repo.line_of(USERS_PATH, "user.name = name"))


def _email(repo: GitRepo) -> Triple:
    return ("AG702", SERVICES_PATH, repo.line_of(SERVICES_PATH, "return user.email"))


def test_whole_files_report_exactly_the_post_condition_bugs(repo: GitRepo) -> None:
    result = run_cli(["check", "app", "--format", "json"], repo.path, env=repo.env)
    assert result.returncode == 0, result  # warnings only: the default fail-on is error
    assert result.triples() == {_scalar_one(repo), _get_one(repo), _rename(repo), _email(repo)}
    findings = {(f["code"], f["start_line"]): f for f in result.json()["findings"]}
    rename = findings[("AG702", _rename(repo)[2])]
    assert "`user`" in rename["message"]
    assert "'NoneType' object has no attribute 'name'" in rename["message"]
    get_line = repo.line_of(USERS_PATH, "user = await session.get(User, user_id)")
    assert [r["start_line"] for r in rename["related"]] == [get_line]
    scalar_one = findings[("AG701", _scalar_one(repo)[2])]
    assert "`user_id`" in scalar_one["message"] and "HTTP 500" in scalar_one["message"]


def test_without_the_index_imported_sessions_are_unknown(repo: GitRepo) -> None:
    """`SessionDep` and `async_session` come from app/db.py: without the index, stay silent."""
    result = run_cli(["check", "app", "--format", "json", "--no-index"], repo.path, env=repo.env)
    assert result.triples() == {_email(repo)}


def test_pull_request_reports_only_the_new_lookup(repo: GitRepo) -> None:
    result = run_cli(["check", "--base", "main", "--format", "json"], repo.path, env=repo.env)
    assert result.returncode == 0, result  # warnings only: the default fail-on is error
    assert result.triples() == {_rename(repo)}


def test_a_no_result_handler_in_another_file_silences_ag701(
    make_repo: Callable[..., GitRepo],
) -> None:
    repo = _build(make_repo(), with_handler=True)
    result = run_cli(
        ["check", "app", "--format", "json", "--select", "AG7"], repo.path, env=repo.env
    )
    assert result.triples() == {_rename(repo), _email(repo)}
