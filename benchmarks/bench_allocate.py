"""Coupled allocation: `planner.allocate` against the same items solved independently, and
against cvxpy and SciPy on the joint problem.

The portfolio (as in `tests/test_allocate.py`): $n$ items, each with its own Chinchilla law
(E, A, B drawn around Hoffmann et al. 2022's constants, the exponents from three values each),
a weight in [0.5, 2], a lifetime demand $T_i$ log-uniform in $[10^{11}, 10^{14}]$ tokens and a
loss target $E_i + [0.25, 0.6]$. Objective `"compute"`: every item meets its target at the
least weighted lifetime compute $\\sum_i w_i (6N_iD_i + 2N_iT_i)$, within one training budget
$\\sum_i 6N_iD_i \\le C$ set halfway between the items' least training FLOP (each at its
Chinchilla training optimum) and what their separate optima train, so that it binds.

(a) **Coupled against independent**, at `--sizes` items (default 1e3, 1e4, 1e5; with `--full`
also 1e6, in chunks of `--chunk` items): the time of `planner.allocate` with the budget
against one batched solve of the same items without it,
`jax.jit(jax.vmap(lambda m, s: planner.solve(m, s, throw=False)))` (the batched path of
`planner solve`, with each item's law as a batched leaf). Each (method, size) runs in a fresh
subprocess: a warm-up call compiles (for `allocate`, a call without budgets first, then one
with it), the peak resident memory is reset (`/proc/self/clear_refs`), and the best of
`--repeats` calls is timed; the peak resident memory (`VmHWM`) is reported for the timed calls
alone and for the whole process (compilation included).

(b) **Against cvxpy and SciPy**, at `--peer-sizes` items (default 30, 100, 300), in one
process: `planner.allocate` (compiled, best of `--repeats`), the convex form of the portfolio's
geometric program solved by Clarabel (`portfolio_gp` of `tests/_oracles.py`, imported from
the tests folder; its build time included, as a user pays it), and SciPy SLSQP on the joint
problem in log variables ($\\log N_i, \\log D_i$; objective and constraints with analytic
gradients; the loss constraints and the budget as inequalities; from each item's training
optimum, which meets both). Times are ratios to planner's in the same run; agreement is the
relative difference of the optima and the largest relative difference in $N_i$.

Run: `python benchmarks/bench_allocate.py [--full] [--no-write]`. A run rewrites the section
"Coupled allocation" of `benchmarks/RESULTS.md` unless `--no-write`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

# SLSQP's linear algebra on one OpenBLAS thread: on a shared 2-core machine OpenBLAS's threads
# spin-wait for each other (measured: 6.7 s of CPU for the 30-item problem, against 0.12 s).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

HERE = Path(__file__).resolve().parent
HEADING = "## Coupled allocation"
SLSQP_MAXITER = 5000


# ----------------------------------------------------------------------------------- problem
def portfolio(n: int, seed: int = 0):
    """Per-item law coefficients (rows E, A, B, alpha, beta), weights, demands and targets:
    the portfolio of `tests/test_allocate.py`."""
    import numpy as np

    import planner

    rng = np.random.default_rng(seed)
    base = planner.Chinchilla.hoffmann2022()
    coefs = np.stack([
        float(base.E) * rng.uniform(0.9, 1.1, n),
        float(base.A) * rng.uniform(0.8, 1.2, n),
        float(base.B) * rng.uniform(0.8, 1.2, n),
        float(base.alpha) * rng.choice([0.96, 1.0, 1.04], n),
        float(base.beta) * rng.choice([0.96, 1.0, 1.04], n),
    ], axis=1)
    weight = rng.uniform(0.5, 2.0, n)
    demand = 10.0 ** rng.uniform(11.0, 14.0, n)
    target = coefs[:, 0] + rng.uniform(0.25, 0.6, n)
    return coefs, weight, demand, target


def training_optimum(coefs, target):
    """Each item's Chinchilla training optimum for its target: (N, D)."""
    E, A, B, a, b = coefs.T
    gap = target - E
    return (A * (1.0 + a / b) / gap) ** (1.0 / a), (B * (1.0 + b / a) / gap) ** (1.0 / b)


def planner_inputs(coefs, demand, target):
    import jax.numpy as jnp

    import planner

    law = planner.Chinchilla(*(jnp.asarray(c) for c in coefs.T))
    items = planner.Scenario(target_loss=jnp.asarray(target),
                             inference_demand=jnp.asarray(demand))
    return planner.Pipeline(planner.Pretraining(law)), items


