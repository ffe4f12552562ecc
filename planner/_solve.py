"""Optimal allocations: one scenario in, one plan out; batch with `jax.vmap`."""

from __future__ import annotations

import enum
import itertools
from typing import TYPE_CHECKING, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from . import _display
from ._alm import augmented_lagrangian
from ._compose import Allocation, Outcome, Pipeline
from ._compute import Hardware
from ._ipm import Vector, certify, certify_values, interior_point
from ._laws import Chinchilla
from ._problem import (
    _STARTS,
    OBJECTIVES,
    Costs,
    Objective,
    Problem,
    Scenario,
    _check_structure,
    _check_values,
    _fallback,
    _start,
    _validate,
    constraint_names,
    has_score,
    memory_infeasible,
)
from ._rules import infeasible_reasons
from ._serving import Serving, deployment_of, least_batch, serving_report

if TYPE_CHECKING:  # optax is imported where it runs: `planner solve` never needs it
    import optax

__all__ = ["OBJECTIVES", "Costs", "Objective", "Plan", "Scenario", "Solver", "Status",
           "constraint_names", "frontier", "has_score", "solve"]


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

class Plan(eqx.Module):
    """The solution of one scenario.

    **Arguments:**

    - `allocation`: the optimal `Allocation`.
    - `outcome`: its `Outcome` (training FLOP, inference FLOP per unit of demand, loss,
      score).
    - `inference_flops`: lifetime inference FLOP, the scenario's `inference_demand` ×
      `outcome.inference_flops_per_unit`.
    - `total_flops`: lifetime compute, `outcome.train_flops` + `inference_flops`.
    - `status`: a `Status` code; only `Status.OPTIMAL` plans are certified. A plan of any
      other status has NaN in `allocation`, `outcome`, `inference_flops` and `total_flops`,
      so that it cannot be taken for an answer (or summed into one); its residuals,
      multipliers and steps say why it is not certified.
    - `stationarity`, `feasibility`, `complementarity`: the KKT residuals (infinity norms, in
      the solver's log variables) that justify the status.
    - `multipliers`: Lagrange multipliers of the constraints, in `constraint_names` order.
    - `steps`: iterations of the Newton method (evaluations of the problem, halved steps
      included).
    - `iterate`: the `Allocation` where the solver stopped, whatever the status: for
      diagnosing a plan that is not optimal (how far it got), never an answer unless `status`
      is `OPTIMAL` (then it equals `allocation`).
    - `serving`: with a `Deployment` stage, the plan in dollars and seconds (`Serving`:
      dollars, serving batch, latency, memory, replicas); else `None`.
    """

    allocation: Allocation
    outcome: Outcome
    inference_flops: Float[Array, ""]
    total_flops: Float[Array, ""]
    status: Int[Array, ""]
    stationarity: Float[Array, ""]
    feasibility: Float[Array, ""]
    complementarity: Float[Array, ""]
    multipliers: Float[Array, " m"]
    steps: Int[Array, ""]
    iterate: Allocation | None = None
    serving: Serving | None = None

    def __str__(self) -> str:
        """A table with units (one line per value; one row per plan of a batch) and the
        count of each status: what `print(plan)` shows."""
        return _display.format_plan(self)

    def to_columns(self) -> dict[str, np.ndarray]:
        """The plan's values as flat NumPy columns (see `planner._display.plan_columns`):
        `n_params`, `n_tokens`, [`density`, `n_samples`], `train_flops`, `inference_flops`
        (lifetime), `total_flops`, `inference_flops_per_unit`, `loss`, [`score`], `status`
        (names)."""
        return _display.plan_columns(self)

    def to_pandas(self):
        """`to_columns` as a `pandas.DataFrame` (needs pandas)."""
        return _display.to_pandas(self)

    def to_arrow(self):
        """`to_columns` as a `pyarrow.Table` (needs pyarrow)."""
        return _display.to_arrow(self)

    def summary(self) -> str:
        """One line: the count of each status with its meaning."""
        return _display.status_summary(self)


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


