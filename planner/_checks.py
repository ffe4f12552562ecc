"""Domain checks at the API boundary.

Each check returns its (possibly traced) argument, so that it runs under `jit` and `vmap`
(where equinox names the offending batch index) and is never optimised away.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike


def check_finite(x: ArrayLike, name: str) -> Array:
    """`x` as an array, raising if any element is NaN or infinite."""
    x = jnp.asarray(x)
    return eqx.error_if(x, ~jnp.isfinite(x), f"{name} must be finite")


def check_positive(x: ArrayLike, name: str) -> Array:
    """`x` as an array, raising unless every element is finite and > 0."""
    x = check_finite(x, name)
    return eqx.error_if(x, x <= 0, f"{name} must be > 0")


def check_interval(x: ArrayLike, name: str, low: float, high: float, *, open_low: bool) -> Array:
    """`x` as an array, raising unless every element lies in (low, high] or [low, high]."""
    x = check_finite(x, name)
    below = x <= low if open_low else x < low
    bracket = "(" if open_low else "["
    return eqx.error_if(x, below | (x > high), f"{name} must lie in {bracket}{low}, {high}]")


def check_at_least(x: ArrayLike, name: str, low: float) -> Array:
    """`x` as an array, raising unless every element is finite and >= low."""
    x = check_finite(x, name)
    return eqx.error_if(x, x < low, f"{name} must be >= {low}")
