"""Fitting the Chinchilla law: planner's batched multi-start BFGS against a SciPy loop and optax.

The problem (Hoffmann et al. 2022, App. D.2; Besiroglu et al. 2024): minimise the summed Huber
loss ($\\delta = 10^{-3}$) of $\\mathrm{LSE}(a - \\alpha \\log N, b - \\beta \\log D, e) - \\log L$
over the 240 runs of Epoch AI's extraction of Hoffmann et al.'s Figure 4 left after dropping the 5
with the highest loss, from a grid of starting points; then refit bootstrap resamples. Methods:

- planner: `planner.fit`'s solver, `huber_fit(ChinchillaForm(), starts, ...)`: every start one
  member of one `vmap`ped, jitted batch (100 BFGS steps each, the best 16 polished); the bootstrap
  as a second batch, each resample started from the point estimate;
- optax: `optax.lbfgs()` (zoom line search) in a fixed-length `lax.scan`, `vmap`ped over the same
  starts and jitted (the pattern the optax documentation shows for L-BFGS);
- SciPy: `scipy.optimize.minimize(method="L-BFGS-B")` with an analytic gradient written in NumPy,
  in a Python loop over a random subsample of the starts (and of the resamples), per-problem time
  extrapolated to all of them.

JAX rows: the first call (compilation included) reported separately, then the best of `--repeats`
runs, each ended with `block_until_ready`. Runs on a subsample are extrapolated linearly (a
batch's cost grows linearly with its size). Wall-clock and process CPU time are both reported;
on a shared machine CPU time moves far less with the load. "at best" counts the problems that
end within 1e-6 (relative) of the best objective any method found.

Run: `python benchmarks/bench_fit.py` (Hoffmann's 4,500-start grid, 1,000 resamples) or
`python benchmarks/bench_fit.py --smoke` (108 starts, 100 resamples). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from scipy import optimize  # noqa: E402

from planner._data import CHINCHILLA_RUNS, data_file  # noqa: E402
from planner._fit import (  # noqa: E402
    ChinchillaForm,
    MultiStartBFGS,
    bootstrap_weights,
    huber_fit,
    huber_objective,
    read_runs,
    start_grid,
)

RUNS = data_file(CHINCHILLA_RUNS)


def numpy_objective(theta, log_n, log_d, log_l, weights, delta=1e-3):
    """Weighted summed Huber loss of the LSE form and its gradient, in NumPy."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    top = terms.max(axis=0)
    pred = top + np.log(np.sum(np.exp(terms - top), axis=0))
    r = pred - log_l
    h = np.where(np.abs(r) <= delta, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta))
    soft = np.exp(terms - pred)
    dh = weights * np.clip(r, -delta, delta)
    grad = np.array(
        [
            np.sum(dh * soft[0]),
            np.sum(dh * soft[1]),
            np.sum(dh * soft[2]),
            -np.sum(dh * soft[0] * log_n),
            -np.sum(dh * soft[1] * log_d),
        ]
    )
    return float(np.sum(weights * h)), grad


def timed(fn, repeats):
    """(first call wall time, best wall, best CPU, result) with block_until_ready."""
    w0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - w0
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        out = jax.block_until_ready(fn())
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return first, best_wall, best_cpu, out


