"""Scenario tables: streaming reads, row checks, padded batch solves, atomic writes."""

from __future__ import annotations

import collections
import contextlib
import csv
import difflib
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _arrowio, _rules, _stored
from ._compose import Pipeline, Pretraining
from ._laws import Chinchilla
from ._solve import Objective, Scenario, Solver, Status, solve

LAW_COLUMNS = tuple(_rules.LAW_RULES)
TABLE_FIELDS = ("target_loss", "target_score", "inference_demand", "train_budget",
                "inference_budget", "max_inference_flops_per_unit", "max_params", "max_tokens",
                "min_density", "demand_rate")
"""The `Scenario` fields a scenario table may give, each as the column of its name."""
KNOWN_COLUMNS = TABLE_FIELDS + LAW_COLUMNS
STATUS_NAMES = {s: s.name.lower() for s in Status}
BUCKET_MIN = 256
CAP_COLUMNS = ("train_budget", "inference_budget", "max_inference_flops_per_unit",
               "max_params", "max_tokens")
# An empty cell in an optional column means the constraint is absent for that row. Within a
# batch every row has the same constraints, so an absent one is given the value of its rule
# that never binds (`Rule.absent`). Law columns fall back to the law given on the command line.
ABSENT = {column: _rules.COLUMN_RULES[column].absent for column in TABLE_FIELDS}


Cells = Sequence[str]
"""A column of text cells: a list of strings, or a pyarrow string array."""


PARQUET_HINT = 'pip install -e ".[parquet]" in a planner checkout'
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def is_parquet(path: str | os.PathLike) -> bool:
    """Whether a table's name says Parquet (else it is CSV)."""
    return Path(path).suffix.lower() in (".parquet", ".pq")


def check_output_suffix(path: str | os.PathLike, what: str = "output") -> bool:
    """Whether `path` is Parquet; `TableError` for a suffix that is neither CSV nor Parquet,
    or for Parquet without pyarrow. Called before any work, so nothing is solved in vain."""
    suffix = Path(path).suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise TableError(f"{path}: unknown {what} suffix {suffix or '(none)'!r}: write .csv, "
                         ".parquet or .pq")
    if suffix != ".csv":
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError:  # pragma: no cover - depends on the extra
            raise TableError(f"{path}: writing Parquet needs pyarrow: {PARQUET_HINT}") from None
        return True
    return False


def read_header(path: str | os.PathLike) -> list[str]:
    """The column names of a table, reading only its header (`TableError` if unreadable)."""
    path = Path(path)
    if is_parquet(path) or not path.is_file():
        return TableReader(path).columns
    with open(path, newline="", encoding="utf-8-sig") as handle:
        try:
            return [h.strip() for h in next(csv.reader(handle, strict=True))]
        except (StopIteration, csv.Error, UnicodeDecodeError):
            return TableReader(path).columns  # raises the reader's own error


class TableError(ValueError):
    """A malformed table: raised before any row is solved."""


