"""`planner.allocate`: portfolios of items coupled by shared budgets, against one geometric
program of the whole portfolio (cvxpy, `_oracles.portfolio_gp`), finite differences of the
optimum, SciPy on a shared model, and each optax path on the dual."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _oracles import portfolio_gp

import planner
from planner import Chinchilla, Pipeline, Pretraining, Scenario, Status

ITEMS = 300
SMALL = 40  # items of the smaller portfolios (one size: their compilations are shared)


def portfolio(n: int = ITEMS, seed: int = 0):
    """`n` items, each with its own law (E, A, B per item; exponents from three values each,
    so that the GP has few distinct powers), weight, lifetime demand and loss target."""
    rng = np.random.default_rng(seed)
    base = Chinchilla.hoffmann2022()
    coefs = np.stack([
        float(base.E) * rng.uniform(0.9, 1.1, n),
        float(base.A) * rng.uniform(0.8, 1.2, n),
        float(base.B) * rng.uniform(0.8, 1.2, n),
        float(base.alpha) * rng.choice([0.96, 1.0, 1.04], n),
        float(base.beta) * rng.choice([0.96, 1.0, 1.04], n),
    ], axis=1)
    law = Chinchilla(*(jnp.asarray(c) for c in coefs.T))
    weight = rng.uniform(0.5, 2.0, n)
    demand = 10.0 ** rng.uniform(11.0, 14.0, n)
    target = coefs[:, 0] + rng.uniform(0.25, 0.6, n)
    return Pipeline(Pretraining(law)), coefs, weight, demand, target


def take(model, rows):
    """The per-item leaves of `model` at `rows` (scalar leaves are common to all)."""
    return jax.tree.map(lambda v: v[rows] if jnp.ndim(v) >= 1 else v, model)


@pytest.fixture(scope="module")
def items():
    return portfolio()


def least_train(coefs, target):
    """Each item's least training FLOP to its target: its Chinchilla training optimum."""
    E, A, B, a, b = coefs.T
    gap = target - E
    n = (A * (1.0 + a / b) / gap) ** (1.0 / a)
    d = (B * (1.0 + b / a) / gap) ** (1.0 / b)
    return 6.0 * n * d


def check_against_gp(port, oracle, budgets):
    assert int(port.status) == Status.OPTIMAL, int(port.status)
    assert oracle["status"] in ("optimal", "optimal_inaccurate")
    n = np.asarray(port.plans.allocation.n_params)
    d = np.asarray(port.plans.allocation.n_tokens)
    np.testing.assert_allclose(float(port.objective), oracle["objective"], rtol=1e-6)
    np.testing.assert_allclose(n, oracle["N"], rtol=1e-5)
    np.testing.assert_allclose(d, oracle["D"], rtol=1e-5)
    for name in budgets:
        p, q = float(port.prices[name]), oracle["prices"][name]
        # a slack budget's price is 0 here and the GP's dual is 0 to its tolerance
        assert abs(p - q) <= 1e-6 * max(abs(q), 1e-9 * max(port.prices.values(),
                                                           key=abs).item() + 1e-300), (p, q)
    assert float(port.residual) <= 1e-9 and float(port.kkt) <= 1e-9
    assert float(port.gap) <= 1e-9


