"""Bounded non-linear least squares, so that no runtime path needs SciPy.

`calibrate_mcts` fits six constants to a dozen residuals, two of them held within bounds: a
small, dense problem that a Levenberg-Marquardt iteration on the host solves in a few hundred
steps of one Jacobian each. SciPy's `least_squares` would do; it is not a runtime dependency
(jax, jaxlib, optax, equinox, numpy), and optimistix, which has Levenberg-Marquardt, has no
bounds.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class LeastSquares:
    """`x`, the cost $\\frac12\\|r(x)\\|^2$ there, the largest projected gradient component,
    and whether a stopping test (rather than the step limit) ended the iteration."""

    x: np.ndarray
    cost: float
    grad_max: float
    success: bool


def least_squares(residual, start, lower=None, upper=None, *, max_steps: int = 5000,
                  tol: float = 1e-12) -> LeastSquares:
    """Minimise $\\frac12\\|r(x)\\|^2$ for `lower <= x <= upper` (either may be None or hold
    infinities) by projected Levenberg-Marquardt, from `start` (clipped into the box).

    Each step: the variables at a bound whose gradient pushes out of the box are held; the
    others take the Levenberg-Marquardt step with Marquardt's scaling (damping proportional to
    the diagonal of $J^TJ$), clipped into the box; the damping is divided by 3 after a step
    that lowers the cost and multiplied by 4 after one that does not. Stops when the projected
    gradient is below `tol` times max(1, cost), or the step below `tol` relative to x, or when
    no damping lowers the cost (a stationary point to rounding).

    **Arguments:** `residual`, a JAX function of a parameter vector; `start`; the bounds.

    **Returns:** a `LeastSquares`.
    """
    fun, jac = jax.jit(residual), jax.jit(jax.jacfwd(residual))
    x0 = np.asarray(start, float)
    lower = np.full(x0.shape, -np.inf) if lower is None else np.asarray(lower, float)
    upper = np.full(x0.shape, np.inf) if upper is None else np.asarray(upper, float)
    x = np.clip(x0, lower, upper)
    r = np.asarray(fun(jnp.asarray(x)))
    cost, damping, success = 0.5 * float(r @ r), 1e-3, False
    if not np.isfinite(cost):
        return LeastSquares(x=x, cost=math.inf, grad_max=math.inf, success=False)

    def held(x, g):
        return ((x <= lower) & (g > 0)) | ((x >= upper) & (g < 0))

    for _ in range(max_steps):
        j = np.asarray(jac(jnp.asarray(x)))
        if not np.all(np.isfinite(j)):
            break
        g = j.T @ r
        free = ~held(x, g)
        if not free.any() or np.max(np.abs(g[free])) <= tol * max(1.0, cost):
            success = True
            break
        h = (j.T @ j)[np.ix_(free, free)]
        scale = np.maximum(np.diag(h), 1e-12 * max(1.0, float(np.max(np.diag(h)))))
        while damping < 1e16:
            step = np.zeros_like(x)
            step[free] = np.linalg.solve(h + damping * np.diag(scale), -g[free])
            trial = np.clip(x + step, lower, upper)
            r_trial = np.asarray(fun(jnp.asarray(trial)))
            with np.errstate(over="ignore", invalid="ignore"):
                cost_trial = 0.5 * float(r_trial @ r_trial)
            if np.isfinite(cost_trial) and cost_trial < cost:
                break
            damping *= 4.0
        else:
            success = True
            break
        small = np.linalg.norm(trial - x) <= tol * (1.0 + np.linalg.norm(x))
        x, r, cost, damping = trial, r_trial, cost_trial, max(damping / 3.0, 1e-12)
        if small:
            success = True
            break
    g = np.asarray(jac(jnp.asarray(x))).T @ r
    projected = np.where(held(x, g), 0.0, g)
    return LeastSquares(x=x, cost=cost, grad_max=float(np.max(np.abs(projected))),
                        success=success)
