"""Traced programs kept on disk, so that a later process skips tracing them.

JAX's persistent compilation cache saves the compile, but its key is the lowered program, so
every process still traces and lowers the solver first: about half a second for
`planner solve`'s batched solver, on every run. `stored` keeps the traced program itself
(`jax.export`, serialised) under a key made of everything the trace depends on, and a later
process calls the stored program, whose compile the persistent cache then serves.

Serialising needs the `flatbuffers` package (`pip install -e ".[fast]"`); without it, or
when the folder cannot be written, `stored` traces as `jax.jit` does.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

SUFFIX = ".jaxexport"


@functools.cache
def _source_digest() -> str:
    """The digest of planner's own source: a changed planner never loads an older program."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.relative_to(Path(__file__).parent).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


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


def available() -> bool:
    """Whether programs can be serialised here (`flatbuffers` is installed)."""
    return importlib.util.find_spec("flatbuffers") is not None


def stored(fn: Callable, key: str, folder: Path | None) -> Callable:
    """`jax.jit(fn)`, with each traced program (one per input structure, shape and dtype) kept
    in `folder` and loaded from there by a later process with the same `key`.

    `key` must name everything `fn` closes over (`fingerprint` of it); the file name adds the
    input signature, planner's source, the JAX version, the backend and the precision. A file
    that cannot be read is traced again and rewritten; a folder that cannot be written leaves
    the traced program in memory only. Inside another trace (`shard_batch`'s, say) the stored
    program is called as one operation of it: the arrays it is given stay arguments."""
    if folder is None or not available():
        return jax.jit(fn)
    programs: dict[str, Callable] = {}

    def call(*args):
        leaves, tree = jax.tree.flatten(args)
        shapes = [jax.ShapeDtypeStruct(np.shape(x), getattr(x, "dtype", None) or np.result_type(x))
                  for x in leaves]
        signature = str(tree) + repr([(s.shape, s.dtype.str) for s in shapes])
        program = programs.get(signature)
        if program is None:
            # the program takes the leaves (its own file format knows only JAX's containers)
            def flat(*leaves, tree=tree):
                return fn(*jax.tree.unflatten(tree, leaves))

            program = programs[signature] = _load_or_trace(flat, key, signature, folder, shapes)
        return program(*leaves)

    return call


def _load_or_trace(fn, key: str, signature: str, folder: Path, shapes) -> Callable:
    """The program of `fn` for `shapes`, from its file or traced (and its file written)."""
    from jax import export

    from ._table import atomic_write

    name = hashlib.sha256("\n".join([
        key, signature, _source_digest(), jax.__version__, jax.lib.__version__,
        jax.default_backend(), str(jax.config.jax_enable_x64)]).encode()).hexdigest()
    path = Path(folder) / "programs" / f"{name}{SUFFIX}"
    try:
        return export.deserialize(bytearray(path.read_bytes())).call
    except Exception:  # noqa: BLE001 - absent, unreadable or from another JAX: traced again
        pass
    jitted = jax.jit(fn)
    try:
        program = export.export(jitted)(*shapes)
        blob = program.serialize()
    except Exception:  # noqa: BLE001 - a program export cannot write (an output it cannot
        return jitted  # name, say) runs as plain jit
    try:
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(blob))
    except OSError:
        pass
    return program.call
