"""Optimal allocations: one scenario in, one plan out; batch with `jax.vmap`."""

from __future__ import annotations

import dataclasses
import enum
import itertools
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int

from ._alm import augmented_lagrangian
from ._compose import VARIABLES, Allocation, Outcome, Pipeline
from ._compute import Hardware
from ._ipm import Vector, certify, certify_values, interior_point
from ._laws import Chinchilla
from ._techniques.sampling import score_log_failure

Objective = Literal["compute", "loss", "score", "train"]
OBJECTIVES: tuple[str, ...] = ("compute", "loss", "score", "train")


class Status(enum.IntEnum):
    """Per-scenario outcome of a solve; `STATUS_MESSAGES` explains each."""

    OPTIMAL = 0
    INFEASIBLE = 1
    INVALID_INPUT = 2
    NOT_CONVERGED = 3


STATUS_MESSAGES: dict[Status, str] = {
    Status.OPTIMAL: "optimal: every KKT residual is below tolerance",
    Status.INFEASIBLE: "infeasible: no allocation meets the target within the constraints",
    Status.INVALID_INPUT: "invalid input: a field is NaN, infinite or outside its domain",
    Status.NOT_CONVERGED: "not converged: the step limit was reached before the KKT residuals fell",
}

_INF = float("inf")


def _optional_array(x):
    return None if x is None else jnp.asarray(x)


class Scenario(eqx.Module):
    r"""What one plan must satisfy. Every field given is an array, so a batch is a `vmap` away.

    Fields left as `None` are absent: the constraint they would impose is not built at all,
    so the solver does no work for it.

    **Arguments:**

    - `target_loss`: the loss the served model must reach.
    - `target_score`: the success rate it must reach, in (0, 1) (needs a model with a score).
    - `inference_demand`: lifetime inference, in the units of the pipeline's
      `inference_flops` (tokens for plain pretraining, queries once sampling is on). Default 0.
    - `train_budget`: cap on training FLOP.
    - `inference_budget`: cap on lifetime inference FLOP (`inference_demand` × per-unit FLOP).
    - `max_inference_flops`: cap on inference FLOP per unit of demand (a per-query budget; the
      frontier's control).
    - `max_params`, `max_tokens`: caps on $N$ (memory, latency) and $D$ (data available).
    - `min_density`: lower bound on the pruning density.
    - `max_latency`: bound on the per-token decode latency (seconds) of the served model on
      the `hardware` given to `solve`, at batch size `serving_batch` (default 1): the
      roofline $\max(N d B / W,\ 2 N d b / (P U)) \le \tau$ of `Hardware`, as two smooth
      constraints.
    """

    target_loss: Float[Array, ""] | None = eqx.field(converter=_optional_array, default=None)
    target_score: Float[Array, ""] | None = eqx.field(converter=_optional_array, default=None)
    inference_demand: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=0.0)
    train_budget: Float[Array, ""] | None = eqx.field(converter=_optional_array, default=None)
    inference_budget: Float[Array, ""] | None = eqx.field(converter=_optional_array, default=None)
    max_inference_flops: Float[Array, ""] | None = eqx.field(
        converter=_optional_array, default=None
    )
    max_params: Float[Array, ""] | None = eqx.field(converter=_optional_array, default=None)
    max_tokens: Float[Array, ""] | None = eqx.field(converter=_optional_array, default=None)
    min_density: Float[Array, ""] | None = eqx.field(converter=_optional_array, default=None)
    max_latency: Float[Array, ""] | None = eqx.field(converter=_optional_array, default=None)
    serving_batch: Float[Array, ""] | None = eqx.field(converter=_optional_array, default=None)

    def broadcast(self) -> Scenario:
        """Every field given broadcast to one common shape and dtype, ready for `vmap`."""
        leaves = jax.tree.leaves(self)
        shape = jnp.broadcast_shapes(*(leaf.shape for leaf in leaves))
        dtype = jnp.result_type(*leaves)
        return jax.tree.map(lambda v: jnp.broadcast_to(jnp.asarray(v, dtype), shape), self)


class Plan(eqx.Module):
    """The solution of one scenario.

    **Arguments:**

    - `allocation`: the optimal `Allocation`.
    - `outcome`: its `Outcome` (training and inference FLOP, loss, score).
    - `total_flops`: training FLOP + inference demand × inference FLOP.
    - `status`: a `Status` code; only `Status.OPTIMAL` plans are certified.
    - `stationarity`, `feasibility`, `complementarity`: the KKT residuals (infinity norms, in
      the solver's log variables) that justify the status.
    - `multipliers`: Lagrange multipliers of the constraints, in `constraint_names` order.
    - `steps`: iterations of the Newton method (evaluations of the problem, halved steps
      included).
    """

    allocation: Allocation
    outcome: Outcome
    total_flops: Float[Array, ""]
    status: Int[Array, ""]
    stationarity: Float[Array, ""]
    feasibility: Float[Array, ""]
    complementarity: Float[Array, ""]
    multipliers: Float[Array, " m"]
    steps: Int[Array, ""]


