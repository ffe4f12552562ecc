"""Fitting loss laws to training runs, with bootstrap uncertainty, and planning under it.

The published method (Hoffmann et al. 2022, App. D.2; Besiroglu et al. 2024): minimise the
summed Huber loss ($\\delta = 10^{-3}$) of log-loss residuals, with the law written in
log-sum-exp form, by quasi-Newton from a grid of starting points, and keep the best optimum.
Here every start is one member of a single batch (`vmap` over starts, `jit`), and so is every
bootstrap resample: a resample is a vector of multinomial counts used as weights, so all
resamples share one shape and one compiled solve.
"""

from __future__ import annotations

import abc
import functools
import itertools
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from ._checks import check_finite, check_positive
from ._laws import AbstractLossLaw, Chinchilla
from ._table import atomic_write

COEFFICIENTS: tuple[str, ...] = ("E", "A", "B", "alpha", "beta")
"""Names of the `Chinchilla` coefficients, in the order FIT.json and the tables use."""

HUBER_DELTA: float = 1e-3
r"""Huber threshold $\delta$ on log-loss residuals: Hoffmann et al. 2022, App. D.2 ("We use
$\delta = 10^{-3}$"), kept by Besiroglu et al. 2024."""


# ======================================================================================= forms
class AbstractLawForm(eqx.Module):
    r"""A parametric loss law written for fitting: unconstrained coefficients $\theta$.

    A form maps a vector $\theta$ (no bounds, so plain quasi-Newton applies) to the log of the
    predicted loss and to the law it stands for. Any law with this interface can be fitted by
    [`fit`][planner.fit].

    Concrete forms set `names`, the law's coefficient names (reported by fits and written to
    FIT.json), and implement:

    - `log_loss(theta, log_n_params, log_n_tokens)`: $\log \hat L$, finite for any finite input.
    - `law(theta)`: the law (array fields, so it can be built under `vmap`).
    - `theta(law)`: the inverse of `law`.
    - `starts()`: the default grid of starting points, shape `(n_starts, n_theta)`.
    """

    names: ClassVar[tuple[str, ...]]

    @abc.abstractmethod
    def log_loss(
        self,
        theta: Float[Array, " p"],
        log_n_params: Float[Array, " run"],
        log_n_tokens: Float[Array, " run"],
    ) -> Float[Array, " run"]:
        """Log of the predicted loss of every run."""

    @abc.abstractmethod
    def law(self, theta: Float[Array, " p"]) -> AbstractLossLaw:
        """The law with coefficients `theta`."""

    @abc.abstractmethod
    def theta(self, law: AbstractLossLaw) -> Float[Array, " p"]:
        """The unconstrained coefficients of `law`."""

    @abc.abstractmethod
    def starts(self) -> Float[Array, "start p"]:
        """The default grid of starting points."""


def start_grid(*axes: Sequence[float]) -> Float[Array, "start p"]:
    """Every combination of the values on each axis, one row per starting point.

    **Arguments:**

    - `*axes`: one sequence of values per coefficient of $\\theta$, in $\\theta$'s order.

    **Returns:** an array of shape `(prod(len(axis)), len(axes))`.
    """
    if not axes or any(len(axis) == 0 for axis in axes):
        raise ValueError("start_grid needs at least one axis and no empty axis")
    return jnp.asarray(list(itertools.product(*[[float(v) for v in axis] for axis in axes])))


class ChinchillaForm(AbstractLawForm):
    r"""The Chinchilla law in the log-sum-exp form it is fitted in.

    $$\log \hat L(N, D) = \mathrm{LSE}(a - \alpha \log N,\; b - \beta \log D,\; e)$$

    with $\theta = (a, b, e, \alpha, \beta)$ and $A = e^a$, $B = e^b$, $E = e^e$, so that every
    $\theta$ is a valid law with $A, B, E > 0$.

    **References:**

    Hoffmann et al. 2022, *Training Compute-Optimal Large Language Models*, App. D.2, eq. (11);
    Besiroglu et al. 2024, *Chinchilla Scaling: A replication attempt* (arXiv 2404.10102).
    """

    names: ClassVar[tuple[str, ...]] = COEFFICIENTS

    def log_loss(self, theta, log_n_params, log_n_tokens):
        a, b, e, alpha, beta = theta[0], theta[1], theta[2], theta[3], theta[4]
        u = a - alpha * log_n_params
        v = b - beta * log_n_tokens
        # Max-shifted log-sum-exp: the shift carries no gradient, the softmax weights do.
        m = jax.lax.stop_gradient(jnp.maximum(jnp.maximum(u, v), e))
        return m + jnp.log(jnp.exp(u - m) + jnp.exp(v - m) + jnp.exp(e - m))

    def law(self, theta) -> Chinchilla:
        return Chinchilla(
            E=jnp.exp(theta[2]),
            A=jnp.exp(theta[0]),
            B=jnp.exp(theta[1]),
            alpha=theta[3],
            beta=theta[4],
        )

    def theta(self, law: Chinchilla) -> Float[Array, " 5"]:
        return jnp.stack([jnp.log(law.A), jnp.log(law.B), jnp.log(law.E), law.alpha, law.beta])

    def starts(self) -> Float[Array, "4500 5"]:
        r"""Hoffmann et al.'s grid: $a, b \in \{0, 5, \dots, 25\}$, $e \in \{-1, -0.5, \dots, 1\}$,
        $\alpha, \beta \in \{0, 0.5, \dots, 2\}$; 4,500 starts (Hoffmann et al. 2022, App. D.2)."""
        ab = [5.0 * i for i in range(6)]
        e = [-1.0 + 0.5 * i for i in range(5)]
        exponent = [0.5 * i for i in range(5)]
        return start_grid(ab, ab, e, exponent, exponent)


