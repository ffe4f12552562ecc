"""Vectorised CSV reading and writing through pyarrow, byte for byte as the Python path.

`planner solve` spends most of a large run reading and writing text, not solving. With pyarrow
installed (the `parquet` extra), the scenario table is parsed by pyarrow's multi-threaded CSV
reader, numbers are converted by its string-to-double cast, and plans are formatted by its
double-to-string cast and joined into lines without a Python object per cell. Every function
here returns what the plain-Python path returns for the same input (tests compare both), and
any input this path does not handle identically falls back to it:

- reading: a table with quoted cells, or one that pyarrow refuses (a row with the wrong
  number of fields, text that is not UTF-8), is read by the `csv` module, which names the line
  at fault;
- numbers: a column whose cells pyarrow's cast refuses (empty cells, surrounding spaces, text)
  is parsed cell by cell by `float`, which says which cell is wrong and why;
- floats: pyarrow writes the shortest digits that read back as the same double, as `repr` does,
  but switches to exponent notation at other magnitudes, leaves out the '.0' of whole numbers
  and writes one-digit exponents; the values where its text could differ from `repr` (whole
  numbers, magnitudes below 1e-4, and wherever the two notations disagree) are formatted by
  `repr` itself, the rest are used as they are;
- quoting: a text cell is quoted (and its quotes doubled) exactly where `csv.writer` with
  `QUOTE_MINIMAL` quotes it, which is probed from the running `csv` module.
"""

from __future__ import annotations

import csv
import io
import mmap
import os

import numpy as np

try:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
except ImportError:  # pragma: no cover - depends on the extra
    pa = pc = pacsv = None

AVAILABLE = pa is not None


def _quote_chars() -> str:
    """The characters that make `csv.writer(lineterminator="\\n")` quote a cell."""
    found = []
    for char in ',"\n\r':
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([f"a{char}b", "c"])
        if buffer.getvalue().startswith('"'):
            found.append(char)
    return "".join(found)


QUOTE_CHARS = _quote_chars()


class ArrowUnsupported(Exception):
    """pyarrow could not read the table: the caller reads it with the `csv` module instead."""


def _read_options(n_columns: int, block_size: int = 1 << 22):
    names = [f"c{i}" for i in range(n_columns)]
    read = pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=block_size,
                             encoding="utf8")
    # tables with quotes are read by the csv module (`count_rows`)
    parse = pacsv.ParseOptions(quote_char=False, ignore_empty_lines=True)
    convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                   strings_can_be_null=False, quoted_strings_can_be_null=False,
                                   check_utf8=True)
    return read, parse, convert


def count_rows(path, n_columns: int) -> int:
    """The number of data rows of a CSV file; `ArrowUnsupported` if pyarrow refuses any row,
    or if the file has a quote character anywhere (the csv module's strict quoting rules, which
    refuse text after a closing quote, are not pyarrow's: a quoted table is left to it)."""
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size:
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                if data.find(b'"') >= 0:
                    raise ArrowUnsupported("quoted cells")
    total = 0
    try:
        for batch in _open(path, n_columns):
            total += batch.num_rows
    except (pa.ArrowException, ValueError, OSError) as error:
        raise ArrowUnsupported(str(error)) from None
    return total


def _open(path, n_columns: int):
    read, parse, convert = _read_options(n_columns)
    # a byte-order mark is skipped with the header row it precedes
    return pacsv.open_csv(path, read_options=read, parse_options=parse,
                          convert_options=convert)


def chunks(path, names: list[str], size: int):
    """Consecutive chunks of exactly `size` rows (the last may be shorter) as string arrays.

    The file has no quote character (`count_rows`), so no cell holds a comma, a quote or a line
    break: the cells need no quoting when written back (`Unquoted`)."""
    pending: list = []
    held = 0
    try:
        for batch in _open(path, len(names)):
            while batch.num_rows:
                take = min(size - held, batch.num_rows)
                pending.append(batch.slice(0, take))
                batch = batch.slice(take)
                held += take
                if held == size:
                    yield _columns(pending, names)
                    pending, held = [], 0
    except (pa.ArrowException, ValueError) as error:  # pragma: no cover - checked by count_rows
        raise ArrowUnsupported(str(error)) from None
    if held:
        yield _columns(pending, names)


class Unquoted(dict):
    """Text columns read from a file without quotes: written back as they are."""


def _columns(batches: list, names: list[str]) -> dict:
    table = pa.Table.from_batches(batches).combine_chunks()
    return Unquoted({name: table.column(i).chunk(0) if table.column(i).num_chunks else
                     pa.array([], pa.string()) for i, name in enumerate(names)})