def test_compute_objective_one_and_two_budgets_agree_with_the_gp(items):
    """Every item meets its target; the training budget halfway between the items' least
    training FLOP and what their separate optima train binds; an inference budget beside it
    is slack in one portfolio and binding in another."""
    model, coefs, weight, demand, target = items
    scen = Scenario(target_loss=jnp.asarray(target), inference_demand=jnp.asarray(demand))
    free = planner.allocate(model, scen, {}, objective="compute", weight=weight)
    least = least_train(coefs, target).sum()
    assert least < float(free.train_flops)
    train = 0.5 * (least + float(free.train_flops))
    for budgets in ({"train_budget": train},
                    {"train_budget": train, "inference_budget": 3.0 * float(free.inference_flops)}):
        port = planner.allocate(model, scen, budgets, objective="compute", weight=weight)
        oracle = portfolio_gp(coefs, weight, demand, objective="compute", target=target,
                              **budgets)
        check_against_gp(port, oracle, budgets)
        assert float(port.prices["train_budget"]) > 0
        np.testing.assert_allclose(float(port.train_flops), train, rtol=1e-9)
        # the items move to larger, less overtrained plans: inference grows
        assert float(port.inference_flops) > float(free.inference_flops)
    assert float(port.prices["inference_budget"]) == 0.0


def test_loss_objective_one_and_two_budgets_agree_with_the_gp(items):
    model, coefs, weight, demand, _ = items
    scen = Scenario(inference_demand=jnp.asarray(demand))
    train = 4e25
    one = planner.allocate(model, scen, {"train_budget": train}, objective="loss",
                           weight=weight)
    check_against_gp(one, portfolio_gp(coefs, weight, demand, objective="loss",
                                       train_budget=train), ("train_budget",))
    budgets = {"train_budget": train, "inference_budget": 0.3 * float(one.inference_flops)}
    two = planner.allocate(model, scen, budgets, objective="loss", weight=weight)
    check_against_gp(two, portfolio_gp(coefs, weight, demand, objective="loss", **budgets),
                     budgets)
    assert float(two.prices["inference_budget"]) > 0
    assert float(two.objective) > float(one.objective)


def test_score_objective_agrees_with_scipy(items):
    """`objective="score"`: items with their own laws, weights and demands choose N, D and
    samples per query to maximise $\\sum_i w_i\\,\\text{pass@}k_i$ under a training and an
    inference budget, and under one compute budget, against SciPy's SLSQP on the joint problem
    (log variables; pass@k of `SuccessLink`'s Beta-binomial written with `scipy.special`);
    the prices are $+\\partial\\,\\text{optimum}/\\partial C$ by central differences. Without
    a price on inference the score has no maximum (more samples always help): refused."""
    from scipy import optimize, special

    model, coefs, weight, demand, _ = items
    k = 8
    coefs, weight, demand = coefs[:k], weight[:k], demand[:k]
    link = planner.SuccessLink.codex2021()
    model = Pipeline(take(model, slice(k)).base, planner.RepeatedSampling(link))
    scen = Scenario(inference_demand=jnp.asarray(demand))
    E, A, B, a, b = coefs.T
    t0, t1, kappa = (float(v) for v in (link.intercept, link.slope, link.concentration))

    def pass_at_k(n, d, samples):
        mu = special.expit(t0 + t1 * np.log(A * n ** -a + B * d ** -b))
        p, q = mu * kappa, (1.0 - mu) * kappa
        return -np.expm1(special.betaln(p, q + samples) - special.betaln(p, q))

    def oracle(budgets):
        def unpack(z):
            return np.exp(z.reshape(3, k))

        usage = {"train_budget": lambda n, d, s: np.sum(6.0 * n * d),
                 "inference_budget": lambda n, d, s: np.sum(2.0 * n * s * demand)}
        usage["compute_budget"] = lambda *v: sum(usage[u](*v) for u in ("train_budget",
                                                                         "inference_budget"))
        cons = [{"type": "ineq", "fun": lambda z, b=b, c=c: 1.0 - usage[b](*unpack(z)) / c}
                for b, c in budgets.items()]
        share = budgets.get("train_budget", budgets.get("compute_budget")) / (2 * 6.0 * k)
        n0 = (a * A / (b * B)) ** (1.0 / (a + b)) * share ** (b / (a + b))
        res = optimize.minimize(
            lambda z: -np.sum(weight * pass_at_k(*unpack(z))) / weight.sum(),
            np.concatenate([np.log(n0), np.log(share / n0), np.zeros(k)]), method="SLSQP",
            jac="3-point", bounds=[(None, None)] * (2 * k) + [(0.0, 20.0)] * k,
            constraints=cons, options={"ftol": 1e-15, "maxiter": 2000})
        assert res.success, res.message
        return -res.fun * weight.sum(), unpack(res.x)

    for budgets in ({"train_budget": 2e23, "inference_budget": 5e23},
                    {"compute_budget": 7e23}):
        port = planner.allocate(model, scen, budgets, objective="score", weight=weight)
        assert float(port.kkt) <= 1e-9 and float(port.residual) <= 1e-9
        value, (n, d, samples) = oracle(budgets)
        np.testing.assert_allclose(float(port.objective), value, rtol=1e-9)
        got = port.plans.allocation
        for ours, theirs in ((got.n_params, n), (got.n_tokens, d), (got.n_samples, samples)):
            np.testing.assert_allclose(np.asarray(ours), theirs, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(port.plans.outcome.score),
                                   pass_at_k(*(np.asarray(v) for v in (
                                       got.n_params, got.n_tokens, got.n_samples))), rtol=1e-12)
        assert max(samples) > 2.0 * min(samples)  # samples go where they pay
        for name, c in budgets.items():
            h = 1e-4 * c
            fd = (float(planner.allocate(model, scen, {**budgets, name: c + h},
                                         objective="score", weight=weight).objective)
                  - float(planner.allocate(model, scen, {**budgets, name: c - h},
                                           objective="score", weight=weight).objective))
            assert float(port.prices[name]) > 0
            np.testing.assert_allclose(float(port.prices[name]), fd / (2.0 * h), rtol=1e-5)
    with pytest.raises(ValueError, match="needs a budget on inference"):
        planner.allocate(model, scen, {"train_budget": 2e23}, objective="score", weight=weight)


