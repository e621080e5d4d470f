"""The ChangeSet: which files a change touches and which of their lines are new.

Everything after the diff source reads only these types. Line numbers are 1-based and always on
the new side of the diff (the side the review comments go on).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from unidiff.constants import RE_HUNK_HEADER
from unidiff.errors import UnidiffParseError
from unidiff.patch import PatchedFile, PatchSet


class FileStatus(str, enum.Enum):
    ADDED = "added"
    MODIFIED = "modified"
    DELETED = "deleted"
    RENAMED = "renamed"
    BINARY = "binary"
    MODE_ONLY = "mode-only"


@dataclass(frozen=True)
class Hunk:
    """A hunk's range on the new side: lines `start` .. `start + length - 1`."""

    start: int
    length: int

    @property
    def end(self) -> int:
        return self.start + self.length - 1

    def __contains__(self, line: object) -> bool:
        return isinstance(line, int) and self.start <= line <= self.end


@dataclass(frozen=True)
class FileChange:
    path: str
    status: FileStatus
    old_path: str | None = None
    added_lines: frozenset[int] = frozenset()
    hunks: tuple[Hunk, ...] = ()

    def hunk_of(self, line: int) -> Hunk | None:
        for hunk in self.hunks:
            if line in hunk:
                return hunk
        return None

    def in_hunk(self, line: int) -> bool:
        return self.hunk_of(line) is not None


@dataclass(frozen=True)
class ChangeSet:
    """The files of a change. `whole_files` means no diff was given: every line counts as new."""

    files: tuple[FileChange, ...] = ()
    whole_files: bool = False
    _by_path: dict[str, FileChange] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_path.update({change.path: change for change in self.files})

    def get(self, path: str) -> FileChange | None:
        return self._by_path.get(path)

    def __iter__(self) -> Iterator[FileChange]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)


class DiffError(Exception):
    """A diff that cannot be read. The message is one line, shown to the user as is."""


# --- Reading unified diffs -------------------------------------------------------------------
#
# unidiff does the hunk bookkeeping (counting lines against the hunk header), but it misreads git
# file headers: it splits `diff --git` lines at the wrong space when a path has spaces or no a/ b/
# prefix and then rejects the `+++` line, and it keeps C-quoted paths quoted. So git headers are
# read here, and before unidiff sees the diff every git header is rewritten to placeholder names
# (one line for one line, so unidiff's line numbers stay those of the input).

_NO_FILE = "/dev/null"
_GIT_HEADER = "diff --git "
_EXTENDED_HEADER = re.compile(
    r"(?:old mode|new mode|deleted file mode|new file mode|copy from|copy to|rename from"
    r"|rename to|similarity index|dissimilarity index|index) "
)
_QUOTED_FIRST = re.compile(r'("(?:[^"\\]|\\.)*") (.*)')
_QUOTED_LAST = re.compile(r'(.*) ("(?:[^"\\]|\\.)*")')
_OCTAL_ESCAPE = re.compile(r"[0-7]{1,3}")
_C_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}
_UNIDIFF_MESSAGES = {
    "Target without source": "a +++ line without a --- line before it",
    "Unexpected marker": "a 'No newline at end of file' marker outside a hunk",
}
_PLACEHOLDER = "\0"  # cannot occur in a real path: git quotes NUL as \000


@dataclass(frozen=True)
class _FileHeader:
    """What a file's header says; a path is None when that side of the diff does not exist."""

    old_path: str | None
    new_path: str | None
    renamed: bool = False
    binary: bool = False
    mode_changed: bool = False


@dataclass(frozen=True)
class _GitSection:
    start: int  # index of the `diff --git` line
    end: int  # index just after the header block
    header: _FileHeader
    has_file_lines: bool  # the block ends with a `---` / `+++` pair
    deleted_marker: bool  # a `deleted file mode` line, which makes unidiff expect `+++ /dev/null`


class _LineFeed:
    """Hands unidiff one line at a time and remembers the position, as its errors carry none."""

    def __init__(self, lines: list[str]) -> None:
        self._lines = lines
        self.line_no = 0
        self.hunk_starts: list[int] = []

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        if self.line_no >= len(self._lines):
            raise StopIteration
        line = self._lines[self.line_no]
        self.line_no += 1
        if line.startswith("@@"):
            self.hunk_starts.append(self.line_no)
        return line

    def hunk_before(self, line_no: int) -> int:
        return max((start for start in self.hunk_starts if start < line_no), default=0)


