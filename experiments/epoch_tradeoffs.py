# Villalobos & Atkinson 2023 (Epoch AI), "Trading Off Compute in Training and Inference": the
# summary table of how far training compute trades for inference compute at equal performance.
#
# For each technique (scaling policy, pruning, MCTS, pass@k, 10@k, and the combination) the
# training and inference spans are computed from the planner's laws: the Chinchilla frontier
# through the solver (its Lagrange multipliers are the exchange rate) and in closed form, IMP's
# cost model, the calibrated Hex MCTS model, and Epoch's S-curves fitted here to the Codex and
# AlphaCode results. Prints the table beside the report's numbers and writes
# epoch_tradeoffs.{json,md,png}.
"""Epoch AI's summary table of training–inference trade-offs, recomputed."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from planner import (
    MCTS,
    Chinchilla,
    Pipeline,
    Pretraining,
    Pruning,
    SparsityLaw,
    Status,
    imp_training_factor,
)
from planner._data import codex_table
from planner._techniques.scurve import AbstractSCurve, NAtKSCurve, PassAtKSCurve
from planner.experiments._combine import combined_spans
from planner.experiments._common import (
    command_line,
    markdown_table,
    pyplot,
    save_figure,
    write_json,
    write_markdown,
)
from planner.experiments._spans import (  # noqa: F401  (re-exported: the span machinery's public home here)
    CHUNK,
    MAX_RATE,
    REPORTED,
    REPORTED_COMBINED_RANGE,
    chunked_solve,
    gap_to_report,
    window_span,
)

TECHNIQUES = (*REPORTED, "joint_optimum")
"""The table's rows: the report's six, then the composed solver's joint optimum (no report
number of its own: it is compared with the combined row's range, and is not the report's
method)."""
LABELS = {
    "scaling_policy": "scaling policy (overtraining)",
    "pruning": "pruning (IMP, 10% density)",
    "mcts": "MCTS (Hex), Elo −250 / −1500",
    "pass_at_k": "repeated sampling, pass@k",
    "n_at_k": "repeated sampling, 10@k",
    "combined": "combined, the report's way (report: 2–3)",
    "joint_optimum": "joint optimum, composed solver (not the report's method)",
}
RESULTS_PAGE = "docs/results.md"
GAP_SECTIONS = {
    "scaling_policy": "Scaling policy",
    "pruning": "Pruning",
    "mcts": "MCTS",
    "pass_at_k": "pass@k",
    "n_at_k": "10@k",
    "combined": "Combination",
    "joint_optimum": "Combination",
}
"""Where `RESULTS_PAGE` ("Where the gaps come from") explains each row's gap to the report."""
GAP_NOTE_OOM = 0.1
"""Gaps larger than this get a pointer to their explanation in the output."""

# Primary data for the S-curve fits.
# Codex on HumanEval, pass@1 / @10 / @100 of all eight sizes, 12M to 12B (Chen et al. 2021,
# Table 1), read from planner/data/codex_humaneval.csv.
_CODEX = codex_table()
CODEX_PARAMS = _CODEX["n_params"]
CODEX_SAMPLES = _CODEX["samples"]
CODEX_PASS = _CODEX["pass"]
CODEX_TOKENS = 300e9 + 100e9
"""Codex's training tokens: GPT-3's 300B pretraining tokens (Brown et al. 2020) plus 100B of
code fine-tuning (Chen et al. 2021, section 3.1), the same for every size."""
# AlphaCode, 10@k solve rate on CodeContests validation at k = 1e3 ... 1e6 (Li et al. 2022).
ALPHACODE_PARAMS = (8.7e9, 41.1e9)
ALPHACODE_SAMPLES = (1e3, 1e4, 1e5, 1e6)
ALPHACODE_SOLVE = ((0.169, 0.226, 0.271, 0.301), (0.169, 0.239, 0.282, 0.318))
ALPHACODE_TOKENS = 967e9
"""Pretraining tokens of AlphaCode 41B (Li et al. 2022, Table 3). The 9B model's count was
not found; both are taken to have seen as many, so training compute scales with parameters."""

MCTS_ELOS = (-1500.0, -250.0, -50.0)
"""Low performance, high performance, near perfect play: the levels `MCTS.calibrated` uses."""
MCTS_LOW_ELO, MCTS_HIGH_ELO = MCTS_ELOS[0], MCTS_ELOS[1]
MCTS_REPORTED_LEVELS = {MCTS_LOW_ELO: (1.0, 1.6), MCTS_HIGH_ELO: (1.6, 1.1)}
"""The report's MCTS headlines, (training, inference) OOM: at low performance 1 OOM of training
for more than 1.6 OOM of inference (a lower bound), at high performance 1.6 for 1.1
(Villalobos & Atkinson 2023, abstract and MCTS section)."""


# --------------------------------------------------------------------- scaling policy
def chinchilla_frontier(law: Chinchilla, target_loss: float, cut_oom) -> dict:
    """Least training compute at each inference cap `cut_oom` OOM below the training optimum.

    One batched solve of the planner's solver (objective: training FLOP; constraints: the
    target loss and the cap on inference FLOP per token); the exchange rate is the multiplier
    of the cap: the objective is $\\log TC$ and the cap $\\log IC \\le \\log c$, so the
    multiplier is $-d\\log TC^*/d\\log c$.
    """
    n_c, _ = law.loss_optimal(target_loss)
    log_ic0 = math.log10(float(2.0 * n_c))
    cut = np.asarray(cut_oom, float)
    ones = np.ones_like(cut)
    tc, ic, rate, status, _, _ = chunked_solve(law, float(law.A) * ones, target_loss * ones,
                                               10.0 ** (log_ic0 - cut), 1.0)
    return {
        "cut_oom": cut,
        "log_ic": np.log10(ic),
        "log_tc": np.log10(tc),
        "rate": rate,
        "optimal": bool(np.all(status == Status.OPTIMAL)),
        "log_ic0": log_ic0,
    }


