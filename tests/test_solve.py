"""The allocation solver (`planner.solve`, `planner.frontier`) against independent oracles.

Oracles (none of them uses `planner`'s solver):

- Sardana et al. 2024's lifetime optima with their default constants, their Figure 1 example
  and the sensitivities there, and the Chinchilla trade-off closed form behind Villalobos &
  Atkinson (2023)'s overtraining row;
- Sardana et al.'s one-equation reduction of the lifetime problem, solved by SciPy's `brentq`
  in float64 and by mpmath to 40 digits (`tests/_oracles.py`);
- cvxpy geometric programs solved by Clarabel at 1e-14 tolerances (`tests/_oracles.py`),
  including the dual of the loss constraint as a derivative (envelope theorem);
- the closed forms `Chinchilla.loss_optimal`, `Chinchilla.compute_optimal`,
  `Chinchilla.inference_cut_cost` and their JAX derivatives;
- central finite differences of re-solves.

Compiling a solve costs seconds, running a batch of thousands milliseconds: every batched test
goes through a few module-level jitted functions of one fixed batch size, so that the file
compiles each of them once.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
from _oracles import LifetimeGP, LossGP, lifetime_reduction, lifetime_reduction_mp

from planner import Chinchilla, Pipeline, Pretraining, Scenario, Solver, Status, frontier, solve

PRESETS = ("hoffmann2022", "hoffmann2022_unrounded", "besiroglu2024", "sardana2024")
COEFS = ("E", "A", "B", "alpha", "beta")
ROWS = 2048  # every batch of the plain lifetime problem is padded to this size
CAP_ROWS = 512  # ... and of the capped lifetime problem
SMALL_ROWS = 64  # ... and of the loss objective and the frontier


def _model(law: Chinchilla) -> Pipeline:
    return Pipeline(Pretraining(law))


def _law(name: str) -> Chinchilla:
    return getattr(Chinchilla, name)()


def _coefs(law: Chinchilla) -> tuple[float, ...]:
    return tuple(float(getattr(law, c)) for c in COEFS)


def _law_rows(laws, dtype=np.float64) -> Chinchilla:
    """One batched `Chinchilla` from a list of laws (one per row)."""
    return Chinchilla(
        **{c: np.array([float(getattr(law, c)) for law in laws], dtype) for c in COEFS}
    )


def _pad(rows: int, *trees):
    """Each tree's leading axis padded to `rows` with copies of its first row."""
    size = jax.tree.leaves(trees[0])[0].shape[0]
    assert size <= rows

    def pad(v):
        v = np.asarray(v)
        return np.concatenate([v, np.repeat(v[:1], rows - size, axis=0)])

    return size, tuple(jax.tree.map(pad, t) for t in trees)


def _numpy(plan, size: int):
    return jax.tree.map(lambda v: np.asarray(v)[:size], plan)


def _rel(x, y):
    return np.abs(np.asarray(x, np.float64) / np.asarray(y, np.float64) - 1.0)


# ------------------------------------------------------------------ compiled functions
def _plain_rows(laws, scenarios):
    return jax.vmap(lambda law, s: solve(_model(law), s, throw=False))(laws, scenarios)


_plain_counted = eqx.debug.assert_max_traces(_plain_rows, max_traces=1)
_plain_jit = jax.jit(_plain_counted)


def plain(laws, target_loss, demand):
    """Batched lifetime solves (`target_loss`, `inference_demand`), one law per row."""
    scenarios = Scenario(
        target_loss=np.asarray(target_loss, np.float64),
        inference_demand=np.asarray(demand, np.float64),
    )
    size, (laws, scenarios) = _pad(ROWS, laws, scenarios)
    return _numpy(_plain_jit(laws, scenarios), size)


@jax.jit
def _capped_jit(laws, scenarios):
    return jax.vmap(lambda law, s: solve(_model(law), s, throw=False))(laws, scenarios)


def capped(laws, target_loss, demand, max_params, max_tokens, max_inference_flops_per_unit):
    scenarios = Scenario(
        target_loss=np.asarray(target_loss, np.float64),
        inference_demand=np.asarray(demand, np.float64),
        max_params=np.asarray(max_params, np.float64),
        max_tokens=np.asarray(max_tokens, np.float64),
        max_inference_flops_per_unit=np.asarray(max_inference_flops_per_unit, np.float64),
    )
    size, (laws, scenarios) = _pad(CAP_ROWS, laws, scenarios)
    return _numpy(_capped_jit(laws, scenarios), size)


@jax.jit
def _single_throw(law, scenario):
    return solve(_model(law), scenario)


def _outputs(law, scenario):
    """(N*, D*, total FLOP) of one lifetime solve, for differentiation."""
    plan = solve(_model(law), scenario, throw=False)
    return jnp.stack([plan.allocation.n_params, plan.allocation.n_tokens, plan.total_flops])


_jac_fwd = jax.jit(jax.vmap(jax.jacfwd(_outputs, argnums=(0, 1))))
_jac_rev = jax.jit(jax.vmap(jax.jacrev(_outputs, argnums=(0, 1))))


@jax.jit
def _loss_budget_jit(laws, budgets):
    def one(law, budget):
        return solve(_model(law), Scenario(train_budget=budget), objective="loss", throw=False)

    return jax.vmap(one)(laws, budgets)


def _loss_budget_outputs(law, budget):
    plan = solve(_model(law), Scenario(train_budget=budget), objective="loss", throw=False)
    return jnp.stack([plan.allocation.n_params, plan.allocation.n_tokens])


_loss_budget_jac = jax.jit(jax.vmap(jax.jacrev(_loss_budget_outputs, argnums=(0, 1))))


@jax.jit
def _loss_lifetime_jit(laws, scenarios):
    return jax.vmap(lambda law, s: solve(_model(law), s, objective="loss", throw=False))(
        laws, scenarios
    )


_frontier_jit = jax.jit(frontier)


def _model32(law: Chinchilla) -> Pipeline:
    """A float32 pipeline: the law's coefficients and `tokens_per_query` in float32."""
    return Pipeline(Pretraining(law, tokens_per_query=jnp.ones((), jnp.float32)))


@jax.jit
def _plain32_jit(laws, scenarios):
    return jax.vmap(lambda law, s: solve(_model32(law), s, throw=False))(laws, scenarios)


# ------------------------------------------------------------- 1. published numbers
# Sardana et al. 2024 ("Beyond Chinchilla-Optimal"), their defaults:
# (ℓ, T, N_c, D_c, N*, D*, total at N*, total at N_c).
SARDANA_TABLE = (
    (1.947, 2e12, 3.408115e10, 1.810293e12, 2.418356e10, 2.657051e12, 4.822760e23, 5.065059e23),
    (1.947, 0.0, 3.408115e10, 1.810293e12, 3.408115e10, 1.810293e12, 3.701813e23, 3.701813e23),
    (1.947, 1e14, 3.408115e10, 1.810293e12, 9.093239e9, 1.713890e13, 2.753736e24, 7.186411e24),
    (2.2, 1e12, 4.432918e9, 1.607045e11, 2.029198e9, 4.502254e11, 9.539973e21, 1.314017e22),
    (1.8, 2e13, 4.259521e11, 3.630881e13, 3.440922e11, 4.562912e13, 1.079674e26, 1.098330e26),
    (1.75, 1e15, 2.587125e12, 3.091674e14, 1.412933e12, 6.504620e14, 8.340221e27, 9.973379e27),
)


