# Refit of the Chinchilla loss law to the 240 runs of Hoffmann et al. (2022) Figure 4 (as extracted
# by Epoch AI), by the published method: summed Huber loss (δ = 1e-3) on log-loss, Hoffmann's
# 4,500-point start grid solved as one batch, 1,000 bootstrap resamples as a second batch.
# Prints the coefficients beside Besiroglu et al. (2024)'s replication and Hoffmann et al.'s
# numbers, the convergence of the solves, and what the coefficient uncertainty does to a plan:
# quantiles of N*, D* and compute for a target loss, and of N* for Chinchilla's budget.
# Writes fit_chinchilla.{png,json,md} and FIT.json into --output. The figure shows the runs with
# the fitted loss-vs-N curves at the data's FLOP levels, the residuals, the compute-optimal N*(C)
# with its bootstrap band, and the bootstrap distribution of N* for the target.
# Runs as `planner reproduce fit_chinchilla --output DIR` or
# `python experiments/fit_chinchilla.py --output DIR [--runs CSV ...]`.
"""Refit of the Chinchilla loss law to Hoffmann et al.'s runs, with bootstrap uncertainty."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from planner._data import CHINCHILLA_RUNS, data_file
from planner._fit import (
    COEFFICIENTS,
    compute_optimal_quantiles,
    fit,
    loss_optimal_quantiles,
    probability_meets_target,
    read_runs,
    write_fit_json,
)
from planner._laws import Chinchilla
from planner.experiments._common import (
    markdown_table,
    pyplot,
    save_figure,
    write_json,
    write_markdown,
)

DEFAULT_RUNS = data_file(CHINCHILLA_RUNS)

REPLICATION = {
    "point": {"E": 1.817, "A": 482.0, "B": 2085.4, "alpha": 0.348, "beta": 0.366},
    "se": {"E": 0.03, "A": 124.58, "B": 1293.23, "alpha": 0.02, "beta": 0.02},
    "ci95": {
        "E": (1.769, 1.871),
        "A": (285.0, 744.0),
        "B": (1042.0, 5810.0),
        "alpha": (0.317, 0.373),
        "beta": (0.331, 0.415),
    },
}
"""Besiroglu et al. 2024 (arXiv 2404.10102): Table 1 estimates and standard errors, and the
bootstrap 95% intervals of their section 3 (restated in planner/data/README.md)."""

CHINCHILLA_FLOP = 5.76e23
"""Chinchilla's (and Gopher's) training budget, Hoffmann et al. 2022, Table 3."""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=Path, default=DEFAULT_RUNS, help="runs table (CSV)")
    parser.add_argument("--output", type=Path, default=Path("out"), help="output folder")
    parser.add_argument("--drop-highest-loss", type=int, default=5)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target-loss", type=float, default=2.0)
    args = parser.parse_args(argv)
    if not args.runs.exists():
        raise SystemExit(f"runs table not found: {args.runs}")
    run(args.output, runs=args.runs, drop_highest_loss=args.drop_highest_loss,
        bootstrap=args.bootstrap, seed=args.seed, target_loss=args.target_loss)


def run(output: Path, fast: bool = False, *, runs: Path = DEFAULT_RUNS,
        drop_highest_loss: int = 5, bootstrap: int = 1000, seed: int = 0,
        target_loss: float = 2.0) -> dict:
    """Fit, bootstrap (200 resamples when `fast`), print and write the outputs into `output`;
    the summary is the point fit's coefficients."""
    jax.config.update("jax_enable_x64", True)
    args = argparse.Namespace(runs=Path(runs), output=Path(output),
                              drop_highest_loss=drop_highest_loss,
                              bootstrap=200 if fast else bootstrap, seed=seed,
                              target_loss=target_loss)
    runs = read_runs(args.runs)
    start = time.perf_counter()
    result = fit(
        runs.n_params,
        runs.n_tokens,
        runs.loss,
        drop_highest_loss=args.drop_highest_loss,
        n_bootstrap=args.bootstrap,
        key=jax.random.key(args.seed),
    )
    jax.block_until_ready(result)
    seconds = time.perf_counter() - start

    point = result.coefficients()
    ses = result.standard_errors()
    intervals = result.interval(0.95)
    hoffmann = Chinchilla.hoffmann2022()
    rows = []
    for name in COEFFICIENTS:
        lo, hi = intervals[name]
        rlo, rhi = REPLICATION["ci95"][name]
        rows.append(
            [
                name,
                point[name],
                ses[name],
                f"{lo:.4g} – {hi:.4g}",
                REPLICATION["point"][name],
                REPLICATION["se"][name],
                f"{rlo:.4g} – {rhi:.4g}",
                float(getattr(hoffmann, name)),
            ]
        )
    coef_table = markdown_table(
        ["", "fit", "SE", "95% CI", "replication", "SE", "95% CI", "Hoffmann"], rows
    )

    start_values = np.asarray(result.start_objective)
    at_best = int(np.sum(start_values <= float(result.objective) * (1 + 1e-6)))
    boot_grad = np.asarray(result.bootstrap_grad_norm)
    convergence = {
        "seconds": seconds,
        "n_starts": result.n_starts,
        "starts_at_best_after_first_pass": at_best,
        "objective": float(result.objective),
        "grad_norm": float(result.grad_norm),
        "converged": bool(result.converged),
        "bootstrap_converged": float(np.mean(np.asarray(result.bootstrap_converged))),
        "bootstrap_grad_norm_max": float(boot_grad.max()),
        "bootstrap_grad_norm_median": float(np.median(boot_grad)),
    }
    conv_table = markdown_table(
        ["quantity", "value"],
        [
            ["runs used / dropped", f"{result.n_runs} / {len(result.dropped)}"],
            ["starts (one batch)", result.n_starts],
            ["starts within 1e-6 of the best after 100 steps", at_best],
            ["summed Huber loss", float(result.objective)],
            ["gradient norm at the fit", float(result.grad_norm)],
            ["bootstrap resamples (one batch)", result.n_bootstrap],
            ["resamples converged", f"{convergence['bootstrap_converged']:.1%}"],
            ["largest resample gradient norm", convergence["bootstrap_grad_norm_max"]],
            ["wall time of fit + bootstrap (s, with compilation)", seconds],
        ],
    )

    laws = result.bootstrap
    q = (0.025, 0.5, 0.975)
    target = args.target_loss
    plan = loss_optimal_quantiles(laws, target, q)
    n_hat, d_hat = result.law.loss_optimal(target)
    p_meet = float(probability_meets_target(laws, n_hat, d_hat, target))
    budget = compute_optimal_quantiles(laws, CHINCHILLA_FLOP, q)
    n_budget_hat, d_budget_hat = result.law.compute_optimal(CHINCHILLA_FLOP)
    plan_rows = [
        ["N* (params)", float(n_hat), *map(float, plan["n_params"])],
        ["D* (tokens)", float(d_hat), *map(float, plan["n_tokens"])],
        ["6 N* D* (FLOP)", float(6 * n_hat * d_hat), *map(float, plan["train_flops"])],
    ]
    plan_table = markdown_table(
        ["target " + f"{target:.2f}", "point fit", "2.5%", "50%", "97.5%"], plan_rows
    )
    budget_rows = [
        ["N* (params)", float(n_budget_hat), *map(float, budget["n_params"])],
        ["D* (tokens)", float(d_budget_hat), *map(float, budget["n_tokens"])],
        [
            "loss at N*, D*",
            float(result.law.loss(n_budget_hat, d_budget_hat)),
            *map(float, budget["loss"]),
        ],
    ]
    budget_table = markdown_table(
        [f"C = {CHINCHILLA_FLOP:.3g} FLOP", "point fit", "2.5%", "50%", "97.5%"], budget_rows
    )

    print("## Coefficients\n")
    print(coef_table)
    print("## Convergence\n")
    print(conv_table)
    print(f"## Plan for target loss {target:.2f}\n")
    print(plan_table)
    print(
        f"Feasible under {float(plan['feasible']):.1%} of the bootstrap laws. The point fit's plan "
        f"reaches the target under {p_meet:.1%} of them.\n"
    )
    print("## Plan for Chinchilla's budget\n")
    print(budget_table)

    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    write_fit_json(result, out / "FIT.json")
    write_json(
        out / "fit_chinchilla.json",
        {
            "runs": str(args.runs.name),
            "fit": result.to_record(include_bootstrap=False),
            "replication": {k: dict(v) for k, v in REPLICATION.items()},
            "convergence": convergence,
            "target_loss": target,
            "plan_for_target": {
                "point": {"n_params": float(n_hat), "n_tokens": float(d_hat)},
                "quantiles": list(q),
                **{k: np.asarray(v).tolist() for k, v in plan.items()},
                "probability_point_plan_meets_target": p_meet,
            },
            "plan_for_chinchilla_budget": {
                "train_flops": CHINCHILLA_FLOP,
                "quantiles": list(q),
                **{k: np.asarray(v).tolist() for k, v in budget.items()},
            },
        },
    )
    write_markdown(
        out / "fit_chinchilla.md",
        "Chinchilla refit with bootstrap uncertainty",
        "## Coefficients\n\n"
        + coef_table
        + "\n## Convergence\n\n"
        + conv_table
        + f"\n## Plan for target loss {target:.2f}\n\n"
        + plan_table
        + f"\nFeasible under {float(plan['feasible']):.1%} of the bootstrap laws; the point "
        f"fit's plan reaches the target under {p_meet:.1%} of them.\n"
        + "\n## Plan for Chinchilla's budget\n\n"
        + budget_table,
    )
    figure(result, runs, laws, target, out / "fit_chinchilla.png")
    print(f"wrote {out / 'fit_chinchilla.png'}, fit_chinchilla.json, fit_chinchilla.md, FIT.json")
    return {name: round(float(point[name]), 4) for name in COEFFICIENTS}


