"""Durable sweeps: a `planner solve` killed at any moment resumes to the same bytes.

The kill test runs the command line in subprocesses and SIGKILLs them at random points (chosen
by a seeded generator, so a failure can be replayed); the others recreate, in the test process,
each state a killed run can leave behind.
"""

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import planner._sweep as sweep
import planner._table as table_module
from planner._cli import EXIT_OK, EXIT_USAGE, main

HEADER = ["target_loss", "inference_demand", "max_params"]


def make_table(path: Path, n: int, seed: int) -> Path:
    """`n` scenarios, some of them bad (text, negative, infeasible), deterministically."""
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        for i in range(n):
            loss = f"{rng.uniform(1.95, 3.0):.6f}"
            demand = f"{10 ** rng.uniform(6, 14):.6g}"
            cap = f"{10 ** rng.uniform(8, 12):.6g}" if rng.random() < 0.5 else ""
            kind = i % 97
            if kind == 13:
                loss = "n/a"
            elif kind == 41:
                demand = "-1"
            elif kind == 71:
                loss = "1.2"
            writer.writerow([loss, demand, cap])
    return path


def solve_args(src: Path, out: Path, chunk: int, *extra: str) -> list[str]:
    return ["solve", str(src), "-o", str(out), "--chunk-size", str(chunk), *extra]


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name not in keep)


def journal(parts: Path) -> dict[int, tuple[str, int, int]]:
    """The chunks the journals of a parts folder record, read line by line up to a line a kill
    left half written: index -> (stream file, start, stop)."""
    found = {}
    for path in sorted(parts.glob("stream-*.jsonl")) if parts.exists() else []:
        try:
            text = path.read_text()
        except FileNotFoundError:  # removed by the run being watched
            continue
        for line in text.splitlines(keepends=True):
            try:
                index, start, stop, _, _ = json.loads(line)
            except ValueError:
                break
            found[index] = (path.with_suffix(".csv").name, start, stop)
    return found


# --------------------------------------------------------------------------------- SIGKILL test
def test_sigkill_at_random_points_then_resume_gives_identical_bytes(tmp_path):
    rows, chunk = 3000, 256
    n_parts = -(-rows // chunk)
    src = make_table(tmp_path / "big.csv", rows, seed=1)
    env = dict(os.environ)
    # Every process loads the first one's compiled solver from a cache on disk, so a run costs
    # its start-up and its solving, not a compilation; the cache is keyed by the program, so
    # results are those of a fresh compilation.
    env.update(JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax-cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")

    def start(out: Path, *extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "planner._cli", *solve_args(src, out, chunk, *extra)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )

    reference = tmp_path / "reference.csv"
    began = time.monotonic()
    proc = start(reference)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    expected = reference.read_bytes()
    expected_lines = expected.decode().splitlines(keepends=True)
    assert len(expected_lines) == rows + 1
    duration = time.monotonic() - began

    out = tmp_path / "out.csv"
    parts = tmp_path / "out.csv.parts"
    rng = random.Random(20240611)
    kills, seen, events = 0, {}, []
    for attempt in range(10):
        if kills == 4:
            break
        proc = start(out, *(["--resume"] if attempt else []))
        if attempt % 3 == 0:
            # anywhere in the run, start-up and compilation included
            time.sleep(rng.uniform(0.0, 0.5 * duration))
        else:
            # once a random number of chunks is recorded (all of them: while the output is
            # renamed into place or the parts folder removed), plus a random fraction of a
            # chunk (a few milliseconds); after a kill that found every chunk recorded, waiting
            # for all of them again
            target = rng.randint(min(len(seen) + 1, n_parts), n_parts)
            deadline = time.monotonic() + 300
            while proc.poll() is None and time.monotonic() < deadline:
                if len(journal(parts)) >= target:
                    break
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.02))
        if proc.poll() is not None:  # it finished first: start again from nothing
            assert proc.returncode == 0, proc.stderr.read()
            proc.stderr.close()
            assert out.read_bytes() == expected and not parts.exists()
            out.unlink()
            seen = {}
            continue
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        kills += 1
        events.append((len(journal(parts)) if parts.exists() else None, out.exists()))
        # a killed run never leaves an output that looks complete but is not
        finished = out.exists()
        if finished:  # killed after the output was renamed into place: it is whole
            assert out.read_bytes() == expected
            out.unlink()  # so that the next kills test a run that has not finished
        if not parts.exists():
            seen = {}
            continue
        if finished:  # the stream is the output, renamed into place
            seen = {}
            continue
        # every chunk a journal records is whole in its stream: exactly its chunk of the
        # reference, the stream beginning with the header
        now = journal(parts)
        for index, (name, begin, end) in now.items():
            data = (parts / name).read_bytes()
            lines = expected_lines[1 + index * chunk: 1 + (index + 1) * chunk]
            assert data[begin:end].decode() == "".join(lines), index
            assert data.startswith(expected_lines[0].encode())
        # a resumed run keeps the chunks it found (where they were, not solved again)
        changed = [index for index, where in seen.items() if now.get(index) != where]
        assert not changed, (changed, sorted(now))
        seen = now
    assert kills >= 3, "the runs finished before they could be killed"
    print("SIGKILLs: (parts on disk, output written) after each:", events)

    proc = start(out, "--resume")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert out.read_bytes() == expected
    assert leftovers(tmp_path, {"big.csv", "reference.csv", "out.csv", "jax-cache"}) == []


