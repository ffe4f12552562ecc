"""A primal-dual interior-point Newton method for small, smooth, batched problems.

Solves $\\min_x f(x)$ subject to $g(x) \\le 0$ for a handful of variables and constraints, written
for one problem and batched with `vmap`. Variables, constraints, Jacobians and Hessians are
tuples of scalars, not small arrays: under `vmap` every quantity is then one contiguous array
over the batch, and the Newton system is solved by an unrolled Cholesky factorisation (no
LAPACK call per problem), so an iteration over a million problems is a few fused elementwise
loops on any backend.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

Vector = tuple[Array, ...]
Matrix = tuple[tuple[Array, ...], ...]

_TAU = 0.995  # fraction-to-the-boundary rule (Wächter & Biegler 2006, IPOPT)
_ARMIJO = 1e-4
_BACKTRACKS = 30
_MAX_STEP = 2.0
# A feasible problem whose KKT residual has not fallen by a tenth in this many steps has
# stalled (an iterate jammed against a bound): it stops, rather than keep the whole batch stepping under
# vmap until max_steps.
_PATIENCE = 20


def _dot(a: Vector, b: Vector) -> Array:
    return sum((ai * bi for ai, bi in zip(a, b, strict=True)), jnp.zeros_like(a[0]))


def cholesky_solve(matrix: Matrix, rhs: Vector) -> Vector:
    """Solve `matrix @ x = rhs` for a small symmetric matrix given as nested tuples.

    A negative pivot is replaced by its absolute value and a vanishing one by a small floor (a
    modified Cholesky factorisation in the spirit of Gill & Murray 1974): for an indefinite
    matrix the result is a descent direction scaled by the magnitude of the curvature it meets,
    not a huge step along a direction of negative curvature; for a positive definite matrix it
    is the exact solve, so Newton's local quadratic convergence is kept.
    """
    n = len(rhs)
    zero = jnp.zeros_like(rhs[0])
    eps = 1e-13 if rhs[0].dtype == jnp.float64 else 1e-6
    scale = jnp.maximum(jnp.max(jnp.stack([jnp.abs(matrix[i][i]) for i in range(n)])), 1.0)
    low: list[list[Array]] = [[zero] * n for _ in range(n)]
    for j in range(n):
        d = matrix[j][j] - sum((low[j][k] ** 2 for k in range(j)), zero)
        low[j][j] = jnp.sqrt(jnp.maximum(jnp.abs(d), eps * scale))
        for i in range(j + 1, n):
            off = matrix[i][j] - sum((low[i][k] * low[j][k] for k in range(j)), zero)
            low[i][j] = off / low[j][j]
    y: list[Array] = []
    for i in range(n):
        y.append((rhs[i] - sum((low[i][k] * y[k] for k in range(i)), zero)) / low[i][i])
    x: list[Array] = [zero] * n
    for i in reversed(range(n)):
        x[i] = (y[i] - sum((low[k][i] * x[k] for k in range(i + 1, n)), zero)) / low[i][i]
    return tuple(x)


class IPMResult(eqx.Module):
    x: Vector
    slack: Vector
    multipliers: Vector
    stationarity: Float[Array, ""]
    feasibility: Float[Array, ""]
    complementarity: Float[Array, ""]
    steps: Array


class _State(eqx.Module):
    x: Vector
    slack: Vector
    multipliers: Vector
    mu: Float[Array, ""]
    penalty: Float[Array, ""]
    steps: Array
    done: Array
    best: Float[Array, ""]  # the smallest KKT residual met so far
    since: Array  # steps since it last fell by a tenth


def _residuals(grad_f: Vector, jac: Matrix, gx: Vector, lam: Vector) -> tuple[Vector, Array, Array,
                                                                             Array]:
    n = len(grad_f)
    jt_lam = tuple(_dot(tuple(row[i] for row in jac), lam) for i in range(n))
    r_d = tuple(gf + jl for gf, jl in zip(grad_f, jt_lam, strict=True))
    # Relative to the size of the two terms that cancel, as rounding errors are.
    scale = jnp.maximum(1.0, jnp.max(jnp.stack([jnp.abs(v) for v in grad_f + jt_lam])))
    stat = jnp.max(jnp.stack([jnp.abs(r) for r in r_d])) / scale
    feas = jnp.maximum(jnp.max(jnp.stack(gx)), 0.0)
    comp = jnp.max(jnp.stack([jnp.abs(gi * li) for gi, li in zip(gx, lam, strict=True)]))
    return r_d, stat, feas, comp


def interior_point(
    f: Callable[[Vector], Array],
    g: Callable[[Vector], Vector],
    x0: Vector,
    *,
    tol: float,
    max_steps: int,
) -> IPMResult:
    """Minimise `f(x)` subject to `g(x) <= 0` from `x0` (which need not be feasible).

    Newton steps on the perturbed KKT conditions with slacks $s$ and multipliers $\\lambda$,
    $\\nabla f + J^T\\lambda = 0$, $g + s = 0$, $s\\lambda = \\mu$; the barrier parameter
    follows the average complementarity; steps keep $s, \\lambda > 0$ by the fraction-to-the-
    boundary rule and are backtracked on an $\\ell_1$ merit function (Nocedal & Wright 2006,
    §19.2–19.4). A problem stops when every KKT residual is at most `tol`, or after
    `max_steps`; under `vmap`, stopped problems are frozen while the others go on.
    """
    n = len(x0)
    dtype = x0[0].dtype
    tiny = jnp.finfo(dtype).tiny
    g0 = g(x0)
    m = len(g0)
    slack0 = tuple(jnp.maximum(-gi, 1.0) for gi in g0)
    mu0 = jnp.asarray(0.1, dtype)
    lam0 = tuple(mu0 / si for si in slack0)

    def lagrangian(x, lam):
        return f(x) + _dot(g(x), lam)

    def merit(x, s, mu, penalty):
        gx = g(x)
        barrier = sum((jnp.log(si) for si in s), jnp.zeros((), dtype))
        violation = sum((jnp.abs(gi + si) for gi, si in zip(gx, s, strict=True)),
                        jnp.zeros((), dtype))
        return f(x) - mu * barrier + penalty * violation

    def body(state: _State) -> _State:
        x, s, lam, mu = state.x, state.slack, state.multipliers, state.mu
        gx = g(x)
        jac = jax.jacfwd(g)(x)
        grad_f = jax.grad(f)(x)
        hess = jax.hessian(lagrangian)(x, lam)
        r_d, stat, feas, comp = _residuals(grad_f, jac, gx, lam)
        converged = (stat <= tol) & (feas <= tol) & (comp <= tol)
        residual = jnp.maximum(jnp.maximum(stat, feas), comp)
        improved = residual < 0.9 * state.best
        best = jnp.where(improved, residual, state.best)
        # only a feasible iterate can stall: an infeasible problem is recognised by its
        # multipliers diverging, which takes the steps it takes
        since = jnp.where(improved | (feas > jnp.sqrt(tol)), 0, state.since + 1)
        r_p = tuple(gi + si for gi, si in zip(gx, s, strict=True))
        r_c = tuple(si * li - mu for si, li in zip(s, lam, strict=True))
        sigma = tuple(li / si for li, si in zip(lam, s, strict=True))
        matrix = tuple(
            tuple(hess[i][j] + sum((jac[k][i] * sigma[k] * jac[k][j] for k in range(m)),
                                   jnp.zeros((), dtype)) for j in range(n))
            for i in range(n)
        )
        w = tuple((lam[k] * r_p[k] - r_c[k]) / s[k] for k in range(m))
        rhs = tuple(-r_d[i] - sum((jac[k][i] * w[k] for k in range(m)), jnp.zeros((), dtype))
                    for i in range(n))
        dx = cholesky_solve(matrix, rhs)
        ds = tuple(-r_p[k] - _dot(jac[k], dx) for k in range(m))
        dlam = tuple((-r_c[k] - lam[k] * ds[k]) / s[k] for k in range(m))

        def max_step(v, dv):
            ratios = [jnp.where(d < 0, -_TAU * vi / jnp.where(d < 0, d, -1.0), 1.0)
                      for vi, d in zip(v, dv, strict=True)]
            return jnp.minimum(1.0, jnp.min(jnp.stack(ratios)))

        # A cap on the step in the (log) variables: a constraint that saturates far from the
        # optimum (a success rate's log-failure is bounded by 0 however small the model) lets
        # the merit function accept a Newton step that shrinks N a million-fold; no step may
        # change a variable by more than a factor e^_MAX_STEP.
        longest = jnp.max(jnp.stack([jnp.abs(d) for d in dx]))
        alpha_s = jnp.minimum(max_step(s, ds), _MAX_STEP / jnp.maximum(longest, _MAX_STEP))
        alpha_l = max_step(lam, dlam)
        penalty = jnp.maximum(
            state.penalty, jnp.max(jnp.stack([jnp.abs(li + d) for li, d in zip(lam, dlam)])) + 1.0
        )
        phi0 = merit(x, s, mu, penalty)
        slope = (_dot(grad_f, dx) - mu * sum((d / si for d, si in zip(ds, s)), jnp.zeros((), dtype))
                 - penalty * sum((jnp.abs(r) for r in r_p), jnp.zeros((), dtype)))
        slope = jnp.minimum(slope, 0.0)

        def trial(alpha):
            xt = tuple(xi + alpha * d for xi, d in zip(x, dx))
            st = tuple(si + alpha * d for si, d in zip(s, ds))
            return merit(xt, st, mu, penalty)

        # Near the solution the merit's decrease is below its rounding error; a step that
        # changes it by no more than that is accepted rather than halved to nothing.
        noise = 16.0 * jnp.finfo(dtype).eps * (1.0 + jnp.abs(phi0))
        # Members that have converged (or stopped) take no step: they must not backtrack
        # either, or under vmap the whole batch waits for their halvings.
        idle = converged | state.done

        def accepted(alpha):
            return idle | (trial(alpha) <= phi0 + _ARMIJO * alpha * slope + noise)

        def halve(carry):
            alpha, tries, _ = carry
            return alpha * 0.5, tries + 1, accepted(alpha * 0.5)

        # The test is made in the body and carried, so the loop's condition reads only its
        # carry (a condition that evaluated the merit itself was seen to never end on XLA:CPU
        # for float32 batches of 48 identical problems).
        alpha, _, _ = jax.lax.while_loop(
            lambda c: ~c[2] & (c[1] < _BACKTRACKS), halve,
            (alpha_s, jnp.asarray(0), accepted(alpha_s)),
        )
        x_new = tuple(xi + alpha * d for xi, d in zip(x, dx))
        s_new = tuple(jnp.maximum(si + alpha * d, tiny) for si, d in zip(s, ds))
        lam_new = tuple(jnp.maximum(li + alpha_l * d, tiny) for li, d in zip(lam, dlam))
        mean_comp = sum((si * li for si, li in zip(s_new, lam_new)), jnp.zeros((), dtype)) / m
        # Superlinear decrease of the barrier parameter (IPOPT's rule, Wächter & Biegler 2006).
        mu_new = jnp.minimum(jnp.maximum(jnp.minimum(0.1 * mean_comp, mean_comp**1.5),
                                         0.1 * tol), mu)
        stepped = _State(x_new, s_new, lam_new, mu_new, penalty, state.steps + 1,
                         since >= _PATIENCE, best, since)
        stuck = ~jnp.all(jnp.isfinite(jnp.stack(x_new)))
        frozen = eqx.tree_at(lambda st: st.done, state, jnp.asarray(True))
        return jax.tree.map(lambda a, b: jnp.where(converged | stuck, a, b), frozen, stepped)

    init = _State(x0, slack0, lam0, mu0, jnp.asarray(1.0, dtype), jnp.asarray(0),
                  jnp.asarray(False), jnp.asarray(jnp.inf, dtype), jnp.asarray(0))
    final = jax.lax.while_loop(lambda st: (~st.done) & (st.steps < max_steps), body, init)
    return certify(f, g, final.x, final.multipliers, final.steps)


def certify(f: Callable[[Vector], Array], g: Callable[[Vector], Vector], x: Vector,
            multipliers: Vector, steps: Array) -> IPMResult:
    """The KKT residuals of a candidate solution `(x, multipliers)`, whoever found it."""
    gx = g(x)
    _, stat, feas, comp = _residuals(jax.grad(f)(x), jax.jacfwd(g)(x), gx, multipliers)
    slack = tuple(jnp.maximum(-gi, 0.0) for gi in gx)
    return IPMResult(x, slack, multipliers, stat, feas, comp, steps)
