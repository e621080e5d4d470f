"""Posting a review plan on GitHub (bot/github/poster.py over bot/github/api.py), and
`review_pull_request` end to end, against `responses`: every request's body is checked, not just
its URL, and every write body sent is validated against GitHub's OpenAPI request schemas.

PyGithub builds URLs with the explicit port (`https://api.github.com:443/...`), so the mocks are
registered with it. Nothing waits: `sleep` is recorded, `seconds_between_writes` is off.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from github import Auth
from responses import matchers

from bot.changeset import ChangeSet, FileChange, FileStatus, Hunk
from bot.comments import marker, parse_marker
from bot.findings import Edit, Finding, Fix, FixSafety, Severity, Span
from bot.github.api import GitHubApi, GitHubError, UncertainWrite, WriteForbidden
from bot.github.poster import DISMISS_MESSAGE, Existing, post_review, read_existing
from bot.github.pull import PullRequest
from bot.github.review import ReviewOptions, review_pull_request
from bot.review_plan import (
    RESOLVED_NOTE,
    REVIEW_MARKER,
    ExistingComment,
    ReviewPlan,
    listed_fingerprints,
    mark_resolved,
    plan_review,
)
from bot.ruleinfo import RuleInfo

API_URL = "https://api.github.com"
BASE = "https://api.github.com:443"  # as PyGithub sends it
GHE_URL = "https://ghe.example.com/api/v3"
GHE_BASE = "https://ghe.example.com:443/api/v3"
REPO = "octo/app"
HEAD = "1" * 40
BASE_SHA = "2" * 40
PULL = PullRequest(REPO, 7, HEAD, BASE_SHA, "main", REPO)
REVIEWS = f"{BASE}/repos/{REPO}/pulls/7/reviews"
COMMENTS = f"{BASE}/repos/{REPO}/pulls/7/comments"
EDIT = f"{BASE}/repos/{REPO}/pulls/comments"
RUN_MARKER = re.compile(r"<!-- asyncguard:run=[0-9a-f]{20} -->")
OPENAPI = (
    Path(__file__).resolve().parents[2] / "shared" / "reference" / "github-rest-openapi-subset.json"
)
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

PATH = "app/w.py"
FILE = "".join(f"line{n} = {n}\n" for n in range(1, 41))
# New-side hunks: lines 5-12 and 30-34; lines 6-8 and 31 are added.
CHANGESET = ChangeSet(
    files=(
        FileChange(
            PATH,
            FileStatus.MODIFIED,
            added_lines=frozenset({6, 7, 8, 31}),
            hunks=(Hunk(5, 8), Hunk(30, 5)),
        ),
    )
)
RULES = {
    "AG901": RuleInfo(
        code="AG901",
        name="widget-leak",
        severity=Severity.ERROR,
        section="",
        summary="A widget is opened and never closed.",
        doc="## What it does\nFlags a widget.\n",
    )
}
NOTHING = Existing([], set(), [])

# Every write these tests sent to `responses` or recorded in a dry run: (method, path relative
# to the API root, JSON body or None). Validated against the OpenAPI schemas at the end.
SENT: list[tuple[str, str, Any]] = []


# --- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    """`responses` on; an unregistered call raises ConnectionError. The writes it saw are kept
    in SENT for the schema check."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        try:
            yield mock
        finally:
            SENT.extend(
                (method, path, body) for method, path, body in _calls(mock) if method != "GET"
            )


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def api(sleeps: list[float]) -> GitHubApi:
    return _api(sleeps)


def _api(sleeps: list[float], url: str = API_URL, *, dry_run: bool = False) -> GitHubApi:
    return GitHubApi(
        Auth.Token("t"),
        url,
        dry_run=dry_run,
        sleep=sleeps.append,
        clock=lambda: 1_000.0,
        seconds_between_writes=None,
    )


def _path(url: str) -> str:
    """The path of `url` relative to the API root (GHE prefix removed), without the query."""
    path = urllib.parse.urlsplit(url).path
    return path.removeprefix("/api/v3")


def _body(request: Any) -> Any:
    raw = request.body
    if not raw:
        return None
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def _calls(mock: responses.RequestsMock) -> list[tuple[str, str, Any]]:
    """(method, path, JSON body) of every request `mock` received, in order."""
    return [(c.request.method, _path(c.request.url), _body(c.request)) for c in mock.calls]


def _writes(mock: responses.RequestsMock) -> list[tuple[str, str, Any]]:
    return [call for call in _calls(mock) if call[0] != "GET"]


def _finding(line: int = 6, **changes: Any) -> Finding:
    finding = Finding(
        code="AG901",
        name="widget-leak",
        severity=Severity.ERROR,
        path=PATH,
        span=Span(line, 1, line, 5),
        message=f"`w{line}` is never closed",
        section="",
        fingerprint=f"fp{line}",
    )
    return replace(finding, **changes)


