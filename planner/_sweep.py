"""Durable sweeps: a scenario table solved chunk by chunk, resumable after any interruption.

Each solved chunk is written atomically as its own part file in `OUTPUT.parts/`, beside a
manifest that fingerprints the input and the options. A run killed at any moment (SIGKILL
included) leaves only whole parts; `--resume` solves the missing ones and the assembled
output is byte for byte the one an uninterrupted run writes. The output itself appears only
once complete (temporary file, fsync, rename).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ._shard import owns_chunk
from ._solve import STATUS_MESSAGES, Status
from ._table import (
    STATUS_NAMES,
    TableError,
    TableReader,
    atomic_write,
    bucket,
    check_columns,
    format_floats,
    parse_columns,
    solve_chunk,
)

PLAN_COLUMNS = ("n_params", "n_tokens", "train_flops", "inference_flops", "total_flops", "loss",
                "score", "density", "n_samples")
MANIFEST_VERSION = 1


def _fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _format_chunk(columns: dict[str, list[str]], out: dict[str, np.ndarray],
                  plan_columns: list[str], messages: list[str]) -> str:
    buffer = io.StringIO()
    codes = np.asarray(out["status"]).astype(int).tolist()
    names = {int(s): STATUS_NAMES[s] for s in Status}
    notes = {int(s): "" if s == Status.OPTIMAL else STATUS_MESSAGES[s] for s in Status}
    csv.writer(buffer, lineterminator="\n").writerows(zip(
        *columns.values(), *(format_floats(out[c]) for c in plan_columns),
        [names[c] for c in codes], [m or notes[c] for m, c in zip(messages, codes, strict=True)],
        strict=True))
    return buffer.getvalue()


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
) -> dict[str, int]:
    """Solve `input_path` into `output_path`; returns the count of each status.

    Across `process_count` processes (each calling `run_sweep` with the same arguments and its
    own `process_index`, with `barrier` keeping them in step): process 0 prepares the parts
    folder, every process solves the chunks `owns_chunk` deals it and writes them as parts,
    and process 0 assembles the output once every process has passed the `"solved"` barrier.
    The parts folder must be on a file system every process sees. Process 0 returns the
    counts of the whole table, the others those of the chunks they solved.

    The whole input is checked (header, columns, the shape of every row) before anything is
    written: a malformed table raises `TableError` and leaves no output and no parts folder.
    `make_fn()` builds the jitted batch solver (called only if some chunk needs solving).
    `options` are recorded in the manifest: resuming with other options or another input is
    refused. `options["objective"]` ("compute" needs a target on every row) and
    `options["pruning"]` (inference may then fall below $2N$ FLOP per token) also tune the row
    checks of `parse_columns`.
    """
    input_path, output_path = Path(input_path), Path(output_path)
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
    lead = process_index == 0
    if not lead:
        # the folder is process 0's to prepare; the others start once it is ready
        barrier("sweep-prepared")
        if _read_manifest(manifest_path) != manifest:
            raise TableError(f"{parts}: process 0 prepared a run with another input or other "
                             "options: give every process the same arguments")
        return _solve_owned(reader, parts, law, make_fn, plan_columns, chunk, dtype,
                            _row_checks(required, options), process_index, process_count,
                            barrier, on_progress)
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
    created = not parts.exists()
    parts.mkdir(parents=True, exist_ok=True)
    if not manifest_path.exists():
        text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        atomic_write(manifest_path, lambda tmp: Path(tmp).write_text(text), tmp_dir=parts)

    if process_count > 1:
        barrier("sweep-prepared")
    try:
        _solve_owned(reader, parts, law, make_fn, plan_columns, chunk, dtype,
                            _row_checks(required, options), process_index, process_count,
                            barrier, on_progress)
    except Exception:
        # a failure before any chunk was solved (the model cannot be built, say) leaves nothing
        # behind; finished chunks are kept for --resume
        if created and process_count == 1 and not _part_files(parts):
            shutil.rmtree(parts, ignore_errors=True)
        raise
    if process_count > 1:
        missing = [i for i in range(_n_chunks(reader.n_rows, chunk))
                   if not (parts / _part_name(i)).exists()]
        if missing:
            raise TableError(f"{parts}: chunks {missing[:10]} were not written by the process "
                             "that owns them; rerun every process with --resume")
    counts = _assemble(parts, output_path, reader.columns + plan_columns + ["status", "message"])
    _remove_parts(parts)
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


def _part_name(index: int) -> str:
    return f"part-{index:06d}.csv"


def _n_chunks(n_rows: int, chunk: int) -> int:
    return max(1, -(-n_rows // chunk))


def _solve_owned(reader: TableReader, parts: Path, law, make_fn, plan_columns, chunk, dtype,
                 checks, process_index, process_count, barrier, on_progress) -> dict[str, int]:
    """Solve and write the missing parts this process owns; then wait at the `"solved"`
    barrier (with more than one process). Returns the counts of the chunks it solved."""
    fn = None
    done = 0
    counts: dict[str, int] = {}
    for index, columns in enumerate(reader.chunks(chunk)):
        part = parts / _part_name(index)
        rows = len(next(iter(columns.values()))) if columns else 0
        if owns_chunk(index, process_index=process_index, process_count=process_count) \
                and not part.exists():
            if fn is None:
                fn = make_fn()
            values, status, messages = parse_columns(columns, law, first_row=done + 1,
                                                     **checks)
            out = solve_chunk(values, status, fn, size=bucket(rows, chunk), dtype=dtype)
            for code, k in zip(*np.unique(out["status"], return_counts=True), strict=True):
                name = STATUS_NAMES[Status(int(code))]
                counts[name] = counts.get(name, 0) + int(k)
            text = _format_chunk(columns, out, plan_columns, messages)
            atomic_write(part, lambda tmp, text=text: Path(tmp).write_text(text),
                         tmp_dir=parts)
        done += rows
        on_progress(done, reader.n_rows)
    if process_count > 1:
        barrier("sweep-solved")
    return counts


def _remove_parts(parts: Path) -> None:
    """Remove the parts folder, the manifest last: a run killed half-way through this leaves a
    manifest with some parts, which `--resume` completes, rather than parts without a manifest,
    which it would have to solve again."""
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


def _part_files(parts: Path) -> list[Path]:
    return sorted(parts.glob("part-*.csv"))


def _assemble(parts: Path, output: Path, header: list[str]) -> dict[str, int]:
    """Concatenate the parts into `output` (CSV or Parquet), atomically; count statuses."""
    counts: dict[str, int] = {}
    status_at = header.index("status")

    def count(rows):
        for row in rows:
            counts[row[status_at]] = counts.get(row[status_at], 0) + 1

    if output.suffix.lower() in (".parquet", ".pq"):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:  # pragma: no cover - depends on the extra
            raise TableError("writing Parquet needs the 'parquet' extra (pyarrow)") from None
        import pyarrow.csv as pacsv

        numeric = set(PLAN_COLUMNS)
        schema = pa.schema([(h, pa.float64() if h in numeric else pa.string()) for h in header])
        # the parts as written: no header, empty plan cells are NaN (None), empty text stays ''
        read = pacsv.ReadOptions(column_names=header)
        parse = pacsv.ParseOptions(newlines_in_values=True)
        convert = pacsv.ConvertOptions(column_types=schema, null_values=[""],
                                       strings_can_be_null=False, quoted_strings_can_be_null=False)

        def write(tmp):
            with pq.ParquetWriter(tmp, schema) as writer:
                for part in _part_files(parts):
                    if part.stat().st_size == 0:  # a chunk of no rows
                        writer.write_table(schema.empty_table())
                        continue
                    table = pacsv.read_csv(part, read_options=read, parse_options=parse,
                                           convert_options=convert)
                    for status in table.column("status").to_pylist():
                        counts[status] = counts.get(status, 0) + 1
                    writer.write_table(table.combine_chunks())

        atomic_write(output, write, tmp_dir=parts)
        return counts

    def write(tmp):
        with open(tmp, "w", newline="") as out:
            csv.writer(out, lineterminator="\n").writerow(header)
            for part in _part_files(parts):
                with open(part, newline="") as handle:
                    text = handle.read()
                count(csv.reader(io.StringIO(text)))
                out.write(text)

    atomic_write(output, write, tmp_dir=parts)
    return counts
