"""A small, stateful fake of GitHub's REST API for one pull request, served over real HTTP.

`FakeGitHub` listens on 127.0.0.1 (a free port) in a background thread, so the code under test
talks to it exactly as it talks to GitHub: through PyGithub/requests in this process, or from a
subprocess given `GITHUB_API_URL=fake.url`. The pull request is `base..head` of a real git
repository the test made (`repo_dir`); diffs, file lists and file contents come from `git`, and
review comments are validated against the diff the way GitHub does (a line outside every hunk is
a 422 and nothing is stored).

    with FakeGitHub(repo.path) as fake:
        fake.set_pull(base="main", head="feature")
        run_review(api_url=fake.url)
        assert [c["line"] for c in fake.comments] == [12]

Everything the fake receives is recorded in `requests` (`writes()` for the non-GET ones);
`fail_next`, `reject_line`, `read_only`, `diff_too_large` and `no_patch` make it misbehave the
way GitHub does. Paths of recorded requests are relative to the API root (`api_prefix`
stripped), as received: still percent-encoded, without the query.

Routes (all under `api_prefix`; `/repositories/{id}/...`, the form GitHub uses in `Link`
headers, is the same as `/repos/{owner}/{repo}/...`):

    GET    /rate_limit
    GET    /app                                             (app JWT)
    POST   /app/installations/{id}/access_tokens            (app JWT)
    GET    /repos/{o}/{r}                                   GET /repos/{o}/{r}/installation (JWT)
    GET    /repos/{o}/{r}/pulls/{n}                         (JSON, or the diff with a diff Accept)
    GET    /repos/{o}/{r}/pulls/{n}/files|comments|reviews  (paginated)
    POST   /repos/{o}/{r}/pulls/{n}/reviews
    GET    /repos/{o}/{r}/pulls/{n}/reviews/{id}            DELETE (pending only)
    GET    /repos/{o}/{r}/pulls/{n}/reviews/{id}/comments   POST .../reviews/{id}/events (submit)
    GET    /repos/{o}/{r}/pulls/comments/{id}               PATCH, DELETE
    GET    /repos/{o}/{r}/contents/{path}?ref=REF           (JSON object/listing, or raw bytes)

Anything else is a 404 {"message": "Not Found"}, recorded like the rest.
"""

from __future__ import annotations

import base64
import hashlib
import http
import json
import math
import os
import re
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["BOT_LOGIN", "FakeGitHub", "RecordedRequest", "serve"]

BOT_LOGIN = "github-actions[bot]"
BOT_ID = 41898282  # github-actions[bot]'s real user id
WEB = "https://github.com"
DOCS = "https://docs.github.com/rest"
JSON_TYPE = "application/json; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
RATE_LIMIT = 5000
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100
FIRST_REVIEW_ID = 1001
FIRST_COMMENT_ID = 5001
REVIEW_EVENTS = {
    "COMMENT": "COMMENTED",
    "REQUEST_CHANGES": "CHANGES_REQUESTED",
    "APPROVE": "APPROVED",
}
SIDES = ("LEFT", "RIGHT")

CREATE_REVIEW_DOCS = f"{DOCS}/pulls/reviews#create-a-review-for-a-pull-request"
LINE_NOT_IN_DIFF = "Pull request review thread line must be part of the diff"
PATH_NOT_IN_DIFF = "Path could not be resolved"
_HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_SHA = re.compile(r"^[0-9a-f]{40}$")
_OCTAL = re.compile(r"[0-7]{3}")
_GIT_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


# -- what the fake records and answers ---------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str  # relative to the API root (api_prefix stripped), percent-encoded, no query
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: Any  # the decoded JSON body, None when there is none or it is not JSON
    raw: str  # the body as text
    full_path: str = ""  # the path as sent, api_prefix included


@dataclass
class _Response:
    status: int
    body: Any = None  # JSON-encoded unless `data` is given
    data: bytes | None = None
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)


class _HttpError(Exception):
    """Raised by a route to answer with an error; caught by the dispatcher."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.response = _Response(status, body, headers=dict(headers or {}))


def _not_found() -> _HttpError:
    return _HttpError(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"})


def _unprocessable(*errors: str, docs: str = CREATE_REVIEW_DOCS) -> _HttpError:
    return _HttpError(
        422,
        {
            "message": "Unprocessable Entity",
            "errors": list(errors),
            "documentation_url": docs,
            "status": "422",
        },
    )


def _invalid(detail: str, docs: str = DOCS) -> _HttpError:
    """GitHub's answer to a body that fails its schema (a missing or mistyped field)."""
    return _HttpError(
        422,
        {"message": f"Invalid request.\n\n{detail}", "documentation_url": docs, "status": "422"},
    )


@dataclass
class _Fault:
    method: str  # upper case, or "*"
    pattern: re.Pattern[str]
    status: int
    body: dict[str, Any] | str | None
    headers: dict[str, str]
    store: bool
    times: int

    def response(self) -> _Response:
        if isinstance(self.body, str):  # e.g. the HTML page of a 502 from GitHub's front end
            data = self.body.encode()
            return _Response(self.status, data=data, content_type="text/html", headers=self.headers)
        body = (
            self.body if self.body is not None else {"message": http.HTTPStatus(self.status).phrase}
        )
        return _Response(self.status, body, headers=dict(self.headers))


# -- the pull request's diff, parsed -------------------------------------------------------------


@dataclass
class _Hunk:
    header: str
    start: int  # index of the header line in the file's patch lines (its diff position is 0)
    left: dict[int, int] = field(default_factory=dict)  # old-side line -> patch index
    right: dict[int, int] = field(default_factory=dict)  # new-side line -> patch index

    def lines(self, side: str) -> dict[int, int]:
        return self.left if side == "LEFT" else self.right


@dataclass
class _FileDiff:
    old_path: str | None  # None for an added file
    new_path: str | None  # None for a removed file
    status: str  # added | removed | modified | renamed | copied | changed
    binary: bool = False
    patch_lines: list[str] = field(default_factory=list)  # from the first "@@" on
    hunks: list[_Hunk] = field(default_factory=list)
    additions: int = 0
    deletions: int = 0

    @property
    def path(self) -> str:
        return self.new_path or self.old_path or ""

    @property
    def patch(self) -> str:
        return "\n".join(self.patch_lines)

    def hunk_of(self, side: str, line: int) -> _Hunk | None:
        return next((hunk for hunk in self.hunks if line in hunk.lines(side)), None)


