"""A primal-dual interior-point Newton method for small, smooth, batched problems.

Solves $\\min_x f(x, p)$ subject to $g(x, p) \\le 0$ for a handful of variables and constraints,
written for one problem and batched with `vmap`. Variables, constraints, Jacobians and Hessians
are tuples of scalars, not small arrays: under `vmap` every quantity is then one contiguous
array over the batch, and the Newton system is solved by an unrolled LDL^T factorisation (no
LAPACK call per problem), so an iteration over a million problems is a few fused elementwise
loops on any backend. An iteration is straight-line code (the line search is part of the
iteration, not a loop inside it), and batches run on the pooled lanes of `planner._pool`, so a
member that needs many iterations costs the others nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._fusion import once
from ._pool import pooled

Vector = tuple[Array, ...]
Matrix = tuple[tuple[Array, ...], ...]

_TAU = 0.995  # fraction-to-the-boundary rule (Wächter & Biegler 2006, IPOPT)
_ARMIJO = 1e-4
_BACKTRACKS = 30
_MAX_STEP = 2.0
# The l1 merit weighs each constraint's violation by its own penalty, at least this multiple
# of its multiplier estimate: the merit is exact when each weight exceeds its constraint's
# multiplier at the optimum (Nocedal & Wright 2006, Theorem 17.3, one weight per constraint).
# One weight for all, set by the largest multiplier, made the violation of a constraint with a
# small multiplier (a serving constraint of a plan whose inference costs 1e-4 of its
# training) outweigh the objective's decrease, and Newton steps were halved to nothing.
_PENALTY = 2.0
# A feasible problem whose KKT residual has not fallen by a tenth in this many iterations has
# stalled (an iterate jammed against a bound, or creeping by halved steps): it stops rather
# than run to max_steps.
_PATIENCE = 20
_DIVERGED = 1e20
# Slack given to a constraint that is active or violated at the start, and the range of the
# least-squares multipliers it starts with (see `_init`).
_START_SLACK = 1e-3
_START_MULTIPLIERS = (1e-2, 1e6)


def _max(values) -> Array:
    """The largest of a few scalars, as elementwise maxima: under `vmap` a `jnp.max` of a
    stack is a reduction, which XLA gives a loop (and on CPU a pass over memory) of its own."""
    return functools.reduce(jnp.maximum, values, -jnp.inf)


def _min(values) -> Array:
    return functools.reduce(jnp.minimum, values, jnp.inf)


def _dot(a: Vector, b: Vector) -> Array:
    if not a:
        return jnp.zeros(())
    return sum((ai * bi for ai, bi in zip(a, b, strict=True)), jnp.zeros_like(a[0]))


def ldl_solve(factor: tuple[Matrix, Vector], rhs: Vector) -> Vector:
    """Solve `L diag(d) L^T x = rhs` given the factor `(L, d)` of `modified_ldl`."""
    low, d = factor
    n = len(rhs)
    zero = jnp.zeros_like(rhs[0])
    y: list[Array] = []
    for i in range(n):
        y.append(rhs[i] - sum((low[i][k] * y[k] for k in range(i)), zero))
    x: list[Array] = [zero] * n
    for i in reversed(range(n)):
        x[i] = y[i] / d[i] - sum((low[k][i] * x[k] for k in range(i + 1, n)), zero)
    return tuple(x)


def modified_ldl(matrix: Matrix) -> tuple[Matrix, Vector]:
    """`(L, d)` with `matrix = L diag(d) L^T` (L unit lower triangular) for a small symmetric
    matrix given as nested tuples, every pivot replaced by its absolute value, floored (a
    modified Cholesky
    factorisation in the spirit of Gill & Murray 1974): for an indefinite matrix the solve
    gives a descent direction scaled by the magnitude of the curvature it meets, not a step
    along negative curvature; a positive definite matrix keeps its exact factor, so Newton's
    local quadratic convergence is kept. A pivot is floored at 1e-14 (float32: 1e-6) of its
    own diagonal entry, the size of the rounding error of the elimination that made it, and
    not of the matrix's largest entry: in an interior-point system an active constraint's
    $\\lambda/s$ makes some entries 1e11 while a direction the objective barely prices (a
    serving variable of a plan whose inference is 1e-4 of its cost) curves 1e-5, and a common
    floor of 1e-13 of the largest entry turned that pivot into 1e-2 and Newton's steps along it
    into a crawl. A vanishing pivot of an uncurved row (a variable held fixed) gets the floor
    of the largest entry."""
    n = len(matrix)
    zero = jnp.zeros_like(matrix[0][0])
    eps = 1e-14 if zero.dtype == jnp.float64 else 1e-6
    # A row the problem does not curve at all gets a floor set by the matrix's largest entry
    largest = eps * jnp.maximum(_max([jnp.abs(matrix[i][i]) for i in range(n)]), 1.0)
    low: list[list[Array]] = [[zero] * n for _ in range(n)]
    d: list[Array] = []
    for j in range(n):
        pivot = matrix[j][j] - sum((low[j][k] ** 2 * d[k] for k in range(j)), zero)
        own = jnp.abs(matrix[j][j])
        d.append(jnp.maximum(jnp.abs(pivot), jnp.where(own > 0, eps * own, largest)))
        for i in range(j + 1, n):
            off = matrix[i][j] - sum((low[i][k] * low[j][k] * d[k] for k in range(j)), zero)
            low[i][j] = off / d[j]
    return tuple(tuple(row) for row in low), tuple(d)


class IPMResult(eqx.Module):
    x: Vector
    slack: Vector
    multipliers: Vector
    stationarity: Float[Array, ""]
    feasibility: Float[Array, ""]
    complementarity: Float[Array, ""]
    steps: Array


class _State(eqx.Module):
    x: Vector  # the accepted iterate
    slack: Vector
    multipliers: Vector
    dx: Vector  # the Newton direction from it
    ds: Vector
    dlam: Vector
    alpha: Float[Array, ""]  # the primal step on trial
    alpha_l: Float[Array, ""]  # the multipliers' step
    merit0: Float[Array, ""]  # the merit function at the iterate, for the direction's mu
    slope: Float[Array, ""]  # its directional derivative along the direction
    mu: Float[Array, ""]
    penalty: Vector  # the merit's weight on each constraint's violation
    tries: Array  # halvings of the current step (-1: the start, accepted as it is)
    steps: Array  # iterations: one evaluation of the problem each
    done: Array  # converged, stalled or stuck
    best: Float[Array, ""]  # the smallest KKT residual met so far
    since: Array  # iterations since it last fell by a tenth


def _residuals(grad_f: Vector, jac: Matrix, gx: Vector, lam: Vector) -> tuple[Vector, Array, Array,
                                                                             Array]:
    n = len(grad_f)
    jt_lam = tuple(_dot(tuple(row[i] for row in jac), lam) for i in range(n))
    r_d = tuple(gf + jl for gf, jl in zip(grad_f, jt_lam, strict=True))
    # Relative to the size of the two terms that cancel, as rounding errors are.
    scale = jnp.maximum(1.0, _max([jnp.abs(v) for v in grad_f + jt_lam]))
    stat = _max([jnp.abs(r) for r in r_d]) / scale
    feas = jnp.maximum(_max(gx), 0.0)
    comp = jnp.maximum(_max([jnp.abs(gi * li) for gi, li in zip(gx, lam, strict=True)]), 0.0)
    return r_d, stat, feas, comp


def _largest_step(v: Vector, dv: Vector, tau) -> Array:
    """The largest step in (0, 1] that keeps `v + step * dv >= (1 - tau) v` (v > 0)."""
    ratios = [jnp.where(d < 0, -tau * vi / jnp.where(d < 0, d, -1.0), 1.0)
              for vi, d in zip(v, dv, strict=True)]
    return jnp.minimum(1.0, _min(ratios))


def interior_point(
    f: Callable[[Vector, object], Array],
    g: Callable[[Vector, object], Vector],
    x0: Vector,
    params,
    *,
    tol: float,
    max_steps: int,
    lanes: int,
    multipliers: Vector | None = None,
) -> tuple[Vector, Vector, Array]:
    """Minimise `f(x, params)` subject to `g(x, params) <= 0` from `x0` (need not be feasible).

    Newton steps on the perturbed KKT conditions with slacks $s$ and multipliers $\\lambda$,
    $\\nabla f + J^T\\lambda = 0$, $g + s = 0$, $s\\lambda = \\mu$ (Nocedal & Wright 2006,
    §19.2–19.4). Each step's barrier parameter comes from Mehrotra's probing rule: the
    affine-scaling direction ($\\mu = 0$) is computed first, then $\\mu = \\sigma\\bar\\mu$ with
    $\\sigma = (\\mu_{\\rm aff}/\\bar\\mu)^3$, $\\bar\\mu$ the average complementarity and
    $\\mu_{\\rm aff}$ what the affine step would leave of it (Mehrotra 1992; IPOPT's adaptive
    rule, Nocedal, Wächter & Waltz 2009); both directions come from one factorisation. Steps
    keep $s, \\lambda > 0$ by the fraction-to-the-boundary rule and are backtracked on an
    $\\ell_1$ merit function.

    One iteration is one evaluation of the problem (values, gradients, the Lagrangian's
    Hessian) at a trial point: accepted, it is the next iterate, whose derivatives give the
    next direction at once; rejected, the step is halved for the next iteration. A problem
    stops when every KKT residual is at most `tol`, when it has stalled, or after `max_steps`
    iterations. `params` are the problem's data (any pytree of arrays); batch with `vmap`,
    which runs the batch on `lanes` pooled lanes (`planner._pool.pooled`). `multipliers`, if
    given, are estimates of the optimum's multipliers (from a first-order phase) that the
    near-active constraints start from instead of the least-squares ones (see `_init`).

    **Returns:** `(x, multipliers, iterations)` of the last iterate; `certify` gives its KKT
    residuals.
    """

    def stopped(state: _State) -> Array:
        return state.done | (state.steps >= max_steps)

    return pooled(
        functools.partial(_init, f, g, tol),
        functools.partial(_step, f, g, tol, max_steps),
        stopped,
        lambda state: (state.x, state.multipliers, state.steps),
        lanes=lanes,
    )((x0, multipliers), params)


class _Evaluation(eqx.Module):
    f: Float[Array, ""]
    g: Vector
    grad_f: Vector
    jac: Matrix
    hess: Matrix


def _evaluate(f, g, x, lam, params) -> _Evaluation:
    fx, grad_f = jax.value_and_grad(f)(x, params)

    def lagrangian(x):
        return f(x, params) + _dot(g(x, params), lam)

    return _Evaluation(fx, g(x, params), grad_f, jax.jacfwd(g)(x, params),
                       jax.hessian(lagrangian)(x))


def _merit(e: _Evaluation, s: Vector, mu, penalty: Vector):
    zero = jnp.zeros_like(e.f)
    barrier = sum((jnp.log(si) for si in s), zero)
    violation = sum((rho * jnp.abs(gi + si) for gi, si, rho in zip(e.g, s, penalty, strict=True)),
                    zero)
    return e.f - mu * barrier + violation


def _merit_scale(e: _Evaluation, s: Vector, mu, penalty):
    """The sum of the magnitudes of the merit function's terms: its rounding error is about
    this times the machine epsilon, and it can far exceed the merit's own magnitude (near the
    optimum `g + s` cancels terms of order `|g|`, each weighted by the penalty)."""
    zero = jnp.zeros_like(e.f)
    barrier = sum((jnp.abs(jnp.log(si)) for si in s), zero)
    violation = sum((rho * (jnp.abs(gi) + jnp.abs(si))
                     for gi, si, rho in zip(e.g, s, penalty, strict=True)), zero)
    return jnp.abs(e.f) + mu * barrier + violation


def _prepare(e: _Evaluation, s: Vector, lam: Vector, penalty, tol: float, unit):
    """The Newton direction at an accepted iterate, its barrier parameter (Mehrotra's probing),
    the steps that keep slacks and multipliers positive, and the merit function's value and
    slope along it. `unit` is the one of `once`."""
    n, m = len(e.grad_f), len(s)
    zero = jnp.zeros_like(e.f)
    tiny = jnp.finfo(zero.dtype).tiny
    jac = e.jac
    r_d, _, _, _ = _residuals(e.grad_f, jac, e.g, lam)
    r_p = tuple(gi + si for gi, si in zip(e.g, s, strict=True))
    sigma = tuple(li / si for li, si in zip(lam, s, strict=True))
    factor = once(modified_ldl(tuple(
        tuple(e.hess[i][j] + sum((jac[k][i] * sigma[k] * jac[k][j] for k in range(m)), zero)
              for j in range(n))
        for i in range(n)
    )), unit)
    # The right-hand side is affine in mu: dx(mu) = dx_aff + mu dx_unit.
    w_aff = tuple(lam[k] * r_p[k] / s[k] - lam[k] for k in range(m))
    dx_aff = ldl_solve(factor, tuple(
        -r_d[i] - sum((jac[k][i] * w_aff[k] for k in range(m)), zero) for i in range(n)))
    dx_unit = ldl_solve(factor, tuple(
        -sum((jac[k][i] / s[k] for k in range(m)), zero) for i in range(n)))
    dx_aff, dx_unit = once((dx_aff, dx_unit), unit)

    def direction(mu):
        dx = tuple(a + mu * u for a, u in zip(dx_aff, dx_unit, strict=True))
        ds = tuple(-r_p[k] - _dot(jac[k], dx) for k in range(m))
        dlam = tuple((mu - s[k] * lam[k] - lam[k] * ds[k]) / s[k] for k in range(m))
        return dx, ds, dlam

    mean = sum((si * li for si, li in zip(s, lam, strict=True)), zero) / max(m, 1)
    _, ds_aff, dlam_aff = direction(zero)
    step_p, step_d = _largest_step(s, ds_aff, 1.0), _largest_step(lam, dlam_aff, 1.0)
    mean_aff = sum(((si + step_p * d) * (li + step_d * e)
                    for si, d, li, e in zip(s, ds_aff, lam, dlam_aff, strict=True)),
                   zero) / max(m, 1)
    ratio = jnp.clip(mean_aff / jnp.maximum(mean, tiny), 0.0, 1.0)
    mu = jnp.maximum(ratio**3 * mean, 0.1 * tol)
    dx, ds, dlam = direction(mu)
    # A cap on the step in the (log) variables: a constraint that saturates far from the
    # optimum lets the merit function accept a Newton step that shrinks N a million-fold; no
    # step may change a variable by more than a factor e^_MAX_STEP.
    longest = _max([jnp.abs(d) for d in dx])
    alpha = jnp.minimum(_largest_step(s, ds, _TAU), _MAX_STEP / jnp.maximum(longest, _MAX_STEP))
    alpha_l = _largest_step(lam, dlam, _TAU)
    penalty = tuple(jnp.maximum(rho, _PENALTY * jnp.abs(li + d))
                    for rho, li, d in zip(penalty, lam, dlam, strict=True))
    slope = (_dot(e.grad_f, dx) - mu * sum((d / si for d, si in zip(ds, s, strict=True)), zero)
             - _dot(penalty, tuple(jnp.abs(r) for r in r_p)))
    return dx, ds, dlam, alpha, alpha_l, _merit(e, s, mu, penalty), jnp.minimum(slope, 0.0), \
        mu, penalty


def _least_squares(grad_f: Vector, jac: Matrix, mask: tuple[Array, ...], ridge: float) -> Vector:
    """The multipliers of the constraints in `mask` that minimise the stationarity residual
    $\\|\\nabla f + J^T\\lambda\\|$ (normal equations, `ridge` added to their diagonal); 0 for
    the others, whose rows are the identity."""
    m = len(mask)
    if m == 0:
        return ()
    gram = tuple(tuple(jnp.where(mask[i] & mask[j], _dot(jac[i], jac[j]), 0.0)
                       + (jnp.where(mask[i], ridge, 1.0) if i == j else 0.0)
                       for j in range(m)) for i in range(m))
    rhs = tuple(jnp.where(mask[k], -_dot(jac[k], grad_f), 0.0) for k in range(m))
    return ldl_solve(modified_ldl(gram), rhs)


def _least_squares_multipliers(e: _Evaluation, s: Vector, lam: Vector) -> Vector:
    """Multipliers for certifying the point of `e`: those of the active constraints (slack
    below multiplier) minimise the stationarity residual (`_least_squares`), negative ones set
    to 0; the others are 0 (an interior point keeps them at mu/s, which on a face of optima,
    such as the batches above the roofline's ridge that all serve at one cost, leave mu/s in
    stationarity: 4e-10 at a slack of 0.03)."""
    active = tuple(si < li for si, li in zip(s, lam, strict=True))
    found = _least_squares(e.grad_f, e.jac, active, 0.0)
    return tuple(jnp.where(a, jnp.maximum(v, 0.0), 0.0)
                 for a, v in zip(active, found, strict=True))


def _converged(e: _Evaluation, lam: Vector, tol: float):
    _, stat, feas, comp = _residuals(e.grad_f, e.jac, e.g, lam)
    residual = jnp.maximum(jnp.maximum(stat, feas), comp)
    return residual <= tol, residual, feas


def _init(f, g, tol: float, start: tuple[Vector, Vector | None], params) -> _State:
    """The starting state: slacks and multipliers at `x0` (the first iteration evaluates
    `x0` itself and prepares the first direction there).

    A constraint slack at the start by more than `_START_SLACK` keeps its slack $-g$; one that
    is active or violated gets `_START_SLACK`. The multipliers of those are the least-squares
    solution of stationarity, $\\min_\\lambda \\|\\nabla f + J^T\\lambda\\|$ over them, clipped to
    `_START_MULTIPLIERS`; the others start at $\\mu_0/s$ with $\\mu_0$ the mean of the first
    group's $s\\lambda$. From a start on the constraints of the optimum (the closed-form
    starts of `planner.solve` are) the iterates are then already near the central path, and
    the first steps are nearly Newton steps on the KKT conditions. Multipliers given with the
    start (a first-order phase's) replace the least-squares ones.
    """
    x0, given = start
    dtype = x0[0].dtype
    zero = jnp.zeros((), dtype)
    gx = g(x0, params)
    grad0 = jax.grad(f)(x0, params)
    jac0 = jax.jacfwd(g)(x0, params)
    near = tuple(gi > -_START_SLACK for gi in gx)
    slack = tuple(jnp.where(ok, _START_SLACK, -gi) for ok, gi in zip(near, gx, strict=True))
    # least squares over the near-active constraints
    lsq = given if given is not None else _least_squares(grad0, jac0, near, 1e-12)
    low, high = _START_MULTIPLIERS
    lam_near = tuple(jnp.clip(v, low, high) for v in lsq)
    count = sum((ok.astype(dtype) for ok in near), zero)
    mu0 = jnp.where(count > 0,
                    sum((jnp.where(ok, si * li, 0.0)
                         for ok, si, li in zip(near, slack, lam_near, strict=True)), zero)
                    / jnp.maximum(count, 1.0),
                    0.1)
    lam = tuple(jnp.where(ok, li, mu0 / si)
                for ok, li, si in zip(near, lam_near, slack, strict=True))
    # The first iteration evaluates x0 itself (a zero step, accepted whatever the merit says,
    # `tries = -1`) and prepares the first direction there: the problem's Hessian is then
    # written once, in `_step`.
    none = tuple(jnp.zeros((), dtype) for _ in x0)
    return _State(x0, slack, lam, none, tuple(zero for _ in gx), tuple(zero for _ in gx),
                  zero, zero, zero, zero, mu0, tuple(zero for _ in gx), jnp.asarray(-1),
                  jnp.asarray(0), jnp.asarray(False), jnp.asarray(jnp.inf, dtype),
                  jnp.asarray(0))


def _step(f, g, tol: float, max_steps: int, state: _State, params) -> _State:
    """One iteration: evaluate the trial point; accept it (and prepare the next direction
    there) or halve the step."""
    dtype = state.mu.dtype
    tiny = jnp.finfo(dtype).tiny
    eps = jnp.finfo(dtype).eps
    xt = tuple(xi + state.alpha * d for xi, d in zip(state.x, state.dx, strict=True))
    st = tuple(jnp.maximum(si + state.alpha * d, tiny)
               for si, d in zip(state.slack, state.ds, strict=True))
    lt = tuple(jnp.maximum(li + state.alpha_l * d, tiny)
               for li, d in zip(state.multipliers, state.dlam, strict=True))
    unit = (state.steps >= 0).astype(dtype)  # one, unknown to the compiler (`once`)
    trial = once(_evaluate(f, g, xt, lt, params), unit)
    value = _merit(trial, st, state.mu, state.penalty)
    # Near the solution the merit's decrease is below its rounding error; a step that changes
    # it by no more than that is accepted rather than halved to nothing.
    noise = 16.0 * eps * (1.0 + jnp.abs(state.merit0))
    finite = functools.reduce(jnp.logical_and, [jnp.isfinite(v) for v in (value, *xt)])
    accept = finite & (value <= state.merit0 + _ARMIJO * state.alpha * state.slope + noise)
    # after _BACKTRACKS halvings the step is taken as it is, if it is finite; if not, the
    # solve ends at the current iterate
    exhausted = state.tries >= _BACKTRACKS
    converged, residual, feas = _converged(trial, lt, tol)
    # Near the optimum an active constraint's slack is mu/lambda (1e-12), and the Newton step
    # corrects its multiplier only through a primal step of 1e-20 that rounding loses; an
    # inactive one keeps mu/s: the iterate is optimal but its multipliers leave 1e-9 in
    # stationarity. Least-squares multipliers of the active constraints at the trial point
    # (0 for the others) certify it.
    polished = once(_least_squares_multipliers(trial, st, lt), unit)
    certified, residual_ls, _ = _converged(trial, polished, tol)
    use = certified & ~converged
    lt = tuple(jnp.where(use, a, b) for a, b in zip(polished, lt, strict=True))
    converged = converged | certified
    residual = jnp.where(use, residual_ls, residual)
    # The merit's rounding error is set by the magnitude of its terms, not of the merit: with
    # a large penalty and constraints of order 10 it is hundreds of times eps |merit|, so
    # near the optimum the test above rejected full Newton steps that cut the KKT residual
    # by a quarter; the solve crept by halved steps and its stall rule fired or not with the last
    # bits of the compilation (one scenario OPTIMAL in a batch of one, NOT_CONVERGED in a
    # batch of two: tests/test_properties.py). A step that cuts the KKT residual of a
    # feasible iterate by a tenth, and changes the merit by no more than that rounding, is
    # taken too.
    rounding = 16.0 * eps * _merit_scale(trial, st, state.mu, state.penalty)
    progress = ((residual < 0.9 * state.best) & (feas <= jnp.sqrt(tol))
                & (value <= state.merit0 + rounding))
    accept = once(accept | (finite & progress) | (exhausted & finite) | (state.tries < 0), unit)
    improved = residual < 0.9 * state.best
    # only a feasible iterate can stall: an infeasible problem is recognised by its
    # multipliers diverging, which takes the steps it takes
    since = jnp.where(improved | (feas > jnp.sqrt(tol)), 0, state.since + 1)
    dx, ds, dlam, alpha, alpha_l, merit0, slope, mu, penalty = once(_prepare(
        trial, st, lt, state.penalty, tol, unit), unit)
    # Multipliers beyond _DIVERGED on an infeasible iterate are the signature of an
    # infeasible problem: they grow geometrically until they overflow, so waiting longer
    # tells nothing more. A direction that is not finite ends the solve where it is.
    diverged = (feas > jnp.sqrt(tol)) & (_max(lt) > _DIVERGED)
    ahead = functools.reduce(jnp.logical_and, [jnp.isfinite(v) for v in (*dx, alpha, merit0)])
    moved = _State(xt, st, lt, dx, ds, dlam, alpha, alpha_l, merit0, slope, mu, penalty,
                   jnp.asarray(0), state.steps + 1,
                   converged | (since >= _PATIENCE) | diverged | ~ahead,
                   jnp.where(improved, residual, state.best), since)
    # a halving is an iteration without progress too; a feasible iterate that makes none for
    # _PATIENCE iterations has stalled
    waited = jnp.where(feas > jnp.sqrt(tol), 0, state.since + 1)
    halved = eqx.tree_at(lambda z: (z.alpha, z.tries, z.steps, z.done, z.since), state,
                         (0.5 * state.alpha, state.tries + 1, state.steps + 1,
                          exhausted | (waited >= _PATIENCE), waited))
    keep = once(state.done | (state.steps >= max_steps), unit)
    return jax.tree.map(lambda old, a, b: jnp.where(keep, old, jnp.where(accept, a, b)),
                        state, moved, halved)


def certify(f: Callable[[Vector], Array], g: Callable[[Vector], Vector], x: Vector,
            multipliers: Vector, steps: Array) -> IPMResult:
    """The KKT residuals of a candidate solution `(x, multipliers)`, whoever found it."""
    return certify_values(x, multipliers, steps, jax.grad(f)(x), jax.jacfwd(g)(x), g(x))


def certify_values(x: Vector, multipliers: Vector, steps: Array, grad_f: Vector, jac: Matrix,
                   gx: Vector) -> IPMResult:
    """`certify` from the gradient, Jacobian and constraint values at `x`."""
    _, stat, feas, comp = _residuals(grad_f, jac, gx, multipliers)
    slack = tuple(jnp.maximum(-gi, 0.0) for gi in gx)
    return IPMResult(x, slack, multipliers, stat, feas, comp, steps)
