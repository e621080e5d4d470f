"""The engine: from files to findings.

For each file: read it (skipping binary, huge and missing files with a note), run the text
prefilter, parse it once with libcst, and drive every applicable rule from one traversal that
also feeds the shared semantic model. Positions are resolved only for files that produced a
report, because libcst's position pass costs about as much as a traversal.
Large batches of files go to a process pool.
"""

from __future__ import annotations

import ast
import itertools
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace

import libcst as cst

from bot.facts import RepoFacts
from bot.findings import Edit, Finding, Fix, Note, NoteKind, RelatedLocation, Span, fingerprint
from bot.positions import Range, node_ranges
from bot.rule import FileContext, RawReport, Rule, RuleOptions
from bot.semantics import Semantics
from bot.suppressions import Suppressions
from bot.walker import walk

MAX_FILE_BYTES = 1024 * 1024
# Below this much source, starting worker processes costs more than it saves (measured with
# benchmarks/bench.py on a 2-core machine: a pool pays off from about 150k lines).
POOL_THRESHOLD_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class FileJob:
    path: str  # as shown to the user (relative, posix)
    disk_path: str  # where to read it
    module_name: str  # dotted, for resolving relative imports and naming facts


@dataclass
class FileResult:
    findings: list[Finding] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    parsed: bool = False
    prefiltered: bool = False


@dataclass(frozen=True)
class EngineSettings:
    """Everything a worker process needs, picklable."""

    rule_codes: tuple[str, ...]
    facts: RepoFacts = field(default_factory=RepoFacts)
    options: RuleOptions = field(default_factory=RuleOptions)