@dataclass
class _Diff:
    base: str  # the merge base
    head: str
    raw: bytes  # `git diff` output, served as is for the diff media type
    files: list[_FileDiff]

    def file(self, path: str) -> _FileDiff | None:
        return next((f for f in self.files if f.path == path), None)


def _git_unquote(name: str) -> str:
    """A path as git prints it: C-quoted ("a\\tb", octal bytes) when it has odd characters."""
    if len(name) < 2 or not (name.startswith('"') and name.endswith('"')):
        return name
    out = bytearray()
    text, i = name[1:-1], 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            following = text[i + 1]
            if _OCTAL.fullmatch(text[i + 1 : i + 4]):
                out.append(int(text[i + 1 : i + 4], 8))
                i += 4
                continue
            out.append(_GIT_ESCAPES.get(following, ord(following)))
            i += 2
            continue
        out.extend(char.encode("utf-8", "surrogateescape"))
        i += 1
    return out.decode("utf-8", "surrogateescape")


def _header_paths(rest: str) -> tuple[str, str]:
    """The two paths of `diff --git a/X b/Y` (only needed when no ---/+++/rename line names them:
    binary files, mode changes, empty files). Unquoted names are split by length, as git does,
    because X == Y whenever git prints no rename line."""
    if rest.startswith('"'):
        end = 1
        while rest[end] != '"':
            end += 2 if rest[end] == "\\" else 1
        first, second = rest[: end + 1], rest[end + 2 :]
        return _git_unquote(first)[2:], _git_unquote(second)[2:]
    half = (len(rest) - 5) // 2  # "a/" X " b/" X
    return rest[2 : 2 + half], rest[2 : 2 + half]


def _strip_prefix(name: str) -> str | None:
    name = name.removesuffix("\t")  # git appends a tab to ---/+++ names that contain a space
    if name == "/dev/null":
        return None
    return _git_unquote(name)[2:]


def _parse_file(block: list[str]) -> _FileDiff:
    """One `diff --git` section of `git diff` output."""
    header_old, header_new = _header_paths(block[0][len("diff --git ") :])
    old: str | None = header_old
    new: str | None = header_new
    status, binary, mode_only = "modified", False, False
    index = 1
    while index < len(block) and not block[index].startswith("@@"):
        line = block[index]
        if line.startswith("new file mode"):
            status, old = "added", None
        elif line.startswith("deleted file mode"):
            status, new = "removed", None
        elif line.startswith(("rename from ", "copy from ")):
            status = "renamed" if line.startswith("rename") else "copied"
            old = _git_unquote(line.split(" ", 2)[2])
        elif line.startswith(("rename to ", "copy to ")):
            new = _git_unquote(line.split(" ", 2)[2])
        elif line.startswith("--- "):
            old = _strip_prefix(line[4:])
        elif line.startswith("+++ "):
            new = _strip_prefix(line[4:])
        elif line.startswith("Binary files "):
            binary = True
        elif line.startswith("old mode "):
            mode_only = True
        index += 1
    diff = _FileDiff(old, new, status, binary, patch_lines=block[index:])
    hunk: _Hunk | None = None
    old_line = new_line = 0
    for position, line in enumerate(diff.patch_lines):
        if line.startswith("@@"):
            match = _HUNK_HEADER.match(line)
            if match is None:  # pragma: no cover - git always writes this form
                raise ValueError(f"bad hunk header {line!r}")
            old_line, new_line = int(match[1]), int(match[3])
            hunk = _Hunk(line, position)
            diff.hunks.append(hunk)
        elif hunk is None or line.startswith("\\"):  # "\ No newline at end of file"
            continue
        elif line.startswith("+"):
            hunk.right[new_line] = position
            new_line += 1
            diff.additions += 1
        elif line.startswith("-"):
            hunk.left[old_line] = position
            old_line += 1
            diff.deletions += 1
        else:  # context (" ", or "" from a tool that trims trailing blanks)
            hunk.left[old_line] = position
            hunk.right[new_line] = position
            old_line += 1
            new_line += 1
    if status == "modified" and mode_only and not diff.hunks:
        diff.status = "changed"
    return diff


def parse_git_diff(text: str) -> list[_FileDiff]:
    """Every file of a `git diff` output, in order."""
    files: list[_FileDiff] = []
    block: list[str] | None = None
    for line in text.split("\n"):
        if line.startswith("diff --git "):  # hunk lines start with " ", "+", "-", never "d"
            if block is not None:
                files.append(_parse_file(block))
            block = [line]
        elif block is not None:
            block.append(line)
    if block is not None:
        while block and block[-1] == "":
            block.pop()
        files.append(_parse_file(block))
    return files


# -- the fake ------------------------------------------------------------------------------------


@dataclass
class _Pull:
    base_sha: str
    head_sha: str
    base_ref: str
    head_ref: str
    state: str
    draft: bool


@dataclass
class _Call:
    """What a route handler gets: the request, the route's groups, the caller."""

    request: RecordedRequest
    params: dict[str, str]
    user: dict[str, Any] | None  # None: anonymous (or an app JWT on /app routes)


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[[_Call], _Response]
    app_jwt: bool = False  # authenticated as the GitHub App itself (a JWT), not a token


