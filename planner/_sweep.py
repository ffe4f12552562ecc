"""Durable sweeps: a scenario table solved chunk by chunk, resumable after any interruption.

Each process appends the chunks it solves, in order, to its own stream file in `OUTPUT.parts/`
and, once a chunk's lines are written, a line to the stream's journal naming the chunk, its
byte range and the count of each status. The folder also holds a manifest that fingerprints
the input and the options. A run killed at any moment (SIGKILL included) leaves journals that
name only whole chunks; `--resume` keeps those, cuts each stream back to its last recorded
chunk and solves the rest, and the output is byte for byte the one an uninterrupted run
writes. In one process, the stream (which begins with the header) is the output: flushed to
disk chunk by chunk while the table is solved, and renamed into place once complete, with
nothing copied. Several processes' streams are copied into the output in chunk order. The
journals are not flushed to disk: after a crash of the machine (not of the process), a chunk
that a journal names may have lost its lines, and `--resume` checks every recorded chunk's
rows and statuses against its journal line before it keeps it.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import dataclasses
import errno
import functools
import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import _arrowio
from ._shard import owns_chunk
from ._solve import STATUS_MESSAGES, Status
from ._table import (
    LAW_COLUMNS,
    PARQUET_HINT,
    STATUS_NAMES,
    TableError,
    TableReader,
    as_list,
    atomic_file,
    atomic_write,
    batch_inputs,
    bucket,
    check_columns,
    format_floats,
    is_parquet,
    parse_columns,
    replace_durably,
    solve_chunk,
)

EXTRAPOLATED = "extrapolated"
EXTRAPOLATION_FACTOR = 100.0
"""A plan is flagged as an extrapolation when its `n_params` or `n_tokens` is more than this
many times the largest model or dataset the law was fitted on: two orders of magnitude, where
a power law's coefficients, fitted within a range, are no longer tested by any run."""


@dataclasses.dataclass(frozen=True)
class FittedRange:
    """The largest model and dataset a law was fitted on, and where that is stated."""

    n_params: float
    n_tokens: float
    source: str

    def notes(self, n_params: np.ndarray, n_tokens: np.ndarray) -> dict[int, str]:
        """Why each plan that extrapolates does (see `EXTRAPOLATION_FACTOR`), by row."""
        notes: dict[int, str] = {}
        for name, values, largest, what in (
                ("n_params", n_params, self.n_params, "model"),
                ("n_tokens", n_tokens, self.n_tokens, "dataset")):
            values = np.asarray(values, dtype=np.float64)
            with np.errstate(invalid="ignore"):
                far = np.flatnonzero(values > EXTRAPOLATION_FACTOR * largest)
            tail = f"x the largest {what} the law was fitted on ({largest:.3g}, {self.source})"
            for i, value in zip(far.tolist(), values[far].tolist(), strict=True):
                note = f"{name} {value:.3g} is {value / largest:.3g}{tail}"
                notes[i] = f"{notes[i]}; {note}" if i in notes else note
        return {i: f"{EXTRAPOLATED}: {note}" for i, note in sorted(notes.items())}


# Hoffmann et al. 2022 (abstract and section 3): "over 400 language models ranging from 70
# million to over 16 billion parameters on 5 to 500 billion tokens". Besiroglu et al. 2024 refit
# the same runs (Hoffmann et al.'s Figure 4), and Sardana et al. 2024 adopt Hoffmann et al.'s
# fit, so every preset law rests on this range.
_HOFFMANN_RANGE = FittedRange(16e9, 500e9, "Hoffmann et al. 2022")
PRESET_RANGES: dict[str, FittedRange] = {
    "hoffmann2022": _HOFFMANN_RANGE,
    "hoffmann2022-unrounded": _HOFFMANN_RANGE,
    "besiroglu2024": FittedRange(16e9, 500e9, "the Hoffmann et al. 2022 runs Besiroglu et al. "
                                 "2024 refit"),
    "sardana2024": FittedRange(16e9, 500e9, "the Hoffmann et al. 2022 fit Sardana et al. 2024 "
                               "adopt"),
}
"""The fitted range of each law preset."""


