"""Multi-process solving over loopback: two processes, each with two (virtual CPU) devices.

Each process joins the run with `planner._shard.initialize`, solves the chunks of a fixed
scenario table that `owns_chunk` deals it, on its own devices (`shard_batch`), and writes one
file per chunk, atomically. Process 1 is made slow to write; process 0 waits at a `barrier`
and then assembles the parts into one table, as `planner solve` does across processes. The
test checks the assembled table against a single-process solve of the same table in this
process: every row present once and in order, the same statuses, and the same plans within
the solver's tolerance (the processes' two-device `shard_map` programs fuse multiply-adds
differently from this process's one-device program; see `tests/test_shard.py`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import planner

ROOT = Path(__file__).resolve().parents[1]
N_PROCESSES = 2
CHUNK = 24
N_ROWS = 4 * CHUNK + 21  # five chunks: 0, 2, 4 for process 0, 1 and 3 for process 1; the
# last one is odd, so each process's two devices also see padding
TIMEOUT = 180

_WORKER = r"""
import json, os, sys, time
import jax
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
import numpy as np
import planner
from planner._shard import barrier, initialize, owns_chunk, shard_batch

port, me, out, n_rows, chunk = sys.argv[1], int(sys.argv[2]), sys.argv[3], *map(int, sys.argv[4:6])
initialize(f"127.0.0.1:{port}", 2, me, timeout=120)
assert jax.process_index() == me and jax.process_count() == 2
local = jax.local_devices()
assert len(local) == 2 and len(jax.devices()) == 4  # its own two, and the other's two

data = np.load(os.path.join(out, "scenarios.npz"))
law = planner.Chinchilla.from_preset("sardana2024")
model = planner.Pipeline(planner.Pretraining(law))
solve = shard_batch(jax.vmap(lambda s: planner.solve(model, s, throw=False)))
owned = []
for index, start in enumerate(range(0, n_rows, chunk)):
    if not owns_chunk(index):
        continue
    rows = np.arange(start, min(start + chunk, n_rows))
    plans = solve(planner.Scenario(target_loss=data["target"][rows],
                                   inference_demand=data["demand"][rows]))
    part = {"row": rows, "status": np.asarray(plans.status),
            "n_params": np.asarray(plans.allocation.n_params),
            "n_tokens": np.asarray(plans.allocation.n_tokens),
            "total_flops": np.asarray(plans.total_flops)}
    if me == 1:
        time.sleep(3.0)  # a slow writer: process 0 must wait for it at the barrier
    tmp = os.path.join(out, f".part-{index:03d}.npz")
    with open(tmp, "wb") as handle:
        np.savez(handle, **part)
    os.replace(tmp, os.path.join(out, f"part-{index:03d}.npz"))
    owned.append(index)
with open(os.path.join(out, f"owned-{me}.json"), "w") as handle:
    json.dump(owned, handle)
