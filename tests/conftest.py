"""Shared fixtures: throwaway git repositories, a runner for the real `asyncguard` CLI, and the
small FastAPI application (`db_py`, `write_app`, `app_repo`) the end-to-end tests build.

The repositories are isolated from the machine's and the user's git configuration
(`GIT_CONFIG_NOSYSTEM=1`, `HOME` in a temporary directory), and the CLI runs as a subprocess
(`python -m bot`) with its working directory inside them, exactly as a user would run it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.changeset import ChangeSet, FileChange

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SARIF_SCHEMA_PATH = (
    Path(__file__).resolve().parents[2] / "shared" / "reference" / "sarif-schema-2.1.0.json"
)
CLI_TIMEOUT = 60

# (code, path, start line): what the end-to-end tests compare.
Triple = tuple[str, str, int]
# The keys of one finding in `--format json` output, in their order.
JSON_FINDING_KEYS = [
    "code",
    "name",
    "severity",
    "path",
    "start_line",
    "start_col",
    "end_line",
    "end_col",
    "message",
    "section",
    "fingerprint",
    "related",
    "fix",
]
bytes_paths = pytest.mark.skipif(
    sys.platform in ("darwin", "win32"), reason="needs a file system that takes any bytes as names"
)


def isolated_env(home: Path) -> dict[str, str]:
    """The environment for git and the CLI: no system/user git config, no inherited git state."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GIT_", "GITHUB_", "INPUT_", "ASYNCGUARD_"))
        and key not in ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONWARNINGS", "FORCE_COLOR")
    }
    env.update(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "GIT_CONFIG_NOSYSTEM": "1",
            # Never find a repository above the temporary directories (for "outside a repo").
            "GIT_CEILING_DIRECTORIES": str(home.parent),
            "NO_COLOR": "1",
            "PYTHONIOENCODING": "utf-8",
            # The project is installed editable; this also covers a checkout that is not.
            "PYTHONPATH": str(PROJECT_ROOT),
        }
    )
    return env


def git_command(config: Sequence[str], args: Sequence[str]) -> list[str]:
    """`git -c KEY=VALUE ... ARGS`."""
    return ["git", *(part for setting in config for part in ("-c", setting)), *args]


class GitRepo:
    """A git repository in a temporary directory, driven through the `git` command line."""

    def __init__(self, path: Path, home: Path, *, branch: str = "main") -> None:
        self.path = path
        self.home = home
        self.env = isolated_env(home)
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", branch)

    # -- git ------------------------------------------------------------------------------------

    def git(self, *args: str) -> str:
        return self.git_bytes(*args).decode("utf-8", "surrogateescape")

    def git_bytes(self, *args: str) -> bytes:
        command = git_command(
            ["user.name=t", "user.email=t@t", "commit.gpgsign=false", "core.autocrlf=false"], args
        )
        done = subprocess.run(
            command, cwd=self.path, env=self.env, capture_output=True, check=False
        )
        if done.returncode != 0:
            raise AssertionError(
                f"git {' '.join(args)} failed ({done.returncode}): "
                + done.stderr.decode("utf-8", "replace")
            )
        return done.stdout

    def commit(self, message: str = "change") -> str:
        """Stage everything (additions, edits, deletions) and commit; returns the commit id."""
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()

    def diff(
        self,
        base: str,
        head: str | None = None,
        *,
        options: Sequence[str] = (),
        paths: Sequence[str] = (),
    ) -> bytes:
        """`git diff -M` between two commits (or base and the working tree), a/ b/ prefixes."""
        args = ["diff", "--no-color", "--no-ext-diff", "-M", "--src-prefix=a/", "--dst-prefix=b/"]
        args += [*options, base]
        if head is not None:
            args.append(head)
        if paths:
            args += ["--", *paths]
        return self.git_bytes(*args)

    # -- files ----------------------------------------------------------------------------------

    def write(self, name: str, content: str | bytes, *, dedent: bool = True) -> Path:
        """Write a file; str content is dedented and written with LF line endings."""
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            text = textwrap.dedent(content).lstrip("\n") if dedent else content
            target.write_bytes(text.encode("utf-8"))
        return target

    def read(self, name: str) -> str:
        """The file's text exactly as stored (no newline translation)."""
        return (self.path / name).read_bytes().decode("utf-8", "surrogateescape")

    def remove(self, name: str) -> None:
        (self.path / name).unlink()

    def rename(self, old: str, new: str) -> None:
        target = self.path / new
        target.parent.mkdir(parents=True, exist_ok=True)
        (self.path / old).rename(target)

    def write_diff(self, base: str, head: str = "HEAD", name: str = "pr.diff") -> Path:
        """`diff(base, head)` saved as `name` next to the repository; returns the file."""
        target = self.path.parent / name
        target.write_bytes(self.diff(base, head))
        return target

    def copy_to(self, destination: Path) -> GitRepo:
        """A full copy (work tree and .git) for tests that change files, e.g. add a config."""
        shutil.copytree(self.path, destination, symlinks=True)
        clone = object.__new__(GitRepo)
        clone.path = destination
        clone.home = self.home
        clone.env = self.env
        return clone

    def line_of(self, name: str, needle: str, occurrence: int = 1) -> int:
        """The 1-based number of the line holding `needle` (its `occurrence`-th match).

        Lines are counted as git and GitHub count them: only LF ends a line.
        """
        seen = 0
        for number, line in enumerate(self.read(name).split("\n"), start=1):
            if needle in line:
                seen += 1
                if seen == occurrence:
                    return number
        raise AssertionError(f"{needle!r} not found {occurrence} time(s) in {name}")


