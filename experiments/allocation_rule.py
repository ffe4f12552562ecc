# Erdil 2024 (Epoch AI), "Optimally allocating compute between inference and training": at the
# least-total-compute plan, training's share of the spend is set by the frontier's exchange rate.
#
# Minimising TC + IC on a frontier TC^p · IC^q = const gives TC/IC = p/q; in general, at the
# optimum TC / (lifetime inference) = 1 / rate, with rate = |d log TC / d log IC| there, so the
# training share is 1/(1 + rate): half at the 1:1 exchange rate. Shown with the solver on the
# Chinchilla frontier: lifetime-compute optima over a sweep of inference demand (Sardana et
# al.'s problem), their training share, and the exchange rate read two ways, from the closed
# form at the optimum and from the frontier's multiplier at the optimum's inference compute.
# Prints the table and writes allocation_rule.{json,md,png}.
"""Training's share of total compute at the optimum against the exchange rate."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from planner import Chinchilla, Status
from planner.experiments._common import (
    command_line,
    markdown_table,
    pyplot,
    save_figure,
    write_json,
    write_markdown,
)
from planner.experiments._spans import chunked_solve
from planner.experiments.joint_sampling import _solve_rows

TARGET_LOSSES = (2.0, 2.3)
DEMANDS = tuple(float(v) for v in np.geomspace(1e8, 1e17, 37))
"""Lifetime inference demand, tokens."""


def closed_form_rate(law: Chinchilla, n_params, n_tokens):
    r"""$|d\log TC/d\log IC|$ of the iso-loss curve at $(N, D)$: $r - 1$ with
    $r = \alpha A N^{-\alpha}/(\beta B D^{-\beta})$ (from the Chinchilla law, Hoffmann et al.
    2022)."""
    a, b = float(law.alpha), float(law.beta)
    r = a * float(law.A) * n_params**-a / (b * float(law.B) * n_tokens**-b)
    return r - 1.0


def compute(law: Chinchilla | None = None) -> dict:
    law = law or Chinchilla.hoffmann2022()
    out = {}
    for target in TARGET_LOSSES:
        q = np.asarray(DEMANDS)
        total, status, n, d = _solve_rows(law, np.full(q.shape, target), q)
        ok = status == Status.OPTIMAL
        tc, ic = 6.0 * n * d, 2.0 * n
        lifetime_ic = q * ic
        share = tc / (tc + lifetime_ic)
        rate_closed = closed_form_rate(law, n, d)
        # the frontier's multiplier at the optimum's own inference compute per token
        ones = np.ones_like(q)
        _, _, rate_frontier, fstatus, _, _ = chunked_solve(
            law, float(law.A) * ones, target * ones, ic * (1.0 + 1e-12), 1.0)
        rate_frontier = np.where(fstatus == Status.OPTIMAL, rate_frontier, np.nan)
        # where the rate is 1 (Erdil's 1 OOM for 1 OOM), the share should be one half
        lr = np.log(rate_closed)
        order = np.argsort(lr)
        share_at_one = float(np.interp(0.0, lr[order], share[order]))
        demand_at_one = float(10 ** np.interp(0.0, lr[order], np.log10(q)[order]))
        out[str(target)] = {
            "inference_demand": q, "train_flops": tc, "inference_flops": lifetime_ic,
            "train_share": share, "rate_closed_form": rate_closed, "rate_frontier": rate_frontier,
            "rule_share": 1.0 / (1.0 + rate_closed),
            "max_rule_error": float(np.nanmax(np.abs(share - 1.0 / (1.0 + rate_closed))[ok])),
            "max_rate_disagreement": float(np.nanmax(np.abs(rate_frontier / rate_closed - 1)[ok])),
            "share_at_rate_one": share_at_one, "demand_at_rate_one": demand_at_one,
            "tokens_per_param": d / n, "all_optimal": bool(ok.all()),
        }
    return out


def power_frontier_check(p: float = 1.0, q: float = 1.0, const: float = 1e40) -> dict:
    """Minimise TC + IC on TC^p IC^q = const in closed form and by a scan: TC/IC = p/q."""
    log_ic = np.linspace(0.0, 40.0, 400001)
    log_tc = (np.log10(const) - q * log_ic) / p
    total = 10.0**log_tc + 10.0**log_ic
    i = int(np.argmin(total))
    return {"p": p, "q": q, "ratio_scan": float(10 ** (log_tc[i] - log_ic[i])), "ratio_rule": p / q}


def run(output: Path) -> dict:
    jax.config.update("jax_enable_x64", True)
    output = Path(output)
    res = compute()
    checks = [power_frontier_check(p, q) for p, q in ((1.0, 1.0), (1.0, 1.5), (2.0, 1.0))]
    rows = []
    for target, r in res.items():
        for i in range(0, len(DEMANDS), 6):
            rows.append([target, f"{r['inference_demand'][i]:.1e}",
                         round(r["tokens_per_param"][i], 1), round(r["rate_closed_form"][i], 4),
                         round(r["rate_frontier"][i], 4), round(r["train_share"][i], 4),
                         round(r["rule_share"][i], 4)])
    body = markdown_table(["target loss", "demand (tokens)", "D/N", "rate (closed form)",
                           "rate (frontier multiplier)", "training share (solver)",
                           "1/(1 + rate)"], rows)
    body += "\n" + "\n".join(
        f"- loss {t}: largest |share − 1/(1 + rate)| {r['max_rule_error']:.1e}; frontier and "
        f"closed-form rates agree to {r['max_rate_disagreement']:.1e}; at rate 1 (demand "
        f"{r['demand_at_rate_one']:.3g} tokens) the training share is "
        f"{r['share_at_rate_one']:.4f}" for t, r in res.items())
    body += "\n\nTC^p · IC^q = const, minimising TC + IC by a scan:\n\n" + markdown_table(
        ["p", "q", "TC/IC by scan", "p/q"],
        [[c["p"], c["q"], round(c["ratio_scan"], 4), round(c["ratio_rule"], 4)] for c in checks])
    write_markdown(output / "allocation_rule.md",
                   "Training's share at the optimum (Erdil 2024)", body)
    write_json(output / "allocation_rule.json", {"chinchilla": res, "power": checks})
    _plot(res, output / "allocation_rule.png")
    print(body)
    return {t: round(r["share_at_rate_one"], 4) for t, r in res.items()}


def _plot(res: dict, path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    rates = np.geomspace(0.01, 100, 200)
    ax = axes[0]
    ax.plot(rates, 1.0 / (1.0 + rates), color="k", lw=1, label="1/(1 + rate)")
    for i, (t, r) in enumerate(res.items()):
        ax.plot(r["rate_frontier"], r["train_share"], "o", ms=4, color=f"C{i}",
                label=f"solver optimum, loss {t} (rate from the frontier's multiplier)")
    ax.axvline(1.0, color="grey", ls=":")
    ax.axhline(0.5, color="grey", ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("exchange rate at the optimum, |d log TC / d log IC|")
    ax.set_ylabel("training share of lifetime compute")
    ax.set_title("Training share = 1/(1 + rate): half at 1:1")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax = axes[1]
    for i, (t, r) in enumerate(res.items()):
        ax.plot(r["inference_demand"], r["train_flops"], color=f"C{i}",
                label=f"training FLOP, loss {t}")
        ax.plot(r["inference_demand"], r["inference_flops"], ls="--", color=f"C{i}",
                label=f"lifetime inference FLOP, loss {t}")
        ax.axvline(r["demand_at_rate_one"], color=f"C{i}", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("lifetime inference demand (tokens)")
    ax.set_ylabel("FLOP at the lifetime optimum")
    ax.set_title("Both grow with demand; equal where the rate is 1 (dotted)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    save_figure(fig, path)
    plt.close(fig)


def main() -> None:
    command_line(run, __doc__)


if __name__ == "__main__":
    main()
