"""The GitHub client's retry policy: what is retried, what waits, what is never re-sent."""

from __future__ import annotations

import json

import pytest
import requests
import responses
from github import Auth

from bot.github.api import (
    GitHubApi,
    GitHubError,
    RateLimitTooLong,
    UncertainWrite,
    WriteForbidden,
)

API = "https://api.github.com"
# PyGithub's connection puts the default port in the URL it sends, so the mocks have it too.
WIRE = "https://api.github.com:443"
PULL = f"{WIRE}/repos/octo/app/pulls/7"


def _api(sleeps: list[float], **kwargs: object) -> GitHubApi:
    return GitHubApi(
        Auth.Token("secret-token"),
        kwargs.pop("api_url", API),  # type: ignore[arg-type]
        sleep=sleeps.append,
        clock=lambda: 1_000.0,
        seconds_between_writes=None,
        **kwargs,  # type: ignore[arg-type]
    )


@responses.activate
def test_a_read_is_retried_after_a_5xx_with_backoff() -> None:
    responses.get(PULL, status=502, json={"message": "Server Error"})
    responses.get(PULL, status=503, json={"message": "Unavailable"})
    responses.get(PULL, json={"number": 7})
    sleeps: list[float] = []
    assert _api(sleeps).get_json("/repos/octo/app/pulls/7") == {"number": 7}
    assert len(responses.calls) == 3
    assert len(sleeps) == 2
    assert 1.0 <= sleeps[0] < sleeps[1]  # exponential


@responses.activate
def test_a_read_gives_up_with_one_line_after_the_last_attempt() -> None:
    for _ in range(4):
        responses.get(PULL, status=500, json={"message": "boom"})
    with pytest.raises(GitHubError) as caught:
        _api([]).get_json("/repos/octo/app/pulls/7")
    assert str(caught.value) == "GET /repos/octo/app/pulls/7: 500 boom"
    assert caught.value.status == 500


@responses.activate
def test_a_4xx_read_is_not_retried() -> None:
    responses.get(
        PULL,
        status=404,
        json={"message": "Not Found", "documentation_url": "https://docs.github.com"},
    )
    with pytest.raises(GitHubError, match="404 Not Found"):
        _api([]).get_json("/repos/octo/app/pulls/7")
    assert len(responses.calls) == 1


@responses.activate
def test_a_connection_error_on_a_read_is_retried() -> None:
    responses.get(PULL, body=requests.ConnectionError("reset"))
    responses.get(PULL, json={"number": 7})
    sleeps: list[float] = []
    assert _api(sleeps).get_json("/repos/octo/app/pulls/7") == {"number": 7}
    assert len(sleeps) == 1


@responses.activate
def test_secondary_rate_limit_waits_for_retry_after() -> None:
    responses.get(
        PULL,
        status=403,
        headers={"retry-after": "7"},
        json={"message": "You have exceeded a secondary rate limit."},
    )
    responses.get(PULL, json={"number": 7})
    sleeps: list[float] = []
    assert _api(sleeps).get_json("/repos/octo/app/pulls/7") == {"number": 7}
    assert sleeps == [7.0]


@responses.activate
def test_primary_rate_limit_waits_until_the_reset_time() -> None:
    responses.get(
        PULL,
        status=403,
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1030"},
        json={"message": "API rate limit exceeded for installation."},
    )
    responses.get(PULL, json={"number": 7})
    sleeps: list[float] = []
    _api(sleeps).get_json("/repos/octo/app/pulls/7")
    assert sleeps == [31.0]  # reset - now + 1 s of margin


@responses.activate
def test_429_without_headers_waits_a_minute() -> None:
    responses.get(PULL, status=429, json={"message": "Too Many Requests"})
    responses.get(PULL, json={"number": 7})
    sleeps: list[float] = []
    _api(sleeps).get_json("/repos/octo/app/pulls/7")
    assert sleeps == [60.0]


@responses.activate
def test_a_wait_longer_than_allowed_fails_instead_of_hanging() -> None:
    responses.get(PULL, status=429, headers={"retry-after": "3600"}, json={"message": "slow"})
    with pytest.raises(RateLimitTooLong, match="wait 3600 s, more than the 300 s"):
        _api([]).get_json("/repos/octo/app/pulls/7")


@responses.activate
def test_a_rate_limited_write_is_sent_again_because_github_did_not_process_it() -> None:
    url = f"{PULL}/reviews"
    responses.post(url, status=429, headers={"retry-after": "2"}, json={"message": "slow down"})
    responses.post(url, json={"id": 1})
    sleeps: list[float] = []
    api = _api(sleeps)
    assert api.write("POST", "/repos/octo/app/pulls/7/reviews", {"body": "x"}) == {"id": 1}
    assert sleeps == [2.0]
    assert [json.loads(call.request.body or b"{}") for call in responses.calls] == [
        {"body": "x"},
        {"body": "x"},
    ]


