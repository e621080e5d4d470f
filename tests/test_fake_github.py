"""The fake GitHub (tests/fake_github.py) behaves like GitHub before anything depends on it.

Every test drives it over real HTTP with `requests`, against a pull request made in a throwaway
git repository: `main` plus a `feature` branch that edits, renames, adds and removes files.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fake_github import BOT_LOGIN, FakeGitHub, serve

PULL = "/repos/octo/app/pulls/7"
AUTH = {"Authorization": "token ghs_test"}
MAIN_PY = "".join(f"value_{i} = {i}\n" for i in range(1, 21))


def git(repo: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, HOME=str(repo.parent))
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    done = subprocess.run(
        [*command, *args], cwd=repo, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def write(repo: Path, name: str, content: str | bytes) -> None:
    path = repo / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """main: app/main.py (20 lines), app/old_name.py, docs/guide.md, docs/with space.md,
    logo.bin. feature (two commits): main.py line 10 changed and lines 21-22 added, old_name.py
    renamed to new_name.py with line 2 changed, app/new.py added, docs/guide.md removed, logo.bin
    changed. After the branch point main gets app/main_only.py, which is not in the PR."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    write(path, "app/main.py", MAIN_PY)
    write(path, "app/old_name.py", "".join(f"name_{i} = {i}\n" for i in range(1, 11)))
    write(path, "docs/guide.md", "guide\n")
    write(path, "docs/with space.md", "spaced out\n")
    write(path, "logo.bin", bytes(range(256)))
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "base")
    git(path, "checkout", "-q", "-b", "feature")
    write(
        path, "app/main.py", MAIN_PY.replace("value_10 = 10", "value_10 = 100") + "a = 1\nb = 2\n"
    )
    git(path, "mv", "app/old_name.py", "app/new_name.py")
    write(
        path, "app/new_name.py", (path / "app/new_name.py").read_text().replace("= 2\n", "= 22\n")
    )
    write(path, "app/new.py", "x = 1\ny = 2\nz = 3\n")
    git(path, "rm", "-q", "docs/guide.md")
    write(path, "logo.bin", bytes(range(255, -1, -1)))
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "feature 1")
    write(path, "app/new.py", "x = 1\ny = 2\nz = 4\n")
    git(path, "commit", "-q", "-am", "feature 2")
    git(path, "checkout", "-q", "main")
    write(path, "app/main_only.py", "only = True\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "main moves on")
    return path


@pytest.fixture
def fake(repo: Path) -> Iterator[FakeGitHub]:
    for started in serve(repo):
        started.set_pull(base="main", head="feature")
        yield started
        assert started.errors == []  # no exception inside the fake


def get(fake: FakeGitHub, path: str, **kwargs: Any) -> requests.Response:
    return requests.get(fake.url + path, headers={**AUTH, **kwargs.pop("headers", {})}, **kwargs)


def post_review(fake: FakeGitHub, body: dict[str, Any], **headers: str) -> requests.Response:
    return requests.post(f"{fake.url}{PULL}/reviews", json=body, headers={**AUTH, **headers})


def comment(line: int, path: str = "app/main.py", **extra: Any) -> dict[str, Any]:
    return {"path": path, "line": line, "body": f"finding at {line}", **extra}


def test_pull_request_json_diff_and_too_large(fake: FakeGitHub, repo: Path) -> None:
    answer = get(fake, PULL)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json; charset=utf-8"
    assert int(answer.headers["x-ratelimit-remaining"]) < int(answer.headers["x-ratelimit-limit"])
    pull = answer.json()
    assert pull["number"] == 7 and pull["state"] == "open" and pull["draft"] is False
    assert pull["html_url"] == "https://github.com/octo/app/pull/7"
    assert pull["head"]["sha"] == git(repo, "rev-parse", "feature") == fake.head_sha
    assert pull["base"]["sha"] == git(repo, "rev-parse", "main")
    assert (pull["base"]["ref"], pull["head"]["ref"]) == ("main", "feature")
    assert pull["head"]["repo"]["full_name"] == pull["base"]["repo"]["full_name"] == "octo/app"
    assert pull["commits"] == 2 and pull["changed_files"] == 5

    diff = get(fake, PULL, headers={"Accept": "application/vnd.github.v3.diff"})
    assert diff.status_code == 200 and diff.headers["content-type"].startswith("text/plain")
    assert "rename from app/old_name.py\nrename to app/new_name.py" in diff.text
    assert "+value_10 = 100" in diff.text and "main_only" not in diff.text  # three-dot diff

    fake.diff_too_large = True
    too_large = get(fake, PULL, headers={"Accept": "application/vnd.github.diff"})
    assert too_large.status_code == 406
    assert too_large.json()["errors"][0]["code"] == "too_large"
    assert get(fake, PULL).status_code == 200  # the JSON form still works


def test_files_are_paginated_with_link_headers(fake: FakeGitHub) -> None:
    fake.no_patch.add("app/new.py")
    first = get(fake, f"{PULL}/files", params={"per_page": "4"})
    assert first.status_code == 200 and len(first.json()) == 4
    assert first.links["next"]["url"].startswith(fake.url + "/repositories/")
    assert "page=2" in first.links["last"]["url"] and "per_page=4" in first.links["next"]["url"]
    second = requests.get(first.links["next"]["url"], headers=AUTH)  # GitHub's absolute link
    assert len(second.json()) == 1
    assert set(second.links) == {"prev", "first"}

    files = {entry["filename"]: entry for entry in first.json() + second.json()}
    statuses = {name: entry["status"] for name, entry in files.items()}
    assert statuses == {
        "app/main.py": "modified",
        "app/new.py": "added",
        "app/new_name.py": "renamed",
        "docs/guide.md": "removed",
        "logo.bin": "modified",
    }
    main = files["app/main.py"]
    assert (main["additions"], main["deletions"], main["changes"]) == (3, 1, 4)
    assert main["patch"].startswith("@@ -7,7 +7,7 @@") and "+b = 2" in main["patch"]
    assert files["app/new_name.py"]["previous_filename"] == "app/old_name.py"
    assert "patch" not in files["logo.bin"]  # binary
    assert "patch" not in files["app/new.py"]  # listed in no_patch
    assert len(main["sha"]) == 40 and main["contents_url"].endswith(f"?ref={fake.head_sha}")

    default = get(fake, f"{PULL}/files")  # 30 a page: one page, no Link header
    assert len(default.json()) == 5 and "link" not in default.headers


def test_review_is_stored_with_its_comments(fake: FakeGitHub) -> None:
    review = {
        "commit_id": fake.head_sha,
        "body": "asyncguard found 3 problems",
        "event": "COMMENT",
        "comments": [
            comment(10),
            comment(10, side="LEFT"),  # the removed line
            comment(22, start_line=20, start_side="RIGHT"),
            comment(3, path="app/new.py"),
        ],
    }
    answer = post_review(fake, review)
    assert answer.status_code == 200, answer.text
    stored = answer.json()
    assert stored["id"] == 1001 and stored["state"] == "COMMENTED"
    assert stored["user"] == {**stored["user"], "login": BOT_LOGIN, "type": "Bot"}
    assert stored["commit_id"] == fake.head_sha and stored["submitted_at"]
    assert stored["html_url"].endswith("#pullrequestreview-1001")

    assert [c["id"] for c in fake.comments] == [5001, 5002, 5003, 5004]
    first, left, multi, _ = fake.comments
    assert first["pull_request_review_id"] == 1001 and first["node_id"]
    assert (first["line"], first["side"], first["start_line"]) == (10, "RIGHT", None)
    assert first["diff_hunk"].startswith("@@") and first["diff_hunk"].endswith("+value_10 = 100")
    assert (left["line"], left["side"]) == (10, "LEFT")
    assert (multi["start_line"], multi["line"], multi["start_side"]) == (20, 22, "RIGHT")

    listed = get(fake, f"{PULL}/comments").json()
    assert [c["id"] for c in listed] == [5001, 5002, 5003, 5004]
    assert get(fake, f"{PULL}/reviews").json() == fake.reviews
    assert [(w.method, w.path) for w in fake.writes()] == [("POST", f"{PULL}/reviews")]
    assert fake.writes()[0].body == review
    assert fake.writes()[0].headers["authorization"] == "token ghs_test"


@pytest.mark.parametrize(
    "bad",
    [
        comment(1),  # a line of app/main.py outside every hunk
        comment(15, side="LEFT"),  # old line 15 is outside every hunk
        comment(22, side="LEFT"),  # new-only line on the old side
        comment(2, path="app/main_only.py"),  # a file not in the pull request
        comment(1, path="README.md"),
        comment(12, start_line=12),  # start_line must come before line
        comment(20, start_line=9),  # two hunks
        {"path": "app/main.py", "body": "no line"},
    ],
)
def test_a_comment_outside_the_diff_is_a_422_and_nothing_is_stored(
    fake: FakeGitHub, bad: dict[str, Any]
) -> None:
    answer = post_review(fake, {"event": "COMMENT", "body": "b", "comments": [comment(10), bad]})
    assert answer.status_code == 422, bad
    assert answer.json()["message"] == "Unprocessable Entity"
    assert fake.reviews == [] and fake.comments == []


def test_line_outside_the_diff_message_and_rejected_lines(fake: FakeGitHub) -> None:
    answer = post_review(fake, {"event": "COMMENT", "comments": [comment(1)]})
    assert answer.json() == {
        "message": "Unprocessable Entity",
        "errors": ["Pull request review thread line must be part of the diff"],
        "documentation_url": "https://docs.github.com/rest/pulls/reviews#create-a-review-for-a-pull-request",
        "status": "422",
    }
    fake.reject_line("app/main.py", 21)  # inside a hunk, yet GitHub says no
    assert post_review(fake, {"event": "COMMENT", "comments": [comment(21)]}).status_code == 422
    assert post_review(fake, {"event": "COMMENT", "comments": [comment(22)]}).status_code == 200
    assert [c["line"] for c in fake.comments] == [22]


def test_commit_id_must_belong_to_the_pull_request(fake: FakeGitHub, repo: Path) -> None:
    main_only = git(repo, "rev-parse", "main")
    refused = post_review(fake, {"commit_id": main_only, "event": "COMMENT", "body": "x"})
    assert refused.status_code == 422
    assert "is not part of the pull request" in refused.json()["errors"][0]
    # An earlier commit of the pull request is fine; lines are those of its diff.
    earlier = git(repo, "rev-parse", "feature~1")
    answer = post_review(
        fake,
        {"commit_id": earlier, "event": "COMMENT", "comments": [comment(3, path="app/new.py")]},
    )
    assert answer.status_code == 200 and fake.comments[0]["commit_id"] == earlier


def test_blank_pending_and_deleting_reviews(fake: FakeGitHub) -> None:
    blank = post_review(fake, {"event": "REQUEST_CHANGES"})
    assert blank.status_code == 422 and fake.reviews == []
    assert post_review(fake, {"event": "NOPE", "body": "x"}).status_code == 422

    pending = post_review(fake, {"body": "draft", "comments": [comment(10)]})
    assert pending.status_code == 200 and pending.json()["state"] == "PENDING"
    assert "submitted_at" not in pending.json()
    assert post_review(fake, {"body": "second draft"}).status_code == 422  # one pending per user
    submitted = post_review(fake, {"event": "COMMENT", "body": "done"}).json()

    not_pending = requests.delete(f"{fake.url}{PULL}/reviews/{submitted['id']}", headers=AUTH)
    assert not_pending.status_code == 422
    assert not_pending.json()["errors"] == ["Can not delete a non-pending review"]
    deleted = requests.delete(f"{fake.url}{PULL}/reviews/{pending.json()['id']}", headers=AUTH)
    assert deleted.status_code == 200 and deleted.json()["id"] == pending.json()["id"]
    assert [r["id"] for r in fake.reviews] == [submitted["id"]] and fake.comments == []
    gone = requests.delete(f"{fake.url}{PULL}/reviews/{pending.json()['id']}", headers=AUTH)
    assert gone.status_code == 404


def test_fail_next_with_and_without_store(fake: FakeGitHub) -> None:
    fake.fail_next("POST", r"/pulls/\d+/reviews$", 502, store=True)
    review = {"event": "COMMENT", "body": "x", "comments": [comment(10)]}
    answer = post_review(fake, review)
    assert answer.status_code == 502 and answer.json() == {"message": "Bad Gateway"}
    assert len(fake.reviews) == 1 and len(fake.comments) == 1  # GitHub stored it anyway

    fake.fail_next("POST", r"/reviews$", 500, times=2)
    assert post_review(fake, review).status_code == 500
    assert post_review(fake, review).status_code == 500
    assert len(fake.reviews) == 1  # not processed
    assert post_review(fake, review).status_code == 200  # the fault is used up

    reset = "1900000000"
    fake.fail_next(
        "GET",
        r"/files",
        403,
        body={"message": "API rate limit exceeded"},
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset},
    )
    limited = get(fake, f"{PULL}/files")
    assert limited.status_code == 403 and limited.headers["x-ratelimit-remaining"] == "0"
    assert limited.headers["x-ratelimit-reset"] == reset
    assert get(fake, f"{PULL}/files").status_code == 200
    assert len(fake.requests) == 6  # failed requests are recorded too


