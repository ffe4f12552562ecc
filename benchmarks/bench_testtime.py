"""Samples per class of queries under one budget (`planner.techniques.allocate_samples`) at scale.

Times, in one process and on one table per size: the adaptive plan (Newton on the log price,
with the uniform plan and the efficiency's equal-score search included, compiled), the uniform
best-of-N plan alone (every class the budget's samples: one weighted sum), and the water-filling
a user would write in NumPy with SciPy's brentq on the price (the tests' oracle). Prints a table
and, unless `--no-write`, rewrites the "Test-time allocation" section of RESULTS.md.

    python benchmarks/bench_testtime.py                 # 1e4, 1e5, 1e6 classes
    python benchmarks/bench_testtime.py --sizes 1000 --no-write   # a smoke run
"""

from __future__ import annotations

import argparse
import datetime
import resource
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from scipy import optimize  # noqa: E402

import planner  # noqa: E402

try:
    from _results import machine, write_section
except ImportError:  # run as a module
    from benchmarks._results import machine, write_section

HEADING = "## Test-time allocation"


def table(n: int, seed: int = 0):
    """Classes whose pass@1 is Beta(0.3, 1.5) distributed (most questions hard, a few easy, as
    Codex-like success is), with random shares."""
    rng = np.random.default_rng(seed)
    return rng.beta(0.3, 1.5, n), rng.uniform(0.1, 1.0, n)


def numpy_water_filling(p, w, budget):
    q = -np.log1p(-p)

    def samples(u):
        return np.maximum(1.0, (np.log(q) - u) / q)

    u = optimize.brentq(lambda u: np.sum(w * samples(u)) / np.sum(w) - budget, -2000.0, 50.0,
                        xtol=1e-14, rtol=4 * np.finfo(float).eps, maxiter=500)
    k = samples(u)
    return np.sum(w * -np.expm1(np.log1p(-p) * k)) / np.sum(w)


def best(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        jax.block_until_ready(out)
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--budget", type=float, default=8.0,
                        help="average samples per query (default 8)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    sizes = [int(float(s)) for s in args.sizes.split(",") if s]

    adaptive = jax.jit(lambda p, w, b: planner.techniques.allocate_samples(p, b, weight=w,
                                                                          throw=False))

    @jax.jit
    def uniform(p, w, b):
        return jnp.sum(w * -jnp.expm1(jnp.log1p(-p) * b)) / jnp.sum(w)

    rows = []
    for n in sizes:
        p, w = table(n)
        pj, wj, b = jnp.asarray(p), jnp.asarray(w), jnp.asarray(args.budget)
        jax.block_until_ready(adaptive(pj, wj, b))
        jax.block_until_ready(uniform(pj, wj, b))
        t_adaptive, plan = best(lambda: adaptive(pj, wj, b), args.repeats)
        t_uniform, score_u = best(lambda: uniform(pj, wj, b), args.repeats)
        t_numpy, score_np = best(lambda: numpy_water_filling(p, w, args.budget),
                                 max(1, args.repeats // 2))
        rows.append({
            "classes": n, "adaptive": t_adaptive, "uniform": t_uniform, "numpy": t_numpy,
            "status": planner.Status(int(plan.status)).name.lower(),
            "iterations": int(plan.iterations), "score": float(plan.objective),
            "uniform_score": float(score_u), "efficiency": float(plan.efficiency),
            "gap": abs(float(plan.objective) - score_np) / score_np,
            "uniform_gap": abs(float(plan.uniform_score) - float(score_u)),
        })
        r = rows[-1]
        print(f"{n:>9,} classes: adaptive {t_adaptive:.4g} s ({r['iterations']} Newton steps, "
              f"{r['status']}), uniform {t_uniform:.3g} s, NumPy+brentq {t_numpy:.3g} s; "
              f"score {r['score']:.6f} vs uniform {r['uniform_score']:.6f}, efficiency "
              f"{r['efficiency']:.3f}; |planner - NumPy| {r['gap']:.1e}", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.no_write:
        return
    info = machine(("jax", "jaxlib", "scipy", "numpy"))
    lines = [
        HEADING, "",
        f"Measured {datetime.date.today()} by `python benchmarks/bench_testtime.py` on "
        f"{info['cpu']}; {info['backend']}; {info['versions']}. Float64. Peak resident memory "
        f"of the whole run {peak:,.0f} MiB.", "",
        f"Classes with pass@1 drawn from Beta(0.3, 1.5) and random shares, an average budget "
        f"of {args.budget:g} samples per query. \"adaptive\": "
        "`planner.techniques.allocate_samples` compiled (`jax.jit`), which includes the "
        "uniform plan and the equal-score search of "
        "the efficiency; \"uniform\": the uniform best-of-N plan alone (one weighted sum, "
        "compiled); \"NumPy + brentq\": the water-filling written in NumPy with SciPy's brentq "
        f"on the price (the tests' oracle). Best of {args.repeats} calls (NumPy: best of "
        f"{max(1, args.repeats // 2)}).", "",
        "| classes | adaptive | uniform | adaptive / uniform | NumPy + brentq | NumPy / adaptive "
        "| Newton steps | status | score | uniform score | efficiency | |planner − NumPy| / "
        "score |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['classes']:,} | {r['adaptive']:.3g} s | {r['uniform']:.3g} s | "
            f"{r['adaptive'] / r['uniform']:.3g} | {r['numpy']:.3g} s | "
            f"{r['numpy'] / r['adaptive']:.3g} | {r['iterations']} | {r['status']} | "
            f"{r['score']:.6f} | {r['uniform_score']:.6f} | {r['efficiency']:.3f} | "
            f"{r['gap']:.1e} |")
    write_section(HEADING, "\n".join(lines))


if __name__ == "__main__":
    main()