# =================================================================================== objective
def huber(residual: ArrayLike, delta: ArrayLike = HUBER_DELTA) -> Float[Array, ...]:
    r"""The Huber loss of a residual.

    $$h_\delta(r) = \begin{cases} r^2/2 & |r| \le \delta \\
        \delta(|r| - \delta/2) & |r| > \delta \end{cases}$$

    **References:** Huber 1964, *Robust Estimation of a Location Parameter*.
    """
    r = jnp.asarray(residual)
    a = jnp.abs(r)
    return jnp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def huber_objective(
    theta: Float[Array, " p"],
    form: AbstractLawForm,
    log_n_params: Float[Array, " run"],
    log_n_tokens: Float[Array, " run"],
    log_loss: Float[Array, " run"],
    weights: Float[Array, " run"],
    delta: ArrayLike = HUBER_DELTA,
) -> Float[Array, ""]:
    r"""The fitting objective: summed Huber loss of log-loss residuals.

    $$J(\theta) = \sum_i w_i\, h_\delta\big(\log \hat L_\theta(N_i, D_i) - \log L_i\big)$$

    Weights are 1 for a plain fit and multinomial counts for a bootstrap resample.

    **References:** Hoffmann et al. 2022, App. D.2, eq. (11).
    """
    residual = form.log_loss(theta, log_n_params, log_n_tokens) - log_loss
    return jnp.sum(weights * huber(residual, delta))


# ======================================================================================= BFGS
class _BFGSState(eqx.Module):
    x: Array
    value: Array
    grad: Array
    inv_hessian: Array
    direction: Array
    step_size: Array
    fresh: Array
    stalled: Array
    n_steps: Array


def _first_step(grad):
    norm = jnp.sqrt(jnp.sum(grad * grad))
    return jnp.minimum(1.0, 1.0 / jnp.maximum(norm, jnp.finfo(grad.dtype).tiny))


def _bfgs(fn, x0, gtol, max_steps: int):
    """Dense BFGS with a backtracking Armijo search, one trial point per iteration.

    No inner line-search loop: a rejected trial shrinks the step for the next iteration. Under
    `vmap` every member then costs exactly one objective evaluation per iteration, instead of
    each iteration waiting for the slowest member's line search.
    """
    value_and_grad = jax.value_and_grad(fn)
    dtype = x0.dtype
    eye = jnp.eye(x0.shape[0], dtype=dtype)
    eps = jnp.finfo(dtype).eps
    f0, g0 = value_and_grad(x0)
    init = _BFGSState(
        x=x0,
        value=f0,
        grad=g0,
        inv_hessian=eye,
        direction=-g0,
        step_size=_first_step(g0),
        fresh=jnp.array(True),
        stalled=jnp.array(False),
        n_steps=jnp.array(0),
    )

    def running(s: _BFGSState):
        return (
            (s.n_steps < max_steps)
            & (jnp.max(jnp.abs(s.grad)) > gtol)
            & ~s.stalled
            & jnp.isfinite(s.value)
        )

    def body(s: _BFGSState) -> _BFGSState:
        x, f, g, h, d, t = s.x, s.value, s.grad, s.inv_hessian, s.direction, s.step_size
        trial = x + t * d
        ft, gt = value_and_grad(trial)
        slope = jnp.dot(g, d)
        accept = jnp.isfinite(ft) & jnp.all(jnp.isfinite(gt)) & (ft <= f + 1e-4 * t * slope)

        # BFGS update, skipped when the curvature condition fails (s.y not clearly > 0).
        sk = trial - x
        yk = gt - g
        sy = jnp.dot(sk, yk)
        curved = sy > jnp.sqrt(eps) * jnp.sqrt(jnp.dot(sk, sk) * jnp.dot(yk, yk))
        safe_sy = jnp.where(curved, sy, 1.0)
        # Nocedal & Wright (6.20): scale the initial matrix before the first update.
        h0 = jnp.where(s.fresh & curved, (safe_sy / jnp.maximum(jnp.dot(yk, yk), eps)) * eye, h)
        rho = jnp.where(curved, 1.0 / safe_sy, 0.0)
        hy = h0 @ yk
        yhy = jnp.dot(yk, hy)
        update = (
            h0
            - rho * (jnp.outer(hy, sk) + jnp.outer(sk, hy))
            + (rho * rho * yhy + rho) * jnp.outer(sk, sk)
        )
        h_new = jnp.where(curved, update, h0)
        d_new = -(h_new @ gt)
        descent = jnp.dot(gt, d_new) < 0
        h_new = jnp.where(descent, h_new, eye)
        d_new = jnp.where(descent, d_new, -gt)

        # A step below the floating-point resolution of x: restart from steepest descent,
        # or give up if that was already the direction.
        tiny = t * jnp.sqrt(jnp.dot(d, d)) <= eps * (1.0 + jnp.sqrt(jnp.dot(x, x)))
        reset = ~accept & tiny
        # Backtrack by safeguarded quadratic interpolation.
        denom = ft - f - slope * t
        t_quad = -slope * t * t / (2.0 * jnp.where(denom > 0, denom, 1.0))
        t_quad = jnp.where(
            (denom > 0) & jnp.isfinite(ft), jnp.clip(t_quad, 0.1 * t, 0.5 * t), 0.1 * t
        )

        return _BFGSState(
            x=jnp.where(accept, trial, x),
            value=jnp.where(accept, ft, f),
            grad=jnp.where(accept, gt, g),
            inv_hessian=jnp.where(accept, h_new, jnp.where(reset, eye, h)),
            direction=jnp.where(accept, d_new, jnp.where(reset, -g, d)),
            step_size=jnp.where(accept, jnp.ones_like(t), jnp.where(reset, _first_step(g), t_quad)),
            fresh=jnp.where(accept, s.fresh & ~curved, reset | s.fresh),
            stalled=reset & s.fresh,
            n_steps=s.n_steps + 1,
        )

    return jax.lax.while_loop(running, body, init)


