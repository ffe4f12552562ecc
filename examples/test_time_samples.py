# Samples where they pay: the questions a 300M-parameter Codex model meets (its per-question
# success from the Codex success link), cut into 100 classes by difficulty, under an average of
# 16 samples per query with a perfect verifier, against giving every query the same 16; and
# the price of the budget: the success one more sample per query would buy.
import jax

jax.config.update("jax_enable_x64", True)
import numpy as np

from planner.techniques import (
    SuccessLink,
    allocate_samples,
    codex_code_loss,
    difficulty_classes,
)

link = SuccessLink.codex2021()
alpha, beta = link.beta_params(codex_code_loss(3e8))
weight, p = difficulty_classes(alpha, beta, 100)  # hardest first

plan = allocate_samples(p, 16.0, weight=weight)
k = np.asarray(plan.n_samples)
print(f"adaptive: success {float(plan.objective):.4f} at 16 samples per query "
      f"(uniform best-of-16: {float(plan.uniform_score):.4f})")
print(f"uniform sampling needs {float(plan.efficiency):.3f}x the budget to match")
hopeless = int(np.argmax(k > 1))  # the hardest classes, where a second sample does not pay
print(f"one sample for the {hopeless} hardest classes (pass@1 up to "
      f"{float(p[hopeless - 1]):.2e}), at most {k.max():.1f} for a class")
print(f"one more sample per query buys {float(plan.price):.5f} of success")
