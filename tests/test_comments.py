"""Review comment bodies: exact Markdown for the main shapes (skill quote, rule docs, correction,
suggestion or not), the suggestion's line range, escaping, the size cap and the marker. The skill
text is invented for these tests."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from bot import comments
from bot.changeset import FileChange, FileStatus, Hunk
from bot.comments import (
    BODY_LIMIT,
    code_fence,
    marker,
    parse_marker,
    render_comment,
    suggestion_for,
)
from bot.findings import (
    Edit,
    Finding,
    Fix,
    FixSafety,
    RelatedLocation,
    Report,
    Severity,
    Span,
)
from bot.ruleinfo import RuleInfo
from bot.skill import Skill, parse_skill

SKILL = """\
---
name: widgets
---
# Widget Notes

## Pattern: Widget Handling

**Problem:** Widgets leak when nobody closes them.
They pile up.

```python
# ❌ WRONG: never closed
w = widgets.open()

# ✅ CORRECT: closed by a block
with widgets.open() as w:
    w.spin()
```

Close every widget you open.

## Pattern: Other
Other words.
"""

FILE = """\
import widgets

def spin():
    w = widgets.open()
    w.spin()
    return None
"""

PATH = "app/w.py"


def _rule(**changes: object) -> RuleInfo:
    rule = RuleInfo(
        code="AG901",
        name="widget-leak",
        severity=Severity.ERROR,
        section="Pattern: Widget Handling",
        summary="A widget is opened and never closed.",
        doc=(
            "## What it does\n"
            "Flags a widget that is opened and never closed.\n\n"
            "## Why is this bad?\n"
            "Drawers fill up.\n\n"
            "## Use instead\n"
            "A `with` block:\n"
            "```python\n"
            "with widgets.open() as w:\n"
            "    w.spin()\n"
            "```\n"
        ),
        correction="The skill keeps the widget open\nacross requests; close it in the handler.",
        fixable=True,
    )
    return replace(rule, **changes)  # type: ignore[arg-type]


WITH_BLOCK = Edit(Span(4, 5, 5, 13), "with widgets.open() as w:\n        w.spin()")


def _finding(*edits: Edit, **changes: object) -> Finding:
    finding = Finding(
        code="AG901",
        name="widget-leak",
        severity=Severity.ERROR,
        path=PATH,
        span=Span(4, 5, 4, 23),
        message="`w` is never closed",
        section="Pattern: Widget Handling",
        fix=Fix("Close the widget with a `with` block", FixSafety.SAFE, edits or (WITH_BLOCK,)),
        fingerprint="abc123",
    )
    return replace(finding, **changes)  # type: ignore[arg-type]


def _change(added: set[int], *hunks: Hunk) -> FileChange:
    return FileChange(PATH, FileStatus.MODIFIED, added_lines=frozenset(added), hunks=hunks)


CHANGE = _change({4, 5}, Hunk(2, 5))


def _skill() -> Skill:
    return parse_skill(SKILL)


HEAD = """\
**AG901 widget-leak** · error

`w` is never closed"""

SKILL_QUOTE = """\
From the skill, *Pattern: Widget Handling*:

> Widgets leak when nobody closes them.
> They pile up.

```python
# ✅ CORRECT: closed by a block
with widgets.open() as w:
    w.spin()
```

<details><summary>The whole section: Pattern: Widget Handling</summary>

**Problem:** Widgets leak when nobody closes them.
They pile up.

```python
# ❌ WRONG: never closed
w = widgets.open()

# ✅ CORRECT: closed by a block
with widgets.open() as w:
    w.spin()
```

Close every widget you open.

</details>"""

DOC_QUOTE = """\
From the rule's documentation (guideline: *Pattern: Widget Handling*):

> Flags a widget that is opened and never closed.

**Use instead:**

A `with` block:
```python
with widgets.open() as w:
    w.spin()
```"""

CORRECTION = """\
**Correction:** The skill keeps the widget open
across requests; close it in the handler."""

SUGGESTION = """\
**Fix** (safe): Close the widget with a `with` block

```suggestion
    with widgets.open() as w:
        w.spin()
```"""

SNIPPET = """\
**Fix** (safe): Close the widget with a `with` block