class Solver(eqx.Module):
    """Configuration of the allocation solver (it holds no problem data).

    The solver works in log variables ($\\log N$, $\\log D$, $\\log$ density, $\\log k$), where
    Chinchilla-type problems are geometric programs and so convex, and bounds become linear
    constraints. Two methods, which chain:

    - an augmented Lagrangian whose inner minimisation is an optax optimiser (`optimizer`,
      e.g. `optax.adam(0.05)`), fixed-length and first order (`planner._alm`);
    - a primal-dual interior-point Newton method with exact Hessians from JAX
      (`planner._ipm`), from the closed-form start or from the optax phase's result.

    Either way the result is certified by its KKT residuals. The default is Newton alone: on
    the benchmark's lifetime problems it reaches 1e-10 residuals in 5 to 8 iterations, where
    the optax phase needs thousands of steps for 1e-6 (`benchmarks/RESULTS.md`). The optax
    phase is there for models whose start is far from the optimum or whose Hessian misleads
    Newton.

    **Arguments:**

    - `tol`: KKT residual below which a scenario is `OPTIMAL` (scale-free: objective and
      constraints are logarithms). Default 1e-10 in float64 and 1e-4 in float32: on 2,000
      random lifetime scenarios (four law presets, targets E + 0.02 to E + 1.5, demands 0
      and 1e6 to 1e16 tokens) a float32 solve is OPTIMAL at 1e-4 for all of them, within
      3.2e-4 of the float64 optimum in N and 1e-4 in total FLOP (D within 4.1e-3: near
      N_min it is ill-conditioned; `tests/test_solve.py`); at 1e-5, 0.6% of them cannot
      certify in float32.
    - `max_steps`: iteration limit of the Newton method, each iteration one evaluation of the
      problem at a trial point (a halved step is an iteration too); 0 skips the method.
    - `optimizer`: an optax optimiser for the augmented-Lagrangian phase, or `None` to skip it.
    - `inner_steps`, `outer_steps`: optimiser steps per multiplier update, and updates.
    - `lanes`: under `vmap`, the most local solves stepped side by side (`planner._pool`): a
      batch is solved on at most this many lanes (and no more than a 32nd of its local
      solves, at least 256; a multiple of 128 above 128), each lane taking the next problem
      when its own stops, so the work is about the members' total and not the slowest
      member's times the batch.
      Default (`None`): `DEFAULT_LANES` for the backend.
    """

    tol: float | None = eqx.field(static=True, default=None)
    max_steps: int = eqx.field(static=True, default=200)
    optimizer: optax.GradientTransformation | None = eqx.field(static=True, default=None)
    inner_steps: int = eqx.field(static=True, default=100)
    outer_steps: int = eqx.field(static=True, default=10)
    lanes: int | None = eqx.field(static=True, default=None)

    def tolerance(self, dtype) -> float:
        if self.tol is not None:
            return self.tol
        return 1e-10 if jnp.dtype(dtype) == jnp.float64 else 1e-4

    def lane_count(self) -> int:
        if self.lanes is not None:
            return self.lanes
        return DEFAULT_LANES.get(jax.default_backend(), DEFAULT_LANES["cpu"])


DEFAULT_LANES: dict[str, int] = {"cpu": 4096, "gpu": 1 << 17, "tpu": 1 << 17}
"""Lanes of a pooled batch (`Solver.lanes`) by backend."""


def constraint_names(model: Pipeline, scenario: Scenario) -> tuple[str, ...]:
    """Names of the constraints a solve imposes, in `Plan.multipliers` order.

    One per `Scenario` field given (targets, budgets, caps), then the variables' own bounds:
    `max_density` (density <= 1) and `min_density` with pruning, `min_samples` (k >= 1) with
    sampling.
    """
    names = [name for name in _BOUND_FIELDS if getattr(scenario, name) is not None]
    if scenario.max_latency is not None:
        names += ["max_latency_memory", "max_latency_compute"]
    if "density" in model.variables:
        names.append("max_density")
        if scenario.min_density is not None:
            names.append("min_density")
    if "n_samples" in model.variables:
        names.append("min_samples")
    return tuple(names)


_BOUND_FIELDS = ("target_loss", "target_score", "train_budget", "inference_budget",
                 "max_inference_flops", "max_params", "max_tokens")
# A bound this far away (in log units) never binds; it stands in for an infinite one.
_FAR = 700.0


