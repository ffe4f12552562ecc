# Iso-performance contours and Pareto frontiers in the (inference FLOP, training FLOP) plane for
# each technique of Villalobos & Atkinson 2023 (Epoch AI), as in the report's figures.
#
# Shows, for overtraining (Chinchilla iso-loss curves, with the solver's frontier on one of
# them), pruning (Epoch's IMP cost model and the Frantar-penalised frontier), MCTS (calibrated
# Hex model against Jones's straight line), pass@k and 10@k (Epoch's S-curves fitted to Codex
# and AlphaCode, with the data), where each contour is Pareto-efficient and where the exchange
# rate stays within 6:1; a last panel overlays every technique's efficient segment. Prints the
# span of each drawn contour and writes frontiers.{json,md,png}.
"""Iso-performance contours and Pareto frontiers of every trade-off technique."""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from planner import MCTS, Chinchilla, JonesFrontier, imp_training_factor
from planner.experiments._common import (
    command_line,
    markdown_table,
    pyplot,
    save_figure,
    write_json,
    write_markdown,
)
from planner.experiments.epoch_tradeoffs import (
    ALPHACODE_PARAMS,
    ALPHACODE_SAMPLES,
    ALPHACODE_SOLVE,
    ALPHACODE_TOKENS,
    CODEX_PARAMS,
    CODEX_PASS,
    CODEX_SAMPLES,
    CODEX_TOKENS,
    MAX_RATE,
    chinchilla_frontier,
    contour,
    fit_n_at_k,
    fit_pass_at_k,
    window_span,
)

LOSSES = (1.9, 2.0, 2.2, 2.5)
ELOS = (-1500.0, -1000.0, -500.0, -250.0, -50.0)
PASS_TARGETS = (0.3, 0.5, 0.7, 0.9, 0.99)
SOLVE_TARGETS = (0.2, 0.25, 0.3)
TOKENS_PER_SAMPLE = 1000.0
"""Tokens a code sample costs to generate (the report's 1000-token query); it moves
the S-curve panels along the inference axis and changes no span."""


def _efficient(log_ic, log_tc, rate):
    """Mask of the points whose exchange rate lies in [1/6, 6]."""
    rate = np.asarray(rate)
    return np.isfinite(rate) & (rate >= 1.0 / MAX_RATE) & (rate <= MAX_RATE)


def scaling_contours(law: Chinchilla, losses=LOSSES) -> dict:
    """Iso-loss curves $D(N)$ in (IC = 2N, TC = 6ND), Pareto part $N \\le N_c$ first."""
    out = {}
    for ell in losses:
        n_min = float(law.min_params(ell))
        n_c, _ = law.loss_optimal(ell)
        # from where training is 3 OOM above its optimum (rate far beyond 6:1) to 30x N_c
        n = np.geomspace(n_min * (1.0 + 1e-3), float(n_c) * 30.0, 800)
        d = np.asarray(law.iso_loss_tokens(jnp.asarray(n), ell))
        r = (float(law.alpha) * float(law.A) * n ** -float(law.alpha)
             / (float(law.beta) * float(law.B) * d ** -float(law.beta)))
        out[str(ell)] = {"log_ic": np.log10(2 * n), "log_tc": np.log10(6 * n * d),
                         "rate": r - 1.0, "pareto": n <= float(n_c)}
    solver = chinchilla_frontier(law, 2.0, np.linspace(0.0, 0.99 * float(law.max_inference_cut()),
                                                        12))
    return {"contours": out, "solver": solver}


def pruning_contours(law: Chinchilla, losses=LOSSES) -> dict:
    """Epoch's IMP cost model from training-optimal dense models, density 1 to 0.01."""
    dens = np.geomspace(1.0, 0.01, 300)
    factor = np.asarray(imp_training_factor(jnp.asarray(dens), 0.2, variant="final_retrain"))
    out = {}
    for ell in losses:
        n_c, d_c = (float(v) for v in law.loss_optimal(ell))
        # Epoch counts the dense training as round 0 ("epoch" variant); drawn with the final
        # retrain counted so that density 1 is the dense model itself
        out[str(ell)] = {"log_ic": np.log10(2 * n_c * dens),
                         "log_tc": np.log10(6 * n_c * d_c * factor),
                         "rate": -np.gradient(np.log10(factor), np.log10(dens))}
    epoch10 = float(imp_training_factor(0.1, 0.2, variant="epoch"))
    return {"contours": out, "density": dens, "epoch_factor_at_10pct": epoch10}