def _half_unit(value: float, digits: int) -> float:
    """Half a unit in the last place of `value` printed with `digits` significant digits."""
    return 0.5 * 10.0 ** (math.floor(math.log10(abs(value))) - digits + 1)


def _assert_table(got: float, table: float, exact: float):
    """`got` within 1e-6 relative of the 7-digit `table`; tighter, within half a unit of its
    last digit (<= 5e-7 relative: the most its digits support; 1e-9 relative of slack for
    the solver); and within 1e-9 relative of the 40-digit `exact` value."""
    assert _rel(got, table) <= 1e-6, (got, table)
    assert abs(got - table) <= _half_unit(table, 7) + 1e-9 * abs(table), (got, table)
    assert _rel(got, exact) <= 1e-9, (got, exact)


def test_sardana_table():
    """All six rows of Sardana et al.'s table through the Python API (one batch)."""
    law = Chinchilla.sardana2024()
    targets = np.array([row[0] for row in SARDANA_TABLE])
    demands = np.array([row[1] for row in SARDANA_TABLE])
    plan = plain(_law_rows([law] * len(targets)), targets, demands)
    assert np.all(plan.status == Status.OPTIMAL)
    n_c, d_c = (np.asarray(v) for v in law.loss_optimal(jnp.asarray(targets)))
    for i, (ell, t, *table) in enumerate(SARDANA_TABLE):
        exact_n, exact_d, exact_total = lifetime_reduction_mp(_coefs(law), ell, t)
        exact_nc, exact_dc, _ = lifetime_reduction_mp(_coefs(law), ell, 0.0)
        at_training_optimum = 6.0 * n_c[i] * d_c[i] + 2.0 * n_c[i] * t
        exact_at_training = 6 * exact_nc * exact_dc + 2 * exact_nc * mpmath.mpf(t)
        got = (
            n_c[i],
            d_c[i],
            plan.allocation.n_params[i],
            plan.allocation.n_tokens[i],
            plan.total_flops[i],
            at_training_optimum,
        )
        exact = (exact_nc, exact_dc, exact_n, exact_d, exact_total, exact_at_training)
        for g, tab, ex in zip(got, table, exact, strict=True):
            _assert_table(float(g), tab, float(ex))
        # and against the float64 root finder, independently of mpmath
        ref_n, ref_d = lifetime_reduction(_coefs(law), ell, t)
        assert _rel(plan.allocation.n_params[i], ref_n) <= 1e-9
        assert _rel(plan.allocation.n_tokens[i], ref_d) <= 1e-9
    # row 1 is 70.96% of the parameters, 146.77% of the tokens, 95.22% of the FLOP of the
    # equal-loss training optimum.
    ratios = (
        plan.allocation.n_params[0] / n_c[0],
        plan.allocation.n_tokens[0] / d_c[0],
        plan.total_flops[0] / (6.0 * n_c[0] * d_c[0] + 2.0 * n_c[0] * SARDANA_TABLE[0][1]),
    )
    assert [round(100 * r, 2) for r in ratios] == [70.96, 146.77, 95.22]


def test_zero_demand_is_the_training_optimum():
    """T = 0 gives `loss_optimal` to 1e-10, every preset, targets E + 0.02 ... E + 1.5."""
    gaps = np.geomspace(0.02, 1.5, 25)
    laws, targets = [], []
    for name in PRESETS:
        law = _law(name)
        laws += [law] * len(gaps)
        targets += list(float(law.E) + gaps)
    targets = np.array(targets)
    plan = plain(_law_rows(laws), targets, np.zeros_like(targets))
    assert np.all(plan.status == Status.OPTIMAL)
    batched = _law_rows(laws)
    n_c, d_c = batched.loss_optimal(jnp.asarray(targets))
    assert _rel(plan.allocation.n_params, n_c).max() <= 1e-10
    assert _rel(plan.allocation.n_tokens, d_c).max() <= 1e-10
    assert _rel(plan.total_flops, 6.0 * n_c * d_c).max() <= 1e-10
    # the loss constraint is active: met to the solver's tolerance (1e-10 in log(ℓ - E))
    gaps_all = targets - np.asarray(batched.E)
    assert _rel(plan.outcome.loss - np.asarray(batched.E), gaps_all).max() <= 1e-10


def test_sardana_figure_1_example():
    """Sardana et al. 2024, Figure 1: a 13B training-optimal model (loss 2.0453) with 2T
    inference tokens is better replaced by N ≈ 6.97e9, D ≈ 1.248e12, saving ≈ 1.69e22 FLOP
    (17.4%)."""
    law = Chinchilla.sardana2024()
    n_c = 13e9
    # the loss of the training-optimal 13B model: invert N_c(ℓ) = [A(1 + α/β)/(ℓ - E)]^(1/α)
    ell = float(law.E + law.A * (1.0 + law.alpha / law.beta) * n_c ** (-law.alpha))
    assert round(ell, 4) == 2.0453
    nc_check, d_c = law.loss_optimal(ell)
    assert _rel(nc_check, n_c) <= 1e-12
    t = 2e12
    plan = plain(_law_rows([law]), [ell], [t])
    assert plan.status[0] == Status.OPTIMAL
    n, d, total = plan.allocation.n_params[0], plan.allocation.n_tokens[0], plan.total_flops[0]
    baseline = 6.0 * n_c * float(d_c) + 2.0 * n_c * t
    saving = baseline - total
    assert float(f"{n:.2e}") == 6.97e9
    assert float(f"{d:.3e}") == 1.248e12
    assert float(f"{saving:.2e}") == 1.69e22
    assert round(100 * saving / baseline, 1) == 17.4
    exact_n, exact_d, exact_total = lifetime_reduction_mp(_coefs(law), ell, t)
    assert _rel(n, float(exact_n)) <= 1e-9 and _rel(d, float(exact_d)) <= 1e-9
    # the total is first order in the loss constraint's residual, which the solver certifies
    # to 1e-10 in log(ℓ - E), times d log total / d log(ℓ - E) (about -6 here)
    assert _rel(total, float(exact_total)) <= 1e-9


# --------------------------------------------------------- 2. thousands of scenarios
def _random_scenarios(seed: int, per_preset: int, zero_share: float = 0.1):
    """Per preset: targets E + [0.02, 1.5] (log-uniform gap), demands 0 or 1e6 ... 1e16."""
    rng = np.random.default_rng(seed)
    names, targets, demands = [], [], []
    for name in PRESETS:
        law = _law(name)
        gap = np.exp(rng.uniform(np.log(0.02), np.log(1.5), per_preset))
        t = 10.0 ** rng.uniform(6.0, 16.0, per_preset)
        t[rng.uniform(size=per_preset) < zero_share] = 0.0
        names += [name] * per_preset
        targets.append(float(law.E) + gap)
        demands.append(t)
    return np.array(names), np.concatenate(targets), np.concatenate(demands)


_GP_CACHE: dict = {}


def _lifetime_gp(name: str, caps: bool = False) -> LifetimeGP:
    key = (name, caps)
    if key not in _GP_CACHE:
        _GP_CACHE[key] = LifetimeGP(_coefs(_law(name)), caps=caps)
    return _GP_CACHE[key]


