# Compose techniques: pretraining, then pruning, then repeated sampling, planned jointly.
#
# Each stage of a Pipeline maps the running outcome to a new one. Pruning multiplies training
# compute by the IMP factor and inference by the density d, and adds a loss penalty;
# RepeatedSampling multiplies inference by the samples k and turns the loss into a success rate
# (pass@k through a Codex-calibrated link). First, the stages evaluated at a 7B model: costs
# multiply (2N d k per generated token) and pruning's loss penalty costs success. Then N, D, d
# and k planned together for pass@k >= 0.6 as the number of queries (1000 tokens each) grows.
import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp

import planner

law = planner.Chinchilla.sardana2024()
stages = (planner.Pruning(law), planner.RepeatedSampling(planner.SuccessLink.codex2021()))
model = planner.Pipeline(planner.Pretraining(law, tokens_per_query=1000.0), *stages)
print("variables:", model.variables)
for d, k in ((1.0, 1.0), (0.25, 1.0), (1.0, 10.0), (0.25, 10.0)):
    out = model(planner.Allocation(n_params=7e9, n_tokens=1.4e12, density=d, n_samples=k))
    print(f"d = {d:4.2f}, k = {k:2.0f}: {out.inference_flops_per_unit:.2e} FLOP per query, "
          f"loss {out.loss:.4f}, pass@k {out.score:.3f}")

queries = jnp.array([1e5, 1e7, 1e9, 1e11])  # lifetime queries
scenarios = planner.Scenario(target_score=0.6, inference_demand=queries).broadcast()
plans = jax.jit(jax.vmap(lambda s: planner.solve(model, s, throw=False)))(scenarios)
print("  queries         N*   D*/N*  density  samples  training share  status")
for i, q in enumerate(queries):
    a = plans.allocation
    share = plans.outcome.train_flops[i] / plans.total_flops[i]
    print(f"{q:9.0e} {a.n_params[i]:10.3e} {a.n_tokens[i] / a.n_params[i]:7.0f} "
          f"{a.density[i]:8.3f} {a.n_samples[i]:8.1f} {share:15.2f}  "
          f"{planner.Status(int(plans.status[i])).name.lower()}")