class MultiStartBFGS(eqx.Module):
    """Configuration of the batched multi-start quasi-Newton fit.

    Every start runs BFGS for up to `max_steps` iterations as one batch; the `n_polish` best
    continue (fresh BFGS) for up to `polish_steps` more, again as one batch, and the best of
    those is the fit. A member stops when its gradient's largest entry is at most
    `rtol` × δ × Σw (δ the Huber threshold, Σw the number of runs): $\\delta \\sum w$ bounds the
    gradient with respect to $a$, $b$, $e$. `rtol` defaults to
    $\\max(10^{-6}, \\sqrt{\\varepsilon})$ for the floating-point type (so $10^{-6}$ in float64,
    where the Chinchilla fit's coefficients then agree to about $10^{-8}$ with a tolerance 100
    times tighter).

    **Arguments:**

    - `max_steps`: iterations for every start.
    - `n_polish`: how many of the best starts are polished.
    - `polish_steps`: iterations of the polishing pass (and of a solve from few starts).
    - `rtol`: relative gradient tolerance, or `None` for the default above.
    """

    max_steps: int = eqx.field(static=True, default=100)
    n_polish: int = eqx.field(static=True, default=16)
    polish_steps: int = eqx.field(static=True, default=500)
    rtol: float | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if self.max_steps < 1 or self.polish_steps < 1 or self.n_polish < 1:
            raise ValueError("max_steps, n_polish and polish_steps must be >= 1")
        if self.rtol is not None and not self.rtol > 0:
            raise ValueError("rtol must be > 0")


class HuberFitSolution(eqx.Module):
    """The best optimum of a multi-start fit of one data set (one set of weights).

    **Arguments:**

    - `theta`: the best coefficients found, in the form's unconstrained parametrisation.
    - `objective`: the summed (weighted) Huber loss there.
    - `grad_norm`: Euclidean norm of the objective's gradient there.
    - `converged`: whether the gradient met the tolerance.
    - `n_steps`: iterations the polishing pass took for this optimum.
    - `start_objective`: the objective each start reached in the first pass.
    - `polish_objective`: the objective each polished start reached.
    """

    theta: Float[Array, " p"]
    objective: Float[Array, ""]
    grad_norm: Float[Array, ""]
    converged: Bool[Array, ""]
    n_steps: Int[Array, ""]
    start_objective: Float[Array, " start"]
    polish_objective: Float[Array, " polish"]


def huber_fit(
    form: AbstractLawForm,
    starts: Float[Array, "start p"],
    n_params: Float[Array, " run"],
    n_tokens: Float[Array, " run"],
    loss: Float[Array, " run"],
    weights: Float[Array, " run"] | None = None,
    huber_delta: ArrayLike = HUBER_DELTA,
    solver: MultiStartBFGS = MultiStartBFGS(),
) -> HuberFitSolution:
    r"""Minimise the summed Huber loss from every start at once and keep the best optimum.

    Pure and jittable: batch over data sets or bootstrap weights with `jax.vmap`.

    **Arguments:**

    - `form`: the law's parametrisation, e.g. `ChinchillaForm()`.
    - `starts`: starting points, shape `(n_starts, n_theta)`, in the form's parametrisation.
    - `n_params`, `n_tokens`, `loss`: one entry per run, all > 0.
    - `weights`: per-run weights (bootstrap counts); `None` for ones.
    - `huber_delta`: the Huber threshold $\delta$ on log-loss residuals.
    - `solver`: iteration counts and tolerance.

    **Returns:** a [`HuberFitSolution`][planner.HuberFitSolution].

    **References:** Hoffmann et al. 2022, App. D.2.
    """
    # Weights and δ always enter as arrays of the data's dtype, so that plain fits, bootstrap
    # refits and new values of δ share one compiled solve per shape.
    loss = jnp.asarray(loss)
    dtype = loss.dtype
    weights = jnp.ones_like(loss) if weights is None else jnp.asarray(weights, dtype=dtype)
    return _huber_fit(
        form,
        jnp.asarray(starts, dtype=dtype),
        jnp.asarray(n_params, dtype=dtype),
        jnp.asarray(n_tokens, dtype=dtype),
        loss,
        weights,
        jnp.asarray(huber_delta, dtype=dtype),
        solver,
    )


@eqx.filter_jit
def _huber_fit(form, starts, n_params, n_tokens, loss, weights, delta, solver):
    n_params = check_positive(n_params, "n_params")
    n_tokens = check_positive(n_tokens, "n_tokens")
    loss = check_positive(loss, "loss")
    dtype = loss.dtype
    log_n, log_d, log_l = jnp.log(n_params), jnp.log(n_tokens), jnp.log(loss)

    def objective(theta):
        return huber_objective(theta, form, log_n, log_d, log_l, weights, delta)

    rtol = max(1e-6, math.sqrt(float(jnp.finfo(dtype).eps))) if solver.rtol is None else solver.rtol
    gtol = rtol * delta * jnp.sum(weights)

    def solve(x0, steps):
        return _bfgs(objective, x0, gtol, steps)

    def finite_or_inf(v):
        return jnp.where(jnp.isfinite(v), v, jnp.inf)

    n_starts = starts.shape[0]
    if n_starts > solver.n_polish:
        first = jax.vmap(lambda x0: solve(x0, solver.max_steps))(starts)
        start_objective = finite_or_inf(first.value)
        _, best = jax.lax.top_k(-start_objective, solver.n_polish)
        polish_from = first.x[best]
    else:
        start_objective = None
        polish_from = starts
    polished = jax.vmap(lambda x0: solve(x0, solver.polish_steps))(polish_from)
    values = finite_or_inf(polished.value)
    if start_objective is None:
        start_objective = values
    i = jnp.argmin(values)
    grad = polished.grad[i]
    return HuberFitSolution(
        theta=polished.x[i],
        objective=values[i],
        grad_norm=jnp.sqrt(jnp.sum(grad * grad)),
        converged=jnp.max(jnp.abs(grad)) <= gtol,
        n_steps=polished.n_steps[i],
        start_objective=start_objective,
        polish_objective=values,
    )


