# Compose techniques: pretraining followed by pruning, planned jointly.
#
# A Pipeline chains stages: Pretraining(law) maps (N, D) to compute and loss, then Pruning
# (iterative magnitude pruning to density d) multiplies training compute by the IMP factor,
# inference compute by d, and adds a loss penalty on the parameter term. For loss 2.0 and
# growing lifetime demand, prints the least-compute plan with and without pruning: once
# inference dominates, the planner prunes, and it keeps a larger dense model to prune, because
# overtraining and pruning pull the same lever (the parameter count served).
import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp

import planner

law = planner.Chinchilla.sardana2024()
dense = planner.Pipeline(planner.Pretraining(law))
pruned = planner.Pipeline(planner.Pretraining(law), planner.Pruning(law))
print("stages:", [type(stage).__name__ for stage in (pruned.base, *pruned.techniques)])
print("variables:", pruned.variables)

demand = jnp.array([1e13, 1e14, 1e15, 1e16, 1e17])  # lifetime inference tokens
scenarios = planner.Scenario(target_loss=2.0, inference_demand=demand).broadcast()
plans = {name: jax.jit(jax.vmap(lambda s, m=model: planner.solve(m, s, throw=False)))(scenarios)
         for name, model in (("dense", dense), ("pruned", pruned))}

print("        T   dense N*  pruned N*  density  served N*d  compute pruned/dense  statuses")
for i, t in enumerate(demand):
    d, p = plans["dense"], plans["pruned"]
    n, density = p.allocation.n_params[i], p.allocation.density[i]
    status = "/".join(planner.Status(int(x.status[i])).name.lower() for x in (d, p))
    print(f"{t:9.0e} {d.allocation.n_params[i]:10.3e} {n:10.3e} {density:8.3f} "
          f"{n * density:11.3e} {p.total_flops[i] / d.total_flops[i]:21.3f}  {status}")