def _plan(
    findings: list[Finding],
    existing: list[ExistingComment] | None = None,
    *,
    max_comments: int = 25,
    listed: set[str] | frozenset[str] = frozenset(),
    event: str = "COMMENT",
) -> ReviewPlan:
    return plan_review(
        findings,
        CHANGESET,
        RULES,
        None,
        {PATH: FILE},
        existing or [],
        max_comments=max_comments,
        event=event,
        listed=listed,
    )


def _stored_comment(comment_id: int, posted: dict[str, Any]) -> dict[str, Any]:
    """A review comment as `GET .../pulls/{n}/comments` returns one posted as `posted`."""
    return {
        "id": comment_id,
        "path": posted["path"],
        "line": posted["line"],
        "side": "RIGHT",
        "body": posted["body"],
        "user": {"login": "asyncguard[bot]"},
    }


def _review(review_id: int, body: str, state: str = "COMMENTED") -> dict[str, Any]:
    return {
        "id": review_id,
        "state": state,
        "body": body,
        "commit_id": HEAD,
        "html_url": f"https://github.com/{REPO}/pull/7#pullrequestreview-{review_id}",
        "user": {"login": "asyncguard[bot]"},
    }


def _answer(status: int, payload: Any, headers: dict[str, str] | None = None) -> Any:
    return status, headers or {}, json.dumps(payload)


SUGGESTION = Fix("rewrite", FixSafety.SAFE, (Edit(Span(6, 1, 8, 10), "a = 1\nb = 2"),))


# --- the first post ----------------------------------------------------------------------------


def test_first_review_is_one_post_with_the_exact_body(
    rsps: responses.RequestsMock, api: GitHubApi, sleeps: list[float]
) -> None:
    answer = _review(900, "stored")
    rsps.post(REVIEWS, json=answer)
    plan = _plan([_finding(31), _finding(7, fix=SUGGESTION)])

    result = post_review(api, PULL, plan, NOTHING)

    [(method, path, body)] = _calls(rsps)
    assert (method, path) == ("POST", f"/repos/{REPO}/pulls/7/reviews")
    assert set(body) == {"commit_id", "event", "body", "comments"}
    assert body["commit_id"] == HEAD
    assert body["event"] == "COMMENT"
    assert body["body"].startswith(f"{REVIEW_MARKER}\n\n**asyncguard** found 2 new problems")
    [run] = RUN_MARKER.findall(body["body"])
    assert body["body"] == f"{plan.body}\n{run}"
    # Most severe first, then by line: the suggestion (lines 6-8) before line 31.
    first, second = body["comments"]
    assert first == {
        "path": PATH,
        "line": 8,
        "side": "RIGHT",
        "start_line": 6,
        "start_side": "RIGHT",
        "body": first["body"],
    }
    assert "```suggestion\na = 1\nb = 2\n```" in first["body"]
    assert first["body"].endswith(marker("fp7"))
    assert second == {"path": PATH, "line": 31, "side": "RIGHT", "body": second["body"]}
    assert second["body"].endswith(marker("fp31"))
    assert "**AG901 widget-leak**" in second["body"]
    request = rsps.calls[0].request
    assert request.headers["Authorization"] == "token t"
    assert request.headers["Content-Type"] == "application/json"
    assert result.review == answer
    assert (result.review_id, result.comments, result.refused) == (900, 2, 0)
    assert result.review_url.endswith("#pullrequestreview-900")
    assert (result.resolved, result.dismissed) == (0, 0)
    assert sleeps == []


def test_request_changes_event_is_posted_as_planned(
    rsps: responses.RequestsMock, api: GitHubApi
) -> None:
    rsps.post(REVIEWS, json=_review(901, "stored", "CHANGES_REQUESTED"))
    post_review(api, PULL, _plan([_finding(6)], event="REQUEST_CHANGES"), NOTHING)
    [(_, _, body)] = _writes(rsps)
    assert body["event"] == "REQUEST_CHANGES"
    assert [(c["path"], c["line"]) for c in body["comments"]] == [(PATH, 6)]


def test_json_calls_accept_json(rsps: responses.RequestsMock, api: GitHubApi) -> None:
    """GitHub answers JSON; the Accept header must allow it (GitHub documents
    `application/vnd.github+json`). `application/octet-stream`, PyGithub's default
    *upload* content type, asks for something else."""
    rsps.get(COMMENTS, json=[])
    rsps.get(REVIEWS, json=[])
    rsps.post(REVIEWS, json=_review(902, "stored"))
    read_existing(api, PULL)
    post_review(api, PULL, _plan([_finding(6)]), NOTHING)
    accepts = {c.request.headers.get("Accept") for c in rsps.calls}
    assert all(a == "*/*" or "json" in a for a in accepts if a), accepts


