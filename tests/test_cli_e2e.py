"""End to end: the real `asyncguard` CLI (`python -m bot`) on real git repositories.

Every test builds (or copies) a git repository, makes a pull-request-like change, produces the
diff with `git diff -M`, runs the CLI as a subprocess and compares the exact findings as
(code, path, line) triples.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    JSON_FINDING_KEYS,
    CliResult,
    GitRepo,
    Triple,
    db_py,
    findings_of,
    run_cli,
    write_app,
)

from bot import __version__
from bot.registry import rule_infos

# --- the pull-request repository ---------------------------------------------------------------

DB = db_py(typed=False, session_dep=False)

MODELS = """
class User:
    id = 0
    name = ""


class Order:
    id = 0
"""

USERS_BASE = """
import asyncio

from fastapi import APIRouter, Depends
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import async_session, get_session
from app.models import Order, User

router = APIRouter()


async def audit(event: str) -> None:
    await asyncio.sleep(0)


@router.get("/ping")
async def ping() -> dict[str, str]:
    asyncio.create_task(audit("ping"))
    return {"status": "ok"}


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/users")
async def list_users(session: AsyncSession = Depends(get_session)) -> list[str]:
    rows = await session.scalars(select(User.name))
    asyncio.ensure_future(audit("users"))
    return list(rows)
"""

USERS_ADDED = """

@router.get("/stats")
async def stats() -> dict[str, int]:
    async with async_session() as session:
        users, orders = await asyncio.gather(
            session.scalar(select(func.count(User.id))),
            session.scalar(select(func.count(Order.id))),
        )
    asyncio.create_task(audit("stats"))
    return {"users": users or 0, "orders": orders or 0}
"""

JOBS_BASE = (
    "import asyncio\n\n\nasync def nightly() -> None:\n    asyncio.create_task(step_0())\n"
    + "".join(
        f'\n\nasync def step_{i}() -> int:\n    """Step {i} of the nightly job."""\n'
        f"    await asyncio.sleep(0)\n    return {i}\n"
        for i in range(6)
    )
)

JOBS_ADDED = """

async def kick() -> None:
    asyncio.ensure_future(step_1())
"""

LEGACY = """
import asyncio


async def warm_up() -> None:
    await asyncio.sleep(0)


async def start() -> None:
    asyncio.create_task(warm_up())
"""

OBSOLETE = """
from app.db import async_session

old_session = async_session()
"""

UNTOUCHED = """
from app.db import async_session

shared_session = async_session()
"""

CACHE = """
from app.db import async_session

# A session for the whole process, shared by every request.
cache_session = async_session()


async def cached_user_count() -> int:
    return 0