@responses.activate
def test_a_5xx_write_is_never_re_sent_by_the_client() -> None:
    responses.post(f"{PULL}/reviews", status=502, json={"message": "Bad Gateway"})
    with pytest.raises(UncertainWrite, match="502"):
        _api([]).write("POST", "/repos/octo/app/pulls/7/reviews", {"body": "x"})
    assert len(responses.calls) == 1


@responses.activate
def test_a_lost_connection_on_a_write_is_uncertain() -> None:
    responses.post(f"{PULL}/reviews", body=requests.ConnectionError("reset by peer"))
    with pytest.raises(UncertainWrite, match="no answer from GitHub"):
        _api([]).write("POST", "/repos/octo/app/pulls/7/reviews", {"body": "x"})
    assert len(responses.calls) == 1


@responses.activate
def test_a_403_that_is_not_a_rate_limit_means_the_token_cannot_write() -> None:
    responses.post(
        f"{PULL}/reviews",
        status=403,
        json={"message": "Resource not accessible by integration"},
    )
    with pytest.raises(WriteForbidden, match="Resource not accessible by integration"):
        _api([]).write("POST", "/repos/octo/app/pulls/7/reviews", {"body": "x"})


@responses.activate
def test_a_422_names_githubs_first_error() -> None:
    responses.post(
        f"{PULL}/reviews",
        status=422,
        json={
            "message": "Unprocessable Entity",
            "errors": ["Pull request review thread line must be part of the diff"],
        },
    )
    with pytest.raises(GitHubError) as caught:
        _api([]).write("POST", "/repos/octo/app/pulls/7/reviews", {"body": "x"})
    assert caught.value.status == 422
    assert "must be part of the diff" in str(caught.value)


@responses.activate
def test_pagination_follows_the_next_link() -> None:
    url = f"{PULL}/comments"
    responses.get(
        url,
        json=[{"id": 1}, {"id": 2}],
        headers={"link": f'<{url}?per_page=100&page=2>; rel="next", <{url}?page=2>; rel="last"'},
        match=[responses.matchers.query_param_matcher({"per_page": "100"})],
    )
    responses.get(
        url,
        json=[{"id": 3}],
        match=[responses.matchers.query_param_matcher({"per_page": "100", "page": "2"})],
    )
    items = list(_api([]).paginate("/repos/octo/app/pulls/7/comments"))
    assert [item["id"] for item in items] == [1, 2, 3]


@responses.activate
def test_dry_run_records_writes_and_sends_none() -> None:
    api = _api([], dry_run=True)
    assert api.write("POST", "/repos/octo/app/pulls/7/reviews", {"event": "COMMENT"}) is None
    api.write("PATCH", "/repos/octo/app/pulls/comments/5", {"body": "b"})
    assert len(responses.calls) == 0
    assert api.writes == [
        {"method": "POST", "path": "/repos/octo/app/pulls/7/reviews", "body": {"event": "COMMENT"}},
        {"method": "PATCH", "path": "/repos/octo/app/pulls/comments/5", "body": {"body": "b"}},
    ]


@responses.activate
def test_enterprise_api_root_is_used_and_left_out_of_recorded_paths() -> None:
    root = "https://ghe.example.com/api/v3"
    wire = "https://ghe.example.com:443/api/v3"
    responses.get(f"{wire}/repos/octo/app/pulls/7", json={"number": 7})
    responses.post(f"{wire}/repos/octo/app/pulls/7/reviews", json={"id": 9})
    api = _api([], api_url=root + "/")
    assert api.get_json("/repos/octo/app/pulls/7") == {"number": 7}
    api.write("POST", "/repos/octo/app/pulls/7/reviews", {"body": "x"})
    assert api.writes[0]["path"] == "/repos/octo/app/pulls/7/reviews"
    assert responses.calls[0].request.headers["Authorization"] == "token secret-token"
    assert responses.calls[0].request.headers["User-Agent"].startswith("asyncguard/")


def test_a_bad_api_url_is_one_line() -> None:
    with pytest.raises(GitHubError, match="is not an http"):
        GitHubApi(None, "ftp://example.com")


@responses.activate
def test_get_text_passes_the_media_type_and_allowed_statuses() -> None:
    responses.get(PULL, status=406, json={"message": "Sorry, the diff exceeded the maximum"})
    response = _api([]).get_text(
        "/repos/octo/app/pulls/7", "application/vnd.github.diff", allow=(406,)
    )
    assert response.status == 406
    assert responses.calls[0].request.headers["Accept"] == "application/vnd.github.diff"