# --- the comment cap and the table --------------------------------------------------------------


def test_overflow_is_listed_once_and_not_again_on_the_next_run(
    rsps: responses.RequestsMock, api: GitHubApi
) -> None:
    rsps.post(REVIEWS, json=_review(910, "stored"))
    findings = [_finding(6), _finding(7), _finding(31)]
    first = _plan(findings, max_comments=1)
    post_review(api, PULL, first, NOTHING)
    [(_, _, posted)] = _writes(rsps)
    assert [c["line"] for c in posted["comments"]] == [6]
    assert "| Severity | Rule | Location | Message |" in posted["body"]
    assert f"| error | AG901 widget-leak | `{PATH}:7` | `w7` is never closed |" in posted["body"]
    assert f"`{PATH}:31`" in posted["body"]
    assert "over the limit of 1 comments" in posted["body"]
    assert "<!-- asyncguard:listed=fp7,fp31 -->" in posted["body"]

    # GitHub now holds the review and its comment; a human review quotes a listed marker.
    rsps.get(COMMENTS, json=[_stored_comment(1, posted["comments"][0])])
    rsps.get(
        REVIEWS,
        json=[
            _review(910, posted["body"]),
            _review(911, "copied: <!-- asyncguard:listed=fp6 -->"),  # not ours: no review marker
        ],
    )
    existing = read_existing(api, PULL)
    assert existing.listed == {"fp7", "fp31"}
    assert [r["id"] for r in existing.reviews] == [910]
    assert [(c.id, c.path, c.line) for c in existing.comments] == [(1, PATH, 6)]

    second = _plan(findings, existing.comments, max_comments=1, listed=existing.listed)
    assert second.overflow == [] and second.comments == []
    assert not second.needs_review and second.is_empty
    assert second.skipped == 3
    result = post_review(api, PULL, second, existing)
    assert result.review is None
    assert len(_writes(rsps)) == 1  # only the first run's review


# --- re-runs -----------------------------------------------------------------------------------


def test_second_run_posts_nothing_after_reading_every_comment_page(
    rsps: responses.RequestsMock, api: GitHubApi
) -> None:
    rsps.post(REVIEWS, json=_review(920, "stored"))
    findings = [_finding(6), _finding(7), _finding(31)]
    post_review(api, PULL, _plan(findings), NOTHING)
    [(_, _, posted)] = _writes(rsps)
    first, second, third = posted["comments"]

    next_page = f"{BASE}/repositories/42/pulls/7/comments?per_page=100&page=2"
    rsps.get(
        COMMENTS,
        match=[matchers.query_param_matcher({"per_page": "100"})],
        json=[
            {"id": 5, "path": PATH, "line": 6, "body": "a human: please also check fp31"},
            _stored_comment(21, first),
            _stored_comment(22, second),
        ],
        headers={"Link": f'<{next_page}>; rel="next", <{next_page}>; rel="last"'},
    )
    rsps.get(
        f"{BASE}/repositories/42/pulls/7/comments",
        match=[matchers.query_param_matcher({"per_page": "100", "page": "2"})],
        json=[_stored_comment(23, third)],
    )
    rsps.get(REVIEWS, json=[_review(920, posted["body"])])

    existing = read_existing(api, PULL)
    fetched = [
        (
            _path(c.request.url),
            dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(c.request.url).query)),
        )
        for c in rsps.calls
        if c.request.method == "GET"
    ]
    assert fetched == [
        (f"/repos/{REPO}/pulls/7/comments", {"per_page": "100"}),
        ("/repositories/42/pulls/7/comments", {"per_page": "100", "page": "2"}),  # page 2
        (f"/repos/{REPO}/pulls/7/reviews", {"per_page": "100"}),
    ]
    assert [c.id for c in existing.comments] == [21, 22, 23]

    again = _plan(findings, existing.comments, listed=existing.listed)
    assert again.is_empty and again.skipped == 3
    result = post_review(api, PULL, again, existing)
    assert (result.review, result.resolved, result.dismissed) == (None, 0, 0)
    assert len(_writes(rsps)) == 1


def _old(comment_id: int, fingerprint: str, line: int | None) -> ExistingComment:
    return ExistingComment(comment_id, PATH, line, f"**AG901** old text\n\n{marker(fingerprint)}")


def test_a_gone_finding_is_marked_fixed_without_a_new_review(
    rsps: responses.RequestsMock, api: GitHubApi
) -> None:
    rsps.patch(f"{EDIT}/12", json={"id": 12})
    existing = Existing([_old(11, "fp6", 6), _old(12, "fp31", 31)], set(), [])
    plan = _plan([_finding(6)], existing.comments)
    assert plan.resolved == [12] and not plan.needs_review

    result = post_review(api, PULL, plan, existing)

    [(method, path, body)] = _writes(rsps)
    assert (method, path) == ("PATCH", f"/repos/{REPO}/pulls/comments/12")
    assert body == {"body": f"**AG901** old text\n\n{RESOLVED_NOTE}\n\n{marker('fp31')}"}
    assert parse_marker(body["body"]) == "fp31"  # the marker stays last
    assert (result.review, result.resolved, result.dismissed) == (None, 1, 0)


