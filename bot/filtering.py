"""Which findings a change is answerable for (reviewdog's filter modes, plus related lines).

- `added`: a finding is kept when its primary location or any related location touches an added
  line. The related part matters for async bugs: the PR that adds a `commit()` or a `gather`
  causes a finding whose primary line it never touched.
- `diff_context`: the same, against every line inside a hunk (context lines included).
- `file`: every finding in a changed file.
- `nofilter`: everything.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from bot.changeset import ChangeSet, FileChange
from bot.findings import Finding, Span

FilterMode = Literal["added", "diff_context", "file", "nofilter"]
FILTER_MODES: tuple[FilterMode, ...] = ("added", "diff_context", "file", "nofilter")


def filter_findings(
    findings: Iterable[Finding], changeset: ChangeSet, mode: FilterMode
) -> list[Finding]:
    if mode == "nofilter" or changeset.whole_files:
        return list(findings)
    kept = []
    for finding in findings:
        change = changeset.get(finding.path)
        if change is None:
            continue
        if mode == "file" or any(_touches(span, change, mode) for span in finding.all_spans()):
            kept.append(finding)
    return kept


def _touches(span: Span, change: FileChange, mode: FilterMode) -> bool:
    if mode == "added":
        return any(line in change.added_lines for line in span.lines)
    return any(change.in_hunk(line) for line in span.lines)
