r"""Scale: a batch of scenarios split over the devices of a process, and over processes.

Two levels, which compose:

- **Devices.** `shard_batch` wraps a batched function (a `vmap` of `solve`, or the table
  solver of `planner solve`) so that its batch axis is split over this process's local devices
  with `jax.sharding`: the inputs are padded to a multiple of the device count, placed with a
  `NamedSharding` over a one-axis `Mesh` named `"scenario"`, and solved by `jax.shard_map`, one
  block of rows per device; the outputs are trimmed back. On one device it returns the function
  unchanged.
- **Processes (hosts).** `initialize` starts `jax.distributed` (explicitly, or from the
  cluster's environment on SLURM, Open MPI and Cloud TPU); each process then solves the chunks
  of rows it owns (`owns_chunk`) on its own devices, and `barrier` keeps the processes in step
  around the work that only one of them does (preparing an output folder, assembling it).
  Processes never exchange scenarios or plans through JAX: the sharded computation spans only
  local devices, and results meet in files (a shared file system) or in the caller's hands.
  (`planner.allocate(..., devices=jax.devices())` is the exception: a coupled portfolio's
  batched solves span the devices of every process, whose budget sums are reduced across the
  processes in the compiled program; see its docstring.)

Rows are independent problems, so a row's plan depends on nothing but the row: splitting the
batch moves rows between devices and processes and changes no status. Plan values can differ
in their last bits from a one-device solve, because XLA compiles the per-device program of a
`shard_map` through its SPMD pipeline, which fuses operations differently, and where the CPU
(or GPU) contracts a multiply and an add into a fused multiply-add depends on the fusion. The
Newton iterations then take slightly different paths to the same optimum, so the difference
is bounded by the solver's tolerance, not by rounding: `tests/test_shard.py` measures it, and
shows that with fused multiply-adds disabled (`--xla_cpu_max_isa=SSE4_2`) the sharded solve is
bitwise identical to the one-device solve.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, jaxpr_as_fun
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from . import _stored

MESH_AXIS = "scenario"
"""The name of the batch axis of the device mesh."""


# ------------------------------------------------------------------------------------ devices
def local_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis `Mesh` named `"scenario"` over `devices` (default: `jax.local_devices()`).

    **Arguments:**

    - `devices`: devices of this process, each at most once.

    **Returns:** a `jax.sharding.Mesh` with the single axis `MESH_AXIS`.
    """
    devices = list(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices must name at least one device")
    if len(set(devices)) != len(devices):
        raise ValueError("devices must not repeat a device")
    here = jax.process_index()
    foreign = [d for d in devices if d.process_index != here]
    if foreign:
        raise ValueError(
            f"devices must belong to this process (process {here}); {foreign[0]} belongs to "
            f"process {foreign[0].process_index}: give each process its local devices"
        )
    return Mesh(np.array(devices), (MESH_AXIS,))


def shard_batch(fn: Callable, *, devices: Sequence[jax.Device] | None = None,
                store: tuple[str, Path] | None = None) -> Callable:
    r"""`fn` with its batch axis split over this process's devices.

    `fn` takes positional arguments that are pytrees of arrays, all with the same leading
    (batch) length $n$, and returns a pytree of arrays with that leading length, each output
    row depending only on the same input row: a `jax.vmap` of `solve`, say, or
    `planner._table.make_solver`'s function of (law columns, scenario columns). The wrapped
    function

    1. pads every input to $\lceil n/k \rceil k$ rows for $k$ devices, repeating the last row
       (a real row, so padding is never harder to solve than the batch itself);
    2. places the inputs with `NamedSharding(local_mesh(devices), PartitionSpec("scenario"))`,
       so each device holds $\lceil n/k \rceil$ consecutive rows;
    3. runs `fn` on each device's rows with `jax.shard_map`, so each device runs its own
       solver loop and stops when its own rows are solved (no device waits for another's
       rows, and no collective runs between devices);
    4. returns the outputs, trimmed to $n$ rows: sharded the same way when $k$ divides $n$
       (as it does for `planner solve`, whose batches are powers of two from 256), else
       gathered on the first device.

    Arrays that `fn` closes over (the law, the stages of a model) are passed to every device as
    replicated inputs rather than compiled in as constants, so the per-device program computes
    exactly what `fn` computes when called directly (XLA would otherwise fold them into the
    arithmetic and round differently). Each new input structure, shape or dtype is traced
    and compiled once, then reused; as with `jax.jit`, what `fn` closes over is read when it
    is traced, so build a new wrapper for a new model.

    On one device `fn` itself is returned: sharding costs nothing there (unless `store` is
    given).

    With `store = (key, folder)` each compiled program is also kept in `folder`
    (`planner._stored`), with the arrays `fn` closes over, and a later process whose `fn` has
    the same `key` loads it instead of tracing and compiling `fn`: `key` must name every value
    `fn` closes over (`planner._stored.fingerprint` of them). On one device the program is
    then `fn`'s own, its closed-over arrays passed as arguments as above. A program that JAX's
    persistent compilation cache served is not kept (XLA cannot serialise it whole): a
    process that keeps programs should leave that cache off.

    **Arguments:**

    - `fn`: the batched function.
    - `devices`: devices of this process to use (default: `jax.local_devices()`, all of them).
    - `store`: `(key, folder)` to keep compiled programs in, or None.

    **Returns:** a function with the signature of `fn`.

    **Example:**

    ```python
    solve_batch = jax.vmap(lambda s: planner.solve(model, s, throw=False))
    plans = shard_batch(solve_batch)(scenarios.broadcast())
    ```
    """
    if not callable(fn):
        raise ValueError(f"fn must be callable, got {type(fn).__name__}")
    mesh = local_mesh(devices)
    k = mesh.devices.size
    if k == 1 and store is None:
        return fn
    rows = NamedSharding(mesh, P(MESH_AXIS))
    first = mesh.devices.flat[0]
    replicated = NamedSharding(mesh, P())
    compiled: dict[Any, tuple] = {}

    def build(treedef, local_shapes, load=True):
        """`(run, consts, out_tree, file)`: the program of these shapes, and the file of
        `store` it was loaded from (None if it was compiled here)."""
        if store is not None:
            key, folder = store
            signature = f"{treedef} {[(s.shape, s.dtype.str) for s in local_shapes]}"
            file = _stored.path(folder, key, signature, mesh.devices.flat)
            loaded = _stored.load(file) if load else None
            if loaded is not None:
                run, consts, out_tree = loaded
                return run, jax.device_put(consts, replicated), out_tree, file

        def flat_fn(*flat):
            return fn(*jax.tree.unflatten(treedef, flat))

        closed, out_shapes = jax.make_jaxpr(flat_fn, return_shape=True)(*local_shapes)
        out_leaves, out_tree = jax.tree.flatten(out_shapes)
        size = local_shapes[0].shape[0]
        for leaf in out_leaves:
            if leaf.ndim == 0 or leaf.shape[0] != size:
                raise ValueError(
                    "fn must return arrays whose leading axis is the batch axis; got an output "
                    f"of shape {leaf.shape} for a batch of {size} rows"
                )
        jaxpr = closed.jaxpr

        def per_device(consts, flat):
            # the closed-over constants arrive as arguments, so XLA cannot fold them
            return jaxpr_as_fun(ClosedJaxpr(jaxpr, consts))(*flat)

        run = jax.jit(per_device if k == 1 else
                      jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(MESH_AXIS)),
                                    out_specs=P(MESH_AXIS), check_vma=False))
        consts = jax.device_put(list(closed.consts), replicated)
        if store is not None:
            run, keep = _stored.compile_to_keep(run.lower(consts, [
                jax.ShapeDtypeStruct((s.shape[0] * k, *s.shape[1:]), s.dtype, sharding=rows)
                for s in local_shapes]))
            if keep:
                _stored.save(file, run, closed.consts, out_tree)
        return run, consts, out_tree, None

    @functools.wraps(fn)
    def sharded(*args):
        leaves, treedef = jax.tree.flatten(args)
        n = _batch_length(leaves)
        if n == 0:
            return fn(*args)
        padded = math.ceil(n / k) * k
        leaves = [_pad(x, padded) for x in leaves]
        local = tuple(jax.ShapeDtypeStruct((padded // k, *x.shape[1:]), x.dtype)
                      for x in leaves)
        key = (treedef, tuple((s.shape, str(s.dtype)) for s in local))
        if key not in compiled:
            compiled[key] = build(treedef, local)
        run, consts, out_tree, file = compiled[key]
        placed = jax.device_put(leaves, rows)
        try:
            out = run(consts, placed)
            if file is not None:  # a stored program's first run: it must run here
                jax.block_until_ready(out)
        except jax.errors.JaxRuntimeError:
            if file is None:
                raise
            # a program XLA could not run from its file (one it had itself loaded from a
            # cache, say): removed, compiled afresh and kept again
            file.unlink(missing_ok=True)
            compiled[key] = build(treedef, local, load=False)
            run, consts, out_tree, file = compiled[key]
            out = run(consts, placed)
        if file is not None:
            compiled[key] = (run, consts, out_tree, None)
        if padded != n:
            # an uneven split cannot stay sharded: the trimmed rows are gathered on the first
            # device, where `fn` itself would have put them
            out = [jax.device_put(v, first)[:n] for v in out]
        return jax.tree.unflatten(out_tree, out)

    return sharded


def _batch_length(leaves: list) -> int:
    """The common leading length of `leaves`; `ValueError` if they have none."""
    if not leaves:
        raise ValueError("the batched function needs at least one array argument")
    lengths = set()
    for x in leaves:
        shape = np.shape(x)
        if len(shape) == 0:
            raise ValueError("every input must have a batch axis; got a scalar (shape ())")
        lengths.add(shape[0])
    if len(lengths) != 1:
        raise ValueError(f"every input must have the same batch length; got {sorted(lengths)}")
    return lengths.pop()


def _pad(x, size: int):
    """`x` with its last row repeated up to `size` rows (numpy stays numpy, on the host)."""
    n = np.shape(x)[0]
    if n == size:
        return x
    xp = np if isinstance(x, np.ndarray) else jnp
    return xp.concatenate([x, xp.repeat(x[-1:], size - n, axis=0)])


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_devices(count: int | None = None) -> int | None:
    """Give JAX `count` CPU devices (default: one per core this process may run on), so that
    `shard_batch` runs one block of rows per core.

    On a CPU, XLA runs one device's program with a pool of threads, splitting each large
    enough elementwise loop between them. The pooled solver's loops are small (a few thousand
    lanes) and many, and gain little from the split; one device per core instead runs a whole
    program per core (measured on 2 cores, `benchmarks/RESULTS.md`, section "Devices": 65,536
    four-variable scenarios 1.3x faster, the lifetime problem 2x). Plans can then differ from
    a one-device solve in their last bits (see the module docstring).

    It must run before JAX starts its backends (before the first array is made). It does
    nothing, and returns `None`, when asked for no particular count and either the backends
    have started or `XLA_FLAGS` sets `--xla_force_host_platform_device_count` (the user's own
    choice); asked for a `count` too late, it raises. Other platforms (GPU, TPU) are not
    affected.

    **Arguments:**

    - `count`: CPU devices, >= 1; default one per usable core.

    **Returns:** the count set, or `None`.
    """
    if count is not None and (isinstance(count, bool) or not isinstance(count, int)
                              or count < 1):
        raise ValueError(f"count must be an integer >= 1, got {count!r}")
    chosen = count
    if chosen is None:
        if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
            return None
        chosen = usable_cores()
    try:
        jax.config.update("jax_num_cpu_devices", chosen)
    except RuntimeError:  # JAX refuses the setting once its backends have started
        if count is None:
            return None
        raise RuntimeError("cpu_devices must run before JAX starts its backends (before the "
                           "first array is made)") from None
    return chosen


# ---------------------------------------------------------------------------------- precision
def default_dtype(platform: str | None = None) -> np.dtype:
    """The float type to solve in on `platform`: float64, except float32 on TPUs.

    float64 wherever the hardware has it (CPUs; GPUs, at a lower rate than float32 on most
    models): plans are then certified to KKT residuals of 1e-10. TPUs have no float64
    arithmetic (JAX emulates some 64-bit operations there and rejects others; its maintainers
    advise 32-bit types on TPU: jax-ml/jax issues 10158 and 19769), so there float32, at
    `Solver().tolerance(float32)`. Measured on the lifetime problem (`tests/test_shard.py`,
    `benchmarks/bench_scale.py`): float32 plans are all OPTIMAL and within about 3e-4 of the
    float64 plans in $N^*$ and $D^*$ (4e-3 in $D^*$ next to $N_{\\min}$) and 1e-4 in lifetime
    FLOP, far inside the uncertainty of any fitted scaling law.

    **Arguments:**

    - `platform`: a JAX platform name (`"cpu"`, `"gpu"`, `"cuda"`, `"rocm"`, `"tpu"`);
      default `jax.default_backend()`.

    **Returns:** `numpy.dtype("float32")` or `numpy.dtype("float64")`.
    """
    if platform is None:
        platform = jax.default_backend()
    if not isinstance(platform, str) or not platform:
        raise ValueError(f"platform must be a JAX platform name, got {platform!r}")
    return np.dtype(np.float32 if platform.lower() == "tpu" else np.float64)


# ---------------------------------------------------------------------------------- processes
def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: Sequence[int] | None = None,
    timeout: int = 300,
) -> None:
    """Join this process to a multi-process run (`jax.distributed.initialize`).

    Call it first, before anything computes with JAX, in every process of the run. Either give
    all three of `coordinator`, `num_processes` and `process_id`, or none: then JAX reads them
    from the environment of the cluster it finds (SLURM, Open MPI, Cloud TPU pods; see
    `jax.distributed.initialize`).

    **Arguments:**

    - `coordinator`: `"host:port"` of process 0, where it serves the coordination service;
      every process gives the same one.
    - `num_processes`: the number of processes, at least 1.
    - `process_id`: this process's index, in `[0, num_processes)`.
    - `local_device_ids`: restrict this process to these local devices (default: all).
    - `timeout`: seconds to wait for every process to join.

    **Raises:** `ValueError` for arguments out of their domain, or when none is given and no
    cluster is found in the environment; `RuntimeError` (from JAX) when called twice or after
    JAX has started computing.
    """
    given = [coordinator is not None, num_processes is not None, process_id is not None]
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 1:
        raise ValueError(f"timeout must be a whole number of seconds >= 1, got {timeout!r}")
    if not any(given):
        try:
            jax.distributed.initialize(local_device_ids=local_device_ids,
                                       initialization_timeout=timeout)
        except ValueError as error:
            raise ValueError(
                "no cluster found in the environment (SLURM, Open MPI, Cloud TPU): give "
                f"coordinator, num_processes and process_id ({error})"
            ) from None
        return
    if not all(given):
        missing = [name for name, g in zip(("coordinator", "num_processes", "process_id"),
                                           given, strict=True) if not g]
        raise ValueError(
            "give coordinator, num_processes and process_id together (or none of them, to "
            f"read them from the cluster's environment); missing: {', '.join(missing)}"
        )
    _check_address(coordinator)
    if not _is_int(num_processes) or num_processes < 1:
        raise ValueError(f"num_processes must be an integer >= 1, got {num_processes!r}")
    if not _is_int(process_id) or not 0 <= process_id < num_processes:
        raise ValueError(
            f"process_id must be an integer in [0, {num_processes}), got {process_id!r}"
        )
    jax.distributed.initialize(
        coordinator_address=coordinator, num_processes=num_processes, process_id=process_id,
        local_device_ids=local_device_ids, initialization_timeout=timeout,
    )


def _is_int(x) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def _check_address(address) -> None:
    if not isinstance(address, str):
        raise ValueError(f"coordinator must be a 'host:port' string, got {address!r}")
    host, sep, port = address.rpartition(":")
    if not sep or not host:
        raise ValueError(f"coordinator must be 'host:port', got {address!r}")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"coordinator {address!r}: the port must be an integer in [1, 65535]")


