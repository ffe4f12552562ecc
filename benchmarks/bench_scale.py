"""Scale: scenarios per second against batch size, compile time, memory, devices, float32.

Five measurements, each in its own section of the printed report:

1. **Throughput against batch size.** One batch of $n$ random scenarios, solved by
   `jax.jit(jax.vmap(lambda s: planner.solve(model, s, throw=False)))`, for $n$ from 1 up to
   `--max-batch` (powers of ten) for the plain lifetime problem (Sardana et al. 2024: $N, D$
   and a loss target), and up to `--max-batch-composed` for the composed ones, with pruning
   ($N, D$, density) and with pruning and repeated sampling ($N, D$, density, samples, with a
   score target). Per size: compile time, run time (wall-clock and process
   CPU time, best of the repeats), scenarios per second, the share solved `OPTIMAL`, the bytes
   XLA plans for the batch (`Compiled.memory_analysis()`: arguments + outputs + temporaries,
   what an accelerator would need) and the process's peak resident memory (`ru_maxrss`;
   sizes run in increasing order, so the peak after a size is that size's).
2. **Compile time per bucket** of `planner solve` (`planner._table.bucket`: powers of two from
   256 to the chunk size), for the table solver `planner._table.make_solver`.
3. **Devices.** The same batch split over $k$ virtual CPU devices by `planner._shard.shard_batch`
   (`--xla_force_host_platform_device_count=k`, one subprocess per $k$). Virtual devices share
   the machine's cores, so this measures the overhead of sharding and how XLA's CPU runtime
   runs the per-device programs side by side, not accelerator scaling.
4. **float32 against float64**, over random scenarios of the three problems: the share
   `OPTIMAL` and the relative errors of $N^*$, $D^*$ and lifetime FLOP (float32 runs in a
   subprocess with 64-bit types off, as `planner solve --float32` does).
5. **The command line on a large table**: `planner solve big.parquet -o out.parquet
   --pruning --sampling` (the issue's headline, 10 million rows) and `--pruning` under
   `/usr/bin/time -v`, for peak memory, wall-clock and CPU time.

The machine (CPU, usable cores, load average before and after each section) is recorded:
on a shared machine CPU time is the steadier measure.

Run: `python benchmarks/bench_scale.py [--smoke] [--max-batch 10000000] [--cli-rows 10000000]`.
A full run rewrites the section "Scale: throughput, memory, devices" of `benchmarks/RESULTS.md`
(not with `--smoke` or `--no-write`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import pathlib
import re
import resource
import subprocess
import sys
import tempfile
import time

import _results
from _results import RESULTS, write_section

ROOT = pathlib.Path(__file__).resolve().parents[1]
HEADING = "## Scale: throughput, memory, devices"
# The headline: ten million composed scenarios from a table, peak memory under 4 GB.
HEADLINE_ROWS = 10_000_000
HEADLINE_MEMORY = 4 * 2**30


# ------------------------------------------------------------------------------- scenarios
def scenarios(kind: str, n: int, seed: int = 0) -> dict:
    """Random scenarios as numpy columns (Scenario field names).

    Loss targets: the lifetime problem of `bench_solve.py`, $E + [0.05, 0.8]$ with inference
    demand log-uniform in $[10^9, 10^{15}]$ tokens. Score targets (with sampling): success
    rates uniform in $[0.2, 0.8]$, demand log-uniform in $[10^6, 10^{12}]$ queries.
    """
    import numpy as np

    import planner

    rng = np.random.default_rng(seed)
    if kind == "full":
        return {"target_score": rng.uniform(0.2, 0.8, n),
                "inference_demand": 10.0 ** rng.uniform(6.0, 12.0, n)}
    law = planner.Chinchilla.from_preset("sardana2024")
    return {"target_loss": float(law.E) + rng.uniform(0.05, 0.8, n),
            "inference_demand": 10.0 ** rng.uniform(9.0, 15.0, n)}


def model_of(kind: str):
    import planner
    from planner._techniques.pruning import Pruning

    law = planner.Chinchilla.from_preset("sardana2024")
    stages = {"plain": (), "composed": (Pruning(law),)}.get(kind)
    if stages is None:
        from planner._techniques.sampling import RepeatedSampling, SuccessLink

        stages = (Pruning(law), RepeatedSampling(SuccessLink.codex2021()))
    return planner.Pipeline(planner.Pretraining(law), *stages)


SECTIONS = ("throughput", "buckets", "devices", "precision", "cli")
KINDS = {
    "plain": "lifetime (N, D; loss target)",
    "composed": "+ pruning (N, D, density)",
    "full": "+ pruning + sampling (N, D, density, samples; score target)",
}


# --------------------------------------------------------------------------------- machine
def load() -> float:
    return os.getloadavg()[0]


def machine() -> dict[str, str]:
    return _results.machine(("jax", "jaxlib", "equinox"))


def peak_rss() -> int:
    """Peak resident memory of this process so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    return f"{n:.3g} GiB"


