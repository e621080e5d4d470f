"""Tests for bot.config: discovery, every key, rule selection, globs, overrides and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import (
    Config,
    ConfigError,
    find_config_file,
    load_config,
    parse_config_text,
)
from bot.findings import Severity
from bot.ruleinfo import RuleInfo


def _rule(code: str, name: str, severity: Severity) -> RuleInfo:
    return RuleInfo(
        code=code, name=name, severity=severity, section="Pattern: X", summary="s", doc="d"
    )


RULES = [
    _rule("AG101", "global-session", Severity.ERROR),
    _rule("AG201", "shared-session-concurrency", Severity.ERROR),
    _rule("AG202", "sequential-independent-awaits", Severity.INFO),
    _rule("AG401", "blocking-call-in-async", Severity.WARNING),
    _rule("AG402", "sync-sleep", Severity.WARNING),
    _rule("AG501", "unreferenced-task", Severity.WARNING),
]
BY_CODE = {rule.code: rule for rule in RULES}
ALL_CODES = [rule.code for rule in RULES]


def parse(text: str, *, pyproject: bool = False, root: Path = Path("/repo")) -> Config:
    return parse_config_text(
        text,
        filename="pyproject.toml" if pyproject else ".asyncguard.toml",
        root=root,
        rules=RULES,
        pyproject=pyproject,
    )


def enabled(config: Config) -> list[str]:
    return [rule.code for rule in config.enabled_rules(RULES)]


def parse_error(text: str, *, pyproject: bool = False) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, pyproject=pyproject)
    message = str(info.value)
    assert "\n" not in message
    return message


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- discovery --------------------------------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository root (with .git) one level below tmp_path, so tests can put files above it."""
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    return root


def test_discovery_finds_config_in_a_parent_directory(repo: Path) -> None:
    write(repo / ".asyncguard.toml", 'fail-on = "warning"\n')
    start = repo / "src" / "app" / "api"
    start.mkdir(parents=True)
    config = load_config(start, RULES)
    assert config.fail_on == "warning"
    assert config.root == repo.resolve()
    assert config.source == (repo / ".asyncguard.toml").resolve()


def test_discovery_asyncguard_toml_beats_pyproject_in_the_same_directory(repo: Path) -> None:
    write(repo / ".asyncguard.toml", 'fail-on = "warning"\n')
    write(repo / "pyproject.toml", '[tool.asyncguard]\nfail-on = "info"\n')
    config = load_config(repo, RULES)
    assert config.fail_on == "warning"
    assert config.source is not None and config.source.name == ".asyncguard.toml"


def test_discovery_reads_the_pyproject_table(repo: Path) -> None:
    write(repo / "pyproject.toml", '[project]\nname = "x"\n\n[tool.asyncguard]\nmax-comments = 3\n')
    config = load_config(repo, RULES)
    assert config.max_comments == 3
    assert config.source == (repo / "pyproject.toml").resolve()


def test_discovery_skips_a_pyproject_without_the_table(repo: Path) -> None:
    write(repo / ".asyncguard.toml", "max-comments = 7\n")
    write(repo / "pkg" / "pyproject.toml", "[tool.ruff]\nline-length = 100\n# asyncguard: later\n")
    config = load_config(repo / "pkg", RULES)
    assert config.max_comments == 7
    assert config.root == repo.resolve()


def test_discovery_skips_an_unrelated_broken_pyproject(repo: Path) -> None:
    write(repo / ".asyncguard.toml", "max-comments = 7\n")
    write(repo / "pkg" / "pyproject.toml", "[tool.ruff\n")
    assert load_config(repo / "pkg", RULES).max_comments == 7


def test_discovery_the_nearest_file_wins(repo: Path) -> None:
    write(repo / ".asyncguard.toml", "max-comments = 7\n")
    write(repo / "pkg" / "pyproject.toml", "[tool.asyncguard]\nmax-comments = 9\n")
    config = load_config(repo / "pkg" / "sub", RULES)
    assert config.max_comments == 9
    assert config.root == (repo / "pkg").resolve()


