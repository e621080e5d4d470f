"""Bad input to the real CLI: a one-line error and exit code 2, or a skipped-file note.

Usage, config and input errors must end the run with exit code 2 and exactly one line on stderr
(`asyncguard: error: ...`), never a traceback. Files that cannot be analysed (syntax errors,
binary files, oversized files, undecodable files, files missing on disk) are skipped with a note
while every other file is still analysed, and the exit code follows the findings alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import CliResult, GitRepo, isolated_env, run_cli

TASK = "import asyncio\n\n\nasync def go() -> None:\n    asyncio.create_task(go())\n"

GATHER = """
import asyncio

from sqlalchemy.ext.asyncio import AsyncSession


async def both(session: AsyncSession):
    return await asyncio.gather(
        session.execute(q1),
        session.execute(q2),
    )
"""


def assert_usage_error(result: CliResult, *fragments: str) -> str:
    """Exit code 2, nothing on stdout, one `asyncguard: error:` line on stderr; returns it."""
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr, result
    assert result.stderr.startswith("asyncguard: error: "), result
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result
    assert result.stdout == "", result
    for fragment in fragments:
        assert fragment in result.stderr, result
    return result.stderr


@pytest.fixture
def small_repo(make_repo: Callable[..., GitRepo]) -> GitRepo:
    """One committed file with one AG501, so that a run that gets going has something to say."""
    repo = make_repo()
    repo.write("app/task.py", TASK)
    repo.commit("base")
    return repo


def check(repo: GitRepo, *args: str, stdin: bytes | None = None) -> CliResult:
    return run_cli(["check", *args], repo.path, env=repo.env, stdin=stdin)


def test_a_good_run_of_the_small_repo(small_repo: GitRepo) -> None:
    """The baseline the error cases differ from: the same repository without the mistake."""
    result = check(small_repo, "--format", "json")
    assert result.returncode == 0, result  # one warning, fail-on error
    assert result.triples() == {("AG501", "app/task.py", 5)}
    assert result.stderr == ""


# --- config errors ----------------------------------------------------------------------------

CONFIG_ERRORS = [
    pytest.param(
        ".asyncguard.toml",
        'filter_mode = "added"\n',
        [".asyncguard.toml", "unknown key 'filter_mode'", "did you mean 'filter-mode'?"],
        id="unknown-key",
    ),
    pytest.param(
        "pyproject.toml",
        '[tool.asyncguard]\nfial-on = "error"\n',
        ["pyproject.toml", "[tool.asyncguard] unknown key 'fial-on'", "did you mean 'fail-on'?"],
        id="unknown-key-pyproject",
    ),
    pytest.param(
        ".asyncguard.toml",
        '[severity]\nAG2011 = "off"\n',
        ["unknown rule 'AG2011'", "did you mean 'AG201'?"],
        id="unknown-code-in-severity",
    ),
    pytest.param(
        ".asyncguard.toml",
        '[severity]\nunreferenced-tasks = "off"\n',
        ["unknown rule 'unreferenced-tasks'", "did you mean 'unreferenced-task'?"],
        id="unknown-name-in-severity",
    ),
    pytest.param(
        ".asyncguard.toml",
        '[severity]\nAG201 = "fatal"\n',
        ["'AG201'", "error, warning, info, off", "'fatal'"],
        id="bad-severity-value",
    ),
    pytest.param(
        ".asyncguard.toml",
        'select = ["AG1",\nignore = ]\n',
        [".asyncguard.toml", "invalid TOML", "line"],
        id="invalid-toml",
    ),
    pytest.param(
        ".asyncguard.toml",
        'exclude = ["migrations/[abc"]\n',
        ["exclude", "invalid glob 'migrations/[abc'"],
        id="bad-glob-exclude",
    ),
    pytest.param(
        ".asyncguard.toml",
        '[per-file-ignores]\n"tests/[x" = ["AG501"]\n',
        ["per-file-ignores", "invalid glob 'tests/[x'"],
        id="bad-glob-per-file-ignores",
    ),
    pytest.param(
        ".asyncguard.toml",
        'select = ["AG3X"]\n',
        ["unknown rule 'AG3X'"],
        id="unknown-selector",
    ),
    pytest.param(
        ".asyncguard.toml",
        '[per-file-ignores]\n"tests/**" = ["AG777"]\n',
        ["unknown rule 'AG777'"],
        id="unknown-code-in-per-file-ignores",
    ),
    pytest.param(
        ".asyncguard.toml",
        'fail-on = "errors"\n',
        ["'fail-on'", "'errors'", "did you mean 'error'?"],
        id="bad-fail-on",
    ),
    pytest.param(
        ".asyncguard.toml",
        'filter-mode = "context"\n',
        ["'filter-mode'", "'context'"],
        id="bad-filter-mode",
    ),
    pytest.param(
        ".asyncguard.toml",
        'select = "AG"\n',
        ["'select' must be a list of strings"],
        id="wrong-type",
    ),
    pytest.param(
        ".asyncguard.toml",
        "max-comments = -1\n",
        ["'max-comments'", "-1"],
        id="out-of-range",
    ),
    pytest.param(
        ".asyncguard.toml",
        b'skill = "caf\xe9.md"\n',
        [".asyncguard.toml", "cannot read"],
        id="not-utf8",
    ),
    pytest.param(
        "pyproject.toml",
        '[tool]\nasyncguard = "on"\n',
        ["[tool.asyncguard] must be a table"],
        id="tool-table-not-a-table",
    ),
]


@pytest.mark.parametrize(("filename", "content", "fragments"), CONFIG_ERRORS)
def test_config_errors(
    small_repo: GitRepo, filename: str, content: str | bytes, fragments: list[str]
) -> None:
    small_repo.write(filename, content, dedent=False)
    assert_usage_error(check(small_repo), *fragments)


def test_config_error_stops_every_mode(small_repo: GitRepo) -> None:
    small_repo.write(".asyncguard.toml", '[severity]\nAG209 = "off"\n')
    diff_path = small_repo.path.parent / "empty.diff"
    diff_path.write_bytes(b"")
    for args in (["app"], ["--base", "main"], ["--diff", str(diff_path)]):
        assert_usage_error(check(small_repo, *args), "unknown rule 'AG209'")


def test_config_error_from_a_subdirectory_names_the_file(small_repo: GitRepo) -> None:
    small_repo.write(".asyncguard.toml", "filter_mode = 1\n")
    result = run_cli(["check"], small_repo.path / "app", env=small_repo.env)
    assert_usage_error(result, "unknown key 'filter_mode'", "did you mean 'filter-mode'?")


def test_explicit_config_missing(small_repo: GitRepo) -> None:
    assert_usage_error(check(small_repo, "--config", "nope.toml"), "nope.toml", "no such config")


def test_explicit_config_is_a_directory(small_repo: GitRepo) -> None:
    assert_usage_error(check(small_repo, "--config", "app"), "app", "cannot read")


def test_explicit_pyproject_without_our_table(small_repo: GitRepo) -> None:
    small_repo.write("pyproject.toml", '[project]\nname = "x"\n')
    assert_usage_error(
        check(small_repo, "--config", "pyproject.toml"), "no [tool.asyncguard] table"
    )


def test_unrelated_broken_pyproject_is_not_our_business(small_repo: GitRepo) -> None:
    small_repo.write("pyproject.toml", "[project\nname = \n")
    result = check(small_repo, "--format", "json")
    assert result.returncode == 0, result
    assert result.triples() == {("AG501", "app/task.py", 5)}


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        pytest.param(["--select", "AG999"], ["--select", "unknown rule 'AG999'"], id="select"),
        pytest.param(
            ["--ignore", "AG5O1"], ["--ignore", "unknown rule 'AG5O1'", "'AG501'"], id="ignore"
        ),
        pytest.param(
            ["--extend-select", "bogus-rule"], ["--extend-select", "'bogus-rule'"], id="extend"
        ),
        pytest.param(["--fail-on", "fatal"], ["--fail-on", "'fatal'"], id="fail-on"),
        pytest.param(["--filter-mode", "hunk"], ["--filter-mode", "'hunk'"], id="filter-mode"),
        pytest.param(["--format", "xml"], ["--format", "'xml'"], id="format"),
        pytest.param(["--workers", "0"], ["--workers"], id="workers-zero"),
        pytest.param(["--workers", "many"], ["--workers", "'many'"], id="workers-text"),
        pytest.param(["--diff"], ["--diff", "expected one argument"], id="diff-no-value"),
        pytest.param(["--diff", "x.diff", "--base", "main"], ["not allowed with"], id="both"),
        pytest.param(["--bogus"], ["unrecognized arguments: --bogus"], id="unknown-flag"),
        pytest.param(["nosuchpath"], ["nosuchpath"], id="missing-path"),
        pytest.param(["-o", "no/such/dir/out.txt"], ["cannot write"], id="output-dir-missing"),
        pytest.param(["-o", "app"], ["cannot write", "app"], id="output-is-a-directory"),
    ],
)
def test_bad_flags(small_repo: GitRepo, args: list[str], fragments: list[str]) -> None:
    assert_usage_error(check(small_repo, *args), *fragments)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        pytest.param(["bogus"], ["invalid choice: 'bogus'"], id="unknown-subcommand"),
        pytest.param(["--bogus"], ["--bogus"], id="unknown-global-flag"),
        pytest.param(["rules", "extra"], ["unrecognized arguments: extra"], id="rules-extra"),
        pytest.param(["explain"], ["required"], id="explain-no-rule"),
        pytest.param(["explain", "AG999"], ["unknown rule 'AG999'"], id="explain-unknown"),
        pytest.param(
            ["explain", "shared-sesion-concurrency"],
            ["did you mean 'shared-session-concurrency'?"],
            id="explain-typo",
        ),
    ],
)
def test_bad_commands(tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    assert_usage_error(run_cli(args, tmp_path), *fragments)


# --- diff errors ------------------------------------------------------------------------------

HUNK_TOO_SHORT = b"""\
diff --git a/app/task.py b/app/task.py
--- a/app/task.py
+++ b/app/task.py
@@ -1,3 +1,6 @@
 import asyncio