# --------------------------------------------------------------------------------------- reading
class TableReader:
    """A CSV or Parquet table read in chunks of rows, every cell as text.

    Only the header (and, for CSV, a count of lines) is read up front; `chunks` then streams
    the rows, so a table larger than memory is never held whole.
    """

    def __init__(self, path: str | os.PathLike, *, fast: bool = True):
        self.path = Path(path)
        # with pyarrow, CSV is parsed by its reader into string arrays (see `_arrowio`)
        self.fast = fast and _arrowio.AVAILABLE
        if not self.path.is_file():
            raise TableError(f"{self.path}: no such file")
        self.parquet = is_parquet(self.path)
        if self.parquet:
            try:
                import pyarrow.parquet as pq
            except ImportError:  # pragma: no cover - depends on the extra
                raise TableError(f"reading Parquet needs pyarrow: {PARQUET_HINT}") from None
            try:
                meta = pq.ParquetFile(self.path)
            except Exception as error:  # pyarrow raises its own exception types
                raise TableError(f"{self.path}: not a readable Parquet file ({error})") from None
            self.columns = list(meta.schema_arrow.names)
            self.n_rows = meta.metadata.num_rows
        else:
            self.columns, self.n_rows = self._scan_csv()
        if len(set(self.columns)) != len(self.columns):
            raise TableError(f"{self.path}: duplicate column names in the header")

    def _rows(self, handle) -> Iterator[tuple[int, list[str]]]:
        """(line number, fields) of every non-blank data row; `TableError` on a malformed one.

        Blank lines carry no data and are skipped (they are not counted as rows).
        """
        reader = csv.reader(handle, strict=True)
        try:
            next(reader)
            for row in reader:
                if not row:
                    continue
                if len(row) != len(self.columns):
                    raise TableError(
                        f"{self.path}: line {reader.line_num} has {len(row)} fields, "
                        f"the header has {len(self.columns)}"
                    )
                yield reader.line_num, row
        except csv.Error as error:
            raise TableError(f"{self.path}: line {reader.line_num}: {error}") from None
        except UnicodeDecodeError as error:
            raise TableError(f"{self.path}: not UTF-8 text ({error})") from None

    def _open(self):
        # utf-8-sig: a byte-order mark (as spreadsheet programs write) is not part of a name
        return open(self.path, newline="", encoding="utf-8-sig")

    def _scan_csv(self) -> tuple[list[str], int]:
        """The header, and the number of rows after checking every row's shape.

        The whole file is checked here, before any row is solved, so a malformed line at the end
        of a long table stops the run before it starts rather than after hours of work.
        """
        with self._open() as handle:
            try:
                header = next(csv.reader(handle, strict=True))
            except StopIteration:
                raise TableError(f"{self.path}: empty file, expected a header row") from None
            except csv.Error as error:
                raise TableError(f"{self.path}: unreadable header ({error})") from None
            except UnicodeDecodeError as error:
                raise TableError(f"{self.path}: not UTF-8 text ({error})") from None
        self.columns = [h.strip() for h in header]
        if not any(self.columns):
            raise TableError(f"{self.path}: the header row names no column")
        if len(self.columns) == 1:
            for sep, name in ((";", "semicolon"), ("\t", "tab")):
                if sep in self.columns[0]:
                    raise TableError(
                        f"{self.path}: the header is one column, {self.columns[0][:60]!r}, "
                        f"that looks {name}-separated; planner reads comma-separated values "
                        "(save the table as CSV with commas)")
        if self.fast:
            try:
                return self.columns, _arrowio.count_rows(self.path, len(self.columns))
            except _arrowio.ArrowUnsupported:
                # the csv module reads it (and names the line at fault if it cannot)
                self.fast = False
        with self._open() as handle:
            n_rows = sum(1 for _ in self._rows(handle))
        return self.columns, n_rows

    def chunks(self, size: int) -> Iterator[dict[str, Cells]]:
        """Consecutive chunks of at most `size` rows, as text columns (lists of strings, or
        pyarrow string arrays when the table is read by pyarrow)."""
        if not self.parquet and self.fast:
            yield from _arrowio.chunks(self.path, self.columns, size)
            return
        if self.parquet:
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(self.path).iter_batches(batch_size=size):
                yield {name: _cells(batch.column(name).to_pylist()) for name in self.columns}
            return
        with self._open() as handle:
            columns: dict[str, list[str]] = {h: [] for h in self.columns}
            rows = 0
            for _, row in self._rows(handle):
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
            out[h].extend(as_list(chunk[h]))
    return out


def as_list(cells: Cells) -> list[str]:
    """Text cells as a list of strings."""
    return cells if isinstance(cells, list) else cells.to_pylist()


def _cells(values: list) -> list[str]:
    """Parquet values as text cells: '' for null, floats as `format_float` writes them (which
    reads back exactly)."""
    return ["" if v is None else format_float(v) if isinstance(v, float) and math.isfinite(v)
            else str(v) for v in values]


def check_columns(columns, required: tuple[str, ...], known: tuple[str, ...] = ()) -> None:
    """Raise `TableError` for a missing required column, a misspelt known one (`known`:
    columns known besides a scenario table's, such as an item table's `weight`) or one under
    its old name (`planner._rules.RENAMED_COLUMNS`)."""
    names = set(columns)
    known = KNOWN_COLUMNS + tuple(known)
    for name in sorted(names & set(_rules.RENAMED_COLUMNS)):
        # an unknown column is passed through untouched: under its old name, this one would
        # silently mean nothing
        new = _rules.RENAMED_COLUMNS[name]
        raise TableError(f"column {name!r} is now {new!r} (as Scenario.{new}; the same "
                         "values): rename the column")
    for name in names - set(known):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        if close and close[0] not in names:
            raise TableError(f"unknown column {name!r}: did you mean {close[0]!r}?")
    for name in required:
        if name not in names:
            raise TableError(f"missing required column {name!r}")