@functools.partial(jax.jit, static_argnums=(1, 2))
def bootstrap_weights(key: PRNGKeyArray, n_runs: int, n_bootstrap: int) -> Float[Array, "boot run"]:
    """Multinomial counts of `n_bootstrap` resamples of `n_runs` runs drawn with replacement.

    Weighting the objective by these counts is the same as fitting the resampled runs, with one
    shape for every resample.
    """
    keys = jax.random.split(key, n_bootstrap)

    def counts(k):
        picks = jax.random.randint(k, (n_runs,), 0, n_runs)
        return jnp.zeros((n_runs,), dtype=jnp.result_type(float)).at[picks].add(1.0)

    return jax.vmap(counts)(keys)


# ====================================================================================== result
def _coefficients(law: AbstractLossLaw, names: Sequence[str]) -> dict[str, np.ndarray]:
    return {name: np.asarray(getattr(law, name), dtype=np.float64) for name in names}


class LawFit(eqx.Module):
    """A fitted loss law with its bootstrap distribution.

    **Arguments:**

    - `law`: the point estimate.
    - `theta`: its unconstrained coefficients.
    - `objective`: summed Huber loss at the point estimate.
    - `grad_norm`, `converged`: the gradient norm there and whether it met the tolerance.
    - `start_objective`: the objective every start reached in the first pass.
    - `bootstrap`: the law refitted to each resample, a batch of laws (array fields of shape
      `(n_bootstrap,)`), or `None`.
    - `bootstrap_objective`, `bootstrap_grad_norm`, `bootstrap_converged`: per resample.
    - `names`: coefficient names of the law.
    - `n_runs`: runs used (after dropping).
    - `dropped`: indices (in the input order) of the runs left out.
    - `huber_delta`, `n_starts`, `n_bootstrap`: the settings used.
    """

    law: AbstractLossLaw
    theta: Float[Array, " p"]
    objective: Float[Array, ""]
    grad_norm: Float[Array, ""]
    converged: Bool[Array, ""]
    start_objective: Float[Array, " start"]
    bootstrap: AbstractLossLaw | None
    bootstrap_objective: Float[Array, " boot"] | None
    bootstrap_grad_norm: Float[Array, " boot"] | None
    bootstrap_converged: Bool[Array, " boot"] | None
    names: tuple[str, ...] = eqx.field(static=True)
    n_runs: int = eqx.field(static=True)
    dropped: tuple[int, ...] = eqx.field(static=True)
    huber_delta: float = eqx.field(static=True)
    n_starts: int = eqx.field(static=True)
    n_bootstrap: int = eqx.field(static=True)

    def coefficients(self) -> dict[str, float]:
        """The point estimate, by coefficient name."""
        return {k: float(v) for k, v in _coefficients(self.law, self.names).items()}

    def bootstrap_coefficients(self) -> dict[str, np.ndarray]:
        """Every resample's coefficients, by name (empty arrays without a bootstrap).

        A resample whose refit is not finite (none in the tests and experiments) is left out,
        so the arrays can be shorter than `n_bootstrap`.
        """
        if self.bootstrap is None:
            return {name: np.zeros((0,)) for name in self.names}
        values = _coefficients(self.bootstrap, self.names)
        finite = np.all([np.isfinite(v) for v in values.values()], axis=0)
        return {name: v[finite] for name, v in values.items()}

    def standard_errors(self) -> dict[str, float]:
        """Bootstrap standard deviation of each coefficient (NaN with fewer than 2 resamples)."""
        out = {}
        for name, values in self.bootstrap_coefficients().items():
            out[name] = float(np.std(values, ddof=1)) if values.size >= 2 else math.nan
        return out

    def interval(self, level: float = 0.95) -> dict[str, tuple[float, float]]:
        """Percentile bootstrap interval of each coefficient at `level` (e.g. 0.95)."""
        if not 0 < level < 1:
            raise ValueError(f"level must lie in (0, 1), got {level}")
        lo, hi = 50 * (1 - level), 50 * (1 + level)
        out = {}
        for name, values in self.bootstrap_coefficients().items():
            if values.size == 0:
                out[name] = (math.nan, math.nan)
            else:
                out[name] = (float(np.percentile(values, lo)), float(np.percentile(values, hi)))
        return out

    def to_record(self, include_bootstrap: bool = True) -> dict[str, Any]:
        """The FIT.json record (see `write_fit_json`)."""
        record: dict[str, Any] = dict(self.coefficients())
        if self.n_bootstrap >= 2:
            record["standard_errors"] = self.standard_errors()
            record["ci95"] = {k: [lo, hi] for k, (lo, hi) in self.interval(0.95).items()}
        else:
            record["standard_errors"] = None
            record["ci95"] = None
        record.update(
            n_runs=self.n_runs,
            dropped=list(self.dropped),
            huber_delta=self.huber_delta,
            n_starts=self.n_starts,
            n_bootstrap=self.n_bootstrap,
            objective=float(self.objective),
            grad_norm=float(self.grad_norm),
            converged=bool(self.converged),
        )
        if self.bootstrap_converged is not None:
            record["bootstrap_converged"] = float(np.mean(np.asarray(self.bootstrap_converged)))
        if include_bootstrap and self.bootstrap is not None:
            record["bootstrap"] = {k: v.tolist() for k, v in self.bootstrap_coefficients().items()}
        return record


