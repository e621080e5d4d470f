"""The repository index: facts from files a change did not touch.

Rules need to know things a single file cannot show: which names are session factories and
session type aliases (`app/db.py`), whether a factory sets `expire_on_commit=False`, which
functions are FastAPI dependencies, whether the app registers a handler for `NoResultFound`,
which FastAPI version the project pins.

A fast scan of the checkout: list the Python files that mention any of these at all (`git grep`
in a checkout, else a read of every file), run cheap regular expressions over them, and parse
with libcst only the few files whose text has a module-level factory or alias definition.
Per-file results are cached by content hash in `.asyncguard-cache/`, so a second run reads
but does not parse again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import libcst as cst

from bot.facts import RepoFacts
from bot.paths import is_test_path
from bot.semantics import BindingKind, Semantics
from bot.walker import walk

# Directories never worth reading (as ruff's default excludes).
SKIPPED_DIRS = frozenset(
    {
        ".bzr", ".direnv", ".eggs", ".git", ".git-rewrite", ".hg", ".mypy_cache", ".nox", ".pants.d",
        ".pytype", ".ruff_cache", ".svn", ".tox", ".venv", "__pypackages__", "_build", "buck-out",
        "dist", "node_modules", "venv", "__pycache__", ".pytest_cache", "site-packages",
        ".asyncguard-cache",
    }
)  # fmt: skip
MAX_FILE_BYTES = 1024 * 1024
CACHE_DIR = ".asyncguard-cache"
CACHE_VERSION = 3

# A file is read only if it contains one of these.
_TOKENS = ("sessionmaker", "AsyncSession", "expire_on_commit", "Depends", "exception_handler")
_GREP_PATTERN = "|".join(_TOKENS)

_DEFINITION = re.compile(
    r"^(?:\w+\s*(?::[^=\n]*)?=\s*(?:[\w.]+\.)?(?:(?:async_)?sessionmaker|create_async_engine)\s*\("
    r"|\w+\s*(?::\s*(?:[\w.]+\.)?TypeAlias\s*)?=\s*(?:[\w.]+\.)?Annotated\s*\[\s*(?:[\w.]+\.)?AsyncSession\b"
    r"|type\s+\w+\s*=\s*(?:[\w.]+\.)?Annotated\s*\[\s*(?:[\w.]+\.)?AsyncSession\b)",
    re.MULTILINE,
)
_EXPIRE_OFF = re.compile(r"expire_on_commit\s*=\s*False")
_DEPENDS = re.compile(r"Depends\(\s*(?:dependency\s*=\s*)?(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*)")
_NO_RESULT_HANDLER = re.compile(
    r"(?:exception_handler|add_exception_handler)\(\s*(?:[\w.]+\.)?"
    r"(?:NoResultFound|InvalidRequestError|SQLAlchemyError)\b"
)
_TEST_PATH = re.compile(
    r"(?:^|/)(?:tests?|testing)/|(?:^|/)(?:test_[^/]*|[^/]*_test|conftest)\.py$"
)


@dataclass
class FileFacts:
    """What one file contributes; plain data so it can be cached as JSON."""

    factories: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    no_expire_factories: list[str] = field(default_factory=list)
    engines: list[str] = field(default_factory=list)
    expire_disabled: bool = False
    dependencies: list[str] = field(default_factory=list)
    no_result_handler: bool = False


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


# ---------------------------------------------------------------------- one file
def facts_from_source(relative_path: str, source: str) -> FileFacts:
    facts = FileFacts()
    is_test = is_test_path(relative_path)
    if not is_test:
        facts.expire_disabled = bool(_EXPIRE_OFF.search(source))
        facts.no_result_handler = bool(_NO_RESULT_HANDLER.search(source))
    if "Depends" in source:
        facts.dependencies = sorted(set(_DEPENDS.findall(source)))
    if _DEFINITION.search(source):
        _add_definitions(facts, module_name_for(relative_path), source)
    return facts


def _add_definitions(facts: FileFacts, module_name: str, source: str) -> None:
    """Session factories and session aliases bound at module level, found by the semantic model."""
    try:
        module = cst.parse_module(source)
    except (cst.ParserSyntaxError, RecursionError):
        return
    semantics = Semantics(module_name, RepoFacts(), module)
    walk(module, semantics.enter, semantics.leave)
    for name, binding in semantics.module_scope.bindings.items():
        qualname = f"{module_name}.{name}" if module_name else name
        if binding.kind is BindingKind.FACTORY:
            facts.factories.append(qualname)
            if binding.expire_on_commit is False:
                facts.no_expire_factories.append(qualname)
        elif binding.kind is BindingKind.SESSION_ALIAS:
            facts.aliases.append(qualname)
        elif binding.kind is BindingKind.ENGINE:
            facts.engines.append(qualname)


# ---------------------------------------------------------------------- the checkout
def candidate_files(root: Path) -> Iterator[Path]:
    """Python files that mention anything the index looks for.

    In a git checkout `git grep` answers in milliseconds (measured: 25 ms against 380 ms for
    reading every file of a 1,800-file code base in Python); elsewhere we read the files.
    """
    listed = _git_grep(root)
    if listed is not None:
        yield from listed
        return
    tokens = tuple(t.encode() for t in _TOKENS)
    for path in iter_python_files(root):
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        if any(token in data for token in tokens):
            yield path


def _git_grep(root: Path) -> list[Path] | None:
    if not (root / ".git").exists():
        return None
    command = [
        "git", "-c", "core.quotepath=off", "grep", "-l", "-I", "-z", "--untracked", "-E",
        _GREP_PATTERN, "--", "*.py",
    ]  # fmt: skip
    try:
        done = subprocess.run(command, cwd=root, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode not in (0, 1):  # 1: nothing matched
        return None
    names = [n for n in done.stdout.decode("utf-8", "surrogateescape").split("\0") if n]
    return [root / name for name in names if not set(Path(name).parts) & SKIPPED_DIRS]


def build_index(root: Path, *, use_cache: bool = True) -> RepoFacts:
    """Scan the checkout under `root`."""
    cache = _Cache(root) if use_cache else None
    merged = FileFacts()
    for path in candidate_files(root):
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        relative = path.relative_to(root).as_posix()
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        facts = cache.get(relative, digest) if cache else None
        if facts is None:
            facts = facts_from_source(relative, data.decode("utf-8", "replace"))
            if cache:
                cache.put(relative, digest, facts)
        _merge(merged, facts)
    if cache:
        cache.save()
    return RepoFacts.build(
        set(merged.factories),
        set(merged.aliases),
        async_engines=frozenset(merged.engines),
        no_expire_factories=frozenset(merged.no_expire_factories),
        expire_disabled_somewhere=merged.expire_disabled,
        dependency_names=frozenset(merged.dependencies),
        no_result_handler=merged.no_result_handler,
        fastapi_version=pinned_fastapi_version(root),
        **module_functions(root),
    )


def _merge(into: FileFacts, facts: FileFacts) -> None:
    into.factories += facts.factories
    into.aliases += facts.aliases
    into.no_expire_factories += facts.no_expire_factories
    into.engines += facts.engines
    into.expire_disabled = into.expire_disabled or facts.expire_disabled
    into.dependencies += facts.dependencies
    into.no_result_handler = into.no_result_handler or facts.no_result_handler


class _Cache:
    """Per-file facts by content hash. Any problem with the cache just means no cache."""

    def __init__(self, root: Path) -> None:
        self.path = root / CACHE_DIR / "index.json"
        self.entries: dict[str, dict[str, object]] = {}
        self.dirty = False
        try:
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict) and loaded.get("version") == CACHE_VERSION:
                self.entries = loaded.get("files", {})
        except (OSError, ValueError):
            pass

    def get(self, relative: str, digest: str) -> FileFacts | None:
        entry = self.entries.get(relative)
        if not isinstance(entry, dict) or entry.get("hash") != digest:
            return None
        try:
            return FileFacts(**entry["facts"])  # type: ignore[arg-type]
        except (TypeError, KeyError):
            return None

    def put(self, relative: str, digest: str, facts: FileFacts) -> None:
        self.entries[relative] = {"hash": digest, "facts": asdict(facts)}
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        try:
            self.path.parent.mkdir(exist_ok=True)
            (self.path.parent / ".gitignore").write_text("*\n", encoding="utf-8")
            payload = json.dumps({"version": CACHE_VERSION, "files": self.entries})
            with tempfile.NamedTemporaryFile(
                "w", dir=self.path.parent, delete=False, encoding="utf-8"
            ) as handle:
                handle.write(payload)
            os.replace(handle.name, self.path)
        except OSError:
            pass


# ---------------------------------------------------------------------- module-level functions
_FUNCTION = re.compile(r"^(async )?def ([A-Za-z_]\w*)")


def module_functions(root: Path) -> dict[str, frozenset[str]]:
    """Qualified names of module-level `async def`s that are not decorated (a decorator such
    as `@asynccontextmanager` changes what a call returns), and the bare names of every other
    module-level function: a name that is both somewhere is trusted as neither."""
    async_names: set[str] = set()
    other_names: set[str] = set()
    for relative, lines in _function_lines(root):
        module = module_name_for(relative)
        previous = ""
        for line in lines:
            match = _FUNCTION.match(line)
            if match:
                if match.group(1) and not previous.startswith(("@", ")")):
                    async_names.add(f"{module}.{match.group(2)}" if module else match.group(2))
                else:
                    other_names.add(match.group(2))
            if line.strip():
                previous = line.rstrip()
    return {"async_functions": frozenset(async_names), "sync_functions": frozenset(other_names)}


def _function_lines(root: Path) -> Iterator[tuple[str, list[str]]]:
    """(relative path, lines) covering each top-level def and the lines before it."""
    listed = _git_function_lines(root)
    if listed is not None:
        yield from listed.items()
        return
    for path in iter_python_files(root):
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if "def " in text:
            yield path.relative_to(root).as_posix(), text.splitlines()


def _git_function_lines(root: Path) -> dict[str, list[str]] | None:
    """Top-level `async def`s with the three lines before each (for decorators), and every
    plain top-level `def` line, from two `git grep`s (about 0.15 s on a 1,800-file code base)."""
    if not (root / ".git").exists():
        return None
    found: dict[str, list[str]] = {}
    for pattern, context in (("^async def [A-Za-z_]", ["-B3"]), ("^def [A-Za-z_]", [])):
        command = [
            "git", "-c", "core.quotepath=off", "grep", "-I", "--untracked", "--null", *context,
            "-E", pattern, "--", "*.py",
        ]  # fmt: skip
        try:
            done = subprocess.run(command, cwd=root, capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        if done.returncode not in (0, 1):
            return None
        for raw in done.stdout.decode("utf-8", "surrogateescape").splitlines():
            name, separator, text = raw.partition("\0")
            if not separator or set(Path(name).parts) & SKIPPED_DIRS:
                continue  # `--` between groups, or a skipped directory
            found.setdefault(name, []).append(text)
            if not context:
                found[name].append("")  # a plain def: never read as a decorator line
    return found


# ---------------------------------------------------------------------- FastAPI version
_LOCK_ENTRY = re.compile(r'name\s*=\s*"fastapi"\s*\n\s*version\s*=\s*"([^"]+)"', re.IGNORECASE)
_EXACT_PIN = re.compile(
    r"""(?:^|["'\s,\[])fastapi(?:\[[^\]]*\])?\s*==\s*([0-9][0-9.]*)""", re.IGNORECASE | re.MULTILINE
)
_PIPFILE_LOCK = re.compile(r'"fastapi"\s*:\s*\{[^}]*"version"\s*:\s*"==([0-9.]+)"', re.IGNORECASE)


def pinned_fastapi_version(root: Path) -> str | None:
    """The FastAPI version the project locks or pins exactly, if it does.

    Looks in the root and, for monorepos (`server/pyproject.toml`), one level below it.
    """
    found = _pinned_in(root)
    if found is not None:
        return found
    try:
        subdirectories = sorted(
            p for p in root.iterdir() if p.is_dir() and p.name not in SKIPPED_DIRS
        )
    except OSError:
        return None
    for directory in subdirectories:
        found = _pinned_in(directory)
        if found is not None:
            return found
    return None


def _pinned_in(root: Path) -> str | None:
    for name, pattern in (
        ("uv.lock", _LOCK_ENTRY),
        ("poetry.lock", _LOCK_ENTRY),
        ("pdm.lock", _LOCK_ENTRY),
        ("Pipfile.lock", _PIPFILE_LOCK),
        ("pyproject.toml", _EXACT_PIN),
        ("requirements.txt", _EXACT_PIN),
        ("requirements/base.txt", _EXACT_PIN),
        ("requirements/prod.txt", _EXACT_PIN),
        ("setup.cfg", _EXACT_PIN),
    ):
        try:
            text = (root / name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        match = pattern.search(text)
        if match:
            return match.group(1)
    return None
