"""The machinery of combining trade-off techniques, shared by the `combined` experiment and the
Epoch table's combined rows (`epoch_tradeoffs`): joint frontiers over grids of the non-convex
controls with the solver inside, the overtraining + lossless-IMP grid, the report's way of
combining the reproduced rows (`report_method`) and the composed solver's joint optimum
(`combined_spans`)."""

from __future__ import annotations

import math

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
    Scenario,
    Status,
    constraint_names,
    frontier,
)
from planner._techniques.sampling import FilteredSampling, RepeatedSampling, SuccessLink
from planner.experiments._spans import MAX_RATE, REPORTED_COMBINED_RANGE, chunked_solve, window_span

TOKENS_PER_QUERY = 1000.0
"""Tokens generated per sample: the report's rule of thumb of 1000 tokens a query
(Villalobos & Atkinson 2023).
Spans do not depend on it; the FLOP on the figure's axes do."""
TARGET_SCORE = 0.5
"""pass@k to hold fixed for the sampling combinations."""
TARGET_FILTERED = 0.3
"""10@k to hold fixed: AlphaCode's best validation solve rate is about 30% (Li et al.
2022)."""
TARGET_ELO = -1500.0
"""Elo (perfect play 0) held fixed for overtraining + MCTS: the report's low-performance level."""
ROUNDS_FRACTION = 0.2


def joint_frontier(law: Chinchilla, log_caps, options: dict,
                   tokens: float = TOKENS_PER_QUERY) -> dict:
    """The joint frontier over a grid of the non-convex controls, the solver inside.

    `options` holds one row per combination of the discrete controls: `a_scale` (the factor
    $M(d)$ on the parameter term that pruning to density $d$ costs, see `Pruning`),
    `train_factor` (IMP's $F(d)$), `inference_factor` ($d$ times samples or nodes) and
    `target_loss` (the loss that reaches the performance target with those samples or nodes).
    For each row and each per-query cap $c$, the solver finds the least $6ND$ for the dense
    model with inference $2N \\cdot$ tokens $\\le c/$`inference_factor`; the frontier is the
    least `train_factor` $\\times 6ND$ over rows. By the envelope theorem its exchange rate is
    the cap's multiplier at the best row.
    """
    log_caps = np.asarray(log_caps, float)
    n_opt, n_cap = len(options["target_loss"]), log_caps.size
    rep = lambda v: np.repeat(np.asarray(v, float), n_cap)  # noqa: E731
    caps = np.tile(10.0 ** log_caps, n_opt) / rep(options["inference_factor"])
    tc, ic, rate, status, n, d = (v.reshape(n_opt, n_cap) for v in chunked_solve(
        law, law.A * rep(options["a_scale"]), rep(options["target_loss"]), caps, tokens))
    ok = status == Status.OPTIMAL
    total_tc = np.where(ok, tc * np.asarray(options["train_factor"], float)[:, None], np.inf)
    best = np.argmin(total_tc, axis=0)
    cols = np.arange(n_cap)
    feasible = np.isfinite(total_tc[best, cols])
    pick = lambda v: np.where(feasible, v[best, cols], np.nan)  # noqa: E731
    factor = np.asarray(options["inference_factor"], float)[best]
    log_tc = np.log10(pick(total_tc))
    log_ic = np.log10(pick(ic) * np.where(feasible, factor, np.nan))
    return {
        "log_cap": log_caps,
        "log_tc": log_tc,
        "log_ic": log_ic,
        "rate": _envelope_rate(log_ic, log_tc),
        "inner_rate": pick(rate),
        "best": {k: np.where(feasible, np.asarray(v, float)[best], np.nan)
                 for k, v in options.items() if k not in ("target_loss",)},
        "n_params": pick(n),
        "n_tokens": pick(d),
        "certified": int(ok.sum()),
        "solves": int(ok.size),
    }


