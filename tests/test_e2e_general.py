"""End to end: the general async rules (AG901-AG904) through the real CLI on a git repository.

The session factory and the async engine live in `app/db.py`; the routers and jobs import them,
so some findings depend on the repository index (a `--no-index` run shows which). A project
storage class is declared blocking through `blocking-calls` in `.asyncguard.toml`.
"""

from __future__ import annotations

from pathlib import Path

from conftest import GitRepo, Triple, check_json, db_py, run_cli

CONFIG = """
blocking-calls = ["app.storage.S3Storage.*"]
"""

MODELS = """
class User:
    id = 0
    name = ""
    admin = False
"""

STORAGE = """
import boto3


class S3Storage:
    def __init__(self) -> None:
        self.client = boto3.client("s3")

    def upload(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket="uploads", Key=key, Body=data)
"""

USERS = """
import asyncio
import time

import requests
from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from app.db import async_session, engine, get_session
from app.models import User
from app.storage import S3Storage

router = APIRouter()
storage = S3Storage()


async def is_admin(user_id: int) -> bool:
    async with async_session() as session:
        user = await session.get(User, user_id)
        return bool(user and user.admin)


@router.post("/users/{user_id}/rename")
async def rename(user_id: int, name: str) -> None:
    async with async_session() as session:
        user = await session.get(User, user_id)
        user.name = name
        session.commit()  # commit not awaited


@router.delete("/users/{user_id}")
async def delete_user(user_id: int, session: AsyncSession = Depends(get_session)) -> None:
    if not is_admin(user_id):  # check not awaited
        raise PermissionError(user_id)
    await session.delete(await session.get(User, user_id))
    await session.commit()


@router.get("/users/count")
async def count(session: AsyncSession = Depends(get_session)) -> int:
    return await session.scalar("select count(*) from users")  # raw string


@router.get("/users/count-text")
async def count_text(session: AsyncSession = Depends(get_session)) -> int:
    return await session.scalar(text("select count(*) from users"))


@router.get("/legacy")
async def legacy() -> list[str]:
    with Session(engine.sync_engine) as db:  # sync session
        return list(db.scalars(select(User.name)))  # sync query


@router.post("/avatar")
async def avatar(data: bytes) -> None:
    time.sleep(0.1)  # blocking sleep
    storage.upload("avatar", data)  # blocking storage
    await run_in_threadpool(storage.upload, "copy", data)


@router.get("/proxy")
def proxy(url: str) -> bytes:
    return requests.get(url, timeout=5).content


async def stats() -> list[int]:
    async with async_session() as a, async_session() as b:
        return await asyncio.gather(a.scalar(select(1)), b.scalar(select(2)))
"""

JOBS = """
import asyncio

from app.db import engine


async def shutdown() -> None:
    engine.dispose()  # dispose not awaited


async def tick() -> None:
    await asyncio.sleep(1)


def main() -> None:
    asyncio.run(tick())
"""

TOUCH = """

@router.post("/users/{user_id}/touch")
async def touch(user_id: int, session: AsyncSession = Depends(get_session)) -> None:
    user = await session.get(User, user_id)
    await session.add(user)  # awaited plain method
    await session.commit()
"""

USERS_PATH = "app/routers/users.py"
JOBS_PATH = "app/jobs.py"


APP = {
    ".asyncguard.toml": CONFIG,
    "app/db.py": db_py(expire_on_commit=False, session_dep=False),
    "app/models.py": MODELS,
    "app/storage.py": STORAGE,
    USERS_PATH: USERS,
    JOBS_PATH: JOBS,
}


def _run(repo: GitRepo, *args: str) -> set[Triple]:
    return check_json(repo, "--select", "AG9", *args).triples()


def _expected(repo: GitRepo) -> dict[str, Triple]:
    def users(needle: str) -> Triple:
        return ("", USERS_PATH, repo.line_of(USERS_PATH, needle))

    def code(triple: Triple, rule: str) -> Triple:
        return (rule, triple[1], triple[2])

    return {
        "commit": code(users("# commit not awaited"), "AG901"),
        "check": code(users("# check not awaited"), "AG901"),
        "dispose": ("AG901", JOBS_PATH, repo.line_of(JOBS_PATH, "# dispose not awaited")),
        "sync-session": code(users("# sync session"), "AG902"),
        "sync-query": code(users("# sync query"), "AG902"),
        "sleep": code(users("# blocking sleep"), "AG903"),
        "storage": code(users("# blocking storage"), "AG903"),
        "raw-sql": code(users("# raw string"), "AG904"),
    }


def test_whole_repository(app_repo: GitRepo) -> None:
    # Not reported: the awaited calls, `text(...)`, the gather of two sessions' queries,
    # `run_in_threadpool(storage.upload, ...)`, `requests` in a plain `def` endpoint, and the
    # boto3 client inside the storage class's plain methods.
    assert _run(app_repo, ".") == set(_expected(app_repo).values())


def test_without_the_index_factories_and_engines_of_other_files_are_unknown(
    app_repo: GitRepo,
) -> None:
    # `async_session` and `engine` come from app/db.py: without the index, `session` in
    # `rename` and `engine` in `shutdown` have no known type, so those two stay silent.
    expected = _expected(app_repo)
    del expected["commit"], expected["dispose"]
    assert _run(app_repo, ".", "--no-index") == set(expected.values())


def test_pull_request_reports_only_what_it_adds(tmp_path: Path, app_repo: GitRepo) -> None:
    repo = app_repo.copy_to(tmp_path / "pr")
    repo.git("checkout", "-q", "-b", "feature")
    repo.write(USERS_PATH, USERS + TOUCH)
    repo.commit("touch endpoint")
    line = repo.line_of(USERS_PATH, "# awaited plain method")
    assert _run(repo, "--base", "main") == {("AG901", USERS_PATH, line)}


def test_messages_quote_the_runtime_errors(app_repo: GitRepo) -> None:
    result = run_cli(
        ["check", "--format", "json", "--select", "AG9", "."], app_repo.path, env=app_repo.env
    )
    messages = {
        (f["code"], f["path"], f["start_line"]): f["message"] for f in result.json()["findings"]
    }
    expected = _expected(app_repo)
    assert "coroutine 'AsyncSession.commit' was never awaited" in messages[expected["commit"]]
    assert "coroutine 'AsyncEngine.dispose' was never awaited" in messages[expected["dispose"]]
    assert "always truthy" in messages[expected["check"]]
    assert "10 concurrent 0.2 s requests took 2.0 s" in messages[expected["sleep"]]
    assert "`storage.upload(" in messages[expected["storage"]]
    assert "Textual SQL expression" in messages[expected["raw-sql"]]
    assert "`db`" in messages[expected["sync-query"]]
