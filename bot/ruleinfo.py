"""A rule's metadata as the rest of the program sees it (config, reporters, `rules`, `explain`).

Kept apart from the rule framework so that reporters and config never import libcst.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.findings import Severity


@dataclass(frozen=True)
class RuleInfo:
    code: str  # "AG201"
    name: str  # "shared-session-concurrency"
    severity: Severity  # the default severity
    section: str  # the skill heading it enforces, e.g. "Pattern: Concurrent vs Sequential Queries"
    summary: str  # one line
    doc: (
        str  # Markdown, ruff's order: What it does / Why is this bad? / Example / Use instead / ...
    )
    correction: str | None = None  # where the skill's own advice is wrong
    fixable: bool = False

    @property
    def help_uri(self) -> str:
        return f"docs/rules/{self.code}.md"


# Notes about files, not findings of a rule; they share the code namespace in output.
SYNTAX_ERROR_CODE = "syntax-error"
