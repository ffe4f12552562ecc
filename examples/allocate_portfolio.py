# Three dozen models sharing one training cluster: each with its own law (A and B within 20% of
# Hoffmann et al.'s), loss target and lifetime demand, all reaching their targets at the least
# lifetime compute when their training must fit 60% of what they would train alone.
import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np

import planner

rng = np.random.default_rng(1)
n = 36
base = planner.Chinchilla.hoffmann2022()
law = planner.Chinchilla(E=base.E, A=base.A * jnp.asarray(rng.uniform(0.8, 1.2, n)),
                         B=base.B * jnp.asarray(rng.uniform(0.8, 1.2, n)),
                         alpha=base.alpha, beta=base.beta)  # arrays: one law per item
model = planner.Pipeline(planner.Pretraining(law))
items = planner.Scenario(target_loss=jnp.asarray(rng.uniform(2.1, 2.5, n)),
                         inference_demand=jnp.asarray(10.0 ** rng.uniform(11, 14, n)))

alone = planner.allocate(model, items)  # no budget: every item at its own lifetime optimum
budget = 0.6 * float(alone.train_flops)
port = planner.allocate(model, items, {"train_budget": budget})
print(f"{n} items, training budget {budget:.3e} FLOP "
      f"({float(port.usage['train_budget']) / budget:.6f} used): "
      f"{planner.Status(int(port.status)).name.lower()}")
print(f"price of training: {float(port.prices['train_budget']):.4f} FLOP of lifetime compute "
      f"per FLOP; lifetime compute {float(port.objective):.4e} "
      f"(alone {float(alone.objective):.4e})")
print(" item     demand    N alone   N shared   D shared")
for i in range(0, n, 9):
    print(f"{i:5d} {float(items.inference_demand[i]):10.2e} "
          f"{float(alone.plans.allocation.n_params[i]):10.3e} "
          f"{float(port.plans.allocation.n_params[i]):10.3e} "
          f"{float(port.plans.allocation.n_tokens[i]):10.3e}")
