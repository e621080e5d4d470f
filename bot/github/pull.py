"""A pull request as the review needs it: which commits, which repositories, which state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.github.api import GitHubApi, GitHubError

__all__ = ["PullRequest", "fetch_pull_request", "split_repository"]


@dataclass(frozen=True)
class PullRequest:
    repository: str  # "owner/name" of the base repository, where the review goes
    number: int
    head_sha: str
    base_sha: str
    base_ref: str
    head_repository: str | None  # None when the fork was deleted
    state: str = "open"
    draft: bool = False
    html_url: str = ""

    @property
    def is_fork(self) -> bool:
        """Opened from another repository: on `pull_request` its token cannot write."""
        return self.head_repository != self.repository

    @property
    def api_path(self) -> str:
        return f"/repos/{self.repository}/pulls/{self.number}"

    @classmethod
    def from_json(cls, data: Mapping[str, Any], repository: str | None = None) -> PullRequest:
        """From the REST answer of `GET /repos/{owner}/{repo}/pulls/{n}` (or an event's
        `pull_request` object, which has the same shape)."""
        try:
            head, base = data["head"], data["base"]
            base_repo = (base.get("repo") or {}).get("full_name") or repository
            head_repo = (head.get("repo") or {}).get("full_name")
            if not base_repo:
                raise KeyError("base.repo.full_name")
            return cls(
                repository=str(base_repo),
                number=int(data["number"]),
                head_sha=str(head["sha"]),
                base_sha=str(base["sha"]),
                base_ref=str(base.get("ref") or ""),
                head_repository=str(head_repo) if head_repo else None,
                state=str(data.get("state") or "open"),
                draft=bool(data.get("draft")),
                html_url=str(data.get("html_url") or ""),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise GitHubError(f"the pull request data is missing a field ({error})") from None


def fetch_pull_request(api: GitHubApi, repository: str, number: int) -> PullRequest:
    data = api.get_json(f"/repos/{repository}/pulls/{number}")
    if not isinstance(data, dict):
        raise GitHubError(f"GitHub answered pull request {repository}#{number} with no object")
    return PullRequest.from_json(data, repository)


def split_repository(value: str) -> tuple[str, str]:
    """ "owner/name" -> ("owner", "name"); GitHubError on anything else."""
    owner, slash, name = value.strip().partition("/")
    if not slash or not owner or not name or "/" in name:
        raise GitHubError(f"repository {value!r} is not in the form OWNER/NAME")
    return owner, name
