"""Carry out a ReviewPlan on GitHub: one review, then the edits that mark fixed comments.

The writes are few and each is made safe against GitHub's failure modes:

- The review is one `POST .../reviews`. GitHub rejects the whole review with a 422 when any
  comment's anchor is wrong. The plan checks anchors against the hunks first; if GitHub still
  refuses, the refused comments are found by splitting the list in halves and trying each half
  as a *pending* review (deleted at once; pending reviews notify no one), then the review is
  posted with the rest and the refused ones listed in its body.
- A 5xx or a lost connection may hide a stored review (GitHub does store it sometimes), so the
  poster never just sends it again: it reads the reviews back and looks for this run's marker
  (a hash of the request in the body) first, and re-sends only when the review is not there.
- Marking a comment fixed is a PATCH of its body, which is idempotent and safely repeated.
- When everything reported is fixed, asyncguard's earlier REQUEST_CHANGES reviews are dismissed
  so they stop blocking the merge.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.comments import parse_marker
from bot.github.api import GitHubApi, GitHubError, UncertainWrite
from bot.github.pull import PullRequest
from bot.review_plan import (
    REVIEW_MARKER,
    ExistingComment,
    PlannedComment,
    ReviewPlan,
    listed_fingerprints,
    mark_resolved,
)

__all__ = ["Existing", "PostResult", "post_review", "read_existing"]

RECONCILE_ATTEMPTS = 3
MAX_PROBES = 64  # pending reviews tried while looking for refused comments
DISMISS_MESSAGE = "asyncguard: every problem this review reported is fixed."


@dataclass
class Existing:
    """What earlier runs left on the pull request."""

    comments: list[ExistingComment]  # asyncguard's review comments (marker in the body)
    listed: set[str]  # fingerprints earlier review bodies listed in their tables
    reviews: list[dict[str, Any]]  # asyncguard's reviews


@dataclass
class PostResult:
    review: dict[str, Any] | None = None  # GitHub's answer to the review POST
    comments: int = 0  # inline comments in the posted review
    refused: int = 0  # comments GitHub refused, listed in the body instead
    resolved: int = 0  # earlier comments marked fixed
    dismissed: int = 0  # earlier REQUEST_CHANGES reviews dismissed

    @property
    def review_id(self) -> int | None:
        value = (self.review or {}).get("id")
        return value if isinstance(value, int) else None

    @property
    def review_url(self) -> str:
        return str((self.review or {}).get("html_url") or "")


def read_existing(api: GitHubApi, pull: PullRequest) -> Existing:
    """asyncguard's comments and reviews on `pull`, recognised by their hidden markers."""
    comments = []
    for item in api.paginate(f"{pull.api_path}/comments"):
        body = item.get("body") or ""
        if isinstance(item.get("id"), int) and parse_marker(body) is not None:
            line = item.get("line")
            comments.append(
                ExistingComment(
                    id=item["id"],
                    path=str(item.get("path") or ""),
                    line=line if isinstance(line, int) else None,
                    body=body,
                )
            )
    reviews = [r for r in api.paginate(f"{pull.api_path}/reviews") if _is_ours(r)]
    listed: set[str] = set()
    for review in reviews:
        listed |= listed_fingerprints(str(review.get("body") or ""))
    return Existing(comments, listed, reviews)


def post_review(
    api: GitHubApi, pull: PullRequest, plan: ReviewPlan, existing: Existing
) -> PostResult:
    """Post `plan` on `pull`. Raises WriteForbidden when the token cannot write (forks) and
    GitHubError when GitHub refuses for good."""
    result = PostResult()
    if plan.needs_review:
        placeable, unplaceable = plan.placeable()
        request = plan.request_with(placeable, unplaceable, pull.head_sha)
        try:
            result.review = _create(api, pull, request)
            result.comments = len(placeable)
        except GitHubError as error:
            if error.status != 422 or not placeable or isinstance(error, UncertainWrite):
                raise
            refused = _refused(api, pull, placeable)
            if not refused:
                raise  # every comment passes on its own: the 422 is about something else
            kept = [c for c in placeable if c not in refused]
            request = plan.request_with(kept, unplaceable, pull.head_sha, refused=refused)
            result.review = _create(api, pull, request)
            result.comments, result.refused = len(kept), len(refused)
    bodies = {comment.id: comment.body for comment in existing.comments}
    for comment_id in plan.resolved:
        if comment_id in bodies and _edit(api, pull, comment_id, mark_resolved(bodies[comment_id])):
            result.resolved += 1
    if plan.all_fixed:
        result.dismissed = _dismiss_blocking(api, pull, existing.reviews)
    return result


