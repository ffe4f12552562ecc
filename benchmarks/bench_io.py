"""Files: `planner solve` end to end on a large CSV table, and where its time goes.

A table of `--rows` random lifetime scenarios (Sardana et al. 2024 law; targets E + [0.05, 0.8],
inference demand log-uniform in [1e9, 1e15] tokens, seeded; every number written as `repr`
writes it) is solved up to four ways, each in a fresh process:

1. `python -m planner solve IN.csv -o OUT.csv` with empty caches (cold: the solver is traced
   and compiled, and kept), then, `--repeat` times each and interleaved, so that a drift
   in the machine's speed touches each alike:
2. the same command (warm: the compiled solver loaded whole from the cache run 1 left,
   as on every run after the first on a machine);
3. the same command with pyarrow hidden from planner (the plain-Python `csv` path), whose
   output must be byte for byte the output of runs 1 and 2;
4. with `--baseline DIR`, an earlier planner on the same table (its demand column under the
   old name), with caches of its own filled by a run before, and its plans compared with
   these cell by cell.

Each is timed by wall clock and by the CPU time of the child process. Then one more process
runs the stages of `planner solve` one after the other with a timer around each (import;
scan = the header and a count of rows; read; parse and check; compile = the first chunk's
solve less a later chunk's (with the warm cache: loading the stored program); solve; format =
the extrapolation notes and the CSV text of the plans; write = the stream, flushed to disk
chunk by chunk, renamed into place), with the warm cache.

Run: `python benchmarks/bench_io.py [--rows 1000000] [--repeat 5] [--baseline DIR]
[--no-write]`. A full run rewrites the section "Files: `planner solve` end to end" of
`benchmarks/RESULTS.md`.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import statistics
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

import _results
from _results import write_section

ROOT = pathlib.Path(__file__).resolve().parents[1]
HEADING = "## Files: `planner solve` end to end"
TARGET_S = 4.0  # the target for 1,000,000 rows, end to end

STAGES = r"""
import json, sys, time
t0 = time.perf_counter()
marks = {}
def mark(name, _last=[t0]):
    now = time.perf_counter(); marks[name] = marks.get(name, 0.0) + now - _last[0]; _last[0] = now
from planner._cli import _set_precision
_set_precision(False)
import numpy as np
from planner._laws import Chinchilla
from planner._shard import cpu_devices, shard_batch
from planner._sweep import (PLAN_COLUMNS, PRESET_RANGES, _assemble, _flag_extrapolation,
                            _format_chunk, _header_line, _stream, _Stream)
from planner._table import TableReader, make_solver, parse_columns, solve_chunk
import pathlib
cpu_devices(None)
inp, parts, chunk = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), int(sys.argv[3])
law = Chinchilla.from_preset("sardana2024")
mark("import")
from planner._cli import _solver_store
fn = shard_batch(make_solver(law, (), "compute"), store=_solver_store(law, (), "compute"))
reader = TableReader(inp); mark("scan")
chunks = list(reader.chunks(chunk)); mark("read")
parsed, first = [], 1
for c in chunks:
    parsed.append(parse_columns(c, law, first, required=("target_loss",), needs_target=True))
    first += len(c["target_loss"])
mark("parse")
outs, times = [], []
for values, status, messages in parsed:
    start = time.perf_counter()
    outs.append(solve_chunk(values, status, fn, size=chunk))
    times.append(time.perf_counter() - start)