Lines 4-5 with the fix:

```python
    with widgets.open() as w:
        w.spin()
```"""

MARKER = "<!-- asyncguard:fp=abc123 -->"


def _body(*parts: str) -> str:
    return "\n\n".join(parts)


# --- whole bodies --------------------------------------------------------------------------------


def test_with_skill_correction_and_suggestion() -> None:
    body = render_comment(_finding(), _rule(), _skill(), file_text=FILE, change=CHANGE)
    assert body == _body(HEAD, SKILL_QUOTE, CORRECTION, SUGGESTION, MARKER)
    assert suggestion_for(_finding(), FILE, CHANGE) == (
        4,
        5,
        "    with widgets.open() as w:\n        w.spin()",
    )


def test_without_skill_the_rule_documentation_is_quoted() -> None:
    body = render_comment(_finding(), _rule(), None, file_text=FILE, change=CHANGE)
    assert body == _body(HEAD, DOC_QUOTE, CORRECTION, SUGGESTION, MARKER)
    # A skill without the rule's heading counts as no skill.
    other = parse_skill("## Pattern: Other\nWords.\n")
    assert render_comment(_finding(), _rule(), other, file_text=FILE, change=CHANGE) == body
    # A heading with nothing under it too.
    empty = parse_skill("## Pattern: Widget Handling\n## Next\n")
    assert render_comment(_finding(), _rule(), empty, file_text=FILE, change=CHANGE) == body


def test_rule_docs_without_the_usual_parts_fall_back_to_the_summary() -> None:
    rule = _rule(doc="Just prose.\n", correction=None)
    body = render_comment(_finding(fix=None), rule, None, file_text=None, change=None)
    assert body == _body(
        HEAD,
        "From the rule's documentation (guideline: *Pattern: Widget Handling*):\n\n"
        "> A widget is opened and never closed.",
        MARKER,
    )


def test_unknown_rule_without_skill() -> None:
    finding = _finding(code="AG999", name="x", section="S", fix=None, related=())
    assert render_comment(finding, None, None, file_text=None, change=None) == _body(
        "**AG999 x** · error", "`w` is never closed", "Guideline: *S*", MARKER
    )
    bare = replace(finding, section="", message="")
    assert render_comment(bare, None, None, file_text=None, change=None) == _body(
        "**AG999 x** · error", MARKER
    )


def test_fix_outside_the_added_lines_gives_no_suggestion() -> None:
    finding = _finding()
    for change in (
        _change({4}, Hunk(2, 5)),  # line 5 is context, not added
        _change({4, 5}, Hunk(3, 2), Hunk(5, 1)),  # added, but in two hunks
        _change(set()),
    ):
        assert suggestion_for(finding, FILE, change) is None
        body = render_comment(finding, _rule(), _skill(), file_text=FILE, change=change)
        assert body == _body(HEAD, SKILL_QUOTE, CORRECTION, SNIPPET, MARKER)
    # Without the file's text there are no fixed lines to show: the description alone.
    body = render_comment(finding, _rule(), _skill(), file_text=None, change=CHANGE)
    assert body == _body(
        HEAD,
        SKILL_QUOTE,
        CORRECTION,
        "**Fix** (safe): Close the widget with a `with` block",
        MARKER,
    )


def test_related_lines_and_a_multi_line_message() -> None:
    finding = _finding(
        message="`w` is opened here\n```\nand never closed <!-- sneaky",
        related=(RelatedLocation(Span(5, 5, 5, 13), "used\nhere"),),
        fix=None,
    )
    body = render_comment(finding, _rule(correction=None), None, file_text=None, change=None)
    assert body == _body(
        "**AG901 widget-leak** · error",
        # The fence-like line is escaped, the comment opener shown as text.
        "`w` is opened here\\\n\\```\\\nand never closed &lt;!-- sneaky",
        "- line 5: used\\\n  here",
        DOC_QUOTE,
        MARKER,
    )


# --- suggestions ---------------------------------------------------------------------------------


def test_multi_line_suggestion_covers_whole_lines() -> None:
    # Rewrites the call on line 4 and the middle of line 5: the suggestion is both whole lines.
    edits = (Edit(Span(4, 9, 4, 23), "widgets.open(timeout=1)"), Edit(Span(5, 7, 5, 11), "twirl"))
    finding = replace(_finding(), fix=Fix("Add a timeout", FixSafety.UNSAFE, edits))
    assert suggestion_for(finding, FILE, CHANGE) == (
        4,
        5,
        "    w = widgets.open(timeout=1)\n    w.twirl()",
    )
    body = render_comment(finding, _rule(correction=None), None, file_text=FILE, change=CHANGE)
    assert body == _body(
        HEAD,
        DOC_QUOTE,
        "**Fix** (unsafe): Add a timeout\n\n"
        "```suggestion\n"
        "    w = widgets.open(timeout=1)\n"
        "    w.twirl()\n"
        "```",
        MARKER,
    )


@pytest.mark.parametrize(
    ("edit", "added", "expected"),
    [
        # Deleting whole lines: an empty suggestion.
        (Edit(Span(4, 1, 6, 1), ""), {4, 5}, (4, 5, "")),
        # An insertion at the start of a line rewrites that line.
        (Edit(Span(5, 1, 5, 1), "    log()\n"), {5}, (5, 5, "    log()\n    w.spin()")),
        # Joining lines 4 and 5 takes line 5 in, which must then be added too.
        (Edit(Span(4, 23, 5, 5), "; "), {4, 5}, (4, 5, "    w = widgets.open(); w.spin()")),
        (Edit(Span(4, 23, 5, 5), "; "), {4}, None),
        # A deletion that ends at the start of line 6 leaves line 6 alone ...
        (Edit(Span(5, 1, 6, 1), ""), {5}, (5, 5, "")),
        # ... unless it starts inside a line: then line 4 joins line 6, which must be added.
        (Edit(Span(4, 23, 6, 1), ""), {4, 5, 6}, (4, 6, "    w = widgets.open()    return None")),
        (Edit(Span(4, 23, 6, 1), ""), {4, 5}, None),
        # Beyond the end of the file, a no-op, a column past the line's end.
        (Edit(Span(8, 1, 8, 1), "x\n"), {6, 7, 8}, None),
        (Edit(Span(4, 5, 4, 6), "w"), {4}, None),
        (Edit(Span(4, 5, 4, 99), "w"), {4}, None),
    ],
)
def test_suggestion_ranges(
    edit: Edit, added: set[int], expected: tuple[int, int, str] | None
) -> None:
    change = _change(added, Hunk(1, 6))
    assert suggestion_for(_finding(edit), FILE, change) == expected


def test_suggestion_needs_a_fix_text_and_change() -> None:
    assert suggestion_for(_finding(fix=None), FILE, CHANGE) is None
    assert suggestion_for(_finding(), None, CHANGE) is None
    assert suggestion_for(_finding(), FILE, None) is None
    empty = replace(_finding(), fix=Fix("nothing", FixSafety.SAFE, ()))
    assert suggestion_for(empty, FILE, CHANGE) is None
    overlapping = _finding(Edit(Span(4, 5, 4, 10), "a"), Edit(Span(4, 8, 4, 12), "b"))
    assert suggestion_for(overlapping, FILE, CHANGE) is None


def test_suggestion_on_a_last_line_without_newline_and_on_crlf() -> None:
    text = "a = 1\nb = 2"
    finding = _finding(Edit(Span(2, 5, 2, 6), "3"))
    assert suggestion_for(finding, text, _change({2}, Hunk(1, 2))) == (2, 2, "b = 3")
    crlf = "a = 1\r\nb = 2\r\n"
    assert suggestion_for(finding, crlf, _change({2}, Hunk(1, 2))) == (2, 2, "b = 3")


# --- escaping ------------------------------------------------------------------------------------


def test_fences_inside_code_get_a_longer_fence() -> None:
    skill = parse_skill(
        "## Pattern: Widget Handling\n\n"
        "````python\n"
        "# ✅ CORRECT\n"
        'DOC = """\n'
        "```\n"
        "example\n"
        "```\n"
        '"""\n'
        "````\n"
    )
    finding = _finding(Edit(Span(4, 9, 4, 23), '"```"'))
    body = render_comment(finding, _rule(correction=None), skill, file_text=FILE, change=CHANGE)
    assert body == _body(
        HEAD,
        "From the skill, *Pattern: Widget Handling*:\n\n"
        "````python\n"
        "# ✅ CORRECT\n"
        'DOC = """\n'
        "```\n"
        "example\n"
        "```\n"
        '"""\n'
        "````",
        "<details><summary>The whole section: Pattern: Widget Handling</summary>\n\n"
        "````python\n"
        "# ✅ CORRECT\n"
        'DOC = """\n'
        "```\n"
        "example\n"
        "```\n"
        '"""\n'
        "````\n\n"
        "</details>",
        "**Fix** (safe): Close the widget with a `with` block\n\n"
        "````suggestion\n"
        '    w = "```"\n'
        "````",
        MARKER,
    )
    assert code_fence("a ````` b", "x") == "``````x\na ````` b\n``````"
    assert code_fence("", "suggestion") == "```suggestion\n```"