def to_floats(cells) -> np.ndarray | None:
    """A string array as float64, or None if any cell is not a plain number pyarrow reads."""
    if cells.null_count:
        return None
    try:
        return np.array(pc.cast(cells, pa.float64()).to_numpy(zero_copy_only=False))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def format_floats(values: np.ndarray):
    """The text `repr` gives each value, '' where it is not finite, as a string array."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    magnitude = np.abs(values)
    if finite.all():
        text = pc.cast(pa.array(magnitude), pa.string())
    else:
        text = pc.cast(pa.array(magnitude, mask=~finite), pa.string()).fill_null("")
    with np.errstate(invalid="ignore"):
        python_exponent = ((magnitude < 1e-4) & (magnitude != 0)) | (magnitude >= 1e16)
        whole = values == np.floor(values)
    arrow_exponent = pc.match_substring(text, "e").to_numpy(zero_copy_only=False)
    # pyarrow writes [1e10, 1e16) in exponent notation, repr in positional: rewritten here
    spread = finite & ~python_exponent & arrow_exponent & ~whole & (magnitude >= 1e10)
    if spread.any():
        where = np.flatnonzero(spread)
        exponent = 10 + sum((magnitude[where] >= 10.0 ** k).astype(np.int64)
                            for k in range(11, 16))
        order = np.argsort(exponent, kind="stable")
        picked = text.take(pa.array(where[order]))
        # one slice per exponent (10 to 15) of the texts sorted by exponent
        bounds = np.searchsorted(exponent[order], np.arange(10, 17))
        pieces = [_positional(picked.slice(a, b - a), power)
                  for power, a, b in zip(range(10, 16), bounds[:-1], bounds[1:], strict=True)
                  if b > a]
        rewritten = pa.concat_arrays(pieces).take(pa.array(np.argsort(order, kind="stable")))
        text = pc.replace_with_mask(text, pa.array(spread), rewritten)
    redo = finite & ~spread & ((python_exponent != arrow_exponent) | (whole & ~python_exponent)
                               | ((magnitude < 1e-4) & (magnitude != 0)))
    if redo.any():
        text = pc.replace_with_mask(text, pa.array(redo),
                                    pa.array([repr(v) for v in magnitude[redo].tolist()],
                                             pa.string()))
    negative = np.signbit(values) & finite
    if negative.any():
        text = pc.if_else(pa.array(negative), pc.binary_join_element_wise("-", text, ""), text)
    return text


def _positional(text, power: int):
    """'d.fffe+PP' texts (all of two-digit exponent `power`, none a whole number, so with more
    than `power` digits after the point) written positionally: 'dfff.ff'."""
    head = pc.utf8_slice_codeunits(pc.replace_substring(text, ".", "", max_replacements=1),
                                   0, power + 1)
    tail = pc.utf8_slice_codeunits(text, power + 2, -4)
    return pc.binary_join_element_wise(head, tail, ".")


_POOL: list = []


def format_columns(columns: list[np.ndarray]) -> list:
    """`format_floats` of each column, on a few threads (pyarrow's kernels release the GIL)."""
    if len(columns) < 2:
        return [format_floats(c) for c in columns]
    if not _POOL:
        from concurrent.futures import ThreadPoolExecutor

        _POOL.append(ThreadPoolExecutor(min(4, os.cpu_count() or 1),
                                        thread_name_prefix="planner-format"))
    return list(_POOL[0].map(format_floats, columns))


def quote(cells):
    """Text cells quoted where `csv.writer` quotes them."""
    if not isinstance(cells, pa.Array):
        cells = pa.array(cells, pa.string())
    if not len(cells) or not QUOTE_CHARS:
        return cells
    needs = None
    for char in QUOTE_CHARS:  # plain substring searches: far faster than one regex
        found = pc.match_substring(cells, char)
        needs = found if needs is None else pc.or_(needs, found)
    if not pc.any(needs).as_py():
        return cells
    quoted = pc.binary_join_element_wise("", pc.replace_substring(cells, '"', '""'), "", '"')
    return pc.if_else(needs, quoted, cells)


def csv_lines(columns: list) -> bytes:
    """The rows of equal-length string arrays as CSV lines ending in '\\n' (cells already
    quoted where needed)."""
    if not len(columns[0]):
        return b""
    joined = pc.binary_join_element_wise(*columns, ",")
    lines = pc.binary_join_element_wise(joined, "", "\n")
    if isinstance(lines, pa.ChunkedArray):  # pragma: no cover - inputs are plain arrays
        lines = lines.combine_chunks()
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
    start, stop = offsets[lines.offset], offsets[lines.offset + len(lines)]
    return memoryview(lines.buffers()[2])[start:stop].tobytes()


def status_counts(part, n_columns: int, status_at: int,
                  prefix: str) -> tuple[dict[str, int], int]:
    """The count of each value of column `status_at` of a headerless CSV part file, and the
    number of rows whose last column (the message) starts with `prefix`."""
    names = [f"c{i}" for i in range(n_columns)]
    read = pacsv.ReadOptions(column_names=names)
    parse = pacsv.ParseOptions(newlines_in_values=True)
    convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                   include_columns=[names[status_at], names[-1]],
                                   strings_can_be_null=False)
    table = pacsv.read_csv(part, read_options=read, parse_options=parse,
                           convert_options=convert)
    counted = pc.value_counts(table.column(0).combine_chunks())
    flagged = pc.sum(pc.starts_with(table.column(1), prefix)).as_py() or 0
    return {row["values"]: row["counts"] for row in counted.to_pylist()}, flagged
