"""Measure asyncguard's speed and memory; print Markdown tables.

    python benchmarks/gen_corpus.py            # once: writes benchmarks/corpus/
    python benchmarks/bench.py [--corpus DIR] [--real DIR ...] [--json OUT]

For the generated corpus, every `--real` directory and this repository's own `bot/` + `rules/`:
bare `libcst.parse_module` throughput against the engine's (`bot.engine.analyse_jobs`, single
process and a 2-worker pool), the largest file alone, ruff for comparison; then, on the
generated corpus only, the command line end to end: a 20-file pull request, `--version`
start-up and whole-corpus runs with peak memory. See benchmarks/README.md for what each number
means. Nothing here is a test: it prints numbers, it does not judge them.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import inspect
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import libcst as cst  # noqa: E402

from bot.config import Config  # noqa: E402
from bot.engine import FileJob, analyse_jobs  # noqa: E402
from bot.facts import RepoFacts  # noqa: E402
from bot.pipeline import selected_rules  # noqa: E402
from bot.repo_index import build_index, iter_python_files, module_name_for  # noqa: E402
from bot.rule import Rule, RuleOptions  # noqa: E402

BIN = Path(sys.executable).parent
ASYNCGUARD = str(BIN / "asyncguard") if (BIN / "asyncguard").exists() else "asyncguard"
RUFF = str(BIN / "ruff") if (BIN / "ruff").exists() else (shutil.which("ruff") or "ruff")
DEFAULT_CORPUS = HERE / "corpus"
POOL_WORKERS = 2


# ---------------------------------------------------------------------------- timing helpers
def timed(
    function: Callable[[], object], *, budget: float = 2.0, max_runs: int = 15, runs: int = 1
) -> tuple[float, list[float]]:
    """Median wall time of `function`: at least `runs` runs, more while under `budget` seconds.

    The median CPU time of this process over the same runs goes to `LAST_CPU`: unlike wall
    time it hardly moves when other programs compete for the CPUs.
    """
    global LAST_CPU
    times: list[float] = []
    cpu: list[float] = []
    while True:
        start, start_cpu = time.perf_counter(), time.process_time()
        function()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        if len(times) >= max_runs or (len(times) >= runs and sum(times) >= budget):
            LAST_CPU = statistics.median(cpu)
            return statistics.median(times), times


LAST_CPU = 0.0


def run_quiet(
    argv: Sequence[str], cwd: Path | str | None = None, env: dict[str, str] | None = None
) -> tuple[float, int]:
    start = time.perf_counter()
    completed = subprocess.run(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    elapsed = time.perf_counter() - start
    _check_exit(argv, completed.returncode, completed.stderr.decode(errors="replace"))
    return elapsed, completed.returncode


class CommandFailed(RuntimeError):
    pass


def _check_exit(argv: Sequence[str], code: int, stderr: str) -> None:
    """Exit 1 means "findings" for asyncguard and ruff, unless Python died with a traceback."""
    if code not in (0, 1) or "Traceback (most recent call last)" in stderr:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        raise CommandFailed(f"`{' '.join(map(str, argv[:3]))} ...` exited {code}: {last}")


def _tree_rss_kib(root_pid: int) -> int:
    """Resident memory of a process and all its descendants, from /proc (Linux)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        pid = int(entry)
        parents[pid] = int(fields[1])
        rss[pid] = int(fields[21]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    total = 0
    for pid in rss:
        current = pid
        while current and current != root_pid:
            current = parents.get(current, 0)
        if current == root_pid:
            total += rss[pid]
    return total


def run_with_memory(argv: Sequence[str], cwd: Path, env: dict[str, str]) -> dict[str, float]:
    """Wall time, peak RSS of the biggest single process (wait4) and sampled peak of the tree."""
    start = time.perf_counter()
    process = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    peak_tree = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_tree
        while not done.is_set():
            peak_tree = max(peak_tree, _tree_rss_kib(process.pid))
            done.wait(0.05)

    chunks: list[bytes] = []
    reader = threading.Thread(
        target=lambda: chunks.append(process.stderr.read() if process.stderr else b""), daemon=True
    )
    reader.start()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    stderr = b"".join(chunks).decode(errors="replace")
    _check_exit(argv, process.returncode, stderr)
    # ru_maxrss is in KiB on Linux: the largest of the process and its waited-for descendants.
    return {
        "seconds": elapsed,
        "max_rss_mib": usage.ru_maxrss / 1024,
        "tree_rss_mib": peak_tree / 1024,
    }


# ---------------------------------------------------------------------------- code bases
@dataclass
class Target:
    label: str
    root: Path
    paths: list[Path]  # directories or files under root that make up the code base
    jobs: list[FileJob] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def load(self) -> Target:
        seen: set[str] = set()
        for path in self.paths:
            files = [path] if path.is_file() else iter_python_files(path)
            for file in files:
                relative = file.relative_to(self.root).as_posix()
                if relative in seen:
                    continue
                seen.add(relative)
                data = file.read_bytes()  # also warms the page cache
                self.jobs.append(FileJob(relative, str(file), module_name_for(relative)))
                self.sizes.append(len(data))
                self.lines.append(data.count(b"\n") + (not data.endswith(b"\n") and bool(data)))
        return self

    @property
    def total_lines(self) -> int:
        return sum(self.lines)


def index(root: Path) -> RepoFacts:
    """`build_index` without its on-disk cache (timed honestly, and no cache files left behind)."""
    if "use_cache" in inspect.signature(build_index).parameters:
        return build_index(root, use_cache=False)
    return build_index(root)


def facts_for(target: Target) -> RepoFacts:
    """As `bot.pipeline.repository_facts` with the default config."""
    facts = RepoFacts.build(set(Config().session_factories), set())
    if target.paths == [target.root]:
        return facts.merged(index(target.root))
    for path in target.paths:  # a part of a bigger checkout: index only that part
        if path.is_dir():
            facts = facts.merged(index(path))
    return facts


# ---------------------------------------------------------------------------- engine-level measurements
def bare_parse(jobs: Sequence[FileJob], per_file: list[float] | None = None) -> int:
    """Read, decode and parse every file with libcst: the floor any libcst-based tool pays."""
    errors = 0
    for job in jobs:
        start = time.perf_counter()
        with open(job.disk_path, "rb") as handle:
            text = handle.read().decode("utf-8", "replace").removeprefix("\ufeff")
        try:
            cst.parse_module(text)
        except (cst.ParserSyntaxError, RecursionError):
            errors += 1
        if per_file is not None:
            per_file.append(time.perf_counter() - start)
    return errors


def measure_engine(
    target: Target, rules: Sequence[type[Rule]], *, runs: int, pool: bool
) -> dict[str, Any]:
    jobs = target.jobs
    lines = target.total_lines
    result: dict[str, Any] = {
        "label": target.label,
        "root": str(target.root),
        "files": len(jobs),
        "lines": lines,
        "bytes": sum(target.sizes),
    }
    options = RuleOptions()

    index_seconds, _ = timed(lambda: facts_for(target), runs=runs, budget=1.0)
    facts = facts_for(target)
    result["index_seconds"] = index_seconds
    result["facts"] = {
        "factories": sorted(facts.session_factories),
        "aliases": sorted(facts.session_aliases),
    }

    bare_parse(jobs[:20])  # warm-up: imports, native parser, caches
    per_file: list[float] = []
    errors: list[int] = []

    def parse_all() -> None:
        errors.append(bare_parse(jobs, None if per_file else per_file))

    parse_seconds, parse_runs = timed(parse_all, runs=runs, budget=3.0)
    result["parse"] = {
        "seconds": parse_seconds,
        "cpu_seconds": LAST_CPU,
        "runs": parse_runs,
        "syntax_errors": errors[0],
    }

    outcome: list[Any] = []

    def engine(workers: int) -> None:
        outcome[:] = analyse_jobs(jobs, rules, facts, options, workers=workers)

    engine_seconds, engine_runs = timed(lambda: engine(1), runs=runs, budget=3.0)
    prefiltered = sum(r.prefiltered for r in outcome)
    parsed = [r.parsed for r in outcome]
    result["engine"] = {
        "seconds": engine_seconds,
        "cpu_seconds": LAST_CPU,
        "runs": engine_runs,
        "prefiltered": prefiltered,
        "parsed": sum(parsed),
        "findings": sum(len(r.findings) for r in outcome),
        "notes": sum(len(r.notes) for r in outcome),
    }
    # Bare parse time of only the files the engine parsed: the engine's cost per parsed file.
    # (the share of the first run's per-file times, applied to the median run)
    share = sum(t for t, p in zip(per_file, parsed, strict=True) if p) / (sum(per_file) or 1.0)
    parse_of_parsed = parse_seconds * share
    lines_parsed = sum(n for n, p in zip(target.lines, parsed, strict=True) if p)
    result["parse_of_parsed_files"] = {"seconds": parse_of_parsed, "lines": lines_parsed}

    if pool:
        # The VM's second CPU comes and goes: calibrate right before, and count the CPU time the
        # workers really got (children's rusage, collected when the pool shuts down).
        parallelism = effective_parallelism()
        for _ in range(2):  # the host sometimes takes the second CPU away for a while: wait
            if parallelism >= 1.5:
                break
            time.sleep(5)
            parallelism = effective_parallelism()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        pool_seconds, pool_runs = timed(lambda: engine(POOL_WORKERS), runs=runs, budget=3.0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        result["pool"] = {
            "workers": POOL_WORKERS,
            "seconds": pool_seconds,
            "runs": pool_runs,
            "effective_parallelism": parallelism,
            "cpus_used": cpu / sum(pool_runs),
        }

    # The largest file alone (all rules, one process), against its bare parse.
    worst = max(range(len(jobs)), key=lambda i: target.sizes[i])
    job = jobs[worst]
    worst_parse, _ = timed(lambda: bare_parse([job]), runs=3, budget=2.0)
    worst_engine, worst_runs = timed(
        lambda: analyse_jobs([job], rules, facts, options, workers=1), runs=3, budget=2.0
    )
    worst_prefiltered = analyse_jobs([job], rules, facts, options, workers=1)[0].prefiltered
    result["worst_file"] = {
        "path": job.path,
        "lines": target.lines[worst],
        "bytes": target.sizes[worst],
        "parse_seconds": worst_parse,
        "engine_seconds": worst_engine,
        "runs": worst_runs,
        "prefiltered": worst_prefiltered,
    }
    gc.collect()
    return result


def measure_ruff(target: Target) -> dict[str, Any]:
    argv = [
        RUFF,
        "check",
        "--select",
        "ASYNC",
        "--no-cache",
        "--isolated",
        "--quiet",
        *map(str, target.paths),
    ]
    run_quiet(argv, cwd=target.root)  # warm-up
    all_cores, runs = timed(lambda: run_quiet(argv, cwd=target.root), runs=5, budget=2.0)
    env = {**os.environ, "RAYON_NUM_THREADS": "1"}
    one_thread, _ = timed(lambda: run_quiet(argv, cwd=target.root, env=env), runs=3, budget=2.0)
    return {"seconds": all_cores, "runs": runs, "one_thread_seconds": one_thread}


# ---------------------------------------------------------------------------- command line, end to end
PYCACHE: Path | None = None  # set in main(): a bytecode cache outside the source tree


def cli_env(root: Path, *, bytecode: bool = True) -> dict[str, str]:
    # The corpus lives inside this repository's work tree; stop git there so that the
    # repository index covers the corpus alone, as it would in the corpus's own checkout.
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(root.parent), "NO_COLOR": "1"}
    # An installed tool has .pyc files; keep them out of the source tree (and the work tree).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if bytecode and PYCACHE is not None:
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    elif not bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONPYCACHEPREFIX"] = str(root / "no-pycache")  # empty: everything compiles
    return env


def _git(cwd: Path, *args: str) -> bytes:
    command = [
        "git",
        "-c",
        "user.name=bench",
        "-c",
        "user.email=bench@example.invalid",
        "-c",
        "commit.gpgsign=false",
        *args,
    ]
    return subprocess.run(command, cwd=cwd, check=True, capture_output=True).stdout


def pick_pr_files(target: Target, count: int = 20, seed: int = 7) -> list[int]:
    """~20 typical files with session code (repositories, services, routers, tasks), 4-5k lines."""
    wanted = ("/repositories/", "/services/", "/routers/", "/tasks/")
    candidates = [
        i
        for i, job in enumerate(target.jobs)
        if any(w in "/" + job.path for w in wanted) and 170 <= target.lines[i] <= 290
    ]
    picked = random.Random(seed).sample(candidates, min(count, len(candidates)))
    return sorted(picked, key=lambda i: target.jobs[i].path)


def _edit(text: str, number: int) -> str:
    """A realistic change: a docstring edit near the top, a line in the middle, a new function.

    The first file's new code also discards a task (AG501), so that the run reports one finding
    on an added line and goes through positions, fingerprints and SARIF results.
    """
    lines = text.split("\n")
    lines[0] = lines[0].replace('."""', f' (revised in change {number})."""', 1)
    defs = [i for i, line in enumerate(lines) if line.startswith(("    async def ", "async def "))]
    if defs:
        middle = defs[len(defs) // 2]
        indent = lines[middle][: len(lines[middle]) - len(lines[middle].lstrip())]
        lines.insert(middle, f"{indent}# Reviewed in change {number}: keep the queries sequential.")
    added = [
        "",
        "",
        f"async def added_in_change_{number}(session: AsyncSession, ids: list[int]) -> int:",
        "    total = 0",
        "    for item_id in ids:",
        "        result = await session.execute(select(func.count()).where(text(':id = :id')), {'id': item_id})",
        "        total += result.scalar_one()",
        "    return total",
    ]
    if number == 0:
        added += [
            "",
            "",
            f"async def notify_in_change_{number}(item_id: int) -> None:",
            "    import asyncio",
            "",
            "    asyncio.create_task(send_notification(item_id))",
        ]
    return "\n".join(lines).rstrip("\n") + "\n" + "\n".join(added) + "\n"


def make_pr_repo(target: Target, picked: list[int], where: Path, *, full_checkout: bool) -> int:
    """A git repo with the picked files (or the whole corpus), committed, then edited: returns diff lines."""
    where.mkdir(parents=True)
    sources = range(len(target.jobs)) if full_checkout else picked
    for i in sources:
        job = target.jobs[i]
        destination = where / job.path
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(job.disk_path, destination)
    _git(where, "init", "-q", "-b", "main")
    _git(where, "add", "-A")
    _git(where, "commit", "-q", "-m", "base")
    for number, i in enumerate(picked):
        path = where / target.jobs[i].path
        path.write_text(_edit(path.read_text(encoding="utf-8"), number), encoding="utf-8")
    diff = _git(where, "diff")
    (where / "x.diff").write_bytes(diff)
    return diff.count(b"\n")


def _drop_cache(root: Path) -> None:
    shutil.rmtree(root / ".asyncguard-cache", ignore_errors=True)


def measure_pr(
    target: Target,
    scratch: Path,
    *,
    full_checkout: bool,
    bytecode: bool = True,
    keep_cache: bool = False,
) -> dict[str, Any]:
    picked = pick_pr_files(target)
    repo = scratch / ("pr-full" if full_checkout else "pr")
    if not repo.exists():
        diff_lines = make_pr_repo(target, picked, repo, full_checkout=full_checkout)
    else:
        diff_lines = (repo / "x.diff").read_bytes().count(b"\n")
    argv = [ASYNCGUARD, "check", "--diff", "x.diff", "--format", "sarif", "--output", "out.sarif"]
    env = cli_env(repo, bytecode=bytecode)
    _drop_cache(repo)
    run_quiet(argv, cwd=repo, env=env)  # warm-up (and .pyc files)
    times = []
    for _ in range(5):
        if not keep_cache:  # a fresh CI checkout has no index cache
            _drop_cache(repo)
        times.append(run_quiet(argv, cwd=repo, env=env)[0])
    jobs = [
        FileJob(target.jobs[i].path, str(repo / target.jobs[i].path), target.jobs[i].module_name)
        for i in picked
    ]
    rules = selected_rules(Config())
    facts = RepoFacts().merged(index(repo))
    engine, _ = timed(lambda: analyse_jobs(jobs, rules, facts, RuleOptions(), workers=1), runs=5)
    sarif = json.loads((repo / "out.sarif").read_text(encoding="utf-8"))
    results = sum(len(run.get("results", [])) for run in sarif.get("runs", []))
    return {
        "files": len(picked),
        "lines": sum(target.lines[i] for i in picked),
        "diff_lines": diff_lines,
        "checkout_files": len(target.jobs) if full_checkout else len(picked),
        "seconds": statistics.median(times),
        "min": min(times),
        "max": max(times),
        "sarif_results": results,
        "engine_seconds": engine,
    }


def measure_startup() -> dict[str, Any]:
    env = cli_env(HERE)

    def median_of(argv: list[str], runs: int = 10) -> float:
        run_quiet(argv, env=env)
        return statistics.median(run_quiet(argv, env=env)[0] for _ in range(runs))

    return {
        "version_seconds": median_of([ASYNCGUARD, "--version"]),
        "python_seconds": median_of([sys.executable, "-c", "pass"]),
        "import_libcst_seconds": median_of([sys.executable, "-c", "import libcst"], runs=5),
        # What `check` imports before it reads a file (bot.cli imports lazily).
        "import_check_seconds": median_of(
            [sys.executable, "-c", "import bot.cli, bot.pipeline, bot.reporters, bot.git"], runs=5
        ),
    }


def measure_full_cli(target: Target, *, quick: bool = False) -> dict[str, Any]:
    argv = [ASYNCGUARD, "check", ".", "--format", "json", "--output", os.devnull]
    env = cli_env(target.root)
    result = {}
    if not quick:
        _drop_cache(target.root)
        result["workers_1"] = run_with_memory([*argv, "--workers", "1"], target.root, env)
    _drop_cache(target.root)
    result["default"] = run_with_memory(argv, target.root, env)
    _drop_cache(target.root)
    return result


def attempt(function: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A failing command (a broken CLI) is reported in the table instead of ending the run."""
    try:
        return function()
    except CommandFailed as error:
        print(f"    failed: {error}", file=sys.stderr, flush=True)
        return {"error": str(error)}


# ---------------------------------------------------------------------------- report
def _spin(_: object = None) -> float:
    start = time.perf_counter()
    total = 0
    for i in range(15_000_000):
        total += i
    return time.perf_counter() - start


def effective_parallelism() -> float:
    """How many CPUs a CPU-bound pure-Python job really gets: one loop alone vs. two at once.

    On a dedicated 2-core machine this is about 2; on a shared or throttled VM it can be near 1,
    and then no process pool can speed anything up.
    """
    import multiprocessing

    alone = min(_spin() for _ in range(2))
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(_spin, range(2))  # start-up
        start = time.perf_counter()
        pool.map(_spin, range(2), chunksize=1)
        both = time.perf_counter() - start
    return 2 * alone / both


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")),
                "",
            )
    except OSError:
        pass
    ruff_version = subprocess.run(
        [RUFF, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libcst": importlib.metadata.version("libcst"),
        "asyncguard": importlib.metadata.version("asyncguard"),
        "ruff": ruff_version,
        "commit": _commit(),
        "rules": [rule.CODE for rule in selected_rules(Config())],
        "load_before": os.getloadavg()[0],
    }


def _commit() -> str:
    """The asyncguard commit measured, with `+dirty` when bot/ or rules/ have local changes."""
    try:
        head = _git(REPO, "rev-parse", "--short", "HEAD").decode().strip()
        dirty = _git(REPO, "status", "--porcelain", "--", "bot", "rules").strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _s(value: float) -> str:
    return f"{value:.2f}" if value >= 0.1 else f"{value * 1000:.0f} ms"


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    share = min(
        (
            r[k]["cpu_seconds"] / r[k]["seconds"]
            for r in report["targets"]
            for k in ("parse", "engine")
        ),
        default=1.0,
    )
    out = [
        f"Machine: {m['nproc']} CPUs ({m['usable_cpus']} usable), {m['cpu']}; Python {m['python']}, "
        f"libcst {m['libcst']}, asyncguard {m['asyncguard']} ({m['commit']}), {m['ruff']}; {m['platform']}.",
        "",
        f"Rules enabled by default ({len(m['rules'])}): {', '.join(m['rules'])}.",
        "",
        f"1-minute load average {m['load_before']:.1f} before the run, {m.get('load_after', 0):.1f} "
        f"after it; the single-process measurements got {share:.0%} of a CPU at worst"
        + (
            " -- other programs were competing for the CPUs: wall times are inflated, the "
            "CPU-time ratio is the more reliable one."
            if share < 0.9
            else "."
        ),
        "",
        "### Single process (read + prefilter + parse + rules vs. bare `libcst.parse_module`)",
        "",
        "| code base | files | lines | bare parse s | parse files/s | parse lines/s | asyncguard s | files/s | lines/s | b/a | b/a (CPU time) | b/a on parsed files | prefiltered | findings (notes) | index s |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in report["targets"]:
        parse, engine, subset = (
            r["parse"]["seconds"],
            r["engine"]["seconds"],
            r["parse_of_parsed_files"]["seconds"],
        )
        out.append(
            f"| {r['label']} | {_n(r['files'])} | {_n(r['lines'])} | {_s(parse)} | {_n(r['files'] / parse)} | "
            f"{_n(r['lines'] / parse)} | {_s(engine)} | {_n(r['files'] / engine)} | {_n(r['lines'] / engine)} | "
            f"{engine / parse:.2f} | {r['engine']['cpu_seconds'] / r['parse']['cpu_seconds']:.2f} | "
            f"{engine / subset if subset else float('nan'):.2f} | "
            f"{r['engine']['prefiltered'] / r['files']:.0%} | {r['engine']['findings']} ({r['engine']['notes']}) | "
            f"{_s(r['index_seconds'])} |"
        )
    out += [
        "",
        "### Process pool (`analyse_jobs(..., workers=2)`)",
        "",
        "| code base | workers=1 s | workers=2 s | speed-up | lines/s (pool) "
        "| CPUs the workers got | parallelism of 2 spin loops just before |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for r in report["targets"]:
        if "pool" in r:
            one, two = r["engine"]["seconds"], r["pool"]["seconds"]
            out.append(
                f"| {r['label']} | {_s(one)} | {_s(two)} | {one / two:.2f}x | {_n(r['lines'] / two)} "
                f"| {r['pool']['cpus_used']:.2f} | {r['pool']['effective_parallelism']:.2f} |"
            )
    out += [
        "",
        "### Largest file alone (all rules, one process)",
        "",
        "| code base | file | lines | bare parse | asyncguard | ratio |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for r in report["targets"]:
        w = r["worst_file"]
        ratio = (
            "prefiltered" if w["prefiltered"] else f"{w['engine_seconds'] / w['parse_seconds']:.2f}"
        )
        out.append(
            f"| {r['label']} | `{w['path']}` | {_n(w['lines'])} | {_s(w['parse_seconds'])} | {_s(w['engine_seconds'])} | {ratio} |"
        )
    out += [
        "",
        "### ruff for comparison (`ruff check --select ASYNC --no-cache --isolated`)",
        "",
        "| code base | ruff s (all cores) | lines/s | ruff s (1 thread) | lines/s | asyncguard 1 process s | asyncguard / ruff 1 thread |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for r in report["targets"]:
        if "ruff" in r:
            f = r["ruff"]
            out.append(
                f"| {r['label']} | {_s(f['seconds'])} | {_n(r['lines'] / f['seconds'])} | {_s(f['one_thread_seconds'])} | "
                f"{_n(r['lines'] / f['one_thread_seconds'])} | {_s(r['engine']['seconds'])} | {r['engine']['seconds'] / f['one_thread_seconds']:.0f}x |"
            )
    cli = report.get("cli")
    if cli:
        out += [
            "",
            f"### Command line, end to end ({cli['label']})",
            "",
            "| what | wall | notes |",
            "|---|--:|---|",
        ]
        pr_titles = {
            "pr": "20-file pull request, fresh checkout",
            "pr_cold": "same, without .pyc files for the tool",
            "pr_full": "same diff in a full checkout, no index cache",
            "pr_full_cached": "same diff in a full checkout, index cache kept",
        }
        for key, title in pr_titles.items():
            p = cli.get(key)
            if p is None:
                continue
            command = f"{title}: `check --diff x.diff --format sarif`"
            if "error" in p:
                out.append(f"| {command} | failed | {p['error']} |")
                continue
            out.append(
                f"| {command} | {_s(p['seconds'])} | median of 5 (min {_s(p['min'])}, "
                f"max {_s(p['max'])}); {p['files']} files, {_n(p['lines'])} lines, "
                f"{p['diff_lines']}-line diff, {_n(p['checkout_files'])} files in the checkout, "
                f"{p['sarif_results']} SARIF result(s); the engine alone on these files takes "
                f"{_s(p['engine_seconds'])} in-process |"
            )
        s = cli["startup"]
        if "error" in s:
            out.append(f"| `asyncguard --version` | failed | {s['error']} |")
        else:
            out.append(
                f"| `asyncguard --version` | {_s(s['version_seconds'])} | median of 10; "
                f"`python -c pass` {_s(s['python_seconds'])}, `python -c 'import libcst'` "
                f"{_s(s['import_libcst_seconds'])}, importing what `check` needs "
                f"{_s(s['import_check_seconds'])} |"
            )
        full = cli.get("full", {})
        if "error" in full:
            out.append(f"| whole corpus, `check .` | failed | {full['error']} |")
        for key, title in (("workers_1", "`--workers 1`"), ("default", "default workers")):
            if key in full:
                f = full[key]
                out.append(
                    f"| whole corpus, `check .` {title} | {_s(f['seconds'])} | peak RSS "
                    f"{f['max_rss_mib']:.0f} MiB (largest process), {f['tree_rss_mib']:.0f} MiB "
                    "(process tree, sampled every 50 ms) |"
                )
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Benchmark asyncguard against bare libcst parsing and ruff."
    )
    parser.add_argument(
        "--corpus",
        type=Path,
        default=DEFAULT_CORPUS,
        help="generated corpus (default: benchmarks/corpus)",
    )
    parser.add_argument(
        "--real",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a real code base (repeatable)",
    )
    parser.add_argument(
        "--json", type=Path, metavar="OUT", help="also write the raw numbers as JSON"
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="minimum runs of the slow (whole code base) measurements",
    )
    parser.add_argument(
        "--no-self", action="store_true", help="skip this repository's bot/ + rules/"
    )
    parser.add_argument(
        "--no-cli", action="store_true", help="skip the subprocess (end-to-end) measurements"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="pool only on the generated corpus; no whole-corpus --workers 1 run, no PR variants",
    )
    args = parser.parse_args()

    corpus = args.corpus.resolve()
    if not corpus.is_dir():
        parser.error(f"no corpus at {corpus}: run python benchmarks/gen_corpus.py first")
    targets = [Target("generated corpus", corpus, [corpus])]
    targets += [
        Target(f"{path.resolve().name} (real)", path.resolve(), [path.resolve()])
        for path in args.real
    ]
    if not args.no_self:
        targets.append(Target("asyncguard bot/ + rules/", REPO, [REPO / "bot", REPO / "rules"]))

    started = time.perf_counter()
    report: dict[str, Any] = {"machine": machine(), "targets": []}
    rules = selected_rules(Config())
    for target in targets:
        target.load()
        print(
            f"... {target.label}: {len(target.jobs)} files, {target.total_lines:,} lines",
            file=sys.stderr,
            flush=True,
        )
        pool = not args.quick or target is targets[0]
        result = measure_engine(target, rules, runs=args.runs, pool=pool)
        result["ruff"] = measure_ruff(target)
        report["targets"].append(result)
    if not args.no_cli:
        target = targets[0]
        print("... command line runs", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="asyncguard-bench-") as scratch:
            global PYCACHE
            PYCACHE = Path(scratch, "pycache")
            work = Path(scratch)
            report["cli"] = {
                "label": target.label,
                "pr": attempt(lambda: measure_pr(target, work, full_checkout=False)),
                "startup": attempt(measure_startup),
                "full": attempt(lambda: measure_full_cli(target, quick=args.quick)),
            }
            if not args.quick:
                report["cli"]["pr_cold"] = attempt(
                    lambda: measure_pr(target, work, full_checkout=False, bytecode=False)
                )
                report["cli"]["pr_full"] = attempt(
                    lambda: measure_pr(target, work, full_checkout=True)
                )
                report["cli"]["pr_full_cached"] = attempt(
                    lambda: measure_pr(target, work, full_checkout=True, keep_cache=True)
                )
    report["bench_seconds"] = time.perf_counter() - started
    report["machine"]["load_after"] = os.getloadavg()[0]
    text = markdown(report)
    print(text)
    print(f"(benchmark took {report['bench_seconds']:.0f} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