def solve(
    model: Pipeline,
    scenario: Scenario,
    *,
    objective: Objective = "compute",
    solver: Solver = Solver(),
    hardware: Hardware | None = None,
    fixed: dict[str, ArrayLike] | None = None,
    throw: bool = True,
) -> Plan:
    r"""The optimal allocation for one scenario.

    Problems, by `objective`:

    - `"compute"`: minimise lifetime compute $TC + T \cdot IC$ subject to the targets (with
      only $N, D$ and a loss target this is Sardana et al. 2024's problem);
    - `"loss"` / `"score"`: reach the lowest loss / highest score within the budgets;
    - `"train"`: minimise training compute alone (with `max_inference_flops_per_unit`, one
      point of the Pareto frontier; see `frontier`).

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
    - `objective`: one of `OBJECTIVES`, or a `Costs` (weights on resources; the problem of
      one item of a portfolio at given budget prices).
    - `solver`: a `Solver` configuration.
    - `hardware`: the serving `Hardware`, needed when the scenario has `max_latency`.
    - `fixed`: allocation variables held at given values (e.g. `{"n_params": 7e9}`: the best
      plan for a model of that size); the others are solved for.
    - `throw`: raise unless the status is `OPTIMAL` (under `vmap`, for any member).

    **Returns:** a `Plan`.

    **References:** Sardana et al. 2024, *Beyond Chinchilla-Optimal*, ICML (the lifetime
    problem); Nocedal & Wright 2006, *Numerical Optimization*, ch. 19 (the method).
    """
    _check_structure(model, scenario, objective, hardware)
    if throw:
        model, scenario = _check_values(model, scenario)
    dtype = jnp.result_type(*jax.tree.leaves(scenario))
    tol = solver.tolerance(dtype)
    invalid, infeasible = _validate(model, scenario)
    no_room = memory_infeasible(model, scenario) & ~invalid
    infeasible = infeasible | no_room
    skip = invalid | infeasible
    model, safe = _fallback(model, scenario, skip)
    held = {v: jnp.log(jnp.asarray(value, dtype)) for v, value in (fixed or {}).items()}
    unknown = set(held) - set(model.variables)
    if unknown:
        raise ValueError(f"fixed names {sorted(unknown)}, which are not variables of the "
                         f"model {model.variables}")
    problem = Problem.build(model, safe, objective, hardware, held)
    frozen = jax.lax.stop_gradient(problem)
    if solver.max_steps == 0:
        x0 = _start(frozen, dtype, _STARTS[0])
        multipliers = tuple(jnp.zeros((), dtype) for _ in frozen.names)
        if solver.optimizer is not None:
            x0, multipliers = _optax_phase(_f, _g, frozen, x0, solver)
        result = certify(lambda x: _f(x, frozen), lambda x: _g(x, frozen), x0,
                         multipliers, jnp.asarray(0))
    else:
        candidates = _candidates(frozen, dtype)

        def run(c):
            return _local(frozen, dtype, tol, solver, c)

        if len(candidates["density"]) == 1:
            result = run(jax.tree.map(lambda v: v[0], candidates))
        else:
            results = jax.vmap(run)(candidates)
            value = jax.vmap(lambda x: _f(x, frozen))(results.x)
            result = jax.tree.map(lambda v: v[_best(results, value, tol)], results)
    x = _implicit(_f, _g, result, problem)
    good = ((result.stationarity <= tol) & (result.feasibility <= tol)
            & (result.complementarity <= tol))
    allocation = problem.allocation(x)
    deployment = deployment_of(model)
    if deployment is not None and "serving_batch" not in held:
        allocation = least_batch(model, allocation)
    outcome = model(allocation)
    inference = safe.inference_demand * outcome.inference_flops_per_unit
    total = outcome.train_flops + inference
    finite = jnp.isfinite(total) & jnp.isfinite(outcome.loss)
    status = jnp.where(
        invalid, Status.INVALID_INPUT,
        jnp.where(infeasible, Status.INFEASIBLE,
                  jnp.where(good & finite, Status.OPTIMAL,
                            jnp.where(_diverged(result, tol), Status.INFEASIBLE,
                                      Status.NOT_CONVERGED))))
    # a plan that is not certified shows no numbers that could pass for an answer
    optimal = status == Status.OPTIMAL
    iterate = allocation
    allocation, outcome, inference, total = jax.tree.map(
        lambda v: jnp.where(optimal, v, jnp.nan), (allocation, outcome, inference, total))
    plan = Plan(
        allocation=allocation, outcome=outcome, inference_flops=inference, total_flops=total,
        status=status, stationarity=result.stationarity, feasibility=result.feasibility,
        complementarity=result.complementarity,
        multipliers=_stack(result.multipliers, dtype), steps=result.steps, iterate=iterate,
        serving=None if deployment is None else serving_report(
            model, allocation, outcome, safe.inference_demand, safe.demand_rate),
    )
    if throw:
        plan = _raise_unless_optimal(plan, problem, no_room)
    return plan