def scaling_policy(law: Chinchilla | None = None, targets=(1.9, 2.0, 2.2, 2.5),
                   n_points: int = 160) -> dict:
    """Spans of overtraining: closed form, and through the solver's frontier at each target.

    The solver's frontier is solved on a coarse grid of inference cuts and again on a fine grid
    around each end of the efficient region, then the ends are interpolated in log rate.
    """
    law = law or Chinchilla.hoffmann2022()
    hi_tc, hi_k = (float(v) for v in law.marginal_rate_point(MAX_RATE))
    lo_tc, lo_k = (float(v) for v in law.marginal_rate_point(1.0 / MAX_RATE))
    closed = {
        "train_span_oom": hi_tc - lo_tc,
        "inference_span_oom": hi_k - lo_k,
        "one_sided_train_span_oom": hi_tc,
        "one_sided_inference_span_oom": hi_k,
        "low_rate_end": (lo_tc, lo_k),
        "high_rate_end": (hi_tc, hi_k),
    }
    kmax = float(law.max_inference_cut())
    coarse = np.linspace(0.0, 0.995 * kmax, n_points)
    per_target = {}
    for target in targets:
        f = chinchilla_frontier(law, target, coarse)
        first = window_span(f["log_ic"], f["log_tc"], f["rate"])
        # refine: a fine grid of the same size straddling each end
        ends = [f["log_ic0"] - first["ends"][e]["log_ic"] for e in ("low_rate", "high_rate")]
        half = n_points // 2
        fine = np.concatenate([np.linspace(max(k - 0.01, 0.0), k + 0.01, half) for k in ends])
        g = chinchilla_frontier(law, target, fine)
        span = window_span(g["log_ic"], g["log_tc"], g["rate"])
        high = span["ends"]["high_rate"]  # the 6:1 end; the training optimum is cut 0
        per_target[str(target)] = {
            "train_span_oom": span["train_span_oom"],
            "inference_span_oom": span["inference_span_oom"],
            "one_sided_train_span_oom": high["log_tc"] - float(f["log_tc"][0]),
            "one_sided_inference_span_oom": float(f["log_ic"][0]) - high["log_ic"],
            "optimal": f["optimal"] and g["optimal"],
            "frontier": {"cut_oom": f["cut_oom"], "log_ic": f["log_ic"], "log_tc": f["log_tc"],
                         "rate": f["rate"]},
        }
    first = per_target[str(targets[0])]
    spread = max(abs(p["train_span_oom"] - first["train_span_oom"]) for p in per_target.values())
    presets = {}
    for name in ("hoffmann2022", "hoffmann2022_unrounded", "sardana2024", "besiroglu2024"):
        other = getattr(Chinchilla, name)()
        h_tc, h_k = (float(v) for v in other.marginal_rate_point(MAX_RATE))
        l_tc, l_k = (float(v) for v in other.marginal_rate_point(1.0 / MAX_RATE))
        presets[name] = {"train_span_oom": h_tc - l_tc, "inference_span_oom": h_k - l_k,
                         "one_sided_train_span_oom": h_tc, "one_sided_inference_span_oom": h_k}
    return {
        "law": "hoffmann2022",
        "train_span_oom": first["train_span_oom"],
        "inference_span_oom": first["inference_span_oom"],
        "closed_form": closed,
        "solver": per_target,
        "scale_spread_oom": spread,
        "presets": presets,
    }


# ----------------------------------------------------------------------------- pruning
def lossless_sparsity() -> SparsityLaw:
    """A sparsity law under which pruning costs no loss at any density: Epoch's assumption.

    With $c_S = 0$ and $b_S = b_N$, $g(d) = 1/d$, so a pruned model is worth the dense one and
    the `Pruning` stage's loss penalty vanishes; only its costs remain.
    """
    return SparsityLaw(a_S=1.0, b_S=0.245, c_S=0.0, b_N=0.245, a_D=1.0, b_D=1.0, c=0.0)


def pruning(density: float = 0.1, rounds_fraction: float = 0.2) -> dict:
    """IMP's spans at `density` (Epoch's cost model), in closed form and through the stage."""
    factor = float(imp_training_factor(density, rounds_fraction, variant="epoch"))
    law = Chinchilla.hoffmann2022()
    stage = Pruning(law, sparsity_law=lossless_sparsity(), rounds_fraction=rounds_fraction,
                    variant="epoch")
    pipeline = Pipeline(Pretraining(law), stage)
    n_c, d_c = law.loss_optimal(2.0)
    from planner import Allocation

    pruned = pipeline(Allocation(n_params=n_c, n_tokens=d_c, density=density))
    dense = Pipeline(Pretraining(law))(Allocation(n_params=n_c, n_tokens=d_c))
    densities = (0.8, 0.5, 0.2, 0.1, 0.05, 0.8**20)
    table = [(d, float(imp_training_factor(d, rounds_fraction, variant="epoch")))
             for d in densities]
    return {
        "density": density,
        "rounds_fraction": rounds_fraction,
        "train_span_oom": math.log10(factor),
        "inference_span_oom": -math.log10(density),
        "stage_train_span_oom": float(jnp.log10(pruned.train_flops / dense.train_flops)),
        "stage_inference_span_oom": float(jnp.log10(dense.inference_flops_per_unit
                                                     / pruned.inference_flops_per_unit)),
        "stage_loss_change": float(pruned.loss - dense.loss),
        "bound_oom": -math.log10(rounds_fraction),
        "rate_at_density": density / (1.0 - density),
        "factors": [{"density": d, "factor": f, "oom": math.log10(f)} for d, f in table],
    }


