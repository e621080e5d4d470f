"""Reporters: exact output of every format for one hand-built report with the awkward cases
(a path with a space and non-ASCII, a message with `%`, `:`, `,` and a newline, related
locations, a fix, notes with and without a line)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import JSON_FINDING_KEYS, SARIF_SCHEMA_PATH

from bot.findings import (
    Edit,
    Finding,
    Fix,
    FixSafety,
    Note,
    NoteKind,
    RelatedLocation,
    Report,
    Severity,
    Span,
)
from bot.reporters import FORMATS, render
from bot.reporters import github as github_reporter
from bot.reporters import markdown as markdown_reporter
from bot.reporters import sarif as sarif_reporter
from bot.ruleinfo import RuleInfo

REPO_ROOT = Path(__file__).resolve().parents[1]

ODD_PATH = "app/my dir/résumé.py"
ODD_URI = "app/my%20dir/r%C3%A9sum%C3%A9.py"
ODD_MESSAGE = "`session` runs 100% of 3 queries: a, b\nin one `gather`"


# --- the report ------------------------------------------------------------------------------


def _rules() -> dict[str, RuleInfo]:
    return {
        "AG101": RuleInfo(
            code="AG101",
            name="global-session",
            severity=Severity.ERROR,
            section="Pattern: AsyncSession Lifecycle",
            summary="A session instance is bound at module level.",
            doc="## What it does\nFlags a module-level session.",
        ),
        "AG104": RuleInfo(
            code="AG104",
            name="session-outlives-request",
            severity=Severity.WARNING,
            section="Pattern: AsyncSession Lifecycle",
            summary="A request-scoped session is passed to a background task.",
            doc="## What it does\nFlags a session handed to a task.",
            correction="Pass primary keys and open a session inside the task.",
        ),
        "AG201": RuleInfo(
            code="AG201",
            name="shared-session-concurrency",
            severity=Severity.ERROR,
            section="Pattern: Concurrent vs Sequential Queries",
            summary="One AsyncSession is used by concurrent awaitables.",
            doc="## What it does\nFlags concurrent use of one session.",
            correction="Use one session per concurrent task.",
            fixable=True,
        ),
        "AG202": RuleInfo(
            code="AG202",
            name="sequential-independent-awaits",
            severity=Severity.INFO,
            section="Pattern: Concurrent vs Sequential Queries",
            summary="Independent awaits run one after another.",
            doc="## What it does\nSuggests gather.",
        ),
    }


def _shared_session() -> Finding:
    return Finding(
        code="AG201",
        name="shared-session-concurrency",
        severity=Severity.ERROR,
        path=ODD_PATH,
        span=Span(12, 5, 12, 40),
        message=ODD_MESSAGE,
        section="Pattern: Concurrent vs Sequential Queries",
        related=(
            RelatedLocation(Span(13, 9, 13, 30), "second use of `session`"),
            RelatedLocation(Span(14, 9, 14, 30), "third use of `session`"),
        ),
        fix=Fix(
            description="Open one session per task",
            safety=FixSafety.UNSAFE,
            edits=(Edit(Span(12, 5, 12, 40), "await asyncio.gather(a(), b())"),),
        ),
        fingerprint="0123456789abcdef0123",
    )


def _outlives_request() -> Finding:
    # Moved to `error` by config: the result level must follow the finding, not the rule.
    return Finding(
        code="AG104",
        name="session-outlives-request",
        severity=Severity.WARNING,
        path="app/tasks.py",
        span=Span(20, 1, 22, 10),
        message="`db` is passed to `background_tasks.add_task`",
        section="Pattern: AsyncSession Lifecycle",
        fingerprint="fedcba9876543210fedc",
    )


def _sequential() -> Finding:
    return Finding(
        code="AG202",
        name="sequential-independent-awaits",
        severity=Severity.INFO,
        path="app/views.py",
        span=Span(7, 5, 7, 25),
        message="`a()` | `b()` could run concurrently",
        section="Pattern: Concurrent vs Sequential Queries",
    )


def _report() -> Report:
    return Report(
        findings=[_shared_session(), _outlives_request(), _sequential()],
        notes=[
            Note(NoteKind.SYNTAX_ERROR, "app/broken.py", "invalid syntax", line=3, col=7),
            Note(NoteKind.BINARY, "static/logo.png", "not a text file"),
        ],
        files_checked=4,
    )


def _render(fmt: str, report: Report | None = None, **options: Any) -> str:
    return render(
        fmt, _report() if report is None else report, _rules(), tool_version="1.2.3", **options
    )


# --- dispatch --------------------------------------------------------------------------------


def test_formats_and_dispatch() -> None:
    assert FORMATS == ("text", "json", "sarif", "github", "markdown")
    for fmt in FORMATS:
        assert _render(fmt).endswith("\n")


def test_unknown_format_and_fail_on_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        _render("xml")
    with pytest.raises(ValueError, match="unknown fail-on 'fatal'"):
        _render("text", fail_on="fatal")


def test_format_modules_are_imported_only_when_used() -> None:
    # A fresh interpreter: this test module has already imported every reporter.
    code = (
        "import sys\n"
        "import bot.reporters as r\n"
        "from bot.findings import Report\n"
        "loaded = lambda: sorted(m for m in sys.modules if m.startswith('bot.reporters.'))\n"
        "assert loaded() == [], loaded()\n"
        "r.render('github', Report(), {}, tool_version='0')\n"
        "assert loaded() == ['bot.reporters.github'], loaded()\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


# --- text ------------------------------------------------------------------------------------

EXPECTED_TEXT = """\
app/my dir/résumé.py:12:5: AG201 [error] `session` runs 100% of 3 queries: a, b
    in one `gather`
    app/my dir/résumé.py:13:9: note: second use of `session`
    app/my dir/résumé.py:14:9: note: third use of `session`
    fix available (unsafe): Open one session per task
