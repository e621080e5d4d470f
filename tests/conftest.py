"""Shared fixtures: throwaway git repositories and a runner for the real `asyncguard` CLI.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SARIF_SCHEMA_PATH = (
    Path(__file__).resolve().parents[2] / "shared" / "reference" / "sarif-schema-2.1.0.json"
)
CLI_TIMEOUT = 60

# (code, path, start line): what the end-to-end tests compare.
Triple = tuple[str, str, int]


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
        command = [
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "core.autocrlf=false",
            *args,
        ]
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


@pytest.fixture(scope="session")
def sarif_schema() -> dict[str, Any]:
    if not SARIF_SCHEMA_PATH.is_file():
        pytest.skip(f"SARIF schema not available at {SARIF_SCHEMA_PATH}")
    return dict(json.loads(SARIF_SCHEMA_PATH.read_text(encoding="utf-8")))
