"""Coupled allocation from the command line: `planner allocate` on a table of millions of items.

The portfolio of `benchmarks/bench_allocate.py` (each item its own Chinchilla law, a weight in
[0.5, 2], a lifetime demand log-uniform in $[10^{11}, 10^{14}]$ tokens and a loss target
$E_i + [0.25, 0.6]$), written as an items table of `--items` rows (columns `target_loss`,
`inference_demand`, `weight`, and the law's `E`, `A`, `B`, `alpha`, `beta` per row) in slices
of $10^6$ rows, so the writer never holds more than one slice of text. CSV by default: with
pyarrow the command line parses a CSV table without quotes by pyarrow's reader and casts
(`planner/_arrowio.py`), where a Parquet table's cells are turned into Python text first.

One shared training budget binds: `--budget-factor` (default 1.12) times the items' least
training FLOP (each item at its Chinchilla training optimum for its target, in closed form),
below what their separate lifetime optima train (1.25 times the least for the first 1,000
of these items), about where `bench_allocate.py` puts its budget (halfway between the two).
A run whose budget does not bind (price 0) fails.

The command, in a child process:

    planner allocate ITEMS -o PLANS --summary SUMMARY.json --train-budget C --chunk-size K

timed by the wall clock around it; its CPU time and peak resident memory (`ru_maxrss`) are
that child's own, from `os.wait4`. The run counts only if the command exits 0, SUMMARY.json
says `optimal` with every item counted, and the command's own line counts every item
optimal.

Run: `python benchmarks/bench_allocate_cli.py --items 1e6,1e7 [--no-write]`. A run rewrites
the section "Coupled allocation from the command line" of `benchmarks/RESULTS.md` unless
`--no-write`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HEADING = "## Coupled allocation from the command line"
SLICE = 1_000_000
COLUMNS = ("target_loss", "inference_demand", "weight", "E", "A", "B", "alpha", "beta")


def write_table(path: Path, n: int, fmt: str) -> float:
    """The items table of `n` rows (the portfolio of `bench_allocate.py`, one slice of
    `SLICE` rows per seed); returns the items' least training FLOP."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    sys.path.insert(0, str(HERE))
    from bench_allocate import portfolio, training_optimum

    least = 0.0
    writer = None
    with open(path, "wb") as handle:
        if fmt == "csv":  # the header unquoted: a quote anywhere sends the reader to `csv`
            handle.write((",".join(COLUMNS) + "\n").encode())
        for start in range(0, n, SLICE):
            coefs, weight, demand, target = portfolio(min(SLICE, n - start), seed=start // SLICE)
            n_c, d_c = training_optimum(coefs, target)
            least += float(np.sum(6.0 * n_c * d_c))
            table = pa.table(dict(zip(COLUMNS, (target, demand, weight, *coefs.T),
                                      strict=True)))
            if fmt == "csv":
                pacsv.write_csv(table, handle, write_options=pacsv.WriteOptions(
                    include_header=False, quoting_style="none"))
            else:
                if writer is None:
                    writer = pq.ParquetWriter(handle, table.schema)
                writer.write_table(table)
        if writer is not None:
            writer.close()
    return least


def run(n: int, folder: Path, fmt: str, chunk: int, factor: float, progress: bool) -> dict:
    items = folder / f"items-{n}.{fmt}"
    plans = folder / f"plans-{n}.{fmt}"
    summary = folder / f"summary-{n}.json"
    start = time.perf_counter()
    least = write_table(items, n, fmt)
    write_s = time.perf_counter() - start
    budget = factor * least
    command = [sys.executable, "-m", "planner._cli", "allocate", str(items), "-o", str(plans),
               "--summary", str(summary), "--train-budget", repr(budget), "--chunk-size",
               str(chunk), *(["--progress"] if progress else [])]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    log = folder / f"log-{n}.txt"
    with open(log, "w") as handle:
        proc = subprocess.Popen(command, stdout=handle, stderr=handle, env=env, cwd=ROOT)
        # the child's own resource use, reaped here rather than by `proc.wait`
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = log.read_text()
    if progress:
        print(stderr, file=sys.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"planner allocate exited {proc.returncode}:\n{stderr[-3000:]}")
    found = json.loads(summary.read_text())
    line = next(x for x in stderr.splitlines() if re.match(r"planner allocate: [\d,]+ items", x))
    optimal = int(re.search(r"([\d,]+) optimal", line).group(1).replace(",", ""))
    if found["status"] != "optimal" or found["n_items"] != n or optimal != n:
        raise RuntimeError(f"not every item optimal: {found}, {line}")
    price = found["prices"]["train_budget"]
    if not price > 0:
        raise RuntimeError(f"the training budget does not bind: price {price}")
    row = {"n": n, "format": fmt, "chunk": chunk, "write_s": write_s, "wall": wall,
           "cpu": usage.ru_utime + usage.ru_stime, "peak_kib": usage.ru_maxrss,
           "load": (load_before, os.getloadavg()[0]), "input_bytes": items.stat().st_size,
           "output_bytes": plans.stat().st_size, "budget": budget, "least": least,
           "summary": found, "command": " ".join(["planner", *command[3:]])}
    for path in (items, plans, summary, log):
        path.unlink()
    print(json.dumps({k: v for k, v in row.items() if k != "summary"}), file=sys.stderr,
          flush=True)
    return row


def report(rows: list[dict], info: dict) -> str:
    def gib(kib):
        return f"{kib / 2**20:.2f} GiB"

    def size(n_bytes):
        return f"{n_bytes / 2**30:.2f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MiB"

    lines = [HEADING, ""]
    lines += [f"Measured {datetime.date.today().isoformat()} by `python "
              f"benchmarks/bench_allocate_cli.py {' '.join(sys.argv[1:])}`.",
              f"Machine: {info['cpu']}; JAX backend {info['backend']}; {info['versions']}. "
              "The 1-minute load average before and after each run is in the table (the "
              "run's own work included; more than the number of cores means other jobs shared "
              "the machine, and the wall-clock time then includes waiting for them): the CPU "
              "time is the steadier figure.", ""]
    lines += ["`planner allocate ITEMS -o PLANS --summary SUMMARY.json --train-budget C "
              "--chunk-size K` in a child process, on the portfolio of `bench_allocate.py` "
              "written as an items table (each row its own law: `target_loss`, "
              "`inference_demand`, `weight`, `E`, `A`, `B`, `alpha`, `beta`), float64, one "
              f"training budget of {rows[0]['budget'] / rows[0]['least']:.3g} times the "
              "items' least training FLOP (it binds: its price is positive). Wall-clock "
              "time around the command (reading, checking, "
              "the price search, writing the plans and the summary; JAX's compilation "
              "included); CPU time and peak resident memory (`ru_maxrss`) of the child "
              "alone (`os.wait4`). Every run ended with SUMMARY.json `optimal` and every "
              "item optimal.", ""]
    lines += ["| items | table | chunk | wall-clock | CPU time | items/s (wall) | peak RSS | "
              "input / plans file | batched solves | price | residual / KKT / gap | "
              "load before / after |",
              "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        s = r["summary"]
        lines.append(
            f"| {r['n']:,} | {r['format']} | {r['chunk']:,} | {r['wall']:.0f} s | "
            f"{r['cpu']:.0f} s | {r['n'] / r['wall']:,.0f} | {gib(r['peak_kib'])} | "
            f"{size(r['input_bytes'])} / {size(r['output_bytes'])} | "
            f"{s['solves']} | {s['prices']['train_budget']:.4g} | {s['residual']:.1e} / "
            f"{s['kkt']:.1e} / {s['gap']:.1e} | {r['load'][0]:.1f} / {r['load'][1]:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default="1e6", help="table sizes, comma-separated")
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv",
                        help="the items and plans tables' format (default csv)")
    parser.add_argument("--chunk-size", type=int, default=65536)
    parser.add_argument("--budget-factor", type=float, default=1.12,
                        help="the training budget, times the items' least training FLOP")
    parser.add_argument("--folder", help="where the tables are written (default: a "
                        "temporary folder)")
    parser.add_argument("--progress", action="store_true",
                        help="show the command's progress lines")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    sizes = [int(float(s)) for s in args.items.split(",") if s]
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        rows = [run(n, Path(folder), args.format, args.chunk_size, args.budget_factor,
                    args.progress) for n in sizes]
    sys.path.insert(0, str(HERE))
    import _results

    info = _results.machine(("jax", "jaxlib", "numpy", "pyarrow"))
    text = report(rows, info)
    print(text)
    if not args.no_write:
        _results.write_section(HEADING, text)


if __name__ == "__main__":
    main()