def test_prices_are_finite_differences_of_the_optimum(items):
    """$p_b = -\\partial\\,\\text{optimum}/\\partial C_b$: central differences of the optimum
    in each budget, and `jax.grad` of the optimum (implicit differentiation of the prices)."""
    model, coefs, weight, demand, _ = items
    k = SMALL
    scen = Scenario(inference_demand=jnp.asarray(demand[:k]))
    law = take(model, slice(k))
    w = weight[:k]
    budgets = {"train_budget": 4e24, "inference_budget": 3e23}

    def optimum(b):
        return planner.allocate(law, scen, b, objective="loss", weight=w).objective

    port = planner.allocate(law, scen, budgets, objective="loss", weight=w)
    assert float(port.prices["inference_budget"]) > 0
    for name, c in budgets.items():
        h = 1e-4 * c
        fd = -(float(optimum({**budgets, name: c + h})) - float(optimum({**budgets, name: c - h})))
        fd /= 2.0 * h
        np.testing.assert_allclose(float(port.prices[name]), fd, rtol=1e-5)
    grad = jax.grad(lambda b: optimum(b))({k_: jnp.asarray(v) for k_, v in budgets.items()})
    for name in budgets:
        np.testing.assert_allclose(-float(grad[name]), float(port.prices[name]), rtol=1e-8)


