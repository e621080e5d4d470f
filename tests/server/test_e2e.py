"""The server as it runs in production (`python -m bot.server.main`, uvicorn, worker processes,
the real review) against `FakeGitHub` on 127.0.0.1: what GitHub receives for each delivery.

The repository is the bundled example pull request (`examples/`): `main` is the base, `feature`
the head with three findings, `feature2` one more commit on top of it with a fourth.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

from bot.github.api import READ_ATTEMPTS
from tests.example_pr import example_repo as shared_example_repo
from tests.example_pr import git
from tests.fake_github import FakeGitHub

from .support import (
    CLI_SERVE,
    PROJECT_ROOT,
    SECRET,
    SERVE,
    ServerProcess,
    deliver,
    own_payload,
    reference_payload,
    server_env,
    wait_until,
)

EXAMPLE = PROJECT_ROOT / "examples"
TOKENS_PATH = r"^/app/installations/42/access_tokens$"
REVIEWS_PATH = r"^/repos/octo/app/pulls/7/reviews$"

StartServer = Callable[..., ServerProcess]


def example_repo(path: Path, base_files: dict[str, str] | None = None) -> Path:
    """The example pull request (`main`, `feature`), plus `feature2`: one more commit, with one
    more finding (a task nothing keeps)."""
    shared_example_repo(path, base_files)
    git(path, "checkout", "-q", "-b", "feature2")
    with (path / "app" / "routes.py").open("a") as routes:
        routes.write(
            '\n\nasync def warm_cache() -> None:\n    asyncio.create_task(record_visit("warm"))\n'
        )
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "second push")
    return path


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeGitHub]:
    with FakeGitHub(example_repo(tmp_path / "repo")) as server:
        server.set_pull(base="main", head="feature")
        yield server


@pytest.fixture
def start_server(tmp_path: Path, private_key_pem: str) -> Iterator[Callable[..., ServerProcess]]:
    """`start_server(fake, *args, **variables)`: the server pointed at `fake`, ready."""
    servers: list[ServerProcess] = []

    def start(
        fake: FakeGitHub, *args: str, command: Sequence[str] = SERVE, **variables: str
    ) -> ServerProcess:
        directory = tmp_path / f"server{len(servers)}"
        directory.mkdir()
        settings = {
            "ASYNCGUARD_APP_ID": str(fake.app_id),
            "ASYNCGUARD_PRIVATE_KEY": private_key_pem,
            "ASYNCGUARD_WEBHOOK_SECRET": SECRET,
            "GITHUB_API_URL": fake.url,
            "ASYNCGUARD_WORKERS": "2",
            "ASYNCGUARD_RETRY_DELAY": "0.2",
            "ASYNCGUARD_LOG_LEVEL": "debug",
            **variables,
        }
        env = server_env(tmp_path / "home", **settings)
        server = ServerProcess(env, directory, *args, command=command)
        servers.append(server)
        server.wait_ready()
        return server

    yield start
    for server in servers:
        server.close()


def payload(
    fake: FakeGitHub, action: str = "synchronize", head: str | None = None
) -> dict[str, Any]:
    """The delivery kept with the tests, pointed at the fake's pull request (and `head`)."""
    data = own_payload()
    data["action"] = action
    pull = data["pull_request"]
    pull["head"]["sha"] = data["after"] = head or fake.head_sha
    pull["base"]["sha"] = fake.base_sha
    return data


def reviews_of(fake: FakeGitHub) -> list[dict[str, Any]]:
    return [review for review in fake.reviews if review["state"] != "PENDING"]


def review_posts(fake: FakeGitHub) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST" and r.path.endswith("/pulls/7/reviews")]


def token_posts(fake: FakeGitHub) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST" and r.path.endswith("/access_tokens")]


# -- one delivery, one review ------------------------------------------------------------------------


def test_a_delivery_gets_one_review_through_the_app_token(
    fake: FakeGitHub, start_server: StartServer
) -> None:
    server = start_server(fake)
    answer = deliver(server.url, payload(fake), delivery="d-one")
    assert answer.status_code == 202
    line = server.wait_for("review", delivery="d-one")
    assert line["outcome"] == "reviewed", server.output()
    assert (line["repository"], line["pull_request"], line["findings"]) == ("octo/app", 7, 3)
    [review] = reviews_of(fake)
    assert review["commit_id"] == fake.head_sha
    assert line["review_id"] == review["id"]
    # The App's JWT bought one installation token, and the review used it.
    [mint] = token_posts(fake)
    assert mint.headers["authorization"].startswith("Bearer ")
    assert fake.issued_tokens[0]["token"] == "ghs_fake1"
    [post] = review_posts(fake)
    assert post.headers["authorization"] == "token ghs_fake1"