def owns_chunk(index: int, *, process_index: int | None = None,
               process_count: int | None = None) -> bool:
    """Whether this process solves chunk `index`: chunks are dealt round-robin,
    `index % process_count == process_index`.

    Every chunk has exactly one owner, the owners of consecutive chunks differ (so a table whose
    hard rows cluster spreads them over the processes), and in a single process every chunk is
    owned. The defaults are `jax.process_index()` and `jax.process_count()`.

    **Arguments:**

    - `index`: the chunk's index, >= 0.
    - `process_index`, `process_count`: override the running process's place (for planning).

    **Returns:** `True` if this process owns the chunk.
    """
    if not _is_int(index) or index < 0:
        raise ValueError(f"index must be an integer >= 0, got {index!r}")
    count = jax.process_count() if process_count is None else process_count
    me = jax.process_index() if process_index is None else process_index
    if not _is_int(count) or count < 1:
        raise ValueError(f"process_count must be an integer >= 1, got {count!r}")
    if not _is_int(me) or not 0 <= me < count:
        raise ValueError(f"process_index must be an integer in [0, {count}), got {me!r}")
    return index % count == me


def barrier(name: str) -> None:
    """Wait until every process of the run has reached the barrier called `name`.

    Processes that reach barriers with different names fail rather than pass each other. In a
    single process it returns at once.

    **Arguments:**

    - `name`: the barrier's name, the same in every process.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