def _log_bounds(model: Pipeline, scenario: Scenario) -> dict[str, Array]:
    """The right-hand sides of the constraints, in log units; computed once per solve."""
    def safe_log(v):
        ok = v > 0
        return jnp.where(ok, jnp.log(jnp.where(ok, v, 1.0)), -_FAR)

    bounds = {}
    if scenario.target_loss is not None:
        bounds["target_loss"] = safe_log(scenario.target_loss - model.law.irreducible)
    if scenario.target_score is not None:
        ok = (scenario.target_score > 0) & (scenario.target_score < 1)
        bounds["target_score"] = jnp.where(
            ok, _neg_log_log_failure(jnp.log1p(-jnp.where(ok, scenario.target_score, 0.5))),
            -_FAR)
    for name in ("train_budget", "max_inference_flops", "max_params", "max_tokens"):
        if getattr(scenario, name) is not None:
            bounds[name] = safe_log(getattr(scenario, name))
    if scenario.inference_budget is not None:
        per_unit = safe_log(scenario.inference_budget) - safe_log(scenario.inference_demand)
        bounds["inference_budget"] = jnp.where(scenario.inference_demand > 0, per_unit, _FAR)
    if scenario.min_density is not None:
        bounds["min_density"] = safe_log(scenario.min_density)
    if scenario.max_latency is not None:
        bounds["max_latency_memory"] = safe_log(scenario.max_latency)
        bounds["max_latency_compute"] = safe_log(scenario.max_latency)
    return {k: jnp.minimum(v, _FAR) for k, v in bounds.items()}


def _neg_log_log_failure(log_failure: Array) -> Array:
    """$-\\log(-\\log(1 - s))$ from $\\log(1 - s)$, the form a score target is imposed in:
    decreasing in $s$, about $-\\log s$ for small scores and $-\\log\\log(1/(1 - s))$ near 1.
    Imposed as $\\log(1 - s) \\le \\log(1 - t)$ instead, the constraint's violation is bounded by
    $-\\log(1 - t)$ however small the model, while the compute falls without bound: below a
    target of about 0.3 the merit function then pays for shrinking the model towards zero
    parameters. In this form the violation grows without bound as the score vanishes."""
    tiny = jnp.finfo(log_failure.dtype).tiny
    safe = jnp.where(-log_failure > tiny, -log_failure, tiny)
    return -jnp.log(safe)


def _allocation(model: Pipeline, x: Vector) -> Allocation:
    return Allocation(**{v: jnp.exp(xi) for v, xi in zip(model.variables, x, strict=True)})


def _objective(model: Pipeline, scenario: Scenario, objective: Objective, x: Vector) -> Array:
    out = model(_allocation(model, x))
    if objective == "compute":
        return jnp.log(out.train_flops + scenario.inference_demand * out.inference_flops)
    if objective == "train":
        return jnp.log(out.train_flops)
    if objective == "loss":
        return jnp.log(out.loss - out.irreducible_loss)
    return score_log_failure(model, _allocation(model, x))


def _constraints(model: Pipeline, names: tuple[str, ...], bounds: dict[str, Array],
                 x: Vector, hardware: Hardware | None = None,
                 serving_batch: Array | None = None) -> Vector:
    """g(x) <= 0, one entry per name in `names`."""
    allocation = _allocation(model, x)
    out = model(allocation)
    var = dict(zip(model.variables, x, strict=True))
    if hardware is not None:
        batch = 1.0 if serving_batch is None else serving_batch
        memory, compute = hardware.roofline(allocation.n_params, batch, allocation.density)
    lhs = {
        "target_loss": lambda: jnp.log(out.loss - out.irreducible_loss),
        "target_score": lambda: _neg_log_log_failure(score_log_failure(model, allocation)),
        "train_budget": lambda: jnp.log(out.train_flops),
        "inference_budget": lambda: jnp.log(out.inference_flops),
        "max_inference_flops": lambda: jnp.log(out.inference_flops),
        "max_params": lambda: var["n_params"],
        "max_tokens": lambda: var["n_tokens"],
        "max_density": lambda: var["density"],
        "min_density": lambda: -var["density"],
        "min_samples": lambda: -var["n_samples"],
        "max_latency_memory": lambda: jnp.log(memory),
        "max_latency_compute": lambda: jnp.log(compute),
    }
    sign = {"min_density": -1.0}
    return tuple(
        lhs[name]() - sign.get(name, 1.0) * bounds.get(name, 0.0) for name in names
    )


def _training_optimum(law: Chinchilla, gap: Array) -> tuple[Array, Array]:
    """(N_c, D_c): the least-compute model whose loss is E + gap."""
    n = (law.A * (1.0 + law.alpha / law.beta) / gap) ** (1.0 / law.alpha)
    d = (law.B * (1.0 + law.beta / law.alpha) / gap) ** (1.0 / law.beta)
    return n, d