# ------------------------------------------------------------------------------------ validation
def parse_columns(
    columns: dict[str, list[str]],
    law: Chinchilla,
    first_row: int = 1,
    *,
    required: tuple[str, ...] = (),
    needs_target: bool = False,
    dense_inference: bool = True,
    extra: dict[str, _rules.Rule] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    r"""Parse and check the known columns of one chunk of rows.

    Every cell must be a number in its column's domain, the rule of its field
    (`planner._rules.COLUMN_RULES`): budgets and caps > 0 (inf: no cap), `inference_demand`
    finite and >= 0, `min_density` in (0, 1], `target_score` in (0, 1), law exponents and
    scales finite and > 0, `E` finite and >= 0. An empty cell leaves the constraint out for
    that row (`ABSENT`) or, in a law column, takes the value of `law`; it is an error in a
    `required` column, and with `needs_target` a row needs a `target_loss` or a
    `target_score`.

    Rows that pass are then tested against closed forms of the row's Chinchilla law, which no
    stage can beat (stages may raise the loss or the training compute, never lower them): a
    `target_loss` at or below `E`, caps on parameters and tokens under which even the largest
    model allowed cannot reach the target, a `train_budget` below the least training compute
    that reaches it, and (with `dense_inference`, i.e. no pruning) inference caps below
    $2 N_{\min}$ FLOP per token. Such rows are `Status.INFEASIBLE` with a message saying why;
    rows within a relative `1e-9` of a bound are left to the solver.

    **Arguments:**

    - `columns`: text cells by column name.
    - `law`: the default law.
    - `first_row`: the data-row number of the first row (the header is not counted).
    - `required`: columns whose cells may not be empty.
    - `needs_target`: each row needs a target (the compute objective).
    - `dense_inference`: inference costs at least $2N$ FLOP per token (no pruning stage).
    - `extra`: the rules of further columns to parse and check alike (`_rules.ITEM_RULES`: an
      item's `weight`); an empty cell takes the rule's `absent` value.

    **Returns:** `(values, status, messages)`: numeric arrays per column, absent cells filled
    in; per row, the status the checks already decide (`Status.INVALID_INPUT`,
    `Status.INFEASIBLE`, or -1 for a row to solve); and one message per row ('' for a good row)
    naming every problem with its column and its data row number.
    """
    n = len(next(iter(columns.values()))) if columns else 0
    problems: dict[int, list[str]] = collections.defaultdict(list)  # rows with problems only
    values: dict[str, np.ndarray] = {}
    empty: dict[str, np.ndarray] = {}
    rules = {**_rules.COLUMN_RULES, **(extra or {})}
    for name in (*KNOWN_COLUMNS, *(extra or {})):
        if name not in columns:
            continue
        out, blank, text = _parse_column(columns[name], name, name in required, first_row,
                                         problems)
        default = (float(getattr(law, name)) if name in LAW_COLUMNS else
                   ABSENT[name] if name in ABSENT else rules[name].absent)
        out[blank] = default
        values[name], empty[name] = out, blank
        # every number is checked against its column's rule (a text cell has its problem)
        for failed, requirement in rules[name].failures(out):
            for i in np.flatnonzero(failed & ~blank & ~text):
                problems[i].append(f"row {i + first_row}: column {name!r} {requirement} "
                                   f"({values[name][i]:g})")

    if needs_target:
        has = np.zeros(n, dtype=bool)
        for name in ("target_loss", "target_score"):
            if name in values:
                has |= ~empty[name]
        for i in np.flatnonzero(~has):
            problems[i].append(f"row {i + first_row}: needs a target_loss or a target_score")

    invalid = np.zeros(n, dtype=bool)
    invalid[np.array(list(problems), dtype=int)] = True
    reasons = _infeasible(values, empty, law, ~invalid, first_row, dense_inference)
    status = np.full(n, -1)
    status[np.array(list(reasons), dtype=int)] = Status.INFEASIBLE
    status[invalid] = Status.INVALID_INPUT
    messages = [""] * n
    for i, why in (*reasons.items(), *problems.items()):
        messages[i] = "; ".join(why)
    return values, status, messages


def _parse_column(cells: list[str], name: str, required: bool, first_row: int,
                  problems: dict[int, list[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A column of text cells as float64 (NaN where empty or not a number), its empty cells
    and its cells of text that is not a number; the problems of each cell are appended to
    `problems`."""
    n = len(cells)
    blank = np.zeros(n, dtype=bool)
    text = np.zeros(n, dtype=bool)  # neither empty nor a number
    if not isinstance(cells, list):  # a pyarrow string array
        out = _arrowio.to_floats(cells)
        if out is not None:
            return out, blank, blank
        cells = cells.to_pylist()
    try:  # a column of numbers only, the common case: parsed in one pass
        out = np.array(list(map(float, cells)), dtype=np.float64).reshape(n)
    except ValueError:  # empty cells or text: cell by cell, to say which
        out = np.full(n, np.nan)
        for i, cell in enumerate(cells):
            if not cell.strip():
                blank[i] = True
                continue
            try:
                out[i] = float(cell)
            except ValueError:
                text[i] = True
    for i in np.flatnonzero(blank & required):
        problems[i].append(f"row {i + first_row}: column {name!r} is empty")
    for i in np.flatnonzero(text):
        problems[i].append(f"row {i + first_row}: column {name!r} is not a number "
                           f"({cells[i]!r})")
    return out, blank, text


def _infeasible(values, empty, law, valid, first_row, dense_inference) -> dict[int, list[str]]:
    """Why no allocation can reach its `target_loss`, for the rows where none can
    (`planner._rules.infeasible_reasons`, with each row's number)."""
    if "target_loss" not in values:
        return {}
    n = len(valid)
    coef = {k: values.get(k, np.full(n, float(getattr(law, k)))) for k in LAW_COLUMNS}
    return _rules.infeasible_reasons(
        values, coef, valid & ~empty["target_loss"], dense_inference,
        lambda i: f"row {i + first_row}: ")


# --------------------------------------------------------------------------------------- solving
def bucket(n: int, chunk: int) -> int:
    """The padded batch size for `n` rows: a power of two from 256 up to `chunk`."""
    size = BUCKET_MIN
    while size < n and size < chunk:
        size *= 2
    return max(min(size, chunk), n)


def _build(law_values: dict[str, jax.Array], base_law: Chinchilla, stages: tuple) -> Pipeline:
    """The pipeline of one row: its own law where the table gives coefficients.

    A stage that holds a Chinchilla `law` of its own (pruning penalises the law's parameter
    term) is given the row's law too, so every stage of a row speaks of the same law.
    """
    if not law_values:
        return Pipeline(Pretraining(base_law), *stages)
    law = Chinchilla(**{k: law_values.get(k, getattr(base_law, k)) for k in LAW_COLUMNS})
    stages = tuple(
        eqx.tree_at(lambda s: s.law, stage, law)
        if isinstance(getattr(stage, "law", None), Chinchilla) else stage
        for stage in stages
    )
    return Pipeline(Pretraining(law), *stages)


def plan_values(plan, model: Pipeline) -> dict:
    """A plan's columns in a plans table, by name (`planner._sweep.PLAN_COLUMNS`, those the
    model has), and its `status`; for one plan or a batch."""
    out = {
        "n_params": plan.allocation.n_params,
        "n_tokens": plan.allocation.n_tokens,
        "train_flops": plan.outcome.train_flops,
        "inference_flops": plan.inference_flops,
        "total_flops": plan.total_flops,
        "inference_flops_per_unit": plan.outcome.inference_flops_per_unit,
        "loss": plan.outcome.loss,
        "status": plan.status,
    }
    if plan.outcome.score is not None:
        out["score"] = plan.outcome.score
    if "density" in model.variables:
        out["density"] = plan.allocation.density
    if "n_samples" in model.variables:
        out["n_samples"] = plan.allocation.n_samples
    if plan.serving is not None:
        for name in ("dollars", "train_dollars", "inference_dollars", "serving_batch",
                     "replicas", "latency"):
            out[name] = getattr(plan.serving, name)
    return out


@eqx.filter_jit
def _solve_batch(law_values, fields, base_law, stages, objective, solver, constants=None):
    # Module level, with the law and the stages as arguments: every table solved in a process
    # with the same columns, stage types and batch size reuses one compilation.
    def one(law_values, fields):
        model = _build(law_values, base_law, stages)
        # scenario fields given once for the whole table (the serving latency bound)
        fields = {**fields, **{k: jnp.asarray(v, fields["inference_demand"].dtype)
                               for k, v in (constants or {}).items()}}
        plan = solve(model, Scenario(**fields), objective=objective, solver=solver, throw=False)
        return plan_values(plan, model)

    # One batch: the solver pools its local solves over lanes (`Solver.lanes`), so a slow row
    # costs only its own iterations.
    return jax.vmap(one)(law_values, fields)


def make_solver(
    base_law: Chinchilla,
    stages: tuple,
    objective: Objective,
    solver: Solver = Solver(),
    constants: dict[str, float] | None = None,
) -> Callable:
    """A jitted function: (law columns, scenario columns) batched -> plan columns.
    `constants` are `Scenario` fields given once for every row (e.g. `max_latency`).
    `solver_key` of the same arguments names everything it closes over (for
    `shard_batch(..., store=)`)."""

    def fn(law_values, fields):
        return _solve_batch(law_values, fields, base_law, tuple(stages), objective, solver,
                            constants)

    return fn


def solver_key(base_law: Chinchilla, stages: tuple, objective: Objective,
               solver: Solver = Solver(), constants: dict[str, float] | None = None) -> str:
    """The `planner._stored.fingerprint` of what `make_solver`'s function closes over."""
    return _stored.fingerprint("make_solver", base_law, tuple(stages), objective, solver,
                               constants)


def solve_chunk(
    values: dict[str, np.ndarray],
    status: np.ndarray,
    fn: Callable,
    *,
    size: int,
    dtype=np.float64,
    law: Chinchilla | None = None,
) -> dict[str, np.ndarray]:
    """Solve one chunk of parsed rows, padded to `size` rows so that batch sizes come from a
    few buckets and never recompile. Rows whose `status` is already decided (>= 0) are solved
    as a harmless stand-in and keep that status. `law` is the table's law (whose `E` a
    stand-in's loss target sits above, where the table has no `E` column).

    Plan values are kept for `Status.OPTIMAL` rows only, NaN (an empty cell) elsewhere, so a
    row that is not certified never shows numbers that look like a plan; an optimal row with a
    non-finite value (which the solver should never report) is downgraded to
    `Status.NOT_CONVERGED`.
    """
    n = len(status)
    law_cols, fields = batch_inputs(values, status >= 0, size=size, dtype=dtype, law=law)
    out = {k: np.array(v)[:n] for k, v in fn(law_cols, fields).items()}
    return settle(out, status)


def batch_inputs(
    values: dict[str, np.ndarray],
    stand_in: np.ndarray,
    *,
    size: int,
    dtype=np.float64,
    law: Chinchilla | None = None,
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """The parsed scenario and law columns of some rows (`values`, as `parse_columns` returns
    them) as arrays of `size` rows: `(law columns, Scenario fields)`. Rows where `stand_in`
    is true, and the padding rows after the last, get their rules' stand-ins
    (`Rule.stand_in`): an easy, feasible problem whose result is discarded. `law` as in
    `solve_chunk`; columns without a rule of a scenario table (an item's `weight`) are left
    out."""
    n = len(stand_in)
    law_cols, fields = {}, {"inference_demand": jnp.zeros(size, dtype)}
    stand_in_e = (_rules.LAW_RULES["E"].stand_in if "E" in values or law is None
                  else float(law.E))
    for name, column in values.items():
        rule = _rules.COLUMN_RULES.get(name)
        if rule is None:
            continue
        part = np.full(size, rule.stand_in + (stand_in_e if rule.relative_to_irreducible
                                              else 0.0))
        part[:n] = np.where(stand_in, part[:n], column)
        if name in LAW_COLUMNS:
            law_cols[name] = jnp.asarray(part, dtype)
        else:
            fields[name] = jnp.asarray(part, dtype)
    return law_cols, fields


def settle(out: dict[str, np.ndarray], status: np.ndarray) -> dict[str, np.ndarray]:
    """Solved plan columns (NumPy, with their `status`) as a plans table shows them: a row
    whose `status` is already decided (>= 0) keeps it; plan values are kept for
    `Status.OPTIMAL` rows only, NaN (an empty cell) elsewhere; an optimal row with a
    non-finite value is downgraded to `Status.NOT_CONVERGED`."""
    n = len(status)
    code = np.where(status >= 0, status, out["status"]).astype(int)
    plan = [k for k in out if k != "status"]
    finite = np.all([np.isfinite(out[k]) for k in plan], axis=0) if plan else np.ones(n, bool)
    code = np.where((code == Status.OPTIMAL) & ~finite, int(Status.NOT_CONVERGED), code)
    for k in plan:
        out[k] = np.where(code == Status.OPTIMAL, out[k], np.nan)
    out["status"] = code
    return out


# --------------------------------------------------------------------------------------- writing
def format_float(value: float) -> str:
    """The text of one float64 in a written table: the shortest digits that read back as the
    same double (those of `repr`), laid out positionally for magnitudes in [1e-6, 1e10) and as
    `d.ddde+X` otherwise, a whole number without '.0' (`2`, `0.000015`, `1.25e+11`, `-3e-7`).

    This is the layout of the double-conversion library's shortest form as pyarrow's
    double-to-string cast writes it, so that a table is formatted by that cast when pyarrow is
    installed (`planner._arrowio.format_floats`) and by this function otherwise, byte for byte
    the same. The value must be finite."""
    text = repr(value)
    sign = "-" if text[0] == "-" else ""
    mantissa, _, exponent = text.lstrip("-").partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    if not digits:
        return sign + "0"
    # value = 0.DIGITS x 10^point
    point = len(whole) + int(exponent or 0) - (len(whole + fraction) - len(digits))
    digits = digits.rstrip("0")
    if -6 < point <= 10:
        if point <= 0:
            return f"{sign}0.{'0' * -point}{digits}"
        if point >= len(digits):
            return sign + digits + "0" * (point - len(digits))
        return f"{sign}{digits[:point]}.{digits[point:]}"
    power = point - 1
    head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{head}e{'+' if power >= 0 else '-'}{abs(power)}"


def format_floats(values: np.ndarray) -> list[str]:
    """`format_float` of each value; '' for a value that is not finite."""
    values = np.asarray(values, dtype=np.float64)
    return [format_float(v) if ok else "" for v, ok in
            zip(values.tolist(), np.isfinite(values).tolist(), strict=True)]


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[str], None],
    *,
    tmp_dir: str | os.PathLike | None = None,
    durable: bool = True,
) -> None:
    """Call `write(tmp_path)`, then rename onto `path`: a reader never sees a partial file
    (`atomic_file`)."""
    with atomic_file(path, tmp_dir=tmp_dir, durable=durable) as tmp:
        write(tmp)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, *, tmp_dir: str | os.PathLike | None = None,
                durable: bool = True) -> Iterator[str]:
    """A temporary file's path, renamed onto `path` when the block ends and removed if it
    raises: a reader never sees a partial file. The file gets the permissions a new file gets
    from `open` (0666 less the umask).

    With `durable`, the temporary file is flushed to disk before the rename, and the rename is
    flushed after it; without, a crash of the machine (not of the process) can leave `path`
    short or empty, which the caller must be able to tell. The temporary file lives in
    `tmp_dir` (default: beside `path`; it must be on the same file system), so that what a
    killed writer leaves behind can be swept with that folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                               dir=path.parent if tmp_dir is None else tmp_dir)
    os.close(fd)
    try:
        # mkstemp's file is private (0600); the result gets the mode `open` would give it
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        yield tmp
        if durable:
            replace_durably(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def replace_durably(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename the whole file `tmp` onto `path` (on the same file system), flushing it to disk
    before and the rename after: after a crash of the machine `path` is the old file or the
    new one, whole."""
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(Path(path).parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
