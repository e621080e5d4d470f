"""SARIF 2.1.0 for GitHub code scanning (and any other SARIF viewer).

What GitHub needs, and why the document looks the way it does:
- rule metadata in `tool.driver.rules`, with each result pointing at its rule by `ruleIndex`;
- relative artifact URIs against `%SRCROOT%` (the checkout), percent-encoded, so results land
  on the right file whatever the runner's workspace path is. `originalUriBaseIds` is left out:
  if present it must be an absolute `file://` URI ending in "/", which a reporter cannot know
  for every environment, and GitHub resolves `%SRCROOT%` to the repository root without it;
- `partialFingerprints` from the finding's line-independent fingerprint, so an alert survives
  lines moving above it instead of being closed and re-opened.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from bot.findings import Finding, Fix, Note, Report, Severity, Span
from bot.ruleinfo import RuleInfo

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/asyncguard/asyncguard"
# Rule docs are published from the repository; `RuleInfo.help_uri` is relative to its root
# and SARIF wants an absolute URI for `helpUri`.
_DOCS_BASE = f"{INFORMATION_URI}/blob/main/"
FINGERPRINT_KEY = "asyncguard/v1"
SRCROOT = "%SRCROOT%"

_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
# GitHub sorts and filters non-security alerts by `problem.severity`, whose vocabulary is
# error / warning / recommendation.
_PROBLEM_SEVERITY = {
    Severity.ERROR: "error",
    Severity.WARNING: "warning",
    Severity.INFO: "recommendation",
}


def render(
    report: Report,
    rules: Mapping[str, RuleInfo],
    *,
    color: bool = False,
    fail_on: str = "error",
    tool_version: str,
) -> str:
    return json.dumps(to_sarif(report, rules, tool_version=tool_version), indent=2) + "\n"


def to_sarif(report: Report, rules: Mapping[str, RuleInfo], *, tool_version: str) -> dict[str, Any]:
    """The SARIF log as a dict (the tests and the GitHub uploader use it without re-parsing)."""
    descriptors = [_descriptor(rules[code]) for code in sorted(rules)]
    index = {code: position for position, code in enumerate(sorted(rules))}
    # A finding whose code is not in `rules` (a plugin, a stale catalogue) still gets a minimal
    # descriptor, so that every result has a `ruleIndex` and viewers can group it.
    for finding in report.findings:
        if finding.code not in index:
            index[finding.code] = len(descriptors)
            descriptors.append(_bare_descriptor(finding))

    invocation: dict[str, Any] = {"executionSuccessful": True}
    if report.notes:
        # Skipped files are facts about the run, not about the code: notifications, never
        # results, and they do not make the run unsuccessful.
        invocation["toolExecutionNotifications"] = [_notification(note) for note in report.notes]

    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "asyncguard",
                "version": tool_version,
                "informationUri": INFORMATION_URI,
                "rules": descriptors,
            }
        },
        "invocations": [invocation],
        "results": [_result(finding, index[finding.code]) for finding in report.findings],
        # Spans come from Python string offsets (code points), not SARIF's default UTF-16 units;
        # saying so keeps columns right on lines with characters outside the BMP.
        "columnKind": "unicodeCodePoints",
    }
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def artifact_location(path: str) -> dict[str, str]:
    """A percent-encoded URI for `path`: relative to %SRCROOT%, or a file URI if absolute."""
    posix = path
    while posix.startswith("./"):
        posix = posix[2:]
    # `surrogateescape` turns undecodable file-name bytes (lone surrogates from os.fsdecode)
    # back into the bytes they came from instead of raising.
    encoded = quote(posix, safe="/", errors="surrogateescape")
    if posix.startswith("/"):
        return {"uri": "file://" + encoded}
    return {"uri": encoded, "uriBaseId": SRCROOT}


def region(span: Span) -> dict[str, int]:
    return {
        "startLine": span.start_line,
        "startColumn": span.start_col,
        "endLine": span.end_line,
        "endColumn": span.end_col,
    }


def help_uri(rule: RuleInfo) -> str:
    uri = rule.help_uri
    return uri if urlsplit(uri).scheme else urljoin(_DOCS_BASE, uri)


def _descriptor(rule: RuleInfo) -> dict[str, Any]:
    text, markdown = rule.doc, rule.doc
    if rule.correction:
        text += f"\n\nCorrection: {rule.correction}"
        markdown += f"\n\n**Correction:** {rule.correction}"
    return {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.summary},
        "help": {"text": text, "markdown": markdown},
        "helpUri": help_uri(rule),
        "defaultConfiguration": {"level": _LEVEL[rule.severity]},
        "properties": {
            "tags": _tags(rule.section),
            "problem.severity": _PROBLEM_SEVERITY[rule.severity],
        },
    }


def _bare_descriptor(finding: Finding) -> dict[str, Any]:
    return {
        "id": finding.code,
        "name": finding.name,
        "defaultConfiguration": {"level": _LEVEL[finding.severity]},
        "properties": {
            "tags": _tags(finding.section),
            "problem.severity": _PROBLEM_SEVERITY[finding.severity],
        },
    }


def _tags(section: str) -> list[str]:
    return ["async", section] if section else ["async"]


def _result(finding: Finding, rule_index: int) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": finding.code,
        "ruleIndex": rule_index,
        # The finding's own level: config may have moved the rule away from its default.
        "level": _LEVEL[finding.severity],
        "message": {"text": finding.message},
        "locations": [_location(finding.path, finding.span)],
    }
    if finding.related:
        result["relatedLocations"] = [
            {
                "id": number,
                **_location(finding.path, related.span),
                "message": {"text": related.message},
            }
            for number, related in enumerate(finding.related, start=1)
        ]
    if finding.fingerprint:
        result["partialFingerprints"] = {FINGERPRINT_KEY: finding.fingerprint}
    if finding.fix is not None and finding.fix.edits:
        # The schema requires at least one artifact change, so a fix without edits is left out.
        result["fixes"] = [_fix(finding.path, finding.fix)]
    return result


def _location(path: str, span: Span) -> dict[str, Any]:
    return {
        "physicalLocation": {"artifactLocation": artifact_location(path), "region": region(span)}
    }


def _fix(path: str, fix: Fix) -> dict[str, Any]:
    return {
        "description": {"text": fix.description},
        "artifactChanges": [
            {
                "artifactLocation": artifact_location(path),
                "replacements": [
                    {"deletedRegion": region(edit.span), "insertedContent": {"text": edit.content}}
                    for edit in fix.edits
                ],
            }
        ],
        "properties": {"safety": fix.safety.value},
    }


def _notification(note: Note) -> dict[str, Any]:
    notification: dict[str, Any] = {
        "level": "warning",
        "message": {"text": note.message},
        "descriptor": {"id": note.kind.value},
    }
    if note.path:
        physical: dict[str, Any] = {"artifactLocation": artifact_location(note.path)}
        if note.line is not None:
            physical["region"] = {"startLine": note.line}
            if note.col is not None:
                physical["region"]["startColumn"] = note.col
        notification["locations"] = [{"physicalLocation": physical}]
    return notification