class SweepCounts(dict):
    """The count of each status, and `extrapolated`: optimal plans flagged by `FittedRange`."""

    extrapolated: int = 0

    def add(self, found: dict[str, int], flagged: int) -> None:
        for status, k in found.items():
            self[status] = self.get(status, 0) + k
        self.extrapolated += flagged


PLAN_COLUMNS = ("n_params", "n_tokens", "train_flops", "inference_flops", "total_flops",
                "inference_flops_per_unit", "loss", "score", "density", "n_samples", "dollars",
                "train_dollars", "inference_dollars", "serving_batch", "replicas", "latency")
SERVING_COLUMNS = ("dollars", "train_dollars", "inference_dollars", "serving_batch", "replicas",
                   "latency")
MANIFEST_VERSION = 1


def _fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _format_chunk(columns: dict, out: dict[str, np.ndarray], plan_columns: list[str],
                  messages: list[str], *, fast: bool | None = None) -> bytes | memoryview:
    """The CSV lines (UTF-8) of one solved chunk: its input cells as read, then the plan.

    With pyarrow (`fast`, the default when it is installed) the lines are built by
    `_arrowio`, byte for byte as the `csv` module writes them here otherwise."""
    codes = np.asarray(out["status"]).astype(int)
    names = [STATUS_NAMES[Status(c)] for c in range(len(Status))]
    notes = ["" if s == Status.OPTIMAL else STATUS_MESSAGES[s] for s in Status]
    if _arrowio.AVAILABLE if fast is None else fast:
        pa, pc = _arrowio.pa, _arrowio.pc
        taken = pa.array(codes)
        message = pa.array(messages, pa.string())
        message = pc.if_else(pc.equal(message, ""), pa.array(notes).take(taken), message)
        given = list(columns.values()) if isinstance(columns, _arrowio.Unquoted) else \
            [_arrowio.quote(c) for c in columns.values()]
        # status names never need quoting
        return _arrowio.csv_lines(
            given + _arrowio.format_columns([out[c] for c in plan_columns])
            + [pa.array(names).take(taken), _arrowio.quote(message)])
    names, notes = np.array(names, dtype=object), np.array(notes, dtype=object)
    message = np.array(messages, dtype=object).reshape(len(codes))
    message = np.where(message == "", notes[codes], message)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(zip(
        *(as_list(c) for c in columns.values()), *(format_floats(out[c]) for c in plan_columns),
        names[codes].tolist(), message.tolist(), strict=True))
    return buffer.getvalue().encode()


