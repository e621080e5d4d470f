"""The local git source: what the working tree changes since it left a base ref.

Only shells out to `git`, and never writes: the index is left as it is, so untracked files are
turned into added-file diffs here instead of with `git add -N`.

Paths: `diff_against_base` writes paths relative to the repository root (as git does);
`changeset_from_base` re-bases them onto `cwd` with `relative_to_cwd`, because the CLI reads the
changed files from disk relative to the current directory. Files outside `cwd` are left out.
"""

from __future__ import annotations

import os
import posixpath
import stat
import subprocess
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bot.changeset import ChangeSet, FileChange, parse_unified_diff

# The same test as git's: a NUL byte among the first 8000 bytes makes a file binary.
_BINARY_SNIFF = 8000
# Plumbing rather than `git diff`: it ignores the user's diff config (noprefix, mnemonicPrefix,
# color, external) and does not rewrite the index to refresh its stat data.
_DIFF = ["diff-index", "-p", "-M", "--no-color", "--no-ext-diff", "--no-textconv"]
_PREFIXES = ["--src-prefix=a/", "--dst-prefix=b/"]
_TREE_DIFF = ["diff-tree", "-r", "-p", "-M", "--no-color", "--no-ext-diff", "--no-textconv"]
_QUOTE_ESCAPES = {
    7: b"\\a",
    8: b"\\b",
    9: b"\\t",
    10: b"\\n",
    11: b"\\v",
    12: b"\\f",
    13: b"\\r",
    34: b'\\"',
    92: b"\\\\",
}


class GitError(Exception):
    """git cannot give the diff. The message is one line, shown to the user as is."""


def repo_root(cwd: Path) -> Path | None:
    """The top of the work tree that holds `cwd`, or None outside a git work tree."""
    result = _run(["rev-parse", "--show-toplevel"], cwd)
    if result.returncode != 0:
        return None
    return Path(os.fsdecode(result.stdout.rstrip(b"\n")))


def diff_against_base(ref: str, cwd: Path) -> bytes:
    """The working tree against the merge-base of `ref` and HEAD, untracked files as added.

    Paths are relative to the repository root, with a/ and b/ prefixes.
    """
    root = _require_root(cwd)
    base = _merge_base(ref, root)
    tracked = _git([*_DIFF, *_PREFIXES, base, "--"], root)
    return tracked + _untracked_diff(root)


def changeset_from_base(ref: str, cwd: Path) -> ChangeSet:
    """The ChangeSet of `diff_against_base`, with paths relative to `cwd` (see the module doc)."""
    root = _require_root(cwd)
    changeset = parse_unified_diff(diff_against_base(ref, cwd))
    return relative_to_cwd(changeset, root, cwd)


def head_commit(root: Path) -> str | None:
    """The commit checked out at `root`, None if there is none (or no repository)."""
    result = _run(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], root)
    if result.returncode != 0:
        return None
    return result.stdout.decode().strip() or None


def has_commit(sha: str, root: Path) -> bool:
    """Whether the object database at `root` holds commit `sha` (a shallow clone may not)."""
    if not sha or sha.startswith("-"):
        return False
    return _run(["cat-file", "-e", f"{sha}^{{commit}}"], root).returncode == 0


def diff_commits(base: str, head: str, root: Path) -> ChangeSet:
    """What a pull request from `base` to `head` changes: `head` against their merge base,
    renames detected, paths relative to the repository root."""
    result = _run(["merge-base", base, head], root)
    if result.returncode != 0:
        hint = " (the clone is shallow: fetch more history)" if _is_shallow(root) else ""
        raise GitError(f"no merge base between {base[:12]} and {head[:12]}{hint}")
    merge_base = result.stdout.decode().strip()
    return parse_unified_diff(_git([*_TREE_DIFF, *_PREFIXES, merge_base, head, "--"], root))


def read_blobs(commit: str, paths: Sequence[str], root: Path) -> dict[str, bytes]:
    """The contents of `paths` at `commit` (one `git cat-file --batch`); absent paths and
    anything that is not a file are left out."""
    if not paths:
        return {}
    request = b"".join(f"{commit}:{path}\n".encode() for path in paths)
    try:
        done = subprocess.run(
            ["git", "cat-file", "--batch"],
            cwd=root,
            input=request,
            capture_output=True,
            check=False,
        )
    except OSError as error:
        raise GitError(f"cannot run git in {root}: {error.strerror or error}") from None
    if done.returncode != 0:
        raise GitError(f"git cat-file failed: {_first_line(done.stderr)}")
    blobs: dict[str, bytes] = {}
    output, position = done.stdout, 0
    for path in paths:
        end = output.index(b"\n", position)
        header = output[position:end].split()
        position = end + 1
        if len(header) == 3 and header[1] == b"blob":
            size = int(header[2])
            blobs[path] = output[position : position + size]
            position += size + 1
        elif len(header) == 3:  # a tree or a submodule: skip its content
            position += int(header[2]) + 1
    return blobs


def list_files(commit: str, prefixes: Sequence[str], root: Path) -> list[str]:
    """The file paths under `prefixes` at `commit`."""
    result = _run(["ls-tree", "-r", "-z", "--name-only", commit, "--", *prefixes], root)
    if result.returncode != 0:
        return []
    return [os.fsdecode(name) for name in result.stdout.split(b"\0") if name]