def fmt_time(s: float) -> str:
    return f"{s:.3g} s" if s >= 1e-3 else f"{s * 1e3:.3g} ms"


def fmt_rate(r: float) -> str:
    return f"{r:,.0f}" if r >= 100 else f"{r:.3g}"


# ------------------------------------------------------------------------ 1. throughput
def throughput(kind: str, sizes: list[int], repeats: int, budget: float) -> list[dict]:
    """One row per batch size: compile, run, rate, memory. Stops early once a run exceeds
    `budget` CPU seconds (the next size would take about ten times as long)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import planner

    model = model_of(kind)
    rows = []
    for n in sizes:
        cols = scenarios(kind, n)
        batch = planner.Scenario(**{k: jnp.asarray(v) for k, v in cols.items()}).broadcast()
        fn = jax.jit(jax.vmap(lambda s: planner.solve(model, s, throw=False)))
        wall, cpu = time.perf_counter(), time.process_time()
        compiled = fn.lower(batch).compile()
        compile_wall, compile_cpu = time.perf_counter() - wall, time.process_time() - cpu
        stats = compiled.memory_analysis()
        planned = (stats.argument_size_in_bytes + stats.output_size_in_bytes
                   + stats.temp_size_in_bytes) if stats is not None else math.nan
        best_wall = best_cpu = math.inf
        runs = repeats if n <= 100_000 else 1
        for _ in range(runs):
            wall, cpu = time.perf_counter(), time.process_time()
            plans = jax.block_until_ready(compiled(batch))
            best_wall = min(best_wall, time.perf_counter() - wall)
            best_cpu = min(best_cpu, time.process_time() - cpu)
        status = np.asarray(plans.status)
        steps = np.asarray(plans.steps)
        rows.append({
            "n": n, "compile_wall": compile_wall, "compile_cpu": compile_cpu,
            "wall": best_wall, "cpu": best_cpu, "rate_wall": n / best_wall,
            "rate_cpu": n / best_cpu, "optimal": float(np.mean(status == 0)),
            "max_steps": int(steps.max()), "mean_steps": float(steps.mean()),
            "planned": planned, "rss": peak_rss(),
            "load": load(),
        })
        print(f"  {kind:9s} n={n:>10,}  compile {compile_cpu:6.2f} s CPU  run {best_wall:8.3g} s "
              f"wall {best_cpu:8.3g} s CPU  {n / best_cpu:12,.0f}/s CPU  optimal "
              f"{rows[-1]['optimal']:.4f}  XLA {fmt_bytes(planned)}  peak RSS "
              f"{fmt_bytes(rows[-1]['rss'])}", flush=True)
        del plans, batch, compiled
        if best_cpu > budget:
            break
    return rows


def throughput_in_subprocess(kind: str, sizes: list[int], repeats: int,
                             budget: float) -> list[dict]:
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import jax; "
            "jax.config.update('jax_enable_x64', True); import bench_scale; "
            "rows = bench_scale.throughput(sys.argv[2], json.loads(sys.argv[3]), "
            "int(sys.argv[4]), float(sys.argv[5])); print('@@' + json.dumps(rows))")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code, str(pathlib.Path(__file__).parent), kind,
                           json.dumps(sizes), str(repeats), str(budget)],
                          stdout=subprocess.PIPE, stderr=None, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"the throughput run of {kind!r} failed")
    for line in proc.stdout.splitlines():
        if not line.startswith("@@"):
            print(line, flush=True)
    return json.loads(proc.stdout[proc.stdout.rfind("@@") + 2:])


def saturation(rows: list[dict], share: float = 0.9) -> str:
    """Where throughput stops growing: the smallest batch within `share` of the best rate
    (scenarios per CPU-second, the steadier measure on a shared machine)."""
    best = max(rows, key=lambda r: r["rate_cpu"])
    first = next(r for r in rows if r["rate_cpu"] >= share * best["rate_cpu"])
    if first is rows[-1]:
        return (f"Throughput still grows at the largest batch measured ({first['n']:,}, "
                f"{first['rate_cpu']:,.0f} scenarios per CPU-second): no saturation seen.")
    return (f"Throughput grows with the batch up to {first['n']:,} scenarios, the smallest "
            f"batch within {share:.0%} of the best rate ({best['rate_cpu']:,.0f} scenarios per "
            f"CPU-second, at {best['n']:,}): there this machine saturates.")


# ------------------------------------------------------------------------ 2. compile/bucket
def compile_per_bucket(chunk: int) -> dict[str, list[tuple[int, float, float, float, int]]]:
    """Per problem and bucket: (size, first call wall, first call CPU, second call wall,
    compilations during the second call).

    The first call traces, compiles and runs; the second, on other numbers of the same shape,
    only runs: their difference is what a bucket costs once."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import planner
    from planner._table import BUCKET_MIN, make_solver

    compiles = []  # one entry per XLA compilation from here on
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, _, **__: compiles.append(event)
        if event == "/jax/core/compile/backend_compile_duration" else None)
    law = planner.Chinchilla.from_preset("sardana2024")
    out = {}
    for kind in KINDS:
        fn = make_solver(law, model_of(kind).techniques, "compute")
        out[kind] = []
        size = BUCKET_MIN
        while size <= chunk:
            times, compiled = [], []
            for value in (0.0, 0.1):
                target = ({"target_score": jnp.full(size, 0.5 + value)} if kind == "full"
                          else {"target_loss": jnp.full(size, 2.5 + value)})
                fields = {**target, "inference_demand": jnp.full(size, 1e9)}
                compiled.append(len(compiles))
                wall, cpu = time.perf_counter(), time.process_time()
                np.asarray(fn({}, fields)["status"])
                times += [time.perf_counter() - wall, time.process_time() - cpu]
            again = len(compiles) - compiled[1]
            out[kind].append((size, times[0], times[1], times[2], again))
            print(f"  {kind:9s} bucket {size:>6,}: first call {times[0]:.2f} s "
                  f"({times[1]:.2f} s CPU), second {times[2]:.3f} s with {again} "
                  f"compilations", flush=True)
            size *= 4
    return out


