# Snell et al. 2024, "Scaling LLM Test-Time Compute Optimally can be More Effective than Scaling
# Model Parameters" (arXiv 2408.03314), section "Exchanging pretraining and test-time compute":
# at equal total FLOP, on which questions does a small model that spends its savings on
# test-time compute beat a model M = 14 times larger answering with one sample?
#
# FLOPs-matched comparison: the small model draws X samples per question and a perfect verifier
# keeps a correct one (best-of-X), X = `planner.techniques.flops_matched_multiplier(14,
# D_inf/D_pre)`; the large model answers once. Both models' per-question success comes from
# the package's Codex success link at their Chinchilla reducible losses; questions are cut
# into five difficulty levels by quantiles of the small model's success, and the two models
# are coupled comonotonically (the question at quantile u has p = F⁻¹(u) under each model's Beta).
# Train-to-test jointly: one model for five classes of questions (difficulty offsets in the
# success link's log-odds), N, D and samples per class chosen under one lifetime budget
# (`planner.techniques.train_to_test`), across test-time demand: the optimal model shrinks and
# is trained longer as demand grows.
# Prints the tables and writes snell.{md,json,png} and snell_joint.png.
"""Snell et al. 2024: a small model with test-time compute against a 14x larger one."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from planner import Chinchilla, SuccessLink
from planner._techniques.sampling import codex_code_loss
from planner.experiments._common import (
    command_line,
    markdown_table,
    pyplot,
    save_figure,
    write_json,
    write_markdown,
)
from planner.techniques import beta_quantile, flops_matched_multiplier, train_to_test

SIZE_RATIO = 14.0
"""M: Snell et al. compare PaLM 2-S* with test-time compute against a ~14x larger model."""
PUBLISHED_RATIOS = (0.08, 0.40, 11.0)
"""D_inf/D_pre at which Snell et al. print the multiplier for M = 14 (257.75, 62.75, 15.77;
arXiv 2408.03314, section "Exchanging pretraining and test-time compute")."""
RATIOS = tuple(sorted({*(float(r) for r in np.geomspace(0.01, 100.0, 81)), *PUBLISHED_RATIOS}))
"""The sweep of inference-to-pretraining token ratios: 0.01 to 100, log-spaced, and the
published three."""
TABLE_RATIOS = (0.01, *PUBLISHED_RATIOS, 100.0)
"""The ratios the Markdown table lists: the sweep's ends and the published three."""
LEVELS = 5
"""Difficulty levels: Snell et al. bin questions into five by quantiles of the base model's
pass@1 (level 1 easiest)."""
SMALL_PARAMS = 2e9
"""N of the small model. At 20 tokens per parameter both models' Chinchilla reducible losses
(0.72 and 0.56) lie inside the range the Codex link was calibrated on (Codex 300M to 12B:
reducible code loss 0.81 to 0.50, `codex_code_loss`); at 1e9 the small model's 0.89 would not."""
CODEX_PARAMS = (3e8, 12e9)
"""The smallest and largest Codex models the link was calibrated on (Chen et al. 2021, Table 1;
`SuccessLink.codex2021`), whose reducible code losses (`codex_code_loss`) bound the range."""
TRAIN_FLOPS_PER_TOKEN = 6.0
"""t: FLOP per parameter per pretraining token, 6N (Kaplan et al. 2020; Snell et al. 2024)."""
INFERENCE_FLOPS_PER_TOKEN = 4.0
"""i: FLOP per parameter per inference token, 2N for the generator and 2N for a verifier of the
same size (Snell et al. 2024)."""
TOKENS_PER_PARAM = 20.0
"""Pretraining tokens per parameter of the small model: Chinchilla's compute-optimal ratio
(Hoffmann et al. 2022, about 20 tokens per parameter); the large model is trained on the same
D_pre, as in Snell et al.'s accounting."""
NODES = 128
"""Gauss–Legendre nodes per difficulty level for the averages over quantiles u."""
ODDS_COLOUR_LIMIT = 3.0
"""The figure's colour scale ends at odds ratios of 10^±3 (the easiest level's best-of-X
reaches 1 - 1e-15, which would wash out every other cell)."""


