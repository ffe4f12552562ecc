"""Scenario tables: reading, validating, solving in padded batches, and writing atomically."""

from __future__ import annotations

import csv
import difflib
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._compose import Pipeline, Pretraining
from ._laws import Chinchilla
from ._solve import Objective, Scenario, Solver, Status, solve

LAW_COLUMNS = ("E", "A", "B", "alpha", "beta")
SCENARIO_COLUMNS = {
    # column: Scenario field
    "target_loss": "target_loss",
    "target_score": "target_score",
    "inference_tokens": "inference_demand",
    "train_budget": "train_budget",
    "inference_budget": "inference_budget",
    "max_inference_flops": "max_inference_flops",
    "max_params": "max_params",
    "max_tokens": "max_tokens",
    "min_density": "min_density",
}
KNOWN_COLUMNS = tuple(SCENARIO_COLUMNS) + LAW_COLUMNS
STATUS_NAMES = {s: s.name.lower() for s in Status}
BUCKET_MIN = 256


class TableError(ValueError):
    """A malformed table: raised before any row is solved."""


# --------------------------------------------------------------------------------------- reading
def read_table(path: str | os.PathLike) -> dict[str, list[str]]:
    """Columns of a CSV or Parquet file, every cell as text (input columns pass through as is)."""
    path = Path(path)
    if not path.exists():
        raise TableError(f"{path}: no such file")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            import pyarrow.parquet as pq
        except ImportError:  # pragma: no cover - depends on the extra
            raise TableError("reading Parquet needs the 'parquet' extra (pyarrow)") from None
        table = pq.read_table(path)
        return {name: [_cell(v) for v in table.column(name).to_pylist()]
                for name in table.column_names}
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise TableError(f"{path}: empty file, expected a header row") from None
        header = [h.strip() for h in header]
        if len(set(header)) != len(header):
            raise TableError(f"{path}: duplicate column names in the header")
        columns: dict[str, list[str]] = {h: [] for h in header}
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise TableError(
                    f"{path}: line {line} has {len(row)} fields, the header has {len(header)}"
                )
            for h, v in zip(header, row, strict=True):
                columns[h].append(v)
    return columns


def _cell(value) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


def check_columns(columns: dict[str, list[str]], required: tuple[str, ...]) -> None:
    """Raise `TableError` for a missing required column or a misspelt known one."""
    names = set(columns)
    for name in names - set(KNOWN_COLUMNS):
        close = difflib.get_close_matches(name, KNOWN_COLUMNS, n=1, cutoff=0.8)
        if close and close[0] not in names:
            raise TableError(f"unknown column {name!r}: did you mean {close[0]!r}?")
    for name in required:
        if name not in names:
            raise TableError(f"missing required column {name!r}")


# ------------------------------------------------------------------------------------ validation
def parse_columns(
    columns: dict[str, list[str]], law: Chinchilla
) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """Parse and check the known columns.

    **Returns:** `(values, status, messages)`: numeric arrays per column; per row, the status
    the checks already decide (`Status.INVALID_INPUT`, `Status.INFEASIBLE`, or -1 for a row to
    solve); and one message per row ('' for a good row) naming every problem with its column
    and its 1-based data row number.
    """
    n = len(next(iter(columns.values()))) if columns else 0
    messages: list[list[str]] = [[] for _ in range(n)]
    infeasible = np.zeros(n, dtype=bool)
    values: dict[str, np.ndarray] = {}
    for name in KNOWN_COLUMNS:
        if name not in columns:
            continue
        out = np.full(n, np.nan)
        for i, text in enumerate(columns[name]):
            try:
                out[i] = float(text)
            except ValueError:
                messages[i].append(f"row {i + 1}: column {name!r} is not a number ({text!r})")
                continue
            if not math.isfinite(out[i]):
                messages[i].append(f"row {i + 1}: column {name!r} must be finite ({text!r})")
        values[name] = out

    def bad(name, mask, what):
        for i in np.flatnonzero(mask & np.isfinite(values[name])):
            messages[i].append(f"row {i + 1}: column {name!r} {what} ({values[name][i]:g})")

    for name in ("target_loss", "train_budget", "inference_budget", "max_inference_flops",
                 "max_params", "max_tokens", "A", "B", "alpha", "beta"):
        if name in values:
            bad(name, values[name] <= 0, "must be > 0")
    for name in ("inference_tokens", "E"):
        if name in values:
            bad(name, values[name] < 0, "must be >= 0")
    if "target_score" in values:
        bad("target_score", (values["target_score"] <= 0) | (values["target_score"] >= 1),
            "must lie in (0, 1)")
    if "min_density" in values:
        bad("min_density", (values["min_density"] <= 0) | (values["min_density"] > 1),
            "must lie in (0, 1]")
    if "target_loss" in values:
        floor = values["E"] if "E" in values else np.full(n, float(law.E))
        mask = (values["target_loss"] <= floor) & np.isfinite(floor)
        for i in np.flatnonzero(mask & np.isfinite(values["target_loss"])):
            infeasible[i] = True
            messages[i].append(
                f"row {i + 1}: column 'target_loss' ({values['target_loss'][i]:g}) is at or below "
                f"the irreducible loss E = {floor[i]:g}: no allocation reaches it"
            )
    status = np.full(n, -1)
    status[infeasible] = Status.INFEASIBLE
    invalid = np.array([len(m) > int(infeasible[i]) for i, m in enumerate(messages)], dtype=bool)
    status[invalid] = Status.INVALID_INPUT
    return values, status, ["; ".join(m) for m in messages]


