r"""Test-time compute spent where it pays: samples per class of queries under one budget.

A population of queries falls into classes $i$ of different difficulty: a share $w_i$ of the
queries, each answered by one sample with probability $p_i$ (pass@1). Drawing $k_i$ samples
per query of class $i$ and selecting one with a verifier of accuracy $a$ (`accuracy`: with
probability $a$ it picks a correct sample whenever one exists, otherwise a sample at random;
$a = 1$ is a perfect verifier) succeeds with probability

$$s_i(k_i) = a\,\bigl(1 - (1 - p_i)^{k_i}\bigr) + (1 - a)\,p_i
           = a\,(1 - e^{-q_i k_i}) + (1 - a)\,p_i, \qquad q_i = -\ln(1 - p_i).$$

**The problem** (Snell et al. 2024's "compute-optimal" test-time strategy, with samples as
the test-time compute): maximise the expected success rate $\sum_i w_i s_i(k_i) / \sum_i w_i$
subject to an average budget per query, $\sum_i w_i c_i k_i \le B \sum_i w_i$, with $c_i$ the
cost of one sample of class $i$ (1 for a budget in samples; FLOP per sample, generator plus
verifier, for a budget in FLOP), and $k_i \ge 1$: every query gets an answer.

**The method** is `planner.allocate`'s price coordination with one budget: at a price
$\lambda$ per unit of budget the classes decouple, and each class's best response is closed
form, the water-filling level

$$k_i(\lambda) = \max\Bigl(1, \frac{\ln(a q_i / (c_i \lambda))}{q_i}\Bigr),$$

(the stationarity condition $a q_i e^{-q_i k_i} = \lambda c_i$ where the floor does not bind).
The budget's use $\sum_i w_i c_i k_i(e^u)$ is piecewise linear, decreasing and convex in the
log price $u$, so Newton's method on $u$ started below the root (from a level at which every
class would draw at least the budget's average) rises monotonically to it and ends exactly on
the last linear piece; one pass over the classes per step, jitted, so a million classes take
one call. The score is concave in every $k_i$, so the price's optimum is the problem's
(strong duality), and the price is the marginal value of the budget:
$\lambda = d\,\text{score}/dB$. The plan is differentiable (`jax.grad`, `jax.jacfwd`) in
every input: the price by the implicit function theorem on the budget equation, the samples
through their closed form.

**The uniform plan** gives every class the same samples, $k = B\sum_i w_i/\sum_i w_i c_i$
(best-of-$N$); the **efficiency** is the budget the uniform plan needs to reach the adaptive
plan's score, divided by $B$ (Snell et al. report more than 4× for their setting).

A class whose $p_i$ is 0 (never solved) or 1 (always solved) gains nothing from a second
sample and draws one. A class with a weight, pass@1 or cost that is NaN or out of its domain
is `INVALID_INPUT`: left out of the sums, with NaN samples and score.

**References:** Snell, Lee, Xu & Kumar 2024, *Scaling LLM Test-Time Compute Optimally can be
More Effective than Scaling Model Parameters*, arXiv 2408.03314 (difficulty-adaptive
test-time compute, efficiency against best-of-N); Brown et al. 2024, *Large Language
Monkeys*, arXiv 2407.21787 (coverage $1 - (1-p)^k$ of repeated sampling); Everett 1963 and
Boyd & Vandenberghe 2004 §5.5 (prices of a separable concave program).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import betainc
from jaxtyping import Array, ArrayLike, Float, Int

from ._solve import Status

_NEWTON_STEPS = 200
"""Newton steps on the log price (the budget's use is piecewise linear in it, so the method
ends on the last piece after a few steps; the cap only stops a search broken by bad input)."""
_UNIFORM_STEPS = 2000
"""Newton steps of the uniform plan's equal-score budget (monotone from below; a step gains
at least 1/q of the easiest unfinished class, so the cap is reached only far on a plateau)."""


class SamplePlan(eqx.Module):
    r"""Samples per class of queries under one test-time budget (`allocate_samples`).

    **Arguments:**

    - `n_samples`: $k_i$, samples per query of each class (NaN for an invalid class).
    - `score`: $s_i(k_i)$, each class's success rate.
    - `class_status`: each class's `Status`: `OPTIMAL`, or `INVALID_INPUT` (left out).
    - `status`: the plan's `Status`: `OPTIMAL` (budget met to `tol` relative, every class
      stationary to `tol`), `INFEASIBLE` (the budget is below one sample per query),
      `INVALID_INPUT` (no valid class), `NOT_CONVERGED`.
    - `objective`: the expected success rate $\sum_i w_i s_i / \sum_i w_i$.
    - `price`: $\lambda = d\,\text{objective}/dB$, the success rate one more unit of budget
      per query buys (0 when no class can use it).
    - `usage`: the average budget used per query, $\sum_i w_i c_i k_i / \sum_i w_i$.
    - `residual`: $|\text{usage} - B| / B$.
    - `kkt`: the largest relative violation of a class's optimality condition.
    - `uniform_samples`: the uniform plan's samples per query at the same budget.
    - `uniform_score`: the uniform plan's expected success rate.
    - `efficiency`: the budget the uniform plan needs to reach `objective`, over $B$.
    - `iterations`: Newton steps on the price.
    """

    n_samples: Float[Array, " classes"]
    score: Float[Array, " classes"]
    class_status: Int[Array, " classes"]
    status: Int[Array, ""]
    objective: Float[Array, ""]
    price: Float[Array, ""]
    usage: Float[Array, ""]
    residual: Float[Array, ""]
    kkt: Float[Array, ""]
    uniform_samples: Float[Array, ""]
    uniform_score: Float[Array, ""]
    efficiency: Float[Array, ""]
    iterations: Int[Array, ""]


def _success(a: Array, p: Array, q: Array, k: Array) -> Array:
    """$a(1 - e^{-qk}) + (1 - a)p$, exact where $q = \\infty$ ($p = 1$) or $q = 0$."""
    return a * -jnp.expm1(-q * k) + (1.0 - a) * p


@eqx.filter_jit
def _plan(weight: Array, p: Array, cost: Array, budget: Array, accuracy: Array,
          tol: float) -> SamplePlan:
    dtype = p.dtype
    valid = (jnp.isfinite(weight) & (weight > 0) & jnp.isfinite(p) & (p >= 0) & (p <= 1)
             & jnp.isfinite(cost) & (cost > 0))
    w = jnp.where(valid, weight, 0.0)
    c = jnp.where(valid, cost, 1.0)
    pv = jnp.where(valid, p, 0.0)
    q = -jnp.log1p(-pv)
    useful = valid & (q > 0) & jnp.isfinite(q)
    # ln(a q / c), the log price at which a class would draw no samples at all
    level = jnp.where(useful, jnp.log(accuracy * jnp.where(useful, q, 1.0) / c), 0.0)
    qs = jnp.where(useful, q, 1.0)
    total_w = jnp.sum(w)
    spend = budget * total_w            # what the budget allows over all queries
    floor = jnp.sum(w * c)              # one sample per query
    floor_useless = jnp.sum(jnp.where(useful, 0.0, w * c))

    def samples(u):
        return jnp.where(useful, jnp.maximum(1.0, (level - u) / qs), 1.0)

    def excess(u):
        return jnp.sum(w * c * samples(u)) - spend

    def slope(u):
        active = useful & ((level - u) / qs > 1.0)
        return -jnp.sum(jnp.where(active, w * c / qs, 0.0))

    # start where every useful class draws at least the average the useful classes may spend:
    # the use is then at least the budget, below the root of a convex decreasing function
    any_useful = jnp.any(useful)
    useful_floor = floor - floor_useless
    kappa = jnp.maximum(1.0, (spend - floor_useless) / jnp.where(any_useful, useful_floor, 1.0))
    u0 = jnp.min(jnp.where(useful, level - qs * kappa, jnp.inf))
    u0 = jnp.where(any_useful, u0, 0.0)
    u0 = jax.lax.stop_gradient(u0)

    def cond(state):
        u, g, i = state
        return (g > tol * spend) & (i < _NEWTON_STEPS)

    def body(state):
        u, g, i = state
        d = slope(u)
        u = jnp.where(d < 0, u - g / jnp.where(d < 0, d, -1.0), u)
        return u, jnp.where(d < 0, excess(u), -jnp.inf), i + 1

    u_loop, _, iterations = jax.lax.while_loop(
        cond, body, (u0, jax.lax.stop_gradient(excess(u0)), jnp.zeros((), jnp.int32)))
    u_star = jax.lax.stop_gradient(u_loop)
    # one Newton step with live inputs: the value stays u*, the derivative is the implicit
    # function theorem's, du/dθ = -(∂excess/∂θ)/(∂excess/∂u)
    d_star = jax.lax.stop_gradient(slope(u_star))
    binding = any_useful & (d_star < 0)
    u = jnp.where(binding, u_star - excess(u_star) / jnp.where(binding, d_star, -1.0), u_star)
    price = jnp.where(binding, jnp.exp(u), 0.0)
    k = samples(u)
    if_invalid = jnp.full_like(k, jnp.nan)
    score = _success(accuracy, pv, q, k)
    objective = jnp.sum(w * score) / total_w
    usage = jnp.sum(w * c * k) / total_w
    residual = jnp.abs(usage - budget) / budget
    residual = jnp.where(binding, residual, jnp.maximum(usage - budget, 0.0) / budget)
    # optimality: a q e^{-qk} = λ c where k > 1, ≤ λ c where k = 1 (relative to λ c)
    marginal = jnp.where(useful, accuracy * qs * jnp.exp(-qs * k) / c, 0.0)
    scale = jnp.where(binding, price, 1.0)
    gap = jnp.where(k > 1.0, jnp.abs(marginal - price), jnp.maximum(marginal - price, 0.0))
    kkt = jnp.max(jnp.where(valid, gap / scale, 0.0), initial=0.0)

    # the uniform plan, and the budget it needs to reach the adaptive score (Newton from the
    # left on a concave increasing function: monotone)
    k_uniform = spend / jnp.where(floor > 0, floor, 1.0)

    def uniform(kk):
        return jnp.sum(w * _success(accuracy, pv, q, kk)) / total_w

    def uniform_slope(kk):
        return jnp.sum(jnp.where(useful, w * accuracy * qs * jnp.exp(-qs * kk), 0.0)) / total_w

    target = jax.lax.stop_gradient(objective)

    def ucond(state):
        kk, h, i = state
        return (h < -tol * target) & (i < _UNIFORM_STEPS)

    def ubody(state):
        kk, h, i = state
        d = uniform_slope(kk)
        kk = jnp.where(d > 0, kk - h / jnp.where(d > 0, d, 1.0), kk)
        return kk, jnp.where(d > 0, uniform(kk) - target, 0.0), i + 1

    k_uni = jax.lax.stop_gradient(k_uniform)
    k_match, _, _ = jax.lax.while_loop(
        ucond, ubody, (k_uni, jax.lax.stop_gradient(uniform(k_uni)) - target,
                       jnp.zeros((), jnp.int32)))
    k_match = jax.lax.stop_gradient(k_match)
    d_match = jax.lax.stop_gradient(uniform_slope(k_match))
    k_match = jnp.where(d_match > 0,
                        k_match - (uniform(k_match) - objective) / jnp.where(d_match > 0,
                                                                             d_match, 1.0),
                        k_match)
    efficiency = k_match / k_uniform

    n_valid = jnp.sum(valid)
    status = jnp.where(
        n_valid == 0, Status.INVALID_INPUT,
        jnp.where(floor > spend * (1.0 + tol), Status.INFEASIBLE,
                  jnp.where((residual <= tol) & (kkt <= tol), Status.OPTIMAL,
                            Status.NOT_CONVERGED))).astype(jnp.int32)
    ok = status == Status.OPTIMAL
    return SamplePlan(
        n_samples=jnp.where(valid, k, if_invalid),
        score=jnp.where(valid, score, if_invalid),
        class_status=jnp.where(valid, Status.OPTIMAL, Status.INVALID_INPUT).astype(jnp.int32),
        status=status,
        objective=jnp.where(ok, objective, jnp.nan),
        price=jnp.where(ok, price, jnp.nan),
        usage=usage,
        residual=residual,
        kkt=kkt,
        uniform_samples=k_uniform,
        uniform_score=uniform(k_uniform),
        efficiency=jnp.where(ok, efficiency, jnp.nan),
        iterations=iterations,
    )


def allocate_samples(
    pass_at_1: ArrayLike,
    budget: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    cost: ArrayLike | None = None,
    accuracy: ArrayLike = 1.0,
    tol: float | None = None,
    throw: bool = True,
) -> SamplePlan:
    r"""Samples per class of queries that maximise the expected success rate under a budget.

    The problem, the method and the certificate are in the module `planner._testtime` and the
    docs' "Test-time compute" page: water-filling at one price, found by Newton's method on
    the log price.

    **Arguments:**

    - `pass_at_1`: $p_i \in [0, 1]$ per class, the success probability of one sample.
    - `budget`: $B$, the average budget per query: samples (`cost` left out) or FLOP
      (`cost` in FLOP per sample); at least one sample per query.
    - `weight`: $w_i > 0$, each class's share of the queries (default equal; normalised).
    - `cost`: $c_i > 0$, the cost of one sample of each class (default 1: a budget in
      samples).
    - `accuracy`: $a \in (0, 1]$, the verifier's accuracy (1: a perfect verifier, pass@k).
    - `tol`: relative tolerance of the budget and of the classes' optimality; default 1e-12
      in float64, 1e-5 in float32.
    - `throw`: raise unless the plan is `OPTIMAL`.

    **Returns:** a `SamplePlan`, with the uniform best-of-$N$ plan at the same budget and the
    adaptive plan's efficiency against it.

    **Raises:** `ValueError` for a budget or accuracy out of its domain or arrays of
    different lengths (when not traced); with `throw`, an error unless `OPTIMAL`.
    """
    p = jnp.asarray(pass_at_1)
    if not jnp.issubdtype(p.dtype, jnp.floating):
        p = p.astype(jnp.result_type(float))
    dtype = p.dtype
    if p.ndim != 1 or p.shape[0] == 0:
        raise ValueError(f"pass_at_1 must be one non-empty axis of classes, got shape {p.shape}")
    n = p.shape[0]

    def column(x, name, default):
        x = jnp.full((n,), default, dtype) if x is None else jnp.asarray(x, dtype)
        if x.shape not in ((), (n,)):
            raise ValueError(f"{name} must have one value per class ({n}), got shape {x.shape}")
        return jnp.broadcast_to(x, (n,))

    w, c = column(weight, "weight", 1.0), column(cost, "cost", 1.0)
    budget, accuracy = jnp.asarray(budget, dtype), jnp.asarray(accuracy, dtype)
    if budget.shape != () or accuracy.shape != ():
        raise ValueError("budget and accuracy must be scalars")
    if not isinstance(budget, jax.core.Tracer):
        if not (jnp.isfinite(budget) and budget > 0):
            raise ValueError(f"budget must be finite and > 0, got {float(budget)}")
    if not isinstance(accuracy, jax.core.Tracer):
        if not (0 < accuracy <= 1):
            raise ValueError(f"accuracy must be in (0, 1], got {float(accuracy)}")
    if tol is None:
        tol = 1e-12 if dtype == jnp.float64 else 1e-5
    plan = _plan(w, p, c, budget, accuracy, tol)
    if throw:
        plan = eqx.error_if(plan, plan.status != Status.OPTIMAL,
                            "no optimal sample plan: inspect SamplePlan.status "
                            "(allocate_samples with throw=False)")
    return plan


def beta_quantile(alpha: ArrayLike, beta: ArrayLike, level: ArrayLike) -> Array:
    r"""$F^{-1}(\text{level})$ of Beta($\alpha$, $\beta$): bisection on the log-odds of $x$
    against `jax.scipy.special.betainc`, to the last bit (tiny quantiles of small $\alpha$,
    $10^{-100}$ and below, included). Not differentiable (a bisection)."""
    a, b, t = jnp.broadcast_arrays(*(jnp.asarray(v) for v in (alpha, beta, level)))
    dtype = jnp.result_type(a, b, t, float)
    a, b, t = (v.astype(dtype) for v in (a, b, t))
    big = jnp.asarray(720.0 if dtype == jnp.float64 else 100.0, dtype)

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        below = betainc(a, b, jax.nn.sigmoid(mid)) < t
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(0, 2100 if dtype == jnp.float64 else 300, body,
                               (jnp.full_like(t, -big), jnp.full_like(t, big)))
    x = jax.nn.sigmoid(0.5 * (lo + hi))
    return jnp.where(t <= 0, 0.0, jnp.where(t >= 1, 1.0, x))


def difficulty_classes(alpha: ArrayLike, beta: ArrayLike, bins: int
                       ) -> tuple[Float[Array, " bins"], Float[Array, " bins"]]:
    r"""Queries whose per-sample success $p$ is Beta($\alpha$, $\beta$) distributed (a
    `BetaSuccess`, or a `SuccessLink` at a loss), cut into `bins` classes of equal share by
    the quantiles of $p$, hardest first, as Snell et al. 2024 bin questions by difficulty.

    **Returns:** `(weight, pass_at_1)`: each class's share $1/\text{bins}$ and its mean
    per-sample success, $E[p \mid \text{bin}] = \text{bins}\cdot\frac{\alpha}{\alpha+\beta}
    \bigl(I_{x_{j+1}}(\alpha + 1, \beta) - I_{x_j}(\alpha + 1, \beta)\bigr)$ with $x_j$ the
    quantiles. Treating a class as one $p$ is the binning's approximation: within a bin
    $E[1 - (1-p)^k] \le 1 - (1 - E[p])^k$, closer with more bins.
    """
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    a, b = jnp.asarray(alpha), jnp.asarray(beta)
    dtype = jnp.result_type(a, b, float)
    a, b = a.astype(dtype), b.astype(dtype)
    if not isinstance(a, jax.core.Tracer) and not bool(
            (jnp.isfinite(a) & (a > 0) & jnp.isfinite(b) & (b > 0)).all()):
        raise ValueError(f"alpha and beta must be finite and > 0, got {a}, {b}")
    levels = jnp.arange(bins + 1, dtype=dtype) / bins
    edges = beta_quantile(a, b, levels)
    mass = betainc(a + 1.0, b, edges)
    mean = a / (a + b) * (mass[1:] - mass[:-1]) * bins
    return jnp.full((bins,), 1.0 / bins, dtype), jnp.clip(mean, 0.0, 1.0)