# ------------------------------------------------------------------------ states a kill can leave
@pytest.fixture
def table(tmp_path):
    src = make_table(tmp_path / "in.csv", 40, seed=2)
    reference = tmp_path / "reference.csv"
    assert main(solve_args(src, reference, 8)) == EXIT_OK
    return src, reference.read_bytes()


class Interrupt(BaseException):
    """Stands for a kill: not an `Exception`, so no handler of the program catches it."""


def interrupt_after(monkeypatch, n_chunks: int) -> list[int]:
    """Make the sweep stop dead after solving `n_chunks` chunks; returns a call counter."""
    calls = []
    original = table_module.solve_chunk

    def solve_chunk(*args, **kwargs):
        if len(calls) == n_chunks:
            raise Interrupt
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(sweep, "solve_chunk", solve_chunk)
    return calls


def test_interrupted_run_resumes_without_solving_finished_chunks(tmp_path, table, monkeypatch):
    src, expected = table
    out = tmp_path / "out.csv"
    interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupt):
        main(solve_args(src, out, 8))
    assert not out.exists()
    parts = out.with_name("out.csv.parts")
    assert sorted(p.name for p in parts.iterdir()) == ["manifest.json", "stream-00000.csv",
                                                       "stream-00000.jsonl"]
    assert sorted(journal(parts)) == [0, 1]
    calls = interrupt_after(monkeypatch, 10)
    assert main(solve_args(src, out, 8, "--resume")) == EXIT_OK
    assert len(calls) == 3  # 5 chunks, 2 already done
    assert out.read_bytes() == expected
    assert not parts.exists()


@pytest.mark.parametrize("arrow", [True, False], ids=["pyarrow", "csv"])
@pytest.mark.parametrize("damage", ["short", "zeros", "empty", "journal"])
def test_chunks_a_machine_crash_lost_are_solved_again(tmp_path, table, monkeypatch, damage,
                                                      arrow):
    """Neither the stream nor its journal is flushed to disk chunk by chunk: after a crash of
    the machine a journal can name lines the stream lost (cut short, zero-filled, or an empty
    file), or end in a blank line. `--resume` checks each recorded chunk's rows and statuses
    (with pyarrow's reader or the csv module's) and solves again from the first that does
    not hold."""
    if arrow and not sweep._arrowio.AVAILABLE:
        pytest.skip("pyarrow is not installed")
    monkeypatch.setattr(sweep._arrowio, "AVAILABLE", arrow)
    src, expected = table
    out = tmp_path / "out.csv"
    interrupt_after(monkeypatch, 3)
    with pytest.raises(Interrupt):
        main(solve_args(src, out, 8))
    parts = out.with_name("out.csv.parts")
    stream, log = parts / "stream-00000.csv", parts / "stream-00000.jsonl"
    _, start, stop = journal(parts)[1]
    data = bytearray(stream.read_bytes())
    if damage == "short":  # chunk 1 cut after its first line
        stream.write_bytes(data[:data.index(b"\n", start) + 1])
    elif damage == "zeros":
        data[start:stop] = bytes(stop - start)
        stream.write_bytes(data)
    elif damage == "empty":
        stream.write_bytes(b"")
    else:  # the journal's last line (chunk 2) blank
        lines = log.read_bytes().splitlines(keepends=True)
        log.write_bytes(b"".join(lines[:2]) + bytes(len(lines[2])))
    calls = interrupt_after(monkeypatch, 10)
    assert main(solve_args(src, out, 8, "--resume")) == EXIT_OK
    # 5 chunks: those before the damage kept, the rest solved again
    assert len(calls) == {"short": 4, "zeros": 4, "empty": 5, "journal": 3}[damage]
    assert out.read_bytes() == expected


