"""parse_unified_diff on diffs that real `git diff` (and `diff -u`) write."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import PlainRepo, bytes_paths, only

from bot.changeset import (
    ChangeSet,
    DiffError,
    FileChange,
    FileStatus,
    Hunk,
    parse_hunks,
    parse_unified_diff,
)

TWENTY = "".join(f"l{number}\n" for number in range(1, 21))


@pytest.fixture
def repo(plain_repo: PlainRepo) -> PlainRepo:
    return plain_repo


def diff_error(data: bytes | str) -> str:
    with pytest.raises(DiffError) as caught:
        parse_unified_diff(data)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- modified, added, deleted --------------------------------------------------------------------


def test_modified_file_added_lines_and_hunks(repo: PlainRepo) -> None:
    repo.commit_edit(
        "app.py", TWENTY, TWENTY.replace("l5\n", "L5\n").replace("l15\n", "l15\nn1\nn2\n")
    )

    change = only(parse_unified_diff(repo.diff()))

    assert change == FileChange(
        path="app.py",
        status=FileStatus.MODIFIED,
        added_lines=frozenset({5, 16, 17}),
        hunks=(Hunk(2, 7), Hunk(13, 8)),
    )
    assert change.in_hunk(2) and change.in_hunk(20) and not change.in_hunk(9)


def test_added_and_deleted_files_use_dev_null(repo: PlainRepo) -> None:
    repo.write("gone.py", "a\nb\n")
    repo.commit()
    (repo.path / "gone.py").unlink()
    repo.write("pkg/new.py", "x\ny\nz\n")
    repo.commit()

    data = repo.diff()
    changes = parse_unified_diff(data)

    assert b"--- /dev/null" in data and b"+++ /dev/null" in data
    assert changes.get("gone.py") == FileChange("gone.py", FileStatus.DELETED)
    assert changes.get("pkg/new.py") == FileChange(
        "pkg/new.py", FileStatus.ADDED, added_lines=frozenset({1, 2, 3}), hunks=(Hunk(1, 3),)
    )


def test_empty_added_file_has_no_hunks(repo: PlainRepo) -> None:
    repo.commit()
    repo.write("__init__.py", "")
    repo.commit()

    assert only(parse_unified_diff(repo.diff())) == FileChange("__init__.py", FileStatus.ADDED)


def test_bytes_and_str_input_agree(repo: PlainRepo) -> None:
    repo.commit_edit("app.py", TWENTY, TWENTY.replace("l9\n", "nine\n"))

    data = repo.diff()

    assert parse_unified_diff(data) == parse_unified_diff(data.decode())


def test_pure_deletion_hunk_without_context_is_dropped(repo: PlainRepo) -> None:
    repo.commit_edit("app.py", TWENTY, TWENTY.replace("l3\n", "").replace("l10\n", "ten\n"))

    change = only(parse_unified_diff(repo.diff("-U0")))

    # `@@ -3 +2,0 @@` has no new-side line to comment on.
    assert change.hunks == (Hunk(9, 1),)
    assert change.added_lines == frozenset({9})


def test_content_that_looks_like_headers(repo: PlainRepo) -> None:
    repo.commit_edit(
        "notes.txt", "-- dashes\nkeep\n", "++ plus\nkeep\n@@ -1 +1 @@\ndiff --git a/x b/x\n"
    )

    data = repo.diff()
    change = only(parse_unified_diff(data))

    assert b"\n--- dashes\n+++ plus\n" in data
    assert change.added_lines == frozenset({1, 3, 4})
    assert change.hunks == (Hunk(1, 4),)


def test_blank_context_lines_written_empty(repo: PlainRepo) -> None:
    repo.commit_edit("app.py", "a\n\nb\n", "a\n\nb\nc\n")

    change = only(parse_unified_diff(repo.diff("--no-prefix").replace(b"\n \n", b"\n\n")))

    assert change.added_lines == frozenset({4})
    assert change.hunks == (Hunk(1, 4),)


# --- no newline at end of file -------------------------------------------------------------------


def test_no_newline_markers(repo: PlainRepo) -> None:
    repo.write("grow.py", "a\nb")
    repo.write("shrink.py", "a\nb\n")
    repo.write("after.py", "1\n")
    repo.commit()
    repo.write("grow.py", "a\nb\nc")
    repo.write("shrink.py", "a\nc")
    repo.write("after.py", "1\n2\n")
    repo.commit()

    data = repo.diff()
    changes = parse_unified_diff(data)

    assert data.count(b"\\ No newline at end of file") == 3
    assert changes.get("grow.py") == FileChange(
        "grow.py", FileStatus.MODIFIED, added_lines=frozenset({2, 3}), hunks=(Hunk(1, 3),)
    )
    assert changes.get("shrink.py") == FileChange(
        "shrink.py", FileStatus.MODIFIED, added_lines=frozenset({2}), hunks=(Hunk(1, 2),)
    )
    assert changes.get("after.py") == FileChange(
        "after.py", FileStatus.MODIFIED, added_lines=frozenset({2}), hunks=(Hunk(1, 2),)
    )


# --- line endings and encodings ------------------------------------------------------------------


def test_content_lines_ending_in_cr(repo: PlainRepo) -> None:
    repo.commit_edit("win.py", "a\r\nb\r\n", "a\r\nnew\r\nb\r\n")

    data = repo.diff()
    change = only(parse_unified_diff(data))

    assert b"+new\r\n" in data
    assert change == FileChange(
        "win.py", FileStatus.MODIFIED, added_lines=frozenset({2}), hunks=(Hunk(1, 3),)
    )


def test_whole_diff_in_crlf(repo: PlainRepo) -> None:
    repo.write("app.py", TWENTY)
    repo.write("old.py", TWENTY)
    repo.write("tool.sh", "echo\n")
    repo.write("gone.py", "x\n")
    repo.commit()
    repo.write("app.py", TWENTY.replace("l7\n", "seven\n"))
    repo.git("mv", "old.py", "new name.py")
    (repo.path / "tool.sh").chmod(0o755)
    (repo.path / "gone.py").unlink()
    repo.write("added.py", "1\n2")
    repo.commit()

    data = repo.diff("-M")
    crlf = data.replace(b"\n", b"\r\n")

    assert parse_unified_diff(crlf) == parse_unified_diff(data)
    assert [(change.path, change.status) for change in parse_unified_diff(crlf)] == [
        ("added.py", FileStatus.ADDED),
        ("app.py", FileStatus.MODIFIED),
        ("gone.py", FileStatus.DELETED),
        ("new name.py", FileStatus.RENAMED),
        ("tool.sh", FileStatus.MODE_ONLY),
    ]


def test_non_utf8_content(repo: PlainRepo) -> None:
    repo.commit_edit("latin.py", b"a = 'caf\xe9'\n", b"a = 'caf\xe9'\nb = '\xff\xfe'\n")

    data = repo.diff()
    change = only(parse_unified_diff(data))

    assert b"\xff\xfe" in data
    assert change.added_lines == frozenset({2})
    assert only(parse_unified_diff(data.decode("latin-1"))).added_lines == frozenset({2})


@bytes_paths
def test_non_utf8_path_names_the_file_on_disk(repo: PlainRepo) -> None:
    name = b"caf\xe9.py"
    repo.commit()
    repo.write(name, "x\n")
    repo.commit()

    data = repo.diff()
    change = only(parse_unified_diff(data))

    assert b'"b/caf\\351.py"' in data
    assert (repo.path / change.path).read_text() == "x\n"


def test_utf8_bom_is_ignored(repo: PlainRepo) -> None:
    repo.commit_edit("app.py", "a\n", "a\nb\n")

    assert parse_unified_diff(b"\xef\xbb\xbf" + repo.diff()) == parse_unified_diff(repo.diff())


# --- paths ---------------------------------------------------------------------------------------


SPECIAL_NAMES = [
    "my file.py",
    "x b/y.py",  # " b/" inside the name
    'sp\u00e4ce "q".py',
    "tab\there.py",
    "new\nline.py",
    "back\\slash.py",
    "a/in_dir_a.py",
]


@pytest.mark.parametrize("quotepath", ["true", "false"])
@pytest.mark.parametrize("prefix", ["--src-prefix=a/", "--no-prefix", "--src-prefix=i/"])
def test_special_paths(repo: PlainRepo, quotepath: str, prefix: str) -> None:
    for name in SPECIAL_NAMES:
        repo.write(name, "one\n")
    repo.commit()
    for name in SPECIAL_NAMES:
        repo.write(name, "one\ntwo\n")
    repo.commit()
    options = [prefix, "--dst-prefix=w/"] if prefix == "--src-prefix=i/" else [prefix]

    data = repo.git("-c", f"core.quotepath={quotepath}", "diff", *options, "HEAD~1", "HEAD")
    changes = parse_unified_diff(data)

    assert sorted(change.path for change in changes) == sorted(SPECIAL_NAMES)
    for change in changes:
        assert change.status is FileStatus.MODIFIED
        assert change.added_lines == frozenset({2})
        assert change.hunks == (Hunk(1, 2),)


def test_git_quoting_is_decoded(repo: PlainRepo) -> None:
    repo.commit()
    repo.write('sp\u00e4ce "q".py', "x\n")
    repo.commit()

    data = repo.diff()

    assert b'"b/sp\\303\\244ce \\"q\\".py"' in data
    assert only(parse_unified_diff(data)).path == 'sp\u00e4ce "q".py'


@pytest.mark.parametrize("prefix", ["--src-prefix=a/", "--no-prefix"])
def test_added_deleted_and_binary_files_with_spaces(repo: PlainRepo, prefix: str) -> None:
    repo.write("old one.py", "x\n")
    repo.write("img one.bin", b"\0\1")
    repo.commit()
    (repo.path / "old one.py").unlink()
    repo.write("new one.py", "y\n")
    repo.write("img one.bin", b"\0\2")
    repo.commit()

    changes = parse_unified_diff(repo.diff(prefix))

    assert [(change.path, change.status) for change in changes] == [
        ("img one.bin", FileStatus.BINARY),
        ("new one.py", FileStatus.ADDED),
        ("old one.py", FileStatus.DELETED),
    ]


# --- renames -------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["--src-prefix=a/", "--no-prefix"])
def test_pure_rename(repo: PlainRepo, prefix: str) -> None:
    repo.write("pkg/old name.py", TWENTY)
    repo.commit()
    repo.git("mv", "pkg/old name.py", "pkg/n\u00e9w.py")
    repo.commit()

    data = repo.diff("-M", prefix)
    change = only(parse_unified_diff(data))

    assert b"similarity index 100%" in data and b"@@" not in data
    assert change == FileChange("pkg/n\u00e9w.py", FileStatus.RENAMED, old_path="pkg/old name.py")


@pytest.mark.parametrize("prefix", ["--src-prefix=a/", "--no-prefix"])
def test_rename_with_edits(repo: PlainRepo, prefix: str) -> None:
    repo.write("old.py", TWENTY)
    repo.commit()
    (repo.path / "old.py").unlink()
    repo.write("new.py", TWENTY.replace("l10\n", "l10\nextra\n"))
    repo.commit()

    data = repo.diff("-M", prefix)
    change = only(parse_unified_diff(data))

    assert b"rename from old.py" in data
    assert change == FileChange(
        "new.py",
        FileStatus.RENAMED,
        old_path="old.py",
        added_lines=frozenset({11}),
        hunks=(Hunk(8, 7),),
    )


def test_copy_is_an_added_file(repo: PlainRepo) -> None:
    repo.write("base.py", TWENTY)
    repo.commit()
    repo.write("copy.py", TWENTY.replace("l20\n", "twenty\n"))
    repo.commit()

    data = repo.diff("-C", "--find-copies-harder")
    change = only(parse_unified_diff(data))

    assert b"copy from base.py" in data
    assert change == FileChange(
        "copy.py", FileStatus.ADDED, added_lines=frozenset({20}), hunks=(Hunk(17, 4),)
    )


# --- binary and mode changes ---------------------------------------------------------------------


@pytest.mark.parametrize("binary_patch", [False, True])
def test_binary_files(repo: PlainRepo, binary_patch: bool) -> None:
    repo.write("logo.png", b"\x89PNG\0\0\1")
    repo.write("old.bin", b"\0old")
    repo.commit()
    repo.write("logo.png", b"\x89PNG\0\0\2")
    repo.write("new.bin", b"\0new")
    (repo.path / "old.bin").unlink()
    repo.commit()

    data = repo.diff("--binary") if binary_patch else repo.diff()
    changes = parse_unified_diff(data)

    marker = (
        b"GIT binary patch" if binary_patch else b"Binary files a/logo.png and b/logo.png differ"
    )
    assert marker in data
    assert [(change.path, change.status, change.hunks) for change in changes] == [
        ("logo.png", FileStatus.BINARY, ()),
        ("new.bin", FileStatus.BINARY, ()),
        ("old.bin", FileStatus.DELETED, ()),
    ]


def test_mode_only_change(repo: PlainRepo) -> None:
    repo.write("run.sh", "echo\n")
    repo.write("edit.sh", "echo\n")
    repo.commit()
    (repo.path / "run.sh").chmod(0o755)
    (repo.path / "edit.sh").chmod(0o755)
    repo.write("edit.sh", "echo\necho\n")
    repo.commit()

    data = repo.diff()
    changes = parse_unified_diff(data)

    assert data.count(b"old mode 100644\nnew mode 100755\n") == 2
    assert changes.get("run.sh") == FileChange("run.sh", FileStatus.MODE_ONLY)
    assert changes.get("edit.sh") == FileChange(
        "edit.sh", FileStatus.MODIFIED, added_lines=frozenset({2}), hunks=(Hunk(1, 2),)
    )


# --- other producers -----------------------------------------------------------------------------


def test_format_patch_output(repo: PlainRepo) -> None:
    repo.commit_edit("app.py", TWENTY, TWENTY + "l21\n")

    data = repo.git("format-patch", "-1", "--stdout")
    change = only(parse_unified_diff(data))

    assert b"\n-- \n" in data
    assert change.added_lines == frozenset({21})
    assert change.hunks == (Hunk(18, 4),)


@pytest.mark.skipif(shutil.which("diff") is None, reason="needs diff(1)")
def test_plain_diff_u_with_timestamps(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    (tmp_path / "old" / "app.py").write_text(TWENTY)
    (tmp_path / "new" / "app.py").write_text(TWENTY.replace("l4\n", "four\n"))
    (tmp_path / "new" / "added file.py").write_text("a\nb\n")
    done = subprocess.run(
        ["diff", "-ruN", "old", "new"], cwd=tmp_path, capture_output=True, check=False
    )

    changes = parse_unified_diff(done.stdout)

    assert changes.get("app.py") == FileChange(
        "app.py", FileStatus.MODIFIED, added_lines=frozenset({4}), hunks=(Hunk(1, 7),)
    )
    assert changes.get("added file.py") == FileChange(
        "added file.py", FileStatus.ADDED, added_lines=frozenset({1, 2}), hunks=(Hunk(1, 2),)
    )


def test_parse_hunks_of_a_github_patch() -> None:
    patch = "@@ -1,3 +1,4 @@\n a\n+b\n c\n d\n@@ -10,2 +11,3 @@ def f():\n x\n+y\n z"

    assert parse_hunks(patch) == (frozenset({2, 12}), (Hunk(1, 4), Hunk(11, 3)))
    assert parse_hunks("") == (frozenset(), ())


# --- empty and malformed input -------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", "", "\n", b"  \n\t\n"])
def test_empty_diff(data: bytes | str) -> None:
    assert parse_unified_diff(data) == ChangeSet()
    assert len(parse_unified_diff(data)) == 0


@pytest.mark.parametrize(
    "data",
    ["hello world\n", b"\x00\xff\xfe garbage", "@@ -1 +1 @@\n-a\n+b\n", "--- only a minus line\n"],
)
def test_not_a_diff(data: str | bytes) -> None:
    assert diff_error(data) == "input is not a unified diff"


def two_file_diff(repo: PlainRepo) -> str:
    repo.write("a.py", "1\n2\n3\n")
    repo.write("b.py", "1\n")
    repo.commit()
    repo.write("a.py", "1\n2\nnew\n3\n")
    repo.write("b.py", "1\n2\n")
    repo.commit()
    return repo.diff().decode()


def test_hunk_shorter_than_its_header_before_next_file(repo: PlainRepo) -> None:
    data = two_file_diff(repo)
    assert data.splitlines()[4] == "@@ -1,3 +1,4 @@"

    message = diff_error(data.replace("@@ -1,3 +1,4 @@", "@@ -1,3 +1,6 @@"))

    assert (
        message == "malformed diff: hunk at line 5 of the diff has fewer lines than its header says"
    )


def test_hunk_shorter_than_its_header_at_end(repo: PlainRepo) -> None:
    data = two_file_diff(repo)
    hunk_line = data.splitlines().index("@@ -1 +1,2 @@") + 1

    message = diff_error(data.replace("@@ -1 +1,2 @@", "@@ -1 +1,3 @@"))

    assert message == (
        f"malformed diff: hunk at line {hunk_line} of the diff has fewer lines than its header says"
    )


@pytest.mark.parametrize("last_file", [False, True])
def test_hunk_longer_than_its_header(repo: PlainRepo, last_file: bool) -> None:
    data = two_file_diff(repo)
    header = "@@ -1 +1,2 @@" if last_file else "@@ -1,3 +1,4 @@"
    hunk_line = data.splitlines().index(header) + 1
    shorter = "@@ -1 +1 @@" if last_file else "@@ -1,2 +1,3 @@"

    message = diff_error(data.replace(header, shorter))

    assert message == (
        f"malformed diff: hunk at line {hunk_line} of the diff has more lines than its header says"
    )


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            "+new\n",
            "+new\n+more\n+and more\n",
            "malformed diff: hunk at line 5 of the diff has more removed or added lines "
            "than its header says",
            id="too-many-added-lines",
        ),
        pytest.param(
            "\n 3\n",
            "\nthree\n",
            "malformed diff: line 9 of the diff is not a line of the hunk at line 5",
            id="line-that-is-no-hunk-line",
        ),
        pytest.param(
            "@@ -1,3 +1,4 @@",
            "@@ -1,3 +1,4",
            "malformed diff: line 5 of the diff is not a valid hunk header",
            id="broken-hunk-header",
        ),
        pytest.param(
            "--- a/b.py\n",
            "",
            "malformed diff at line 12: a +++ line without a --- line before it",
            id="plus-line-without-minus-line",
        ),
    ],
)
def test_broken_two_file_diff(repo: PlainRepo, old: str, new: str, expected: str) -> None:
    assert diff_error(two_file_diff(repo).replace(old, new)) == expected


def test_marker_outside_a_hunk() -> None:
    message = diff_error("--- a/x.py\n+++ b/x.py\n\\ No newline at end of file\n")

    assert message == (
        "malformed diff at line 3: a 'No newline at end of file' marker outside a hunk"
    )


def test_mutated_diffs_raise_only_diff_error(repo: PlainRepo) -> None:
    repo.write("app.py", TWENTY)
    repo.write("my file.py", "a\nb")
    repo.write("img.bin", b"\0\1")
    repo.commit()
    repo.write("app.py", TWENTY.replace("l3\n", "three\n") + "l21")
    repo.write("my file.py", "a\nb\nc\n")
    repo.write("img.bin", b"\0\2")
    repo.write('sp\u00e4ce "q".py', "q\n")
    repo.commit()
    lines = repo.diff().split(b"\n")
    pieces = [b"@@ -1,2 +1,3 @@", b"diff --git a/x b/x", b"--- a/x", b"+++ b/x", b"\\", b"+"]
    pieces += [b"", b"rename to y", b"new file mode 100644", b'"', b"\xff", b"@@"]
    rng = random.Random(7)

    for _ in range(500):
        mutated = list(lines)
        for _ in range(rng.randint(1, 3)):
            index = rng.randrange(len(mutated))
            if rng.random() < 0.4:
                del mutated[index]
            else:
                mutated.insert(index, rng.choice(pieces))
        try:
            parse_unified_diff(b"\n".join(mutated))
        except DiffError as error:
            assert "\n" not in str(error) and "\0" not in str(error)