def test_a_comment_deleted_meanwhile_is_not_counted(
    rsps: responses.RequestsMock, api: GitHubApi
) -> None:
    rsps.patch(f"{EDIT}/12", status=404, json={"message": "Not Found"})
    existing = Existing([_old(11, "fp6", 6), _old(12, "fp31", 31)], set(), [])
    result = post_review(api, PULL, _plan([_finding(6)], existing.comments), existing)
    assert result.resolved == 0
    assert [w[:2] for w in _writes(rsps)] == [("PATCH", f"/repos/{REPO}/pulls/comments/12")]


def test_everything_fixed_posts_one_note_and_dismisses_our_blocking_reviews(
    rsps: responses.RequestsMock, api: GitHubApi
) -> None:
    rsps.post(REVIEWS, json=_review(930, "stored"))
    rsps.patch(f"{EDIT}/11", json={"id": 11})
    rsps.patch(f"{EDIT}/12", json={"id": 12})
    rsps.put(f"{REVIEWS}/500/dismissals", json=_review(500, REVIEW_MARKER, "DISMISSED"))
    reviews = [
        _review(500, f"{REVIEW_MARKER}\n\nold findings", "CHANGES_REQUESTED"),
        _review(501, f"{REVIEW_MARKER}\n\nolder notes", "COMMENTED"),
    ]
    existing = Existing([_old(11, "fp6", 6), _old(12, "fp31", None)], set(), reviews)
    plan = _plan([], existing.comments)
    assert plan.all_fixed

    result = post_review(api, PULL, plan, existing)

    writes = _writes(rsps)
    assert [w[:2] for w in writes] == [
        ("POST", f"/repos/{REPO}/pulls/7/reviews"),
        ("PATCH", f"/repos/{REPO}/pulls/comments/11"),
        ("PATCH", f"/repos/{REPO}/pulls/comments/12"),
        ("PUT", f"/repos/{REPO}/pulls/7/reviews/500/dismissals"),
    ]
    review = writes[0][2]
    assert review["event"] == "COMMENT" and review["comments"] == []
    assert review["body"].startswith(REVIEW_MARKER)
    assert review["body"].count("everything reported earlier on this pull request is fixed") == 1
    assert writes[1][2] == {"body": mark_resolved(_old(11, "fp6", 6).body)}
    assert writes[2][2] == {"body": mark_resolved(_old(12, "fp31", 31).body)}
    assert writes[3][2] == {"message": DISMISS_MESSAGE, "event": "DISMISS"}
    assert (result.review_id, result.resolved, result.dismissed) == (930, 2, 1)

    # The next run sees the comments marked fixed: nothing to say, nothing posted again.
    done = [replace(c, body=mark_resolved(c.body)) for c in existing.comments]
    later = _plan([], done)
    assert later.is_empty and not later.all_fixed
    post_review(api, PULL, later, Existing(done, set(), reviews))
    assert len(_writes(rsps)) == 4


def test_a_human_blocking_review_is_not_read_as_ours(
    rsps: responses.RequestsMock, api: GitHubApi
) -> None:
    rsps.get(COMMENTS, json=[])
    rsps.get(
        REVIEWS,
        json=[
            _review(600, "please change this", "CHANGES_REQUESTED"),
            _review(601, f"{REVIEW_MARKER}\n\nours", "CHANGES_REQUESTED"),
        ],
    )
    existing = read_existing(api, PULL)
    assert [r["id"] for r in existing.reviews] == [601]


# --- GitHub refuses some comments (422) --------------------------------------------------------


def _bisection_mock(
    rsps: responses.RequestsMock, refused_line: int
) -> Callable[[], list[tuple[str, str, Any]]]:
    """POST .../reviews answers 422 when the comments include `refused_line`, else a review."""
    ids = iter(range(1001, 1100))

    def answer(request: requests.PreparedRequest) -> Any:
        body = _body(request)
        if any((c["path"], c["line"]) == (PATH, refused_line) for c in body["comments"]):
            return _answer(
                422,
                {
                    "message": "Unprocessable Entity",
                    "errors": ["Line could not be resolved"],
                    "status": "422",
                },
            )
        state = "COMMENTED" if "event" in body else "PENDING"
        return _answer(200, _review(next(ids), body.get("body", ""), state))

    rsps.add_callback("POST", REVIEWS, callback=answer)
    # An earlier run's pending review is still there: GitHub allows one per user.
    rsps.get(REVIEWS, json=[_review(77, "", "PENDING"), _review(78, "a human", "APPROVED")])
    for review_id in (77, 1001, 1002, 1003):
        rsps.delete(f"{REVIEWS}/{review_id}", json=_review(review_id, "", "PENDING"))
    return lambda: _calls(rsps)


