"""Samples per class under one test-time budget (`planner.techniques.allocate_samples`), against
independent oracles: the closed-form water-filling optimum with its price found by SciPy's
brentq in NumPy, SciPy's SLSQP on the whole problem, finite differences, and SciPy's Beta
distribution for the difficulty classes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, optimize, special, stats

import planner
from planner import Status


def table(n, seed, a=1.0, costs=False):
    rng = np.random.default_rng(seed)
    # pass@1 spread over orders of magnitude, as Beta(0.3, 1.5) problems are, with a few
    # hopeless (0) and certain (1) classes
    p = rng.beta(0.3, 1.5, n)
    p[rng.random(n) < 0.02] = 0.0
    p[rng.random(n) < 0.02] = 1.0
    w = rng.uniform(0.1, 1.0, n)
    c = rng.uniform(0.5, 2.0, n) if costs else np.ones(n)
    return p, w, c


def water_filling(p, w, c, budget, a=1.0):
    """The closed-form optimum: k_i = max(1, ln(a q_i / (c_i λ)) / q_i), λ by brentq on the
    budget, in NumPy (float64)."""
    with np.errstate(divide="ignore"):
        q = -np.log1p(-p)
        log_fail = np.log1p(-p)
    useful = (q > 0) & np.isfinite(q)

    def samples(u):
        k = np.ones_like(p)
        k[useful] = np.maximum(1.0, (np.log(a * q[useful] / c[useful]) - u) / q[useful])
        return k

    def excess(u):
        return np.sum(w * c * samples(u)) / np.sum(w) - budget

    u = optimize.brentq(excess, -2000.0, 50.0, xtol=1e-14, rtol=4 * np.finfo(float).eps,
                        maxiter=500)
    k = samples(u)
    score = a * -np.expm1(np.where(p < 1, log_fail * k, -np.inf)) + (1 - a) * p
    return k, np.sum(w * score) / np.sum(w), np.exp(u)


@pytest.mark.parametrize("n, seed, a, costs", [
    (10, 0, 1.0, False), (100, 1, 1.0, True), (1000, 2, 0.7, False),
    (10_000, 3, 1.0, False), (100_000, 4, 0.9, True),
])
def test_agrees_with_water_filling(n, seed, a, costs):
    p, w, c = table(n, seed, a, costs)
    budget = 6.0 * np.sum(w * c) / np.sum(w)   # six samples per query on average
    plan = planner.techniques.allocate_samples(p, budget, weight=w, cost=c, accuracy=a)
    k, score, price = water_filling(p, w, c, budget, a)
    assert int(plan.status) == Status.OPTIMAL
    assert float(plan.objective) == pytest.approx(score, rel=1e-8)
    np.testing.assert_allclose(plan.n_samples, k, rtol=1e-8)
    assert float(plan.price) == pytest.approx(price, rel=1e-8)
    assert float(plan.usage) == pytest.approx(budget, rel=1e-9)
    # the uniform plan never beats the adaptive one, and needs `efficiency` × the budget to
    # match it (checked in NumPy)
    assert float(plan.uniform_score) <= float(plan.objective) * (1 + 1e-14)
    uniform_k = budget * np.sum(w) / np.sum(w * c)
    assert float(plan.uniform_samples) == pytest.approx(uniform_k, rel=1e-12)
    matched = uniform_k * float(plan.efficiency)
    with np.errstate(divide="ignore"):
        reach = np.sum(w * (a * -np.expm1(np.log1p(-p) * matched) + (1 - a) * p)) / np.sum(w)
    assert reach == pytest.approx(score, rel=1e-10)
    assert float(plan.efficiency) >= 1.0


def test_agrees_with_slsqp_on_the_whole_problem():
    """A general solver on the joint problem, with no closed form in it."""
    p, w, c = table(8, 5, costs=True)
    p = np.clip(p, 0.01, 0.95)
    budget = 4.0 * np.sum(w * c) / np.sum(w)
    plan = planner.techniques.allocate_samples(p, budget, weight=w, cost=c)

    def negative_score(k):
        return -np.sum(w * -np.expm1(np.log1p(-p) * k)) / np.sum(w)

    found = optimize.minimize(
        negative_score, np.full(8, 2.0), method="SLSQP", bounds=[(1, None)] * 8,
        constraints=[{"type": "ineq", "fun": lambda k: budget - np.sum(w * c * k) / np.sum(w)}],
        options={"ftol": 1e-15, "maxiter": 1000})
    assert found.success
    assert float(plan.objective) == pytest.approx(-found.fun, rel=1e-9)
    np.testing.assert_allclose(plan.n_samples, found.x, rtol=1e-4)


def test_price_is_the_gradient_of_the_score():
    p, w, c = table(500, 6, costs=True)
    budget = 5.0

    def score(b):
        return planner.techniques.allocate_samples(p, b, weight=w, cost=c).objective

    plan = planner.techniques.allocate_samples(p, budget, weight=w, cost=c)
    assert float(jax.grad(score)(budget)) == pytest.approx(float(plan.price), rel=1e-8)
    h = 1e-4 * budget
    central = (float(score(budget + h)) - float(score(budget - h))) / (2 * h)
    assert central == pytest.approx(float(plan.price), rel=1e-6)


def test_gradients_in_the_classes_match_finite_differences():
    p, w, _ = table(40, 7)
    p = np.clip(p, 0.02, 0.9)

    def score(p_, w_):
        return planner.techniques.allocate_samples(p_, 3.0, weight=w_).objective

    gp, gw = jax.grad(score, argnums=(0, 1))(jnp.asarray(p), jnp.asarray(w))
    for i in (0, 7, 21):
        e = np.zeros_like(p)
        e[i] = 1e-6
        fd_p = (float(score(p + e, w)) - float(score(p - e, w))) / 2e-6
        fd_w = (float(score(p, w + e)) - float(score(p, w - e))) / 2e-6
        assert float(gp[i]) == pytest.approx(fd_p, rel=1e-5, abs=1e-10)
        assert float(gw[i]) == pytest.approx(fd_w, rel=1e-5, abs=1e-10)


def test_bad_classes_are_marked_and_left_out():
    p, w, _ = table(50, 8)
    bad_p, bad_w = p.copy(), w.copy()
    bad_p[[3, 17]] = [np.nan, 1.5]
    bad_w[29] = -1.0
    plan = planner.techniques.allocate_samples(bad_p, 4.0, weight=bad_w)
    keep = np.ones(50, bool)
    keep[[3, 17, 29]] = False
    alone = planner.techniques.allocate_samples(p[keep], 4.0, weight=w[keep])
    assert int(plan.status) == Status.OPTIMAL
    assert list(np.flatnonzero(np.asarray(plan.class_status) == Status.INVALID_INPUT)) == [
        3, 17, 29]
    assert np.isnan(plan.n_samples[~keep]).all() and np.isnan(plan.score[~keep]).all()
    np.testing.assert_allclose(plan.n_samples[keep], alone.n_samples, rtol=1e-12)
    assert float(plan.objective) == pytest.approx(float(alone.objective), rel=1e-14)


def test_statuses_and_errors():
    p, w, _ = table(20, 9)
    short = planner.techniques.allocate_samples(p, 0.5, weight=w, throw=False)
    assert int(short.status) == Status.INFEASIBLE and np.isnan(float(short.objective))
    with pytest.raises(Exception, match="no optimal sample plan"):
        planner.techniques.allocate_samples(p, 0.5, weight=w)
    none = planner.techniques.allocate_samples(np.full(3, np.nan), 2.0, throw=False)
    assert int(none.status) == Status.INVALID_INPUT
    # one sample per query exactly: every class draws one
    one = planner.techniques.allocate_samples(p, 1.0, weight=w)
    np.testing.assert_allclose(np.asarray(one.n_samples), 1.0, rtol=1e-12)
    # nothing to gain from more samples: the budget is slack and free
    sure = planner.techniques.allocate_samples(np.array([0.0, 1.0]), 3.0)
    assert int(sure.status) == Status.OPTIMAL and float(sure.price) == 0.0
    with pytest.raises(ValueError, match="budget"):
        planner.techniques.allocate_samples(p, -1.0)
    with pytest.raises(ValueError, match="accuracy"):
        planner.techniques.allocate_samples(p, 2.0, accuracy=1.5)
    with pytest.raises(ValueError, match="weight"):
        planner.techniques.allocate_samples(p, 2.0, weight=np.ones(3))


def test_float32_is_accurate_to_its_stated_tolerance():
    p, w, _ = table(10_000, 10)
    with jax.numpy_dtype_promotion("standard"):
        plan = planner.techniques.allocate_samples(p.astype(np.float32), 6.0,
                                                   weight=w.astype(np.float32))
    _, score, price = water_filling(p, w, np.ones_like(p), 6.0)
    assert plan.objective.dtype == jnp.float32
    assert int(plan.status) == Status.OPTIMAL
    assert float(plan.objective) == pytest.approx(score, rel=1e-5)
    assert float(plan.price) == pytest.approx(price, rel=1e-3)


def test_difficulty_classes_match_scipys_beta():
    a, b = 0.4, 2.5
    weight, p = planner.techniques.difficulty_classes(a, b, 5)
    edges = stats.beta.ppf(np.linspace(0, 1, 6), a, b)
    for j in range(5):
        mean, _ = integrate.quad(lambda x: x * stats.beta.pdf(x, a, b), edges[j], edges[j + 1],
                                 epsabs=1e-14, epsrel=1e-12, limit=200)
        assert float(p[j]) == pytest.approx(5 * mean, rel=1e-7)
    np.testing.assert_allclose(weight, 0.2, rtol=0)
    assert np.all(np.diff(np.asarray(p)) > 0)   # hardest first
    levels = np.array([1e-6, 0.01, 0.3, 0.9, 0.999])
    for alpha, beta in ((0.05, 1.0), (0.7, 0.3), (3.0, 40.0)):
        np.testing.assert_allclose(
            planner.techniques.beta_quantile(alpha, beta, levels),
            stats.beta.ppf(levels, alpha, beta), rtol=1e-10)


def beta_water_filling(alpha, beta, w, budget):
    """Beta classes' optimum in SciPy: each class's response k_i(λ) by brentq on
    log(-dF/dk) = log λ in log k (F = B(α, β + k)/B(α, β)), λ by brentq on the budget."""
    def log_failure(a, b, k):
        return (special.gammaln(b + k) - special.gammaln(a + b + k) - special.gammaln(b)
                + special.gammaln(a + b))

    def log_marginal(a, b, k):
        with np.errstate(divide="ignore"):  # the difference of ψ rounds to 0 at k = e^80
            return log_failure(a, b, k) + np.log(special.digamma(a + b + k)
                                                 - special.digamma(b + k))

    def samples(u):
        out = np.ones_like(alpha)
        for i, (a, b) in enumerate(zip(alpha, beta, strict=True)):
            if log_marginal(a, b, 1.0) > u:
                out[i] = np.exp(optimize.brentq(lambda t: log_marginal(a, b, np.exp(t)) - u,
                                                0.0, 80.0, xtol=1e-14, rtol=1e-15))
        return out

    u = optimize.brentq(lambda u: np.sum(w * samples(u)) / np.sum(w) - budget, -400.0, 5.0,
                        xtol=1e-13, rtol=1e-15)
    k = samples(u)
    return k, np.sum(w * -np.expm1(log_failure(alpha, beta, k))) / np.sum(w), np.exp(u)


@pytest.mark.parametrize("n, seed", [(10, 11), (200, 12)])
def test_beta_classes_agree_with_scipy(n, seed):
    rng = np.random.default_rng(seed)
    alpha, beta = rng.uniform(0.05, 1.0, n), rng.uniform(0.3, 3.0, n)
    w = rng.uniform(0.1, 1.0, n)
    classes = planner.techniques.BetaSuccess(alpha, beta)
    plan = planner.techniques.allocate_samples(classes, 20.0, weight=w)
    k, score, price = beta_water_filling(alpha, beta, w, 20.0)
    assert int(plan.status) == Status.OPTIMAL
    assert float(plan.objective) == pytest.approx(score, rel=1e-10)
    np.testing.assert_allclose(plan.n_samples, k, rtol=1e-8)
    assert float(plan.price) == pytest.approx(price, rel=1e-8)
    assert float(plan.uniform_score) < float(plan.objective)

    def objective(b):
        return planner.techniques.allocate_samples(classes, b, weight=w).objective

    assert float(jax.grad(objective)(20.0)) == pytest.approx(float(plan.price), rel=1e-8)


def joint_oracle(law, link, offsets, compute, demand):
    """`train_to_test`'s problem in NumPy and SciPy: Nelder–Mead over (z, v), the classes'
    samples by `beta_water_filling`."""
    a, b = float(law.A), float(law.B)
    alpha_n, beta_d = float(law.alpha), float(law.beta)
    theta0, theta1, kappa = (float(link.intercept), float(link.slope),
                             float(link.concentration))
    w = np.ones(len(offsets))

    def unpack(x):
        share, mean = 1 / (1 + np.exp(-x[0])), 1 + np.exp(x[1])
        n = share * compute / (2 * demand * mean)
        d = (1 - share) * compute / (6 * n)
        return n, d, mean

    def negative(x):
        n, d, mean = unpack(x)
        z = theta0 + offsets + theta1 * np.log(a * n ** -alpha_n + b * d ** -beta_d)
        mu = 1 / (1 + np.exp(-z))
        return -beta_water_filling(kappa * mu, kappa * (1 - mu), w, mean)[1]

    found = optimize.minimize(negative, np.array([0.0, 1.0]), method="Nelder-Mead",
                              options={"xatol": 1e-7, "fatol": 1e-13, "maxiter": 400})
    n, d, _ = unpack(found.x)
    return n, d, -found.fun


def test_train_to_test_agrees_with_nelder_mead_and_shrinks_the_model_with_demand():
    law, link = planner.Chinchilla.sardana2024(), planner.SuccessLink.codex2021()
    offsets = np.array([-2.0, 0.0, 2.0])
    plans = [planner.techniques.train_to_test(law, link, offsets, 1e23, t)
             for t in (1e10, 1e12)]
    n, d, score = joint_oracle(law, link, offsets, 1e23, 1e12)
    last = plans[-1]
    assert float(last.samples.objective) == pytest.approx(score, rel=1e-9)
    assert float(last.n_params) == pytest.approx(n, rel=1e-4)
    assert float(last.n_tokens) == pytest.approx(d, rel=1e-4)
    # the budget is spent exactly, training once and every sample of every query
    total = float(last.train_flops + last.inference_flops)
    assert total == pytest.approx(1e23, rel=1e-12)
    assert float(last.inference_flops) == pytest.approx(
        2 * float(last.n_params) * 1e12 * float(last.samples.usage), rel=1e-12)
    # more test-time demand: a smaller model, trained longer per parameter, fewer samples
    first = plans[0]
    assert float(last.n_params) < float(first.n_params)
    assert (float(last.n_tokens / last.n_params) > float(first.n_tokens / first.n_params))
    assert float(last.samples.usage) < float(first.samples.usage)
