"""Load test of the webhook server: N signed deliveries at once, from another process.

    .venv/bin/python benchmarks/load_webhook.py [-n 2000] [--concurrency 64] [--workers 2]
                                                [--repos 50] [--payload-bytes 24000] [--json OUT]

Three processes on 127.0.0.1:

- this one: a counting stand-in for GitHub (installation tokens, `POST .../reviews`) in a
  thread, and the report;
- the server: `create_app` from `bot.server` with its settings read from the environment as in
  production, uvicorn, the process pool, App authentication against the stand-in; only the
  review is replaced by `post_review`, which posts one review per job through `GitHubApi` from
  the worker process (the real review needs a repository per pull request, and measures the
  engine rather than the server);
- the client: prepares N deliveries for N distinct pull requests spread over `--repos`
  repositories (each `synchronize` with its own head SHA, `--payload-bytes` long, about the
  size of GitHub's), signs them, then sends them over `--concurrency` keep-alive connections
  and times each acknowledgement.

It reports accepted deliveries per second and the p50/p99/max acknowledgement latency seen by
the client, how long the reviews took to drain, and checks that every accepted delivery
produced exactly one review request (no job lost, none duplicated). A script, not a test: it
prints numbers and exits 1 only when the exactly-once check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SECRET = "load-test-secret"
TOKEN = "ghs_loadtest"
INSTALLATION = 1
_REVIEWS = re.compile(r"^/repos/([^/]+/[^/]+)/pulls/(\d+)/reviews$")
_TOKENS = re.compile(r"^/app/installations/(\d+)/access_tokens$")


# -- the review, replaced (runs in the server's worker processes) ------------------------------------


def post_review(job: Any) -> Any:
    """One `POST /repos/{repo}/pulls/{n}/reviews` for the job's head, with the job's token."""
    from github import Auth

    from bot.github.api import GitHubApi, GitHubError
    from bot.server.worker import WorkerResult

    api = GitHubApi(auth=Auth.Token(job.token), api_url=job.api_url)
    body = {"commit_id": job.head_sha, "event": "COMMENT", "body": "asyncguard load test"}
    try:
        answer = api.write("POST", f"/repos/{job.repository}/pulls/{job.number}/reviews", body)
    except GitHubError as error:
        return WorkerResult("error", reason=str(error), error="github", status=error.status)
    return WorkerResult("reviewed", review_id=answer.get("id") if answer else None)


def serve(port: int) -> None:
    """The server role: the production app with `post_review` as its review."""
    import uvicorn

    from bot.server.app import create_app
    from bot.server.logs import configure_logging, uvicorn_log_config
    from bot.server.settings import load_settings

    settings = load_settings(host="127.0.0.1", port=port)
    configure_logging(settings.log_level)
    app = create_app(settings, runner=post_review)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=uvicorn_log_config(settings.log_level),
        access_log=False,
    )


# -- the stand-in for GitHub (this process) ----------------------------------------------------------


class CountingGitHub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _GitHubHandler)
        self.lock = threading.Lock()
        self.reviews: collections.Counter[tuple[str, int, str]] = collections.Counter()
        self.mints = 0
        self.bad_auth = 0
        self.last_review = 0.0
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _GitHubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CountingGitHub

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        data = json.loads(self.rfile.read(length) or b"null") if length else None
        github = self.server
        if match := _TOKENS.match(self.path):
            with github.lock:
                github.mints += 1
            expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
            self._answer(201, {"token": TOKEN, "expires_at": expires})
            return
        if match := _REVIEWS.match(self.path):
            if self.headers.get("authorization") != f"token {TOKEN}":
                with github.lock:
                    github.bad_auth += 1
                self._answer(401, {"message": "Bad credentials"})
                return
            key = (match[1], int(match[2]), str((data or {}).get("commit_id")))
            with github.lock:
                github.reviews[key] += 1
                github.last_review = time.perf_counter()
                review_id = sum(github.reviews.values())
            self._answer(200, {"id": review_id, "state": "COMMENTED"})
            return
        self._answer(404, {"message": "Not Found"})

    def _answer(self, status: int, body: Any) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


# -- the client (its own process) --------------------------------------------------------------------


def delivery(index: int, run: str, repos: int, size: int) -> tuple[str, int, str, bytes]:
    """(repository, number, head SHA, body) of delivery `index`: its own pull request."""
    repository = f"bench/repo{index % repos}"
    number = index // repos + 1
    head = hashlib.sha1(f"{run}-{index}".encode()).hexdigest()
    payload = {
        "action": "synchronize",
        "number": number,
        "before": hashlib.sha1(f"{run}-{index}-before".encode()).hexdigest(),
        "after": head,
        "pull_request": {
            "url": f"https://api.github.com/repos/{repository}/pulls/{number}",
            "number": number,
            "state": "open",
            "draft": False,
            "title": f"Change {index}",
            "body": "",
            "head": {"ref": "feature", "sha": head, "repo": {"full_name": repository}},
            "base": {"ref": "main", "sha": "1" * 40, "repo": {"full_name": repository}},
        },
        "repository": {"full_name": repository, "name": repository.split("/")[1]},
        "installation": {"id": INSTALLATION},
        "sender": {"login": "octocat", "type": "User"},
    }
    body = json.dumps(payload).encode()
    if len(body) < size:  # GitHub's deliveries carry a lot more than the review needs
        payload["pull_request"]["body"] = "x" * (size - len(body))
        body = json.dumps(payload).encode()
    return repository, number, head, body


def client(url: str, count: int, concurrency: int, run: str, repos: int, size: int) -> None:
    """The client role: send, time, print a JSON summary on stdout."""
    from bot.server.signature import sign

    host, port = url.removeprefix("http://").split(":")
    requests_bytes = []
    for index in range(count):
        _, _, _, body = delivery(index, run, repos, size)
        head = (
            f"POST /webhook HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/json\r\nUser-Agent: GitHub-Hookshot/load\r\n"
            f"X-GitHub-Event: pull_request\r\nX-GitHub-Delivery: {run}-{index}\r\n"
            f"X-Hub-Signature-256: {sign(SECRET.encode(), body)}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        requests_bytes.append(head.encode() + body)
    statuses: collections.Counter[int] = collections.Counter()
    latencies: list[float] = []

    async def connection(queue: collections.deque[bytes]) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while queue:
                request = queue.popleft()
                started = time.perf_counter()
                writer.write(request)
                await writer.drain()
                status, close = await _read_response(reader)
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[status] += 1
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port))
        finally:
            writer.close()

    async def main() -> float:
        queue = collections.deque(requests_bytes)
        started = time.perf_counter()
        await asyncio.gather(*(connection(queue) for _ in range(concurrency)))
        return time.perf_counter() - started

    elapsed = asyncio.run(main())
    print(json.dumps({"elapsed": elapsed, "statuses": statuses, "latencies": latencies}))


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    length, close = 0, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value.strip())
        elif name.lower() == "connection" and value.strip().lower() == "close":
            close = True
    if length:
        await reader.readexactly(length)
    return status, close


# -- the run ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def private_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    import requests

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited:\n{log.read_text()}")
        try:
            if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise SystemExit("the server did not become ready in 60 s")


def run(args: argparse.Namespace) -> int:
    github = CountingGitHub()
    threading.Thread(target=github.serve_forever, daemon=True).start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    run_id = f"load-{os.getpid()}-{int(time.time())}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNCGUARD_", "GITHUB_"))}
    env.update(
        {
            "ASYNCGUARD_APP_ID": "1",
            "ASYNCGUARD_PRIVATE_KEY": private_key(),
            "ASYNCGUARD_WEBHOOK_SECRET": SECRET,
            "GITHUB_API_URL": github.url,
            "ASYNCGUARD_WORKERS": str(args.workers),
            "ASYNCGUARD_REPO_CONCURRENCY": str(args.workers),
            "ASYNCGUARD_MAX_QUEUED": str(max(1000, args.n * 2)),
            "ASYNCGUARD_LOG_LEVEL": "info",
            "PYTHONPATH": str(REPO),
        }
    )
    with tempfile.TemporaryDirectory(prefix="asyncguard-load-") as scratch:
        log = Path(scratch) / "server.log"
        with log.open("wb") as log_file:
            server = subprocess.Popen(
                [sys.executable, __file__, "--role", "server", "--port", str(port)],
                cwd=scratch,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_ready(url, server, log)
                started = time.perf_counter()
                client_args = [
                    *("--role", "client", "--url", url, "--run-id", run_id),
                    *("-n", str(args.n), "--concurrency", str(args.concurrency)),
                    *("--repos", str(args.repos), "--payload-bytes", str(args.payload_bytes)),
                ]
                sent = subprocess.run(
                    [sys.executable, __file__, *client_args],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                result = json.loads(sent.stdout)
                accepted = int(result["statuses"].get("202", 0))
                deadline = time.monotonic() + 120 + args.n / 20
                while sum(github.reviews.values()) < accepted and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(0.5)  # a late duplicate would show up here
                drained = (github.last_review or time.perf_counter()) - started
            finally:
                server.terminate()
                server.wait(30)
        lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    expected = {delivery(i, run_id, args.repos, 0)[:3] for i in range(args.n)}
    reviews = github.reviews
    exactly_once = (
        accepted == args.n and set(reviews) == expected and all(n == 1 for n in reviews.values())
    )
    latencies = result["latencies"]
    failed = [x for x in lines if x.get("msg") == "review" and x.get("outcome") != "reviewed"]
    report = {
        "deliveries": args.n,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "payload_bytes": args.payload_bytes,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "statuses": result["statuses"],
        "accepted_per_s": round(accepted / result["elapsed"], 1),
        "send_s": round(result["elapsed"], 3),
        "ack_ms_p50": round(percentile(latencies, 0.50), 2),
        "ack_ms_p99": round(percentile(latencies, 0.99), 2),
        "ack_ms_max": round(max(latencies), 2),
        "ack_ms_mean": round(statistics.fmean(latencies), 2),
        "review_requests": sum(reviews.values()),
        "distinct_reviewed": len(reviews),
        "duplicated": sum(1 for n in reviews.values() if n > 1),
        "missing": len(expected - set(reviews)),
        "failed_jobs": len(failed),
        "token_mints": github.mints,
        "bad_auth": github.bad_auth,
        "reviews_drained_s": round(drained, 2),
        "reviews_per_s": round(sum(reviews.values()) / drained, 1) if drained else 0.0,
        "exactly_once": exactly_once,
    }
    print(
        f"{args.n} deliveries, {args.concurrency} connections, {args.workers} worker processes, "
        f"{args.payload_bytes}-byte payloads, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}\n"
        f"  answers:           {dict(result['statuses'])}\n"
        f"  accepted/s:        {report['accepted_per_s']} ({result['elapsed']:.2f} s to send all)\n"
        f"  ack latency (ms):  p50 {report['ack_ms_p50']}, p99 {report['ack_ms_p99']}, "
        f"max {report['ack_ms_max']}\n"
        f"  review requests:   {report['review_requests']} for {report['distinct_reviewed']} "
        f"pull requests ({report['duplicated']} duplicated, {report['missing']} missing, "
        f"{report['failed_jobs']} failed jobs)\n"
        f"  reviews drained:   {report['reviews_drained_s']} s after the first delivery "
        f"({report['reviews_per_s']}/s); {report['token_mints']} installation token minted\n"
        f"  exactly once:      {'yes' if exactly_once else 'NO'}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if exactly_once else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="deliveries (default 2000)")
    parser.add_argument("--concurrency", type=int, default=64, help="connections (default 64)")
    parser.add_argument("--workers", type=int, default=2, help="review processes (default 2)")
    parser.add_argument("--repos", type=int, default=50, help="repositories (default 50)")
    parser.add_argument("--payload-bytes", type=int, default=24_000)
    parser.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    parser.add_argument("--role", choices=("run", "server", "client"), default="run")
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--run-id", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "server":
        serve(args.port)
        return 0
    if args.role == "client":
        client(args.url, args.n, args.concurrency, args.run_id, args.repos, args.payload_bytes)
        return 0
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