# --------------------------------------------------------------------------------------- solving
def bucket(n: int, chunk: int) -> int:
    """The padded batch size for `n` rows: a power of two from 256 up to `chunk`."""
    size = BUCKET_MIN
    while size < n and size < chunk:
        size *= 2
    return max(min(size, chunk), n)


def _build(law_values: dict[str, jax.Array], base_law: Chinchilla, stages: tuple) -> Pipeline:
    coefficients = {k: law_values.get(k, getattr(base_law, k)) for k in LAW_COLUMNS}
    return Pipeline(Pretraining(Chinchilla(**coefficients)), *stages)


def make_solver(
    base_law: Chinchilla,
    stages: tuple,
    objective: Objective,
    solver: Solver = Solver(),
) -> Callable:
    """A jitted function: (law columns, scenario columns) batched -> plan columns."""

    def one(law_values, fields):
        model = _build(law_values, base_law, stages)
        plan = solve(model, Scenario(**fields), objective=objective, solver=solver, throw=False)
        out = {
            "n_params": plan.allocation.n_params,
            "n_tokens": plan.allocation.n_tokens,
            "train_flops": plan.outcome.train_flops,
            "inference_flops": plan.outcome.inference_flops,
            "total_flops": plan.total_flops,
            "loss": plan.outcome.loss,
            "status": plan.status,
        }
        if plan.outcome.score is not None:
            out["score"] = plan.outcome.score
        if "density" in model.variables:
            out["density"] = plan.allocation.density
        if "n_samples" in model.variables:
            out["n_samples"] = plan.allocation.n_samples
        return out

    return eqx.filter_jit(jax.vmap(one))


# Values solved in place of a flagged or padding row; the result is discarded.
_PAD = {"target_loss": 3.0, "target_score": 0.5, "inference_tokens": 0.0, "min_density": 0.5,
        "E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def solve_rows(
    values: dict[str, np.ndarray],
    status: np.ndarray,
    fn: Callable,
    *,
    chunk: int,
    dtype=np.float64,
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Solve parsed rows chunk by chunk, padding each to a bucket size so that no new batch
    size recompiles. Yields (first row, plan columns) per chunk. Rows whose `status` is
    already decided (>= 0) are solved as a harmless stand-in and keep that status, with NaN
    plan values."""
    n = len(status)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        size = bucket(stop - start, chunk)
        decided = status[start:stop] >= 0
        law_cols, fields = {}, {"inference_demand": jnp.zeros(size, dtype)}
        for name, column in values.items():
            part = np.full(size, _PAD.get(name, 1.0))
            part[: stop - start] = np.where(decided, part[: stop - start], column[start:stop])
            if name in LAW_COLUMNS:
                law_cols[name] = jnp.asarray(part, dtype)
            else:
                fields[SCENARIO_COLUMNS[name]] = jnp.asarray(part, dtype)
        out = {k: np.array(v)[: stop - start] for k, v in fn(law_cols, fields).items()}
        out["status"] = np.where(decided, status[start:stop], out["status"]).astype(int)
        for k, v in out.items():
            if k != "status":
                v[decided] = np.nan
        yield start, out


# --------------------------------------------------------------------------------------- writing
def format_float(x: float) -> str:
    """Shortest text that reads back as the same float64 (repr), '' for NaN."""
    return "" if not math.isfinite(x) else repr(float(x))


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)`, then rename onto `path`: a reader never sees a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_table(path: str | os.PathLike, columns: dict[str, list[str]]) -> None:
    """Write text columns as CSV or Parquet (by suffix), atomically."""
    path = Path(path)
    names = list(columns)
    n = len(columns[names[0]]) if names else 0

    def write_csv(tmp):
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(names)
            for i in range(n):
                writer.writerow([columns[c][i] for c in names])

    def write_parquet(tmp):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({c: columns[c] for c in names}), tmp)

    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            import pyarrow  # noqa: F401
        except ImportError:  # pragma: no cover - depends on the extra
            raise TableError("writing Parquet needs the 'parquet' extra (pyarrow)") from None
        atomic_write(path, write_parquet)
    else:
        atomic_write(path, write_csv)