def _now() -> str:
    return _iso(time.time())


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(int(seconds), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _user(login: str, user_type: str | None = None) -> dict[str, Any]:
    """GitHub's simple user object."""
    kind = user_type or ("Bot" if login.endswith("[bot]") else "User")
    user_id = (
        BOT_ID if login == BOT_LOGIN else int(hashlib.sha1(login.encode()).hexdigest()[:7], 16)
    )
    return {
        "login": login,
        "id": user_id,
        "node_id": f"MDQ6VXNlcj{user_id}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{user_id}?v=4",
        "url": f"https://api.github.com/users/{urllib.parse.quote(login)}",
        "html_url": f"{WEB}/{'apps/' + login[:-5] if kind == 'Bot' else login}",
        "type": kind,
        "site_admin": False,
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeGitHub


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as GitHub; every answer has a Content-Length
    server: _Server

    def _serve(self) -> None:
        length = _int(self.headers.get("content-length"), 0)
        data = self.rfile.read(length) if length > 0 else b""
        fake = self.server.fake
        try:
            response = fake._receive(self.command, self.path, dict(self.headers), data)
        except Exception as error:  # a bug in the fake (or git failing): say so, don't hang up
            fake.errors.append(f"{self.command} {self.path}: {error!r}")
            response = _Response(500, {"message": f"fake GitHub failed: {error!r}"})
        payload = response.data
        if payload is None:
            payload = b"" if response.status == 204 else json.dumps(response.body).encode()
        self.send_response(response.status)
        if response.status != 204:
            self.send_header("Content-Type", response.content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # silence the access log
        pass


class FakeGitHub:
    """GitHub's REST API for pull request `repository`#`number`, whose commits live in `repo_dir`.

    Call `set_pull` before the pull request routes answer (until then they are 404s).
    """

    def __init__(
        self,
        repo_dir: Path,
        repository: str = "octo/app",
        number: int = 7,
        *,
        head_repository: str | None = None,
        api_prefix: str = "",
        tokens: dict[str, str] | None = None,
    ) -> None:
        self.repo_dir = Path(repo_dir)
        self.repository = repository
        self.number = number
        self.head_repository = head_repository or repository
        self.api_prefix = "/" + api_prefix.strip("/") if api_prefix.strip("/") else ""
        self.tokens = tokens  # token -> login; when given, any other token is a 401

        # Knobs a test may turn at any time.
        self.read_only = False  # every write under /repos/ answers 403, as a fork's token
        self.diff_too_large = False  # the diff media type answers 406
        self.no_patch: set[str] = set()  # files whose `patch` GitHub leaves out (too big)
        self.head_repo_deleted = False  # the fork is gone: `head.repo` is null
        self.actions_can_approve = False  # GitHub's default: Actions may not APPROVE
        self.token_lifetime = 3600  # seconds, for installation tokens
        self.repository_id = 123_456_789
        self.app_id = 4242
        self.app_slug = "asyncguard"
        self.installation_id = 42

        # What happened.
        self.requests: list[RecordedRequest] = []
        self.reviews: list[dict[str, Any]] = []
        self.comments: list[dict[str, Any]] = []
        self.issued_tokens: list[dict[str, Any]] = []  # answers of POST .../access_tokens
        self.errors: list[str] = []  # exceptions inside the fake (answered with a 500)

        self._pull: _Pull | None = None
        self._faults: list[_Fault] = []
        self._rejected: set[tuple[str, int]] = set()
        self._minted: dict[str, float] = {}  # installation token -> expiry (epoch seconds)
        self._next_review_id = FIRST_REVIEW_ID
        self._next_comment_id = FIRST_COMMENT_ID
        self._remaining = RATE_LIMIT
        self._reset = int(time.time()) + 3600
        self._diffs: dict[tuple[str, str], _Diff] = {}
        self._lock = threading.RLock()  # one request at a time: the state stays consistent
        self._git_env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        self._git_env.update({"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull})
        self._routes = self._make_routes()

        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}{self.api_prefix}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # so that close() returns promptly
            name=f"fake-github-{self.port}",
            daemon=True,
        )
        self._thread.start()

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=10)
        self._server.server_close()

    def __enter__(self) -> FakeGitHub:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- set-up helpers ----------------------------------------------------------------------------

    def set_pull(
        self,
        *,
        base: str,
        head: str,
        base_ref: str = "main",
        state: str = "open",
        draft: bool = False,
        head_ref: str = "feature",
    ) -> None:
        """The pull request is `base..head` (commit-ishes of `repo_dir`, resolved now: moving a
        branch later does not move the pull request until `set_pull` is called again)."""
        with self._lock:
            self._pull = _Pull(
                self._resolve(base), self._resolve(head), base_ref, head_ref, state, draft
            )

    @property
    def head_sha(self) -> str:
        return self._require_pull().head_sha

    @property
    def base_sha(self) -> str:
        return self._require_pull().base_sha

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        body: dict[str, Any] | str | None = None,
        headers: dict[str, str] | None = None,
        store: bool = False,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests whose method is `method` ("*": any) and whose path
        (relative to the API root, no query) matches `path_regex` (re.search) with `status`,
        `body` (a dict as JSON, a str as an HTML page; default {"message": reason}) and `headers`
        (on top of the usual ones). With `store=True` the request is processed first, so its
        writes happen: a 502 after GitHub stored the review."""
        with self._lock:
            self._faults.append(
                _Fault(
                    method.upper(),
                    re.compile(path_regex),
                    status,
                    body,
                    dict(headers or {}),
                    store,
                    times,
                )
            )

    def reject_line(self, path: str, line: int) -> None:
        """A review with a comment on (or starting at) `path`:`line` is refused with a 422."""
        with self._lock:
            self._rejected.add((path, line))

    def add_comment(
        self,
        *,
        path: str,
        line: int,
        body: str,
        user_login: str = BOT_LOGIN,
        user_type: str = "Bot",
        side: str = "RIGHT",
        start_line: int | None = None,
        commit_id: str | None = None,
    ) -> dict[str, Any]:
        """Seed an existing review comment (not validated against the diff). As on GitHub, a
        lone comment comes with its own COMMENTED review with an empty body."""
        with self._lock:
            user = _user(user_login, user_type)
            commit = commit_id or self.head_sha
            review = self._store_review(user, "", "COMMENTED", commit)
            anchor = {"path": path, "line": line, "side": side, "body": body}
            if start_line is not None:
                anchor.update(start_line=start_line, start_side=side)
            return self._store_comment(review, user, anchor, self._diff(commit))

    def writes(self) -> list[RecordedRequest]:
        """The requests that were not GETs, in order."""
        return [request for request in self.requests if request.method != "GET"]

    def env(self, token: str = "ghs_test_token") -> dict[str, str]:
        """Environment variables pointing a subprocess at the fake (add them to a clean env)."""
        return {
            "GITHUB_API_URL": self.url,
            "GITHUB_SERVER_URL": WEB,
            "GITHUB_REPOSITORY": self.repository,
            "GITHUB_TOKEN": token,
        }

    def pull_json(self) -> dict[str, Any]:
        """The pull request object, as `GET .../pulls/{n}` answers it."""
        with self._lock:
            return self._pull_object(self._require_pull())

    def event_payload(self, action: str = "synchronize") -> dict[str, Any]:
        """A `pull_request` webhook/Actions event for the pull request."""
        with self._lock:
            pull = self._require_pull()
            return {
                "action": action,
                "number": self.number,
                "pull_request": self._pull_object(pull),
                "repository": self._repo_object(self.repository, pull.base_ref),
                "sender": _user("octocat"),
                "installation": {"id": self.installation_id, "node_id": "MDIzOkluc3RhbGxhdGlvbjQy"},
            }

    # -- plumbing ----------------------------------------------------------------------------------

    def _receive(self, method: str, target: str, headers: dict[str, str], data: bytes) -> _Response:
        """Record one request and answer it (called from the server's threads)."""
        split = urllib.parse.urlsplit(target)
        full_path = split.path
        path = full_path
        if self.api_prefix and (path == self.api_prefix or path.startswith(self.api_prefix + "/")):
            path = path[len(self.api_prefix) :] or "/"
        elif self.api_prefix:
            path = ""  # outside the API root: no route matches
        raw = data.decode("utf-8", "replace")
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            body = None
        request = RecordedRequest(
            method=method.upper(),
            path=path or full_path,
            query=dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True)),
            headers={name.lower(): value for name, value in headers.items()},
            body=body,
            raw=raw,
            full_path=full_path,
        )
        with self._lock:
            self.requests.append(request)
            fault = self._take_fault(request)
            if fault is not None and not fault.store:
                response = fault.response()
            else:
                response = self._process(request, routable=bool(path))
                if fault is not None:
                    response = fault.response()
            if request.path != "/rate_limit":
                self._remaining = max(0, self._remaining - 1)
            rate = {
                "x-ratelimit-limit": str(RATE_LIMIT),
                "x-ratelimit-remaining": str(self._remaining),
                "x-ratelimit-reset": str(self._reset),
                "x-ratelimit-used": str(RATE_LIMIT - self._remaining),
                "x-ratelimit-resource": "core",
                "x-github-api-version-selected": "2022-11-28",
                "x-github-request-id": f"FAKE:{len(self.requests):06d}",
            }
            response.headers = {**rate, **response.headers}
            return response

    def _take_fault(self, request: RecordedRequest) -> _Fault | None:
        for fault in self._faults:
            if fault.method in ("*", request.method) and fault.pattern.search(request.path):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _process(self, request: RecordedRequest, *, routable: bool) -> _Response:
        try:
            route, params = self._route(request) if routable else (None, {})
            if route is not None and route.app_jwt:
                self._check_app_jwt(request)
                user = None
            else:
                user = self._authenticate(request)
            if route is None:
                raise _not_found()
            if request.method in WRITE_METHODS:
                self._check_can_write(request, user, app=route.app_jwt)
            return route.handler(_Call(request, params, user))
        except _HttpError as error:
            return error.response

    def _route(self, request: RecordedRequest) -> tuple[_Route | None, dict[str, str]]:
        path = request.path.rstrip("/") or "/"
        by_id = re.fullmatch(r"/repositories/(\d+)(/.*)?", path)
        if by_id is not None:  # the form of GitHub's pagination links
            if int(by_id[1]) != self.repository_id:
                return None, {}
            path = f"/repos/{self.repository}{by_id[2] or ''}"
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match is None or route.method != request.method:
                continue
            params = {key: value for key, value in match.groupdict().items() if value is not None}
            if "owner" in params and (
                f"{params['owner']}/{params['name']}".lower() != self.repository.lower()
            ):
                return None, {}
            return route, params
        return None, {}

    def _authenticate(self, request: RecordedRequest) -> dict[str, Any] | None:
        """The caller's user object, None when anonymous; 401 for a bad or expired token."""
        header = request.headers.get("authorization", "").strip()
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        token = token.strip()
        bad = _HttpError(
            401, {"message": "Bad credentials", "documentation_url": DOCS, "status": "401"}
        )
        if scheme.lower() not in ("token", "bearer") or not token:
            raise bad
        if token in self._minted:
            if time.time() >= self._minted[token]:
                raise bad
            return _user(f"{self.app_slug}[bot]", "Bot")
        if self.tokens is not None:
            if token not in self.tokens:
                raise bad
            return _user(self.tokens[token])
        return _user(BOT_LOGIN, "Bot")

    def _check_app_jwt(self, request: RecordedRequest) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token.strip().count(".") != 2:
            raise _HttpError(
                401,
                {
                    "message": "A JSON web token could not be decoded",
                    "documentation_url": DOCS,
                    "status": "401",
                },
            )

    def _check_can_write(
        self, request: RecordedRequest, user: dict[str, Any] | None, *, app: bool
    ) -> None:
        if not app and user is None:
            raise _HttpError(
                401,
                {"message": "Requires authentication", "documentation_url": DOCS, "status": "401"},
            )
        if self.read_only and not app:
            raise _HttpError(
                403,
                {
                    "message": "Resource not accessible by integration",
                    "documentation_url": CREATE_REVIEW_DOCS,
                    "status": "403",
                },
                {"x-accepted-github-permissions": "pull_requests=write"},
            )
        if request.raw.strip() and request.body is None:
            raise _HttpError(
                400,
                {"message": "Problems parsing JSON", "documentation_url": DOCS, "status": "400"},
            )

    def _make_routes(self) -> list[_Route]:
        repo = r"/repos/(?P<owner>[^/]+)/(?P<name>[^/]+)"
        pull = repo + r"/pulls/(?P<number>\d+)"
        table: list[tuple[str, str, Callable[[_Call], _Response], bool]] = [
            ("GET", r"/rate_limit", self._get_rate_limit, False),
            ("GET", r"/app", self._get_app, True),
            (
                "POST",
                r"/app/installations/(?P<installation>\d+)/access_tokens",
                self._create_token,
                True,
            ),
            ("GET", repo, self._get_repo, False),
            ("GET", repo + r"/installation", self._get_installation, True),
            ("GET", pull, self._get_pull, False),
            ("GET", pull + r"/files", self._list_files, False),
            ("GET", pull + r"/comments", self._list_comments, False),
            ("GET", pull + r"/reviews", self._list_reviews, False),
            ("POST", pull + r"/reviews", self._create_review, False),
            ("GET", pull + r"/reviews/(?P<review>\d+)", self._get_review, False),
            ("DELETE", pull + r"/reviews/(?P<review>\d+)", self._delete_review, False),
            ("GET", pull + r"/reviews/(?P<review>\d+)/comments", self._list_review_comments, False),
            ("POST", pull + r"/reviews/(?P<review>\d+)/events", self._submit_review, False),
            ("GET", repo + r"/pulls/comments/(?P<comment>\d+)", self._get_comment, False),
            ("PATCH", repo + r"/pulls/comments/(?P<comment>\d+)", self._update_comment, False),
            ("DELETE", repo + r"/pulls/comments/(?P<comment>\d+)", self._delete_comment, False),
            ("GET", repo + r"/contents(?:/(?P<path>.*))?", self._get_contents, False),
        ]
        return [_Route(m, re.compile(p), h, jwt) for m, p, h, jwt in table]

    # -- git -----------------------------------------------------------------------------------------

    def _git(self, *args: str, check: bool = True) -> bytes:
        done = subprocess.run(
            ["git", "-c", "core.quotepath=off", "--literal-pathspecs", *args],
            cwd=self.repo_dir,
            env=self._git_env,
            capture_output=True,
            check=False,
        )
        if check and done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip()
            raise RuntimeError(f"git {' '.join(args)} failed: {message}")
        return done.stdout if done.returncode == 0 else b""

    def _rev_parse(self, commitish: str) -> str | None:
        out = self._git("rev-parse", "--verify", "--quiet", f"{commitish}^{{commit}}", check=False)
        return out.decode().strip() or None

    def _resolve(self, commitish: str) -> str:
        sha = self._rev_parse(commitish)
        if sha is None:
            raise ValueError(f"{commitish!r} is not a commit of {self.repo_dir}")
        return sha

    def _diff(self, head: str) -> _Diff:
        """The pull request's diff as of commit `head`: merge-base(base, head)..head."""
        pull = self._require_pull()
        key = (pull.base_sha, head)
        if key not in self._diffs:
            merge_base = self._git("merge-base", pull.base_sha, head, check=False).decode().strip()
            merge_base = merge_base or pull.base_sha  # unrelated histories: a two-dot diff
            raw = self._git(
                *("-c", "diff.noprefix=false", "-c", "diff.mnemonicPrefix=false"),
                *("-c", "diff.relative=false", "-c", "color.ui=false"),
                "diff",
                "--find-renames",
                *("--no-color", "--no-ext-diff", "--no-textconv"),
                *("--src-prefix=a/", "--dst-prefix=b/"),
                merge_base,
                head,
            )
            files = parse_git_diff(raw.decode("utf-8", "surrogateescape"))
            self._diffs[key] = _Diff(merge_base, head, raw, files)
        return self._diffs[key]

    def _tree(self, commit: str, path: str = "") -> list[dict[str, Any]]:
        """`git ls-tree -l` of `commit` at `path` ("" the root; a trailing "/" lists a directory,
        without it the entry itself): [{mode, type, sha, size, path}]."""
        args = ["ls-tree", "-l", "-z", "--full-name", commit]
        if path:
            args += ["--", path]
        entries = []
        for item in self._git(*args, check=False).split(b"\0"):
            if not item:
                continue
            meta, _, name = item.partition(b"\t")
            mode, kind, sha, size = meta.decode().split()
            entries.append(
                {
                    "mode": mode,
                    "type": kind,
                    "sha": sha,
                    "size": int(size) if size.isdigit() else 0,
                    "path": name.decode("utf-8", "surrogateescape"),
                }
            )
        return entries

    def _commit_in_pull(self, sha: str) -> bool:
        pull = self._require_pull()
        if not _SHA.match(sha):
            return False
        merge_base = self._diff(pull.head_sha).base
        commits = self._git("rev-list", f"{merge_base}..{pull.head_sha}", check=False).split()
        return sha.encode() in commits

    # -- state helpers -------------------------------------------------------------------------------

    def _require_pull(self) -> _Pull:
        if self._pull is None:
            raise RuntimeError("call FakeGitHub.set_pull(base=..., head=...) first")
        return self._pull

    def _pull_for(self, call: _Call) -> _Pull:
        if self._pull is None or int(call.params["number"]) != self.number:
            raise _not_found()
        return self._pull

    @property
    def _pull_html(self) -> str:
        return f"{WEB}/{self.repository}/pull/{self.number}"

    @property
    def _pull_api(self) -> str:
        return f"{self.url}/repos/{self.repository}/pulls/{self.number}"

    def _store_review(
        self, user: dict[str, Any], body: str, state: str, commit: str
    ) -> dict[str, Any]:
        review_id = self._next_review_id
        self._next_review_id += 1
        review: dict[str, Any] = {
            "id": review_id,
            "node_id": f"PRR_kwDOFake{review_id}",
            "user": user,
            "body": body,
            "state": state,
            "html_url": f"{self._pull_html}#pullrequestreview-{review_id}",
            "pull_request_url": self._pull_api,
            "author_association": "NONE" if user["type"] == "Bot" else "MEMBER",
            "_links": {
                "html": {"href": f"{self._pull_html}#pullrequestreview-{review_id}"},
                "pull_request": {"href": self._pull_api},
            },
            "commit_id": commit,
        }
        if state != "PENDING":
            review["submitted_at"] = _now()
        self.reviews.append(review)
        return review

    def _store_comment(
        self, review: dict[str, Any], user: dict[str, Any], anchor: dict[str, Any], diff: _Diff
    ) -> dict[str, Any]:
        """Store one review comment; `anchor` is a validated entry of a review's `comments`."""
        comment_id = self._next_comment_id
        self._next_comment_id += 1
        path, line, side = anchor["path"], anchor["line"], anchor.get("side") or "RIGHT"
        start_line = anchor.get("start_line")
        start_side = (anchor.get("start_side") or side) if start_line is not None else None
        position, diff_hunk = None, ""
        file = diff.file(path)
        hunk = file.hunk_of(side, line) if file else None
        if file is not None and hunk is not None:
            index = hunk.lines(side)[line]
            position = index
            diff_hunk = "\n".join(file.patch_lines[hunk.start : index + 1])
        url = f"{self.url}/repos/{self.repository}/pulls/comments/{comment_id}"
        stamp = _now()
        comment: dict[str, Any] = {
            "url": url,
            "pull_request_review_id": review["id"],
            "id": comment_id,
            "node_id": f"PRRC_kwDOFake{comment_id}",
            "diff_hunk": diff_hunk,
            "path": path,
            "position": position,
            "original_position": position,
            "commit_id": review["commit_id"],
            "original_commit_id": review["commit_id"],
            "user": user,
            "body": anchor["body"],
            "created_at": stamp,
            "updated_at": stamp,
            "html_url": f"{self._pull_html}#discussion_r{comment_id}",
            "pull_request_url": self._pull_api,
            "author_association": review["author_association"],
            "_links": {
                "self": {"href": url},
                "html": {"href": f"{self._pull_html}#discussion_r{comment_id}"},
                "pull_request": {"href": self._pull_api},
            },
            "start_line": start_line,
            "original_start_line": start_line,
            "start_side": start_side,
            "line": line,
            "original_line": line,
            "side": side,
            "subject_type": "line",
        }
        self.comments.append(comment)
        return comment

    def _find(self, items: list[dict[str, Any]], item_id: str) -> dict[str, Any]:
        found = next((item for item in items if item["id"] == int(item_id)), None)
        if found is None:
            raise _not_found()
        return found

    def _paginate(self, call: _Call, items: list[Any]) -> _Response:
        """A page of `items` with GitHub's `Link` header (`page`, `per_page` from the query)."""
        query = call.request.query
        per_page = min(max(_int(query.get("per_page"), DEFAULT_PER_PAGE), 1), MAX_PER_PAGE)
        page = max(_int(query.get("page"), 1), 1)
        last = max(1, math.ceil(len(items) / per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        # GitHub's links name the repository by id and keep the caller's query.
        root = f"http://127.0.0.1:{self.port}{self.api_prefix}"
        link_path = re.sub(
            r"^/repos/[^/]+/[^/]+", f"/repositories/{self.repository_id}", call.request.path
        )

        def link(number: int, rel: str) -> str:
            params = urllib.parse.urlencode({**query, "page": str(number)})
            return f'<{root}{link_path}?{params}>; rel="{rel}"'

        links = []
        if page > 1:
            links += [link(min(page - 1, last), "prev")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links += [link(1, "first")]
        headers = {"link": ", ".join(links)} if links else {}
        return _Response(200, chunk, headers=headers)

    def _json_object(self, call: _Call) -> dict[str, Any]:
        body = call.request.body if call.request.raw.strip() else {}
        if not isinstance(body, dict):
            raise _invalid("Invalid input: the body is not an object.")
        return body

    # -- routes: the app ---------------------------------------------------------------------------

    def _get_rate_limit(self, call: _Call) -> _Response:
        core = {
            "limit": RATE_LIMIT,
            "used": RATE_LIMIT - self._remaining,
            "remaining": self._remaining,
            "reset": self._reset,
        }
        other = {"limit": 30, "used": 0, "remaining": 30, "reset": self._reset}
        graphql = {"limit": RATE_LIMIT, "used": 0, "remaining": RATE_LIMIT, "reset": self._reset}
        resources = {"core": core, "search": other, "graphql": graphql, "code_search": other}
        return _Response(200, {"resources": resources, "rate": core})

    def _app_object(self) -> dict[str, Any]:
        owner = self.repository.split("/")[0]
        return {
            "id": self.app_id,
            "slug": self.app_slug,
            "node_id": "A_kwDOFakeApp",
            "name": self.app_slug,
            "owner": _user(owner, "Organization"),
            "html_url": f"{WEB}/apps/{self.app_slug}",
            "permissions": {"contents": "read", "metadata": "read", "pull_requests": "write"},
            "events": ["pull_request"],
            "installations_count": 1,
        }

    def _get_app(self, call: _Call) -> _Response:
        return _Response(200, self._app_object())

    def _get_installation(self, call: _Call) -> _Response:
        owner = self.repository.split("/")[0]
        app = self._app_object()
        return _Response(
            200,
            {
                "id": self.installation_id,
                "account": _user(owner, "Organization"),
                "app_id": self.app_id,
                "app_slug": self.app_slug,
                "target_type": "Organization",
                "repository_selection": "selected",
                "access_tokens_url": f"{self.url}/app/installations/{self.installation_id}/access_tokens",
                "permissions": app["permissions"],
                "events": app["events"],
            },
        )

    def _create_token(self, call: _Call) -> _Response:
        if int(call.params["installation"]) != self.installation_id:
            raise _not_found()
        if call.request.raw.strip() and call.request.body is None:
            raise _HttpError(400, {"message": "Problems parsing JSON", "documentation_url": DOCS})
        token = f"ghs_fake{len(self.issued_tokens) + 1}"
        expires = time.time() + self.token_lifetime
        self._minted[token] = expires
        answer = {
            "token": token,
            "expires_at": _iso(expires),
            "permissions": self._app_object()["permissions"],
            "repository_selection": "selected",
        }
        self.issued_tokens.append(answer)
        return _Response(201, answer)

    # -- routes: repository and pull request ----------------------------------------------------------

    def _repo_object(self, full_name: str, default_branch: str) -> dict[str, Any]:
        owner, name = full_name.split("/", 1)
        return {
            "id": self.repository_id if full_name == self.repository else self.repository_id + 1,
            "node_id": "R_kgDOFake",
            "name": name,
            "full_name": full_name,
            "private": False,
            "owner": _user(owner, "Organization"),
            "html_url": f"{WEB}/{full_name}",
            "url": f"{self.url}/repos/{full_name}",
            "fork": full_name != self.repository,
            "default_branch": default_branch,
        }

    def _get_repo(self, call: _Call) -> _Response:
        default = self._pull.base_ref if self._pull else "main"
        return _Response(200, self._repo_object(self.repository, default))

    def _pull_object(self, pull: _Pull) -> dict[str, Any]:
        diff = self._diff(pull.head_sha)
        commits = self._git("rev-list", "--count", f"{diff.base}..{pull.head_sha}").decode()
        head_owner = self.head_repository.split("/")[0]
        base_owner = self.repository.split("/")[0]
        head_repo = (
            None if self.head_repo_deleted else self._repo_object(self.head_repository, "main")
        )
        closed = None if pull.state == "open" else _now()
        return {
            "url": self._pull_api,
            "id": 1_000_000 + self.number,
            "node_id": f"PR_kwDOFake{self.number}",
            "html_url": self._pull_html,
            "diff_url": f"{self._pull_html}.diff",
            "patch_url": f"{self._pull_html}.patch",
            "number": self.number,
            "state": pull.state,
            "locked": False,
            "title": f"Pull request #{self.number}",
            "user": _user("octocat"),
            "body": "",
            "created_at": _iso(self._reset - 7200),
            "updated_at": _now(),
            "closed_at": closed,
            "merged_at": None,
            "merge_commit_sha": None,
            "draft": pull.draft,
            "head": {
                "label": f"{head_owner}:{pull.head_ref}",
                "ref": pull.head_ref,
                "sha": pull.head_sha,
                "user": _user(head_owner),
                "repo": head_repo,
            },
            "base": {
                "label": f"{base_owner}:{pull.base_ref}",
                "ref": pull.base_ref,
                "sha": pull.base_sha,
                "user": _user(base_owner),
                "repo": self._repo_object(self.repository, pull.base_ref),
            },
            "author_association": "CONTRIBUTOR",
            "merged": False,
            "mergeable": True,
            "comments": 0,
            "review_comments": len(self.comments),
            "commits": int(commits.strip() or 0),
            "additions": sum(f.additions for f in diff.files),
            "deletions": sum(f.deletions for f in diff.files),
            "changed_files": len(diff.files),
        }

    def _get_pull(self, call: _Call) -> _Response:
        pull = self._pull_for(call)
        if ".diff" in call.request.headers.get("accept", ""):  # application/vnd.github[.v3].diff
            if self.diff_too_large:
                raise _HttpError(
                    406,
                    {
                        "message": "Sorry, the diff exceeded the maximum number of files (300). "
                        "Consider using 'List pull requests files' API or locally cloning the "
                        "repository instead.",
                        "errors": [
                            {"resource": "PullRequest", "field": "diff", "code": "too_large"}
                        ],
                        "documentation_url": f"{DOCS}/pulls/pulls#list-pull-requests-files",
                        "status": "406",
                    },
                )
            return _Response(200, data=self._diff(pull.head_sha).raw, content_type=TEXT_TYPE)
        return _Response(200, self._pull_object(pull))

    def _list_files(self, call: _Call) -> _Response:
        pull = self._pull_for(call)
        diff = self._diff(pull.head_sha)
        new_blobs = (
            {entry["path"]: entry["sha"] for entry in self._tree(pull.head_sha)}
            if diff.files
            else {}
        )
        old_blobs = {e["path"]: e["sha"] for e in self._tree(diff.base)} if diff.files else {}
        entries = []
        for file in diff.files:
            quoted = urllib.parse.quote(file.path)
            entry: dict[str, Any] = {
                "sha": new_blobs.get(file.path) or old_blobs.get(file.path, "0" * 40),
                "filename": file.path,
                "status": file.status,
                "additions": file.additions,
                "deletions": file.deletions,
                "changes": file.additions + file.deletions,
                "blob_url": f"{WEB}/{self.repository}/blob/{pull.head_sha}/{quoted}",
                "raw_url": f"{WEB}/{self.repository}/raw/{pull.head_sha}/{quoted}",
                "contents_url": f"{self.url}/repos/{self.repository}/contents/{quoted}?ref={pull.head_sha}",
            }
            if file.hunks and not file.binary and file.path not in self.no_patch:
                entry["patch"] = file.patch
            if file.status in ("renamed", "copied") and file.old_path:
                entry["previous_filename"] = file.old_path
            entries.append(entry)
        return self._paginate(call, entries)

    # -- routes: reviews and comments --------------------------------------------------------------

    def _list_reviews(self, call: _Call) -> _Response:
        self._pull_for(call)
        return self._paginate(call, list(self.reviews))

    def _get_review(self, call: _Call) -> _Response:
        self._pull_for(call)
        return _Response(200, self._find(self.reviews, call.params["review"]))

    def _list_review_comments(self, call: _Call) -> _Response:
        self._pull_for(call)
        review = self._find(self.reviews, call.params["review"])
        mine = [c for c in self.comments if c["pull_request_review_id"] == review["id"]]
        return self._paginate(call, mine)

    def _list_comments(self, call: _Call) -> _Response:
        self._pull_for(call)
        return self._paginate(call, sorted(self.comments, key=lambda c: c["id"]))

    def _create_review(self, call: _Call) -> _Response:
        pull = self._pull_for(call)
        body = self._json_object(call)
        user = call.user or _user(BOT_LOGIN, "Bot")
        event = body.get("event")
        if event is not None and event not in REVIEW_EVENTS:
            raise _invalid(f'"event" {event!r} is not a member of {sorted(REVIEW_EVENTS)}.')
        review_body = body.get("body") or ""
        if not isinstance(review_body, str):
            raise _invalid('For "body", it is not a string.')
        commit = body.get("commit_id") or pull.head_sha
        if not isinstance(commit, str) or not self._commit_in_pull(commit):
            raise _unprocessable(f"Commit {commit} is not part of the pull request")
        comments = body.get("comments") or []
        if not isinstance(comments, list):
            raise _invalid('For "comments", it is not an array.')
        diff = self._diff(commit)
        anchors = [self._anchor(diff, comment) for comment in comments]  # all or nothing
        if event in ("COMMENT", "REQUEST_CHANGES") and not review_body and not anchors:
            raise _unprocessable("Review cannot be blank: give a body or comments")
        if event == "APPROVE" and user["login"] == BOT_LOGIN and not self.actions_can_approve:
            raise _unprocessable("GitHub Actions is not permitted to approve pull requests.")
        if event is None and any(
            r["state"] == "PENDING" and r["user"]["login"] == user["login"] for r in self.reviews
        ):
            raise _unprocessable("User can only have one pending review per pull request")
        state = REVIEW_EVENTS[event] if event is not None else "PENDING"
        review = self._store_review(user, review_body, state, commit)
        for anchor in anchors:
            self._store_comment(review, user, anchor, diff)
        return _Response(200, review)

    def _anchor(self, diff: _Diff, comment: Any) -> dict[str, Any]:
        """Check one entry of a review's `comments` against the diff (as of the review's commit)
        and return it with `line` and `side` filled in; a 422 when GitHub would refuse it."""
        if not isinstance(comment, dict):
            raise _invalid('For "items", it is not an object.', CREATE_REVIEW_DOCS)
        for key in ("path", "body"):
            if not isinstance(comment.get(key), str):
                raise _invalid(f'"{key}" wasn\'t supplied.', CREATE_REVIEW_DOCS)
        anchor = dict(comment)
        file = diff.file(comment["path"])
        if file is None:
            raise _unprocessable(PATH_NOT_IN_DIFF)
        side = comment.get("side") or "RIGHT"
        start_side = comment.get("start_side") or side
        if side not in SIDES or start_side not in SIDES:
            raise _invalid('"side" must be LEFT or RIGHT.', CREATE_REVIEW_DOCS)
        line = comment.get("line")
        if line is None and isinstance(comment.get("position"), int):  # the deprecated form
            line, side = self._at_position(file, comment["position"])
        if not isinstance(line, int) or isinstance(line, bool):
            raise _unprocessable(LINE_NOT_IN_DIFF)
        anchor.update(line=line, side=side)
        hunk = file.hunk_of(side, line)
        if hunk is None or (file.path, line) in self._rejected:
            raise _unprocessable(LINE_NOT_IN_DIFF)
        start = comment.get("start_line")
        if start is not None:
            if not isinstance(start, int) or (file.path, start) in self._rejected:
                raise _unprocessable(LINE_NOT_IN_DIFF)
            if start not in hunk.lines(start_side):
                raise _unprocessable(LINE_NOT_IN_DIFF)
            if hunk.lines(start_side)[start] >= hunk.lines(side)[line]:  # must come first
                raise _unprocessable(LINE_NOT_IN_DIFF)
            anchor["start_side"] = start_side
        return anchor

    def _at_position(self, file: _FileDiff, position: int) -> tuple[int | None, str]:
        """(line, side) of diff position `position` of `file` (None when it names no line)."""
        for hunk in file.hunks:
            for side in ("RIGHT", "LEFT"):
                for line, index in hunk.lines(side).items():
                    if index == position:
                        return line, side
        return None, "RIGHT"

    def _delete_review(self, call: _Call) -> _Response:
        self._pull_for(call)
        review = self._find(self.reviews, call.params["review"])
        if review["state"] != "PENDING":
            raise _unprocessable(
                "Can not delete a non-pending review",
                docs=f"{DOCS}/pulls/reviews#delete-a-pending-review-for-a-pull-request",
            )
        self.reviews.remove(review)
        self.comments[:] = [c for c in self.comments if c["pull_request_review_id"] != review["id"]]
        return _Response(200, review)

    def _submit_review(self, call: _Call) -> _Response:
        self._pull_for(call)
        review = self._find(self.reviews, call.params["review"])
        body = self._json_object(call)
        event = body.get("event")
        if event not in REVIEW_EVENTS:
            raise _invalid('"event" wasn\'t supplied.')
        if review["state"] != "PENDING":
            raise _unprocessable("Can not submit a non-pending review")
        if isinstance(body.get("body"), str) and body["body"]:
            review["body"] = body["body"]
        review["state"] = REVIEW_EVENTS[event]
        review["submitted_at"] = _now()
        return _Response(200, review)

    def _get_comment(self, call: _Call) -> _Response:
        return _Response(200, self._find(self.comments, call.params["comment"]))

    def _update_comment(self, call: _Call) -> _Response:
        comment = self._find(self.comments, call.params["comment"])
        body = self._json_object(call)
        if not isinstance(body.get("body"), str):
            raise _invalid('"body" wasn\'t supplied.')
        comment["body"] = body["body"]
        comment["updated_at"] = _now()
        return _Response(200, comment)

    def _delete_comment(self, call: _Call) -> _Response:
        comment = self._find(self.comments, call.params["comment"])
        self.comments.remove(comment)
        return _Response(204)

    # -- routes: contents ----------------------------------------------------------------------------

    def _get_contents(self, call: _Call) -> _Response:
        default = self._pull.base_ref if self._pull else "main"
        ref = call.request.query.get("ref") or default
        commit = self._rev_parse(ref)
        if commit is None:
            raise _HttpError(
                404, {"message": f"No commit found for the ref {ref}", "documentation_url": DOCS}
            )
        path = urllib.parse.unquote(call.params.get("path", "")).strip("/")
        raw = ".raw" in call.request.headers.get("accept", "")
        entry = self._tree(commit, path) if path else []
        if path and not entry:
            raise _not_found()
        if not path or entry[0]["type"] == "tree":  # a directory: its listing (raw or not)
            listing = self._tree(commit, f"{path}/" if path else "")
            return _Response(200, [self._content_entry(e, ref) for e in listing])
        item = entry[0]
        data = self._git("cat-file", "blob", item["sha"]) if item["type"] == "blob" else b""
        if raw:
            return _Response(200, data=data, content_type=TEXT_TYPE)
        answer = self._content_entry(item, ref)
        if answer["type"] == "file":
            encoded = base64.b64encode(data).decode()
            lines = [encoded[i : i + 60] for i in range(0, len(encoded), 60)]
            answer.update(encoding="base64", content="".join(line + "\n" for line in lines))
        elif answer["type"] == "symlink":
            answer["target"] = data.decode("utf-8", "surrogateescape")
        return _Response(200, answer)

    def _content_entry(self, item: dict[str, Any], ref: str) -> dict[str, Any]:
        """One entry of GitHub's contents API (a file, dir, symlink or submodule)."""
        kind = {"tree": "dir", "commit": "submodule"}.get(item["type"], "file")
        if item["mode"] == "120000":
            kind = "symlink"
        path = item["path"]
        quoted = urllib.parse.quote(path)
        url = f"{self.url}/repos/{self.repository}/contents/{quoted}?ref={urllib.parse.quote(ref)}"
        html = f"{WEB}/{self.repository}/{'tree' if kind == 'dir' else 'blob'}/{ref}/{quoted}"
        git_url = f"{self.url}/repos/{self.repository}/git/{'trees' if kind == 'dir' else 'blobs'}/{item['sha']}"
        download = None
        if kind == "file":
            download = f"https://raw.githubusercontent.com/{self.repository}/{ref}/{quoted}"
        return {
            "type": kind,
            "size": item["size"],
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": item["sha"],
            "url": url,
            "git_url": git_url,
            "html_url": html,
            "download_url": download,
            "_links": {"self": url, "git": git_url, "html": html},
        }


def serve(repo_dir: Path, **kwargs: Any) -> Iterator[FakeGitHub]:
    """For fixtures: `yield from serve(repo.path, api_prefix="/api/v3")` starts a fake and
    closes it when the test is done."""
    fake = FakeGitHub(repo_dir, **kwargs)
    try:
        yield fake
    finally:
        fake.close()
