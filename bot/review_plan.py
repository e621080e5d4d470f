"""The one review a run posts, planned from the findings: pure data, no network.

`plan_review` decides, for every finding, whether it becomes an inline comment (and on which
lines), a row of the summary table in the review body, or nothing because an earlier run already
commented on it. It also lists earlier asyncguard comments whose finding is gone, so the poster
can mark them fixed. `ReviewPlan.to_request` gives the JSON body of
`POST /repos/{owner}/{repo}/pulls/{pull_number}/reviews`.

GitHub's anchoring rules (all violations are a 422 that rejects the whole review):

- comments go on the new side (`side: RIGHT`), on a line inside a hunk of that file's diff;
  context lines inside a hunk count, lines between hunks do not;
- a multi-line comment (`start_line`..`line`) has `start_line < line`, both in the same hunk;
- a ```suggestion block replaces exactly the commented lines, so a comment whose body has one is
  anchored on the suggestion's range (`suggestion_for` keeps that range inside one hunk).

`to_request` checks every comment against the hunks once more and moves any that would break
these rules into the body, so one bad anchor never costs the whole review.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.changeset import ChangeSet, FileChange
from bot.comments import (
    BODY_LIMIT,
    code_span,
    escape_text,
    parse_marker,
    render_comment,
    suggestion_for,
)
from bot.findings import Finding, Severity
from bot.ruleinfo import RuleInfo
from bot.skill import Skill

__all__ = [
    "EVENTS",
    "RESOLVED_NOTE",
    "REVIEW_MARKER",
    "ExistingComment",
    "PlannedComment",
    "ReviewPlan",
    "SummaryRow",
    "listed_fingerprints",
    "listed_marker",
    "mark_resolved",
    "plan_review",
    "severity_counts",
    "table_cell",
]

EVENTS = frozenset({"COMMENT", "REQUEST_CHANGES", "APPROVE"})
RIGHT = "RIGHT"
# The first line of every review body asyncguard posts (hidden), so its reviews can be found.
REVIEW_MARKER = "<!-- asyncguard:review -->"
# The fingerprints of findings a review lists only in its body's table (they have no comment to
# carry a marker), so that the next run does not list them again.
_LISTED = re.compile(r"<!-- asyncguard:listed=([A-Za-z0-9_.:,]*) -->")
# What the poster puts in a comment whose finding is gone (see `mark_resolved`). A comment that
# carries it is done: it is neither resolved again nor counted as "already reported".
RESOLVED_NOTE = "**Fixed** since this comment was posted (asyncguard no longer reports it)."
MESSAGE_CELL_LIMIT = 300
_CELL_BREAKS = re.compile(r"\s*(?:\r\n|\r|\n)\s*")
_COMMENT_OPENER = re.compile(r"<(?=!--)")
_SEVERITY_WORDS = {
    Severity.ERROR: ("error", "errors"),
    Severity.WARNING: ("warning", "warnings"),
    Severity.INFO: ("info", "info"),
}


@dataclass(frozen=True)
class ExistingComment:
    """A review comment already on the pull request (from `GET .../pulls/{n}/comments`).

    `line` is None for an outdated comment. Only bodies that end with asyncguard's marker count.
    """

    id: int
    path: str
    line: int | None
    body: str


@dataclass(frozen=True)
class SummaryRow:
    """One finding as a row of the review body's table."""

    severity: Severity
    rule: str  # "AG201 shared-session-concurrency"
    path: str
    line: int
    message: str
    fingerprint: str = ""

    def render(self) -> str:
        cells = (
            self.severity.value,
            escape_text(self.rule.replace("|", "/")),
            code_span(f"{self.path}:{self.line}"),
            _shorten(self.message, MESSAGE_CELL_LIMIT),
        )
        return "| " + " | ".join(table_cell(cell) for cell in cells) + " |"


@dataclass(frozen=True)
class PlannedComment:
    """One inline comment of the review. `start_line`/`start_side` only for a line range."""

    path: str
    line: int
    start_line: int | None = None
    side: str = RIGHT
    start_side: str | None = None
    body: str = ""
    fingerprint: str = ""
    # The finding as a table row, used when the comment cannot be placed after all.
    row: SummaryRow | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "line": self.line, "side": self.side}
        if self.start_line is not None:
            out["start_line"] = self.start_line
            out["start_side"] = self.start_side or self.side
        out["body"] = self.body
        return out