def test_skill_html_cannot_hide_or_close_the_body() -> None:
    skill = parse_skill(
        "## Pattern: <Widget> & Co\n\n"
        "Beware <!-- this and </details> that.\n\n"
        "```html\n<!-- in code it stays -->\n```\n"
    )
    finding = _finding(section="Pattern: <Widget> & Co", fix=None)
    body = render_comment(finding, _rule(correction=None), skill, file_text=None, change=None)
    assert body == _body(
        HEAD,
        "From the skill, *Pattern: \\<Widget\\> & Co*:\n\n"
        "> Beware &lt;!-- this and &lt;/details> that.\n\n"
        "```html\n<!-- in code it stays -->\n```",
        "<details><summary>The whole section: Pattern: &lt;Widget&gt; &amp; Co</summary>\n\n"
        "Beware &lt;!-- this and &lt;/details> that.\n\n"
        "```html\n<!-- in code it stays -->\n```\n\n"
        "</details>",
        MARKER,
    )
    assert parse_marker(body) == "abc123"


# --- size ----------------------------------------------------------------------------------------


def test_size_cap_trims_the_details_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(comments, "BODY_LIMIT", 1000)
    monkeypatch.setattr(comments, "MIN_DETAILS", 50)
    words = "\n".join(f"Invented line number {n}." for n in range(60))
    skill = parse_skill(f"## Pattern: Widget Handling\n\n**Problem:** Short.\n\n{words}\n")
    body = render_comment(_finding(), _rule(), skill, file_text=FILE, change=CHANGE)
    head = _body(HEAD, "From the skill, *Pattern: Widget Handling*:\n\n> Short.")
    details_open = "<details><summary>The whole section: Pattern: Widget Handling</summary>"
    tail = _body(CORRECTION, SUGGESTION, MARKER)
    assert body.startswith(f"{head}\n\n{details_open}\n\n**Problem:** Short.\n\nInvented line")
    assert body.endswith(f"\n\n*… (trimmed)*\n\n</details>\n\n{tail}")
    assert len(body) <= 1000
    kept = body[len(head) :].split("**Problem:** Short.\n\n")[1].split("\n\n*…")[0]
    lines = kept.split("\n")
    assert lines == [f"Invented line number {n}." for n in range(len(lines))]
    # One more line would not have fit.
    assert len(body) + len(f"\nInvented line number {len(lines)}.") > 1000


