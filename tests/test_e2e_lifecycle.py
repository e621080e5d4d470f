"""End to end: the session lifecycle rules (AG101-AG104) through the real CLI.

A small FastAPI application in a git repository: `app/db.py` defines the engine and the session
factory, `app/deps.py` a dependency that returns a bare session (used with `Depends` only in
the router, so only the repository index can tell it is a dependency), and the router imports
both. Every test compares the exact findings as (code, path, line) triples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conftest import GitRepo, check_json, db_py, findings_of, run_cli, write_app

DB = db_py(typed=False, session_dep=False)

DEPS = """
from app.db import async_session


async def get_db():
    return async_session()
"""

MODELS = """
class User:
    id = 0
    name = ""
    email = ""
"""

CACHE = """
from app.db import async_session

cache_session = async_session()
"""

USERS = """
import asyncio

from fastapi import APIRouter, BackgroundTasks, Depends
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import async_session, get_session
from app.deps import get_db
from app.models import User

router = APIRouter()


async def send_welcome(user: User) -> None:
    await asyncio.sleep(0)


async def send_welcome_by_id(user_id: int) -> None:
    async with async_session() as session:
        await session.get(User, user_id)


async def count_users() -> int:
    session = async_session()
    total = await session.scalar(select(User.id))
    await session.close()
    return total or 0


async def count_safely() -> int:
    session = async_session()
    try:
        return await session.scalar(select(User.id)) or 0
    finally:
        await session.close()


async def rename(user_id: int, name: str) -> None:
    async with async_session.begin() as session:
        user = await session.get(User, user_id)
        user.name = name


@router.post("/users/{user_id}/touch")
async def touch(user_id: int) -> None:
    with async_session() as session:
        await session.get(User, user_id)


@router.post("/users/{user_id}/welcome")
async def welcome(
    user_id: int,
    background_tasks: BackgroundTasks,
    session: AsyncSession = Depends(get_session),
) -> None:
    user = await session.get(User, user_id)
    background_tasks.add_task(send_welcome, user)
    background_tasks.add_task(send_welcome_by_id, user_id)


@router.post("/sync")
async def sync(db: AsyncSession = Depends(get_db)) -> None:
    asyncio.create_task(sync_all(db))


async def sync_all(db: AsyncSession) -> None:
    await db.execute(select(User.id))
