"""What both trade-off tables share: the report's numbers, the efficient-exchange window and
the batched inner solve of a dense Chinchilla model under an inference cap."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from planner import Chinchilla, Pipeline, Pretraining, Scenario, constraint_names, solve

MAX_RATE = 6.0
"""The report's "efficient exchange" cutoff on $|d\\log TC/d\\log IC|$ (Villalobos & Atkinson
2023: its summary figure's efficient region, where the marginal rate is at most 6)."""

# The report's summary table, (training, inference) OOM (Villalobos & Atkinson 2023, "Trading
# Off Compute in Training and Inference", its summary table and abstract). A number is a
# point; a (low, high) pair a range: the combination is the text's "realistic combined spans
# 2-3 OOM", on both axes.
REPORTED: dict[str, tuple[float | tuple[float, float], float | tuple[float, float]]] = {
    "scaling_policy": (1.2, 0.7),
    "pruning": (1.0, 1.0),
    "mcts": (1.6, 1.6),
    "pass_at_k": (3.0, 6.0),
    "n_at_k": (1.0, 1.45),
    "combined": ((2.0, 3.0), (2.0, 3.0)),
}
REPORTED_COMBINED_RANGE: tuple[float, float] = REPORTED["combined"][0]
"""The report's "realistic combined spans 2–3 OOM" (the same on both axes)."""


def reported_range(reported) -> tuple[float, float]:
    """A reported number or range as a (low, high) range."""
    return (float(reported), float(reported)) if np.isscalar(reported) else tuple(reported)


def gap_to_report(span: float, reported) -> float:
    """Planner minus report in OOM: to the number, or to the nearer end of a range (0 inside
    it)."""
    lo, hi = reported_range(reported)
    return span - hi if span > hi else (span - lo if span < lo else 0.0)


# ------------------------------------------------------------------------------ spans
def window_span(log_ic, log_tc, rate, max_rate: float = MAX_RATE) -> dict:
    """The efficient-exchange part of a sampled Pareto frontier and its span in OOM.

    `log_ic` (increasing) and `log_tc` are $\\log_{10}$ inference and training compute along
    the frontier, `rate` its exchange rate $|d\\log TC/d\\log IC|$ there (decreasing along it
    for a convex frontier). The efficient region is where $1/R \\le$ rate $\\le R$ (both
    computes traded at no worse than $R$:1); each end is interpolated in $\\log$ rate, or is the
    end of the sampled frontier (flagged `"domain"`) where the rate never reaches the bound.

    **Returns:** a dict with `train_span_oom`, `inference_span_oom`, the two ends
    (`log_ic`, `log_tc`) and how each end is bounded (`"rate"` or `"domain"`).
    """
    log_ic, log_tc, rate = (np.asarray(v, float) for v in (log_ic, log_tc, rate))
    keep = np.isfinite(log_ic) & np.isfinite(log_tc) & np.isfinite(rate) & (rate > 0)
    log_ic, log_tc, lr = log_ic[keep], log_tc[keep], -np.log(rate[keep])  # -log rate increases
    order = np.argsort(lr, kind="stable")
    log_ic, log_tc, lr = log_ic[order], log_tc[order], lr[order]
    ends = {}
    for name, target in (("high_rate", -math.log(max_rate)), ("low_rate", math.log(max_rate))):
        inside = lr[0] <= target <= lr[-1]
        ends[name] = {
            "log_ic": float(np.interp(target, lr, log_ic)),
            "log_tc": float(np.interp(target, lr, log_tc)),
            "bound": "rate" if inside else "domain",
        }
    # absolute values: on a concave frontier (pruning's) the rate rises with IC, so the 6:1
    # end is the one with more inference
    return {
        "train_span_oom": abs(ends["high_rate"]["log_tc"] - ends["low_rate"]["log_tc"]),
        "inference_span_oom": abs(ends["low_rate"]["log_ic"] - ends["high_rate"]["log_ic"]),
        "ends": ends,
    }


# --------------------------------------------------------------------- the inner solve
@eqx.filter_jit
def _inner(law: Chinchilla, a_param, target_loss, caps, tokens):
    """Least training compute of a dense Chinchilla model at each (target loss, inference cap).

    The planner's solver on the convex inner problem, one batched call, the law's $A$ given
    per row; the multiplier of the cap is the exchange rate $-d\\log TC/d\\log IC$.
    """
    probe = Pipeline(Pretraining(law))
    names = constraint_names(probe, Scenario(target_loss=1.0, max_inference_flops_per_unit=1.0))
    index = names.index("max_inference_flops_per_unit")

    def one(a, ell, cap):
        model = Pipeline(Pretraining(eqx.tree_at(lambda w: w.A, law, a), tokens_per_query=tokens))
        plan = solve(model, Scenario(target_loss=ell, max_inference_flops_per_unit=cap),
                     objective="train", throw=False)
        return (plan.outcome.train_flops, plan.outcome.inference_flops_per_unit,
                plan.multipliers[index], plan.status, plan.allocation.n_params,
                plan.allocation.n_tokens)

    return jax.vmap(one)(a_param, target_loss, caps)


CHUNK = 2048
"""Inner solves per call: every call has this shape, so the solver compiles once."""


def chunked_solve(law: Chinchilla, a_param, target_loss, caps, tokens) -> list[np.ndarray]:
    """`_inner` over any number of rows, `CHUNK` at a time (padded), as NumPy arrays:
    training FLOP, inference FLOP, the cap's multiplier, status, N and D."""
    size = a_param.size
    pad = -size % CHUNK
    cols = [np.r_[np.asarray(v, float), np.full(pad, np.asarray(v, float)[0])]
            for v in (a_param, target_loss, caps)]
    parts = []
    for i in range(0, size + pad, CHUNK):
        out = _inner(law, *(jnp.asarray(c[i:i + CHUNK]) for c in cols),
                     jnp.asarray(tokens, float))
        parts.append([np.asarray(v) for v in out])
    return [np.concatenate(p)[:size] for p in zip(*parts, strict=True)]


