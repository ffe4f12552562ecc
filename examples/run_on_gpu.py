# Solve a batch of scenarios on whatever device JAX finds: a GPU when one is present (with a
# CUDA build of jaxlib), else the CPU.
#
# 20,000 scenarios (target losses and lifetime demands drawn at random, Sardana et al.'s
# Chinchilla law) are placed on the first device and solved there by one jit-compiled vmap.
# Prints the device, where the plans live, how many are optimal, and the solve time after
# compilation. The same code runs unchanged on CPU, GPU or TPU; float32 is the fast choice on
# GPUs (drop the x64 line).
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp

import planner

device = jax.devices()[0]
print(f"device: {device.platform} ({device.device_kind})")

law = planner.Chinchilla.sardana2024()
model = planner.Pipeline(planner.Pretraining(law))
solve = jax.jit(jax.vmap(lambda s: planner.solve(model, s, throw=False)))

k1, k2 = jax.random.split(jax.random.key(0))
n = 20_000
scenarios = planner.Scenario(
    target_loss=jax.random.uniform(k1, (n,), minval=1.75, maxval=2.5),
    inference_demand=10.0 ** jax.random.uniform(k2, (n,), minval=9.0, maxval=15.0),
)
scenarios = jax.device_put(scenarios, device)
solve(scenarios).status.block_until_ready()  # compile
start = time.perf_counter()
plans = solve(scenarios)
optimal = int(jnp.sum(plans.status == planner.Status.OPTIMAL).block_until_ready())
seconds = time.perf_counter() - start
print(f"plans on: {', '.join(sorted(str(d) for d in plans.status.devices()))}")
print(f"{optimal} of {n} scenarios optimal")
print(f"{seconds:.2f} s after compilation, {1e6 * seconds / n:.1f} us per scenario")
