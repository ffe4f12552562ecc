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

from ._alm import descend
from ._solve import Status
from ._techniques.sampling import BetaSuccess, _digamma_diff, _reward_model_score

_NEWTON_STEPS = 200
"""Newton steps on the log price (the budget's use is piecewise linear in it, so the method
ends on the last piece after a few steps; the cap only stops a search broken by bad input)."""
_CLASS_STEPS = 200
"""Safeguarded Newton steps of a Beta class's best response (bisection when Newton leaves the
bracket: at most about 60 halvings of the bracket of log k in float64)."""
_LOG_MAX_SAMPLES = 80.0
"""The largest log samples per query a Beta class's response may reach (e^80, 5.5e34)."""
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


class _Point(eqx.Module):
    """Classes of one per-sample success $p_i$ each: failure $e^{-q_i k}$, $q_i = -\\ln(1-p_i)$;
    the best response at a price is closed form."""

    p: Array

    def valid(self):
        return jnp.isfinite(self.p) & (self.p >= 0) & (self.p <= 1)

    def clean(self, valid):
        return _Point(jnp.where(valid, self.p, 0.0))

    def q(self):
        return -jnp.log1p(-self.p)

    def useful(self):
        q = self.q()
        return (q > 0) & jnp.isfinite(q)

    def failure(self, k):
        return jnp.exp(-self.q() * k)

    def pass_at_1(self):
        return self.p

    def log_marginal(self, k):
        """$\\log(-d\\,\\text{failure}/dk)$ where useful (0 elsewhere)."""
        useful, q = self.useful(), self.q()
        qs = jnp.where(useful, q, 1.0)
        return jnp.where(useful, jnp.log(qs) - qs * k, 0.0)

    def response(self, u, log_a_c):
        """$k_i = \\max(1, (\\ln(a q_i / c_i) - u)/q_i)$."""
        useful = self.useful()
        qs = jnp.where(useful, self.q(), 1.0)
        level = jnp.where(useful, log_a_c + jnp.log(qs), 0.0)
        return jnp.where(useful, jnp.maximum(1.0, (level - u) / qs), 1.0)


class _Beta(eqx.Module):
    """Classes whose questions' per-sample success is Beta($\\alpha_i$, $\\beta_i$)
    distributed: failure $B(\\alpha, \\beta + k)/B(\\alpha, \\beta)$ (`BetaSuccess`); the best
    response at a price solves each class's optimality condition by safeguarded Newton steps in
    $\\log k$."""

    alpha: Array
    beta: Array

    def valid(self):
        return (jnp.isfinite(self.alpha) & (self.alpha > 0) & jnp.isfinite(self.beta)
                & (self.beta > 0))

    def clean(self, valid):
        return _Beta(jnp.where(valid, self.alpha, 1.0), jnp.where(valid, self.beta, 1.0))

    def useful(self):
        return jnp.ones(self.alpha.shape, bool)

    def failure(self, k):
        return jnp.exp(BetaSuccess(self.alpha, self.beta).log_failure(k))

    def pass_at_1(self):
        return self.alpha / (self.alpha + self.beta)

    def log_marginal(self, k):
        log_f = BetaSuccess(self.alpha, self.beta).log_failure(k)
        # -d log F/dk = ψ(α + β + k) - ψ(β + k) > 0, without cancelling
        return log_f + jnp.log(-_digamma_diff(self.beta + k, self.alpha))

    def response(self, u, log_a_c):
        def h(t):  # decreasing in t = log k
            return log_a_c + self.log_marginal(jnp.exp(t)) - u

        def h_t(t):
            return jax.jvp(h, (t,), (jnp.ones_like(t),))[1]

        top = jnp.full_like(u + log_a_c, _LOG_MAX_SAMPLES)
        t0 = jnp.zeros_like(top)
        one = h(t0) <= 0  # the first sample's marginal is already below the price
        close = 64 * jnp.finfo(top.dtype).eps * (1.0 + jnp.abs(u) + jnp.abs(log_a_c))

        def cond(state):
            lo, hi, t, done, i = state
            return jnp.any(~one & ~done) & (i < _CLASS_STEPS)

        def body(state):
            lo, hi, t, done, i = state
            value = h(t)
            done = jnp.abs(value) <= close
            lo, hi = jnp.where(value > 0, t, lo), jnp.where(value > 0, hi, t)
            step = t - value / jnp.minimum(h_t(t), -1e-300)
            step = jnp.where((step >= lo) & (step <= hi), step, 0.5 * (lo + hi))
            return lo, hi, jnp.where(done, t, step), done, i + 1

        t_star = jax.lax.stop_gradient(jax.lax.while_loop(
            cond, body, (t0, top, jnp.ones_like(top), one, jnp.zeros((), jnp.int32)))[2])
        t_star = jnp.where(one, 0.0, t_star)
        # one Newton step with live inputs: the value stays, the derivative is implicit
        slope = jax.lax.stop_gradient(h_t(t_star))
        t = jnp.where(one, 0.0, t_star - h(t_star) / jnp.where(one, -1.0, slope))
        return jnp.exp(t)