@dataclass
class ReviewPlan:
    """What one run posts: one review, plus the earlier comments to mark as fixed."""

    comments: list[PlannedComment]
    body: str
    event: str = "COMMENT"
    resolved: list[int] = field(default_factory=list)  # ids of earlier comments now fixed
    skipped: int = 0  # findings an earlier run already commented on
    overflow: list[SummaryRow] = field(default_factory=list)  # findings only in the body
    changeset: ChangeSet = field(default_factory=ChangeSet, repr=False)
    all_fixed: bool = False  # everything reported earlier is fixed and nothing is left
    listed: list[str] = field(default_factory=list)  # fingerprints shown in the body's table

    @property
    def is_empty(self) -> bool:
        """Nothing new and nothing fixed: the poster posts nothing."""
        return not self.comments and not self.overflow and not self.resolved

    @property
    def needs_review(self) -> bool:
        """Whether a review is posted: new findings, or the one "all fixed" note. Fixes of
        some findings only edit their comments, so each push does not notify reviewers."""
        return bool(self.comments or self.overflow or self.all_fixed)

    def to_request(self, commit_id: str) -> dict[str, Any]:
        """The JSON body of `POST /repos/{owner}/{repo}/pulls/{pull_number}/reviews`.

        Every comment is checked against the hunks again; one that would be rejected is left out
        and listed in the body instead.
        """
        valid, invalid = self.placeable()
        return self.request_with(valid, invalid, commit_id)

    def placeable(self) -> tuple[list[PlannedComment], list[PlannedComment]]:
        """The comments whose anchors GitHub should accept, and the others."""
        valid = [c for c in self.comments if anchor_problem(c, self.changeset) is None]
        invalid = [c for c in self.comments if anchor_problem(c, self.changeset) is not None]
        return valid, invalid

    def request_with(
        self,
        comments: Sequence[PlannedComment],
        dropped: Sequence[PlannedComment],
        commit_id: str,
        refused: Sequence[PlannedComment] = (),
    ) -> dict[str, Any]:
        """The request with `comments` inline; `dropped` (anchors the plan could not place) and
        `refused` (anchors GitHub refused) are listed in the body instead."""
        sections = [
            ("could not be placed on the diff", [c.row or _bare_row(c) for c in dropped]),
            (
                "refused by GitHub (line not in its diff)",
                [c.row or _bare_row(c) for c in refused],
            ),
        ]
        every = [row.fingerprint for _, rows in sections for row in rows]
        # Room for the marker, counting every row, though only those shown go into it.
        room = len(listed_marker([*self.listed, *every])) + 2
        body = self.body
        if len(comments) != len(self.comments):
            body = body.replace(
                _inline_sentence(len(self.comments)), _inline_sentence(len(comments))
            )
        shown_fingerprints: list[str] = []
        for reason, rows in sections:
            if rows:
                body, shown = _append_section(
                    body, f"{_count(len(rows), 'comment')} {reason}:", rows, limit=BODY_LIMIT - room
                )
                shown_fingerprints.extend(row.fingerprint for row in shown)
        marker = listed_marker([*self.listed, *shown_fingerprints])
        if marker:
            body = f"{body}\n\n{marker}"
        return {
            "commit_id": commit_id,
            "event": self.event,
            "body": body,
            "comments": [c.to_json() for c in comments],
        }


def plan_review(
    findings: Sequence[Finding],
    changeset: ChangeSet,
    rules: Mapping[str, RuleInfo],
    skill: Skill | None,
    file_texts: Mapping[str, str],
    existing: Sequence[ExistingComment],
    *,
    max_comments: int,
    event: str = "COMMENT",
    listed: Collection[str] = (),
) -> ReviewPlan:
    """Plan the review for `findings` (of the pull request's head) on `changeset` (its diff).

    `file_texts` maps a path to its head text (needed for suggestions); `existing` are the pull
    request's review comments so far. At most `max_comments` inline comments, most severe first;
    the others, and findings with no line in the diff, go to the body's table. `listed` are the
    fingerprints earlier reviews listed in their tables (see `listed_fingerprints`): those are
    not listed again.
    """
    if event not in EVENTS:
        raise ValueError(f"unknown review event {event!r}; expected one of {sorted(EVENTS)}")
    max_comments = max(0, max_comments)

    ours = [(comment, fp) for comment in existing if (fp := _live_fingerprint(comment))]
    posted = {fp for _, fp in ours} | set(listed)
    current = {finding.fingerprint for finding in findings if finding.fingerprint}
    resolved = sorted({comment.id for comment, fp in ours if fp not in current})

    new: list[Finding] = []
    seen: set[str] = set()
    skipped = 0
    for finding in sorted(findings, key=_order):
        fp = finding.fingerprint
        if fp and fp in posted:
            skipped += 1
            continue
        if fp and fp in seen:
            continue  # the same finding twice in one run: comment once
        if fp:
            seen.add(fp)
        new.append(finding)

    comments: list[PlannedComment] = []
    overflow: list[SummaryRow] = []
    for finding in new:
        row = _row(finding)
        planned = (
            _plan_comment(finding, changeset, rules, skill, file_texts, row)
            if len(comments) < max_comments
            else None
        )
        if planned is None:
            overflow.append(row)
        else:
            comments.append(planned)

    body, listed_rows = _summary(
        new,
        comments=len(comments),
        overflow=overflow,
        max_comments=max_comments,
        skipped=skipped,
        resolved=len(resolved),
        all_fixed=bool(resolved) and not findings,
    )
    return ReviewPlan(
        all_fixed=bool(resolved) and not findings,
        listed=[row.fingerprint for row in listed_rows if row.fingerprint],
        comments=comments,
        body=body,
        event=event,
        resolved=resolved,
        skipped=skipped,
        overflow=overflow,
        changeset=changeset,
    )


