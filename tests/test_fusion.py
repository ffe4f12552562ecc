"""`planner._fusion.once` changes no value, and makes XLA compute a value once."""

import jax
import jax.numpy as jnp
import numpy as np

from planner._fusion import once

# Subnormals are left out: XLA on CPU flushes them to zero in any arithmetic.
SPECIAL = np.array([0.0, -0.0, 1.5, -2.0, np.inf, -np.inf, np.nan, 3e-38, 1.7e38])


def test_values_unchanged_bit_for_bit():
    for dtype in (np.float64, np.float32):
        x = jnp.asarray(SPECIAL.astype(dtype))
        out = np.asarray(jax.jit(once)(x))
        assert out.dtype == dtype
        np.testing.assert_array_equal(np.isnan(out), np.isnan(SPECIAL))
        keep = ~np.isnan(SPECIAL)  # a NaN's payload is not promised
        np.testing.assert_array_equal(out[keep].view(np.uint8),
                                      SPECIAL.astype(dtype)[keep].view(np.uint8))


def test_unit_tree_and_booleans():
    unit = jnp.asarray(1.0)
    tree = {"x": jnp.asarray(SPECIAL), "flag": jnp.asarray([True, False])}
    out = jax.jit(once)(tree, unit)
    np.testing.assert_array_equal(out["x"], tree["x"])
    assert out["flag"].dtype == jnp.bool_
    np.testing.assert_array_equal(out["flag"], tree["flag"])


def test_gradient_passes_through():
    f = lambda x: once(jnp.sin(x) ** 2)  # noqa: E731
    x = jnp.asarray(0.7)
    np.testing.assert_allclose(jax.grad(f)(x), 2 * jnp.sin(x) * jnp.cos(x), rtol=1e-15)


def test_a_shared_chain_is_computed_once():
    # A long chain read by several consumers: XLA copies it into each consumer's fusion,
    # unless it goes through `once`.
    def program(wrap):
        def fn(x):
            y = x
            for i in range(60):
                y = y * 1.0001 + 0.5 * jnp.sin(y + i)
            y = wrap(y)
            return [jnp.exp(y * (j + 1)) for j in range(8)]
        return fn

    x = jnp.linspace(0.0, 1.0, 1024)
    plain = jax.jit(program(lambda y: y)).lower(x).compile().as_text()
    shared = jax.jit(program(once)).lower(x).compile().as_text()
    assert shared.count("sine(") < plain.count("sine(")
    assert shared.count("sine(") == 60