def _envelope_rate(log_ic, log_tc) -> np.ndarray:
    """$-d\\log TC/d\\log IC$ of the lower convex hull of the certified points; NaN off it.

    A frontier over a grid of discrete controls has a kink wherever the best row changes, and
    finite differences across kinks jump; the hull smooths them away (the continuous-control
    frontier lies between the hull and the grid's envelope). Each hull vertex gets the mean
    slope of its two edges.
    """
    rate = np.full(np.shape(log_ic), np.nan)
    idx = np.nonzero(np.isfinite(log_tc) & np.isfinite(log_ic))[0]
    idx = idx[np.argsort(log_ic[idx], kind="stable")]
    hull: list[int] = []
    for i in idx:
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            cross = ((log_ic[b] - log_ic[a]) * (log_tc[i] - log_tc[a])
                     - (log_tc[b] - log_tc[a]) * (log_ic[i] - log_ic[a]))
            if cross <= 0:
                hull.pop()
            else:
                break
        hull.append(int(i))
    hull_ = np.asarray(hull)
    if hull_.size < 3:
        return rate
    slopes = -np.diff(log_tc[hull_]) / np.diff(log_ic[hull_])
    vertex = np.r_[slopes[0], 0.5 * (slopes[:-1] + slopes[1:]), slopes[-1]]
    falling = vertex > 0
    rate[hull_[falling]] = vertex[falling]
    return rate


def _binding(f: dict) -> np.ndarray:
    # certified points where the cap binds (a slack cap repeats the unconstrained optimum)
    return np.isfinite(f["log_tc"]) & np.isfinite(f["rate"]) & (f["rate"] > 0)


def _span(f: dict) -> dict:
    keep = _binding(f)
    return window_span(f["log_ic"][keep], f["log_tc"][keep], f["rate"][keep])


# ---------------------------------------------------------------- performance → loss
def loss_for_pass_at_k(law: Chinchilla, link: SuccessLink, target: float, n_samples):
    """The loss at which `n_samples` samples reach pass@k = `target` (bisection in log loss)."""
    k = jnp.asarray(n_samples, float)
    goal = math.log1p(-target)

    def body(_, bracket):
        lo, hi = bracket  # log reducible loss; failure rises with it
        mid = 0.5 * (lo + hi)
        ok = link.log_failure(jnp.exp(mid), k) <= goal
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo, hi = jax.lax.fori_loop(0, 100, body, (jnp.full_like(k, -30.0), jnp.full_like(k, 5.0)))
    return law.E + jnp.exp(0.5 * (lo + hi))


def loss_for_elo(law: Chinchilla, mcts: MCTS, elo: float, n_nodes):
    """Loss of the network that, searching `n_nodes` nodes a move, plays at `elo`.

    The network's strength is the training compute $C$ that the MCTS model's training term
    reads; its loss is that of the training-optimal Chinchilla model of compute $C$, so an
    overtrained network of the same loss is as strong. NaN where the search alone falls short.
    """
    v = jnp.log10(jnp.asarray(n_nodes, float))
    _, search = mcts.deficits(0.0, v)
    rest = -elo - search
    log_c = mcts._train_inverse(jnp.where(rest > 0, rest, 1.0))
    n, d = law.compute_optimal(10.0 ** log_c)
    return jnp.where(rest > 0, law.loss(n, d), jnp.nan)


# ------------------------------------------------------------------------- techniques
def frantar_pruning(law: Chinchilla, densities) -> dict:
    """$M(d)$ and $F(d)$ of the `Pruning` stage (Frantar T5/C4 law, final retrain counted)."""
    from planner import Allocation

    stage = Pruning(law, rounds_fraction=ROUNDS_FRACTION)
    d = jnp.asarray(densities, float)
    # the stage's loss penalty is (M(d) - 1) A N^-alpha and its training factor F(d): read both
    # off the stage itself at N = 1 (where A N^-alpha = A) rather than re-deriving them
    base = Pipeline(Pretraining(law))
    pipe = Pipeline(Pretraining(law), stage)
    dense = jax.vmap(lambda x: base(Allocation(n_params=1.0, n_tokens=1.0)))(d)
    pruned = jax.vmap(lambda x: pipe(Allocation(n_params=1.0, n_tokens=1.0, density=x)))(d)
    return {
        "a_scale": np.asarray(1.0 + (pruned.loss - dense.loss) / law.A),
        "train_factor": np.asarray(pruned.train_flops / dense.train_flops),
        "density": np.asarray(d),
    }


