"""Optimal allocations: one scenario in, one plan out; batch with `jax.vmap`."""

from __future__ import annotations

import enum
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from ._compose import VARIABLES, Allocation, Outcome, Pipeline
from ._ipm import interior_point, kkt_residuals
from ._laws import Chinchilla

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


class Scenario(eqx.Module):
    """What one plan must satisfy. Every field is an array, so a batch is a `vmap` away.

    **Arguments:**

    - `target_loss`: the loss the served model must reach (`inf`: no loss target).
    - `target_score`: the success rate it must reach, in [0, 1) (0: no score target).
    - `inference_demand`: lifetime inference, in the units of the pipeline's
      `inference_flops` (tokens for plain pretraining, queries once sampling is on).
    - `train_budget`: cap on training FLOP.
    - `inference_budget`: cap on lifetime inference FLOP (`inference_demand` × per-unit FLOP).
    - `max_inference_flops`: cap on inference FLOP per unit of demand (a per-query budget; the
      frontier's control).
    - `max_params`, `max_tokens`: caps on $N$ (memory, latency) and $D$ (data available).
    - `min_density`: lower bound on the pruning density.
    """

    target_loss: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=_INF)
    target_score: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=0.0)
    inference_demand: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=0.0)
    train_budget: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=_INF)
    inference_budget: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=_INF)
    max_inference_flops: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=_INF)
    max_params: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=_INF)
    max_tokens: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=_INF)
    min_density: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=0.0)

    def broadcast(self) -> Scenario:
        """Every field broadcast to one common shape, ready for `vmap`."""
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
    - `steps`: Newton steps taken.
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
    constraints; it runs a primal-dual interior-point Newton method (`planner._ipm`) with exact
    Hessians from JAX, then certifies the result by its KKT residuals.

    **Arguments:**

    - `tol`: KKT residual below which a scenario is `OPTIMAL` (scale-free: objective and
      constraints are logarithms). Default 1e-10 in float64, 1e-5 in float32.
    - `max_steps`: Newton step limit.
    """

    tol: float | None = eqx.field(static=True, default=None)
    max_steps: int = eqx.field(static=True, default=100)

    def tolerance(self, dtype) -> float:
        if self.tol is not None:
            return self.tol
        return 1e-10 if jnp.dtype(dtype) == jnp.float64 else 1e-5


def constraint_names(model: Pipeline, objective: Objective = "compute") -> tuple[str, ...]:
    """Names of the constraints a solve of `model` imposes, in `Plan.multipliers` order."""
    names = ["target_loss", "target_score", "train_budget", "inference_budget",
             "max_inference_flops", "max_params", "max_tokens"]
    if "density" in model.variables:
        names += ["max_density", "min_density"]
    if "n_samples" in model.variables:
        names += ["min_samples"]
    return tuple(names)


def _safe_log(x: Array) -> Array:
    """log x for finite positive x; 0 elsewhere (the caller masks those entries)."""
    ok = jnp.isfinite(x) & (x > 0)
    return jnp.where(ok, jnp.log(jnp.where(ok, x, 1.0)), 0.0)


def _allocation(model: Pipeline, x: Array) -> Allocation:
    values = dict(zip(model.variables, jnp.exp(x)))
    return Allocation(**values)


def _objective(model: Pipeline, scenario: Scenario, objective: Objective, x: Array) -> Array:
    out = model(_allocation(model, x))
    if objective == "compute":
        return jnp.log(out.train_flops + scenario.inference_demand * out.inference_flops)
    if objective == "train":
        return jnp.log(out.train_flops)
    if objective == "loss":
        return jnp.log(out.loss - out.irreducible_loss)
    return _log_failure(out)


def _log_failure(out: Outcome) -> Array:
    if out.score is None:
        raise ValueError("this objective or target needs a score: add a RepeatedSampling stage")
    return jnp.log1p(-out.score)


def _constraints(model: Pipeline, scenario: Scenario, x: Array) -> Array:
    """g(x) <= 0, one entry per `constraint_names`; inactive entries are the constant -1."""
    out = model(_allocation(model, x))
    demand = scenario.inference_demand
    rows = []

    def add(active, value):
        rows.append(jnp.where(active, value, -1.0))

    gap = scenario.target_loss - out.irreducible_loss
    add(jnp.isfinite(scenario.target_loss),
        jnp.log(out.loss - out.irreducible_loss) - _safe_log(gap))
    if out.score is not None:
        add(scenario.target_score > 0, _log_failure(out) - jnp.log1p(-scenario.target_score))
    else:
        add(False, 0.0)
    add(jnp.isfinite(scenario.train_budget),
        jnp.log(out.train_flops) - _safe_log(scenario.train_budget))
    add(jnp.isfinite(scenario.inference_budget) & (demand > 0),
        jnp.log(out.inference_flops) + _safe_log(demand) - _safe_log(scenario.inference_budget))
    add(jnp.isfinite(scenario.max_inference_flops),
        jnp.log(out.inference_flops) - _safe_log(scenario.max_inference_flops))
    index = {v: i for i, v in enumerate(model.variables)}
    add(jnp.isfinite(scenario.max_params), x[index["n_params"]] - _safe_log(scenario.max_params))
    add(jnp.isfinite(scenario.max_tokens), x[index["n_tokens"]] - _safe_log(scenario.max_tokens))
    if "density" in index:
        add(True, x[index["density"]])
        add(scenario.min_density > 0, _safe_log(scenario.min_density) - x[index["density"]])
    if "n_samples" in index:
        add(True, -x[index["n_samples"]])
    return jnp.stack([jnp.asarray(r, x.dtype) for r in rows])


def _start(model: Pipeline, scenario: Scenario, objective: Objective, dtype) -> Array:
    """A starting point from closed forms where the law has them.

    With a loss target, the training-optimal model for that loss; under a training budget, the
    budget's training optimum; otherwise (or without closed forms) a 1e9-parameter model on
    2e10 tokens. Pruning starts at density 0.9 and sampling at 2 samples, inside their bounds.
    """
    n, d = jnp.asarray(1e9, dtype), jnp.asarray(2e10, dtype)
    law = model.law
    if isinstance(law, Chinchilla):
        gap = scenario.target_loss - law.E
        has_target = jnp.isfinite(scenario.target_loss) & (gap > 0)
        safe_gap = jnp.where(has_target, gap, 1.0)
        nc = (law.A * (1.0 + law.alpha / law.beta) / safe_gap) ** (1.0 / law.alpha)
        dc = (law.B * (1.0 + law.beta / law.alpha) / safe_gap) ** (1.0 / law.beta)
        budget = jnp.where(jnp.isfinite(scenario.train_budget), scenario.train_budget, 1e21)
        s = law.alpha + law.beta
        g = (law.alpha * law.A / (law.beta * law.B)) ** (1.0 / s)
        nb = g * (budget / 6.0) ** (law.beta / s)
        db = (budget / 6.0) ** (law.alpha / s) / g
        use_target = has_target & (objective in ("compute", "train"))
        n = jnp.where(use_target, nc, jnp.where(jnp.isfinite(scenario.train_budget), nb, n))
        d = jnp.where(use_target, dc, jnp.where(jnp.isfinite(scenario.train_budget), db, d))
    start = {"n_params": n, "n_tokens": d, "density": 0.9, "n_samples": 2.0}
    return jnp.log(jnp.stack([jnp.asarray(start[v], dtype) for v in model.variables]))


def _validate(
    model: Pipeline, scenario: Scenario, objective: Objective, scored: bool
) -> tuple[Array, Array]:
    """(invalid, infeasible): scenario-level checks that need no solve."""
    fields = jax.tree.leaves(scenario)
    invalid = jnp.any(jnp.stack([jnp.isnan(f) for f in fields]))
    invalid |= jnp.isinf(scenario.target_score) | jnp.isinf(scenario.inference_demand)
    invalid |= (scenario.target_score < 0) | (scenario.inference_demand < 0)
    for name in ("train_budget", "inference_budget", "max_inference_flops", "max_params",
                 "max_tokens", "target_loss"):
        invalid |= getattr(scenario, name) <= 0
    invalid |= (scenario.min_density < 0) | (scenario.min_density > 1)
    law_leaves = [leaf for leaf in jax.tree.leaves(model) if eqx.is_array(leaf)]
    invalid |= jnp.any(jnp.stack([~jnp.all(jnp.isfinite(leaf)) for leaf in law_leaves]))
    if isinstance(model.law, Chinchilla):
        law = model.law
        invalid |= (law.A <= 0) | (law.B <= 0) | (law.alpha <= 0) | (law.beta <= 0) | (law.E < 0)
    if objective in ("compute", "train"):
        invalid |= ~jnp.isfinite(scenario.target_loss) & (scenario.target_score <= 0)
    else:
        invalid |= ~jnp.isfinite(scenario.train_budget)
    if not scored:
        invalid |= scenario.target_score > 0
    infeasible = (scenario.target_loss <= model.law.irreducible) | (scenario.target_score >= 1)
    return invalid, infeasible & ~invalid


def solve(
    model: Pipeline,
    scenario: Scenario,
    *,
    objective: Objective = "compute",
    solver: Solver = Solver(),
    throw: bool = True,
) -> Plan:
    r"""The optimal allocation for one scenario.

    Problems, by `objective`:

    - `"compute"`: minimise lifetime compute $TC + T \cdot IC$ subject to the targets (with
      only $N, D$ and a loss target this is Sardana et al. 2024's problem);
    - `"loss"` / `"score"`: reach the lowest loss / highest score within the budgets;
    - `"train"`: minimise training compute alone (with `max_inference_flops`, one point of the
      Pareto frontier; see `frontier`).

    Every problem also honours the caps in `scenario`. Written for one scenario: batch with
    `jax.vmap(lambda s: solve(model, s, throw=False))(scenarios)`, where a bad scenario gets its
    own `status` and never stops the others.

    Plans are differentiable: `jax.grad`/`jax.jacobian` of any output with respect to the
    scenario or the model's coefficients use the implicit function theorem on the KKT
    conditions at the optimum (not the solver's iterations).

    **Arguments:**

    - `model`: a `Pipeline`.
    - `scenario`: a `Scenario`.
    - `objective`: one of `OBJECTIVES`.
    - `solver`: a `Solver` configuration.
    - `throw`: raise unless the status is `OPTIMAL` (under `vmap`, for any member).

    **Returns:** a `Plan`.

    **References:** Sardana et al. 2024, *Beyond Chinchilla-Optimal*, ICML (the lifetime
    problem); Nocedal & Wright 2006, *Numerical Optimization*, ch. 19 (the method).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if not isinstance(model, Pipeline):
        raise ValueError("model must be a Pipeline")
    if not isinstance(scenario, Scenario):
        raise ValueError("scenario must be a Scenario")
    scored = has_score(model)
    if objective == "score" and not scored:
        raise ValueError("objective='score' needs a model with a score: add RepeatedSampling")
    dtype = jnp.result_type(*jax.tree.leaves(scenario))
    tol = solver.tolerance(dtype)
    invalid, infeasible = _validate(model, scenario, objective, scored)
    safe = jax.tree.map(lambda v, d: jnp.where(invalid | infeasible, d, v), scenario,
                        _fallback(model, scenario))
    x0 = _start(model, safe, objective, dtype)

    def f(x, params):
        m, s = params
        return _objective(m, s, objective, x)

    def g(x, params):
        m, s = params
        return _constraints(m, s, x)

    params = (model, safe)
    frozen = jax.lax.stop_gradient(params)
    result = interior_point(
        lambda x: f(x, frozen), lambda x: g(x, frozen), x0, tol=tol, max_steps=solver.max_steps
    )
    x = _implicit(f, g, result.x, result.slack, result.multipliers, params)
    good = (
        (result.stationarity <= tol) & (result.feasibility <= tol)
        & (result.complementarity <= tol) & jnp.all(jnp.isfinite(result.x))
    )
    allocation = _allocation(model, x)
    outcome = model(allocation)
    total = outcome.train_flops + safe.inference_demand * outcome.inference_flops
    finite = jnp.isfinite(total) & jnp.isfinite(outcome.loss)
    status = jnp.where(
        invalid, Status.INVALID_INPUT,
        jnp.where(infeasible, Status.INFEASIBLE,
                  jnp.where(good & finite, Status.OPTIMAL,
                            jnp.where(result.feasibility > jnp.sqrt(tol), Status.INFEASIBLE,
                                      Status.NOT_CONVERGED))))
    plan = Plan(
        allocation=allocation, outcome=outcome, total_flops=total, status=status,
        stationarity=result.stationarity, feasibility=result.feasibility,
        complementarity=result.complementarity, multipliers=result.multipliers,
        steps=result.steps,
    )
    if throw:
        plan = eqx.error_if(plan, status != Status.OPTIMAL,
                            "no optimal plan: inspect Plan.status (solve with throw=False)")
    return plan


def has_score(model: Pipeline) -> bool:
    """Whether `model`'s outcome carries a score (a success rate), decided without computing."""
    probe = Allocation(*(jnp.ones(()) for _ in VARIABLES))
    return jax.eval_shape(model, probe).score is not None


def _fallback(model: Pipeline, scenario: Scenario) -> Scenario:
    """A harmless scenario solved in place of an invalid one, so the batch stays finite."""
    target = model.law.irreducible + 0.5
    target = jnp.where(jnp.isfinite(target), target, 2.5)
    return Scenario(
        target_loss=jnp.full_like(scenario.target_loss, target),
        target_score=jnp.zeros_like(scenario.target_score),
        inference_demand=jnp.zeros_like(scenario.inference_demand),
        train_budget=jnp.full_like(scenario.train_budget, _INF),
        inference_budget=jnp.full_like(scenario.inference_budget, _INF),
        max_inference_flops=jnp.full_like(scenario.max_inference_flops, _INF),
        max_params=jnp.full_like(scenario.max_params, _INF),
        max_tokens=jnp.full_like(scenario.max_tokens, _INF),
        min_density=jnp.zeros_like(scenario.min_density),
    )


def _implicit(f, g, x, slack, multipliers, params):
    """`x` unchanged in value, with derivatives from the implicit function theorem."""
    z = jax.lax.stop_gradient(jnp.concatenate([x, slack, multipliers]))
    n, m = x.shape[0], slack.shape[0]

    def residual(z, params):
        x, s, lam = z[:n], z[n:n + m], z[n + m:]
        grad_l = jax.grad(f)(x, params) + jax.jacfwd(g)(x, params).T @ lam
        return jnp.concatenate([grad_l, g(x, params) + s, s * lam])

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

    return attach(z, params)