# ----------------------------------------------------------------------------- 3. devices
_DEVICES = r"""
import json, sys, time
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp, numpy as np
sys.path.insert(0, sys.argv[3])
import bench_scale
import planner
from planner._shard import shard_batch
from planner._table import make_solver
kind, n = sys.argv[1], int(sys.argv[2])
law = planner.Chinchilla.from_preset("sardana2024")
fn = make_solver(law, bench_scale.model_of(kind).techniques, "compute")
fields = {k: jnp.asarray(v) for k, v in bench_scale.scenarios(kind, n).items()}
run = shard_batch(fn)
wall, cpu = time.perf_counter(), time.process_time()
out = run({}, fields); np.asarray(out["status"])
compile_cpu = time.process_time() - cpu
best_wall = best_cpu = float("inf")
for _ in range(3):
    wall, cpu = time.perf_counter(), time.process_time()
    out = run({}, fields); status = np.asarray(out["status"])
    best_wall = min(best_wall, time.perf_counter() - wall)
    best_cpu = min(best_cpu, time.process_time() - cpu)
print("@@" + json.dumps({"devices": len(jax.local_devices()), "first_call_cpu": compile_cpu,
                         "wall": best_wall, "cpu": best_cpu,
                         "optimal": float(np.mean(status == 0))}))
"""