def _options(law, link, densities, samples, target) -> dict:
    pr = frantar_pruning(law, densities)
    losses = np.asarray(loss_for_pass_at_k(law, link, target, np.asarray(samples, float)))
    nd, nk = len(densities), len(samples)
    return {
        "a_scale": np.repeat(pr["a_scale"], nk),
        "train_factor": np.repeat(pr["train_factor"], nk),
        "inference_factor": np.repeat(pr["density"], nk) * np.tile(samples, nd),
        "target_loss": np.tile(losses, nd),
        "density": np.repeat(pr["density"], nk),
        "n_samples": np.tile(np.asarray(samples, float), nd),
    }


def _grids(fast: bool):
    densities = np.r_[1.0, np.geomspace(0.3, 0.01, 3)] if fast else \
        np.r_[1.0, np.geomspace(0.8, 0.01, 10)]
    samples = np.geomspace(1.0, 1e12, 13 if fast else 121)
    nodes = np.geomspace(1.0, 1e5, 41 if fast else 201)
    return densities, samples, nodes


SELECTIONS = {
    "pass@k": {"selection": "verifier", "target": TARGET_SCORE, "plateau": 1.0},
    "10@k": {"selection": "filter", "target": TARGET_FILTERED, "plateau": None},
}
"""The two kinds of repeated sampling combined: cheap verification (pass@k) and an imperfect
filter (n@k, whose score plateaus at the filter's recall $q$: that of
`FilteredSampling.alphacode2022_9b()`, fitted to AlphaCode's 10@k points by the sampling
module)."""


def _plateau(cfg: dict) -> float:
    if cfg["plateau"] is not None:
        return cfg["plateau"]
    return float(FilteredSampling.alphacode2022_9b().plateau)


def sampling_combinations(kind: str = "pass@k", fast: bool = False, direct: bool = False) -> dict:
    """Frontiers at a fixed score: each technique alone, pairs and all three, on the grid; with
    `direct`, all three also by one joint solve of the `Pipeline`."""
    law, link = Chinchilla.hoffmann2022(), SuccessLink.codex2021()
    cfg = SELECTIONS[kind]
    plateau = _plateau(cfg)
    pass_target = cfg["target"] / plateau  # n@k = q pass@k
    densities, samples, _ = _grids(fast)
    ell1 = float(loss_for_pass_at_k(law, link, pass_target, 1.0))
    n_c, _ = law.loss_optimal(ell1)
    log_ic0 = math.log10(float(2.0 * n_c) * TOKENS_PER_QUERY)
    log_caps = log_ic0 + np.arange(-3.0, 10.0, 0.25 if fast else 0.05)
    one = np.array([1.0])
    configs = {
        "overtraining": (one, one),
        "overtraining + pruning": (densities, one),
        f"overtraining + {kind}": (one, samples),
        f"overtraining + pruning + {kind}": (densities, samples),
    }
    if fast:  # the combination of all three only
        configs = {k: v for k, v in configs.items() if k.count("+") == 2}
    frontiers = {name: joint_frontier(law, log_caps, _options(law, link, d, k, pass_target))
                 for name, (d, k) in configs.items()}
    # each technique alone, with a training-optimal model: closed forms along its control
    alone = {"sampling": _alone_sampling(law, link, pass_target),
             "pruning": _alone_pruning(law, ell1)}
    out = {"kind": kind, "target": cfg["target"], "log_ic0": log_ic0,
           "target_loss_one_sample": ell1, "frontiers": frontiers, "alone": alone}
    if direct:
        model = Pipeline(Pretraining(law, tokens_per_query=TOKENS_PER_QUERY), Pruning(law),
                         RepeatedSampling(link, plateau=plateau,
                                          selection=cfg["selection"]))
        out["direct"] = direct_frontier(model, Scenario(target_score=cfg["target"]),
                                        log_ic0 + np.arange(-3.0, 10.0, 0.1))
    return out


