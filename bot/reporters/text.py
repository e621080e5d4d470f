"""Terminal output in ruff's shape: one `path:line:col: CODE [severity] message` line per finding.

Layout of one finding (continuation lines are indented so that every line starting at column
one is a `path:line:col:` record that editors and `grep` can jump to):

    app/db.py:12:5: AG201 [error] `session` is used by 3 concurrent queries
        app/db.py:14:9: note: second use of `session`
        fix available (unsafe): Open one session per task
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.findings import Finding, Note, Report, Severity
from bot.reporters._common import note_location, split_lines, summary_sentence
from bot.ruleinfo import RuleInfo

_BOLD = "\x1b[1m"
_RESET = "\x1b[0m"
_SEVERITY_COLOUR = {
    Severity.ERROR: "\x1b[31m",  # red
    Severity.WARNING: "\x1b[33m",  # yellow
    Severity.INFO: "\x1b[36m",  # cyan
}
# Notes are about the run, not the code; magenta keeps them apart from `info` findings.
_NOTE_COLOUR = "\x1b[35m"

_INDENT = "    "


def render(
    report: Report,
    rules: Mapping[str, RuleInfo],
    *,
    color: bool = False,
    fail_on: str = "error",
    tool_version: str = "",
) -> str:
    lines: list[str] = []
    for finding in report.findings:
        lines.extend(format_finding(finding, color=color))
    for note in report.notes:
        lines.extend(format_note(note, color=color))
    if lines:
        lines.append("")  # a blank line sets the summary apart, as ruff does
    lines.append(summary_sentence(report))
    return "\n".join(lines) + "\n"


def format_finding(finding: Finding, *, color: bool = False) -> list[str]:
    span = finding.span
    head = _paint(
        f"{finding.code} [{finding.severity.value}]", _SEVERITY_COLOUR[finding.severity], color
    )
    lines = [
        f"{_path(finding.path, color)}:{span.start_line}:{span.start_col}: {head} "
        + _continued(finding.message, _INDENT)
    ]
    for related in finding.related:
        where = related.span
        lines.append(
            f"{_INDENT}{_path(finding.path, color)}:{where.start_line}:{where.start_col}: note: "
            + _continued(related.message, _INDENT * 2)
        )
    if finding.fix is not None:
        lines.append(
            f"{_INDENT}fix available ({finding.fix.safety.value}): "
            + _continued(finding.fix.description, _INDENT * 2)
        )
    return lines


def format_note(note: Note, *, color: bool = False) -> list[str]:
    location = note_location(note)
    head = _paint(f"{note.kind.value} [note]", _NOTE_COLOUR, color)
    # Bold only the path part of the location; the line and column stay plain as for findings.
    where = _path(note.path, color) + location[len(note.path) :]
    return [f"{where}: {head} " + _continued(note.message, _INDENT)]


def _continued(text: str, indent: str) -> str:
    """Keep a multi-line message inside its record by indenting the lines after the first."""
    return ("\n" + indent).join(split_lines(text))


def _path(path: str, color: bool) -> str:
    return _paint(path, _BOLD, color)


def _paint(text: str, code: str, color: bool) -> str:
    return f"{code}{text}{_RESET}" if color else text