app/tasks.py:20:1: AG104 [warning] `db` is passed to `background_tasks.add_task`
app/views.py:7:5: AG202 [info] `a()` | `b()` could run concurrently
app/broken.py:3:7: syntax-error [note] invalid syntax
static/logo.png: binary-file [note] not a text file

Found 3 findings (1 error, 1 warning, 1 info) in 4 files; 2 files skipped.
"""


def test_text_exact() -> None:
    assert _render("text") == EXPECTED_TEXT


def test_text_colour() -> None:
    bold, reset = "\x1b[1m", "\x1b[0m"
    red, yellow, cyan, magenta = "\x1b[31m", "\x1b[33m", "\x1b[36m", "\x1b[35m"
    expected = (
        f"{bold}app/my dir/résumé.py{reset}:12:5: {red}AG201 [error]{reset}"
        " `session` runs 100% of 3 queries: a, b\n"
        "    in one `gather`\n"
        f"    {bold}app/my dir/résumé.py{reset}:13:9: note: second use of `session`\n"
        f"    {bold}app/my dir/résumé.py{reset}:14:9: note: third use of `session`\n"
        "    fix available (unsafe): Open one session per task\n"
        f"{bold}app/tasks.py{reset}:20:1: {yellow}AG104 [warning]{reset}"
        " `db` is passed to `background_tasks.add_task`\n"
        f"{bold}app/views.py{reset}:7:5: {cyan}AG202 [info]{reset}"
        " `a()` | `b()` could run concurrently\n"
        f"{bold}app/broken.py{reset}:3:7: {magenta}syntax-error [note]{reset} invalid syntax\n"
        f"{bold}static/logo.png{reset}: {magenta}binary-file [note]{reset} not a text file\n"
        "\n"
        "Found 3 findings (1 error, 1 warning, 1 info) in 4 files; 2 files skipped.\n"
    )
    assert _render("text", color=True) == expected
    # The colour-free output is the coloured one with the escapes taken out.
    assert re.sub(r"\x1b\[\d+m", "", expected) == EXPECTED_TEXT
    assert "\x1b" not in _render("text", color=False)


def _finding(severity: Severity, path: str = "a.py", **changes: Any) -> Finding:
    """A finding of the unknown rule AG999 `x` on `a.py:1:1`, with `changes` to its fields."""
    return replace(Finding("AG999", "x", severity, path, Span(1, 1, 1, 2), "m", "S"), **changes)


@pytest.mark.parametrize(
    ("severities", "files_checked", "note_paths", "summary"),
    [
        ([], 0, [], "All checks passed: 0 files checked."),
        ([], 1, [], "All checks passed: 1 file checked."),
        ([], 4, ["a.py"], "All checks passed: 4 files checked; 1 file skipped."),
        (
            [Severity.ERROR],
            1,
            [],
            "Found 1 finding (1 error, 0 warnings, 0 info) in 1 file.",
        ),
        (
            [Severity.WARNING, Severity.INFO],
            2,
            ["b.py", "b.py", "c.py"],  # two notes for one file count it once
            "Found 2 findings (0 errors, 1 warning, 1 info) in 2 files; 2 files skipped.",
        ),
        (
            [Severity.ERROR, Severity.ERROR, Severity.WARNING, Severity.WARNING],
            3,
            [],
            "Found 4 findings (2 errors, 2 warnings, 0 info) in 3 files.",
        ),
    ],
)
def test_text_summary_plurals(
    severities: list[Severity], files_checked: int, note_paths: list[str], summary: str
) -> None:
    report = Report(
        findings=[_finding(severity) for severity in severities],
        notes=[Note(NoteKind.UNREADABLE, path, "denied") for path in note_paths],
        files_checked=files_checked,
    )
    assert _render("text", report).splitlines()[-1] == summary


def test_text_empty_report_is_the_summary_alone() -> None:
    assert _render("text", Report(files_checked=2)) == "All checks passed: 2 files checked.\n"


def test_text_note_with_line_but_no_column() -> None:
    report = Report(notes=[Note(NoteKind.SYNTAX_ERROR, "x.py", "bad", line=9)])
    assert _render("text", report).splitlines()[0] == "x.py:9: syntax-error [note] bad"


# --- json ------------------------------------------------------------------------------------


def test_json_structure() -> None:
    out = _render("json")
    data = json.loads(out)
    assert out == json.dumps(data, indent=2) + "\n"  # indent 2, trailing newline
    assert list(data) == ["version", "findings", "notes", "summary"]
    assert data["version"] == "1.2.3"
    assert data["summary"] == {
        "findings": 3,
        "error": 1,
        "warning": 1,
        "info": 1,
        "files_checked": 4,
        "notes": 2,
    }
    first = data["findings"][0]
    assert first == {
        "code": "AG201",
        "name": "shared-session-concurrency",
        "severity": "error",
        "path": ODD_PATH,
        "start_line": 12,
        "start_col": 5,
        "end_line": 12,
        "end_col": 40,
        "message": ODD_MESSAGE,
        "section": "Pattern: Concurrent vs Sequential Queries",
        "fingerprint": "0123456789abcdef0123",
        "related": [
            {
                "path": ODD_PATH,
                "start_line": line,
                "start_col": 9,
                "end_line": line,
                "end_col": 30,
                "message": f"{which} use of `session`",
            }
            for line, which in ((13, "second"), (14, "third"))
        ],
        "fix": {
            "description": "Open one session per task",
            "safety": "unsafe",
            "edits": [
                {
                    "start_line": 12,
                    "start_col": 5,
                    "end_line": 12,
                    "end_col": 40,
                    "content": "await asyncio.gather(a(), b())",
                }
            ],
        },
    }
    # Key order is part of the format (stable diffs of saved reports).
    assert list(first) == JSON_FINDING_KEYS
    assert data["findings"][1]["fix"] is None
    assert data["findings"][1]["related"] == []
    assert data["notes"] == [
        {
            "kind": "syntax-error",
            "path": "app/broken.py",
            "line": 3,
            "col": 7,
            "message": "invalid syntax",
        },
        {
            "kind": "binary-file",
            "path": "static/logo.png",
            "line": None,
            "col": None,
            "message": "not a text file",
        },
    ]


def test_json_is_ascii_and_survives_undecodable_paths() -> None:
    report = Report(findings=[_finding(Severity.INFO, path="bad\udcff.py")])
    out = _render("json", report)
    out.encode("ascii")  # never fails on a narrow stdout encoding
    assert json.loads(out)["findings"][0]["path"] == "bad\udcff.py"


# --- sarif -----------------------------------------------------------------------------------

# RFC 3986 characters; jsonschema checks the `uri` formats only with optional packages, so
# these stdlib checks stand in (they catch raw spaces and non-ASCII, the usual mistakes).
_URI_CHARS = r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*"
_URI = re.compile(rf"[A-Za-z][A-Za-z0-9+.\-]*:{_URI_CHARS}")
_URI_REFERENCE = re.compile(_URI_CHARS)


def _sarif_validator() -> Any:
    if not SARIF_SCHEMA_PATH.is_file():
        pytest.skip(
            f"SARIF schema not found at {SARIF_SCHEMA_PATH} (the ../shared reference folder)"
        )
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SARIF_SCHEMA_PATH.read_text(encoding="utf-8"))
    # The schema declares its own draft ($schema: draft-04); Draft 7 only if it did not.
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    checker = jsonschema.FormatChecker()
    checker.checks("uri")(lambda value: not isinstance(value, str) or bool(_URI.fullmatch(value)))
    checker.checks("uri-reference")(
        lambda value: not isinstance(value, str) or bool(_URI_REFERENCE.fullmatch(value))
    )
    return cls(schema, format_checker=checker)


def _assert_valid_sarif(document: Mapping[str, Any]) -> None:
    errors = sorted(_sarif_validator().iter_errors(document), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def _sarif(report: Report | None = None) -> dict[str, Any]:
    out = _render("sarif", report)
    document: dict[str, Any] = json.loads(out)
    return document


def test_sarif_is_valid_against_the_official_schema() -> None:
    _assert_valid_sarif(_sarif())
    _assert_valid_sarif(_sarif(Report()))


def test_sarif_schema_validation_catches_a_bad_document() -> None:
    # Guards the guard: an unencoded URI and a wrong level must both be reported.
    document = _sarif()
    result = document["runs"][0]["results"][0]
    result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] = "a b.py"
    result["level"] = "fatal"
    messages = [e.message for e in _sarif_validator().iter_errors(document)]
    assert any("a b.py" in message for message in messages)
    assert any("fatal" in message for message in messages)


def test_sarif_run_and_driver() -> None:
    document = _sarif()
    assert document["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    assert document["version"] == "2.1.0"
    assert len(document["runs"]) == 1
    run = document["runs"][0]
    assert "originalUriBaseIds" not in run
    driver = run["tool"]["driver"]
    assert driver["name"] == "asyncguard"
    assert driver["version"] == "1.2.3"
    assert driver["informationUri"] == "https://github.com/asyncguard/asyncguard"
    # Every known rule, used or not, in code order.
    assert [rule["id"] for rule in driver["rules"]] == ["AG101", "AG104", "AG201", "AG202"]
    ag104 = driver["rules"][1]
    assert ag104 == {
        "id": "AG104",
        "name": "session-outlives-request",
        "shortDescription": {"text": "A request-scoped session is passed to a background task."},
        "fullDescription": {"text": "A request-scoped session is passed to a background task."},
        "help": {
            "text": "## What it does\nFlags a session handed to a task.\n\n"
            "Correction: Pass primary keys and open a session inside the task.",
            "markdown": "## What it does\nFlags a session handed to a task.\n\n"
            "**Correction:** Pass primary keys and open a session inside the task.",
        },
        "helpUri": "https://github.com/asyncguard/asyncguard/blob/main/docs/rules/AG104.md",
        "defaultConfiguration": {"level": "warning"},
        "properties": {
            "tags": ["async", "Pattern: AsyncSession Lifecycle"],
            "problem.severity": "warning",
        },
    }
    levels = {rule["id"]: rule["defaultConfiguration"]["level"] for rule in driver["rules"]}
    assert levels == {"AG101": "error", "AG104": "warning", "AG201": "error", "AG202": "note"}
    assert driver["rules"][0]["help"]["text"] == "## What it does\nFlags a module-level session."
    assert driver["rules"][3]["properties"]["problem.severity"] == "recommendation"


def test_sarif_results() -> None:
    run = _sarif()["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    results = run["results"]
    assert [r["ruleId"] for r in results] == ["AG201", "AG104", "AG202"]
    assert [r["level"] for r in results] == ["error", "warning", "note"]
    for result in results:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]

    first = results[0]
    assert first["message"] == {"text": ODD_MESSAGE}
    assert first["locations"] == [
        {
            "physicalLocation": {
                "artifactLocation": {"uri": ODD_URI, "uriBaseId": "%SRCROOT%"},
                "region": {"startLine": 12, "startColumn": 5, "endLine": 12, "endColumn": 40},
            }
        }
    ]
    assert first["relatedLocations"] == [
        {
            "id": number,
            "physicalLocation": {
                "artifactLocation": {"uri": ODD_URI, "uriBaseId": "%SRCROOT%"},
                "region": {"startLine": line, "startColumn": 9, "endLine": line, "endColumn": 30},
            },
            "message": {"text": f"{which} use of `session`"},
        }
        for number, line, which in ((1, 13, "second"), (2, 14, "third"))
    ]
    assert first["partialFingerprints"] == {"asyncguard/v1": "0123456789abcdef0123"}
    assert first["fixes"] == [
        {
            "description": {"text": "Open one session per task"},
            "artifactChanges": [
                {
                    "artifactLocation": {"uri": ODD_URI, "uriBaseId": "%SRCROOT%"},
                    "replacements": [
                        {
                            "deletedRegion": {
                                "startLine": 12,
                                "startColumn": 5,
                                "endLine": 12,
                                "endColumn": 40,
                            },
                            "insertedContent": {"text": "await asyncio.gather(a(), b())"},
                        }
                    ],
                }
            ],
            "properties": {"safety": "unsafe"},
        }
    ]

    second = results[1]
    assert second["locations"][0]["physicalLocation"]["region"] == {
        "startLine": 20,
        "startColumn": 1,
        "endLine": 22,
        "endColumn": 10,
    }
    assert "relatedLocations" not in second
    assert "fixes" not in second
    # No fingerprint, no partialFingerprints (an empty one would merge unrelated alerts).
    assert "partialFingerprints" not in results[2]


def test_sarif_result_level_follows_the_configured_severity() -> None:
    report = Report(findings=[_outlives_request().with_severity(Severity.ERROR)])
    run = _sarif(report)["runs"][0]
    assert run["results"][0]["level"] == "error"
    assert run["tool"]["driver"]["rules"][1]["defaultConfiguration"]["level"] == "warning"


def test_sarif_notes_are_tool_notifications() -> None:
    invocations = _sarif()["runs"][0]["invocations"]
    assert invocations == [
        {
            "executionSuccessful": True,
            "toolExecutionNotifications": [
                {
                    "level": "warning",
                    "message": {"text": "invalid syntax"},
                    "descriptor": {"id": "syntax-error"},
                    "locations": [
                        {
                            "physicalLocation": {
                                "artifactLocation": {
                                    "uri": "app/broken.py",
                                    "uriBaseId": "%SRCROOT%",
                                },
                                "region": {"startLine": 3, "startColumn": 7},
                            }
                        }
                    ],
                },
                {
                    "level": "warning",
                    "message": {"text": "not a text file"},
                    "descriptor": {"id": "binary-file"},
                    "locations": [
                        {
                            "physicalLocation": {
                                "artifactLocation": {
                                    "uri": "static/logo.png",
                                    "uriBaseId": "%SRCROOT%",
                                }
                            }
                        }
                    ],
                },
            ],
        }
    ]
    empty = _sarif(Report())["runs"][0]
    assert empty["invocations"] == [{"executionSuccessful": True}]
    assert empty["results"] == []  # an empty list means "ran, found nothing" to GitHub


def test_sarif_unknown_code_gets_a_descriptor() -> None:
    report = Report(findings=[_finding(Severity.WARNING)])
    document = _sarif(report)
    _assert_valid_sarif(document)
    run = document["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert rules[run["results"][0]["ruleIndex"]] == {
        "id": "AG999",
        "name": "x",
        "defaultConfiguration": {"level": "warning"},
        "properties": {"tags": ["async", "S"], "problem.severity": "warning"},
    }


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("app/db.py", {"uri": "app/db.py", "uriBaseId": "%SRCROOT%"}),
        ("./app/db.py", {"uri": "app/db.py", "uriBaseId": "%SRCROOT%"}),
        (ODD_PATH, {"uri": ODD_URI, "uriBaseId": "%SRCROOT%"}),
        ("a:b#c?d%e.py", {"uri": "a%3Ab%23c%3Fd%25e.py", "uriBaseId": "%SRCROOT%"}),
        ("bad\udcff.py", {"uri": "bad%FF.py", "uriBaseId": "%SRCROOT%"}),
        ("/abs/my file.py", {"uri": "file:///abs/my%20file.py"}),
    ],
)
def test_sarif_artifact_location(path: str, location: dict[str, str]) -> None:
    assert sarif_reporter.artifact_location(path) == location


# --- github ----------------------------------------------------------------------------------

EXPECTED_GITHUB = (
    "::error file=app/my dir/résumé.py,line=12,col=5,endLine=12,endColumn=40,"
    "title=AG201 shared-session-concurrency"
    "::`session` runs 100%25 of 3 queries: a, b%0Ain one `gather`"
    "%0Asecond use of `session` (see line 13)"
    "%0Athird use of `session` (see line 14)\n"
    # Several lines: the runner takes no columns.
    "::warning file=app/tasks.py,line=20,endLine=22,title=AG104 session-outlives-request"
    "::`db` is passed to `background_tasks.add_task`\n"
    "::notice file=app/views.py,line=7,col=5,endLine=7,endColumn=25,"
    "title=AG202 sequential-independent-awaits::`a()` | `b()` could run concurrently\n"
    "::notice file=app/broken.py,line=3,col=7::syntax-error: invalid syntax\n"
    "::notice file=static/logo.png::binary-file: not a text file\n"
)


def test_github_exact() -> None:
    assert _render("github") == EXPECTED_GITHUB


def test_github_escaping() -> None:
    assert github_reporter.escape_data("100% a:b, c\r\nd") == "100%25 a:b, c%0D%0Ad"
    assert github_reporter.escape_property("100% a:b, c\r\nd") == "100%25 a%3Ab%2C c%0D%0Ad"
    # `%` is escaped first, so an escape already in the text is not decoded by the runner.
    assert github_reporter.escape_data("%0A") == "%250A"


def test_github_properties_are_escaped_and_no_command_can_be_injected() -> None:
    finding = _finding(
        Severity.ERROR, "we:ird,name%.py", code="AG201", message="boom\n::set-env name=X::y"
    )
    out = _render("github", Report(findings=[finding]))
    assert out == (
        "::error file=we%3Aird%2Cname%25.py,line=1,col=1,endLine=1,endColumn=2,title=AG201 x"
        "::boom%0A::set-env name=X::y\n"
    )
    assert out.count("\n") == 1


def test_github_empty_report_prints_nothing() -> None:
    assert _render("github", Report(files_checked=3)) == ""


# --- markdown --------------------------------------------------------------------------------

EXPECTED_TABLE = """\
| Severity | Rule | Location | Message |
| --- | --- | --- | --- |
| error | `AG201` shared-session-concurrency | `app/my dir/résumé.py:12:5` | `session` runs 100% of 3 queries: a, b<br>in one `gather` |
| warning | `AG104` session-outlives-request | `app/tasks.py:20:1` | `db` is passed to `background_tasks.add_task` |
| info | `AG202` sequential-independent-awaits | `app/views.py:7:5` | `a()` \\| `b()` could run concurrently |"""

# The block is the location over the review comment body (bot.comments.render_comment); no
# skill file in these tests' working directory, so the comment quotes the rule's own docs.
EXPECTED_FINDING = """\
#### `app/my dir/résumé.py:12:5`