def test_422_finds_the_refused_comment_with_pending_probes(
    rsps: responses.RequestsMock, api: GitHubApi
) -> None:
    calls = _bisection_mock(rsps, refused_line=7)
    plan = _plan([_finding(5), _finding(6), _finding(7), _finding(31)])

    result = post_review(api, PULL, plan, NOTHING)

    reviews = f"/repos/{REPO}/pulls/7/reviews"
    summary = [
        (method, path, None if body is None else [c["line"] for c in body["comments"]])
        for method, path, body in calls()
    ]
    assert summary == [
        ("POST", reviews, [5, 6, 7, 31]),  # the review: 422
        ("GET", reviews, None),
        ("DELETE", f"{reviews}/77", None),  # the stale pending review
        ("POST", reviews, [5, 6, 7, 31]),  # probe: 422
        ("POST", reviews, [5, 6]),  # probe: accepted ...
        ("DELETE", f"{reviews}/1001", None),  # ... and deleted at once
        ("POST", reviews, [7, 31]),  # probe: 422
        ("POST", reviews, [7]),  # probe: 422 -> refused
        ("POST", reviews, [31]),
        ("DELETE", f"{reviews}/1002", None),
        ("POST", reviews, [5, 6, 31]),  # the review, without the refused comment
    ]
    posts = [body for method, _, body in calls() if method == "POST"]
    first, *probes, final = posts
    assert set(first) == {"commit_id", "event", "body", "comments"}
    for probe in probes:  # pending: no event, no body
        assert set(probe) == {"commit_id", "comments"} and probe["commit_id"] == HEAD
    assert final["event"] == "COMMENT" and final["commit_id"] == HEAD
    assert final["comments"] == [c for c in first["comments"] if c["line"] != 7]
    assert f"`{PATH}:7`" in final["body"]
    assert "fp7" in listed_fingerprints(final["body"])  # listed, so not listed again later
    assert RUN_MARKER.search(final["body"])
    assert "3 inline comments below." in final["body"]
    assert (result.review_id, result.comments, result.refused) == (1003, 3, 1)


def test_refused_comments_are_listed_as_refused_by_github(
    rsps: responses.RequestsMock, api: GitHubApi
) -> None:
    calls = _bisection_mock(rsps, refused_line=7)
    post_review(api, PULL, _plan([_finding(5), _finding(7)]), NOTHING)
    final = [body for method, _, body in calls() if method == "POST"][-1]
    assert [c["line"] for c in final["comments"]] == [5]
    assert f"`{PATH}:7`" in final["body"]
    # The reader learns why the comment is not inline, and the count of inline ones is right.
    assert "1 comment refused by GitHub" in final["body"]
    assert "could not be placed" not in final["body"]
    assert "1 inline comment below." in final["body"]
    assert "2 inline comments below." not in final["body"]


def test_422_that_no_single_comment_explains_is_raised(
    rsps: responses.RequestsMock, api: GitHubApi
) -> None:
    def answer(request: requests.PreparedRequest) -> Any:
        if "event" in _body(request):
            return _answer(422, {"message": "Validation Failed", "errors": ["body too long"]})
        return _answer(200, _review(1500, "", "PENDING"))

    rsps.add_callback("POST", REVIEWS, callback=answer)
    rsps.get(REVIEWS, json=[])
    rsps.delete(f"{REVIEWS}/1500", json={})
    with pytest.raises(GitHubError, match="422 Validation Failed: body too long") as raised:
        post_review(api, PULL, _plan([_finding(6)]), NOTHING)
    assert raised.value.status == 422
    assert [w[:2] for w in _writes(rsps)] == [
        ("POST", f"/repos/{REPO}/pulls/7/reviews"),
        ("POST", f"/repos/{REPO}/pulls/7/reviews"),
        ("DELETE", f"/repos/{REPO}/pulls/7/reviews/1500"),
    ]


# --- uncertain writes (5xx, lost connections) --------------------------------------------------


def test_502_after_github_stored_the_review_is_not_posted_twice(
    rsps: responses.RequestsMock, api: GitHubApi, sleeps: list[float]
) -> None:
    rsps.post(REVIEWS, status=502, body="<html>Bad Gateway</html>")

    def stored(request: requests.PreparedRequest) -> Any:
        [posted] = [_body(c.request) for c in rsps.calls if c.request.method == "POST"]
        return _answer(
            200, [_review(800, "an older run"), _review(940, posted["body"], "COMMENTED")]
        )

    rsps.add_callback("GET", REVIEWS, callback=stored)
    result = post_review(api, PULL, _plan([_finding(6)]), NOTHING)
    assert [c[0] for c in _calls(rsps)] == ["POST", "GET"]  # exactly one POST
    assert result.review_id == 940
    assert sleeps == [2.0]


