"""The config file and the skill a review uses, read from the pull request's base by default.

Reading them from the base commit means a pull request cannot switch a rule off or rewrite the
guideline it is judged by (`config-from = "head"` opts out). The files are read through
whatever holds that commit (the checkout on disk, the clone's git objects, or the contents API),
copied into a small scratch tree, and handed to the same loaders `asyncguard check` uses, so
discovery and validation behave exactly as they do locally.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from bot.config import CONFIG_FILENAME, PYPROJECT_FILENAME, Config, ConfigError, load_config
from bot.git import has_commit, list_files, read_blobs
from bot.github.api import GitHubApi, quote_path
from bot.github.sources import fetch_file, write_file
from bot.ruleinfo import RuleInfo
from bot.skill import MAX_SKILL_BYTES, SKILL_GLOBS, Skill, load_skill

__all__ = ["Policy", "RefReader", "load_policy", "reader_for"]

MAX_SKILL_DIRS = 20  # skill directories looked at per location


class RefReader(Protocol):
    """Read-only access to the files of one commit."""

    label: str  # for messages: "the base commit 1a2b3c4d5e6f"

    def read(self, path: str) -> bytes | None: ...

    def skill_files(self, directory: str) -> list[str]:
        """Paths `directory/*/SKILL.md` that may exist (reading them tells)."""
        ...


@dataclass(frozen=True)
class Policy:
    config: Config
    skill: Skill | None
    source: str  # which commit the config came from, for the summary


class DiskReader:
    def __init__(self, root: Path, label: str) -> None:
        self.root, self.label = root, label

    def read(self, path: str) -> bytes | None:
        try:
            target = self.root / path
            return target.read_bytes() if target.is_file() else None
        except OSError:
            return None

    def skill_files(self, directory: str) -> list[str]:
        base = self.root / directory
        try:
            found = sorted(p.relative_to(self.root).as_posix() for p in base.glob("*/SKILL.md"))
        except (OSError, ValueError):
            return []
        return found[:MAX_SKILL_DIRS]


class GitReader:
    def __init__(self, root: Path, commit: str, label: str) -> None:
        self.root, self.commit, self.label = root, commit, label

    def read(self, path: str) -> bytes | None:
        return read_blobs(self.commit, [path], self.root).get(path)

    def skill_files(self, directory: str) -> list[str]:
        prefix = f"{directory}/" if directory else ""
        files = list_files(self.commit, [directory or "."], self.root)
        found = [
            path
            for path in files
            if path.startswith(prefix)
            and len(PurePosixPath(path[len(prefix) :]).parts) == 2
            and path.endswith("/SKILL.md")
        ]
        return sorted(found)[:MAX_SKILL_DIRS]


class ApiReader:
    def __init__(self, api: GitHubApi, repository: str, commit: str, label: str) -> None:
        self.api, self.repository, self.commit, self.label = api, repository, commit, label

    def read(self, path: str) -> bytes | None:
        return fetch_file(self.api, self.repository, path, self.commit)

    def skill_files(self, directory: str) -> list[str]:
        listing = self.api.get_optional_json(
            f"/repos/{self.repository}/contents/{quote_path(directory)}",
            {"ref": self.commit},
        )
        if not isinstance(listing, list):
            return []
        names = sorted(
            str(entry["name"])
            for entry in listing
            if isinstance(entry, dict) and entry.get("type") == "dir" and entry.get("name")
        )
        return [f"{directory}/{name}/SKILL.md" for name in names[:MAX_SKILL_DIRS]]


def reader_for(
    api: GitHubApi,
    repository: str,
    commit: str,
    label: str,
    *,
    checkout: Path | None,
    checked_out: bool,
) -> RefReader:
    """The cheapest reader for `commit`: the work tree if it is checked out, else the clone's
    objects if it has the commit, else the API."""
    if checkout is not None and checked_out:
        return DiskReader(checkout, label)
    if checkout is not None and has_commit(commit, checkout):
        return GitReader(checkout, commit, label)
    return ApiReader(api, repository, commit, label)


def load_policy(
    reader: RefReader,
    rules: list[RuleInfo],
    *,
    repo_root: Path,
    scratch: Path,
    working_directory: str = "",
    config_path: str | None = None,
) -> Policy:
    """The config and skill for a review of the files under `repo_root/working_directory`.

    `repo_root` is where the reviewed files are on disk: the config's root is moved there, so
    its globs apply to those files. Raises ConfigError, its message naming the file and commit.
    """
    view = scratch / "policy"
    (view / ".git").mkdir(parents=True, exist_ok=True)  # discovery stops at the repository root
    start = _clean(working_directory)
    wanted = (
        [_clean(config_path)]
        if config_path
        else [
            posixpath.join(directory, name) if directory else name
            for directory in _up_from(start)
            for name in (CONFIG_FILENAME, PYPROJECT_FILENAME)
        ]
    )
    for path in wanted:
        data = reader.read(path)
        if data is not None:
            write_file(view, path, data)
    (view / start).mkdir(parents=True, exist_ok=True)
    try:
        explicit = view / _clean(config_path) if config_path else None
        config = load_config(view / start, rules, explicit=explicit)
    except ConfigError as error:
        message = str(error)
        # Loaders show a path relative to the working directory when it is inside it.
        for shown in {str(view), os.path.relpath(view)}:
            message = message.replace(f"{shown}/", "")
        raise ConfigError(f"{message} (read from {reader.label})") from None
    config_dir = _relative_dir(config.root, view)
    config = config.model_copy(update={"root": repo_root / config_dir})
    skill = _load_skill(reader, view, config_dir, config.skill)
    return Policy(config, skill, reader.label)


def _load_skill(
    reader: RefReader, view: Path, config_dir: str, configured: str | None
) -> Skill | None:
    """Copy the candidate skill files of `config_dir` into the view, then load as `check` does."""
    if configured is not None and configured.strip():
        candidates = [posixpath.normpath(posixpath.join(config_dir, configured))]
    else:
        candidates = []
        for pattern in SKILL_GLOBS:
            location = posixpath.dirname(posixpath.dirname(pattern))  # ".claude/skills"
            directory = posixpath.join(config_dir, location) if config_dir else location
            candidates.extend(reader.skill_files(directory))
    for path in candidates:
        if path.startswith("../"):
            continue
        data = reader.read(path)
        if data is not None and len(data) <= MAX_SKILL_BYTES:
            write_file(view, path, data)
    return load_skill(view / config_dir if config_dir else view, configured)


def _up_from(start: str) -> list[str]:
    """`start` and each parent up to the repository root ("")."""
    directories = []
    current = start
    while True:
        directories.append(current)
        if not current:
            return directories
        current = posixpath.dirname(current)


def _clean(path: str | None) -> str:
    cleaned = posixpath.normpath((path or "").strip().strip("/")) if path else ""
    if cleaned in (".", ""):
        return ""
    if cleaned.startswith("../") or cleaned == "..":
        raise ConfigError(f"{path!r} is outside the repository")
    return cleaned


def _relative_dir(root: Path, view: Path) -> str:
    try:
        relative = root.resolve().relative_to(view.resolve()).as_posix()
    except ValueError:
        return ""
    return "" if relative == "." else relative
