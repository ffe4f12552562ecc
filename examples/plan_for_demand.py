# Plan a model for a known inference demand.
#
# A model must reach loss 2.0 (Chinchilla law with Sardana et al.'s constants) and will then
# generate T tokens over its lifetime. For each T this prints the plan with the least lifetime
# compute (training 6ND + inference 2N per token x T) and its compute relative to the
# training-optimal (Chinchilla) model of the same loss; then the same plans when every token
# must be decoded within 5 ms on one H100 at batch size 1.
import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp

import planner

law = planner.Chinchilla.sardana2024()
model = planner.Pipeline(planner.Pretraining(law))
h100 = planner.Hardware.nvidia_h100_sxm()
solve = jax.jit(jax.vmap(lambda s: planner.solve(model, s, hardware=h100, throw=False)))

demand = jnp.array([0.0, 1e11, 1e12, 1e13, 1e14])  # lifetime inference tokens T
n_c, d_c = law.loss_optimal(2.0)  # the training-optimal model for loss 2.0
for latency in (1.0, 0.005):  # seconds per generated token
    scenarios = planner.Scenario(target_loss=2.0, inference_demand=demand,
                                 max_latency=latency).broadcast()
    plans = solve(scenarios)
    print(f"latency bound {1e3 * latency:g} ms per token: N <= {h100.max_params(latency):.3e}")
    print("        T        N*        D*  D*/N*  vs Chinchilla  ms/token  status")
    for t, n, d, total, status in zip(demand, plans.allocation.n_params,
                                      plans.allocation.n_tokens, plans.total_flops,
                                      plans.status):
        ratio = total / (6 * n_c * d_c + 2 * n_c * t)
        ms = 1e3 * h100.step_time(n)
        name = planner.Status(int(status)).name.lower()
        print(f"{t:9.0e} {n:9.3e} {d:9.3e} {d / n:6.0f} {ratio:14.4f} {ms:9.3f}  {name}")