MEMORY_INFEASIBLE = (
    "no optimal plan: infeasible: memory: the weights and the KV cache of one sequence of the "
    "smallest model that reaches target_loss do not fit the memory of a serving replica "
    "(Deployment.serve.memory_bytes x devices) at any batch")


def _raise_unless_optimal(plan: Plan, problem: Problem, no_room: Array) -> Plan:
    """`plan`, raising unless it is `OPTIMAL`. Under `jit` the message is the status's; outside
    it names the cause where a closed form of the law finds one (the cap or budget no allocation
    can meet, as `planner solve` says), else the constraint whose multiplier grew largest and
    the residuals."""
    status = plan.status
    if isinstance(status, jax.core.Tracer):
        messages = [f"no optimal plan: {STATUS_MESSAGES[s]}" for s in Status]
        # on the status alone (which the plan returns, so the check is kept): the check on
        # the whole plan fails to batch where some of its leaves are not batched
        index = jnp.where(no_room, len(messages), jnp.asarray(status, jnp.int32))
        checked = eqx.branched_error_if(status, status != Status.OPTIMAL, index,
                                        [*messages, MEMORY_INFEASIBLE])
        return eqx.tree_at(lambda p: p.status, plan, checked)
    if bool(jnp.all(status == Status.OPTIMAL)):
        return plan
    first = jnp.argmax(jnp.ravel(status != Status.OPTIMAL))
    if bool(jnp.ravel(jnp.broadcast_to(no_room, jnp.shape(status)))[first]):
        raise eqx.EquinoxRuntimeError(MEMORY_INFEASIBLE)
    raise eqx.EquinoxRuntimeError(_why_not_optimal(plan, problem))


def _why_not_optimal(plan: Plan, problem: Problem) -> str:
    """The message of a plan (the first of a batch) that is not `OPTIMAL`."""
    names = problem.names
    flat = jax.tree.map(lambda v: jnp.reshape(v, (-1,) + v.shape[jnp.ndim(plan.status):]), plan)
    at = int(jnp.argmax(flat.status != Status.OPTIMAL))
    one = jax.tree.map(lambda v: v[at], flat)
    status = Status(int(one.status))
    where = f" (batch element {at})" if jnp.ndim(plan.status) else ""
    text = f"no optimal plan{where}: {STATUS_MESSAGES[status]}"
    reasons = _closed_form_reasons(problem, jnp.shape(plan.status), at)
    if reasons:
        return f"no optimal plan{where}: " + "; ".join(reasons)
    if status in (Status.INFEASIBLE, Status.NOT_CONVERGED) and names:
        k = int(jnp.argmax(jnp.abs(one.multipliers)))
        text += (f"; the constraint with the largest multiplier is {names[k]} "
                 f"({float(jnp.abs(one.multipliers[k])):.3g}); KKT residuals: stationarity "
                 f"{float(one.stationarity):.3g}, feasibility {float(one.feasibility):.3g}, "
                 f"complementarity {float(one.complementarity):.3g} after {int(one.steps)} "
                 "steps")
    return text


