"""What a rule reports: findings, their locations, fixes and fingerprints.

A finding is plain data. Everything downstream (filtering, suppressions, reporters, the GitHub
poster) reads these types and nothing else, so a reporter never needs libcst.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        """Higher is more severe; used for sorting and `fail-on`."""
        return {"error": 3, "warning": 2, "info": 1}[self.value]


class FixSafety(str, enum.Enum):
    SAFE = "safe"
    UNSAFE = "unsafe"


@dataclass(frozen=True, order=True)
class Span:
    """A source range: 1-based lines, 1-based columns, end column exclusive (as SARIF)."""

    start_line: int
    start_col: int
    end_line: int
    end_col: int

    @property
    def lines(self) -> range:
        return range(self.start_line, self.end_line + 1)


@dataclass(frozen=True)
class RelatedLocation:
    """Another line that is part of the same bug (a session use, the `commit()` ...)."""

    span: Span
    message: str


@dataclass(frozen=True)
class Edit:
    """Replace the text in `span` (of the file's current content) with `content`."""

    span: Span
    content: str


@dataclass(frozen=True)
class Fix:
    description: str
    safety: FixSafety
    edits: tuple[Edit, ...]


@dataclass(frozen=True)
class Finding:
    code: str
    name: str
    severity: Severity
    path: str
    span: Span
    message: str
    section: str
    related: tuple[RelatedLocation, ...] = ()
    fix: Fix | None = None
    fingerprint: str = ""

    def all_spans(self) -> Iterable[Span]:
        yield self.span
        for location in self.related:
            yield location.span

    def with_severity(self, severity: Severity) -> Finding:
        return replace(self, severity=severity)


class NoteKind(str, enum.Enum):
    """Why a file was not (fully) analysed. Notes never fail a run."""

    SYNTAX_ERROR = "syntax-error"
    BINARY = "binary-file"
    TOO_LARGE = "file-too-large"
    MISSING = "file-missing"
    UNREADABLE = "file-unreadable"
    INTERNAL_ERROR = "internal-error"


@dataclass(frozen=True)
class Note:
    kind: NoteKind
    path: str
    message: str
    line: int | None = None
    col: int | None = None


@dataclass
class Report:
    """The outcome of one run: findings (sorted) plus notes about skipped files."""

    findings: list[Finding] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    files_checked: int = 0
    files_skipped_by_prefilter: int = 0
    fixed: int = 0  # findings removed by `--fix`

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity is severity)


def fingerprint(code: str, path: str, scope: str, normalised_source: str, occurrence: int) -> str:
    """A stable identity for a finding.

    Built from the rule, the file, the qualified name of the enclosing function and the flagged
    node's source with whitespace folded. Line numbers are left out on purpose, so lines moving
    above the finding do not change it; `occurrence` tells apart identical nodes in one scope.
    """
    folded = " ".join(normalised_source.split())
    digest = hashlib.sha256(f"{code}\0{path}\0{scope}\0{folded}\0{occurrence}".encode())
    return digest.hexdigest()[:20]


def sort_key(finding: Finding) -> tuple[str, int, int, str]:
    return (finding.path, finding.span.start_line, finding.span.start_col, finding.code)
