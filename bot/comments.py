"""One finding as a GitHub review comment body (Markdown).

Shared by the review poster and `--format markdown`. A body reads, top to bottom:

    **AG201 shared-session-concurrency** · error
    the message (and the related lines)
    the guideline: the skill section's problem statement (quoted) and correct example, the whole
        section collapsed in <details>; without a skill file, the rule's own documentation
    **Correction:** where the skill's advice is wrong
    **Fix**: a ```suggestion block when the fix replaces lines that are all added lines of one
        hunk, else the fix's description and the fixed lines as a plain example
    <!-- asyncguard:fp=FINGERPRINT -->   (always the last line; the poster matches re-runs by it)

Bodies stay within BODY_LIMIT: the collapsed section is trimmed first, then a suggestion too
large to fit gives way to the description, and only then is other text cut. The marker is
never cut. Nothing here imports libcst: the fix is applied to the text with the same
line/column arithmetic the engine uses.
"""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Sequence

from bot.changeset import FileChange
from bot.findings import Edit, Finding
from bot.ruleinfo import RuleInfo
from bot.skill import (
    QUOTE_LIMIT,
    Skill,
    SkillSection,
    close_fences,
    code_line_mask,
    parse_skill,
    trim_markdown,
)

__all__ = [
    "BODY_LIMIT",
    "code_fence",
    "code_span",
    "escape_text",
    "marker",
    "parse_marker",
    "render_comment",
    "suggestion_for",
]

# GitHub rejects comment bodies over 65,536 characters; the margin covers counting differences.
BODY_LIMIT = 65_000
# Below this many characters of room a trimmed section is not worth showing.
MIN_DETAILS = 400
TRIM_NOTE = "*… (trimmed)*"

_MARKER = re.compile(r"<!-- asyncguard:fp=([A-Za-z0-9_.:]*) -->\s*\Z")
_FINGERPRINT_CHARS = re.compile(r"[^A-Za-z0-9_.:]")
_BACKTICKS = re.compile(r"`+")
_FENCE_START = re.compile(r"^( {0,3})(```|~~~)")
_HTML_HAZARDS = re.compile(r"<(?=!--|/?details\b|/?summary\b)", re.IGNORECASE)
_COMMENT_OPENER = re.compile(r"<(?=!--)")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_HARD_BREAK = "\\\n"  # a backslash before the line break: kept by editors, unlike two spaces
_ITEM_BREAK = _HARD_BREAK + "  "  # continuation lines indented to stay inside a list item


def render_comment(
    finding: Finding,
    rule: RuleInfo | None,
    skill: Skill | None,
    *,
    file_text: str | None,
    change: FileChange | None,
) -> str:
    """The review comment body for `finding` (no trailing newline; the marker is last).

    `rule` is None for a code the catalogue does not know; `skill` None when the repository has
    no skill file. `file_text` is the file's current (new-side) text and `change` its FileChange;
    both are needed for a suggestion, `file_text` alone for a fixed-lines example.
    """
    heading = finding.section or (rule.section if rule is not None else "")
    section = skill.section(heading) if skill is not None and heading else None
    if section is not None and section.is_empty:
        section = None
    head = _head(finding)
    quote = _skill_quote(section) if section is not None else _doc_quote(rule, heading)
    details = _prose(section.text) if section is not None else ""
    summary = section.heading if section is not None else ""
    correction = (
        f"**Correction:** {_prose(close_fences(rule.correction.strip()))}"
        if rule is not None and rule.correction and rule.correction.strip()
        else ""
    )
    suggestion = suggestion_for(finding, file_text, change)
    fix_full = _fix_block(finding, file_text, suggestion)
    fix_short = _fix_block(finding, None, None)
    mark = marker(finding.fingerprint)

    def assemble(details_text: str, fix: str) -> str:
        parts = [head, quote, _details(summary, details_text), correction, fix, mark]
        return "\n\n".join(part for part in parts if part)

    body = assemble(details, fix_full)
    if len(body) <= BODY_LIMIT:
        return body
    if details:
        room = BODY_LIMIT - len(assemble("", fix_full)) - len(_details(summary, "x")) - 1
        if room >= MIN_DETAILS:
            body = assemble(trim_markdown(details, room, TRIM_NOTE), fix_full)
            if len(body) <= BODY_LIMIT:
                return body
    for fix in (fix_full, fix_short):
        body = assemble("", fix)
        if len(body) <= BODY_LIMIT:
            return body
    # Only pathological messages, corrections or descriptions get here: cut the text, keep the
    # marker.
    text = body[: len(body) - len(mark)].rstrip()
    return f"{trim_markdown(text, BODY_LIMIT - len(mark) - 2, TRIM_NOTE)}\n\n{mark}"


