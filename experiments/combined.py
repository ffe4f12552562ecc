# Combining trade-off techniques (Villalobos & Atkinson 2023, Epoch AI): overtraining, pruning,
# repeated sampling and MCTS solved jointly, against the report's 2–3 OOM and its additivity
# claims.
#
# Shows the joint Pareto frontier of training against inference compute at fixed performance
# for overtraining + pruning + repeated sampling (a Chinchilla model, Frantar's sparsity law,
# the Codex success link) and for overtraining + MCTS (Hex), next to each technique alone and
# to the sum of their spans: techniques acting through different mechanisms add (exactly, here),
# techniques sharing one (overtraining and pruning both shrink the parameters served) do not.
# A last panel sets the combined row built the report's way (overtraining + lossless IMP on one
# grid, plus the 10@k row of the Epoch table) and the composed solver's joint optimum against
# the report's 2–3 OOM, drawn as a range. Prints the span table and both combined rows, and
# writes combined.{json,md,png}.
"""Joint frontiers of several trade-off techniques and the additivity of their spans."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from planner.experiments._combine import (
    SELECTIONS,
    TARGET_ELO,
    TARGET_FILTERED,
    TARGET_SCORE,
    TOKENS_PER_QUERY,
    _span,
    combined_spans,
    compute,
)
from planner.experiments._common import (
    command_line,
    markdown_table,
    pyplot,
    save_figure,
    write_json,
    write_markdown,
)
from planner.experiments._spans import MAX_RATE, REPORTED_COMBINED_RANGE, gap_to_report
from planner.experiments.epoch_tradeoffs import (
    GAP_NOTE_OOM,
    GAP_SECTIONS,
    RESULTS_PAGE,
    n_at_k,
    pruning,
    scaling_policy,
)


def _table(res: dict) -> str:
    rows = [[name, round(v["train_span_oom"], 3), round(v["inference_span_oom"], 3), "–", "–",
             "–"] for name, v in res["alone"].items()]
    for name, v in res["joint"].items():
        rows.append([f"{name} ({v['method']})", round(v["train_span_oom"], 3),
                     round(v["inference_span_oom"], 3),
                     round(v["sum_train_span_oom"], 3) if "sum_train_span_oom" in v else "–",
                     round(v["sum_inference_span_oom"], 3) if "sum_train_span_oom" in v else "–",
                     f"{v['certified']}/{v['solves']}"])
    return markdown_table(["technique(s)", "training span (OOM)", "inference span (OOM)",
                           "sum of parts, training", "sum of parts, inference",
                           "inner solves certified"], rows)


def _plot(res: dict, comb: dict, path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(22, 5.2), width_ratios=(1, 1, 1, 0.8))
    for ax, kind in zip(axes[:2], SELECTIONS, strict=True):
        if kind not in res["runs"]:
            ax.set_visible(False)
            continue
        samp = res["runs"][kind]
        for name, f in samp["frontiers"].items():
            ax.plot(10 ** f["log_ic"], 10 ** f["log_tc"], label=name + " (grid)")
        if "direct" in samp:
            f = samp["direct"]
            ax.plot(10 ** f["log_ic"], 10 ** f["log_tc"], "k.", ms=3,
                    label=f"all three, one joint solve ({f['certified']}/{f['solves']} certified)")
        a = samp["alone"]["sampling"]
        ax.plot(10 ** a["log_ic"], 10 ** a["log_tc"], ls=":", color="grey",
                label=f"{kind} alone (training-optimal models)")
        grid = samp["frontiers"][f"overtraining + pruning + {kind}"]
        _mark_window(ax, grid)
        low = float(np.nanmin(grid["log_tc"]))
        ax.set_ylim(10.0 ** (low - 0.5), 10.0 ** (low + 8.0))
        ax.set_title(f"{kind} = {samp['target']:g} (Chinchilla + Codex link)", fontsize=10)
        ax.set_xlabel(f"inference FLOP per query ({TOKENS_PER_QUERY:g} tokens a sample)")
    ax = axes[2]
    hex_ = res["runs"]["mcts"]
    f = hex_["joint"]
    ax.plot(10 ** f["log_ic"], 10 ** f["log_tc"], label="overtraining + MCTS (joint)")
    a = hex_["alone"]
    ax.plot(10 ** a["log_ic"], 10 ** a["log_tc"], ls=":", color="grey",
            label="MCTS alone (training-optimal networks)")
    _mark_window(ax, f)
    ax.set_title(f"Hex at Elo {hex_['elo']:g}: overtraining + MCTS", fontsize=10)
    ax.set_xlabel("inference FLOP per move (2N per node)")
    _plot_rows(axes[3], comb)
    for ax in axes[:3]:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylabel("training FLOP")
        ax.grid(alpha=0.3, which="both")
        if ax.get_visible():
            ax.legend(fontsize=7)
    fig.suptitle("Joint Pareto frontiers at fixed performance; triangles mark the 6:1 and 1:6 "
                 "ends of the efficient region")
    save_figure(fig, path)
    plt.close(fig)


def _gap_notes(comb: dict) -> str:
    """A pointer to the explanation of every combined row more than `GAP_NOTE_OOM` outside the
    report's 2–3 OOM."""
    rows = {"the report's way": comb, "joint optimum of the composed solver":
            comb["joint_optimum"]}
    notes = []
    for name, row in rows.items():
        if "train_span_oom" not in row:
            continue
        gaps = [gap_to_report(row[f"{key}_span_oom"], REPORTED_COMBINED_RANGE)
                for key in ("train", "inference")]
        if max(abs(g) for g in gaps) > GAP_NOTE_OOM:
            notes.append(f"- combined, {name}: {gaps[0]:+.2f} / {gaps[1]:+.2f} OOM outside the "
                         f"report's {REPORTED_COMBINED_RANGE[0]:g}–{REPORTED_COMBINED_RANGE[1]:g}"
                         f"; see {RESULTS_PAGE}, \"Where the gaps come from\", "
                         f"{GAP_SECTIONS['combined']}.")
    return "" if not notes else f"\nGaps over {GAP_NOTE_OOM:g} OOM:\n\n" + "\n".join(notes) + "\n"


