"""A Markdown report for people: the GitHub job summary, a PR comment body, a file to read.

Layout: heading, one summary line, the verdict against `fail-on`, a table of all findings, then
one block per finding (`render_finding`, reused by the review poster) and the skipped files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from bot.findings import Finding, Note, Report
from bot.reporters._common import (
    failing_count,
    note_location,
    plural,
    split_lines,
    summary_sentence,
)
from bot.ruleinfo import RuleInfo

TITLE = "## asyncguard report"
_BACKTICKS = re.compile(r"`+")


def render(
    report: Report,
    rules: Mapping[str, RuleInfo],
    *,
    color: bool = False,
    fail_on: str = "error",
    tool_version: str = "",
) -> str:
    # A second-level heading: job summaries stack the output of several steps under the
    # workflow's own title, so a top-level heading would outrank it.
    parts = [TITLE, summary_sentence(report), verdict(report, fail_on)]
    if report.findings:
        parts.append(table(report.findings))
        parts.append("### Findings")
        parts.extend(
            render_finding(finding, rules.get(finding.code)) for finding in report.findings
        )
    else:
        parts.append("No findings.")
    if report.notes:
        parts.append("### Skipped files\n\n" + "\n".join(_note_item(note) for note in report.notes))
    if tool_version:
        parts.append(f"<sub>asyncguard {escape_text(tool_version)}</sub>")
    return "\n\n".join(parts) + "\n"


def verdict(report: Report, fail_on: str) -> str:
    """Whether the run fails the check, with the same rule the exit code uses."""
    if fail_on == "never":
        return "**Result:** passed (`fail-on` is `never`)."
    failing = failing_count(report, fail_on)
    if failing:
        return f"**Result:** failed ({plural(failing, 'finding')} at or above `{fail_on}`)."
    return f"**Result:** passed (no findings at or above `{fail_on}`)."


def table(findings: list[Finding]) -> str:
    rows = ["| Severity | Rule | Location | Message |", "| --- | --- | --- | --- |"]
    for finding in findings:
        cells = [
            finding.severity.value,
            f"{code_span(finding.code)} {finding.name}",
            code_span(_location(finding)),
            finding.message,
        ]
        rows.append("| " + " | ".join(escape_cell(cell) for cell in cells) + " |")
    return "\n".join(rows)


def render_finding(finding: Finding, rule: RuleInfo | None) -> str:
    """One finding as a self-contained Markdown block (heading, location, message, related
    lines, fix). `rule` is None for a code the catalogue does not know."""
    lines = [
        f"#### {finding.code} {finding.name} · {finding.severity.value}",
        "",
        f"{code_span(_location(finding))}: {_block_text(finding.message)}",
    ]
    if finding.related:
        lines.append("")
        for related in finding.related:
            where = code_span(f"{finding.path}:{related.span.start_line}:{related.span.start_col}")
            lines.append(f"- {where}: {_item_text(related.message)}")
    if finding.fix is not None:
        lines += [
            "",
            f"**Fix** ({finding.fix.safety.value}): {_block_text(finding.fix.description)}",
        ]
    guideline = finding.section or (rule.section if rule is not None else "")
    if guideline:
        lines += ["", f"Guideline: *{escape_text(guideline)}*"]
    return "\n".join(lines)


def code_span(text: str) -> str:
    """`text` as inline code, even when it contains backticks (CommonMark: fence with a longer
    run of backticks, pad with spaces when the text starts or ends with one)."""
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    fence = "`" * (longest + 1)
    padded = f" {text} " if text.startswith("`") or text.endswith("`") else text
    return f"{fence}{padded}{fence}"


def escape_cell(text: str) -> str:
    """Keep a table cell on its row: an unescaped `|` ends the cell (GFM honours `\\|` even
    inside code spans) and a line break ends the row."""
    return "<br>".join(split_lines(text.replace("|", "\\|")))


def escape_text(text: str) -> str:
    """Plain text that must not be read as Markdown (rule sections, version strings)."""
    return re.sub(r"([\\`*_\[\]<>#|])", r"\\\1", text)


def _location(finding: Finding) -> str:
    return f"{finding.path}:{finding.span.start_line}:{finding.span.start_col}"


def _block_text(text: str) -> str:
    # Messages are Markdown already (names in backticks, as ruff writes them); only their line
    # breaks need care: a hard break keeps them as written instead of folding into one line.
    # The backslash form, not two trailing spaces, which editors and linters strip.
    return "\\\n".join(split_lines(text))


def _item_text(text: str) -> str:
    # Continuation lines indented to stay inside the list item.
    return "\\\n  ".join(split_lines(text))


def _note_item(note: Note) -> str:
    return f"- {code_span(note_location(note))}: {note.kind.value}: {_item_text(note.message)}"