def relative_to_cwd(changeset: ChangeSet, root: Path, cwd: Path) -> ChangeSet:
    """Re-base repository-relative paths onto `cwd`, keeping only the files under `cwd`.

    An `old_path` outside `cwd` is kept, as a path with `../`.
    """
    try:
        prefix = cwd.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise GitError(f"{cwd} is not inside the repository at {root}") from None
    if prefix == ".":
        return changeset
    files = tuple(
        _rebase(change, prefix) for change in changeset if change.path.startswith(f"{prefix}/")
    )
    return ChangeSet(files=files, whole_files=changeset.whole_files)


def _rebase(change: FileChange, prefix: str) -> FileChange:
    old_path = None if change.old_path is None else posixpath.relpath(change.old_path, prefix)
    return replace(change, path=change.path[len(prefix) + 1 :], old_path=old_path)


# --- running git ---------------------------------------------------------------------------------


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    # quotepath=off leaves non-ASCII names readable (the parser decodes quoting either way).
    command = ["git", "-c", "core.quotepath=off", *args]
    try:
        return subprocess.run(
            command, cwd=cwd, capture_output=True, stdin=subprocess.DEVNULL, check=False
        )
    except OSError as error:
        raise GitError(f"cannot run git in {cwd}: {error.strerror or error}") from None


def _git(args: list[str], cwd: Path) -> bytes:
    result = _run(args, cwd)
    if result.returncode != 0:
        raise GitError(f"git {args[0]} failed: {_first_line(result.stderr)}")
    return result.stdout


def _first_line(stderr: bytes) -> str:
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    return lines[0] if lines else "no error message"


def _require_root(cwd: Path) -> Path:
    root = repo_root(cwd)
    if root is None:
        raise GitError(f"{cwd} is not inside a git work tree")
    return root


def _merge_base(ref: str, root: Path) -> str:
    commit = _resolve(ref, root)
    result = _run(["merge-base", commit, "HEAD"], root)
    if result.returncode != 0:
        hint = " (the clone is shallow: fetch more history)" if _is_shallow(root) else ""
        raise GitError(f"no merge base between '{ref}' and HEAD{hint}")
    return result.stdout.decode().strip()


def _resolve(ref: str, root: Path) -> str:
    # A ref starting with "-" would be read as an option.
    if ref and not ref.startswith("-"):
        result = _run(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], root)
        if result.returncode == 0:
            return result.stdout.decode().strip()
    raise GitError(f"unknown git ref '{ref}'")


def _is_shallow(root: Path) -> bool:
    return _run(["rev-parse", "--is-shallow-repository"], root).stdout.strip() == b"true"


# --- untracked files -----------------------------------------------------------------------------


def _untracked_diff(root: Path) -> bytes:
    listing = _git(["ls-files", "-z", "--others", "--exclude-standard"], root)
    # A trailing slash marks a nested repository, which git diff would not show either.
    names = [name for name in listing.split(b"\0") if name and not name.endswith(b"/")]
    return b"".join(_added_file_diff(root, name) for name in names)


def _added_file_diff(root: Path, name: bytes) -> bytes:
    """The diff `git diff` would show for `name` as a new file (quotepath off)."""
    read = _read_untracked(root / os.fsdecode(name))
    if read is None:
        return b""
    mode, content = read
    source, target = _quote(b"a/" + name), _quote(b"b/" + name)
    header = b"diff --git %s %s\nnew file mode %s\n" % (source, target, mode)
    if not content:
        return header
    if b"\0" in content[:_BINARY_SNIFF]:
        return header + b"Binary files /dev/null and %s differ\n" % target
    tab = b"\t" if b" " in target else b""  # as git, so that the name's end is unambiguous
    return header + b"--- /dev/null\n+++ %s%s\n" % (target, tab) + _added_hunk(content)


def _read_untracked(path: Path) -> tuple[bytes, bytes] | None:
    """The git mode and content of an untracked file; None if it is gone or not a file."""
    try:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            return b"120000", os.fsencode(os.readlink(path))
        if not stat.S_ISREG(info.st_mode):
            return None
        mode = b"100755" if info.st_mode & stat.S_IXUSR else b"100644"
        return mode, path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise GitError(f"cannot read untracked file {path}: {error.strerror}") from None


def _added_hunk(content: bytes) -> bytes:
    lines = content.split(b"\n")
    complete = content.endswith(b"\n")
    if complete:
        lines.pop()
    body = b"".join(b"+%s\n" % line for line in lines)
    marker = b"" if complete else b"\\ No newline at end of file\n"
    return b"@@ -0,0 +1,%d @@\n" % len(lines) + body + marker


def _quote(name: bytes) -> bytes:
    """git's C-style quoting of a path, for the bytes quotepath=off still escapes."""
    if not any(byte < 0x20 or byte in (0x22, 0x5C, 0x7F) for byte in name):
        return name
    return b'"%s"' % b"".join(_quote_byte(byte) for byte in name)


def _quote_byte(byte: int) -> bytes:
    if byte in _QUOTE_ESCAPES:
        return _QUOTE_ESCAPES[byte]
    if byte < 0x20 or byte == 0x7F:
        return b"\\%03o" % byte
    return bytes([byte])