+
+
 async def go():
"""

HUNK_TOO_LONG = b"""\
--- a/app/task.py
+++ b/app/task.py
@@ -1,1 +1,1 @@
 import asyncio
+x = 1
+y = 2
-z = 3
"""

BAD_HUNK_HEADER = b"""\
--- a/app/task.py
+++ b/app/task.py
@@ -1 +1 @ broken
-import asyncio
+import asyncio as aio
"""


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        pytest.param(HUNK_TOO_SHORT, ["malformed diff", "fewer lines"], id="hunk-too-short"),
        pytest.param(HUNK_TOO_LONG, ["malformed diff", "more lines"], id="hunk-too-long"),
        pytest.param(BAD_HUNK_HEADER, ["malformed diff", "hunk header"], id="bad-hunk-header"),
        pytest.param(b"hello\nworld\n", ["not a unified diff"], id="garbage"),
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ["not a unified diff"], id="binary"),
    ],
)
def test_malformed_diffs(small_repo: GitRepo, data: bytes, fragments: list[str]) -> None:
    diff_path = small_repo.path.parent / "bad.diff"
    diff_path.write_bytes(data)
    assert_usage_error(check(small_repo, "--diff", str(diff_path)), *fragments)


def test_malformed_diff_from_stdin(small_repo: GitRepo) -> None:
    result = check(small_repo, "--diff", "-", stdin=HUNK_TOO_SHORT)
    assert_usage_error(result, "malformed diff", "fewer lines")


def test_diff_file_missing(small_repo: GitRepo) -> None:
    assert_usage_error(check(small_repo, "--diff", "nope.diff"), "cannot read diff nope.diff")


def test_diff_is_a_directory(small_repo: GitRepo) -> None:
    assert_usage_error(check(small_repo, "--diff", "app"), "cannot read diff app")


@pytest.mark.parametrize("data", [b"", b"\n\n  \n"], ids=["empty", "blank"])
def test_empty_diff_is_no_change(small_repo: GitRepo, data: bytes) -> None:
    diff_path = small_repo.path.parent / "empty.diff"
    diff_path.write_bytes(data)
    for args, stdin in ((["--diff", str(diff_path)], None), (["--diff", "-"], data)):
        result = check(small_repo, *args, "--format", "json", "--fail-on", "info", stdin=stdin)
        assert result.returncode == 0, result
        assert result.stderr == ""
        document = result.json()
        assert (document["findings"], document["notes"]) == ([], [])
    text = check(small_repo, "--diff", str(diff_path))
    assert text.stdout == "All checks passed: 0 files checked.\n"


def test_base_unknown_ref(small_repo: GitRepo) -> None:
    assert_usage_error(check(small_repo, "--base", "nosuchref"), "unknown git ref 'nosuchref'")


def test_base_outside_a_git_repository(tmp_path: Path, git_home: Path) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()
    (outside / "task.py").write_text(TASK, encoding="utf-8")
    env = isolated_env(git_home)
    env["GIT_CEILING_DIRECTORIES"] = str(tmp_path)
    result = run_cli(["check", "--base", "main"], outside, env=env)
    assert_usage_error(result, "not inside a git work tree")
    # Whole-file mode needs no repository.
    whole = run_cli(["check", "--format", "json"], outside, env=env)
    assert whole.triples() == {("AG501", "task.py", 5)}, whole


def test_base_in_a_repository_without_commits(make_repo: Callable[..., GitRepo]) -> None:
    repo = make_repo()
    repo.write("task.py", TASK)
    assert_usage_error(check(repo, "--base", "main"), "unknown git ref 'main'")


def test_base_without_a_merge_base(small_repo: GitRepo) -> None:
    small_repo.git("checkout", "-q", "--orphan", "island")
    small_repo.commit("unrelated history")
    assert_usage_error(check(small_repo, "--base", "main"), "no merge base", "'main'")


# --- files that cannot be analysed ------------------------------------------------------------

BROKEN = """
import asyncio

