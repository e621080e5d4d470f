"""Where a pull request's code, config and skill come from (bot/github/sources.py and
bot/github/policy.py): the files endpoint and its holes, the three origins of the head's files
(checkout, git objects, API), the imported modules fetched for the repository index, and the
config and skill read from the base commit through git or the contents API.

The API is `responses` (an unregistered call raises), the clones are real git repositories made
in `tmp_path`. PyGithub puts the port in the URL, so the mocks are registered with it.
"""

from __future__ import annotations

import json
import re
import textwrap
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
import responses
from github import Auth

from bot.changeset import ChangeSet, FileChange, FileStatus, Hunk
from bot.config import ConfigError
from bot.findings import Note, NoteKind
from bot.git import diff_commits
from bot.github.api import GitHubApi
from bot.github.policy import ApiReader, DiskReader, GitReader, load_policy, reader_for
from bot.github.pull import PullRequest
from bot.github.review import ReviewOptions, review_pull_request
from bot.github.sources import api_changeset, imported_modules, pull_tree
from bot.registry import rule_infos

if TYPE_CHECKING:
    from tests.conftest import GitRepo  # the `make_repo` fixture's repositories

API_URL = "https://api.github.com"
BASE = "https://api.github.com:443"  # as PyGithub sends it
REPO = "octo/app"
PULLS = f"{BASE}/repos/{REPO}/pulls/7"
CONTENTS = f"{BASE}/repos/{REPO}/contents/"
RAW = "application/vnd.github.raw"
DIFF = "application/vnd.github.diff"
HEAD = "1" * 40
BASE_SHA = "2" * 40
SECTION = "Pattern: Concurrent vs Sequential Queries"

ROUTES_V1 = textwrap.dedent(
    """\
    from app.db import get_session
    from .models import User


    async def read(session):
        return await session.get(User, 1)
    """
)
ROUTES_V2 = ROUTES_V1 + textwrap.dedent(
    """\


    async def count(session):
        return await session.scalar(User.id)
    """
)
NEW_PY = "import asyncio\n\n\nasync def tick():\n    await asyncio.sleep(0)\n"


def _skill(problem: str) -> str:
    return textwrap.dedent(
        f"""\
        ---
        name: team-db
        description: invented for the tests
        ---
        # Our database notes

        ## {SECTION}

        **Problem:** {problem}

        ```python
        # ✅ CORRECT: one query at a time
        users = await session.scalar(q1)
        ```
        """
    )


# --- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def api() -> GitHubApi:
    return GitHubApi(
        Auth.Token("t"), API_URL, sleep=lambda seconds: None, seconds_between_writes=None
    )


def _pull(head: str = HEAD, base: str = BASE_SHA) -> PullRequest:
    return PullRequest(REPO, 7, head, base, "main", REPO)