def figure(result, runs, laws, target, path):
    plt = pyplot()
    import matplotlib.colors as mcolors

    n_all = np.asarray(runs.n_params)
    d_all = np.asarray(runs.n_tokens)
    loss_all = np.asarray(runs.loss)
    dropped = np.zeros(n_all.size, dtype=bool)
    dropped[list(result.dropped)] = True
    n, d, loss = n_all[~dropped], d_all[~dropped], loss_all[~dropped]
    c = 6 * n * d
    law = result.law
    fitted = np.asarray(law.loss(n, d))
    norm = mcolors.Normalize(vmin=np.log10(c).min(), vmax=np.log10(c).max())
    cmap = plt.get_cmap("viridis")

    fig, axes = plt.subplots(2, 2, figsize=(12, 9))

    # (a) the runs with the fitted loss along each FLOP level of the data
    ax = axes[0, 0]
    sc = ax.scatter(n, loss, c=np.log10(c), cmap=cmap, norm=norm, s=14, edgecolors="none")
    top = min(loss.max(), 4.0) + 0.1
    above = int(np.sum(loss_all[dropped] > top))
    ax.scatter(
        n_all[dropped],
        loss_all[dropped],
        marker="x",
        color="grey",
        s=25,
        label=f"dropped: the {dropped.sum()} highest-loss runs ({above} above the axis)",
    )
    levels = np.arange(math.ceil(2 * np.log10(c).min()) / 2, np.log10(c).max() + 1e-9, 0.5)
    for level in levels:
        budget = 10.0**level
        grid = np.geomspace(n.min() / 2, n.max() * 2, 200)
        grid = grid[budget / (6 * grid) > 1e8]
        ax.plot(grid, law.loss(grid, budget / (6 * grid)), color=cmap(norm(level)), lw=1.3)
        n_star, d_star = law.compute_optimal(budget)
        ax.plot(
            float(n_star),
            float(law.loss(n_star, d_star)),
            "o",
            mfc="white",
            mec=cmap(norm(level)),
            ms=5,
        )
    ax.set_xscale("log")
    ax.set_ylim(loss.min() - 0.1, top)
    ax.set_xlabel("parameters N")
    ax.set_ylabel("final training loss (nats/token)")
    ax.set_title("runs, and the fit at half-decade FLOP levels (○ optimum)")
    ax.legend(loc="upper right", fontsize=8)
    cb = fig.colorbar(sc, ax=ax)
    cb.set_label("log10 training FLOP")

    # (b) residuals
    ax = axes[0, 1]
    resid = np.log(fitted) - np.log(loss)
    ax.scatter(n, resid, c=np.log10(c), cmap=cmap, norm=norm, s=14, edgecolors="none")
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("log fitted loss − log loss")
    ax.set_title(
        f"residuals: median |r| = {np.median(np.abs(resid)):.4f}, "
        f"Huber sum = {float(result.objective):.3e}"
    )

    # (c) compute-optimal N* with its bootstrap band
    ax = axes[1, 0]
    budgets = np.geomspace(1e18, 1e26, 60)
    n_q = np.array(
        [
            np.asarray(compute_optimal_quantiles(laws, b, (0.025, 0.5, 0.975))["n_params"])
            for b in budgets
        ]
    )
    ax.fill_between(
        budgets, n_q[:, 0], n_q[:, 2], color="C0", alpha=0.25, label="bootstrap 95% band"
    )
    ax.plot(budgets, law.compute_optimal(budgets)[0], color="C0", lw=2.5, label="this fit")
    for preset, style in ((Chinchilla.hoffmann2022(), "--"), (Chinchilla.besiroglu2024(), ":")):
        label = "Hoffmann et al. 2022" if style == "--" else "Besiroglu et al. 2024"
        ax.plot(
            budgets,
            preset.compute_optimal(budgets)[0],
            style,
            color="C3" if style == "--" else "C1",
            label=label,
        )
    ax.plot(CHINCHILLA_FLOP, 70e9, "k*", ms=11, label="Chinchilla (70B, 5.76e23 FLOP)")
    ax.axvspan(c.min(), c.max(), color="grey", alpha=0.1, label="FLOP range of the runs")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training FLOP C")
    ax.set_ylabel("compute-optimal parameters N*")
    ax.set_title("compute-optimal model size N*(C), with bootstrap band")
    ax.legend(fontsize=8, loc="upper left")

    # (d) the plan's uncertainty for the target
    ax = axes[1, 1]
    n_c, _ = jax.vmap(lambda lw: lw.loss_optimal(jnp.where(lw.E < target, target, lw.E + 1.0)))(
        laws
    )
    feasible = np.asarray(laws.E) < target
    samples = np.asarray(n_c)[feasible]
    bins = np.geomspace(samples.min(), samples.max(), 40)
    ax.hist(samples, bins=bins, color="C0", alpha=0.7)
    quant = np.asarray(loss_optimal_quantiles(laws, target, (0.025, 0.5, 0.975))["n_params"])
    # the median and the point fit are a fraction of a bin apart: the median is a dashed line
    # drawn over the point fit's, which is also marked above the histogram
    ax.axvline(quant[1], color="black", ls="--", lw=1.8, zorder=4,
               label=f"median {quant[1]:.3g}")
    ax.axvline(
        quant[0], color="black", ls=":", lw=1, label=f"95% interval {quant[0]:.3g} – {quant[2]:.3g}"
    )
    ax.axvline(quant[2], color="black", ls=":", lw=1)
    n_point = float(law.loss_optimal(target)[0])
    ax.axvline(n_point, color="C3", lw=3.0, alpha=0.6, zorder=3, label=f"point fit {n_point:.3g}")
    ax.plot([n_point], [1.0], "v", color="C3", ms=9, transform=ax.get_xaxis_transform(),
            clip_on=False)
    ax.set_xscale("log")
    ax.set_xlabel(f"training-optimal parameters N* for loss {target:.2f}")
    ax.set_ylabel("bootstrap resamples")
    ax.set_title(f"the plan's uncertainty: N* for target loss {target:.2f}")
    ax.legend(
        fontsize=8,
        title=f"{feasible.mean():.0%} of resampled laws reach {target:.2f}",
        title_fontsize=8,
    )

    save_figure(fig, path)
    plt.close(fig)


if __name__ == "__main__":
    main()
