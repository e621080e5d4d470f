"""Small helpers shared by the human-readable reporters (text, markdown)."""

from __future__ import annotations

import re

from bot.findings import Note, Report, Severity

_LINE_BREAK = re.compile(r"\r\n|\r|\n")

# `fail-on` thresholds as Severity ranks; "never" is above every severity.
_FAIL_RANK = {"error": 3, "warning": 2, "info": 1, "never": 4}


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """`1 file`, `2 files`; pass `plural_form` for invariant words (`info`)."""
    word = singular if count == 1 else (plural_form if plural_form is not None else singular + "s")
    return f"{count} {word}"


def split_lines(text: str) -> list[str]:
    """Split on CR, LF and CRLF only: `str.splitlines` also breaks on form feeds and the like,
    which would change a message's text rather than its layout."""
    return _LINE_BREAK.split(text)


def skipped_files(report: Report) -> int:
    """Files not (fully) analysed: one per path with a note, however many notes it has."""
    return len({note.path for note in report.notes})


def failing_count(report: Report, fail_on: str) -> int:
    """How many findings are at or above `fail_on` (what makes the CLI exit 1)."""
    threshold = _FAIL_RANK[fail_on]
    return sum(1 for finding in report.findings if finding.severity.rank >= threshold)


def summary_sentence(report: Report) -> str:
    """`Found 3 findings (1 error, 2 warnings, 0 info) in 4 files; 1 file skipped.`"""
    skipped = skipped_files(report)
    tail = f"; {plural(skipped, 'file')} skipped." if skipped else "."
    if report.fixed:
        tail = f"; {report.fixed} fixed{tail}"
    if not report.findings:
        return f"All checks passed: {plural(report.files_checked, 'file')} checked{tail}"
    counts = ", ".join(
        [
            plural(report.count(Severity.ERROR), "error"),
            plural(report.count(Severity.WARNING), "warning"),
            plural(report.count(Severity.INFO), "info", "info"),
        ]
    )
    return (
        f"Found {plural(len(report.findings), 'finding')} ({counts}) "
        f"in {plural(report.files_checked, 'file')}{tail}"
    )


def note_location(note: Note) -> str:
    """`path:line:col`, `path:line` or `path`, as far as the note knows."""
    if note.line is None:
        return note.path
    if note.col is None:
        return f"{note.path}:{note.line}"
    return f"{note.path}:{note.line}:{note.col}"