def severity_counts(findings: Sequence[Finding]) -> str:
    """ "2 errors, 1 warning": the non-zero counts by severity, most severe first."""
    return ", ".join(
        f"{n} {_SEVERITY_WORDS[severity][n != 1]}"
        for severity in (Severity.ERROR, Severity.WARNING, Severity.INFO)
        if (n := sum(1 for finding in findings if finding.severity is severity))
    )


def listed_marker(fingerprints: Sequence[str]) -> str:
    """The hidden line that records the fingerprints a review body lists."""
    unique = list(dict.fromkeys(fp for fp in fingerprints if fp))
    return f"<!-- asyncguard:listed={','.join(unique)} -->" if unique else ""


def listed_fingerprints(body: str) -> set[str]:
    """The fingerprints an earlier asyncguard review body listed in its table."""
    found: set[str] = set()
    for match in _LISTED.finditer(body or ""):
        found.update(fp for fp in match.group(1).split(",") if fp)
    return found


def mark_resolved(body: str) -> str:
    """An earlier comment's body edited to say its finding is fixed (the marker stays last)."""
    if RESOLVED_NOTE in body:
        return body
    fingerprint = parse_marker(body)
    if fingerprint is None:
        return f"{body}\n\n{RESOLVED_NOTE}"
    head, _, tail = body.rpartition("<!-- asyncguard:fp=")
    return f"{head.rstrip()}\n\n{RESOLVED_NOTE}\n\n<!-- asyncguard:fp={tail}"


def anchor_problem(comment: PlannedComment, changeset: ChangeSet) -> str | None:
    """Why GitHub would reject `comment`'s anchor on `changeset`, None when it would not."""
    change = changeset.get(comment.path)
    if change is None:
        return "the file is not part of the diff"
    if comment.side != RIGHT:
        return "only the new side (RIGHT) is supported"
    if not comment.body or len(comment.body) > BODY_LIMIT:
        return "the body is empty or too long"
    hunk = change.hunk_of(comment.line)
    if hunk is None:
        return f"line {comment.line} is not inside a hunk"
    if comment.start_line is None:
        return None if comment.start_side is None else "start_side without start_line"
    if comment.start_side not in (None, RIGHT):
        return "start_side must be RIGHT"
    if comment.start_line >= comment.line:
        return "start_line must precede line"
    if comment.start_line not in hunk:
        return "start_line is not in the same hunk as line"
    return None


# --- anchoring -----------------------------------------------------------------------------------


def _plan_comment(
    finding: Finding,
    changeset: ChangeSet,
    rules: Mapping[str, RuleInfo],
    skill: Skill | None,
    file_texts: Mapping[str, str],
    row: SummaryRow,
) -> PlannedComment | None:
    change = changeset.get(finding.path)
    if change is None or not change.hunks:
        return None
    file_text = file_texts.get(finding.path)
    suggestion = suggestion_for(finding, file_text, change)
    if suggestion is not None:
        start, end, _ = suggestion
        line, start_line = end, (start if start < end else None)
    else:
        anchor = _anchor_line(finding, change)
        if anchor is None:
            return None
        line, start_line = anchor, None
    body = render_comment(
        finding, rules.get(finding.code), skill, file_text=file_text, change=change
    )
    planned = PlannedComment(
        path=finding.path,
        line=line,
        start_line=start_line,
        start_side=RIGHT if start_line is not None else None,
        body=body,
        fingerprint=finding.fingerprint,
        row=row,
    )
    return planned if anchor_problem(planned, changeset) is None else None


