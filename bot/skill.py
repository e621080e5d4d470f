"""The team's skill file: finding it in a repository and quoting its sections.

Each rule names the skill section it enforces by heading ("Pattern: AsyncSession Lifecycle").
A review comment quotes that section from the skill file installed in the reviewed repository:
its problem statement, its correct example and, collapsed, the whole section. The project never
ships the skill's text; it is read from the repository under review, so anything in it may be
malformed and nothing here raises on bad input (`load_skill` answers None instead).

The file is Markdown as the coding agents read it: optional YAML front matter, ATX headings of
any level (`#` .. `######`; setext headings are not recognised), fenced code blocks whose
comments mark the right and wrong ways (`# ✅ CORRECT: ...`, `# ❌ WRONG: ...`).
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "MAX_SKILL_BYTES",
    "QUOTE_LIMIT",
    "SECTION_LIMIT",
    "SKILL_GLOBS",
    "Skill",
    "SkillSection",
    "close_fences",
    "code_line_mask",
    "load_skill",
    "normalise_heading",
    "parse_skill",
    "read_skill",
    "trim_markdown",
]

MAX_SKILL_BYTES = 1024 * 1024  # a larger file is not a skill (or not one worth quoting)
QUOTE_LIMIT = 4_000  # the problem statement and the correct example, each
SECTION_LIMIT = 20_000  # the whole section, shown collapsed
# Where coding agents look for skills, in the order they are searched.
SKILL_GLOBS = (
    ".claude/skills/*/SKILL.md",
    ".cursor/skills/*/SKILL.md",
    ".codex/skills/*/SKILL.md",
    "skills/*/SKILL.md",
)

TRIM_NOTE = "*… (trimmed; the rest is in the skill file)*"
CODE_TRIM_NOTE = "… (trimmed)"

_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
_CLOSING_HASHES = re.compile(r"(?:^|[ \t]+)#+$")
_FENCE_OPEN = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")
_FENCE_CLOSE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*$")
_THEMATIC_BREAK = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_PROBLEM = re.compile(
    r"^ {0,3}(?:\*\*problem:\*\*|\*\*problem\*\*:|__problem:__|__problem__:|problem:)[ \t]*(.*)$",
    re.IGNORECASE,
)
_CORRECT_MARK = re.compile(r"[✅✔✓]|\bCORRECT\b")
_WRONG_MARK = re.compile(r"[❌✗✘]|\bWRONG\b")
_SIGN = re.compile(r"[✅✔✓❌✗✘]")
_COMMENT_START = ("#", "//", "--", "/*", ";", "<!--", "%")
_EMPHASIS = "*_`"
_PATTERN_PREFIX = "pattern:"


@dataclass(frozen=True)
class SkillSection:
    """One section of the skill, ready to quote.

    `problem` is the `**Problem:**` statement (its text, without the label) or else the first
    paragraph; `correct_example` is the code of the first fenced block with a line marked
    CORRECT or ✅ (the parts marked WRONG or ❌ left out), else of the first block; `text` is the
    section's body (everything under the heading up to the next heading of the same or a
    higher level). Empty strings where the section has no such part. The problem and the
    example are cut to about QUOTE_LIMIT characters, the text to SECTION_LIMIT, each at a line
    boundary with a note.
    """

    heading: str
    problem: str
    correct_example: str
    text: str
    language: str = ""  # the example's fence info word ("python"), "" when none

    @property
    def is_empty(self) -> bool:
        return not (self.problem or self.correct_example or self.text)


@dataclass(frozen=True)
class _Heading:
    index: int  # line index
    level: int
    text: str


@dataclass(frozen=True)
class _Block:
    """A fenced code block: the opening fence line, the closing one (len(lines) if unclosed)."""

    start: int
    end: int
    indent: int
    info: str


@dataclass(frozen=True)
class Skill:
    """A parsed skill file. Sections are built on demand and remembered."""

    path: Path
    lines: tuple[str, ...]
    headings: tuple[_Heading, ...]
    blocks: tuple[_Block, ...]
    _sections: dict[int, SkillSection] = field(default_factory=dict, compare=False, repr=False)

    @property
    def heading_texts(self) -> tuple[str, ...]:
        return tuple(heading.text for heading in self.headings)

    def matches(self, headings: Iterable[str]) -> bool:
        """Whether one of `headings` (rule sections) names a section of this skill."""
        return any(self._find(heading) is not None for heading in headings)

    def section(self, heading: str) -> SkillSection | None:
        """The section whose heading matches `heading`, ignoring case, spacing, a closing `#`
        sequence and emphasis markers; a leading "Pattern:" may be missing on either side."""
        found = self._find(heading)
        if found is None:
            return None
        position = self.headings.index(found)
        cached = self._sections.get(position)
        if cached is None:
            cached = self._sections[position] = self._build(position)
        return cached

    def _find(self, heading: str) -> _Heading | None:
        wanted = normalise_heading(heading)
        if not wanted:
            return None
        for candidate in self.headings:
            if normalise_heading(candidate.text) == wanted:
                return candidate
        loose = _without_prefix(wanted)
        for candidate in self.headings:
            if _without_prefix(normalise_heading(candidate.text)) == loose:
                return candidate
        return None

    def _build(self, position: int) -> SkillSection:
        heading = self.headings[position]
        end = next(
            (h.index for h in self.headings[position + 1 :] if h.level <= heading.level),
            len(self.lines),
        )
        start = heading.index + 1
        blocks = [block for block in self.blocks if start <= block.start < end]
        in_code = _block_mask(len(self.lines), blocks)
        example, language = _correct_example(self.lines, blocks)
        return SkillSection(
            heading=heading.text,
            problem=trim_markdown(_problem(self.lines, start, end, in_code), QUOTE_LIMIT),
            correct_example=_trim_code(example, QUOTE_LIMIT),
            text=trim_markdown(_section_text(self.lines[start:end]), SECTION_LIMIT),
            language=language,
        )


# --- finding and reading the file --------------------------------------------------------------


def load_skill(
    root: Path, configured: str | None, *, sections: Iterable[str] | None = None
) -> Skill | None:
    """The skill to quote for the repository at `root` (the config file's directory).

    `configured` is the `skill` setting, relative to `root`; it is used as is, whatever its
    headings. Otherwise the first of SKILL_GLOBS' matches (each glob's matches sorted by path)
    whose headings match at least one of `sections` (the rules' section headings; every
    installed rule's by default), skipping files that lead outside `root` through a symlink.
    None when there is no such file or it cannot be read as a text file of at most
    MAX_SKILL_BYTES.
    """
    if configured is not None:
        return read_skill(root / configured) if configured.strip() else None
    wanted = tuple(sections) if sections is not None else _rule_sections()
    for pattern in SKILL_GLOBS:
        try:
            candidates = sorted(root.glob(pattern), key=lambda path: path.as_posix())
        except (OSError, ValueError):
            continue
        for candidate in candidates:
            if not _inside(candidate, root):
                continue
            skill = read_skill(candidate)
            if skill is not None and skill.matches(wanted):
                return skill
    return None


def read_skill(path: Path) -> Skill | None:
    """Read and parse one skill file; None if unreadable, not a regular file, larger than
    MAX_SKILL_BYTES, binary (has NUL bytes) or not UTF-8."""
    try:
        # Non-blocking, and checked on the open descriptor: a pipe or device put in the file's
        # place must not hang the run.
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except (OSError, ValueError):
        return None
    try:
        with os.fdopen(descriptor, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_SKILL_BYTES:
                return None
            data = handle.read(MAX_SKILL_BYTES + 1)
    except (OSError, ValueError):
        return None
    if len(data) > MAX_SKILL_BYTES or b"\x00" in data:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return parse_skill(text, path)


def parse_skill(text: str, path: Path = Path("SKILL.md")) -> Skill:
    """Parse skill text (BOM, CRLF and YAML front matter tolerated)."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    lines = _strip_front_matter(text.split("\n"))
    headings, blocks = _scan(lines)
    return Skill(path=path, lines=tuple(lines), headings=tuple(headings), blocks=tuple(blocks))


def normalise_heading(text: str) -> str:
    """A heading as compared with a rule's section: NFKC, case-folded, spaces folded, without
    a closing `#` sequence or surrounding emphasis (`**`, `_`, backticks)."""
    text = unicodedata.normalize("NFKC", text).strip()
    text = _CLOSING_HASHES.sub("", text).strip()
    while len(text) >= 2 and text[0] in _EMPHASIS and text[-1] == text[0]:
        text = text[1:-1].strip()
    return " ".join(text.casefold().split())


def _without_prefix(normalised: str) -> str:
    if normalised.startswith(_PATTERN_PREFIX):
        return normalised[len(_PATTERN_PREFIX) :].strip()
    return normalised


def _rule_sections() -> tuple[str, ...]:
    from bot.registry import rule_infos

    return tuple(sorted({info.section for info in rule_infos()}))


def _inside(candidate: Path, root: Path) -> bool:
    try:
        candidate.resolve().relative_to(root.resolve())
    except (OSError, RuntimeError, ValueError):
        return False
    return True


# --- Markdown structure ------------------------------------------------------------------------


def _strip_front_matter(lines: list[str]) -> list[str]:
    if not lines or lines[0].rstrip() != "---":
        return lines
    for index in range(1, len(lines)):
        if lines[index].rstrip() in ("---", "..."):
            return lines[index + 1 :]
    return lines  # no closing line: not front matter


def _scan(lines: Sequence[str]) -> tuple[list[_Heading], list[_Block]]:
    """ATX headings outside fenced code, and the fenced code blocks."""
    headings: list[_Heading] = []
    blocks: list[_Block] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        opening = _fence_open(line)
        if opening is not None:
            indent, fence, info = opening
            end = _fence_end(lines, index + 1, fence)
            blocks.append(_Block(start=index, end=end, indent=indent, info=info))
            index = end + 1
            continue
        match = _HEADING.match(line)
        if match:
            text = _CLOSING_HASHES.sub("", (match.group(2) or "").strip()).strip()
            headings.append(_Heading(index=index, level=len(match.group(1)), text=text))
        index += 1
    return headings, blocks


def _fence_open(line: str) -> tuple[int, str, str] | None:
    match = _FENCE_OPEN.match(line)
    if match is None:
        return None
    fence, info = match.group(2), match.group(3).strip()
    if fence[0] == "`" and "`" in info:
        return None  # CommonMark: a backtick fence's info string has no backticks
    return len(match.group(1)), fence, info


def _fence_end(lines: Sequence[str], start: int, fence: str) -> int:
    for index in range(start, len(lines)):
        match = _FENCE_CLOSE.match(lines[index])
        if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
            return index
    return len(lines)


def code_line_mask(lines: Sequence[str]) -> list[bool]:
    """For each line, whether it belongs to a fenced code block (fence lines included)."""
    return _block_mask(len(lines), _scan(lines)[1])


def _block_mask(count: int, blocks: Iterable[_Block]) -> list[bool]:
    mask = [False] * count
    for block in blocks:
        for index in range(block.start, min(block.end + 1, count)):
            mask[index] = True
    return mask


def close_fences(text: str) -> str:
    """`text` with a closing fence added if it ends inside a fenced code block."""
    lines = text.split("\n")
    blocks = _scan(lines)[1]
    if blocks and blocks[-1].end >= len(lines):
        return f"{text}\n{_fence_of(lines[blocks[-1].start])}"
    return text


def _fence_of(line: str) -> str:
    opening = _fence_open(line)
    return opening[1] if opening is not None else "```"


def trim_markdown(text: str, limit: int, note: str = TRIM_NOTE) -> str:
    """`text` cut to at most `limit` characters at a line boundary, any code block left open
    by the cut closed, and `note` appended; unchanged when it fits (fences closed)."""
    text = close_fences(text)
    if len(text) <= limit:
        return text
    lines = text.split("\n")
    blocks = _scan(lines)[1]
    open_at = [""] * (len(lines) + 1)  # the fence to close when cutting before line i
    for block in blocks:
        fence = _fence_of(lines[block.start])
        for index in range(block.start + 1, min(block.end, len(lines)) + 1):
            open_at[index] = fence
    size = 0
    kept = 0
    tail = f"\n\n{note}" if note else ""
    for index, line in enumerate(lines):
        grown = size + len(line) + (1 if index else 0)
        closing = open_at[index + 1]
        extra = (len(closing) + 1 if closing else 0) + len(tail)
        if grown + extra > limit:
            break
        size, kept = grown, index + 1
    if kept == 0:
        # One line longer than the limit: cut inside it rather than lose everything.
        room = max(limit - len(tail), 0)
        return (lines[0][:room] + tail)[:limit] if room else note[:limit]
    body = "\n".join(lines[:kept]).rstrip()
    closing = open_at[kept]
    if closing:
        body = f"{body}\n{closing}"
    return f"{body}{tail}"


def _trim_code(code: str, limit: int) -> str:
    if len(code) <= limit:
        return code
    room = limit - len(CODE_TRIM_NOTE) - 1
    lines = code.split("\n")
    kept: list[str] = []
    size = 0
    for line in lines:
        if size + len(line) + 1 > room:
            break
        kept.append(line)
        size += len(line) + 1
    if not kept:
        kept = [lines[0][: max(room, 0)]]
    return "\n".join([*kept, CODE_TRIM_NOTE])


# --- the parts of a section --------------------------------------------------------------------


def _problem(lines: Sequence[str], start: int, end: int, in_code: list[bool]) -> str:
    for index in range(start, end):
        if in_code[index]:
            continue
        match = _PROBLEM.match(lines[index])
        if match:
            first = match.group(1).strip()
            rest = _paragraph(lines, index + 1, end, in_code)
            if first:
                return "\n".join([first, *rest])
            if rest:
                return "\n".join(rest)
            return _first_paragraph(lines, index + 1, end, in_code)
    return _first_paragraph(lines, start, end, in_code)


def _first_paragraph(lines: Sequence[str], start: int, end: int, in_code: list[bool]) -> str:
    for index in range(start, end):
        if _is_text_line(lines[index], in_code[index]):
            return "\n".join(_paragraph(lines, index, end, in_code))
    return ""


def _paragraph(lines: Sequence[str], start: int, end: int, in_code: list[bool]) -> list[str]:
    out: list[str] = []
    for index in range(start, end):
        if not _is_text_line(lines[index], in_code[index]):
            break
        out.append(lines[index].strip())
    return out


def _is_text_line(line: str, in_code: bool) -> bool:
    return (
        not in_code
        and bool(line.strip())
        and _HEADING.match(line) is None
        and _THEMATIC_BREAK.match(line) is None
    )


def _correct_example(lines: Sequence[str], blocks: Sequence[_Block]) -> tuple[str, str]:
    if not blocks:
        return "", ""

    def content(block: _Block) -> list[str]:
        return [_unindent(line, block.indent) for line in lines[block.start + 1 : block.end]]

    chosen = next(
        (b for b in blocks if any(_CORRECT_MARK.search(line) for line in content(b))),
        blocks[0],
    )
    code = _without_wrong_parts(content(chosen))
    while code and not code[0].strip():
        code.pop(0)
    while code and not code[-1].strip():
        code.pop()
    language = chosen.info.split()[0] if chosen.info.split() else ""
    return "\n".join(line.rstrip() for line in code), language


def _unindent(line: str, indent: int) -> str:
    # CommonMark: as many leading spaces as the opening fence had are removed from each line.
    removable = len(line) - len(line.lstrip(" "))
    return line[min(indent, removable) :]


def _without_wrong_parts(code: list[str]) -> list[str]:
    """Leave out the parts a marker comment calls WRONG (❌): from that comment up to the next
    comment marked CORRECT (✅). Code before the first marker is kept."""
    out: list[str] = []
    wrong = False
    for line in code:
        kind = _marker(line)
        if kind == "correct":
            wrong = False
        elif kind == "wrong":
            wrong = True
        if not wrong:
            out.append(line)
    return out


def _marker(line: str) -> str | None:
    """ "correct" or "wrong" for a marker comment (or any line with a ✅/❌ sign), by whichever
    mark comes first; None for other lines."""
    stripped = line.strip()
    if not (stripped.startswith(_COMMENT_START) or _SIGN.search(stripped)):
        return None
    correct = _CORRECT_MARK.search(stripped)
    wrong = _WRONG_MARK.search(stripped)
    if correct and (wrong is None or correct.start() < wrong.start()):
        return "correct"
    return "wrong" if wrong else None


def _section_text(lines: Sequence[str]) -> str:
    body = [line.rstrip() for line in lines]
    mask = code_line_mask(body)
    while body and (not body[-1].strip() or (_THEMATIC_BREAK.match(body[-1]) and not mask[-1])):
        body.pop()
        mask.pop()
    while body and not body[0].strip():
        body.pop(0)
    return "\n".join(body)