def level_edges(levels: int = LEVELS) -> np.ndarray:
    """Quantile edges (u_low, u_high) of each level, level 1 (easiest: the top quantile of the
    small model's success) first."""
    low = np.arange(levels - 1, -1, -1)
    return np.stack([low / levels, (low + 1) / levels], axis=1)


def level_nodes(levels: int = LEVELS, nodes: int = NODES) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes u and weights in each level, the weights summing to 1 per level
    (so that a weighted sum is the level's mean)."""
    x, w = np.polynomial.legendre.leggauss(nodes)
    edges = level_edges(levels)
    lo, hi = edges[:, :1], edges[:, 1:]
    return lo + (hi - lo) * (x + 1.0) / 2.0, np.broadcast_to(w / 2.0, (levels, nodes))


def best_of(p, n_samples):
    r"""$1 - (1 - p)^X$, without cancelling for tiny $p$: $-\operatorname{expm1}(X \log(1-p))$."""
    return -jnp.expm1(n_samples * jnp.log1p(-p))


# ----------------------------------------------------------------------- the two models
def models(law: Chinchilla, link: SuccessLink, small_params: float = SMALL_PARAMS,
           size_ratio: float = SIZE_RATIO, tokens_per_param: float = TOKENS_PER_PARAM) -> dict:
    """Each model's parameters, reducible loss L - E and Beta(α, β) of per-question success."""
    d_pre = tokens_per_param * small_params
    out = {"pretraining_tokens": d_pre}
    for name, n in (("small", small_params), ("large", size_ratio * small_params)):
        reducible = float(law.loss(n, d_pre) - law.irreducible)
        a, b = (float(v) for v in link.beta_params(reducible))
        out[name] = {"n_params": n, "reducible_loss": reducible, "alpha": a, "beta": b,
                     "pass_at_1": a / (a + b)}
    return out


def crossover_samples(p_small, weights, target, low=0.0, high=40.0, steps: int = 100):
    """Per level, the samples X* at which the small model's best-of-X mean meets `target` (the
    large model's pass@1), by bisection on log X in [e^low, e^high]; inf beyond e^high."""
    def mean(log_x):
        return jnp.sum(weights * best_of(p_small, jnp.exp(log_x)[:, None]), axis=1)

    lo = jnp.full(target.shape, low)
    hi = jnp.full(target.shape, high)

    def step(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        short = mean(mid) < target
        return jnp.where(short, mid, lo), jnp.where(short, hi, mid)

    lo, hi = jax.lax.fori_loop(0, steps, step, (lo, hi))
    reached = mean(jnp.full(target.shape, high)) >= target
    return jnp.where(reached, jnp.exp(0.5 * (lo + hi)), jnp.inf)


# ------------------------------------------------------------------ FLOPs-matched part
def flops_matched(law: Chinchilla | None = None, link: SuccessLink | None = None,
                  ratios=RATIOS, small_params: float = SMALL_PARAMS) -> dict:
    """Per difficulty level and D_inf/D_pre: the small model's best-of-X against the large
    model's pass@1, with X from `flops_matched_multiplier` (6N training, 4N inference FLOP per
    token for both)."""
    law_name = "Chinchilla.hoffmann2022" if law is None else "a given Chinchilla law"
    link_name = "SuccessLink.codex2021" if link is None else "a given SuccessLink"
    law = law or Chinchilla.hoffmann2022()
    link = link or SuccessLink.codex2021()
    setting = models(law, link, small_params)
    ratios = np.asarray(ratios, float)
    x = np.asarray(flops_matched_multiplier(SIZE_RATIO, ratios, TRAIN_FLOPS_PER_TOKEN,
                                            INFERENCE_FLOPS_PER_TOKEN))
    u, w = level_nodes()
    p = {name: beta_quantile(setting[name]["alpha"], setting[name]["beta"], u)
         for name in ("small", "large")}
    w = jnp.asarray(w)
    small_one = np.asarray(jnp.sum(w * p["small"], axis=1))
    large_one = np.asarray(jnp.sum(w * p["large"], axis=1))
    # best-of-X of the small model: [level, ratio]
    small_best = np.asarray(jnp.sum(w[:, None, :] * best_of(p["small"][:, None, :],
                                                            jnp.asarray(x)[None, :, None]),
                                    axis=2))
    diff = small_best - large_one[:, None]
    x_star = np.asarray(crossover_samples(p["small"], w, jnp.asarray(large_one)))
    t_over_i = TRAIN_FLOPS_PER_TOKEN / INFERENCE_FLOPS_PER_TOKEN
    # X falls with the ratio towards M, so the tie's ratio inverts X = M + (t/i)(M - 1)/ratio;
    # where X* <= M the small model wins at every ratio
    r_star = np.where(x_star > SIZE_RATIO,
                      t_over_i * (SIZE_RATIO - 1.0) / np.maximum(x_star - SIZE_RATIO, 1e-300),
                      np.inf)
    # self-check: the levels' mean is the package's pass@X of the whole Beta (closed form)
    whole = np.asarray(link.pass_at_k(setting["small"]["reducible_loss"], jnp.asarray(x)))
    level_check = float(np.max(np.abs(small_best.mean(axis=0) / whole - 1.0)))
    pass1_check = float(abs(small_one.mean() / setting["small"]["pass_at_1"] - 1.0))
    return {
        "setting": {**setting, "size_ratio": SIZE_RATIO, "tokens_per_param": TOKENS_PER_PARAM,
                    "law": law_name, "link": link_name,
                    "link_concentration": float(link.concentration),
                    "law_coefficients": {k: float(getattr(law, k))
                                         for k in ("E", "A", "B", "alpha", "beta")},
                    "calibration_reducible_loss": sorted(
                        float(codex_code_loss(n)) for n in CODEX_PARAMS),
                    "train_flops_per_token": TRAIN_FLOPS_PER_TOKEN,
                    "inference_flops_per_token": INFERENCE_FLOPS_PER_TOKEN},
        "levels": list(range(1, LEVELS + 1)),
        "quantile_edges": level_edges(),
        "ratios": ratios, "n_samples": x,
        "small_pass_at_1": small_one, "large_pass_at_1": large_one,
        "small_best_of_x": small_best, "small_minus_large": diff,
        "small_wins": diff > 0.0,
        "crossover_samples": x_star, "crossover_ratio": r_star,
        "max_relative_gap_levels_vs_closed_form": level_check,
        "relative_gap_pass_at_1_vs_closed_form": pass1_check,
    }


def _verdict(d: float) -> str:
    side = "small" if d > 0 else "large"
    return f"{side} +{abs(d) * 100:.3g} pp"


def flops_matched_markdown(res: dict) -> str:
    s = res["setting"]
    sm, lg = s["small"], s["large"]
    levels = res["levels"]
    low, high = s["calibration_reducible_loss"]
    inside = all(low <= m["reducible_loss"] <= high for m in (sm, lg))
    text = (
        "## FLOPs-matched comparison\n\n"
        f"Setting: `{s['law']}` with a small model of N = {sm['n_params']:.3g} and a large one "
        f"of M·N = {lg['n_params']:.3g} (M = {s['size_ratio']:g}), both pretrained on "
        f"D_pre = {s['pretraining_tokens']:.3g} tokens ({s['tokens_per_param']:g} per small-model "
        f"parameter, Chinchilla's ratio). Reducible losses {sm['reducible_loss']:.3f} and "
        f"{lg['reducible_loss']:.3f}, {'inside' if inside else 'not both inside'} the range "
        "the Codex link was calibrated on "
        f"({s['calibration_reducible_loss'][0]:.3f} to {s['calibration_reducible_loss'][1]:.3f}, "
        f"Codex at N = {max(CODEX_PARAMS):.3g} to {min(CODEX_PARAMS):.3g}). `{s['link']}` gives "
        "per-question success Beta("
        f"{sm['alpha']:.4f}, {sm['beta']:.4f}) (pass@1 {sm['pass_at_1']:.4f}) and Beta("
        f"{lg['alpha']:.4f}, {lg['beta']:.4f}) (pass@1 {lg['pass_at_1']:.4f}). Questions are cut "
        f"into {len(levels)} levels by quantiles of the small model's success (level 1: the top "
        "fifth, easiest); the question at quantile u has p_small = F_small⁻¹(u) and "
        "p_large = F_large⁻¹(u). The small model draws X samples and a perfect verifier keeps a "
        "correct one (best-of-X); the large model answers once. X = "
        f"`flops_matched_multiplier({s['size_ratio']:g}, D_inf/D_pre)`, "
        f"{s['train_flops_per_token']:g}N FLOP per training token and "
        f"{s['inference_flops_per_token']:g}N per inference token (generator and verifier).\n\n"
    )
    rows = []
    for i, level in enumerate(levels):
        lo, hi = res["quantile_edges"][i]
        xs, rs = res["crossover_samples"][i], res["crossover_ratio"][i]
        rows.append([level, f"{lo:.1f}–{hi:.1f}", f"{res['small_pass_at_1'][i]:.3g}",
                     f"{res['large_pass_at_1'][i]:.3g}",
                     "never" if not np.isfinite(xs) else f"{xs:.4g}",
                     f"every ratio (X* < M = {SIZE_RATIO:g})" if np.isinf(rs) and np.isfinite(xs)
                     else ("none" if not np.isfinite(xs) else f"D_inf/D_pre < {rs:.3g}")])
    text += ("Per level: mean success with one sample, the samples X* at which the small "
             "model's best-of-X matches the large model's pass@1, and the inference loads at "
             "which the small model wins (X > X*):\n\n")
    text += markdown_table(["level", "quantiles u", "small pass@1", "large pass@1",
                            "X* (small matches large)", "small wins where"], rows)
    picks = [int(np.argmin(np.abs(res["ratios"] - r))) for r in TABLE_RATIOS]
    rows = []
    for j in picks:
        rows.append([f"{res['ratios'][j]:.3g}", f"{res['n_samples'][j]:.2f}",
                     *[_verdict(res["small_minus_large"][i, j]) for i in range(len(levels))]])
    text += ("\nWho wins, and by how much (small best-of-X minus large pass@1, percentage "
             "points), at the published ratios and the sweep's ends; X by "
             "`flops_matched_multiplier`:\n\n")
    text += markdown_table(["D_inf/D_pre", "X", *[f"level {lv}" for lv in levels]], rows)
    text += (f"\nSelf-checks: the levels' mean best-of-X equals the package's closed-form "
             f"pass@X of the whole Beta to {res['max_relative_gap_levels_vs_closed_form']:.1e} "
             f"(relative), their mean pass@1 its mean to "
             f"{res['relative_gap_pass_at_1_vs_closed_form']:.1e}.\n\n")
    text += _comparison(res)
    return text


def _span(levels) -> str:
    """'levels 1–3', 'level 5', 'levels 1, 3' or 'no level' for a list of levels."""
    levels = list(levels)
    if not levels:
        return "no level"
    if len(levels) == 1:
        return f"level {levels[0]}"
    if levels == list(range(levels[0], levels[-1] + 1)):
        return f"levels {levels[0]}–{levels[-1]}"
    return "levels " + ", ".join(str(v) for v in levels)


def published_winners(res: dict) -> list[dict]:
    """At each published ratio: X and the levels each model wins."""
    out = []
    for ratio in PUBLISHED_RATIOS:
        j = int(np.argmin(np.abs(res["ratios"] - ratio)))
        wins = res["small_wins"][:, j]
        out.append({"ratio": ratio, "n_samples": float(res["n_samples"][j]),
                    "small": [lv for lv, w in zip(res["levels"], wins, strict=True) if w],
                    "large": [lv for lv, w in zip(res["levels"], wins, strict=True) if not w]})
    return out


def _comparison(res: dict) -> str:
    levels, r = res["levels"], res["ratios"]
    hardest = levels[-1]
    published = published_winners(res)
    light, heavy = published[0], published[-1]
    text = "**What `planner` gives.** " + "; ".join(
        f"at D_inf/D_pre = {p['ratio']:g} (X = {p['n_samples']:.2f}) the small model wins "
        f"{_span(p['small'])} and the large model {_span(p['large'])}"
        for p in published) + ". "
    text = text.replace("** at", "** At", 1)
    always = [lv for i, lv in enumerate(levels) if res["small_wins"][i].all()]
    text += (f"Over the whole sweep, {r[0]:g} to {r[-1]:g}, the small model wins "
             f"{_span(always)} at every ratio: X never falls below M = "
             f"{res['setting']['size_ratio']:g} (the small model saves pretraining FLOP as well "
             f"as inference FLOP), and {res['setting']['size_ratio']:g} samples with a perfect "
             "verifier beat one sample of the larger model wherever X* < M. On the hardest "
             f"level the small model needs X* = {res['crossover_samples'][-1]:.4g} samples, so it "
             f"wins there only below D_inf/D_pre = {res['crossover_ratio'][-1]:.3g}.\n\n")
    agree_hard = hardest in light["large"] and hardest in heavy["large"]
    easy_medium = levels[:3]
    wins_light = all(lv in light["small"] for lv in easy_medium)
    heavy_small = heavy["small"]
    text += (
        "**Against Snell et al.** At equal FLOP their small model with compute-optimal "
        "test-time compute beats the ~14x larger model on easy and medium questions when "
        "inference is light, but not on the hardest questions nor under heavy inference load "
        "(D_inf/D_pre of order 10), where pretraining is the better use of compute "
        "(Snell et al. 2024, section \"Exchanging pretraining and test-time compute\"). "
        "`planner` "
        + ("agrees" if wins_light else "disagrees")
        + f" at light load (D_inf/D_pre = {light['ratio']:g}: the small model wins "
        f"{_span(light['small'])}) and "
        + ("agrees" if agree_hard else "disagrees")
        + " on the hardest questions (level "
        f"{hardest} goes to the large model at {light['ratio']:g} and at {heavy['ratio']:g}). "
        + ("It disagrees under heavy load: at " if heavy_small else "It agrees under heavy load: ")
        + (f"D_inf/D_pre = {heavy['ratio']:g} (X = {heavy['n_samples']:.2f}) the small model "
           f"still wins {_span(heavy_small)}, the large model only "
           f"{_span(heavy['large'])}.\n\n" if heavy_small else
           f"at D_inf/D_pre = {heavy['ratio']:g} the large model wins every level.\n\n")
    )
    text += (
        "**Why it may differ.** (1) Snell et al.'s test-time compute is search against a "
        "learned process reward model (PRM) and sequential revisions, whose gains saturate "
        "(beam search even over-optimises the PRM on easy questions); best-of-X with a perfect "
        "verifier is pass@X, which keeps rising with X: an upper bound on any selection among X "
        "samples"
        + (f", and why X >= {res['setting']['size_ratio']:g} samples keep winning "
           f"{_span(always)} at any load" if always else "")
        + ". A verifier that misses correct answers caps the small model's success at its "
        "accuracy (n@k, `FilteredSampling`). (2) The success distribution is the Codex "
        "HumanEval calibration (concentration "
        f"{res['setting']['link_concentration']:.3g}: a U-shaped Beta, most questions "
        "near-certain or near-hopeless), transferred to Chinchilla's reducible loss, not "
        "MATH with PaLM 2 models; its spread sets how many samples each level needs. (3) The "
        "comonotone coupling assumes both models rank the questions alike; Snell et al. bin by "
        "the small model's measured pass@1 and the larger model's gains need not follow that "
        "order.\n"
    )
    return text


def _log_odds(p):
    p = np.clip(p, 1e-300, 1.0 - 1e-16)
    return np.log10(p) - np.log10(1.0 - p)


def _plot(res: dict, path: Path) -> None:
    plt = pyplot()
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.lines import Line2D

    r, x = res["ratios"], res["n_samples"]
    levels = res["levels"]
    small, large = res["small_best_of_x"], res["large_pass_at_1"]
    # odds, not success: a win by 20 points at 80% success and one by a factor of 100 at 1e-5
    # both show
    odds = _log_odds(small) - _log_odds(large)[:, None]
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.2))
    ax = axes[0]
    lim = ODDS_COLOUR_LIMIT
    edges = np.sqrt(r[1:] * r[:-1])
    edges = np.r_[r[0] ** 2 / edges[0], edges, r[-1] ** 2 / edges[-1]]
    mesh = ax.pcolormesh(edges, np.arange(len(levels) + 1) + 0.5, odds, cmap="RdBu",
                         norm=TwoSlopeNorm(0.0, -lim, lim), shading="flat")
    fig.colorbar(mesh, ax=ax, extend="both",
                 label="log10 odds ratio, small best-of-X : large pass@1\n"
                 "blue: small model wins, red: large model wins")
    for i, lv in enumerate(levels):
        tie = res["crossover_ratio"][i]
        if r[0] <= tie <= r[-1]:
            ax.plot([tie, tie], [lv - 0.5, lv + 0.5], color="k", lw=2)
            ax.annotate(f"tie at {tie:.3g}", (tie, lv), xytext=(4, 0), textcoords="offset points",
                        va="center", fontsize=8)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(len(levels) + 0.5, 0.5)
    ax.set_yticks(levels, [f"{lv}" + (" (easiest)" if lv == 1 else
                                      " (hardest)" if lv == len(levels) else "")
                           for lv in levels])
    ax.set_ylabel("difficulty level (quintiles of small-model success)")
    ax.set_title("Who wins at equal FLOP (black: tie)", pad=22)
    ax = axes[1]
    for i, lv in enumerate(levels):
        ax.plot(r, small[i], color=f"C{i}")
        ax.axhline(large[i], color=f"C{i}", ls="--", lw=1)
    handles = [Line2D([], [], color=f"C{i}", label=f"level {lv}") for i, lv in enumerate(levels)]
    handles += [Line2D([], [], color="k", label="small model, best-of-X"),
                Line2D([], [], color="k", ls="--", lw=1, label="large model, one sample")]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_yscale("log")
    ax.set_ylabel("mean success on the level")
    ax.set_title("Success by level", pad=22)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("inference tokens / pretraining tokens, D_inf/D_pre")
        # the published ratios, with the small model's X on a top axis
        top = ax.secondary_xaxis("top")
        marks = [int(np.argmin(np.abs(r - ratio))) for ratio in PUBLISHED_RATIOS]
        top.set_xticks([r[j] for j in marks], [f"X = {x[j]:.2f}" for j in marks], fontsize=8)
        top.minorticks_off()
        for j in marks:
            ax.axvline(r[j], color="dimgrey", ls=":", lw=1.2)
    s = res["setting"]
    fig.suptitle(f"FLOPs-matched comparison (Snell et al. 2024): N = {s['small']['n_params']:.0e}"
                 f" drawing X samples with a perfect verifier against a {s['size_ratio']:g}x "
                 "larger model answering once\nChinchilla (Hoffmann 2022) losses, Codex success "
                 "link; X = flops_matched_multiplier(14, D_inf/D_pre)", fontsize=10)
    save_figure(fig, path)
    plt.close(fig)