def test_read_only_token_cannot_write(fake: FakeGitHub) -> None:
    fake.read_only = True
    answer = post_review(fake, {"event": "COMMENT", "body": "x"})
    assert answer.status_code == 403
    assert answer.json()["message"] == "Resource not accessible by integration"
    assert "documentation_url" in answer.json()
    assert fake.reviews == []
    assert get(fake, PULL).status_code == 200  # reads still work


def test_seeded_comments_can_be_edited(fake: FakeGitHub) -> None:
    human = fake.add_comment(
        path="app/main.py", line=10, body="lgtm", user_login="alice", user_type="User"
    )
    assert human["user"]["login"] == "alice" and human["id"] == 5001
    assert fake.reviews[0]["state"] == "COMMENTED"
    url = f"{fake.url}/repos/octo/app/pulls/comments/{human['id']}"

    edited = requests.patch(url, json={"body": "fixed"}, headers=AUTH)
    assert edited.status_code == 200 and edited.json()["body"] == "fixed"
    assert fake.comments[0]["body"] == "fixed"
    unknown = requests.patch(url.replace("5001", "9999"), json={"body": "x"}, headers=AUTH)
    assert unknown.status_code == 404 and unknown.json()["message"] == "Not Found"
    broken = requests.patch(url, data="{not json", headers=AUTH)
    assert broken.status_code == 400 and broken.json()["message"] == "Problems parsing JSON"
    assert fake.writes()[-1].body is None and fake.writes()[-1].raw == "{not json"