def _success(classes, a: Array, k: Array) -> Array:
    """$a(1 - \\text{failure}(k)) + (1 - a)\\,\\text{pass@1}$: best-of-$k$ by a verifier of
    accuracy $a$, the form of `RepeatedSampling`'s `"reward_model"` selection."""
    return _reward_model_score(a, 1.0 - classes.failure(k), classes.pass_at_1())


@eqx.filter_jit
def _plan(weight: Array, classes, cost: Array, budget: Array, accuracy: Array,
          tol: float) -> SamplePlan:
    valid = classes.valid() & jnp.isfinite(weight) & (weight > 0) & jnp.isfinite(cost) & (
        cost > 0)
    classes = classes.clean(valid)
    w = jnp.where(valid, weight, 0.0)
    c = jnp.where(valid, cost, 1.0)
    useful = valid & classes.useful()
    log_a_c = jnp.log(accuracy) - jnp.log(c)
    total_w = jnp.sum(w)
    spend = budget * total_w            # what the budget allows over all queries
    floor = jnp.sum(w * c)              # one sample per query
    floor_useless = jnp.sum(jnp.where(useful, 0.0, w * c))

    def samples(u):
        return jnp.where(useful, classes.response(u, log_a_c), 1.0)

    def excess(u):
        return jnp.sum(w * c * samples(u)) - spend

    def excess_slope(u):
        return jax.jvp(excess, (u,), (jnp.ones_like(u),))

    # the log price lies between where every useful class draws at least the average the
    # useful classes may spend (use >= budget) and where each draws one (use <= budget)
    any_useful = jnp.any(useful)
    kappa = jnp.maximum(1.0, (spend - floor_useless)
                        / jnp.where(any_useful, floor - floor_useless, 1.0))
    at_kappa = log_a_c + classes.log_marginal(jnp.broadcast_to(kappa, w.shape))
    at_one = log_a_c + classes.log_marginal(jnp.ones_like(w))
    lo0 = jax.lax.stop_gradient(jnp.min(jnp.where(useful, at_kappa, jnp.inf)))
    hi0 = jax.lax.stop_gradient(jnp.max(jnp.where(useful, at_one, -jnp.inf)))
    lo0, hi0 = jnp.where(any_useful, lo0, 0.0), jnp.where(any_useful, hi0, 0.0)

    def cond(state):
        lo, hi, u, done, i = state
        return ~done & (hi - lo > 0) & (i < _NEWTON_STEPS)

    def body(state):
        lo, hi, u, done, i = state
        g, d = excess_slope(u)
        done = jnp.abs(g) <= tol * spend
        lo, hi = jnp.where(g > 0, u, lo), jnp.where(g > 0, hi, u)
        step = u - g / jnp.minimum(d, -1e-300)
        step = jnp.where((step >= lo) & (step <= hi), step, 0.5 * (lo + hi))
        return lo, hi, jnp.where(done, u, step), done, i + 1

    start = (lo0, hi0, lo0, jnp.asarray(False), jnp.zeros((), jnp.int32))
    _, _, u_loop, _, iterations = jax.lax.while_loop(cond, body, jax.lax.stop_gradient(start))
    u_star = jax.lax.stop_gradient(u_loop)
    # one Newton step with live inputs: the value stays u*, the derivative is the implicit
    # function theorem's, du/dθ = -(∂excess/∂θ)/(∂excess/∂u)
    d_star = jax.lax.stop_gradient(excess_slope(u_star)[1])
    binding = any_useful & (d_star < 0)
    u = jnp.where(binding, u_star - excess(u_star) / jnp.where(binding, d_star, -1.0), u_star)
    price = jnp.where(binding, jnp.exp(u), 0.0)
    k = samples(u)
    if_invalid = jnp.full_like(k, jnp.nan)
    score = _success(classes, accuracy, k)
    objective = jnp.sum(w * score) / total_w
    usage = jnp.sum(w * c * k) / total_w
    residual = jnp.abs(usage - budget) / budget
    residual = jnp.where(binding, residual, jnp.maximum(usage - budget, 0.0) / budget)
    # optimality: a (-dF/dk) = λ c where k > 1, <= λ c where k = 1 (relative to λ c)
    marginal = jnp.where(useful, jnp.exp(log_a_c + classes.log_marginal(k)), 0.0)
    scale = jnp.where(binding, price, 1.0)
    gap = jnp.where(k > 1.0, jnp.abs(marginal - price), jnp.maximum(marginal - price, 0.0))
    kkt = jnp.max(jnp.where(valid, gap / scale, 0.0), initial=0.0)

    # the uniform plan, and the budget it needs to reach the adaptive score (Newton from the
    # left on a concave increasing function: monotone)
    k_uniform = spend / jnp.where(floor > 0, floor, 1.0)

    def uniform(kk):
        return jnp.sum(w * _success(classes, accuracy, kk)) / total_w

    def uniform_slope(kk):
        return jnp.sum(jnp.where(useful, w * jnp.exp(jnp.log(accuracy)
                                                      + classes.log_marginal(kk)), 0.0)) / total_w

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
    classes: ArrayLike | BetaSuccess,
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

    - `classes`: per class, either $p_i \in [0, 1]$, the success probability of one sample
      (an array: each class's questions alike), or a `BetaSuccess` whose `alpha` and `beta`
      are arrays (each class's questions with Beta-distributed success, its failure
      $B(\alpha_i, \beta_i + k)/B(\alpha_i, \beta_i)$ falling as a power law in $k$; each
      class's best response is then found by safeguarded Newton steps, not in closed form).
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
    if isinstance(classes, BetaSuccess):
        alpha, beta = jnp.broadcast_arrays(classes.alpha, classes.beta)
        dtype = jnp.result_type(alpha, beta, float)
        family = _Beta(alpha.astype(dtype), beta.astype(dtype))
        first = family.alpha
    else:
        p = jnp.asarray(classes)
        dtype = p.dtype if jnp.issubdtype(p.dtype, jnp.floating) else jnp.result_type(float)
        family = _Point(p.astype(dtype))
        first = family.p
    if first.ndim != 1 or first.shape[0] == 0:
        raise ValueError(f"classes must be one non-empty axis of classes, got shape "
                         f"{first.shape}")
    n = first.shape[0]

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
    plan = _plan(w, family, c, budget, accuracy, tol)
    if throw:
        plan = eqx.error_if(plan, plan.status != Status.OPTIMAL,
                            "no optimal sample plan: inspect SamplePlan.status "
                            "(allocate_samples with throw=False)")
    return plan


def beta_quantile(alpha: ArrayLike, beta: ArrayLike, level: ArrayLike) -> Array:
    r"""$F^{-1}(\text{level})$ of Beta($\alpha$, $\beta$), by bisection on
    $y = \operatorname{logit} p$ against `jax.scipy.special.betainc`.

    Bisecting $y$ on $[-750, 750]$ instead of $p$ on $[0, 1]$ keeps relative precision in both
    tails: near 0 (where $p \approx (u\,\alpha B(\alpha, \beta))^{1/\alpha}$ falls below
    $10^{-40}$ for small $\alpha$) and in $1 - p$ near 1. Each step evaluates the side of the
    distribution its midpoint lies on: $F(p) < u$ for $p < 1/2$, and
    $1 - F(p) = I_{1-p}(\beta, \alpha) > 1 - u$ above, where $1 - p$ is exact and $1 - F$ is
    never formed. 80 steps: $1500/2^{80} < 1.3 \times 10^{-21}$, below the resolution of
    $\operatorname{logit} p$ in float64. Broadcasts; not differentiable (a bisection).
    """
    a, b, u = jnp.broadcast_arrays(*(jnp.asarray(v) for v in (alpha, beta, level)))
    dtype = jnp.result_type(a, b, u, float)
    a, b, u = (v.astype(dtype) for v in (a, b, u))
    edge = 750.0 if dtype == jnp.float64 else 100.0

    def step(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        below = jnp.where(mid < 0.0, betainc(a, b, jax.nn.sigmoid(mid)) < u,
                          betainc(b, a, jax.nn.sigmoid(-mid)) > 1.0 - u)
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(0, 80, step, (jnp.full_like(u, -edge), jnp.full_like(u, edge)))
    p = jax.nn.sigmoid(0.5 * (lo + hi))
    return jnp.where(u <= 0, 0.0, jnp.where(u >= 1, 1.0, p))


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


class JointPlan(eqx.Module):
    r"""One model for every class of queries, trained and sampled under one lifetime compute
    budget (`train_to_test`).

    **Arguments:**

    - `n_params`, `n_tokens`: the model's parameters and training tokens.
    - `loss`: its pretraining loss.
    - `samples`: the classes' `SamplePlan` at that model (`objective`: the expected success
      rate; `usage`: the mean samples per query; `price`: the success one more sample per
      query would buy at this model).
    - `train_flops`, `inference_flops`: $6ND$ and the lifetime inference FLOP
      $2N\,T\,\bar k$.
    - `inference_share`: the share of the budget spent at test time.
    - `status`: `OPTIMAL` when the samples' plan is and the reduced gradient in the model's two
      variables is below `tol`.
    - `gradient`: the largest component of the reduced gradient.
    - `steps`: evaluations of the objective and its gradient the optimiser used.
    """

    n_params: Float[Array, ""]
    n_tokens: Float[Array, ""]
    loss: Float[Array, ""]
    samples: SamplePlan
    train_flops: Float[Array, ""]
    inference_flops: Float[Array, ""]
    inference_share: Float[Array, ""]
    status: Int[Array, ""]
    gradient: Float[Array, ""]
    steps: Int[Array, ""]


def _joint_model(x, law, link, offsets, compute, demand):
    """N, D, the classes' Beta success and the mean samples from the outer variables
    x = (z, v): σ(z) the budget's inference share, 1 + e^v the mean samples per query."""
    share, mean_samples = jax.nn.sigmoid(x[0]), 1.0 + jnp.exp(x[1])
    n = share * compute / (2.0 * demand * mean_samples)
    d = (1.0 - share) * compute / (6.0 * n)
    reducible = law.loss(n, d) - law.E
    z = link.intercept + offsets + link.slope * jnp.log(reducible)
    alpha = link.concentration * jax.nn.sigmoid(z)
    beta = link.concentration * jax.nn.sigmoid(-z)
    return n, d, _Beta(alpha, beta), mean_samples, share


def _joint_inner(x, law, link, offsets, w, compute, demand):
    _, _, classes, mean_samples, _ = _joint_model(x, law, link, offsets, compute, demand)
    tol = 1e-12 if w.dtype == jnp.float64 else 1e-5
    return _plan(w, classes, jnp.ones_like(w), mean_samples, jnp.ones((), w.dtype), tol)


def _joint_value(x, law, link, offsets, w, compute, demand):
    return -_joint_inner(x, law, link, offsets, w, compute, demand).objective


_joint_value_and_grad = eqx.filter_jit(jax.value_and_grad(_joint_value))
"""The negated expected success rate and its exact gradient in the outer variables, compiled
once per number of classes and dtype."""


def train_to_test(
    law,
    link,
    offsets: ArrayLike,
    compute: ArrayLike,
    inference_demand: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    optimizer=None,
    max_steps: int = 200,
    tol: float | None = None,
    start: tuple[float, float] = (0.0, 1.0),
    throw: bool = True,
) -> JointPlan:
    r"""The model and the samples per class that maximise the expected success rate of a
    population of queries under one lifetime compute budget: train-to-test jointly.

    One model of $N$ parameters trained on $D$ tokens serves every class (the shared
    variables of `allocate`'s shared model). Class $i$, a share $w_i$ of the queries, has
    questions whose per-sample success is Beta distributed as the `link` gives at the model's
    reducible loss, shifted by the class's difficulty $\delta_i$ in log-odds:
    $\operatorname{logit}\mu_i = \theta_0 + \delta_i + \theta_1\log(L(N, D) - E)$,
    $p \sim \mathrm{Beta}(\mu_i\kappa, (1 - \mu_i)\kappa)$ (`SuccessLink`), so every class
    improves with the model along the link and its pass@k grows as a power law in $k$, never
    solved by brute force. The budget counts training once and every sample of every query:
    $6ND + 2N\,T\,\bar k = C$, $T$ the inference demand (tokens of one sample for every
    query), $\bar k = \sum_i w_i k_i / \sum_i w_i$.

    Samples per class follow `allocate_samples` at the model's classes (a perfect verifier).
    The model is the outer problem in two variables: the budget's inference share
    $\sigma(z)$ and the mean samples $1 + e^v$; then $N = \sigma(z) C / (2T\bar k)$ and
    $D = (1 - \sigma(z)) C / (6N)$, so every point spends the budget with at least one sample
    per query. They are found by optax's L-BFGS (or any optax `optimizer`) on the exact
    reduced gradient, the inner price and samples differentiated by the implicit function
    theorem, as `allocate`'s shared model is.

    **Arguments:**

    - `law`: a `Chinchilla` loss law.
    - `link`: a `SuccessLink` (`SuccessLink.codex2021()`).
    - `offsets`: $\delta_i$, each class's difficulty in log-odds (0: the link's mean; negative:
      harder).
    - `compute`: $C$, the lifetime budget in FLOP.
    - `inference_demand`: $T$, tokens of one sample for every query over the lifetime.
    - `weight`: each class's share of the queries (default equal).
    - `optimizer`: an optax transformation; default: optax's L-BFGS direction with a
      backtracking line search (`planner._alm.descend`), as `allocate`'s shared model.
    - `max_steps`, `tol`: its step limit and the reduced gradient's tolerance (default
      1e-9 in float64, 1e-4 in float32).
    - `start`: $(z, v)$ to start from.
    - `throw`: raise unless `OPTIMAL`.

    **Returns:** a `JointPlan`.

    **References:** Roberts et al. 2026, *Test-Time Scaling Makes Overtraining
    Compute-Optimal* (arXiv 2604.01411): with test-time samples counted, the optimum moves to
    smaller, longer-trained models; Snell et al. 2024 (difficulty-adaptive samples).
    """
    offsets = jnp.asarray(offsets)
    if not jnp.issubdtype(offsets.dtype, jnp.floating):
        offsets = offsets.astype(jnp.result_type(float))
    dtype = offsets.dtype
    if offsets.ndim != 1 or offsets.shape[0] == 0:
        raise ValueError(f"offsets must be one non-empty axis of classes, got {offsets.shape}")
    n = offsets.shape[0]
    w = jnp.ones((n,), dtype) if weight is None else jnp.broadcast_to(
        jnp.asarray(weight, dtype), (n,))
    compute, demand = jnp.asarray(compute, dtype), jnp.asarray(inference_demand, dtype)
    for name, value in (("compute", compute), ("inference_demand", demand)):
        if value.shape != () or not bool(jnp.isfinite(value) & (value > 0)):
            raise ValueError(f"{name} must be one finite number > 0, got {value}")
    if not bool(jnp.all(jnp.isfinite(offsets)) & jnp.all(jnp.isfinite(w) & (w > 0))):
        raise ValueError("offsets must be finite and weight finite and > 0")
    if tol is None:
        tol = 1e-9 if dtype == jnp.float64 else 1e-4
    link = jax.tree.map(lambda v: jnp.asarray(v, dtype), link)
    args = (law, link, offsets, w, compute, demand)
    x, steps = descend(lambda x: _joint_value_and_grad(x, *args),
                       lambda x: _joint_value(x, *args), jnp.asarray(start, dtype),
                       optimizer=optimizer, steps=max_steps, tol=tol)
    g = _joint_value_and_grad(x, *args)[1]
    plan = eqx.filter_jit(_joint_inner)(x, *args)
    n_params, n_tokens, _, _, share = _joint_model(x, law, link, offsets, compute, demand)
    gradient = jnp.max(jnp.abs(g))
    status = jnp.where(plan.status != Status.OPTIMAL, plan.status,
                       jnp.where(gradient <= tol, Status.OPTIMAL, Status.NOT_CONVERGED)
                       ).astype(jnp.int32)
    joint = JointPlan(
        n_params=n_params, n_tokens=n_tokens, loss=law.loss(n_params, n_tokens),
        samples=plan, train_flops=6.0 * n_params * n_tokens,
        inference_flops=2.0 * n_params * demand * plan.usage, inference_share=share,
        status=status, gradient=gradient, steps=jnp.asarray(steps))
    if throw:
        joint = eqx.error_if(joint, joint.status != Status.OPTIMAL,
                             "no optimal joint plan: inspect JointPlan.status "
                             "(train_to_test with throw=False)")
    return joint
