"""End to end: the background-work rules (AG501, AG502) through the real CLI on a git repository.

The routers import their slow helpers (mail, webhooks) from `app/notifications.py` and the
session from `app/db.py`. The side-effect patterns of AG502 come from config, so one test
changes them in `.asyncguard.toml`.
"""

from __future__ import annotations

from pathlib import Path

from conftest import GitRepo, Triple, check_json, db_py, run_cli

NOTIFICATIONS = """
import asyncio


async def send_welcome_email(address: str) -> None:
    await asyncio.sleep(1)


async def fire_webhook(event: str, payload: dict) -> int:
    await asyncio.sleep(1)
    return 200


async def publish_event(name: str) -> None:
    await asyncio.sleep(1)


async def audit(event: str) -> None:
    await asyncio.sleep(0)
"""

USERS = """
import asyncio

from fastapi import APIRouter, BackgroundTasks, WebSocket

from app.db import SessionDep
from app.notifications import audit, fire_webhook, publish_event, send_welcome_email

router = APIRouter()


@router.post("/signup")
async def signup(email: str, session: SessionDep) -> dict[str, str]:
    await send_welcome_email(email)  # awaited side effect
    await session.commit()
    return {"status": "ok"}


@router.post("/signup/background")
async def signup_background(email: str, background: BackgroundTasks) -> dict[str, str]:
    background.add_task(send_welcome_email, email)
    return {"status": "ok"}


@router.post("/orders/{order_id}/paid")
async def paid(order_id: int) -> dict[str, int]:
    status = await fire_webhook("order.paid", {"id": order_id})
    return {"webhook_status": status}


@router.post("/orders/{order_id}/shipped")
async def shipped(order_id: int) -> dict[str, bool]:
    await publish_event("order.shipped")  # a project-specific side effect
    asyncio.create_task(audit("shipped"))  # discarded task
    return {"ok": True}


@router.websocket("/feed")
async def feed(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"hello": "world"})
    await websocket.close()


@router.post("/farewell")
async def farewell(email: str) -> None:
    await send_welcome_email(email)
"""

USERS_PATH = "app/routers/users.py"


APP = {
    "app/db.py": db_py(expire_on_commit=False),
    "app/notifications.py": NOTIFICATIONS,
    USERS_PATH: USERS,
}


def _run(repo: GitRepo, *args: str) -> set[Triple]:
    return check_json(repo, "--select", "AG5", *args).triples()


def _expected(repo: GitRepo) -> dict[str, Triple]:
    def at(needle: str) -> int:
        return repo.line_of(USERS_PATH, needle)

    return {
        "AG502-email": ("AG502", USERS_PATH, at("# awaited side effect")),
        "AG501": ("AG501", USERS_PATH, at("# discarded task")),
    }


def test_whole_repository_with_defaults(app_repo: GitRepo) -> None:
    # The webhook's status is returned (its result is used), the websocket sends are the
    # response itself, and `farewell` has nothing left to do after its send.
    assert _run(app_repo, ".") == set(_expected(app_repo).values())
    assert _run(app_repo, ".", "--no-index") == set(_expected(app_repo).values())


def test_message_names_the_call_and_suggests_background_tasks(app_repo: GitRepo) -> None:
    result = run_cli(
        ["check", "--format", "json", "--select", "AG502", USERS_PATH],
        app_repo.path,
        env=app_repo.env,
    )
    (finding,) = result.json()["findings"]
    assert finding["severity"] == "info"
    assert "`send_welcome_email(...)`" in finding["message"]
    assert "BackgroundTasks" in finding["message"]


def test_side_effect_patterns_from_config(app_repo: GitRepo, tmp_path: Path) -> None:
    repo = app_repo.copy_to(tmp_path / "repo")
    repo.write(".asyncguard.toml", 'side-effect-patterns = ["publish_*"]\n')
    expected = _expected(repo)
    published = ("AG502", USERS_PATH, repo.line_of(USERS_PATH, "# a project-specific"))
    assert _run(repo, ".") == {published, expected["AG501"]}
