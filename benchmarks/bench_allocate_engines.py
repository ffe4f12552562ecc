"""Engines for the budgets' prices: Newton on the log prices (the default) against an optax
transformation on the dual first (`optimizer=`), on the same portfolio.

The portfolio of `tests/test_allocate.py` at `--items` items (default 300), objective
`"loss"`, a training budget of 6e24·n/40 FLOP and a lifetime inference budget of 3e23·n/40
(both bind). Each engine: `planner.allocate` called twice with the same optimizer object;
the first call includes compilation, the second reuses it (the optax phase is compiled once
per problem structure and optimizer object, the data being arguments). Reported: status,
batched solves, seconds, and the largest relative difference of the prices from the default
engine's.

Run: `python benchmarks/bench_allocate_engines.py [--items N]`; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import planner  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_allocate import portfolio  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=300)
    args = parser.parse_args()
    n = args.items
    model, _, weight, demand, _ = portfolio(n)
    scen = planner.Scenario(inference_demand=jnp.asarray(demand))
    budgets = {"train_budget": 6e24 * n / 40, "inference_budget": 3e23 * n / 40}
    engines = {
        "Newton (default)": None,
        "optax.lbfgs(), 10 dual steps, then Newton": (optax.lbfgs(), 10),
        "optax.adam(0.3), 50 dual steps, then Newton": (optax.adam(0.3), 50),
    }
    rows, reference = [], None
    for name, engine in engines.items():
        kwargs = {} if engine is None else {"optimizer": engine[0],
                                            "optimizer_steps": engine[1]}
        times = []
        for _ in range(2):
            start = time.perf_counter()
            port = planner.allocate(model, scen, budgets, objective="loss", weight=weight,
                                    throw=False, **kwargs)
            jax.block_until_ready(port.objective)
            times.append(time.perf_counter() - start)
        prices = np.array([float(port.prices[b]) for b in budgets])
        if reference is None:
            reference = prices
        rows.append((name, planner.Status(int(port.status)).name.lower(), port.solves,
                     times[0], times[1], float(np.max(np.abs(prices / reference - 1.0)))))
    print(f"{n} items; {platform.processor() or platform.machine()}, "
          f"JAX {jax.__version__} on {jax.default_backend()}")
    print("| engine | status | batched solves | first call (s) | second call (s) "
          "| prices vs default |")
    print("|---|---|---:|---:|---:|---:|")
    for name, status, solves, first, second, diff in rows:
        print(f"| {name} | {status} | {solves} | {first:.3g} | {second:.3g} | {diff:.1e} |")


if __name__ == "__main__":
    main()