def mcts_contours(elos=ELOS) -> dict:
    """Iso-Elo frontiers of the calibrated model (efficient part) and Jones's line."""
    model = MCTS.calibrated(1.0)
    jones = JonesFrontier.jones2021()
    out = {}
    for elo in elos:
        u = np.linspace(10.0, 30.0, 2000)
        train, _ = model.deficits(jnp.asarray(u), 0.0)
        rest = -elo - np.asarray(train)
        ok = rest > 0
        v = np.full_like(u, np.nan)
        v[ok] = np.asarray(model._search_inverse(jnp.asarray(rest[ok])))
        ok &= v >= 0.0  # at least one node
        m = 10.0 ** v[ok]
        rate = np.asarray(model.marginal_rate(jnp.asarray(10.0 ** u[ok]), jnp.asarray(m)))
        tc_j = np.asarray(jones.train_flops(jnp.asarray(m * float(model.flops_per_node)), elo))
        out[str(elo)] = {"log_ic": v[ok] + math.log10(float(model.flops_per_node)),
                         "log_tc": u[ok], "rate": rate, "jones_log_tc": np.log10(tc_j)}
    return {"contours": out}


def _scurve_contours(curve, targets, tokens_data, data=None) -> dict:
    """S-curve contours in FLOP: $IC = k \\cdot 2N \\cdot$ tokens, $N = TC/(6D)$."""
    out = {}
    xs = np.linspace(0.0, 14.0, 1401)
    for p in targets:
        c = contour(curve, p, xs)
        r = c["rate"]
        log_n = c["log_tc"] - math.log10(6.0 * tokens_data)
        log_ic = xs + math.log10(2.0 * TOKENS_PER_SAMPLE) + log_n
        ok = np.isfinite(r)
        rate_flop = np.where(ok & (r < 1.0), r / np.where(r < 1.0, 1.0 - r, 1.0), np.nan)
        out[str(p)] = {"log_ic": log_ic[ok], "log_tc": c["log_tc"][ok], "rate": rate_flop[ok]}
    return out


def _points(params, samples, score, tokens):
    params, samples = np.asarray(params, float), np.asarray(samples, float)
    log_tc = np.repeat(np.log10(6.0 * params * tokens), samples.size)
    log_ic = (np.log10(np.outer(2.0 * params * TOKENS_PER_SAMPLE, samples))).ravel()
    return {"log_ic": log_ic, "log_tc": log_tc, "score": np.asarray(score, float).ravel()}


def compute(fast: bool = False) -> dict:
    """Every panel's curves; `fast` draws two levels per technique."""
    law = Chinchilla.hoffmann2022()
    pk, _ = fit_pass_at_k()
    nk, _ = fit_n_at_k()
    pick = (lambda v: v[1::2][:2]) if fast else (lambda v: v)  # noqa: E731
    return {
        "scaling": scaling_contours(law, pick(LOSSES)),
        "pruning": pruning_contours(law, pick(LOSSES)),
        "mcts": mcts_contours(pick(ELOS)),
        "pass_at_k": {"contours": _scurve_contours(pk, pick(PASS_TARGETS), CODEX_TOKENS),
                      "data": _points(CODEX_PARAMS, CODEX_SAMPLES, CODEX_PASS, CODEX_TOKENS)},
        "n_at_k": {"contours": _scurve_contours(nk, pick(SOLVE_TARGETS), ALPHACODE_TOKENS),
                   "data": _points(ALPHACODE_PARAMS, ALPHACODE_SAMPLES, ALPHACODE_SOLVE,
                                   ALPHACODE_TOKENS)},
    }