# -------------------------------------------------------------------------------- MCTS
def mcts(elos=None) -> dict:
    """Spans of the calibrated Hex model at the report's two performance levels, as the report
    quotes them, and across Elo: the reversal, the collapse and the peak of the sweep.

    The report's low level (Elo −1500) trades 1 OOM of training for more than 1.6 of inference;
    its high level (Elo −250) 1.6 of training for 1.1 of inference. Its table's 1.6 / 1.6 pairs
    the high level's training span with the low level's inference span, and so does this row.
    """
    model = MCTS.calibrated(1.0)
    sweep = np.linspace(-2000.0, -5.0, 400) if elos is None else np.asarray(elos, float)
    train, inference = (np.asarray(v) for v in model.span(jnp.asarray(sweep)))
    levels = {str(e): {"train_span_oom": float(t), "inference_span_oom": float(i)}
              for e, t, i in zip(MCTS_ELOS, *map(np.asarray, model.span(jnp.asarray(MCTS_ELOS))))}
    low, high = levels[str(MCTS_LOW_ELO)], levels[str(MCTS_HIGH_ELO)]
    diff = inference - train
    cross = np.nonzero(np.diff(np.sign(diff)) != 0)[0]
    reversal = (float(np.interp(0.0, -diff[cross[0]:cross[0] + 2], sweep[cross[0]:cross[0] + 2]))
                if cross.size else None)
    best_t, best_i = int(np.argmax(train)), int(np.argmax(inference))
    return {
        "train_span_oom": high["train_span_oom"],
        "inference_span_oom": low["inference_span_oom"],
        "train_span_elo": MCTS_HIGH_ELO,
        "inference_span_elo": MCTS_LOW_ELO,
        "reported_levels": {str(k): v for k, v in MCTS_REPORTED_LEVELS.items()},
        "levels": levels,
        "reversal_elo": reversal,
        "peak": mcts_peak(model, sweep, train, inference),
        "sweep_max_train_span_oom": float(train[best_t]),
        "sweep_max_train_span_elo": float(sweep[best_t]),
        "sweep_max_inference_span_oom": float(inference[best_i]),
        "elo": sweep,
        "train_spans": train,
        "inference_spans": inference,
        "jones_rate": float(1.0 / -model_jones_exponent()),
    }


def mcts_peak(model: MCTS, sweep, train, inference) -> dict:
    """Where and why the training span over Elo peaks: the Elo at which the 6:1 end of the
    efficient region stops being the one-node search and becomes the rate bound.

    Below that Elo the 6:1 end is the single-node search, whose network must supply the whole
    Elo gap less the one-node search's deficit; that remainder shrinks towards 0 as Elo rises,
    so the training compute there (and the span) climbs steeply until the rate bound takes
    over, and from there the span falls with the gap. The peak's height is the value at that
    corner; re-solved with the search-break sharpness raised from its calibration bound (0.05
    OOM) to 0.5 OOM, it hardly moves, so the bound is not its cause.
    """
    gap = jnp.asarray(-np.asarray(sweep, float))
    _, floor = model.deficits(0.0, 0.0)
    t_floor = np.asarray(floor / gap)
    t_rate = np.asarray(model._share_at_rate(gap, jnp.log(jnp.asarray(MAX_RATE))))
    by_floor = t_floor < t_rate
    last = int(np.nonzero(by_floor)[0][-1]) if by_floor.any() else None
    switch = None
    if last is not None and last + 1 < by_floor.size:  # where t_floor = t_rate, interpolated
        diff = (t_floor - t_rate)[last:last + 2]
        switch = float(np.interp(0.0, diff, np.asarray(sweep, float)[last:last + 2]))
    sharp = {}
    for f in (0.05, 0.1, 0.2, 0.5):
        other = eqx.tree_at(lambda m: m.search_sharpness, model, jnp.asarray(f))
        t = np.asarray(other.span(jnp.asarray(sweep))[0])
        sharp[str(f)] = {"max_train_span_oom": float(t.max()),
                         "elo": float(np.asarray(sweep)[int(np.argmax(t))])}
    return {
        "switch_elo": switch,
        "one_node_deficit_elo": float(floor),
        "end_bounded_by_one_node": by_floor,
        "max_train_span_oom": float(np.max(train)),
        "max_train_span_elo": float(np.asarray(sweep)[int(np.argmax(train))]),
        "by_search_sharpness": sharp,
    }


def model_jones_exponent() -> float:
    from planner import JonesFrontier

    return float(JonesFrontier.jones2021().train_exponent)


# ------------------------------------------------------------------------------ S-curves
class LeastSquares(NamedTuple):
    """The result of `least_squares`: the point, half the sum of squared residuals there, the
    gradient's largest component, and whether a stopping test (not the step cap) ended it."""

    x: np.ndarray
    cost: float
    grad_max: float
    success: bool