def test_random_scenarios_against_gp_and_reduction():
    """2,000 scenarios (500 per preset, ~10% with T = 0): the solver's optimum matches the cvxpy
    GP (T > 0; 1e-6 in total FLOP, 1e-5 in N and D, every scenario) and the `brentq` reduction
    (all; 1e-8 in N and D, 1e-9 in total FLOP).

    The GP's N and D are only as good as Clarabel's convergence (see `tests/_oracles.py`):
    scenarios it certifies `optimal` (all, in the measured run) agree with `brentq` to 1e-8."""
    names, targets, demands = _random_scenarios(seed=0, per_preset=500)
    laws = _law_rows([_law(n) for n in names])
    plan = plain(laws, targets, demands)
    assert np.all(plan.status == Status.OPTIMAL)
    assert plan.steps.max() <= 30
    n, d, total = plan.allocation.n_params, plan.allocation.n_tokens, plan.total_flops
    # the target is met, to the solver's tolerance (1e-10 in log(ℓ - E)): it is active
    gap = targets - np.asarray(laws.E)
    assert _rel(plan.outcome.loss - np.asarray(laws.E), gap).max() <= 1e-10
    ref = np.array(
        [
            lifetime_reduction(_coefs(_law(name)), ell, t)
            for name, ell, t in zip(names, targets, demands, strict=True)
        ]
    ).T
    ref_total = 6.0 * ref[0] * ref[1] + 2.0 * ref[0] * demands
    assert _rel(n, ref[0]).max() <= 1e-8
    assert _rel(d, ref[1]).max() <= 1e-8
    assert _rel(total, ref_total).max() <= 1e-9
    for name in PRESETS:
        rows = (names == name) & (demands > 0)
        gap = targets[rows] - float(_law(name).E)
        gp = _lifetime_gp(name).solve(gap, demands[rows])
        assert _rel(total[rows], gp[2]).max() <= 1e-6
        assert _rel(n[rows], gp[0]).max() <= 1e-5
        assert _rel(d[rows], gp[1]).max() <= 1e-5
        # the GP oracle itself, where Clarabel certified it, against the root finder
        certified = gp[4] == 1
        assert certified.mean() >= 0.97
        assert _rel(gp[0][certified], ref[0][rows][certified]).max() <= 1e-8
        assert _rel(gp[1][certified], ref[1][rows][certified]).max() <= 1e-8


def test_plan_columns_split_lifetime_compute_into_training_and_inference():
    """`Plan.to_columns()`: `inference_flops` is lifetime inference, the demand times
    `inference_flops_per_unit` (2N per token), so `train_flops + inference_flops` is
    `total_flops`; for 400 random scenarios, demands 0 and 1e6 ... 1e16 tokens."""
    names, targets, demands = _random_scenarios(seed=5, per_preset=100, zero_share=0.2)
    plan = plain(_law_rows([_law(n) for n in names]), targets, demands)
    assert np.all(plan.status == Status.OPTIMAL)
    columns = plan.to_columns()
    train, inference = columns["train_flops"], columns["inference_flops"]
    per_unit, total = columns["inference_flops_per_unit"], columns["total_flops"]
    assert _rel(train + inference, total).max() <= 1e-12
    assert np.all(np.abs(inference - demands * per_unit) <= 1e-12 * demands * per_unit)
    assert np.all(inference[demands == 0] == 0.0) and np.any(demands == 0)
    assert _rel(per_unit, 2.0 * columns["n_params"]).max() <= 1e-12
    # the same numbers as the plan's fields
    np.testing.assert_array_equal(inference, plan.inference_flops)
    np.testing.assert_array_equal(per_unit, plan.outcome.inference_flops_per_unit)


def _capped_case(seed: int):
    """400 random lifetime scenarios (T > 0) with caps, and their exact optima.

    Per row one of N, D, IC is capped between its feasibility limit and the uncapped optimum
    (binding; the other caps 1e30), or all three are capped 1.5-10x above the uncapped
    optimum (not binding). The problem is convex in log variables, so where one cap binds the
    optimum lies on it, and the other variable is the least that reaches the target on the
    iso-loss curve: closed forms given the binding cap."""
    names, targets, demands = _random_scenarios(seed=seed, per_preset=100, zero_share=0.0)
    rng = np.random.default_rng(seed + 1)
    free = np.array(
        [
            lifetime_reduction(_coefs(_law(name)), ell, t)
            for name, ell, t in zip(names, targets, demands, strict=True)
        ]
    ).T
    E, A, B, a, b = np.array([_coefs(_law(name)) for name in names]).T
    gap = targets - E
    n_min, d_min = (A / gap) ** (1.0 / a), (B / gap) ** (1.0 / b)
    kind = rng.integers(0, 4, names.size)  # 0: N cap, 1: D cap, 2: IC cap, 3: none binding
    u = rng.uniform(0.05, 0.95, names.size)  # where, in log, between limit and optimum
    above = rng.uniform(1.5, 10.0, (3, names.size))
    big = 1e30
    n_cap = n_min ** (1 - u) * free[0] ** u
    d_cap = d_min ** (1 - u) * free[1] ** u
    max_params = np.where(kind == 0, n_cap, np.where(kind == 3, above[0] * free[0], big))
    max_tokens = np.where(kind == 1, d_cap, np.where(kind == 3, above[1] * free[1], big))
    max_inference = np.where(
        kind == 2, 2.0 * n_cap, np.where(kind == 3, 2.0 * above[2] * free[0], big)
    )
    n = np.where((kind == 0) | (kind == 2), n_cap, free[0])
    d = np.where((kind == 0) | (kind == 2), (B / (gap - A * n_cap**-a)) ** (1.0 / b), free[1])
    n = np.where(kind == 1, (A / (gap - B * d_cap**-b)) ** (1.0 / a), n)
    d = np.where(kind == 1, d_cap, d)
    exact = np.stack([n, d, 6.0 * n * d + 2.0 * n * demands])
    return names, targets, demands, max_params, max_tokens, max_inference, kind, exact


def test_binding_caps_against_gp():
    """Caps on N, D and inference FLOP, binding or not, against the cvxpy GP with the same caps
    (1e-6 in total FLOP, 1e-5 in N and D) and against the exact optima (1e-8)."""
    names, targets, demands, max_params, max_tokens, max_inference, kind, exact = _capped_case(1)
    plan = capped(
        _law_rows([_law(n) for n in names]), targets, demands, max_params, max_tokens, max_inference
    )
    assert np.all(plan.status == Status.OPTIMAL)
    n, d = plan.allocation.n_params, plan.allocation.n_tokens
    assert _rel(n, exact[0]).max() <= 1e-8
    assert _rel(d, exact[1]).max() <= 1e-8
    assert _rel(plan.total_flops, exact[2]).max() <= 1e-9
    # nothing exceeds its cap
    assert np.all(n <= max_params * (1 + 1e-10)) and np.all(d <= max_tokens * (1 + 1e-10))
    assert np.all(2.0 * n <= max_inference * (1 + 1e-10))
    for name in PRESETS:
        rows = names == name
        gap = targets[rows] - float(_law(name).E)
        gp = _lifetime_gp(name, caps=True).solve(
            gap, demands[rows], max_params[rows], max_tokens[rows], max_inference[rows]
        )
        assert _rel(plan.total_flops[rows], gp[2]).max() <= 1e-6
        assert _rel(n[rows], gp[0]).max() <= 1e-5
        assert _rel(d[rows], gp[1]).max() <= 1e-5
        # the GP oracle itself, where Clarabel certified it, against the exact optima
        certified = gp[4] == 1
        assert certified.mean() >= 0.9
        assert _rel(gp[0][certified], exact[0][rows][certified]).max() <= 1e-8
        assert _rel(gp[1][certified], exact[1][rows][certified]).max() <= 1e-8


