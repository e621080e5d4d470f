"""End to end: the concurrency rules (AG201, AG202) through the real CLI on a git repository.

`app/db.py` defines the session factory and the `SessionDep` alias, `app/clients.py` two
module-level HTTP clients; the routers import both. Whether a helper opens its own session
(and so may run concurrently) is known only through the repository index.
"""

from __future__ import annotations

from collections.abc import Callable

from conftest import DB_PY, GitRepo, Triple, check_json, run_cli, write_app

MODELS = """
class User:
    id = 0


class Order:
    id = 0
"""

CLIENTS = """
import httpx

weather = httpx.AsyncClient(base_url="https://weather.example")
news = httpx.AsyncClient(base_url="https://news.example")
"""

DASHBOARD = """
import asyncio

from fastapi import APIRouter, Depends, WebSocket
from sqlalchemy import func, select

from app.clients import news, weather
from app.db import SessionDep, async_session
from app.models import Order, User

router = APIRouter()


async def load_users() -> list[User]:
    async with async_session() as session:
        return list(await session.scalars(select(User)))


async def load_orders() -> list[Order]:
    async with async_session() as session:
        return list(await session.scalars(select(Order)))


@router.get("/stats")
async def stats(session: SessionDep) -> dict[str, int]:
    users, orders = await asyncio.gather(  # one session, two tasks
        session.scalar(select(func.count(User.id))),
        session.scalar(select(func.count(Order.id))),
    )
    return {"users": users or 0, "orders": orders or 0}


@router.get("/overview")
async def overview() -> dict[str, int]:
    users = await load_users()  # own sessions
    orders = await load_orders()
    return {"users": len(users), "orders": len(orders)}


@router.get("/home/{city}")
async def home(city: str) -> dict[str, object]:
    forecast = await weather.get(f"/forecast/{city}")  # two clients
    headlines = await news.get(f"/headlines/{city}")
    return {"forecast": forecast.json(), "headlines": headlines.json()}


@router.get("/forecast/{city}")
async def forecast(city: str) -> dict[str, object]:
    today = await weather.get(f"/today/{city}")
    tomorrow = await weather.get(f"/tomorrow/{city}")
    return {"today": today.json(), "tomorrow": tomorrow.json()}


@router.get("/report")
async def report(session: SessionDep) -> dict[str, int]:
    users = await session.scalars(select(User))
    orders = await session.scalars(select(Order))
    return {"users": len(users.all()), "orders": len(orders.all())}


@router.get("/repositories/{user_id}")
async def repositories(
    user_id: int,
    users: UserRepository = Depends(get_users),
    orders: OrderRepository = Depends(get_orders),
) -> dict[str, object]:
    user = await users.get_user(user_id)
    recent = await orders.list_recent(user_id)
    return {"user": user, "orders": recent}


@router.websocket("/live")
async def live(websocket: WebSocket) -> None:
    await websocket.accept()
    data = await websocket.receive_json()
    await websocket.send_json(data)
"""

DASHBOARD_PATH = "app/routers/dashboard.py"


APP = {
    "app/db.py": DB_PY,
    "app/models.py": MODELS,
    "app/clients.py": CLIENTS,
    DASHBOARD_PATH: DASHBOARD,
}


def _run(repo: GitRepo, *args: str) -> set[Triple]:
    return check_json(repo, "--select", "AG2", *args).triples()


def _expected(repo: GitRepo) -> dict[str, Triple]:
    def at(needle: str) -> int:
        return repo.line_of(DASHBOARD_PATH, needle)

    return {
        "AG201": ("AG201", DASHBOARD_PATH, at("# one session, two tasks")),
        "AG202-own-sessions": ("AG202", DASHBOARD_PATH, at("# own sessions")),
        "AG202-clients": ("AG202", DASHBOARD_PATH, at("# two clients")),
    }


def test_whole_repository_with_the_index(app_repo: GitRepo) -> None:
    assert _run(app_repo, ".") == set(_expected(app_repo).values())


def test_without_the_index_only_what_one_file_shows_is_reported(app_repo: GitRepo) -> None:
    # Without app/db.py, `SessionDep` is not known to be a session (no AG201), and the helpers'
    # `async_session` is not known to be a factory, so they might share a session (no AG202).
    expected = _expected(app_repo)
    assert _run(app_repo, ".", "--no-index") == {expected["AG202-clients"]}


def test_ag202_message_and_related_lines(app_repo: GitRepo) -> None:
    result = run_cli(
        ["check", "--format", "json", "--select", "AG202", DASHBOARD_PATH],
        app_repo.path,
        env=app_repo.env,
    )
    by_line = {f["start_line"]: f for f in result.json()["findings"]}
    finding = by_line[app_repo.line_of(DASHBOARD_PATH, "# two clients")]
    assert finding["severity"] == "info"
    assert "`weather.get(...)` and `news.get(...)`" in finding["message"]
    assert "asyncio.gather" in finding["message"]
    second = app_repo.line_of(DASHBOARD_PATH, "headlines = await news.get(")
    assert [r["start_line"] for r in finding["related"]] == [second]


def test_pull_request_adding_the_second_call(make_repo: Callable[..., GitRepo]) -> None:
    """The first await is old and the second new: the related line keeps the finding."""
    repo = make_repo()
    write_app(repo, APP)
    path = "app/routers/weather.py"
    repo.write(
        path,
        """
        from fastapi import APIRouter

        from app.clients import news, weather

        router = APIRouter()


        @router.get("/city/{name}")
        async def city(name: str) -> dict[str, object]:
            forecast = await weather.get(f"/forecast/{name}")
            return {"forecast": forecast.json()}
        """,
    )
    base = repo.commit("base")
    repo.git("checkout", "-q", "-b", "feature")
    text = repo.read(path).replace(
        '    return {"forecast": forecast.json()}\n',
        '    headlines = await news.get(f"/headlines/{name}")\n'
        '    return {"forecast": forecast.json(), "headlines": headlines.json()}\n',
    )
    repo.write(path, text, dedent=False)
    repo.commit("add headlines")
    diff_path = repo.write_diff(base)
    result = run_cli(
        ["check", "--diff", str(diff_path), "--format", "json", "--select", "AG2"],
        repo.path,
        env=repo.env,
    )
    first = repo.line_of(path, "forecast = await weather.get(")
    assert result.triples() == {("AG202", path, first)}, result
