"""Rule documentation pages: one Markdown page per rule, generated from the rule modules.

`asyncguard explain CODE` prints the same page. `python -m bot.docs` rewrites `docs/rules/`;
a test fails when the committed pages are stale.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from bot.ruleinfo import RuleInfo

DOCS_DIR = Path("docs") / "rules"


def rule_page(info: RuleInfo) -> str:
    lines = [
        f"# {info.code} {info.name}",
        "",
        f"- Default severity: **{info.severity.value}**",
        f'- Skill section: "{info.section}"',
        f"- Fix: {'available' if info.fixable else 'none (the message says what to do instead)'}",
        "",
        info.summary,
        "",
        info.doc.rstrip(),
        "",
    ]
    if info.correction:
        lines += ["## Correction to the skill", "", info.correction.rstrip(), ""]
    return "\n".join(lines)


def index_page(infos: Sequence[RuleInfo]) -> str:
    lines = [
        "# asyncguard rules",
        "",
        "Generated from the rule modules by `python -m bot.docs`; do not edit by hand.",
        "",
        "| Code | Name | Severity | Skill section | Fix |",
        "| --- | --- | --- | --- | --- |",
    ]
    for info in infos:
        fix = "yes" if info.fixable else ""
        lines.append(
            f"| [{info.code}]({info.code}.md) | {info.name} | {info.severity.value} | {info.section} | {fix} |"
        )
    return "\n".join(lines) + "\n"


def expected_pages(infos: Sequence[RuleInfo]) -> dict[str, str]:
    pages = {f"{info.code}.md": rule_page(info) for info in infos}
    pages["README.md"] = index_page(infos)
    return pages


def write_pages(directory: Path, infos: Sequence[RuleInfo]) -> list[str]:
    """Write the pages, remove pages of rules that no longer exist; return what changed."""
    directory.mkdir(parents=True, exist_ok=True)
    pages = expected_pages(infos)
    changed = []
    for name, text in pages.items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(name)
    for stale in directory.glob("*.md"):
        if stale.name not in pages:
            stale.unlink()
            changed.append(stale.name)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    from bot.registry import rule_infos

    args = list(sys.argv[1:] if argv is None else argv)
    directory = Path(args[0]) if args else DOCS_DIR
    changed = write_pages(directory, rule_infos())
    print(
        f"{len(changed)} page(s) written to {directory}"
        if changed
        else f"{directory} is up to date"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