value = = 1


async def go() -> None:
    asyncio.create_task(go())
"""

LATIN1 = (
    "# -*- coding: latin-1 -*-\n"
    "import asyncio\n"
    "\n"
    'GREETING = "Grüße aus Köln, café"\n'
    "\n"
    "\n"
    "async def go() -> None:\n"
    "    asyncio.create_task(go())\n"
).encode("latin-1")

BAD_UTF8 = b'import asyncio\n\nNAME = "caf\xe9"\n\n\nasync def go() -> None:\n    asyncio.create_task(go())\n'

CRLF = (
    b"import asyncio\r\n"
    b"\r\n"
    b"from sqlalchemy.ext.asyncio import AsyncSession\r\n"
    b"\r\n"
    b"\r\n"
    b"async def both(session: AsyncSession):\r\n"
    b'    """Two queries,\r\n'
    b'    at once."""\r\n'
    b"    asyncio.create_task(both(session))  # noqa: AG201\r\n"
    b"    asyncio.ensure_future(both(session))  # asyncguard: ignore[AG501]\r\n"
    b"    return await asyncio.gather(\r\n"
    b"        session.execute(q1),\r\n"
    b"        session.execute(q2),\r\n"
    b"    )\r\n"
)

CRLF_OLD = (
    b"import asyncio\r\n"
    b"\r\n"
    b"\r\n"
    b"async def first() -> None:\r\n"
    b"    asyncio.create_task(first())\r\n"
    b"\r\n"
    b"\r\n"
    b"async def last() -> None:\r\n"
    b"    await asyncio.sleep(0)\r\n"
)