# The techniques' variables start from two places: inside their bounds (density 0.9, two
# samples) and switched off (density 1, one sample). With a technique the problem need not be
# convex: a dense plan and a pruned one can both satisfy the KKT conditions, and a local method
# finds the one its start leads to (see `_candidates` for the other local solves that make a
# technique never worse than going without it).
_STARTS = ({"density": 0.9, "n_samples": 2.0}, {"density": 1.0, "n_samples": 1.0})


def _start(model: Pipeline, scenario: Scenario, objective: Objective, dtype,
           technique: dict[str, float]) -> Vector:
    """A starting point from closed forms where the law has them.

    With a loss target, the training-optimal model for that loss; with a score target, the
    training-optimal model whose score (at the starting density and samples) just meets it,
    found on the training-optimal ray by `_bracketed_root` in the log of the reducible loss;
    under a training budget, the budget's training optimum; otherwise (or without closed
    forms) a 1e9-parameter model on 2e10 tokens. The techniques' variables start at the values
    in `technique` (see `_STARTS`).
    """
    n, d = jnp.asarray(1e9, dtype), jnp.asarray(2e10, dtype)
    fixed = {name: jnp.asarray(value, dtype) for name, value in technique.items()}
    law = model.law
    if isinstance(law, Chinchilla) and scenario.train_budget is not None:
        budget = scenario.train_budget
        s = law.alpha + law.beta
        g = (law.alpha * law.A / (law.beta * law.B)) ** (1.0 / s)
        n = jnp.where(budget > 0, g * (budget / 6.0) ** (law.beta / s), n)
        d = jnp.where(budget > 0, (budget / 6.0) ** (law.alpha / s) / g, d)
    if isinstance(law, Chinchilla) and objective in ("compute", "train"):
        if scenario.target_loss is not None:
            gap = scenario.target_loss - law.E
            nc, dc = _training_optimum(law, jnp.where(gap > 0, gap, 1.0))
            n, d = jnp.where(gap > 0, nc, n), jnp.where(gap > 0, dc, d)
        elif scenario.target_score is not None:
            target = jnp.clip(scenario.target_score, 1e-6, 1 - 1e-6)
            goal = _neg_log_log_failure(jnp.log1p(-target))

            def excess(log_gap):
                # the score constraint along the training-optimal ray: negative where met
                nc, dc = _training_optimum(law, jnp.exp(log_gap))
                allocation = Allocation(n_params=nc, n_tokens=dc, **fixed)
                return _neg_log_log_failure(score_log_failure(model, allocation)) - goal

            low = _bracketed_root(excess, jnp.log(jnp.asarray(1e-6, dtype)),
                                  jnp.log(jnp.asarray(1e2, dtype)))
            n, d = _training_optimum(law, jnp.exp(low))
    start = {"n_params": n, "n_tokens": d, **fixed}
    return tuple(jnp.log(jnp.asarray(start[v], dtype)) for v in model.variables)


def _bracketed_root(fn, low: Array, high: Array, steps: int = 12) -> Array:
    """The end where `fn <= 0` of the bracket `(low, high)` of the root of an increasing `fn`
    (`fn(low) <= 0 < fn(high)`), shrunk by `steps` steps of the Illinois method (regula falsi
    whose retained end has its value halved when it is kept twice; Dowell & Jarratt 1971),
    superlinear where bisection gains one bit a step. A step whose secant point is not finite
    or leaves the bracket bisects instead."""
    def step(_, carry):
        a, b, fa, fb = carry
        secant = (a * fb - b * fa) / (fb - fa)
        inside = jnp.isfinite(secant) & (secant > jnp.minimum(a, b)) & (secant < jnp.maximum(a, b))
        c = jnp.where(inside, secant, 0.5 * (a + b))
        fc = fn(c)
        # keep the bracket: c replaces the end of its sign; a kept end has its value halved
        crossed = (fc > 0) != (fb > 0)
        a, fa = jnp.where(crossed, b, a), jnp.where(crossed, fb, 0.5 * fa)
        return a, c, fa, fc

    a, b = low, high
    a, b, fa, fb = jax.lax.fori_loop(0, steps, step, (a, b, fn(a), fn(b)))
    return jnp.where(fb <= 0, b, a)