def _closed_form_reasons(problem: Problem, shape: tuple[int, ...], at: int) -> list[str]:
    """Why element `at` of a batch of `shape` cannot reach its target loss, by the closed forms
    of a Chinchilla law (`planner._rules.infeasible_reasons`: caps on parameters and tokens,
    a training budget); empty where they find nothing or the law has none."""
    law, scenario = problem.model.law, problem.scenario
    if not isinstance(law, Chinchilla) or scenario.target_loss is None:
        return []

    def element(v):
        return np.asarray(jnp.broadcast_to(v, shape), dtype=np.float64).reshape(-1)[at:at + 1]

    values = {name: element(getattr(scenario, name))
              for name in ("target_loss", "max_params", "max_tokens", "train_budget")
              if getattr(scenario, name) is not None}
    coef = {name: element(getattr(law, name)) for name in ("E", "A", "B", "alpha", "beta")}
    found = infeasible_reasons(values, coef, np.ones(1, dtype=bool), dense_inference=False,
                               columns=False)
    return found.get(0, [])


# The bounds of the techniques' own variables: (variable, sign of d g / d log variable).
_VARIABLE_BOUNDS = {"max_density": ("density", 1.0), "min_density": ("density", -1.0),
                    "min_samples": ("n_samples", -1.0)}


def _candidates(problem: Problem, dtype) -> dict[str, Array]:
    """The local solves a problem is given, one row each: where the techniques' variables
    start, and which are held (and at what value).

    Without techniques, one solve. With them: the two `_STARTS`, all variables free; then
    every way of holding some of the techniques' variables at one of their bounds (density at
    1 or at `min_density`, samples at 1) with the others free. A held variable's bound gets its
    multiplier from stationarity after the solve (`_local`), so such a plan is certified for
    the full problem whenever it is a local optimum of it: with pruning a plan at either end of
    the density interval can be a local optimum that the free solves do not reach. Variables
    the problem fixes are not techniques here.
    """
    techniques = [v for v in ("density", "n_samples") if v in problem.variables]
    ends = {"density": [jnp.asarray(1.0, dtype)], "n_samples": [jnp.asarray(1.0, dtype)]}
    if problem.scenario.min_density is not None:
        ends["density"].append(jnp.asarray(problem.scenario.min_density, dtype))
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


def _f(x: Vector, problem: Problem) -> Array:
    return problem.objective(x)


def _g(x: Vector, problem: Problem) -> Vector:
    return problem.constraints(x)


def _local(problem: Problem, dtype, tol: float, solver: Solver, candidate: dict[str, Array]):
    """One local solve of `_candidates`, certified on the full `problem`."""
    names, variables = problem.names, problem.variables
    held_variables = [v for v in _STARTS[0] if v in variables]

    def pin(x, c):
        return tuple(jnp.where(c["hold_" + v], jnp.log(c[v]), xi) if v in held_variables
                     else xi for v, xi in zip(variables, x, strict=True))

    def bound_of_held(k, c):
        bound = _VARIABLE_BOUNDS.get(names[k])
        if bound is None or bound[0] not in variables:
            return None
        return c["hold_" + bound[0]]

    def f_pinned(x, p):
        return _f(pin(x, p[1]), p[0])

    def g_pinned(x, p):
        # a held variable's own bounds are dropped here (their multipliers come after)
        gx = _g(pin(x, p[1]), p[0])
        return tuple(gk if bound_of_held(k, p[1]) is None
                     else jnp.where(bound_of_held(k, p[1]), -1.0, gk)
                     for k, gk in enumerate(gx))

    start = {v: candidate[v] for v in _STARTS[0]}
    x0 = _start(problem, dtype, start)
    lam0 = None
    if solver.optimizer is not None:
        x0, lam0 = _optax_phase(f_pinned, g_pinned, (problem, candidate), x0, solver)
    x, lam, steps = interior_point(f_pinned, g_pinned, x0, (problem, candidate), tol=tol,
                                   max_steps=solver.max_steps, lanes=solver.lane_count(),
                                   multipliers=lam0)
    x = pin(x, candidate)
    lam = list(lam)
    # stationarity in each held variable decides the multiplier of its active bound
    grad_f, jac, gx = jax.grad(_f)(x, problem), jax.jacfwd(_g)(x, problem), _g(x, problem)
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
    largest = jnp.max(_stack(result.multipliers, result.x[0].dtype), initial=-jnp.inf)
    return (result.feasibility > jnp.sqrt(tol)) & ~(largest < 1e10)