def test_api_prefix_routes_everything_under_it(repo: Path) -> None:
    with FakeGitHub(repo, api_prefix="/api/v3/") as enterprise:
        enterprise.set_pull(base="main", head="feature")
        assert enterprise.url.endswith("/api/v3")
        assert get(enterprise, PULL).status_code == 200
        page = get(enterprise, f"{PULL}/files", params={"per_page": "1"})
        assert page.links["next"]["url"].startswith(enterprise.url + "/repositories/")
        assert requests.get(page.links["next"]["url"], headers=AUTH).status_code == 200
        root = enterprise.url.removesuffix("/api/v3")
        assert requests.get(root + PULL, headers=AUTH).status_code == 404
        assert enterprise.requests[0].path == PULL
        assert enterprise.requests[0].full_path == "/api/v3" + PULL


def test_contents_raw_json_directories_and_404(fake: FakeGitHub, repo: Path) -> None:
    head = fake.head_sha
    raw = get(
        fake,
        "/repos/octo/app/contents/app/new.py",
        params={"ref": head},
        headers={"Accept": "application/vnd.github.raw"},
    )
    assert raw.status_code == 200 and raw.text == "x = 1\ny = 2\nz = 4\n"

    obj = get(fake, "/repos/octo/app/contents/logo.bin", params={"ref": head}).json()
    assert (obj["type"], obj["encoding"], obj["name"], obj["size"]) == (
        "file",
        "base64",
        "logo.bin",
        256,
    )
    assert all(len(line) <= 60 for line in obj["content"].splitlines())
    assert base64.b64decode(obj["content"]) == bytes(range(255, -1, -1))
    assert obj["sha"] == git(repo, "rev-parse", f"{head}:logo.bin")

    spaced = get(fake, "/repos/octo/app/contents/docs/with%20space.md", params={"ref": "main"})
    assert base64.b64decode(spaced.json()["content"]) == b"spaced out\n"

    listing = get(fake, "/repos/octo/app/contents/app", params={"ref": head}).json()
    assert {(e["name"], e["type"]) for e in listing} == {
        ("main.py", "file"),
        ("new.py", "file"),
        ("new_name.py", "file"),
    }
    root = get(fake, "/repos/octo/app/contents", params={"ref": "main"}).json()
    assert ("docs", "dir") in {(e["path"], e["type"]) for e in root}

    assert (
        get(fake, "/repos/octo/app/contents/docs/guide.md", params={"ref": head}).status_code == 404
    )
    assert (
        get(fake, "/repos/octo/app/contents/app/main_only.py").status_code == 200
    )  # default: main
    assert get(fake, "/repos/octo/app/contents/app", params={"ref": "nope"}).status_code == 404