# --------------------------------------------------------------- 3. infeasibility
def _infeasible_batch(seed: int):
    """A mix of feasible and infeasible capped scenarios, and which are infeasible."""
    names, targets, demands, max_params, max_tokens, max_inference, _, _ = _capped_case(seed)
    rng = np.random.default_rng(seed + 2)
    coefs = np.array([_coefs(_law(name)) for name in names]).T
    E, A, B, a, b = coefs
    gap = targets - E
    n_min, d_min = (A / gap) ** (1.0 / a), (B / gap) ** (1.0 / b)
    size = names.size
    which = rng.integers(0, 6, size)  # 0-4 infeasible kinds, 5 feasible (as generated)
    shortfall = rng.choice([0.5, 0.9, 0.99, 0.999, 0.9999], size)  # below the limit
    big = 1e30
    max_params = np.where(which == 0, shortfall * n_min, max_params)
    max_inference = np.where(which == 1, shortfall * 2.0 * n_min, max_inference)
    max_tokens = np.where(which == 2, shortfall * d_min, max_tokens)
    # 3: each cap alone feasible, together not: A N^-α + B D^-β > ℓ - E
    share = rng.uniform(0.2, 0.8, size)
    n_cap = (A / (share * gap)) ** (1.0 / a)
    d_cap = (B / ((1 - share) * gap)) ** (1.0 / b) * shortfall ** (1.0 / b)
    max_params = np.where(which == 3, n_cap, max_params)
    max_tokens = np.where(which == 3, d_cap, np.where(which == 0, big, max_tokens))
    # 4: a target at or below E
    targets = np.where(which == 4, E - rng.choice([0.0, 0.01, 1.0], size), targets)
    return names, targets, demands, max_params, max_tokens, max_inference, which < 5


def test_never_optimal_when_infeasible():
    """Targets <= E, max_params < N_min, max_inference_flops_per_unit < 2 N_min,
    max_tokens < D_min and jointly infeasible caps, each 0.01% ... 50% beyond the limit, in a
    random mix: every infeasible row is INFEASIBLE, every feasible row OPTIMAL and bitwise
    equal to its solo solve (the same compiled function, every row set to it)."""
    names, targets, demands, max_params, max_tokens, max_inference, infeasible = _infeasible_batch(
        3
    )
    laws = _law_rows([_law(n) for n in names])
    args = (targets, demands, max_params, max_tokens, max_inference)
    plan = capped(laws, *args)
    assert not np.any(plan.status[infeasible] == Status.OPTIMAL)
    assert np.all(plan.status[infeasible] == Status.INFEASIBLE), np.bincount(
        plan.status[infeasible]
    )
    assert np.all(plan.status[~infeasible] == Status.OPTIMAL)
    for i in np.flatnonzero(~infeasible)[:20]:
        solo = capped(
            jax.tree.map(lambda v: np.repeat(v[i : i + 1], 4), laws),
            *(np.repeat(v[i : i + 1], 4) for v in args),
        )
        for got, alone in zip(jax.tree.leaves(plan), jax.tree.leaves(solo), strict=True):
            assert np.array_equal(got[i], alone[0])


def test_never_optimal_at_the_feasibility_boundary():
    """Caps a relative 1e-5 ... 1e-10 below their feasibility limits: never OPTIMAL. Measured:
    some INFEASIBLE, the rest NOT_CONVERGED (the violation is then below sqrt(tol) = 1e-5 in
    log units, which the status rule does not call infeasible); at 1e-4 all INFEASIBLE."""
    names, targets, demands = _random_scenarios(seed=9, per_preset=25, zero_share=0.2)
    laws = _law_rows([_law(n) for n in names])
    E, A, B, a, b = np.array([_coefs(_law(name)) for name in names]).T
    gap = targets - E
    n_min, d_min = (A / gap) ** (1.0 / a), (B / gap) ** (1.0 / b)
    big = np.full(names.size, 1e30)
    for shortfall in (1e-4, 1e-5, 1e-8, 1e-10):
        f = 1.0 - shortfall
        cases = (
            (f * n_min, big, big),  # max_params
            (big, big, f * 2.0 * n_min),  # max_inference_flops_per_unit
            (big, f * d_min, big),  # max_tokens
            ((2.0 * A / gap) ** (1.0 / a), (2.0 * B / gap) ** (1.0 / b) * f ** (1.0 / b), big),
        )
        for max_params, max_tokens, max_inference in cases:
            plan = capped(laws, targets, demands, max_params, max_tokens, max_inference)
            assert not np.any(plan.status == Status.OPTIMAL), shortfall
            assert np.all(
                (plan.status == Status.INFEASIBLE) | (plan.status == Status.NOT_CONVERGED)
            )
            if shortfall >= 1e-4:
                assert np.all(plan.status == Status.INFEASIBLE)


def test_infeasible_targets_plain():
    """Without caps: targets at E, just below and far below are INFEASIBLE for every preset,
    whatever the demand; the feasible rows beside them keep their values."""
    laws, targets, demands = [], [], []
    for name in PRESETS:
        law = _law(name)
        for offset in (0.0, -1e-12, -0.01, -1.0, 0.2):
            for t in (0.0, 1e12):
                laws.append(law)
                targets.append(float(law.E) + offset)
                demands.append(t)
    targets, demands = np.array(targets), np.array(demands)
    plan = plain(_law_rows(laws), targets, demands)
    infeasible = targets <= np.array([float(law.E) for law in laws])
    assert np.all(plan.status[infeasible] == Status.INFEASIBLE)
    assert np.all(plan.status[~infeasible] == Status.OPTIMAL)
    alone = plain(
        _law_rows([laws[i] for i in np.flatnonzero(~infeasible)]),
        targets[~infeasible],
        demands[~infeasible],
    )
    assert np.array_equal(plan.allocation.n_params[~infeasible], alone.allocation.n_params)
    assert np.array_equal(plan.total_flops[~infeasible], alone.total_flops)


# ------------------------------------------------------------------- 4. gradients
# Gradient points: (preset, ℓ, T). The first is the first lifetime optimum of SARDANA_TABLE
# (ℓ = 1.947, T = 2e12).
GRAD_POINTS = (
    ("sardana2024", 1.947, 2e12),
    ("sardana2024", 2.2, 1e12),
    ("sardana2024", 1.75, 1e15),
    ("hoffmann2022", 1.9, 1e10),
    ("hoffmann2022_unrounded", 2.5, 1e16),
    ("besiroglu2024", 1.84, 3e13),
    ("besiroglu2024", 3.0, 1e8),
    ("sardana2024", 2.0, 0.0),
)
GRAD_PARAMS = ("inference_demand", "target_loss") + COEFS


def _grad_inputs():
    laws = _law_rows([_law(p[0]) for p in GRAD_POINTS])
    scenarios = Scenario(
        target_loss=np.array([p[1] for p in GRAD_POINTS]),
        inference_demand=np.array([p[2] for p in GRAD_POINTS]),
    )
    return laws, scenarios