mark("solve")
later = sorted(times[1:])[len(times[1:]) // 2] if len(times) > 1 else 0.0
plan = [c for c in PLAN_COLUMNS if c in outs[0]]
fitted = PRESET_RANGES["sardana2024"]
texts = [_format_chunk(c, o, plan, _flag_extrapolation(v, o, m, law, fitted)[0])
         for c, o, (v, _, m) in zip(chunks, outs, parsed)]
mark("format")
parts.mkdir()
header = reader.columns + plan + ["status", "message"]
_stream(parts, 0).write_bytes(_header_line(header))
with _Stream(parts, 0) as stream:
    for i, (text, out) in enumerate(zip(texts, outs)):
        codes, k = np.unique(out["status"], return_counts=True)
        stream.append(i, text, {str(c): int(n) for c, n in zip(codes, k)}, 0)
        stream.sync()
_assemble(parts, parts.with_suffix(".csv"), header, len(texts))
mark("write")
compile_s = times[0] - later
marks["compile"] = compile_s
marks["solve"] -= compile_s
print(json.dumps(marks))
"""

PYTHON_PATH = ("import sys, planner._arrowio as a; a.AVAILABLE = False; "
               "from planner._cli import main; sys.exit(main())")


def write_table(path: pathlib.Path, rows: int, seed: int) -> None:
    import numpy as np

    from planner._laws import Chinchilla

    rng = np.random.default_rng(seed)
    e = float(Chinchilla.from_preset("sardana2024").E)
    target = e + rng.uniform(0.05, 0.8, rows)
    tokens = 10.0 ** rng.uniform(9, 15, rows)
    with open(path, "w") as handle:
        handle.write("target_loss,inference_demand\n")
        handle.writelines(f"{a!r},{b!r}\n" for a, b in zip(target.tolist(), tokens.tolist()))


# the baseline's names of columns this one renamed: the demand column, and the per-unit inference
# FLOP (the name inference_flops now holds the lifetime FLOP, which the baseline did not write)
OLD_NAMES = {"inference_demand": "inference_tokens", "inference_flops_per_unit": "inference_flops"}


def same_plans(before: pathlib.Path, after: pathlib.Path) -> dict:
    """Cell by cell, the plans of an earlier planner (`before`, its columns named as it named
    them) against this one's: every number as a float64 (the text layout of numbers changed),
    every other cell as text. Columns only one of the two writes are listed, not compared."""
    import csv

    with open(before, newline="") as old, open(after, newline="") as new:
        old_rows, new_rows = csv.reader(old), csv.reader(new)
        old_head, new_head = next(old_rows), next(new_rows)
        # a new column's name in the baseline; the lifetime inference_flops has none there
        names = [OLD_NAMES.get(n, None if n == "inference_flops" else n) for n in new_head]
        pairs = [(old_head.index(o), i) for i, o in enumerate(names) if o in old_head]
        total, train, inference = (new_head.index(c) for c in
                                   ("total_flops", "train_flops", "inference_flops"))
        counts = {"rows": 0, "numbers": 0, "texts": 0, "differ": collections.Counter(),
                  "largest": 0.0, "adds_up": 0,
                  "only_new": [n for i, n in enumerate(new_head) if i not in {p for _, p in pairs}]}
        for a, b in zip(old_rows, new_rows, strict=True):
            counts["rows"] += 1
            if b[total]:
                counts["adds_up"] += float(b[total]) == float(b[train]) + float(b[inference])
            for j, i in pairs:
                x, y = a[j], b[i]
                try:
                    u, v = float(x), float(y)
                    same, kind = u == v or x == y, "numbers"
                    if not same:
                        counts["largest"] = max(counts["largest"], abs(u - v) / abs(u))
                except ValueError:
                    same, kind = x == y, "texts"
                counts[kind] += 1
                counts["differ"][new_head[i]] += not same
    counts["differ"] = {k: n for k, n in counts["differ"].items() if n}
    return counts


def summary(times: list[tuple[float, float]]) -> str:
    """The median wall-clock of runs, their range, and the median CPU time."""
    walls = [w for w, _ in times]
    return (f"{statistics.median(walls):.2f} s ({min(walls):.2f} to {max(walls):.2f}) | "
            f"{statistics.median(c for _, c in times):.2f} s")


def timed(argv: list[str], env: dict, cwd: pathlib.Path = ROOT) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, cwd=cwd)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=65536, help="planner solve --chunk-size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    parser.add_argument("--repeat", type=int, default=5,
                        help="warm runs of each command; the table gives their median and range "
                        "(a shared machine's speed drifts from run to run)")
    parser.add_argument("--baseline", metavar="DIR",
                        help="a checkout of an earlier planner (e.g. `git archive COMMIT planner "
                        "| tar -x -C DIR`) to time the same way, with a cache of its own")
    parser.add_argument("--baseline-label", default="an earlier commit",
                        help="how RESULTS.md names the baseline (e.g. its commit)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as folder:
        folder = pathlib.Path(folder)
        table = folder / "scenarios.csv"
        write_table(table, args.rows, args.seed)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PLANNER_CACHE_DIR": str(folder / "cache")}
        solve = ["solve", str(table), "--chunk-size", str(args.chunk), "-o"]
        load = [os.getloadavg()[0]]
        commands = {"warm": (["-m", "planner", *solve], env, ROOT),
                    "python": (["-c", PYTHON_PATH, *solve], env, ROOT)}
        if args.baseline:
            old_table = folder / "baseline_scenarios.csv"
            with open(table) as new, open(old_table, "w") as old:  # the names it reads
                old.write(new.readline().replace("inference_demand", "inference_tokens"))
                old.writelines(new)
            base = pathlib.Path(args.baseline).resolve()
            # run from the baseline's folder: `python -c` puts the working folder first
            commands["baseline"] = (["-c", "import sys; from planner._cli import main; "
                                     "sys.exit(main())", "solve", str(old_table), *solve[2:]],
                                    {**env, "PYTHONPATH": str(base),
                                     "PLANNER_CACHE_DIR": str(folder / "baseline_cache")}, base)
        cold = timed([sys.executable, "-m", "planner", *solve, str(folder / "cold.csv")], env)
        print(f"cold: {cold[0]:.2f} s wall, {cold[1]:.2f} s CPU", flush=True)
        if args.baseline:  # its caches filled before its timed runs, as the cold run filled ours
            flags, base_env, cwd = commands["baseline"]
            timed([sys.executable, *flags, str(folder / "baseline.csv")], base_env, cwd)
        runs = {name: [] for name in commands}
        for _ in range(args.repeat):  # interleaved: a drift in speed touches each alike
            for name, (flags, run_env, cwd) in commands.items():
                runs[name].append(timed([sys.executable, *flags, str(folder / f"{name}.csv")],
                                        run_env, cwd))
        for name, times in runs.items():
            print(f"{name}: median {summary(times)}", flush=True)
        same = all((folder / f"{n}.csv").read_bytes() == (folder / "python.csv").read_bytes()
                   for n in ("cold", "warm"))
        compared = (same_plans(folder / "baseline.csv", folder / "warm.csv") if args.baseline
                    else None)
        dtypes = subprocess.run(
            [sys.executable, "-c", "import time; t = time.perf_counter(); import ml_dtypes; "
             "print(ml_dtypes.__version__, time.perf_counter() - t)"],
            check=True, capture_output=True, text=True).stdout.split()
        size = (folder / "warm.csv").stat().st_size
        stages = subprocess.run(
            [sys.executable, "-c", STAGES, str(table), str(folder / "parts"), str(args.chunk)],
            env=env, check=True, capture_output=True, text=True, cwd=ROOT)
        split = json.loads(stages.stdout.strip().splitlines()[-1])
        load.append(os.getloadavg()[0])

    order = ("import", "compile", "scan", "read", "parse", "solve", "format", "write")
    total = sum(split[k] for k in order)
    print("identical output:", same)
    for k in order:
        print(f"  {k:8s} {split[k]:6.2f} s  {split[k] / total:5.1%}")
    meta = _results.machine(("jax", "jaxlib", "numpy", "ml_dtypes", "pyarrow"))
    warm = statistics.median(w for w, _ in runs["warm"])
    if compared:
        differ = compared["differ"]
        against = (
            f"- Output against {args.baseline_label} (its table with the demand column under "
            f"its old name, every number compared as a float64: their text layout changed): "
            f"{sum(differ.values()):,} of {compared['numbers']:,} numbers and of "
            f"{compared['texts']:,} text cells differ over {compared['rows']:,} rows"
            + (f" ({', '.join(f'`{k}` {n:,}' for k, n in differ.items())}; at most "
               f"{compared['largest']:.1e} relative)" if differ else "")
            + "; its per-token `inference_flops` compared with `inference_flops_per_unit`; "
            "not in the baseline: " + ", ".join(f"`{n}`" for n in compared["only_new"]) + ". "
            f"`total_flops` is now `train_flops + inference_flops` as written in "
            f"{compared['adds_up']:,} of {compared['rows']:,} rows (the baseline added the "
            "per-unit FLOP times the demand, rounded once more).")
    report = [
        HEADING, "",
        f"Measured {datetime.date.today().isoformat()} by `python benchmarks/bench_io.py "
        f"--rows {args.rows} --repeat {args.repeat}{' --baseline DIR' if args.baseline else ''}`"
        f" (float64, chunk "
        f"{args.chunk:,}).",
        f"Machine: {meta['cpu']}; JAX backend {meta['backend']}; 1-minute load average "
        f"{load[0]:.2f} before, {load[1]:.2f} after.",
        f"Versions: {meta['versions']}.", "",
        f"`python -m planner solve scenarios.csv -o plans.csv` on {args.rows:,} random lifetime "
        f"scenarios (a {size / 2**20:.0f} MiB output), each run in a fresh process; the warm "
        f"commands run {args.repeat} times each, interleaved.", "",
        "| run | wall-clock, median (range) | CPU time, median |", "|---|---:|---:|",
        f"| cold: empty caches (the solver is traced and compiled) | {cold[0]:.2f} s | "
        f"{cold[1]:.2f} s |",
        f"| warm: the compiled solver loaded whole from the cache | "
        f"{summary(runs['warm'])} |",
        f"| pyarrow hidden (plain-Python `csv` path, warm cache) | {summary(runs['python'])} |",
        *([f"| before: {args.baseline_label}, warm cache of its own | "
           f"{summary(runs['baseline'])} |"] if args.baseline else []), "",
        f"- Output of the pyarrow path and of the plain-Python path byte for byte the same: "
        f"**{'yes' if same else 'no'}**.",
        f"- {args.rows:,} rows end to end, warm cache: {warm:.2f} s wall-clock, median "
        f"(target ≤ {TARGET_S:g} s): **{'met' if warm <= TARGET_S else 'not met'}**.",
        *([against] if compared else []),
        f"- `import ml_dtypes` (JAX's dependency; 0.7.0 is excluded by pyproject.toml) took "
        f"{float(dtypes[1]):.2f} s with the installed {dtypes[0]}.", "",
        "Where the time goes (one process, warm cache, the stages run one after the other and "
        "timed on their own; `planner solve` formats and writes a chunk while it solves the "
        "next, so its total is below their sum):", "",
        "| stage | wall-clock | share |", "|---|---:|---:|",
        *(f"| {k} | {split[k]:.2f} s | {split[k] / total:.0%} |" for k in order),
        f"| total | {total:.2f} s | 100% |",
    ]
    text = "\n".join(report)
    print(text)
    if not args.no_write:
        write_section(HEADING, text)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
