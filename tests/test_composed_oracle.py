"""The composed solver against a general one: SciPy's SLSQP from many starts.

Three problems, each over random Chinchilla-type laws (coefficients in the range of published
fits), inference demands from 1e9 to 1e15 and random targets, minimising lifetime compute:

1. pruning only ($N$, $D$, density), a loss target and a `min_density` in [0.05, 1];
2. repeated sampling only ($N$, $D$, samples), a score target in [0.1, 0.9];
3. pruning then sampling (all four variables), a score target and a `min_density`.

The oracle does not use `planner`'s solver. It writes the problem planner solves, in the same
log variables, from the model itself (`Pipeline.__call__`, and `score_log_failure` for the
score): minimise the log of lifetime FLOP subject to the target, with density in
[min_density, 1] and at least one sample as bounds. One jitted function gives the objective,
the target's constraint and their Jacobian; `scipy.optimize.minimize(method="SLSQP")` runs
from a grid of starts: densities 1, sqrt(min_density) and min_density, 1 and 8 samples, $N$
and $D$ on the training-optimal ray where the target is just met at those values. From each
start SLSQP first solves with density and samples pinned, then again with them released; the
best point whose constraint holds to 1e-8 is kept. Releasing from a pinned optimum is what
finds every local minimum: from the ray alone SLSQP missed the dense optimum (density 1) on 2
of 150 rows of one pruning draw, ending 0.25% and 0.39% above planner. With the pinned phase
planner's total is never below the oracle's by more than 8.6e-11 in log FLOP, on the rows
below and on 1,900 rows of other seeds. Against a grid with 1, 2, 4, 8 and 32 samples, the
grid used here changes no row's best (600 rows over the three problems), nor does dropping
the sqrt(min_density) start; dropping the 8-sample start loses one row of 150.

Measured on the rows below (seeds 1, 2, 3): the oracle's best meets its constraint to 1.5e-9
at worst; where both totals agree to 1e-6 the allocations agree to 2.8e-7 relative in $N$
and $D$ (density and samples to 1.5e-7), so the 1e-3 tolerance is loose.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from planner import (
    Allocation,
    Chinchilla,
    Pipeline,
    Pretraining,
    Pruning,
    RepeatedSampling,
    Scenario,
    Status,
    SuccessLink,
    score_log_failure,
    solve,
)

LAW_FIELDS = ("E", "A", "B", "alpha", "beta")
FEASIBLE = 1e-8  # the oracle's best point meets its constraint to this, in log units
BEATEN = 1e-6  # relative margin by which the oracle would have to beat planner's total FLOP
AGREE = 1e-6  # objectives this close: the allocations must agree ...
ALLOCATION_RTOL = 1e-3  # ... to this (relative), in N and D (the optimum can be flat)


def pruned(law):
    return Pipeline(Pretraining(law), Pruning(law))


def sampled(law):
    return Pipeline(Pretraining(law), RepeatedSampling(SuccessLink.codex2021()))


def pruned_sampled(law):
    return Pipeline(Pretraining(law), Pruning(law), RepeatedSampling(SuccessLink.codex2021()))


@dataclasses.dataclass(frozen=True)
class Problem:
    make: Callable[[Chinchilla], Pipeline]
    target: str  # "target_loss" or "target_score"
    size: int
    seed: int
    min_optimal: float  # floor on the share of OPTIMAL rows (measured, see PROBLEMS)

    @property
    def fields(self) -> tuple[str, ...]:
        pruning = "density" in self.make(Chinchilla.sardana2024()).variables
        return (self.target, "inference_demand") + (("min_density",) if pruning else ())


# Every row of these draws is OPTIMAL (500 of 500), and so the floors are 1: a row planner
# leaves INFEASIBLE or NOT_CONVERGED here is one where SciPy finds a feasible plan.
PROBLEMS = {
    "pruning": Problem(pruned, "target_loss", size=300, seed=1, min_optimal=1.0),
    "sampling": Problem(sampled, "target_score", size=100, seed=2, min_optimal=1.0),
    "pruning+sampling": Problem(pruned_sampled, "target_score", size=100, seed=3,
                                min_optimal=1.0),
}


def draw(problem: Problem) -> tuple[dict, dict]:
    """Random laws and scenarios, as columns of float64 arrays."""
    rng = np.random.default_rng(problem.seed)
    size = problem.size
    laws = {
        "E": rng.uniform(1.0, 2.5, size),
        "A": 10.0 ** rng.uniform(2.0, 3.5, size),
        "B": 10.0 ** rng.uniform(2.0, 3.5, size),
        "alpha": rng.uniform(0.25, 0.45, size),
        "beta": rng.uniform(0.25, 0.45, size),
    }
    scenarios = {"inference_demand": 10.0 ** rng.uniform(9.0, 15.0, size)}
    if problem.target == "target_loss":
        scenarios["target_loss"] = laws["E"] + 10.0 ** rng.uniform(-1.0, 0.0, size)
    else:
        scenarios["target_score"] = rng.uniform(0.1, 0.9, size)
    if "min_density" in problem.fields:
        scenarios["min_density"] = rng.uniform(0.05, 1.0, size)
    return laws, scenarios


# --------------------------------------------------------------------------------- planner side
def planner_plans(problem: Problem, laws: dict, scenarios: dict):
    """planner's plans for the whole batch: one jitted, vmapped solve."""

    @jax.jit
    def run(law, scenario):
        def one(law, scenario):
            model = problem.make(Chinchilla(**law))
            return solve(model, Scenario(**scenario), objective="compute", throw=False)

        return jax.vmap(one)(law, scenario)

    return jax.tree.map(np.asarray, run(laws, scenarios))


