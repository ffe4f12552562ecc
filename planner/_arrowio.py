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
- floats: pyarrow's cast writes the shortest digits that read back as the same double, in the
  layout that `planner._table.format_float` writes on the Python path;
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
    """The text `planner._table.format_float` gives each value, '' where it is not finite, as a
    string array: pyarrow's double-to-string cast, whose layout that function reproduces."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if finite.all():
        return pc.cast(pa.array(values), pa.string())
    return pc.cast(pa.array(values, mask=~finite), pa.string()).fill_null("")


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


def _rows_with(cells, chars: str) -> np.ndarray:
    """Per cell of a string array, whether it holds any of `chars` (single-byte characters):
    one pass over the UTF-8 bytes (a byte below 0x80 is never part of a longer character)."""
    offsets = np.frombuffer(cells.buffers()[1], dtype=np.int32)[cells.offset:
                                                                cells.offset + len(cells) + 1]
    data = cells.buffers()[2]
    if data is None or offsets[-1] == offsets[0]:
        return np.zeros(len(cells), dtype=bool)
    raw = np.frombuffer(data, dtype=np.uint8)[offsets[0]:offsets[-1]]
    lookup = np.zeros(256, dtype=bool)
    lookup[[ord(char) for char in chars]] = True
    at = np.flatnonzero(lookup[raw]) + offsets[0]
    rows = np.zeros(len(cells), dtype=bool)
    rows[np.searchsorted(offsets, at, side="right") - 1] = True
    return rows


def quote(cells):
    """Text cells quoted where `csv.writer` quotes them."""
    if not isinstance(cells, pa.Array):
        cells = pa.array(cells, pa.string())
    if isinstance(cells, pa.ChunkedArray):  # pragma: no cover - inputs are plain arrays
        cells = cells.combine_chunks()
    if not len(cells) or not QUOTE_CHARS:
        return cells
    needs = _rows_with(cells, QUOTE_CHARS)
    if not needs.any():
        return cells
    quoted = pc.binary_join_element_wise("", pc.replace_substring(cells, '"', '""'), "", '"')
    return pc.if_else(pa.array(needs), quoted, cells)


def csv_lines(columns: list) -> memoryview:
    """The rows of equal-length string arrays as CSV lines ending in '\\n' (cells already
    quoted where needed), a view of pyarrow's buffer (not copied)."""
    if not len(columns[0]):
        return memoryview(b"")
    last = pc.binary_join_element_wise(columns[-1], "", "\n")
    lines = pc.binary_join_element_wise(*columns[:-1], last, ",")
    if isinstance(lines, pa.ChunkedArray):  # pragma: no cover - inputs are plain arrays
        lines = lines.combine_chunks()
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
    start, stop = offsets[lines.offset], offsets[lines.offset + len(lines)]
    return memoryview(lines.buffers()[2])[start:stop]


def status_counts(text, n_columns: int, status_at: int,
                  prefix: str) -> tuple[dict[str, int], int]:
    """The count of each value of column `status_at` of headerless CSV lines (bytes, or a view
    of them), and the number of rows whose last column (the message) starts with `prefix`."""
    names = [f"c{i}" for i in range(n_columns)]
    read = pacsv.ReadOptions(column_names=names)
    parse = pacsv.ParseOptions(newlines_in_values=True)
    convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                   include_columns=[names[status_at], names[-1]],
                                   strings_can_be_null=False)
    table = pacsv.read_csv(pa.BufferReader(pa.py_buffer(text)), read_options=read,
                           parse_options=parse, convert_options=convert)
    counted = pc.value_counts(table.column(0).combine_chunks())
    flagged = pc.sum(pc.starts_with(table.column(1), prefix)).as_py() or 0
    return {row["values"]: row["counts"] for row in counted.to_pylist()}, flagged