def _validate(
    model: Pipeline, scenario: Scenario, objective: Objective
) -> tuple[Array, Array]:
    """(invalid, infeasible): scenario-level checks that need no solve."""
    invalid = jnp.asarray(False)
    for leaf in jax.tree.leaves(scenario):
        invalid |= jnp.isnan(leaf)
    for name in ("train_budget", "inference_budget", "max_inference_flops", "max_params",
                 "max_tokens"):
        value = getattr(scenario, name)
        if value is not None:
            invalid |= value <= 0
    invalid |= ~jnp.isfinite(scenario.inference_demand) | (scenario.inference_demand < 0)
    if scenario.target_loss is not None:
        invalid |= jnp.isinf(scenario.target_loss) | (scenario.target_loss <= 0)
    if scenario.target_score is not None:
        invalid |= ~jnp.isfinite(scenario.target_score) | (scenario.target_score <= 0)
    if scenario.min_density is not None:
        invalid |= ~jnp.isfinite(scenario.min_density) | (scenario.min_density <= 0)
        invalid |= scenario.min_density > 1
    for name in ("max_latency", "serving_batch"):
        value = getattr(scenario, name)
        if value is not None:
            invalid |= ~jnp.isfinite(value) | (value <= 0)
    for leaf in jax.tree.leaves(model):
        if eqx.is_inexact_array(leaf):
            invalid |= ~jnp.all(jnp.isfinite(leaf))
    law = model.law
    if isinstance(law, Chinchilla):
        invalid |= (law.A <= 0) | (law.B <= 0) | (law.alpha <= 0) | (law.beta <= 0) | (law.E < 0)
    infeasible = jnp.asarray(False)
    if scenario.target_loss is not None:
        infeasible |= scenario.target_loss <= law.irreducible
    if scenario.target_score is not None:
        infeasible |= scenario.target_score >= 1
    return invalid, infeasible & ~invalid


def _check_structure(model: Pipeline, scenario: Scenario, objective: Objective,
                     hardware: Hardware | None) -> None:
    if scenario.max_latency is not None and not isinstance(hardware, Hardware):
        raise ValueError("max_latency needs the serving hardware: solve(..., hardware=Hardware)")
    if scenario.serving_batch is not None and scenario.max_latency is None:
        raise ValueError("serving_batch only matters with max_latency")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if not isinstance(model, Pipeline):
        raise ValueError("model must be a Pipeline")
    if not isinstance(scenario, Scenario):
        raise ValueError("scenario must be a Scenario")
    scored = has_score(model)
    if (objective == "score" or scenario.target_score is not None) and not scored:
        raise ValueError("a score objective or target_score needs a model with a score: "
                         "add a RepeatedSampling stage")
    if objective in ("compute", "train"):
        if scenario.target_loss is None and scenario.target_score is None:
            raise ValueError(f"objective={objective!r} needs target_loss or target_score")
    elif scenario.train_budget is None:
        raise ValueError(f"objective={objective!r} needs a train_budget")