"""


@dataclass(frozen=True)
class PullRequest:
    repo: GitRepo
    diff_path: Path
    diff: bytes
    base: str
    head: str
    # Results by command line, for a repository no test changes (the module-scoped one).
    cache: dict[tuple[str, ...], CliResult] | None = None

    def run(self, *args: str, stdin: bytes | None = None, cwd: Path | None = None) -> CliResult:
        if self.cache is None or stdin is not None or cwd is not None:
            return run_cli(list(args), cwd or self.repo.path, env=self.repo.env, stdin=stdin)
        if args not in self.cache:
            self.cache[args] = run_cli(list(args), self.repo.path, env=self.repo.env)
        return self.cache[args]

    def check(self, *args: str) -> CliResult:
        """`check --diff PR.diff --format json ARGS`."""
        return self.run("check", "--diff", str(self.diff_path), "--format", "json", *args)

    def line(self, path: str, needle: str, occurrence: int = 1) -> int:
        return self.repo.line_of(path, needle, occurrence)


def build_pull_request(repo: GitRepo, diff_path: Path) -> PullRequest:
    """The shared scenario: one commit on `main`, one on `feature`, the feature checked out.

    The change adds app/cache.py (AG101), appends an endpoint to app/routers/users.py with a
    gather over one session (AG201) and a fire-and-forget task (AG501), renames app/jobs.py to
    app/tasks/nightly.py with an edit (AG501 in the new lines), renames app/legacy.py without
    edits (it holds an old AG501), deletes app/obsolete.py and leaves app/untouched.py (an old
    AG101) alone. users.py also holds two old AG501: one on a context line of the hunk, one far
    from it; app/jobs.py one far from its hunk.
    """
    write_app(
        repo,
        {
            "app/db.py": DB,
            "app/models.py": MODELS,
            "app/routers/users.py": USERS_BASE,
            "app/jobs.py": JOBS_BASE,
            "app/legacy.py": LEGACY,
            "app/obsolete.py": OBSOLETE,
            "app/untouched.py": UNTOUCHED,
        },
    )
    base = repo.commit("base")
    repo.git("checkout", "-q", "-b", "feature")
    repo.write("app/cache.py", CACHE)
    repo.write("app/routers/users.py", repo.read("app/routers/users.py") + USERS_ADDED)
    repo.rename("app/jobs.py", "app/tasks/nightly.py")
    repo.write("app/tasks/__init__.py", "")
    repo.write("app/tasks/nightly.py", repo.read("app/tasks/nightly.py") + JOBS_ADDED)
    repo.rename("app/legacy.py", "app/legacy_tasks.py")
    repo.remove("app/obsolete.py")
    head = repo.commit("pull request")
    diff = repo.diff(base, head)
    diff_path.write_bytes(diff)
    return PullRequest(repo, diff_path, diff, base, head)


@pytest.fixture(scope="module")
def pr(tmp_path_factory: pytest.TempPathFactory, git_home: Path) -> PullRequest:
    where = tmp_path_factory.mktemp("pr")
    built = build_pull_request(GitRepo(where / "repo", git_home), where / "pr.diff")
    return replace(built, cache={})


@pytest.fixture
def pr_copy(pr: PullRequest, tmp_path: Path) -> PullRequest:
    """A private copy of the scenario, for tests that add config files to the checkout."""
    return replace(pr, repo=pr.repo.copy_to(tmp_path / "repo"), cache=None)


# The expected findings, by line content (the line numbers are computed, then compared exactly).
def expected_at(code: str, path: str, needle: str) -> Callable[[PullRequest], Triple]:
    """The finding `code` on the line of `path` that holds `needle`, in a given pull request."""

    def at(pr: PullRequest) -> Triple:
        return (code, path, pr.line(path, needle))

    return at


USERS_PATH = "app/routers/users.py"
NIGHTLY_PATH = "app/tasks/nightly.py"
cache_session = expected_at("AG101", "app/cache.py", "cache_session = async_session()")
new_gather = expected_at("AG201", USERS_PATH, "asyncio.gather(")
new_task = expected_at("AG501", USERS_PATH, 'asyncio.create_task(audit("stats"))')
renamed_edit = expected_at("AG501", NIGHTLY_PATH, "asyncio.ensure_future(step_1())")
old_context_task = expected_at("AG501", USERS_PATH, 'asyncio.ensure_future(audit("users"))')
old_far_task = expected_at("AG501", USERS_PATH, 'asyncio.create_task(audit("ping"))')
old_renamed_task = expected_at("AG501", NIGHTLY_PATH, "asyncio.create_task(step_0())")
old_pure_rename = expected_at("AG501", "app/legacy_tasks.py", "asyncio.create_task(warm_up())")
untouched = expected_at("AG101", "app/untouched.py", "shared_session = ")


def added_set(pr: PullRequest) -> set[Triple]:
    return {cache_session(pr), new_gather(pr), new_task(pr), renamed_edit(pr)}


def context_set(pr: PullRequest) -> set[Triple]:
    return added_set(pr) | {old_context_task(pr)}


def file_set(pr: PullRequest) -> set[Triple]:
    return context_set(pr) | {old_far_task(pr), old_renamed_task(pr), old_pure_rename(pr)}


EXPECTED = {
    "added": added_set,
    "diff_context": context_set,
    "file": file_set,
    "nofilter": file_set,
}


# --- the scenario itself ----------------------------------------------------------------------


def test_scenario_diff_has_the_intended_shape(pr: PullRequest) -> None:
    text = pr.diff.decode()
    assert "rename from app/jobs.py\nrename to app/tasks/nightly.py\n" in text
    assert (
        "similarity index 100%\nrename from app/legacy.py\nrename to app/legacy_tasks.py\n" in text
    )
    assert "deleted file mode" in text and "+++ /dev/null" in text
    assert "app/untouched.py" not in text
    # Exact line numbers, so that the computed expectations cannot drift unnoticed.
    assert cache_session(pr) == ("AG101", "app/cache.py", 4)
    assert new_gather(pr)[2] == 38 and new_task(pr)[2] == 42
    assert old_context_task(pr)[2] == 31 and old_far_task(pr)[2] == 19
    assert renamed_edit(pr)[2] == 45 and old_renamed_task(pr)[2] == 5


def test_added_mode_is_the_default_and_reports_exactly_the_new_bugs(pr: PullRequest) -> None:
    result = pr.check()
    assert result.returncode == 1, result
    assert result.stderr == ""
    assert result.triples() == added_set(pr)
    assert result.notes() == []


def test_renamed_file_with_edits_is_reported_under_the_new_path(pr: PullRequest) -> None:
    result = pr.check()
    paths = {path for _, path, _ in result.triples()}
    assert "app/tasks/nightly.py" in paths
    assert "app/jobs.py" not in paths
    # The old bug that came along with the rename is not on an added line.
    assert old_renamed_task(pr) not in result.triples()


def test_pure_rename_deleted_and_untouched_files_are_not_reported(pr: PullRequest) -> None:
    result = pr.check()
    paths = {path for _, path, _ in result.triples()}
    assert not paths & {"app/legacy_tasks.py", "app/legacy.py", "app/obsolete.py"}
    assert "app/untouched.py" not in paths
    assert result.stderr == ""
    assert result.notes() == []  # the deleted file is ignored, not skipped with a note


@pytest.mark.parametrize("mode", list(EXPECTED))
def test_filter_mode_flag(pr: PullRequest, mode: str) -> None:
    result = pr.check("--filter-mode", mode)
    assert result.returncode == 1, result
    assert result.triples() == EXPECTED[mode](pr)
    # With --diff only the diff's files are analysed: an untouched file is never reported.
    assert untouched(pr) not in result.triples()


def test_diff_context_keeps_context_lines_of_a_hunk_only(pr: PullRequest) -> None:
    result = pr.check("--filter-mode", "diff_context")
    assert old_context_task(pr) in result.triples()  # line 31: context line of @@ +30,13 @@
    assert old_far_task(pr) not in result.triples()  # line 19: outside every hunk
    assert old_renamed_task(pr) not in result.triples()
    assert old_pure_rename(pr) not in result.triples()  # a pure rename has no hunk


@pytest.mark.parametrize("mode", list(EXPECTED))
def test_filter_mode_from_asyncguard_toml(pr_copy: PullRequest, mode: str) -> None:
    pr_copy.repo.write(".asyncguard.toml", f'filter-mode = "{mode}"\n')
    result = pr_copy.check()
    assert result.returncode == 1, result
    assert result.triples() == EXPECTED[mode](pr_copy)


def test_filter_mode_from_pyproject_and_the_flag_wins(pr_copy: PullRequest) -> None:
    pr_copy.repo.write("pyproject.toml", '[tool.asyncguard]\nfilter-mode = "file"\n')
    assert pr_copy.check().triples() == file_set(pr_copy)
    assert pr_copy.check("--filter-mode", "added").triples() == added_set(pr_copy)


def test_paths_restrict_a_diff(pr: PullRequest) -> None:
    expected = {new_gather(pr), new_task(pr)}
    assert pr.check("app/routers").triples() == expected
    assert pr.check("./app/routers/").triples() == expected
    assert pr.check("app/routers/users.py").triples() == expected
    assert pr.check("app/cache.py", "app/tasks").triples() == {
        cache_session(pr),
        renamed_edit(pr),
    }


def test_absolute_paths_restrict_a_diff(pr: PullRequest) -> None:
    result = pr.check(str(pr.repo.path / "app" / "routers"))
    assert result.triples() == {new_gather(pr), new_task(pr)}, result


def test_session_factory_comes_from_the_unchanged_db_module(pr_copy: PullRequest) -> None:
    """app/db.py is not in the diff: only the repository index knows `async_session`."""
    assert pr_copy.check("--no-index").triples() == {new_task(pr_copy), renamed_edit(pr_copy)}
    pr_copy.repo.write(".asyncguard.toml", 'session-factories = ["app.db.async_session"]\n')
    assert pr_copy.check("--no-index").triples() == added_set(pr_copy)


# --- formats ----------------------------------------------------------------------------------


def test_json_structure(pr: PullRequest) -> None:
    document = pr.check().json()
    assert list(document) == ["version", "findings", "notes", "summary"]
    assert document["version"] == __version__
    assert document["summary"] == {
        "findings": 4,
        "error": 2,
        "warning": 2,
        "info": 0,
        "files_checked": 5,
        "notes": 0,
    }
    by_code = {(f["code"], f["path"]): f for f in document["findings"]}
    gather = by_code[("AG201", "app/routers/users.py")]
    assert list(gather) == JSON_FINDING_KEYS
    assert gather["name"] == "shared-session-concurrency"
    assert gather["severity"] == "error"
    assert (gather["start_line"], gather["end_line"]) == (38, 41)
    assert gather["start_col"] == 31
    assert gather["section"] == "Pattern: Concurrent vs Sequential Queries"
    assert re.fullmatch(r"[0-9a-f]{20}", gather["fingerprint"])
    assert [(r["path"], r["start_line"]) for r in gather["related"]] == [
        ("app/routers/users.py", 39),
        ("app/routers/users.py", 40),
    ]
    assert "`session`" in gather["message"]
    task = by_code[("AG501", "app/routers/users.py")]
    assert (task["name"], task["severity"], task["related"]) == ("unreferenced-task", "warning", [])
    # Sorted by path, then line.
    order = [(f["path"], f["start_line"]) for f in document["findings"]]
    assert order == sorted(order)


def test_text_format(pr: PullRequest) -> None:
    result = pr.run("check", "--diff", str(pr.diff_path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    records = [line for line in lines if re.match(r"^\S+\.py:\d+:\d+: ", line)]
    assert [line.split(" [")[0] for line in records] == [
        "app/cache.py:4:1: AG101",
        "app/routers/users.py:38:31: AG201",
        "app/routers/users.py:42:5: AG501",
        "app/tasks/nightly.py:45:5: AG501",
    ]
    assert "    app/routers/users.py:39:13: note: uses `session`" in lines
    assert lines[-1] == "Found 4 findings (2 errors, 2 warnings, 0 info) in 5 files."
    assert "\x1b[" not in result.stdout  # not a terminal: no colour


def test_github_format(pr: PullRequest) -> None:
    result = pr.run("check", "--diff", str(pr.diff_path), "--format", "github")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    heads = [line.split("::")[1] for line in lines]
    assert heads == [
        "error file=app/cache.py,line=4,col=1,endLine=4,endColumn=32,title=AG101 global-session",
        # A multi-line span carries no columns (the runner rejects them).
        "error file=app/routers/users.py,line=38,endLine=41,title=AG201 shared-session-concurrency",
        "warning file=app/routers/users.py,line=42,col=5,endLine=42,endColumn=40,"
        "title=AG501 unreferenced-task",
        "warning file=app/tasks/nightly.py,line=45,col=5,endLine=45,endColumn=36,"
        "title=AG501 unreferenced-task",
    ]
    # The related lines go into the (escaped, single-line) message.
    assert "%0Auses `session` (see line 39)%0Auses `session` (see line 40)" in lines[1]


def test_sarif_output_is_valid_and_exact(pr: PullRequest, sarif_schema: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    result = pr.run("check", "--diff", str(pr.diff_path), "--format", "sarif")
    assert result.returncode == 1, result
    log = json.loads(result.stdout)
    jsonschema.validate(log, sarif_schema)
    assert log["version"] == "2.1.0"
    (run,) = log["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert [rule["id"] for rule in rules] == [info.code for info in rule_infos()]
    results = run["results"]

    def where(item: dict[str, Any]) -> tuple[str, str, str, int]:
        physical = item["locations"][0]["physicalLocation"]
        return (
            item["ruleId"],
            item["level"],
            physical["artifactLocation"]["uri"],
            physical["region"]["startLine"],
        )

    assert sorted(where(item) for item in results) == [
        ("AG101", "error", "app/cache.py", 4),
        ("AG201", "error", "app/routers/users.py", 38),
        ("AG501", "warning", "app/routers/users.py", 42),
        ("AG501", "warning", "app/tasks/nightly.py", 45),
    ]
    for item in results:
        assert rules[item["ruleIndex"]]["id"] == item["ruleId"]
        assert item["locations"][0]["physicalLocation"]["artifactLocation"]["uriBaseId"] == (
            "%SRCROOT%"
        )
        assert item["partialFingerprints"]
    (gather,) = [item for item in results if item["ruleId"] == "AG201"]
    related = gather["relatedLocations"]
    assert [
        (
            loc["physicalLocation"]["artifactLocation"]["uri"],
            loc["physicalLocation"]["region"]["startLine"],
        )
        for loc in related
    ] == [("app/routers/users.py", 39), ("app/routers/users.py", 40)]
    assert gather["locations"][0]["physicalLocation"]["region"]["endLine"] == 41
    assert all("relatedLocations" not in item for item in results if item["ruleId"] != "AG201")


def test_sarif_level_follows_configured_severity(
    pr_copy: PullRequest, sarif_schema: dict[str, Any]
) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    pr_copy.repo.write(".asyncguard.toml", '[severity]\nAG201 = "warning"\nAG501 = "info"\n')
    result = pr_copy.run("check", "--diff", str(pr_copy.diff_path), "--format", "sarif")
    log = json.loads(result.stdout)
    jsonschema.validate(log, sarif_schema)
    levels = {(r["ruleId"], r["level"]) for r in log["runs"][0]["results"]}
    assert levels == {("AG101", "error"), ("AG201", "warning"), ("AG501", "note")}


def test_output_file(pr: PullRequest, tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    result = pr.run("check", "--diff", str(pr.diff_path), "--format", "json", "-o", str(target))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == ""
    assert findings_of(json.loads(target.read_text(encoding="utf-8"))) == added_set(pr)
    assert target.read_text(encoding="utf-8") == pr.check().stdout


def test_diff_from_stdin(pr: PullRequest) -> None:
    result = pr.run("check", "--diff", "-", "--format", "json", stdin=pr.diff)
    assert result.returncode == 1, result
    assert result.triples() == added_set(pr)


def test_format_patch_from_stdin(pr: PullRequest) -> None:
    """`git format-patch` output: mail headers before the diff, a `-- ` signature after it."""
    patch = pr.repo.git_bytes("format-patch", "-M", "--stdout", f"{pr.base}..{pr.head}")
    assert patch.startswith(b"From ") and b"\n-- \n" in patch
    result = pr.run("check", "--diff", "-", "--format", "json", stdin=patch)
    assert result.returncode == 1, result
    assert result.triples() == added_set(pr)


def test_fingerprints_survive_lines_moving(pr_copy: PullRequest) -> None:
    before = {(f["code"], f["path"]): f["fingerprint"] for f in pr_copy.check().json()["findings"]}
    users = "app/routers/users.py"
    pr_copy.repo.write(users, '"""The users API."""\n\n' + pr_copy.repo.read(users), dedent=False)
    after = pr_copy.run("check", users, "--format", "json").json()["findings"]
    moved = {(f["code"], f["path"]): (f["fingerprint"], f["start_line"]) for f in after}
    assert moved[("AG201", users)] == (before[("AG201", users)], new_gather(pr_copy)[2])
    assert new_gather(pr_copy)[2] == 40  # two lines lower than in the pull request


# --- exit codes and rule selection ------------------------------------------------------------


@pytest.mark.parametrize(
    ("fail_on", "expected"), [("error", 1), ("warning", 1), ("info", 1), ("never", 0)]
)
def test_exit_code_with_errors_per_fail_on(pr: PullRequest, fail_on: str, expected: int) -> None:
    result = pr.check("--fail-on", fail_on)
    assert result.returncode == expected, result
    assert result.triples() == added_set(pr)  # fail-on never changes what is reported


@pytest.mark.parametrize(
    ("fail_on", "expected"), [("error", 0), ("warning", 1), ("info", 1), ("never", 0)]
)
def test_exit_code_with_warnings_only(pr: PullRequest, fail_on: str, expected: int) -> None:
    result = pr.check("--select", "AG5", "--fail-on", fail_on)
    assert result.returncode == expected, result
    assert result.triples() == {new_task(pr), renamed_edit(pr)}


def test_exit_code_zero_without_findings(pr: PullRequest) -> None:
    result = pr.check("--ignore", "AG")
    assert result.returncode == 0, result
    assert result.triples() == set()


@pytest.mark.parametrize(("fail_on", "expected"), [("error", 0), ("warning", 1), ("never", 0)])
def test_fail_on_from_config(pr_copy: PullRequest, fail_on: str, expected: int) -> None:
    pr_copy.repo.write(".asyncguard.toml", f'fail-on = "{fail_on}"\nselect = ["AG501"]\n')
    result = pr_copy.check()
    assert result.returncode == expected, result
    assert result.triples() == {new_task(pr_copy), renamed_edit(pr_copy)}


def test_select_prefix_flag(pr: PullRequest) -> None:
    assert pr.check("--select", "AG5").triples() == {new_task(pr), renamed_edit(pr)}
    assert pr.check("--select", "AG1,AG2").triples() == {cache_session(pr), new_gather(pr)}
    assert pr.check("--select", "global-session").triples() == {cache_session(pr)}
    assert pr.check("--ignore", "AG501").triples() == {cache_session(pr), new_gather(pr)}


# --- config -----------------------------------------------------------------------------------


def test_severity_downgrade_changes_the_exit_code(pr_copy: PullRequest) -> None:
    pr_copy.repo.write(".asyncguard.toml", 'fail-on = "error"\n[severity]\nAG201 = "warning"\n')
    result = pr_copy.check("--select", "AG2,AG5")
    assert result.triples() == {new_gather(pr_copy), new_task(pr_copy), renamed_edit(pr_copy)}
    assert {f["severity"] for f in result.json()["findings"]} == {"warning"}
    assert result.returncode == 0, result  # fail-on "error" by default: nothing fails now
    pr_copy.repo.write(".asyncguard.toml", 'fail-on = "error"\n[severity]\nAG201 = "error"\n')
    assert pr_copy.check("--select", "AG2,AG5").returncode == 1
    pr_copy.repo.write(".asyncguard.toml", 'fail-on = "warning"\n[severity]\nAG201 = "warning"\n')
    assert pr_copy.check("--select", "AG2,AG5").returncode == 1


def test_severity_by_rule_name_and_off(pr_copy: PullRequest) -> None:
    pr_copy.repo.write(
        ".asyncguard.toml",
        'fail-on = "error"\n[severity]\nunreferenced-task = "error"\nAG101 = "off"\nAG201 = "off"\n',
    )
    result = pr_copy.check()
    assert result.triples() == {new_task(pr_copy), renamed_edit(pr_copy)}
    assert {f["severity"] for f in result.json()["findings"]} == {"error"}
    assert result.returncode == 1


def test_config_ignore(pr_copy: PullRequest) -> None:
    pr_copy.repo.write(".asyncguard.toml", 'ignore = ["AG501", "global-session"]\n')
    assert pr_copy.check().triples() == {new_gather(pr_copy)}


def test_config_exclude(pr_copy: PullRequest) -> None:
    pr_copy.repo.write(".asyncguard.toml", 'exclude = ["app/tasks/**", "cache.py"]\n')
    assert pr_copy.check().triples() == {new_gather(pr_copy), new_task(pr_copy)}


def test_pyproject_tool_table(pr_copy: PullRequest) -> None:
    pr_copy.repo.write(
        "pyproject.toml",
        '[project]\nname = "x"\n\n[tool.asyncguard]\nselect = ["AG2"]\nfail-on = "never"\n',
    )
    result = pr_copy.check()
    assert result.triples() == {new_gather(pr_copy)}
    assert result.returncode == 0


def test_asyncguard_toml_wins_over_pyproject(pr_copy: PullRequest) -> None:
    pr_copy.repo.write("pyproject.toml", '[tool.asyncguard]\nselect = ["AG2"]\n')
    pr_copy.repo.write(".asyncguard.toml", 'select = ["AG1"]\n')
    assert pr_copy.check().triples() == {cache_session(pr_copy)}


def test_explicit_config_file(pr: PullRequest, tmp_path: Path) -> None:
    config = tmp_path / "strict.toml"
    config.write_text('select = ["AG101"]\n', encoding="utf-8")
    assert pr.check("--config", str(config)).triples() == {cache_session(pr)}


def test_per_file_ignores(make_repo: Callable[..., GitRepo]) -> None:
    repo = make_repo()
    repo.write("README.md", "x\n")
    base = repo.commit("base")
    task = "import asyncio\n\n\nasync def go() -> None:\n    asyncio.create_task(go())\n"
    repo.write("tests/test_go.py", task)
    repo.write("tests/unit/test_deep.py", task)
    repo.write("app/go.py", task)
    repo.write(".asyncguard.toml", '[per-file-ignores]\n"tests/**" = ["AG501"]\n')
    repo.commit("pr")
    diff_path = repo.write_diff(base)
    result = run_cli(
        ["check", "--diff", str(diff_path), "--format", "json"], repo.path, env=repo.env
    )
    assert result.triples() == {("AG501", "app/go.py", 5)}, result


# --- the "caused" case: a finding whose primary line the PR did not touch ----------------------

CAUSED_BASE = """
import asyncio

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Order, User


