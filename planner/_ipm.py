"""A primal-dual interior-point Newton method for small, smooth, batched problems.

Solves $\\min_x f(x)$ subject to $g(x) \\le 0$ for a handful of variables and constraints, written
for one problem and batched with `vmap`. Every operation is elementwise over the batch (the
Newton system is solved by an unrolled Cholesky factorisation, not LAPACK), so a batch of a
million problems is a few fused loops per iteration, on any backend.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

_TAU = 0.995  # fraction-to-the-boundary rule (Wächter & Biegler 2006, IPOPT)
_ARMIJO = 1e-4
_BACKTRACKS = 30


def cholesky_solve(matrix: Float[Array, "n n"], rhs: Float[Array, " n"]) -> Float[Array, " n"]:
    """Solve `matrix @ x = rhs` for a small symmetric matrix, unrolled over its static size.

    Pivots are floored (a modified Cholesky factorisation, Gill & Murray 1974), so an indefinite
    or singular matrix still yields a descent direction instead of NaN.
    """
    n = matrix.shape[0]
    scale = jnp.max(jnp.abs(jnp.diagonal(matrix)))
    floor = jnp.maximum(scale, 1.0) * 1e-12 if matrix.dtype == jnp.float64 else jnp.maximum(
        scale, 1.0
    ) * 1e-6
    low: list[list[Array]] = [[jnp.zeros((), matrix.dtype)] * n for _ in range(n)]
    for j in range(n):
        d = matrix[j, j] - sum((low[j][k] ** 2 for k in range(j)), jnp.zeros((), matrix.dtype))
        d = jnp.maximum(d, floor)
        low[j][j] = jnp.sqrt(d)
        for i in range(j + 1, n):
            off = matrix[i, j] - sum(
                (low[i][k] * low[j][k] for k in range(j)), jnp.zeros((), matrix.dtype)
            )
            low[i][j] = off / low[j][j]
    y: list[Array] = []
    for i in range(n):
        y.append((rhs[i] - sum((low[i][k] * y[k] for k in range(i)), jnp.zeros((), rhs.dtype)))
                 / low[i][i])
    x: list[Array] = [jnp.zeros((), rhs.dtype)] * n
    for i in reversed(range(n)):
        x[i] = (y[i] - sum((low[k][i] * x[k] for k in range(i + 1, n)), jnp.zeros((), rhs.dtype))
                ) / low[i][i]
    return jnp.stack(x)


class IPMState(eqx.Module):
    x: Float[Array, " n"]
    slack: Float[Array, " m"]
    multipliers: Float[Array, " m"]
    mu: Float[Array, ""]
    penalty: Float[Array, ""]
    steps: Array
    done: Array


class IPMResult(eqx.Module):
    x: Float[Array, " n"]
    slack: Float[Array, " m"]
    multipliers: Float[Array, " m"]
    stationarity: Float[Array, ""]
    feasibility: Float[Array, ""]
    complementarity: Float[Array, ""]
    steps: Array


def kkt_residuals(
    f: Callable, g: Callable, x: Array, multipliers: Array
) -> tuple[Array, Array, Array]:
    """Stationarity, primal feasibility and complementarity errors (infinity norms)."""
    gx = g(x)
    grad_l = jax.grad(f)(x) + jax.jacfwd(g)(x).T @ multipliers
    return (
        jnp.max(jnp.abs(grad_l)),
        jnp.maximum(jnp.max(gx), 0.0),
        jnp.max(jnp.abs(gx * multipliers)),
    )


def interior_point(
    f: Callable[[Array], Array],
    g: Callable[[Array], Array],
    x0: Float[Array, " n"],
    *,
    tol: float,
    max_steps: int,
) -> IPMResult:
    """Minimise `f(x)` subject to `g(x) <= 0` from `x0` (which need not be feasible).

    Newton steps on the perturbed KKT conditions with slacks $s$ and multipliers $\\lambda$,
    $\\nabla f + J^T\\lambda = 0$, $g + s = 0$, $s\\lambda = \\mu$; the barrier parameter
    follows the average complementarity; steps keep $s, \\lambda > 0$ by the fraction-to-the-
    boundary rule and are backtracked on an $\\ell_1$ merit function (Nocedal & Wright 2006,
    §19.2–19.4). Stops when every KKT residual is below `tol` or after `max_steps`.
    """
    dtype = x0.dtype
    g0 = g(x0)
    slack0 = jnp.maximum(-g0, 1.0)
    mu0 = jnp.asarray(0.1, dtype)
    lam0 = mu0 / slack0

    def lagrangian(x, lam):
        return f(x) + jnp.dot(lam, g(x))

    def merit(x, slack, mu, penalty):
        return f(x) - mu * jnp.sum(jnp.log(slack)) + penalty * jnp.sum(jnp.abs(g(x) + slack))

    def cond(state):
        return (~state.done) & (state.steps < max_steps)

    def body(state):
        x, s, lam, mu = state.x, state.slack, state.multipliers, state.mu
        gx = g(x)
        jac = jax.jacfwd(g)(x)
        grad_f = jax.grad(f)(x)
        hess = jax.hessian(lagrangian)(x, lam)
        r_d = grad_f + jac.T @ lam
        r_p = gx + s
        r_c = s * lam - mu
        converged = (
            (jnp.max(jnp.abs(r_d)) <= tol)
            & (jnp.max(gx) <= tol)
            & (jnp.max(jnp.abs(gx * lam)) <= tol)
        )
        sigma = lam / s
        matrix = hess + jac.T @ (sigma[:, None] * jac)
        rhs = -r_d - jac.T @ ((lam * r_p - r_c) / s)
        dx = cholesky_solve(matrix, rhs)
        ds = -r_p - jac @ dx
        dlam = (-r_c - lam * ds) / s

        def max_step(v, dv):
            ratio = jnp.where(dv < 0, -_TAU * v / jnp.where(dv < 0, dv, -1.0), jnp.inf)
            return jnp.minimum(1.0, jnp.min(ratio))

        alpha_s = max_step(s, ds)
        alpha_l = max_step(lam, dlam)
        penalty = jnp.maximum(state.penalty, jnp.max(jnp.abs(lam + dlam)) + 1.0)
        phi0 = merit(x, s, mu, penalty)
        slope = grad_f @ dx - mu * jnp.sum(ds / s) - penalty * jnp.sum(jnp.abs(r_p))

        def ls_cond(carry):
            alpha, tries = carry
            ok = merit(x + alpha * dx, s + alpha * ds, mu, penalty) <= phi0 + _ARMIJO * alpha * \
                jnp.minimum(slope, 0.0)
            return (~ok) & (tries < _BACKTRACKS)

        def ls_body(carry):
            alpha, tries = carry
            return alpha * 0.5, tries + 1

        alpha, _ = jax.lax.while_loop(ls_cond, ls_body, (alpha_s, jnp.asarray(0)))
        x_new = x + alpha * dx
        s_new = s + alpha * ds
        lam_new = lam + alpha_l * dlam
        s_new = jnp.maximum(s_new, jnp.finfo(dtype).tiny)
        lam_new = jnp.maximum(lam_new, jnp.finfo(dtype).tiny)
        mu_new = jnp.maximum(0.1 * jnp.mean(s_new * lam_new), 0.1 * tol)
        mu_new = jnp.minimum(mu_new, mu)
        stepped = IPMState(x_new, s_new, lam_new, mu_new, penalty, state.steps + 1, state.done)
        stuck = ~jnp.all(jnp.isfinite(x_new))
        frozen = eqx.tree_at(lambda st: st.done, state, jnp.asarray(True))
        return jax.tree.map(
            lambda a, b: jnp.where(converged | stuck, a, b), frozen, stepped
        )

    init = IPMState(
        x0, slack0, lam0, mu0, jnp.asarray(1.0, dtype), jnp.asarray(0), jnp.asarray(False)
    )
    final = jax.lax.while_loop(cond, body, init)
    stat, feas, comp = kkt_residuals(f, g, final.x, final.multipliers)
    return IPMResult(final.x, final.slack, final.multipliers, stat, feas, comp, final.steps)
