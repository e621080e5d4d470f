"""The Action's entrypoint (`asyncguard review`) run as a subprocess, as a runner runs it.

Each test builds a real git repository (the bundled example pull request: a base commit and a
head commit), serves it through `FakeGitHub` on 127.0.0.1, writes the event file from GitHub's
real webhook payloads (adapted to the temporary repository), and runs the entrypoint with the
environment a runner gives a Docker action: `GITHUB_*`, `INPUT_*` with hyphens kept,
`GITHUB_OUTPUT` and `GITHUB_STEP_SUMMARY` files.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.example_pr import example_repo, git
from tests.fake_github import FakeGitHub
from tests.github_schema import SKIP_REASON, schema_for, validate

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples"
WEBHOOKS = ROOT.parent / "shared" / "reference" / "webhooks"
README = ROOT / "README.md"
SAMPLE_START = "<!-- sample-comment:start -->"
SAMPLE_END = "<!-- sample-comment:end -->"
SKILL = """---
name: team-async-patterns
description: How our services use async SQLAlchemy.
---

# Team async patterns

## Pattern: Concurrent vs Sequential Queries

Independent queries finish sooner when they run together, so start them at once and wait for
all of them.

```python
# CORRECT
users, orders = await asyncio.gather(
    session.execute(select(User)), session.execute(select(Order))
)
```
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The example pull request as a repository: `main` (base) and `feature` (head), with a
    skill file of the test's own on the base."""
    return example_repo(tmp_path / "repo", {".claude/skills/async/SKILL.md": SKILL})


@pytest.fixture
def fake(repo: Path) -> Any:
    with FakeGitHub(repo) as server:
        server.set_pull(base="main", head="feature")
        yield server
        # Every write any test made must be one GitHub's API accepts, by its official schema.
        for request in server.writes():
            validate(request.method, request.path, request.body)
        assert server.errors == []


def test_the_writes_are_checked_against_githubs_schema() -> None:
    if schema_for("POST", "/repos/octo/app/pulls/7/reviews") is None:
        pytest.skip(SKIP_REASON)
    import jsonschema

    with pytest.raises(jsonschema.ValidationError, match="LGTM"):
        validate("POST", "/repos/octo/app/pulls/7/reviews", {"event": "LGTM"})


def _event(fake: FakeGitHub, action: str = "synchronize") -> dict[str, Any]:
    """GitHub's real payload for `action`, pointed at the fake's pull request."""
    own = fake.event_payload(action)
    source = WEBHOOKS / f"pull_request.{action}.json"
    if not source.is_file():
        return own  # a fresh clone has no ../shared: the fake's own payload keeps the path covered
    event: dict[str, Any] = json.loads(source.read_text(encoding="utf-8"))
    pull = event["pull_request"]
    pull["number"] = event["number"] = fake.number
    for side in ("head", "base"):
        pull[side]["sha"] = own["pull_request"][side]["sha"]
        pull[side]["ref"] = own["pull_request"][side]["ref"]
        pull[side]["repo"]["full_name"] = own["pull_request"][side]["repo"]["full_name"]
    event["repository"]["full_name"] = fake.repository
    return event