def direct_frontier(model: Pipeline, scenario: Scenario, log_caps) -> dict:
    """The planner's `frontier`: every control solved jointly by the interior-point method,
    the exchange rate its multiplier of the inference cap."""
    names = constraint_names(model, eqx.tree_at(lambda sc: sc.max_inference_flops_per_unit,
                                                scenario, 1.0, is_leaf=lambda v: v is None))
    plans = jax.jit(lambda c: frontier(model, scenario, c))(jnp.asarray(10.0 ** log_caps))
    ok = np.asarray(plans.status) == Status.OPTIMAL
    nan = lambda v: np.where(ok, np.asarray(v), np.nan)  # noqa: E731
    alloc = plans.allocation
    return {
        "log_cap": np.asarray(log_caps),
        "log_tc": np.log10(nan(plans.outcome.train_flops)),
        "log_ic": np.log10(nan(plans.outcome.inference_flops_per_unit)),
        "rate": nan(plans.multipliers[:, names.index("max_inference_flops_per_unit")]),
        "density": nan(alloc.density),
        "n_samples": nan(alloc.n_samples),
        "n_params": nan(alloc.n_params),
        "n_tokens": nan(alloc.n_tokens),
        "certified": int(ok.sum()),
        "solves": int(ok.size),
    }


def _alone_sampling(law, link, pass_target) -> dict:
    """Repeated sampling from training-optimal models: $k$ against the model's size."""
    ks = np.geomspace(1.0, 1e12, 4000)
    ell = loss_for_pass_at_k(law, link, pass_target, ks)
    n, d = law.loss_optimal(ell)
    return _parametric(np.log10(np.asarray(2.0 * n * TOKENS_PER_QUERY) * ks),
                       np.log10(np.asarray(6.0 * n * d)))


def _alone_pruning(law, ell) -> dict:
    """Pruning a model that is training-optimal for its own (penalised) law, at fixed loss."""
    dd = np.geomspace(1.0, 0.01, 2000)
    pr = frantar_pruning(law, dd)
    a, b, alpha, beta = (float(v) for v in (law.A, law.B, law.alpha, law.beta))
    gap = ell - float(law.E)
    n = (a * pr["a_scale"] * (1 + alpha / beta) / gap) ** (1 / alpha)  # loss_optimal, A -> M(d) A
    d = (b * (1 + beta / alpha) / gap) ** (1 / beta)
    return _parametric(np.log10(np.asarray(2.0 * n * TOKENS_PER_QUERY) * dd),
                       np.log10(np.asarray(6.0 * n * d) * pr["train_factor"]))


def _alone_mcts(law, mcts, elo) -> dict:
    """Search from training-optimal networks: nodes against the network's training compute."""
    m = np.geomspace(1.0, 1e5, 3000)
    ell = np.asarray(loss_for_elo(law, mcts, elo, m))
    ok = np.isfinite(ell)
    n, d = law.loss_optimal(jnp.asarray(ell[ok]))
    return _parametric(np.log10(np.asarray(2.0 * n) * m[ok]), np.log10(np.asarray(6.0 * n * d)))


def _parametric(log_ic, log_tc) -> dict:
    """A frontier traced along a control: its Pareto part and the rate by finite differences."""
    order = np.argsort(log_ic)
    x, y = np.asarray(log_ic)[order], np.asarray(log_tc)[order]
    keep = y < np.minimum.accumulate(np.r_[np.inf, y[:-1]])  # strictly below every cheaper one
    x, y = x[keep], y[keep]
    rate = -np.gradient(y, x)
    return {"log_ic": x, "log_tc": y, "rate": rate}