def test_githubs_example_delivery_gets_one_review(
    fake: FakeGitHub, start_server: StartServer
) -> None:
    event = reference_payload("pull_request.opened.json")
    pull = event["pull_request"]
    pull["number"] = event["number"] = fake.number
    pull["head"]["sha"], pull["base"]["sha"] = fake.head_sha, fake.base_sha
    event["repository"]["full_name"] = pull["base"]["repo"]["full_name"] = fake.repository
    event["installation"]["id"] = fake.installation_id
    server = start_server(fake)
    assert deliver(server.url, event, delivery="d-ref").status_code == 202
    assert server.wait_for("review", delivery="d-ref")["outcome"] == "reviewed", server.output()
    assert len(reviews_of(fake)) == 1


def test_a_duplicate_delivery_gets_one_review(fake: FakeGitHub, start_server: StartServer) -> None:
    server = start_server(fake)
    first = deliver(server.url, payload(fake), delivery="d-dup")
    again = deliver(server.url, payload(fake), delivery="d-dup")
    assert (first.status_code, again.status_code) == (202, 200)
    server.wait_for("review", delivery="d-dup")
    time.sleep(0.5)  # time enough for a second job, if there were one
    assert len(server.records("review", delivery="d-dup")) == 1
    assert len(review_posts(fake)) == 1
    assert len(reviews_of(fake)) == 1


def test_a_superseded_synchronize_is_not_reviewed(
    fake: FakeGitHub, start_server: StartServer
) -> None:
    old_head = fake.head_sha
    fake.set_pull(base="main", head="feature2")  # the second push has already happened
    new_head = fake.head_sha
    server = start_server(fake)
    assert deliver(server.url, payload(fake, head=old_head), delivery="d-old").status_code == 202
    assert deliver(server.url, payload(fake, head=new_head), delivery="d-new").status_code == 202
    old = server.wait_for("review", delivery="d-old")
    new = server.wait_for("review", delivery="d-new")
    # Superseded while waiting, or skipped by the review because the head had moved on.
    assert old["outcome"] in ("superseded", "skipped"), server.output()
    assert new["outcome"] == "reviewed", server.output()
    [review] = reviews_of(fake)
    assert review["commit_id"] == new_head
    assert all(r.body is None or r.body.get("commit_id") != old_head for r in fake.writes())


# -- GitHub failing -------------------------------------------------------------------------------------


def test_a_5xx_minting_the_token_is_retried(fake: FakeGitHub, start_server: StartServer) -> None:
    fake.fail_next("POST", TOKENS_PATH, 502)
    server = start_server(fake)
    assert deliver(server.url, payload(fake), delivery="d-5xx").status_code == 202
    line = server.wait_for("review", delivery="d-5xx")
    assert (line["outcome"], line["attempt"]) == ("reviewed", 2), server.output()
    [retry] = server.records("review.retry", delivery="d-5xx")
    assert (retry["status"], retry["error"]) == (502, "github")
    assert len(token_posts(fake)) == 2
    assert len(reviews_of(fake)) == 1


@pytest.mark.parametrize("stored", [False, True])
def test_a_5xx_posting_the_review_still_makes_exactly_one_review(
    fake: FakeGitHub, start_server: StartServer, stored: bool
) -> None:
    fake.fail_next("POST", REVIEWS_PATH, 502, store=stored)
    server = start_server(fake)
    assert deliver(server.url, payload(fake), delivery="d-post").status_code == 202
    line = server.wait_for("review", delivery="d-post")
    assert line["outcome"] == "reviewed", server.output()
    assert len(reviews_of(fake)) == 1
    assert len(review_posts(fake)) == (1 if stored else 2)


def test_a_5xx_reading_the_pull_request_is_retried_by_the_server(
    fake: FakeGitHub, start_server: StartServer
) -> None:
    # GitHubApi tries a read READ_ATTEMPTS times (1 + 2 + 4 s apart); the last 503 reaches the
    # server, which retries the whole job.
    fake.fail_next("GET", r"^/repos/octo/app/pulls/7$", 503, times=READ_ATTEMPTS)
    server = start_server(fake)
    assert deliver(server.url, payload(fake), delivery="d-read").status_code == 202
    line = server.wait_for("review", delivery="d-read")
    assert (line["outcome"], line["attempt"]) == ("reviewed", 2), server.output()
    [retry] = server.records("review.retry", delivery="d-read")
    assert retry["status"] == 503
    assert len(reviews_of(fake)) == 1


def test_a_broken_repository_config_is_logged_and_not_retried(
    tmp_path: Path, start_server: StartServer
) -> None:
    repo = example_repo(tmp_path / "broken", {".asyncguard.toml": 'selct = ["AG"]\n'})
    with FakeGitHub(repo) as fake:
        fake.set_pull(base="main", head="feature")
        server = start_server(fake)
        assert deliver(server.url, payload(fake), delivery="d-config").status_code == 202
        line = server.wait_for("review", delivery="d-config")
        assert (line["outcome"], line["error"], line["attempt"]) == ("failed", "config", 1)
        assert "selct" in line["reason"]
        assert server.records("review.retry") == []
        assert reviews_of(fake) == []
        # The server carries on.
        assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200


# -- installation tokens ------------------------------------------------------------------------------------


