"""Fixes end to end: `asyncguard check --fix` on real files, and the import helpers fixes use.

Every INVALID example of every rule that documents a `fixed` file is written to disk and fixed
by the real CLI; the result must be exactly that file and must still parse. The rest checks the
fix modes (`--diff-fixes`, safe-only `--fix`), shared import insertions, and how
`bot.fixes.ensure_import` spells a name and where it puts a new import.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import libcst as cst
import pytest
from conftest import CliResult, isolated_env, run_cli
from libcst.metadata import MetadataWrapper, PositionProvider

from bot.engine import apply_edits
from bot.facts import RepoFacts
from bot.findings import Edit, Span
from bot.fixes import ensure_from_import, ensure_import
from bot.registry import all_rules
from bot.rule import Invalid, Rule
from bot.semantics import Semantics
from bot.walker import walk


def _fixable() -> list[tuple[type[Rule], list[tuple[int, Invalid]]]]:
    found = []
    for rule in all_rules():
        examples = [(i, e) for i, e in enumerate(rule.INVALID) if e.fixed is not None]
        if examples:
            found.append((rule, examples))
    return found


FIXABLE = _fixable()


def _check(cwd: Path, *args: str) -> CliResult:
    result = run_cli(["check", "--no-index", "--exit-zero", *args], cwd, env=isolated_env(cwd))
    assert result.returncode == 0, result
    return result


def _write(root: Path, name: str, source: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(textwrap.dedent(source).lstrip("\n").encode("utf-8"))
    return path


@pytest.mark.parametrize(("rule", "examples"), FIXABLE, ids=[r.CODE for r, _ in FIXABLE])
def test_every_documented_fix_round_trips_through_the_cli(
    tmp_path: Path, rule: type[Rule], examples: list[tuple[int, Invalid]]
) -> None:
    # One directory per example, one CLI run per rule (the index is off, as in the examples).
    paths = {}
    for index, example in examples:
        target = tmp_path / f"example{index}" / example.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(example.source.encode("utf-8"))
        paths[index] = target
    _check(tmp_path, "--select", rule.CODE, "--fix", "--unsafe-fixes", ".")
    for index, example in examples:
        fixed = paths[index].read_bytes().decode("utf-8")
        assert fixed == example.fixed_source, f"{rule.CODE} INVALID[{index}]"
        ast.parse(fixed)


def test_diff_fixes_prints_a_unified_diff_and_writes_nothing(tmp_path: Path) -> None:
    source = """
    from sqlalchemy.ext.asyncio import AsyncSession

    async def rename(session: AsyncSession, user, name: str) -> None:
        user.name = name
        session.commit()
    """
    path = _write(tmp_path, "app/users.py", source)
    before = path.read_bytes()
    result = run_cli(
        ["check", "--no-index", "--select", "AG901", "--diff-fixes", "."],
        tmp_path,
        env=isolated_env(tmp_path),
    )
    assert result.returncode == 1, result  # there are fixes to apply
    assert result.stdout.startswith("--- a/app/users.py\n+++ b/app/users.py\n@@ "), result
    assert "-    session.commit()\n+    await session.commit()\n" in result.stdout
    assert path.read_bytes() == before


def test_safe_fix_mode_leaves_unsafe_fixes_unapplied(tmp_path: Path) -> None:
    source = """
    from sqlalchemy.ext.asyncio import AsyncSession

    async def can_edit(user) -> bool:
        return user.admin

    async def rename(session: AsyncSession, user, name: str) -> None:
        if not can_edit(user):
            return
        user.name = name
        session.commit()
    """
    path = _write(tmp_path, "app/users.py", source)
    result = _check(tmp_path, "--select", "AG901", "--fix", "--format", "json", ".")
    text = path.read_text(encoding="utf-8")
    assert "    await session.commit()\n" in text  # safe: applied
    assert "    if not can_edit(user):\n" in text  # unsafe: left for a person
    remaining = result.json()["findings"]
    assert [(f["code"], f["start_line"]) for f in remaining] == [("AG901", 7)]
    ast.parse(text)
    # With --unsafe-fixes the condition is fixed too.
    _check(tmp_path, "--select", "AG901", "--fix", "--unsafe-fixes", ".")
    assert "    if not await can_edit(user):\n" in path.read_text(encoding="utf-8")


def test_two_fixes_adding_the_same_import_add_it_once(tmp_path: Path) -> None:
    source = '''
    """Pollers."""
    import time


    async def poll_a() -> None:
        time.sleep(1)


    async def poll_b() -> None:
        time.sleep(2)
    '''
    path = _write(tmp_path, "app/poll.py", source)
    result = _check(tmp_path, "--select", "AG903", "--fix", "--format", "json", ".")
    assert result.json()["findings"] == []
    assert path.read_text(encoding="utf-8") == textwrap.dedent(
        '''
        """Pollers."""
        import time
        import asyncio


        async def poll_a() -> None:
            await asyncio.sleep(1)


        async def poll_b() -> None:
            await asyncio.sleep(2)
        '''
    ).lstrip("\n")


def test_fixes_of_different_rules_in_one_file_are_applied_together(tmp_path: Path) -> None:
    source = """
    import time
    from sqlalchemy.ext.asyncio import AsyncSession

    async def ping(session: AsyncSession) -> None:
        time.sleep(1)
        await session.execute("select 1")
        session.commit()
    """
    path = _write(tmp_path, "app/ping.py", source)
    first = _check(tmp_path, "--select", "AG9", "--fix", "--format", "json", ".")
    # Both fixes insert an import after `from sqlalchemy.ext.asyncio ...`: two different
    # insertions at one point are not ordered by guesswork, the second waits for the next run.
    assert [f["code"] for f in first.json()["findings"]] == ["AG904"]
    _check(tmp_path, "--select", "AG9", "--fix", ".")
    assert path.read_text(encoding="utf-8") == textwrap.dedent(
        """
        import time
        from sqlalchemy.ext.asyncio import AsyncSession
        import asyncio
        from sqlalchemy import text

        async def ping(session: AsyncSession) -> None:
            await asyncio.sleep(1)
            await session.execute(text("select 1"))
            await session.commit()
        """
    ).lstrip("\n")


# ---------------------------------------------------------------------- ensure_import
def _model(source: str) -> tuple[Semantics, cst.Module]:
    module = cst.parse_module(textwrap.dedent(source).lstrip("\n"))
    semantics = Semantics("app.example", RepoFacts(), module)
    walk(module, semantics.enter, semantics.leave)
    return semantics, module


def _inserted(module: cst.Module, insertion: tuple[cst.CSTNode, str, str] | None) -> str:
    """The module's code with the planned insertion applied, positioned as the engine does."""
    assert insertion is not None
    node, text, where = insertion
    positions = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    point = positions[node].start if where == "before" else positions[node].end
    edit = Edit(Span(point.line, point.column + 1, point.line, point.column + 1), text)
    return apply_edits(module.code, [edit])