def solve(
    model: Pipeline,
    scenario: Scenario,
    *,
    objective: Objective = "compute",
    solver: Solver = Solver(),
    hardware: Hardware | None = None,
    throw: bool = True,
) -> Plan:
    r"""The optimal allocation for one scenario.

    Problems, by `objective`:

    - `"compute"`: minimise lifetime compute $TC + T \cdot IC$ subject to the targets (with
      only $N, D$ and a loss target this is Sardana et al. 2024's problem);
    - `"loss"` / `"score"`: reach the lowest loss / highest score within the budgets;
    - `"train"`: minimise training compute alone (with `max_inference_flops`, one point of the
      Pareto frontier; see `frontier`).

    Every problem also honours the caps in `scenario`. With pruning or sampling the problem
    need not be convex (a dense and a pruned plan can both satisfy the KKT conditions), so
    the solver, a local method, runs from two starts (density 0.9 and two samples; density 1
    and one sample) and also solves with each subset of the techniques switched off, certifying
    that plan for the full problem when it is a local optimum of it; the cheapest certified
    plan is returned, so a technique is never planned at a loss against leaving it out.

    Written for one scenario: batch with
    `jax.vmap(lambda s: solve(model, s, throw=False))(scenarios.broadcast())`, where a bad
    scenario gets its own `status` and never stops the others.

    Plans are differentiable: `jax.grad`/`jax.jacobian` of any output with respect to the
    scenario or the model's coefficients use the implicit function theorem on the KKT
    conditions at the optimum (not the solver's iterations).

    **Arguments:**

    - `model`: a `Pipeline`.
    - `scenario`: a `Scenario`.
    - `objective`: one of `OBJECTIVES`.
    - `solver`: a `Solver` configuration.
    - `hardware`: the serving `Hardware`, needed when the scenario has `max_latency`.
    - `throw`: raise unless the status is `OPTIMAL` (under `vmap`, for any member).

    **Returns:** a `Plan`.

    **References:** Sardana et al. 2024, *Beyond Chinchilla-Optimal*, ICML (the lifetime
    problem); Nocedal & Wright 2006, *Numerical Optimization*, ch. 19 (the method).
    """
    _check_structure(model, scenario, objective, hardware)
    if throw:
        model, scenario = _check_values(model, scenario)
    names = constraint_names(model, scenario)
    dtype = jnp.result_type(*jax.tree.leaves(scenario))
    tol = solver.tolerance(dtype)
    invalid, infeasible = _validate(model, scenario, objective)
    skip = invalid | infeasible
    safe = jax.tree.map(lambda v, d: jnp.where(skip, d, v), scenario, _fallback(model, scenario))

    def f(x, params):
        return _objective(params[0], params[1], objective, x)

    def g(x, params):
        return _constraints(params[0], names, _log_bounds(*params), x, hardware,
                            params[1].serving_batch)

    params = (model, safe)
    frozen_model, frozen_scenario = jax.lax.stop_gradient(params)
    # the problem's data as the solver sees it: bounds in log units computed once
    data = (frozen_model, frozen_scenario, _log_bounds(frozen_model, frozen_scenario), hardware)

    def f_data(x, d):
        return _objective(d[0], d[1], objective, x)

    def g_data(x, d):
        return _constraints(d[0], names, d[2], x, d[3], d[1].serving_batch)

    if solver.max_steps == 0:
        x0 = _start(frozen_model, frozen_scenario, objective, dtype, _STARTS[0])
        multipliers = tuple(jnp.zeros((), dtype) for _ in names)
        if solver.optimizer is not None:
            x0, multipliers = _optax_phase(f_data, g_data, data, x0, solver)
        result = certify(lambda x: f_data(x, data), lambda x: g_data(x, data), x0,
                         multipliers, jnp.asarray(0))
    else:
        candidates = _candidates(frozen_model, frozen_scenario, dtype)

        def run(c):
            return _local(data, objective, names, f_data, g_data, dtype, tol, solver, c)

        if len(candidates["density"]) == 1:
            result = run(jax.tree.map(lambda v: v[0], candidates))
        else:
            results = jax.vmap(run)(candidates)
            value = jax.vmap(lambda x: f_data(x, data))(results.x)
            result = jax.tree.map(lambda v: v[_best(results, value, tol)], results)
    x = _implicit(f, g, result, params)
    good = ((result.stationarity <= tol) & (result.feasibility <= tol)
            & (result.complementarity <= tol))
    allocation = _allocation(model, x)
    outcome = model(allocation)
    total = outcome.train_flops + safe.inference_demand * outcome.inference_flops
    finite = jnp.isfinite(total) & jnp.isfinite(outcome.loss)
    status = jnp.where(
        invalid, Status.INVALID_INPUT,
        jnp.where(infeasible, Status.INFEASIBLE,
                  jnp.where(good & finite, Status.OPTIMAL,
                            jnp.where(_diverged(result, tol), Status.INFEASIBLE,
                                      Status.NOT_CONVERGED))))
    plan = Plan(
        allocation=allocation, outcome=outcome, total_flops=total, status=status,
        stationarity=result.stationarity, feasibility=result.feasibility,
        complementarity=result.complementarity,
        multipliers=jnp.stack(result.multipliers), steps=result.steps,
    )
    if throw:
        plan = eqx.error_if(plan, status != Status.OPTIMAL,
                            "no optimal plan: inspect Plan.status (solve with throw=False)")
    return plan


def _check_values(model: Pipeline, scenario: Scenario) -> tuple[Pipeline, Scenario]:
    """Raise, naming the argument, for a scenario field or law coefficient out of its domain
    (the checks `solve(..., throw=True)` makes before solving)."""
    rules = {
        "target_loss": (lambda v: ~(v > 0) | jnp.isinf(v), "must be finite and > 0"),
        "target_score": (lambda v: ~((v > 0) & (v < 1)), "must lie in (0, 1)"),
        "inference_demand": (lambda v: ~(v >= 0) | jnp.isinf(v), "must be finite and >= 0"),
        "min_density": (lambda v: ~((v > 0) & (v <= 1)), "must lie in (0, 1]"),
    }
    positive = (lambda v: ~(v > 0), "must be > 0 (and not NaN)")
    checked = {}
    for name in _SCENARIO_FIELDS:
        value = getattr(scenario, name)
        if value is not None:
            bad, text = rules.get(name, positive)
            value = eqx.error_if(value, bad(value), f"{name} {text}")
        checked[name] = value
    law = model.law
    if isinstance(law, Chinchilla):
        coefficients = {}
        for name in ("E", "A", "B", "alpha", "beta"):
            value = getattr(law, name)
            bad = ~(value >= 0) if name == "E" else ~(value > 0)
            bad |= jnp.isinf(value)
            coefficients[name] = eqx.error_if(value, bad, f"{name} must be finite and "
                                              + (">= 0" if name == "E" else "> 0"))
        model = eqx.tree_at(lambda m: m.base.law, model, Chinchilla(**coefficients))
    return model, Scenario(**checked)


# The bounds of the techniques' own variables: (variable, sign of d g / d log variable).
_VARIABLE_BOUNDS = {"max_density": ("density", 1.0), "min_density": ("density", -1.0),
                    "min_samples": ("n_samples", -1.0)}