def mcts_combinations(fast: bool = False) -> dict:
    """Overtraining + MCTS at Elo `TARGET_ELO`, jointly and each alone."""
    law, mcts = Chinchilla.hoffmann2022(), MCTS.calibrated(1.0)
    _, _, nodes = _grids(fast)
    ell = np.asarray(loss_for_elo(law, mcts, TARGET_ELO, nodes))
    ok = np.isfinite(ell)
    nodes, ell = nodes[ok], ell[ok]
    alone = _alone_mcts(law, mcts, TARGET_ELO)
    lo, hi = float(np.min(alone["log_ic"])), float(np.max(alone["log_ic"]))
    log_caps = np.arange(lo - 1.1, hi + 0.5, 0.05 if fast else 0.025)
    options = {"a_scale": np.ones_like(nodes), "train_factor": np.ones_like(nodes),
               "inference_factor": nodes, "target_loss": ell, "n_nodes": nodes}
    # inference per node is one forward pass of the network: 2N FLOP
    joint = joint_frontier(law, log_caps, options, tokens=1.0)
    return {"joint": joint, "alone": alone, "elo": TARGET_ELO}


def _overtraining_alone(law: Chinchilla) -> dict:
    hi_tc, hi_k = (float(v) for v in law.marginal_rate_point(MAX_RATE))
    lo_tc, lo_k = (float(v) for v in law.marginal_rate_point(1.0 / MAX_RATE))
    return {"train_span_oom": hi_tc - lo_tc, "inference_span_oom": hi_k - lo_k}


def _spans(d: dict) -> dict:
    return {"train_span_oom": d["train_span_oom"], "inference_span_oom": d["inference_span_oom"]}


def compute(fast: bool = False, mcts: bool = True, direct: bool | None = None) -> dict:
    """Every combination's spans, each technique's alone, and the sums of the parts.

    `fast`: coarser grids and, for sampling, the combination of all three only, on the grid.
    """
    law = Chinchilla.hoffmann2022()
    alone = {"overtraining": _overtraining_alone(law)}
    joint, sums, runs = {}, {}, {}
    # fast: the realistic combination (10@k) only
    for kind in (("10@k",) if fast else SELECTIONS):
        samp = sampling_combinations(kind, fast, direct=not fast if direct is None else direct)
        runs[kind] = samp
        pr = f"pruning (training-optimal model, {kind} target)"
        sa = f"{kind} (training-optimal model)"
        alone[pr] = _spans(_span_safe(samp["alone"]["pruning"]))
        alone[sa] = _spans(_span_safe(samp["alone"]["sampling"]))
        for name, f in samp["frontiers"].items():
            label = f"{name} at {kind} = {samp['target']:g}" if "overtraining" == name or \
                name == "overtraining + pruning" else name
            joint[label] = {**_spans(_span(f)), "certified": f["certified"],
                            "solves": f["solves"], "method": "grid"}
            parts = ["overtraining"] + ([pr] if "pruning" in name else []) + \
                ([sa] if kind in name else [])
            if len(parts) > 1:
                sums[label] = parts
        if "direct" in samp:
            f = samp["direct"]
            g = samp["frontiers"][f"overtraining + pruning + {kind}"]
            grid_at = np.interp(f["log_cap"], g["log_cap"], g["log_tc"])
            both = np.isfinite(f["log_tc"]) & np.isfinite(grid_at)
            joint[f"overtraining + pruning + {kind}, joint solve"] = {
                **_spans(_span(f)), "certified": f["certified"], "solves": f["solves"],
                "method": "solver",
                # the grid is a global search over the non-convex controls: the joint solve
                # should never be worse than it by more than the grid's resolution
                "worse_than_grid_oom": float(np.max(f["log_tc"][both] - grid_at[both]))
                if both.any() else None}
    if not mcts:
        return {"alone": alone, "joint": _with_sums(joint, sums, alone), "runs": runs}
    hex_ = mcts_combinations(fast)
    runs["mcts"] = hex_
    alone["MCTS (training-optimal network)"] = _spans(_span_safe(hex_["alone"]))
    joint["overtraining + MCTS"] = {**_spans(_span(hex_["joint"])),
                                    "certified": hex_["joint"]["certified"],
                                    "solves": hex_["joint"]["solves"], "method": "grid"}
    sums["overtraining + MCTS"] = ["overtraining", "MCTS (training-optimal network)"]
    return {"alone": alone, "joint": _with_sums(joint, sums, alone), "runs": runs}


