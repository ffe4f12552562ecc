"""Scenario tables: streaming reads, row checks, padded batch solves, atomic writes."""

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
class TableReader:
    """A CSV or Parquet table read in chunks of rows, every cell as text.

    Only the header (and, for CSV, a count of lines) is read up front; `chunks` then streams
    the rows, so a table larger than memory is never held whole.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise TableError(f"{self.path}: no such file")
        self.parquet = self.path.suffix.lower() in (".parquet", ".pq")
        if self.parquet:
            try:
                import pyarrow.parquet as pq
            except ImportError:  # pragma: no cover - depends on the extra
                raise TableError("reading Parquet needs the 'parquet' extra (pyarrow)") from None
            meta = pq.ParquetFile(self.path)
            self.columns = list(meta.schema_arrow.names)
            self.n_rows = meta.metadata.num_rows
        else:
            with open(self.path, newline="") as handle:
                try:
                    header = next(csv.reader(handle))
                except StopIteration:
                    raise TableError(f"{self.path}: empty file, expected a header row") from None
            self.columns = [h.strip() for h in header]
            self.n_rows = self._count_csv_rows()
        if len(set(self.columns)) != len(self.columns):
            raise TableError(f"{self.path}: duplicate column names in the header")

    def _count_csv_rows(self) -> int:
        count, last = 0, b"\n"
        with open(self.path, "rb") as handle:
            while block := handle.read(1 << 22):
                count += block.count(b"\n")
                last = block[-1:]
        return count - 1 + (last != b"\n")  # the header; a last line without newline

    def chunks(self, size: int) -> Iterator[dict[str, list[str]]]:
        """Consecutive chunks of at most `size` rows, as text columns."""
        if self.parquet:
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(self.path).iter_batches(batch_size=size):
                yield {name: [_cell(v) for v in batch.column(name).to_pylist()]
                       for name in self.columns}
            return
        with open(self.path, newline="") as handle:
            reader = csv.reader(handle)
            next(reader)
            columns: dict[str, list[str]] = {h: [] for h in self.columns}
            rows = 0
            for row in reader:
                if len(row) != len(self.columns):
                    raise TableError(
                        f"{self.path}: line {reader.line_num} has {len(row)} fields, "
                        f"the header has {len(self.columns)}"
                    )
                for h, v in zip(self.columns, row, strict=True):
                    columns[h].append(v)
                rows += 1
                if rows == size:
                    yield columns
                    columns, rows = {h: [] for h in self.columns}, 0
            if rows:
                yield columns


def read_table(path: str | os.PathLike) -> dict[str, list[str]]:
    """A whole (small) table as text columns."""
    reader = TableReader(path)
    out: dict[str, list[str]] = {h: [] for h in reader.columns}
    for chunk in reader.chunks(1 << 16):
        for h in reader.columns:
            out[h].extend(chunk[h])
    return out


def _cell(value) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


def check_columns(columns, required: tuple[str, ...]) -> None:
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
    columns: dict[str, list[str]], law: Chinchilla, first_row: int = 1
) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """Parse and check the known columns.

    **Returns:** `(values, status, messages)`: numeric arrays per column; per row, the status
    the checks already decide (`Status.INVALID_INPUT`, `Status.INFEASIBLE`, or -1 for a row to
    solve); and one message per row ('' for a good row) naming every problem with its column
    and its data row number (the first data row is `first_row`; the header is not counted).
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
            where = f"row {i + first_row}: column {name!r}"
            try:
                out[i] = float(text)
            except ValueError:
                messages[i].append(f"{where} is not a number ({text!r})")
                continue
            if not math.isfinite(out[i]):
                messages[i].append(f"{where} must be finite ({text!r})")
        values[name] = out

    def bad(name, mask, what):
        for i in np.flatnonzero(mask & np.isfinite(values[name])):
            messages[i].append(
                f"row {i + first_row}: column {name!r} {what} ({values[name][i]:g})"
            )

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
                f"row {i + first_row}: column 'target_loss' ({values['target_loss'][i]:g}) is at "
                "or below "
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


def solve_chunk(
    values: dict[str, np.ndarray],
    status: np.ndarray,
    fn: Callable,
    *,
    size: int,
    dtype=np.float64,
) -> dict[str, np.ndarray]:
    """Solve one chunk of parsed rows, padded to `size` rows so that batch sizes come from a
    few buckets and never recompile. Rows whose `status` is already decided (>= 0) are solved
    as a harmless stand-in and keep that status, with NaN plan values."""
    n = len(status)
    decided = status >= 0
    law_cols, fields = {}, {"inference_demand": jnp.zeros(size, dtype)}
    for name, column in values.items():
        part = np.full(size, _PAD.get(name, 1.0))
        part[:n] = np.where(decided, part[:n], column)
        if name in LAW_COLUMNS:
            law_cols[name] = jnp.asarray(part, dtype)
        else:
            fields[SCENARIO_COLUMNS[name]] = jnp.asarray(part, dtype)
    out = {k: np.array(v)[:n] for k, v in fn(law_cols, fields).items()}
    out["status"] = np.where(decided, status, out["status"]).astype(int)
    for k, v in out.items():
        if k != "status":
            v[decided] = np.nan
    return out


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
