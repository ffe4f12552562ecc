"""Scale: the batch axis sharded over devices, the helpers of multi-process runs, float32.

The test process has already initialised JAX with one CPU device, so every test that needs
several devices runs in a subprocess with `--xla_force_host_platform_device_count=4` set in
`XLA_FLAGS` before JAX starts; it prints one JSON object that the test then checks. The two
subprocesses start together (one per core of a small runner) and are reused by the tests.

What "identical" means here, as measured:

- With fused multiply-adds disabled (`--xla_cpu_max_isa=SSE4_2`), a batch solved on 4 devices
  is bitwise identical to the same batch solved on one, for the plain and the composed model:
  sharding moves rows, never changes them.
- With the CPU's default instruction set, XLA compiles the per-device program of a `shard_map`
  through its SPMD pipeline, which fuses differently, so a multiply and an add are contracted
  into one fused multiply-add in different places: statuses stay identical and plan values
  agree to within the solver's tolerance (measured: a few 1e-10 relative in float64).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from planner._shard import (
    MESH_AXIS,
    barrier,
    cpu_devices,
    default_dtype,
    initialize,
    local_mesh,
    owns_chunk,
    shard_batch,
)

ROOT = Path(__file__).resolve().parents[1]
N_ROWS = 64  # a multiple of the 4 devices: the outputs stay sharded
N_UNEVEN = 62  # not a multiple: padded to 64, trimmed back
TIMEOUT = 180

# Shared by both subprocesses: the scenarios (the lifetime problem of Sardana et al. 2024, as
# in benchmarks/bench_solve.py: targets E + [0.05, 0.8], inference demand log-uniform in
# [1e9, 1e15] tokens) and the comparison of two batches of plans.
_COMMON = r"""
import json, os, sys
import jax
jax.config.update("jax_enable_x64", os.environ.get("PLANNER_TEST_X64", "1") == "1")
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
import equinox as eqx
import jax.numpy as jnp
import numpy as np
import planner
from planner._shard import MESH_AXIS, local_mesh, shard_batch
from planner._table import make_solver
from planner._techniques.pruning import Pruning

N_ROWS, N_UNEVEN = int(sys.argv[1]), int(sys.argv[2])
law = planner.Chinchilla.from_preset("sardana2024")
rng = np.random.default_rng(7)
target = float(law.E) + rng.uniform(0.05, 0.8, N_ROWS)
demand = 10.0 ** rng.uniform(9.0, 15.0, N_ROWS)
MODELS = {"plain": (), "composed": (Pruning(law),)}
report = {"devices": len(jax.local_devices())}

def host(tree):
    return {k: np.asarray(v) for k, v in tree.items()}

def compare(ref, out, n):
    same = all(np.array_equal(ref[k][:n], out[k][:n], equal_nan=True) for k in ref)
    rel = max(float(np.max(np.abs(out[k][:n] - ref[k][:n]) / np.abs(ref[k][:n])))
              for k in ref if k != "status")
    return {"bitwise": bool(same), "max_rel": rel,
            "status_equal": bool(np.array_equal(ref["status"][:n], out["status"][:n])),
            "optimal": int(np.sum(ref["status"][:n] == 0))}

def layout(tree):
    leaf = tree["n_params"]
    return {"spec": str(getattr(leaf.sharding, "spec", None)),
            "devices": len(leaf.sharding.device_set),
            "rows_per_shard": sorted({s.data.shape[0] for s in leaf.addressable_shards})}
"""

# Mode "exact": planner solve's table solver (make_solver), plain and composed, float64.
_EXACT = _COMMON + r"""
for name, stages in MODELS.items():
    fn = make_solver(law, stages, "compute")
    fields = {"target_loss": jnp.asarray(target), "inference_demand": jnp.asarray(demand)}
    ref = host(fn({}, fields))
    sharded = shard_batch(fn)
    full = sharded({}, fields)
    uneven = sharded({}, {k: v[:N_UNEVEN] for k, v in fields.items()})
    report[name] = {"full": compare(ref, host(full), N_ROWS), "layout": layout(full),
                    "uneven": compare(ref, host(uneven), N_UNEVEN),
                    "uneven_rows": int(uneven["n_params"].shape[0]),
                    "uneven_layout": layout(uneven),
                    "reference": {k: ref[k].tolist() for k in ref}}