def marker(fingerprint: str) -> str:
    """The hidden line that identifies a finding's comment across runs."""
    return f"<!-- asyncguard:fp={_FINGERPRINT_CHARS.sub('', fingerprint)} -->"


def parse_marker(body: str) -> str | None:
    """The fingerprint in a comment body's closing marker, None when it has none."""
    match = _MARKER.search(body)
    return match.group(1) if match else None


# --- suggestions -------------------------------------------------------------------------------


def suggestion_for(
    finding: Finding, file_text: str | None, change: FileChange | None
) -> tuple[int, int, str] | None:
    """(start line, end line, new text of those lines) for a ```suggestion block, or None.

    Only when the finding has a fix and every line the fix rewrites is an added line and all of
    them lie in one hunk of `change` (GitHub takes multi-line comments only inside one hunk, and
    suggesting changes to unchanged lines would comment on code the author did not touch). The
    range covers whole lines; the text has no trailing newline and is empty when the fix
    deletes the lines. The poster sets the comment's `start_line`/`line` to the range.
    """
    if file_text is None or change is None:
        return None
    fixed = fixed_lines(finding, file_text)
    if fixed is None:
        return None
    start, end, _ = fixed
    if any(line not in change.added_lines for line in range(start, end + 1)):
        return None
    hunk = change.hunk_of(start)
    if hunk is None or end not in hunk:
        return None
    return fixed


def fixed_lines(finding: Finding, file_text: str) -> tuple[int, int, str] | None:
    """The whole lines the finding's fix rewrites and their new text, as `suggestion_for`
    returns them but without looking at the diff; None without a fix that applies cleanly."""
    if finding.fix is None or not finding.fix.edits:
        return None
    edits = sorted(finding.fix.edits, key=lambda edit: edit.span)
    if any(
        min(e.span.start_line, e.span.start_col, e.span.end_line, e.span.end_col) < 1 for e in edits
    ):
        return None
    starts = [0, *(match.end() for match in re.finditer("\n", file_text))]
    line_count = len(starts) - 1 if file_text.endswith("\n") or not file_text else len(starts)
    ranges = [_offsets(starts, len(file_text), edit) for edit in edits]
    if any(begin > end for begin, end in ranges) or any(
        later[0] < earlier[1] for earlier, later in itertools.pairwise(ranges)
    ):
        return None  # inverted or overlapping edits
    new_text = _apply(file_text, edits, ranges)
    delta = len(new_text) - len(file_text)
    first = min(edit.span.start_line for edit in edits)
    last = max(_last_line(edit) for edit in edits)
    while True:
        if last > line_count or first > last:
            return None
        region_start = starts[first - 1]
        region_end = starts[last] if last < len(starts) else len(file_text)
        if (
            min(begin for begin, _ in ranges) < region_start
            or max(end for _, end in ranges) > region_end
        ):
            return None  # an edit reaches past the lines it names (a column beyond the line)
        old = file_text[region_start:region_end]
        new = new_text[region_start : region_end + delta]
        if old == new:
            return None
        if not old.endswith("\n"):  # the last line of a file without a final newline
            return None if new.endswith("\n") else (first, last, _strip_cr(new))
        if not new or new.endswith("\n"):
            return first, last, _strip_cr(new[:-1] if new else new)
        last += 1  # the fix joined the last line with the next one: take that one in too


def _offsets(starts: Sequence[int], size: int, edit: Edit) -> tuple[int, int]:
    # As the engine's apply_edits: 1-based lines and columns, clamped to the text.
    def offset(line: int, col: int) -> int:
        if line - 1 >= len(starts):
            return size
        return min(starts[line - 1] + col - 1, size)

    return offset(edit.span.start_line, edit.span.start_col), offset(
        edit.span.end_line, edit.span.end_col
    )


def _apply(text: str, edits: Sequence[Edit], ranges: Sequence[tuple[int, int]]) -> str:
    result = text
    for edit, (begin, end) in sorted(
        zip(edits, ranges, strict=True), key=lambda pair: pair[1], reverse=True
    ):
        result = result[:begin] + edit.content + result[end:]
    return result


def _last_line(edit: Edit) -> int:
    # A span that ends at column 1 of a later line stops before that line's first character.
    span = edit.span
    if span.end_col == 1 and span.end_line > span.start_line:
        return span.end_line - 1
    return span.end_line


def _strip_cr(text: str) -> str:
    return "\n".join(line.removesuffix("\r") for line in text.split("\n"))


# --- the parts of a body -----------------------------------------------------------------------