# ------------------------------------------------------------------------ train to test
JOINT_COMPUTE = 1e23
"""The lifetime budget of the joint plans, FLOP (a 7B model trained on 2.4T tokens)."""
JOINT_OFFSETS = (-2.0, -1.0, 0.0, 1.0, 2.0)
"""The classes' difficulty offsets in the link's log-odds, hardest first, equal shares."""
JOINT_DEMANDS = tuple(10.0 ** e for e in np.arange(9.0, 13.5, 0.5))
"""Test-time demand: tokens of one sample for every query over the lifetime."""


def joint(law: Chinchilla | None = None, link: SuccessLink | None = None) -> dict:
    """`train_to_test` across demand: the model, its samples and its success."""
    law = Chinchilla.hoffmann2022() if law is None else law
    link = SuccessLink.codex2021() if link is None else link
    rows = []
    for demand in JOINT_DEMANDS:
        plan = train_to_test(law, link, np.asarray(JOINT_OFFSETS), JOINT_COMPUTE, demand)
        rows.append({
            "demand": float(demand), "n_params": float(plan.n_params),
            "n_tokens": float(plan.n_tokens),
            "tokens_per_param": float(plan.n_tokens / plan.n_params),
            "mean_samples": float(plan.samples.usage),
            "samples": [float(k) for k in plan.samples.n_samples],
            "inference_share": float(plan.inference_share),
            "score": float(plan.samples.objective), "gradient": float(plan.gradient),
        })
    return {"compute": JOINT_COMPUTE, "offsets": list(JOINT_OFFSETS), "rows": rows}


