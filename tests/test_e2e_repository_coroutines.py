"""End to end: AG901 on `async def`s defined in other files of the repository.

The index knows those functions only by their `def` line, so only the uses that are wrong for
any async callable are reported (a bare statement, a condition, a comparison); an async
generator, a decorated `async def` or a name that is also a plain function elsewhere stays quiet.
"""

from __future__ import annotations

from collections.abc import Callable

from conftest import GitRepo, check_json, write_app

APP = {
    "app/notify.py": """
        from contextlib import asynccontextmanager


        async def send_welcome(user_id: int) -> None:
            ...


        async def allowed(user_id: int) -> bool:
            return True


        async def rows():
            yield 1


        @asynccontextmanager
        async def span(name: str):
            yield name


        async def render(value: int) -> str:
            return str(value)
        """,
    "app/sync_helpers.py": """
        def render(value: int) -> str:
            return str(value)
        """,
    "app/routes.py": """
        from fastapi import APIRouter

        from app import notify
        from app.notify import allowed, render, rows, send_welcome, span

        router = APIRouter()


        @router.post("/users/{user_id}")
        async def create(user_id: int) -> dict[str, bool]:
            send_welcome(user_id)
            if not allowed(user_id):
                return {"ok": False}
            notify.send_welcome(user_id)
            async for row in rows():
                print(row)
            async with span("create"):
                pass
            render(user_id)
            await send_welcome(user_id)
            return {"ok": True}
        """,
}


def test_repository_coroutines(make_repo: Callable[..., GitRepo]) -> None:
    repo = make_repo()
    write_app(repo, APP)
    repo.commit("app")
    result = check_json(repo, "--select", "AG901")
    routes = "app/routes.py"
    assert result.triples() == {
        ("AG901", routes, repo.line_of(routes, "    send_welcome(user_id)")),
        ("AG901", routes, repo.line_of(routes, "if not allowed(")),
        ("AG901", routes, repo.line_of(routes, "notify.send_welcome(")),
    }
    # Without the index the other files are unknown: nothing is reported.
    assert check_json(repo, "--select", "AG901", "--no-index").triples() == set()
