"""Values XLA computes once, instead of recomputing them in each of their consumers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array


def once(tree, unit: Array | None = None):
    """`tree` unchanged, as values XLA computes once and every consumer reads.

    XLA fuses cheap elementwise arithmetic into each consumer of its result and recomputes it
    there. Mostly that saves memory traffic, but a long chain read by many consumers is then
    compiled and run many times over. Measured on CPU: the interior-point step of the sampling
    problem recomputed its evaluation in dozens of the state's updates (1.9 µs per lane against
    0.36 µs for the evaluation itself; 0.54 µs with its results computed once), and the
    Hessian of a sampling law's log-failure copied the series of its special functions into
    each of its entries (4,107 lines of optimised HLO, 2,958 with the series computed once).

    A floating division is an operation XLA does not duplicate: dividing by a one the compiler
    cannot see is one makes the value a result computed once and read by all. `unit` is that
    one, a runtime value (such as `steps >= 0` as a float), shared by the whole tree. Without
    it each array is divided by `(v == v)`, one for every number and infinity and zero for a
    NaN, which stays NaN: the division changes no value, bit for bit (except subnormals on
    a backend that flushes them to zero, as it does in any arithmetic). Booleans go through the
    division as 0.0 / 1.0, and need `unit`.
    """
    def one(v):
        if v.dtype == jnp.bool_:
            if unit is None:
                raise TypeError("once: a boolean leaf needs `unit`")
            return (v.astype(unit.dtype) / unit) > 0.5
        if unit is None:
            return v / (v == v).astype(v.dtype)
        return v / unit.astype(v.dtype)

    return jax.tree.map(one, tree)
