"""Facts about the repository that a single file cannot show.

Which names are session factories or session type aliases is decided by files the pull request
may not touch (`app/db.py`). The repository index (`bot.repo_index`) fills this in from the
checkout; config can add to it; with neither, rules only know what the checked files show.
Plain data, so it crosses into worker processes cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def dotted_suffix_match(known: str, qualname: str) -> bool:
    """`server.app.db.Session` matches an import of `app.db.Session`.

    Index entries are named after file paths, which may carry a source-root prefix (`src/`,
    `server/`) that imports leave out, so a match on whole trailing segments is what we want.
    """
    return known == qualname or known.endswith("." + qualname) or qualname.endswith("." + known)


# FastAPI versions whose yield-dependencies exit before the response is sent (and before
# background tasks run): 0.106.0 up to, not including, 0.118.0 (measured in research/truth.md).
EARLY_EXIT_FASTAPI = ((0, 106, 0), (0, 118, 0))


@dataclass(frozen=True)
class RepoFacts:
    session_factories: frozenset[str] = frozenset()
    session_aliases: frozenset[str] = frozenset()
    # Module-level `create_async_engine(...)` bindings (by qualified name).
    async_engines: frozenset[str] = frozenset()
    # Factories (by qualified name) created with expire_on_commit=False.
    no_expire_factories: frozenset[str] = frozenset()
    # Anywhere in the repository (outside tests): a factory or session with expire_on_commit=False.
    expire_disabled_somewhere: bool = False
    # Module-level undecorated `async def`s by qualified name, and the bare names of every other
    # module-level function (a name that is both somewhere is trusted as neither).
    async_functions: frozenset[str] = frozenset()
    sync_functions: frozenset[str] = frozenset()
    # Names used as `Depends(name)` anywhere in the repository (last segment).
    dependency_names: frozenset[str] = frozenset()
    # An exception handler for NoResultFound (or a SQLAlchemy base of it) is registered.
    no_result_handler: bool = False
    # The FastAPI version the project pins, when it pins one exactly ("0.110.0").
    fastapi_version: str | None = None
    # Last segments of the factory and alias names: cheap tokens for the text prefilter.
    tokens: frozenset[str] = field(default=frozenset(), compare=False)

    @classmethod
    def build(
        cls,
        factories: set[str] | frozenset[str],
        aliases: set[str] | frozenset[str],
        **others: Any,
    ) -> RepoFacts:
        names = {q.rsplit(".", 1)[-1] for q in (*factories, *aliases)}
        return cls(frozenset(factories), frozenset(aliases), tokens=frozenset(names), **others)

    def merged(self, other: RepoFacts) -> RepoFacts:
        return RepoFacts.build(
            self.session_factories | other.session_factories,
            self.session_aliases | other.session_aliases,
            async_engines=self.async_engines | other.async_engines,
            async_functions=self.async_functions | other.async_functions,
            sync_functions=self.sync_functions | other.sync_functions,
            no_expire_factories=self.no_expire_factories | other.no_expire_factories,
            expire_disabled_somewhere=self.expire_disabled_somewhere
            or other.expire_disabled_somewhere,
            dependency_names=self.dependency_names | other.dependency_names,
            no_result_handler=self.no_result_handler or other.no_result_handler,
            fastapi_version=self.fastapi_version or other.fastapi_version,
        )

    def is_session_factory(self, qualname: str) -> bool:
        # Only names with a module part can come from another file; a bare name is local.
        return "." in qualname and any(
            dotted_suffix_match(k, qualname) for k in self.session_factories
        )

    def is_session_alias(self, qualname: str) -> bool:
        return "." in qualname and any(
            dotted_suffix_match(k, qualname) for k in self.session_aliases
        )

    def is_async_engine(self, qualname: str) -> bool:
        return "." in qualname and any(dotted_suffix_match(k, qualname) for k in self.async_engines)

    def is_async_function(self, qualname: str) -> bool:
        """A module-level `async def` in another file, and nothing else by that name."""
        if "." not in qualname:
            return False
        if not any(dotted_suffix_match(k, qualname) for k in self.async_functions):
            return False
        return qualname.rsplit(".", 1)[-1] not in self.sync_functions

    def factory_expires_on_commit(self, qualname: str) -> bool | None:
        """What a factory from another file does on commit; None when it is not known."""
        if any(dotted_suffix_match(k, qualname) for k in self.no_expire_factories):
            return False
        if self.is_session_factory(qualname):
            return True
        return None

    def expires_on_commit_by_default(self) -> bool | None:
        """For a session whose factory is unknown: what the repository's factories do.

        False when any factory sets expire_on_commit=False (a project usually has one factory);
        True when factories are known and none does; None when nothing is known.
        """
        if self.expire_disabled_somewhere or self.no_expire_factories:
            return False
        if self.session_factories:
            return True
        return None

    def fastapi_exits_dependencies_early(self) -> bool:
        """The pinned FastAPI closes yield-dependencies before background tasks run."""
        version = _version_tuple(self.fastapi_version)
        if version is None:
            return False
        low, high = EARLY_EXIT_FASTAPI
        return low <= version < high


def _version_tuple(text: str | None) -> tuple[int, int, int] | None:
    if not text:
        return None
    parts = text.strip().split(".")
    try:
        numbers = [int(p) for p in parts[:3]]
    except ValueError:
        return None
    while len(numbers) < 3:
        numbers.append(0)
    return numbers[0], numbers[1], numbers[2]
