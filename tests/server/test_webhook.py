"""`POST /webhook`, `/healthz`, `/readyz` and the scheduler, with the review replaced by a
`Recorder` (threads) and the tokens by `StaticTokens`: each delivery's status code, and which
jobs ran because of it."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from bot.github.api import GitHubError
from bot.server.worker import WorkerResult

from .support import (
    SECRET,
    TIMEOUT,
    InProcessServer,
    Recorder,
    StaticTokens,
    deliver,
    encode,
    github_headers,
    own_payload,
    pull_request_payload,
    reference_payload,
    sha,
    wait_until,
)

Serve = Callable[..., InProcessServer]


# -- what is refused, and that nothing runs ---------------------------------------------------------


def test_ping_is_answered_200(serve_app: Serve) -> None:
    recorder = Recorder()
    server = serve_app(recorder)
    answer = server.deliver({"zen": "Keep it logically awesome.", "hook_id": 4242}, "ping")
    assert answer.status_code == 200
    assert answer.json() == {"outcome": "pong"}
    assert recorder.jobs == []


def test_the_reference_ping_is_answered_200(serve_app: Serve) -> None:
    server = serve_app()
    assert server.deliver(reference_payload("ping.json"), "ping").status_code == 200


def test_a_bad_signature_is_401_and_nothing_runs(serve_app: Serve) -> None:
    recorder = Recorder()
    server = serve_app(recorder)
    answer = server.deliver(own_payload(), secret="not the secret")
    assert answer.status_code == 401
    assert answer.json() == {"error": "the signature does not match"}
    # One byte changed after signing is a mismatch too.
    body = encode(own_payload())
    headers = github_headers(body)
    tampered = body.replace(b'"number":7', b'"number":8')
    assert tampered != body
    sent = requests.post(f"{server.url}/webhook", data=tampered, headers=headers, timeout=10)
    assert sent.status_code == 401
    # A signature in another form (no sha256= prefix, sha1) is not accepted either.
    for value in (headers["X-Hub-Signature-256"][7:], "sha1=" + "0" * 40, "sha256=é"):
        assert server.deliver(
            own_payload(), headers={"X-Hub-Signature-256": value}
        ).status_code == (401)
    assert server.idle()
    assert recorder.jobs == []
    assert [r["status"] for r in server.log.records("delivery")] == [401] * 5


@pytest.mark.parametrize("header", ["X-Hub-Signature-256", "X-GitHub-Event", "X-GitHub-Delivery"])
def test_a_missing_header_is_400(serve_app: Serve, header: str) -> None:
    recorder = Recorder()
    server = serve_app(recorder)
    answer = server.deliver(own_payload(), headers={header: None})
    assert answer.status_code == 400
    assert answer.json() == {"error": f"missing header: {header}"}
    assert recorder.jobs == []


def test_a_body_over_the_limit_is_413_before_it_is_read(serve_app: Serve) -> None:
    recorder = Recorder()
    server = serve_app(recorder, max_body_bytes=4096)
    payload = own_payload()
    payload["pull_request"]["body"] = "x" * 5000
    # With a Content-Length: refused on the header alone.
    answer = server.deliver(payload)
    assert answer.status_code == 413
    assert answer.json() == {"error": "the body is over 4096 bytes"}
    # Chunked, without a Content-Length: refused while counting the stream.
    body = encode(payload)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    headers = github_headers(body)
    sent = requests.post(f"{server.url}/webhook", data=chunks(), headers=headers, timeout=10)
    assert sent.status_code == 413
    assert recorder.jobs == []
    # Just under the limit is fine.
    payload["pull_request"]["body"] = "x" * 1000
    assert server.deliver(payload).status_code == 202


def test_a_large_body_is_checked_and_parsed_off_the_event_loop(serve_app: Serve) -> None:
    recorder = Recorder()
    server = serve_app(recorder)
    payload = own_payload()
    payload["pull_request"]["body"] = "x" * (3 * 1024 * 1024)  # GitHub allows up to 25 MiB
    assert server.deliver(payload, secret="wrong").status_code == 401
    assert server.deliver(payload).status_code == 202
    server.wait_idle()
    assert len(recorder.jobs) == 1


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"action": "opened", ', "the body is not JSON"),
        (b"\xff\xfe not utf-8", "the body is not JSON"),
        (b"[1, 2, 3]", "the body is not a JSON object"),
        (b"", "the body is not JSON"),
        (b'{"action": "opened", "installation": {"id": 42}}', "the payload has no repository"),
    ],
)
def test_malformed_json_is_400(serve_app: Serve, body: bytes, error: str) -> None:
    recorder = Recorder()
    server = serve_app(recorder)
    answer = server.deliver(body)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(error)
    assert recorder.jobs == []


@pytest.mark.parametrize(
    ("path", "value", "error"),
    [
        (("installation",), None, "the payload has no installation object"),
        (("installation", "id"), "42", "the payload has no installation.id"),
        (("pull_request", "number"), True, "the payload has no pull_request.number"),
        (("pull_request", "head", "sha"), "main", "the payload has no pull_request.head.sha"),
        (("repository", "full_name"), "../../etc", "the payload has no repository.full_name"),
    ],
)
def test_a_pull_request_delivery_without_what_the_review_needs_is_400(
    serve_app: Serve, path: tuple[str, ...], value: object, error: str
) -> None:
    payload = own_payload()
    target = payload
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    server = serve_app()
    answer = server.deliver(payload)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(error)


def test_other_events_and_actions_are_204(serve_app: Serve) -> None:
    recorder = Recorder()
    server = serve_app(recorder)
    for event, payload in [
        ("issues", {"action": "opened", "issue": {"number": 1}}),
        ("push", {"ref": "refs/heads/main"}),
        ("pull_request", pull_request_payload(action="closed")),
        ("pull_request", pull_request_payload(action="labeled")),
        ("pull_request", pull_request_payload(action="converted_to_draft", draft=True)),
    ]:
        answer = server.deliver(payload, event)
        assert answer.status_code == 204, (event, payload.get("action"))
        assert answer.content == b""
    assert recorder.jobs == []


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("pull_request.opened.json", 202),
        ("pull_request.opened.with-organization.json", 202),
        ("pull_request.reopened.json", 202),
        ("pull_request.synchronize.json", 202),
        ("pull_request.ready_for_review.with-installation.json", 202),
        ("pull_request.closed.json", 204),
        ("pull_request.labeled.json", 204),
        ("pull_request.converted_to_draft.with-installation.json", 204),
    ],
)
def test_githubs_example_deliveries(serve_app: Serve, name: str, status: int) -> None:
    recorder = Recorder()
    server = serve_app(recorder)
    payload = reference_payload(name)
    assert server.deliver(payload).status_code == status
    server.wait_idle()
    if status == 202:
        [job] = recorder.jobs
        assert (job.repository, job.number) == ("Codertocat/Hello-World", 2)
        assert job.head_sha == payload["pull_request"]["head"]["sha"]
    else:
        assert recorder.jobs == []


def test_an_installation_event_is_204(serve_app: Serve) -> None:
    server = serve_app()
    payload = reference_payload("installation.created.json")
    assert server.deliver(payload, "installation").status_code == 204


# -- what is accepted, and what runs ----------------------------------------------------------------


def test_an_accepted_delivery_runs_one_review_with_its_head(serve_app: Serve) -> None:
    recorder = Recorder()
    tokens = StaticTokens()
    server = serve_app(recorder, tokens, api_url="https://ghe.example/api/v3")
    answer = server.deliver(own_payload(), delivery="d-1")
    assert answer.status_code == 202
    assert answer.json() == {"outcome": "queued"}
    server.wait_idle()
    [job] = recorder.jobs
    assert (job.delivery, job.repository, job.number) == ("d-1", "octo/app", 7)
    assert job.head_sha == own_payload()["pull_request"]["head"]["sha"]
    assert job.api_url == "https://ghe.example/api/v3"
    assert job.token == "ghs_static_1"
    assert "ghs_static_1" not in repr(job)
    assert tokens.asked == [42]
    [line] = server.log.records("review")
    assert line["outcome"] == "reviewed"
    assert line["findings"] == 2
    assert (line["delivery"], line["repository"], line["pull_request"]) == ("d-1", "octo/app", 7)
    assert isinstance(line["duration_ms"], int)


def test_a_duplicate_delivery_runs_one_job(serve_app: Serve) -> None:
    recorder = Recorder()
    server = serve_app(recorder)
    first = server.deliver(own_payload(), delivery="same-id")
    server.wait_idle()
    again = server.deliver(own_payload(), delivery="same-id")
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == {"outcome": "duplicate"}
    server.wait_idle()
    assert len(recorder.jobs) == 1


def test_a_newer_head_supersedes_the_queued_one(serve_app: Serve) -> None:
    recorder = Recorder()
    recorder.gate.clear()
    server = serve_app(recorder)
    heads = [sha("one"), sha("two"), sha("three")]
    for number, head in enumerate(heads, start=1):
        assert (
            server.deliver(pull_request_payload(head_sha=head), delivery=f"d{number}").status_code
            == 202
        )
    # One: running (a pull request runs one job at a time); two: waiting, then superseded.
    wait_until(lambda: len(recorder.jobs) == 1)
    recorder.gate.set()
    server.wait_idle()
    assert recorder.heads() == [heads[0], heads[2]]
    [superseded] = server.log.records("review", outcome="superseded")
    assert (superseded["delivery"], superseded["superseded_by"]) == ("d2", "d3")
    # The running one was told its head, so the review skips it if the head moved on.
    assert [job.head_sha for job in recorder.jobs] == [heads[0], heads[2]]
    assert server.log.records("review.superseded_while_running", delivery="d1")


def test_a_delivery_for_the_head_already_waiting_is_coalesced(serve_app: Serve) -> None:
    recorder = Recorder()
    recorder.gate.clear()
    server = serve_app(recorder)
    head = sha("same")
    assert server.deliver(pull_request_payload(head_sha=head, action="opened")).status_code == 202
    again = server.deliver(pull_request_payload(head_sha=head, action="reopened"))
    assert again.status_code == 202
    assert again.json() == {"outcome": "coalesced"}
    recorder.gate.set()
    server.wait_idle()
    assert len(recorder.jobs) == 1


def test_a_transient_github_error_is_retried_once_then_succeeds(serve_app: Serve) -> None:
    recorder = Recorder(script=[WorkerResult("error", error="github", status=502, reason="502")])
    server = serve_app(recorder)
    assert server.deliver(own_payload(), delivery="d-retry").status_code == 202
    wait_until(lambda: len(recorder.finished) == 2)
    server.wait_idle()
    assert len(recorder.jobs) == 2
    [retry] = server.log.records("review.retry")
    assert (retry["delivery"], retry["status"], retry["attempt"]) == ("d-retry", 502, 1)
    [done] = server.log.records("review")
    assert (done["outcome"], done["attempt"]) == ("reviewed", 2)


@pytest.mark.parametrize("status", [None, 500, 502, 503, 429])
def test_retries_are_bounded(serve_app: Serve, status: int | None) -> None:
    failure = WorkerResult("error", error="github", status=status, reason="GitHub is down")
    recorder = Recorder(script=[failure] * 10)
    server = serve_app(recorder, job_attempts=3)
    assert server.deliver(own_payload()).status_code == 202
    wait_until(lambda: server.log.records("review"))
    server.wait_idle()
    assert len(recorder.jobs) == 3
    assert len(server.log.records("review.retry")) == 2
    [failed] = server.log.records("review")
    assert (failed["outcome"], failed["error"], failed.get("status")) == (
        "failed",
        "github",
        status,
    )


@pytest.mark.parametrize(
    "result",
    [
        WorkerResult("error", error="config", reason=".asyncguard.toml: unknown key 'selct'"),
        WorkerResult("error", error="github", status=404, reason="GET /repos/o/r: 404"),
        WorkerResult("error", error="github", status=422, reason="POST reviews: 422"),
        WorkerResult("error", error="bug", reason="KeyError: 'x'", detail="Traceback ..."),
    ],
)
def test_a_permanent_failure_is_logged_once_and_not_retried(
    serve_app: Serve, result: WorkerResult
) -> None:
    recorder = Recorder(script=[result])
    server = serve_app(recorder)
    assert server.deliver(own_payload(), delivery="d-fail").status_code == 202
    wait_until(lambda: server.log.records("review"))
    server.wait_idle()
    assert len(recorder.jobs) == 1
    [line] = server.log.records("review")
    assert line["level"] == "error"
    assert (line["outcome"], line["error"], line["reason"]) == (
        "failed",
        result.error,
        result.reason,
    )
    assert (line["delivery"], line["repository"], line["pull_request"]) == ("d-fail", "octo/app", 7)
    # The server is still there.
    assert server.deliver(own_payload()).status_code == 202


def test_a_runner_that_raises_does_not_take_the_server_down(serve_app: Serve) -> None:
    recorder = Recorder(script=[RuntimeError("boom")])
    server = serve_app(recorder)
    assert server.deliver(own_payload()).status_code == 202
    wait_until(lambda: server.log.records("review"))
    [line] = server.log.records("review")
    assert (line["outcome"], line["error"]) == ("failed", "bug")
    assert "RuntimeError: boom" in line["traceback"]
    assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200
    assert server.deliver(pull_request_payload(head_sha=sha("next"))).status_code == 202
    server.wait_idle()
    assert len(recorder.jobs) == 2


def test_a_token_that_cannot_be_minted_is_retried(serve_app: Serve) -> None:
    recorder = Recorder()
    tokens = StaticTokens([GitHubError("POST /app/installations/42/access_tokens: 500", 500)])
    server = serve_app(recorder, tokens)
    assert server.deliver(own_payload()).status_code == 202
    wait_until(lambda: server.log.records("review"))
    assert tokens.asked == [42, 42]
    assert len(recorder.jobs) == 1
    assert server.log.records("review")[0]["outcome"] == "reviewed"


def test_a_refused_token_is_dropped_and_the_job_retried_with_a_new_one(serve_app: Serve) -> None:
    recorder = Recorder(script=[WorkerResult("error", error="github", status=401, reason="401")])
    tokens = StaticTokens()
    server = serve_app(recorder, tokens)
    assert server.deliver(own_payload()).status_code == 202
    wait_until(lambda: server.log.records("review"))
    assert tokens.forgotten == [42]
    assert [job.token for job in recorder.jobs] == ["ghs_static_1", "ghs_static_2"]


def test_a_draft_is_skipped_unless_configured(serve_app: Serve) -> None:
    recorder = Recorder()
    server = serve_app(recorder)
    for action in ("opened", "synchronize", "reopened"):
        answer = server.deliver(pull_request_payload(action=action, draft=True))
        assert answer.status_code == 204
    assert recorder.jobs == []
    drafts = Recorder()
    reviewing = serve_app(drafts, review_drafts=True)
    assert reviewing.deliver(pull_request_payload(action="opened", draft=True)).status_code == 202
    reviewing.wait_idle()
    assert len(drafts.jobs) == 1


def test_ready_for_review_is_reviewed(serve_app: Serve) -> None:
    recorder = Recorder()
    server = serve_app(recorder)
    answer = server.deliver(pull_request_payload(action="ready_for_review"))
    assert answer.status_code == 202
    server.wait_idle()
    assert len(recorder.jobs) == 1


def test_a_full_queue_is_503_and_the_redelivery_is_accepted_later(serve_app: Serve) -> None:
    recorder = Recorder()
    recorder.gate.clear()
    server = serve_app(recorder, workers=1, max_queued=1)
    assert server.deliver(pull_request_payload(number=1), delivery="run").status_code == 202
    wait_until(lambda: len(recorder.jobs) == 1)
    assert server.deliver(pull_request_payload(number=2), delivery="wait").status_code == 202
    full = server.deliver(pull_request_payload(number=3), delivery="later")
    assert full.status_code == 503
    assert full.headers["Retry-After"] == "60"
    # A newer head for the waiting pull request replaces it, so it still fits.
    newer = pull_request_payload(number=2, head_sha=sha("newer"))
    assert server.deliver(newer, delivery="newer").status_code == 202
    recorder.gate.set()
    server.wait_idle()
    # GitHub's redelivery (same delivery id) is not a duplicate: it was never accepted.
    assert server.deliver(pull_request_payload(number=3), delivery="later").status_code == 202
    server.wait_idle()
    assert [job.number for job in recorder.jobs] == [1, 2, 3]
    assert recorder.jobs[1].head_sha == sha("newer")


def test_one_repository_gets_at_most_repo_concurrency_workers(serve_app: Serve) -> None:
    recorder = Recorder()
    recorder.gate.clear()
    server = serve_app(recorder, workers=3, repo_concurrency=1)
    for number in (1, 2, 3):
        server.deliver(pull_request_payload(number=number, repository="octo/busy"))
    server.deliver(pull_request_payload(number=1, repository="octo/quiet"))
    wait_until(lambda: len(recorder.jobs) == 2)
    assert sorted(job.repository for job in recorder.jobs) == ["octo/busy", "octo/quiet"]
    assert server.scheduler.counts() == {"queued": 2, "running": 2, "waiting": 0}
    recorder.gate.set()
    server.wait_idle()
    assert [job.number for job in recorder.jobs if job.repository == "octo/busy"] == [1, 2, 3]


def test_workers_bound_the_reviews_running_at_once(serve_app: Serve) -> None:
    recorder = Recorder()
    recorder.gate.clear()
    server = serve_app(recorder, workers=2, repo_concurrency=10)
    for number in range(1, 7):
        assert server.deliver(pull_request_payload(number=number)).status_code == 202
    wait_until(lambda: len(recorder.jobs) == 2)
    assert server.scheduler.counts()["queued"] == 4
    recorder.gate.set()
    server.wait_idle()
    assert len(recorder.jobs) == 6
    assert recorder.most_running == 2


# -- health, logs, the insecure mode ----------------------------------------------------------------


def test_healthz_and_readyz(serve_app: Serve) -> None:
    server = serve_app()
    assert requests.get(f"{server.url}/healthz", timeout=5).json() == {"status": "ok"}
    wait_until(lambda: server.scheduler.ready)
    ready = requests.get(f"{server.url}/readyz", timeout=5)
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "queued": 0, "running": 0, "waiting": 0}


def test_readyz_is_503_until_the_workers_answer(serve_app: Serve) -> None:
    workers_up = threading.Event()

    def slow_pool() -> ThreadPoolExecutor:
        return ThreadPoolExecutor(1, initializer=workers_up.wait, initargs=(TIMEOUT,))

    server = serve_app(executor_factory=slow_pool, workers=1)
    try:
        answer = requests.get(f"{server.url}/readyz", timeout=5)
        assert answer.status_code == 503
        assert answer.json()["status"] == "not ready"
        assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200
    finally:
        workers_up.set()
    wait_until(lambda: server.scheduler.ready)
    assert requests.get(f"{server.url}/readyz", timeout=5).status_code == 200


def test_logs_are_json_lines_without_secrets(serve_app: Serve) -> None:
    recorder = Recorder()
    tokens = StaticTokens()
    server = serve_app(recorder, tokens)
    server.deliver(own_payload(), delivery="d-log")
    server.deliver(own_payload(), secret="wrong")
    server.deliver({"zen": "z"}, "ping")
    server.wait_idle()
    wait_until(lambda: server.log.records("review"))
    text = "\n".join(server.log.lines)
    for secret in (SECRET, "ghs_static_1", server.settings.private_key.splitlines()[1]):
        assert secret not in text
    lines = [json.loads(line) for line in server.log.lines]
    assert all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)
    [accepted] = server.log.records("delivery", status=202)
    assert accepted["event"] == "pull_request"
    assert accepted["action"] == "synchronize"
    assert (accepted["delivery"], accepted["repository"], accepted["pull_request"]) == (
        "d-log",
        "octo/app",
        7,
    )
    assert accepted["outcome"] == "queued"
    assert accepted["client"] == "127.0.0.1"
    assert [line["status"] for line in server.log.records("delivery")] == [202, 401, 200]


def test_insecure_mode_accepts_unsigned_deliveries_and_warns_each_time(serve_app: Serve) -> None:
    recorder = Recorder()
    server = serve_app(recorder, webhook_secret=None, insecure_no_signature=True)
    answers = [
        deliver(server.url, pull_request_payload(number=n), secret=None).status_code for n in (1, 2)
    ]
    assert answers == [202, 202]
    server.wait_idle()
    assert len(recorder.jobs) == 2
    assert len(server.log.records("delivery.unsigned")) == 2
    assert server.log.records("server.insecure")