def highest_loss(loss: ArrayLike, k: int) -> np.ndarray:
    """Indices of the `k` runs with the highest loss, ascending (ties broken by input order)."""
    loss = np.asarray(loss)
    if not 0 <= k < loss.size:
        raise ValueError(f"drop_highest_loss must lie in [0, {loss.size}), got {k}")
    order = np.argsort(-loss, kind="stable")
    return np.sort(order[:k])


def fit(
    n_params: ArrayLike,
    n_tokens: ArrayLike,
    loss: ArrayLike,
    *,
    drop_highest_loss: int = 0,
    form: AbstractLawForm | None = None,
    starts: ArrayLike | None = None,
    huber_delta: float = HUBER_DELTA,
    n_bootstrap: int = 1000,
    key: PRNGKeyArray | None = None,
    solver: MultiStartBFGS = MultiStartBFGS(),
) -> LawFit:
    r"""Fit a loss law to training runs by the published method, with bootstrap uncertainty.

    Minimises
    $\sum_i h_\delta\big(\log \hat L_\theta(N_i, D_i) - \log L_i\big)$
    from every starting point as one batch and keeps the best optimum, then refits each of
    `n_bootstrap` resamples of the runs (drawn with replacement, started from the point
    estimate) as a second batch.

    **Arguments:**

    - `n_params`, `n_tokens`, `loss`: one entry per run; all > 0.
    - `drop_highest_loss`: leave out this many runs with the highest loss first (Besiroglu
      et al. drop 5 of the 245 Chinchilla runs).
    - `form`: the law's parametrisation; default `ChinchillaForm()`.
    - `starts`: starting points `(n_starts, n_theta)`; default `form.starts()` (Hoffmann's
      4,500-point grid for Chinchilla).
    - `huber_delta`: $\delta$; default $10^{-3}$.
    - `n_bootstrap`: resamples (0 for none; otherwise at least 2).
    - `key`: PRNG key of the resampling; default `jax.random.key(0)`.
    - `solver`: iteration counts and tolerance.

    **Returns:** a [`LawFit`][planner.LawFit].

    **Example:**

    ```python
    result = planner.fit(n_params, n_tokens, loss, drop_highest_loss=5)
    result.law, result.interval(0.95), result.bootstrap  # batch of laws
    ```

    **References:**

    Hoffmann et al. 2022, *Training Compute-Optimal Large Language Models*, App. D.2;
    Besiroglu et al. 2024, *Chinchilla Scaling: A replication attempt*, arXiv 2404.10102.
    """
    form = ChinchillaForm() if form is None else form
    given = {"n_params": n_params, "n_tokens": n_tokens, "loss": loss}
    dtype = jax.dtypes.canonicalize_dtype(
        np.result_type(np.float32, *(np.asarray(v).dtype for v in given.values()))
    )
    arrays = {}
    for name, value in given.items():
        value = jnp.asarray(np.asarray(value), dtype=dtype)
        if value.ndim != 1:
            raise ValueError(
                f"{name} must be one-dimensional (one entry per run), got shape {value.shape}"
            )
        arrays[name] = check_positive(value, name)
    sizes = {v.shape[0] for v in arrays.values()}
    if len(sizes) != 1:
        raise ValueError(
            "n_params, n_tokens and loss must have one entry per run each, got lengths "
            + ", ".join(str(v.shape[0]) for v in arrays.values())
        )
    if not isinstance(n_bootstrap, int) or n_bootstrap < 0 or n_bootstrap == 1:
        raise ValueError(f"n_bootstrap must be 0 or an integer >= 2, got {n_bootstrap!r}")
    if not huber_delta > 0:
        raise ValueError(f"huber_delta must be > 0, got {huber_delta}")
    dropped = highest_loss(np.asarray(arrays["loss"]), drop_highest_loss)
    keep = np.setdiff1d(np.arange(arrays["loss"].shape[0]), dropped)
    n, d, ell = (arrays[k][keep] for k in ("n_params", "n_tokens", "loss"))
    dtype = ell.dtype
    starts = form.starts() if starts is None else jnp.asarray(starts)
    if starts.ndim != 2 or starts.shape[0] < 1:
        raise ValueError(f"starts must have shape (n_starts, n_theta), got {starts.shape}")
    starts = starts.astype(dtype)
    n_theta = starts.shape[1]
    if keep.size < n_theta:
        raise ValueError(
            f"need at least {n_theta} runs to fit {n_theta} coefficients, got {keep.size}"
        )
    delta = jnp.asarray(huber_delta, dtype=dtype)

    point = huber_fit(form, starts, n, d, ell, None, delta, solver)
    law = form.law(point.theta)

    boot_law = boot_obj = boot_grad = boot_conv = None
    if n_bootstrap:
        key = jax.random.key(0) if key is None else key
        weights = bootstrap_weights(key, keep.size, n_bootstrap).astype(dtype)
        resampled = jax.vmap(huber_fit, in_axes=(None, None, None, None, None, 0, None, None))(
            form, point.theta[None, :], n, d, ell, weights, delta, solver
        )
        boot_law = jax.vmap(form.law)(resampled.theta)
        boot_obj, boot_grad, boot_conv = (
            resampled.objective,
            resampled.grad_norm,
            resampled.converged,
        )
    return LawFit(
        law=law,
        theta=point.theta,
        objective=point.objective,
        grad_norm=point.grad_norm,
        converged=point.converged,
        start_objective=point.start_objective,
        bootstrap=boot_law,
        bootstrap_objective=boot_obj,
        bootstrap_grad_norm=boot_grad,
        bootstrap_converged=boot_conv,
        names=tuple(form.names),
        n_runs=int(keep.size),
        dropped=tuple(int(i) for i in dropped),
        huber_delta=float(huber_delta),
        n_starts=int(starts.shape[0]),
        n_bootstrap=int(n_bootstrap),
    )