def test_502_when_github_did_not_store_it_posts_the_same_body_again(
    rsps: responses.RequestsMock, api: GitHubApi, sleeps: list[float]
) -> None:
    answers = iter(
        [(502, {}, "Bad Gateway"), _answer(200, _review(950, "the stored one", "COMMENTED"))]
    )
    rsps.add_callback("POST", REVIEWS, callback=lambda request: next(answers))
    # Only an earlier run's review is there: same review marker, another run marker.
    earlier = f"{REVIEW_MARKER}\n\nold\n<!-- asyncguard:run=00000000000000000000 -->"
    rsps.get(REVIEWS, json=[_review(801, earlier)])

    result = post_review(api, PULL, _plan([_finding(6), _finding(31)]), NOTHING)

    calls = _calls(rsps)
    assert [c[0] for c in calls] == ["POST", "GET", "POST"]
    assert calls[0][2] == calls[2][2]  # the identical request, run marker included
    assert result.review == _review(950, "the stored one", "COMMENTED")
    assert result.comments == 2
    assert sleeps == [2.0]


def test_a_lost_connection_on_the_review_is_checked_like_a_5xx(
    rsps: responses.RequestsMock, api: GitHubApi, sleeps: list[float]
) -> None:
    rsps.post(REVIEWS, body=requests.ConnectionError("connection reset"))
    rsps.get(REVIEWS, json=[])
    with pytest.raises(UncertainWrite, match="no answer from GitHub"):
        post_review(api, PULL, _plan([_finding(6)]), NOTHING)
    # Each attempt is checked against the stored reviews before the next; then it gives up.
    assert [c[0] for c in _calls(rsps)] == ["POST", "GET", "POST", "GET", "POST", "GET", "POST"]
    assert sleeps == [2.0, 4.0, 8.0]
    bodies = {json.dumps(body, sort_keys=True) for method, _, body in _calls(rsps) if body}
    assert len(bodies) == 1


# --- 403: forbidden or rate limited ------------------------------------------------------------


def test_403_resource_not_accessible_raises_write_forbidden(
    rsps: responses.RequestsMock, api: GitHubApi, sleeps: list[float]
) -> None:
    rsps.post(
        REVIEWS,
        status=403,
        json={
            "message": "Resource not accessible by integration",
            "documentation_url": "https://docs.github.com/rest/pulls/reviews",
            "status": "403",
        },
        headers={"x-accepted-github-permissions": "pull_requests=write"},
    )
    with pytest.raises(WriteForbidden, match="Resource not accessible by integration") as raised:
        post_review(api, PULL, _plan([_finding(6)]), NOTHING)
    assert raised.value.status == 403
    assert len(_writes(rsps)) == 1  # not retried
    assert sleeps == []


def test_403_with_retry_after_is_a_rate_limit_waited_and_sent_again(
    rsps: responses.RequestsMock, api: GitHubApi, sleeps: list[float]
) -> None:
    answers = iter(
        [
            _answer(
                403,
                {"message": "You have exceeded a secondary rate limit."},
                {"retry-after": "1"},
            ),
            _answer(200, _review(960, "stored")),
        ]
    )
    rsps.add_callback("POST", REVIEWS, callback=lambda request: next(answers))
    result = post_review(api, PULL, _plan([_finding(6)]), NOTHING)
    writes = _writes(rsps)
    assert len(writes) == 2 and writes[0] == writes[1]
    assert sleeps == [1.0]
    assert result.review_id == 960


# --- dry runs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "base"), [(API_URL, BASE), (GHE_URL, GHE_BASE)])
def test_dry_run_records_writes_and_sends_none(
    rsps: responses.RequestsMock, sleeps: list[float], url: str, base: str
) -> None:
    api = _api(sleeps, url, dry_run=True)
    pulls = f"{base}/repos/{REPO}/pulls/7"
    stale = f"**AG901** old\n\n{marker('fp31')}"
    rsps.get(f"{pulls}/comments", json=[{"id": 12, "path": PATH, "line": 31, "body": stale}])
    rsps.get(f"{pulls}/reviews", json=[])

    existing = read_existing(api, PULL)
    plan = _plan([_finding(6)], existing.comments)
    result = post_review(api, PULL, plan, existing)

    assert [c.request.method for c in rsps.calls] == ["GET", "GET"]  # no write was sent
    assert all(c.request.url.startswith(f"{base}/repos/") for c in rsps.calls)
    assert result.review is None and result.resolved == 1
    assert [(w["method"], w["path"]) for w in api.writes] == [
        ("POST", f"/repos/{REPO}/pulls/7/reviews"),  # no /api/v3 prefix under GHE
        ("PATCH", f"/repos/{REPO}/pulls/comments/12"),
    ]
    assert all(set(w) == {"method", "path", "body"} for w in api.writes)
    review, edit = (w["body"] for w in api.writes)
    assert review["commit_id"] == HEAD and [c["line"] for c in review["comments"]] == [6]
    assert RUN_MARKER.search(review["body"])
    assert edit == {"body": mark_resolved(stale)}
    SENT.extend((w["method"], w["path"], w["body"]) for w in api.writes)