**AG201 shared-session-concurrency** · error

`session` runs 100% of 3 queries: a, b\\
in one `gather`

- line 13: second use of `session`
- line 14: third use of `session`

From the rule's documentation (guideline: *Pattern: Concurrent vs Sequential Queries*):

> Flags concurrent use of one session.

**Correction:** Use one session per concurrent task.

**Fix** (unsafe): Open one session per task

<!-- asyncguard:fp=0123456789abcdef0123 -->"""


def test_markdown_exact() -> None:
    rules = _rules()
    expected = "\n\n".join(
        [
            "## asyncguard report",
            "Found 3 findings (1 error, 1 warning, 1 info) in 4 files; 2 files skipped.",
            "**Result:** failed (1 finding at or above `error`).",
            EXPECTED_TABLE,
            "### Findings",
            EXPECTED_FINDING,
            markdown_reporter.render_finding(_outlives_request(), rules["AG104"]),
            markdown_reporter.render_finding(_sequential(), rules["AG202"]),
            "### Skipped files\n\n"
            "- `app/broken.py:3:7`: syntax-error: invalid syntax\n"
            "- `static/logo.png`: binary-file: not a text file",
            "<sub>asyncguard 1.2.3</sub>",
        ]
    )
    assert _render("markdown") == expected + "\n"


def test_markdown_render_finding_is_self_contained() -> None:
    assert markdown_reporter.render_finding(_shared_session(), _rules()["AG201"]) == (
        EXPECTED_FINDING
    )
    # Works for a code the catalogue does not know.
    assert markdown_reporter.render_finding(_finding(Severity.INFO), None) == (
        "#### `a.py:1:1`\n\n**AG999 x** · info\n\nm\n\nGuideline: *S*\n\n<!-- asyncguard:fp= -->"
    )


def test_markdown_empty_report() -> None:
    out = _render("markdown", Report(files_checked=2))
    assert out == (
        "## asyncguard report\n\n"
        "All checks passed: 2 files checked.\n\n"
        "**Result:** passed (no findings at or above `error`).\n\n"
        "No findings.\n\n"
        "<sub>asyncguard 1.2.3</sub>\n"
    )
    assert "|" not in out


@pytest.mark.parametrize(
    ("fail_on", "verdict"),
    [
        ("error", "**Result:** failed (1 finding at or above `error`)."),
        ("warning", "**Result:** failed (2 findings at or above `warning`)."),
        ("info", "**Result:** failed (3 findings at or above `info`)."),
        ("never", "**Result:** passed (`fail-on` is `never`)."),
    ],
)
def test_markdown_verdict_follows_fail_on(fail_on: str, verdict: str) -> None:
    assert _render("markdown", fail_on=fail_on).split("\n\n")[2] == verdict


def test_markdown_cell_and_code_escaping() -> None:
    assert markdown_reporter.escape_cell("a | b\nc\r\nd\re") == "a \\| b<br>c<br>d<br>e"
    assert markdown_reporter.code_span("a.py:1:2") == "`a.py:1:2`"
    assert markdown_reporter.code_span("we`ird.py") == "``we`ird.py``"
    assert markdown_reporter.code_span("`x``") == "``` `x`` ```"
    finding = _finding(Severity.ERROR, "a|b.py", code="AG201", message="one | two\nthree")
    row = markdown_reporter.table([finding]).splitlines()[-1]
    assert row == "| error | `AG201` x | `a\\|b.py:1:1` | one \\| two<br>three |"


def test_multi_line_related_and_fix_text_stay_inside_their_finding() -> None:
    finding = _finding(
        Severity.ERROR,
        code="AG201",
        related=(RelatedLocation(Span(2, 3, 2, 4), "r1\nr2"),),
        fix=Fix("f1\r\nf2", FixSafety.SAFE, ()),
    )
    report = Report(findings=[finding], files_checked=1)
    assert _render("text", report) == (
        "a.py:1:1: AG201 [error] m\n"
        "    a.py:2:3: note: r1\n"
        "        r2\n"
        "    fix available (safe): f1\n"
        "        f2\n"
        "\n"
        "Found 1 finding (1 error, 0 warnings, 0 info) in 1 file.\n"
    )
    assert markdown_reporter.render_finding(finding, None) == (
        "#### `a.py:1:1`\n\n"
        "**AG201 x** · error\n\n"
        "m\n\n"
        "- line 2: r1\\\n  r2\n\n"
        "Guideline: *S*\n\n"
        "**Fix** (safe): f1\\\nf2\n\n"
        "<!-- asyncguard:fp= -->"
    )
    assert github_reporter.format_finding(finding) == (
        "::error file=a.py,line=1,col=1,endLine=1,endColumn=2,title=AG201 x::m%0Ar1%0Ar2 (see line 2)"
    )