def _plot_rows(ax, comb: dict) -> None:
    """The combined row the report's way (stacked: the overtraining + IMP grid, then the 10@k
    row) and the joint optimum, against the report's 2–3 OOM drawn as a band."""
    lo, hi = REPORTED_COMBINED_RANGE
    ax.axhspan(lo, hi, color="0.85", zorder=0, label=f"report: combined {lo:g}–{hi:g} OOM")
    grid = comb["overtraining_imp_grid"]
    width = 0.35
    for i, (key, color) in enumerate((("train", "C0"), ("inference", "C1"))):
        g = grid[f"{key}_span_oom"]
        total = comb[f"{key}_span_oom"]
        ax.bar(i - width / 2, g, width, color=color, alpha=0.55,
               label="overtraining + lossless IMP grid" if i == 0 else None)
        ax.bar(i - width / 2, total - g, width, bottom=g, color=color, hatch="//",
               edgecolor="k", label="+ the 10@k row" if i == 0 else None)
        overlap = comb[f"{key}_overlap_oom"]
        ax.text(i - width / 2, total + 0.1, f"{total:.2f}\n(overlap {overlap:.2f})",
                ha="center", fontsize=8)
        joint = comb["joint_optimum"][f"{key}_span_oom"]
        ax.bar(i + width / 2, joint, width, color=color, edgecolor="k",
               label="joint optimum, composed solver" if i == 0 else None)
        ax.text(i + width / 2, joint + 0.1, f"{joint:.2f}", ha="center", fontsize=8)
    ax.set_xticks([0, 1], ["training span", "inference span"])
    ax.set_ylabel("span (OOM)")
    ax.set_ylim(0, max(comb["joint_optimum"]["inference_span_oom"], hi) + 1.0)
    ax.set_title(f"Combined rows against the report's {lo:g}–{hi:g} OOM\n(gaps: {RESULTS_PAGE}, "
                 f"{GAP_SECTIONS['combined']})", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="upper left")


def _mark_window(ax, f: dict) -> None:
    span = _span(f)
    for end, marker in (("high_rate", "v"), ("low_rate", "^")):
        e = span["ends"][end]
        ax.plot([10 ** e["log_ic"]], [10 ** e["log_tc"]], marker, color="k", ms=7)
    ax.plot([], [], "kv", label=f"rate {MAX_RATE:g}:1 end")
    ax.plot([], [], "k^", label=f"rate 1:{MAX_RATE:g} end")


def run(output: Path, fast: bool = False) -> dict:
    jax.config.update("jax_enable_x64", True)
    output = Path(output)
    res = compute(fast)
    # the rows the report's combination is built from, as the Epoch table computes them (its
    # scaling-policy row is read at the first of its targets)
    rows = {"scaling_policy": scaling_policy(targets=(2.0,) if fast else (1.9,),
                                             n_points=64 if fast else 160),
            "pruning": pruning(), "n_at_k": n_at_k()}
    comb = combined_spans(fast=fast, res=res, rows=rows)
    body = (f"Efficient exchange: 1/{MAX_RATE:g} ≤ |d log TC / d log IC| ≤ {MAX_RATE:g}. "
            f"Sampling rows at pass@k = {TARGET_SCORE:g} or 10@k = {TARGET_FILTERED:g}; MCTS "
            f"rows at Elo {TARGET_ELO:g}. 'grid': the solver on every (density, samples) of a "
            "grid, least training compute taken over the grid; 'solver': one joint solve.\n\n"
            + _table(res) + "\n" + comb["summary"] + "\n" + _gap_notes(comb))
    write_markdown(output / "combined.md", "Combining techniques (Villalobos & Atkinson 2023)",
                   body)
    write_json(output / "combined.json", {"alone": res["alone"], "joint": res["joint"],
                                          "target_pass_at_k": TARGET_SCORE,
                                          "target_10_at_k": TARGET_FILTERED,
                                          "target_elo": TARGET_ELO,
                                          "combined": {k: v for k, v in comb.items()
                                                       if k not in ("joint", "alone")}})
    _plot(res, comb, output / "combined.png")
    print(body)
    return {name: (round(v["train_span_oom"], 3), round(v["inference_span_oom"], 3))
            for name, v in res["joint"].items()}


def main() -> None:
    command_line(run, __doc__)


if __name__ == "__main__":
    main()