def status_kib(field: str = "VmHWM") -> int:
    """A memory field of /proc/self/status, KiB: `VmHWM` (peak resident) or `VmRSS` (now)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def reset_peak() -> bool:
    """Reset VmHWM to the current resident memory (Linux `clear_refs`); False if not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def timed(fn, repeats: int):
    """(last result, best wall seconds, best CPU seconds) over `repeats` calls."""
    best_wall = best_cpu = float("inf")
    out = None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return out, best_wall, best_cpu


# ------------------------------------------------------------------ (a) one method, one size
def child(method: str, n: int, chunk: int | None, repeats: int) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    import equinox as eqx
    import numpy as np

    import planner

    coefs, weight, demand, target = portfolio(n)
    model, items = planner_inputs(coefs, demand, target)
    start = time.perf_counter()
    if method == "independent":
        axes = jax.tree.map(lambda leaf: 0 if eqx.is_array(leaf) and leaf.ndim else None, model)
        batched = jax.jit(jax.vmap(lambda m, s: planner.solve(m, s, throw=False),
                                   in_axes=(axes, 0)))

        def run():
            return jax.block_until_ready(batched(model, items))

        plans = run()
        warm = time.perf_counter() - start
        before, reset = status_kib(), reset_peak()
        resident = status_kib("VmRSS")
        plans, wall, cpu = timed(run, repeats)
        optimal = int(np.sum(np.asarray(plans.status) == planner.Status.OPTIMAL))
        extra = {"objective": float(np.sum(weight * np.asarray(plans.total_flops))),
                 "solves": 1}
    else:
        free = planner.allocate(model, items, weight=weight, chunk=chunk)
        n_c, d_c = training_optimum(coefs, target)
        budget = 0.5 * (float(np.sum(6.0 * n_c * d_c)) + float(free.train_flops))

        def run():
            return jax.block_until_ready(planner.allocate(
                model, items, {"train_budget": budget}, weight=weight, chunk=chunk))

        port = run()
        warm = time.perf_counter() - start
        before, reset = status_kib(), reset_peak()
        resident = status_kib("VmRSS")
        port, wall, cpu = timed(run, repeats)
        plans = port.plans
        optimal = int(np.sum(np.asarray(plans.status) == planner.Status.OPTIMAL))
        extra = {"objective": float(port.objective), "solves": port.solves,
                 "status": planner.Status(int(port.status)).name.lower(),
                 "price": float(port.prices["train_budget"]),
                 "residual": float(port.residual), "gap": float(port.gap),
                 "kkt": float(port.kkt)}
    run_peak = status_kib() if reset else None
    process_peak = max(before, status_kib(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return {"method": method, "n": n, "chunk": chunk, "warm_s": warm, "wall": wall, "cpu": cpu,
            "resident_kib": resident, "run_peak_kib": run_peak,
            "process_peak_kib": process_peak, "optimal": optimal, **extra}


def run_child(method: str, n: int, chunk: int | None, repeats: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(HERE.parent) + os.pathsep
               + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, __file__, "--child", method, str(n), str(chunk or 0), str(repeats)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"method": method, "n": n, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------- (b) cvxpy and SciPy
def slsqp(coefs, weight, demand, target, budget):
    """SciPy SLSQP on the joint problem in $x_i = \\log N_i$, $y_i = \\log D_i$."""
    import numpy as np
    from scipy import optimize

    E, A, B, a, b = coefs.T
    gap = target - E
    n = E.size
    n_c, d_c = training_optimum(coefs, target)
    z0 = np.concatenate([np.log(n_c), np.log(d_c)])
    scale = float(np.sum(weight * (6.0 * n_c * d_c + 2.0 * n_c * demand)))

    def parts(z):
        x, y = z[:n], z[n:]
        return x, y, np.exp(x + y), np.exp(x)

    def objective(z):
        _, _, nd, nn = parts(z)
        return float(np.sum(weight * (6.0 * nd + 2.0 * nn * demand))) / scale

    def objective_grad(z):
        _, _, nd, nn = parts(z)
        return np.concatenate([weight * (6.0 * nd + 2.0 * nn * demand),
                               weight * 6.0 * nd]) / scale

    def constraints(z):  # >= 0: each item's loss at most its target; the budget
        x, y, nd, _ = parts(z)
        loss = 1.0 - (A * np.exp(-a * x) + B * np.exp(-b * y)) / gap
        return np.append(loss, 1.0 - np.sum(6.0 * nd) / budget)

    def constraints_jac(z):
        x, y, nd, _ = parts(z)
        jac = np.zeros((n + 1, 2 * n))
        jac[np.arange(n), np.arange(n)] = a * A * np.exp(-a * x) / gap
        jac[np.arange(n), n + np.arange(n)] = b * B * np.exp(-b * y) / gap
        jac[n, :n] = jac[n, n:] = -6.0 * nd / budget
        return jac

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = optimize.minimize(objective, z0, jac=objective_grad, method="SLSQP",
                                constraints=[{"type": "ineq", "fun": constraints,
                                              "jac": constraints_jac}],
                                options={"ftol": 1e-12, "maxiter": SLSQP_MAXITER})
    return {"objective": objective(res.x) * scale, "N": np.exp(res.x[:n]),
            "ok": bool(res.success), "message": str(res.message), "iterations": int(res.nit)}


def peers(sizes: list[int], repeats: int, skip_slsqp_above: int) -> list[dict]:
    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np

    import planner

    sys.path.insert(0, str(HERE.parent / "tests"))
    from _oracles import portfolio_gp

    rows = []
    for n in sizes:
        coefs, weight, demand, target = portfolio(n)
        model, items = planner_inputs(coefs, demand, target)
        free = planner.allocate(model, items, weight=weight)
        n_c, d_c = training_optimum(coefs, target)
        budget = 0.5 * (float(np.sum(6.0 * n_c * d_c)) + float(free.train_flops))

        def ours(model=model, items=items, weight=weight, budget=budget):
            return jax.block_until_ready(planner.allocate(model, items, {"train_budget": budget},
                                                          weight=weight))

        ours()  # compile
        port, wall, cpu = timed(ours, repeats)
        ref = float(port.objective)
        n_ours = np.asarray(port.plans.allocation.n_params)
        row = {"n": n, "planner": {"wall": wall, "cpu": cpu,
                                   "status": planner.Status(int(port.status)).name.lower()}}
        gp, wall, cpu = timed(lambda: portfolio_gp(coefs, weight, demand, objective="compute",
                                                   target=target, train_budget=budget), 1)
        row["cvxpy"] = {"wall": wall, "cpu": cpu, "status": gp["status"],
                        "objective": abs(gp["objective"] / ref - 1.0),
                        "N": float(np.max(np.abs(gp["N"] / n_ours - 1.0)))}
        if n <= skip_slsqp_above:
            sq, wall, cpu = timed(lambda: slsqp(coefs, weight, demand, target, budget), 1)
            row["slsqp"] = {"wall": wall, "cpu": cpu,
                            "status": "success" if sq["ok"] else sq["message"],
                            "iterations": sq["iterations"],
                            "objective": abs(sq["objective"] / ref - 1.0),
                            "N": float(np.max(np.abs(sq["N"] / n_ours - 1.0)))}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


# ------------------------------------------------------------------------------------ report
def mib(kib) -> str:
    return "—" if kib is None else f"{kib / 1024:,.0f} MiB"


def run_memory(row: dict) -> str:
    if row["run_peak_kib"] is None:
        return "—"
    return f"{mib(row['run_peak_kib'])} (+{mib(row['run_peak_kib'] - row['resident_kib'])})"


def seconds(s: float) -> str:
    return f"{s:.3g} s"


def report(args, coupled: list[tuple[dict, dict]], peer_rows: list[dict], info: dict,
           loads: tuple[float, float]) -> str:
    lines = [HEADING, ""]
    when = datetime.date.today().isoformat()
    lines += [f"Measured {when} by `python benchmarks/bench_allocate.py "
              f"{' '.join(sys.argv[1:])}`.".replace(" `.", "`."),
              f"Machine: {info['cpu']}; JAX backend {info['backend']}; {info['versions']}. "
              f"1-minute load average {loads[0]:.2f} at the start, {loads[1]:.2f} at the end "
              "(this benchmark's own work included; more than the number of cores means other "
              "jobs shared the machine): the ratios and the CPU times are the steadier "
              "figures.", ""]
    lines += ["The portfolio of `tests/test_allocate.py` (each item its own Chinchilla law, "
              "weight, lifetime demand 1e11 to 1e14 tokens and loss target), objective "
              "`\"compute\"`, one training budget halfway between the items' least training "
              "FLOP and what their separate optima train (it binds). Float64.", ""]
    lines += ["### Coupled against independent", "",
              "\"independent\": one batched solve of the items without the budget "
              "(`jax.jit(jax.vmap(planner.solve))`, the batched path of `planner solve`); "
              "\"coupled\": `planner.allocate` with the budget. Each in a fresh process, "
              f"compiled first, best of {args.repeats} calls (one at 1e6 items). "
              "\"Peak RSS, run\": "
              "the peak resident memory (`VmHWM`) during the timed calls, reset after "
              "compilation, and in brackets its rise above the resident memory at the "
              "reset (what the calls themselves add: JAX keeps compiled programs and "
              "buffers resident); \"process\": the peak of the whole process, "
              "compilation included.", "",
              "| items | chunk | independent (wall / CPU) | coupled (wall / CPU) | × independent "
              "(wall / CPU) | batched solves | peak RSS, run: independent / coupled | "
              "peak RSS, process: independent / coupled | optimal items | portfolio |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for ind, cou in coupled:
        if "error" in ind or "error" in cou:
            lines.append(f"| {ind['n']:,} | | failed: {ind.get('error') or cou.get('error')} "
                         "| | | | | | | |")
            continue
        lines.append(
            f"| {ind['n']:,} | {cou['chunk'] or 'all'} | {seconds(ind['wall'])} / "
            f"{seconds(ind['cpu'])} | {seconds(cou['wall'])} / {seconds(cou['cpu'])} | "
            f"{cou['wall'] / ind['wall']:.3g} / {cou['cpu'] / ind['cpu']:.3g} | "
            f"{cou['solves']} | {run_memory(ind)} / {run_memory(cou)} | "
            f"{mib(ind['process_peak_kib'])} / {mib(cou['process_peak_kib'])} | "
            f"{ind['optimal']:,} / {cou['optimal']:,} | {cou['status']}, price "
            f"{cou['price']:.4g}, residual {cou['residual']:.1e}, gap {cou['gap']:.1e} |")
    if peer_rows:
        lines += ["", "### Against cvxpy and SciPy", "",
                  "The same portfolio as one joint problem: cvxpy (the convex form of its "
                  "geometric program, `portfolio_gp` in `tests/_oracles.py`, Clarabel at "
                  "tolerance 1e-14; build and solve timed, one call) and SciPy SLSQP (log "
                  "variables, analytic gradients, `ftol` 1e-12, at most "
                  f"{SLSQP_MAXITER} iterations, from the items' training optima, on one "
                  "OpenBLAS thread; one call), against `planner.allocate` compiled, best of "
                  f"{args.repeats}, in the same process. \"Objective\": the relative "
                  "difference of the peer's optimum from planner's; \"N\": the largest "
                  "relative difference in an item's parameters.", "",
                  "| items | planner (wall / CPU) | cvxpy × planner (wall / CPU) | cvxpy "
                  "objective / N | cvxpy status | SLSQP × planner (wall / CPU) | SLSQP "
                  "objective / N | SLSQP status, iterations |",
                  "|---:|---:|---:|---|---|---:|---|---|"]
        for row in peer_rows:
            p, c = row["planner"], row["cvxpy"]
            s = row.get("slsqp")
            slsqp_cells = ("not run | | " if s is None else
                           f"{s['wall'] / p['wall']:.3g} / {s['cpu'] / p['cpu']:.3g} | "
                           f"{s['objective']:.1e} / {s['N']:.1e} | {s['status']}, "
                           f"{s['iterations']} |")
            lines.append(
                f"| {row['n']:,} | {seconds(p['wall'])} / {seconds(p['cpu'])} | "
                f"{c['wall'] / p['wall']:.3g} / {c['cpu'] / p['cpu']:.3g} | "
                f"{c['objective']:.1e} / {c['N']:.1e} | {c['status']} | {slsqp_cells}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--full", action="store_true", help="also 1e6 items, in chunks")
    parser.add_argument("--chunk", type=int, default=100_000,
                        help="items per batched solve of allocate at 1e6 items")
    parser.add_argument("--peer-sizes", default="30,100,300")
    parser.add_argument("--slsqp-max", type=int, default=300,
                        help="the largest portfolio given to SLSQP")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        method, n, chunk, repeats = args.child
        print(json.dumps(child(method, int(n), int(chunk) or None, int(repeats))))
        return

    sys.path.insert(0, str(HERE))
    import _results

    sizes = [int(float(s)) for s in args.sizes.split(",") if s]
    if args.full:
        sizes.append(1_000_000)
    load_start = os.getloadavg()[0]
    coupled = []
    for n in sizes:
        chunk = args.chunk if n > args.chunk else None
        repeats = 1 if n >= 1_000_000 else args.repeats
        pair = (run_child("independent", n, None, repeats),
                run_child("coupled", n, chunk, repeats))
        print(json.dumps(pair), file=sys.stderr, flush=True)
        coupled.append(pair)
    peer_sizes = [int(s) for s in args.peer_sizes.split(",") if s]
    peer_rows = peers(peer_sizes, args.repeats, args.slsqp_max) if peer_sizes else []
    info = _results.machine(("jax", "jaxlib", "scipy", "cvxpy", "clarabel"))
    text = report(args, coupled, peer_rows, info, (load_start, os.getloadavg()[0]))
    print(text)
    if not args.no_write:
        _results.write_section(HEADING, text)


if __name__ == "__main__":
    main()