def _run(
    fake: FakeGitHub,
    repo: Path,
    tmp_path: Path,
    *,
    event_name: str = "pull_request",
    event: dict[str, Any] | None = None,
    inputs: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> tuple[subprocess.CompletedProcess[str], dict[str, str], str]:
    """Run the entrypoint like a runner; returns the process, the outputs and the summary."""
    event_path = tmp_path / "event.json"
    event_path.write_text(json.dumps(event or _event(fake)), encoding="utf-8")
    output, summary = tmp_path / "output.txt", tmp_path / "summary.md"
    output.write_text("", encoding="utf-8")
    summary.write_text("", encoding="utf-8")
    defaults = {
        "github-token": "ghs_action_token",
        "config": "",
        "fail-on": "error",
        "filter-mode": "added",
        "max-comments": "25",
        "review-event": "COMMENT",
        "config-from": "base",
        "working-directory": ".",
    }
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": event_name,
        "GITHUB_EVENT_PATH": str(event_path),
        "GITHUB_REPOSITORY": fake.repository,
        "GITHUB_WORKSPACE": str(repo),
        "GITHUB_API_URL": fake.url,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(summary),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    env.update({f"INPUT_{k.upper()}": v for k, v in {**defaults, **(inputs or {})}.items()})
    done = subprocess.run(
        [sys.executable, "-m", "bot", "review", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    outputs = dict(
        line.split("=", 1) for line in output.read_text(encoding="utf-8").splitlines() if line
    )
    return done, outputs, summary.read_text(encoding="utf-8")


def _posted_reviews(fake: FakeGitHub) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST" and r.path.endswith("/reviews")]


# -- the first run and re-runs ------------------------------------------------------------------


def test_first_run_posts_one_review_with_every_finding(
    fake: FakeGitHub, repo: Path, tmp_path: Path
) -> None:
    done, outputs, summary = _run(fake, repo, tmp_path)
    assert done.returncode == 1, done.stderr  # errors found, fail-on error
    assert len(fake.reviews) == 1
    review = fake.reviews[0]
    assert review["state"] == "COMMENTED"
    assert review["commit_id"] == fake.head_sha
    assert "**asyncguard** found 3 new problems: 2 errors, 1 warning." in review["body"]
    codes = sorted(re.search(r"\*\*(AG\d+)", c["body"]).group(1) for c in fake.comments)  # type: ignore[union-attr]
    assert codes == ["AG101", "AG201", "AG501"]
    assert all(re.search(r"<!-- asyncguard:fp=[0-9a-f]{20} -->$", c["body"]) for c in fake.comments)
    assert outputs == {
        "findings": "3",
        "errors": "2",
        "warnings": "1",
        "sarif-file": "asyncguard.sarif",
    }
    sarif = json.loads((repo / "asyncguard.sarif").read_text(encoding="utf-8"))
    assert len(sarif["runs"][0]["results"]) == 3
    assert "| error | AG201 shared-session-concurrency | [app/routes.py:" in summary
    assert f"https://github.com/octo/app/blob/{fake.head_sha}/app/routes.py#L" in summary
    assert "Posted [a review](https://github.com/octo/app/pull/7#pullrequestreview-1001)" in summary
    assert "review with 3 inline comment(s)" in done.stdout


def test_the_skill_of_the_base_is_quoted_with_the_correction(
    fake: FakeGitHub, repo: Path, tmp_path: Path
) -> None:
    _run(fake, repo, tmp_path)
    ag201 = next(c["body"] for c in fake.comments if c["body"].startswith("**AG201"))
    assert "Independent queries finish sooner when they run together" in ag201
    assert "<details>" in ag201
    assert "**Correction:**" in ag201


def test_a_second_run_on_the_same_head_posts_nothing(
    fake: FakeGitHub, repo: Path, tmp_path: Path
) -> None:
    _run(fake, repo, tmp_path)
    writes_before = len(fake.writes())
    done, outputs, summary = _run(fake, repo, tmp_path)
    assert done.returncode == 1  # the findings are still there
    assert len(fake.writes()) == writes_before
    assert len(fake.reviews) == 1
    assert outputs["findings"] == "3"
    assert "Nothing new to post" in summary
    assert "3 already reported" in done.stdout


def test_a_fix_commit_marks_the_fixed_comment_and_all_fixed_is_said_once(
    fake: FakeGitHub, repo: Path, tmp_path: Path
) -> None:
    _run(fake, repo, tmp_path)
    routes = repo / "app" / "routes.py"
    text = routes.read_text(encoding="utf-8")
    routes.write_text(
        "\n".join(line for line in text.splitlines() if "create_task" not in line) + "\n",
        encoding="utf-8",
    )
    git(repo, "commit", "-q", "-am", "keep no task")
    fake.set_pull(base="main", head="feature")
    done, _, _ = _run(fake, repo, tmp_path)
    patches = [r for r in fake.writes() if r.method == "PATCH"]
    assert len(patches) == 1, done.stdout
    fixed = next(c for c in fake.comments if c["body"].startswith("**AG501"))
    assert "**Fixed** since this comment was posted" in fixed["body"]
    assert fixed["body"].rstrip().endswith("-->")  # the marker stays last
    assert len(fake.reviews) == 1  # a partial fix only edits the comment

    git(repo, "checkout", "-q", "main", "--", "app")  # back to the base: nothing left
    git(repo, "rm", "-q", "app/cache.py")
    git(repo, "commit", "-q", "-am", "revert")
    fake.set_pull(base="main", head="feature")
    done, outputs, _ = _run(fake, repo, tmp_path)
    assert done.returncode == 0, done.stderr
    assert outputs["findings"] == "0"
    assert len(fake.reviews) == 2
    assert "everything reported earlier on this pull request is fixed" in fake.reviews[1]["body"]
    assert sum("**Fixed**" in c["body"] for c in fake.comments) == 3
    writes = len(fake.writes())
    _run(fake, repo, tmp_path)
    assert len(fake.writes()) == writes  # said once


# -- forks, refusals, failures --------------------------------------------------------------------


def test_a_fork_run_writes_annotations_and_a_summary(repo: Path, tmp_path: Path) -> None:
    with FakeGitHub(repo, head_repository="someone/app") as fake:
        fake.set_pull(base="main", head="feature")
        fake.read_only = True
        done, outputs, summary = _run(fake, repo, tmp_path, event=_event(fake, "opened"))
        assert done.returncode == 1, done.stderr  # still by fail-on
        assert fake.reviews == []
        assert re.search(r"^::error file=app/routes.py,line=\d+", done.stdout, re.MULTILINE)
        assert re.search(r"^::warning file=app/routes.py,line=\d+", done.stdout, re.MULTILINE)
        assert "::warning title=asyncguard::the token cannot write" in done.stdout
        assert "read-only token" in summary
        assert "| error | AG201" in summary
        assert outputs["findings"] == "3"


def test_a_comment_github_refuses_is_listed_and_the_others_posted(
    fake: FakeGitHub, repo: Path, tmp_path: Path
) -> None:
    _run_dry = _run(fake, repo, tmp_path, args=("--dry-run",))[0]
    planned = json.loads(_run_dry.stdout)[0]["body"]["comments"]
    refused = next(c for c in planned if c["body"].startswith("**AG501"))
    fake.reject_line(refused["path"], refused["line"])
    done, _, _ = _run(fake, repo, tmp_path)
    assert len(fake.reviews) == 1, done.stdout
    assert sorted(c["body"][:7] for c in fake.comments) == ["**AG101", "**AG201"]
    assert "1 comment refused by GitHub" in fake.reviews[0]["body"]
    assert "2 inline comments below." in fake.reviews[0]["body"]
    assert "AG501 unreferenced-task" in fake.reviews[0]["body"]
    assert "1 comment(s) refused by GitHub" in done.stdout


@pytest.mark.parametrize("stored", [True, False], ids=["stored", "lost"])
def test_502_then_success_posts_exactly_one_review(
    fake: FakeGitHub, repo: Path, tmp_path: Path, stored: bool
) -> None:
    fake.fail_next(
        "POST", r"/pulls/7/reviews$", 502, body={"message": "Server Error"}, store=stored
    )
    done, _, _ = _run(fake, repo, tmp_path)
    assert done.returncode == 1, done.stderr
    assert len(fake.reviews) == 1
    assert len(_posted_reviews(fake)) == (1 if stored else 2)
    assert len(fake.comments) == 3


def test_a_rate_limit_answer_waits_and_retries(
    fake: FakeGitHub, repo: Path, tmp_path: Path
) -> None:
    fake.fail_next(
        "POST",
        r"/pulls/7/reviews$",
        403,
        body={"message": "You have exceeded a secondary rate limit."},
        headers={"retry-after": "1"},
    )
    fake.fail_next("GET", r"/pulls/7$", 429, body={"message": "slow"}, headers={"retry-after": "1"})
    done, _, _ = _run(fake, repo, tmp_path)
    assert done.returncode == 1, done.stderr
    assert len(fake.reviews) == 1
    assert len(_posted_reviews(fake)) == 2
    gets = [r for r in fake.requests if r.method == "GET" and r.path.endswith("/pulls/7")]
    assert len(gets) >= 2  # the 429 was waited out and the read sent again


def test_other_events_exit_0_with_a_notice(fake: FakeGitHub, repo: Path, tmp_path: Path) -> None:
    done, outputs, _ = _run(fake, repo, tmp_path, event_name="push", event={"ref": "refs/heads/x"})
    assert done.returncode == 0
    assert done.stdout.startswith("::notice title=asyncguard::the 'push' event has no pull request")
    assert fake.requests == []
    assert outputs == {}


def test_a_broken_config_on_the_base_is_one_line_and_exit_2(
    fake: FakeGitHub, repo: Path, tmp_path: Path
) -> None:
    git(repo, "checkout", "-q", "main")
    (repo / ".asyncguard.toml").write_text('fail-on = "sometimes"\n', encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "config")
    git(repo, "checkout", "-q", "feature")
    git(repo, "rebase", "-q", "main")
    fake.set_pull(base="main", head="feature")
    done, _, _ = _run(fake, repo, tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert ".asyncguard.toml" in done.stderr and "base commit" in done.stderr
    assert "::error title=asyncguard::" in done.stdout
    assert fake.writes() == []


def test_the_config_of_the_base_wins_over_the_head(
    fake: FakeGitHub, repo: Path, tmp_path: Path
) -> None:
    (repo / ".asyncguard.toml").write_text('[severity]\nAG201 = "off"\n', encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "switch the rule off in the pull request")
    fake.set_pull(base="main", head="feature")
    _run(fake, repo, tmp_path)
    assert any(c["body"].startswith("**AG201") for c in fake.comments)
    head_run = tmp_path / "head"
    head_run.mkdir()
    with FakeGitHub(repo) as other:
        other.set_pull(base="main", head="feature")
        _run(other, repo, head_run, inputs={"config-from": "head"})
        assert not any(c["body"].startswith("**AG201") for c in other.comments)


def test_the_merge_commit_checkout_gives_the_heads_line_numbers(
    fake: FakeGitHub, repo: Path, tmp_path: Path
) -> None:
    _run(fake, repo, tmp_path)
    at_head = sorted((c["path"], c["line"]) for c in fake.comments)
    # actions/checkout's default: a merge commit of the head into the base, one more line above.
    git(repo, "checkout", "-q", "main")
    routes = repo / "app" / "routes.py"
    routes.write_text("# base moved on\n" + routes.read_text(encoding="utf-8"), encoding="utf-8")
    git(repo, "commit", "-q", "-am", "base moves")
    git(repo, "checkout", "-q", "--detach", "main")
    git(repo, "merge", "-q", "--no-edit", "feature")
    merged = tmp_path / "merged"
    merged.mkdir()
    with FakeGitHub(repo) as other:
        other.set_pull(base="main~1", head="feature")
        _run(other, repo, merged)
        assert sorted((c["path"], c["line"]) for c in other.comments) == at_head


def test_dry_run_prints_exactly_what_a_real_run_sends(
    fake: FakeGitHub, repo: Path, tmp_path: Path
) -> None:
    dry, _, _ = _run(fake, repo, tmp_path, args=("--dry-run",))
    assert dry.returncode == 1, dry.stderr
    planned = json.loads(dry.stdout)
    assert fake.writes() == []
    assert [(w["method"], w["path"]) for w in planned] == [
        ("POST", "/repos/octo/app/pulls/7/reviews")
    ]
    _run(fake, repo, tmp_path)
    (sent,) = fake.writes()
    assert sent.body == planned[0]["body"]


def test_github_enterprise_api_prefix(repo: Path, tmp_path: Path) -> None:
    with FakeGitHub(repo, api_prefix="/api/v3") as fake:
        fake.set_pull(base="main", head="feature")
        done, _, _ = _run(fake, repo, tmp_path)
        assert done.returncode == 1, done.stderr
        assert len(fake.reviews) == 1


def test_cli_review_of_a_recorded_pull_request_without_a_checkout(
    fake: FakeGitHub, repo: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "GITHUB_TOKEN": "ghs_cli",
        "GITHUB_API_URL": fake.url,
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot", "review", "--repo", "octo/app", "--pr", "7", "--dry-run"],
        cwd=elsewhere,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    (write,) = json.loads(done.stdout)
    assert len(write["body"]["comments"]) == 3  # the imported app/db.py was fetched for the index
    assert fake.writes() == []
    contents = [r for r in fake.requests if "/contents/" in r.path]
    assert all(r.query.get("ref") in (fake.head_sha, fake.base_sha) for r in contents)


# -- the README's sample comment ------------------------------------------------------------------


def test_readme_sample_comment_is_generated_from_a_real_run(
    fake: FakeGitHub, repo: Path, tmp_path: Path
) -> None:
    _run(fake, repo, tmp_path)
    body = next(c["body"] for c in fake.comments if c["body"].startswith("**AG201"))
    sample = "\n".join(f"> {line}".rstrip() for line in body.splitlines())
    block = f"{SAMPLE_START}\n{sample}\n{SAMPLE_END}"
    text = README.read_text(encoding="utf-8")
    current = re.search(re.escape(SAMPLE_START) + r".*?" + re.escape(SAMPLE_END), text, re.DOTALL)
    if os.environ.get("ASYNCGUARD_UPDATE_SAMPLES") == "1":
        updated = text.replace(current.group(0), block) if current else text
        README.write_text(updated, encoding="utf-8")
        return
    assert current is not None, f"README.md has no {SAMPLE_START} block"
    assert current.group(0) == block, (
        "the README's sample comment is stale: run "
        "`ASYNCGUARD_UPDATE_SAMPLES=1 .venv/bin/python -m pytest tests/test_action_e2e.py -k readme`"
    )


def test_a_force_push_during_the_review_skips_instead_of_failing(
    fake: FakeGitHub, repo: Path
) -> None:
    from github import Auth

    from bot.github.api import GitHubApi
    from bot.github.review import review_pull_request

    git(repo, "checkout", "-q", "-b", "rewritten", "main")
    (repo / "app" / "extra.py").write_text("VALUE = 1\n", encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "force-pushed history")

    class PushesMidway(GitHubApi):
        def write(self, method: str, path: str, body: Any = None) -> Any:
            fake.set_pull(base="main", head="rewritten")  # the old head leaves the pull request
            return super().write(method, path, body)

    api = PushesMidway(Auth.Token("t"), fake.url, seconds_between_writes=None, sleep=lambda _: None)
    outcome = review_pull_request(api, "octo/app", 7)
    assert outcome.skipped.startswith("the head moved on")
    assert outcome.post_error == ""
    assert fake.reviews == []
