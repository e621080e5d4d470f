"""The local git source: working tree against the merge-base, untracked files, cwd re-basing."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import PlainRepo, bytes_paths, only

from bot.changeset import ChangeSet, FileChange, FileStatus, Hunk, parse_unified_diff
from bot.git import (
    GitError,
    changeset_from_base,
    diff_against_base,
    relative_to_cwd,
    repo_root,
)

TEN = "".join(f"l{number}\n" for number in range(1, 11))


@pytest.fixture
def repo(plain_repo: PlainRepo) -> PlainRepo:
    return plain_repo


@pytest.fixture
def feature(repo: PlainRepo) -> PlainRepo:
    """main has app.py, old.py, gone.py; branch `feature` changes them, main moves on after."""
    repo.write("app.py", TEN)
    repo.write("old.py", TEN)
    repo.write("gone.py", "x\n")
    repo.write(".gitignore", "*.log\n")
    repo.commit()
    repo.git("checkout", "-q", "-b", "feature")
    repo.write("app.py", TEN.replace("l2\n", "two\n"))
    (repo.path / "pkg").mkdir()
    repo.git("mv", "old.py", "pkg/new.py")
    repo.commit()
    repo.git("checkout", "-q", "main")
    repo.write("main_only.py", "later on main\n")
    repo.commit()
    repo.git("checkout", "-q", "feature")
    return repo


def statuses(changeset: ChangeSet) -> dict[str, FileStatus]:
    return {change.path: change.status for change in changeset}


# --- repo_root -----------------------------------------------------------------------------------


def test_repo_root_from_a_subdirectory(repo: PlainRepo) -> None:
    (repo.path / "pkg" / "sub").mkdir(parents=True)

    assert repo_root(repo.path / "pkg" / "sub") == repo.path.resolve()


def test_repo_root_outside_a_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    (tmp_path / "plain").mkdir()

    assert repo_root(tmp_path / "plain") is None


# --- the diff ------------------------------------------------------------------------------------


def test_committed_staged_unstaged_and_untracked_changes(feature: PlainRepo) -> None:
    feature.write("app.py", TEN.replace("l2\n", "two\n").replace("l9\n", "nine\n"))  # unstaged
    feature.write("staged.py", "s1\ns2\n")
    feature.git("add", "staged.py")
    feature.write("untracked.py", "u1\nu2\nu3")
    feature.write("debug.log", "ignored\n")
    (feature.path / "gone.py").unlink()

    changes = parse_unified_diff(diff_against_base("main", feature.path))

    assert statuses(changes) == {
        "app.py": FileStatus.MODIFIED,
        "gone.py": FileStatus.DELETED,
        "pkg/new.py": FileStatus.RENAMED,
        "staged.py": FileStatus.ADDED,
        "untracked.py": FileStatus.ADDED,
    }
    assert changes.get("app.py") == FileChange(
        "app.py", FileStatus.MODIFIED, added_lines=frozenset({2, 9}), hunks=(Hunk(1, 10),)
    )
    assert changes.get("pkg/new.py") == FileChange(
        "pkg/new.py", FileStatus.RENAMED, old_path="old.py"
    )
    assert changes.get("untracked.py") == FileChange(
        "untracked.py", FileStatus.ADDED, added_lines=frozenset({1, 2, 3}), hunks=(Hunk(1, 3),)
    )


def test_changes_on_the_base_after_the_fork_are_not_included(feature: PlainRepo) -> None:
    changes = parse_unified_diff(diff_against_base("main", feature.path))

    assert "main_only.py" not in statuses(changes)
    assert set(statuses(changes)) == {"app.py", "pkg/new.py"}


def test_the_index_is_not_touched(feature: PlainRepo) -> None:
    feature.write("untracked.py", "u\n")
    feature.write("app.py", "changed\n")
    status_before = feature.git("status", "--porcelain")
    stat_dirty = feature.path / "pkg" / "new.py"  # would make `git diff` rewrite the index
    os.utime(stat_dirty, (stat_dirty.stat().st_atime + 60, stat_dirty.stat().st_mtime + 60))
    index = feature.path / ".git" / "index"
    before = (index.read_bytes(), index.stat().st_mtime_ns)

    diff_against_base("main", feature.path)

    assert (index.read_bytes(), index.stat().st_mtime_ns) == before
    assert feature.git("status", "--porcelain") == status_before


def test_hostile_user_config_is_overridden(feature: PlainRepo) -> None:
    for key, value in [
        ("diff.noprefix", "true"),
        ("diff.mnemonicPrefix", "true"),
        ("color.ui", "always"),
        ("diff.external", "false"),
        ("core.quotepath", "true"),
        ("diff.renames", "false"),
    ]:
        feature.git("config", key, value)
    feature.write('sp\u00e4ce "q".py', "a\n")

    changes = parse_unified_diff(diff_against_base("main", feature.path))

    assert statuses(changes) == {
        "app.py": FileStatus.MODIFIED,
        "pkg/new.py": FileStatus.RENAMED,
        'sp\u00e4ce "q".py': FileStatus.ADDED,
    }


def test_a_tracked_non_ascii_path(feature: PlainRepo) -> None:
    feature.write("caf\u00e9 x.py", "a\n")
    feature.commit()
    feature.write("caf\u00e9 x.py", "a\nb\n")

    changes = parse_unified_diff(diff_against_base("main", feature.path))

    assert changes.get("caf\u00e9 x.py") == FileChange(
        "caf\u00e9 x.py", FileStatus.ADDED, added_lines=frozenset({1, 2}), hunks=(Hunk(1, 2),)
    )


# --- untracked files -----------------------------------------------------------------------------

UNTRACKED: list[tuple[bytes, bytes]] = [
    (b"plain.py", b"a\nb\n"),
    (b"no newline.py", b"a\nb"),
    (b"empty.py", b""),
    (b"crlf.py", b"a\r\nb\r\n"),
    (b"blob.bin", b"\x89PNG\0\0"),
    (b'sp\xc3\xa4ce "q"\tx.py', b"q\n"),
    (b"new\nline.py", b"n\n"),
    (b"latin\xe9.py", b"caf\xe9\n"),
    (b"deep/er/mod.py", b"m\n"),
]


@bytes_paths
def test_untracked_files_read_as_git_would_show_them(repo: PlainRepo) -> None:
    repo.write("base.py", "b\n")
    repo.commit()
    for name, content in UNTRACKED:
        repo.write(name, content)
    (repo.path / "run.sh").write_text("echo\n")
    (repo.path / "run.sh").chmod(0o755)
    (repo.path / "link.py").symlink_to("plain.py")

    ours = parse_unified_diff(diff_against_base("HEAD", repo.path))

    names = [os.fsdecode(name) for name, _ in UNTRACKED] + ["run.sh", "link.py"]
    assert sorted(change.path for change in ours) == sorted(names)
    for path in names:
        no_index = subprocess.run(
            ["git", "diff", "--no-index", "--", "/dev/null", path],
            cwd=repo.path,
            capture_output=True,
            check=False,
        )
        assert ours.get(path) == only(parse_unified_diff(no_index.stdout)), path


def test_untracked_file_diff_text_matches_git(repo: PlainRepo) -> None:
    repo.commit()
    repo.write("my file.py", "a\nb")

    ours = diff_against_base("HEAD", repo.path)
    git = subprocess.run(
        ["git", "diff", "--no-index", "--", "/dev/null", "my file.py"],
        cwd=repo.path,
        capture_output=True,
        check=False,
    ).stdout

    assert ours == re.sub(rb"index 0+\.\.[0-9a-f]+\n", b"", git)


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ref", ["nope", "--output=/tmp/x", "", "main..feature"])
def test_unknown_ref(feature: PlainRepo, ref: str) -> None:
    with pytest.raises(GitError) as caught:
        diff_against_base(ref, feature.path)

    assert str(caught.value) == f"unknown git ref '{ref}'"


def test_no_merge_base(feature: PlainRepo) -> None:
    feature.git("checkout", "-q", "--orphan", "island")
    feature.commit()

    with pytest.raises(GitError) as caught:
        diff_against_base("main", feature.path)

    assert str(caught.value) == "no merge base between 'main' and HEAD"


def test_not_a_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))

    with pytest.raises(GitError) as caught:
        changeset_from_base("main", tmp_path)

    assert str(caught.value) == f"{tmp_path} is not inside a git work tree"


# --- paths relative to the current directory -----------------------------------------------------


def test_changeset_from_base_at_the_root(feature: PlainRepo) -> None:
    changes = changeset_from_base("main", feature.path)

    assert statuses(changes) == {"app.py": FileStatus.MODIFIED, "pkg/new.py": FileStatus.RENAMED}


def test_changeset_from_base_in_a_subdirectory(feature: PlainRepo) -> None:
    feature.write("pkg/inner/mod.py", "m\n")

    changes = changeset_from_base("main", feature.path / "pkg")

    assert statuses(changes) == {"new.py": FileStatus.RENAMED, "inner/mod.py": FileStatus.ADDED}
    renamed = changes.get("new.py")
    assert renamed is not None and renamed.old_path == "../old.py"
    assert (feature.path / "pkg" / "inner/mod.py").is_file()


def test_relative_to_cwd_keeps_only_files_under_cwd(tmp_path: Path) -> None:
    changes = ChangeSet(
        files=(
            FileChange("src/app/a.py", FileStatus.MODIFIED, added_lines=frozenset({3})),
            FileChange("src/application.py", FileStatus.ADDED),
            FileChange("src/app/b.py", FileStatus.RENAMED, old_path="src/app/old/b.py"),
            FileChange("README.md", FileStatus.MODIFIED),
        )
    )
    (tmp_path / "src" / "app").mkdir(parents=True)

    rebased = relative_to_cwd(changes, tmp_path, tmp_path / "src" / "app")

    assert rebased.files == (
        FileChange("a.py", FileStatus.MODIFIED, added_lines=frozenset({3})),
        FileChange("b.py", FileStatus.RENAMED, old_path="old/b.py"),
    )
    assert relative_to_cwd(changes, tmp_path, tmp_path) is changes


def test_relative_to_cwd_outside_the_root(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()

    with pytest.raises(GitError):
        relative_to_cwd(ChangeSet(), tmp_path / "root", tmp_path)