def _head(finding: Finding) -> str:
    title = (
        f"**{escape_text(finding.code)} {escape_text(finding.name)}** · {finding.severity.value}"
    )
    parts = [title]
    if finding.message.strip():
        parts.append(_prose_lines(finding.message, _HARD_BREAK))
    if finding.related:
        parts.append(
            "\n".join(
                f"- line {related.span.start_line}: {_prose_lines(related.message, _ITEM_BREAK)}"
                for related in finding.related
            )
        )
    return "\n\n".join(parts)


def _skill_quote(section: SkillSection) -> str:
    parts = [f"From the skill, *{escape_text(section.heading)}*:"]
    if section.problem:
        parts.append(_blockquote(_prose(section.problem)))
    if section.correct_example:
        parts.append(code_fence(section.correct_example, section.language))
    return "\n\n".join(parts)


def _doc_quote(rule: RuleInfo | None, heading: str) -> str:
    if rule is None:
        return f"Guideline: *{escape_text(heading)}*" if heading else ""
    doc = parse_skill(rule.doc)
    what = doc.section("What it does")
    use = doc.section("Use instead")
    intro = (
        f"From the rule's documentation (guideline: *{escape_text(heading)}*):"
        if heading
        else "From the rule's documentation:"
    )
    parts = [intro]
    what_text = what.text if what is not None and what.text else rule.summary.strip()
    if what_text:
        parts.append(_blockquote(_prose(trim_markdown(what_text, QUOTE_LIMIT, TRIM_NOTE))))
    if use is not None and use.text:
        parts.append(
            f"**Use instead:**\n\n{_prose(trim_markdown(use.text, QUOTE_LIMIT, TRIM_NOTE))}"
        )
    return "\n\n".join(parts) if len(parts) > 1 else ""


def _details(summary: str, text: str) -> str:
    if not text:
        return ""
    return (
        f"<details><summary>The whole section: {html.escape(summary)}</summary>\n\n"
        f"{text}\n\n</details>"
    )


def _fix_block(
    finding: Finding, file_text: str | None, suggestion: tuple[int, int, str] | None
) -> str:
    fix = finding.fix
    if fix is None:
        return ""
    description = _prose_lines(fix.description, _HARD_BREAK) if fix.description.strip() else ""
    title = f"**Fix** ({fix.safety.value})" + (f": {description}" if description else "")
    if suggestion is not None:
        return f"{title}\n\n{code_fence(suggestion[2], 'suggestion')}"
    fixed = fixed_lines(finding, file_text) if file_text is not None else None
    if fixed is None:
        return title
    language = "python" if finding.path.endswith((".py", ".pyi")) else ""
    snippet = fixed[2]
    if len(snippet) > QUOTE_LIMIT:
        return title
    start, end = fixed[0], fixed[1]
    lines = f"Line {start}" if start == end else f"Lines {start}-{end}"
    return f"{title}\n\n{lines} with the fix:\n\n{code_fence(snippet, language)}"


def _blockquote(text: str) -> str:
    return "\n".join(f"> {line}" if line.strip() else ">" for line in text.split("\n"))


# --- escaping ----------------------------------------------------------------------------------


def code_fence(code: str, info: str = "") -> str:
    """`code` as a fenced block whose fence no line of `code` can close: a run of backticks
    longer than any in the code, at least three."""
    longest = max((len(run) for run in _BACKTICKS.findall(code)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{code}\n{fence}" if code else f"{fence}{info}\n{fence}"


def code_span(text: str) -> str:
    """`text` as inline code, even when it contains backticks (CommonMark: fence with a longer
    run of backticks, pad with spaces when the text starts or ends with one)."""
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    fence = "`" * (longest + 1)
    padded = f" {text} " if text.startswith("`") or text.endswith("`") else text
    return f"{fence}{padded}{fence}"


def escape_text(text: str) -> str:
    """Plain text that must not be read as Markdown (rule sections, version strings)."""
    return re.sub(r"([\\`*_\[\]<>#|])", r"\\\1", text)


def _prose(text: str) -> str:
    """Markdown from elsewhere (the skill, the rule docs) made safe to embed: outside code, an
    HTML comment opener or a <details>/<summary> tag is shown as text, so it can neither hide
    the rest of the body nor close our collapsed section."""
    lines = text.split("\n")
    mask = code_line_mask(lines)
    return "\n".join(
        line if in_code else _HTML_HAZARDS.sub("&lt;", line)
        for line, in_code in zip(lines, mask, strict=True)
    )


def _prose_lines(text: str, joiner: str) -> str:
    """A message (Markdown, names in backticks) kept as written: line breaks as hard breaks
    (the backslash form), a line that would open a code fence escaped, and an HTML comment
    opener shown as text (it would hide everything up to the marker)."""
    lines = [_FENCE_START.sub(r"\1\\\2", line) for line in _LINE_BREAK.split(text)]
    return _COMMENT_OPENER.sub("&lt;", joiner.join(lines))
