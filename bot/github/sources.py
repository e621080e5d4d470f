"""Where a pull request's code comes from: the local checkout, its git objects, or the API.

In order of preference (cheapest and most complete first):

1. `checkout`: a clone whose HEAD is the pull request's head commit (the Action's workspace
   when the workflow checks out the head). The diff comes from git, the files from disk, and
   the repository index sees every file.
2. `git`: a clone that holds the head commit without having it checked out (actions/checkout's
   default merge commit with `fetch-depth: 0`). The diff comes from git, the changed files are
   read from the head commit's blobs into a scratch directory; line numbers are the head's, not
   the merge commit's.
3. `api`: no usable clone (the webhook, a shallow or foreign checkout). The change set comes from
   the pull request's files endpoint (paged, renames through `previous_filename`), with the
   `.diff` media type and then local git as fallbacks for files whose `patch` GitHub left out;
   the head's files are fetched in parallel through the contents endpoint.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from bot.changeset import (
    ChangeSet,
    DiffError,
    FileChange,
    FileStatus,
    Hunk,
    parse_hunks,
    parse_unified_diff,
)
from bot.findings import Note, NoteKind
from bot.git import GitError, diff_commits, has_commit, head_commit, read_blobs, repo_root
from bot.github.api import GitHubApi, GitHubError, quote_path
from bot.github.pull import PullRequest

__all__ = [
    "MAX_API_FILES",
    "PullTree",
    "fetch_file",
    "pull_tree",
    "write_file",
]

MAX_API_FILES = 3000  # GitHub lists at most this many files of a pull request
MAX_FETCH_BYTES = 10 * 1024 * 1024  # larger files are not worth downloading for review
FETCH_THREADS = 8
MAX_IMPORTED_MODULES = 40  # imported modules fetched for the repository index (API only)
RAW = "application/vnd.github.raw"
DIFF = "application/vnd.github.diff"

# `from .x import y`, `from a.b import c`, `import a.b` at the start of a line.
_IMPORT = re.compile(
    r"^[ \t]*(?:from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]+\(?([\w, \t]*)|import[ \t]+([\w.]+))",
    re.MULTILINE,
)
_STATUS = {
    "added": FileStatus.ADDED,
    "copied": FileStatus.ADDED,
    "removed": FileStatus.DELETED,
    "modified": FileStatus.MODIFIED,
    "changed": FileStatus.MODIFIED,
    "renamed": FileStatus.RENAMED,
}


@dataclass
class PullTree:
    """The pull request's change set and its head's files on disk."""

    changeset: ChangeSet
    root: Path  # the head's files live here, at their repository paths
    index_root: Path | None  # a checkout the repository index may read, if any
    origin: str  # "checkout" | "git" | "api"
    notes: list[Note] = field(default_factory=list)

    def read_text(self, path: str) -> str | None:
        try:
            return (self.root / path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None


def pull_tree(api: GitHubApi, pull: PullRequest, checkout: Path | None, scratch: Path) -> PullTree:
    """The head of `pull`, from the best source available (see the module docstring).

    `scratch` is an empty directory the head's files may be written to.
    """
    root = repo_root(checkout) if checkout is not None else None
    if root is not None and has_commit(pull.head_sha, root):
        try:
            changeset: ChangeSet | None = diff_commits(pull.base_sha, pull.head_sha, root)
        except GitError:
            changeset = None  # the base is missing (shallow clone): the API knows the diff
        if head_commit(root) == pull.head_sha:
            notes: list[Note] = []
            if changeset is None:
                changeset, notes = api_changeset(api, pull, root)
            return PullTree(changeset, root, root, "checkout", notes)
        if changeset is not None:
            wanted = _wanted_paths(changeset)
            blobs = read_blobs(pull.head_sha, wanted, root)
            for path, data in blobs.items():
                write_file(scratch, path, data)
            return PullTree(changeset, scratch, root, "git")
    changeset, notes = api_changeset(api, pull, root)
    fetched, fetch_notes = _fetch_files(api, pull, _wanted_paths(changeset), scratch)
    changeset = _complete_added_files(changeset, fetched)
    # Facts the rules need often live in modules the change imports (the session factory in
    # `app/db.py`): fetch those too, so the repository index has them to read.
    _fetch_files(api, pull, imported_modules(fetched, changeset), scratch, quiet=True)
    return PullTree(changeset, scratch, scratch, "api", notes + fetch_notes)


# -- the change set from the API --------------------------------------------------------------


def api_changeset(
    api: GitHubApi, pull: PullRequest, local_root: Path | None
) -> tuple[ChangeSet, list[Note]]:
    """The change set from `GET .../pulls/{n}/files`, patching the holes GitHub leaves."""
    entries = list(api.paginate(f"{pull.api_path}/files", limit=MAX_API_FILES))
    notes: list[Note] = []
    if len(entries) >= MAX_API_FILES:
        notes.append(
            Note(
                NoteKind.TOO_LARGE,
                "",
                f"GitHub lists only the first {MAX_API_FILES} files of a pull request; "
                "files after those were not reviewed",
            )
        )
    changes: list[FileChange] = []
    missing: list[str] = []
    for entry in entries:
        change = _file_change(entry)
        if change is None:
            continue
        if _needs_patch(entry, change):
            missing.append(change.path)
        changes.append(change)
    if missing:
        recovered = _recover_hunks(api, pull, local_root, set(missing))
        still = [path for path in missing if path not in recovered]
        changes = [
            recovered.get(change.path, change)
            for change in changes
            if change.path not in still or change.status is FileStatus.ADDED
        ]
        notes.extend(
            Note(NoteKind.TOO_LARGE, path, "skipped: GitHub sent no diff for this file")
            for path in still
            if not _is_added(changes, path)
        )
    return ChangeSet(tuple(changes)), notes


def _file_change(entry: Mapping[str, Any]) -> FileChange | None:
    path = entry.get("filename")
    status = _STATUS.get(str(entry.get("status")))
    if not isinstance(path, str) or status is None:
        return None  # "unchanged", or an entry we do not understand
    old_path = entry.get("previous_filename") if status is FileStatus.RENAMED else None
    patch = entry.get("patch")
    added: frozenset[int] = frozenset()
    hunks: tuple[Hunk, ...] = ()
    if isinstance(patch, str) and patch:
        try:
            added, hunks = parse_hunks(patch)
        except DiffError:
            added, hunks = frozenset(), ()
    return FileChange(
        path=path,
        status=status,
        old_path=old_path if isinstance(old_path, str) else None,
        added_lines=added,
        hunks=hunks,
    )


def _needs_patch(entry: Mapping[str, Any], change: FileChange) -> bool:
    """A Python file with changes whose patch GitHub left out (too big for the files list)."""
    if change.status is FileStatus.DELETED or not change.path.endswith(".py"):
        return False
    return not entry.get("patch") and int(entry.get("changes") or 0) > 0


def _recover_hunks(
    api: GitHubApi, pull: PullRequest, local_root: Path | None, paths: set[str]
) -> dict[str, FileChange]:
    """Hunks for `paths` from the whole diff (`.diff` media type), else from local git."""
    recovered: dict[str, FileChange] = {}
    response = api.get_text(pull.api_path, DIFF, allow=(404, 406, 422))
    if response.status == 200:
        try:
            whole = parse_unified_diff(response.text)
        except DiffError:
            whole = ChangeSet()
        recovered.update({p: c for p in paths if (c := whole.get(p)) is not None and c.hunks})
    left = paths - set(recovered)
    if left and local_root is not None and has_commit(pull.base_sha, local_root):
        try:
            local = diff_commits(pull.base_sha, pull.head_sha, local_root)
        except GitError:
            local = ChangeSet()
        recovered.update({p: c for p in left if (c := local.get(p)) is not None and c.hunks})
    return recovered


def _is_added(changes: Iterable[FileChange], path: str) -> bool:
    return any(c.path == path and c.status is FileStatus.ADDED for c in changes)


def _complete_added_files(changeset: ChangeSet, fetched: Mapping[str, bytes]) -> ChangeSet:
    """A new file whose patch GitHub left out is all added lines: fill them in from its text."""
    files = []
    for change in changeset:
        if change.status is FileStatus.ADDED and not change.hunks and change.path in fetched:
            count = len(fetched[change.path].decode("utf-8", "replace").splitlines())
            if count:
                change = replace(
                    change,
                    added_lines=frozenset(range(1, count + 1)),
                    hunks=(Hunk(1, count),),
                )
        files.append(change)
    return ChangeSet(tuple(files), changeset.whole_files)


# -- the head's files -------------------------------------------------------------------------


def _wanted_paths(changeset: ChangeSet) -> list[str]:
    """The files the engine will read: Python files that exist at the head."""
    return [
        change.path
        for change in changeset
        if change.path.endswith(".py")
        and change.status not in (FileStatus.DELETED, FileStatus.BINARY)
        and _safe_path(change.path)
    ]


def imported_modules(texts: Mapping[str, bytes], changeset: ChangeSet) -> list[str]:
    """Paths of the project's own modules that the files in `texts` import, not yet fetched.

    A module counts as the project's when its package directory shows up in a changed file's
    path (`polar.models` from `server/polar/api.py` is `server/polar/models.py`); third-party
    imports never match, so they cost no requests. Relative imports resolve against the file.
    """
    directories: dict[str, set[str]] = {}  # top-level package name -> path prefixes
    for change in changeset:
        parts = PurePosixPath(change.path).parts[:-1]
        for index, part in enumerate(parts):
            directories.setdefault(part, set()).add("/".join(parts[:index]))
    wanted: list[str] = []
    for path, data in texts.items():
        package = PurePosixPath(path).parts[:-1]
        for match in _IMPORT.finditer(data.decode("utf-8", "replace")):
            dots, module = match.group(1) or "", match.group(2) or match.group(4) or ""
            if dots:
                if len(dots) - 1 > len(package):
                    continue
                base = package[: len(package) - (len(dots) - 1)]
                if module:
                    candidates = ["/".join([*base, *module.split(".")])]
                else:  # `from . import models`: the names are the modules
                    names = [n.strip() for n in (match.group(3) or "").split(",") if n.strip()]
                    candidates = ["/".join([*base, name]) for name in names]
            else:
                top = module.split(".")[0]
                relative = module.replace(".", "/")
                candidates = [
                    f"{prefix}/{relative}" if prefix else relative
                    for prefix in sorted(directories.get(top, ()))
                ]
            for candidate in candidates:
                for name in (f"{candidate}.py", f"{candidate}/__init__.py"):
                    if name not in texts and name not in wanted and _safe_path(name):
                        wanted.append(name)
    return wanted[:MAX_IMPORTED_MODULES]


def _fetch_files(
    api: GitHubApi, pull: PullRequest, paths: list[str], scratch: Path, *, quiet: bool = False
) -> tuple[dict[str, bytes], list[Note]]:
    """Download `paths` at the head commit into `scratch`, several at a time."""
    local = threading.local()

    def client() -> GitHubApi:
        # PyGithub's connection keeps per-request state, so each thread gets its own.
        if not hasattr(local, "api"):
            local.api = api.clone()
        return local.api  # type: ignore[no-any-return]

    def fetch(path: str) -> tuple[str, bytes | None, str]:
        try:
            data = fetch_file(client(), pull.repository, path, pull.head_sha)
        except GitHubError as error:
            return path, None, str(error)
        return path, data, "" if data is not None else "not found at the head commit"

    fetched: dict[str, bytes] = {}
    notes: list[Note] = []
    with ThreadPoolExecutor(max_workers=min(FETCH_THREADS, max(1, len(paths)))) as pool:
        for path, data, problem in pool.map(fetch, paths):
            if data is None:
                if not quiet:
                    notes.append(Note(NoteKind.MISSING, path, f"skipped: {problem}"))
                continue
            if len(data) > MAX_FETCH_BYTES:
                notes.append(Note(NoteKind.TOO_LARGE, path, "skipped: file too large to fetch"))
                continue
            write_file(scratch, path, data)
            fetched[path] = data
    return fetched, notes


def fetch_file(api: GitHubApi, repository: str, path: str, ref: str) -> bytes | None:
    """A file's bytes at `ref` through the contents endpoint (raw media type), None if absent."""
    response = api.get_text(
        f"/repos/{repository}/contents/{quote_path(path)}", RAW, params={"ref": ref}
    )
    if response.status == 404:
        return None
    return response.text.encode("utf-8", "surrogateescape")


def write_file(scratch: Path, path: str, data: bytes) -> None:
    """Write `data` at repository path `path` under `scratch`, making its directories."""
    target = scratch / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def _safe_path(path: str) -> bool:
    """A repository path that stays inside the scratch directory."""
    pure = PurePosixPath(path)
    return not pure.is_absolute() and ".." not in pure.parts and bool(pure.parts)