def test_size_cap_drops_the_details_then_the_suggestion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(comments, "BODY_LIMIT", 600)
    body = render_comment(_finding(), _rule(), _skill(), file_text=FILE, change=CHANGE)
    quote = SKILL_QUOTE.split("\n\n<details>")[0]
    assert body == _body(HEAD, quote, CORRECTION, SUGGESTION, MARKER)
    monkeypatch.setattr(comments, "BODY_LIMIT", 450)
    body = render_comment(_finding(), _rule(), _skill(), file_text=FILE, change=CHANGE)
    assert body == _body(
        HEAD,
        quote,
        CORRECTION,
        "**Fix** (safe): Close the widget with a `with` block",
        MARKER,
    )


def test_size_cap_as_a_last_resort_cuts_text_but_keeps_the_marker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(comments, "BODY_LIMIT", 120)
    body = render_comment(_finding(), _rule(), _skill(), file_text=FILE, change=CHANGE)
    assert body == _body(HEAD, "*… (trimmed)*", MARKER)
    assert len(body) <= 120


def test_real_size_cap_with_a_huge_message_and_section() -> None:
    lines = "\n".join(f"Invented skill line {n:05}." for n in range(3000))
    skill = parse_skill(f"## Pattern: Widget Handling\n\n{lines}\n")
    message = "\n".join(f"message line {n:05}" for n in range(2400))
    finding = _finding(message=message)
    body = render_comment(finding, _rule(), skill, file_text=FILE, change=CHANGE)
    assert len(body) <= BODY_LIMIT < 65_536
    assert "</details>" in body and "*… (trimmed)*" in body
    assert body.endswith(_body(CORRECTION, SUGGESTION, MARKER))
    # A message alone past the limit: everything but the marker is cut.
    huge = _finding(message="x" * 70_000)
    body = render_comment(huge, _rule(), skill, file_text=FILE, change=CHANGE)
    assert len(body) <= BODY_LIMIT
    assert body.startswith(HEAD.split("\n\n")[0]) and body.endswith(MARKER)