def test_leftover_temporary_files_are_swept(tmp_path, table, monkeypatch):
    src, expected = table
    out = tmp_path / "out.csv"
    interrupt_after(monkeypatch, 3)
    with pytest.raises(Interrupt):
        main(solve_args(src, out, 8))
    monkeypatch.undo()
    parts = out.with_name("out.csv.parts")
    # what SIGKILL leaves mid-write: half a journal rewritten by --resume and half a Parquet
    # output, under temporary names
    (parts / ".stream-00000.jsonl.x1y2.tmp").write_text("[0, 1")
    (parts / ".out.parquet.a7b8.tmp").write_text("PAR1")
    assert main(solve_args(src, out, 8, "--resume")) == EXIT_OK
    assert out.read_bytes() == expected
    assert leftovers(tmp_path, {"in.csv", "reference.csv", "out.csv"}) == []


def test_killed_while_cleaning_up(tmp_path, table, monkeypatch):
    """The stream is renamed into place as the output, then the parts folder is removed: a
    kill in between leaves a complete output beside the journal, with or without the
    manifest; `--resume` then solves the table again (the output on disk could be another
    run's)."""
    src, expected = table
    out = tmp_path / "out.csv"
    parts = out.with_name("out.csv.parts")
    for manifest in (True, False):
        interrupt_after(monkeypatch, 4)
        with pytest.raises(Interrupt):
            main(solve_args(src, out, 8))
        monkeypatch.undo()

        def killed(folder):
            raise Interrupt

        monkeypatch.setattr(sweep, "_remove_parts", killed)
        with pytest.raises(Interrupt):
            main(solve_args(src, out, 8, "--resume"))
        monkeypatch.undo()
        assert out.read_bytes() == expected
        assert sorted(p.name for p in parts.iterdir()) == ["manifest.json", "stream-00000.jsonl"]
        if not manifest:
            (parts / "manifest.json").unlink()  # a journal without a manifest is not trusted
        out.write_bytes(b"another run's output")
        calls = interrupt_after(monkeypatch, 10)
        assert main(solve_args(src, out, 8, "--resume")) == EXIT_OK
        monkeypatch.undo()
        assert len(calls) == 5
        assert out.read_bytes() == expected and not parts.exists()


def test_without_resume_old_parts_are_discarded(tmp_path, table, monkeypatch):
    src, expected = table
    out = tmp_path / "out.csv"
    interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupt):
        main(solve_args(src, out, 8))
    monkeypatch.undo()
    (out.with_name("out.csv.parts") / "stream-00000.csv").write_text("stale\n")
    assert main(solve_args(src, out, 8)) == EXIT_OK
    assert out.read_bytes() == expected


@pytest.mark.parametrize("change", ["input", "chunk", "pruning", "law", "devices"])
def test_resume_refuses_parts_of_another_run(tmp_path, table, monkeypatch, capsys, change):
    src, expected = table
    out = tmp_path / "out.csv"
    interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupt):
        main(solve_args(src, out, 8))
    monkeypatch.undo()
    parts = out.with_name("out.csv.parts")
    before = {p.name: p.read_bytes() for p in parts.iterdir()}
    args = solve_args(src, out, 8, "--resume")
    if change == "input":
        src.write_text(src.read_text() + "2.5,0,\n")
    elif change == "chunk":
        args = solve_args(src, out, 16, "--resume")
    elif change == "pruning":
        args += ["--pruning"]
    elif change == "law":
        args += ["--law", "hoffmann2022"]
    else:  # as if the first run had split its chunks over another number of devices
        manifest = json.loads((parts / "manifest.json").read_text())
        manifest["options"]["devices"] = "cpu:7"
        (parts / "manifest.json").write_text(json.dumps(manifest))
        before = {p.name: p.read_bytes() for p in parts.iterdir()}
    assert main(args) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "another input or other options" in err
    named = {"input": "input_sha256: was", "chunk": "chunk: was 8, now 16",
             "pruning": "option pruning: was false, now true",
             "law": 'option law: was "sardana2024", now "hoffmann2022"',
             "devices": 'option devices: was "cpu:7", now "cpu:'}[change]
    assert named in err
    assert {p.name: p.read_bytes() for p in parts.iterdir()} == before  # nothing touched
    assert not out.exists()


def test_a_failed_write_leaves_no_output(tmp_path, table, monkeypatch):
    """The disk fills while a chunk is written: no output and no temporary file; the chunk
    before is kept whole, and `--resume` finishes the run."""
    src, expected = table
    out = tmp_path / "out.csv"
    written = []

    def half(handle, text):
        if written:
            handle.write(bytes(text)[:10])
            raise OSError(28, "No space left on device")
        written.append(text)
        return original(handle, text)

    original = sweep._write
    monkeypatch.setattr(sweep, "_write", half)
    assert main(solve_args(src, out, 8)) == EXIT_USAGE
    assert not out.exists()
    parts = out.with_name("out.csv.parts")
    assert not [p.name for p in parts.iterdir() if p.name.endswith(".tmp")]
    assert sorted(journal(parts)) == [0]
    monkeypatch.undo()
    calls = interrupt_after(monkeypatch, 10)
    assert main(solve_args(src, out, 8, "--resume")) == EXIT_OK
    assert len(calls) == 4
    assert out.read_bytes() == expected