async def totals(session: AsyncSession) -> tuple[int, int]:
    async def count_users() -> int:
        return await session.scalar(select(func.count(User.id)))

    async def count_orders() -> int:
        return 0

    return await asyncio.gather(count_users(), count_orders())


async def summary(session: AsyncSession) -> tuple[int, int]:
    users, orders = await asyncio.gather(
        count_fresh("users"),
        count_fresh("orders"),
    )
    return users, orders


async def count_fresh(table: str) -> int:
    return 0
"""


@pytest.fixture(scope="module")
def caused(tmp_path_factory: pytest.TempPathFactory, git_home: Path) -> PullRequest:
    where = tmp_path_factory.mktemp("caused")
    repo = GitRepo(where / "repo", git_home)
    write_app(repo, {"app/models.py": MODELS, "app/stats.py": CAUSED_BASE})
    base = repo.commit("base")
    text = repo.read("app/stats.py")
    # The closure now uses the session too: the gather line itself is unchanged.
    text = text.replace(
        "        return 0\n\n    return await",
        "        return await session.scalar(select(func.count(Order.id)))\n\n    return await",
    )
    # Only the arguments of the gather change; `asyncio.gather(` stays a context line.
    text = text.replace('count_fresh("users")', "session.scalar(select(func.count(User.id)))")
    text = text.replace('count_fresh("orders")', "session.scalar(select(func.count(Order.id)))")
    repo.write("app/stats.py", text)
    head = repo.commit("pr")
    diff = repo.diff(base, head)
    (where / "pr.diff").write_bytes(diff)
    return PullRequest(repo, where / "pr.diff", diff, base, head)


def test_caused_finding_kept_through_a_related_location(caused: PullRequest) -> None:
    diff = caused.diff.decode()
    closure_gather = caused.line("app/stats.py", "return await asyncio.gather(count_users()")
    closure_use = caused.line("app/stats.py", "return await session.scalar", 2)
    # The gather line and the first closure are context; only the second closure's body is new.
    assert "\n+    return await asyncio.gather(" not in diff
    assert "\n+        return await session.scalar(select(func.count(Order.id)))\n" in diff
    result = caused.check()
    assert result.returncode == 1, result
    (finding,) = [f for f in result.json()["findings"] if f["start_line"] == closure_gather]
    assert finding["code"] == "AG201"
    assert finding["end_line"] == closure_gather  # the primary span touches no added line
    assert closure_use in [r["start_line"] for r in finding["related"]]


def test_caused_finding_on_unchanged_gather_line(caused: PullRequest) -> None:
    gather = caused.line("app/stats.py", "users, orders = await asyncio.gather(")
    diff = caused.diff.decode()
    assert "\n     users, orders = await asyncio.gather(\n" in diff  # a context line
    result = caused.check()
    assert result.triples() == {
        ("AG201", "app/stats.py", caused.line("app/stats.py", "asyncio.gather(count_users()")),
        ("AG201", "app/stats.py", gather),
    }
    (finding,) = [f for f in result.json()["findings"] if f["start_line"] == gather]
    assert [r["start_line"] for r in finding["related"]] == [gather + 1, gather + 2]


def test_caused_findings_are_not_reported_before_the_change(caused: PullRequest) -> None:
    caused.repo.git("checkout", "-q", caused.base)
    try:
        whole = caused.run("check", "app", "--format", "json")
        assert whole.triples() == set()
        assert whole.returncode == 0
    finally:
        caused.repo.git("checkout", "-q", caused.head)


# --- suppressions -----------------------------------------------------------------------------

SUPPRESSED = """
import asyncio