def test_discovery_stops_at_the_repository_root(tmp_path: Path, repo: Path) -> None:
    write(tmp_path / ".asyncguard.toml", "max-comments = 7\n")
    start = repo / "src"
    start.mkdir()
    config = load_config(start, RULES)
    assert config == Config(root=start.resolve())
    assert config.source is None
    assert find_config_file(start) is None


def test_discovery_a_git_file_marks_the_root_too(tmp_path: Path) -> None:
    # Worktrees and submodules have a `.git` file instead of a directory.
    write(tmp_path / ".asyncguard.toml", "max-comments = 7\n")
    write(tmp_path / "worktree" / ".git", "gitdir: /elsewhere\n")
    assert load_config(tmp_path / "worktree", RULES).source is None


def test_discovery_checks_the_repository_root_itself(repo: Path) -> None:
    write(repo / ".asyncguard.toml", "max-comments = 7\n")
    assert find_config_file(repo / "a" / "b") == (repo / ".asyncguard.toml").resolve()


def test_discovery_from_a_file_starts_in_its_directory(repo: Path) -> None:
    write(repo / "pkg" / ".asyncguard.toml", "max-comments = 7\n")
    module = write(repo / "pkg" / "mod.py", "")
    assert load_config(module, RULES).max_comments == 7


def test_no_config_gives_defaults_rooted_at_the_start(repo: Path) -> None:
    config = load_config(repo, RULES)
    assert config.root == repo.resolve()
    assert config.source is None
    assert config.select == ("AG",)
    assert enabled(config) == ALL_CODES