def test_a_token_is_reused_until_it_is_about_to_expire(
    fake: FakeGitHub, start_server: StartServer
) -> None:
    server = start_server(fake)
    assert deliver(server.url, payload(fake), delivery="d-t1").status_code == 202
    assert server.wait_for("review", delivery="d-t1")["outcome"] == "reviewed"
    fake.set_pull(base="main", head="feature2")
    assert deliver(server.url, payload(fake), delivery="d-t2").status_code == 202
    assert server.wait_for("review", delivery="d-t2")["outcome"] == "reviewed"
    assert len(fake.issued_tokens) == 1
    assert {r.headers.get("authorization") for r in review_posts(fake)} == {"token ghs_fake1"}


def test_an_expiring_token_is_replaced_by_a_new_one(
    fake: FakeGitHub, start_server: StartServer
) -> None:
    fake.token_lifetime = 302  # the server renews with 5 minutes left: after about 2 s
    server = start_server(fake)
    assert deliver(server.url, payload(fake), delivery="d-e1").status_code == 202
    assert server.wait_for("review", delivery="d-e1")["outcome"] == "reviewed"
    minted = time.time()
    fake.set_pull(base="main", head="feature2")
    time.sleep(max(0.0, minted + 2.5 - time.time()))
    assert deliver(server.url, payload(fake), delivery="d-e2").status_code == 202
    assert server.wait_for("review", delivery="d-e2")["outcome"] == "reviewed"
    assert [t["token"] for t in fake.issued_tokens] == ["ghs_fake1", "ghs_fake2"]
    second = review_posts(fake)[-1]
    assert second.headers["authorization"] == "token ghs_fake2"


# -- what never reaches GitHub -----------------------------------------------------------------------------------


def test_refused_and_ignored_deliveries_never_reach_github(
    fake: FakeGitHub, start_server: StartServer
) -> None:
    server = start_server(fake, ASYNCGUARD_MAX_BODY_BYTES="65536")
    big = payload(fake)
    big["pull_request"]["body"] = "x" * 100_000
    closed = payload(fake, "closed")
    draft = payload(fake, "opened")
    draft["pull_request"]["draft"] = True
    cases: list[tuple[int, Any, dict[str, Any]]] = [
        (401, payload(fake), {"secret": "wrong"}),
        (400, payload(fake), {"headers": {"X-Hub-Signature-256": None}}),
        (400, payload(fake), {"headers": {"X-GitHub-Event": None}}),
        (400, payload(fake), {"headers": {"X-GitHub-Delivery": None}}),
        (413, big, {}),
        (400, b'{"action": "opened"', {}),
        (204, {"action": "created"}, {"event": "star"}),
        (204, closed, {}),
        (204, draft, {}),
        (200, {"zen": "Design for failure.", "hook_id": 1}, {"event": "ping"}),
    ]
    for status, body, options in cases:
        answer = deliver(server.url, body, **options)
        assert answer.status_code == status, (status, options, answer.text)
    time.sleep(0.5)
    assert fake.requests == []
    assert server.records("review") == []
    statuses = [line["status"] for line in server.records("delivery")]
    assert statuses == [status for status, _, _ in cases]


def test_health_logs_and_a_clean_stop(fake: FakeGitHub, start_server: StartServer) -> None:
    server = start_server(fake, command=CLI_SERVE)  # as `asyncguard serve`
    assert requests.get(f"{server.url}/healthz", timeout=5).json() == {"status": "ok"}
    assert requests.get(f"{server.url}/readyz", timeout=5).json()["status"] == "ready"
    deliver(server.url, payload(fake), delivery="d-logs")
    server.wait_for("review", delivery="d-logs")
    server.process.terminate()
    # uvicorn shuts down cleanly, then re-raises the signal it caught (newer versions).
    assert server.process.wait(15) in (0, -signal.SIGTERM)
    output = server.output()
    for secret in (SECRET, "ghs_fake1", "PRIVATE KEY"):
        assert secret not in output
    for line in output.splitlines():
        assert line.startswith("{"), line  # every line is a JSON object
    [accepted] = server.records("delivery", delivery="d-logs")
    assert {"ts", "level", "msg", "event", "repository", "pull_request", "status"} <= set(accepted)
    [review] = server.records("review", delivery="d-logs")
    assert {"duration_ms", "findings", "outcome", "head_sha", "attempt"} <= set(review)
    assert server.records("server.stop")


def test_the_insecure_mode_warns_on_every_delivery(
    fake: FakeGitHub, start_server: StartServer
) -> None:
    server = start_server(fake, "--insecure-no-signature", ASYNCGUARD_WEBHOOK_SECRET="")
    answer = deliver(server.url, payload(fake), delivery="d-unsigned", secret=None)
    assert answer.status_code == 202
    assert server.wait_for("review", delivery="d-unsigned")["outcome"] == "reviewed"
    [warning] = server.records("delivery.unsigned")
    assert warning["level"] == "warning"
    assert server.records("server.insecure")
    wait_until(lambda: len(reviews_of(fake)) == 1)