from sqlalchemy.ext.asyncio import AsyncSession


async def job() -> None:
    await asyncio.sleep(0)


async def coded(session: AsyncSession):
    return await asyncio.gather(session.execute(q1), session.execute(q2))  # noqa: AG201


async def bare(session: AsyncSession):
    return await asyncio.gather(session.execute(q1), session.execute(q2))  # noqa


async def ignore_comment() -> None:
    asyncio.create_task(job())  # asyncguard: ignore[AG501]


async def statement_first_line(session: AsyncSession):
    users, orders = (  # noqa: AG201
        await asyncio.gather(session.execute(q1), session.execute(q2))
    )
    return users, orders


async def call_first_line(session: AsyncSession):
    return await asyncio.gather(  # noqa: AG201
        session.execute(q1),
        session.execute(q2),
    )


async def several_codes() -> None:
    asyncio.create_task(job())  # noqa: AG101, AG501 because it is a test


async def other_tool(session: AsyncSession):
    return await asyncio.gather(session.execute(q1), session.execute(q2))  # noqa: E501


async def other_rule() -> None:
    asyncio.create_task(job())  # noqa: AG201


async def in_a_string() -> None:
    asyncio.create_task(job("# noqa"))


async def comment_on_a_later_line(session: AsyncSession):
    return await asyncio.gather(
        session.execute(q1),  # noqa: AG201
        session.execute(q2),
    )
