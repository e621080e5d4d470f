"""The bundled example pull request as a real git repository, for end-to-end tests.

`main` holds the example app before the change (`examples/change.diff` reversed), `feature` the
app after it: three findings (AG101, AG201, AG501). Git runs without the user's configuration,
so a developer's settings cannot change what the tests see.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples"


def git(repo: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    done = subprocess.run(
        ["git", "-c", "user.email=dev@example.com", "-c", "user.name=Dev", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def example_repo(path: Path, base_files: dict[str, str] | None = None) -> Path:
    """Make the repository at `path` (which must not exist); `base_files` (path -> text) are
    added to the base commit. Leaves `feature` checked out."""
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    shutil.copytree(EXAMPLE / "app", path / "app")
    git(path, "apply", "-R", str(EXAMPLE / "change.diff"))
    for name, text in (base_files or {}).items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "base")
    git(path, "checkout", "-q", "-b", "feature")
    git(path, "apply", str(EXAMPLE / "change.diff"))
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "change")
    return path
