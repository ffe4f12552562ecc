"""Training runs read from a table, checked cell by cell."""

from __future__ import annotations

import os
from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float


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

    Columns are looked up by the names in `RUN_COLUMNS`; other columns are ignored.

    **Arguments:**

    - `path`: the table.

    **Returns:** [`Runs`][planner.Runs] in the table's row order.
    """
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path).to_pydict()
        columns = {k: [None if v is None else str(v) for v in vs] for k, vs in table.items()}
    else:
        import csv

        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            names = reader.fieldnames or []
        columns = {name: [row.get(name) for row in rows] for name in names}

    def column(field: str, required: bool = True) -> np.ndarray | None:
        for name in RUN_COLUMNS[field]:
            if name in columns:
                values = []
                for i, raw in enumerate(columns[name]):
                    try:
                        values.append(float(raw))
                    except (TypeError, ValueError):
                        raise ValueError(
                            f"{path}: column {name!r} row {i + 1}: not a number: {raw!r}"
                        ) from None
                return np.asarray(values, dtype=np.float64)
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
    if n.size == 0:
        raise ValueError(f"{path}: no runs")
    return Runs(n_params=n, n_tokens=d, loss=ell)