# ---------------------------------------------------------------------------- one file
def read_source(job: FileJob) -> tuple[bytes | None, Note | None]:
    try:
        size = os.path.getsize(job.disk_path)
        if size > MAX_FILE_BYTES:
            return None, Note(
                NoteKind.TOO_LARGE, job.path, f"skipped: {size} bytes is over the 1 MiB limit"
            )
        with open(job.disk_path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return None, Note(NoteKind.MISSING, job.path, "skipped: the file is not on disk")
    except OSError as error:
        return None, Note(NoteKind.UNREADABLE, job.path, f"skipped: {error.strerror or error}")
    if b"\0" in data:
        return None, Note(NoteKind.BINARY, job.path, "skipped: binary file")
    return data, None


def decode_source(job: FileJob, data: bytes) -> tuple[str | None, Note | None]:
    try:
        encoding = _declared_encoding(data)
        return data.decode(encoding).removeprefix("\ufeff"), None
    except (UnicodeDecodeError, LookupError) as error:
        return None, Note(
            NoteKind.UNREADABLE,
            job.path,
            f"skipped: cannot decode the file ({error.reason if isinstance(error, UnicodeDecodeError) else error})",
        )


def _declared_encoding(data: bytes) -> str:
    """PEP 263: a coding cookie on one of the first two lines, else UTF-8."""
    for line in data.split(b"\n", 2)[:2]:
        match = re.match(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)", line)
        if match:
            return match.group(1).decode("ascii")
    return "utf-8"


def applicable_rules(
    rules: Sequence[type[Rule]], text: str, facts: RepoFacts, options: RuleOptions | None = None
) -> list[type[Rule]]:
    """The text prefilter: a rule applies when every one of its token groups occurs."""
    settings = options or RuleOptions()
    seen: dict[tuple[str, ...], bool] = {}
    chosen = []
    for rule in rules:
        for group in rule.prefilter(facts, settings):
            present = seen.get(group)
            if present is None:
                present = seen[group] = any(token in text for token in group)
            if not present:
                break
        else:
            chosen.append(rule)
    return chosen


def syntax_error_note(path: str, text: str, error: cst.ParserSyntaxError) -> Note:
    """Where the file is broken, as Python itself says (libcst's positions run a line late)."""
    try:
        compile(text, path, "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
    except SyntaxError as python_error:
        return Note(
            NoteKind.SYNTAX_ERROR,
            path,
            f"cannot parse: {python_error.msg}",
            python_error.lineno,
            python_error.offset,
        )
    except (ValueError, RecursionError, MemoryError):
        pass
    # Python accepts it but libcst does not (syntax newer than the installed libcst).
    message = " ".join(str(error.message).split())
    return Note(
        NoteKind.SYNTAX_ERROR,
        path,
        f"cannot parse with libcst: {message}",
        error.raw_line,
        error.raw_column + 1,
    )


def git_line_endings(text: str) -> str:
    """Make a lone `\r` not a line break: git and GitHub count lines by `\n` only.

    A same-length substitution, so columns and the text of every other character stay put.
    """
    if "\r" not in text:
        return text
    return re.sub(r"\r(?!\n)", " ", text)


def analyse_text(
    job: FileJob,
    text: str,
    rules: Sequence[type[Rule]],
    facts: RepoFacts,
    options: RuleOptions,
) -> FileResult:
    result = FileResult()
    text = git_line_endings(text)
    chosen = applicable_rules(rules, text, facts, options)
    if not chosen:
        result.prefiltered = True
        return result
    try:
        module = cst.parse_module(text)
    except cst.ParserSyntaxError as error:
        result.notes.append(syntax_error_note(job.path, text, error))
        return result
    except RecursionError:
        result.notes.append(Note(NoteKind.SYNTAX_ERROR, job.path, "cannot parse: nesting too deep"))
        return result
    result.parsed = True
    semantics = Semantics(job.module_name, facts, module)
    context = FileContext(job.path, text, module, semantics, options)
    result.notes.extend(run_rules(context, [rule(context) for rule in chosen]))
    if context.reports:
        result.findings = to_findings(context)
    return result


# Exact node types of statements (a set lookup; isinstance on libcst's ABCs is slow).
STATEMENT_TYPES = frozenset(
    value
    for value in vars(cst).values()
    if isinstance(value, type)
    and issubclass(value, (cst.SimpleStatementLine, cst.BaseCompoundStatement))
)

_handler_names: dict[type[Rule], tuple[tuple[str, type[cst.CSTNode], str], ...]] = {}


def _handlers_of(rule: type[Rule]) -> tuple[tuple[str, type[cst.CSTNode], str], ...]:
    """(visit|leave, node type, method name) for each handler a rule class defines."""
    found = _handler_names.get(rule)
    if found is None:
        entries = []
        for attribute in dir(rule):
            prefix, _, node_name = attribute.partition("_")
            if prefix in ("visit", "leave") and node_name:
                node_type = getattr(cst, node_name, None)
                if isinstance(node_type, type) and issubclass(node_type, cst.CSTNode):
                    entries.append((prefix, node_type, attribute))
        found = _handler_names[rule] = tuple(entries)
    return found


Handler = tuple[Rule, Callable[[cst.CSTNode], None]]


def run_rules(context: FileContext, instances: Sequence[Rule]) -> list[Note]:
    """One traversal: the semantic model first, then each rule's handler for the node type.

    A rule that raises is switched off for this file (its reports dropped) and the others go
    on: one rule's bug must not cost the whole review.
    """
    visits: dict[type[cst.CSTNode], list[Handler]] = {}
    leaves: dict[type[cst.CSTNode], list[Handler]] = {}
    for instance in instances:
        for prefix, node_type, attribute in _handlers_of(type(instance)):
            table = visits if prefix == "visit" else leaves
            table.setdefault(node_type, []).append((instance, getattr(instance, attribute)))
    semantics = context.semantics
    statements: list[cst.CSTNode] = []
    failed: dict[type[Rule], str] = {}

    def call(handlers: list[Handler], node: cst.CSTNode) -> None:
        for instance, handler in handlers:
            if type(instance) in failed:
                continue
            try:
                handler(node)
            except Exception as error:  # reported as a note, see the docstring
                failed[type(instance)] = f"{type(error).__name__}: {error}"

    def enter(node: cst.CSTNode) -> None:
        kind = type(node)
        if kind in STATEMENT_TYPES:
            statements.append(node)
            context.statement = node
        semantics.enter(node)
        handlers = visits.get(kind)
        if handlers:
            call(handlers, node)

    def leave(node: cst.CSTNode) -> None:
        kind = type(node)
        handlers = leaves.get(kind)
        if handlers:
            call(handlers, node)
        semantics.leave(node)
        if kind in STATEMENT_TYPES and statements and statements[-1] is node:
            statements.pop()
            context.statement = statements[-1] if statements else None

    walk(context.module, enter, leave)
    if not failed:
        return []
    context.reports = [r for r in context.reports if r.rule not in failed]
    return [
        Note(
            NoteKind.INTERNAL_ERROR,
            context.path,
            f"{rule.CODE} skipped for this file after an internal error ({reason})",
        )
        for rule, reason in failed.items()
    ]


# ---------------------------------------------------------------------------- reports -> findings
def to_findings(context: FileContext) -> list[Finding]:
    positions = node_ranges(context.module)
    suppressions = Suppressions.from_source(context.source)
    occurrences: dict[tuple[str, str, str], int] = {}
    findings = []
    for raw in context.reports:
        code_range = positions.get(raw.node)
        if code_range is None:  # a rule reported a node it built itself: a bug, not a finding
            continue
        span = _span(code_range)
        statement = raw.statement
        statement_line = positions[statement][0] if statement in positions else span.start_line
        rule = raw.rule
        if suppressions.suppresses(rule.CODE, rule.NAME, (span.start_line, statement_line)):
            continue
        source = context.module.code_for_node(raw.node)
        key = (rule.CODE, raw.scope, " ".join(source.split()))
        occurrence = occurrences.get(key, 0)
        occurrences[key] = occurrence + 1
        findings.append(
            Finding(
                code=rule.CODE,
                name=rule.NAME,
                severity=raw.severity or rule.SEVERITY,
                path=context.path,
                span=span,
                message=raw.message,
                section=rule.SECTION,
                related=tuple(_related(raw, positions)),
                fix=_fix(raw, positions),
                fingerprint=fingerprint(rule.CODE, context.path, raw.scope, source, occurrence),
            )
        )
    return _keep_fixes_that_parse(findings, context.source)


def _span(code_range: Range) -> Span:
    start_line, start_column, end_line, end_column = code_range
    return Span(start_line, start_column + 1, end_line, end_column + 1)


def _related(raw: RawReport, positions: Mapping[cst.CSTNode, Range]) -> Iterable[RelatedLocation]:
    for node, message in raw.related:
        code_range = positions.get(node)
        if code_range is not None:
            yield RelatedLocation(_span(code_range), message)


def _fix(raw: RawReport, positions: Mapping[cst.CSTNode, Range]) -> Fix | None:
    """Turn a FixPlan into text edits (checked to re-parse by `_keep_fixes_that_parse`)."""
    plan = raw.fix
    if plan is None:
        return None
    nodes = [node for node, _ in plan.replacements] + [node for node, _, _ in plan.insertions]
    if any(node not in positions for node in nodes):
        return None
    edits = [Edit(_span(positions[node]), text) for node, text in plan.replacements]
    for node, text, where in plan.insertions:
        line, column, end_line, end_column = positions[node]
        if where == "after":
            line, column = end_line, end_column
        edits.append(Edit(Span(line, column + 1, line, column + 1), text))
    return Fix(plan.description, plan.safety, tuple(sorted(edits, key=lambda e: e.span)))


def _keep_fixes_that_parse(findings: list[Finding], source: str) -> list[Finding]:
    """Drop any fix whose result does not parse.

    Checked with CPython's parser (about 20x faster than libcst's) when it accepts the original
    file, else with libcst (code newer than the Python running us, e.g. 3.14's unparenthesised
    `except A, B:`); all of a file's fixes at once when they can be applied together, one by one
    otherwise. `check --fix` checks again with libcst before it writes anything.
    """
    fixes = [f.fix for f in findings if f.fix is not None]
    if not fixes:
        return findings
    parses = _compiles if _compiles(source) else libcst_parses
    edits = sorted({edit for fix in fixes for edit in fix.edits}, key=lambda e: e.span)
    if not _edits_overlap(edits) and parses(apply_edits(source, edits)):
        return findings
    return [
        f if f.fix is None or parses(apply_edits(source, f.fix.edits)) else replace(f, fix=None)
        for f in findings
    ]


def _edits_overlap(edits: Sequence[Edit]) -> bool:
    for before, after in itertools.pairwise(edits):
        end = (before.span.end_line, before.span.end_col)
        if end > (after.span.start_line, after.span.start_col) or before.span == after.span:
            return True
    return False


def libcst_parses(source: str) -> bool:
    try:
        cst.parse_module(source)
    except (cst.ParserSyntaxError, RecursionError):
        return False
    return True


def _compiles(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def apply_edits(source: str, edits: Sequence[Edit]) -> str:
    """Apply non-overlapping edits (1-based lines and columns) to source text.

    Lines are counted by `\n` only, as libcst and git count them here (`str.splitlines` would
    also break at form feeds and other separators).
    """
    starts = [0, *(match.end() for match in re.finditer("\n", source))]

    def offset(line: int, col: int) -> int:
        if line - 1 >= len(starts):
            return len(source)
        return min(starts[line - 1] + col - 1, len(source))

    result = source
    for edit in sorted(edits, key=lambda e: e.span, reverse=True):
        begin = offset(edit.span.start_line, edit.span.start_col)
        end = offset(edit.span.end_line, edit.span.end_col)
        result = result[:begin] + edit.content + result[end:]
    return result


# ---------------------------------------------------------------------------- many files
def analyse_job(
    job: FileJob, rules: Sequence[type[Rule]], facts: RepoFacts, options: RuleOptions
) -> FileResult:
    data, note = read_source(job)
    if data is None:
        return FileResult(notes=[note] if note else [])
    text, note = decode_source(job, data)
    if text is None:
        return FileResult(notes=[note] if note else [])
    return analyse_text(job, text, rules, facts, options)


def _worker_run(jobs: Sequence[FileJob], settings: EngineSettings) -> list[FileResult]:
    from bot.registry import rules_by_code

    known = rules_by_code()
    rules = [known[code] for code in settings.rule_codes]
    return [analyse_job(job, rules, settings.facts, settings.options) for job in jobs]


def analyse_jobs(
    jobs: Sequence[FileJob],
    rules: Sequence[type[Rule]],
    facts: RepoFacts,
    options: RuleOptions,
    *,
    workers: int | None = None,
) -> list[FileResult]:
    """Analyse files, in a process pool when the batch is large enough to pay for it."""
    if workers is None:
        workers = _workers_for(jobs)
    if workers <= 1 or len(jobs) < 2:
        return [analyse_job(job, rules, facts, options) for job in jobs]
    settings = EngineSettings(tuple(rule.CODE for rule in rules), facts, options)
    chunks = _balanced_chunks(jobs, workers * 4)
    import multiprocessing

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        batches = pool.map(_worker_run, chunks, [settings] * len(chunks))
        return [result for batch in batches for result in batch]


def _workers_for(jobs: Sequence[FileJob]) -> int:
    total = 0
    for job in jobs:
        try:
            total += os.path.getsize(job.disk_path)
        except OSError:
            continue
        if total >= POOL_THRESHOLD_BYTES:
            return os.cpu_count() or 1
    return 1


def _balanced_chunks(jobs: Sequence[FileJob], count: int) -> list[list[FileJob]]:
    """Largest files first, dealt round-robin, so no worker ends up with all the big ones."""

    def size(job: FileJob) -> int:
        try:
            return os.path.getsize(job.disk_path)
        except OSError:
            return 0

    ordered = sorted(jobs, key=size, reverse=True)
    chunks: list[list[FileJob]] = [[] for _ in range(max(1, min(count, len(ordered))))]
    for index, job in enumerate(ordered):
        chunks[index % len(chunks)].append(job)
    return chunks
