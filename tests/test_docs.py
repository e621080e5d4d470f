"""The generated rule pages in docs/rules/ match the rule modules."""

from __future__ import annotations

from pathlib import Path

from bot.docs import expected_pages, rule_page
from bot.registry import rule_infos

DOCS = Path(__file__).resolve().parents[1] / "docs" / "rules"


def test_rule_pages_are_up_to_date() -> None:
    pages = expected_pages(rule_infos())
    stale = [
        name
        for name, text in pages.items()
        if not (DOCS / name).exists() or (DOCS / name).read_text(encoding="utf-8") != text
    ]
    extra = sorted(p.name for p in DOCS.glob("*.md") if p.name not in pages)
    assert not stale and not extra, (
        f"run `python -m bot.docs` to regenerate: stale {stale}, extra {extra}"
    )


def test_page_has_ruff_sections_in_order() -> None:
    for info in rule_infos():
        page = rule_page(info)
        positions = [
            page.index(h)
            for h in ("## What it does", "## Why is this bad?", "## Example", "## Use instead")
        ]
        assert positions == sorted(positions), info.code
