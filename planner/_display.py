"""Plans as people read them: columns with units, a table, one summary line per status.

A `Plan` (one scenario or a batch) becomes named columns of NumPy arrays (`plan_columns`), a
table with units (`format_plan`, what `print(plan)` shows) and a summary of its statuses
(`status_summary`); `to_pandas` and `to_arrow` hand the columns to those libraries where they
are installed. Nothing here is traced: these are for results, after a solve.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ._solve import Plan

UNITS: dict[str, str] = {
    "n_params": "parameters",
    "n_tokens": "training tokens",
    "density": "fraction of weights kept",
    "n_samples": "samples per query",
    "train_flops": "FLOP",
    "inference_flops": "FLOP, lifetime",
    "total_flops": "FLOP, lifetime",
    "inference_flops_per_unit": "FLOP per unit of demand",
    "loss": "nats per token",
    "score": "success rate",
    "status": "",
}
"""The unit of each plan column."""

_OPTIONAL = ("density", "n_samples")  # shown where some plan is off their default of 1
MAX_ROWS = 20
"""Rows a printed batch shows: the first and last ten of a longer one."""


def plan_columns(plan: Plan) -> dict[str, np.ndarray]:
    """The plan's values as flat NumPy columns, in `UNITS` order: `n_params`, `n_tokens`,
    `density` and `n_samples` (where some plan is pruned or samples more than once),
    `train_flops`, `inference_flops` (lifetime), `total_flops` (their sum),
    `inference_flops_per_unit` (per unit of demand), `loss`, `score` (with a score) and
    `status` (its name, as in `planner solve`'s output). A batch of any shape is flattened in
    C order. Plans that are not optimal hold NaN (see `Plan`)."""
    from ._solve import Status

    a, o = plan.allocation, plan.outcome
    values = {"n_params": a.n_params, "n_tokens": a.n_tokens, "density": a.density,
              "n_samples": a.n_samples, "train_flops": o.train_flops,
              "inference_flops": plan.inference_flops, "total_flops": plan.total_flops,
              "inference_flops_per_unit": o.inference_flops_per_unit, "loss": o.loss,
              "score": o.score}
    shape = np.shape(plan.status)
    columns = {}
    for name, value in values.items():
        if value is None:
            continue
        column = np.broadcast_to(np.asarray(value, dtype=np.float64), shape).reshape(-1)
        if name in _OPTIONAL and np.all((column == 1.0) | np.isnan(column)):
            continue
        columns[name] = column
    names = np.array([s.name.lower() for s in Status], dtype=object)
    columns["status"] = names[np.asarray(plan.status, dtype=int).reshape(-1)]
    return columns


def _number(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.4g}" if "e" in f"{value:.4g}" else f"{value:.3e}"
    return f"{value:.6g}"


def format_plan(plan: Plan) -> str:
    """A table of the plan's columns with their units: one line per column for a single plan,
    one row per plan for a batch (the first and last `MAX_ROWS // 2` of a longer one), and
    the status summary."""
    columns = plan_columns(plan)
    n = len(columns["status"])
    if np.ndim(plan.status) == 0:
        width = max(map(len, columns))
        lines = [f"Plan: {columns['status'][0]}"]
        for name, column in columns.items():
            if name != "status":
                lines.append(f"  {name:<{width}}  {_number(float(column[0])):>11}  "
                             f"{UNITS[name]}")
        if columns["status"][0] != "optimal":
            lines.append(f"  ({status_summary(plan)})")
        return "\n".join(lines)
    rows = list(range(n)) if n <= MAX_ROWS else [*range(MAX_ROWS // 2),
                                                  *range(n - MAX_ROWS // 2, n)]
    names = list(columns)
    cells = [[_number(float(columns[c][i])) if c != "status" else columns[c][i] for c in names]
             for i in rows]
    index = [str(i) for i in rows]
    header, units = names, [UNITS[c] for c in names]
    widths = [max(len(header[j]), len(units[j]), *(len(r[j]) for r in cells))
              for j in range(len(names))]
    left = max(len(s) for s in [*index, ""])

    def line(first, parts):
        return (f"{first:>{left}}  " + "  ".join(
            f"{p:<{w}}" if names[j] == "status" else f"{p:>{w}}"
            for j, (p, w) in enumerate(zip(parts, widths, strict=True)))).rstrip()

    lines = [f"Plan: batch of {n:,} (shape {tuple(np.shape(plan.status))})",
             line("", header), line("", units)]
    for k, (i, r) in enumerate(zip(index, cells, strict=True)):
        if n > MAX_ROWS and k == MAX_ROWS // 2:
            lines.append(f"{'...':>{left}}")
        lines.append(line(i, r))
    lines.append(status_summary(plan))
    return "\n".join(lines)


def status_summary(plan: Plan) -> str:
    """One line: the count of each status, each explained ("3 optimal; 1 infeasible: no
    allocation meets the target within the constraints")."""
    from ._solve import STATUS_MESSAGES, Status

    codes, counts = np.unique(np.asarray(plan.status, dtype=int).reshape(-1),
                              return_counts=True)
    parts = []
    for code, count in zip(codes.tolist(), counts.tolist(), strict=True):
        status = Status(code)
        meaning = STATUS_MESSAGES[status].split(": ", 1)[-1]
        parts.append(f"{count:,} {status.name.lower()} ({meaning})")
    return "; ".join(parts)


def to_pandas(plan: Plan):
    """The plan's columns (`plan_columns`) as a `pandas.DataFrame`; needs pandas."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("Plan.to_pandas needs pandas (pip install pandas); "
                          "Plan.to_columns gives NumPy columns without it") from None
    return pd.DataFrame(plan_columns(plan))


def to_arrow(plan: Plan):
    """The plan's columns (`plan_columns`) as a `pyarrow.Table`; needs pyarrow (the
    `parquet` extra)."""
    try:
        import pyarrow as pa
    except ImportError:
        raise ImportError('Plan.to_arrow needs pyarrow: pip install -e ".[parquet]" in a '
                          "planner checkout; Plan.to_columns gives NumPy columns without "
                          "it") from None
    columns = plan_columns(plan)
    return pa.table({k: pa.array(v.tolist() if k == "status" else v)
                     for k, v in columns.items()})
