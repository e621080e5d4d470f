"""End to end: the connection pool rules (AG401, AG402) through the real CLI.

A git repository with the places engines legitimately live (module level, the lifespan, a
cached factory, a `__main__` script, Alembic's `env.py`, a pytest fixture) next to the ones the
rules are about (an engine per request, an engine per job, NullPool in the app's engine).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conftest import GitRepo, check_json, findings_of, write_app

DB = """
from functools import lru_cache

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

DATABASE_URL = "postgresql+asyncpg://app@localhost/app"

engine = create_async_engine(
    DATABASE_URL,
    poolclass=NullPool,
)
async_session = async_sessionmaker(engine, expire_on_commit=False)


@lru_cache
def reporting_engine() -> AsyncEngine:
    return create_async_engine(DATABASE_URL, pool_size=2)
"""

MAIN = """
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine

from app.db import DATABASE_URL


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.engine = create_async_engine(DATABASE_URL)
    yield
    await app.state.engine.dispose()


app = FastAPI(lifespan=lifespan)
"""

REPORTS = """
from fastapi import APIRouter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine as make_engine

from app.db import DATABASE_URL, reporting_engine

router = APIRouter()


@router.get("/reports/size")
async def size() -> int:
    async with reporting_engine().connect() as conn:
        return await conn.scalar(text("select 1"))
"""

REPORTS_ADDED = """

@router.get("/reports/count")
async def count() -> int:
    engine = make_engine(DATABASE_URL)
    async with engine.connect() as conn:
        return await conn.scalar(text("select count(*) from users"))
"""

WORKER = """
import asyncio

import sqlalchemy
from sqlalchemy.ext.asyncio import create_async_engine


def run_job(job_id: int) -> None:
    engine = create_async_engine(
        "postgresql+asyncpg://app@localhost/app", poolclass=sqlalchemy.pool.NullPool
    )
    asyncio.run(process(engine, job_id))


async def process(engine, job_id: int) -> None:
    async with engine.begin() as conn:
        await conn.exec_driver_sql("select 1")
"""

SEED = """
import asyncio

from sqlalchemy.ext.asyncio import create_async_engine

from app.db import DATABASE_URL


async def main() -> None:
    engine = create_async_engine(DATABASE_URL)
    async with engine.begin() as conn:
        await conn.exec_driver_sql("select 1")


if __name__ == "__main__":
    asyncio.run(main())
"""

ALEMBIC_ENV = """
import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import async_engine_from_config, create_async_engine

config = context.config


async def run_async_migrations() -> None:
    connectable = async_engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    async with connectable.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await connectable.dispose()


async def run_offline_check() -> None:
    engine = create_async_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.exec_driver_sql("select 1")


def do_run_migrations(connection) -> None:
    context.configure(connection=connection)


asyncio.run(run_async_migrations())
"""

CONFTEST = """
import pytest_asyncio
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool


@pytest_asyncio.fixture
async def engine():
    engine = create_async_engine("sqlite+aiosqlite://", poolclass=NullPool)
    yield engine
    await engine.dispose()


async def make_schema() -> None:
    engine = create_async_engine("sqlite+aiosqlite://")
    async with engine.begin() as conn:
        await conn.exec_driver_sql("create table t (id integer)")
"""

REPORTS_PATH = "app/routers/reports.py"


APP = {
    "app/db.py": DB,
    "app/main.py": MAIN,
    REPORTS_PATH: REPORTS,
    "app/worker.py": WORKER,
    "scripts/seed.py": SEED,
    "migrations/env.py": ALEMBIC_ENV,
    "tests/conftest.py": CONFTEST,
}


def build(repo: GitRepo) -> str:
    """The base commit; returns its id."""
    write_app(repo, APP)
    return repo.commit("base")


def check(repo: GitRepo, *args: str) -> dict[str, Any]:
    result = check_json(repo, *args, "--select", "AG4")
    assert result.notes() == [], result
    return result.json()


def test_pool_rules_on_the_whole_repository(make_repo: Callable[..., GitRepo]) -> None:
    repo = make_repo()
    build(repo)
    repo.write(REPORTS_PATH, repo.read(REPORTS_PATH) + REPORTS_ADDED)
    repo.commit("count endpoint")
    document = check(repo, ".")
    line = repo.line_of
    expected = {
        ("AG401", REPORTS_PATH, line(REPORTS_PATH, "engine = make_engine(DATABASE_URL)")),
        ("AG401", "app/worker.py", line("app/worker.py", "engine = create_async_engine(")),
        ("AG402", "app/db.py", line("app/db.py", "poolclass=NullPool,")),
        (
            "AG402",
            "app/worker.py",
            line("app/worker.py", "poolclass=sqlalchemy.pool.NullPool"),
        ),
    }
    assert findings_of(document) == expected
    severities = {(f["code"], f["path"]): f["severity"] for f in document["findings"]}
    assert severities[("AG401", REPORTS_PATH)] == "error"
    assert severities[("AG402", "app/db.py")] == "info"
    per_call = next(f for f in document["findings"] if f["path"] == REPORTS_PATH)
    assert "`make_engine(...)` in `count`" in per_call["message"]
    # Nothing here needs facts from other files: without the index the result is the same.
    assert findings_of(check(repo, ".", "--no-index")) == expected


def test_a_pull_request_adding_an_engine_per_request(make_repo: Callable[..., GitRepo]) -> None:
    repo = make_repo()
    base = build(repo)
    repo.git("checkout", "-q", "-b", "feature")
    repo.write(REPORTS_PATH, repo.read(REPORTS_PATH) + REPORTS_ADDED)
    repo.commit("count endpoint")
    diff_path = repo.write_diff(base, name="pool.diff")
    document = check(repo, "--diff", str(diff_path))
    assert findings_of(document) == {
        ("AG401", REPORTS_PATH, repo.line_of(REPORTS_PATH, "engine = make_engine(DATABASE_URL)"))
    }