def _elasticities(jacobian, laws, scenarios, values) -> np.ndarray:
    """d log output / d log parameter, shape (points, 3 outputs, GRAD_PARAMS)."""
    d_law, d_scenario = jacobian
    columns = []
    for name in GRAD_PARAMS:
        if name in COEFS:
            d, theta = getattr(d_law, name), getattr(laws, name)
        else:
            d, theta = getattr(d_scenario, name), getattr(scenarios, name)
        columns.append(np.asarray(d) * np.asarray(theta)[:, None])
    return np.stack(columns, axis=-1) / np.asarray(values)[:, :, None]


def _mp_elasticities(point, h=mpmath.mpf("1e-15")):
    """d log (N*, D*, total) / d log θ from the 40-digit reduction, central differences
    (truncation ~h^2 = 1e-30, rounding ~1e-40/h = 1e-25)."""
    name, ell, t = point
    base = dict(zip(COEFS, _coefs(_law(name)), strict=True), target_loss=ell, inference_demand=t)
    out = np.zeros((3, len(GRAD_PARAMS)))
    with mpmath.workdps(40):
        for j, p in enumerate(GRAD_PARAMS):
            if base[p] == 0:
                continue  # T = 0: d/d log T is 0 there
            vals = []
            for sign in (1, -1):
                args = {k: mpmath.mpf(v) for k, v in base.items()}
                args[p] = args[p] * mpmath.exp(sign * h)
                res = lifetime_reduction_mp(
                    [args[c] for c in COEFS], args["target_loss"], args["inference_demand"]
                )
                vals.append([mpmath.log(r) for r in res])
            out[:, j] = [float((vals[0][i] - vals[1][i]) / (2 * h)) for i in range(3)]
    return out


def test_gradients_forward_reverse_and_published_sensitivity():
    """jacfwd and jacrev of (N*, D*, total) in T, ℓ, E, A, B, α, β agree with each other and
    with the 40-digit reduction to 1e-8 (elasticities); the sensitivities at the first lifetime
    optimum hold."""
    laws, scenarios = _grad_inputs()
    values = plain(laws, scenarios.target_loss, scenarios.inference_demand)
    values = np.stack(
        [values.allocation.n_params, values.allocation.n_tokens, values.total_flops], axis=1
    )
    fwd = _elasticities(_jac_fwd(laws, scenarios), laws, scenarios, values)
    rev = _elasticities(_jac_rev(laws, scenarios), laws, scenarios, values)
    assert np.all(np.isfinite(fwd)) and np.all(np.isfinite(rev))
    assert np.max(np.abs(fwd - rev)) <= 1e-12 * max(1.0, np.max(np.abs(fwd)))
    for k, point in enumerate(GRAD_POINTS):
        exact = _mp_elasticities(point)
        assert np.max(np.abs(fwd[k] - exact)) <= 1e-8 * max(1.0, np.max(np.abs(exact))), point
    # d log N*/d log T = -0.213175 and dN*/dT = -2.5777e-3 at ℓ = 1.947, T = 2e12 (the
    # implicit function theorem on Sardana et al.'s one-equation reduction)
    assert round(float(fwd[0, 0, 0]), 6) == -0.213175
    d_n_dt = float(_jac_fwd(laws, scenarios)[1].inference_demand[0, 0])
    assert float(f"{d_n_dt:.4e}") == -2.5777e-3
    # T = 0: the Jacobian in ℓ and the law equals that of the closed form loss_optimal
    last = len(GRAD_POINTS) - 1
    law0 = _law(GRAD_POINTS[last][0])
    closed = jax.jacfwd(lambda lw, ell: jnp.stack(lw.loss_optimal(ell)), argnums=(0, 1))(
        law0, jnp.asarray(GRAD_POINTS[last][1])
    )
    d_law, d_scen = _jac_fwd(laws, scenarios)
    values0 = np.asarray(jnp.stack(law0.loss_optimal(GRAD_POINTS[last][1])))
    for i in range(2):  # as elasticities: N_c does not depend on B, nor D_c on A
        assert _rel(d_scen.target_loss[last, i], closed[1][i]) <= 1e-9
        for c in COEFS:
            theta = float(getattr(law0, c))
            got = float(getattr(d_law, c)[last, i]) * theta / values0[i]
            ref = float(getattr(closed[0], c)[i]) * theta / values0[i]
            assert abs(got - ref) <= 1e-9 * max(1.0, abs(ref)), (c, i, got, ref)


def test_gradients_against_finite_differences():
    """Jacobian entries (as elasticities d log y / d log θ) against 4th-order central
    differences of re-solves: relative 1e-5. Steps are 1e-3 of θ, except for E and ℓ, whose
    natural scale is the gap ℓ - E (down to 0.02 here), where they are 1e-3 of the gap."""
    laws, scenarios = _grad_inputs()
    values = plain(laws, scenarios.target_loss, scenarios.inference_demand)
    values = np.stack(
        [values.allocation.n_params, values.allocation.n_tokens, values.total_flops], axis=1
    )
    jac = _elasticities(_jac_fwd(laws, scenarios), laws, scenarios, values)
    h = 1e-3
    stencil = (2, 1, -1, -2)
    weights = np.array([-1.0, 8.0, -8.0, 1.0]) / 12.0
    law_rows, targets, demands, cells = [], [], [], []
    for k, (name, ell, t) in enumerate(GRAD_POINTS):
        coefs = dict(zip(COEFS, _coefs(_law(name)), strict=True))
        point = dict(coefs, target_loss=ell, inference_demand=t)
        for j, p in enumerate(GRAD_PARAMS):
            if point[p] == 0.0:
                continue  # T = 0: no two-sided difference (the T = 0 Jacobian is tested above)
            step = h * (ell - coefs["E"] if p in ("E", "target_loss") else point[p])
            cells.append((k, j, point[p] / step))
            for s in stencil:
                moved = dict(point, **{p: point[p] + s * step})
                law_rows.append(Chinchilla(**{c: moved[c] for c in COEFS}))
                targets.append(moved["target_loss"])
                demands.append(moved["inference_demand"])
    fd_plan = plain(_law_rows(law_rows), targets, demands)
    assert np.all(fd_plan.status == Status.OPTIMAL)
    logs = np.log(
        np.stack(
            [fd_plan.allocation.n_params, fd_plan.allocation.n_tokens, fd_plan.total_flops], axis=1
        )
    ).reshape(len(cells), 4, 3)
    worst = 0.0
    for (k, j, scale), block in zip(cells, logs, strict=True):
        fd = scale * (weights @ block)
        err = np.abs(jac[k, :, j] - fd) / np.maximum(np.abs(fd), 1e-3)
        worst = max(worst, err.max())
    assert worst <= 1e-5, worst