barrier("solved")
if me == 0:
    n_chunks = -(-n_rows // chunk)
    parts = [np.load(os.path.join(out, f"part-{i:03d}.npz")) for i in range(n_chunks)]
    union = {k: np.concatenate([p[k] for p in parts]) for k in parts[0].files}
    np.savez(os.path.join(out, "union.npz"), **union)
barrier("assembled")
print("process", me, "done", flush=True)
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker_env(xla_flags: str = "") -> dict[str, str]:
    """The environment of a worker process: JAX on two virtual CPU devices (and `xla_flags`),
    this checkout first on the path."""
    return dict(os.environ, JAX_PLATFORMS="cpu",
                XLA_FLAGS=f"--xla_force_host_platform_device_count=2 {xla_flags}".strip(),
                PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def finish(procs: list[subprocess.Popen], meanwhile=None):
    """Run `meanwhile()` in this process while `procs` work, then wait for each (killing any
    left when something fails) and check that each exited 0. Returns `meanwhile`'s value and
    each process's `(stdout, stderr)`."""
    try:
        value = None if meanwhile is None else meanwhile()
        logs = [proc.communicate(timeout=TIMEOUT) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for i, (proc, (_, stderr)) in enumerate(zip(procs, logs, strict=True)):
        assert proc.returncode == 0, f"process {i} failed:\n{stderr[-4000:]}"
    return value, logs


def test_two_processes_solve_their_chunks_and_lose_no_row(tmp_path):
    rng = np.random.default_rng(11)
    law = planner.Chinchilla.from_preset("sardana2024")
    # the lifetime problem of Sardana et al. 2024, as in benchmarks/bench_solve.py
    target = float(law.E) + rng.uniform(0.05, 0.8, N_ROWS)
    demand = 10.0 ** rng.uniform(9.0, 15.0, N_ROWS)
    np.savez(tmp_path / "scenarios.npz", target=target, demand=demand)

    port = free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(port), str(i), str(tmp_path), str(N_ROWS),
             str(CHUNK)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=worker_env(),
            cwd=ROOT)
        for i in range(N_PROCESSES)
    ]

    def single_process():
        """The single-process solve, in this process, while the others work."""
        model = planner.Pipeline(planner.Pretraining(law))
        plans = jax.jit(jax.vmap(lambda s: planner.solve(model, s, throw=False)))(
            planner.Scenario(target_loss=target, inference_demand=demand))
        return {"status": np.asarray(plans.status),
                "n_params": np.asarray(plans.allocation.n_params),
                "n_tokens": np.asarray(plans.allocation.n_tokens),
                "total_flops": np.asarray(plans.total_flops)}

    ref, logs = finish(procs, single_process)
    for i, (stdout, _) in enumerate(logs):
        assert f"process {i} done" in stdout

    # chunks dealt round-robin, each to exactly one process
    owned = [json.loads((tmp_path / f"owned-{i}.json").read_text()) for i in range(2)]
    assert owned == [[0, 2, 4], [1, 3]]
    union = dict(np.load(tmp_path / "union.npz"))
    # no row lost, none duplicated, in table order
    np.testing.assert_array_equal(union["row"], np.arange(N_ROWS))
    np.testing.assert_array_equal(union["status"], ref["status"])
    assert np.sum(ref["status"] == planner.Status.OPTIMAL) >= N_ROWS - 2
    for column in ("n_params", "n_tokens", "total_flops"):
        # both are certified to KKT residuals <= 1e-10 in log variables
        np.testing.assert_allclose(union[column], ref[column], rtol=1e-7, atol=0)


def _cli(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "planner._cli", "solve", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT)


def test_planner_solve_across_two_processes_writes_the_single_process_table(tmp_path):
    """`planner solve` run by two processes over loopback (two virtual devices each) against
    the same command in one process: the tables are byte for byte the same. Fused multiply-adds
    are off (`--xla_cpu_max_isa=SSE4_2`, x86-64) in both runs, so that splitting a chunk over
    devices moves rows without changing them (see tests/test_shard.py)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("the bitwise comparison needs XLA's x86-64 SSE4.2 code path")
    rng = np.random.default_rng(5)
    law = planner.Chinchilla.from_preset("sardana2024")
    table = tmp_path / "scenarios.csv"
    lines = ["target_loss,inference_demand,min_density"]
    for _ in range(N_ROWS):
        lines.append(f"{float(law.E) + rng.uniform(0.05, 0.8)!r},"
                     f"{10.0 ** rng.uniform(9.0, 15.0)!r},{rng.uniform(0.05, 1.0)!r}")
    lines[7] = "2.0,-1,0.5"  # a bad row among good ones keeps its own status in both runs
    table.write_text("\n".join(lines) + "\n")
    env = worker_env("--xla_cpu_max_isa=SSE4_2")
    common = [str(table), "--pruning", "--chunk-size", str(CHUNK)]
    port = free_port()
    procs = [_cli([*common, "-o", str(tmp_path / "multi.csv"), "--coordinator",
                   f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i),
                   "--join-timeout", "120"], env) for i in range(2)]
    single = _cli([*common, "-o", str(tmp_path / "single.csv")], env)
    _, logs = finish([*procs, single])
    assert f"{N_ROWS:,} scenarios -> " in logs[0][1]
    # process 1 solved chunks 1 and 3, 48 rows
    assert f"process 1 solved {2 * CHUNK:,} scenarios" in logs[1][1]
    multi = (tmp_path / "multi.csv").read_bytes()
    reference = (tmp_path / "single.csv").read_bytes()
    assert multi == reference
    assert not (tmp_path / "multi.csv.parts").exists()
    # read as CSV: a message may hold commas (an extrapolation note names its source), quoted
    rows = list(csv.DictReader(io.StringIO(reference.decode())))
    assert len(rows) == N_ROWS
    assert rows[6]["status"] == "invalid_input" and "inference_demand" in rows[6]["message"]
    assert sum(r["status"] == "optimal" for r in rows) >= N_ROWS - 3
