"""Inline suppressions and the filter modes."""

from __future__ import annotations

import pytest

from bot.changeset import ChangeSet, FileChange, FileStatus, Hunk
from bot.filtering import filter_findings
from bot.findings import Finding, RelatedLocation, Severity, Span
from bot.suppressions import ALL, Suppressions, parse_comment


@pytest.mark.parametrize(
    ("comment", "expected"),
    [
        ("# noqa", {ALL}),
        ("#noqa", {ALL}),
        ("# NOQA", {ALL}),
        ("# noqa: AG101", {"AG101"}),
        ("# noqa:AG101,AG201", {"AG101", "AG201"}),
        ("# noqa: AG101 AG201 because reasons", {"AG101", "AG201"}),
        ("# noqa: E501", {"E501"}),
        ("# asyncguard: ignore[AG501]", {"AG501"}),
        ("# asyncguard: ignore[unreferenced-task, AG201]", {"unreferenced-task", "AG201"}),
        ("# a plain comment", set()),
    ],
)
def test_parse_comment(comment: str, expected: set[str]) -> None:
    assert parse_comment(comment) == expected


def test_noqa_in_a_string_is_not_a_comment() -> None:
    source = 'x = "# noqa"\ny = 1  # noqa: AG101\n'
    suppressions = Suppressions.from_source(source)
    assert not suppressions.suppresses("AG101", "global-session", [1])
    assert suppressions.suppresses("AG101", "global-session", [2])
    assert not suppressions.suppresses("AG201", "shared-session-concurrency", [2])


def test_other_tools_codes_suppress_nothing() -> None:
    suppressions = Suppressions.from_source("x = 1  # noqa: E501\n")
    assert not suppressions.suppresses("AG101", "global-session", [1])


def _finding(line: int, related: tuple[int, ...] = (), path: str = "a.py") -> Finding:
    return Finding(
        code="AG201",
        name="shared-session-concurrency",
        severity=Severity.ERROR,
        path=path,
        span=Span(line, 1, line, 10),
        message="m",
        section="s",
        related=tuple(RelatedLocation(Span(r, 1, r, 5), "use") for r in related),
    )


CHANGES = ChangeSet(
    (FileChange("a.py", FileStatus.MODIFIED, added_lines=frozenset({10, 11}), hunks=(Hunk(7, 8),)),)
)


def test_added_keeps_primary_or_related_on_added_lines() -> None:
    findings = [
        _finding(10),
        _finding(3, related=(11,)),
        _finding(8),
        _finding(30),
        _finding(10, path="b.py"),
    ]
    kept = filter_findings(findings, CHANGES, "added")
    assert [(f.path, f.span.start_line) for f in kept] == [("a.py", 10), ("a.py", 3)]


def test_diff_context_file_and_nofilter() -> None:
    findings = [_finding(10), _finding(8), _finding(30), _finding(10, path="b.py")]
    assert [f.span.start_line for f in filter_findings(findings, CHANGES, "diff_context")] == [
        10,
        8,
    ]
    assert [f.span.start_line for f in filter_findings(findings, CHANGES, "file")] == [10, 8, 30]
    assert len(filter_findings(findings, CHANGES, "nofilter")) == 4


def test_whole_files_keep_everything() -> None:
    findings = [_finding(30)]
    assert filter_findings(findings, ChangeSet((), whole_files=True), "added") == findings
