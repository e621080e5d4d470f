"""The skill file: where it is found, how it is split into sections, what is quoted, and that
bad files give no skill instead of an error. Every skill text here is invented for the tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.skill import (
    MAX_SKILL_BYTES,
    QUOTE_LIMIT,
    SECTION_LIMIT,
    SKILL_GLOBS,
    close_fences,
    load_skill,
    normalise_heading,
    parse_skill,
    read_skill,
    trim_markdown,
)

SECTIONS = ("Pattern: Widget Handling", "Pattern: Gadget Pools")

WIDGET_SKILL = """\
---
name: team-widgets
description: Invented notes about widgets, for tests.
---
# Widget Notes

Some words before the patterns.

## Pattern: Widget Handling

**Problem:** Widgets leak when nobody closes them.
They also pile up in the drawer.

```python
# shared setup
import widgets

# ❌ WRONG: never closed
w = widgets.open()

# ✅ CORRECT: closed by a block
with widgets.open() as w:
    w.spin()
```

### Why it matters

Drawers fill up.

---

## Pattern: Gadget Pools

Gadgets come from a pool of limited size.
Return them quickly.

```text
first block, no marker
```

```python
# CORRECT: give it back
pool.release(gadget)
```

## Unrelated
Nothing to see.
"""


def _write(root: Path, relative: str, text: str | bytes) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_bytes(text.encode("utf-8"))
    return path


# --- discovery ---------------------------------------------------------------------------------


def test_discovery_globs_are_in_the_documented_order() -> None:
    assert SKILL_GLOBS == (
        ".claude/skills/*/SKILL.md",
        ".cursor/skills/*/SKILL.md",
        ".codex/skills/*/SKILL.md",
        "skills/*/SKILL.md",
    )


def test_discovery_takes_the_first_glob_with_a_match(tmp_path: Path) -> None:
    _write(tmp_path, "skills/a/SKILL.md", WIDGET_SKILL)
    _write(tmp_path, ".codex/skills/a/SKILL.md", WIDGET_SKILL)
    cursor = _write(tmp_path, ".cursor/skills/b/SKILL.md", WIDGET_SKILL)
    skill = load_skill(tmp_path, None, sections=SECTIONS)
    assert skill is not None and skill.path == cursor
    claude = _write(tmp_path, ".claude/skills/z/SKILL.md", WIDGET_SKILL)
    skill = load_skill(tmp_path, None, sections=SECTIONS)
    assert skill is not None and skill.path == claude


def test_discovery_is_sorted_within_a_glob(tmp_path: Path) -> None:
    _write(tmp_path, ".claude/skills/b/SKILL.md", WIDGET_SKILL)
    first = _write(tmp_path, ".claude/skills/a/SKILL.md", WIDGET_SKILL)
    skill = load_skill(tmp_path, None, sections=SECTIONS)
    assert skill is not None and skill.path == first


def test_discovery_skips_skills_whose_headings_match_no_rule(tmp_path: Path) -> None:
    _write(tmp_path, ".claude/skills/a/SKILL.md", "# Cooking\n\n## Pattern: Pancakes\n\nFlip.\n")
    _write(tmp_path, ".claude/skills/b/SKILL.md", b"\x00binary")
    wanted = _write(tmp_path, "skills/widgets/SKILL.md", WIDGET_SKILL)
    skill = load_skill(tmp_path, None, sections=SECTIONS)
    assert skill is not None and skill.path == wanted
    assert load_skill(tmp_path, None, sections=["Pattern: Nothing Here"]) is None


def test_discovery_without_any_skill(tmp_path: Path) -> None:
    assert load_skill(tmp_path, None, sections=SECTIONS) is None
    assert load_skill(tmp_path / "missing", None, sections=SECTIONS) is None


def test_discovery_defaults_to_the_installed_rules_sections(tmp_path: Path) -> None:
    from bot.registry import rule_infos

    section = rule_infos()[0].section
    _write(tmp_path, ".claude/skills/x/SKILL.md", f"## {section.upper()}\n\nInvented text.\n")
    skill = load_skill(tmp_path, None)
    assert skill is not None
    quoted = skill.section(section)
    assert quoted is not None and quoted.problem == "Invented text."


def test_discovery_ignores_symlinks_leaving_the_root(tmp_path: Path) -> None:
    outside = _write(tmp_path, "outside/SKILL.md", WIDGET_SKILL)
    repo = tmp_path / "repo"
    link = repo / ".claude" / "skills" / "x" / "SKILL.md"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    assert load_skill(repo, None, sections=SECTIONS) is None
    # A symlink inside the repository is fine.
    inner = _write(repo, "docs/widgets.md", WIDGET_SKILL)
    link.unlink()
    link.symlink_to(inner)
    skill = load_skill(repo, None, sections=SECTIONS)
    assert skill is not None and skill.path == link


def test_configured_path_is_relative_to_the_root_and_used_as_is(tmp_path: Path) -> None:
    _write(tmp_path, ".claude/skills/a/SKILL.md", WIDGET_SKILL)
    configured = _write(tmp_path, "docs/guide.md", "# Only\n\n## Pattern: Pancakes\n")
    skill = load_skill(tmp_path, "docs/guide.md", sections=SECTIONS)
    assert skill is not None and skill.path == configured  # no heading match needed
    # A configured file that is missing or bad means no skill, not a search elsewhere.
    assert load_skill(tmp_path, "docs/missing.md", sections=SECTIONS) is None
    assert load_skill(tmp_path, "docs", sections=SECTIONS) is None
    assert load_skill(tmp_path, "", sections=SECTIONS) is None


# --- bad files -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"## Pattern: Widget Handling\n\x00\x01\x02",  # binary
        "## Pattern: Widget Handling\n\ncaf\u00e9\n".encode("latin-1"),  # not UTF-8
        b"## Pattern: Widget Handling\n" + b"x" * MAX_SKILL_BYTES,  # too large
    ],
    ids=["binary", "latin-1", "huge"],
)
def test_bad_files_give_no_skill(tmp_path: Path, data: bytes) -> None:
    path = _write(tmp_path, ".claude/skills/a/SKILL.md", data)
    assert read_skill(path) is None
    assert load_skill(tmp_path, None, sections=SECTIONS) is None
    assert load_skill(tmp_path, ".claude/skills/a/SKILL.md", sections=SECTIONS) is None


def test_a_file_of_exactly_the_size_limit_is_read(tmp_path: Path) -> None:
    head = "## Pattern: Widget Handling\n\n"
    path = _write(tmp_path, "SKILL.md", head + "x" * (MAX_SKILL_BYTES - len(head)))
    assert read_skill(path) is not None


def test_directories_and_unreadable_files_give_no_skill(tmp_path: Path) -> None:
    (tmp_path / ".claude" / "skills" / "a" / "SKILL.md").mkdir(parents=True)
    assert load_skill(tmp_path, None, sections=SECTIONS) is None
    assert read_skill(tmp_path / "nul\x00byte.md") is None
    if hasattr(os, "mkfifo"):  # reading a pipe would block: it is not a regular file
        fifo = tmp_path / ".cursor" / "skills" / "p" / "SKILL.md"
        fifo.parent.mkdir(parents=True)
        os.mkfifo(fifo)
        assert read_skill(fifo) is None
        assert load_skill(tmp_path, None, sections=SECTIONS) is None
    path = _write(tmp_path, "locked/SKILL.md", WIDGET_SKILL)
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running with privileges that ignore file modes")
        assert read_skill(path) is None
    finally:
        path.chmod(0o644)


def test_empty_and_heading_free_files_parse_to_no_sections() -> None:
    assert parse_skill("").headings == ()
    skill = parse_skill("just words\n")
    assert skill.section("Pattern: Widget Handling") is None
    assert not skill.matches(SECTIONS)


# --- headings ------------------------------------------------------------------------------------


def test_front_matter_bom_and_crlf_are_tolerated() -> None:
    text = "\ufeff" + WIDGET_SKILL.replace("\n", "\r\n")
    skill = parse_skill(text)
    assert skill.heading_texts == (
        "Widget Notes",
        "Pattern: Widget Handling",
        "Why it matters",
        "Pattern: Gadget Pools",
        "Unrelated",
    )
    section = skill.section("Pattern: Widget Handling")
    assert section is not None
    assert "\r" not in section.text + section.problem + section.correct_example
    # Front matter is not content.
    assert "team-widgets" not in "\n".join(skill.lines)


def test_unclosed_front_matter_is_content() -> None:
    skill = parse_skill("---\ntitle: x\n## Pattern: Widget Handling\nText.\n")
    assert skill.heading_texts == ("Pattern: Widget Handling",)


@pytest.mark.parametrize(
    "line",
    [
        "# Pattern: Widget Handling",
        "### Pattern: Widget Handling",
        "###### pattern:   widget handling",
        "## Pattern: Widget Handling ##   ",
        "  ## PATTERN: WIDGET HANDLING",
        "## **Pattern: Widget Handling**",
        "## Widget Handling",  # without the "Pattern:" prefix
    ],
)
def test_heading_variants_match_the_rule_section(line: str) -> None:
    skill = parse_skill(f"{line}\n\nThe invented problem.\n")
    section = skill.section("Pattern: Widget Handling")
    assert section is not None
    assert section.problem == "The invented problem."
    assert skill.matches(["Pattern: Other", "Pattern: Widget Handling"])


@pytest.mark.parametrize(
    "line",
    [
        "#Pattern: Widget Handling",
        "    ## Pattern: Widget Handling",
        "####### Pattern: Widget Handling",
    ],
)
def test_things_that_are_not_headings(line: str) -> None:
    assert parse_skill(f"{line}\n").headings == ()


def test_normalise_heading() -> None:
    assert normalise_heading("  Pattern:\tAsync   Things ## ") == "pattern: async things"
    assert normalise_heading("C#") == "c#"  # a closing sequence needs a space before it
    assert normalise_heading("`Code` heading") == "`code` heading"
    assert normalise_heading("__Bold__") == "bold"


def test_headings_inside_code_blocks_are_code() -> None:
    text = (
        "## Pattern: Widget Handling\n\n"
        "~~~python\n# not a heading\n```\n## still code\n~~~\n\n"
        "````\n```\n# inner fence is content\n```\n````\n\n"
        "Tail.\n"
    )
    skill = parse_skill(text)
    assert skill.heading_texts == ("Pattern: Widget Handling",)
    section = skill.section("pattern: widget handling")
    assert section is not None and section.text.endswith("Tail.")


def test_a_section_runs_to_the_next_heading_of_the_same_or_higher_level() -> None:
    skill = parse_skill(WIDGET_SKILL)
    widget = skill.section("Pattern: Widget Handling")
    assert widget is not None
    assert "### Why it matters" in widget.text
    assert "Drawers fill up." in widget.text
    assert "Gadget" not in widget.text
    assert not widget.text.endswith("---")  # the separator before the next section is dropped
    top = skill.section("Widget Notes")
    assert top is not None and "## Unrelated" in top.text
    sub = skill.section("Why it matters")
    assert sub is not None and sub.text == "Drawers fill up."


def test_the_first_matching_heading_wins() -> None:
    skill = parse_skill("## Pattern: A\none\n## pattern: a\ntwo\n")
    section = skill.section("Pattern: A")
    assert section is not None and section.text == "one"


# --- extraction ----------------------------------------------------------------------------------


def test_problem_line_and_correct_example() -> None:
    section = parse_skill(WIDGET_SKILL).section("Pattern: Widget Handling")
    assert section is not None
    assert section.heading == "Pattern: Widget Handling"
    assert (
        section.problem == "Widgets leak when nobody closes them.\nThey also pile up in the drawer."
    )
    # The WRONG part is left out; the setup before the first marker stays.
    assert section.correct_example == (
        "# shared setup\n"
        "import widgets\n"
        "\n"
        "# ✅ CORRECT: closed by a block\n"
        "with widgets.open() as w:\n"
        "    w.spin()"
    )
    assert section.language == "python"
    assert section.text.startswith("**Problem:** Widgets leak")


def test_first_paragraph_and_the_marked_block_over_the_first_one() -> None:
    section = parse_skill(WIDGET_SKILL).section("Pattern: Gadget Pools")
    assert section is not None
    assert section.problem == "Gadgets come from a pool of limited size.\nReturn them quickly."
    assert section.correct_example == "# CORRECT: give it back\npool.release(gadget)"


def test_without_a_marked_block_the_first_block_is_the_example() -> None:
    text = "## S\n\nWords.\n\n```js\nconsole.log(1)\n```\n\n```\nsecond\n```\n"
    section = parse_skill(text).section("S")
    assert section is not None
    assert (section.correct_example, section.language) == ("console.log(1)", "js")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("**Problem**: colon outside.\n", "colon outside."),
        ("Problem: plain label.\n", "plain label."),
        ("**Problem:**\nOn the next line.\n", "On the next line."),
        ("Intro first.\n\n**Problem:** Later label wins.\n", "Later label wins."),
        ("```\ncode only\n```\n", ""),
        ("- a list item\n- another\n", "- a list item\n- another"),
    ],
)
def test_problem_variants(body: str, problem: str) -> None:
    section = parse_skill(f"## S\n\n{body}").section("S")
    assert section is not None and section.problem == problem


def test_wrong_parts_and_incorrect_are_told_apart() -> None:
    text = (
        "## S\n\n```python\n"
        "# ❌ WRONG first\nbad()\n"
        "# ✅ CORRECT: good, not the WRONG way\ngood()\n"
        "# INCORRECT is not a correct marker\nstill_good()\n"
        "```\n"
    )
    section = parse_skill(text).section("S")
    assert section is not None
    assert section.correct_example == (
        "# ✅ CORRECT: good, not the WRONG way\n"
        "good()\n"
        "# INCORRECT is not a correct marker\n"
        "still_good()"
    )


def test_indented_fence_content_is_unindented() -> None:
    text = "## S\n\n1. Step:\n\n   ```python\n   # ✅ CORRECT\n   run()\n     nested()\n   ```\n"
    section = parse_skill(text).section("S")
    assert section is not None
    assert section.correct_example == "# ✅ CORRECT\nrun()\n  nested()"


def test_heading_only_section_is_empty() -> None:
    section = parse_skill("## S\n## T\ntext\n").section("S")
    assert section is not None and section.is_empty


# --- caps ----------------------------------------------------------------------------------------


def test_long_quotes_are_trimmed_at_a_line_boundary_with_a_note() -> None:
    problem_lines = [f"Problem line {n} with some invented padding words." for n in range(200)]
    code_lines = ["# ✅ CORRECT"] + [f"call_number_{n}()" for n in range(400)]
    body_lines = [f"More invented text, line {n}." for n in range(1000)]
    text = (
        "## S\n\n"
        + "\n".join(problem_lines)
        + "\n\n```python\n"
        + "\n".join(code_lines)
        + "\n```\n\n"
        + "\n".join(body_lines)
        + "\n"
    )
    section = parse_skill(text).section("S")
    assert section is not None
    assert QUOTE_LIMIT - 200 < len(section.problem) <= QUOTE_LIMIT
    assert section.problem.endswith("\n\n*… (trimmed; the rest is in the skill file)*")
    kept = section.problem.split("\n\n")[0].split("\n")
    assert all(line in problem_lines for line in kept)
    assert QUOTE_LIMIT - 200 < len(section.correct_example) <= QUOTE_LIMIT
    assert section.correct_example.endswith("\n… (trimmed)")
    assert all(line in code_lines for line in section.correct_example.split("\n")[:-1])
    assert SECTION_LIMIT - 200 < len(section.text) <= SECTION_LIMIT
    assert section.text.endswith("*… (trimmed; the rest is in the skill file)*")


def test_a_trimmed_section_never_leaves_a_code_block_open() -> None:
    code = "\n".join(f"line_{n} = {n}" for n in range(3000))
    section = parse_skill(f"## S\n\nIntro.\n\n````python\n{code}\n````\n").section("S")
    assert section is not None
    assert len(section.text) <= SECTION_LIMIT
    before_note = section.text.rsplit("\n\n", 1)[0]
    assert before_note.endswith("\n````")
    assert close_fences(before_note) == before_note


def test_trim_markdown_and_close_fences() -> None:
    assert trim_markdown("short", 10, "N") == "short"
    assert trim_markdown("aaaa\nbbbb\ncccc", 11, "N") == "aaaa\n\nN"
    assert trim_markdown("```\nabc\ndef\n```", 14, "N") == "```\nabc\n```\n\nN"
    assert trim_markdown("x" * 50, 10, "N") == "x" * 7 + "\n\nN"  # one long line: cut inside
    assert close_fences("```py\ncode") == "```py\ncode\n```"
    assert close_fences("~~~~\ncode\n~~~") == "~~~~\ncode\n~~~\n~~~~"
    assert close_fences("```\ncode\n```") == "```\ncode\n```"
    for limit in range(0, 40):
        assert len(trim_markdown("```\n" + "code\n" * 10 + "```", limit, "N")) <= limit