def least_squares(residual, start, max_steps: int = 2000) -> LeastSquares:
    """Levenberg–Marquardt on `residual` (a JAX function of a parameter vector), from `start`.

    Marquardt's scaling (the damping proportional to the diagonal of $J^TJ$), the damping
    divided by 3 after a step that lowers the cost and multiplied by 4 after one that does
    not; stops when the gradient or the step is negligible. Written here so that
    `planner reproduce` needs no SciPy: the test suite checks it against
    `scipy.optimize.least_squares` on the same problems.
    """
    fun, jac = jax.jit(residual), jax.jit(jax.jacfwd(residual))
    x = np.asarray(start, float)
    r = np.asarray(fun(jnp.asarray(x)))
    cost, damping, success = 0.5 * float(r @ r), 1e-3, False
    if not np.isfinite(cost):  # a start the residual is not defined at
        return LeastSquares(x=x, cost=math.inf, grad_max=math.inf, success=False)
    for _ in range(max_steps):
        j = np.asarray(jac(jnp.asarray(x)))
        if not np.all(np.isfinite(j)):  # left the region where the model is smooth
            break
        g = j.T @ r
        if np.max(np.abs(g)) <= 1e-12 * max(1.0, cost):
            success = True
            break
        h = j.T @ j
        scale = np.maximum(np.diag(h), 1e-12 * max(1.0, float(np.max(np.diag(h)))))
        while damping < 1e16:
            step = np.linalg.solve(h + damping * np.diag(scale), -g)
            trial = x + step
            r_trial = np.asarray(fun(jnp.asarray(trial)))
            with np.errstate(over="ignore", invalid="ignore"):  # a wild trial step
                cost_trial = 0.5 * float(r_trial @ r_trial)
            if np.isfinite(cost_trial) and cost_trial < cost:
                break
            damping *= 4.0
        else:
            success = True  # no step lowers the cost: a stationary point to rounding
            break
        small = np.linalg.norm(step) <= 1e-12 * (1.0 + np.linalg.norm(x))
        x, r, cost, damping = trial, r_trial, cost_trial, max(damping / 3.0, 1e-12)
        if small:
            success = True
            break
    g = np.asarray(jac(jnp.asarray(x))).T @ r
    return LeastSquares(x=x, cost=cost, grad_max=float(np.max(np.abs(g))), success=success)


def _fit(residual, starts) -> LeastSquares:
    best = None
    for start in starts:
        fit = least_squares(residual, start)
        if best is None or fit.cost < best.cost:
            best = fit
    return best


def _sample_data(params, samples, score, tokens):
    params, samples, score = (np.asarray(v, float) for v in (params, samples, score))
    t = np.repeat(np.log10(6.0 * params * tokens), samples.size)
    x = np.tile(np.log10(samples), params.size)
    return t, x, score.ravel()


@functools.cache
def fit_pass_at_k() -> tuple[PassAtKSCurve, dict]:
    r"""Epoch's pass@k S-curve fitted to Codex's 24 HumanEval points (eight sizes, three k).

    $x = \log_{10} k$ (inference counted in samples of one model: the per-sample cost is
    what the accounting choice changes, see `contour_spans`), $t = \log_{10} 6ND$. One
    smoothing width for both breaks ($d_0 = d_1$): four constants for nine points. Least
    squares in probability, multi-start.
    """
    t, x, y = _sample_data(CODEX_PARAMS, CODEX_SAMPLES, CODEX_PASS, CODEX_TOKENS)
    tj, xj, yj = map(jnp.asarray, (t, x, y))

    def make(th):
        return PassAtKSCurve(a=th[0], A=th[1], x0=th[2], d0=jnp.exp(th[3]), d1=jnp.exp(th[3]))

    starts = [(0.05, -1.0, x0, lw) for x0 in (-3.0, -2.0, -1.0, 0.0) for lw in (-2.0, -1.0, 0.0)]
    fit = _fit(lambda th: make(th).performance(tj, xj) - yj, starts)
    curve = make(jnp.asarray(fit.x))
    return curve, _fit_report(curve, t, x, y, fit)


@functools.cache
def fit_n_at_k() -> tuple[NAtKSCurve, dict]:
    r"""Epoch's n@k S-curve fitted to AlphaCode's eight 10@k points (9B and 41B).

    As `fit_pass_at_k`, with the second break $x_1 = x_0 + e^{\theta}$ free: five constants
    for eight points.
    """
    t, x, y = _sample_data(ALPHACODE_PARAMS, ALPHACODE_SAMPLES, ALPHACODE_SOLVE, ALPHACODE_TOKENS)
    tj, xj, yj = map(jnp.asarray, (t, x, y))

    def make(th):
        return NAtKSCurve(a=th[0], A=th[1], x0=th[2], x1=th[2] + jnp.exp(th[3]),
                          d0=jnp.exp(th[4]), d1=jnp.exp(th[4]))

    starts = [(0.01, -0.2, x0, dx, lw) for x0 in (-2.0, 0.0, 2.0) for dx in (0.5, 2.0)
              for lw in (-1.0, 0.0)]
    fit = _fit(lambda th: make(th).performance(tj, xj) - yj, starts)
    curve = make(jnp.asarray(fit.x))
    return curve, _fit_report(curve, t, x, y, fit)


