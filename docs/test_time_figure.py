# Makes docs/figures/test_time.png: difficulty-adaptive samples per query against uniform
# best-of-N. The questions are the Codex success link's (SuccessLink.codex2021) at the
# reducible loss of two Codex sizes (300M and 12B, codex_code_loss), cut into 100 classes of
# equal share by the quantiles of their per-sample success (difficulty_classes). Left: the
# samples each class gets at an average of 16 per query, against its pass@1. Right: the
# efficiency (the budget uniform sampling needs to match the adaptive plan's success rate,
# over the adaptive budget) against the average budget. Run:
# python docs/test_time_figure.py [OUTPUT.png]
import sys

import jax
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import planner  # noqa: E402
from planner.techniques import SuccessLink, codex_code_loss, difficulty_classes  # noqa: E402

jax.config.update("jax_enable_x64", True)
link = SuccessLink.codex2021()
budgets = np.geomspace(1.5, 1024, 24)
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
for size, colour in ((3e8, "C0"), (12e9, "C1")):
    alpha, beta = link.beta_params(codex_code_loss(size))
    weight, p = difficulty_classes(alpha, beta, 100)
    plan = planner.techniques.allocate_samples(p, 16.0, weight=weight)
    left.loglog(np.asarray(p), np.asarray(plan.n_samples), "o", ms=3, color=colour,
                label=f"{size:.2g} parameters (score {float(plan.objective):.3f}, "
                f"uniform {float(plan.uniform_score):.3f})")
    eff = [float(planner.techniques.allocate_samples(p, b, weight=weight).efficiency)
           for b in budgets]
    right.semilogx(budgets, eff, "-", color=colour, label=f"{size:.2g} parameters")
left.axhline(16.0, color="grey", lw=0.8, ls="--", label="uniform: 16 samples each")
left.set_xlabel("pass@1 of the class")
left.set_ylabel("samples per query")
left.set_title("Samples where they pay (16 per query on average)")
left.legend(fontsize=7)
right.axhline(4.0, color="grey", lw=0.8, ls=":", label="Snell et al. 2024: > 4x")
right.set_xlabel("average samples per query")
right.set_ylabel("efficiency against uniform best-of-N")
right.set_title("Efficiency of the adaptive plan")
right.legend(fontsize=7)
fig.tight_layout()
fig.savefig(sys.argv[1] if len(sys.argv) > 1 else "docs/figures/test_time.png", dpi=130)