def _with_sums(joint: dict, sums: dict, alone: dict) -> dict:
    for name, parts in sums.items():
        joint[name]["sum_train_span_oom"] = sum(alone[p]["train_span_oom"] for p in parts)
        joint[name]["sum_inference_span_oom"] = sum(alone[p]["inference_span_oom"] for p in parts)
        joint[name]["parts"] = parts
    return joint


def _span_safe(f: dict) -> dict:
    return window_span(f["log_ic"], f["log_tc"], f["rate"])


def overtraining_imp_grid(law: Chinchilla | None = None, target_loss: float = 2.0,
                          fast: bool = False) -> dict:
    """Overtraining and lossless IMP on one grid: the report's pruning (Epoch's cost model,
    no loss down to 10% density) applied to every model of the overtraining frontier.

    Both act on the parameter count served: each IMP round scales inference by $1 - x$ and
    training by Epoch's factor $F(d) = (1-d)/x$ (1 for the dense model), whatever $N$ and $D$.
    The frontier is the least training compute over the densities at each inference cap (the
    solver for $N$, $D$ inside); its span in the rate window, against the sum of the two rows,
    measures how much of the two rows overlaps.
    """
    from planner import imp_training_factor

    law = law or Chinchilla.hoffmann2022()
    rounds = np.arange(0, 11)  # 0.8^10 = 0.107: rounds of 20% down to 10% density
    density = np.r_[ROUNDS_FRACTION * 0 + (1 - ROUNDS_FRACTION) ** rounds, 0.1]
    factor = np.where(density < 1.0, np.asarray(imp_training_factor(
        jnp.asarray(density), ROUNDS_FRACTION, variant="epoch")), 1.0)
    n_c, _ = law.loss_optimal(target_loss)
    log_ic0 = math.log10(float(2.0 * n_c))
    kmax = float(law.max_inference_cut())
    log_caps = log_ic0 + np.arange(-1.0 - 0.999 * kmax, 0.3, 0.02 if fast else 0.005)
    options = {"a_scale": np.ones_like(density), "train_factor": factor,
               "inference_factor": density, "target_loss": np.full_like(density, target_loss),
               "density": density}
    f = joint_frontier(law, log_caps, options, tokens=1.0)
    return {**_spans(_span(f)), "frontier": f, "target_loss": target_loss,
            "densities": density, "train_factors": factor}


def report_method(rows: dict, grid: dict) -> dict:
    """The combined row the report's way: the reproduced rows added where the techniques act
    on different quantities, overlapping where both act on parameter count.

    `rows` holds the reproduced `scaling_policy`, `pruning` and `n_at_k` spans; `grid` is
    `overtraining_imp_grid`. Overtraining and pruning both shrink the parameters served, so
    they count once, as their joint span on the grid (the overlap is the sum of their rows
    less that); 10@k acts on the number of samples, which neither touches, so its row adds
    (on the planner's own joint grid, overtraining + sampling and overtraining + MCTS add to
    within 0.03 OOM: see `compute`).
    """
    out = {}
    for key in ("train", "inference"):
        k = f"{key}_span_oom"
        pair = rows["scaling_policy"][k] + rows["pruning"][k]
        out[f"{key}_overlap_oom"] = pair - grid[k]
        out[f"{key}_sum_oom"] = pair + rows["n_at_k"][k]
        out[k] = grid[k] + rows["n_at_k"][k]
    return out