BIG = (
    b"import asyncio\n\nDATA = '"
    + b"x" * (1024 * 1024)
    + b"'\n\n\nasync def go():\n    asyncio.create_task(go())\n"
)


@dataclass(frozen=True)
class BadInputs:
    repo: GitRepo
    diff_path: Path

    def check(self, *args: str) -> CliResult:
        return check(self.repo, "--diff", str(self.diff_path), *args)


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory, git_home: Path) -> BadInputs:
    where = tmp_path_factory.mktemp("bad-inputs")
    repo = GitRepo(where / "repo", git_home)
    repo.write("README.md", "x\n")
    repo.write("app/crlf_old.py", CRLF_OLD)
    base = repo.commit("base")
    repo.write("app/ok.py", GATHER)
    repo.write("app/task.py", TASK)
    repo.write("app/broken.py", BROKEN)
    repo.write("app/blob.py", bytes(range(256)) * 4)
    repo.write(
        "app/nul.py", b"import asyncio\n\x00\nasync def go():\n    asyncio.create_task(go())\n"
    )
    repo.write("app/big.py", BIG)
    repo.write("app/gone.py", TASK)
    repo.write("app/latin.py", LATIN1)
    repo.write("app/badutf.py", BAD_UTF8)
    repo.write("app/unknown_enc.py", b"# coding: no-such-codec\nx = 1\n")
    repo.write("app/crlf.py", CRLF)
    # A CRLF file edited in the middle: only the inserted lines are new.
    repo.write(
        "app/crlf_old.py",
        CRLF_OLD.replace(
            b"\r\n\r\nasync def last",
            b"\r\n\r\nasync def middle() -> None:\r\n    asyncio.ensure_future(middle())\r\n"
            b"\r\n\r\nasync def last",
        ),
    )
    head = repo.commit("pr")
    # git calls nul.py binary; a diff made with --text names it as text, so the engine's own
    # NUL check is what skips it.
    diff = repo.diff(base, head, paths=[".", ":(exclude)app/nul.py"])
    diff += repo.diff(base, head, options=["--text"], paths=["app/nul.py"])
    assert b"Binary files /dev/null and b/app/blob.py differ" in diff
    assert b"+++ b/app/nul.py" in diff
    repo.remove("app/gone.py")  # named by the diff, missing on disk
    diff_path = where / "pr.diff"
    diff_path.write_bytes(diff)
    return BadInputs(repo, diff_path)