@pytest.mark.parametrize("kernel", [True, False], ids=["copy_file_range", "buffers"])
def test_streams_of_two_processes_are_copied_into_the_output_in_order(tmp_path, table,
                                                                      monkeypatch, kernel):
    """Two processes (run one after the other here) each write the chunks they own into a
    stream of their own: process 0 cannot finish before process 1 has written its chunks,
    and then copies both streams' chunks into the output in order, by `copy_file_range` or,
    where the file system refuses it, through Python's buffers."""
    import errno

    src, expected = table
    out = tmp_path / "out.csv"
    original = sweep.run_sweep

    def as_process(index):
        def run(*args, **kwargs):
            return original(*args, **{**kwargs, "process_index": index, "process_count": 2,
                                      "barrier": lambda name: None})
        return run

    if not kernel:
        def refused(*args, **kwargs):
            raise OSError(errno.EXDEV, "cross-device link")

        monkeypatch.setattr(os, "copy_file_range", refused, raising=False)
    monkeypatch.setattr(sweep, "run_sweep", as_process(0))
    assert main(solve_args(src, out, 8)) == EXIT_USAGE  # chunks 1 and 3 are process 1's
    assert not out.exists()
    monkeypatch.setattr(sweep, "run_sweep", as_process(1))
    assert main(solve_args(src, out, 8)) == EXIT_OK
    parts = out.with_name("out.csv.parts")
    assert {i: name for i, (name, _, _) in journal(parts).items()} == {
        0: "stream-00000.csv", 1: "stream-00001.csv", 2: "stream-00000.csv",
        3: "stream-00001.csv", 4: "stream-00000.csv"}
    monkeypatch.setattr(sweep, "run_sweep", as_process(0))
    calls = interrupt_after(monkeypatch, 10)
    assert main(solve_args(src, out, 8, "--resume")) == EXIT_OK
    assert len(calls) == 0
    assert out.read_bytes() == expected and not parts.exists()


def test_parquet_in_and_out(tmp_path, table):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    src, expected = table
    with open(src, newline="") as handle:
        rows = list(csv.DictReader(handle))
    inputs = pa.table({
        "target_loss": [float(r["target_loss"]) if r["target_loss"] != "n/a" else None
                        for r in rows],
        "inference_demand": [float(r["inference_demand"]) for r in rows],
        "max_params": [float(r["max_params"]) if r["max_params"] else None for r in rows],
    })
    pq.write_table(inputs, tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    assert main(solve_args(tmp_path / "in.parquet", out, 8)) == EXIT_OK
    got = pq.read_table(out).to_pylist()
    want = list(csv.DictReader(expected.decode().splitlines()))
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        if w["target_loss"] == "n/a":  # a null cell: the required target is missing
            assert g["status"] == "invalid_input" and "is empty" in g["message"]
            continue
        assert g["status"] == w["status"]
        for column in ("n_params", "n_tokens", "total_flops", "loss"):
            if w[column]:
                assert g[column] == float(w[column])
            else:
                assert g[column] is None


def test_parquet_output_holds_the_csv_output_cell_for_cell(tmp_path):
    """Text cells that need quoting (commas, quotes, line breaks, empty) and empty plan cells
    come through the Parquet assembly as the CSV output has them."""
    pq = pytest.importorskip("pyarrow.parquet")
    src = tmp_path / "in.csv"
    src.write_text('note,target_loss,inference_demand\n"a\nb",2.5,1e12\n"x, ""y""",abc,\n'
                   '"",2.2,\n', newline="")
    assert main(solve_args(src, tmp_path / "out.csv", 2)) == EXIT_OK
    assert main(solve_args(src, tmp_path / "out.parquet", 2)) == EXIT_OK
    with open(tmp_path / "out.csv", newline="") as handle:
        want = list(csv.DictReader(handle))
    got = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert [g["note"] for g in got] == ["a\nb", 'x, "y"', ""]
    assert len(got) == len(want) == 3
    for g, w in zip(got, want, strict=True):
        assert set(g) == set(w)
        for column, text in w.items():
            value = g[column]
            if isinstance(value, float):
                assert value == float(text)
            else:
                assert (value if value is not None else "") == text, column


def test_output_has_the_permissions_of_a_new_file(tmp_path, table):
    src, _ = table
    out = tmp_path / "out.csv"
    assert main(solve_args(src, out, 64)) == EXIT_OK
    plain = tmp_path / "plain.txt"
    plain.write_text("")
    assert (out.stat().st_mode & 0o777) == (plain.stat().st_mode & 0o777)
