"""GitHub Actions workflow commands: one `::error`/`::warning`/`::notice` annotation per finding.

Used where the bot cannot post a review (fork pull requests with a read-only token): the runner
turns each line into an annotation on the diff. Escaping follows the runner's parser (as in
`@actions/core`): values are percent-escaped so that a message can neither span lines nor end
the property list early, and so that no finding can inject a workflow command of its own.
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.findings import Finding, Note, Report, Severity
from bot.ruleinfo import RuleInfo

_COMMAND = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def render(
    report: Report,
    rules: Mapping[str, RuleInfo],
    *,
    color: bool = False,
    fail_on: str = "error",
    tool_version: str = "",
) -> str:
    lines = [format_finding(finding) for finding in report.findings]
    lines.extend(format_note(note) for note in report.notes)
    return "".join(line + "\n" for line in lines)


def format_finding(finding: Finding) -> str:
    span = finding.span
    properties: list[tuple[str, object]] = [("file", finding.path), ("line", span.start_line)]
    # The runner rejects columns on annotations that cover several lines.
    if span.start_line == span.end_line:
        properties.append(("col", span.start_col))
    properties.append(("endLine", span.end_line))
    if span.start_line == span.end_line:
        properties.append(("endColumn", span.end_col))
    properties.append(("title", f"{finding.code} {finding.name}"))

    message_lines = [finding.message]
    for related in finding.related:
        message_lines.append(f"{related.message} (see line {related.span.start_line})")
    return _command(_COMMAND[finding.severity], properties, "\n".join(message_lines))


def format_note(note: Note) -> str:
    properties: list[tuple[str, object]] = [("file", note.path)]
    if note.line is not None:
        properties.append(("line", note.line))
        if note.col is not None:
            properties.append(("col", note.col))
    return _command("notice", properties, f"{note.kind.value}: {note.message}")


def escape_data(value: str) -> str:
    # `%` first, or the escapes added for CR and LF would be escaped again.
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: str) -> str:
    # `:` and `,` delimit properties and end the property list, so they are escaped too.
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


def _command(name: str, properties: list[tuple[str, object]], message: str) -> str:
    rendered = ",".join(f"{key}={escape_property(str(value))}" for key, value in properties)
    return f"::{name} {rendered}::{escape_data(message)}"