"""


def test_suppressions(make_repo: Callable[..., GitRepo]) -> None:
    repo = make_repo()
    repo.write("README.md", "x\n")
    base = repo.commit("base")
    repo.write("app/handlers.py", SUPPRESSED)
    repo.commit("pr")
    diff_path = repo.write_diff(base)
    result = run_cli(
        ["check", "--diff", str(diff_path), "--format", "json"], repo.path, env=repo.env
    )

    def at(needle: str, occurrence: int = 1) -> int:
        return repo.line_of("app/handlers.py", needle, occurrence)

    path = "app/handlers.py"
    assert result.triples() == {
        ("AG201", path, at("# noqa: E501")),
        ("AG501", path, at("# noqa: AG201", 4)),
        ("AG501", path, at('job("# noqa")')),
        ("AG201", path, at("return await asyncio.gather(", 5)),
    }, result
    assert result.returncode == 1


# --- local git: --base ------------------------------------------------------------------------

SERVICE = """
import asyncio


async def refresh() -> None:
    await asyncio.sleep(0)


async def warm() -> None:
    asyncio.create_task(refresh())
"""

API = """
import asyncio

from sqlalchemy.ext.asyncio import AsyncSession


async def job() -> None:
    await asyncio.sleep(0)
"""


@pytest.fixture(scope="module")
def branch_repo(tmp_path_factory: pytest.TempPathFactory, git_home: Path) -> GitRepo:
    """main: A, C; feature (from A): B, plus uncommitted edits and an untracked file."""
    repo = GitRepo(tmp_path_factory.mktemp("branch") / "repo", git_home)
    write_app(repo, {"app/db.py": DB, "app/service.py": SERVICE, "app/api.py": API})
    repo.commit("A")
    repo.git("checkout", "-q", "-b", "feature")
    repo.write(
        "app/api.py",
        repo.read("app/api.py")
        + "\n\nasync def committed() -> None:\n    asyncio.create_task(job())\n",
    )
    repo.commit("B")
    repo.git("checkout", "-q", "main")
    # main fixes the old bug after the feature branched: it is not part of the feature's change,
    # although a diff against main's tip would show the old line as added.
    repo.write(
        "app/service.py",
        repo.read("app/service.py").replace("asyncio.create_task(refresh())", "await refresh()"),
    )
    repo.commit("C")
    repo.git("checkout", "-q", "feature")
    repo.write(
        "app/api.py",
        repo.read("app/api.py") + "\n\nasync def uncommitted(session: AsyncSession):\n"
        "    return await asyncio.gather(session.execute(q1), session.execute(q2))\n",
    )
    repo.write(
        "app/fresh.py", "from app.db import async_session\n\nfresh_session = async_session()\n"
    )
    return repo


def test_base_uses_merge_base_working_tree_and_untracked_files(branch_repo: GitRepo) -> None:
    result = run_cli(
        ["check", "--base", "main", "--format", "json"], branch_repo.path, env=branch_repo.env
    )
    assert result.returncode == 1, result
    assert result.triples() == {
        ("AG501", "app/api.py", branch_repo.line_of("app/api.py", "asyncio.create_task(job())")),
        ("AG201", "app/api.py", branch_repo.line_of("app/api.py", "asyncio.gather(")),
        ("AG101", "app/fresh.py", 3),
    }
    assert result.stderr == ""


def test_base_from_a_subdirectory_gives_cwd_relative_paths(branch_repo: GitRepo) -> None:
    result = run_cli(
        ["check", "--base", "main", "--format", "json", "--select", "AG1,AG2"],
        branch_repo.path / "app",
        env=branch_repo.env,
    )
    assert result.triples() == {
        ("AG201", "api.py", branch_repo.line_of("app/api.py", "asyncio.gather(")),
        ("AG101", "fresh.py", 3),
    }, result


def test_base_equal_to_head_and_clean_tree_reports_nothing(
    make_repo: Callable[..., GitRepo],
) -> None:
    repo = make_repo()
    repo.write("app/legacy.py", LEGACY)
    repo.commit("only")
    result = run_cli(["check", "--base", "main", "--format", "json"], repo.path, env=repo.env)
    assert result.returncode == 0, result
    assert result.triples() == set()


# --- whole files ------------------------------------------------------------------------------


def test_whole_file_mode_reports_everything_under_the_paths(pr: PullRequest) -> None:
    result = pr.run("check", "app", "--format", "json")
    assert result.returncode == 1, result
    assert result.triples() == file_set(pr) | {untouched(pr)}
    single = pr.run("check", "app/untouched.py", "--format", "json")
    assert single.triples() == {untouched(pr)}
    everything = pr.run("check", "--format", "json")
    assert everything.triples() == file_set(pr) | {untouched(pr)}


def test_whole_file_mode_honours_exclude_and_filter_mode_is_moot(pr_copy: PullRequest) -> None:
    pr_copy.repo.write(".asyncguard.toml", 'exclude = ["routers"]\nfilter-mode = "added"\n')
    result = pr_copy.run("check", "app", "--format", "json")
    expected = (file_set(pr_copy) | {untouched(pr_copy)}) - {
        new_gather(pr_copy),
        new_task(pr_copy),
        old_context_task(pr_copy),
        old_far_task(pr_copy),
    }
    assert result.triples() == expected


def test_console_script(pr: PullRequest) -> None:
    script = Path(sys.executable).parent / "asyncguard"
    if not script.is_file():
        pytest.skip(f"no console script next to {sys.executable}")
    done = subprocess.run(
        [str(script), "check", "app", "--format", "json"],
        cwd=pr.repo.path,
        env=pr.repo.env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert findings_of(json.loads(done.stdout)) == file_set(pr) | {untouched(pr)}


# --- the other commands -----------------------------------------------------------------------


def test_rules_command(tmp_path: Path) -> None:
    result = run_cli(["rules"], tmp_path)
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["CODE", "NAME", "SEVERITY", "SECTION"]
    infos = rule_infos()
    assert [line.split()[:3] for line in lines[1:]] == [
        [info.code, info.name, info.severity.value] for info in infos
    ]
    assert len(infos) == 24
    ag201 = next(line for line in lines if line.startswith("AG201"))
    assert ag201.endswith("Pattern: Concurrent vs Sequential Queries")


@pytest.mark.parametrize("wanted", ["AG201", "shared-session-concurrency"])
def test_explain(tmp_path: Path, wanted: str) -> None:
    result = run_cli(["explain", wanted], tmp_path)
    assert result.returncode == 0, result
    assert result.stdout.startswith("# AG201 shared-session-concurrency\n")
    assert "Default severity: **error**" in result.stdout
    assert '"Pattern: Concurrent vs Sequential Queries"' in result.stdout
    assert "## What it does" in result.stdout
    assert "## Correction to the skill" in result.stdout
    assert result.stderr == ""


def test_version(tmp_path: Path) -> None:
    result = run_cli(["--version"], tmp_path)
    assert result.returncode == 0
    assert result.stdout == f"asyncguard {__version__}\n"
