"""Facts about the repository that a single file cannot show.

Which names are session factories or session type aliases is decided by files the pull request
may not touch (`app/db.py`). The repository index (`bot.repo_index`) fills this in from the
checkout; config can add to it; with neither, rules only know what the checked files show.
Plain data, so it crosses into worker processes cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def dotted_suffix_match(known: str, qualname: str) -> bool:
    """`server.app.db.Session` matches an import of `app.db.Session`.

    Index entries are named after file paths, which may carry a source-root prefix (`src/`,
    `server/`) that imports leave out, so a match on whole trailing segments is what we want.
    """
    return known == qualname or known.endswith("." + qualname) or qualname.endswith("." + known)


@dataclass(frozen=True)
class RepoFacts:
    session_factories: frozenset[str] = frozenset()
    session_aliases: frozenset[str] = frozenset()
    # Last segments of the names above: cheap tokens for the text prefilter.
    tokens: frozenset[str] = field(default=frozenset(), compare=False)

    @classmethod
    def build(
        cls, factories: set[str] | frozenset[str], aliases: set[str] | frozenset[str]
    ) -> RepoFacts:
        names = {q.rsplit(".", 1)[-1] for q in (*factories, *aliases)}
        return cls(frozenset(factories), frozenset(aliases), frozenset(names))

    def merged(self, other: RepoFacts) -> RepoFacts:
        return RepoFacts.build(
            self.session_factories | other.session_factories,
            self.session_aliases | other.session_aliases,
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