# ---------------------------------------------------------------------------------- SciPy side
class Oracle:
    """The lifetime problem of one pipeline shape, written for SciPy.

    Parameters travel as one flat float64 vector `[E, A, B, alpha, beta, target, demand]`, so a
    single compiled function serves every scenario.
    """

    def __init__(self, problem: Problem):
        self.problem = problem
        self.variables = problem.make(Chinchilla.sardana2024()).variables
        nv = len(self.variables)

        def parts(x, p):
            """[log lifetime FLOP, constraint (<= 0)] at log variables `x`."""
            law = Chinchilla(**dict(zip(LAW_FIELDS, p[:5], strict=True)))
            target, demand = p[5], p[6]
            model = problem.make(law)
            allocation = Allocation(**{v: jnp.exp(x[i]) for i, v in enumerate(self.variables)})
            out = model(allocation)
            objective = jnp.log(out.train_flops + demand * out.inference_flops_per_unit)
            if problem.target == "target_loss":
                g = jnp.log(out.loss - out.irreducible_loss) - jnp.log(target - law.E)
            else:
                g = score_log_failure(model, allocation) - jnp.log1p(-target)
            return jnp.stack([objective, g])

        def value_jac(xp):
            x, p = xp[:nv], xp[nv:]
            return parts(x, p), jax.jacfwd(parts)(x, p)

        def ray_start(p, density, samples):
            """Log variables where the training-optimal model, at this density and sample
            count, just meets the target (bisection on log(L - E) of the ray)."""
            a, b = p[3], p[4]
            fixed = {"density": jnp.log(density), "n_samples": jnp.log(samples)}

            def point(log_gap):
                gap = jnp.exp(log_gap)
                n = jnp.log(p[1] * (1.0 + a / b) / gap) / a
                d = jnp.log(p[2] * (1.0 + b / a) / gap) / b
                full = {"n_params": n, "n_tokens": d, **fixed}
                return jnp.stack([full[v] for v in self.variables])

            def bisect(_, bracket):
                low, high = bracket
                mid = 0.5 * (low + high)
                met = parts(point(mid), p)[1] <= 0.0
                return jnp.where(met, mid, low), jnp.where(met, high, mid)

            low, _ = jax.lax.fori_loop(0, 80, bisect, (jnp.log(1e-8), jnp.log(1e2)))
            return point(low)

        self.parts = jax.jit(parts)
        self.value_jac = jax.jit(value_jac)
        self.ray_starts = jax.jit(jax.vmap(jax.vmap(ray_start, (None, 0, 0)), (0, None, None)))

    def technique_starts(self, min_density: float) -> list[tuple[float, float]]:
        densities = [1.0]
        if "density" in self.variables:
            densities += [math.sqrt(min_density), min_density]
        samples = [1.0, 8.0] if "n_samples" in self.variables else [1.0]
        return list(itertools.product(densities, samples))

    def bounds(self, min_density: float) -> tuple[np.ndarray, np.ndarray]:
        low = np.full(len(self.variables), -np.inf)
        high = np.full(len(self.variables), np.inf)
        if "density" in self.variables:
            i = self.variables.index("density")
            low[i], high[i] = math.log(min_density), 0.0
        if "n_samples" in self.variables:
            i = self.variables.index("n_samples")
            low[i], high[i] = 0.0, math.log(1e9)
        return low, high

    def local(self, x0: np.ndarray, p: np.ndarray, low, high) -> tuple[np.ndarray, float, float]:
        """SLSQP from `x0`, in variables and objective shifted to zero at the start."""
        nv = x0.size
        f0 = float(self.parts(x0, p)[0])
        cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

        def evaluate(z):
            key = z.tobytes()
            if key not in cache:
                cache.clear()
                value, jac = self.value_jac(np.concatenate([z + x0, p]))
                cache[key] = (np.asarray(value), np.asarray(jac))
            return cache[key]

        with np.errstate(all="ignore"):  # a trial step may overflow; SLSQP backtracks
            result = optimize.minimize(
                lambda z: evaluate(z)[0][0] - f0,
                np.zeros(nv),
                jac=lambda z: evaluate(z)[1][0],
                method="SLSQP",
                bounds=list(zip(low - x0, high - x0, strict=True)),
                constraints=[{"type": "ineq", "fun": lambda z: -evaluate(z)[0][1:],
                              "jac": lambda z: -evaluate(z)[1][1:]}],
                options={"ftol": 1e-15, "maxiter": 300},
            )
        x = np.clip(result.x, low - x0, high - x0) + x0
        objective, constraint = (float(v) for v in self.parts(x, p))
        return x, objective, constraint

    def best(self, laws: dict, scenarios: dict):
        """Per scenario: the best feasible point over every start (log variables), its log
        total FLOP (inf where no start ends feasible) and its constraint value."""
        problem = self.problem
        size = problem.size
        params = np.stack([laws[k] for k in LAW_FIELDS]
                          + [scenarios[problem.target], scenarios["inference_demand"]], axis=1)
        min_density = scenarios.get("min_density", np.ones(size))
        nv = len(self.variables)
        xs = np.full((size, nv), np.nan)
        objectives = np.full(size, np.inf)
        constraints = np.full(size, np.nan)
        for i in range(size):
            techniques = np.asarray(self.technique_starts(float(min_density[i])))
            starts = np.asarray(self.ray_starts(params[i:i + 1], techniques[:, 0],
                                                techniques[:, 1]))[0]
            low, high = self.bounds(float(min_density[i]))
            technique = np.isfinite(low)  # density and samples have bounds; N and D none
            for x0 in starts:
                # the technique's variables pinned at the start's values, then released
                pinned = self.local(x0, params[i], np.where(technique, x0, low),
                                    np.where(technique, x0, high))
                if not math.isfinite(pinned[1]):
                    continue
                released = self.local(pinned[0], params[i], low, high)
                for x, objective, constraint in (pinned, released):
                    if constraint <= FEASIBLE and objective < objectives[i]:
                        xs[i], objectives[i], constraints[i] = x, objective, constraint
        return xs, objectives, constraints