def joint_markdown(res: dict) -> str:
    rows = res["rows"]
    text = (
        "\n## Train-to-test jointly\n\n"
        f"One model for {len(res['offsets'])} equal classes of questions (difficulty offsets "
        f"{', '.join(f'{o:g}' for o in res['offsets'])} in the Codex link's log-odds, hardest "
        f"first), its parameters, tokens and samples per class chosen to maximise the expected "
        f"success under one lifetime budget of {res['compute']:.0e} FLOP "
        "(`planner.techniques.train_to_test`, Chinchilla's law of Hoffmann et al. 2022), "
        "against the test-time demand (tokens of one sample for every query).\n\n")
    text += markdown_table(
        ["demand (tokens)", "N", "D", "D/N", "mean samples", "samples, hardest to easiest",
         "inference share", "success"],
        [[f"{r['demand']:.2g}", f"{r['n_params']:.3g}", f"{r['n_tokens']:.3g}",
          f"{r['tokens_per_param']:.3g}", f"{r['mean_samples']:.3g}",
          " / ".join(f"{k:.3g}" for k in r["samples"]), f"{r['inference_share']:.3f}",
          f"{r['score']:.4f}"] for r in rows])
    first, last = rows[0], rows[-1]
    text += (
        f"\nFrom {first['demand']:.0e} to {last['demand']:.0e} tokens of demand the optimal "
        f"model shrinks {first['n_params'] / last['n_params']:.3g}-fold "
        f"({first['n_params']:.3g} to {last['n_params']:.3g} parameters) and is trained "
        f"{last['tokens_per_param'] / first['tokens_per_param']:.3g} times longer per "
        f"parameter ({first['tokens_per_param']:.3g} to {last['tokens_per_param']:.3g} tokens "
        f"per parameter), while the mean samples per query fall from "
        f"{first['mean_samples']:.3g} to {last['mean_samples']:.3g}: with test-time compute "
        "counted, the optimum moves into overtraining (Roberts et al. 2026).\n")
    return text