def test_infeasible_budgets_are_reported_infeasible(items):
    """A training budget below the items' least training FLOP, and two budgets each feasible
    alone but not together (cutting inference needs smaller models, hence more training):
    infeasible, never optimal; the GP of the same portfolio is infeasible too."""
    model, coefs, weight, demand, target = items
    k = SMALL
    coefs, weight, demand, target = coefs[:k], weight[:k], demand[:k], target[:k]
    model = take(model, slice(k))
    scen = Scenario(target_loss=jnp.asarray(target), inference_demand=jnp.asarray(demand))
    least = least_train(coefs, target).sum()
    free = planner.allocate(model, scen, {}, objective="compute", weight=weight)
    cases = [{"train_budget": 0.99 * least},
             {"train_budget": float(free.train_flops),
              "inference_budget": 0.5 * float(free.inference_flops)}]
    for budgets in cases:
        port = planner.allocate(model, scen, budgets, objective="compute", weight=weight,
                                throw=False)
        assert int(port.status) == Status.INFEASIBLE
        oracle = portfolio_gp(coefs, weight, demand, objective="compute", target=target,
                              **budgets)
        assert oracle["status"] == "infeasible"
        with pytest.raises(Exception, match="no optimal portfolio"):
            planner.allocate(model, scen, budgets, objective="compute", weight=weight)
    # an item that alone needs more than the budget is named
    alone = least_train(coefs, target)
    big = int(np.argmax(alone))
    port = planner.allocate(model, scen, {"train_budget": 0.9 * alone[big]},
                            objective="compute", weight=weight, throw=False)
    assert int(port.status) == Status.INFEASIBLE
    assert int(port.plans.status[big]) == Status.INFEASIBLE
    assert np.isnan(float(port.plans.allocation.n_params[big]))


def test_bad_items_are_marked_and_left_out(items):
    """An item with a negative demand, one with weight 0 and one whose target is below its
    irreducible loss: the first two are INVALID_INPUT and the rest is the portfolio without
    them; the third makes the portfolio infeasible and is named."""
    model, coefs, weight, demand, target = items
    k = SMALL
    model = take(model, slice(k))
    d, w, t = demand[:k].copy(), weight[:k].copy(), target[:k].copy()
    d[2], w[5] = -1.0, 0.0
    train = 0.5 * (least_train(coefs[:k], t).sum() + least_train(coefs[:k], t).sum() * 1.05)
    scen = Scenario(target_loss=jnp.asarray(t), inference_demand=jnp.asarray(d))
    port = planner.allocate(model, scen, {"train_budget": train}, weight=w)
    assert [int(s) for s in np.asarray(port.plans.status)[[2, 5]]] == [Status.INVALID_INPUT] * 2
    keep = np.setdiff1d(np.arange(k), [2, 5])
    rest = planner.allocate(take(model, keep),
                            Scenario(target_loss=jnp.asarray(t[keep]),
                                     inference_demand=jnp.asarray(d[keep])),
                            {"train_budget": train}, weight=w[keep])
    np.testing.assert_allclose(float(port.objective), float(rest.objective), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(port.plans.allocation.n_params)[keep],
                               np.asarray(rest.plans.allocation.n_params), rtol=1e-9)
    assert np.isnan(np.asarray(port.plans.allocation.n_params)[[2, 5]]).all()
    t[7] = float(coefs[7, 0]) - 0.01
    scen = Scenario(target_loss=jnp.asarray(t), inference_demand=jnp.asarray(d))
    port = planner.allocate(model, scen, {"train_budget": train}, weight=w, throw=False)
    assert int(port.status) == Status.INFEASIBLE and int(port.plans.status[7]) == Status.INFEASIBLE
    assert np.isfinite(float(port.objective))
    none = planner.allocate(model, scen, {"train_budget": train}, weight=0.0 * w, throw=False)
    assert int(none.status) == Status.INVALID_INPUT


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_every_optax_path_on_the_dual_reaches_the_gp(items, optimizer, caplog):
    """An optax transformation on the dual before the Newton polish: the first-order (adam)
    and the line-search (lbfgs, which needs `value`, `grad` and `value_fn`) paths end at the
    GP's optimum, for two portfolios of one structure; the dual step is compiled for the
    first only (the data are its arguments)."""
    model, coefs, weight, demand, _ = items
    k = SMALL
    model = take(model, slice(k))
    scen = Scenario(inference_demand=jnp.asarray(demand[:k]))
    tx = optax.adam(0.3) if optimizer == "adam" else optax.lbfgs()
    compiled = []
    for budgets in ({"train_budget": 6e24, "inference_budget": 3e23},
                    {"train_budget": 7e24, "inference_budget": 2.5e23}):
        caplog.clear()
        with jax.log_compiles(), caplog.at_level(logging.WARNING):
            port = planner.allocate(model, scen, budgets, objective="loss", weight=weight[:k],
                                    optimizer=tx, optimizer_steps=15)
        compiled.append(sum("_dual_step" in r.getMessage() for r in caplog.records))
        check_against_gp(port, portfolio_gp(coefs[:k], weight[:k], demand[:k],
                                            objective="loss", **budgets), budgets)
    assert compiled[0] >= 1 and compiled[1] == 0, compiled