def test_gradients_against_gp():
    """cvxpy: the dual of the loss constraint is d log total / d log(ℓ - E) (envelope
    theorem), and central differences of tight GP solves give dN*/dT, dD*/dT, dN*/dℓ, dD*/dℓ."""
    laws, scenarios = _grad_inputs()
    plan = plain(laws, scenarios.target_loss, scenarios.inference_demand)
    d_law, d_scen = _jac_fwd(laws, scenarios)
    h = 1e-3
    for k, (name, ell, t) in enumerate(GRAD_POINTS):
        if t == 0.0:
            continue
        gap = ell - float(_law(name).E)
        gp = _lifetime_gp(name)
        base = gp.solve([gap], [t])
        assert base[4, 0] == 1
        n, d, total = plan.allocation.n_params[k], plan.allocation.n_tokens[k], plan.total_flops[k]
        # d log total / d log gap = gap * d log total / dℓ = -gap * d log total / dE
        assert _rel(gap * d_scen.target_loss[k, 2] / total, base[3, 0]) <= 1e-7
        assert _rel(-gap * d_law.E[k, 2] / total, base[3, 0]) <= 1e-7
        # finite differences of the GP in log T and log gap
        gaps = gap * np.exp(h * np.array([0, 0, 1, -1]))
        ts = t * np.exp(h * np.array([1, -1, 0, 0]))
        res = gp.solve(gaps, ts)
        assert np.all(res[4] == 1)
        res = np.log(res[:2])
        fd_t = (res[:, 0] - res[:, 1]) / (2 * h)
        fd_gap = (res[:, 2] - res[:, 3]) / (2 * h)
        jax_t = np.array(
            [d_scen.inference_demand[k, 0] * t / n, d_scen.inference_demand[k, 1] * t / d]
        )
        jax_gap = np.array([d_scen.target_loss[k, 0] * gap / n, d_scen.target_loss[k, 1] * gap / d])
        # central differences: truncation ~h^2/6 ~ 2e-7 relative, GP noise ~1e-12 / h
        assert np.max(_rel(jax_t, fd_t)) <= 1e-5
        assert np.max(_rel(jax_gap, fd_gap)) <= 1e-5


# ------------------------------------------------------------ 5. objective="loss"
def test_loss_objective_with_train_budget_is_compute_optimal():
    """objective="loss" with only a train_budget is `compute_optimal` to 1e-8, every preset,
    budgets 1e18 ... 1e28 FLOP; its gradients (reverse mode) match the closed form's."""
    budgets = np.geomspace(1e18, 1e28, 11)
    laws = [_law(name) for name in PRESETS for _ in budgets]
    rows = _law_rows(laws)
    c = np.tile(budgets, len(PRESETS))
    size, (rows_p, c_p) = _pad(SMALL_ROWS, rows, c)
    plan = _numpy(_loss_budget_jit(rows_p, c_p), size)
    assert np.all(plan.status == Status.OPTIMAL)
    n_ref, d_ref = rows.compute_optimal(jnp.asarray(c))
    assert _rel(plan.allocation.n_params, n_ref).max() <= 1e-8
    assert _rel(plan.allocation.n_tokens, d_ref).max() <= 1e-8
    assert _rel(plan.outcome.train_flops, c).max() <= 1e-9
    d_law, d_budget = jax.tree.map(lambda v: np.asarray(v)[:size], _loss_budget_jac(rows_p, c_p))
    closed = jax.vmap(jax.jacrev(lambda lw, b: jnp.stack(lw.compute_optimal(b)), argnums=(0, 1)))(
        rows, jnp.asarray(c)
    )
    assert np.max(_rel(d_budget, closed[1])) <= 1e-7
    for name in COEFS:
        got, ref = getattr(d_law, name), np.asarray(getattr(closed[0], name))
        # elasticities, so that entries of any scale compare alike
        theta = np.asarray(getattr(rows, name))[:, None]
        value = np.stack([n_ref, d_ref], axis=1)
        assert np.max(np.abs((got - ref) * theta / value)) <= 1e-7, name


def test_loss_objective_lifetime_against_gp():
    """objective="loss" with train_budget and inference_budget (lifetime, demand T) against
    the cvxpy GP min A N^-α + B D^-β s.t. 6ND <= C, 2NT <= I (1e-5 in N and D, 1e-6 in the
    reducible loss) and the exact optimum: the training budget binds, so on 6ND = C the loss
    is unimodal in N with its minimum at the training optimum N_C, whence
    N* = min(N_C, I / (2T)), D* = C / (6N*). About half the inference budgets bind."""
    rng = np.random.default_rng(5)
    per = 12
    names = np.repeat(PRESETS, per)
    c = 10.0 ** rng.uniform(19.0, 27.0, names.size)
    t = 10.0 ** rng.uniform(8.0, 15.0, names.size)
    laws = _law_rows([_law(n) for n in names])
    n_free = np.asarray(laws.compute_optimal(jnp.asarray(c))[0])
    budget = 2.0 * n_free * t * rng.uniform(0.05, 2.0, names.size)
    scen = Scenario(train_budget=c, inference_budget=budget, inference_demand=t)
    size, (laws_p, scen_p) = _pad(SMALL_ROWS, laws, scen)
    plan = _numpy(_loss_lifetime_jit(laws_p, scen_p), size)
    assert np.all(plan.status == Status.OPTIMAL)
    n, d = plan.allocation.n_params, plan.allocation.n_tokens
    binding = budget < 2.0 * n_free * t
    assert 0.3 < binding.mean() < 0.9
    n_exact = np.minimum(n_free, budget / (2.0 * t))
    d_exact = c / (6.0 * n_exact)
    E = np.asarray(laws.E)
    reducible = np.asarray(laws.loss(n_exact, d_exact)) - E
    # N and D to ~1e-8: near a budget that barely binds (or barely not) the multiplier is
    # small, and complementarity 1e-10 then leaves the slack at 1e-10 / multiplier
    assert _rel(n, n_exact).max() <= 1e-6
    assert _rel(d, d_exact).max() <= 1e-6
    assert _rel(plan.outcome.loss - E, reducible).max() <= 1e-9
    for name in PRESETS:
        rows = names == name
        law = _law(name)
        ref = LossGP(_coefs(law)).solve(c[rows], budget[rows], t[rows])
        assert _rel(n[rows], ref[0]).max() <= 1e-5
        assert _rel(d[rows], ref[1]).max() <= 1e-5
        ref_reducible = np.asarray(law.loss(ref[0], ref[1])) - float(law.E)
        assert _rel(plan.outcome.loss[rows] - float(law.E), ref_reducible).max() <= 1e-6
        # the GP oracle itself, where certified, against the exact optimum
        certified = ref[2] == 1
        assert certified.mean() >= 0.9
        assert _rel(ref[0][certified], n_exact[rows][certified]).max() <= 1e-8


# ------------------------------------------------------------------- 6. frontier
# The Chinchilla closed form (Hoffmann et al. 2022 law, Villalobos & Atkinson 2023's
# overtraining row): ΔTC (OOM) for an inference cut of k OOM from the training optimum.
CUTS = (0.2, 0.5, 0.7, 0.8, 0.9, 1.0)
CUT_TABLE = {
    "hoffmann2022": (0.033, 0.278, 0.725, 1.158, 1.967, 4.93),
    "sardana2024": (0.033, 0.278, 0.727, 1.163, 1.987, 5.30),
    "besiroglu2024": (0.040, 0.366, 1.156, 2.627, None, None),  # k_max 0.834
}