@pytest.mark.parametrize(
    ("source", "spelling"),
    [
        pytest.param("import asyncio as aio\n", "aio.sleep", id="module-alias"),
        pytest.param("from asyncio import sleep\n", "sleep", id="from-import"),
        pytest.param("from asyncio import sleep as asleep\n", "asleep", id="aliased-from-import"),
    ],
)
def test_ensure_import_reuses_an_existing_import(source: str, spelling: str) -> None:
    semantics, module = _model(source)
    plan = ensure_import(semantics, module, "asyncio.sleep")
    assert (plan.spelling, plan.insertion) == (spelling, None)


@pytest.mark.parametrize(
    ("source", "fixed"),
    [
        pytest.param(
            "import os\nfrom time import sleep\n\nVALUE = 1\n",
            "import os\nfrom time import sleep\nimport asyncio\n\nVALUE = 1\n",
            id="after-the-last-import",
        ),
        pytest.param(
            '"""Module docs."""\n\nVALUE = 1\n',
            '"""Module docs."""\nimport asyncio\n\nVALUE = 1\n',
            id="after-a-docstring",
        ),
        pytest.param("VALUE = 1\n", "import asyncio\nVALUE = 1\n", id="at-the-top"),
    ],
)
def test_ensure_import_adds_the_import(source: str, fixed: str) -> None:
    semantics, module = _model(source)
    plan = ensure_import(semantics, module, "asyncio.sleep")
    assert plan.spelling == "asyncio.sleep"
    assert _inserted(module, plan.insertion) == fixed
    cst.parse_module(fixed)


def test_ensure_from_import_spellings() -> None:
    semantics, module = _model("import sqlalchemy as sa\n")
    assert ensure_from_import(semantics, module, "sqlalchemy", "text").spelling == "sa.text"
    semantics, module = _model("from sqlalchemy import text as sql_text\n")
    plan = ensure_from_import(semantics, module, "sqlalchemy", "text")
    assert (plan.spelling, plan.insertion) == ("sql_text", None)
    semantics, module = _model("import os\n")
    plan = ensure_from_import(semantics, module, "sqlalchemy", "text")
    assert plan.spelling == "text"
    assert _inserted(module, plan.insertion) == "import os\nfrom sqlalchemy import text\n"