def test_discovery_reports_errors_with_the_path_relative_to_the_working_directory(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(repo / "pkg" / "pyproject.toml", "[tool.asyncguard]\nfial-on = 'error'\n")
    monkeypatch.chdir(repo)
    with pytest.raises(ConfigError) as info:
        load_config(repo / "pkg", RULES)
    assert str(info.value) == (
        "pkg/pyproject.toml: [tool.asyncguard] unknown key 'fial-on' (did you mean 'fail-on'?)"
    )


def test_explicit_config_bypasses_discovery(repo: Path) -> None:
    write(repo / ".asyncguard.toml", "max-comments = 7\n")
    explicit = write(repo / "ci" / "strict.toml", 'fail-on = "info"\n')
    config = load_config(repo, RULES, explicit=explicit)
    assert config.fail_on == "info"
    assert config.max_comments == 25
    assert config.root == (repo / "ci").resolve()
    assert config.source == explicit.resolve()


def test_explicit_pyproject_reads_its_table(repo: Path) -> None:
    explicit = write(repo / "other" / "pyproject.toml", "[tool.asyncguard]\nmax-comments = 1\n")
    assert load_config(repo, RULES, explicit=explicit).max_comments == 1


def test_explicit_pyproject_without_the_table_is_an_error(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(repo / "pyproject.toml", "[tool.ruff]\n")
    monkeypatch.chdir(repo)
    with pytest.raises(ConfigError) as info:
        load_config(repo, RULES, explicit=Path("pyproject.toml"))
    assert str(info.value) == "pyproject.toml: no [tool.asyncguard] table"


def test_explicit_missing_file_is_an_error(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    with pytest.raises(ConfigError) as info:
        load_config(repo, RULES, explicit=Path("nope.toml"))
    assert str(info.value) == "nope.toml: no such config file"


def test_explicit_directory_is_an_error(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    with pytest.raises(ConfigError) as info:
        load_config(repo, RULES, explicit=Path("."))
    assert str(info.value).startswith(".: cannot read: ")


def test_pyproject_text_without_the_table_gives_defaults() -> None:
    config = parse('[project]\nname = "x"\n', pyproject=True)
    assert config == Config(root=Path("/repo"))


# -- keys -------------------------------------------------------------------------------------


FULL = """
select = ["AG1", "AG2"]
extend-select = ["unreferenced-task"]
ignore = ["AG202"]
fail-on = "warning"
filter-mode = "diff_context"
max-comments = 10
exclude = ["migrations/**", "build"]
skill = "docs/skills/SKILL.md"
expire-on-commit = false
session-factories = ["app.db.async_session", "app.db.SessionLocal"]
side-effect-patterns = ["publish_*"]
blocking-calls = ["requests.*", "time.sleep"]
review-event = "REQUEST_CHANGES"
config-from = "head"

[severity]
AG201 = "warning"
unreferenced-task = "error"

[per-file-ignores]
"tests/**" = ["AG401", "sync-sleep"]
"""


def _assert_full(config: Config) -> None:
    assert config.select == ("AG1", "AG2")
    assert config.extend_select == ("unreferenced-task",)
    assert config.ignore == ("AG202",)
    assert config.fail_on == "warning"
    assert config.filter_mode == "diff_context"
    assert config.max_comments == 10
    assert config.exclude == ("migrations/**", "build")
    assert config.skill == "docs/skills/SKILL.md"
    assert config.skill_path == config.root / "docs/skills/SKILL.md"
    assert config.expire_on_commit is False
    assert config.session_factories == ("app.db.async_session", "app.db.SessionLocal")
    assert config.side_effect_patterns == ("publish_*",)
    assert config.blocking_calls == ("requests.*", "time.sleep")
    assert config.review_event == "REQUEST_CHANGES"
    assert config.config_from == "head"
    assert config.severity == {"AG201": "warning", "unreferenced-task": "error"}
    assert config.per_file_ignores == {"tests/**": ("AG401", "sync-sleep")}
    assert enabled(config) == ["AG101", "AG201", "AG501"]


def test_every_key_in_asyncguard_toml() -> None:
    _assert_full(parse(FULL))


def test_every_key_in_pyproject() -> None:
    text = FULL.replace("[severity]", "[tool.asyncguard.severity]").replace(
        "[per-file-ignores]", "[tool.asyncguard.per-file-ignores]"
    )
    _assert_full(parse("[tool.asyncguard]\n" + text, pyproject=True))


def test_defaults() -> None:
    config = parse("")
    assert config.select == ("AG",)
    assert config.extend_select == ()
    assert config.ignore == ()
    assert config.severity == {}
    assert config.per_file_ignores == {}
    assert config.exclude == ()
    assert config.fail_on == "error"
    assert config.filter_mode == "added"
    assert config.max_comments == 25
    assert config.skill is None
    assert config.skill_path is None
    assert config.expire_on_commit is None
    assert config.session_factories == ()
    assert config.side_effect_patterns == (
        "send_*",
        "*email*",
        "*notify*",
        "*analytics*",
        "*webhook*",
    )
    assert config.blocking_calls == ()
    assert config.review_event == "COMMENT"
    assert config.config_from == "base"
    assert config.root == Path("/repo")
    assert config == Config(root=Path("/repo"))


@pytest.mark.parametrize("value", [0, 1000])
def test_max_comments_bounds_are_inclusive(value: int) -> None:
    assert parse(f"max-comments = {value}").max_comments == value


def test_config_is_frozen() -> None:
    config = parse("")
    with pytest.raises(ValueError):
        config.fail_on = "never"


# -- rule selection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ALL_CODES),
        ('select = ["AG"]', ALL_CODES),
        ('select = ["AG2"]', ["AG201", "AG202"]),
        ('select = ["AG201"]', ["AG201"]),
        ('select = ["AG20"]', ["AG201", "AG202"]),
        ('select = ["global-session"]', ["AG101"]),
        ('select = ["AG1"]\nextend-select = ["AG5"]', ["AG101", "AG501"]),
        ('ignore = ["AG2"]', ["AG101", "AG401", "AG402", "AG501"]),
        ('ignore = ["sync-sleep"]', ["AG101", "AG201", "AG202", "AG401", "AG501"]),
        # More specific wins, in either direction.
        ('select = ["AG201"]\nignore = ["AG2"]', ["AG201"]),
        ('select = ["AG2"]\nignore = ["AG201"]', ["AG202"]),
        (
            'ignore = ["AG2"]\nextend-select = ["AG202"]',
            ["AG101", "AG202", "AG401", "AG402", "AG501"],
        ),
        # On a tie ignore wins; a rule name is as specific as its code.
        ('select = ["AG2"]\nignore = ["AG2"]', []),
        ('select = ["AG201"]\nignore = ["shared-session-concurrency"]', []),
        ('select = ["shared-session-concurrency"]\nignore = ["AG201"]', []),
        ('select = ["shared-session-concurrency"]\nignore = ["AG2"]', ["AG201"]),
        ('ignore = ["AG"]', []),
        ("select = []", []),
    ],
)
def test_selection(text: str, expected: list[str]) -> None:
    assert enabled(parse(text)) == expected


def test_enabled_rules_keep_the_given_order() -> None:
    config = parse('select = ["AG5", "AG1"]')
    assert [r.code for r in config.enabled_rules(list(reversed(RULES)))] == ["AG501", "AG101"]


def test_severity_off_disables_a_rule() -> None:
    config = parse('[severity]\nAG202 = "off"\nunreferenced-task = "off"')
    assert enabled(config) == ["AG101", "AG201", "AG401", "AG402"]
    assert config.severity_for(BY_CODE["AG202"]) is None


def test_severity_overrides_by_code_and_by_name() -> None:
    config = parse('[severity]\nAG202 = "error"\nunreferenced-task = "info"')
    assert config.severity_for(BY_CODE["AG202"]) is Severity.ERROR
    assert config.severity_for(BY_CODE["AG501"]) is Severity.INFO
    assert config.severity_for(BY_CODE["AG101"]) is Severity.ERROR  # the rule's default
    assert config.severity_for(BY_CODE["AG401"]) is Severity.WARNING


def test_severity_code_key_beats_name_key() -> None:
    config = parse('[severity]\nunreferenced-task = "off"\nAG501 = "error"')
    assert config.severity_for(BY_CODE["AG501"]) is Severity.ERROR
    config = parse('[severity]\nAG501 = "off"\nunreferenced-task = "error"')
    assert config.severity_for(BY_CODE["AG501"]) is None


@pytest.mark.parametrize(
    ("fail_on", "failing"),
    [
        ("error", {Severity.ERROR}),
        ("warning", {Severity.ERROR, Severity.WARNING}),
        ("info", {Severity.ERROR, Severity.WARNING, Severity.INFO}),
        ("never", set()),
    ],
)
def test_fails(fail_on: str, failing: set[Severity]) -> None:
    config = parse(f'fail-on = "{fail_on}"')
    assert {s for s in Severity if config.fails(s)} == failing


# -- per-file-ignores and exclude -------------------------------------------------------------


PER_FILE = """
[per-file-ignores]
"tests/**" = ["AG401", "AG402"]
"**/migrations/*.py" = ["AG1"]
"conftest.py" = ["unreferenced-task"]
"scripts/*.py" = ["AG2"]
"""


@pytest.mark.parametrize(
    ("path", "codes"),
    [
        ("tests/test_api.py", {"AG401", "AG402"}),
        ("tests/unit/deep/test_api.py", {"AG401", "AG402"}),
        ("tests/conftest.py", {"AG401", "AG402", "AG501"}),
        ("./tests/test_api.py", {"AG401", "AG402"}),
        ("app/tests/test_api.py", set()),  # "tests/**" is anchored at the root
        ("migrations/0001_init.py", {"AG101"}),  # "**/" may be zero directories
        ("app/db/migrations/0001_init.py", {"AG101"}),
        ("app/db/migrations/sub/0001_init.py", set()),  # "*" does not cross "/"
        ("conftest.py", {"AG501"}),
        ("app/conftest.py", {"AG501"}),  # no "/" in the glob: the basename matches
        ("app/not_conftest.py", set()),
        ("scripts/seed.py", {"AG201", "AG202"}),
        ("scripts/sub/seed.py", set()),
        ("app/main.py", set()),
    ],
)
def test_per_file_ignores(path: str, codes: set[str]) -> None:
    assert parse(PER_FILE).ignored_codes_for(path) == frozenset(codes)


def test_per_file_ignores_absolute_path_under_root(tmp_path: Path) -> None:
    config = parse(PER_FILE, root=tmp_path)
    assert config.ignored_codes_for(str(tmp_path / "tests" / "test_x.py")) == {"AG401", "AG402"}


def test_per_file_ignores_survive_overrides() -> None:
    config = parse(PER_FILE).with_overrides(select=["AG1"], rules=RULES)
    assert config.ignored_codes_for("tests/a.py") == {"AG401", "AG402"}


@pytest.mark.parametrize(
    ("glob", "path", "matches"),
    [
        ("*.py", "a/b/c.py", True),
        ("src/*.py", "src/a.py", True),
        ("src/*.py", "src/a/b.py", False),
        ("src/**/*.py", "src/a.py", True),
        ("src/**/*.py", "src/a/b/c.py", True),
        ("src/**", "src/a/b/c.py", True),
        ("**", "a/b.py", True),
        ("src/", "src/a/b.py", True),  # a trailing "/" means everything below
        ("/setup.py", "setup.py", True),  # a leading "/" anchors
        ("/setup.py", "pkg/setup.py", False),
        ("test_?.py", "test_1.py", True),
        ("test_?.py", "test_10.py", False),
        ("test_[ab].py", "test_a.py", True),
        ("test_[ab].py", "test_c.py", False),
        ("test_[!ab].py", "test_c.py", True),
        ("test_[!ab].py", "test_a.py", False),
        ("v[0-9].py", "v7.py", True),
        ("[[]x].py", "[x].py", True),
        ("a.py", "a_py", False),  # "." is literal
        ("a**b.py", "axxb.py", True),  # "**" inside a name is just "*"
        ("a**b.py", "ax/xb.py", False),
    ],
)
def test_glob_matching(glob: str, path: str, matches: bool) -> None:
    config = Config.model_validate({"per_file_ignores": {glob: ("AG101",)}})
    assert bool(config.ignored_codes_for(path)) is matches


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        ("migrations/0001.py", True),
        ("app/migrations/0001.py", True),  # "migrations" names any directory of that name
        ("app/generated/x_pb2.py", True),
        ("build/lib/app.py", True),
        ("app/build.py", False),
        ("app/main.py", False),
    ],
)
def test_exclude(path: str, excluded: bool) -> None:
    config = parse('exclude = ["migrations", "*_pb2.py", "build/"]')
    assert config.is_excluded(path) is excluded


