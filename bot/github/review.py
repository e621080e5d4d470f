"""Review one pull request end to end: read it, run the pipeline, post one review.

Shared by `asyncguard review` (the Action and the CLI) and the webhook server:

    pull request (API) -> head files + change set (checkout, git objects or API; sources.py)
    -> config + skill (base commit by default; policy.py) -> pipeline.run -> Report
    -> plan_review (review_plan.py) against what earlier runs posted -> post_review (poster.py)
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from bot.config import (
    MAX_COMMENTS_LIMIT,
    Config,
    ConfigError,
    FailOn,
    FilterMode,
    ReviewEvent,
)
from bot.findings import Report
from bot.git import head_commit, repo_root
from bot.github.api import GitHubApi, GitHubError, WriteForbidden
from bot.github.policy import Policy, load_policy, reader_for
from bot.github.poster import post_review, read_existing
from bot.github.pull import PullRequest, fetch_pull_request
from bot.github.sources import PullTree, pull_tree
from bot.pipeline import Workspace, restrict_to_paths, run
from bot.registry import rule_infos
from bot.review_plan import plan_review

__all__ = ["ReviewOptions", "ReviewOutcome", "review_pull_request"]


@dataclass(frozen=True)
class ReviewOptions:
    """What the caller may set on top of the repository's config file (None: the file's)."""

    config_path: str | None = None  # relative to the repository root
    config_from: str | None = None  # "base" | "head"; None: the file's setting, else "base"
    fail_on: str | None = None
    filter_mode: str | None = None
    max_comments: int | None = None
    review_event: str | None = None
    working_directory: str = ""  # relative to the repository root; "" is the root


@dataclass
class ReviewOutcome:
    repository: str
    number: int
    head_sha: str
    report: Report = field(default_factory=Report)
    failed: bool = False  # a finding at or above fail-on
    posted: bool = False  # a review was created
    review_id: int | None = None
    review_url: str = ""
    comments: int = 0  # inline comments in the review
    listed: int = 0  # findings only in the review body's table
    already_reported: int = 0
    resolved: int = 0  # earlier comments marked fixed
    refused: int = 0  # comments GitHub refused, listed in the body instead
    read_only: bool = False  # the token could not write (fork): nothing was posted
    post_error: str = ""  # posting failed for another reason (the findings are still here)
    post_status: int | None = None  # GitHub's status for that failure (None: no answer)
    skipped: str = ""  # why nothing was reviewed (closed, head moved on), else ""
    writes: list[dict[str, Any]] = field(default_factory=list)
    config: Config | None = None
    config_source: str = ""  # the commit the config was read from
    pull: PullRequest | None = None


def review_pull_request(
    api: GitHubApi,
    repository: str,
    number: int,
    *,
    checkout: Path | None = None,
    options: ReviewOptions = ReviewOptions(),
    expected_head_sha: str | None = None,
) -> ReviewOutcome:
    """Review `repository`#`number` and post the result through `api` (or, with
    `api.dry_run`, only record the writes in `outcome.writes`).

    `checkout` is a local clone to read from when it has the head commit (the Action's
    workspace); without one everything comes from the API. With `expected_head_sha`, a pull
    request whose head has moved on is skipped (`outcome.skipped`): a newer run will review it.
    Raises GitHubError (transient when `status` is >= 500 or 429) and ConfigError.
    """
    pull = fetch_pull_request(api, repository, number)
    outcome = ReviewOutcome(repository, number, pull.head_sha, pull=pull)
    if pull.state != "open":
        outcome.skipped = f"pull request #{number} is {pull.state}"
        return outcome
    if expected_head_sha and pull.head_sha != expected_head_sha:
        outcome.skipped = (
            f"the head moved on from {expected_head_sha[:12]} to {pull.head_sha[:12]}; "
            "the newer commit gets its own review"
        )
        return outcome
    rules = list(rule_infos())
    with tempfile.TemporaryDirectory(prefix="asyncguard-review-") as scratch_dir:
        scratch = Path(scratch_dir)
        (scratch / "head").mkdir()
        tree = pull_tree(api, pull, checkout, scratch / "head")
        policy = _policy(api, pull, tree, checkout, options, rules, scratch)
        config = _with_options(policy.config, options)
        outcome.config, outcome.config_source = config, policy.source
        workspace = Workspace(cwd=tree.root, root=tree.root, index_root=tree.index_root)
        changeset = restrict_to_paths(
            tree.changeset,
            [options.working_directory] if options.working_directory else [],
            tree.root,
        )
        report = run(changeset, config, workspace, index=tree.index_root is not None)
        report.notes.extend(tree.notes)
        outcome.report = report
        outcome.failed = any(config.fails(f.severity) for f in report.findings)
        file_texts = {
            path: text
            for path in sorted({f.path for f in report.findings})
            if (text := tree.read_text(path)) is not None
        }
    existing = read_existing(api, pull)
    event = (
        "REQUEST_CHANGES"
        if config.review_event == "REQUEST_CHANGES" and outcome.failed
        else "COMMENT"
    )
    plan = plan_review(
        report.findings,
        changeset,
        {info.code: info for info in rules},
        policy.skill,
        file_texts,
        existing.comments,
        max_comments=config.max_comments,
        event=event,
        listed=existing.listed,
    )
    outcome.already_reported = plan.skipped
    if expected_head_sha and plan.needs_review and _head_moved(api, pull):
        # The review took a while: a push meanwhile makes this one stale, and its own run
        # will post the review of the newer head.
        outcome.skipped = (
            "the head moved on during the review; the newer commit gets its own review"
        )
        return outcome
    try:
        result = post_review(api, pull, plan, existing)
    except WriteForbidden:
        outcome.read_only = True
    except GitHubError as error:
        outcome.post_error, outcome.post_status = str(error), error.status
        if error.status == 422 and _head_moved(api, pull):
            # GitHub refuses comments on a commit that is no longer the pull request's head
            # (a force-push during the review); the run for the new head reviews it.
            outcome.post_error, outcome.post_status = "", None
            outcome.skipped = "the head moved on during the review (force-push)"
    else:
        outcome.posted = result.review is not None or (api.dry_run and plan.needs_review)
        outcome.review_id, outcome.review_url = result.review_id, result.review_url
        outcome.comments, outcome.refused = result.comments, result.refused
        outcome.listed = len(plan.overflow) + (len(plan.comments) - result.comments)
        outcome.resolved = result.resolved
    outcome.writes = list(api.writes)
    return outcome


def _head_moved(api: GitHubApi, pull: PullRequest) -> bool:
    try:
        return fetch_pull_request(api, pull.repository, pull.number).head_sha != pull.head_sha
    except GitHubError:
        return False


def _policy(
    api: GitHubApi,
    pull: PullRequest,
    tree: PullTree,
    checkout: Path | None,
    options: ReviewOptions,
    rules: list[Any],
    scratch: Path,
) -> Policy:
    """The config and skill from the base commit, or the head when asked to (by the caller,
    else by the base's own config)."""
    local = repo_root(checkout) if checkout is not None else None
    local_head = head_commit(local) if local is not None else None

    def load(side: str) -> Policy:
        commit = pull.base_sha if side == "base" else pull.head_sha
        label = f"the {side} commit {commit[:12]}"
        reader = reader_for(
            api, pull.repository, commit, label, checkout=local, checked_out=local_head == commit
        )
        return load_policy(
            reader,
            rules,
            repo_root=tree.root,
            scratch=scratch / side,
            working_directory=options.working_directory,
            config_path=options.config_path,
        )

    side = options.config_from or "base"
    policy = load(side)
    if options.config_from is None and side == "base" and policy.config.config_from == "head":
        policy = load("head")
    return policy


def _with_options(config: Config, options: ReviewOptions) -> Config:
    """`config` with the caller's settings on top; a bad value is a ConfigError."""
    update: dict[str, Any] = {}
    checks: list[tuple[str, object, tuple[object, ...]]] = [
        ("fail_on", options.fail_on, get_args(FailOn)),
        ("filter_mode", options.filter_mode, get_args(FilterMode)),
        ("review_event", options.review_event, get_args(ReviewEvent)),
    ]
    for key, value, allowed in checks:
        if value is None:
            continue
        if value not in allowed:
            choices = ", ".join(str(a) for a in allowed)
            raise ConfigError(f"{key.replace('_', '-')} must be one of {choices}, not {value!r}")
        update[key] = value
    if options.max_comments is not None:
        if not 0 <= options.max_comments <= MAX_COMMENTS_LIMIT:
            raise ConfigError(f"max-comments must be between 0 and {MAX_COMMENTS_LIMIT}")
        update["max_comments"] = options.max_comments
    return config.model_copy(update=update) if update else config
