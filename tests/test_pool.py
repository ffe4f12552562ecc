"""Pooled batches (`planner._pool.pooled`): a problem's result does not depend on the lanes, on
the other members or on how the batch was formed.

Oracles: Newton's iteration for a square root run one problem at a time in a Python loop (its
iteration count is known: it grows with the argument), and `planner.solve` on lanes enough for
the default lanes against far fewer (every problem then runs in a lane other problems have
used before it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from planner import Chinchilla, Pipeline, Pretraining, Pruning, Scenario, Solver, Status, solve
from planner._pool import pooled


def _newton_sqrt(lanes: int):
    """sqrt(a) * scale by Newton's iteration from 1, one problem per (x0, (a, scale))."""

    def init(x0, params):
        return {"x": x0, "scale": params[1] * jnp.ones_like(x0), "steps": jnp.asarray(0),
                "done": jnp.asarray(False)}

    def step(state, params):
        a, _ = params
        x = 0.5 * (state["x"] + a / state["x"])
        done = jnp.abs(x - state["x"]) <= 1e-15 * x
        new = {"x": x, "scale": state["scale"], "steps": state["steps"] + 1, "done": done}
        return jax.tree.map(lambda o, n: jnp.where(state["done"], o, n), state, new)

    def stopped(state):
        return state["done"] | (state["steps"] >= 200)

    def output(state):
        return state["x"] * state["scale"], state["steps"]

    return pooled(init, step, stopped, output, lanes=lanes)


def _oracle(a: np.ndarray, scale: np.ndarray):
    xs, counts = [], []
    for ai, si in zip(a.ravel(), np.broadcast_to(scale, a.shape).ravel(), strict=True):
        x, n = 1.0, 0
        while True:
            new = 0.5 * (x + ai / x)
            n += 1
            if abs(new - x) <= 1e-15 * new or n >= 200:
                x = new
                break
            x = new
        xs.append(x * si)
        counts.append(n)
    return np.array(xs).reshape(a.shape), np.array(counts).reshape(a.shape)


@pytest.mark.parametrize("lanes", [1, 3, 7, 64, 1000])
def test_any_lane_count_gives_the_loop_result(lanes):
    """50 problems needing 1 to 40 iterations: every lane count, fewer lanes than problems or
    more, gives the one-at-a-time result bit for bit."""
    a = np.logspace(-3, 12, 50)
    fn = jax.jit(jax.vmap(lambda ai: _newton_sqrt(lanes)(jnp.asarray(1.0), (ai, 1.0))))
    x, steps = fn(jnp.asarray(a))
    want, counts = _oracle(a, np.ones(1))
    assert counts.min() <= 5 and counts.max() >= 20  # the members really differ
    np.testing.assert_array_equal(np.asarray(steps), counts)
    np.testing.assert_array_equal(np.asarray(x), want)


def test_nested_vmaps_shared_inputs_and_sub_batches():
    """vmap over vmap (one pool of 6 x 8 problems), an input the inner vmap does not batch
    (shared, not copied), and lax.map in sub-batches: all equal the flat loop."""
    a = np.logspace(-2, 9, 48).reshape(6, 8)
    scale = np.arange(1.0, 7.0)
    solver = _newton_sqrt(5)

    def row(ai, si):
        return jax.vmap(lambda aij: solver(jnp.asarray(1.0), (aij, si)))(ai)

    x, steps = jax.jit(jax.vmap(row))(jnp.asarray(a), jnp.asarray(scale))
    want, counts = _oracle(a, scale[:, None])
    np.testing.assert_array_equal(np.asarray(x), want)
    np.testing.assert_array_equal(np.asarray(steps), counts)
    flat = jax.jit(lambda v: jax.lax.map(lambda ai: solver(jnp.asarray(1.0), (ai, 2.0)), v,
                                         batch_size=16))(jnp.asarray(a.ravel()))
    np.testing.assert_array_equal(np.asarray(flat[0]), _oracle(a.ravel(), np.full(1, 2.0))[0])


def test_unbatched_call_and_gradient_through_stop_gradient():
    """One problem, unbatched, equals the loop; a function that differentiates around the
    pooled solve (its inputs stopped, the result re-attached) has the closed-form gradient."""
    solver = _newton_sqrt(4)
    x, steps = jax.jit(lambda a: solver(jnp.asarray(1.0), (a, 1.0)))(jnp.asarray(7.0))
    assert float(x) == _oracle(np.array([7.0]), np.ones(1))[0][0]

    def root(a):
        x, _ = solver(jnp.asarray(1.0), (jax.lax.stop_gradient(a), 1.0))
        x = jax.lax.stop_gradient(x)
        return x + (a - x * x) / (2.0 * x)  # one Newton step: exact value, derivative 1/(2x)

    grads = jax.vmap(jax.grad(root))(jnp.asarray([4.0, 9.0, 100.0]))
    np.testing.assert_allclose(np.asarray(grads), [0.25, 1.0 / 6.0, 0.05], rtol=1e-12)


def _batch(n: int, seed: int):
    rng = np.random.default_rng(seed)
    law = Chinchilla.sardana2024()
    return law, Scenario(target_loss=float(law.E) + rng.uniform(0.05, 0.8, n),
                         inference_demand=10.0 ** rng.uniform(9, 15, n))


@pytest.mark.parametrize("stages", ["plain", "pruning"])
def test_solve_does_not_depend_on_the_lanes(stages):
    """300 lifetime scenarios (with pruning: 900 local solves) on 16 lanes, refilled many times,
    give the same plans, bit for bit, as on the default lanes (256 for batches this small)."""
    law, scenarios = _batch(300, seed=1)
    model = Pipeline(Pretraining(law), *([Pruning(law)] if stages == "pruning" else []))

    def plans(lanes):
        fn = jax.jit(jax.vmap(lambda s: solve(model, s, solver=Solver(lanes=lanes),
                                              throw=False)))
        return jax.tree.map(np.asarray, fn(scenarios.broadcast()))

    few, many = plans(16), plans(None)
    assert np.all(many.status == Status.OPTIMAL)
    for got, want in zip(jax.tree.leaves(few), jax.tree.leaves(many), strict=True):
        np.testing.assert_array_equal(got, want)