class PlainRepo:
    """A throwaway git repository driven with the process's own environment, for tests that call
    `bot.git` in-process: the `plain_repo` fixture isolates that environment from the machine's
    and the user's git config."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir()
        self.git("init", "-q")

    def git(self, *args: str) -> bytes:
        config = [
            "user.name=Test",
            "user.email=test@example.com",
            "init.defaultBranch=main",
            "commit.gpgsign=false",
        ]
        done = subprocess.run(
            git_command(config, args), cwd=self.path, capture_output=True, check=True
        )
        return done.stdout

    def write(self, name: str | bytes, content: str | bytes) -> None:
        path = self.path / os.fsdecode(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)

    def commit(self) -> None:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", "change")

    def commit_edit(self, name: str, before: str | bytes, after: str | bytes) -> None:
        """Two commits: the file `name` as `before`, then as `after`."""
        self.write(name, before)
        self.commit()
        self.write(name, after)
        self.commit()

    def diff(self, *args: str) -> bytes:
        """The diff of the last commit."""
        return self.git("diff", *args, "HEAD~1", "HEAD")


def only(changeset: ChangeSet) -> FileChange:
    assert len(changeset) == 1, changeset.files
    return changeset.files[0]


@dataclass(repr=False)
class CliResult:
    """One run of the CLI: exit code and decoded output."""

    args: Sequence[str]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        try:
            document = json.loads(self.stdout)
        except json.JSONDecodeError as error:  # pragma: no cover - shown on failure only
            raise AssertionError(f"not JSON ({error}): {self.stdout!r} / {self.stderr!r}") from None
        assert isinstance(document, dict)
        return document

    def triples(self) -> set[Triple]:
        """The findings of a `--format json` run as (code, path, start line)."""
        return findings_of(self.json())

    def notes(self) -> list[dict[str, Any]]:
        return list(self.json()["notes"])

    def __repr__(self) -> str:  # in assertion messages
        return (
            f"asyncguard {' '.join(self.args)} -> {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )


def findings_of(document: dict[str, Any]) -> set[Triple]:
    return {(f["code"], f["path"], f["start_line"]) for f in document["findings"]}


def run_cli(
    args: Sequence[str],
    cwd: Path,
    *,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
) -> CliResult:
    """Run `python -m bot ARGS` in `cwd` with the virtualenv's interpreter."""
    done = subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env=env if env is not None else isolated_env(cwd),
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    return CliResult(
        args=list(args),
        returncode=done.returncode,
        stdout=done.stdout.decode("utf-8", "replace"),
        stderr=done.stderr.decode("utf-8", "replace"),
    )