def parse_unified_diff(data: bytes | str) -> ChangeSet:
    """Read a unified diff (git's or plain `diff -u`) into a ChangeSet; DiffError if unreadable.

    Paths are as the diff names them, without git's a/ b/ prefixes.
    """
    lines = _split_lines(_to_text(data))
    if not any(line.strip() for line in lines):
        return ChangeSet()
    first_header = _first_file_header(lines)
    if first_header is None:
        raise DiffError("input is not a unified diff")
    _check_hunk_headers(lines, first_header)
    sections = _git_sections(lines)
    patch = _run_unidiff(_rewrite_git_headers(lines, sections))
    _check_hunk_ends(patch, lines)
    if not patch:
        raise DiffError("input is not a unified diff")
    return ChangeSet(files=tuple(_file_change(patched, sections) for patched in patch))


def parse_hunks(patch: str) -> tuple[frozenset[int], tuple[Hunk, ...]]:
    """Added lines and hunks of a bare hunk list without file headers (a GitHub API `patch`)."""
    if not patch.strip():
        return frozenset(), ()
    change = parse_unified_diff(f"--- a/file\n+++ b/file\n{patch}").files[0]
    return change.added_lines, change.hunks


def _to_text(data: bytes | str) -> str:
    # surrogateescape keeps undecodable bytes (in content or, after unquoting, in paths) so that a
    # path still names the file on disk, as os.fsdecode would.
    text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
    # A diff saved as CRLF and a diff of CRLF files both read as LF: only line numbers matter here.
    return text.removeprefix("\ufeff").replace("\r\n", "\n")


def _split_lines(text: str) -> list[str]:
    # Not str.splitlines: it also splits at \f, \v, \x1c.. and \u2028, which are content in a diff.
    lines = [line + "\n" for line in text.split("\n")]
    if lines[-1] == "\n":
        lines.pop()
    else:
        lines[-1] = lines[-1][:-1]
    return lines


def _first_file_header(lines: list[str]) -> int | None:
    for index, line in enumerate(lines):
        if line.startswith((_GIT_HEADER, "Binary files ")):
            return index
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if line.startswith("--- ") and following.startswith("+++ "):
            return index
    return None


def _check_hunk_headers(lines: list[str], first_header: int) -> None:
    # unidiff skips a line it does not take for a hunk header, and with it the whole hunk.
    for index in range(first_header, len(lines)):
        if lines[index].startswith("@@") and not RE_HUNK_HEADER.match(lines[index]):
            raise DiffError(
                f"malformed diff: line {index + 1} of the diff is not a valid hunk header"
            )


# --- git headers ---------------------------------------------------------------------------------


def _git_sections(lines: list[str]) -> list[_GitSection]:
    # A hunk line always starts with one of " +-\", so `diff --git` at a line start is a header.
    return [
        _git_section(lines, index)
        for index, line in enumerate(lines)
        if line.startswith(_GIT_HEADER)
    ]


def _git_section(lines: list[str], start: int) -> _GitSection:
    end = start + 1
    while end < len(lines) and _EXTENDED_HEADER.match(lines[end]):
        end += 1
    has_file_lines = (
        end + 1 < len(lines) and lines[end].startswith("--- ") and lines[end + 1].startswith("+++ ")
    )
    if has_file_lines:
        end += 2
    block = [line.rstrip("\n") for line in lines[start:end]]
    binary = end < len(lines) and _is_binary_line(lines[end].rstrip("\n"))
    return _GitSection(
        start=start,
        end=end,
        header=_git_header(block, start + 1, binary),
        has_file_lines=has_file_lines,
        deleted_marker=any(line.startswith("deleted file mode ") for line in block),
    )


def _is_binary_line(line: str) -> bool:
    return line == "GIT binary patch" or (
        line.startswith("Binary files ") and line.endswith(" differ")
    )


def _git_header(block: list[str], line_no: int, binary: bool) -> _FileHeader:
    fields = _extended_fields(block[1:])
    minus = next((_file_line_name(line) for line in block if line.startswith("--- ")), None)
    plus = next((_file_line_name(line) for line in block if line.startswith("+++ ")), None)
    mode_changed = "old mode" in fields and "new mode" in fields
    if "rename from" in fields and "rename to" in fields:
        old, new = _unquote(fields["rename from"]), _unquote(fields["rename to"])
        return _FileHeader(old, new, renamed=True, binary=binary, mode_changed=mode_changed)
    if "copy to" in fields:
        # A copy is a new file; its hunks are relative to the copy source.
        return _FileHeader(None, _unquote(fields["copy to"]), binary=binary)
    name = _git_line_name(block[0][len(_GIT_HEADER) :], minus, plus)
    if name is None:
        raise DiffError(
            f"malformed diff: cannot read the file name in the header at line {line_no}"
        )
    old_path = None if "new file mode" in fields or minus == _NO_FILE else name
    new_path = None if "deleted file mode" in fields or plus == _NO_FILE else name
    return _FileHeader(old_path, new_path, binary=binary, mode_changed=mode_changed)


