"""What runs in a worker process: one review, from a `WorkerJob` to a `WorkerResult`.

Both cross the process boundary by pickling, so they are plain data. Exceptions are turned into
results here rather than raised: `GitHubError` does not keep its `status` through pickling, and
the scheduler decides on retries from it. The review itself is `review_pull_request`, the same
code `asyncguard review` runs in the Action.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field

__all__ = ["WorkerJob", "WorkerResult", "initialize_worker", "review_in_worker", "warm_up"]


@dataclass(frozen=True)
class WorkerJob:
    delivery: str
    repository: str
    number: int
    head_sha: str
    api_url: str
    token: str = field(repr=False)


@dataclass(frozen=True)
class WorkerResult:
    """`outcome`: `reviewed` (a review was posted), `unchanged` (nothing new to post),
    `skipped` (closed, or the head moved on), `read_only` (the token could not write) or
    `error`. For errors, `error` is `github` (with GitHub's `status`), `post` (the review was
    made but GitHub did not take it), `config` (the repository's config is broken), `bug`
    (anything else the review raised) or `crash` (the process died)."""

    outcome: str
    findings: int = 0
    comments: int = 0
    review_id: int | None = None
    review_url: str = ""
    reason: str = ""
    error: str = ""
    status: int | None = None
    detail: str = ""  # a traceback, for errors nobody expected

    @property
    def transient(self) -> bool:
        """Worth another try: GitHub failed (5xx, rate limit, no answer), the token was refused
        (it is minted again), or a worker process died. Posting failures count by the same
        statuses: a 422 that even the poster's splitting could not settle is not retried."""
        if self.error == "crash":
            return True
        if self.error not in ("github", "post"):
            return False
        return self.status is None or self.status >= 500 or self.status in (401, 429)


def initialize_worker(log_level: str) -> None:
    """Run once in each worker process: its logs are JSON lines too."""
    from bot.server.logs import configure_logging

    configure_logging(log_level, name="")


def warm_up() -> int:
    """Import the review in a fresh worker, so the first delivery does not pay for it; the
    answer (the process id) proves the pool works."""
    import os

    import bot.github.review  # noqa: F401

    return os.getpid()


def review_in_worker(job: WorkerJob) -> WorkerResult:
    """Review `job`'s pull request and post the review; never raises."""
    from github import Auth

    from bot.config import ConfigError
    from bot.github.api import GitHubApi, GitHubError
    from bot.github.review import review_pull_request

    try:
        api = GitHubApi(auth=Auth.Token(job.token), api_url=job.api_url)
        outcome = review_pull_request(
            api, job.repository, job.number, expected_head_sha=job.head_sha
        )
    except GitHubError as error:
        return WorkerResult("error", reason=str(error), error="github", status=error.status)
    except ConfigError as error:
        return WorkerResult("error", reason=str(error), error="config")
    except Exception as error:  # a bug: reported with its traceback, never retried
        reason = f"{type(error).__name__}: {error}".rstrip(": ")
        return WorkerResult("error", reason=reason, error="bug", detail=traceback.format_exc())
    findings = len(outcome.report.findings)
    if outcome.post_error:
        return WorkerResult(
            "error",
            findings=findings,
            reason=outcome.post_error,
            error="post",
            status=outcome.post_status,
        )
    if outcome.skipped:
        result = "skipped"
    elif outcome.read_only:
        result = "read_only"
    elif outcome.posted:
        result = "reviewed"
    else:
        result = "unchanged"
    return WorkerResult(
        result,
        findings=findings,
        comments=outcome.comments,
        review_id=outcome.review_id,
        review_url=outcome.review_url,
        reason=outcome.skipped,
    )