def _candidates(model: Pipeline, scenario: Scenario, dtype) -> dict[str, Array]:
    """The local solves a problem is given, one row each: where the techniques' variables
    start, and which are held (and at what value).

    Without techniques, one solve. With them: the two `_STARTS`, all variables free; then
    every way of holding some of the techniques' variables at one of their bounds (density at
    1 or at `min_density`, samples at 1) with the others free. A held variable's bound gets its
    multiplier from stationarity after the solve (`_local`), so such a plan is certified for
    the full problem whenever it is a local optimum of it: with pruning a plan at either end of
    the density interval can be a local optimum that the free solves do not reach.
    """
    techniques = [v for v in ("density", "n_samples") if v in model.variables]
    ends = {"density": [jnp.asarray(1.0, dtype)], "n_samples": [jnp.asarray(1.0, dtype)]}
    if scenario.min_density is not None:
        ends["density"].append(jnp.asarray(scenario.min_density, dtype))
    rows = [{**{v: jnp.asarray(x, dtype) for v, x in start.items()},
             **{"hold_" + v: False for v in start}} for start in _STARTS[:2 if techniques else 1]]
    for choice in itertools.product(*[[None, *ends[v]] for v in techniques]):
        if all(c is None for c in choice):
            continue
        row = {**{v: jnp.asarray(x, dtype) for v, x in _STARTS[0].items()},
               **{"hold_" + v: False for v in _STARTS[0]}}
        for v, c in zip(techniques, choice, strict=True):
            if c is not None:
                row[v], row["hold_" + v] = c, True
        rows.append(row)
    return {k: jnp.stack([jnp.asarray(r[k]) for r in rows]) for k in rows[0]}


def _local(data, objective: Objective, names: tuple[str, ...], f, g, dtype, tol: float,
           solver: Solver, candidate: dict[str, Array]):
    """One local solve of `_candidates`, certified on the full problem `(f, g)`, whose data
    are `data` (`(model, scenario, log bounds, hardware)`)."""
    model, scenario = data[0], data[1]
    variables = model.variables
    held_variables = [v for v in _STARTS[0] if v in variables]

    def pin(x, c):
        return tuple(jnp.where(c["hold_" + v], jnp.log(c[v]), xi) if v in held_variables
                     else xi for v, xi in zip(variables, x, strict=True))

    def bound_of_held(k, c):
        bound = _VARIABLE_BOUNDS.get(names[k])
        return None if bound is None else c["hold_" + bound[0]]

    def f_pinned(x, p):
        return f(pin(x, p[1]), p[0])

    def g_pinned(x, p):
        # a held variable's own bounds are dropped here (their multipliers come after)
        gx = g(pin(x, p[1]), p[0])
        return tuple(gk if bound_of_held(k, p[1]) is None
                     else jnp.where(bound_of_held(k, p[1]), -1.0, gk)
                     for k, gk in enumerate(gx))

    start = {v: candidate[v] for v in _STARTS[0]}
    x0 = _start(model, scenario, objective, dtype, start)
    if solver.optimizer is not None:
        x0, _ = _optax_phase(f_pinned, g_pinned, (data, candidate), x0, solver)
    x, lam, steps = interior_point(f_pinned, g_pinned, x0, (data, candidate), tol=tol,
                                   max_steps=solver.max_steps, lanes=solver.lane_count())
    x = pin(x, candidate)
    lam = list(lam)
    # stationarity in each held variable decides the multiplier of its active bound
    grad_f, jac, gx = jax.grad(f)(x, data), jax.jacfwd(g)(x, data), g(x, data)
    for k, name in enumerate(names):
        held = bound_of_held(k, candidate)
        if held is None:
            continue
        variable, sign = _VARIABLE_BOUNDS[name]
        j = variables.index(variable)
        others = [m for m in range(len(names)) if _VARIABLE_BOUNDS.get(names[m], ("",))[0]
                  != variable]
        r = grad_f[j] + sum((jac[m][j] * lam[m] for m in others), jnp.zeros((), dtype))
        value = -r * sign
        lam[k] = jnp.where(held, jnp.where((jnp.abs(gx[k]) <= tol) & (value > 0), value, 0.0),
                           lam[k])
    return certify_values(x, tuple(lam), steps, grad_f, jac, gx)


def _optax_phase(f, g, p, x0: Vector, solver: Solver) -> tuple[Vector, Vector]:
    """The augmented-Lagrangian phase with `solver.optimizer`, from `x0`."""
    return augmented_lagrangian(
        lambda x: f(x, p), lambda x: g(x, p), x0, optimizer=solver.optimizer,
        inner_steps=solver.inner_steps, outer_steps=solver.outer_steps,
    )