EXPECTED_FINDINGS = {
    ("AG201", "app/ok.py", 7),
    ("AG501", "app/task.py", 5),
    ("AG501", "app/latin.py", 8),
    ("AG201", "app/crlf.py", 11),
    ("AG501", "app/crlf.py", 9),
    ("AG501", "app/crlf_old.py", 9),
}
EXPECTED_NOTES = {
    ("syntax-error", "app/broken.py"),
    ("binary-file", "app/blob.py"),
    ("binary-file", "app/nul.py"),
    ("file-too-large", "app/big.py"),
    ("file-missing", "app/gone.py"),
    ("file-unreadable", "app/badutf.py"),
    ("file-unreadable", "app/unknown_enc.py"),
}


def test_bad_files_are_skipped_with_notes_and_the_rest_analysed(bad_inputs: BadInputs) -> None:
    result = bad_inputs.check("--format", "json")
    assert result.stderr == "", result
    assert result.returncode == 1, result  # the AG201 errors fail the run; notes never do
    assert result.triples() == EXPECTED_FINDINGS
    notes = result.notes()
    assert sorted((n["kind"], n["path"]) for n in notes) == sorted(EXPECTED_NOTES)
    assert result.json()["summary"]["notes"] == len(EXPECTED_NOTES)
    by_path = {n["path"]: n for n in notes}
    assert by_path["app/big.py"]["message"].startswith("skipped:")
    assert "1 MiB" in by_path["app/big.py"]["message"]
    assert "binary" in by_path["app/nul.py"]["message"]
    assert "not on disk" in by_path["app/gone.py"]["message"]
    assert "decode" in by_path["app/badutf.py"]["message"]
    assert "no-such-codec" in by_path["app/unknown_enc.py"]["message"]


def test_exactly_one_syntax_error_note(bad_inputs: BadInputs) -> None:
    notes = bad_inputs.check("--format", "json").notes()
    syntax = [n for n in notes if n["kind"] == "syntax-error"]
    assert len(syntax) == 1
    (note,) = syntax
    assert note["path"] == "app/broken.py"
    assert note["message"].startswith("cannot parse")
    assert isinstance(note["line"], int)


def test_syntax_error_note_points_at_the_bad_line(bad_inputs: BadInputs) -> None:
    notes = bad_inputs.check("--format", "json").notes()
    (note,) = [n for n in notes if n["kind"] == "syntax-error"]
    assert bad_inputs.repo.line_of("app/broken.py", "value = = 1") == 3
    assert note["line"] == 3


def test_notes_never_fail_the_run(bad_inputs: BadInputs) -> None:
    warnings_only = bad_inputs.check("--format", "json", "--select", "AG5")
    assert warnings_only.returncode == 0, warnings_only
    assert warnings_only.triples() == {
        ("AG501", "app/task.py", 5),
        ("AG501", "app/latin.py", 8),
        ("AG501", "app/crlf.py", 9),
        ("AG501", "app/crlf_old.py", 9),
    }
    assert len(warnings_only.notes()) == len(EXPECTED_NOTES)
    assert bad_inputs.check("--select", "AG5", "--fail-on", "warning").returncode == 1
    assert bad_inputs.check("--ignore", "AG", "--fail-on", "info").returncode == 0


