# Joint planning of parameters, tokens and samples per query under one end-to-end compute
# budget, in the spirit of Roberts et al. 2026, "Test-Time Scaling Makes Overtraining
# Compute-Optimal": once inference (all k samples of every query) is counted, the optimum moves
# into overtraining.
#
# For a pass@k target and a lifetime demand of Q queries, minimises 6ND + Q · k · 2N · tokens
# over N, D and k (a Chinchilla model, the Codex success link), next to the plan that ignores
# inference (the training-optimal model, samples free) and the plan without sampling (k = 1,
# Sardana et al.'s problem). The solver finds N and D for every k of a fine grid and the least
# total is taken over k; in the full run the pipeline's direct joint solve is compared with it.
# Prints the table and writes joint_sampling.{json,md,png}.
"""Joint N, D and samples-per-query planning under one end-to-end budget."""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from planner import Chinchilla, Pipeline, Pretraining, Scenario, Status, solve
from planner._techniques.sampling import RepeatedSampling, SuccessLink
from planner.experiments._combine import loss_for_pass_at_k
from planner.experiments._common import (
    command_line,
    markdown_table,
    pyplot,
    save_figure,
    write_json,
    write_markdown,
)

TARGETS = (0.5, 0.9)
TOKENS_PER_SAMPLE = 1000.0
"""Tokens a sample costs (the 1000-token query of Villalobos & Atkinson 2023)."""
CHUNK = 2048


@eqx.filter_jit
def _lifetime(law: Chinchilla, target_loss, demand):
    """Sardana et al.'s problem for each (target loss, demand in tokens): the solver."""
    model = Pipeline(Pretraining(law))

    def one(t, q):
        plan = solve(model, Scenario(target_loss=t, inference_demand=q), throw=False)
        return plan.total_flops, plan.status, plan.allocation.n_params, plan.allocation.n_tokens

    return jax.vmap(one)(target_loss, demand)


def _solve_rows(law, target_loss, demand):
    size = target_loss.size
    pad = -size % CHUNK
    cols = [np.r_[v, np.full(pad, v[0])] for v in (target_loss, demand)]
    parts = [[np.asarray(v) for v in _lifetime(law, *(jnp.asarray(c[i:i + CHUNK]) for c in cols))]
             for i in range(0, size + pad, CHUNK)]
    return [np.concatenate(p)[:size] for p in zip(*parts, strict=True)]


def plan_grid(law: Chinchilla, link: SuccessLink, target: float, queries, samples) -> dict:
    """Least end-to-end compute over the sample grid, N and D by the solver at each k."""
    queries, samples = np.asarray(queries, float), np.asarray(samples, float)
    ell = np.asarray(loss_for_pass_at_k(law, link, target, samples))
    nq, nk = queries.size, samples.size
    # demand in tokens: Q queries x k samples x tokens each
    demand = np.outer(queries, samples * TOKENS_PER_SAMPLE).ravel()
    total, status, n, d = (v.reshape(nq, nk) for v in _solve_rows(law, np.tile(ell, nq), demand))
    total = np.where(status == Status.OPTIMAL, total, np.inf)
    best = np.argmin(total, axis=1)
    rows = np.arange(nq)
    n_b, d_b, k_b = n[rows, best], d[rows, best], samples[best]
    train = 6.0 * n_b * d_b
    return {
        "queries": queries, "n_samples": k_b, "n_params": n_b, "n_tokens": d_b,
        "tokens_per_param": d_b / n_b, "total_flops": total[rows, best], "train_flops": train,
        "loss": ell[best],
        "train_share": train / total[rows, best], "at_grid_edge": bool(np.any(best == nk - 1)),
        "certified": int(np.isfinite(total).sum()), "solves": int(total.size),
    }


def plan_one_sample(law, link, target, queries) -> dict:
    """k = 1 with inference counted: the lifetime problem at the pass@1 loss."""
    return plan_grid(law, link, target, queries, np.array([1.0]))


def plan_ignoring_inference(law, link, target, queries, samples) -> dict:
    """Inference not counted: samples are free, so the training-optimal model of the largest
    sample count on the grid (its end-to-end cost is then counted for comparison)."""
    k = float(np.max(samples))
    ell = float(loss_for_pass_at_k(law, link, target, k))
    n, d = (float(v) for v in law.loss_optimal(ell))
    q = np.asarray(queries, float)
    total = 6 * n * d + q * k * 2 * n * TOKENS_PER_SAMPLE
    return {"n_samples": k, "n_params": n, "n_tokens": d, "tokens_per_param": d / n,
            "total_flops": total}


def direct_plans(law, link, target, queries) -> dict:
    """The pipeline's joint solve of N, D and k (one `solve` per demand)."""
    model = Pipeline(Pretraining(law, tokens_per_query=TOKENS_PER_SAMPLE), RepeatedSampling(link))

    @jax.jit
    def run(q):
        return jax.vmap(lambda x: solve(model, Scenario(target_score=target, inference_demand=x),
                                        throw=False))(q)

    plans = run(jnp.asarray(queries, float))
    ok = np.asarray(plans.status) == Status.OPTIMAL
    return {"total_flops": np.where(ok, np.asarray(plans.total_flops), np.nan),
            "n_samples": np.where(ok, np.asarray(plans.allocation.n_samples), np.nan),
            "tokens_per_param": np.where(ok, np.asarray(plans.allocation.n_tokens
                                                        / plans.allocation.n_params), np.nan),
            "certified": int(ok.sum()), "solves": int(ok.size)}


