"""Profile the engine (`analyse_jobs`, one process) on a corpus with cProfile.

    python benchmarks/profile_engine.py [--corpus DIR] [--seconds 10] [--top 10] [--out FILE.prof]

Files are taken in a fixed shuffled order, in batches, until `--seconds` of profiled time have
passed. Prints where the time goes by area (libcst parsing, the walker, the semantic model,
the rules, ...) and the top functions of bot/, rules/ and libcst by cumulative and own time.
cProfile slows pure-Python code more than the native parser, so the Python shares here are an
upper bound; use bench.py for wall times.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bot.config import Config  # noqa: E402
from bot.engine import FileJob, analyse_jobs  # noqa: E402
from bot.facts import RepoFacts  # noqa: E402
from bot.pipeline import selected_rules  # noqa: E402
from bot.repo_index import build_index, iter_python_files, module_name_for  # noqa: E402
from bot.rule import RuleOptions  # noqa: E402

Key = tuple[str, int, str]


def area(key: Key) -> str:
    filename, _, name = key
    path = filename.replace("\\", "/")
    if "parse_module" in name and ("libcst" in path or path == "~"):
        return "libcst native parser"
    if "/libcst/" in path:
        return "libcst (Python: nodes, metadata, codegen)"
    for part in ("bot/walker.py", "bot/semantics.py", "bot/engine.py", "bot/repo_index.py"):
        if path.endswith(part):
            return part
    if "/rules/" in path:
        return "rules/*"
    if "/bot/" in path:
        return "bot/* (other)"
    if path == "~":
        return "builtins (isinstance, getattr, ...)"
    return "stdlib / other"


def ours(key: Key) -> bool:
    path = key[0].replace("\\", "/")
    return (
        "/libcst/" in path
        or f"{REPO}/bot/" in path
        or f"{REPO}/rules/" in path
        or ("parse_module" in key[2] and path == "~")
    )


def label(key: Key) -> str:
    filename, line, name = key
    path = filename.replace("\\", "/")
    for marker in (f"{REPO}/", "/site-packages/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{path}:{line}({name})" if path != "~" else name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=HERE / "corpus")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--out", type=Path, help="also save the raw profile (for snakeviz, pstats)")
    args = parser.parse_args()

    root = args.corpus.resolve()
    jobs = []
    for file in iter_python_files(root):
        relative = file.relative_to(root).as_posix()
        jobs.append(FileJob(relative, str(file), module_name_for(relative)))
    random.Random(1).shuffle(jobs)
    rules = selected_rules(Config())
    facts = RepoFacts().merged(build_index(root, use_cache=False))  # no cache files left behind
    options = RuleOptions()
    analyse_jobs(jobs[:10], rules, facts, options, workers=1)  # warm-up

    profile = cProfile.Profile()
    used = 0
    prefiltered = 0
    lines = 0
    start = time.perf_counter()
    while used < len(jobs) and time.perf_counter() - start < args.seconds:
        batch = jobs[used : used + 25]
        profile.enable()
        results = analyse_jobs(batch, rules, facts, options, workers=1)
        profile.disable()
        used += len(batch)
        prefiltered += sum(r.prefiltered for r in results)
        lines += sum(Path(j.disk_path).read_bytes().count(b"\n") for j in batch)
    elapsed = time.perf_counter() - start
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        profile.dump_stats(str(args.out))

    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = sum(tt for (_, _, tt, _, _) in stats.values())
    print(
        f"profiled {used} files ({lines:,} lines, {prefiltered} prefiltered) in {elapsed:.1f} s "
        f"wall; {total:.1f} s of profiled own time\n"
    )
    by_area: dict[str, float] = {}
    for key, (_, _, tt, _, _) in stats.items():
        by_area[area(key)] = by_area.get(area(key), 0.0) + tt
    print("| area (own time) | seconds | share |\n|---|--:|--:|")
    for name, seconds in sorted(by_area.items(), key=lambda item: -item[1]):
        print(f"| {name} | {seconds:.2f} | {seconds / total:.0%} |")

    def table(title: str, index: int) -> None:
        rows = sorted(
            ((key, value) for key, value in stats.items() if ours(key)),
            key=lambda kv: -kv[1][index],
        )[: args.top]
        print(f"\n{title}\n\n| function | calls | own s | cumulative s |\n|---|--:|--:|--:|")
        for key, (_, calls, tt, ct, _) in rows:
            print(f"| `{label(key)}` | {calls:,} | {tt:.2f} | {ct:.2f} |")

    table("Top functions of bot/, rules/ and libcst by cumulative time:", 3)
    table("Top functions of bot/, rules/ and libcst by own time:", 2)
    builtins = sorted(((k, v) for k, v in stats.items() if k[0] == "~"), key=lambda kv: -kv[1][2])
    print("\nTop built-ins by own time (called from everywhere):\n")
    print("| function | calls | own s |\n|---|--:|--:|")
    for key, (_, calls, tt, _, _) in builtins[:5]:
        print(f"| `{label(key)}` | {calls:,} | {tt:.2f} |")


if __name__ == "__main__":
    main()