@pytest.mark.parametrize("name", sorted(CUT_TABLE))
def test_frontier_reproduces_inference_cut_cost(name):
    """frontier(model, Scenario(target_loss=ℓ), 2 N_c 10^-k) against the closed form ΔTC(k)
    (1e-8 OOM) and the published table (its digits); caps beyond k_max are INFEASIBLE."""
    law = _law(name)
    ell = float(law.E) + 0.3
    n_c, d_c = (float(v) for v in law.loss_optimal(ell))
    k_max = float(law.max_inference_cut())
    feasible_k = np.array(
        [0.0, *[k for k, v in zip(CUTS, CUT_TABLE[name]) if v is not None], 0.99 * k_max]
    )
    beyond_k = np.array([k_max * (1 + 1e-3), k_max + 0.05, k_max + 1.0, 3.0])
    ks = np.concatenate([feasible_k, beyond_k])
    caps = np.full(SMALL_ROWS // 4, 2.0 * n_c)
    caps[: ks.size] = 2.0 * n_c * 10.0**-ks
    plan = _numpy(_frontier_jit(_model(law), Scenario(target_loss=ell), caps), ks.size)
    nf = feasible_k.size
    assert np.all(plan.status[:nf] == Status.OPTIMAL)
    assert np.all(plan.status[nf:] == Status.INFEASIBLE)
    dtc = np.log10(plan.outcome.train_flops[:nf] / (6.0 * n_c * d_c))
    closed = np.asarray(law.inference_cut_cost(jnp.asarray(feasible_k)))
    assert np.max(np.abs(dtc - closed)) <= 1e-8
    # the inference cap binds: IC = cap
    assert _rel(plan.outcome.inference_flops_per_unit[1:nf], caps[1:nf]).max() <= 1e-9
    for k, (cut, table) in enumerate(zip(CUTS, CUT_TABLE[name])):
        if table is None:
            continue
        decimals = 2 if table >= 4 else 3
        assert round(float(dtc[1 + k]), decimals) == table
    if CUT_TABLE[name][-1] is None:
        assert k_max < 0.9 and round(k_max, 3) == 0.834
    # no effect of scale: another target, and another A and B, give the same ΔTC(k)
    other = Chinchilla(E=law.E, A=2.0 * law.A, B=0.5 * law.B, alpha=law.alpha, beta=law.beta)
    ell2 = float(law.E) + 0.05
    n2, d2 = (float(v) for v in other.loss_optimal(ell2))
    caps2 = np.full(SMALL_ROWS // 4, 2.0 * n2)
    caps2[:nf] = 2.0 * n2 * 10.0**-feasible_k
    plan2 = _numpy(_frontier_jit(_model(other), Scenario(target_loss=ell2), caps2), nf)
    assert np.all(plan2.status == Status.OPTIMAL)
    dtc2 = np.log10(plan2.outcome.train_flops / (6.0 * n2 * d2))
    assert np.max(np.abs(dtc2 - dtc)) <= 1e-8


# ------------------------------------------------ 7. batching, compiling, errors
def test_loop_vmap_jit_agree_across_laws():
    """Single solves in a loop (jit, throw=True), the batched jit and an eager solve agree;
    the batch mixes laws with different coefficients."""
    laws = [_law(n) for n in PRESETS] + [Chinchilla(E=1.5, A=300.0, B=900.0, alpha=0.3, beta=0.4)]
    targets = np.array([float(law.E) + g for law, g in zip(laws, (0.2, 0.5, 0.05, 1.0, 0.3))])
    demands = np.array([1e12, 0.0, 1e15, 1e9, 3e13])
    batched = plain(_law_rows(laws), targets, demands)
    assert np.all(batched.status == Status.OPTIMAL)
    for i, law in enumerate(laws):
        one = _single_throw(law, Scenario(target_loss=targets[i], inference_demand=demands[i]))
        # separately compiled, so not bitwise: they agree to the solver's precision, and
        # the KKT residuals (at most 1e-10) to that absolutely
        assert one.status == batched.status[i] == Status.OPTIMAL
        for got, ref in zip(
            jax.tree.leaves((one.allocation, one.outcome, one.total_flops)),
            jax.tree.leaves((batched.allocation, batched.outcome, batched.total_flops)),
            strict=True,
        ):
            np.testing.assert_allclose(np.asarray(got), ref[i], rtol=1e-9, atol=0)
        for got, ref in (
            (one.stationarity, batched.stationarity),
            (one.feasibility, batched.feasibility),
            (one.complementarity, batched.complementarity),
            (one.multipliers, batched.multipliers),
        ):
            np.testing.assert_allclose(np.asarray(got), ref[i], rtol=1e-6, atol=1e-10)
    eager = solve(_model(laws[0]), Scenario(target_loss=targets[0], inference_demand=demands[0]))
    assert _rel(eager.allocation.n_params, batched.allocation.n_params[0]) <= 1e-9
    assert _rel(eager.total_flops, batched.total_flops[0]) <= 1e-9
    assert eager.status == Status.OPTIMAL


def test_new_numbers_do_not_recompile():
    """Two batches with different numbers (laws and scenarios) through one compiled function:
    `assert_max_traces(max_traces=1)` holds (the whole module uses one trace of it)."""
    names, targets, demands = _random_scenarios(seed=11, per_preset=8)
    plain(_law_rows([_law(n) for n in names]), targets, demands)
    laws = _law_rows(
        [Chinchilla(E=2.0, A=100.0 * (i + 1), B=50.0, alpha=0.3, beta=0.3) for i in range(5)]
    )
    plan = plain(laws, np.full(5, 2.5), np.geomspace(1e9, 1e13, 5))
    assert np.all(plan.status == Status.OPTIMAL)
    assert eqx.debug.get_num_traces(_plain_counted) == 1


def test_bad_rows_are_isolated():
    """NaN target, negative demand, negative A (plain batch) and zero, negative, -inf and NaN
    caps (capped batch) get INVALID_INPUT; the other rows are bitwise equal to the same batch
    without the bad rows (same compiled function). A +inf cap is no cap."""
    names, targets, demands = _random_scenarios(seed=21, per_preset=5)
    laws = [_law(n) for n in names]
    bad_targets, bad_demands, bad_laws = targets.copy(), demands.copy(), list(laws)
    bad_targets[[0, 7]] = np.nan
    bad_demands[[3, 11]] = -1.0
    bad_laws[5] = Chinchilla(E=1.69, A=-406.4, B=410.7, alpha=0.34, beta=0.28)
    bad = np.zeros(names.size, bool)
    bad[[0, 7, 3, 11, 5]] = True
    plan = plain(_law_rows(bad_laws), bad_targets, bad_demands)
    clean = plain(_law_rows(laws), targets, demands)
    assert np.all(plan.status[bad] == Status.INVALID_INPUT)
    assert np.all(plan.status[~bad] == Status.OPTIMAL)
    for got, ref in zip(jax.tree.leaves(plan), jax.tree.leaves(clean), strict=True):
        assert np.array_equal(got[~bad], ref[~bad])
    for got in (plan.allocation.n_params, plan.allocation.n_tokens, plan.total_flops):
        assert np.all(np.isfinite(got[~bad]))
    for i in np.flatnonzero(~bad)[:5]:  # and to solo solves (every row set to row i)
        solo = plain(_law_rows([laws[i]] * 3), [targets[i]] * 3, [demands[i]] * 3)
        for got, alone in zip(jax.tree.leaves(plan), jax.tree.leaves(solo), strict=True):
            assert np.array_equal(got[i], alone[0])
    # caps
    names, targets, demands, max_params, max_tokens, max_inference, _, _ = _capped_case(7)
    laws = _law_rows([_law(n) for n in names])
    args = [targets, demands, max_params, max_tokens, max_inference]
    clean = capped(laws, *args)
    bad_args = [a.copy() for a in args]
    bad_args[2][[1, 2]] = 0.0
    bad_args[4][6] = np.nan
    bad_args[3][8] = -5.0
    bad_args[4][9] = -np.inf
    bad = np.zeros(names.size, bool)
    bad[[1, 2, 6, 8, 9]] = True
    # an infinite cap is no cap (how a table leaves a row uncapped): same as an absurd one
    bad_args[3][4] = np.inf
    bad_args[2][4] = bad_args[4][4] = 1e30
    plan = capped(laws, *bad_args)
    assert np.all(plan.status[bad] == Status.INVALID_INPUT), plan.status[bad]
    assert np.all(plan.status[~bad] == Status.OPTIMAL)
    ok = ~bad
    ok[4] = False
    for got, ref in zip(jax.tree.leaves(plan), jax.tree.leaves(clean), strict=True):
        assert np.array_equal(got[ok], ref[ok])
    uncapped = capped(
        jax.tree.map(lambda v: v[4:5], laws),
        *[a[4:5] for a in bad_args[:2]],
        [1e30],
        [1e30],
        [1e30],
    )
    assert _rel(plan.allocation.n_params[4], uncapped.allocation.n_params[0]) <= 1e-9
    assert _rel(plan.allocation.n_tokens[4], uncapped.allocation.n_tokens[0]) <= 1e-9


def test_throw_raises_eagerly_and_under_jit():
    """throw=True raises for a bad scenario (NaN target: the message names the field) and an
    infeasible one, eagerly and inside jit; the same scenarios with throw=False give their
    statuses."""
    law = Chinchilla.sardana2024()
    with pytest.raises(Exception, match="target_loss must be"):
        solve(_model(law), Scenario(target_loss=jnp.nan, inference_demand=1e12))
    with pytest.raises(Exception, match="target_loss must be"):
        jax.block_until_ready(
            _single_throw(law, Scenario(target_loss=jnp.nan, inference_demand=1e12))
        )
    with pytest.raises(Exception, match="no optimal plan"):
        jax.block_until_ready(_single_throw(law, Scenario(target_loss=1.5, inference_demand=1e12)))
    plan = plain(_law_rows([law, law]), [np.nan, 1.5], [1e12, 1e12])
    assert list(plan.status) == [Status.INVALID_INPUT, Status.INFEASIBLE]


def test_structural_errors_raise_value_error():
    model = _model(Chinchilla.sardana2024())
    with pytest.raises(ValueError, match="objective"):
        solve(model, Scenario(target_loss=2.0), objective="speed")
    with pytest.raises(ValueError, match="train_budget"):
        solve(model, Scenario(target_loss=2.0), objective="loss")
    with pytest.raises(ValueError, match="score"):
        solve(model, Scenario(target_score=0.5))
    with pytest.raises(ValueError, match="score"):
        solve(model, Scenario(train_budget=1e23), objective="score")
    with pytest.raises(ValueError, match="target"):
        solve(model, Scenario(inference_demand=1e12))


# ------------------------------------------------------------------- 8. float32
def test_float32_matches_float64():
    """A float32 law and scenario (and float32 `tokens_per_query`) solve in float32: outputs
    are float32 (x64 mode does not promote them) and every scenario is OPTIMAL at the float32
    tolerance (1e-4), on the 2,000 random scenarios.

    Measured relative error against the float64 solves at the float32 default tolerance
    1e-4: N* 3.2e-4, D* 4.1e-3, total FLOP 9.7e-5. The D* error comes from the most overtrained
    scenarios (N* within ~20% of N_min), where the iso-loss curve makes D* extremely sensitive
    to N*; total FLOP, the objective, stays within 1e-4. Asserted bounds: 5e-4, 1e-2, 2e-4.
    """
    names, targets, demands = _random_scenarios(seed=0, per_preset=500)
    laws = _law_rows([_law(n) for n in names])
    ref = plain(laws, targets, demands)
    laws32 = _law_rows([_law(n) for n in names], np.float32)
    scen32 = Scenario(
        target_loss=targets.astype(np.float32), inference_demand=demands.astype(np.float32)
    )
    size, (laws32, scen32) = _pad(ROWS, laws32, scen32)
    plan = _plain32_jit(laws32, scen32)
    assert plan.allocation.n_params.dtype == jnp.float32
    assert plan.total_flops.dtype == jnp.float32
    assert plan.stationarity.dtype == jnp.float32
    plan = _numpy(plan, size)
    ok = plan.status == Status.OPTIMAL
    assert ok.mean() >= 0.9
    err_n = _rel(plan.allocation.n_params[ok], ref.allocation.n_params[ok]).max()
    err_d = _rel(plan.allocation.n_tokens[ok], ref.allocation.n_tokens[ok]).max()
    err_total = _rel(plan.total_flops[ok], ref.total_flops[ok]).max()
    assert err_n <= 5e-4 and err_d <= 1e-2 and err_total <= 2e-4, (err_n, err_d, err_total)
    assert np.all(ok), (np.bincount(plan.status), names[~ok], targets[~ok], demands[~ok])


def test_float32_default_pipeline():
    """`Pipeline(Pretraining(law))` with a float32 law and scenario solves in float32 too
    (the pipeline's own defaults must not force float64 when x64 is on)."""
    law = Chinchilla(
        **{c: np.float32(v) for c, v in zip(COEFS, _coefs(Chinchilla.sardana2024()), strict=True)}
    )
    scenario = Scenario(target_loss=np.float32(1.947), inference_demand=np.float32(2e12))
    plan = jax.jit(lambda lw, s: solve(_model(lw), s, throw=False))(law, scenario)
    assert plan.allocation.n_params.dtype == jnp.float32
    assert plan.status == Status.OPTIMAL
    assert _rel(plan.allocation.n_params, SARDANA_TABLE[0][4]) <= 1e-3


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_optax_phase_then_newton_against_reduction(optimizer):
    """`Solver(optimizer=...)`: the augmented-Lagrangian phase with an optax optimiser (adam,
    or L-BFGS, whose `update` needs `value`, `grad` and `value_fn`), then Newton from its point
    and multipliers, reaches the `brentq` reduction's optimum to 1e-8 on 40 random lifetime
    scenarios; the optax phase alone (`max_steps=0`) lands within 1e-2 of it."""
    import optax

    tx = optax.adam(0.05) if optimizer == "adam" else optax.lbfgs()
    names, targets, demands = _random_scenarios(seed=5, per_preset=10, zero_share=0.0)
    laws = _law_rows([_law(n) for n in names])
    scenarios = Scenario(target_loss=targets, inference_demand=demands)
    ref = np.array([lifetime_reduction(_coefs(_law(name)), ell, t)
                    for name, ell, t in zip(names, targets, demands, strict=True)]).T

    def run(solver):
        return jax.jit(jax.vmap(lambda law, s: solve(_model(law), s, solver=solver,
                                                      throw=False)))(laws, scenarios)

    plan = run(Solver(optimizer=tx, inner_steps=200, outer_steps=10))
    assert np.all(plan.status == Status.OPTIMAL)
    assert _rel(plan.allocation.n_params, ref[0]).max() <= 1e-8
    assert _rel(plan.allocation.n_tokens, ref[1]).max() <= 1e-8
    alone = run(Solver(optimizer=tx, inner_steps=200, outer_steps=10, max_steps=0))
    # where the optax phase stopped: a plan that is not certified carries NaN in allocation
    assert _rel(alone.iterate.n_params, ref[0]).max() <= 1e-2