def compute(fast: bool = False) -> dict:
    law, link = Chinchilla.hoffmann2022(), SuccessLink.codex2021()
    queries = np.geomspace(1e3, 1e13, 11 if fast else 41)
    samples = np.geomspace(1.0, 1e6, 31 if fast else 241)
    out = {}
    for target in TARGETS:
        grid = plan_grid(law, link, target, queries, samples)
        one = plan_one_sample(law, link, target, queries)
        free = plan_ignoring_inference(law, link, target, queries, samples)
        ell1 = float(loss_for_pass_at_k(law, link, target, 1.0))
        n_c, d_c = (float(v) for v in law.loss_optimal(ell1))
        res = {"joint": grid, "one_sample": one, "ignoring_inference": free,
               "chinchilla_tokens_per_param": d_c / n_c,
               "saving_vs_one_sample": 1.0 - grid["total_flops"] / one["total_flops"],
               "saving_vs_ignoring_inference": 1.0 - grid["total_flops"] / free["total_flops"]}
        if not fast:
            direct = direct_plans(law, link, target, queries)
            rel = np.abs(direct["total_flops"] / grid["total_flops"] - 1.0)
            res["direct"] = {**direct, "max_relative_gap_to_grid": float(np.nanmax(rel))
                             if np.isfinite(rel).any() else None}
        out[str(target)] = res
    return out


def run(output: Path, fast: bool = False) -> dict:
    jax.config.update("jax_enable_x64", True)
    output = Path(output)
    res = compute(fast)
    rows = []
    for target, r in res.items():
        g, one = r["joint"], r["one_sample"]
        for i in range(0, len(g["queries"]), max(1, len(g["queries"]) // 6)):
            rows.append([target, f"{g['queries'][i]:.0e}", round(float(g["n_samples"][i]), 1),
                         f"{g['n_params'][i]:.3g}", round(float(g["tokens_per_param"][i]), 1),
                         round(float(one["tokens_per_param"][i]), 1),
                         round(r["chinchilla_tokens_per_param"], 1),
                         round(float(g["train_share"][i]), 3),
                         round(float(r["saving_vs_one_sample"][i]), 3)])
    body = markdown_table(["pass@k target", "queries", "k*", "N*", "D/N (joint)",
                           "D/N (k = 1)", "D/N (training-optimal)", "training share",
                           "saving vs k = 1"], rows)
    for target, r in res.items():
        if "direct" in r:
            d = r["direct"]
            gap = d["max_relative_gap_to_grid"]
            body += (f"\n- pass@k {target}: the pipeline's direct joint solve certified "
                     f"{d['certified']}/{d['solves']} demands; largest relative gap in total "
                     f"compute to the grid: {'n/a' if gap is None else f'{gap:.1e}'}")
    write_markdown(output / "joint_sampling.md",
                   "Joint N, D and samples under one budget (Roberts et al. 2026)", body + "\n")
    write_json(output / "joint_sampling.json", res)
    _plot(res, output / "joint_sampling.png")
    print(body)
    return {t: round(float(np.max(r["joint"]["tokens_per_param"])), 1) for t, r in res.items()}


def _plot(res: dict, path: Path) -> None:
    plt = pyplot()
    # samples and parameters on axes of their own: one is a count of 1 to 1e5, the other of
    # 1e8 to 1e10
    fig, axes = plt.subplots(1, 4, figsize=(21, 4.6))
    for i, (target, r) in enumerate(res.items()):
        g, one = r["joint"], r["one_sample"]
        c = f"C{i}"
        axes[0].plot(g["queries"], g["tokens_per_param"], color=c,
                     label=f"N, D, k jointly, pass@k {target}")
        axes[0].plot(one["queries"], one["tokens_per_param"], ls="--", color=c,
                     label=f"k = 1 (Sardana), pass@k {target}")
        axes[0].axhline(r["chinchilla_tokens_per_param"], ls=":", color=c, lw=0.8)
        axes[1].plot(g["queries"], g["n_samples"], color=c, label=f"k*, pass@k {target}")
        axes[2].plot(g["queries"], g["n_params"], color=c, label=f"N*, pass@k {target}")
        axes[2].plot(one["queries"], one["n_params"], ls="--", color=c,
                     label=f"k = 1 (Sardana), pass@k {target}")
        axes[3].plot(g["queries"], g["total_flops"], color=c, label=f"joint, pass@k {target}")
        axes[3].plot(one["queries"], one["total_flops"], ls="--", color=c, label="k = 1")
        axes[3].plot(g["queries"], r["ignoring_inference"]["total_flops"], ls=":", color=c,
                     label="plan ignoring inference")
        if "direct" in r:
            axes[3].plot(g["queries"], r["direct"]["total_flops"], "k.", ms=3,
                         label="direct joint solve" if i == 0 else None)
    axes[0].set_ylabel("training tokens per parameter")
    axes[0].set_title("Counting inference pushes into overtraining\n(dotted: training-optimal D/N)")
    axes[1].set_ylabel("samples per query k*")
    axes[1].set_title("Samples per query at the optimum")
    axes[2].set_ylabel("parameters N*")
    axes[2].set_title("Model size at the optimum")
    axes[3].set_ylabel("end-to-end FLOP (training + all samples)")
    axes[3].set_title("End-to-end compute")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("lifetime queries")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(f"Chinchilla (rounded Hoffmann) + Codex success link, {TOKENS_PER_SAMPLE:g} "
                 "tokens a sample")
    save_figure(fig, path)
    plt.close(fig)


def main() -> None:
    command_line(run, __doc__)


if __name__ == "__main__":
    main()
