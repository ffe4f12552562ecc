"""Dollar-optimal plans with the serving batch a variable (`objective="dollars"` on a
`Deployment` stage) against the solvers a user would reach for instead.

Scenarios are `tests/test_serving.py::_scenarios` (random hardware, prices, MFU, prompt and
context, devices, grouped-query factor, tight and loose latency SLOs). Times, in one process:

- planner: `jax.jit(jax.vmap(solve))` over all `--n` scenarios (compiled first; best of
  `--repeats`), and the FLOP solve of the same scenarios without the `Deployment` stage (the
  lifetime-compute problem) for the cost of pricing in dollars;
- cvxpy: the geometric program of `tests/_oracles.py::dollar_gp`, one `solve(gp=True)` with
  Clarabel per scenario, on `--subsample` scenarios (per-scenario time, extrapolated);
- SciPy: the problem reduced to log N and minimised by bounded Brent
  (`tests/_oracles.py::dollar_item_optimum`), likewise.

Agreement: planner's dollars against each peer's on the subsample, where both are optimal.
Prints a table and, unless `--no-write`, rewrites the "Serving in dollars" section of
RESULTS.md.

    python benchmarks/bench_serving.py                    # 10,000 scenarios, 100 for the peers
    python benchmarks/bench_serving.py --n 1000 --subsample 20 --no-write   # a smoke run
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
import sys
import time
import warnings

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import planner  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from _oracles import dollar_gp, dollar_item_optimum  # noqa: E402
from test_serving import LAW, _model, _scenarios  # noqa: E402

try:
    from _results import machine, write_section
except ImportError:  # run as a module
    from benchmarks._results import machine, write_section

HEADING = "## Serving in dollars"


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--subsample", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    rows = _scenarios(args.n, seed=args.seed)
    table = {k: jnp.asarray(v) for k, v in rows.items()}

    def scenario(row):
        return planner.Scenario(target_loss=row["target_loss"], inference_demand=row["demand"],
                                max_latency=row["latency"])

    @jax.jit
    def dollars(table):
        return jax.vmap(lambda row: planner.solve(_model(row), scenario(row),
                                                  objective="dollars", throw=False))(table)

    flop_model = planner.Pipeline(planner.Pretraining(LAW))

    @jax.jit
    def flops(table):
        return jax.vmap(lambda row: planner.solve(
            flop_model, planner.Scenario(target_loss=row["target_loss"],
                                         inference_demand=row["demand"]), throw=False))(table)

    start = time.perf_counter()
    plans = jax.block_until_ready(dollars(table))
    compile_dollars = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(flops(table))
    compile_flops = time.perf_counter() - start
    t_dollars = best(lambda: dollars(table), args.repeats)
    t_flops = best(lambda: flops(table), args.repeats)
    status = np.asarray(plans.status)
    counts = {s.name.lower(): int(np.sum(status == s)) for s in planner.Status}

    picked = np.random.default_rng(args.seed + 1).choice(args.n, args.subsample, replace=False)
    listed = [{k: float(v[i]) for k, v in rows.items()} for i in picked]
    warnings.simplefilter("ignore")  # Clarabel's "may be inaccurate", counted below
    dollar_gp(listed[0:1], LAW)  # cvxpy's first call loads its solver interfaces
    start = time.perf_counter()
    gps = [dollar_gp([row], LAW) for row in listed]
    t_gp = (time.perf_counter() - start) / len(listed)
    start = time.perf_counter()
    reduced = []
    for row, i in zip(listed, picked, strict=True):
        reduced.append(dollar_item_optimum(row, LAW) if status[i] != planner.Status.INFEASIBLE
                       else None)
    t_scipy = (time.perf_counter() - start) / len(listed)

    ours = np.asarray(plans.serving.dollars)
    gp_gap, scipy_gap, inaccurate = [], [], 0
    for gp, red, i in zip(gps, reduced, picked, strict=True):
        if status[i] != planner.Status.OPTIMAL:
            continue
        if gp is not None:
            gp_gap.append(abs(ours[i] / gp["dollars"] - 1))
            inaccurate += gp["status"] != "optimal"
        scipy_gap.append(abs(ours[i] / red["dollars"] - 1))

    per = t_dollars / args.n
    lines = [
        HEADING,
        "",
        f"Measured {datetime.date.today()} by `python benchmarks/bench_serving.py --n {args.n} "
        f"--subsample {args.subsample}` (float64).",
    ]
    info = machine(("jax", "jaxlib", "numpy", "scipy", "cvxpy", "clarabel"))
    lines += [f"Machine: {info['cpu']}; JAX backend {info['backend']}.",
              f"Versions: {info['versions']}.", "",
              "Dollar-optimal plans with the serving batch a variable, on the random scenarios "
              "of `tests/test_serving.py` (hardware, prices, MFU, prompt and context, devices, "
              "grouped-query factor, tight and loose latency SLOs). planner: one compiled "
              "batched solve, best of "
              f"{args.repeats} after compiling; the peers: one solve per scenario in a Python "
              f"loop over {args.subsample} of them, per-scenario time.", "",
              "| method | scenarios | compile | time | per scenario | × planner |",
              "|---|---:|---:|---:|---:|---:|",
              f"| planner, dollars (N, D, batch, step time) | {args.n:,} | "
              f"{compile_dollars:.3g} s | {t_dollars:.3g} s | {per * 1e6:.3g} µs | 1 |",
              f"| planner, FLOP (N, D; no serving) | {args.n:,} | {compile_flops:.3g} s | "
              f"{t_flops:.3g} s | {t_flops / args.n * 1e6:.3g} µs | "
              f"{t_flops / t_dollars:.2g} |",
              f"| cvxpy GP (Clarabel) | {args.subsample} | – | – | {t_gp * 1e6:.4g} µs | "
              f"{t_gp / per:,.0f} |",
              f"| SciPy, reduced to log N (bounded Brent) | {args.subsample} | – | – | "
              f"{t_scipy * 1e6:.4g} µs | {t_scipy / per:,.0f} |", "",
              "planner's statuses: " + ", ".join(f"{v:,} {k}" for k, v in counts.items() if v)
              + ".",
              f"Dollars against the peers on the subsample's optimal plans: cvxpy "
              f"{max(gp_gap):.2g} at most ({len(gp_gap)} plans, {inaccurate} of them ended "
              f"`optimal_inaccurate` by Clarabel), SciPy {max(scipy_gap):.2g} "
              f"({len(scipy_gap)} plans)."]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(HEADING, text)


if __name__ == "__main__":
    main()
