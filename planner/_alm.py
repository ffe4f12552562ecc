"""An augmented-Lagrangian method whose inner minimisation is any optax optimiser.

First-order and fixed-length (scans, no data-dependent loops), so under `vmap` every problem
costs the same and none waits for another. It converges linearly at best: `solve` uses it as a
globalisation phase before the interior-point Newton method, or alone where a few digits are
enough.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

from ._ipm import Vector

if TYPE_CHECKING:
    import optax


def augmented_lagrangian(
    f: Callable[[Vector], jax.Array],
    g: Callable[[Vector], Vector],
    x0: Vector,
    *,
    optimizer: optax.GradientTransformation,
    inner_steps: int,
    outer_steps: int,
    penalty: float = 10.0,
    growth: float = 2.0,
) -> tuple[Vector, Vector]:
    r"""Approximately minimise `f(x)` subject to `g(x) <= 0` from `x0`.

    Minimises, in turn, the augmented Lagrangian of inequality constraints (Rockafellar 1973;
    Nocedal & Wright 2006, §17.4)
    $$L_\rho(x, \lambda) = f(x) + \frac{1}{2\rho}\sum_i \left(\max(0, \lambda_i + \rho g_i(x))^2
    - \lambda_i^2\right)$$
    by `inner_steps` steps of `optimizer`, then updates
    $\lambda \leftarrow \max(0, \lambda + \rho g(x))$ and multiplies $\rho$ by `growth`.
    Any `optax.GradientTransformation` serves, including those whose `update` needs the
    objective's `value`, `grad` and `value_fn` (`optax.lbfgs`, optax's line searches).

    **Returns:** `(x, multipliers)`.
    """
    import optax  # here, not at the top: `planner solve` never loads it

    # optimisers whose update reads the objective (optax.lbfgs, line searches) get `value`,
    # `grad` and `value_fn`; the others ignore them
    tx = optax.with_extra_args_support(optimizer)
    m = len(g(x0))
    dtype = x0[0].dtype
    lam0 = tuple(jnp.zeros((), dtype) for _ in range(m))

    def inner(x, lam, rho):
        def loss(x):
            shifted = sum(
                (jnp.maximum(li + rho * gi, 0.0) ** 2 - li**2 for li, gi in zip(lam, g(x))),
                jnp.zeros((), dtype),
            )
            return f(x) + shifted / (2.0 * rho)

        def step(carry, _):
            x, state, _, _ = optax_step(tx, loss, *carry)
            return (x, state), None

        (x, _), _ = jax.lax.scan(step, (x, optax_init(tx, x)), None, length=inner_steps)
        return x

    def outer(carry, _):
        x, lam, rho = carry
        x = inner(x, lam, rho)
        lam = tuple(jnp.maximum(li + rho * gi, 0.0) for li, gi in zip(lam, g(x)))
        return (x, lam, rho * growth), None

    (x, lam, _), _ = jax.lax.scan(
        outer, (x0, lam0, jnp.asarray(penalty, dtype)), None, length=outer_steps
    )
    return x, lam


def optax_init(tx: optax.GradientTransformation, x):
    """`tx.init(x)` (optax's arithmetic mixes Python floats and int32 step counts, which
    strict dtype promotion refuses)."""
    with jax.numpy_dtype_promotion("standard"):
        return tx.init(x)


def optax_step(tx: optax.GradientTransformation, value_fn, x, state):
    """One step of `tx` (wrapped by `optax.with_extra_args_support`) minimising `value_fn`
    from `x`: optimisers whose update reads the objective (`optax.lbfgs`, line searches) get
    its `value`, `grad` and `value_fn`, the others ignore them. Returns
    `(x, state, value, grad)`, the last two at the `x` given."""
    import optax

    value, grad = jax.value_and_grad(value_fn)(x)
    # optax's own arithmetic mixes Python floats and int32 step counts (adam's bias
    # correction), which strict dtype promotion refuses
    with jax.numpy_dtype_promotion("standard"):
        updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=value_fn)
    return optax.apply_updates(x, updates), state, value, grad


def descend(value_and_grad: Callable, value_fn: Callable, x, *,
            optimizer: optax.GradientTransformation | None, steps: int, tol: float,
            report: Callable[[int, float, float], None] | None = None):
    """Minimise a few outer variables `x` whose objective is expensive (every evaluation a
    batch of inner solves): the host loop of `allocate`'s shared model and `train_to_test`.

    Without `optimizer`: optax's L-BFGS direction (`optax.scale_by_lbfgs`) with a backtracking
    (Armijo) line search on the host, every trial one call of `value_and_grad` (compiled
    once by the caller), restarting from the gradient where the direction does not descend;
    optax's own line searches would compile the inner solves once more inside the update.
    With `optimizer`: its steps (`optax_step`, compiled once), for any optax transformation,
    `optax.lbfgs` included. Stops when the largest component of the gradient is at most `tol`.
    `report(step, value, largest)` is called before every step.

    **Returns:** `(x, evaluations)`.
    """
    import optax  # here, not at the top: `planner solve` never loads it

    evaluations = 0
    if optimizer is None:
        tx = optax.scale_by_lbfgs()

        @jax.jit
        def update(grad, state, x):
            with jax.numpy_dtype_promotion("standard"):
                return tx.update(grad, state, x)

        state = optax_init(tx, x)
        value, grad = value_and_grad(x)
        evaluations += 1
        for k in range(steps):
            largest = float(jnp.max(jnp.abs(grad)))
            if report is not None:
                report(k, float(value), largest)
            if largest <= tol:
                break
            direction, state = update(grad, state, x)
            slope = float(jnp.dot(grad, direction))
            if not slope > 0:  # not a descent direction: restart from the gradient
                state = optax_init(tx, x)
                direction, slope = grad, float(jnp.dot(grad, grad))
            t = 1.0
            for _ in range(40):
                trial = x - t * direction
                new_value, new_grad = value_and_grad(trial)
                evaluations += 1
                if float(new_value) <= float(value) - 1e-4 * t * slope:
                    break
                t *= 0.5
            x, value, grad = trial, new_value, new_grad
        return x, evaluations
    tx = optax.with_extra_args_support(optimizer)
    step = jax.jit(lambda x, state: optax_step(tx, value_fn, x, state))
    state = optax_init(tx, x)
    for k in range(steps):
        new, state, value, grad = step(x, state)
        evaluations += 1
        largest = float(jnp.max(jnp.abs(grad)))
        if report is not None:
            report(k, float(value), largest)
        if largest <= tol:
            break
        x = new
    return x, evaluations