def _plot_joint(res: dict, path: Path) -> None:
    plt = pyplot()
    rows = res["rows"]
    demand = np.array([r["demand"] for r in rows])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.loglog(demand, [r["n_params"] for r in rows], "o-", label="parameters N")
    left.set_xlabel("test-time demand (tokens of one sample for every query)")
    left.set_ylabel("parameters N")
    twin = left.twinx()
    twin.loglog(demand, [r["tokens_per_param"] for r in rows], "s--", color="C1",
                label="tokens per parameter D/N")
    twin.set_ylabel("tokens per parameter D/N")
    left.legend(handles=left.get_lines() + twin.get_lines(), fontsize=8, loc="center left")
    left.set_title("The optimal model shrinks and trains longer")
    samples = np.array([r["samples"] for r in rows])
    for j, offset in enumerate(res["offsets"]):
        right.loglog(demand, samples[:, j], "o-", ms=3, label=f"offset {offset:g}")
    right.set_xlabel("test-time demand (tokens of one sample for every query)")
    right.set_ylabel("samples per query")
    right.set_title("Samples per class (hardest: offset -2)")
    right.legend(fontsize=8)
    fig.suptitle(f"Train-to-test jointly under {res['compute']:.0e} FLOP "
                 "(Chinchilla, Codex success link)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


# ----------------------------------------------------------------------------------- run
def run(output: Path) -> dict:
    jax.config.update("jax_enable_x64", True)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    matched = flops_matched()
    together = joint()
    sections = [flops_matched_markdown(matched), joint_markdown(together)]
    data = {"flops_matched": matched, "train_to_test": together}
    body = "\n".join(sections)
    write_markdown(output / "snell.md",
                   "Test-time compute against parameters (Snell et al. 2024)", body)
    write_json(output / "snell.json", data)
    _plot(matched, output / "snell.png")
    _plot_joint(together, output / "snell_joint.png")
    print(body)
    return {f"small wins at {p['ratio']:g}": _span(p["small"])
            for p in published_winners(matched)}


def main() -> None:
    command_line(run, __doc__)


if __name__ == "__main__":
    main()
