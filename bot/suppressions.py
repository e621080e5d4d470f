"""Inline suppressions: `# noqa`, `# noqa: AG101, AG201`, `# asyncguard: ignore[AG101]`.

Comments are found with `tokenize`, so a `# noqa` inside a string literal does nothing. This runs
only for files that produced findings.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Iterable
from dataclasses import dataclass, field

# ruff's shape: codes after the colon, separated by commas or spaces; text after them is ignored.
_NOQA = re.compile(
    r"#\s*noqa(?::\s*(?P<codes>[A-Za-z]+[0-9]+(?:[\s,]+[A-Za-z]+[0-9]+)*))?", re.IGNORECASE
)
_NOQA_COLON_NO_CODES = re.compile(r"#\s*noqa:\s*(?![A-Za-z]+[0-9])", re.IGNORECASE)
_IGNORE = re.compile(r"#\s*asyncguard:\s*ignore\[(?P<codes>[^\]]*)\]", re.IGNORECASE)
ALL = "*"


@dataclass
class Suppressions:
    by_line: dict[int, set[str]] = field(default_factory=dict)

    @classmethod
    def from_source(cls, source: str) -> Suppressions:
        result = cls()
        for line, comment in _comments(source):
            codes = parse_comment(comment)
            if codes:
                result.by_line.setdefault(line, set()).update(codes)
        return result

    def suppresses(self, code: str, name: str, lines: Iterable[int]) -> bool:
        for line in lines:
            codes = self.by_line.get(line)
            if codes and (ALL in codes or code in codes or name in codes):
                return True
        return False


def parse_comment(comment: str) -> set[str]:
    """The codes a comment suppresses; `{"*"}` for a bare `# noqa`."""
    codes: set[str] = set()
    for match in _IGNORE.finditer(comment):
        codes.update(
            c.strip().upper() if c.strip()[:2].upper() == "AG" else c.strip()
            for c in match.group("codes").split(",")
            if c.strip()
        )
    noqa = _NOQA.search(comment)
    if noqa:
        listed = noqa.group("codes")
        if listed:
            codes.update(c.upper() for c in re.split(r"[\s,]+", listed) if c)
        elif not _NOQA_COLON_NO_CODES.search(comment):
            codes.add(ALL)
    return codes


def _comments(source: str) -> Iterable[tuple[int, str]]:
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                yield token.start[0], token.string
    except (tokenize.TokenError, SyntaxError, IndentationError):
        # The file parsed with libcst, so this is a tokenizer corner case: fall back to lines.
        for number, line in enumerate(source.splitlines(), start=1):
            if "#" in line:
                yield number, line[line.index("#") :]