"""

USERS_PATH = "app/routers/users.py"


APP = {
    "app/db.py": DB,
    "app/deps.py": DEPS,
    "app/models.py": MODELS,
    "app/cache.py": CACHE,
    USERS_PATH: USERS,
}


def build(repo: GitRepo) -> GitRepo:
    write_app(repo, APP)
    repo.commit("app")
    return repo


def check(repo: GitRepo, *args: str) -> dict[str, Any]:
    result = check_json(repo, *args, "--select", "AG1")
    assert result.notes() == [], result
    return result.json()


def by_line(document: dict[str, Any], path: str, line: int) -> dict[str, Any]:
    found = [f for f in document["findings"] if f["path"] == path and f["start_line"] == line]
    assert len(found) == 1, document["findings"]
    return dict(found[0])


def test_every_lifecycle_rule_on_the_whole_repository(
    make_repo: Callable[..., GitRepo],
) -> None:
    repo = build(make_repo())
    document = check(repo, "app")
    line = repo.line_of
    assert findings_of(document) == {
        ("AG101", "app/cache.py", line("app/cache.py", "cache_session = async_session()")),
        ("AG102", "app/deps.py", line("app/deps.py", "return async_session()")),
        ("AG102", USERS_PATH, line(USERS_PATH, "session = async_session()")),
        ("AG103", USERS_PATH, line(USERS_PATH, "with async_session() as session:", 2)),
        ("AG104", USERS_PATH, line(USERS_PATH, "background_tasks.add_task(send_welcome, user)")),
        ("AG104", USERS_PATH, line(USERS_PATH, "asyncio.create_task(sync_all(db))")),
    }
    # BackgroundTasks on an unpinned FastAPI: a warning; a task that outlives the request: an
    # error. Both point back at the dependency parameter.
    welcome = by_line(document, USERS_PATH, line(USERS_PATH, "add_task(send_welcome, user)"))
    assert welcome["severity"] == "warning"
    assert "`user`, loaded from the request's session `session`" in welcome["message"]
    assert [r["start_line"] for r in welcome["related"]] == [
        line(USERS_PATH, "session: AsyncSession = Depends(get_session),")
    ]
    task = by_line(document, USERS_PATH, line(USERS_PATH, "asyncio.create_task(sync_all(db))"))
    assert task["severity"] == "error"
    assert [r["start_line"] for r in task["related"]] == [
        line(USERS_PATH, "async def sync(db: AsyncSession = Depends(get_db))")
    ]
    # The dependency returning a session is reported at its `return`.
    returned = by_line(document, "app/deps.py", line("app/deps.py", "return async_session()"))
    assert "dependency `get_db` returns" in returned["message"]


def test_without_the_index_only_what_the_file_itself_shows_is_reported(
    make_repo: Callable[..., GitRepo],
) -> None:
    # `async_session` comes from another file and `get_db` is used as a dependency only in the
    # router: without the repository index neither is known, so AG101-AG103 stay silent. The
    # injected sessions are annotated AsyncSession, which is enough for AG104.
    repo = build(make_repo())
    document = check(repo, "app", "--no-index")
    assert findings_of(document) == {
        ("AG104", USERS_PATH, repo.line_of(USERS_PATH, "add_task(send_welcome, user)")),
        ("AG104", USERS_PATH, repo.line_of(USERS_PATH, "asyncio.create_task(sync_all(db))")),
    }


def test_fastapi_pinned_to_an_early_exit_version_makes_background_tasks_an_error(
    make_repo: Callable[..., GitRepo],
) -> None:
    repo = build(make_repo())
    repo.write("requirements.txt", "fastapi==0.110.0\nsqlalchemy==2.0.36\n")
    repo.commit("pin")
    document = check(repo, USERS_PATH)
    welcome = by_line(
        document, USERS_PATH, repo.line_of(USERS_PATH, "add_task(send_welcome, user)")
    )
    assert welcome["severity"] == "error"
    assert "FastAPI 0.110.0 closes it before background tasks run" in welcome["message"]


def test_a_pull_request_is_reviewed_on_its_added_lines_and_fixed(
    make_repo: Callable[..., GitRepo],
) -> None:
    repo = make_repo()
    old_part = USERS.split("@router.post", 1)[0]
    old_part = old_part.replace("from app.deps import get_db\n", "")
    write_app(repo, {"app/db.py": DB, "app/models.py": MODELS, USERS_PATH: old_part})
    base = repo.commit("base")
    repo.git("checkout", "-q", "-b", "feature")
    repo.write("app/deps.py", DEPS)
    repo.write(USERS_PATH, USERS)
    repo.commit("endpoints")
    diff_path = repo.write_diff(base, name="lifecycle.diff")

    # count_users (an old AG102) is not part of the change; everything the change adds is.
    document = check(repo, "--diff", str(diff_path))
    line = repo.line_of
    assert findings_of(document) == {
        ("AG102", "app/deps.py", line("app/deps.py", "return async_session()")),
        ("AG103", USERS_PATH, line(USERS_PATH, "with async_session() as session:", 2)),
        ("AG104", USERS_PATH, line(USERS_PATH, "background_tasks.add_task(send_welcome, user)")),
        ("AG104", USERS_PATH, line(USERS_PATH, "asyncio.create_task(sync_all(db))")),
    }

    # The AG103 fix (`with` -> `async with`, safe inside `async def`) is applied by --fix.
    fixed = run_cli(
        ["check", USERS_PATH, "--select", "AG103", "--fix", "--format", "json"],
        repo.path,
        env=repo.env,
    )
    assert fixed.returncode == 0, fixed
    assert fixed.json()["findings"] == []
    text = repo.read(USERS_PATH)
    assert "    async with async_session() as session:\n        await session.get" in text
    assert "\n    with async_session()" not in text
