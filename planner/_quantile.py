"""`planner solve --quantile Q`: every scenario planned under every bootstrap law of a fit.

The command-line counterpart of `compute_optimal_quantiles` and `loss_optimal_quantiles`:
each row of the table is solved once per bootstrap law of FIT.json (the rows are repeated, one
copy per law, with the law's coefficients as the row's law columns, and solved as one batched
table), and each plan column is then that row's `Q` quantile over the laws. As in the Python
functions, each column is its own quantile: the columns of a row are not one allocation.

A row is `optimal` only if every law's plan is; otherwise it takes the status of its first
law that is not, with that plan's message and how many of the laws share that status.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ._fit import read_fit_bootstrap
from ._solve import STATUS_MESSAGES, Status
from ._sweep import SweepCounts, _format_chunk, write_lines
from ._table import (
    LAW_COLUMNS,
    STATUS_NAMES,
    TableError,
    TableReader,
    as_list,
    bucket,
    check_columns,
    format_floats,
    parse_columns,
    solve_chunk,
)


def solve_quantile(
    input_path: str | Path,
    output_path: str | Path,
    fit_path: str | Path,
    quantile: float,
    *,
    law,
    make_fn: Callable[[], Callable],
    plan_columns: list[str],
    required: tuple[str, ...],
    chunk: int,
    dtype,
    checks: dict,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
    fitted_range=None,
) -> SweepCounts:
    """Solve `input_path` under each bootstrap law of `fit_path` and write each plan column's
    `quantile` over the laws to `output_path`; returns the count of each status. With
    `fitted_range`, quantile plans that extrapolate say so in their message (as in
    `run_sweep`).

    The whole table is held in memory, with one copy of every row per law: this is meant for
    the tables one plans under uncertainty (tens to thousands of rows), not for sweeps.
    """
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"--quantile must lie in [0, 1], got {quantile}")
    input_path, output_path = Path(input_path), Path(output_path)
    laws = read_fit_bootstrap(fit_path)
    coefficients = {k: np.asarray(getattr(laws, k), dtype=np.float64) for k in LAW_COLUMNS}
    n_laws = coefficients["E"].shape[0]
    reader = TableReader(input_path)
    check_columns(reader.columns, required)
    own = [c for c in reader.columns if c in LAW_COLUMNS]
    if own:
        raise TableError(f"{input_path}: columns {own} give a law per row; --quantile plans "
                         "under the laws of the fit instead: remove them or leave out "
                         "--quantile")
    columns: dict[str, list[str]] = {h: [] for h in reader.columns}
    for part in reader.chunks(max(chunk, 1)):
        for h in reader.columns:
            columns[h].extend(as_list(part[h]))
    n_rows = reader.n_rows
    # row i under law b is expanded row i * n_laws + b
    expanded = {h: [cell for cell in cells for _ in range(n_laws)] for h, cells in columns.items()}
    for name, values in coefficients.items():
        expanded[name] = format_floats(np.tile(values, n_rows))
    values, status, messages = parse_columns(expanded, law, required=required, **checks)
    total = n_rows * n_laws
    fn = make_fn() if total else None
    outs = []
    for start in range(0, total, chunk):
        stop = min(start + chunk, total)
        part_values = {k: v[start:stop] for k, v in values.items()}
        size = chunk if total > chunk else bucket(stop - start, chunk)
        outs.append(solve_chunk(part_values, status[start:stop], fn, size=size, dtype=dtype,
                                    law=law))
        on_progress(stop, total)
    out = {k: np.concatenate([o[k] for o in outs]) if outs else np.zeros(0)
           for k in [*plan_columns, "status"]}
    reduced, row_messages = _reduce(out, messages, plan_columns, n_rows, n_laws, quantile)
    counts = SweepCounts()
    if fitted_range is not None:
        notes = fitted_range.notes(reduced["n_params"], reduced["n_tokens"])
        row_messages = [notes.get(i, m) for i, m in enumerate(row_messages)]
        counts.extrapolated = len(notes)
    for code in reduced["status"].tolist():
        name = STATUS_NAMES[Status(int(code))]
        counts[name] = counts.get(name, 0) + 1
    write_lines(output_path, reader.columns + plan_columns + ["status", "message"],
                [_format_chunk(columns, reduced, plan_columns, row_messages)])
    return counts


def _reduce(out, messages, plan_columns, n_rows, n_laws, quantile):
    """Per row: the quantile of each plan column over the laws, or the first failing law's
    status and message."""
    codes = out["status"].reshape(n_rows, n_laws)
    ok = np.all(codes == Status.OPTIMAL, axis=1)
    reduced = {}
    for name in plan_columns:
        table = out[name].reshape(n_rows, n_laws)
        with np.errstate(all="ignore"):
            reduced[name] = np.where(ok, np.quantile(np.where(ok[:, None], table, 0.0),
                                                     quantile, axis=1), np.nan)
    status = np.full(n_rows, int(Status.OPTIMAL))
    row_messages = [""] * n_rows
    for i in np.flatnonzero(~ok).tolist():
        first = int(np.flatnonzero(codes[i] != Status.OPTIMAL)[0])
        code = int(codes[i, first])
        same = int(np.sum(codes[i] == code))
        note = messages[i * n_laws + first] or STATUS_MESSAGES[Status(code)]
        note = re.sub(r"\brow \d+:", f"row {i + 1}:", note)
        status[i] = code
        row_messages[i] = (f"{same} of {n_laws} bootstrap laws: {STATUS_NAMES[Status(code)]} "
                           f"(law {first + 1}: {note})")
    reduced["status"] = status
    return reduced, row_messages
