"""End to end: the transaction rules (AG301-AG304) through the real CLI on a git repository.

The session factory lives in `app/db.py` and the code that uses it in other files, so the
factory, the `SessionDep` alias and the factory's `expire_on_commit` setting are only known
through the repository index: `--no-index` must make the rules that depend on them go quiet.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from conftest import DB_PY, GitRepo, Triple, check_json, run_cli, write_app

MODELS = """
class Order:
    id = 0
    name = ""
    status = ""


class Audit:
    order_id = 0


class Invoice:
    id = 0
    open = True
    void = False
"""

ORDERS = """
from fastapi import APIRouter, Depends
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import SessionDep, get_session
from app.models import Audit, Order

router = APIRouter()


@router.post("/orders")
async def create_order(payload: dict, session: SessionDep):
    order = Order(**payload)
    session.add(order)
    await session.commit()
    return {"id": order.id}  # expired


@router.post("/orders/flushed")
async def create_order_flushed(payload: dict, session: SessionDep):
    order = Order(**payload)
    session.add(order)
    await session.flush()
    order_id = order.id
    await session.commit()
    return {"id": order_id}


@router.patch("/orders/{order_id}")
async def rename_order(
    order_id: int, name: str, session: AsyncSession = Depends(get_session)
):
    order = await session.get(Order, order_id)
    async with session.begin():  # already begun
        order.name = name
    return {"ok": True}


@router.post("/orders/{order_id}/confirm")
async def confirm_order(order_id: int, session: SessionDep):
    async with session.begin():
        order = await session.get(Order, order_id)
        order.status = "confirmed"
        await session.commit()  # then more work
        session.add(Audit(order_id=order_id))
    return {"ok": True}


@router.post("/orders/{order_id}/cancel")
async def cancel_order(order_id: int, session: SessionDep):
    async with session.begin():
        order = await session.get(Order, order_id)
        if order is None:
            await session.rollback()
            raise LookupError(order_id)
        order.status = "cancelled"
    return {"ok": True}


@router.get("/orders/{order_id}")
async def read_order(order_id: int, session: SessionDep):
    order = await session.get(Order, order_id)
    order.status = "seen"
    await session.commit()
    await session.refresh(order)
    return order
"""

BILLING = """
from sqlalchemy import update as sa_update

from app.db import async_session
from app.models import Invoice


async def close_invoices(ids: list[int]) -> None:
    async with async_session() as session:
        await session.execute(sa_update(Invoice).where(Invoice.id.in_(ids)).values(open=False))


async def open_invoice(customer_id: int) -> None:
    async with async_session.begin() as session:
        session.add(Invoice(customer_id=customer_id))


async def import_invoices(rows: list[dict]) -> None:
    async with async_session.begin() as session:
        session.add_all([Invoice(**row) for row in rows])
        await session.commit()
        await session.execute(sa_update(Invoice).values(open=True))


async def void_invoice(invoice_id: int) -> None:
    async with async_session() as session:
        invoice = await session.get(Invoice, invoice_id)
        invoice.void = True
        await session.commit()
"""

PROFILE_BASE = """
from fastapi import APIRouter

from app.db import SessionDep
from app.models import Order

router = APIRouter()


@router.post("/profile/{order_id}/touch")
async def touch(order_id: int, session: SessionDep):
    order = await session.get(Order, order_id)
    order.status = "touched"
    return {"name": order.name}
"""

ORDERS_PATH = "app/routers/orders.py"
BILLING_PATH = "app/services/billing.py"
PROFILE_PATH = "app/routers/profile.py"


APP = {
    "app/db.py": DB_PY,
    "app/models.py": MODELS,
    ORDERS_PATH: ORDERS,
    BILLING_PATH: BILLING,
}


def _check(repo: GitRepo, *args: str) -> set[Triple]:
    return check_json(repo, "--select", "AG3", *args).triples()


def _expected(repo: GitRepo) -> dict[str, Triple]:
    def at(path: str, needle: str) -> int:
        return repo.line_of(path, needle)

    return {
        "AG301-endpoint": ("AG301", ORDERS_PATH, at(ORDERS_PATH, "# then more work")),
        "AG301-factory-begin": (
            "AG301",
            BILLING_PATH,
            repo.line_of(BILLING_PATH, "await session.commit()"),
        ),
        "AG302": ("AG302", ORDERS_PATH, at(ORDERS_PATH, "# already begun")),
        "AG303": ("AG303", ORDERS_PATH, at(ORDERS_PATH, "# expired")),
        "AG304": (
            "AG304",
            BILLING_PATH,
            at(BILLING_PATH, "await session.execute(sa_update(Invoice).where"),
        ),
    }


def test_whole_repository_with_the_index(app_repo: GitRepo) -> None:
    assert _check(app_repo, ".") == set(_expected(app_repo).values())


def test_without_the_index_only_what_one_file_shows_is_reported(app_repo: GitRepo) -> None:
    # The factory, the SessionDep alias and expire_on_commit all live in app/db.py: without the
    # index only the endpoint whose parameter is annotated AsyncSession is still understood.
    assert _check(app_repo, ".", "--no-index") == {_expected(app_repo)["AG302"]}


def test_expire_on_commit_false_anywhere_silences_ag303(app_repo: GitRepo, tmp_path: Path) -> None:
    repo = app_repo.copy_to(tmp_path / "repo")
    repo.write(
        "app/reports_db.py",
        """
        from sqlalchemy.ext.asyncio import async_sessionmaker

        from app.db import engine

        reports_session = async_sessionmaker(engine, expire_on_commit=False)
        """,
    )
    expected = _expected(repo)
    del expected["AG303"]
    assert _check(repo, ".") == set(expected.values())
    # The same through config, with the repository's factories left as they are.
    repo.remove("app/reports_db.py")
    repo.write(".asyncguard.toml", "expire-on-commit = false\n")
    assert _check(repo, ".") == set(expected.values())


def test_pull_request_adding_a_commit_reports_the_existing_read(
    make_repo: Callable[..., GitRepo],
) -> None:
    """The PR adds only the commit: the finding's primary line (the read) is old, its related
    line (the commit) is new, so the default `added` filter keeps it."""
    repo = make_repo()
    write_app(repo, {**APP, PROFILE_PATH: PROFILE_BASE})
    base = repo.commit("base")
    repo.git("checkout", "-q", "-b", "feature")
    text = repo.read(PROFILE_PATH).replace(
        '    order.status = "touched"\n',
        '    order.status = "touched"\n    await session.commit()\n',
    )
    repo.write(PROFILE_PATH, text, dedent=False)
    repo.commit("commit the touch")
    diff_path = repo.write_diff(base)
    result = run_cli(
        ["check", "--diff", str(diff_path), "--format", "json", "--select", "AG3"],
        repo.path,
        env=repo.env,
    )
    read_line = repo.line_of(PROFILE_PATH, 'return {"name": order.name}')
    assert result.triples() == {("AG303", PROFILE_PATH, read_line)}, result
    (finding,) = result.json()["findings"]
    assert "MissingGreenlet" in finding["message"] and "`order.name`" in finding["message"]
    commit_line = repo.line_of(PROFILE_PATH, "await session.commit()")
    assert [r["start_line"] for r in finding["related"]] == [commit_line]