def test_notes_in_text_output(bad_inputs: BadInputs) -> None:
    result = bad_inputs.check()
    lines = result.stdout.splitlines()
    assert "app/gone.py: file-missing [note] skipped: the file is not on disk" in lines
    assert any(
        line.startswith("app/broken.py:") and "syntax-error [note]" in line for line in lines
    )
    assert (
        lines[-1] == "Found 6 findings (2 errors, 4 warnings, 0 info) in 5 files; 7 files skipped."
    )


def test_notes_in_sarif_output(bad_inputs: BadInputs, sarif_schema: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    result = bad_inputs.check("--format", "sarif")
    log = json.loads(result.stdout)
    jsonschema.validate(log, sarif_schema)
    (run,) = log["runs"]
    assert run["invocations"][0]["executionSuccessful"] is True
    notifications = run["invocations"][0]["toolExecutionNotifications"]
    assert sorted(
        (n["descriptor"]["id"], n["locations"][0]["physicalLocation"]["artifactLocation"]["uri"])
        for n in notifications
    ) == sorted(EXPECTED_NOTES)
    assert len(run["results"]) == len(EXPECTED_FINDINGS)


def test_notes_in_github_output(bad_inputs: BadInputs) -> None:
    lines = bad_inputs.check("--format", "github").stdout.splitlines()
    notices = [line for line in lines if line.startswith("::notice ")]
    assert len(notices) == len(EXPECTED_NOTES)
    assert "::notice file=app/big.py::file-too-large: skipped: " in "\n".join(notices)


def test_latin1_file_with_a_coding_cookie_is_analysed(bad_inputs: BadInputs) -> None:
    result = bad_inputs.check("--format", "json", "app/latin.py")
    assert result.triples() == {("AG501", "app/latin.py", 8)}
    assert result.notes() == []
    finding = result.json()["findings"][0]
    assert (finding["start_col"], finding["end_line"]) == (5, 8)


def test_crlf_file_findings_at_the_right_lines(bad_inputs: BadInputs) -> None:
    result = bad_inputs.check("--format", "json", "app/crlf.py", "--filter-mode", "nofilter")
    # Line 9 (a create_task whose comment names only AG201) is reported; line 10 is suppressed.
    assert result.triples() == {("AG201", "app/crlf.py", 11), ("AG501", "app/crlf.py", 9)}
    gather = next(f for f in result.json()["findings"] if f["code"] == "AG201")
    assert (gather["start_line"], gather["start_col"], gather["end_line"]) == (11, 18, 14)
    assert [r["start_line"] for r in gather["related"]] == [12, 13]


def test_crlf_file_only_inserted_lines_are_new(bad_inputs: BadInputs) -> None:
    result = bad_inputs.check("--format", "json", "app/crlf_old.py")
    assert result.triples() == {("AG501", "app/crlf_old.py", 9)}
    everything = bad_inputs.check("--format", "json", "app/crlf_old.py", "--filter-mode", "file")
    assert everything.triples() == {
        ("AG501", "app/crlf_old.py", 5),
        ("AG501", "app/crlf_old.py", 9),
    }


def test_whole_file_mode_skips_the_same_files(bad_inputs: BadInputs) -> None:
    result = check(bad_inputs.repo, "app", "--format", "json", "--select", "AG5")
    assert result.stderr == ""
    assert result.triples() == {
        ("AG501", "app/task.py", 5),
        ("AG501", "app/latin.py", 8),
        ("AG501", "app/crlf.py", 9),
        ("AG501", "app/crlf_old.py", 5),
        ("AG501", "app/crlf_old.py", 9),
    }
    assert sorted((n["kind"], n["path"]) for n in result.notes()) == sorted(
        EXPECTED_NOTES - {("file-missing", "app/gone.py")}
    )


def test_lone_carriage_return_does_not_shift_lines(make_repo: Callable[..., GitRepo]) -> None:
    repo = make_repo()
    repo.write("README.md", "x\n")
    base = repo.commit("base")
    repo.write(
        "app/cr.py",
        b"import asyncio\n# pasted from an old Mac file:\r see below\n\n\n"
        b"async def go() -> None:\n    asyncio.create_task(go())\n",
    )
    repo.commit("pr")
    diff_path = repo.write_diff(base)
    assert repo.line_of("app/cr.py", "asyncio.create_task(go())") == 6  # as git counts
    result = check(repo, "--diff", str(diff_path), "--format", "json")
    assert result.triples() == {("AG501", "app/cr.py", 6)}