# --- the marker ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "finding",
    [
        _finding(),
        _finding(fix=None),
        _finding(message="ends with a fence\n```"),
        _finding(fingerprint=""),
    ],
)
@pytest.mark.parametrize("with_skill", [True, False])
def test_the_marker_is_always_the_last_line(finding: Finding, with_skill: bool) -> None:
    skill = _skill() if with_skill else None
    body = render_comment(finding, _rule(), skill, file_text=FILE, change=CHANGE)
    assert body.rsplit("\n", 1)[-1] == marker(finding.fingerprint)
    assert parse_marker(body) == finding.fingerprint
    assert body.count("<!-- asyncguard:fp=") == 1


def test_marker_keeps_only_safe_characters() -> None:
    assert marker("abc123") == MARKER
    assert marker("a-->b <c>") == "<!-- asyncguard:fp=abc -->"
    assert parse_marker("text\n\n<!-- asyncguard:fp=f00 -->\n") == "f00"
    assert parse_marker("<!-- asyncguard:fp=f00 -->\nlater text") is None
    assert parse_marker("no marker") is None


# --- the markdown report -------------------------------------------------------------------------


def test_markdown_report_blocks_are_comment_bodies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.reporters import markdown as markdown_reporter
    from bot.reporters import render

    monkeypatch.chdir(tmp_path)
    report = Report(findings=[_finding()], files_checked=1)
    rules = {"AG901": _rule()}
    block_head = "#### `app/w.py:4:5`\n\n"
    # No skill under the working directory: the rule's docs; fixes by description only.
    without = render("markdown", report, rules, tool_version="1")
    fix_short = "**Fix** (safe): Close the widget with a `with` block"
    assert block_head + _body(HEAD, DOC_QUOTE, CORRECTION, fix_short, MARKER) in without
    # A skill file found from the working directory.
    skill_file = tmp_path / ".claude" / "skills" / "w" / "SKILL.md"
    skill_file.parent.mkdir(parents=True)
    skill_file.write_text(SKILL, encoding="utf-8")
    found = render("markdown", report, rules, tool_version="1")
    assert block_head + _body(HEAD, SKILL_QUOTE, CORRECTION, fix_short, MARKER) in found
    # The config's `skill` setting wins, relative to the config file, from a subdirectory too.
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "g.md").write_text("## Pattern: Widget Handling\n\nSet.\n", "utf-8")
    (tmp_path / ".asyncguard.toml").write_text('skill = "docs/g.md"\n', encoding="utf-8")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    configured = render("markdown", report, rules, tool_version="1")
    assert "From the skill, *Pattern: Widget Handling*:\n\n> Set.\n\n<details>" in configured
    # An explicit skill (or None) skips the search.
    assert markdown_reporter.render(report, rules, tool_version="1", skill=None) == without
    assert markdown_reporter.render(report, rules, tool_version="1", skill=_skill()) == found
