# Makes docs/figures/serving_dollars.png: the dollar-optimal model size against lifetime
# demand for two latency SLOs, beside the FLOP-optimal size (Sardana et al.'s lifetime-compute
# plan), for loss 2.0 under Sardana et al.'s law, trained and served on H100 SXM at Sardana et
# al.'s $2.00 per GPU-hour, requests of 1000 prompt and 250 generated tokens, a KV cache of
# 1250 tokens per sequence. Run: python docs/serving_figure.py [OUTPUT.png]
import sys

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import planner  # noqa: E402

jax.config.update("jax_enable_x64", True)
law = planner.Chinchilla.sardana2024()
h100 = planner.Hardware.nvidia_h100_sxm()
deployment = planner.Deployment(train=h100, serve=h100, prompt_tokens=1000 / 250,
                                context_tokens=1250.0)
priced = planner.Pipeline(planner.Pretraining(law), deployment)
demand = jnp.logspace(9, 15, 25)  # lifetime generated tokens


def sizes(model, objective, **fields):
    def one(t):
        scenario = planner.Scenario(target_loss=2.0, inference_demand=t, **fields)
        return planner.solve(model, scenario, objective=objective, throw=False)
    return jax.vmap(one)(demand)


flop = sizes(planner.Pipeline(planner.Pretraining(law)), "compute")
fig, ax = plt.subplots(figsize=(6.4, 4.0))
ax.plot(demand, flop.allocation.n_params, "k--", label="FLOP-optimal (any SLO)")
for slo, colour in ((0.030, "tab:blue"), (0.010, "tab:red")):
    plans = sizes(priced, "dollars", max_latency=slo)
    ok = plans.status == planner.Status.OPTIMAL
    print(f"SLO {slo * 1e3:g} ms: {int(ok.sum())} of {ok.size} optimal; N at 1e9 / 1e15 tokens "
          f"{float(plans.allocation.n_params[0]):.3g} / {float(plans.allocation.n_params[-1]):.3g}"
          f"; batch {float(plans.serving.serving_batch[0]):.3g} / "
          f"{float(plans.serving.serving_batch[-1]):.3g}")
    ax.plot(demand[ok], plans.allocation.n_params[ok], color=colour,
            label=f"dollar-optimal, {slo * 1e3:g} ms per token")
print(f"FLOP-optimal N at 1e9 / 1e15 tokens {float(flop.allocation.n_params[0]):.3g} / "
      f"{float(flop.allocation.n_params[-1]):.3g}")
ax.set(xscale="log", yscale="log", xlabel="lifetime demand (generated tokens)",
       ylabel="parameters N", title="Loss 2.0, H100 training and serving")
ax.legend()
fig.tight_layout()
fig.savefig(sys.argv[1] if len(sys.argv) > 1 else "docs/figures/serving_dollars.png", dpi=120)