def _query(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def _mock_contents(
    rsps: responses.RequestsMock, files: dict[tuple[str, str], str | list[dict[str, Any]]]
) -> Callable[[], list[tuple[str, str, str]]]:
    """`GET .../contents/{path}?ref=REF` from `files` ((path, ref) -> raw text, or a directory
    listing as JSON), else 404. Returns a function listing the (path, ref, Accept) asked for."""
    seen: list[tuple[str, str, str]] = []

    def answer(request: requests.PreparedRequest) -> Any:
        url = urllib.parse.urlsplit(request.url or "")
        path = urllib.parse.unquote(url.path.split("/contents/", 1)[1])
        ref = _query(request.url or "").get("ref", "")
        seen.append((path, ref, str(request.headers.get("Accept"))))
        found = files.get((path, ref))
        if isinstance(found, str):
            return 200, {"content-type": RAW}, found
        if found is not None:
            return 200, {"content-type": "application/json"}, json.dumps(found)
        return 404, {}, json.dumps({"message": "Not Found"})

    rsps.add_callback("GET", re.compile(re.escape(CONTENTS) + ".*"), callback=answer)
    return lambda: list(seen)


def _entry(filename: str, status: str, patch: str | None = None, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"filename": filename, "status": status, "changes": 1, **extra}
    if patch is not None:
        entry["patch"] = patch
    return entry


def _files(rsps: responses.RequestsMock, entries: list[dict[str, Any]]) -> None:
    rsps.get(f"{PULLS}/files", json=entries)


def _too_large(rsps: responses.RequestsMock) -> None:
    rsps.get(
        PULLS,
        status=406,
        json={
            "message": "Sorry, the diff exceeded the maximum number of lines (20000)",
            "errors": [{"resource": "PullRequest", "field": "diff", "code": "too_large"}],
        },
    )


def _accepts(rsps: responses.RequestsMock, url: str) -> list[str]:
    return [str(c.request.headers.get("Accept")) for c in rsps.calls if c.request.url == url]


@pytest.fixture
def pr_repo(make_repo: Callable[..., GitRepo]) -> tuple[GitRepo, str, str]:
    """main (base): the app, a config and a skill; feature (head): routes.py grows, new.py is
    added, old.py removed, the config and the skill changed. Checked out at the head."""
    repo = make_repo("clone")
    repo.write("app/__init__.py", "")
    repo.write("app/db.py", "async def get_session():\n    yield None\n")
    repo.write("app/models.py", "class User:\n    id = 1\n")
    repo.write("app/routes.py", ROUTES_V1)
    repo.write("app/old.py", "x = 1\n")
    repo.write(".asyncguard.toml", 'fail-on = "warning"\n')
    repo.write(".claude/skills/team-db/SKILL.md", _skill("Base says: one session, one query."))
    base = repo.commit("base")
    repo.git("checkout", "-q", "-b", "feature")
    repo.write("app/routes.py", ROUTES_V2)
    repo.write("app/new.py", NEW_PY)
    repo.remove("app/old.py")
    repo.write(".asyncguard.toml", 'fail-on = "never"\n')
    repo.write(".claude/skills/team-db/SKILL.md", _skill("Head says: anything goes."))
    head = repo.commit("head")
    return repo, base, head


# --- the change set from the files endpoint ----------------------------------------------------


def test_statuses_renames_and_hunks_from_the_files_endpoint(
    rsps: responses.RequestsMock, api: GitHubApi
) -> None:
    _files(
        rsps,
        [
            _entry("app/new.py", "added", "@@ -0,0 +1,2 @@\n+a = 1\n+b = 2"),
            _entry("app/gone.py", "removed", "@@ -1,2 +0,0 @@\n-a = 1\n-b = 2"),
            _entry("app/mod.py", "modified", "@@ -3,3 +3,4 @@\n x\n-y\n+y2\n+y3\n z"),
            _entry(
                "app/renamed.py",
                "renamed",
                "@@ -1,1 +1,1 @@\n-old\n+new",
                previous_filename="app/orig.py",
            ),
            _entry("app/moved.py", "renamed", previous_filename="app/was.py", changes=0),
            _entry("app/copy.py", "copied", "@@ -0,0 +1 @@\n+c = 3"),
            _entry("app/mode.py", "changed", changes=0),
            _entry("app/same.py", "unchanged", changes=0),
            _entry("logo.png", "modified", changes=2),  # binary: GitHub sends no patch
            _entry("app/odd.py", "reverted"),  # a status this code does not know
        ],
    )
    changeset, notes = api_changeset(api, _pull(), None)
    assert changeset == ChangeSet(
        (
            FileChange("app/new.py", FileStatus.ADDED, None, frozenset({1, 2}), (Hunk(1, 2),)),
            FileChange("app/gone.py", FileStatus.DELETED),
            FileChange("app/mod.py", FileStatus.MODIFIED, None, frozenset({4, 5}), (Hunk(3, 4),)),
            FileChange(
                "app/renamed.py", FileStatus.RENAMED, "app/orig.py", frozenset({1}), (Hunk(1, 1),)
            ),
            FileChange("app/moved.py", FileStatus.RENAMED, "app/was.py"),
            FileChange("app/copy.py", FileStatus.ADDED, None, frozenset({1}), (Hunk(1, 1),)),
            FileChange("app/mode.py", FileStatus.MODIFIED),
            FileChange("logo.png", FileStatus.MODIFIED),
        )
    )
    assert notes == []
    # Every file had what it needed: no request for the whole diff.
    assert [(c.request.method, c.request.url) for c in rsps.calls] == [
        ("GET", f"{PULLS}/files?per_page=100")
    ]


def test_a_missing_patch_is_recovered_from_the_diff_media_type(
    rsps: responses.RequestsMock, api: GitHubApi
) -> None:
    _files(
        rsps,
        [
            _entry("app/small.py", "modified", "@@ -1 +1 @@\n-a\n+b"),
            _entry("app/big.py", "modified", changes=3),
        ],
    )
    whole = textwrap.dedent(
        """\
        diff --git a/app/small.py b/app/small.py
        --- a/app/small.py
        +++ b/app/small.py
        @@ -1 +1 @@
        -a
        +b
        diff --git a/app/big.py b/app/big.py
        index 1111111..2222222 100644
        --- a/app/big.py
        +++ b/app/big.py
        @@ -10,3 +10,5 @@ def f():
             x = 1
        +    y = 2
        +    z = 3
             return x
        -    pass
        +    pass  # now
        """
    )
    rsps.get(PULLS, body=whole, content_type="text/plain")
    changeset, notes = api_changeset(api, _pull(), None)
    big = changeset.get("app/big.py")
    assert big is not None
    assert (big.status, big.added_lines, big.hunks) == (
        FileStatus.MODIFIED,
        frozenset({11, 12, 14}),
        (Hunk(10, 5),),
    )
    assert changeset.get("app/small.py") is not None
    assert notes == []
    assert _accepts(rsps, PULLS) == [DIFF]


def test_a_diff_too_large_is_recovered_from_a_local_clone_with_both_commits(
    rsps: responses.RequestsMock,
    api: GitHubApi,
    make_repo: Callable[..., GitRepo],
) -> None:
    repo = make_repo()
    repo.write("app/big.py", "".join(f"v{n} = {n}\n" for n in range(1, 31)))
    base = repo.commit("base")
    repo.write("app/big.py", "".join(f"v{n} = {n * (2 if n == 20 else 1)}\n" for n in range(1, 31)))
    head = repo.commit("head")
    _files(rsps, [_entry("app/big.py", "modified", changes=2)])
    _too_large(rsps)

    changeset, notes = api_changeset(api, _pull(head, base), repo.path)

    assert changeset.files == diff_commits(base, head, repo.path).files
    big = changeset.get("app/big.py")
    assert big is not None and big.added_lines == frozenset({20})
    assert big.hunks == (Hunk(17, 7),)
    assert notes == []
    assert _accepts(rsps, PULLS) == [DIFF]


def test_a_diff_too_large_without_a_usable_clone_drops_the_file_with_a_note(
    rsps: responses.RequestsMock,
    api: GitHubApi,
    make_repo: Callable[..., GitRepo],
) -> None:
    other = make_repo("unrelated")  # a clone without the pull request's commits
    other.write("x.py", "x = 1\n")
    other.commit()
    _files(
        rsps,
        [
            _entry("app/big.py", "modified", changes=2),
            _entry("app/ok.py", "added", "@@ -0,0 +1 @@\n+x"),
        ],
    )
    _too_large(rsps)
    for local in (None, other.path):
        changeset, notes = api_changeset(api, _pull(), local)
        assert [c.path for c in changeset] == ["app/ok.py"]
        assert notes == [
            Note(NoteKind.TOO_LARGE, "app/big.py", "skipped: GitHub sent no diff for this file")
        ]


def test_a_new_file_without_a_patch_becomes_all_added_lines_from_its_text(
    rsps: responses.RequestsMock, api: GitHubApi, tmp_path: Path
) -> None:
    _files(rsps, [_entry("app/huge.py", "added", changes=5)])
    _too_large(rsps)
    asked = _mock_contents(rsps, {("app/huge.py", HEAD): NEW_PY})

    changeset, notes = api_changeset(api, _pull(), None)
    assert changeset.files == (FileChange("app/huge.py", FileStatus.ADDED),)
    assert notes == []  # an added file is kept: its text tells the lines

    tree = pull_tree(api, _pull(), None, tmp_path / "scratch")
    assert tree.origin == "api"
    assert tree.changeset.files == (
        FileChange("app/huge.py", FileStatus.ADDED, None, frozenset(range(1, 6)), (Hunk(1, 5),)),
    )
    assert tree.notes == []
    assert (tmp_path / "scratch/app/huge.py").read_text() == NEW_PY
    assert ("app/huge.py", HEAD, RAW) in asked()


# --- the head's files: checkout, git objects, API ----------------------------------------------


def test_a_checkout_at_the_head_is_read_from_disk(
    rsps: responses.RequestsMock,
    api: GitHubApi,
    pr_repo: tuple[GitRepo, str, str],
    tmp_path: Path,
) -> None:
    repo, base, head = pr_repo
    repo.write("app/routes.py", ROUTES_V2 + "# edited on disk, not committed\n")
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    tree = pull_tree(api, _pull(head, base), repo.path, scratch)

    assert tree.origin == "checkout"
    assert tree.index_root is not None
    assert tree.root.resolve() == repo.path.resolve() == tree.index_root.resolve()
    assert tree.changeset.files == diff_commits(base, head, repo.path).files
    statuses = {c.path: c.status for c in tree.changeset}
    assert statuses["app/new.py"] is FileStatus.ADDED
    assert statuses["app/old.py"] is FileStatus.DELETED
    assert statuses["app/routes.py"] is FileStatus.MODIFIED
    assert tree.read_text("app/routes.py").endswith("# edited on disk, not committed\n")
    assert list(scratch.iterdir()) == []
    assert len(rsps.calls) == 0


def test_a_clone_holding_the_head_elsewhere_materialises_its_blobs(
    rsps: responses.RequestsMock,
    api: GitHubApi,
    pr_repo: tuple[GitRepo, str, str],
    tmp_path: Path,
) -> None:
    repo, base, head = pr_repo
    repo.git("checkout", "-q", "main")  # HEAD is the base now (as a merge commit would be)
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    tree = pull_tree(api, _pull(head, base), repo.path, scratch)

    assert tree.origin == "git"
    assert tree.root == scratch
    assert tree.index_root is not None and tree.index_root.resolve() == repo.path.resolve()
    assert tree.changeset.files == diff_commits(base, head, repo.path).files
    assert tree.read_text("app/routes.py") == ROUTES_V2
    assert tree.read_text("app/new.py") == NEW_PY
    written = sorted(p.relative_to(scratch).as_posix() for p in scratch.rglob("*") if p.is_file())
    assert written == ["app/new.py", "app/routes.py"]  # changed .py files that exist at the head
    assert len(rsps.calls) == 0


def test_without_a_clone_the_files_come_from_the_contents_api(
    rsps: responses.RequestsMock, api: GitHubApi, tmp_path: Path
) -> None:
    _files(
        rsps,
        [
            _entry("app/routes.py", "modified", "@@ -4,3 +4,8 @@\n x\n+a\n+b\n+c\n+d\n+e\n y\n z"),
            _entry("app/new.py", "added", "@@ -0,0 +1,5 @@\n+1\n+2\n+3\n+4\n+5"),
            _entry("app/old.py", "removed", "@@ -1 +0,0 @@\n-x = 1"),
            _entry("README.md", "modified", "@@ -1 +1 @@\n-a\n+b"),
        ],
    )
    asked = _mock_contents(
        rsps,
        {
            ("app/routes.py", HEAD): ROUTES_V2,
            ("app/new.py", HEAD): NEW_PY,
            ("app/db.py", HEAD): "async def get_session():\n    yield None\n",
            ("app/models.py", HEAD): "class User:\n    id = 1\n",
            ("app/routes.py", BASE_SHA): "the base's text must not be read\n",
        },
    )
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    tree = pull_tree(api, _pull(), None, scratch)

    assert tree.origin == "api"
    assert tree.root == scratch and tree.index_root == scratch
    assert [c.path for c in tree.changeset] == [
        "app/routes.py",
        "app/new.py",
        "app/old.py",
        "README.md",
    ]
    assert tree.notes == []
    requests_made = asked()
    assert all(ref == HEAD and accept == RAW for _, ref, accept in requests_made)
    assert sorted(path for path, _, _ in requests_made) == [
        "app/db.py",  # imported by routes.py: `from app.db import get_session`
        "app/db/__init__.py",
        "app/models.py",  # `from .models import User`
        "app/models/__init__.py",
        "app/new.py",
        "app/routes.py",
    ]
    written = sorted(p.relative_to(scratch).as_posix() for p in scratch.rglob("*") if p.is_file())
    assert written == ["app/db.py", "app/models.py", "app/new.py", "app/routes.py"]
    assert tree.read_text("app/routes.py") == ROUTES_V2


def test_a_missing_head_file_is_a_note_but_a_missing_import_is_not(
    rsps: responses.RequestsMock, api: GitHubApi, tmp_path: Path
) -> None:
    _files(rsps, [_entry("app/routes.py", "modified", "@@ -1 +1 @@\n-a\n+b")])
    _mock_contents(rsps, {})
    tree = pull_tree(api, _pull(), None, tmp_path)
    assert tree.notes == [
        Note(NoteKind.MISSING, "app/routes.py", "skipped: not found at the head commit")
    ]


def test_imported_modules_are_the_projects_own() -> None:
    text = textwrap.dedent(
        """\
        import fastapi
        from sqlalchemy import select
        from app.db import x
        from .models import y
        import app.sub.mod
        import asyncio, app.other
        def f():
            from app.db import x  # the same module again: asked once
        """
    ).encode()
    changeset = ChangeSet((FileChange("app/api/routes.py", FileStatus.MODIFIED),))
    assert imported_modules({"app/api/routes.py": text}, changeset) == [
        "app/db.py",
        "app/db/__init__.py",
        "app/api/models.py",
        "app/api/models/__init__.py",
        "app/sub/mod.py",
        "app/sub/mod/__init__.py",
    ]


def test_third_party_imports_give_no_candidate() -> None:
    changeset = ChangeSet((FileChange("app/routes.py", FileStatus.MODIFIED),))
    text = b"import fastapi\nfrom sqlalchemy import select\nfrom sqlalchemy.ext.asyncio import AsyncSession\n"
    assert imported_modules({"app/routes.py": text}, changeset) == []


def test_imports_under_a_nested_project_root_and_files_already_fetched() -> None:
    changeset = ChangeSet(
        (
            FileChange("server/polar/api.py", FileStatus.MODIFIED),
            FileChange("server/polar/models.py", FileStatus.MODIFIED),
        )
    )
    texts = {
        "server/polar/api.py": b"from polar.models import User\nfrom polar.auth import token\n",
        "server/polar/models.py": b"from ..polar import x\n",
    }
    assert imported_modules(texts, changeset) == [
        "server/polar/models/__init__.py",  # models.py itself is already fetched
        "server/polar/auth.py",
        "server/polar/auth/__init__.py",
        "server/polar.py",  # `from ..polar` in server/polar/models.py is server.polar
        "server/polar/__init__.py",
    ]


# --- the config and the skill from the base commit ---------------------------------------------


RULES = list(rule_infos())


def test_git_reader_reads_config_and_skill_from_the_base_commit(
    api: GitHubApi, pr_repo: tuple[GitRepo, str, str], tmp_path: Path
) -> None:
    repo, base, head = pr_repo  # the head is checked out, with its own config and skill
    label = f"the base commit {base[:12]}"
    reader = reader_for(api, REPO, base, label, checkout=repo.path, checked_out=False)
    assert isinstance(reader, GitReader)

    policy = load_policy(reader, RULES, repo_root=tmp_path / "tree", scratch=tmp_path / "s")

    assert policy.config.fail_on == "warning"
    assert policy.config.root == tmp_path / "tree"
    assert policy.source == label
    assert policy.skill is not None
    section = policy.skill.section(SECTION)
    assert section is not None and section.problem == "Base says: one session, one query."

    head_reader = reader_for(
        api, REPO, head, "the head commit", checkout=repo.path, checked_out=True
    )
    assert isinstance(head_reader, DiskReader)
    head_policy = load_policy(head_reader, RULES, repo_root=repo.path, scratch=tmp_path / "h")
    assert head_policy.config.fail_on == "never"
    assert head_policy.skill is not None
    head_section = head_policy.skill.section(SECTION)
    assert head_section is not None and head_section.problem == "Head says: anything goes."


def test_api_reader_reads_config_and_skill_from_the_base_commit(
    rsps: responses.RequestsMock, api: GitHubApi, tmp_path: Path
) -> None:
    asked = _mock_contents(
        rsps,
        {
            (".asyncguard.toml", BASE_SHA): 'fail-on = "warning"\n',
            (".asyncguard.toml", HEAD): 'fail-on = "never"\n',
            (".claude/skills", BASE_SHA): [
                {"name": "team-db", "type": "dir", "path": ".claude/skills/team-db"},
                {"name": "README.md", "type": "file", "path": ".claude/skills/README.md"},
            ],
            (".claude/skills/team-db/SKILL.md", BASE_SHA): _skill("Base via the API."),
            (".claude/skills/team-db/SKILL.md", HEAD): _skill("Head via the API."),
        },
    )
    label = f"the base commit {BASE_SHA[:12]}"
    reader = reader_for(api, REPO, BASE_SHA, label, checkout=None, checked_out=False)
    assert isinstance(reader, ApiReader)

    policy = load_policy(reader, RULES, repo_root=tmp_path / "tree", scratch=tmp_path / "s")

    assert policy.config.fail_on == "warning"
    assert policy.source == label
    assert policy.skill is not None
    section = policy.skill.section(SECTION)
    assert section is not None and section.problem == "Base via the API."
    requests_made = asked()
    assert {ref for _, ref, _ in requests_made} == {BASE_SHA}
    files = [(path, accept) for path, _, accept in requests_made if "." in path.rsplit("/", 1)[-1]]
    assert (".asyncguard.toml", RAW) in files
    assert (".claude/skills/team-db/SKILL.md", RAW) in files
    assert all(accept == RAW for _, accept in files)


def test_an_explicit_config_path_is_the_only_config_read(
    rsps: responses.RequestsMock, api: GitHubApi, tmp_path: Path
) -> None:
    asked = _mock_contents(
        rsps,
        {
            (".asyncguard.toml", BASE_SHA): 'fail-on = "warning"\n',
            ("ci/asyncguard.toml", BASE_SHA): 'fail-on = "info"\nmax-comments = 3\n',
        },
    )
    reader = ApiReader(api, REPO, BASE_SHA, "the base commit")
    policy = load_policy(
        reader,
        RULES,
        repo_root=tmp_path / "tree",
        scratch=tmp_path / "s",
        config_path="ci/asyncguard.toml",
    )
    assert (policy.config.fail_on, policy.config.max_comments) == ("info", 3)
    assert policy.config.root == tmp_path / "tree" / "ci"
    configs = [path for path, _, _ in asked() if path.endswith(".toml")]
    assert configs == ["ci/asyncguard.toml"]


def test_an_explicit_config_path_that_is_missing_at_the_base_is_an_error(
    rsps: responses.RequestsMock, api: GitHubApi, tmp_path: Path
) -> None:
    _mock_contents(rsps, {})
    reader = ApiReader(api, REPO, BASE_SHA, f"the base commit {BASE_SHA[:12]}")
    scratch = tmp_path / "s"
    with pytest.raises(ConfigError) as raised:
        load_policy(reader, RULES, repo_root=tmp_path, scratch=scratch, config_path="ci/ag.toml")
    message = str(raised.value)
    assert "ci/ag.toml" in message and "base commit" in message
    assert str(scratch) not in message


def test_working_directory_discovery_walks_up_to_the_nearest_config(
    rsps: responses.RequestsMock, api: GitHubApi, tmp_path: Path
) -> None:
    asked = _mock_contents(
        rsps,
        {
            (".asyncguard.toml", BASE_SHA): 'fail-on = "warning"\n',
            ("services/.asyncguard.toml", BASE_SHA): 'fail-on = "never"\n',
        },
    )
    reader = ApiReader(api, REPO, BASE_SHA, "the base commit")
    policy = load_policy(
        reader,
        RULES,
        repo_root=tmp_path / "tree",
        scratch=tmp_path / "s",
        working_directory="services/api/",
    )
    assert policy.config.fail_on == "never"
    assert policy.config.root == tmp_path / "tree" / "services"
    configs = [path for path, _, _ in asked() if path.endswith(".toml")]
    assert configs == [
        "services/api/.asyncguard.toml",
        "services/api/pyproject.toml",
        "services/.asyncguard.toml",
        "services/pyproject.toml",
        ".asyncguard.toml",
        "pyproject.toml",
    ]


def test_working_directory_discovery_through_git(
    api: GitHubApi, make_repo: Callable[..., GitRepo], tmp_path: Path
) -> None:
    repo = make_repo()
    repo.write("pyproject.toml", '[tool.asyncguard]\nfail-on = "info"\n')
    repo.write("services/api/app.py", "x = 1\n")
    base = repo.commit("base")
    reader = GitReader(repo.path, base, "the base commit")
    policy = load_policy(
        reader,
        RULES,
        repo_root=tmp_path / "tree",
        scratch=tmp_path / "s",
        working_directory="services/api",
    )
    assert policy.config.fail_on == "info"
    assert policy.config.root == tmp_path / "tree"
    assert policy.skill is None


VALUE_ERROR = 'fail-on = "sometimes"\n'
TOML_ERROR = "fail-on = [\n"


@pytest.mark.parametrize(
    ("text", "through", "cwd"),
    [
        (VALUE_ERROR, "git", "elsewhere"),
        (TOML_ERROR, "git", "elsewhere"),
        (VALUE_ERROR, "api", "elsewhere"),
        (TOML_ERROR, "api", "elsewhere"),
        # A process whose working directory is "/" (a container without WORKDIR): the config
        # loader shows paths relative to it, and the scratch path must not leak either.
        (VALUE_ERROR, "api", "root"),
    ],
    ids=["git-value", "git-toml", "api-value", "api-toml", "api-value-cwd-root"],
)
def test_a_malformed_base_config_names_the_file_and_the_commit(
    rsps: responses.RequestsMock,
    api: GitHubApi,
    make_repo: Callable[..., GitRepo],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    through: str,
    cwd: str,
) -> None:
    repo = make_repo()
    repo.write("services/.asyncguard.toml", text)
    base = repo.commit("base")
    label = f"the base commit {base[:12]}"
    if through == "git":
        reader: Any = GitReader(repo.path, base, label)
    else:
        _mock_contents(rsps, {("services/.asyncguard.toml", base): text})
        reader = ApiReader(api, REPO, base, label)
    scratch = tmp_path / "scratch"
    if cwd == "root":  # a container without WORKDIR: every path is under the working directory
        monkeypatch.chdir("/")

    with pytest.raises(ConfigError) as raised:
        load_policy(
            reader,
            RULES,
            repo_root=tmp_path / "tree",
            scratch=scratch,
            working_directory="services",
        )

    message = str(raised.value)
    assert message.startswith("services/.asyncguard.toml: "), message
    assert message.endswith(f"(read from the base commit {base[:12]})")
    assert "scratch" not in message and "policy" not in message, message
    assert str(tmp_path) not in message


# --- base or head: the whole review ------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_extra", "options", "fail_on", "side"),
    [
        ("", ReviewOptions(), "warning", "base"),
        ('config-from = "head"\n', ReviewOptions(), "never", "head"),
        ("", ReviewOptions(config_from="head"), "never", "head"),
    ],
    ids=["base-wins", "base-opts-for-head", "caller-asks-head"],
)
def test_review_reads_the_config_from_the_base_unless_told_otherwise(
    rsps: responses.RequestsMock,
    make_repo: Callable[..., GitRepo],
    base_extra: str,
    options: ReviewOptions,
    fail_on: str,
    side: str,
) -> None:
    repo = make_repo()
    repo.write("app/__init__.py", "")
    repo.write("app/routes.py", ROUTES_V1)
    repo.write(".asyncguard.toml", f'fail-on = "warning"\n{base_extra}')
    base = repo.commit("base")
    repo.write("app/routes.py", ROUTES_V2)
    repo.write(".asyncguard.toml", 'fail-on = "never"\nconfig-from = "base"\n')
    head = repo.commit("head")
    rsps.get(
        PULLS,
        json={
            "number": 7,
            "state": "open",
            "head": {"sha": head, "repo": {"full_name": REPO}},
            "base": {"sha": base, "ref": "main", "repo": {"full_name": REPO}},
        },
    )
    rsps.get(f"{PULLS}/comments", json=[])
    rsps.get(f"{PULLS}/reviews", json=[])
    dry = GitHubApi(
        Auth.Token("t"), API_URL, dry_run=True, sleep=lambda s: None, seconds_between_writes=None
    )

    outcome = review_pull_request(dry, REPO, 7, checkout=repo.path, options=options)

    assert outcome.config is not None and outcome.config.fail_on == fail_on
    commit = base if side == "base" else head
    assert outcome.config_source == f"the {side} commit {commit[:12]}"
    # Everything came from the clone: only the pull request and its comments and reviews.
    assert sorted(urllib.parse.urlsplit(c.request.url).path for c in rsps.calls) == [
        f"/repos/{REPO}/pulls/7",
        f"/repos/{REPO}/pulls/7/comments",
        f"/repos/{REPO}/pulls/7/reviews",
    ]