def _extended_fields(lines: list[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in lines:
        match = _EXTENDED_HEADER.match(line)
        if match:
            fields[match.group()[:-1]] = line[match.end() :]
    return fields


def _file_line_name(line: str) -> str:
    # git ends a `---`/`+++` name that has a space with a tab; plain diffs put a timestamp there.
    return line[4:].split("\t", 1)[0]


def _git_line_name(names: str, minus: str | None, plus: str | None) -> str | None:
    """The file's name from the `diff --git` line of a section that is no rename or copy."""
    pair = _split_git_names(names, minus, plus)
    return None if pair is None else _common_name(_unquote(pair[0]), _unquote(pair[1]))


def _split_git_names(names: str, minus: str | None, plus: str | None) -> tuple[str, str] | None:
    # The `---`/`+++` lines repeat a name exactly as the `diff --git` line writes it, which tells
    # where to split even when names have spaces or odd prefixes.
    if plus not in (None, _NO_FILE) and names.endswith(f" {plus}"):
        return names[: -len(plus) - 1], plus
    if minus not in (None, _NO_FILE) and names.startswith(f"{minus} "):
        return minus, names[len(minus) + 1 :]
    quoted = _QUOTED_FIRST.fullmatch(names) or _QUOTED_LAST.fullmatch(names)
    if quoted:
        return quoted.group(1), quoted.group(2)
    # Without a rename both sides name the same file, and the prefixes (a/ b/, or none) have
    # the same length, so the separating space is the middle character.
    half = len(names) // 2
    if len(names) % 2 == 1 and names[half] == " ":
        return names[:half], names[half + 1 :]
    return None


def _common_name(old: str, new: str) -> str | None:
    if old == new:  # git diff --no-prefix
        return old
    _, _, old_rest = old.partition("/")
    _, _, new_rest = new.partition("/")
    return old_rest if old_rest and old_rest == new_rest else None


def _unquote(name: str) -> str:
    """Decode git's C-style quoting ("a/sp\\303\\244ce \\"q\\".py"); other names pass as they are."""
    if len(name) < 2 or not (name.startswith('"') and name.endswith('"')):
        return name
    body = name[1:-1]
    out = bytearray()
    index = 0
    while index < len(body):
        char = body[index]
        if char != "\\" or index + 1 == len(body):
            out += char.encode("utf-8", "surrogateescape")
            index += 1
            continue
        octal = _OCTAL_ESCAPE.match(body, index + 1)
        if octal:
            out.append(int(octal.group(), 8) & 0xFF)
            index = octal.end()
        else:
            escaped = body[index + 1]
            unknown = escaped.encode("utf-8", "surrogateescape")
            out += bytes([_C_ESCAPES[escaped]]) if escaped in _C_ESCAPES else unknown
            index += 2
    return out.decode("utf-8", "surrogateescape")


def _rewrite_git_headers(lines: list[str], sections: list[_GitSection]) -> list[str]:
    out = list(lines)
    for number, section in enumerate(sections):
        token = f"{_PLACEHOLDER}{number}"
        out[section.start] = f"{_GIT_HEADER}a/{token} b/{token}\n"
        if section.has_file_lines:
            out[section.end - 2] = f"--- a/{token}\n"
            target = _NO_FILE if section.deleted_marker else f"b/{token}"
            out[section.end - 1] = f"+++ {target}\n"
    return out


def _section_of(patched: PatchedFile, sections: list[_GitSection]) -> _GitSection | None:
    for name in (patched.source_file, patched.target_file):
        _, placeholder, number = name.partition(_PLACEHOLDER)
        if placeholder and number.isdigit() and int(number) < len(sections):
            return sections[int(number)]
    return None


# --- plain headers -------------------------------------------------------------------------------


def _plain_header(patched: PatchedFile) -> _FileHeader:
    source, target = _unquote(patched.source_file), _unquote(patched.target_file)
    if source == _NO_FILE:
        target = target.removeprefix("b/")
    elif target == _NO_FILE:
        source = source.removeprefix("a/")
    else:
        source = target = _common_name(source, target) or target
    # `diff -N` writes a missing side as an empty file rather than /dev/null.
    old = None if patched.is_added_file else source
    new = None if patched.is_removed_file else target
    return _FileHeader(old, new, binary=patched.is_binary_file)


# --- hunks ---------------------------------------------------------------------------------------


def _run_unidiff(lines: list[str]) -> PatchSet:
    feed = _LineFeed(lines)
    try:
        return PatchSet(feed)
    except UnidiffParseError as error:
        raise _diff_error(str(error), feed) from None


def _diff_error(message: str, feed: _LineFeed) -> DiffError:
    line_no = feed.line_no
    hunk = feed.hunk_before(line_no + 1)
    if message.startswith("Hunk is shorter"):
        return DiffError(
            f"malformed diff: hunk at line {hunk} of the diff has fewer lines than its header says"
        )
    if message.startswith("Hunk is longer"):
        return DiffError(
            f"malformed diff: hunk at line {hunk} of the diff has more removed or added lines "
            "than its header says"
        )
    if message.startswith("Hunk diff line expected"):
        return _bad_hunk_line(message, line_no, feed.hunk_before(line_no))
    if message.startswith("Unexpected hunk found") and feed.hunk_before(line_no):
        # unidiff drops the file after a line it cannot place, so the next hunk is "unexpected".
        return _extra_lines_error(feed.hunk_before(line_no))
    detail = message.replace(_PLACEHOLDER, "").strip().partition("\n")[0] or "unreadable"
    for unidiff_words, ours in _UNIDIFF_MESSAGES.items():
        if detail.startswith(unidiff_words):
            detail = ours
    return DiffError(f"malformed diff at line {line_no}: {detail[:100]}")


def _bad_hunk_line(message: str, line_no: int, hunk: int) -> DiffError:
    offending = message.partition(": ")[2]
    if offending.startswith(("@@", "diff ")) or not offending.strip():
        return DiffError(
            f"malformed diff: hunk at line {hunk} of the diff has fewer lines than its header says"
        )
    return DiffError(
        f"malformed diff: line {line_no} of the diff is not a line of the hunk at line {hunk}"
    )


def _extra_lines_error(hunk: int) -> DiffError:
    return DiffError(
        f"malformed diff: hunk at line {hunk} of the diff has more lines than its header says"
    )


def _check_hunk_ends(patch: PatchSet, lines: list[str]) -> None:
    """Fail on hunk-like lines right after a complete hunk: unidiff drops them without a word."""
    for patched in patch:
        for hunk in patched:
            numbered = [line.diff_line_no for line in hunk if line.diff_line_no is not None]
            if numbered and _starts_stray_line(lines, numbered[-1]):
                raise _extra_lines_error(numbered[0] - 1)


def _starts_stray_line(lines: list[str], index: int) -> bool:
    while index < len(lines) and lines[index].startswith("\\"):
        index += 1
    if index >= len(lines) or not lines[index].startswith(("+", "-", " ")):
        return False
    following = lines[index + 1] if index + 1 < len(lines) else ""
    next_file = lines[index].startswith("--- ") and following.startswith("+++ ")
    signature = lines[index].rstrip("\n") == "-- "  # git format-patch's trailer
    return not (next_file or signature)


def _new_side(patched: PatchedFile) -> tuple[frozenset[int], tuple[Hunk, ...]]:
    added = frozenset(
        line.target_line_no
        for hunk in patched
        for line in hunk
        if line.is_added and line.target_line_no is not None
    )
    # A pure deletion leaves an empty range on the new side: there is no line to comment on.
    hunks = tuple(
        Hunk(hunk.target_start, hunk.target_length) for hunk in patched if hunk.target_length > 0
    )
    return added, hunks


# --- files ---------------------------------------------------------------------------------------


def _file_change(patched: PatchedFile, sections: list[_GitSection]) -> FileChange:
    section = _section_of(patched, sections)
    header = section.header if section else _plain_header(patched)
    added, hunks = _new_side(patched)
    path = header.new_path if header.new_path is not None else header.old_path
    if path is None:
        raise DiffError("malformed diff: a file header says the file exists on neither side")
    return FileChange(
        path=path,
        status=_status(header, has_hunks=len(patched) > 0),
        old_path=header.old_path if header.renamed else None,
        added_lines=added,
        hunks=hunks,
    )


def _status(header: _FileHeader, has_hunks: bool) -> FileStatus:
    if header.new_path is None:
        return FileStatus.DELETED
    if header.binary:
        return FileStatus.BINARY
    if header.renamed:
        return FileStatus.RENAMED
    if header.old_path is None:
        return FileStatus.ADDED
    if header.mode_changed and not has_hunks:
        return FileStatus.MODE_ONLY
    return FileStatus.MODIFIED