def _stack(values: Vector, dtype) -> Array:
    """`jnp.stack`, also of no values (a problem without constraints)."""
    return jnp.stack(values) if values else jnp.zeros((0,), dtype)


def _implicit(f, g, result, params) -> Vector:
    """The optimum `result.x`, unchanged in value, differentiable by the implicit function
    theorem: with $R(z, \\theta) = 0$ the KKT conditions in $z = (x, s, \\lambda)$,
    $dz/d\\theta = -(\\partial R/\\partial z)^{-1}\\partial R/\\partial\\theta$."""
    n = len(result.x)
    z = jax.lax.stop_gradient(jnp.stack(result.x + tuple(result.slack)
                                        + tuple(result.multipliers)))
    m = len(result.slack)

    def residual(z, params):
        x = tuple(z[:n])
        s, lam = z[n:n + m], z[n + m:]
        grad_f = jnp.stack(jax.grad(f)(x, params))
        if not m:  # an unconstrained problem: stationarity alone
            return grad_f
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
    inference_caps: Float[Array, " points"],
    *,
    objective: Literal["compute", "dollars"] = "compute",
    solver: Solver = Solver(),
) -> Plan:
    r"""The Pareto frontier of training against inference at fixed performance.

    For each cap $c$ in `inference_caps`, the least training cost that meets the scenario's
    targets with inference at most $c$ per unit of demand: the frontier Villalobos & Atkinson
    (2023) study ("least TC for each IC at a given performance"). With `objective="compute"`
    costs are FLOP (the cap bounds `Scenario.max_inference_flops_per_unit`); with `"dollars"`
    they are dollars on the model's `Deployment` stage (the cap bounds
    `max_inference_dollars_per_unit`, each point the least training dollars; the
    dollar-optimal plan of a demand $T$ is the point where the frontier's slope is $-T$). Caps
    below the cheapest possible inference are `INFEASIBLE`. One batched solve; never raises.

    **Arguments:**

    - `model`, `scenario`: as for `solve`; the scenario needs a target.
    - `inference_caps`: caps on inference per unit of demand (FLOP, or dollars), any shape.
    - `objective`: `"compute"` or `"dollars"`.

    **Returns:** a `Plan` batched over `inference_caps`.
    """
    if objective not in ("compute", "dollars"):
        raise ValueError(f"frontier objective must be 'compute' or 'dollars', got {objective!r}")
    caps = jnp.asarray(inference_caps)
    field = ("max_inference_flops_per_unit" if objective == "compute"
             else "max_inference_dollars_per_unit")
    least = "train" if objective == "compute" else Costs(train_dollars=1.0)

    def one(cap):
        s = eqx.tree_at(lambda sc: getattr(sc, field), scenario, cap,
                        is_leaf=lambda v: v is None)
        return solve(model, s, objective=least, solver=solver, throw=False)

    flat = jax.vmap(one)(caps.reshape(-1))
    return jax.tree.map(lambda v: v.reshape(caps.shape + v.shape[1:]), flat)
