"""Every VALID and INVALID example of every rule runs as a test (Fixit's model)."""

from __future__ import annotations

import pytest

from bot.engine import FileJob, analyse_text, apply_edits
from bot.facts import RepoFacts
from bot.findings import NoteKind, Severity
from bot.registry import all_rules
from bot.rule import Invalid, Rule, RuleOptions, Valid


def _cases() -> list[tuple[type[Rule], Valid | Invalid, str]]:
    cases = []
    for rule in all_rules():
        for index, example in enumerate(rule.VALID):
            cases.append((rule, example, f"{rule.CODE}-valid-{index}"))
        for index, example in enumerate(rule.INVALID):
            cases.append((rule, example, f"{rule.CODE}-invalid-{index}"))
    return cases


CASES = _cases()


def _run(rule: type[Rule], source: str, path: str):
    module_name = path.removesuffix(".py").replace("/", ".")
    job = FileJob(path, path, module_name)
    return analyse_text(job, source, [rule], RepoFacts(), RuleOptions())


@pytest.mark.parametrize(
    ("rule", "example"), [(r, e) for r, e, _ in CASES], ids=[i for *_, i in CASES]
)
def test_example(rule: type[Rule], example: Valid | Invalid) -> None:
    result = _run(rule, example.source, example.path)
    assert not result.notes, result.notes
    findings = [f for f in result.findings if f.code == rule.CODE]
    if isinstance(example, Valid):
        assert findings == [], f"unexpected: {[(f.span.start_line, f.message) for f in findings]}"
        return
    assert len(findings) == 1, (
        f"expected one finding on line {example.line}, got {[(f.span.start_line, f.message) for f in findings]}"
    )
    finding = findings[0]
    assert finding.span.start_line == example.line
    if example.message is not None:
        assert example.message in finding.message
    if example.related_lines is not None:
        assert tuple(r.span.start_line for r in finding.related) == example.related_lines
    if example.fixed_source is not None:
        assert finding.fix is not None
        assert apply_edits(example.source, finding.fix.edits) == example.fixed_source


@pytest.mark.parametrize("rule", all_rules(), ids=lambda r: r.CODE)
def test_rule_metadata(rule: type[Rule]) -> None:
    info = rule.info()
    assert info.code.startswith("AG") and len(info.code) == 5
    assert info.name == info.name.lower() and " " not in info.name
    assert info.section.startswith(("Pattern: ", "Common Issues", "Detection Commands"))
    for heading in ("## What it does", "## Why is this bad?", "## Example", "## Use instead"):
        assert heading in info.doc
    if info.fixable:
        assert "## Fix safety" in info.doc
    assert len(rule.INVALID) >= 5 and len(rule.VALID) >= 8


class _BrokenRule(Rule):
    CODE = "AG999"
    NAME = "broken"
    SEVERITY = Severity.ERROR
    SECTION = "Pattern: Test"
    SUMMARY = "raises"
    DOC = ""

    def visit_Call(self, node: object) -> None:
        raise ValueError("boom")


def test_a_rule_that_raises_is_skipped_with_a_note_and_others_still_run() -> None:
    from rules.background import UnreferencedTask

    source = "import asyncio\n\nasync def f():\n    asyncio.create_task(g())\n"
    job = FileJob("a.py", "a.py", "a")
    result = analyse_text(job, source, [_BrokenRule, UnreferencedTask], RepoFacts(), RuleOptions())
    assert [f.code for f in result.findings] == ["AG501"]
    assert [n.kind for n in result.notes] == [NoteKind.INTERNAL_ERROR]
    assert "AG999" in result.notes[0].message and "boom" in result.notes[0].message


def test_fixes_are_kept_in_code_newer_than_the_running_python() -> None:
    """A file CPython cannot parse but libcst can (3.14's `except A, B:`) keeps its fixes."""
    from rules.logging import ErrorLogWithoutTraceback

    source = (
        "import logging\n\nlogger = logging.getLogger(__name__)\n\n\n"
        "def run():\n    try:\n        work()\n    except ValueError as e:\n"
        "        logger.error('failed: %s', e)\n\n\n"
        "def other():\n    try:\n        work()\n    except KeyError, TypeError:\n        pass\n"
    )
    job = FileJob("a.py", "a.py", "a")
    result = analyse_text(job, source, [ErrorLogWithoutTraceback], RepoFacts(), RuleOptions())
    assert [f.code for f in result.findings] == ["AG801"]
    assert result.findings[0].fix is not None