def test_nothing_excluded_by_default() -> None:
    assert not parse("").is_excluded("app/main.py")


# -- command-line overrides -------------------------------------------------------------------


def test_overrides_replace_scalars() -> None:
    config = parse('fail-on = "warning"\nmax-comments = 3').with_overrides(
        fail_on="never", filter_mode="file", max_comments=0, rules=RULES
    )
    assert (config.fail_on, config.filter_mode, config.max_comments) == ("never", "file", 0)


def test_overrides_without_flags_change_nothing() -> None:
    config = parse(FULL)
    assert config.with_overrides(rules=RULES) == config


def test_override_select_starts_over_as_in_ruff() -> None:
    config = parse('select = ["AG1"]\nignore = ["AG201"]\nextend-select = ["AG5"]')
    assert enabled(config.with_overrides(select=["AG2"], rules=RULES)) == ["AG201", "AG202"]


def test_override_select_accepts_a_comma_separated_string() -> None:
    config = parse("").with_overrides(select="AG101, unreferenced-task", rules=RULES)
    assert enabled(config) == ["AG101", "AG501"]


def test_override_ignore_adds_to_the_file() -> None:
    config = parse('ignore = ["AG2"]').with_overrides(ignore=["AG4"], rules=RULES)
    assert enabled(config) == ["AG101", "AG501"]


