# Makes docs/figures/allocation.png: how a portfolio of 20 items (models, each with its own loss
# target, lifetime demand of 1e11 to 1e14 tokens and weight, under Hoffmann et al.'s law) moves
# as one shared training budget tightens from what the items train alone (their lifetime
# optima) towards the least they can train (each at its training optimum): each item's size N
# relative to its size alone, and the training budget's price. Objective "compute": every item
# meets its target at the least weighted lifetime compute. Run:
# python docs/allocation_figure.py [OUTPUT.png]
import sys

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import planner  # noqa: E402

jax.config.update("jax_enable_x64", True)
rng = np.random.default_rng(0)
n = 20
law = planner.Chinchilla.hoffmann2022()
model = planner.Pipeline(planner.Pretraining(law))
target = rng.uniform(2.1, 2.5, n)
demand = 10.0 ** rng.uniform(11, 14, n)
weight = rng.uniform(0.5, 2.0, n)
items = planner.Scenario(target_loss=jnp.asarray(target), inference_demand=jnp.asarray(demand))

free = planner.allocate(model, items, weight=weight)
n_c, d_c = law.loss_optimal(jnp.asarray(target))  # each item's training optimum
least, alone = float(jnp.sum(6 * n_c * d_c)), float(free.train_flops)
# 8 budgets from 95% of the way down to 5% of the way (in log FLOP); beyond them the price
# runs to 0 (at what the items train alone) and to infinity (at the least they can train)
budgets = np.exp(np.log(least) + np.linspace(0.95, 0.05, 8) * np.log(alone / least))
ports = [planner.allocate(model, items, {"train_budget": c}, weight=weight) for c in budgets]
sizes = np.stack([np.asarray(p.plans.allocation.n_params) for p in ports])  # (budget, item)
prices = np.array([float(p.prices["train_budget"]) for p in ports])
n_free = np.asarray(free.plans.allocation.n_params)
ratio = sizes / n_free
print(f"least {least:.4g}, alone {alone:.4g} training FLOP; budgets {budgets[0]:.4g} to "
      f"{budgets[-1]:.4g}")
print("prices", " ".join(f"{p:.3g}" for p in prices))
print(f"N / N alone at the tightest budget: {ratio[-1].min():.3g} to {ratio[-1].max():.3g}; "
      f"training optimum / N alone: {(n_c / n_free).min():.3g} to {(n_c / n_free).max():.3g}")
print("every size grows as the budget tightens:", bool(np.all(np.diff(ratio, axis=0) >= 0)))
low, high = np.argsort(demand)[:5], np.argsort(demand)[-5:]
print("mean N / N alone at each budget, 5 least / 5 most demand:",
      " ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(ratio[:, low].mean(1), ratio[:, high].mean(1))))

share = budgets / alone  # the budget as a share of what the items train alone
fig, (left, right) = plt.subplots(1, 2, figsize=(9.6, 4.0))
colours = plt.cm.viridis((np.log10(demand) - 11) / 3)
for i in np.argsort(demand):
    left.plot(share, ratio[:, i], "o-", ms=3, lw=1, color=colours[i])
    left.plot(least / alone, float(n_c[i] / n_free[i]), "x", ms=5, color=colours[i])
for ax in (left, right):
    ax.axvline(least / alone, color="0.6", ls=":", lw=1)
    ax.text(least / alone, 0.02, " least", transform=ax.get_xaxis_transform(), va="bottom",
            fontsize=8)
    ax.set_xlim(least / alone - 0.02, 1.02)
    ax.set_xlabel("shared training budget / training FLOP of the items alone")
left.set(yscale="log", ylabel="N / N trained alone",
         title="Items' sizes (x: each one's training optimum)")
bar = fig.colorbar(plt.cm.ScalarMappable(cmap="viridis", norm=plt.Normalize(11, 14)), ax=left)
bar.set_label("log10 lifetime demand (tokens)")
right.plot(share, prices, "ko-", ms=4)
right.set(yscale="log", ylabel="price (lifetime FLOP per training FLOP)",
          title="The training budget's price")
fig.tight_layout()
fig.savefig(sys.argv[1] if len(sys.argv) > 1 else "docs/figures/allocation.png", dpi=120)
