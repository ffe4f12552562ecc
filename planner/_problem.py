"""The problem one plan solves: what it must satisfy (`Scenario`), what it minimises (`Costs`),
and both written as one smooth problem in log variables (`Problem`), shared by the solver of
one scenario (`planner.solve`) and the solver of many coupled ones (`planner.allocate`)."""

from __future__ import annotations

import dataclasses
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._checks import check_rule
from ._compose import VARIABLES, Allocation, Pipeline
from ._compute import Hardware
from ._laws import Chinchilla
from ._rules import INFEASIBLE_TARGET, LAW_RULES, SCENARIO_RULES, below_irreducible
from ._serving import Deployment, deployment_of
from ._techniques.sampling import score_log_failure

Vector = tuple[Array, ...]
Objective = Literal["compute", "loss", "score", "train", "dollars"]
OBJECTIVES: tuple[str, ...] = ("compute", "loss", "score", "train", "dollars")

RESOURCES: tuple[str, ...] = ("train_flops", "inference_flops", "loss", "failure",
                              "train_dollars", "inference_dollars")
"""What a plan uses or leaves, each additive over the items of a portfolio: training FLOP,
lifetime inference FLOP (demand × FLOP per unit of demand), reducible loss $L - E$, failure
rate $1 - \\text{score}$, and, once a `Deployment` stage prices the plan, the dollars of
training and of the lifetime inference demand."""


class Costs(eqx.Module):
    r"""A linear objective over `RESOURCES`, minimised as $\log \sum_r c_r R_r$.

    Every objective of `solve` is one: `"compute"` is `Costs(train_flops=1,
    inference_flops=1)`, `"train"` is `Costs(train_flops=1)`, `"loss"` is `Costs(loss=1)` and
    `"score"` is `Costs(failure=1)` and `"dollars"` is `Costs(train_dollars=1,
    inference_dollars=1)` (needs a `Deployment` stage). Priced resources make the rest: the
    problem of one item of a portfolio at budget prices $p$ (`planner.allocate`) is
    `Costs(loss=w, train_flops=p_train, ...)`. Weights are arrays, so they can be batched,
    differentiated and changed without recompiling; a field left `None` is not built.

    **Arguments:** one non-negative weight per resource used (at least one).
    """

    train_flops: Float[Array, ""] | None = eqx.field(converter=lambda x: _optional(x),
                                                     default=None)
    inference_flops: Float[Array, ""] | None = eqx.field(converter=lambda x: _optional(x),
                                                         default=None)
    loss: Float[Array, ""] | None = eqx.field(converter=lambda x: _optional(x), default=None)
    failure: Float[Array, ""] | None = eqx.field(converter=lambda x: _optional(x), default=None)
    train_dollars: Float[Array, ""] | None = eqx.field(converter=lambda x: _optional(x),
                                                       default=None)
    inference_dollars: Float[Array, ""] | None = eqx.field(converter=lambda x: _optional(x),
                                                           default=None)

    @classmethod
    def of(cls, objective: Objective | Costs) -> Costs:
        """The `Costs` of an objective's name (a `Costs` is returned as it is)."""
        if isinstance(objective, Costs):
            return objective
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES} or a Costs, "
                             f"got {objective!r}")
        return {"compute": cls(train_flops=1.0, inference_flops=1.0),
                "train": cls(train_flops=1.0), "loss": cls(loss=1.0),
                "score": cls(failure=1.0),
                "dollars": cls(train_dollars=1.0, inference_dollars=1.0)}[objective]

    def terms(self) -> dict[str, Array]:
        """The weights given, by resource."""
        return {r: getattr(self, r) for r in RESOURCES if getattr(self, r) is not None}


