"""Training runs read from a table, checked cell by cell."""

from __future__ import annotations

import math
import os
from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._table import PARQUET_HINT, is_parquet


# ====================================================================================== runs
class Runs(eqx.Module):
    """Training runs: one entry per run.

    **Arguments:**

    - `n_params`: parameters $N$.
    - `n_tokens`: training tokens $D$.
    - `loss`: final loss.
    """

    n_params: Float[Array, " run"] = eqx.field(converter=jnp.asarray)
    n_tokens: Float[Array, " run"] = eqx.field(converter=jnp.asarray)
    loss: Float[Array, " run"] = eqx.field(converter=jnp.asarray)


RUN_COLUMNS: dict[str, tuple[str, ...]] = {
    "n_params": ("n_params", "Model Size", "Parameters", "N"),
    "n_tokens": ("n_tokens", "Training Tokens", "Tokens", "D"),
    "train_flops": ("train_flops", "Training FLOP", "C"),
    "loss": ("loss", "Loss", "Smoothed Loss", "final_loss"),
}
"""Column names `read_runs` accepts for each field, first match wins. Without a tokens column,
$D = C / (6N)$ from a training-FLOP column (the layout of Epoch AI's extraction of Hoffmann
et al.'s Figure 4)."""


def read_runs(path: str | os.PathLike) -> Runs:
    """Training runs from a CSV (or, with pyarrow, Parquet) table.

    Columns are looked up by the names in `RUN_COLUMNS`; other columns are ignored. Every cell
    used must be a finite number > 0; a `ValueError` names each cell that is not, by column,
    data row (the header is not counted) and, in a CSV file, line.

    **Arguments:**

    - `path`: the table.

    **Returns:** [`Runs`][planner.fitting.Runs] in the table's row order.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    lines: list[int] | None = None
    if is_parquet(path):
        try:
            import pyarrow.parquet as pq
        except ImportError:  # pragma: no cover - depends on the extra
            raise ValueError(f"{path}: reading Parquet needs pyarrow: {PARQUET_HINT}") from None
        table = pq.read_table(path).to_pydict()
        columns = {k: [None if v is None else str(v) for v in vs] for k, vs in table.items()}
    else:
        import csv

        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            try:
                names = [h.strip() for h in next(reader)]
            except StopIteration:
                raise ValueError(f"{path}: empty file, expected a header row") from None
            except (csv.Error, UnicodeDecodeError) as error:
                raise ValueError(f"{path}: unreadable header ({error})") from None
            if len(names) == 1 and ";" in names[0]:
                raise ValueError(f"{path}: the header is one column, {names[0][:60]!r}, that "
                                 "looks semicolon-separated; planner reads comma-separated "
                                 "values (save the table as CSV with commas)")
            rows, lines = [], []
            try:
                for row in reader:
                    if not row:
                        continue
                    if len(row) != len(names):
                        raise ValueError(f"{path}: line {reader.line_num} has {len(row)} "
                                         f"fields, the header has {len(names)}")
                    rows.append(row)
                    lines.append(reader.line_num)
            except (csv.Error, UnicodeDecodeError) as error:
                raise ValueError(f"{path}: line {reader.line_num}: {error}") from None
        columns = {name: [row[i] for row in rows] for i, name in enumerate(names)}

    def where(i: int) -> str:
        return f"row {i + 1}" + (f" (line {lines[i]})" if lines is not None else "")

    problems: list[str] = []

    def column(field: str, required: bool = True) -> np.ndarray | None:
        for name in RUN_COLUMNS[field]:
            if name in columns:
                values = np.full(len(columns[name]), np.nan)
                for i, raw in enumerate(columns[name]):
                    try:
                        values[i] = float(raw)
                    except (TypeError, ValueError):
                        what = "is empty" if raw is None or not str(raw).strip() else (
                            f"is not a number ({raw!r})")
                        problems.append(f"{where(i)}: column {name!r} {what}")
                        continue
                    if not (math.isfinite(values[i]) and values[i] > 0):
                        problems.append(f"{where(i)}: column {name!r} must be a finite number "
                                        f"> 0 ({raw!r})")
                return values
        if required:
            raise ValueError(
                f"{path}: no {field} column (looked for {', '.join(map(repr, RUN_COLUMNS[field]))})"
            )
        return None

    n = column("n_params")
    ell = column("loss")
    d = column("n_tokens", required=False)
    if d is None:
        c = column("train_flops", required=False)
        if c is None:
            names = RUN_COLUMNS["n_tokens"] + RUN_COLUMNS["train_flops"]
            raise ValueError(
                f"{path}: no n_tokens column and no train_flops column to derive it from "
                f"(looked for {', '.join(map(repr, names))})"
            )
        d = c / (6.0 * n)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ValueError(f"{path}: " + "; ".join(problems[:5]) + more)
    if n.size == 0:
        raise ValueError(f"{path}: no runs")
    return Runs(n_params=n, n_tokens=d, loss=ell)