# ====================================================================================== runs
class Runs(eqx.Module):
    """Training runs: one entry per run.

    **Arguments:**

    - `n_params`: parameters $N$.
    - `n_tokens`: training tokens $D$.
    - `loss`: final loss.
    """

    n_params: Float[Array, " run"] = eqx.field(converter=jnp.asarray)
    n_tokens: Float[Array, " run"] = eqx.field(converter=jnp.asarray)
    loss: Float[Array, " run"] = eqx.field(converter=jnp.asarray)


RUN_COLUMNS: dict[str, tuple[str, ...]] = {
    "n_params": ("n_params", "Model Size", "Parameters", "N"),
    "n_tokens": ("n_tokens", "Training Tokens", "Tokens", "D"),
    "train_flops": ("train_flops", "Training FLOP", "C"),
    "loss": ("loss", "Loss", "Smoothed Loss", "final_loss"),
}
"""Column names `read_runs` accepts for each field, first match wins. Without a tokens column,
$D = C / (6N)$ from a training-FLOP column (the layout of Epoch AI's extraction of Hoffmann
et al.'s Figure 4)."""


def read_runs(path: str | os.PathLike) -> Runs:
    """Training runs from a CSV (or, with pyarrow, Parquet) table.

    Columns are looked up by the names in `RUN_COLUMNS`; other columns are ignored.

    **Arguments:**

    - `path`: the table.

    **Returns:** [`Runs`][planner.Runs] in the table's row order.
    """
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path).to_pydict()
        columns = {k: [None if v is None else str(v) for v in vs] for k, vs in table.items()}
    else:
        import csv

        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            names = reader.fieldnames or []
        columns = {name: [row.get(name) for row in rows] for name in names}

    def column(field: str, required: bool = True) -> np.ndarray | None:
        for name in RUN_COLUMNS[field]:
            if name in columns:
                values = []
                for i, raw in enumerate(columns[name]):
                    try:
                        values.append(float(raw))
                    except (TypeError, ValueError):
                        raise ValueError(
                            f"{path}: column {name!r} row {i + 1}: not a number: {raw!r}"
                        ) from None
                return np.asarray(values, dtype=np.float64)
        if required:
            raise ValueError(
                f"{path}: no {field} column (looked for {', '.join(map(repr, RUN_COLUMNS[field]))})"
            )
        return None

    n = column("n_params")
    ell = column("loss")
    d = column("n_tokens", required=False)
    if d is None:
        c = column("train_flops", required=False)
        if c is None:
            names = RUN_COLUMNS["n_tokens"] + RUN_COLUMNS["train_flops"]
            raise ValueError(
                f"{path}: no n_tokens column and no train_flops column to derive it from "
                f"(looked for {', '.join(map(repr, names))})"
            )
        d = c / (6.0 * n)
    if n.size == 0:
        raise ValueError(f"{path}: no runs")
    return Runs(n_params=n, n_tokens=d, loss=ell)


# ================================================================= planning under uncertainty
def _as_batch(laws: Chinchilla) -> Chinchilla:
    if not isinstance(laws, Chinchilla):
        raise ValueError(
            f"laws must be a Chinchilla law or a batch of them, got {type(laws).__name__}"
        )
    shapes = {jnp.shape(getattr(laws, name)) for name in COEFFICIENTS}
    if len(shapes) != 1:
        raise ValueError(f"laws: every coefficient needs the same shape, got {sorted(shapes)}")
    (shape,) = shapes
    if len(shape) == 0:
        return jax.tree.map(lambda x: x[None], laws)
    if len(shape) != 1 or shape[0] == 0:
        raise ValueError(f"laws must be a batch with coefficients of shape (n,), got {shape}")
    return laws


def stack_laws(laws: Sequence[Chinchilla]) -> Chinchilla:
    """One batched `Chinchilla` (coefficients of shape `(n,)`) from `n` single laws."""
    if len(laws) == 0:
        raise ValueError("stack_laws needs at least one law")
    return jax.tree.map(lambda *xs: jnp.stack(xs), *laws)


def laws_from_coefficients(
    coefficients: Mapping[str, ArrayLike] | Sequence[Mapping[str, float]],
) -> Chinchilla:
    """A batch of `Chinchilla` laws from user-supplied coefficient samples.

    **Arguments:**

    - `coefficients`: either a mapping from each of `E`, `A`, `B`, `alpha`, `beta` to equally
      long sequences, or a sequence of mappings (one law each).

    **Returns:** a `Chinchilla` whose fields have shape `(n,)`.
    """
    if isinstance(coefficients, Mapping):
        columns = coefficients
    else:
        rows = list(coefficients)
        if not rows:
            raise ValueError("coefficients: no laws given")
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise ValueError(f"coefficients[{i}] must be a mapping of coefficient names")
            missing = [k for k in COEFFICIENTS if k not in row]
            if missing:
                raise ValueError(f"coefficients[{i}] lacks {', '.join(missing)}")
        columns = {k: [row[k] for row in rows] for k in COEFFICIENTS}
    values = {}
    for name in COEFFICIENTS:
        if name not in columns:
            raise ValueError(f"coefficients lack {name!r}")
        try:
            v = np.asarray(columns[name], dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"coefficients[{name!r}] must be numbers") from None
        if v.ndim != 1 or v.size == 0:
            raise ValueError(
                f"coefficients[{name!r}] must be a non-empty list, got shape {v.shape}"
            )
        if not np.all(np.isfinite(v) & (v > 0)):
            raise ValueError(f"coefficients[{name!r}] must be finite and > 0")
        values[name] = v
    if len({v.size for v in values.values()}) != 1:
        raise ValueError("coefficients: every coefficient needs the same number of samples")
    return Chinchilla(**{k: jnp.asarray(v) for k, v in values.items()})


