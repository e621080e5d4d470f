"""End to end: the locking rules (AG601, AG602) through the real CLI on a git repository.

The session factory and the `SessionDep` alias live in `app/db.py`; the routers and services
that take row locks import them, so which names are sessions is known only through the
repository index. `--no-index` keeps only what a single file shows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from conftest import GitRepo, Triple, check_json, db_py, run_cli, write_app

DB = db_py("postgresql+asyncpg://localhost/bank", expire_on_commit=False)

MODELS = """
class Account:
    id = 0
    balance = 0


class Hold:
    id = 0
    account_id = 0
"""

TRANSFERS = """
from fastapi import APIRouter
from sqlalchemy import select

from app.db import SessionDep
from app.models import Account

router = APIRouter()


@router.post("/transfers")
async def transfer(from_id: int, to_id: int, amount: int, session: SessionDep):
    source = await session.get(Account, from_id, with_for_update=True)
    target = await session.get(Account, to_id, with_for_update=True)  # unordered
    source.balance -= amount
    target.balance += amount
    await session.commit()
    return {"ok": True}


@router.post("/transfers/sorted")
async def transfer_sorted(from_id: int, to_id: int, amount: int, session: SessionDep):
    first_id, second_id = sorted([from_id, to_id])
    first = await session.get(Account, first_id, with_for_update=True)
    second = await session.get(Account, second_id, with_for_update=True)
    await session.commit()
    return {"ok": True, "ids": [first.id, second.id]}


@router.post("/accounts/freeze")
async def freeze(account_ids: list[int], session: SessionDep):
    stmt = select(Account).where(Account.id.in_(account_ids)).with_for_update()  # many rows
    rows = (await session.scalars(stmt)).all()
    await session.commit()
    return {"frozen": len(rows)}


@router.post("/accounts/freeze-ordered")
async def freeze_ordered(account_ids: list[int], session: SessionDep):
    stmt = (
        select(Account)
        .where(Account.id.in_(account_ids))
        .order_by(Account.id)
        .with_for_update()
    )
    rows = (await session.scalars(stmt)).all()
    await session.commit()
    return {"frozen": len(rows)}


@router.get("/accounts/{account_id}")
async def read_account(account_id: int, session: SessionDep):
    account = await session.get(Account, account_id, for_update=True)  # misspelt
    return {"balance": account.balance}
"""

HOLDS = """
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import async_session
from app.models import Account


async def place_holds(account_ids: list[int]) -> None:
    async with async_session() as session:
        for account_id in account_ids:
            await session.get(Account, account_id, with_for_update=True)  # caller order
        await session.commit()


async def place_holds_sorted(account_ids: list[int]) -> None:
    async with async_session() as session:
        for account_id in sorted(account_ids):
            await session.get(Account, account_id, with_for_update=True)
        await session.commit()


async def release(session: AsyncSession, hold_id: int) -> None:
    await session.get(Account, hold_id, lock=True)  # unknown keyword
"""

TRANSFERS_PATH = "app/routers/transfers.py"
HOLDS_PATH = "app/services/holds.py"


APP = {
    "app/db.py": DB,
    "app/models.py": MODELS,
    TRANSFERS_PATH: TRANSFERS,
    HOLDS_PATH: HOLDS,
}


def _run(repo: GitRepo, *args: str) -> set[Triple]:
    return check_json(repo, "--select", "AG6", *args).triples()


def _expected(repo: GitRepo) -> dict[str, Triple]:
    def at(path: str, needle: str) -> int:
        return repo.line_of(path, needle)

    return {
        "AG601-pair": ("AG601", TRANSFERS_PATH, at(TRANSFERS_PATH, "# unordered")),
        "AG601-many": ("AG601", TRANSFERS_PATH, at(TRANSFERS_PATH, "# many rows")),
        "AG601-loop": ("AG601", HOLDS_PATH, at(HOLDS_PATH, "# caller order")),
        "AG602-misspelt": ("AG602", TRANSFERS_PATH, at(TRANSFERS_PATH, "# misspelt")),
        "AG602-unknown": ("AG602", HOLDS_PATH, at(HOLDS_PATH, "# unknown keyword")),
    }


def test_whole_repository_with_the_index(app_repo: GitRepo) -> None:
    assert _run(app_repo, ".") == set(_expected(app_repo).values())


def test_without_the_index_only_what_one_file_shows_is_reported(app_repo: GitRepo) -> None:
    # `SessionDep` and `async_session` are defined in app/db.py: without the index the routers'
    # sessions are unknown. The multi-row select needs no session, and `release` annotates
    # its parameter with AsyncSession itself.
    expected = _expected(app_repo)
    assert _run(app_repo, ".", "--no-index") == {
        expected["AG601-many"],
        expected["AG602-unknown"],
    }


def test_fix_renames_the_misspelt_keyword_only(app_repo: GitRepo, tmp_path: Path) -> None:
    repo = app_repo.copy_to(tmp_path / "repo")
    result = run_cli(
        ["check", "--format", "json", "--select", "AG602", "--fix", "."], repo.path, env=repo.env
    )
    assert result.returncode == 1, result  # the unknown `lock=` keyword has no fix
    assert result.triples() == {_expected(repo)["AG602-unknown"]}
    fixed = repo.read(TRANSFERS_PATH)
    assert "await session.get(Account, account_id, with_for_update=True)  # misspelt" in fixed
    assert "for_update=True)  # misspelt" in fixed and ", for_update=" not in fixed
    assert repo.read(HOLDS_PATH) == app_repo.read(HOLDS_PATH)


def test_pull_request_adding_the_second_lock(make_repo: Callable[..., GitRepo]) -> None:
    """Only the second lock is new: the finding sits on it, its related line is the old lock."""
    repo = make_repo()
    write_app(repo, APP)
    repo.write(
        "app/routers/refunds.py",
        """
        from fastapi import APIRouter

        from app.db import SessionDep
        from app.models import Account

        router = APIRouter()


        @router.post("/refunds")
        async def refund(merchant_id: int, customer_id: int, session: SessionDep):
            merchant = await session.get(Account, merchant_id, with_for_update=True)
            merchant.balance -= 1
            await session.commit()
            return {"ok": True}
        """,
    )
    base = repo.commit("base")
    repo.git("checkout", "-q", "-b", "feature")
    path = "app/routers/refunds.py"
    text = repo.read(path).replace(
        "    merchant.balance -= 1\n",
        "    customer = await session.get(Account, customer_id, with_for_update=True)\n"
        "    merchant.balance -= 1\n"
        "    customer.balance += 1\n",
    )
    repo.write(path, text, dedent=False)
    repo.commit("credit the customer")
    diff_path = repo.write_diff(base)
    result = run_cli(
        ["check", "--diff", str(diff_path), "--format", "json", "--select", "AG6"],
        repo.path,
        env=repo.env,
    )
    second = repo.line_of(path, "customer = await session.get(")
    assert result.triples() == {("AG601", path, second)}, result
    (finding,) = result.json()["findings"]
    assert "deadlock detected" in finding["message"] and "`customer_id`" in finding["message"]
    first = repo.line_of(path, "merchant = await session.get(")
    assert [r["start_line"] for r in finding["related"]] == [first]