def devices(kind: str, n: int, counts: list[int]) -> list[dict]:
    rows = []
    for k in counts:
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={k}",
                   JAX_PLATFORMS="cpu",
                   PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.run([sys.executable, "-c", _DEVICES, kind, str(n),
                               str(pathlib.Path(__file__).parent)],
                              capture_output=True, text=True, env=env, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        row = json.loads(proc.stdout[proc.stdout.rfind("@@") + 2:])
        row["load"] = load()
        rows.append(row)
        print(f"  {kind:9s} {k} device(s), n={n:,}: {row['wall']:.3g} s wall, {row['cpu']:.3g} s "
              f"CPU, first call {row['first_call_cpu']:.3g} s CPU", flush=True)
    return rows


# --------------------------------------------------------------------------- 4. precision
_PRECISION = r"""
import json, sys
import jax
jax.config.update("jax_enable_x64", sys.argv[1] == "64")
import jax.numpy as jnp, numpy as np
sys.path.insert(0, sys.argv[4])
import bench_scale
import planner
kind, n = sys.argv[2], int(sys.argv[3])
model = bench_scale.model_of(kind)
cols = bench_scale.scenarios(kind, n, seed=1)
batch = planner.Scenario(**{k: jnp.asarray(v) for k, v in cols.items()}).broadcast()
plans = jax.jit(jax.vmap(lambda s: planner.solve(model, s, throw=False)))(batch)
out = {"dtype": str(plans.total_flops.dtype), "status": np.asarray(plans.status).tolist()}
for name, v in (("n_params", plans.allocation.n_params), ("n_tokens", plans.allocation.n_tokens),
                ("density", plans.allocation.density), ("total_flops", plans.total_flops)):
    out[name] = np.asarray(v, np.float64).tolist()
print("@@" + json.dumps(out))
"""


def precision(kind: str, n: int, timeout: float) -> dict:
    import numpy as np

    import planner

    procs = {}
    for bits in ("64", "32"):
        env = dict(os.environ, JAX_PLATFORMS="cpu",
                   PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        procs[bits] = subprocess.Popen(
            [sys.executable, "-c", _PRECISION, bits, kind, str(n),
             str(pathlib.Path(__file__).parent)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out = {}
    start = time.perf_counter()
    for bits, proc in procs.items():
        try:
            stdout, stderr = proc.communicate(timeout=max(1.0, timeout - (time.perf_counter()
                                                                          - start)))
        except subprocess.TimeoutExpired:
            for p in procs.values():
                if p.poll() is None:
                    p.kill()
                    p.communicate()
            print(f"  {kind}: float{bits} did not finish within {timeout:.0f} s", flush=True)
            return {"kind": kind, "n": n, "timeout": timeout, "hung": f"float{bits}"}
        if proc.returncode != 0:
            raise RuntimeError(stderr[-3000:])
        out[bits] = json.loads(stdout[stdout.rfind("@@") + 2:])
    a, b = out["64"], out["32"]
    s64, s32 = np.array(a["status"]), np.array(b["status"])
    both = (s64 == 0) & (s32 == 0)
    result = {"kind": kind, "n": n, "dtype32": b["dtype"],
              "optimal64": float(np.mean(s64 == 0)), "optimal32": float(np.mean(s32 == 0)),
              "tolerance32": planner.Solver().tolerance(np.float32)}
    select = both
    if kind != "plain":
        # with pruning, a dense (density 1) and a pruned plan can both be KKT points
        dense64, dense32 = np.array(a["density"]) >= 0.999, np.array(b["density"]) >= 0.999
        select = both & (dense64 == dense32)
        other = both & (dense64 != dense32)
        c64, c32 = np.array(a["total_flops"]), np.array(b["total_flops"])
        result["other_kind"] = float(np.sum(other) / max(np.sum(both), 1))
        result["other_kind_float32_cheaper"] = int(np.sum(other & (c32 < c64)))
        result["other_kind_count"] = int(np.sum(other))
        result["other_kind_max_flop_gap"] = float(np.max(np.abs(c32 - c64)[other] / c64[other])
                                                  if other.any() else 0.0)
    for name in ("n_params", "n_tokens", "total_flops"):
        x, y = np.array(a[name])[select], np.array(b[name])[select]
        rel = np.abs(y - x) / np.abs(x)
        result[name] = (float(np.max(rel)), float(np.quantile(rel, 0.99)), float(np.median(rel)))
    print(f"  {kind}: float32 optimal {result['optimal32']:.4f}, rel. err FLOP max "
          f"{result['total_flops'][0]:.2e}", flush=True)
    return result


# --------------------------------------------------------------------- 5. command line
def write_table(path: pathlib.Path, kind: str, n: int) -> None:
    """A Parquet table of `n` scenarios, written in slices so it never sits in memory whole."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    step = 1_000_000
    for start in range(0, n, step):
        # the table's columns are the Scenario fields' names
        table = pa.table(scenarios(kind, min(step, n - start), seed=start // step))
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def cli(kind: str, n: int, folder: pathlib.Path, chunk: int) -> dict:
    src = folder / f"{kind}-{n}.parquet"
    out = folder / f"{kind}-{n}.out.parquet"
    write_table(src, kind, n)
    flags = {"plain": [], "composed": ["--pruning"], "full": ["--pruning", "--sampling"]}[kind]
    # the command line's default, one CPU device per usable core, given explicitly
    from planner._shard import usable_cores

    flags += ["--cpu-devices", str(usable_cores())]
    command = [sys.executable, "-m", "planner._cli", "solve", str(src), "-o", str(out), *flags,
               "--chunk-size", str(chunk)]
    before = load()
    proc = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    log = proc.stderr

    def field(name):
        return re.search(rf"{re.escape(name)}: (.+)", log).group(1).strip()

    elapsed = field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")
    wall = sum(float(x) * 60 ** i for i, x in enumerate(reversed(elapsed)))
    row = {
        "kind": kind, "n": n, "flags": " ".join(flags), "chunk": chunk, "wall": wall,
        "cpu": float(field("User time (seconds)")) + float(field("System time (seconds)")),
        "rss": int(field("Maximum resident set size (kbytes)")) * 1024,
        "summary": next(line for line in log.splitlines() if line.startswith("planner solve:")),
        "load": (before, load()), "input_bytes": src.stat().st_size,
        "output_bytes": out.stat().st_size,
    }
    src.unlink()
    out.unlink()
    print(f"  {' '.join(command[3:])}: {wall:.0f} s wall, {row['cpu']:.0f} s CPU, peak RSS "
          f"{fmt_bytes(row['rss'])}; {row['summary']}", flush=True)
    return row


# -------------------------------------------------------------------------------- report
def report(meta: dict, results: dict) -> str:
    out = [HEADING, ""]
    def describe(m: dict) -> str:
        return f"{m['cpu']}; JAX backend {m['backend']}; {m['versions']}"

    machine_line = describe(meta["machine"])
    out.append(f"Machine: {machine_line}. Each section says when and by which command it was "
               "measured, and the 1-minute load average at its start and end: this machine is "
               "shared, so CPU time is the steadier measure, and wall-clock time includes "
               "waiting for other jobs.")
    out.append("")

    def measured(name: str) -> None:
        m = results.get("measured", {}).get(name)
        if m is None:
            return
        command = f"python benchmarks/bench_scale.py {m['argv']}".rstrip()
        line = (f"Measured {m['date']} by `{command}`; load average {m['load'][0]:.1f} at the "
                f"start, {m['load'][1]:.1f} at the end.")
        if describe(m["machine"]) != machine_line:
            line += f" Machine: {describe(m['machine'])}."
        out.extend([line, ""])

    if "throughput" in results:
        out.append("### Throughput against batch size")
        out.append("")
        measured("throughput")
        out.append("One batch, `jax.jit(jax.vmap(lambda s: planner.solve(model, s, "
                   "throw=False)))`, float64, default `Solver()`; scenarios as in "
                   "`bench_solve.py` (loss targets E + [0.05, 0.8], demand 1e9 to 1e15 tokens; "
                   "with sampling, score targets 0.2 to 0.8 and 1e6 to 1e12 queries). Run time: "
                   "best of 3 up to 100,000 scenarios, one run above. \"XLA plan\": argument + "
                   "output + temporary bytes of the compiled batch "
                   "(`Compiled.memory_analysis()`), what a device would hold. \"Peak RSS\": the "
                   "process's peak resident memory after that size (sizes run in increasing "
                   "order).")
        out.append("")
        out.append("| problem | scenarios | compile (CPU) | run (wall) | run (CPU) | scenarios/s "
                   "(wall) | scenarios/s (CPU) | optimal | iterations (mean / max) | XLA plan | "
                   "peak RSS |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for kind, rows in results["throughput"].items():
            for r in rows:
                out.append(
                    f"| {KINDS[kind]} | {r['n']:,} | {fmt_time(r['compile_cpu'])} | "
                    f"{fmt_time(r['wall'])} | {fmt_time(r['cpu'])} | {fmt_rate(r['rate_wall'])} | "
                    f"{fmt_rate(r['rate_cpu'])} | {r['optimal']:.2%} | "
                    f"{r.get('mean_steps', math.nan):.1f} / {r['max_steps']} | "
                    f"{fmt_bytes(r['planned'])} | {fmt_bytes(r['rss'])} |")
        out.append("")
        out.extend(results.get("throughput_notes", []))
        out.append("")
    if "buckets" in results:
        out.append("### Compile time per bucket")
        out.append("")
        measured("buckets")
        out.append("`planner solve` pads each chunk to a bucket (powers of two from 256 to the "
                   "chunk size, `planner._table.bucket`) and compiles the table solver once per "
                   "bucket it meets: a table of full chunks meets one, plus one for a shorter "
                   "last chunk. Per bucket: the first call of `make_solver`'s function (trace, "
                   "compile, run), wall-clock and CPU time, then a second call on other "
                   "numbers of the same shape (run only, wall-clock):")
        out.append("")
        sizes = [row[0] for row in next(iter(results["buckets"].values()))]
        out.append("| problem | " + " | ".join(f"{s:,}" for s in sizes) + " |")
        out.append("|---|" + "---:|" * len(sizes))
        for kind, rows in results["buckets"].items():
            out.append(f"| {KINDS[kind]} | " + " | ".join(
                f"{fmt_time(w)} ({fmt_time(c)} CPU); again {fmt_time(a)}"
                for _, w, c, a, _ in rows) + " |")
        out.append("")
        if "full" in results["buckets"]:
            rows = results["buckets"]["full"]
            once = max(w - a for _, w, _, a, _ in rows)
            verdict = "**met**" if once < 10.0 else "**not met**"
            recompiled = sum(n for _, _, _, _, n in rows)
            out.append(f"- {KINDS['full']}: a bucket costs at most {fmt_time(once)} wall-clock "
                       f"once (first call less second, over the buckets; CPU time of the first "
                       f"call up to {fmt_time(max(c for _, _, c, _, _ in rows))}), against the "
                       f"issue's 10 s: {verdict}. XLA compilations during the second calls, "
                       f"all buckets: {recompiled}.")
            out.append("")
    if "devices" in results:
        out.append("### Devices")
        out.append("")
        measured("devices")
        out.append("The table solver wrapped in `shard_batch` on k virtual CPU devices "
                   "(`--xla_force_host_platform_device_count=k`), one subprocess per k; best of "
                   "3 runs after a first call that compiles. One device runs its program on "
                   "XLA's pool of threads, which splits each large enough loop between the "
                   "cores; k devices up to the usable cores run one program per core, which "
                   "`planner solve` does by default (`planner.cpu_devices`); more devices than "
                   "cores share them. This shows what sharding costs and gains on this CPU, "
                   "not how a GPU or TPU pod scales.")
        out.append("")
        out.append("| problem | scenarios | devices | first call (CPU) | run (wall) | run (CPU) | "
                   "speed-up (wall) | optimal |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for kind, (n, rows) in results["devices"].items():
            base = rows[0]["wall"]
            for r in rows:
                out.append(f"| {KINDS[kind]} | {n:,} | {r['devices']} | "
                           f"{fmt_time(r['first_call_cpu'])} | {fmt_time(r['wall'])} | "
                           f"{fmt_time(r['cpu'])} | {base / r['wall']:.2f} | {r['optimal']:.2%} |")
        out.append("")
        out.extend(results.get("devices_notes", []))
        out.append("")
    if "precision" in results:
        out.append("### float32 against float64")
        out.append("")
        measured("precision")
        out.append("The same random scenarios solved with 64-bit types on and off (as "
                   "`planner solve --float32`), default `Solver()` (its float32 tolerance is "
                   f"{results['precision'][0].get('tolerance32', math.nan):g} on the KKT "
                   "residuals). Relative errors of float32 against float64 over the rows "
                   "OPTIMAL in both: max / 99th percentile / median.")
        out.append("")
        out.append("| problem | scenarios | optimal float64 | optimal float32 | N* | D* | "
                   "lifetime FLOP |")
        out.append("|---|---:|---:|---:|---|---|---|")
        for r in results["precision"]:
            if "hung" in r:
                out.append(f"| {KINDS[r['kind']]} | {r['n']:,} | — | {r['hung']} did not finish "
                           f"within {r['timeout']:.0f} s | — | — | — |")
                continue
            errs = [" / ".join(f"{v:.1e}" for v in r[c])
                    for c in ("n_params", "n_tokens", "total_flops")]
            out.append(f"| {KINDS[r['kind']]} | {r['n']:,} | {r['optimal64']:.2%} | "
                       f"{r['optimal32']:.2%} | {errs[0]} | {errs[1]} | {errs[2]} |")
        out.append("")
        out.extend(results.get("precision_notes", []))
        out.append("")
    if "cli" in results:
        out.append("### The command line on a large table")
        out.append("")
        measured("cli")
        out.append("`/usr/bin/time -v planner solve TABLE.parquet -o OUT.parquet FLAGS "
                   "--chunk-size C` on a Parquet table of random scenarios (as above), float64.")
        out.append("")
        out.append("| flags | scenarios | chunk | wall-clock | CPU time | scenarios/s (wall) | "
                   "scenarios/s (CPU) | peak RSS | load before / after | result |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
        for r in results["cli"]:
            out.append(f"| `{r['flags']}` | {r['n']:,} | {r['chunk']:,} | {fmt_time(r['wall'])} | "
                       f"{fmt_time(r['cpu'])} | {fmt_rate(r['n'] / r['wall'])} | "
                       f"{fmt_rate(r['n'] / r['cpu'])} | {fmt_bytes(r['rss'])} | "
                       f"{r['load'][0]:.1f} / {r['load'][1]:.1f} | "
                       f"{r['summary'].split(': ', 2)[-1]} |")
        out.append("")
        out.extend(results.get("cli_notes", []))
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def headline_notes(rows: list[dict]) -> list[str]:
    """The issue's headline is the composed problem with every technique (N, D, density,
    samples): `--pruning --sampling`; the other rows get their throughput stated."""
    notes = []
    for r in rows:
        if r["kind"] != "full":
            notes.append(f"- `{r['flags']}`, {r['n']:,} scenarios: peak memory "
                         f"{fmt_bytes(r['rss'])}, throughput {fmt_rate(r['n'] / r['wall'])} "
                         f"scenarios/s wall-clock, {fmt_rate(r['n'] / r['cpu'])} per "
                         "CPU-second.")
            continue
        scale = HEADLINE_ROWS / r["n"]
        est = "" if r["n"] >= HEADLINE_ROWS else (
            f" (measured on {r['n']:,} rows; at the same rate {HEADLINE_ROWS:,} rows would take "
            f"about {fmt_time(r['wall'] * scale)} wall-clock, {fmt_time(r['cpu'] * scale)} CPU: "
            "an extrapolation, not a measurement)")
        verdict = "**met**" if r["rss"] < HEADLINE_MEMORY else "**not met**"
        notes.append(f"- `{r['flags']}`, {r['n']:,} scenarios: peak memory {fmt_bytes(r['rss'])} "
                     f"against the issue's 4 GiB: {verdict}; throughput "
                     f"{fmt_rate(r['n'] / r['wall'])} scenarios/s wall-clock, "
                     f"{fmt_rate(r['n'] / r['cpu'])} per CPU-second{est}.")
    return notes


def precision_notes(rows: list[dict]) -> list[str]:
    notes = []
    for r in rows:
        if "other_kind" not in r:
            continue
        notes.append(
            f"- {KINDS[r['kind']]}: with pruning the problem is not convex, and a dense plan "
            "(density 1) and a pruned one can both satisfy the KKT conditions. In "
            f"{r['other_kind']:.1%} of the rows optimal in both ({r['other_kind_count']:,}) "
            "float32 and float64 stop at different kinds of plan (lifetime FLOP up to "
            f"{r['other_kind_max_flop_gap']:.1%} apart; the float32 plan is the cheaper one in "
            f"{r['other_kind_float32_cheaper']:,} of them"
            + (", so float64 is not always at the global optimum either"
               if r["other_kind_float32_cheaper"] else ": a local optimum float64 certifies can "
               "miss float32's tolerance") + "). The errors in the table are over the rows "
            "where both pick the same kind of plan.")
    return notes


# ---------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="small sizes of every section, seconds each; writes nothing")
    parser.add_argument("--max-batch", type=int, default=10_000_000,
                        help="largest single batch for the plain problem")
    parser.add_argument("--max-batch-composed", type=int, default=1_000_000,
                        help="largest single batch with pruning, and with pruning and sampling")
    parser.add_argument("--budget", type=float, default=600.0,
                        help="stop growing a batch once one run takes this many CPU seconds")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=65536, help="planner solve --chunk-size")
    parser.add_argument("--device-batch", type=int, default=65536)
    parser.add_argument("--device-counts", default="1,2,4,8")
    parser.add_argument("--precision-n", type=int, default=4096)
    parser.add_argument("--precision-timeout", type=float, default=300.0,
                        help="seconds to wait for the float64 and float32 solves")
    parser.add_argument("--cli-rows", type=int, default=HEADLINE_ROWS,
                        help="rows of the --pruning --sampling table, the headline (0: skip)")
    parser.add_argument("--cli-rows-pruning", type=int, default=1_000_000,
                        help="rows of the --pruning table (0: skip)")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--merge", help="a JSON file of earlier results to merge in (sections "
                        "not run now keep the earlier results)")
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args(argv)
    if args.smoke:
        args.max_batch, args.max_batch_composed, args.repeats = 1000, 10, 1
        args.device_batch, args.device_counts, args.chunk = 1024, "1,2", 256
        args.precision_n, args.precision_timeout = 256, 120.0
        args.cli_rows, args.cli_rows_pruning = 2000, 0
    sections = set(args.sections.split(","))

    import jax

    jax.config.update("jax_enable_x64", True)
    meta = {"date": datetime.date.today().isoformat(), "machine": machine(),
            "argv": " ".join(argv if argv is not None else sys.argv[1:]), "load": [load()]}
    print(f"machine: {meta['machine']}; load {meta['load'][0]:.1f}", flush=True)
    results: dict = {}
    if args.merge and pathlib.Path(args.merge).exists():
        results = json.loads(pathlib.Path(args.merge).read_text())
        earlier = results.pop("meta", None)
        if earlier and "measured" not in results:  # a dump from before sections had their own
            results["measured"] = {name: {**{k: earlier[k] for k in ("date", "argv", "machine")},
                                          "load": earlier["load"]}
                                   for name in SECTIONS if name in results}

    measured = results.setdefault("measured", {})

    def section(name: str, run) -> None:
        # each section records when, by which command, on which machine and under what load
        # it ran, so that results merged from several runs say so
        before = load()
        run()
        measured[name] = {"date": meta["date"], "argv": meta["argv"],
                          "machine": meta["machine"], "load": [before, load()]}

    def run_throughput() -> None:
        print("1. throughput against batch size", flush=True)
        sizes = [10**k for k in range(0, 8) if 10**k <= args.max_batch]
        if args.smoke:
            sizes = [1, args.max_batch]
        results["throughput"], notes = {}, []
        for kind in ("plain", "composed", "full"):
            cap = args.max_batch if kind == "plain" else min(args.max_batch,
                                                             args.max_batch_composed)
            # a fresh process per problem, so that its peak resident memory is its own
            rows = throughput_in_subprocess(kind, [s for s in sizes if s <= cap], args.repeats,
                                            args.budget)
            results["throughput"][kind] = rows
            last = rows[-1]
            why = (f"one run took {fmt_time(last['cpu'])} of CPU time, over the "
                   f"{args.budget:.0f} s budget per size" if last["cpu"] > args.budget
                   and last["n"] < cap else f"the largest size asked for (--max-batch"
                   f"{'' if kind == 'plain' else '-composed'} {cap:,})")
            notes.append(f"- {KINDS[kind]}: measured up to {last['n']:,} scenarios in one batch; "
                         f"stopped there because {why}. {saturation(rows)}")
        results["throughput_notes"] = notes

    def run_buckets() -> None:
        print("2. compile time per bucket", flush=True)
        results["buckets"] = compile_per_bucket(args.chunk)

    def run_devices() -> None:
        print("3. devices", flush=True)
        counts = [int(c) for c in args.device_counts.split(",")]
        results["devices"] = {kind: (args.device_batch, devices(kind, args.device_batch, counts))
                              for kind in KINDS}

    def run_precision() -> None:
        print("4. float32 against float64", flush=True)
        results["precision"] = [precision(kind, args.precision_n, args.precision_timeout)
                                for kind in KINDS]
        results["precision_notes"] = precision_notes(results["precision"])

    def run_cli() -> None:
        print("5. the command line", flush=True)
        rows = []
        with tempfile.TemporaryDirectory() as folder:
            if args.cli_rows:
                rows.append(cli("full", args.cli_rows, pathlib.Path(folder), args.chunk))
            if args.cli_rows_pruning:
                rows.append(cli("composed", args.cli_rows_pruning, pathlib.Path(folder),
                                args.chunk))
        results["cli"] = rows
        results["cli_notes"] = headline_notes(rows)

    runs = {"throughput": run_throughput, "buckets": run_buckets, "devices": run_devices,
            "precision": run_precision, "cli": run_cli}
    for name, run in runs.items():
        if name in sections:
            section(name, run)
    meta["load"].append(load())
    text = report(meta, results)
    print()
    print(text)
    dump = pathlib.Path(tempfile.gettempdir()) / "bench_scale.json"
    dump.write_text(json.dumps({**results, "meta": meta}, indent=1))
    print(f"raw results: {dump}")
    if not (args.smoke or args.no_write):
        write_section(HEADING, text)
        print(f"wrote the section {HEADING[3:]!r} of {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
