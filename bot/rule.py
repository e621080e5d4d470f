"""The rule framework: what a rule declares and how it reports.

A rule is one class with `visit_<Node>` / `leave_<Node>` methods (libcst node class names), its
metadata as class attributes and its examples beside it. The engine instantiates every enabled
rule once per file and drives them all from one traversal (see `bot.engine`). Rules ask
`self.semantics` what names mean; they never re-derive imports, scopes or sessions.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import libcst as cst

from bot.facts import RepoFacts
from bot.findings import FixSafety, Severity
from bot.ruleinfo import RuleInfo
from bot.semantics import Semantics

# Prefilter groups the engine expands with names from the repository index: "any sign of a
# session in this file", and "a session factory could be called here".
SESSION_TOKENS = "<session>"
FACTORY_TOKENS = "<factory>"


@dataclass(frozen=True)
class Valid:
    """Code the rule must leave alone."""

    code: str
    path: str = "app/example.py"

    @property
    def source(self) -> str:
        return textwrap.dedent(self.code).lstrip("\n")


@dataclass(frozen=True)
class Invalid:
    """Code the rule must flag: once, on `line` (1-based, of the dedented code)."""

    code: str
    line: int
    related_lines: tuple[int, ...] | None = None  # exact related lines, when given
    message: str | None = None  # a substring the message must contain
    fixed: str | None = None  # the whole file after the fix, when the rule has one
    path: str = "app/example.py"

    @property
    def source(self) -> str:
        return textwrap.dedent(self.code).lstrip("\n")

    @property
    def fixed_source(self) -> str | None:
        return None if self.fixed is None else textwrap.dedent(self.fixed).lstrip("\n")


@dataclass(frozen=True)
class FixPlan:
    """A fix as node replacements and insertions; the engine turns it into text edits and
    keeps it only if the fixed file re-parses.

    `insertions` put text right before (`"before"`) or right after (`"after"`) a node, e.g. an
    import after the last import statement (see `bot.fixes.ensure_import`).
    """

    description: str
    safety: FixSafety
    replacements: tuple[tuple[cst.CSTNode, str], ...] = ()
    insertions: tuple[tuple[cst.CSTNode, str, str], ...] = ()


@dataclass
class RawReport:
    """A finding before positions are known (positions are computed only if something is found)."""

    rule: type[Rule]
    node: cst.CSTNode
    message: str
    statement: cst.CSTNode | None
    scope: str
    related: tuple[tuple[cst.CSTNode, str], ...] = ()
    fix: FixPlan | None = None
    severity: Severity | None = None  # overrides the rule's default for this finding


@dataclass
class FileContext:
    """What every rule instance of one file shares."""

    path: str
    source: str
    module: cst.Module
    semantics: Semantics
    options: RuleOptions
    reports: list[RawReport] = field(default_factory=list)
    statement: cst.CSTNode | None = None  # the innermost statement being traversed


@dataclass(frozen=True)
class RuleOptions:
    """The config values rules read (kept small and picklable for worker processes)."""

    side_effect_patterns: tuple[str, ...] = (
        "send_*",
        "*email*",
        "*notify*",
        "*analytics*",
        "*webhook*",
    )
    blocking_calls: tuple[str, ...] = ()
    expire_on_commit: bool | None = None


class Rule:
    CODE: ClassVar[str]
    NAME: ClassVar[str]
    SEVERITY: ClassVar[Severity]
    SECTION: ClassVar[str]
    SUMMARY: ClassVar[str]
    DOC: ClassVar[str]
    CORRECTION: ClassVar[str | None] = None
    # Text the file must contain for the rule to apply: every group must have one token present.
    # A group is a tuple of alternatives, or SESSION_TOKENS.
    TOKENS: ClassVar[tuple[tuple[str, ...] | str, ...]] = ()
    # Extra facts the rule needs beyond the file itself ("repo-index" = facts from other files).
    NEEDS: ClassVar[frozenset[str]] = frozenset()
    VALID: ClassVar[Sequence[Valid]] = ()
    INVALID: ClassVar[Sequence[Invalid]] = ()

    def __init__(self, context: FileContext) -> None:
        self.context = context
        self.semantics = context.semantics

    @classmethod
    def prefilter(cls, facts: RepoFacts, options: RuleOptions) -> tuple[tuple[str, ...], ...]:
        """TOKENS with the session and factory groups filled in from the repository's names."""
        groups = []
        for group in cls.TOKENS:
            if group == SESSION_TOKENS:
                groups.append(("AsyncSession", "sessionmaker", "Depends", *sorted(facts.tokens)))
            elif group == FACTORY_TOKENS:
                names = sorted(q.rsplit(".", 1)[-1] for q in facts.session_factories)
                groups.append(("sessionmaker", "AsyncSession(", "AsyncSession as", *names))
            else:
                groups.append(tuple(group))
        return tuple(groups)

    @classmethod
    def info(cls) -> RuleInfo:
        return RuleInfo(
            code=cls.CODE,
            name=cls.NAME,
            severity=cls.SEVERITY,
            section=cls.SECTION,
            summary=cls.SUMMARY,
            doc=textwrap.dedent(cls.DOC).strip() + "\n",
            correction=textwrap.dedent(cls.CORRECTION).strip() if cls.CORRECTION else None,
            fixable=any(example.fixed is not None for example in cls.INVALID),
        )

    def report(
        self,
        node: cst.CSTNode,
        message: str,
        *,
        related: Sequence[tuple[cst.CSTNode, str]] = (),
        fix: FixPlan | None = None,
        statement: cst.CSTNode | None = None,
        scope: str | None = None,
        severity: Severity | None = None,
    ) -> None:
        """Report `node`. Pass `statement`/`scope` when reporting after the traversal moved on.

        `severity` raises or lowers this one finding from the rule's default (AG104 is an error
        when the session is certainly closed); a severity set in config still wins.
        """
        semantics = self.semantics
        self.context.reports.append(
            RawReport(
                rule=type(self),
                node=node,
                message=message,
                statement=statement if statement is not None else self.context.statement,
                scope=scope if scope is not None else semantics.scope.qualname,
                related=tuple(related),
                fix=fix,
                severity=severity,
            )
        )