def check_json(repo: GitRepo, *args: str) -> CliResult:
    """`check --format json ARGS` in `repo`: it must run to the end (exit code 0 or 1) without
    an internal error."""
    result = run_cli(["check", "--format", "json", *args], repo.path, env=repo.env)
    assert result.returncode in (0, 1), result
    assert not [n for n in result.notes() if n.get("kind") == "internal-error"], result
    return result


# --- the application the end-to-end tests build ------------------------------------------------


def db_py(
    url: str = "sqlite+aiosqlite://",
    *,
    expire_on_commit: bool = True,
    typed: bool = True,
    session_dep: bool = True,
) -> str:
    """The text of an `app/db.py`: an engine on `url`, the session factory `async_session`
    (`expire_on_commit=False` unless `expire_on_commit`), the dependency `get_session`
    (annotated `-> AsyncIterator[AsyncSession]` when `typed`) and, with `session_dep`, the alias
    `SessionDep = Annotated[AsyncSession, Depends(get_session)]`."""
    standard = ["from collections.abc import AsyncIterator"] if typed else []
    third_party = []
    if session_dep:
        standard.append("from typing import Annotated")
        third_party.append("from fastapi import Depends")
    session_class = "AsyncSession, " if typed or session_dep else ""
    third_party.append(
        f"from sqlalchemy.ext.asyncio import {session_class}async_sessionmaker, create_async_engine"
    )
    imports = "\n\n".join("\n".join(group) for group in (standard, third_party) if group)
    keywords = "" if expire_on_commit else ", expire_on_commit=False"
    returns = " -> AsyncIterator[AsyncSession]" if typed else ""
    text = (
        f"\n{imports}\n\n"
        f'engine = create_async_engine("{url}")\n'
        f"async_session = async_sessionmaker(engine{keywords})\n\n\n"
        f"async def get_session(){returns}:\n"
        "    async with async_session() as session:\n"
        "        yield session\n"
    )
    if session_dep:
        text += "\n\nSessionDep = Annotated[AsyncSession, Depends(get_session)]\n"
    return text


# The usual one: sqlite, instances expire on commit, `get_session` typed, `SessionDep`.
DB_PY = db_py()


def write_app(repo: GitRepo, files: Mapping[str, str]) -> None:
    """Write `files` (path -> text), with an empty `__init__.py` in every directory of the `app`
    package that holds one of them."""
    packages: set[str] = set()
    for path in files:
        parts = path.split("/")[:-1]
        if parts and parts[0] == "app":
            packages.update("/".join(parts[: depth + 1]) for depth in range(len(parts)))
    for package in sorted(packages):
        repo.write(f"{package}/__init__.py", "")
    for path, text in files.items():
        repo.write(path, text)


@pytest.fixture(scope="session")
def git_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HOME for git with nothing in it (no ~/.gitconfig)."""
    return tmp_path_factory.mktemp("home")


@pytest.fixture
def make_repo(tmp_path: Path, git_home: Path) -> Callable[..., GitRepo]:
    """A factory of fresh git repositories under this test's `tmp_path`."""
    count = 0

    def make(name: str | None = None, *, branch: str = "main") -> GitRepo:
        nonlocal count
        count += 1
        return GitRepo(tmp_path / (name or f"repo{count}"), git_home, branch=branch)

    return make


@pytest.fixture
def plain_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PlainRepo:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    return PlainRepo(tmp_path / "repo")


@pytest.fixture(scope="module")
def app_repo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, git_home: Path
) -> GitRepo:
    """The test module's `APP` files (path -> text, see `write_app`) in one commit, in a
    repository all the module's tests share: a test that changes it works on a `copy_to`."""
    repo = GitRepo(tmp_path_factory.mktemp(request.module.__name__) / "repo", git_home)
    write_app(repo, request.module.APP)
    repo.commit("app")
    return repo


@pytest.fixture(scope="session")
def sarif_schema() -> dict[str, Any]:
    if not SARIF_SCHEMA_PATH.is_file():
        pytest.skip(f"SARIF schema not available at {SARIF_SCHEMA_PATH}")
    return dict(json.loads(SARIF_SCHEMA_PATH.read_text(encoding="utf-8")))