def _optional(x):
    return None if x is None else jnp.asarray(x)


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
    - `inference_demand`: lifetime inference demand, in the units of the pipeline's
      `Outcome.inference_flops_per_unit` (generated tokens for plain pretraining, queries once
      sampling is on). Default 0.
    - `train_budget`: cap on training FLOP.
    - `inference_budget`: cap on lifetime inference FLOP (`inference_demand` × per-unit FLOP).
    - `max_inference_flops_per_unit`: cap on inference FLOP per unit of demand (a per-query
      budget; the frontier's control).
    - `max_params`, `max_tokens`: caps on $N$ (memory, latency) and $D$ (data available).
    - `min_density`: lower bound on the pruning density.
    - `max_latency`: bound on the per-token decode latency (seconds) of the served model on
      the `hardware` given to `solve`, at batch size `serving_batch` (default 1): the
      roofline $\max(N d B / W,\ 2 N d b / (P U)) \le \tau$ of `Hardware`, as two smooth
      constraints. With a `Deployment` stage it bounds the decode step time of a replica
      instead (whose batch is then a variable), and needs no `hardware`.
    - `serving_batch`: the batch of the latency bound on `hardware` (without `Deployment`).
    - `max_inference_dollars_per_unit`: cap on inference dollars per unit of demand (needs a
      `Deployment` stage; the control of `frontier(..., objective="dollars")`).
    - `demand_rate`: peak demand, units per second (with `Deployment`: the plan reports the
      replicas that serve it).
    """

    target_loss: Float[Array, ""] | None = eqx.field(converter=_optional_array, default=None)
    target_score: Float[Array, ""] | None = eqx.field(converter=_optional_array, default=None)
    inference_demand: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=0.0)
    train_budget: Float[Array, ""] | None = eqx.field(converter=_optional_array, default=None)
    inference_budget: Float[Array, ""] | None = eqx.field(converter=_optional_array, default=None)
    max_inference_flops_per_unit: Float[Array, ""] | None = eqx.field(
        converter=_optional_array, default=None
    )
    max_params: Float[Array, ""] | None = eqx.field(converter=_optional_array, default=None)
    max_tokens: Float[Array, ""] | None = eqx.field(converter=_optional_array, default=None)
    min_density: Float[Array, ""] | None = eqx.field(converter=_optional_array, default=None)
    max_latency: Float[Array, ""] | None = eqx.field(converter=_optional_array, default=None)
    serving_batch: Float[Array, ""] | None = eqx.field(converter=_optional_array, default=None)
    max_inference_dollars_per_unit: Float[Array, ""] | None = eqx.field(
        converter=_optional_array, default=None
    )
    demand_rate: Float[Array, ""] | None = eqx.field(converter=_optional_array, default=None)

    def broadcast(self) -> Scenario:
        """Every field given broadcast to one common shape and dtype, ready for `vmap`."""
        leaves = jax.tree.leaves(self)
        shape = jnp.broadcast_shapes(*(leaf.shape for leaf in leaves))
        dtype = jnp.result_type(*leaves)
        return jax.tree.map(lambda v: jnp.broadcast_to(jnp.asarray(v, dtype), shape), self)



def constraint_names(model: Pipeline, scenario: Scenario) -> tuple[str, ...]:
    """Names of the constraints a solve imposes, in `Plan.multipliers` order.

    One per `Scenario` field given (targets, budgets, caps), then the variables' own bounds:
    `max_density` (density <= 1) and `min_density` with pruning, `min_samples` (k >= 1) with
    sampling. With a `Deployment` stage: `step_memory` and `step_compute` (the step time is at
    least each roofline term), `max_latency` (a bound on it), `max_memory` (weights and KV
    cache fit a replica, when the serving hardware gives `memory_bytes`), and `min_batch`
    (b >= 1), or `samples_in_batch` (b >= k) with sampling.
    """
    names = [name for name in _BOUND_FIELDS if getattr(scenario, name) is not None]
    deployment = deployment_of(model)
    if scenario.max_inference_dollars_per_unit is not None:
        names.append("max_inference_dollars_per_unit")
    if deployment is not None:
        names += ["step_memory", "step_compute"]
        if scenario.max_latency is not None:
            names.append("max_latency")
        if deployment.serve.memory_bytes is not None:
            names.append("max_memory")
        names.append("samples_in_batch" if "n_samples" in model.variables else "min_batch")
    elif scenario.max_latency is not None:
        names += ["max_latency_memory", "max_latency_compute"]
    if "density" in model.variables:
        names.append("max_density")
        if scenario.min_density is not None:
            names.append("min_density")
    if "n_samples" in model.variables:
        names.append("min_samples")
    return tuple(names)


_BOUND_FIELDS = ("target_loss", "target_score", "train_budget", "inference_budget",
                 "max_inference_flops_per_unit", "max_params", "max_tokens")
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
    for name in ("train_budget", "max_inference_flops_per_unit", "max_params", "max_tokens"):
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
        bounds["max_latency"] = safe_log(scenario.max_latency)
    if scenario.max_inference_dollars_per_unit is not None:
        bounds["max_inference_dollars_per_unit"] = safe_log(
            scenario.max_inference_dollars_per_unit)
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


class Problem(eqx.Module):
    r"""One smooth problem in log variables: minimise `objective(x)` subject to
    `constraints(x) <= 0`, where `x` holds the logarithms of the free allocation variables.

    Built by `Problem.build` from a model, a scenario and an objective; the solvers see nothing
    else. Every field is a pytree of arrays, so a batch of problems is a `vmap` away and a
    problem is differentiable in its data.

    **Arguments:**

    - `model`: the `Pipeline`.
    - `scenario`: the `Scenario` (its targets, budgets and caps).
    - `costs`: the objective, a `Costs`.
    - `bounds`: the constraints' right-hand sides in log units, by constraint name.
    - `hardware`: the serving `Hardware` of a latency bound, or `None`.
    - `fixed`: logarithms of allocation variables held at a value (the shared variables of a
      portfolio, `planner.allocate(..., shared=...)`); the others are free.
    - `names`: the constraints, in order (`constraint_names`).
    """

    model: Pipeline
    scenario: Scenario
    costs: Costs
    bounds: dict[str, Array]
    hardware: Hardware | None
    fixed: dict[str, Array]
    names: tuple[str, ...] = eqx.field(static=True)

    @classmethod
    def build(cls, model: Pipeline, scenario: Scenario, objective: Objective | Costs,
              hardware: Hardware | None = None, fixed: dict[str, Array] | None = None
              ) -> Problem:
        return cls(model, scenario, Costs.of(objective), _log_bounds(model, scenario),
                   hardware, dict(fixed or {}), constraint_names(model, scenario))

    @property
    def variables(self) -> tuple[str, ...]:
        """The free variables, in the order of `x`."""
        return tuple(v for v in self.model.variables if v not in self.fixed)

    def log_values(self, x: Vector) -> dict[str, Array]:
        """Every variable of the model in log units, the fixed ones included."""
        values = dict(zip(self.variables, x, strict=True))
        values.update(self.fixed)
        return values

    def allocation(self, x: Vector) -> Allocation:
        return Allocation(**{v: jnp.exp(xi) for v, xi in self.log_values(x).items()})

    def resources(self, x: Vector) -> dict[str, Array]:
        """Each of `RESOURCES` the model defines at `x`, in natural units."""
        allocation = self.allocation(x)
        out = self.model(allocation)
        found = {"train_flops": out.train_flops,
                 "inference_flops": (self.scenario.inference_demand
                                     * out.inference_flops_per_unit),
                 "loss": out.loss - out.irreducible_loss}
        if out.score is not None:
            found["failure"] = jnp.exp(score_log_failure(self.model, allocation))
        if out.train_dollars is not None:
            found["train_dollars"] = out.train_dollars
            found["inference_dollars"] = (self.scenario.inference_demand
                                          * out.inference_dollars_per_unit)
        return found

    def objective(self, x: Vector) -> Array:
        """$\\log \\sum_r c_r R_r(x)$; with one resource, $\\log c + \\log R(x)$ computed in log
        form (a failure rate of 1e-300 keeps its digits)."""
        terms = self.costs.terms()
        allocation = self.allocation(x)
        out = self.model(allocation)
        if len(terms) == 1:
            (resource, weight), = terms.items()
            log_value = {
                "train_flops": lambda: jnp.log(out.train_flops),
                "inference_flops": lambda: jnp.log(self.scenario.inference_demand
                                                   * out.inference_flops_per_unit),
                "loss": lambda: jnp.log(out.loss - out.irreducible_loss),
                "failure": lambda: score_log_failure(self.model, allocation),
                "train_dollars": lambda: jnp.log(out.train_dollars),
                "inference_dollars": lambda: jnp.log(self.scenario.inference_demand
                                                     * out.inference_dollars_per_unit),
            }[resource]()
            return jnp.log(weight) + log_value
        value = self.resources(x)
        return jnp.log(sum(weight * value[r] for r, weight in terms.items()))

    def constraints(self, x: Vector) -> Vector:
        """g(x) <= 0, one entry per name in `names`."""
        allocation = self.allocation(x)
        out = self.model(allocation)
        var = self.log_values(x)
        deployment = deployment_of(self.model)
        if deployment is not None:
            step_memory, step_compute = deployment.roofline(allocation)
        elif self.hardware is not None:
            batch = 1.0 if self.scenario.serving_batch is None else self.scenario.serving_batch
            memory, compute = self.hardware.roofline(allocation.n_params, batch,
                                                     allocation.density)
        lhs = {
            "target_loss": lambda: jnp.log(out.loss - out.irreducible_loss),
            "target_score": lambda: _neg_log_log_failure(score_log_failure(self.model,
                                                                           allocation)),
            "train_budget": lambda: jnp.log(out.train_flops),
            "inference_budget": lambda: jnp.log(out.inference_flops_per_unit),
            "max_inference_flops_per_unit": lambda: jnp.log(out.inference_flops_per_unit),
            "max_params": lambda: var["n_params"],
            "max_tokens": lambda: var["n_tokens"],
            "max_density": lambda: var["density"],
            "min_density": lambda: -var["density"],
            "min_samples": lambda: -var["n_samples"],
            "max_latency_memory": lambda: jnp.log(memory),
            "max_latency_compute": lambda: jnp.log(compute),
            "max_inference_dollars_per_unit": lambda: jnp.log(out.inference_dollars_per_unit),
            "step_memory": lambda: jnp.log(step_memory) - var["step_time"],
            "step_compute": lambda: jnp.log(step_compute) - var["step_time"],
            "max_latency": lambda: var["step_time"],
            "max_memory": lambda: jnp.log(deployment.memory_used(allocation)
                                          / deployment.memory_available()),
            "min_batch": lambda: -var["serving_batch"],
            "samples_in_batch": lambda: var["n_samples"] - var["serving_batch"],
        }
        sign = {"min_density": -1.0}
        return tuple(lhs[name]() - sign.get(name, 1.0) * self.bounds.get(name, 0.0)
                     for name in self.names)


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


def _start(problem: Problem, dtype, technique: dict[str, float]) -> Vector:
    """A starting point from closed forms where the law has them.

    With a loss target, the training-optimal model for that loss; with a score target, the
    training-optimal model whose score (at the starting density and samples) just meets it,
    found on the training-optimal ray by `_bracketed_root` in the log of the reducible loss;
    under a training budget, the budget's training optimum; when the objective weighs loss
    against priced training FLOP, the compute-optimal model at the compute where the two
    balance; otherwise (or without closed forms) a 1e9-parameter model on 2e10 tokens. The
    techniques' variables start at the values in `technique` (see `_STARTS`); fixed variables
    are not part of the start.
    """
    model, scenario, terms = problem.model, problem.scenario, problem.costs.terms()
    n, d = jnp.asarray(1e9, dtype), jnp.asarray(2e10, dtype)
    fixed = {name: jnp.asarray(value, dtype) for name, value in technique.items()}
    law = model.law
    chinchilla = isinstance(law, Chinchilla)
    if chinchilla and scenario.train_budget is not None:
        n, d = _budget_optimum(law, scenario.train_budget, n, d)
    if chinchilla and "loss" in terms and "train_flops" in terms:
        # min_C  w (L(C) - E) + p C  on the compute-optimal frontier, where L(C) - E = K C^-g
        g = law.alpha * law.beta / (law.alpha + law.beta)
        reference = jnp.asarray(1e20, dtype)
        nr, dr = _budget_optimum(law, reference, n, d)
        k = (law.A * nr**-law.alpha + law.B * dr**-law.beta) * reference**g
        price = terms["train_flops"]
        best = (g * terms["loss"] * k / jnp.where(price > 0, price, 1.0)) ** (1.0 / (1.0 + g))
        n, d = _budget_optimum(law, jnp.where(price > 0, best, 0.0), n, d)
    if chinchilla and not ({"loss", "failure"} & set(terms)):
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
    deployment = deployment_of(model)
    if deployment is not None:
        held = {v: jnp.exp(x) for v, x in problem.fixed.items()}
        values = {**start, **held}
        serving = deployment.start(values["n_params"], values.get("density", jnp.ones_like(n)),
                                   values.get("n_samples", jnp.ones_like(n)),
                                   scenario.max_latency)
        if "serving_batch" in held:
            probe = Allocation(n_params=values["n_params"], n_tokens=d,
                               density=values.get("density", 1.0),
                               serving_batch=held["serving_batch"])
            serving["step_time"] = 2.0 * jnp.maximum(*deployment.roofline(probe))
        start = {**serving, **start}
    return tuple(jnp.log(jnp.asarray(start[v], dtype)) for v in problem.variables)


def _budget_optimum(law: Chinchilla, budget: Array, n: Array, d: Array) -> tuple[Array, Array]:
    """The training-optimal (N, D) for `budget` FLOP, or `(n, d)` where `budget <= 0`."""
    s = law.alpha + law.beta
    g = (law.alpha * law.A / (law.beta * law.B)) ** (1.0 / s)
    ok = budget > 0
    budget = jnp.where(ok, budget, 1.0)
    return (jnp.where(ok, g * (budget / 6.0) ** (law.beta / s), n),
            jnp.where(ok, (budget / 6.0) ** (law.alpha / s) / g, d))


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


def _validate(model: Pipeline, scenario: Scenario) -> tuple[Array, Array]:
    """(invalid, infeasible): scenario-level checks that need no solve, from the rules of
    `planner._rules` (`Rule.violated`) and its one closed-form infeasibility (a target loss at
    or below the law's irreducible loss)."""
    invalid = jnp.asarray(False)
    for name, rule in SCENARIO_RULES.items():
        value = getattr(scenario, name)
        if value is not None:
            invalid |= rule.violated(value)
    # every coefficient of the law and the stages is finite; a Chinchilla law's in its domain
    for leaf in jax.tree.leaves(model):
        if eqx.is_inexact_array(leaf):
            invalid |= ~jnp.all(jnp.isfinite(leaf))
    law = model.law
    if isinstance(law, Chinchilla):
        for name, rule in LAW_RULES.items():
            invalid |= rule.violated(getattr(law, name))
    infeasible = jnp.asarray(False)
    if scenario.target_loss is not None:
        infeasible |= scenario.target_loss <= law.irreducible
    return invalid, infeasible & ~invalid


def memory_infeasible(model: Pipeline, scenario: Scenario) -> Array:
    """Whether the weights and KV cache of one sequence cannot fit a serving replica for any
    model that reaches `target_loss`: the smallest such model, $N_\\min = (A/(\\ell -
    E))^{1/\\alpha}$, at batch 1 already overflows (with pruning only the cache counts,
    since the weights can shrink). Decided in closed form, before solving."""
    deployment = deployment_of(model)
    law = model.law
    if (deployment is None or deployment.serve.memory_bytes is None
            or scenario.target_loss is None or not isinstance(law, Chinchilla)):
        return jnp.asarray(False)
    gap = scenario.target_loss - law.E
    ok = gap > 0
    n_min = (law.A / jnp.where(ok, gap, 1.0)) ** (1.0 / law.alpha)
    probe = Allocation(n_params=n_min, n_tokens=jnp.ones_like(n_min),
                       density=jnp.zeros_like(n_min) if "density" in model.variables
                       else jnp.ones_like(n_min), serving_batch=jnp.ones_like(n_min))
    return ok & (deployment.memory_used(probe) > deployment.memory_available())


def _check_structure(model: Pipeline, scenario: Scenario, objective: Objective | Costs,
                     hardware: Hardware | None) -> None:
    deployment = deployment_of(model) if isinstance(model, Pipeline) else None
    if deployment is not None:
        if not isinstance(model.techniques[-1], Deployment) or sum(
                isinstance(t, Deployment) for t in model.techniques) > 1:
            raise ValueError("a Deployment stage prices the whole pipeline: give one, last")
        if hardware is not None or scenario.serving_batch is not None:
            raise ValueError("with a Deployment stage the serving hardware is the stage's and "
                             "the batch is a variable: give no hardware= and no serving_batch "
                             "(hold the batch with fixed={'serving_batch': b})")
    elif scenario.max_latency is not None and not isinstance(hardware, Hardware):
        raise ValueError("max_latency needs the serving hardware: solve(..., hardware=Hardware) "
                         "or a Deployment stage")
    if scenario.serving_batch is not None and scenario.max_latency is None:
        raise ValueError("serving_batch only matters with max_latency")
    terms = Costs.of(objective).terms()
    priced = {"train_dollars", "inference_dollars"} & set(terms)
    if (priced or scenario.max_inference_dollars_per_unit is not None) and deployment is None:
        raise ValueError("dollars need the hardware the plan trains and runs on: add a "
                         "Deployment(train=Hardware, serve=Hardware) stage, last in the "
                         "Pipeline")
    if not terms:
        raise ValueError("the objective's Costs weigh no resource")
    if not isinstance(model, Pipeline):
        raise ValueError("model must be a Pipeline")
    if not isinstance(scenario, Scenario):
        raise ValueError("scenario must be a Scenario")
    scored = has_score(model)
    if ("failure" in terms or scenario.target_score is not None) and not scored:
        raise ValueError("a score objective or target_score needs a model with a score: "
                         "add a RepeatedSampling stage")
    name = objective if isinstance(objective, str) else "Costs(...)"
    if not ({"loss", "failure"} & set(terms)):
        if scenario.target_loss is None and scenario.target_score is None:
            raise ValueError(f"objective={name!r} needs target_loss or target_score")
    elif scenario.train_budget is None and not ({"train_flops", "inference_flops",
                                                 "train_dollars", "inference_dollars"}
                                                & set(terms)):
        raise ValueError(f"objective={name!r} needs a train_budget")


def _check_values(model: Pipeline, scenario: Scenario) -> tuple[Pipeline, Scenario]:
    """Raise, naming the argument, for a scenario field or law coefficient out of its domain,
    or a target loss at or below the law's irreducible loss (the checks
    `solve(..., throw=True)` makes before solving; the rules are `planner._rules`'). Outside
    `jit` the checks are decided eagerly and the messages carry the values."""
    checked = {}
    for name in _SCENARIO_FIELDS:
        value = getattr(scenario, name)
        if value is not None:
            value = check_rule(value, SCENARIO_RULES[name])
        checked[name] = value
    law = model.law
    if isinstance(law, Chinchilla):
        law = Chinchilla(**{name: check_rule(getattr(law, name), rule)
                            for name, rule in LAW_RULES.items()})
        model = eqx.tree_at(lambda m: m.base.law, model, law)
    if checked["target_loss"] is not None:
        target, irreducible = checked["target_loss"], law.irreducible
        below = target <= irreducible
        if isinstance(below, jax.core.Tracer):
            checked["target_loss"] = eqx.error_if(target, below, INFEASIBLE_TARGET)
        elif bool(jnp.any(below)):
            at = jnp.argmax(jnp.ravel(below))
            t, e = jnp.broadcast_arrays(target, irreducible)
            raise eqx.EquinoxRuntimeError(
                "no optimal plan: " + below_irreducible(float(jnp.ravel(t)[at]),
                                                        float(jnp.ravel(e)[at])))
    return model, Scenario(**checked)


def has_score(model: Pipeline) -> bool:
    """Whether `model`'s outcome carries a score (a success rate), decided without computing."""
    leaves = [leaf for leaf in jax.tree.leaves(model) if eqx.is_inexact_array(leaf)]
    dtype = jnp.result_type(*leaves) if leaves else jnp.result_type(float)
    probe = tuple(jax.ShapeDtypeStruct((), dtype) for _ in VARIABLES)
    return jax.eval_shape(lambda values: model(Allocation(*values)), probe).score is not None


def _fallback(model: Pipeline, scenario: Scenario, skip: Array) -> tuple[Pipeline, Scenario]:
    """`(model, scenario)` with the rules' stand-ins (`Rule.stand_in`: an easy, feasible
    problem) where `skip`, so that a refused scenario keeps the batch finite and cheap: every
    Chinchilla law of the model (the pipeline's and its stages') takes the stand-in law, and
    a target loss sits `stand_in` above its irreducible loss."""
    def swap(node):
        if not isinstance(node, Chinchilla):
            return node
        return Chinchilla(**{name: jnp.where(skip, rule.stand_in, getattr(node, name))
                             for name, rule in LAW_RULES.items()})

    model = jax.tree.map(swap, model, is_leaf=lambda node: isinstance(node, Chinchilla))
    fields = {}
    for name in _SCENARIO_FIELDS:
        value, rule = getattr(scenario, name), SCENARIO_RULES[name]
        if value is not None:
            stand_in = rule.stand_in + (model.law.irreducible if rule.relative_to_irreducible
                                        else 0.0)
            value = jnp.where(skip, jnp.asarray(stand_in, jnp.result_type(value)), value)
        fields[name] = value
    return model, Scenario(**fields)


_SCENARIO_FIELDS = tuple(f.name for f in dataclasses.fields(Scenario))

