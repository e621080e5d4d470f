"""Machine-readable JSON: every field of every finding, in a fixed key order.

Keys are emitted in insertion order (not sorted) so that a finding reads code-first, like the
text output, and stays byte-for-byte stable between runs. Non-ASCII is escaped: the output is
then plain ASCII, which any stdout encoding can carry, and a path holding undecodable bytes
(lone surrogates from `os.fsdecode`) cannot make the write fail.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bot.findings import Finding, Fix, Note, Report, Severity, Span
from bot.ruleinfo import RuleInfo


def render(
    report: Report,
    rules: Mapping[str, RuleInfo],
    *,
    color: bool = False,
    fail_on: str = "error",
    tool_version: str,
) -> str:
    document = {
        "version": tool_version,
        "findings": [finding_to_dict(finding) for finding in report.findings],
        "notes": [note_to_dict(note) for note in report.notes],
        "summary": {
            "findings": len(report.findings),
            "error": report.count(Severity.ERROR),
            "warning": report.count(Severity.WARNING),
            "info": report.count(Severity.INFO),
            "files_checked": report.files_checked,
            "notes": len(report.notes),
        },
    }
    return json.dumps(document, indent=2) + "\n"


def finding_to_dict(finding: Finding) -> dict[str, Any]:
    return {
        "code": finding.code,
        "name": finding.name,
        "severity": finding.severity.value,
        "path": finding.path,
        **_span(finding.span),
        "message": finding.message,
        "section": finding.section,
        "fingerprint": finding.fingerprint,
        "related": [
            # Related locations are always in the finding's file; the path is repeated so a
            # consumer can treat every location object alike.
            {"path": finding.path, **_span(related.span), "message": related.message}
            for related in finding.related
        ],
        "fix": None if finding.fix is None else _fix(finding.fix),
    }


def note_to_dict(note: Note) -> dict[str, Any]:
    return {
        "kind": note.kind.value,
        "path": note.path,
        "line": note.line,
        "col": note.col,
        "message": note.message,
    }


def _fix(fix: Fix) -> dict[str, Any]:
    return {
        "description": fix.description,
        "safety": fix.safety.value,
        "edits": [{**_span(edit.span), "content": edit.content} for edit in fix.edits],
    }


def _span(span: Span) -> dict[str, int]:
    return {
        "start_line": span.start_line,
        "start_col": span.start_col,
        "end_line": span.end_line,
        "end_col": span.end_col,
    }