print("@@" + json.dumps(report))
"""

_PLANS = r"""
def batch_of(model):
    return jax.jit(jax.vmap(lambda s: planner.solve(model, s, throw=False)))

def columns(model, plans):
    out = {"n_params": plans.allocation.n_params, "n_tokens": plans.allocation.n_tokens,
           "total_flops": plans.total_flops, "status": plans.status}
    if "density" in model.variables:
        out["density"] = plans.allocation.density
    return out
"""

# Mode "api": vmap(solve) on a Scenario pytree, composed, float64, sharded against one device;
# and the errors of shard_batch.
_API = _COMMON + _PLANS + r"""
model = planner.Pipeline(planner.Pretraining(law), Pruning(law))
scenarios = planner.Scenario(target_loss=jnp.asarray(target),
                             inference_demand=jnp.asarray(demand)).broadcast()
fn = batch_of(model)
ref = host(columns(model, fn(scenarios)))
out = host(columns(model, shard_batch(fn)(scenarios)))
report["composed"] = compare(ref, out, N_ROWS)

def error(thunk):
    try:
        thunk()
    except ValueError as e:
        return str(e)
    return None

ok = jnp.ones(4)
report["errors"] = {
    "lengths": error(lambda: shard_batch(lambda a, b: a + b)(ok, jnp.ones(5))),
    "scalar": error(lambda: shard_batch(lambda a, b: a * b)(ok, jnp.ones(()))),
    "no_batch_out": error(lambda: shard_batch(lambda a: jnp.sum(a))(ok)),
    "empty_mesh": error(lambda: local_mesh([])),
    "repeated": error(lambda: local_mesh([jax.local_devices()[0]] * 2)),
    "not_callable": error(lambda: shard_batch(3)),
}
report["empty_batch_rows"] = int(shard_batch(lambda a: 2.0 * a)(jnp.ones(0)).shape[0])
print("@@" + json.dumps(report))
"""

# Mode "float32": as `planner solve --float32` runs, with 64-bit types off, so every array is
# float32 from the start; one device, both models.
_FLOAT32 = _COMMON + _PLANS + r"""
scenarios = planner.Scenario(target_loss=jnp.asarray(target),
                             inference_demand=jnp.asarray(demand)).broadcast()
report["float32"] = {}
for name, stages in MODELS.items():
    model = planner.Pipeline(planner.Pretraining(law), *stages)
    cols = columns(model, batch_of(model)(scenarios))
    report["float32"][name] = {
        "dtypes": sorted({str(v.dtype) for k, v in cols.items() if k != "status"}),
        **{k: np.asarray(v).tolist() for k, v in cols.items()}}
