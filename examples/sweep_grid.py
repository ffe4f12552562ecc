# Sweep a grid of scenarios in one batched solve and summarise the statuses.
#
# 40 target losses x 50 lifetime demands (2,000 scenarios) under a cap of 3e10 parameters, with
# Sardana et al.'s Chinchilla law, solved with one jit-compiled vmap. Targets at or below the
# irreducible loss E = 1.69 are infeasible, and so are targets that no model within the cap
# reaches; each row gets its own status and the batch never stops. Prints the count of each
# status with its message, and the range of optimal model sizes.
import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np

import planner

law = planner.Chinchilla.sardana2024()
model = planner.Pipeline(planner.Pretraining(law))
solve = jax.jit(jax.vmap(lambda s: planner.solve(model, s, throw=False)))

loss, demand = jnp.meshgrid(jnp.linspace(1.65, 2.4, 40), jnp.logspace(9, 15, 50))
scenarios = planner.Scenario(target_loss=loss.ravel(), inference_demand=demand.ravel(),
                             max_params=3e10).broadcast()
plans = solve(scenarios)

status = np.asarray(plans.status)
print(f"{status.size} scenarios")
for code in planner.Status:
    print(f"{np.sum(status == code):5d}  {planner.STATUS_MESSAGES[code]}")
optimal = status == planner.Status.OPTIMAL
n_params = np.asarray(plans.allocation.n_params)[optimal]
print(f"optimal plans use {n_params.min():.3e} to {n_params.max():.3e} parameters")