# -- creating the review --------------------------------------------------------------------


def _create(api: GitHubApi, pull: PullRequest, request: dict[str, Any]) -> dict[str, Any] | None:
    """POST the review once; after an uncertain failure, look before posting again."""
    token = _run_token(request)
    request = {**request, "body": f"{request['body']}\n{token}"}
    path = f"{pull.api_path}/reviews"
    delay = 2.0
    for attempt in range(RECONCILE_ATTEMPTS + 1):
        try:
            answer = api.write("POST", path, request)
            return answer if isinstance(answer, dict) else None
        except UncertainWrite:
            if attempt == RECONCILE_ATTEMPTS:
                raise
            api.sleep(delay)
            delay *= 2
            stored = _find_review(api, pull, token)
            if stored is not None:
                return stored
    raise AssertionError("unreachable")  # pragma: no cover


def _run_token(request: dict[str, Any]) -> str:
    """A hidden line naming this exact request, to recognise it among the stored reviews."""
    digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:20]
    return f"<!-- asyncguard:run={digest} -->"


def _find_review(api: GitHubApi, pull: PullRequest, token: str) -> dict[str, Any] | None:
    for review in api.paginate(f"{pull.api_path}/reviews"):
        if token in str(review.get("body") or ""):
            return dict(review)
    return None


def _refused(
    api: GitHubApi, pull: PullRequest, comments: Sequence[PlannedComment]
) -> list[PlannedComment]:
    """The comments GitHub will not take, found by trying halves as pending reviews."""
    _delete_pending(api, pull)  # GitHub allows one pending review per user and pull request
    probes = 0
    refused: list[PlannedComment] = []
    stack = [list(comments)]
    while stack:
        group = stack.pop()
        probes += 1
        if probes > MAX_PROBES:
            refused.extend(group)
            continue
        try:
            pending = api.write(
                "POST",
                f"{pull.api_path}/reviews",
                {"commit_id": pull.head_sha, "comments": [c.to_json() for c in group]},
            )
        except UncertainWrite:
            _delete_pending(api, pull)
            refused.extend(group)
            continue
        except GitHubError as error:
            if error.status != 422:
                raise
            if len(group) == 1:
                refused.extend(group)
            else:
                middle = len(group) // 2
                stack.extend([group[middle:], group[:middle]])
            continue
        if isinstance(pending, dict) and isinstance(pending.get("id"), int):
            api.write("DELETE", f"{pull.api_path}/reviews/{pending['id']}")
    order = {id(c): n for n, c in enumerate(comments)}
    return sorted(refused, key=lambda c: order[id(c)])


def _delete_pending(api: GitHubApi, pull: PullRequest) -> None:
    """Delete pending reviews (only their author sees them, so these are ours)."""
    for review in api.paginate(f"{pull.api_path}/reviews"):
        if review.get("state") == "PENDING" and isinstance(review.get("id"), int):
            try:
                api.write("DELETE", f"{pull.api_path}/reviews/{review['id']}")
            except GitHubError:
                continue


# -- after the review -----------------------------------------------------------------------


def _edit(api: GitHubApi, pull: PullRequest, comment_id: int, body: str) -> bool:
    path = f"/repos/{pull.repository}/pulls/comments/{comment_id}"
    for attempt in range(2):
        try:
            api.write("PATCH", path, {"body": body})
            return True
        except UncertainWrite:
            if attempt:
                raise
            api.sleep(2.0)
        except GitHubError as error:
            if error.status == 404:
                return False  # deleted meanwhile: nothing to mark
            raise
    return False  # pragma: no cover


def _dismiss_blocking(api: GitHubApi, pull: PullRequest, reviews: list[dict[str, Any]]) -> int:
    dismissed = 0
    for review in reviews:
        if review.get("state") != "CHANGES_REQUESTED" or not isinstance(review.get("id"), int):
            continue
        try:
            api.write(
                "PUT",
                f"{pull.api_path}/reviews/{review['id']}/dismissals",
                {"message": DISMISS_MESSAGE, "event": "DISMISS"},
            )
            dismissed += 1
        except GitHubError as error:
            if error.status not in (403, 404, 422):
                raise  # 403/422: dismissing needs more than the token has; not worth failing
    return dismissed


def _is_ours(review: dict[str, Any]) -> bool:
    return REVIEW_MARKER in str(review.get("body") or "")
