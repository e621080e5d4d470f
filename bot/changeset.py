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
