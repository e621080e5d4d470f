"""The repository index: facts from files a change did not touch.

A fast scan of the checkout: list the Python files, read them, keep only those whose text has a
module-level line that can define a session factory or a session type alias (a regex, no
parsing), and run the shared semantic model over just those. On a 400k-line code base that
parses a handful of files.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

import libcst as cst

from bot.facts import RepoFacts
from bot.semantics import BindingKind, Semantics
from bot.walker import walk

# Directories never worth reading (as ruff's default excludes).
SKIPPED_DIRS = frozenset(
    {
        ".bzr", ".direnv", ".eggs", ".git", ".git-rewrite", ".hg", ".mypy_cache", ".nox", ".pants.d",
        ".pytype", ".ruff_cache", ".svn", ".tox", ".venv", "__pypackages__", "_build", "buck-out",
        "dist", "node_modules", "venv", "__pycache__", ".pytest_cache", "site-packages",
    }
)  # fmt: skip

_DEFINITION = re.compile(
    rb"^(?:\w+\s*(?::[^=\n]*)?=\s*(?:[\w.]+\.)?(?:async_)?sessionmaker\s*\("
    rb"|\w+\s*(?::\s*(?:[\w.]+\.)?TypeAlias\s*)?=\s*(?:[\w.]+\.)?Annotated\s*\[\s*(?:[\w.]+\.)?AsyncSession\b"
    rb"|type\s+\w+\s*=\s*(?:[\w.]+\.)?Annotated\s*\[\s*(?:[\w.]+\.)?AsyncSession\b)",
    re.MULTILINE,
)
MAX_FILE_BYTES = 1024 * 1024


def module_name_for(relative_path: str) -> str:
    """`app/api/deps.py` -> `app.api.deps`; `pkg/__init__.py` -> `pkg`."""
    parts = relative_path.replace(os.sep, "/").removesuffix(".py").split("/")
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(p for p in parts if p)


def iter_python_files(root: Path, excluded: Iterable[str] = ()) -> Iterator[Path]:
    skipped = SKIPPED_DIRS | set(excluded)
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if d not in skipped and not d.endswith(".egg-info")
        )
        for filename in sorted(filenames):
            if filename.endswith(".py"):
                yield Path(directory, filename)


def facts_from_source(module_name: str, source: str) -> RepoFacts:
    """Session factories and session aliases bound at module level of one file."""
    try:
        module = cst.parse_module(source)
    except (cst.ParserSyntaxError, RecursionError):
        return RepoFacts()
    semantics = Semantics(module_name, RepoFacts())
    walk(module, semantics.enter, semantics.leave)
    factories = set()
    aliases = set()
    for name, binding in semantics.module_scope.bindings.items():
        qualname = f"{module_name}.{name}" if module_name else name
        if binding.kind is BindingKind.FACTORY:
            factories.add(qualname)
        elif binding.kind is BindingKind.SESSION_ALIAS:
            aliases.add(qualname)
    return RepoFacts.build(factories, aliases)


def candidate_files(root: Path) -> Iterator[Path]:
    """Python files that mention a session factory or AsyncSession at all.

    In a git checkout `git grep` answers in milliseconds (measured: 25 ms against 380 ms for
    reading every file of a 1,800-file code base in Python); elsewhere we read the files.
    """
    listed = _git_grep(root)
    if listed is not None:
        yield from listed
        return
    for path in iter_python_files(root):
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                continue
            with path.open("rb") as handle:
                data = handle.read()
        except OSError:
            continue
        if b"sessionmaker" in data or b"AsyncSession" in data:
            yield path


def _git_grep(root: Path) -> list[Path] | None:
    if not (root / ".git").exists():
        return None
    command = [
        "git", "-c", "core.quotepath=off", "grep", "-l", "-I", "-z", "--untracked", "-E",
        "sessionmaker|AsyncSession", "--", "*.py",
    ]  # fmt: skip
    try:
        done = subprocess.run(command, cwd=root, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode not in (0, 1):  # 1: nothing matched
        return None
    names = [n for n in done.stdout.decode("utf-8", "surrogateescape").split("\0") if n]
    return [root / name for name in names if not set(Path(name).parts) & SKIPPED_DIRS]


def build_index(root: Path) -> RepoFacts:
    """Scan the checkout under `root` for session factories and session type aliases."""
    facts = RepoFacts()
    for path in candidate_files(root):
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        if not _DEFINITION.search(data):
            continue
        relative = path.relative_to(root).as_posix()
        facts = facts.merged(
            facts_from_source(module_name_for(relative), data.decode("utf-8", "replace"))
        )
    return facts
