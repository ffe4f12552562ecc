"""Compiled programs kept on disk whole, so that a later process neither traces nor compiles.

JAX's persistent compilation cache saves the compile, but its key is the lowered program, so
every process still traces and lowers the solver before it can look it up: about half a second
of each `planner solve` run. `shard_batch(..., store=(key, folder))` instead keeps the compiled
executable itself (`jax.experimental.serialize_executable`) together with the arrays the
function closes over, in a file named by `key` (which must name every value the function
closes over: `fingerprint` of them), the input shapes, the devices, planner's own source and
the JAX version; a later process with the same file name loads and runs it. A stale file (of
another law, another version of planner or of JAX) is never loaded, only left behind: the
folder is kept to `MAX_BYTES`, the files used longest ago removed first (`save`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import platform
from pathlib import Path

import jax
import numpy as np

SUFFIX = ".jaxexe"
MAX_BYTES = 256 << 20
"""The most the kept programs of one folder may take (a solver's is about 1.2 MB)."""


@functools.cache
def _environment() -> str:
    """What an executable is only valid for: planner's source, JAX, the precision, the CPU."""
    digest = hashlib.sha256()
    package = Path(__file__).parent
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    cpu = platform.processor()
    try:  # the model and the instruction sets the compiled code may use
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = "\n".join(dict.fromkeys(x for x in lines if x.startswith(("model name", "flags"))))
    except OSError:
        pass
    return "\n".join([digest.hexdigest(), jax.__version__, jax.lib.__version__,
                      platform.machine(), cpu])


def fingerprint(*parts) -> str:
    """A digest of pytrees: their structure (static fields included) and every leaf's value;
    a leaf that is not a number or an array counts by its `repr`."""
    digest = hashlib.sha256()
    leaves, tree = jax.tree.flatten(parts)
    digest.update(str(tree).encode())
    for leaf in leaves:
        if isinstance(leaf, (jax.Array, np.ndarray, np.generic, float, int, bool, complex)):
            value = np.asarray(leaf)
            digest.update(f"{value.dtype}{value.shape}".encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        else:
            digest.update(repr(leaf).encode())
    return digest.hexdigest()


def path(folder: Path, key: str, signature: str, devices) -> Path:
    """The file of the program `key` for inputs `signature` on `devices`."""
    name = hashlib.sha256("\n".join([
        key, signature, _environment(), str(jax.config.jax_enable_x64),
        repr([(d.platform, d.device_kind, d.id) for d in devices])]).encode()).hexdigest()
    return Path(folder) / "programs" / f"{name}{SUFFIX}"


def compile_to_keep(lowered):
    """`(compiled, keep)`: `lowered.compile()`, and whether it may be kept: not when JAX's
    persistent compilation cache served it (an executable XLA loaded from a file serialises
    without its code: loaded again, it fails with "Function ... not found")."""
    served = []

    def listen(event, **kwargs):
        if event == "/jax/compilation_cache/cache_hits":
            served.append(event)

    jax.monitoring.register_event_listener(listen)
    try:
        compiled = lowered.compile()
    finally:
        jax.monitoring.unregister_event_listener(listen)
    return compiled, not served


def load(file: Path):
    """`(compiled, consts, out_tree)` from `file`, or None if it is absent or unreadable."""
    from jax.experimental import serialize_executable

    try:
        blob, in_tree, out_tree, consts, result_tree = pickle.loads(file.read_bytes())
        compiled = serialize_executable.deserialize_and_load(blob, in_tree, out_tree)
    except Exception:  # noqa: BLE001 - absent, damaged or from another JAX: compiled again
        return None
    try:
        os.utime(file)  # used now: the last to be removed (`save`)
    except OSError:
        pass
    return compiled, consts, result_tree


def save(file: Path, compiled, consts, result_tree) -> None:
    """Write `compiled` (its arguments: `consts`, then the batch) and `result_tree`, the
    structure of the function's result, to `file`, atomically; a folder that cannot be
    written, or a program that cannot be serialised, leaves no file."""
    from jax.experimental import serialize_executable

    from ._table import atomic_write

    try:
        blob = pickle.dumps((*serialize_executable.serialize(compiled),
                             [np.asarray(c) for c in consts], result_tree))
        atomic_write(file, lambda tmp: Path(tmp).write_bytes(blob))
    except Exception:  # noqa: BLE001 - the program still runs; the next process compiles it
        return
    _trim(file)


def _trim(kept: Path) -> None:
    """Remove the programs beside `kept` used longest ago (by modification time, which `load`
    renews) until the folder's programs take at most `MAX_BYTES`; `kept` stays."""
    total, others = 0, []
    for other in kept.parent.glob(f"*{SUFFIX}"):
        try:
            info = other.stat()
        except OSError:  # removed meanwhile by another process
            continue
        total += info.st_size
        if other != kept:
            others.append((info.st_mtime_ns, info.st_size, other))
    for _, size, other in sorted(others):  # used longest ago first
        if total <= MAX_BYTES:
            break
        other.unlink(missing_ok=True)
        total -= size