def _fit_report(curve: AbstractSCurve, t, x, y, fit) -> dict:
    pred = np.asarray(curve.performance(jnp.asarray(t), jnp.asarray(x)))
    fields = {k: float(getattr(curve, k)) for k in ("a", "A", "x0", "d0", "d1")}
    if isinstance(curve, NAtKSCurve):
        fields["x1"] = float(curve.x1)
    return {
        "constants": fields,
        "rms_points": float(100 * np.sqrt(np.mean((pred - y) ** 2))),
        "max_miss_points": float(100 * np.max(np.abs(pred - y))),
        "exploration": [float(curve.exploration(v)) for v in np.unique(t)],
        "log10_train_flops": [float(v) for v in np.unique(t)],
        "points": [{"log10_train_flops": float(a), "log10_samples": float(b), "observed": float(c),
                    "fitted": float(d)} for a, b, c, d in zip(t, x, y, pred)],
    }


def contour(curve: AbstractSCurve, target: float, log_samples, t_range=(10.0, 40.0)) -> dict:
    """The iso-performance contour $P(t, x) = $ `target`: least $t$ at each $x$, by bisection.

    Performance rises with training compute at fixed samples, so the least $t$ is the Pareto
    frontier. The rate $|dt/dx| = (\\partial P/\\partial x)/(\\partial P/\\partial t)$ comes
    from automatic differentiation. Points the target is out of reach at are NaN.
    """
    x = jnp.asarray(log_samples, float)
    t, rate = _contour(curve, jnp.asarray(target, float), x, t_range)
    return {"log_samples": np.asarray(x), "log_tc": np.asarray(t), "rate": np.asarray(rate)}


