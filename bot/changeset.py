"""The ChangeSet: which files a change touches and which of their lines are new.

Everything after the diff source reads only these types. Line numbers are 1-based and always on
the new side of the diff (the side the review comments go on).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field


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
    if not _has_file_header(lines):
        raise DiffError("input is not a unified diff")
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


def _has_file_header(lines: list[str]) -> bool:
    for index, line in enumerate(lines):
        if line.startswith((_GIT_HEADER, "Binary files ")):
            return True
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if line.startswith("--- ") and following.startswith("+++ "):
            return True
    return False


# --- git headers ---------------------------------------------------------------------------------


def _git_sections(lines: list[str]) -> list[_GitSection]:
    # A hunk line always starts with one of " +-\", so `diff --git` at a line start is a header.
    return [_git_section(lines, index) for index, line in enumerate(lines) if line.startswith(_GIT_HEADER)]


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
    return line == "GIT binary patch" or (line.startswith("Binary files ") and line.endswith(" differ"))


def _git_header(block: list[str], line_no: int, binary: bool) -> _FileHeader:
    fields = dict(line.split(" ", 2)[-1:] and _field(line) for line in block[1:] if _field(line))
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
        raise DiffError(f"malformed diff: cannot read the file name in the header at line {line_no}")
    old_path = None if "new file mode" in fields or minus == _NO_FILE else name
    new_path = None if "deleted file mode" in fields or plus == _NO_FILE else name
    return _FileHeader(old_path, new_path, binary=binary, mode_changed=mode_changed)