# --- review_pull_request end to end ------------------------------------------------------------


def _pull_json(state: str = "open", head: str = HEAD) -> dict[str, Any]:
    return {
        "number": 7,
        "state": state,
        "draft": False,
        "html_url": f"https://github.com/{REPO}/pull/7",
        "head": {"sha": head, "ref": "feature", "repo": {"full_name": REPO}},
        "base": {"sha": BASE_SHA, "ref": "main", "repo": {"full_name": REPO}},
    }


def _routes_patch() -> str:
    diff = (EXAMPLES / "change.diff").read_text(encoding="utf-8")
    return diff.split("+++ b/app/routes.py\n", 1)[1]


def _mock_contents(rsps: responses.RequestsMock, files: dict[tuple[str, str], str]) -> None:
    """`GET .../contents/{path}?ref=` from `files` ((path, ref) -> text), else 404."""

    def answer(request: requests.PreparedRequest) -> Any:
        url = urllib.parse.urlsplit(request.url or "")
        path = urllib.parse.unquote(url.path.split("/contents/", 1)[1])
        ref = urllib.parse.parse_qs(url.query).get("ref", [""])[0]
        if (path, ref) in files:
            return 200, {"content-type": "application/vnd.github.raw"}, files[(path, ref)]
        return _answer(404, {"message": "Not Found"})

    rsps.add_callback(
        "GET", re.compile(re.escape(f"{BASE}/repos/{REPO}/contents/") + ".*"), callback=answer
    )


def test_review_pull_request_end_to_end(rsps: responses.RequestsMock, api: GitHubApi) -> None:
    rsps.get(f"{BASE}/repos/{REPO}/pulls/7", json=_pull_json())
    rsps.get(
        f"{BASE}/repos/{REPO}/pulls/7/files",
        json=[
            {
                "filename": "app/routes.py",
                "status": "modified",
                "additions": 15,
                "deletions": 0,
                "changes": 15,
                "patch": _routes_patch(),
            }
        ],
    )
    _mock_contents(
        rsps,
        {
            (name, HEAD): (EXAMPLES / name).read_text(encoding="utf-8")
            for name in ("app/routes.py", "app/db.py", "app/models.py")
        },
    )
    rsps.get(COMMENTS, json=[])
    rsps.get(REVIEWS, json=[])
    rsps.post(REVIEWS, json=_review(970, "stored"))

    outcome = review_pull_request(api, REPO, 7)

    triples = [(f.code, f.path, f.span.start_line) for f in outcome.report.findings]
    assert triples == [("AG201", "app/routes.py", 24), ("AG501", "app/routes.py", 28)]
    assert (outcome.posted, outcome.review_id, outcome.comments) == (True, 970, 2)
    assert (outcome.listed, outcome.refused, outcome.already_reported) == (0, 0, 0)
    assert outcome.failed and not outcome.read_only and not outcome.skipped
    assert outcome.config_source == f"the base commit {BASE_SHA[:12]}"
    contents = [c.request for c in rsps.calls if "/contents/" in c.request.url]
    head_reads = sorted(_path(r.url) for r in contents if r.url.endswith(f"?ref={HEAD}"))
    assert all(
        r.headers["Accept"] == "application/vnd.github.raw"
        for r in contents
        if r.url.endswith(f"?ref={HEAD}")
    )
    assert head_reads == [
        f"/repos/{REPO}/contents/app/db.py",
        f"/repos/{REPO}/contents/app/db/__init__.py",
        f"/repos/{REPO}/contents/app/models.py",
        f"/repos/{REPO}/contents/app/models/__init__.py",
        f"/repos/{REPO}/contents/app/routes.py",
    ]
    # The config and the skill come from the base commit, never from the head.
    assert {_path(r.url) for r in contents if r.url.endswith(f"?ref={BASE_SHA}")} >= {
        f"/repos/{REPO}/contents/.asyncguard.toml",
        f"/repos/{REPO}/contents/pyproject.toml",
        f"/repos/{REPO}/contents/.claude/skills",
    }

    [(method, path, body)] = _writes(rsps)
    assert (method, path) == ("POST", f"/repos/{REPO}/pulls/7/reviews")
    assert body["commit_id"] == HEAD and body["event"] == "COMMENT"
    assert body["body"].startswith(
        f"{REVIEW_MARKER}\n\n**asyncguard** found 2 new problems: 1 error, 1 warning."
    )
    assert RUN_MARKER.search(body["body"])
    assert [(c["path"], c["line"], c["side"]) for c in body["comments"]] == [
        ("app/routes.py", 24, "RIGHT"),
        ("app/routes.py", 28, "RIGHT"),
    ]
    assert "AG201 shared-session-concurrency" in body["comments"][0]["body"]
    assert "AG501 unreferenced-task" in body["comments"][1]["body"]
    fingerprints = [f.fingerprint for f in outcome.report.findings]
    assert [parse_marker(c["body"]) for c in body["comments"]] == fingerprints
    assert outcome.writes == [
        {"method": "POST", "path": f"/repos/{REPO}/pulls/7/reviews", "body": body}
    ]