def combined_spans(fast: bool = False, res: dict | None = None, rows: dict | None = None) -> dict:
    """The Epoch table's `combined` row, the report's way, and the composed solver's joint
    optimum beside it.

    The report's way (`report_method`, needs `rows`, the reproduced per-technique spans):
    overtraining + lossless IMP to 10% on one grid, plus the 10@k row. The joint optimum:
    overtraining + pruning + 10@k solved together with the planner's own laws (Frantar's
    sparsity law down to 1% density, the Beta sampling law linking Codex's per-problem success
    to AlphaCode's plateau, up to 10^12 samples), on the grid over density and samples; it is
    larger because its sampling law keeps rising as a power law in $k$ (10@k alone spans
    about 3.4 / 6.0 OOM where Epoch's saturating S-curve spans about 1 / 1.45) and it prunes
    to 1% density rather than losslessly to 10%.
    """
    res = res or compute(fast, mcts=False, direct=False)
    joint = res["joint"]
    key = "overtraining + pruning + 10@k"
    main = joint[key]
    cheap = joint.get("overtraining + pruning + pass@k")
    lo, hi = REPORTED_COMBINED_RANGE
    grid = overtraining_imp_grid(fast=fast)
    report = None if rows is None else report_method(rows, grid)
    sampling_alone = res["alone"].get("10@k (training-optimal model)")
    out = {
        "techniques": key,
        "target_10_at_k": TARGET_FILTERED,
        "joint_optimum": {"train_span_oom": main["train_span_oom"],
                          "inference_span_oom": main["inference_span_oom"],
                          "sampling_alone": sampling_alone},
        "overtraining_imp_grid": {k: v for k, v in grid.items() if k != "frontier"},
        "pass_at_k_combination": None if cheap is None else {
            "train_span_oom": cheap["train_span_oom"],
            "inference_span_oom": cheap["inference_span_oom"], "target_pass_at_k": TARGET_SCORE},
        "joint": {k: {kk: vv for kk, vv in v.items() if kk != "parts"} for k, v in joint.items()},
        "alone": res["alone"],
    }
    if report is not None:
        out.update(report)
    text = []
    if report is not None:
        pair = {ax: rows["scaling_policy"][f"{ax}_span_oom"] + rows["pruning"][f"{ax}_span_oom"]
                for ax in ("train", "inference")}
        text.append(
            f"The report's way: overtraining + lossless IMP to 10% on one grid "
            f"({grid['train_span_oom']:.2f} / {grid['inference_span_oom']:.2f} OOM; the two rows "
            f"add to {pair['train']:.2f} / {pair['inference']:.2f}"
            f", so they overlap by {report['train_overlap_oom']:.2f} / "
            f"{report['inference_overlap_oom']:.2f} OOM) plus the 10@k row gives "
            f"{report['train_span_oom']:.2f} / {report['inference_span_oom']:.2f} OOM "
            f"(report: {lo:g}–{hi:g} OOM).")
    text.append(
        f"Joint optimum of the composed solver ({key} at 10@k = {TARGET_FILTERED:g}, Frantar "
        f"pruning to 1%, the Beta sampling law to 1e12 samples): {main['train_span_oom']:.2f} / "
        f"{main['inference_span_oom']:.2f} OOM, larger because its sampling law does not "
        "saturate"
        + ("" if sampling_alone is None else
           f" (10@k alone spans {sampling_alone['train_span_oom']:.2f} / "
           f"{sampling_alone['inference_span_oom']:.2f} OOM)")
        + " and it prunes to 1% density.")
    if cheap is not None:
        text.append(f"With cheap verification (pass@k = {TARGET_SCORE:g}): "
                    f"{cheap['train_span_oom']:.2f} / {cheap['inference_span_oom']:.2f} OOM "
                    "(report: up to ~6 OOM).")
    out["summary"] = " ".join(text)
    return out
