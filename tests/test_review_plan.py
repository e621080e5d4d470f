"""Planning the one review a run posts: anchors, the comment cap and the summary table, dedupe
against earlier comments, resolved comments, the empty plan and the request body."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.changeset import ChangeSet, FileChange, FileStatus, Hunk
from bot.comments import BODY_LIMIT, marker, parse_marker
from bot.findings import Edit, Finding, Fix, FixSafety, RelatedLocation, Severity, Span
from bot.review_plan import (
    RESOLVED_NOTE,
    ExistingComment,
    PlannedComment,
    ReviewPlan,
    listed_fingerprints,
    mark_resolved,
    plan_review,
)
from bot.ruleinfo import RuleInfo

PATH = "app/w.py"
FILE = "".join(f"line{n} = {n}\n" for n in range(1, 41))
# New-side hunks: lines 5-12 and 30-34; lines 6-8 and 31 are added.
CHANGE = FileChange(
    PATH,
    FileStatus.MODIFIED,
    added_lines=frozenset({6, 7, 8, 31}),
    hunks=(Hunk(5, 8), Hunk(30, 5)),
)
CHANGESET = ChangeSet(files=(CHANGE,))
TEXTS = {PATH: FILE}
RULES = {
    "AG901": RuleInfo(
        code="AG901",
        name="widget-leak",
        severity=Severity.ERROR,
        section="",
        summary="A widget is opened and never closed.",
        doc="## What it does\nFlags a widget.\n",
    )
}
OPENAPI = (
    Path(__file__).resolve().parents[2] / "shared" / "reference" / "github-rest-openapi-subset.json"
)


def _finding(line: int = 6, **changes: Any) -> Finding:
    finding = Finding(
        code="AG901",
        name="widget-leak",
        severity=Severity.ERROR,
        path=PATH,
        span=Span(line, 1, line, 5),
        message="`w` is never closed",
        section="",
        fingerprint=f"fp{line}",
    )
    return replace(finding, **changes)


def _plan(
    findings: list[Finding],
    existing: list[ExistingComment] | None = None,
    max_comments: int = 25,
    **kwargs: Any,
) -> ReviewPlan:
    return plan_review(
        findings,
        CHANGESET,
        RULES,
        None,
        TEXTS,
        existing or [],
        max_comments=max_comments,
        **kwargs,
    )


def _existing(comment_id: int, fingerprint: str, line: int | None = 6) -> ExistingComment:
    return ExistingComment(comment_id, PATH, line, f"old text\n\n{marker(fingerprint)}")


# --- anchoring ---------------------------------------------------------------------------------


def test_primary_line_inside_a_hunk_is_the_anchor() -> None:
    plan = _plan([_finding(10)])  # a context line inside the first hunk counts
    [comment] = plan.comments
    assert (comment.path, comment.line, comment.start_line, comment.side) == (
        PATH,
        10,
        None,
        "RIGHT",
    )
    assert comment.start_side is None
    assert parse_marker(comment.body) == "fp10"
    assert not plan.overflow


def test_primary_outside_falls_back_to_the_first_related_line_in_a_hunk() -> None:
    finding = _finding(
        20,
        related=(
            RelatedLocation(Span(25, 1, 25, 3), "not in a hunk"),
            RelatedLocation(Span(32, 1, 32, 3), "the commit"),
            RelatedLocation(Span(7, 1, 7, 3), "later related"),
        ),
    )
    [comment] = _plan([finding]).comments
    assert (comment.line, comment.start_line) == (32, None)


def test_multi_line_primary_span_uses_its_first_line_in_a_hunk() -> None:
    finding = _finding(3, span=Span(3, 1, 6, 2))
    [comment] = _plan([finding]).comments
    assert comment.line == 5


def test_no_line_in_a_hunk_goes_to_the_summary() -> None:
    finding = _finding(20, related=(RelatedLocation(Span(22, 1, 22, 2), "also outside"),))
    other_file = _finding(6, path="other.py", fingerprint="other")
    plan = _plan([finding, other_file])
    assert plan.comments == []
    assert [row.path for row in plan.overflow] == [PATH, "other.py"]
    assert f"`{PATH}:20`" in plan.body
    assert "`other.py:6`" in plan.body
    assert not plan.is_empty


def test_whole_file_changeset_without_hunks_posts_no_inline_comment() -> None:
    plan = plan_review(
        [_finding(6)], ChangeSet(whole_files=True), RULES, None, TEXTS, [], max_comments=5
    )
    assert plan.comments == [] and len(plan.overflow) == 1


# --- suggestions -------------------------------------------------------------------------------


def test_multi_line_suggestion_is_anchored_on_its_range() -> None:
    fix = Fix("rewrite", FixSafety.SAFE, (Edit(Span(6, 1, 8, 10), "a = 1\nb = 2"),))
    finding = _finding(7, fix=fix)
    [comment] = _plan([finding]).comments
    assert (comment.start_line, comment.line) == (6, 8)
    assert comment.start_side == "RIGHT"
    assert "```suggestion" in comment.body
    assert comment.to_json() == {
        "path": PATH,
        "line": 8,
        "side": "RIGHT",
        "start_line": 6,
        "start_side": "RIGHT",
        "body": comment.body,
    }


def test_single_line_suggestion_has_no_start_line() -> None:
    fix = Fix("rewrite", FixSafety.SAFE, (Edit(Span(31, 1, 31, 5), "LINE"),))
    [comment] = _plan([_finding(31, fix=fix)]).comments
    assert (comment.start_line, comment.line) == (None, 31)
    assert "```suggestion" in comment.body
    assert "start_line" not in comment.to_json()


def test_fix_on_unchanged_lines_is_no_suggestion_and_anchors_on_the_primary() -> None:
    fix = Fix("rewrite", FixSafety.SAFE, (Edit(Span(9, 1, 10, 5), "x"),))  # context lines
    [comment] = _plan([_finding(9, fix=fix)]).comments
    assert (comment.start_line, comment.line) == (None, 9)
    assert "```suggestion" not in comment.body


# --- order and the cap -------------------------------------------------------------------------


def test_most_severe_first_then_path_and_line() -> None:
    findings = [
        _finding(31, severity=Severity.INFO),
        _finding(10, severity=Severity.WARNING),
        _finding(32, severity=Severity.ERROR),
        _finding(6, severity=Severity.WARNING),
        _finding(7, path="a.py", severity=Severity.WARNING, fingerprint="a7"),
    ]
    plan = _plan(findings)
    assert [(c.path, c.line) for c in plan.comments] == [
        (PATH, 32),
        (PATH, 6),
        (PATH, 10),
        (PATH, 31),
    ]
    # a.py is not in the diff: a table row, ranked with the warnings
    assert [row.path for row in plan.overflow] == ["a.py"]
    assert "5 new problems: 1 error, 3 warnings, 1 info." in plan.body


def test_max_comments_overflow_goes_to_the_table() -> None:
    findings = [_finding(line, message=f"m{line} | pipe\nnext") for line in (5, 6, 7, 8, 9)]
    plan = _plan(findings, max_comments=2)
    assert [c.line for c in plan.comments] == [5, 6]
    assert [row.line for row in plan.overflow] == [7, 8, 9]
    assert "| Severity | Rule | Location | Message |" in plan.body
    assert f"| error | AG901 widget-leak | `{PATH}:7` | m7 \\| pipe next |" in plan.body
    assert "over the limit of 2 comments" in plan.body
    assert "2 inline comments below." in plan.body


def test_zero_max_comments_puts_everything_in_the_body() -> None:
    plan = _plan([_finding(6)], max_comments=0)
    assert plan.comments == [] and len(plan.overflow) == 1


def test_table_cells_cannot_hide_the_rest_of_the_body() -> None:
    plan = _plan([_finding(20, message="x <!-- y")])
    assert "<!-- y" not in plan.body
    assert "&lt;!-- y" in plan.body


def test_unknown_event_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown review event"):
        _plan([], event="MERGE")


# --- re-runs -----------------------------------------------------------------------------------


def test_already_posted_fingerprints_are_skipped() -> None:
    existing = [_existing(1, "fp6"), _existing(2, "fp10", line=None)]  # one outdated
    plan = _plan([_finding(6), _finding(10), _finding(31)], existing)
    assert [c.line for c in plan.comments] == [31]
    assert plan.skipped == 2
    assert plan.resolved == []
    assert "2 already reported" in plan.body
    assert "1 new problem: 1 error." in plan.body


def test_comments_without_our_marker_are_ignored() -> None:
    human = ExistingComment(5, PATH, 6, "please fix fp6")
    quoted = ExistingComment(6, PATH, 6, f"{marker('fp6')}\n\nI disagree")  # marker not last
    plan = _plan([_finding(6)], [human, quoted])
    assert plan.skipped == 0 and plan.resolved == []
    assert len(plan.comments) == 1


def test_gone_fingerprints_are_resolved() -> None:
    existing = [_existing(11, "fp6"), _existing(12, "gone"), _existing(13, "also-gone")]
    plan = _plan([_finding(6), _finding(31)], existing)
    assert plan.resolved == [12, 13]
    assert plan.skipped == 1
    assert "2 fixed since the last run." in plan.body
    assert "everything reported earlier" not in plan.body


def test_comments_already_marked_fixed_are_not_resolved_again() -> None:
    done = replace(_existing(12, "gone"), body=mark_resolved(_existing(12, "gone").body))
    assert parse_marker(done.body) == "gone"
    assert RESOLVED_NOTE in done.body
    assert mark_resolved(done.body) == done.body
    plan = _plan([], [done])
    assert plan.is_empty


def test_a_fixed_finding_that_comes_back_is_posted_again() -> None:
    done = replace(_existing(12, "fp6"), body=mark_resolved(_existing(12, "fp6").body))
    plan = _plan([_finding(6)], [done])
    assert len(plan.comments) == 1 and plan.skipped == 0


def test_duplicate_fingerprints_in_one_run_give_one_comment() -> None:
    plan = _plan([_finding(6), _finding(7, fingerprint="fp6")])
    assert len(plan.comments) == 1


def test_nothing_new_and_nothing_fixed_is_empty() -> None:
    assert _plan([]).is_empty
    plan = _plan([_finding(6)], [_existing(1, "fp6")])
    assert plan.is_empty
    assert plan.skipped == 1


def test_all_fixed_says_so_once() -> None:
    plan = _plan([], [_existing(1, "a"), _existing(2, "b")])
    assert not plan.is_empty
    assert plan.resolved == [1, 2]
    assert plan.comments == []
    assert plan.body.count("everything reported earlier on this pull request is fixed") == 1
    assert "fixed since the last run" not in plan.body
    assert plan.to_request("abc")["comments"] == []


def test_some_fixed_none_new_is_not_all_fixed() -> None:
    plan = _plan([_finding(6)], [_existing(1, "fp6"), _existing(2, "gone")])
    assert plan.resolved == [2]
    assert "no new problems" in plan.body
    assert "1 fixed since the last run." in plan.body
    assert "everything reported earlier" not in plan.body


# --- the request -------------------------------------------------------------------------------


def _schema() -> dict[str, Any]:
    if not OPENAPI.is_file():
        pytest.skip(f"no OpenAPI reference at {OPENAPI}")
    spec = json.loads(OPENAPI.read_text(encoding="utf-8"))
    post = spec["paths"]["/repos/{owner}/{repo}/pulls/{pull_number}/reviews"]["post"]
    schema: dict[str, Any] = post["requestBody"]["content"]["application/json"]["schema"]
    return schema


def test_to_request_shape_matches_the_openapi_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    fix = Fix("rewrite", FixSafety.SAFE, (Edit(Span(6, 1, 8, 10), "a = 1\nb = 2"),))
    plan = _plan([_finding(7, fix=fix), _finding(31), _finding(20)], event="REQUEST_CHANGES")
    request = plan.to_request("0123abc")
    jsonschema.validate(request, _schema())
    assert request["commit_id"] == "0123abc"
    assert request["event"] == "REQUEST_CHANGES"
    # The finding off the diff is listed in the body, its fingerprint hidden at the end so the
    # next run does not list it again.
    assert request["body"] == plan.body + "\n\n<!-- asyncguard:listed=fp20 -->"
    assert listed_fingerprints(request["body"]) == {"fp20"}
    assert [set(c) for c in request["comments"]] == [
        {"path", "line", "side", "start_line", "start_side", "body"},
        {"path", "line", "side", "body"},
    ]
    assert all("position" not in c for c in request["comments"])
    json.dumps(request)  # serialisable as is


def test_to_request_drops_invalid_comments_into_the_body() -> None:
    plan = _plan([_finding(6), _finding(31)])
    row = plan.comments[1].row
    bad = [
        plan.comments[0],
        PlannedComment(PATH, 20, body="x", row=row),  # between hunks
        PlannedComment(PATH, 31, start_line=6, start_side="RIGHT", body="x"),  # two hunks
        PlannedComment(PATH, 6, start_line=8, start_side="RIGHT", body="x"),  # inverted
        PlannedComment("nope.py", 6, body="x"),  # not in the diff
        PlannedComment(PATH, 6, side="LEFT", body="x"),
        PlannedComment(PATH, 6, body=""),
    ]
    plan.comments = bad
    request = plan.to_request("sha")
    assert [c["line"] for c in request["comments"]] == [6]
    assert "6 comments could not be placed on the diff:" in request["body"]
    assert f"`{PATH}:31`" in request["body"]  # the row of the first bad comment
    assert f"`{PATH}:20`" not in plan.body
    if OPENAPI.is_file():
        jsonschema = pytest.importorskip("jsonschema")
        jsonschema.validate(request, _schema())


def test_body_table_is_capped() -> None:
    findings = [
        _finding(20, message="m" * 300, fingerprint=f"f{n}", path=f"p{n:04}.py") for n in range(400)
    ]
    plan = _plan(findings)
    assert len(plan.body) <= 65_000
    assert "more not listed" in plan.body


def test_a_review_is_posted_for_new_findings_or_the_all_fixed_note_only() -> None:
    assert _plan([_finding(6)]).needs_review
    assert _plan([], [_existing(1, "a")]).needs_review  # everything fixed: said once
    partly = _plan([_finding(6)], [_existing(1, "fp6"), _existing(2, "gone")])
    assert not partly.needs_review  # one fixed, one still there: only the edit
    assert partly.resolved == [2]
    assert not _plan([]).needs_review


def test_findings_listed_by_an_earlier_review_are_not_listed_again() -> None:
    first = _plan([_finding(20), _finding(6)])
    body = first.to_request("abc")["body"]
    assert listed_fingerprints(body) == {"fp20"}
    again = _plan([_finding(20), _finding(6)], [_existing(1, "fp6")], listed={"fp20"})
    assert not again.needs_review
    assert again.skipped == 2
    assert again.overflow == []


def test_the_listed_marker_fits_under_the_body_limit() -> None:
    findings = [_finding(2000 + n, message="m" * 290) for n in range(400)]
    plan = _plan(findings, max_comments=0)
    body = plan.to_request("abc")["body"]
    assert len(body) <= BODY_LIMIT
    assert body.endswith("-->")
    listed = listed_fingerprints(body)
    assert 0 < len(listed) < 400  # only the rows the table could show
    assert all(f"`{PATH}:{int(fp[2:])}`" in body for fp in listed)