def test_review_pull_request_on_a_fork_without_write_access_is_read_only(
    rsps: responses.RequestsMock, api: GitHubApi
) -> None:
    rsps.get(f"{BASE}/repos/{REPO}/pulls/7", json=_pull_json())
    rsps.get(
        f"{BASE}/repos/{REPO}/pulls/7/files",
        json=[
            {
                "filename": "app/routes.py",
                "status": "modified",
                "changes": 15,
                "patch": _routes_patch(),
            }
        ],
    )
    _mock_contents(rsps, {("app/routes.py", HEAD): (EXAMPLES / "app/routes.py").read_text()})
    rsps.get(COMMENTS, json=[])
    rsps.get(REVIEWS, json=[])
    rsps.post(REVIEWS, status=403, json={"message": "Resource not accessible by integration"})
    outcome = review_pull_request(api, REPO, 7)
    assert outcome.read_only and not outcome.posted
    assert {f.code for f in outcome.report.findings} >= {"AG201", "AG501"}


@pytest.mark.parametrize(
    ("pull", "expected_head", "reason"),
    [
        (_pull_json(state="closed"), None, "pull request #7 is closed"),
        (_pull_json(head="9" * 40), HEAD, f"the head moved on from {HEAD[:12]} to 999999999999"),
    ],
    ids=["closed", "head-moved"],
)
def test_review_pull_request_skips_without_writing(
    rsps: responses.RequestsMock,
    api: GitHubApi,
    pull: dict[str, Any],
    expected_head: str | None,
    reason: str,
) -> None:
    rsps.get(f"{BASE}/repos/{REPO}/pulls/7", json=pull)
    outcome = review_pull_request(
        api, REPO, 7, options=ReviewOptions(), expected_head_sha=expected_head
    )
    assert outcome.skipped.startswith(reason)
    assert not outcome.posted and outcome.report.findings == []
    assert [c[:2] for c in _calls(rsps)] == [("GET", f"/repos/{REPO}/pulls/7")]
    assert outcome.writes == [] and api.writes == []


# --- the OpenAPI request schemas ---------------------------------------------------------------


def _spec() -> dict[str, Any]:
    if not OPENAPI.is_file():
        pytest.skip(f"GitHub's OpenAPI subset is not available at {OPENAPI}")
    return dict(json.loads(OPENAPI.read_text(encoding="utf-8")))


def _operation(spec: dict[str, Any], method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The spec's operation for `method` on a concrete `path` (the most literal template)."""
    matches = []
    for template, operations in spec["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in operations:
            literal = len(re.sub(r"\{[^}]+\}", "", template))
            matches.append((literal, template, operations[method.lower()]))
    assert matches, f"{method} {path} is not in the OpenAPI subset"
    _, template, operation = max(matches, key=lambda m: m[0])
    return template, operation


def test_every_write_body_matches_its_openapi_request_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    spec = _spec()
    if not SENT:
        pytest.skip("run with the rest of this module: it checks the writes those tests sent")
    seen = set()
    for method, path, body in SENT:
        template, operation = _operation(spec, method, path)
        seen.add((method, template))
        request_body = operation.get("requestBody")
        if request_body is None:
            assert body is None, f"{method} {path} takes no body"
            continue
        schema = request_body["content"]["application/json"]["schema"]
        jsonschema.validate(body, schema)
    pulls = "/repos/{owner}/{repo}/pulls"
    expected = {
        ("POST", f"{pulls}/{{pull_number}}/reviews"),
        ("DELETE", f"{pulls}/{{pull_number}}/reviews/{{review_id}}"),
        ("PATCH", f"{pulls}/comments/{{comment_id}}"),
        ("PUT", f"{pulls}/{{pull_number}}/reviews/{{review_id}}/dismissals"),
    }
    if len({name for name, _, _ in SENT}) > 1:  # the whole module ran
        assert expected <= seen, seen