def test_unconstrained_priced_items_match_their_stationarity():
    """Given prices the items' problems have no constraint at all (m = 0): the interior
    point reduces to Newton's method; its optimum satisfies the closed-form stationarity
    $\\alpha A N^{-\\alpha} = p_t 6ND + p_i 2NT$, $\\beta B D^{-\\beta} = p_t 6ND$."""
    law = Chinchilla.hoffmann2022()
    model = Pipeline(Pretraining(law))
    p_t, p_i, T = 1.6e-24, 7.0e-24, 1e13
    plan = planner.solve(model, Scenario(inference_demand=T),
                         objective=planner.Costs(loss=1.0, train_flops=p_t, inference_flops=p_i))
    assert int(plan.status) == Status.OPTIMAL
    N, D = float(plan.allocation.n_params), float(plan.allocation.n_tokens)
    A, B, a, b = (float(v) for v in (law.A, law.B, law.alpha, law.beta))
    np.testing.assert_allclose(a * A * N ** -a, p_t * 6 * N * D + p_i * 2 * N * T, rtol=1e-10)
    np.testing.assert_allclose(b * B * D ** -b, p_t * 6 * N * D, rtol=1e-10)


def test_shared_model_agrees_with_scipy():
    """One model (N, D shared) serves five query classes, each with its own samples per
    query, pass@k target and demand: planner's outer L-BFGS over the shared variables against
    SciPy, which minimises the lifetime FLOP over (N, D) by Nelder-Mead with each class's
    least samples found by `brentq` on pass@k written out with `scipy.special` (the
    Beta-binomial of `SuccessLink`)."""
    from scipy import optimize, special

    law = Chinchilla.hoffmann2022()
    link = planner.SuccessLink.codex2021()
    model = Pipeline(Pretraining(law), planner.RepeatedSampling(link))
    rng = np.random.default_rng(1)
    k = 5
    target = rng.uniform(0.3, 0.8, k)
    demand = 10.0 ** rng.uniform(9.0, 12.0, k)
    weight = rng.uniform(0.5, 2.0, k)
    items = Scenario(target_score=jnp.asarray(target), inference_demand=jnp.asarray(demand))
    port = planner.allocate(model, items, {}, objective="compute", weight=weight,
                            shared=("n_params", "n_tokens"))
    assert int(port.status) == Status.OPTIMAL

    _, A, B, a, b = (float(v) for v in (law.E, law.A, law.B, law.alpha, law.beta))
    t0, t1, kappa = (float(v) for v in (link.intercept, link.slope, link.concentration))

    def log_failure(n, d, log_k):
        mu = special.expit(t0 + t1 * np.log(A * n ** -a + B * d ** -b))
        p, q = mu * kappa, (1.0 - mu) * kappa
        return special.betaln(p, q + np.exp(log_k)) - special.betaln(p, q)

    def samples(n, d):
        """Each class's least samples per query to its target at this model (>= 1)."""
        out = np.ones(k)
        for i in range(k):
            def h(y, i=i):
                return log_failure(n, d, y) - np.log1p(-target[i])
            if h(0.0) > 0:
                out[i] = np.exp(optimize.brentq(h, 0.0, 60.0, xtol=1e-14, rtol=1e-15))
        return out

    def cost(z):
        n, d = np.exp(z)
        return (6.0 * n * d + np.sum(weight * demand * 2.0 * n * samples(n, d))) / 1e23

    res = optimize.minimize(cost, np.log([1e10, 2e11]), method="Nelder-Mead",
                            options={"xatol": 1e-9, "fatol": 1e-14, "maxiter": 4000})
    assert res.success, res.message
    n, d = np.exp(res.x)
    np.testing.assert_allclose(float(port.objective), res.fun * 1e23, rtol=1e-9)
    np.testing.assert_allclose(float(port.shared["n_params"]), n, rtol=1e-5)
    np.testing.assert_allclose(float(port.shared["n_tokens"]), d, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(port.plans.allocation.n_samples), samples(n, d),
                               rtol=1e-5)
    # training is counted once
    np.testing.assert_allclose(float(port.train_flops), 6.0 * float(port.shared["n_params"])
                               * float(port.shared["n_tokens"]), rtol=1e-12)