# ------------------------------------------------------------------------------------ the tests
@pytest.fixture(scope="module", params=list(PROBLEMS))
def comparison(request):
    problem = PROBLEMS[request.param]
    laws, scenarios = draw(problem)
    plans = planner_plans(problem, laws, scenarios)
    oracle = Oracle(problem)
    xs, objectives, constraints = oracle.best(laws, scenarios)
    planner_x = np.stack([np.log(getattr(plans.allocation, v)) for v in oracle.variables], 1)
    return dict(
        name=request.param, problem=problem, laws=laws, scenarios=scenarios, plans=plans,
        variables=oracle.variables, oracle_x=xs, oracle_objective=objectives,
        oracle_constraint=constraints, planner_x=planner_x,
        optimal=plans.status == Status.OPTIMAL,
        # log of planner's total FLOP over the oracle's: > 0 where the oracle does better
        gap=np.log(plans.total_flops) - objectives,
    )


def describe(c, i) -> str:
    law = {k: float(c["laws"][k][i]) for k in LAW_FIELDS}
    scenario = {k: float(v[i]) for k, v in c["scenarios"].items()}
    planner = dict(zip(c["variables"], np.exp(c["planner_x"][i]).tolist(), strict=True))
    oracle = dict(zip(c["variables"], np.exp(c["oracle_x"][i]).tolist(), strict=True))
    return (f"{c['name']} row {i}: law {law}, scenario {scenario}; planner "
            f"{Status(int(c['plans'].status[i])).name} {planner} total "
            f"{float(c['plans'].total_flops[i])!r}; SciPy {oracle} total "
            f"{math.exp(c['oracle_objective'][i])!r}")


def test_scipy_best_is_feasible(comparison):
    """Where planner is OPTIMAL, some start ends feasible (constraint <= 1e-8 in log units,
    bounds held exactly), so the comparison below is against a real point."""
    c = comparison
    rows = np.flatnonzero(c["optimal"])
    assert np.all(np.isfinite(c["oracle_objective"][rows]))
    assert np.all(c["oracle_constraint"][rows] <= FEASIBLE)


def test_planner_is_never_beaten(comparison):
    """planner's lifetime FLOP are at most SciPy's best times (1 + 1e-6) on every OPTIMAL row:
    the count of rows where SciPy finds something more than 1e-6 cheaper is zero."""
    c = comparison
    beaten = np.flatnonzero(c["optimal"] & (c["gap"] > math.log1p(BEATEN)))
    assert beaten.size == 0, "\n".join(describe(c, i) for i in beaten)


def test_allocations_agree_where_objectives_do(comparison):
    """Where both totals agree to 1e-6, so do N and D, to 1e-3 relative."""
    c = comparison
    same = c["optimal"] & (np.abs(c["gap"]) <= AGREE)
    assert same.any()
    for name in ("n_params", "n_tokens"):
        j = c["variables"].index(name)
        diff = np.abs(np.expm1(c["planner_x"][same, j] - c["oracle_x"][same, j]))
        assert np.all(diff <= ALLOCATION_RTOL), (name, float(diff.max()))


def test_share_of_optimal_rows(comparison):
    c = comparison
    share = float(np.mean(c["optimal"]))
    assert share >= c["problem"].min_optimal, share
