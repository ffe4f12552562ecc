# Compose techniques: pretraining, then pruning, then repeated sampling.
#
# Each stage of a Pipeline maps the running outcome to a new one. Pruning multiplies training
# compute by the IMP factor and inference by the density d, and adds a loss penalty;
# RepeatedSampling multiplies inference by the samples k and turns the loss into a success rate
# (pass@k through a Codex-calibrated link). First, the three stages evaluated at a 7B model:
# inference costs multiply (2N d k per token) and pruning's loss penalty costs success. Then N,
# D and d planned jointly for loss 2.0 as lifetime demand grows, against the dense plan.
import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp

import planner
from planner._techniques.sampling import RepeatedSampling, SuccessLink

law = planner.Chinchilla.sardana2024()
full = planner.Pipeline(planner.Pretraining(law), planner.Pruning(law),
                        RepeatedSampling(SuccessLink.codex2021()))
print("variables:", full.variables)
for d, k in ((1.0, 1.0), (0.25, 1.0), (1.0, 10.0), (0.25, 10.0)):
    out = full(planner.Allocation(n_params=7e9, n_tokens=1.4e12, density=d, n_samples=k))
    print(f"d = {d:4.2f}, k = {k:2.0f}: inference {out.inference_flops:.2e} FLOP/query, "
          f"loss {out.loss:.4f}, pass@k {out.score:.3f}")

pruned = planner.Pipeline(planner.Pretraining(law), planner.Pruning(law))
demand = jnp.array([1e13, 1e14, 1e15, 1e16, 1e17])  # lifetime inference tokens
scenarios = planner.Scenario(target_loss=2.0, inference_demand=demand).broadcast()
dense, prune = (jax.jit(jax.vmap(lambda s, m=m: planner.solve(m, s, throw=False)))(scenarios)
                for m in (planner.Pipeline(planner.Pretraining(law)), pruned))
print("        T   dense N*  pruned N*  density  compute pruned/dense  statuses")
for i, t in enumerate(demand):
    status = "/".join(planner.Status(int(p.status[i])).name.lower() for p in (dense, prune))
    print(f"{t:9.0e} {dense.allocation.n_params[i]:10.3e} {prune.allocation.n_params[i]:10.3e} "
          f"{prune.allocation.density[i]:8.3f} {prune.total_flops[i] / dense.total_flops[i]:21.3f}"
          f"  {status}")
