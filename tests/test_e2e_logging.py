"""End to end for "Pattern: Logging Async Operations" (AG801, AG802): the real CLI on a git repo.

Loggers are recognised by what they are bound to (`logging.getLogger`, `structlog.get_logger`),
never by name: a logger imported from another module of the project is of unknown origin and is
left alone. `--fix` turns `.error(` into `.exception(` where that is safe.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import GitRepo, Triple, run_cli, write_app

DB = """
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

engine = create_async_engine("sqlite+aiosqlite://")
async_session = async_sessionmaker(engine)
"""

LOGS = """
import logging

logger = logging.getLogger("app")
"""

BILLING = """
import structlog

from app.gateway import GatewayError, gateway_charge

log = structlog.get_logger()


async def charge(order_id: int) -> None:
    log.info("charge.start", order_id=order_id)
    try:
        await gateway_charge(order_id)
    except GatewayError as e:
        log.error("charge.failed", order_id=order_id, error=str(e))
        raise
    log.info(f"charged order {order_id}")


def refund(order_id: int) -> None:
    log.info(f"refund {order_id}")
    try:
        gateway_refund(order_id)
    except GatewayError:
        log.exception("refund.failed", order_id=order_id)
"""

USERS = """
import logging

from fastapi import APIRouter

from app.logs import logger as app_logger

router = APIRouter()
logger = logging.getLogger(__name__)


@router.post("/users/{user_id}/sync")
async def sync_user(user_id: int) -> dict[str, bool]:
    try:
        await pull(user_id)
    except Exception as exc:
        logger.error("sync of user %s failed: %s", user_id, exc)
        app_logger.error("sync failed: %s", exc)
        return {"ok": False}
    logger.info("synced user %s", user_id)
    logger.info("synced user %s" % user_id)
    return {"ok": True}


async def pull(user_id: int) -> None:
    try:
        await fetch(user_id)
    except TimeoutError as exc:
        logger.error("pull timed out", exc_info=exc)
"""

BILLING_PATH = "app/services/billing.py"
USERS_PATH = "app/routers/users.py"


@pytest.fixture
def repo(make_repo: Callable[..., GitRepo]) -> GitRepo:
    repo = make_repo()
    write_app(
        repo, {"app/db.py": DB, "app/logs.py": LOGS, BILLING_PATH: BILLING, USERS_PATH: USERS}
    )
    repo.commit("base")
    return repo


def _expected(repo: GitRepo) -> set[Triple]:
    return {
        ("AG801", BILLING_PATH, repo.line_of(BILLING_PATH, 'log.error("charge.failed"')),
        ("AG802", BILLING_PATH, repo.line_of(BILLING_PATH, 'log.info(f"charged order')),
        ("AG801", USERS_PATH, repo.line_of(USERS_PATH, 'logger.error("sync of user')),
        ("AG802", USERS_PATH, repo.line_of(USERS_PATH, '"synced user %s" % user_id')),
    }


def test_whole_files_report_exactly_the_logging_findings(repo: GitRepo) -> None:
    result = run_cli(["check", "app", "--format", "json"], repo.path, env=repo.env)
    assert result.returncode == 0, result  # warnings and infos: the default fail-on is error
    assert result.triples() == _expected(repo)
    messages = {(f["code"], f["path"]): f for f in result.json()["findings"]}
    charge = messages[("AG801", BILLING_PATH)]
    assert "`log.error(...)`" in charge["message"] and "`e`" in charge["message"]
    assert charge["severity"] == "warning"
    assert charge["fix"]["safety"] == "safe"
    formatted = messages[("AG802", USERS_PATH)]
    assert "`logger.info(...)`" in formatted["message"] and formatted["severity"] == "info"


def test_fix_turns_error_into_exception(repo: GitRepo) -> None:
    before_billing = repo.read(BILLING_PATH)
    before_users = repo.read(USERS_PATH)
    formatted = {t for t in _expected(repo) if t[0] == "AG802"}
    fixed = run_cli(["check", "app", "--fix", "--select", "AG8"], repo.path, env=repo.env)
    assert fixed.returncode == 0, fixed
    assert repo.read(BILLING_PATH) == before_billing.replace(
        'log.error("charge.failed"', 'log.exception("charge.failed"'
    )
    assert repo.read(USERS_PATH) == before_users.replace(
        'logger.error("sync of user', 'logger.exception("sync of user'
    )
    again = run_cli(["check", "app", "--format", "json"], repo.path, env=repo.env)
    assert {t for t in again.triples() if t[0] == "AG801"} == set()
    assert {t for t in again.triples() if t[0] == "AG802"} == formatted