def run_sweep(
    input_path: str | Path,
    output_path: str | Path,
    *,
    law,
    make_fn: Callable[[], Callable],
    plan_columns: list[str],
    required: tuple[str, ...],
    chunk: int,
    dtype,
    resume: bool,
    options: dict,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
    process_index: int = 0,
    process_count: int = 1,
    barrier: Callable[[str], None] = lambda name: None,
    fitted_range: FittedRange | None = None,
) -> SweepCounts:
    """Solve `input_path` into `output_path`; returns the count of each status.

    With `fitted_range`, the message of an optimal plan of the table's law (not of a row that
    gives its own coefficients) says when the plan extrapolates (`FittedRange.notes`), and the
    counts say how many do.

    Across `process_count` processes (each calling `run_sweep` with the same arguments and its
    own `process_index`, with `barrier` keeping them in step): process 0 prepares the parts
    folder, every process solves the chunks `owns_chunk` deals it (less those a journal
    already records) into its own stream, and process 0 assembles the output once every
    process has passed the `"solved"` barrier. The parts folder must be on a file system every
    process sees. Process 0 returns the counts of the whole table, the others those of the
    chunks they solved.

    The whole input is checked (header, columns, the shape of every row) before anything is
    written: a malformed table raises `TableError` and leaves no output and no parts folder.
    `make_fn()` builds the jitted batch solver (called only if some chunk needs solving).
    `options` are recorded in the manifest: resuming with other options or another input is
    refused. `options["objective"]` ("compute" needs a target on every row) and
    `options["pruning"]` (inference may then fall below $2N$ FLOP per token) also tune the row
    checks of `parse_columns`.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    checks = _row_checks(required, options)
    warm = _warm_up(input_path, law, make_fn, chunk, dtype, checks)
    reader = TableReader(input_path)
    check_columns(reader.columns, required)
    if output_path.exists() and output_path.resolve() == input_path.resolve():
        raise TableError(f"{output_path}: the output would overwrite the input")
    parts = output_path.with_name(output_path.name + ".parts")
    manifest = {
        "version": MANIFEST_VERSION,
        "input_sha256": _fingerprint(input_path),
        "columns": reader.columns,
        "rows": reader.n_rows,
        "chunk": chunk,
        "plan_columns": plan_columns,
        "options": options,
    }
    manifest_path = parts / "manifest.json"
    header = reader.columns + plan_columns + ["status", "message"]
    solve = functools.partial(_solve_owned, reader, parts, law, warm, plan_columns, chunk, dtype,
                              checks, process_index, process_count, on_progress, fitted_range)
    if process_index != 0:
        # the folder is process 0's to prepare; the others start once it is ready
        barrier("sweep-prepared")
        if _read_manifest(manifest_path) != manifest:
            raise TableError(f"{parts}: process 0 prepared a run with another input or other "
                             "options: give every process the same arguments")
        counts = solve()
        barrier("sweep-solved")
        return counts
    if parts.exists():
        previous = _read_manifest(manifest_path)
        if resume and previous is not None and previous != manifest:
            raise TableError(
                f"{parts} belongs to a run with another input or other options"
                f"{_differences(previous, manifest)}; remove it or rerun with the same input "
                "and options"
            )
        if not resume or previous is None:
            shutil.rmtree(parts)
        else:
            _check_streams(parts, reader.n_rows, chunk, header)
    created = not parts.exists()
    parts.mkdir(parents=True, exist_ok=True)
    if not manifest_path.exists():
        text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        atomic_write(manifest_path, lambda tmp: Path(tmp).write_text(text), tmp_dir=parts)
    if not _stream(parts, 0).exists():
        _stream(parts, 0).write_bytes(_header_line(header))

    try:
        if process_count > 1:
            barrier("sweep-prepared")
        solve()
        if process_count > 1:
            barrier("sweep-solved")
        counts = _assemble(parts, output_path, header, _n_chunks(reader.n_rows, chunk))
    except Exception:
        # a failure before any chunk was solved (the model cannot be built, say) leaves nothing
        # behind; finished chunks are kept for --resume
        if created and process_count == 1 and not _recorded(parts):
            shutil.rmtree(parts, ignore_errors=True)
        raise
    _remove_parts(parts)
    return counts


def write_plans(output: str | Path, columns: dict, out: dict[str, np.ndarray],
                plan_columns: list[str], messages: list[str]) -> SweepCounts:
    """Write one table of plans held in memory (`planner frontier`, `planner allocate`) as
    `run_sweep` writes a sweep: `columns` (the input cells as read), then `plan_columns` of
    `out`, its `status` and `messages`, CSV or Parquet by the suffix, atomically. Returns the
    count of each status."""
    return write_lines(output, [*columns, *plan_columns, "status", "message"],
                       [_format_chunk(columns, out, plan_columns, messages)])


def write_lines(output: str | Path, header: list[str], texts) -> SweepCounts:
    """Write `header` and the CSV lines of each of `texts` (as `_format_chunk` gives them) to
    `output`, CSV or Parquet by its suffix, atomically (a temporary file beside it, renamed
    once whole). Returns the count of each status."""
    output = Path(output)
    counts = SweepCounts()
    if is_parquet(output):
        with _parquet_writer(output, header) as write:
            for text in texts:
                counts.add(*_text_counts(text, header))
                write(text)
        return counts
    with atomic_file(output) as tmp, open(tmp, "wb") as handle:
        _write(handle, _header_line(header))
        for text in texts:
            counts.add(*_text_counts(text, header))
            _write(handle, text)
    return counts


def _differences(previous: dict, manifest: dict) -> str:
    """' (was ..., now ...)' for the manifest entries and options that changed."""
    def flat(m):
        return {**{k: v for k, v in m.items() if k != "options"},
                **{f"option {k}": v for k, v in (m.get("options") or {}).items()}}

    old, new = flat(previous), flat(manifest)
    changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if not changed:
        return ""
    return " (" + "; ".join(f"{k}: was {_short(old.get(k))}, now {_short(new.get(k))}"
                            for k in changed) + ")"


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _row_checks(required: tuple[str, ...], options: dict) -> dict:
    return {
        "required": required,
        "needs_target": options.get("objective", "compute") != "loss",
        "dense_inference": not options.get("pruning", False),
    }


def _warm_up(path: Path, law, make_fn, chunk: int, dtype, checks) -> Callable[[], Callable]:
    """A function that returns `make_fn()`'s solver; for a CSV table clearly longer than four
    chunks, that solver is built and compiled for whole chunks on a thread started now, from
    the rows of the file's first 64 KiB, while the caller checks the whole table, hashes it and
    reads its first chunk (pyarrow and hashlib release the GIL): a fifth of a second of loading
    a stored solver (`shard_batch`'s `store`), or seconds of tracing and compiling one, that
    would otherwise come after them. The guess only decides whether that thread
    runs: a table whose chunks turn out otherwise (or rows the warm-up cannot parse) compiles
    what it needs when it is solved, as it does without the warm-up."""
    try:
        size = path.stat().st_size
        with open(path, newline="", encoding="utf-8-sig") as handle:
            head = handle.read(1 << 16)
    except (OSError, UnicodeDecodeError):
        return make_fn
    lines = head.count("\n")
    if is_parquet(path) or lines < 2 or \
            size < 4 * chunk * len(head.encode()) / lines:
        return make_fn

    def work():
        rows = list(csv.reader(io.StringIO(head[:head.rindex("\n") + 1])))
        header, body = [h.strip() for h in rows[0]], [r for r in rows[1:] if r]
        if not body or any(len(r) != len(header) for r in body):
            return None
        values, status, _ = parse_columns({h: [r[i] for r in body] for i, h in
                                           enumerate(header)}, law, **checks)
        fn = make_fn()
        for column in fn(*batch_inputs(values, status >= 0, size=chunk, dtype=dtype,
                                       law=law)).values():
            np.asarray(column)  # waits for the result
        return fn

    pool = ThreadPoolExecutor(1, thread_name_prefix="planner-compile")
    future = pool.submit(work)
    pool.shutdown(wait=False)

    def solver():
        try:
            fn = future.result()
        except Exception:  # the table's own checks report what is wrong with it
            fn = None
        return make_fn() if fn is None else fn

    return solver


def _solve_owned(reader: TableReader, parts: Path, law, make_fn, plan_columns, chunk, dtype,
                 checks, process_index, process_count, on_progress,
                 fitted_range=None) -> SweepCounts:
    """Solve the chunks this process owns that no journal records, appending each to this
    process's stream (`_Stream`). Returns the counts of the chunks it solved.

    A solved chunk is formatted and written on a second thread while the next one is read and
    solved (pyarrow and XLA release the GIL), at most two chunks behind, and flushed to disk
    from the main thread once written; a failure waits for the chunks already handed over,
    which are whole and recorded, before it propagates."""
    recorded = _recorded(parts)
    fn = None
    done = 0
    counts = SweepCounts()

    def write(index, columns, out, messages, flagged):
        found = {STATUS_NAMES[Status(int(code))]: int(k) for code, k in
                 zip(*np.unique(out["status"], return_counts=True), strict=True)}
        stream.append(index, _format_chunk(columns, out, plan_columns, messages), found,
                      flagged)
        return found, flagged

    def finish(future):
        counts.add(*future.result())
        stream.sync()

    pending: collections.deque = collections.deque()
    with _Stream(parts, process_index) as stream, \
            ThreadPoolExecutor(1, thread_name_prefix="planner-write") as writer:
        for index, columns in enumerate(reader.chunks(chunk)):
            rows = len(next(iter(columns.values()))) if columns else 0
            if owns_chunk(index, process_index=process_index, process_count=process_count) \
                    and index not in recorded:
                values, status, messages = parse_columns(columns, law, first_row=done + 1,
                                                         **checks)
                if fn is None:  # after the first parse, which a solver compiling aside overlaps
                    fn = make_fn()
                # a table of several chunks pads its last one to a whole chunk: one batch
                # size, one compilation
                size = chunk if reader.n_rows > chunk else bucket(rows, chunk)
                out = solve_chunk(values, status, fn, size=size, dtype=dtype, law=law)
                flagged = 0
                if fitted_range is not None:  # here: the writing thread is the busier one
                    messages, flagged = _flag_extrapolation(values, out, messages, law,
                                                            fitted_range)
                pending.append(writer.submit(write, index, columns, out, messages, flagged))
                while len(pending) > 1:
                    finish(pending.popleft())
            done += rows
            on_progress(done, reader.n_rows)
        while pending:
            finish(pending.popleft())
    return counts


def _flag_extrapolation(values, out, messages, law,
                        fitted_range: FittedRange) -> tuple[list[str], int]:
    """`messages` with a note on every optimal plan of the table's law that extrapolates, and
    how many messages now begin with one (those that were empty)."""
    own = np.zeros(len(messages), dtype=bool)
    for name in LAW_COLUMNS:
        if name in values:
            own |= values[name] != float(getattr(law, name))
    notes = fitted_range.notes(np.where(own, np.nan, out["n_params"]),
                               np.where(own, np.nan, out["n_tokens"]))
    messages = list(messages)
    alone = 0
    for i, note in notes.items():
        alone += not messages[i]
        messages[i] = f"{messages[i]}; {note}" if messages[i] else note
    return messages, alone


def _stream(parts: Path, process_index: int) -> Path:
    return parts / f"stream-{process_index:05d}.csv"


def _journal(parts: Path, process_index: int) -> Path:
    return parts / f"stream-{process_index:05d}.jsonl"


def _n_chunks(n_rows: int, chunk: int) -> int:
    return -(-n_rows // chunk)


def _header_line(header: list[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(header)
    return buffer.getvalue().encode()


def _write(handle, text) -> int:
    """Write `text` (bytes, or a view of them) at the end of the open file `handle`; returns
    the offset where it ends."""
    handle.write(text)
    return handle.tell()


@dataclasses.dataclass(frozen=True)
class _Chunk:
    """A journal's line: chunk `index` is bytes `start` to `stop` of `stream`, with `found`
    plans of each status, `flagged` of them extrapolations."""

    index: int
    stream: Path
    start: int
    stop: int
    found: dict[str, int]
    flagged: int

    def line(self) -> str:
        return json.dumps([self.index, self.start, self.stop, self.found, self.flagged]) + "\n"


class _Stream:
    """This process's stream in a parts folder, opened to append chunks: their CSV lines to
    the stream file, then a line (`_Chunk`) to its journal."""

    def __init__(self, parts: Path, process_index: int):
        self.path = _stream(parts, process_index)
        self.data = open(self.path, "ab")
        self.journal = open(_journal(parts, process_index), "a", encoding="utf-8")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.data.close()
        self.journal.close()

    def append(self, index: int, text, found: dict[str, int], flagged: int) -> None:
        start = self.data.tell()
        stop = _write(self.data, text)
        self.data.flush()  # the lines are in the file before the journal names them
        self.journal.write(_Chunk(index, self.path, start, stop, found, flagged).line())
        self.journal.flush()

    def sync(self) -> None:
        """Flush the lines written so far to disk (not the journal: see the module's
        docstring), so that little is left to flush when the output is renamed into place."""
        getattr(os, "fdatasync", os.fsync)(self.data.fileno())


def _read_journal(path: Path) -> list[_Chunk]:
    """A journal's chunks, up to the first line that cannot be read (one a killed run left
    half written, or a crash of the machine left blank)."""
    chunks = []
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                index, start, stop, found, flagged = json.loads(line)
                if not line.endswith("\n") or not all(
                        type(v) is int for v in (index, start, stop, flagged, *found.values())):
                    break
                chunks.append(_Chunk(index, path.with_suffix(".csv"), start, stop, found,
                                     flagged))
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    return chunks


def _recorded(parts: Path) -> dict[int, _Chunk]:
    """Every chunk the journals of a parts folder record, by index."""
    recorded: dict[int, _Chunk] = {}
    for journal in sorted(parts.glob("stream-*.jsonl")):
        for entry in _read_journal(journal):
            recorded.setdefault(entry.index, entry)
    return recorded


def _text_counts(text, header: list[str]) -> tuple[dict[str, int], int]:
    """The count of each status in CSV lines (without a header), and of the messages that
    begin with an extrapolation note; `ValueError` (pyarrow's `ArrowInvalid` is one) if a row
    has another number of cells than `header`."""
    if not len(text):
        return {}, 0
    status_at = header.index("status")
    if _arrowio.AVAILABLE:
        return _arrowio.status_counts(text, len(header), status_at, EXTRAPOLATED)
    found: dict[str, int] = {}
    flagged = 0
    for row in csv.reader(io.StringIO(bytes(text).decode("utf-8"), newline="")):
        if len(row) != len(header):
            raise ValueError(f"a row of {len(row)} cells, not {len(header)}")
        found[row[status_at]] = found.get(row[status_at], 0) + 1
        flagged += row[-1].startswith(EXTRAPOLATED)
    return found, flagged


def _check_streams(parts: Path, n_rows: int, chunk: int, header: list[str]) -> None:
    """Before a resumed run: keep, of each journal, the chunks that hold exactly the rows and
    statuses their line records, each where the one before it ends (up to the first that does
    not: what a crash of the machine can leave), and cut each stream back to its last kept
    chunk (what follows it, a killed run's unrecorded lines, is solved again)."""
    first = _header_line(header)
    for journal in sorted(parts.glob("stream-*.jsonl")):
        path = journal.with_suffix(".csv")
        body = len(first) if path == _stream(parts, 0) else 0
        kept, seen = [], set()
        try:
            with open(path, "rb") as handle:
                if handle.read(body) == first[:body]:
                    end = body
                    for entry in _read_journal(journal):
                        expected = min(chunk, n_rows - entry.index * chunk)
                        if entry.start != end or entry.index in seen or expected <= 0:
                            break
                        handle.seek(entry.start)
                        text = handle.read(entry.stop - entry.start)
                        try:
                            counts = _text_counts(text, header)
                        except Exception:  # noqa: BLE001 - lines that cannot be read
                            break
                        if len(text) != entry.stop - entry.start or \
                                counts != (entry.found, entry.flagged) or \
                                sum(entry.found.values()) != expected:
                            break
                        kept.append(entry)
                        seen.add(entry.index)
                        end = entry.stop
        except FileNotFoundError:
            pass
        if not kept:  # started again (process 0's stream with its header, when prepared)
            path.unlink(missing_ok=True)
            journal.unlink()
            continue
        with open(path, "rb+") as handle:
            handle.truncate(kept[-1].stop)
        text = "".join(entry.line() for entry in kept)
        atomic_write(journal, lambda tmp, text=text: Path(tmp).write_text(text), tmp_dir=parts,
                     durable=False)
    for path in parts.glob("stream-*.csv"):  # a stream without a journal records nothing
        if not path.with_suffix(".jsonl").exists():
            path.unlink()


def _remove_parts(parts: Path) -> None:
    """Remove the parts folder, the manifest last: a run killed half-way through this leaves a
    manifest with some streams, which `--resume` completes, rather than streams without a
    manifest, which it would have to solve again."""
    manifest = parts / "manifest.json"
    for path in parts.iterdir():
        if path != manifest:
            path.unlink()
    manifest.unlink(missing_ok=True)
    parts.rmdir()


def _read_manifest(path: Path) -> dict | None:
    """The manifest of an earlier run, or None if there is none (or it cannot be read)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF,
                   errno.EPERM, errno.ENOTSUP}


def _append(entry: _Chunk, out) -> None:
    """Copy a chunk's lines from its stream to the end of the open file `out`: in the kernel
    (`os.copy_file_range`, five times faster than through Python's buffers on a large chunk)
    where the system allows it, else through Python's buffers."""
    out.flush()
    offset = entry.start
    with open(entry.stream, "rb") as source:
        copy = getattr(os, "copy_file_range", None)
        if copy is not None:
            try:
                while offset < entry.stop:
                    copied = copy(source.fileno(), out.fileno(), entry.stop - offset, offset)
                    if not copied:
                        break
                    offset += copied
            except OSError as error:  # no support (another file system): copied below from
                if error.errno not in _NO_KERNEL_COPY:  # where it got; a full disk is not
                    raise  # retried
            out.seek(0, os.SEEK_END)
        source.seek(offset)
        while offset < entry.stop:
            block = source.read(min(1 << 22, entry.stop - offset))
            if not block:
                raise OSError(f"{entry.stream}: shorter than its journal records")
            offset += len(block)
            _write(out, block)


def _read_chunk(entry: _Chunk) -> bytes:
    with open(entry.stream, "rb") as source:
        source.seek(entry.start)
        return source.read(entry.stop - entry.start)


def _assemble(parts: Path, output: Path, header: list[str], n_chunks: int) -> SweepCounts:
    """Write the output (CSV or Parquet) of a sweep whose `n_chunks` chunks the journals of
    `parts` record, atomically; returns the counts the journals record. Where process 0's
    stream holds every chunk in order (a run in one process), it is the CSV output: flushed to
    disk and renamed into place."""
    recorded = _recorded(parts)
    missing = [i for i in range(n_chunks) if i not in recorded]
    if missing:
        raise TableError(f"{parts}: chunks {missing[:10]} were not written by the process that "
                         "owns them; rerun every process with --resume")
    order = [recorded[i] for i in range(n_chunks)]
    counts = SweepCounts()
    for entry in order:
        counts.add(entry.found, entry.flagged)
    if is_parquet(output):
        with _parquet_writer(output, header, tmp_dir=parts) as write:
            for entry in order:
                write(_read_chunk(entry))
        return counts
    first = _stream(parts, 0)
    ends = [len(_header_line(header))] + [entry.stop for entry in order]
    if all(entry.stream == first and entry.start == end
           for entry, end in zip(order, ends, strict=False)) and \
            first.stat().st_size == ends[-1]:
        replace_durably(first, output)
        return counts
    with atomic_file(output, tmp_dir=parts) as tmp, open(tmp, "wb") as out:
        _write(out, _header_line(header))
        for entry in order:
            _append(entry, out)
    return counts


@contextlib.contextmanager
def _parquet_writer(output: Path, header: list[str], tmp_dir: Path | None = None):
    """A function that appends CSV lines (as `_format_chunk` writes them) to a Parquet file
    written atomically: plan columns as float64 (an empty cell is null), the others as
    text."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - depends on the extra
        raise TableError(f"writing Parquet needs pyarrow: {PARQUET_HINT}") from None
    import pyarrow.csv as pacsv

    numeric = set(PLAN_COLUMNS)
    schema = pa.schema([(h, pa.float64() if h in numeric else pa.string()) for h in header])
    # the lines as written: no header, empty plan cells are NaN (None), empty text stays ''
    read = pacsv.ReadOptions(column_names=header)
    parse = pacsv.ParseOptions(newlines_in_values=True)
    convert = pacsv.ConvertOptions(column_types=schema, null_values=[""],
                                   strings_can_be_null=False, quoted_strings_can_be_null=False)
    with atomic_file(output, tmp_dir=tmp_dir) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        def write(text) -> None:
            if not len(text):  # a chunk of no rows
                writer.write_table(schema.empty_table())
                return
            table = pacsv.read_csv(pa.BufferReader(pa.py_buffer(text)), read_options=read,
                                   parse_options=parse, convert_options=convert)
            writer.write_table(table.combine_chunks())

        yield write
