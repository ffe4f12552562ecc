"""The coupled allocation over two processes on loopback, two (virtual CPU) devices each.

Each process joins the run with `planner._shard.initialize` (as `planner solve
--coordinator ...` does) and calls `planner.allocate(..., devices=jax.devices())` with the
same portfolio (SPMD): every batched solve splits the items over the four devices of both
processes, each process placing only its own devices' rows, and the budget's sums are reduced
across the processes inside the compiled program. The test checks that

- each process held only its own half of the items in the batched solves,
- both processes return the same portfolio, bit for bit (the host's Newton loop took the same
  steps in each), with every item's plan on the process itself (host-usable arrays),
- it is the portfolio that one process on one device finds (objective to 1e-12 relative,
  price and every item's N and D to 1e-9), and the one-problem geometric program of the
  portfolio (cvxpy, `_oracles.portfolio_gp`) agrees with both; the budget is met exactly and
  every item reaches its target, recomputed here from the plans' N and D.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from _oracles import portfolio_gp
from test_allocate import least_train, portfolio
from test_distributed import N_PROCESSES, ROOT, finish, free_port, worker_env

import planner
from planner import Scenario, Status

N_ITEMS = 37  # three chunks of 16 (the last padded), each split over four devices
CHUNK = 16

_WORKER = r"""
import json, sys
import jax
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
import jax.numpy as jnp
import numpy as np
sys.path.insert(0, {tests!r})
import planner
from planner import _allocate
from planner._shard import initialize
from test_allocate import least_train, portfolio

port, me, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
initialize(f"127.0.0.1:{{port}}", 2, me, timeout=120)
assert jax.process_index() == me and jax.process_count() == 2
assert len(jax.local_devices()) == 2 and len(jax.devices()) == 4

# the rows of each piece this process holds, as the search hands it to the compiled solve
held = []
solve = _allocate._evaluate_sharded_jit
def spy(objective, budgets, tangents, items, *rest):
    held.append([items.weight.shape[0], sum(s.data.shape[0] for s in
                                             items.weight.addressable_shards)])
    return solve(objective, budgets, tangents, items, *rest)
_allocate._evaluate_sharded_jit = spy

model, coefs, weight, demand, target = portfolio({n})
items = planner.Scenario(target_loss=jnp.asarray(target), inference_demand=jnp.asarray(demand))
budget = {{"train_budget": 1.02 * least_train(coefs, target).sum()}}
port = planner.allocate(model, items, budget, weight=weight, devices=jax.devices(),
                        chunk={chunk})
plans = port.plans
assert all(leaf.is_fully_addressable for leaf in jax.tree.leaves(plans))
result = {{"objective": float(port.objective), "price": float(port.prices["train_budget"]),
          "status": int(port.status), "solves": port.solves, "held": held,
          "item_status": np.asarray(plans.status).tolist(),
          "n": np.asarray(plans.allocation.n_params).tolist(),
          "d": np.asarray(plans.allocation.n_tokens).tolist()}}
with open(out, "w") as handle:
    json.dump(result, handle)
print("process", me, "done", flush=True)
"""


def test_allocate_over_two_processes_is_the_one_process_portfolio(tmp_path):
    model, coefs, weight, demand, target = portfolio(N_ITEMS)
    capacity = 1.02 * least_train(coefs, target).sum()
    code = _WORKER.format(tests=str(Path(__file__).parent), n=N_ITEMS, chunk=CHUNK)
    port = free_port()
    outputs = [tmp_path / f"process-{i}.json" for i in range(N_PROCESSES)]
    procs = [subprocess.Popen([sys.executable, "-c", code, str(port), str(i), str(outputs[i])],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=worker_env(), cwd=ROOT)
             for i in range(N_PROCESSES)]

    def one_process():
        """The one-process, one-device portfolio, in this process, while the others work."""
        items = Scenario(target_loss=jnp.asarray(target), inference_demand=jnp.asarray(demand))
        return planner.allocate(model, items, {"train_budget": capacity}, weight=weight)

    one, logs = finish(procs, one_process)
    for i, (stdout, _) in enumerate(logs):
        assert f"process {i} done" in stdout
    results = [json.loads(path.read_text()) for path in outputs]

    # every batched solve split each piece of 16 items over the four devices: each process
    # held the 8 rows of its two
    for result in results:
        assert result["held"] and all(h == [CHUNK, CHUNK // 2] for h in result["held"])
    # the same portfolio on both processes, bit for bit
    assert results[0] == {**results[1], "held": results[0]["held"]}
    multi = results[0]
    assert multi["status"] == Status.OPTIMAL
    np.testing.assert_array_equal(multi["item_status"], np.asarray(one.plans.status))
    assert multi["solves"] == one.solves
    np.testing.assert_allclose(multi["objective"], float(one.objective), rtol=1e-12)
    np.testing.assert_allclose(multi["price"], float(one.prices["train_budget"]), rtol=1e-9)
    np.testing.assert_allclose(multi["n"], np.asarray(one.plans.allocation.n_params),
                               rtol=1e-9)
    np.testing.assert_allclose(multi["d"], np.asarray(one.plans.allocation.n_tokens),
                               rtol=1e-9)

    # independent checks of the plans: the budget met, every target reached (the law by hand)
    n, d = np.asarray(multi["n"]), np.asarray(multi["d"])
    E, A, B, alpha, beta = coefs.T
    np.testing.assert_allclose(np.sum(6.0 * n * d), capacity, rtol=1e-9)
    np.testing.assert_allclose(E + A * n ** -alpha + B * d ** -beta, target, rtol=1e-9)
    np.testing.assert_allclose(multi["objective"],
                               np.sum(weight * (6.0 * n * d + 2.0 * n * demand)), rtol=1e-12)
    # and the portfolio as one geometric program
    gp = portfolio_gp(coefs, weight, demand, objective="compute", target=target,
                      train_budget=capacity)
    assert gp["status"] in ("optimal", "optimal_inaccurate")
    np.testing.assert_allclose(multi["objective"], gp["objective"], rtol=1e-6)
    np.testing.assert_allclose(n, gp["N"], rtol=1e-5)
    np.testing.assert_allclose(multi["price"], gp["prices"]["train_budget"], rtol=1e-6)