def _quantiles(x: Float[Array, " n"], quantiles: Sequence[float]) -> Float[Array, " q"]:
    """Linear-interpolation quantiles (NumPy's default) that treat +inf as a value."""
    xs = jnp.sort(x)
    n = xs.shape[0]
    pos = jnp.asarray(quantiles, dtype=xs.dtype) * (n - 1)
    lo = jnp.floor(pos).astype(jnp.int32)
    hi = jnp.minimum(lo + 1, n - 1)
    frac = pos - lo.astype(xs.dtype)
    a, b = xs[lo], xs[hi]
    return jnp.where(frac == 0, a, jnp.where(jnp.isinf(b), b, a + (b - a) * frac))


def _check_quantiles(quantiles: Sequence[float]) -> tuple[float, ...]:
    q = tuple(float(v) for v in quantiles)
    if not q or not all(0.0 <= v <= 1.0 for v in q):
        raise ValueError(
            f"quantiles must be a non-empty sequence of numbers in [0, 1], got {quantiles!r}"
        )
    return q


def loss_optimal_quantiles(
    laws: Chinchilla,
    target_loss: ArrayLike,
    quantiles: Sequence[float] = (0.025, 0.5, 0.975),
) -> dict[str, Float[Array, " q"]]:
    r"""Quantiles of the training-optimal plan for a target loss over a batch of laws.

    For each law the closed form `Chinchilla.loss_optimal` gives
    $N_c = [A(1 + \alpha/\beta)/(\ell - E)]^{1/\alpha}$,
    $D_c = [B(1 + \beta/\alpha)/(\ell - E)]^{1/\beta}$ and the cost $C = 6 N_c D_c$; a law
    whose $E \ge \ell$ cannot reach the target and counts as $+\infty$.

    **Arguments:**

    - `laws`: a batch of `Chinchilla` laws (e.g. `LawFit.bootstrap`).
    - `target_loss`: the loss $\ell$ to reach.
    - `quantiles`: probabilities in [0, 1].

    **Returns:** a dict with `n_params`, `n_tokens`, `train_flops` (each one value per quantile)
    and `feasible`, the fraction of laws that can reach the target.
    """
    laws = _as_batch(laws)
    q = _check_quantiles(quantiles)
    target = jnp.asarray(target_loss, dtype=laws.E.dtype)
    if target.ndim != 0:
        raise ValueError("target_loss must be a scalar; vmap for several targets")
    return _loss_optimal_quantiles(laws, target, q)


@eqx.filter_jit
def _loss_optimal_quantiles(laws, target, q):
    dtype = laws.E.dtype
    target = check_finite(target, "target_loss")
    feasible = laws.E < target
    safe = jnp.where(feasible, target, laws.E + 1.0)
    n, d = jax.vmap(lambda law, t: law.loss_optimal(t))(laws, safe)
    n = jnp.where(feasible, n, jnp.inf)
    d = jnp.where(feasible, d, jnp.inf)
    return {
        "n_params": _quantiles(n, q),
        "n_tokens": _quantiles(d, q),
        "train_flops": _quantiles(6.0 * n * d, q),
        "feasible": jnp.mean(feasible.astype(dtype)),
    }


def compute_optimal_quantiles(
    laws: Chinchilla,
    train_flops: ArrayLike,
    quantiles: Sequence[float] = (0.025, 0.5, 0.975),
) -> dict[str, Float[Array, " q"]]:
    r"""Quantiles of the training-optimal plan for a compute budget over a batch of laws.

    For each law the closed form `Chinchilla.compute_optimal` gives
    $N^* = G (C/6)^{\beta/(\alpha+\beta)}$, $D^* = (C/6)^{\alpha/(\alpha+\beta)}/G$, and the
    loss it reaches $L(N^*, D^*)$.

    **Arguments:**

    - `laws`: a batch of `Chinchilla` laws.
    - `train_flops`: the budget $C$, > 0.
    - `quantiles`: probabilities in [0, 1].

    **Returns:** a dict with `n_params`, `n_tokens` and `loss`, one value per quantile each.
    """
    laws = _as_batch(laws)
    q = _check_quantiles(quantiles)
    budget = jnp.asarray(train_flops, dtype=laws.E.dtype)
    if budget.ndim != 0:
        raise ValueError("train_flops must be a scalar; vmap for several budgets")
    return _compute_optimal_quantiles(laws, budget, q)


@eqx.filter_jit
def _compute_optimal_quantiles(laws, budget, q):
    budget = check_positive(budget, "train_flops")
    n, d = jax.vmap(lambda law: law.compute_optimal(budget))(laws)
    loss = jax.vmap(lambda law, n_, d_: law.loss(n_, d_))(laws, n, d)
    return {"n_params": _quantiles(n, q), "n_tokens": _quantiles(d, q), "loss": _quantiles(loss, q)}


def probability_meets_target(
    laws: Chinchilla,
    n_params: ArrayLike,
    n_tokens: ArrayLike,
    target_loss: ArrayLike,
) -> Float[Array, ...]:
    r"""Probability that the plan $(N, D)$ reaches `target_loss`, over a batch of laws.

    $$P = \frac{1}{n}\sum_{k=1}^{n} \mathbf{1}\big[L_k(N, D) \le \ell\big]$$

    **Arguments:**

    - `laws`: a batch of `Chinchilla` laws (bootstrap or user-supplied samples, equally
      weighted).
    - `n_params`, `n_tokens`: the plan, > 0 (arrays broadcast: one probability per plan).
    - `target_loss`: $\ell$.

    **Returns:** the fraction of laws under which the plan's loss is at most the target.
    """
    laws = _as_batch(laws)
    dtype = laws.E.dtype
    return _probability_meets_target(
        laws,
        jnp.asarray(n_params, dtype=dtype),
        jnp.asarray(n_tokens, dtype=dtype),
        jnp.asarray(target_loss, dtype=dtype),
    )