@eqx.filter_jit
def _contour(curve, target, x, t_range):
    def body(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        up = curve.performance(mid, x) >= target
        return jnp.where(up, lo, mid), jnp.where(up, mid, hi)

    lo = jnp.full_like(x, t_range[0])
    hi = jnp.full_like(x, t_range[1])
    lo, hi = jax.lax.fori_loop(0, 80, body, (lo, hi))
    t = 0.5 * (lo + hi)
    reach = curve.performance(jnp.full_like(x, t_range[1]), x) >= target
    dp_dt = jax.vmap(jax.grad(curve.performance, argnums=0))(t, x)
    dp_dx = jax.vmap(jax.grad(curve.performance, argnums=1))(t, x)
    return jnp.where(reach, t, jnp.nan), jnp.where(reach, dp_dx / dp_dt, jnp.nan)


ACCOUNTINGS: dict[str, float] = {"flop": 1.0, "flop_optimal": 0.5, "samples": 0.0}
"""How inference compute per query is counted along an S-curve frontier: $IC \\propto k\\,N$
with $N \\propto TC^{s}$. `"flop"`: $s = 1$, model size grows with training compute at fixed
data, as in the Codex and AlphaCode runs (the primary accounting: the report's IC is FLOP per
inference); `"flop_optimal"`: $s = 1/2$, Chinchilla-optimal growth; `"samples"`: $s = 0$, a
sample costs the same whatever the training compute."""


def contour_spans(curve: AbstractSCurve, target: float, log_samples=None) -> dict:
    """Spans of the S-curve frontier at `target`, inference counted each way of `ACCOUNTINGS`.

    With $x = \\log_{10} k$ and $\\log IC = x + s\\,t$ + const, along the contour
    $d\\log IC = dx + s\\,dt$, so the exchange rate in IC is $r/(1 - s r)$ with $r = |dt/dx|$,
    and points with $s r \\ge 1$ (a larger model drawing fewer samples costs less to run, so
    they are dominated) are not on the frontier. All respect $k \\ge 1$.
    """
    xs = np.linspace(0.0, 14.0, 1401) if log_samples is None else np.asarray(log_samples)
    c = contour(curve, target, xs)
    r = c["rate"]
    out = {}
    for name, s in ACCOUNTINGS.items():
        ok = np.isfinite(r) & (s * r < 1.0)
        log_ic = c["log_samples"] + s * c["log_tc"]
        rate = r[ok] / (1.0 - s * r[ok])
        out[name] = (window_span(log_ic[ok], c["log_tc"][ok], rate) if ok.sum() > 2 else None)
    out["contour"] = {"log_samples": xs, "log_tc": c["log_tc"], "rate": r}
    return out


def pass_at_k(targets=(0.3, 0.5, 0.7, 0.9, 0.99), headline: float = 0.99) -> dict:
    """pass@k spans from the Codex fit; the headline is near-perfect accuracy, as the report's.

    Also the headline's spans when a sample's FLOP grow as $TC^s$ for $s$ from 0 (counted in
    samples) to 1 (the primary accounting): how the gap to the report depends on the one
    quantity the report leaves unstated.
    """
    curve, report = fit_pass_at_k()
    rows = {str(p): contour_spans(curve, p) for p in targets}
    out = _sampling_summary(report, rows, headline)
    c = rows[str(headline)]["contour"]
    scan = []
    for s_ in np.round(np.linspace(0.0, 1.0, 11), 2):
        span = accounting_span(c, float(s_))
        if span is not None:
            scan.append({"s": float(s_), "train_span_oom": span["train_span_oom"],
                         "inference_span_oom": span["inference_span_oom"]})
    out["accounting_scan"] = scan
    data_top = float(np.max(np.asarray(CODEX_PASS)))
    out["data_reach"] = {"best_observed": data_top, "largest_log_samples": 2.0}
    return out


def accounting_span(c: dict, s: float) -> dict | None:
    """The span of a contour (`contour`'s output) with a sample's FLOP growing as $TC^s$."""
    r = c["rate"]
    ok = np.isfinite(r) & (s * r < 1.0)
    if ok.sum() <= 2:
        return None
    log_ic = c["log_samples"] + s * c["log_tc"]
    return window_span(log_ic[ok], c["log_tc"][ok], r[ok] / (1.0 - s * r[ok]))


def n_at_k(targets=(0.2, 0.25, 0.3), headline: float = 0.3) -> dict:
    """10@k spans from the AlphaCode fit; the headline is the best solve rate observed (~30%)."""
    curve, report = fit_n_at_k()
    rows = {str(p): contour_spans(curve, p) for p in targets}
    return _sampling_summary(report, rows, headline)


def _sampling_summary(report, rows, headline) -> dict:
    levels = {}
    for p, row in rows.items():
        levels[p] = {"contour": row["contour"]}
        for name in ACCOUNTINGS:
            span = row[name]
            levels[p][name] = None if span is None else {
                "train_span_oom": span["train_span_oom"],
                "inference_span_oom": span["inference_span_oom"],
                "ends": span["ends"],
            }
    main = levels[str(headline)]["flop"]
    # how the span grows with scale: span against the training compute of its 1:1 point
    mids, spans = [], []
    for p, row in rows.items():
        c, span = row["contour"], levels[p]["flop"]
        ok = np.isfinite(c["rate"]) & (c["rate"] < 1.0)
        if span is not None and ok.sum() > 2:
            rate = c["rate"][ok] / (1.0 - c["rate"][ok])
            lr = -np.log(rate)
            order = np.argsort(lr)
            mids.append(float(np.interp(0.0, lr[order], c["log_tc"][ok][order])))
            spans.append(span["train_span_oom"])
    growth = float(np.polyfit(mids, spans, 1)[0]) if len(mids) >= 2 else None
    return {
        "train_span_oom": main["train_span_oom"],
        "inference_span_oom": main["inference_span_oom"],
        "headline_target": headline,
        "accounting": "flop",
        "fit": report,
        "levels": levels,
        "span_growth_per_oom": growth,
    }


# ---------------------------------------------------------------------------------- run
def compute(fast: bool = False) -> dict:
    """Every technique's spans (the JSON's content, before plain-number conversion)."""
    results = {
        "scaling_policy": scaling_policy(targets=(2.0, 2.5) if fast else (1.9, 2.0, 2.2, 2.5),
                                         n_points=64 if fast else 160),
        "pruning": pruning(),
        "mcts": mcts(np.linspace(-2000.0, -5.0, 100) if fast else None),
        "pass_at_k": pass_at_k(),
        "n_at_k": n_at_k(),
    }
    comb = combined_spans(fast=fast, rows=results)
    results["combined"] = comb
    results["joint_optimum"] = {**comb["joint_optimum"], "method": comb["techniques"]}
    # the joint optimum is set against the report's combination, its range
    for name in TECHNIQUES:
        reported = REPORTED.get(name, REPORTED["combined"])
        value = results[name]
        for key, rep in zip(("train", "inference"), reported, strict=True):
            value[f"reported_{key}_span_oom"] = rep
            value[f"{key}_gap_oom"] = gap_to_report(value[f"{key}_span_oom"], rep)
        if not np.isscalar(reported[0]):
            value["reported_range_oom"] = REPORTED_COMBINED_RANGE
    return results


def gap_notes(results: dict) -> list[str]:
    """One line per row whose gap to the report exceeds `GAP_NOTE_OOM` on either axis, naming
    the section of `RESULTS_PAGE` that explains it."""
    notes = []
    for name in TECHNIQUES:
        r = results[name]
        gaps = (r["train_gap_oom"], r["inference_gap_oom"])
        if max(abs(g) for g in gaps) > GAP_NOTE_OOM:
            notes.append(f"- {LABELS[name]}: gap {gaps[0]:+.2f} / {gaps[1]:+.2f} OOM. "
                         + _reason(name, results)
                         + f" See {RESULTS_PAGE}, \"Where the gaps come from\", "
                         f"{GAP_SECTIONS[name]}.")
    return notes


def _reason(name: str, results: dict) -> str:
    """The measured cause of a row's gap, in one sentence, from the results themselves."""
    r = results[name]
    if name == "pruning":
        return (f"Epoch's IMP cost model is bounded by 1/x = {r['bound_oom']:.2f} OOM of "
                "training however far one prunes, so the table's ~1 cannot come from it.")
    if name == "mcts":
        low = r["levels"][str(MCTS_LOW_ELO)]
        high = r["levels"][str(MCTS_HIGH_ELO)]
        return (f"The calibration cannot meet Jones's slope and both headlines: "
                f"{high['train_span_oom']:.2f} / {high['inference_span_oom']:.2f} at Elo "
                f"{MCTS_HIGH_ELO:g} (report 1.6 / 1.1), {low['train_span_oom']:.2f} / "
                f"{low['inference_span_oom']:.2f} at {MCTS_LOW_ELO:g} (report 1 / >1.6).")
    if name == "pass_at_k":
        scan = {v["s"]: v for v in r.get("accounting_scan", [])}
        zero, half = scan.get(0.0), scan.get(0.4)
        text = (f"Codex's data reach {100 * r['data_reach']['best_observed']:.0f}% at 100 "
                "samples, so spans near pass@k = 0.99 extrapolate; and the span depends on how a "
                "sample's FLOP grow with training compute (TC^s), which the report leaves "
                "unstated")
        if zero and half:
            text += (f": s = 0.4 gives {half['train_span_oom']:.2f} / "
                     f"{half['inference_span_oom']:.2f}, s = 0 (samples) "
                     f"{zero['train_span_oom']:.2f} / {zero['inference_span_oom']:.2f}; no s "
                     "gives 3 / 6")
        return text + "."
    if name in ("joint_optimum", "combined"):
        alone = results["joint_optimum"].get("sampling_alone")
        return ("Not the report's method: the composed solver's sampling law keeps rising as a "
                "power law in k"
                + ("" if alone is None else f" (10@k alone {alone['train_span_oom']:.2f} / "
                   f"{alone['inference_span_oom']:.2f})")
                + " and it prunes to 1% density.")
    return ""


def _table(results: dict) -> str:
    rows = []
    for name in TECHNIQUES:
        r = results[name]
        rep_t, rep_i = (v if np.isscalar(v) else f"{v[0]:g}–{v[1]:g}"
                        for v in REPORTED.get(name, REPORTED["combined"]))
        rows.append([LABELS[name], round(r["train_span_oom"], 3), rep_t,
                     round(r["train_gap_oom"], 3), round(r["inference_span_oom"], 3), rep_i,
                     round(r["inference_gap_oom"], 3)])
    return markdown_table(["technique", "training span (OOM)", "report", "gap",
                           "inference span (OOM)", "report", "gap"], rows)


def _details(results: dict) -> str:
    sp, pr, mc = results["scaling_policy"], results["pruning"], results["mcts"]
    pk, nk = results["pass_at_k"], results["n_at_k"]
    cf = sp["closed_form"]
    lines = [
        "\nEfficient exchange: the part of the Pareto frontier where "
        f"1/{MAX_RATE:g} ≤ |d log TC / d log IC| ≤ {MAX_RATE:g}.\n",
        "## Scaling policy (rounded Hoffmann constants)\n",
        f"- closed form, rates 1/6 to 6: training {cf['train_span_oom']:.4f} OOM, inference "
        f"{cf['inference_span_oom']:.4f} OOM",
        f"- closed form, from the training optimum to the 6:1 point: training "
        f"{cf['one_sided_train_span_oom']:.4f} OOM, inference "
        f"{cf['one_sided_inference_span_oom']:.4f} OOM",
    ]
    for target, s in sp["solver"].items():
        lines.append(f"- solver frontier at loss {target}: {s['train_span_oom']:.4f} / "
                     f"{s['inference_span_oom']:.4f} OOM (one-sided "
                     f"{s['one_sided_train_span_oom']:.4f} / "
                     f"{s['one_sided_inference_span_oom']:.4f}), all optimal: {s['optimal']}")
    lines.append(f"- largest difference across targets: {sp['scale_spread_oom']:.1e} OOM "
                 "(no effect of scale)\n")
    lines.append(markdown_table(
        ["preset", "training span", "inference span", "one-sided training", "one-sided inference"],
        [[k, round(v["train_span_oom"], 3), round(v["inference_span_oom"], 3),
          round(v["one_sided_train_span_oom"], 3), round(v["one_sided_inference_span_oom"], 3)]
         for k, v in sp["presets"].items()]))
    lines += [
        "\n## Pruning (Epoch's IMP cost model, 20% pruned per round)\n",
        f"- density {pr['density']:g}: training ×{10 ** pr['train_span_oom']:.3f} = "
        f"{pr['train_span_oom']:.4f} OOM, inference {pr['inference_span_oom']:.3f} OOM; through "
        f"the Pruning stage {pr['stage_train_span_oom']:.4f} / "
        f"{pr['stage_inference_span_oom']:.4f} OOM (loss change "
        f"{pr['stage_loss_change']:.1e}); bound {pr['bound_oom']:.3f} OOM\n",
        markdown_table(["density", "training factor", "OOM"],
                       [[round(f["density"], 4), round(f["factor"], 3), round(f["oom"], 3) + 0.0]
                        for f in pr["factors"]]),
        "\n## MCTS (calibrated Hex model)\n",
        markdown_table(["Elo", "training span", "inference span", "report"],
                       [[e, round(v["train_span_oom"], 3), round(v["inference_span_oom"], 3),
                         ("{:g} / {:g}".format(*mc["reported_levels"][e])
                          if e in mc["reported_levels"] else "–")]
                        for e, v in mc["levels"].items()]),
        f"\nThe table's row pairs the high level's training span with the low level's "
        f"inference span, as the report's 1.6 / 1.6 does: {mc['train_span_oom']:.3f} / "
        f"{mc['inference_span_oom']:.3f} OOM. Inference span = training span at Elo "
        f"{mc['reversal_elo']:.0f}. Over Elo −2000…−5 the training span peaks at "
        f"{mc['peak']['max_train_span_oom']:.3f} OOM (Elo {mc['peak']['max_train_span_elo']:.0f})"
        f", next to the Elo ({mc['peak']['switch_elo']:.0f}) where the 6:1 end of the "
        f"efficient region stops being the one-node search (whose deficit is "
        f"{mc['peak']['one_node_deficit_elo']:.0f} Elo) and becomes the rate bound. The peak is "
        "that corner, not a level the report quotes; with the search break's sharpness raised "
        "from its calibration bound it stays: "
        + ", ".join(f"{v['max_train_span_oom']:.3f} at sharpness {k}"
                    for k, v in mc["peak"]["by_search_sharpness"].items()) + ".\n",
    ]
    for name, res, label in (("pass@k", pk, "Codex"), ("10@k", nk, "AlphaCode")):
        fit = res["fit"]
        lines.append(f"\n## {name}: Epoch's S-curve fitted to {label}\n")
        lines.append("Constants: " + ", ".join(f"{k} = {v:.4g}" for k, v in
                                             fit["constants"].items())
                     + f"; rms miss {fit['rms_points']:.2f} points, largest "
                     f"{fit['max_miss_points']:.2f}.\n")
        def cell(v, key):
            return "–" if v is None else round(v[key], 3)

        rows = [[p] + [cell(v[a], k) for a in ACCOUNTINGS
                       for k in ("train_span_oom", "inference_span_oom")]
                for p, v in res["levels"].items()]
        lines.append(markdown_table(
            ["target", "training (FLOP, s=1)", "inference (FLOP, s=1)",
             "training (FLOP, s=1/2)", "inference (FLOP, s=1/2)", "training (samples)",
             "inference (samples)"], rows))
        if res["span_growth_per_oom"] is not None:
            lines.append(f"\nTraining span grows {res['span_growth_per_oom']:.2f} OOM per OOM of "
                         "training compute across the targets.\n")
        if "accounting_scan" in res:
            lines.append(f"\nSpans at pass@k = {res['headline_target']:g} with a sample's FLOP "
                         "growing as TC^s (s = 0: counted in samples; s = 1: this row):\n")
            lines.append(markdown_table(
                ["s", "training span", "inference span"],
                [[v["s"], round(v["train_span_oom"], 3), round(v["inference_span_oom"], 3)]
                 for v in res["accounting_scan"]]))
    comb = results["combined"]
    lines.append("\n## Combined\n")
    lines.append(comb.get("summary", "") + "\n")
    notes = gap_notes(results)
    if notes:
        lines.append(f"\n## Gaps over {GAP_NOTE_OOM:g} OOM\n")
        lines += notes
    return "\n".join(lines)


def _plot(results: dict, path: Path) -> None:
    """Bars for the planner's spans; the report's as hatched bars, or as a shaded range for the
    combined rows (its "2–3 OOM"); every gap over `GAP_NOTE_OOM` marked with its section of
    `RESULTS_PAGE`."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(12, 5.4))
    x = np.arange(len(TECHNIQUES))
    w = 0.2
    got_t = np.array([results[n]["train_span_oom"] for n in TECHNIQUES])
    got_i = np.array([results[n]["inference_span_oom"] for n in TECHNIQUES])
    ranged = np.array([not np.isscalar(REPORTED.get(n, REPORTED["combined"])[0])
                       for n in TECHNIQUES])
    rep_t = np.array([np.nan if r else REPORTED[n][0] for n, r in zip(TECHNIQUES, ranged)])
    rep_i = np.array([np.nan if r else REPORTED[n][1] for n, r in zip(TECHNIQUES, ranged)])
    ax.bar(x - 1.5 * w, got_t, w, color="C0", label="training span, planner")
    ax.bar(x - 0.5 * w, rep_t, w, color="C0", alpha=0.4, hatch="//", label="training span, report")
    ax.bar(x + 0.5 * w, got_i, w, color="C1", label="inference span, planner")
    ax.bar(x + 1.5 * w, rep_i, w, color="C1", alpha=0.4, hatch="//",
           label="inference span, report")
    lo, hi = REPORTED_COMBINED_RANGE
    for i in np.nonzero(ranged)[0]:
        ax.fill_between([i - 2 * w, i + 2 * w], lo, hi, color="grey", alpha=0.3, lw=0,
                        label="report: combined 2–3 OOM (a range)" if i == np.nonzero(ranged)[0][0]
                        else None)
    top = float(np.nanmax(np.r_[got_t, got_i, rep_t, rep_i]))
    for i, name in enumerate(TECHNIQUES):
        r = results[name]
        if max(abs(r["train_gap_oom"]), abs(r["inference_gap_oom"])) > GAP_NOTE_OOM:
            ax.annotate(f"gap {r['train_gap_oom']:+.2f} / {r['inference_gap_oom']:+.2f}\n"
                        f"see results.md:\n{GAP_SECTIONS[name]}",
                        (i, max(got_t[i], got_i[i], np.nan_to_num(rep_t[i]),
                                np.nan_to_num(rep_i[i]), hi if ranged[i] else 0) + 0.1),
                        ha="center", va="bottom", fontsize=7, color="0.25")
    ax.set_ylim(0, top * 1.3)
    ax.set_xticks(x, [LABELS[n].replace(", ", ",\n").replace(" (", "\n(") for n in TECHNIQUES],
                  fontsize=7.5)
    ax.set_ylabel("span (orders of magnitude of FLOP)")
    ax.set_title("Training–inference trade-off spans: planner vs Villalobos & Atkinson (2023); "
                 "gaps are training / inference, planner − report", fontsize=10)
    ax.legend(fontsize=8, ncol=3, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path)
    plt.close(fig)


def run(output: Path, fast: bool = False) -> dict:
    jax.config.update("jax_enable_x64", True)
    output = Path(output)
    results = compute(fast=fast)
    body = _table(results) + _details(results)
    write_markdown(output / "epoch_tradeoffs.md",
                   "Trade-off spans (Villalobos & Atkinson 2023, Epoch AI)", body)
    write_json(output / "epoch_tradeoffs.json", results)
    _plot(results, output / "epoch_tradeoffs.png")
    print(body)
    return {name: (round(results[name]["train_span_oom"], 3),
                   round(results[name]["inference_span_oom"], 3)) for name in TECHNIQUES}


def main() -> None:
    command_line(run, __doc__)


if __name__ == "__main__":
    main()
