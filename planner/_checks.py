"""Domain checks at the API boundary.

Each check returns its (possibly traced) argument, so that it runs under `jit` and `vmap`
(where one bad element stops the whole batch) and is never optimised away. A check that tests
several conditions compiles to a single conditional (`check_all`): every check is compiled
again for each derivative program, so the count matters. Outside `jit` the conditions are
decided eagerly, in Python.
"""

import os

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool

from . import _rules
from ._rules import Rule


def check_all(x: ArrayLike, *conditions: tuple[Bool[ArrayLike, "..."], str]) -> Array:
    """`x` as an array, raising the message of the first `(failed, message)` pair that fails.

    `failed` may have any shape; the pair fails if any of its elements is true.
    """
    x = jnp.asarray(x)
    failed = [jnp.any(f) for f, _ in conditions]
    # Outside `jit` the predicates are concrete, even while differentiating (they carry no
    # tangent), so they are decided here: a runtime conditional would be compiled again for
    # every derivative taken eagerly, and for every failing call.
    if not any(isinstance(f, jax.core.Tracer) for f in failed):
        for f, (_, msg) in zip(failed, conditions):
            if bool(f) and os.environ.get("EQX_ON_ERROR", "raise") == "raise":
                raise eqx.EquinoxRuntimeError(msg)
        if not any(map(bool, failed)):
            return x
    if len(conditions) == 1:
        return eqx.error_if(x, failed[0], conditions[0][1])
    failed = jnp.stack(failed)
    return eqx.branched_error_if(
        x, jnp.any(failed), jnp.argmax(failed), [msg for _, msg in conditions]
    )


def domain_conditions(
    x: Array, name: str, violated: Bool[Array, "..."], requirement: str
) -> tuple[tuple[Bool[Array, "..."], str], tuple[Bool[Array, "..."], str]]:
    """The pairs "`name` must be finite" and "`name` <requirement>" (failing where `violated`),
    for `check_all`: for a domain that is not an interval (`planner._rules` words the rest)."""
    return (~jnp.isfinite(x), f"{name} must be finite"), (violated, f"{name} {requirement}")


def check_rule(x: ArrayLike, rule: Rule) -> Array:
    """`x` as an array, raising the message of `rule` (`planner._rules`) where it fails."""
    x = jnp.asarray(x)
    return check_all(x, *rule.conditions(x))


def check_finite(x: ArrayLike, name: str) -> Array:
    """`x` as an array, raising if any element is NaN or infinite."""
    return check_rule(x, _rules.Rule(name))


def check_positive(x: ArrayLike, name: str) -> Array:
    """`x` as an array, raising unless every element is finite and > 0."""
    return check_rule(x, _rules.positive(name))


def check_interval(x: ArrayLike, name: str, low: float, high: float, *, open_low: bool) -> Array:
    """`x` as an array, raising unless every element lies in (low, high] or [low, high]."""
    return check_rule(x, _rules.interval(name, low, high, open_low=open_low))


def check_at_least(x: ArrayLike, name: str, low: float) -> Array:
    """`x` as an array, raising unless every element is finite and >= low."""
    return check_rule(x, _rules.at_least(name, low))
