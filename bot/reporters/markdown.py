"""A Markdown report for people: the GitHub job summary, a PR comment body, a file to read.

Layout: heading, one summary line, the verdict against `fail-on`, a table of all findings, then
one block per finding (its location as a heading over the review comment body that
`bot.comments.render_comment` writes, so the report says what the review would) and the skipped
files.

The comments quote the skill file of the repository in the current directory: the `skill`
setting of the config file found from there, else the first skill file found under the config
file's directory (or the current directory). Pass `skill=` to choose instead. Fixes are shown
by their description only: the report does not read the checked files, which `--fix` may have
rewritten since the findings were made.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from bot.comments import code_span, escape_text, render_comment
from bot.findings import Finding, Note, Report
from bot.reporters._common import (
    failing_count,
    note_location,
    plural,
    split_lines,
    summary_sentence,
)
from bot.ruleinfo import RuleInfo
from bot.skill import Skill, load_skill

__all__ = [
    "DISCOVER",
    "TITLE",
    "code_span",
    "escape_cell",
    "escape_text",
    "render",
    "render_finding",
    "table",
    "verdict",
]

TITLE = "## asyncguard report"


class _Discover(enum.Enum):
    TOKEN = "discover"


# The default of `render(skill=...)`: look for the skill from the current directory.
DISCOVER = _Discover.TOKEN


def render(
    report: Report,
    rules: Mapping[str, RuleInfo],
    *,
    color: bool = False,
    fail_on: str = "error",
    tool_version: str = "",
    skill: Skill | Literal[_Discover.TOKEN] | None = DISCOVER,
) -> str:
    # A second-level heading: job summaries stack the output of several steps under the
    # workflow's own title, so a top-level heading would outrank it.
    parts = [TITLE, summary_sentence(report), verdict(report, fail_on)]
    if report.findings:
        if skill is DISCOVER:
            skill = discover_skill(Path.cwd(), rules)
        parts.append(table(report.findings))
        parts.append("### Findings")
        parts.extend(
            render_finding(finding, rules.get(finding.code), skill) for finding in report.findings
        )
    else:
        parts.append("No findings.")
    if report.notes:
        parts.append("### Skipped files\n\n" + "\n".join(_note_item(note) for note in report.notes))
    if tool_version:
        parts.append(f"<sub>asyncguard {escape_text(tool_version)}</sub>")
    return "\n\n".join(parts) + "\n"


def discover_skill(start: Path, rules: Mapping[str, RuleInfo]) -> Skill | None:
    """The skill for the repository at `start`: the config's `skill` setting, else discovery
    under the config file's directory (or `start`). Never raises."""
    from bot.config import ConfigError, find_config_file, load_config

    infos = list(rules.values())
    sections = {info.section for info in infos if info.section}
    try:
        config = load_config(start, infos)
        root, configured = config.root, config.skill
    except (ConfigError, OSError, ValueError):
        # A config that does not validate against these rules still says where the root is.
        try:
            found = find_config_file(start)
        except (ConfigError, OSError, ValueError):
            found = None
        root, configured = (found.parent if found is not None else start), None
    return load_skill(root, configured, sections=sections)


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


def render_finding(finding: Finding, rule: RuleInfo | None, skill: Skill | None = None) -> str:
    """One finding as a self-contained Markdown block: its location as a heading, then the
    review comment body. `rule` is None for a code the catalogue does not know."""
    body = render_comment(finding, rule, skill, file_text=None, change=None)
    return f"#### {code_span(_location(finding))}\n\n{body}"


def escape_cell(text: str) -> str:
    """Keep a table cell on its row: an unescaped `|` ends the cell (GFM honours `\\|` even
    inside code spans) and a line break ends the row."""
    return "<br>".join(split_lines(text.replace("|", "\\|")))


def _location(finding: Finding) -> str:
    return f"{finding.path}:{finding.span.start_line}:{finding.span.start_col}"


def _item_text(text: str) -> str:
    # Continuation lines indented to stay inside the list item.
    return "\\\n  ".join(split_lines(text))


def _note_item(note: Note) -> str:
    return f"- {code_span(note_location(note))}: {note.kind.value}: {_item_text(note.message)}"