@pytest.mark.parametrize("objective, budgets", [("loss", {"compute_budget": 1e23}),
                                                ("compute", {"inference_budget": 1e23})])
def test_a_shared_model_is_refused_beyond_compute_without_budgets(objective, budgets):
    model = Pipeline(Pretraining(Chinchilla.hoffmann2022()),
                     planner.RepeatedSampling(planner.SuccessLink.codex2021()))
    items = Scenario(target_score=jnp.array([0.3, 0.5]), inference_demand=jnp.array([1e9, 1e10]))
    with pytest.raises(ValueError, match="a shared model is solved for objective='compute' "
                       "without budgets"):
        planner.allocate(model, items, budgets, objective=objective,
                         shared=("n_params", "n_tokens"))


SHARDED = """
import json, sys
import jax
jax.config.update("jax_enable_x64", True)
sys.path.insert(0, {tests!r})
import jax.numpy as jnp
import numpy as np
import planner
from test_allocate import least_train, portfolio, take

model, coefs, weight, demand, target = portfolio({n})
scen = planner.Scenario(target_loss=jnp.asarray(target), inference_demand=jnp.asarray(demand))
budget = {{"train_budget": 1.02 * least_train(coefs, target).sum()}}
port = planner.allocate(model, scen, budget, weight=weight, devices=jax.devices())
assert len(jax.devices()) == 4
out = {{"objective": float(port.objective), "price": float(port.prices["train_budget"]),
       "n": np.asarray(port.plans.allocation.n_params).tolist(), "status": int(port.status),
       "shards": len(port.plans.status.sharding.device_set)}}
print(json.dumps(out))
"""


def test_the_item_axis_sharded_over_devices_gives_the_one_device_portfolio(tmp_path):
    """Four CPU devices (a subprocess: the device count is fixed when JAX starts): each
    batched solve splits the items between them and reduces the budgets' sums across them;
    the portfolio is the one-device portfolio to rounding."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    n = 18  # not a multiple of 4: the last device's rows are padded
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    code = SHARDED.format(tests=str(Path(__file__).parent), n=n)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    sharded = json.loads(out.stdout.strip().splitlines()[-1])
    assert sharded["status"] == Status.OPTIMAL and sharded["shards"] == 4
    model, coefs, weight, demand, target = portfolio(n)
    scen = Scenario(target_loss=jnp.asarray(target), inference_demand=jnp.asarray(demand))
    one = planner.allocate(model, scen, {"train_budget": 1.02 * least_train(coefs, target).sum()},
                           weight=weight)
    np.testing.assert_allclose(sharded["objective"], float(one.objective), rtol=1e-12)
    np.testing.assert_allclose(sharded["price"], float(one.prices["train_budget"]), rtol=1e-9)
    np.testing.assert_allclose(sharded["n"], np.asarray(one.plans.allocation.n_params),
                               rtol=1e-9)