def test_override_extend_select_applies_on_top_of_the_file() -> None:
    # In the file's own layer "AG201" would win over "AG2"; the command line is a later layer.
    config = parse('ignore = ["AG201"]').with_overrides(extend_select=["AG2"], rules=RULES)
    assert enabled(config) == ALL_CODES


def test_override_specificity_within_the_command_line_layer() -> None:
    config = parse("").with_overrides(select=["AG2"], ignore=["AG202"], rules=RULES)
    assert enabled(config) == ["AG201"]


def test_override_keeps_severity_off() -> None:
    config = parse('[severity]\nAG201 = "off"').with_overrides(select=["AG2"], rules=RULES)
    assert enabled(config) == ["AG202"]


def test_overrides_do_not_change_the_original() -> None:
    config = parse("")
    config.with_overrides(ignore=["AG"], fail_on="never", rules=RULES)
    assert enabled(config) == ALL_CODES
    assert config.fail_on == "error"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"select": ["AG9999"]}, "--select: unknown rule 'AG9999'"),
        ({"select": ["AG2001"]}, "--select: unknown rule 'AG2001' (did you mean 'AG201'?)"),
        (
            {"ignore": "global-sesion"},
            "--ignore: unknown rule 'global-sesion' (did you mean 'global-session'?)",
        ),
        (
            {"extend_select": ["ag501"]},
            "--extend-select: unknown rule 'ag501' (did you mean 'AG501'?)",
        ),
        (
            {"fail_on": "fatal"},
            "--fail-on must be one of error, warning, info, never, not 'fatal'",
        ),
        (
            {"filter_mode": "diff-context"},
            "--filter-mode must be one of added, diff_context, file, nofilter, "
            "not 'diff-context' (did you mean 'diff_context'?)",
        ),
        ({"max_comments": 5000}, "--max-comments must be between 0 and 1000, not 5000"),
        ({"max_comments": -1}, "--max-comments must be between 0 and 1000, not -1"),
    ],
)
def test_override_errors_name_the_flag(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse("").with_overrides(rules=RULES, **kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


# -- error messages ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'fial-on = "error"',
            ".asyncguard.toml: unknown key 'fial-on' (did you mean 'fail-on'?)",
        ),
        (
            "max_comments = 3",
            ".asyncguard.toml: unknown key 'max_comments' (did you mean 'max-comments'?)",
        ),
        ("colour = 1", ".asyncguard.toml: unknown key 'colour'"),
        (
            '[severity]\nAG2001 = "off"',
            ".asyncguard.toml: [severity] unknown rule 'AG2001' (did you mean 'AG201'?)",
        ),
        (
            '[severity]\nAG2 = "off"',
            ".asyncguard.toml: [severity] 'AG2' is a prefix; name one rule by code or name, "
            "e.g. 'AG201'",
        ),
        (
            '[severity]\nAG201 = "fatal"',
            ".asyncguard.toml: severity for 'AG201' must be one of error, warning, info, off, "
            "not 'fatal'",
        ),
        (
            '[severity]\nglobal-session = "warn"',
            ".asyncguard.toml: severity for 'global-session' must be one of error, warning, "
            "info, off, not 'warn' (did you mean 'warning'?)",
        ),
        (
            "[severity]\nAG201 = 1",
            ".asyncguard.toml: severity for 'AG201' must be one of error, warning, info, off, "
            "not 1",
        ),
        ('severity = "off"', ".asyncguard.toml: 'severity' must be a table, not 'off'"),
        (
            "fail-on = 'fatal'",
            ".asyncguard.toml: 'fail-on' must be one of error, warning, info, never, not 'fatal'",
        ),
        (
            "filter-mode = 'added_lines'",
            ".asyncguard.toml: 'filter-mode' must be one of added, diff_context, file, nofilter, "
            "not 'added_lines' (did you mean 'added'?)",
        ),
        (
            "review-event = 'APPROVE'",
            ".asyncguard.toml: 'review-event' must be one of COMMENT, REQUEST_CHANGES, not 'APPROVE'",
        ),
        (
            "config-from = 'merge'",
            ".asyncguard.toml: 'config-from' must be one of base, head, not 'merge'",
        ),
        (
            "max-comments = 'many'",
            ".asyncguard.toml: 'max-comments' must be an integer, not 'many'",
        ),
        ("max-comments = true", ".asyncguard.toml: 'max-comments' must be an integer, not true"),
        ("max-comments = 2.5", ".asyncguard.toml: 'max-comments' must be an integer, not 2.5"),
        (
            "max-comments = 1001",
            ".asyncguard.toml: 'max-comments' must be between 0 and 1000, not 1001",
        ),
        (
            "expire-on-commit = 'no'",
            ".asyncguard.toml: 'expire-on-commit' must be true or false, not 'no'",
        ),
        ("skill = ['a']", ".asyncguard.toml: 'skill' must be a string, not ['a']"),
        ('select = "AG"', ".asyncguard.toml: 'select' must be a list of strings, not 'AG'"),
        (
            "ignore = ['AG1', 2]",
            ".asyncguard.toml: 'ignore' must be a list of strings, not ['AG1', 2]",
        ),
        (
            "exclude = { a = 1 }",
            ".asyncguard.toml: 'exclude' must be a list of strings, not a table",
        ),
        (
            'select = ["AG9999"]',
            ".asyncguard.toml: select: unknown rule 'AG9999'",
        ),
        (
            'select = [""]',
            ".asyncguard.toml: select: unknown rule ''",
        ),
        (
            'extend-select = ["AG2001"]',
            ".asyncguard.toml: extend-select: unknown rule 'AG2001' (did you mean 'AG201'?)",
        ),
        (
            'ignore = ["unreferenced-tasks"]',
            ".asyncguard.toml: ignore: unknown rule 'unreferenced-tasks' "
            "(did you mean 'unreferenced-task'?)",
        ),
        (
            '[per-file-ignores]\n"[abc" = ["AG1"]',
            ".asyncguard.toml: per-file-ignores: invalid glob '[abc': unbalanced '['",
        ),
        (
            '[per-file-ignores]\n"v[9-0].py" = ["AG1"]',
            ".asyncguard.toml: per-file-ignores: invalid glob 'v[9-0].py': "
            "bad character range 9-0 at position 2",
        ),
        (
            '[per-file-ignores]\n"tests/**" = ["AG4O1"]',
            ".asyncguard.toml: per-file-ignores: 'tests/**': unknown rule 'AG4O1' "
            "(did you mean 'AG401'?)",
        ),
        (
            '[per-file-ignores]\n"tests/**" = "AG401"',
            ".asyncguard.toml: per-file-ignores: 'tests/**' must be a list of strings, not 'AG401'",
        ),
        (
            'exclude = ["src/[x"]',
            ".asyncguard.toml: exclude: invalid glob 'src/[x': unbalanced '['",
        ),
        ('exclude = [""]', ".asyncguard.toml: exclude: invalid glob '': empty pattern"),
        (
            'session-factories = ["app.db."]',
            ".asyncguard.toml: session-factories: 'app.db.' is not a dotted name like "
            "'app.db.async_session'",
        ),
        (
            'blocking-calls = [""]',
            ".asyncguard.toml: blocking-calls: an empty pattern matches nothing",
        ),
        ("a = [1,", ".asyncguard.toml: invalid TOML: Invalid value (line 1)"),
        (
            "max-comments = 3\nfail-on = \n",
            ".asyncguard.toml: invalid TOML: Invalid value (line 2)",
        ),
        (
            "max-comments = 3\nmax-comments = 4\n",
            ".asyncguard.toml: invalid TOML: Cannot overwrite a value (line 2)",
        ),
    ],
)
def test_error_messages(text: str, message: str) -> None:
    assert parse_error(text) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[tool.asyncguard]\nfial-on = "error"',
            "pyproject.toml: [tool.asyncguard] unknown key 'fial-on' (did you mean 'fail-on'?)",
        ),
        (
            '[tool.asyncguard.severity]\nAG2001 = "off"',
            "pyproject.toml: [tool.asyncguard.severity] unknown rule 'AG2001' "
            "(did you mean 'AG201'?)",
        ),
        (
            "[tool.asyncguard]\nmax-comments = 'many'",
            "pyproject.toml: 'max-comments' must be an integer, not 'many'",
        ),
        ("[tool]\nasyncguard = 3", "pyproject.toml: [tool.asyncguard] must be a table, not 3"),
        (
            '[project\nname = "x"',
            "pyproject.toml: invalid TOML: Expected ']' at the end of a table declaration (line 1)",
        ),
    ],
)
def test_pyproject_error_messages(text: str, message: str) -> None:
    assert parse_error(text, pyproject=True) == message


def test_the_first_problem_in_file_order_is_reported() -> None:
    assert parse_error('colour = 1\nfial-on = "x"').endswith("unknown key 'colour'")


def test_all_prefix_is_valid_without_rules() -> None:
    config = parse_config_text(
        'select = ["AG"]', filename="x.toml", root=Path("."), rules=[], pyproject=False
    )
    assert config.enabled_rules([]) == []


def test_error_mentions_a_long_value_briefly() -> None:
    message = parse_error(f"skill = {list(range(100))}")
    assert message.startswith(".asyncguard.toml: 'skill' must be a string, not [0, 1, 2")
    assert message.endswith("...")
    assert len(message) < 120