@eqx.filter_jit
def _probability_meets_target(laws, n, d, target):
    dtype = laws.E.dtype
    n = check_positive(n, "n_params")
    d = check_positive(d, "n_tokens")
    target = check_finite(target, "target_loss")
    n, d, target = jnp.broadcast_arrays(n, d, target)
    met = jax.vmap(lambda law: law.loss(n, d) <= target)(laws)
    return jnp.mean(met.astype(dtype), axis=0)


# ======================================================================================= JSON
def write_fit_json(
    fit_result: LawFit, path: str | os.PathLike, *, include_bootstrap: bool = True
) -> None:
    """Write a fit to FIT.json, atomically (a temporary file in the same folder, then rename).

    Keys: the point estimates `E`, `A`, `B`, `alpha`, `beta`; `standard_errors` and `ci95`
    (bootstrap standard deviations and percentile 95% intervals `[low, high]`, keyed the same;
    `null` without a bootstrap); `n_runs`, `dropped` (input row indices left out),
    `huber_delta`, `n_starts`, `n_bootstrap`, `objective` (summed Huber loss), `grad_norm`,
    `converged`, `bootstrap_converged` (fraction of resamples) and, unless
    `include_bootstrap=False`, `bootstrap`: the resampled coefficients as lists keyed by name.
    """
    record = fit_result.to_record(include_bootstrap=include_bootstrap)
    _validate_fit_record(record, "fit")

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(record, f, indent=2)
            f.write("\n")

    atomic_write(path, write)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _validate_fit_record(record: Any, where: str) -> None:
    def fail(field: str, msg: str):
        raise ValueError(f"{where}: field {field!r} {msg}")

    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for name in COEFFICIENTS:
        if name not in record:
            fail(name, "is missing")
        v = record[name]
        if not (_is_number(v) and math.isfinite(v) and v > 0):
            fail(name, f"must be a finite number > 0, got {v!r}")
    for name in ("n_runs", "n_starts"):
        if name not in record:
            fail(name, "is missing")
        if not (_is_int(record[name]) and record[name] >= 1):
            fail(name, f"must be an integer >= 1, got {record[name]!r}")
    if "n_bootstrap" not in record:
        fail("n_bootstrap", "is missing")
    n_boot = record["n_bootstrap"]
    if not (_is_int(n_boot) and (n_boot == 0 or n_boot >= 2)):
        fail("n_bootstrap", f"must be 0 or an integer >= 2, got {n_boot!r}")
    for name, low in (("huber_delta", 0.0), ("objective", None)):
        if name not in record:
            fail(name, "is missing")
        v = record[name]
        ok = _is_number(v) and math.isfinite(v) and (v > low if low is not None else v >= 0)
        if not ok:
            fail(name, f"must be a finite number {'> 0' if low is not None else '>= 0'}, got {v!r}")
    if "dropped" not in record:
        fail("dropped", "is missing")
    dropped = record["dropped"]
    if not (isinstance(dropped, list) and all(_is_int(i) and i >= 0 for i in dropped)):
        fail("dropped", f"must be a list of row indices >= 0, got {dropped!r}")
    for name in ("standard_errors", "ci95"):
        if name not in record:
            fail(name, "is missing")
        value = record[name]
        if n_boot == 0:
            if value is not None:
                fail(name, "must be null when n_bootstrap is 0")
            continue
        if not isinstance(value, dict):
            fail(name, f"must be an object keyed by {', '.join(COEFFICIENTS)}")
        for k in COEFFICIENTS:
            if k not in value:
                fail(f"{name}.{k}", "is missing")
            v = value[k]
            if name == "standard_errors":
                if not (_is_number(v) and math.isfinite(v) and v >= 0):
                    fail(f"{name}.{k}", f"must be a finite number >= 0, got {v!r}")
            else:
                if not (
                    isinstance(v, list)
                    and len(v) == 2
                    and all(_is_number(x) and math.isfinite(x) for x in v)
                    and v[0] <= v[1]
                ):
                    fail(f"{name}.{k}", f"must be [low, high] with finite low <= high, got {v!r}")
    if record.get("bootstrap") is not None:
        try:
            laws_from_coefficients(record["bootstrap"])
        except ValueError as e:
            fail("bootstrap", f"is invalid: {e}")


def _load_fit_record(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    _validate_fit_record(record, str(path))
    return record


def read_fit_json(path: str | os.PathLike) -> Chinchilla:
    """The point-estimate `Chinchilla` law of a FIT.json, after validating every field.

    Raises `ValueError` naming the first field that is missing or out of range.
    """
    record = _load_fit_record(path)
    return Chinchilla(**{k: float(record[k]) for k in COEFFICIENTS})


def read_fit_bootstrap(path: str | os.PathLike) -> Chinchilla:
    """The bootstrap laws of a FIT.json as one batched `Chinchilla` (fields of shape `(n,)`).

    Accepts `bootstrap` as an object of lists keyed by coefficient name or as a list of objects.
    Raises `ValueError` if the file has no bootstrap samples or any field is invalid.
    """
    record = _load_fit_record(path)
    if record.get("bootstrap") is None:
        raise ValueError(f"{path}: field 'bootstrap' is missing (fit with bootstrap samples kept)")
    return laws_from_coefficients(record["bootstrap"])