def _anchor_line(finding: Finding, change: FileChange) -> int | None:
    """The primary span's first line inside a hunk, else that of the first related location."""
    spans = [finding.span, *(related.span for related in finding.related)]
    for span in spans:
        for line in _lines_start_first(span.start_line, span.end_line):
            if change.in_hunk(line):
                return line
    return None


def _lines_start_first(start: int, end: int) -> Iterable[int]:
    yield start
    yield from range(start + 1, end + 1)


# --- the body --------------------------------------------------------------------------------


def _summary(
    new: Sequence[Finding],
    *,
    comments: int,
    overflow: Sequence[SummaryRow],
    max_comments: int,
    skipped: int,
    resolved: int,
    all_fixed: bool,
) -> tuple[str, list[SummaryRow]]:
    parts = [REVIEW_MARKER]
    if new:
        parts.append(
            f"**asyncguard** found {_count(len(new), 'new problem')}: {severity_counts(new)}."
        )
        if comments:
            parts.append(_inline_sentence(comments))
    elif all_fixed:
        parts.append(
            "**asyncguard**: everything reported earlier on this pull request is fixed. "
            "No problems remain."
        )
    else:
        parts.append("**asyncguard** found no new problems.")
    if skipped:
        parts.append(f"{skipped} already reported (see the earlier comments).")
    if resolved and not all_fixed:
        parts.append(f"{resolved} fixed since the last run.")
    body = "\n\n".join(parts)
    if overflow:
        reason = (
            f"not shown inline (over the limit of {max_comments} comments, or not on a "
            "changed line):"
        )
        # Room is left for the hidden list of these findings' fingerprints (see `request_with`).
        reserve = len(listed_marker([row.fingerprint for row in overflow])) + 2
        body, shown = _append_section(
            body,
            f"{_count(len(overflow), 'problem')} {reason}",
            overflow,
            limit=BODY_LIMIT - reserve,
        )
        return body, shown
    return body, []


def _inline_sentence(count: int) -> str:
    return f"{_count(count, 'inline comment')} below." if count else "No inline comments."


def _append_section(
    body: str, title: str, rows: Sequence[SummaryRow], limit: int = BODY_LIMIT
) -> tuple[str, list[SummaryRow]]:
    """`body` with a table of `rows` appended, cut (with a count of the rest) to `limit`;
    also the rows that made it into the table."""
    header = f"{body}\n\n{title}\n\n| Severity | Rule | Location | Message |\n|---|---|---|---|"
    lines: list[str] = []
    shown: list[SummaryRow] = []
    size = len(header)
    for index, row in enumerate(rows):
        line = row.render()
        rest = len(rows) - index - 1
        tail = 60  # room for the "... and N more" line
        if size + 1 + len(line) + (tail if rest else 0) > limit:
            lines.append(f"\n*… and {len(rows) - index} more not listed.*")
            break
        lines.append(line)
        shown.append(row)
        size += 1 + len(line)
    return "\n".join([header, *lines]), shown


def _row(finding: Finding) -> SummaryRow:
    return SummaryRow(
        severity=finding.severity,
        rule=f"{finding.code} {finding.name}".strip(),
        path=finding.path,
        line=finding.span.start_line,
        message=finding.message,
        fingerprint=finding.fingerprint,
    )


def _bare_row(comment: PlannedComment) -> SummaryRow:
    return SummaryRow(Severity.INFO, "", comment.path, comment.line, "")


def table_cell(text: str) -> str:
    """Text as one table cell: one line, pipes escaped, no HTML comment that could hide the rest."""
    text = _CELL_BREAKS.sub(" ", text.strip())
    text = _COMMENT_OPENER.sub("&lt;", text)
    return text.replace("|", "\\|")


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _order(finding: Finding) -> tuple[int, str, int, int, str]:
    return (
        -finding.severity.rank,
        finding.path,
        finding.span.start_line,
        finding.span.start_col,
        finding.code,
    )


def _live_fingerprint(comment: ExistingComment) -> str | None:
    """The fingerprint of one of our comments that is not yet marked fixed, else None."""
    fingerprint = parse_marker(comment.body)
    if not fingerprint or RESOLVED_NOTE in comment.body:
        return None
    return fingerprint