def _spans_table(res: dict) -> tuple[str, dict]:
    rows, spans = [], {}
    for tech, key in (("scaling", "loss"), ("pruning", "loss"), ("mcts", "Elo"),
                      ("pass_at_k", "pass@k"), ("n_at_k", "10@k")):
        for level, c in res[tech]["contours"].items():
            sel = np.isfinite(c["rate"]) & (c["rate"] > 0)
            if tech == "scaling":
                sel &= c["pareto"]
            if sel.sum() < 3:
                continue
            s = window_span(c["log_ic"][sel], c["log_tc"][sel], c["rate"][sel])
            spans[f"{tech} {key} {level}"] = s
            rows.append([tech, f"{key} {level}", round(s["train_span_oom"], 3),
                         round(s["inference_span_oom"], 3),
                         f"{s['ends']['high_rate']['bound']}/{s['ends']['low_rate']['bound']}"])
    return markdown_table(["technique", "contour", "training span (OOM)",
                           "inference span (OOM)", "ends bounded by (6:1 / 1:6)"], rows), spans


def _plot(res: dict, spans: dict, path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(17, 10.5))
    axes = axes.ravel()
    cmap = plt.get_cmap("viridis")
    # each panel's axes are trimmed to the region with data: the efficient segments and the
    # published points (log10 coordinates), with a margin; the solver's marks far up the
    # steep end of the loss-2.0 curve fall outside
    region: dict = {}

    def keep(ax, log_x, log_y):
        log_x, log_y = np.asarray(log_x, float).ravel(), np.asarray(log_y, float).ravel()
        ok = np.isfinite(log_x) & np.isfinite(log_y)
        region.setdefault(ax, []).append((log_x[ok], log_y[ok]))

    def draw(ax, c, color, label, pareto=None):
        x, y = 10.0 ** c["log_ic"], 10.0 ** c["log_tc"]
        eff = _efficient(c["log_ic"], c["log_tc"], c["rate"])
        if pareto is not None:
            ax.plot(x[~pareto], y[~pareto], ls="--", color=color, lw=0.9, alpha=0.6)
            eff &= pareto
            x, y, eff = x[pareto], y[pareto], eff[pareto]
        ax.plot(x, y, color=color, lw=1.0, alpha=0.6)
        ax.plot(np.where(eff, x, np.nan), np.where(eff, y, np.nan), color=color, lw=3.0,
                label=label)
        keep(ax, np.log10(x[eff]), np.log10(y[eff]))

    ax = axes[0]
    sc = res["scaling"]
    for i, (ell, c) in enumerate(sc["contours"].items()):
        draw(ax, c, cmap(i / len(LOSSES)), f"loss {ell}", pareto=c["pareto"])
    sv = sc["solver"]
    ax.plot(10.0 ** sv["log_ic"], 10.0 ** sv["log_tc"], "kx", ms=6,
            label="solver frontier, loss 2.0")
    ax.set_title("Scaling policy (Chinchilla, rounded Hoffmann)")
    ax.set_xlabel("inference FLOP per token (2N)")

    ax = axes[1]
    pr = res["pruning"]
    for i, (ell, c) in enumerate(pr["contours"].items()):
        draw(ax, c, cmap(i / len(LOSSES)), f"prune the loss-{ell} optimum")
        j = np.argmin(np.abs(pr["density"] - 0.1))
        ax.plot(10.0 ** c["log_ic"][j], 10.0 ** c["log_tc"][j], "o", color=cmap(i / len(LOSSES)))
        keep(ax, c["log_ic"][j], c["log_tc"][j])
    ax.plot([], [], "ko", label="density 10%")
    ax.set_title("Pruning (IMP cost model, no loss assumed)")
    ax.set_xlabel("inference FLOP per token (2N × density)")

    ax = axes[2]
    for i, (elo, c) in enumerate(res["mcts"]["contours"].items()):
        color = cmap(i / len(ELOS))
        draw(ax, c, color, f"Elo {float(elo):g}")
        ax.plot(10.0 ** c["log_ic"], 10.0 ** c["jones_log_tc"], ls=":", color=color, lw=1.0)
    ax.plot([], [], "k:", label="Jones's line (same Elo)")
    ax.set_title("MCTS in Hex (calibrated model)")
    ax.set_xlabel("inference FLOP per move (1 FLOP per node, as calibrated)")

    for ax, key, title, label in ((axes[3], "pass_at_k", "pass@k: Epoch's S-curve fitted to Codex",
                                   "pass@k"),
                                  (axes[4], "n_at_k", "10@k: Epoch's S-curve fitted to AlphaCode",
                                   "10@k")):
        block = res[key]
        levels = list(block["contours"])
        for i, (p, c) in enumerate(block["contours"].items()):
            draw(ax, c, cmap(i / len(levels)), f"{label} = {p}")
        d = block["data"]
        scat = ax.scatter(10.0 ** d["log_ic"], 10.0 ** d["log_tc"], c=d["score"], cmap="viridis",
                          vmin=0, vmax=1, edgecolor="k", zorder=5, label="published points")
        keep(ax, d["log_ic"], d["log_tc"])
        fig.colorbar(scat, ax=ax, label=label, fraction=0.04)
        ax.set_title(title)
        ax.set_xlabel(f"inference FLOP per problem (k × 2N × {TOKENS_PER_SAMPLE:g} tokens)")

    ax = axes[5]
    picks = {"scaling policy": ("scaling loss 2.0", "C0"), "pruning": ("pruning loss 2.0", "C1"),
             "MCTS, Elo −1500": ("mcts Elo -1500.0", "C2"),
             "MCTS, Elo −250": ("mcts Elo -250.0", "C2"),
             "pass@k = 0.99": ("pass_at_k pass@k 0.99", "C3"),
             "10@k = 0.3": ("n_at_k 10@k 0.3", "C4")}
    for name, (key, color) in picks.items():
        s = spans.get(key)
        if s is None:
            continue
        mark = "s" if "−250" in name else "o"
        ax.plot([s["inference_span_oom"]], [s["train_span_oom"]], mark, color=color, ms=8,
                label=f"{name}: {s['train_span_oom']:.2f} / {s['inference_span_oom']:.2f}")
    diag = np.linspace(0, 3, 10)
    ax.plot(diag, diag, color="grey", ls=":", lw=0.8, label="1 OOM for 1 OOM")
    ax.set_title("Span of each efficient segment (OOM)")
    ax.set_xlabel("inference span (OOM)")
    ax.set_ylabel("training span (OOM)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    for ax in axes[:5]:
        ax.set_xscale("log")
        ax.set_yscale("log")
        xs = np.concatenate([x for x, _ in region[ax]])
        ys = np.concatenate([y for _, y in region[ax]])
        for lo, hi, set_lim in ((xs.min(), xs.max(), ax.set_xlim),
                                (ys.min(), ys.max(), ax.set_ylim)):
            margin = 0.2 + 0.08 * (hi - lo)
            set_lim(10.0 ** (lo - margin), 10.0 ** (hi + margin))
        ax.set_ylabel("training FLOP")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle("Iso-performance contours in the (inference, training) compute plane: thick = "
                 f"Pareto-efficient with exchange rate within {MAX_RATE:g}:1, thin = outside "
                 "that range, dashed = dominated", fontsize=11)
    save_figure(fig, path)
    plt.close(fig)


def run(output: Path, fast: bool = False) -> dict:
    jax.config.update("jax_enable_x64", True)
    output = Path(output)
    res = compute(fast)
    table, spans = _spans_table(res)
    write_markdown(output / "frontiers.md",
                   "Iso-performance contours and Pareto frontiers (Villalobos & Atkinson 2023)",
                   "Spans of the efficient part (rates 1/6 to 6) of every contour drawn in "
                   "frontiers.png.\n\n" + table)
    write_json(output / "frontiers.json", {"spans": spans, "contours": res})
    _plot(res, spans, output / "frontiers.png")
    print(table)
    return {"contours": len(spans)}


def main() -> None:
    command_line(run, __doc__)


if __name__ == "__main__":
    main()