def test_unknown_routes_repositories_and_numbers_are_404(fake: FakeGitHub) -> None:
    for path in ("/repos/octo/other/pulls/7", "/repos/octo/app/pulls/8", "/nothing/here"):
        answer = get(fake, path)
        assert answer.status_code == 404 and answer.json()["message"] == "Not Found", path
    assert requests.put(f"{fake.url}{PULL}/reviews", json={}, headers=AUTH).status_code == 404
    assert [r.path for r in fake.requests][:3] == [
        "/repos/octo/other/pulls/7",
        "/repos/octo/app/pulls/8",
        "/nothing/here",
    ]
    rate = get(fake, "/rate_limit").json()
    assert rate["resources"]["core"]["limit"] == 5000


def test_tokens_identities_and_app_installation_tokens(repo: Path) -> None:
    with FakeGitHub(repo, tokens={"ghp_alice": "alice"}) as fake:
        fake.set_pull(base="main", head="feature")
        bad = get(fake, PULL, headers={"Authorization": "token wrong"})
        assert bad.status_code == 401 and bad.json()["message"] == "Bad credentials"
        alice = {"Authorization": "Bearer ghp_alice"}
        assert post_review(fake, {"event": "COMMENT", "body": "hi"}, **alice).status_code == 200
        assert fake.reviews[0]["user"]["login"] == "alice"
        anonymous = requests.post(f"{fake.url}{PULL}/reviews", json={"body": "x"})
        assert anonymous.status_code == 401

        tokens_url = f"{fake.url}/app/installations/{fake.installation_id}/access_tokens"
        assert requests.post(tokens_url, headers={"Authorization": "token x"}).status_code == 401
        jwt = {"Authorization": "Bearer aaa.bbb.ccc"}
        minted = requests.post(tokens_url, headers=jwt)
        assert minted.status_code == 201 and minted.json()["token"] == "ghs_fake1"
        assert minted.json()["expires_at"].endswith("Z")
        assert requests.get(f"{fake.url}/app", headers=jwt).json()["slug"] == "asyncguard"
        installation = requests.get(f"{fake.url}/repos/octo/app/installation", headers=jwt)
        assert installation.json()["id"] == fake.installation_id

        as_app = {"Authorization": "token ghs_fake1"}
        assert post_review(fake, {"event": "COMMENT", "body": "app"}, **as_app).status_code == 200
        assert fake.reviews[-1]["user"]["login"] == "asyncguard[bot]"
        fake.token_lifetime = 0
        expired = requests.post(tokens_url, headers=jwt).json()["token"]
        assert get(fake, PULL, headers={"Authorization": f"token {expired}"}).status_code == 401