def optax_lbfgs_batch(starts, log_n, log_d, log_l, steps):
    form = ChinchillaForm()
    ones = jnp.ones_like(log_l)

    def solve(x0):
        def f(theta):
            return huber_objective(theta, form, log_n, log_d, log_l, ones, 1e-3)

        opt = optax.lbfgs()
        value_and_grad = optax.value_and_grad_from_state(f)

        def step(carry, _):
            x, state = carry
            value, grad = value_and_grad(x, state=state)
            updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=f)
            return (optax.apply_updates(x, updates), state), None

        (x, _), _ = jax.lax.scan(step, (x0, opt.init(x0)), None, length=steps)
        value, grad = jax.value_and_grad(f)(x)
        return x, value, jnp.linalg.norm(grad)

    return jax.jit(jax.vmap(solve))(starts)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="108 starts, 100 resamples")
    parser.add_argument("--bootstrap", type=int, default=None)
    parser.add_argument("--subsample", type=int, default=100, help="SciPy starts timed")
    parser.add_argument("--boot-subsample", type=int, default=50, help="SciPy resamples timed")
    parser.add_argument("--optax-steps", type=int, default=100)
    parser.add_argument("--optax-subsample", type=int, default=500, help="optax starts timed")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not RUNS.exists():
        raise SystemExit(f"runs table not found: {RUNS}")

    runs = read_runs(RUNS)
    loss = np.asarray(runs.loss)
    keep = np.sort(np.argsort(loss, kind="stable")[:-5])
    n, d, ell = (
        jnp.asarray(np.asarray(x)[keep]) for x in (runs.n_params, runs.n_tokens, runs.loss)
    )
    log_n, log_d, log_l = (np.log(np.asarray(x)) for x in (n, d, ell))
    if args.smoke:
        starts = start_grid([0, 10, 20], [0, 10, 20], [-1, 0, 1], [0.5, 1.0], [0.5, 1.0])
    else:
        starts = ChinchillaForm().starts()
    n_boot = args.bootstrap or (100 if args.smoke else 1000)
    n_starts = starts.shape[0]
    rng = np.random.default_rng(args.seed)
    load_before = os.getloadavg()

    rows = []
    form, solver = ChinchillaForm(), MultiStartBFGS()
    first, wall, cpu, sol = timed(lambda: huber_fit(form, starts, n, d, ell), args.repeats)
    ours_best = float(sol.objective)

    optax_pick = rng.choice(n_starts, size=min(args.optax_subsample, n_starts), replace=False)
    optax_starts = starts[np.sort(optax_pick)]
    first_o, wall_o, cpu_o, (x_o, v_o, g_o) = timed(
        lambda: optax_lbfgs_batch(
            optax_starts, jnp.log(n), jnp.log(d), jnp.log(ell), args.optax_steps
        ),
        args.repeats,
    )
    scale_o = n_starts / optax_pick.size
    first_o, wall_o, cpu_o = first_o * scale_o, wall_o * scale_o, cpu_o * scale_o
    v_o = np.where(np.isfinite(np.asarray(v_o)), np.asarray(v_o), np.inf)

    pick = rng.choice(n_starts, size=min(args.subsample, n_starts), replace=False)
    scipy_values, w0, c0 = [], time.perf_counter(), time.process_time()
    ones = np.ones_like(log_l)
    for x0 in np.asarray(starts)[pick]:
        res = optimize.minimize(
            numpy_objective, x0, args=(log_n, log_d, log_l, ones), jac=True, method="L-BFGS-B"
        )
        scipy_values.append(res.fun if np.isfinite(res.fun) else np.inf)
    scipy_wall = (time.perf_counter() - w0) * n_starts / pick.size
    scipy_cpu = (time.process_time() - c0) * n_starts / pick.size
    scipy_values = np.asarray(scipy_values)

    best = min(ours_best, float(v_o.min()), float(scipy_values.min()))

    def at_best(values):
        return int(np.sum(np.asarray(values) <= best * (1 + 1e-6)))

    rows.append(
        [
            "planner (batched BFGS)",
            f"{n_starts} starts",
            first,
            wall,
            cpu,
            scipy_cpu / cpu,
            ours_best,
            float(sol.grad_norm),
            f"{at_best(sol.polish_objective)} of {sol.polish_objective.size} polished",
        ]
    )
    i = int(np.argmin(v_o))
    rows.append(
        [
            f"optax.lbfgs, {args.optax_steps} steps (vmap)",
            f"{n_starts} starts"
            + (f" (extrapolated from {optax_pick.size})" if scale_o > 1 else ""),
            first_o,
            wall_o,
            cpu_o,
            scipy_cpu / cpu_o,
            float(v_o[i]),
            float(np.asarray(g_o)[i]),
            f"{at_best(v_o)} of {optax_pick.size}",
        ]
    )
    rows.append(
        [
            "SciPy L-BFGS-B loop",
            f"{n_starts} starts (extrapolated from {pick.size})",
            float("nan"),
            scipy_wall,
            scipy_cpu,
            1.0,
            float(scipy_values.min()),
            float("nan"),
            f"{at_best(scipy_values)} of {pick.size}",
        ]
    )

    # Bootstrap: one batch against a loop, both warm-started at the point estimate.
    weights = bootstrap_weights(jax.random.key(args.seed), keep.size, n_boot)
    theta0 = sol.theta[None, :]
    batch = jax.vmap(huber_fit, in_axes=(None, None, None, None, None, 0, None, None))
    first_b, wall_b, cpu_b, boot = timed(
        lambda: batch(form, theta0, n, d, ell, weights, 1e-3, solver), args.repeats
    )
    sub = min(args.boot_subsample, n_boot)
    w0, c0 = time.perf_counter(), time.process_time()
    gaps = []
    for j in range(sub):
        w = np.asarray(weights[j])
        res = optimize.minimize(
            numpy_objective,
            np.asarray(sol.theta),
            args=(log_n, log_d, log_l, w),
            jac=True,
            method="L-BFGS-B",
        )
        gaps.append(float(boot.objective[j]) - res.fun)
    boot_wall = (time.perf_counter() - w0) * n_boot / sub
    boot_cpu = (time.process_time() - c0) * n_boot / sub
    gaps = np.asarray(gaps)
    rows.append(
        [
            "planner bootstrap (batched)",
            f"{n_boot} resamples",
            first_b,
            wall_b,
            cpu_b,
            boot_cpu / cpu_b,
            float("nan"),
            float(np.max(np.asarray(boot.grad_norm))),
            f"{float(np.mean(np.asarray(boot.converged))):.0%} converged",
        ]
    )
    rows.append(
        [
            "SciPy bootstrap loop",
            f"{n_boot} resamples (extrapolated from {sub})",
            float("nan"),
            boot_wall,
            boot_cpu,
            1.0,
            float("nan"),
            float("nan"),
            f"planner lower or equal on {int(np.sum(gaps <= 1e-12))} of {sub}",
        ]
    )

    header = [
        "method",
        "problems",
        "first call s (with compile)",
        "wall s",
        "CPU s",
        "CPU speed-up vs SciPy",
        "best objective",
        "grad norm at best",
        "at best / status",
    ]

    def cell(v):
        if isinstance(v, float):
            if np.isnan(v):
                return "–"
            return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.4e}"
        return str(v)

    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(cell(v) for v in row) + " |")
    print()
    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"JAX {jax.__version__} ({jax.default_backend()}), optax {optax.__version__}; load average "
        f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after. Best objective found by any "
        f"method: {best:.12g}."
    )


if __name__ == "__main__":
    main()
