# The cheapest plan in dollars: train on H100s, serve on A100s under a 30 ms/token SLO.
import jax

import planner

jax.config.update("jax_enable_x64", True)
law = planner.Chinchilla.sardana2024()
deployment = planner.Deployment(
    train=planner.Hardware.nvidia_h100_sxm(),  # $2.00/h, 989 TFLOP/s BF16, MFU 0.5
    serve=planner.Hardware.nvidia_a100_sxm_80gb(),  # $1.50/h, 2.039 TB/s, 80GB
    prompt_tokens=4.0,  # prompt tokens per generated token (1000 in, 250 out)
    context_tokens=1250.0,  # KV cache per sequence
)
model = planner.Pipeline(planner.Pretraining(law), deployment)
scenario = planner.Scenario(target_loss=2.0, inference_demand=1e13, max_latency=0.03,
                            demand_rate=2e5)  # generated tokens: lifetime, peak per second
plan = planner.solve(model, scenario, objective="dollars")
flop = planner.solve(planner.Pipeline(planner.Pretraining(law)),
                     planner.Scenario(target_loss=2.0, inference_demand=1e13))
s = plan.serving
print(f"N = {float(plan.allocation.n_params):.4g}, D = {float(plan.allocation.n_tokens):.4g}"
      f" (FLOP-optimal N = {float(flop.allocation.n_params):.4g})")
print(f"dollars {float(s.dollars):.4g} = train {float(s.train_dollars):.4g}"
      f" + inference {float(s.inference_dollars):.4g}")
print(f"batch {float(s.serving_batch):.4g}, {1e3 * float(s.latency):.4g} ms/token, "
      f"{float(s.memory) / 1e9:.4g} GB per replica, {float(s.replicas):.4g} replicas")