print("@@" + json.dumps(report))
"""


def _start(code: str, isa: str | None = None, x64: bool = True) -> subprocess.Popen:
    flags = "--xla_force_host_platform_device_count=4"
    if isa:
        flags += f" --xla_cpu_max_isa={isa}"
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu",
               PLANNER_TEST_X64="1" if x64 else "0",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-c", code, str(N_ROWS), str(N_UNEVEN)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT)


def _result(proc: subprocess.Popen) -> dict:
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(f"the subprocess did not finish within {TIMEOUT} s:\n{stderr[-3000:]}")
    assert proc.returncode == 0, stderr[-3000:]
    marker = stdout.rfind("@@")
    assert marker >= 0, stdout + stderr[-3000:]
    return json.loads(stdout[marker + 2:])


@pytest.fixture(scope="module")
def runs():
    # the subprocesses run at once; "exact" turns fused multiply-adds off (x86-64 SSE4.2)
    procs = {"exact": _start(_EXACT, "SSE4_2"), "api": _start(_API),
             "float32": _start(_FLOAT32, x64=False)}
    yield procs
    for proc in procs.values():  # a test that failed early leaves nothing running
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.fixture(scope="module")
def exact(runs) -> dict:
    return _result(runs["exact"])


@pytest.fixture(scope="module")
def api(runs) -> dict:
    return _result(runs["api"])


@pytest.fixture(scope="module")
def float32(runs) -> dict:
    return _result(runs["float32"])


# ----------------------------------------------------------------------------------- devices
@pytest.mark.parametrize("model", ["plain", "composed"])
def test_four_devices_bitwise_identical_without_fma(exact, model):
    report = exact
    assert report["devices"] == 4
    full = report[model]["full"]
    assert full["bitwise"], full
    assert full["optimal"] >= N_ROWS - 2  # the comparison is about real plans
    # the batch really was split: 16 consecutive rows on each of the 4 devices
    assert report[model]["layout"] == {"spec": f"P('{MESH_AXIS}',)", "devices": 4,
                                       "rows_per_shard": [N_ROWS // 4]}


@pytest.mark.parametrize("model", ["plain", "composed"])
def test_uneven_batch_is_padded_then_trimmed(exact, model):
    report = exact[model]
    assert report["uneven_rows"] == N_UNEVEN
    assert report["uneven"]["bitwise"], report["uneven"]
    assert report["uneven_layout"]["devices"] == 1  # gathered on the first device


def test_four_devices_default_isa_same_status_values_within_tolerance(api):
    composed = api["composed"]
    assert composed["status_equal"]
    assert composed["optimal"] >= N_ROWS - 2
    # both solves are certified to KKT residuals <= 1e-10 (in log variables); they may stop
    # at different points within that tolerance, never further apart than this
    assert composed["max_rel"] <= 1e-7, composed


def test_shard_batch_rejects_bad_batches(api):
    errors = api["errors"]
    assert "same batch length" in errors["lengths"] and "[4, 5]" in errors["lengths"]
    assert "batch axis" in errors["scalar"]
    assert "leading axis is the batch axis" in errors["no_batch_out"]
    assert "at least one device" in errors["empty_mesh"]
    assert "repeat" in errors["repeated"]
    assert "callable" in errors["not_callable"]
    assert api["empty_batch_rows"] == 0


def test_one_device_is_a_no_op():
    def fn(x):
        return 2.0 * x

    assert shard_batch(fn, devices=jax.local_devices()[:1]) is fn
    mesh = local_mesh(jax.local_devices()[:1])
    assert mesh.axis_names == (MESH_AXIS,) and mesh.devices.size == 1


# --------------------------------------------------------------------------------- precision
def _float32_rows(exact, float32, model):
    f32 = float32["float32"][model]
    f64 = exact[model]["reference"]
    assert f32["dtypes"] == ["float32"]  # nothing was promoted to float64
    status32, status64 = np.array(f32["status"]), np.array(f64["status"])
    both = (status32 == 0) & (status64 == 0)
    return {k: np.array(f32[k])[both] for k in f32 if k != "dtypes"}, \
        {k: np.array(f64[k])[both] for k in f64}, np.mean(status32 == 0)


def _rel(a, b):
    return np.abs(b - a) / np.abs(a)


def test_float32_against_float64_plain(exact, float32):
    """float32 plans against float64 plans of the same lifetime scenarios (the float64 one-
    device solve of the table solver from the "exact" run; its values are those of the
    default instruction set to a few 1e-10, far below what is measured here).

    float32 rows are OPTIMAL at `Solver().tolerance(float32)` on the KKT residuals (in log
    variables). Measured on 4,096 scenarios (benchmarks/bench_scale.py): all optimal, max
    relative errors 2.5e-4 (N*), 1.9e-4 (D*), 6.9e-5 (FLOP), medians ~1e-5."""
    f32, f64, optimal = _float32_rows(exact, float32, "plain")
    assert optimal >= 0.95
    for column in ("n_params", "n_tokens", "total_flops"):
        rel = _rel(f64[column], f32[column])
        assert np.max(rel) < 1e-3, (column, float(np.max(rel)))
        assert np.median(rel) < 1e-4, (column, float(np.median(rel)))


def test_float32_against_float64_composed(exact, float32):
    """With pruning the problem is not convex: a dense plan (density 1) and a pruned one can
    both be KKT points. float32 and float64 then sometimes keep different ones (measured on
    4,096 scenarios, benchmarks/bench_scale.py: 2.7% of rows, float32's never the cheaper, up
    to 8.8% more FLOP). Where both pick the same kind of plan, lifetime FLOP
    agree as in the plain problem; N* and D* less tightly, since pruning and overtraining pull
    the same lever and the optimum lies in a flat valley."""
    f32, f64, optimal = _float32_rows(exact, float32, "composed")
    assert optimal >= 0.95
    same_kind = (f32["density"] >= 0.999) == (f64["density"] >= 0.999)
    assert np.mean(same_kind) >= 0.85
    rel = _rel(f64["total_flops"][same_kind], f32["total_flops"][same_kind])
    assert np.max(rel) < 1e-3, float(np.max(rel))
    for column in ("n_params", "n_tokens"):
        rel = _rel(f64[column][same_kind], f32[column][same_kind])
        assert np.median(rel) < 1e-3, (column, float(np.median(rel)))


# ---------------------------------------------------------------------------------- processes
def test_owns_chunk_deals_every_chunk_to_exactly_one_process():
    for count in range(1, 6):
        owners = [[p for p in range(count) if owns_chunk(i, process_index=p,
                                                         process_count=count)]
                  for i in range(50)]
        assert all(len(o) == 1 for o in owners)
        # round-robin: consecutive chunks go to different processes
        assert [o[0] for o in owners[:count]] == list(range(count))
    assert all(owns_chunk(i) for i in range(10))  # one process owns everything


@pytest.mark.parametrize("kwargs, message", [
    ({"index": -1}, "index must be an integer >= 0"),
    ({"index": 1.0}, "index must be an integer >= 0"),
    ({"index": 0, "process_count": 0}, "process_count must be an integer >= 1"),
    ({"index": 0, "process_index": 2, "process_count": 2}, r"process_index must be .* \[0, 2\)"),
])
def test_owns_chunk_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        owns_chunk(**kwargs)


def test_barrier_in_one_process_returns_and_checks_its_name():
    barrier("alone")
    with pytest.raises(ValueError, match="non-empty string"):
        barrier("")


@pytest.mark.parametrize("args, kwargs, message", [
    (("127.0.0.1:1234",), {}, "missing: num_processes, process_id"),
    ((None, 2, 0), {}, "missing: coordinator"),
    (("127.0.0.1", 2, 0), {}, "'host:port'"),
    ((":1234", 2, 0), {}, "'host:port'"),
    (("127.0.0.1:0", 2, 0), {}, r"port must be an integer in \[1, 65535\]"),
    (("127.0.0.1:http", 2, 0), {}, "port must be an integer"),
    ((1234, 2, 0), {}, "'host:port' string"),
    (("127.0.0.1:1234", 0, 0), {}, "num_processes must be an integer >= 1"),
    (("127.0.0.1:1234", 2, 2), {}, r"process_id must be an integer in \[0, 2\)"),
    (("127.0.0.1:1234", 2, True), {}, "process_id must be an integer"),
    (("127.0.0.1:1234", 2, 0), {"timeout": 0}, "timeout must be"),
])
def test_initialize_rejects_bad_arguments_before_starting(args, kwargs, message):
    # every check runs before jax.distributed is touched (this process has already computed,
    # so jax.distributed.initialize itself would raise RuntimeError)
    with pytest.raises(ValueError, match=message):
        initialize(*args, **kwargs)


@pytest.mark.parametrize("platform, expected", [
    ("cpu", np.float64), ("gpu", np.float64), ("cuda", np.float64), ("tpu", np.float32),
    ("TPU", np.float32),
])
def test_default_dtype_is_float32_on_tpus_only(platform, expected):
    assert default_dtype(platform) == np.dtype(expected)


def test_default_dtype_of_this_backend_and_bad_names():
    assert default_dtype() == np.dtype(np.float64)  # this process runs on CPU
    with pytest.raises(ValueError, match="platform name"):
        default_dtype("")


# ------------------------------------------------------------------------------- cpu_devices
_CPU_DEVICES = (
    "import json, sys; from planner._shard import cpu_devices; "
    "count = cpu_devices(int(sys.argv[1]) if len(sys.argv) > 1 else None); import jax; "
    "print(json.dumps([count, jax.local_device_count()]))"
)


def _cpu_devices_in_subprocess(*args: str, flags: str = "") -> list:
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", _CPU_DEVICES, *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cpu_devices_default_one_per_usable_core():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert _cpu_devices_in_subprocess() == [cores, cores]
    assert _cpu_devices_in_subprocess("3") == [3, 3]


def test_cpu_devices_leaves_the_users_xla_flags_alone():
    flags = "--xla_force_host_platform_device_count=5"
    assert _cpu_devices_in_subprocess(flags=flags) == [None, 5]


def test_cpu_devices_after_jax_started():
    jax.numpy.zeros(1).block_until_ready()  # the backends have started in this process
    assert cpu_devices() is None
    with pytest.raises(RuntimeError, match="before JAX starts"):
        cpu_devices(2)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="count must be an integer"):
            cpu_devices(bad)