def test_pygithub_reads_and_posts_through_the_fake(fake: FakeGitHub) -> None:
    """The real client: PyGithub follows the fake's pagination links and posts a review."""
    from github import Auth, Github

    client = Github(
        base_url=fake.url,
        auth=Auth.Token("ghs_test"),
        per_page=2,
        retry=None,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )
    pull = client.get_repo("octo/app").get_pull(7)
    assert pull.head.sha == fake.head_sha
    assert [f.filename for f in pull.get_files()] == [
        "app/main.py",
        "app/new.py",
        "app/new_name.py",
        "docs/guide.md",
        "logo.bin",
    ]
    assert sum(r.path.endswith("/files") for r in fake.requests) == 3  # 2 + 2 + 1
    review = pull.create_review(
        body="from PyGithub",
        event="COMMENT",
        comments=[{"path": "app/main.py", "line": 21, "body": "here"}],
    )
    assert review.id == 1001 and fake.comments[0]["line"] == 21


def test_a_subprocess_reaches_the_fake_through_its_env(fake: FakeGitHub) -> None:
    script = (
        "import json, os, urllib.request\n"
        "url = os.environ['GITHUB_API_URL'] + '/repos/' + os.environ['GITHUB_REPOSITORY'] + '/pulls/7'\n"
        "request = urllib.request.Request(url, headers={'Authorization': 'token ' + os.environ['GITHUB_TOKEN']})\n"
        "print(json.load(urllib.request.urlopen(request))['head']['sha'])\n"
    )
    env = {"PATH": os.environ.get("PATH", ""), **fake.env(token="ghs_sub")}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.stdout.strip() == fake.head_sha, done.stderr
    assert fake.requests[-1].headers["authorization"] == "token ghs_sub"
