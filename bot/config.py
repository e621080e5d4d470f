"""Configuration: `.asyncguard.toml` or `[tool.asyncguard]` in `pyproject.toml`.

The keys, in kebab-case as in ruff (`.asyncguard.toml` has them at top level):

    select = ["AG"]              # code prefixes or rule names; "AG" is every rule
    extend-select = []           # added to `select`
    ignore = []                  # code prefixes or rule names
    fail-on = "error"            # error | warning | info | never
    filter-mode = "added"        # added | diff_context | file | nofilter
    max-comments = 25            # inline comments per review, 0..1000
    exclude = []                 # globs; excluded files are never analysed
    skill = "docs/SKILL.md"      # the skill file to quote (default: searched for)
    expire-on-commit = false     # the session factory's setting (default: detected)
    session-factories = []       # dotted names, e.g. "app.db.async_session"
    side-effect-patterns = ["send_*", "*email*", "*notify*", "*analytics*", "*webhook*"]
    blocking-calls = []          # qualified-name globs of calls that block the event loop
    review-event = "COMMENT"     # COMMENT | REQUEST_CHANGES (used when a finding fails the run)
    config-from = "base"         # base | head: which side of a pull request the Action and the
                                 # webhook read this file from (base, so a PR cannot relax it)

    [severity]                   # a rule code or rule name -> error | warning | info | off
    AG202 = "off"

    [per-file-ignores]           # glob -> code prefixes or rule names
    "tests/**" = ["AG401"]

Rule selection follows ruff: for each rule the most specific matching selector decides (the
longest code prefix; a rule name counts as its full code), and on a tie `ignore` wins. Flags given
on the command line form a second layer on top of the file, as ruff's do: `--select` starts over,
while `--extend-select` and `--ignore` adjust what the file selected.

Globs match the posix path relative to the directory of the config file, and also the file's
basename when the glob has no "/". `**/` spans zero or more directories, `*` and `?` never match
"/", `[...]` is a character class (`[!...]` negates), and a trailing "/" means everything below.
An `exclude` glob also matches a file when it matches one of the file's parent directories, so
`exclude = ["migrations"]` skips every `migrations` directory, as ruff and git do.

Every problem raises `ConfigError` with a single-line message naming the file, the key and the
closest valid alternative, since the CLI prints it as is and exits with status 2.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path, PurePosixPath
from typing import Any, Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, model_validator

from bot.findings import Severity
from bot.ruleinfo import RuleInfo

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = [
    "Config",
    "ConfigError",
    "ConfigFrom",
    "FailOn",
    "FilterMode",
    "ReviewEvent",
    "RuleSelection",
    "SeverityLevel",
    "find_config_file",
    "load_config",
    "parse_config_text",
]

FailOn = Literal["error", "warning", "info", "never"]
FilterMode = Literal["added", "diff_context", "file", "nofilter"]
SeverityLevel = Literal["error", "warning", "info", "off"]
ReviewEvent = Literal["COMMENT", "REQUEST_CHANGES"]
ConfigFrom = Literal["base", "head"]

CONFIG_FILENAME = ".asyncguard.toml"
PYPROJECT_FILENAME = "pyproject.toml"
ALL_RULES_PREFIX = "AG"

DEFAULT_SIDE_EFFECT_PATTERNS: tuple[str, ...] = (
    "send_*",
    "*email*",
    "*notify*",
    "*analytics*",
    "*webhook*",
)
MAX_COMMENTS_LIMIT = 1000

_DOTTED_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


class ConfigError(Exception):
    """A config that cannot be used. The message is one line, shown to the user as is."""


# -- globs ------------------------------------------------------------------------------------


class _GlobError(Exception):
    def __init__(self, glob: str, reason: str) -> None:
        super().__init__(f"{glob}: {reason}")
        self.glob = glob
        self.reason = reason


@dataclass(frozen=True)
class _Glob:
    """A path glob compiled to a regex (fnmatch has no `**` and lets `*` cross "/")."""

    pattern: str
    regex: re.Pattern[str]
    basename: bool  # the glob has no "/", so a file's basename may match it too

    @classmethod
    def compile(cls, glob: str) -> _Glob:
        pattern = glob
        while pattern.startswith("./"):
            pattern = pattern[2:]
        # Globs are relative to the config's directory anyway; a leading "/" only anchors.
        pattern = pattern.lstrip("/")
        if not pattern:
            raise _GlobError(glob, "empty pattern")
        if pattern.endswith("/"):
            pattern += "**"
        try:
            regex = re.compile(_glob_to_regex(glob, pattern))
        except re.error as exc:
            raise _GlobError(glob, str(exc)) from None
        return cls(pattern=glob, regex=regex, basename="/" not in glob)

    def matches(self, path: str) -> bool:
        if self.regex.fullmatch(path):
            return True
        return self.basename and self.regex.fullmatch(path.rsplit("/", 1)[-1]) is not None


def _glob_to_regex(glob: str, pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "*":
            stars = 2 if pattern.startswith("**", i) else 1
            at_component_start = i == 0 or pattern[i - 1] == "/"
            after = i + stars
            if stars == 2 and at_component_start and pattern.startswith("/", after):
                out.append("(?:[^/]*/)*")  # "**/": zero or more directories
                i = after + 1
            elif stars == 2 and at_component_start and after == n:
                out.append(".*")  # a trailing "**": everything below
                i = after
            else:
                out.append("[^/]*")  # "*", or a "**" inside a name, stays within a component
                i = after
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "[":
            j = i + 1
            if j < n and pattern[j] in "!^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1  # a "]" right after "[" or "[!" is a literal member, as in fnmatch
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                raise _GlobError(glob, "unbalanced '['")
            body = pattern[i + 1 : j]
            negate = body[:1] in ("!", "^")
            if negate:
                body = body[1:]
            # Escape everything but ranges so regex set syntax ("[", "&&", "\\") stays literal.
            members = "".join(c if c == "-" else re.escape(c) for c in body)
            out.append(f"[{'^' if negate else ''}{members}]")
            i = j + 1
        else:
            out.append(re.escape(char))
            i += 1
    return "".join(out)


class RuleSelection(BaseModel):
    """One layer of rule selection: the config file's, or the command line's on top of it.

    `select=None` means the layer did not say, so it adjusts the layers below instead of
    replacing them (ruff's behaviour for a layer with only `extend-select`/`ignore`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    select: tuple[str, ...] | None = None
    extend_select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()


class Config(BaseModel):
    """The validated settings. Build it with `load_config` or `parse_config_text`.

    Lists are stored as tuples so that a config shared between workers cannot be changed by one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    root: Path = Path(".")  # the config file's directory (or the start directory)
    source: Path | None = None  # the config file, None when running on defaults

    select: tuple[str, ...] = (ALL_RULES_PREFIX,)
    extend_select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    severity: dict[str, SeverityLevel] = Field(default_factory=dict)
    per_file_ignores: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    exclude: tuple[str, ...] = ()
    fail_on: FailOn = "error"
    filter_mode: FilterMode = "added"
    max_comments: int = Field(default=25, ge=0, le=MAX_COMMENTS_LIMIT)
    skill: str | None = None
    expire_on_commit: bool | None = None
    session_factories: tuple[str, ...] = ()
    side_effect_patterns: tuple[str, ...] = DEFAULT_SIDE_EFFECT_PATTERNS
    blocking_calls: tuple[str, ...] = ()
    review_event: ReviewEvent = "COMMENT"
    config_from: ConfigFrom = "base"
    # Command-line layers applied on top of select/extend_select/ignore (see `with_overrides`).
    cli_selections: tuple[RuleSelection, ...] = ()

    # Derived once at validation: compiled globs, and per-file ignores expanded to rule codes
    # (expansion needs the known rules, which only the loader has, via the validation context).
    _exclude_globs: tuple[_Glob, ...] = PrivateAttr(default=())
    _per_file: tuple[tuple[_Glob, frozenset[str]], ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _derive(self, info: ValidationInfo) -> Config:
        context = info.context if isinstance(info.context, dict) else {}
        rules: Sequence[RuleInfo] = context.get("rules", ())
        try:
            self._exclude_globs = tuple(_Glob.compile(g) for g in self.exclude)
            self._per_file = tuple(
                (_Glob.compile(glob), _expand(selectors, rules))
                for glob, selectors in self.per_file_ignores.items()
            )
        except _GlobError as exc:
            raise ValueError(f"invalid glob {exc.glob!r}: {exc.reason}") from None
        return self

    # -- rule selection -------------------------------------------------------------------

    def enabled_rules(self, rules: Sequence[RuleInfo]) -> list[RuleInfo]:
        """The rules to run, in the given order: selected, not ignored, severity not off."""
        layers = (
            RuleSelection(select=self.select, extend_select=self.extend_select, ignore=self.ignore),
            *self.cli_selections,
        )
        selected = _resolve_selection(layers, rules)
        return [r for r in rules if r.code in selected and self.severity_for(r) is not None]

    def severity_for(self, rule: RuleInfo) -> Severity | None:
        """The rule's effective severity; None when it is switched off.

        A key naming the code beats one naming the rule, as the code is the canonical name.
        """
        level = self.severity.get(rule.code) or self.severity.get(rule.name)
        if level is None:
            return rule.severity
        if level == "off":
            return None
        return Severity(level)

    def fails(self, severity: Severity) -> bool:
        """Whether a finding of this severity makes the run fail under `fail-on`."""
        if self.fail_on == "never":
            return False
        return severity.rank >= Severity(self.fail_on).rank

    # -- paths ----------------------------------------------------------------------------

    def ignored_codes_for(self, path: str) -> frozenset[str]:
        """Rule codes that `per-file-ignores` switches off for `path` (relative to `root`)."""
        rel = self._relative(path)
        codes: set[str] = set()
        for glob, glob_codes in self._per_file:
            if glob.matches(rel):
                codes |= glob_codes
        return frozenset(codes)

    def is_excluded(self, path: str) -> bool:
        """Whether `path` (relative to `root`) or one of its parent directories is excluded."""
        rel = self._relative(path)
        candidates = [rel, *(str(parent) for parent in PurePosixPath(rel).parents)]
        candidates = [c for c in candidates if c not in ("", ".", "/")]
        return any(glob.matches(c) for glob in self._exclude_globs for c in candidates)

    @property
    def skill_path(self) -> Path | None:
        """The `skill` setting resolved against `root` (it is written relative to the file)."""
        return None if self.skill is None else self.root / self.skill

    def _relative(self, path: str) -> str:
        posix = path.replace("\\", "/")
        if os.path.isabs(path):
            # Callers mostly pass repository-relative paths; an absolute one under the root is
            # made relative so that anchored globs like "tests/**" still apply to it.
            posix = Path(path).as_posix()
            # Try the root as given and resolved, since either side may have gone through a
            # symlink (e.g. a temporary directory).
            for root in (self.root, self.root.resolve()):
                try:
                    posix = Path(path).relative_to(root).as_posix()
                    break
                except ValueError:
                    continue
        while posix.startswith("./"):
            posix = posix[2:]
        return posix

    # -- command line ---------------------------------------------------------------------

    def with_overrides(
        self,
        *,
        select: str | Sequence[str] | None = None,
        extend_select: str | Sequence[str] | None = None,
        ignore: str | Sequence[str] | None = None,
        fail_on: str | None = None,
        filter_mode: str | None = None,
        max_comments: int | None = None,
        rules: Sequence[RuleInfo],
    ) -> Config:
        """This config with command-line flags applied; errors name the flag.

        A string for a selector list is split on commas and whitespace, as `--select AG1,AG2`.
        """
        check = _Checker(origin=None, table="", rules=rules)
        update: dict[str, Any] = {}
        cli_select = check.selectors_flag("--select", select)
        cli_extend = check.selectors_flag("--extend-select", extend_select)
        cli_ignore = check.selectors_flag("--ignore", ignore)
        if cli_select is not None or cli_extend is not None or cli_ignore is not None:
            layer = RuleSelection(
                select=cli_select, extend_select=cli_extend or (), ignore=cli_ignore or ()
            )
            update["cli_selections"] = (*self.cli_selections, layer)
        if fail_on is not None:
            update["fail_on"] = check.choice("--fail-on", fail_on, FailOn)
        if filter_mode is not None:
            update["filter_mode"] = check.choice("--filter-mode", filter_mode, FilterMode)
        if max_comments is not None:
            update["max_comments"] = check.integer(
                "--max-comments", max_comments, 0, MAX_COMMENTS_LIMIT
            )
        # The values are validated above; model_copy keeps the derived globs, which do not change.
        return self.model_copy(update=update)


# -- loading ----------------------------------------------------------------------------------


def load_config(start: Path, rules: Sequence[RuleInfo], explicit: Path | None = None) -> Config:
    """The config for `start` (a directory or a file): `explicit` if given, else discovered.

    Without a config file the defaults apply, with `root` the start directory.
    """
    if explicit is not None:
        return _load_explicit(explicit, rules)
    start_dir = _start_directory(start)
    found = _discover(start_dir)
    if found is None:
        return Config.model_validate({"root": start_dir}, context={"rules": tuple(rules)})
    path, table = found
    check = _Checker(origin=_display(path), table=_table_name(path.name), rules=rules)
    return check.build(table, root=path.parent, source=path)


def find_config_file(start: Path) -> Path | None:
    """The file `load_config` would read for `start`, or None (to show which one applies)."""
    found = _discover(_start_directory(start))
    return None if found is None else found[0]


def parse_config_text(
    text: str,
    *,
    filename: str,
    root: Path,
    rules: Sequence[RuleInfo],
    pyproject: bool,
    source: Path | None = None,
) -> Config:
    """Validate config text that is already in hand (e.g. read from a pull request's base).

    `filename` is only used in error messages. With `pyproject=True` the settings are read from
    `[tool.asyncguard]`, and a file without that table gives the defaults.
    """
    data = _parse_toml(text, filename)
    table = _tool_table(data, filename) if pyproject else data
    if table is None:
        return Config.model_validate({"root": root}, context={"rules": tuple(rules)})
    check = _Checker(origin=filename, table="tool.asyncguard" if pyproject else "", rules=rules)
    return check.build(table, root=root, source=source)


def _load_explicit(path: Path, rules: Sequence[RuleInfo]) -> Config:
    shown = str(path)
    text = _read(path, shown)
    is_pyproject = path.name == PYPROJECT_FILENAME
    data = _parse_toml(text, shown)
    table = _tool_table(data, shown) if is_pyproject else data
    if table is None:
        # Given by name, a pyproject.toml that configures nothing is a mistake worth reporting.
        raise ConfigError(f"{shown}: no [tool.asyncguard] table")
    resolved = path.resolve()
    check = _Checker(origin=shown, table=_table_name(path.name), rules=rules)
    return check.build(table, root=resolved.parent, source=resolved)


def _start_directory(start: Path) -> Path:
    resolved = start.resolve()
    return resolved.parent if resolved.is_file() else resolved


def _discover(start_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    for directory in (start_dir, *start_dir.parents):
        own = directory / CONFIG_FILENAME
        if own.is_file():
            shown = _display(own)
            return own, _parse_toml(_read(own, shown), shown)
        pyproject = directory / PYPROJECT_FILENAME
        if pyproject.is_file():
            shown = _display(pyproject)
            text = _read(pyproject, shown)
            # A pyproject.toml that never mentions us belongs to other tools; not parsing it
            # keeps a broken unrelated file from failing our run.
            if "asyncguard" in text:
                table = _tool_table(_parse_toml(text, shown), shown)
                if table is not None:
                    return pyproject, table
        if (directory / ".git").exists():
            break  # the repository root: settings above it belong to something else
    return None


def _table_name(filename: str) -> str:
    return "tool.asyncguard" if filename == PYPROJECT_FILENAME else ""


def _display(path: Path) -> str:
    """The path as the user would write it: relative to the working directory if inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _read(path: Path, shown: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{shown}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{shown}: cannot read: {reason}") from None


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column \d+\)$")
_TOML_END = re.compile(r"\s*\(at end of document\)$")


def _parse_toml(text: str, filename: str) -> dict[str, Any]:
    try:
        return cast(dict[str, Any], tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        message = str(exc).splitlines()[0] if str(exc) else "parse error"
        if match := _TOML_POSITION.search(message):
            line = int(match.group(1))
            message = message[: match.start()]
        else:
            # The parser reports "end of document" for unclosed constructs; the last line with
            # content is where the user has to look.
            message = _TOML_END.sub("", message)
            line = max(1, len(text.rstrip().splitlines()))
        raise ConfigError(f"{filename}: invalid TOML: {message} (line {line})") from None


def _tool_table(data: Mapping[str, Any], filename: str) -> dict[str, Any] | None:
    tool = data.get("tool")
    if not isinstance(tool, dict) or "asyncguard" not in tool:
        return None
    table = tool["asyncguard"]
    if not isinstance(table, dict):
        raise ConfigError(f"{filename}: [tool.asyncguard] must be a table, not {_show(table)}")
    return table


# -- validation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Checker:
    """Validates raw TOML values and phrases the errors (one line, file + key + a suggestion).

    pydantic's own messages are multi-line and use field names, not our kebab-case keys, so the
    values are checked here first and the model only re-checks types it has already seen pass.
    """

    origin: str | None  # the file name for messages; None for command-line flags
    table: str  # "tool.asyncguard" in pyproject.toml, "" in .asyncguard.toml
    rules: Sequence[RuleInfo]

    def error(self, message: str) -> ConfigError:
        return ConfigError(message if self.origin is None else f"{self.origin}: {message}")

    def build(self, table: Mapping[str, Any], *, root: Path, source: Path | None) -> Config:
        fields: dict[str, Any] = {"root": root, "source": source}
        for key, value in table.items():
            handler = _KEYS.get(key)
            if handler is None:
                where = f"[{self.table}] " if self.table else ""
                raise self.error(f"{where}unknown key {key!r}{_suggest(key, _KEYS)}")
            fields[key.replace("-", "_")] = handler(self, key, value)
        return Config.model_validate(fields, context={"rules": tuple(self.rules)})

    # Type checks. `label` is how the setting is named in the message: "'max-comments'" for a
    # key, "--max-comments" for a flag.

    def string(self, label: str, value: object) -> str:
        if not isinstance(value, str):
            raise self.error(f"{label} must be a string, not {_show(value)}")
        return value

    def string_list(self, label: str, value: object) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(f"{label} must be a list of strings, not {_show(value)}")
        return tuple(value)

    def boolean(self, label: str, value: object) -> bool:
        if not isinstance(value, bool):
            raise self.error(f"{label} must be true or false, not {_show(value)}")
        return value

    def integer(self, label: str, value: object, low: int, high: int) -> int:
        # bool is an int subclass in Python; `max-comments = true` is still a mistake.
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(f"{label} must be an integer, not {_show(value)}")
        if not low <= value <= high:
            raise self.error(f"{label} must be between {low} and {high}, not {value}")
        return value

    def choice(self, label: str, value: object, options: Any) -> Any:
        allowed: tuple[str, ...] = get_args(options)
        if value not in allowed:
            hint = _suggest(value, allowed) if isinstance(value, str) else ""
            raise self.error(
                f"{label} must be one of {', '.join(allowed)}, not {_show(value)}{hint}"
            )
        return value

    def table_of(self, label: str, value: object) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(f"{label} must be a table, not {_show(value)}")
        return value

    # Rule references.

    def selectors(self, where: str, values: Iterable[str]) -> None:
        for selector in values:
            if not _selector_known(selector, self.rules):
                raise self.error(
                    f"{where}: unknown rule {selector!r}{_suggest(selector, _rule_words(self.rules))}"
                )

    def selectors_flag(
        self, flag: str, value: str | Sequence[str] | None
    ) -> tuple[str, ...] | None:
        if value is None:
            return None
        if isinstance(value, str):
            items = tuple(part for part in re.split(r"[,\s]+", value) if part)
        else:
            items = self.string_list(flag, list(value))
        self.selectors(flag, items)
        return items

    def rule_key(self, key: str) -> None:
        if not any(key in (rule.code, rule.name) for rule in self.rules):
            section = f"{self.table}.severity" if self.table else "severity"
            family = [rule.code for rule in self.rules if rule.code.startswith(key)]
            if key and family:
                # A prefix would be a natural guess after `select`, so say what is expected.
                raise self.error(
                    f"[{section}] {key!r} is a prefix; name one rule by code or name, "
                    f"e.g. {family[0]!r}"
                )
            hint = _suggest(key, _rule_words(self.rules, prefixes=False))
            raise self.error(f"[{section}] unknown rule {key!r}{hint}")

    def glob(self, where: str, pattern: str) -> None:
        try:
            _Glob.compile(pattern)
        except _GlobError as exc:
            raise self.error(f"{where}: invalid glob {pattern!r}: {exc.reason}") from None


def _selector_list(check: _Checker, key: str, value: object) -> tuple[str, ...]:
    items = check.string_list(repr(key), value)
    check.selectors(key, items)
    return items


def _severity_table(check: _Checker, key: str, value: object) -> dict[str, str]:
    table = check.table_of(repr(key), value)
    for rule, level in table.items():
        check.rule_key(rule)
        allowed = get_args(SeverityLevel)
        if level not in allowed:
            hint = _suggest(level, allowed) if isinstance(level, str) else ""
            raise check.error(
                f"severity for {rule!r} must be one of {', '.join(allowed)}, "
                f"not {_show(level)}{hint}"
            )
    return dict(table)


def _per_file_table(check: _Checker, key: str, value: object) -> dict[str, tuple[str, ...]]:
    table = check.table_of(repr(key), value)
    result: dict[str, tuple[str, ...]] = {}
    for glob, selectors in table.items():
        check.glob(key, glob)
        items = check.string_list(f"{key}: {glob!r}", selectors)
        check.selectors(f"{key}: {glob!r}", items)
        result[glob] = items
    return result


def _glob_list(check: _Checker, key: str, value: object) -> tuple[str, ...]:
    items = check.string_list(repr(key), value)
    for pattern in items:
        check.glob(key, pattern)
    return items


def _dotted_names(check: _Checker, key: str, value: object) -> tuple[str, ...]:
    items = check.string_list(repr(key), value)
    for name in items:
        if not _DOTTED_NAME.fullmatch(name):
            raise check.error(f"{key}: {name!r} is not a dotted name like 'app.db.async_session'")
    return items


def _pattern_list(check: _Checker, key: str, value: object) -> tuple[str, ...]:
    items = check.string_list(repr(key), value)
    if any(not item for item in items):
        raise check.error(f"{key}: an empty pattern matches nothing")
    return items


_Handler = Callable[[_Checker, str, object], object]

# The file keys, in the order the module docstring lists them; the key decides the field name
# (kebab-case to snake_case) and the handler checks and converts the value.
_KEYS: dict[str, _Handler] = {
    "select": _selector_list,
    "extend-select": _selector_list,
    "ignore": _selector_list,
    "severity": _severity_table,
    "per-file-ignores": _per_file_table,
    "exclude": _glob_list,
    "fail-on": lambda c, k, v: c.choice(repr(k), v, FailOn),
    "filter-mode": lambda c, k, v: c.choice(repr(k), v, FilterMode),
    "max-comments": lambda c, k, v: c.integer(repr(k), v, 0, MAX_COMMENTS_LIMIT),
    "skill": lambda c, k, v: c.string(repr(k), v),
    "expire-on-commit": lambda c, k, v: c.boolean(repr(k), v),
    "session-factories": _dotted_names,
    "side-effect-patterns": _pattern_list,
    "blocking-calls": _pattern_list,
    "review-event": lambda c, k, v: c.choice(repr(k), v, ReviewEvent),
    "config-from": lambda c, k, v: c.choice(repr(k), v, ConfigFrom),
}


def _suggest(word: str, candidates: Iterable[str]) -> str:
    """ " (did you mean 'x'?)" for the closest candidate, or "" when none is close."""
    # Compare case-insensitively so that "ag201" finds "AG201".
    by_lower = {c.lower(): c for c in candidates}
    matches = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {by_lower[matches[0]]!r}?)" if matches else ""


def _show(value: object) -> str:
    """A value as the user wrote it in TOML, short enough for a one-line message."""
    text: str
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = repr(value)
    elif isinstance(value, dict):
        return "a table"
    elif isinstance(value, list):
        text = "[" + ", ".join(_show(v) for v in value) + "]"
    elif isinstance(value, (datetime, date, time)):
        text = value.isoformat()
    else:
        text = repr(value)
    text = " ".join(text.split())  # one line, whatever the value holds
    return text if len(text) <= 60 else text[:57] + "..."


# -- rules ------------------------------------------------------------------------------------


def _selector_known(selector: str, rules: Sequence[RuleInfo]) -> bool:
    if selector == ALL_RULES_PREFIX:
        return True  # valid even before any rule of a family exists
    if not selector:
        return False  # "" would be a prefix of every code
    return any(rule.name == selector or rule.code.startswith(selector) for rule in rules)


def _rule_words(rules: Sequence[RuleInfo], *, prefixes: bool = True) -> list[str]:
    words = [rule.code for rule in rules] + [rule.name for rule in rules]
    return [ALL_RULES_PREFIX, *words] if prefixes else words


def _specificity(selector: str, rule: RuleInfo) -> int | None:
    """How specifically `selector` names `rule`, or None if it does not match it.

    A rule name is as specific as the rule's full code.
    """
    if selector == rule.name:
        return len(rule.code)
    if selector and rule.code.startswith(selector):
        return len(selector)
    return None


def _resolve_selection(layers: Iterable[RuleSelection], rules: Sequence[RuleInfo]) -> set[str]:
    """The selected codes after applying each layer in turn, as ruff does."""
    enabled: set[str] = set()
    for layer in layers:
        selects = (*(layer.select or ()), *layer.extend_select)
        decisions: dict[str, bool] = {}
        for rule in rules:
            best: tuple[int, bool] | None = None  # (specificity, is_ignore): a tie goes to ignore
            for selector in selects:
                spec = _specificity(selector, rule)
                if spec is not None and (best is None or (spec, False) > best):
                    best = (spec, False)
            for selector in layer.ignore:
                spec = _specificity(selector, rule)
                if spec is not None and (best is None or (spec, True) > best):
                    best = (spec, True)
            if best is not None:
                decisions[rule.code] = not best[1]
        if layer.select is not None:
            enabled = {code for code, on in decisions.items() if on}
        else:
            enabled |= {code for code, on in decisions.items() if on}
            enabled -= {code for code, on in decisions.items() if not on}
    return enabled


def _expand(selectors: Iterable[str], rules: Sequence[RuleInfo]) -> frozenset[str]:
    """The concrete codes a list of prefixes and names stands for.

    Without known rules (a Config built by hand) the selectors are kept as they are, which is
    still right for full codes.
    """
    if not rules:
        return frozenset(selectors)
    return frozenset(
        rule.code for rule in rules for s in selectors if _specificity(s, rule) is not None
    )