def _best(results, value: Array, tol: float) -> Array:
    """The index of the result to keep among local solves from several starts: the lowest
    objective `value` among the certified ones, or, when none is certified, the smallest KKT
    residual."""
    residual = jnp.maximum(jnp.maximum(results.stationarity, results.feasibility),
                           results.complementarity)
    certified = (residual <= tol) & jnp.isfinite(value)
    return jnp.where(jnp.any(certified), jnp.argmin(jnp.where(certified, value, jnp.inf)),
                     jnp.argmin(jnp.where(jnp.isnan(residual), jnp.inf, residual)))


def _diverged(result, tol: float) -> Array:
    """The signature of a locally infeasible problem: the iterates stay infeasible while the
    multipliers grow without bound (they reach ~1e270 on caps below the target's minimum).
    A constraint violation alone is not enough: a stalled solve can also end infeasible."""
    largest = jnp.max(jnp.stack(result.multipliers))
    return (result.feasibility > jnp.sqrt(tol)) & ~(largest < 1e10)


def has_score(model: Pipeline) -> bool:
    """Whether `model`'s outcome carries a score (a success rate), decided without computing."""
    leaves = [leaf for leaf in jax.tree.leaves(model) if eqx.is_inexact_array(leaf)]
    dtype = jnp.result_type(*leaves) if leaves else jnp.result_type(float)
    probe = tuple(jax.ShapeDtypeStruct((), dtype) for _ in VARIABLES)
    return jax.eval_shape(lambda values: model(Allocation(*values)), probe).score is not None


def _fallback(model: Pipeline, scenario: Scenario) -> Scenario:
    """A harmless scenario solved in place of a bad one, so the batch stays finite."""
    safe = {
        "target_loss": model.law.irreducible + 0.5,
        "target_score": 0.5,
        "inference_demand": 0.0,
        "min_density": 0.5,
        "serving_batch": 1.0,
    }
    return Scenario(**{
        name: None if getattr(scenario, name) is None
        else jnp.full_like(getattr(scenario, name), safe.get(name, 1e30))
        for name in _SCENARIO_FIELDS
    })


_SCENARIO_FIELDS = tuple(f.name for f in dataclasses.fields(Scenario))


def _implicit(f, g, result, params) -> Vector:
    """The optimum `result.x`, unchanged in value, differentiable by the implicit function
    theorem: with $R(z, \\theta) = 0$ the KKT conditions in $z = (x, s, \\lambda)$,
    $dz/d\\theta = -(\\partial R/\\partial z)^{-1}\\partial R/\\partial\\theta$."""
    n = len(result.x)
    z = jax.lax.stop_gradient(jnp.stack(result.x + result.slack + result.multipliers))
    m = len(result.slack)

    def residual(z, params):
        x = tuple(z[:n])
        s, lam = z[n:n + m], z[n + m:]
        grad_f = jnp.stack(jax.grad(f)(x, params))
        gx = jnp.stack(g(x, params))
        jac = jnp.stack([jnp.stack(row) for row in jax.jacfwd(g)(x, params)])
        return jnp.concatenate([grad_f + jac.T @ lam, gx + s, s * lam])

    @jax.custom_jvp
    def attach(z, params):
        return z[:n]

    @attach.defjvp
    def attach_jvp(primals, tangents):
        (z, p), (_, dp) = primals, tangents
        matrix = jax.jacfwd(residual)(z, p)
        _, dr = jax.jvp(lambda q: residual(z, q), (p,), (dp,))
        dz = -jnp.linalg.solve(matrix, dr)
        return z[:n], dz[:n]

    return tuple(attach(z, params))


def frontier(
    model: Pipeline,
    scenario: Scenario,
    inference_flops: Float[Array, " points"],
    *,
    solver: Solver = Solver(),
) -> Plan:
    r"""The Pareto frontier of training against inference compute at fixed performance.

    For each cap $c$ in `inference_flops` (FLOP per unit of demand), the least training compute
    that meets the scenario's targets with inference at most $c$: the frontier Villalobos &
    Atkinson (2023) study ("least TC for each IC at a given performance"). Caps below the
    cheapest possible inference are `INFEASIBLE`. One batched solve; never raises.

    **Arguments:**

    - `model`, `scenario`: as for `solve`; the scenario needs a target.
    - `inference_flops`: caps on inference FLOP per unit of demand, any shape.

    **Returns:** a `Plan` batched over `inference_flops`.
    """
    caps = jnp.asarray(inference_flops)

    def one(cap):
        s = eqx.tree_at(lambda sc: sc.max_inference_flops, scenario, cap,
                        is_leaf=lambda v: v is None)
        return solve(model, s, objective="train", solver=solver, throw=False)

    flat = jax.vmap(one)(caps.reshape(-1))
    return jax.tree.map(lambda v: v.reshape(caps.shape + v.shape[1:]), flat)
