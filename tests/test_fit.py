"""Fitting loss laws: the Chinchilla replication, bootstrap coverage, planning under the
bootstrap, FIT.json.

Oracles: the published replication (Besiroglu et al. 2024, as restated in
`planner/data/README.md`), a SciPy L-BFGS-B multi-start fit of an
independently written NumPy objective, the Chinchilla closed forms (Hoffmann et al. 2022)
written in NumPy,
`numpy.quantile`, binomial bounds on interval coverage, finite differences.
"""

from __future__ import annotations

import csv
import json
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import optimize, stats

from planner._data import CHINCHILLA_RUNS, data_file
from planner._fit import (
    COEFFICIENTS,
    AbstractLawForm,
    ChinchillaForm,
    MultiStartBFGS,
    _bfgs,
    bootstrap_weights,
    compute_optimal_quantiles,
    fit,
    huber,
    huber_fit,
    huber_objective,
    laws_from_coefficients,
    loss_optimal_quantiles,
    probability_meets_target,
    read_fit_bootstrap,
    read_fit_json,
    read_runs,
    stack_laws,
    start_grid,
    write_fit_json,
)
from planner._laws import Chinchilla

CHINCHILLA_CSV = data_file(CHINCHILLA_RUNS)  # shipped with the package, never skipped

# Besiroglu et al. 2024 on the 240 runs kept: point estimates and bootstrap 95% intervals
# (planner/data/README.md); standard errors of their Table 1.
REPLICATION = {"E": 1.817, "A": 482.0, "B": 2085.4, "alpha": 0.348, "beta": 0.366}
REPLICATION_CI95 = {
    "E": (1.769, 1.871),
    "A": (285.0, 744.0),
    "B": (1042.0, 5810.0),
    "alpha": (0.317, 0.373),
    "beta": (0.331, 0.415),
}
REPLICATION_SE = {"E": 0.03, "A": 124.58, "B": 1293.23, "alpha": 0.02, "beta": 0.02}

# A modest grid (27 starts) inside Hoffmann et al.'s 4,500-point one, for test speed; more
# starts than the solver polishes, so both of its passes run.
TEST_STARTS = start_grid([0, 10, 20], [0, 10, 20], [-1, 0, 1], [0.5], [0.5])
N_BOOT = 200


# ================================================================ independent NumPy objective
def numpy_objective(theta, log_n, log_d, log_l, delta=1e-3):
    """Summed Huber loss of LSE(a - α log N, b - β log D, e) - log L, and its gradient."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    top = terms.max(axis=0)
    pred = top + np.log(np.sum(np.exp(terms - top), axis=0))
    r = pred - log_l
    value = np.sum(np.where(np.abs(r) <= delta, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta)))
    soft = np.exp(terms - pred)
    dh = np.clip(r, -delta, delta)
    grad = np.array(
        [
            np.sum(dh * soft[0]),
            np.sum(dh * soft[1]),
            np.sum(dh * soft[2]),
            -np.sum(dh * soft[0] * log_n),
            -np.sum(dh * soft[1] * log_d),
        ]
    )
    return value, grad


# ============================================================================ Chinchilla data
@pytest.fixture(scope="module")
def chinchilla_runs():
    return read_runs(CHINCHILLA_CSV)


@pytest.fixture(scope="module")
def chinchilla_fit(chinchilla_runs):
    runs = chinchilla_runs
    return fit(
        runs.n_params,
        runs.n_tokens,
        runs.loss,
        drop_highest_loss=5,
        starts=TEST_STARTS,
        n_bootstrap=N_BOOT,
        key=jax.random.key(2024),
    )


def test_reads_epoch_extraction_with_tokens_from_flop(chinchilla_runs):
    with CHINCHILLA_CSV.open(newline="") as f:
        rows = list(csv.DictReader(f))
    n = np.array([float(row["Model Size"]) for row in rows])
    c = np.array([float(row["Training FLOP"]) for row in rows])
    assert chinchilla_runs.loss.shape == (245,)
    np.testing.assert_allclose(chinchilla_runs.n_params, n, rtol=0)
    np.testing.assert_allclose(chinchilla_runs.n_tokens, c / (6 * n), rtol=1e-15)


def test_fit_lands_on_the_replication(chinchilla_runs, chinchilla_fit):
    result = chinchilla_fit
    loss = np.asarray(chinchilla_runs.loss)
    assert result.n_runs == 240
    assert sorted(result.dropped) == sorted(np.argsort(loss)[-5:].tolist())
    assert np.min(loss[list(result.dropped)]) > np.max(np.delete(loss, result.dropped))
    coefficients = result.coefficients()
    for name in COEFFICIENTS:
        low, high = REPLICATION_CI95[name]
        assert low <= coefficients[name] <= high, name
    for name in ("E", "alpha", "beta"):
        assert coefficients[name] == pytest.approx(REPLICATION[name], rel=0.02), name
    assert bool(result.converged)
    assert float(result.grad_norm) < 1e-6


def test_fit_is_no_worse_than_scipy_multistart(chinchilla_runs, chinchilla_fit):
    loss = np.asarray(chinchilla_runs.loss)
    keep = np.sort(np.argsort(loss, kind="stable")[:-5])
    log_n = np.log(np.asarray(chinchilla_runs.n_params)[keep])
    log_d = np.log(np.asarray(chinchilla_runs.n_tokens)[keep])
    log_l = np.log(loss[keep])
    best = math.inf
    for x0 in np.asarray(TEST_STARTS):
        res = optimize.minimize(
            numpy_objective, x0, args=(log_n, log_d, log_l), jac=True, method="L-BFGS-B"
        )
        if np.isfinite(res.fun):
            best = min(best, float(res.fun))
    ours = float(chinchilla_fit.objective)
    # The same objective, evaluated independently at our optimum.
    value, grad = numpy_objective(np.asarray(chinchilla_fit.theta), log_n, log_d, log_l)
    assert value == pytest.approx(ours, rel=1e-12)
    assert np.linalg.norm(grad) < 1e-6
    assert ours <= best * (1 + 1e-12)


def test_bootstrap_matches_the_replication(chinchilla_fit):
    result = chinchilla_fit
    assert result.n_bootstrap == N_BOOT
    assert np.all(np.asarray(result.bootstrap_converged))
    ses = result.standard_errors()
    intervals = result.interval(0.95)
    for name in COEFFICIENTS:
        # Same data and method, 200 resamples against their 4,000: within a factor 1.5.
        assert REPLICATION_SE[name] / 1.5 < ses[name] < REPLICATION_SE[name] * 1.5, name
        low, high = intervals[name]
        ref_low, ref_high = REPLICATION_CI95[name]
        tol = 0.3 if name in ("A", "B") else 0.03
        assert low == pytest.approx(ref_low, rel=tol), name
        assert high == pytest.approx(ref_high, rel=tol), name


# ====================================================================== synthetic: coverage
TRUE_LAW = Chinchilla.besiroglu2024()
N_DRAWS = 40
N_SYNTH_RUNS = 64
NOISE = 0.005
"""Log-loss noise: the Chinchilla residuals' mean absolute size is about 0.005."""

SMALL_STARTS = start_grid([0, 10], [0, 10], [0, 1], [0.5], [0.5, 1.0])


@pytest.fixture(scope="module")
def synthetic():
    rng = np.random.default_rng(7)
    n = np.exp(rng.uniform(np.log(7e7), np.log(1.6e10), N_SYNTH_RUNS))
    d = n * np.exp(rng.uniform(np.log(2.0), np.log(200.0), N_SYNTH_RUNS))
    clean = np.asarray(TRUE_LAW.loss(n, d))
    losses = clean[None, :] * np.exp(NOISE * rng.standard_normal((N_DRAWS, N_SYNTH_RUNS)))
    return jnp.asarray(n), jnp.asarray(d), jnp.asarray(losses)


@pytest.fixture(scope="module")
def coverage_fits(synthetic):
    n, d, losses = synthetic
    form, solver = ChinchillaForm(), MultiStartBFGS()
    point = jax.vmap(huber_fit, in_axes=(None, None, None, None, 0, None, None, None))(
        form, SMALL_STARTS, n, d, losses, None, 1e-3, solver
    )
    keys = jax.random.split(jax.random.key(11), N_DRAWS)
    weights = jax.vmap(lambda k: bootstrap_weights(k, N_SYNTH_RUNS, N_BOOT))(keys)

    def resample_all(theta, loss, w):
        return jax.vmap(huber_fit, in_axes=(None, None, None, None, None, 0, None, None))(
            form, theta[None, :], n, d, loss, w, 1e-3, solver
        )

    boot = jax.vmap(resample_all)(point.theta, losses, weights)
    return point, boot, weights


def test_bootstrap_intervals_cover_the_true_law_at_the_nominal_rate(coverage_fits):
    point, boot, _ = coverage_fits
    assert np.all(np.asarray(point.converged)) and np.all(np.asarray(boot.converged))
    laws = jax.vmap(jax.vmap(ChinchillaForm().law))(boot.theta)
    for level in (0.95, 0.5):
        # Each coefficient's count of covering draws is Binomial(40, level) if the intervals
        # are exact; reject outside the central 99% of that distribution (both tails).
        low_count = stats.binom.ppf(0.005, N_DRAWS, level)
        high_count = stats.binom.isf(0.005, N_DRAWS, level)
        for name in COEFFICIENTS:
            samples = np.asarray(getattr(laws, name))
            low = np.percentile(samples, 50 * (1 - level), axis=1)
            high = np.percentile(samples, 50 * (1 + level), axis=1)
            truth = float(getattr(TRUE_LAW, name))
            covered = int(np.sum((low <= truth) & (truth <= high)))
            assert low_count <= covered <= high_count, (level, name, covered)


def test_batched_fits_equal_one_at_a_time(synthetic, coverage_fits):
    n, d, losses = synthetic
    point, _, _ = coverage_fits
    for i in range(2):
        got = huber_fit(ChinchillaForm(), SMALL_STARTS, n, d, losses[i])
        # Batched and single solves sum in different orders, so their iterates part at
        # rounding level; both stop at the gradient tolerance, about 1e-8 in theta.
        np.testing.assert_allclose(got.theta, point.theta[i], rtol=1e-6)
        np.testing.assert_allclose(got.objective, point.objective[i], rtol=1e-10)


def test_bootstrap_weights_are_multinomial_counts():
    w = np.asarray(bootstrap_weights(jax.random.key(3), 50, 400))
    assert w.shape == (400, 50)
    np.testing.assert_array_equal(w, np.round(w))
    np.testing.assert_array_equal(w.sum(axis=1), 50)
    # Each count is Binomial(50, 1/50): mean 1, variance 49/50; a 20,000-count average.
    assert abs(w.mean() - 1.0) < 1e-12
    assert w.var() == pytest.approx(49 / 50, abs=0.05)
    # P(run left out of a resample) = (1 - 1/50)^50.
    assert np.mean(w == 0) == pytest.approx((1 - 1 / 50) ** 50, abs=0.02)


# ===================================================================== objective and solver
def test_lse_form_is_the_chinchilla_law_and_stays_finite():
    form = ChinchillaForm()
    law = Chinchilla(E=1.8, A=480.0, B=2100.0, alpha=0.35, beta=0.37)
    theta = form.theta(law)
    n = jnp.array([1e8, 3e9, 7e10])
    d = jnp.array([2e9, 6e10, 1.4e12])
    np.testing.assert_allclose(
        jnp.exp(form.log_loss(theta, jnp.log(n), jnp.log(d))), law.loss(n, d), rtol=1e-14
    )
    rebuilt = form.law(theta)
    for name in COEFFICIENTS:
        np.testing.assert_allclose(getattr(rebuilt, name), getattr(law, name), rtol=1e-14)
    # Terms that overflow exp() in the naive form: LSE stays finite with finite gradients.
    extreme = jnp.array([900.0, -900.0, 800.0, 0.0, 2.0])
    value = form.log_loss(extreme, jnp.log(n), jnp.log(d))
    assert np.all(np.isfinite(value))
    np.testing.assert_allclose(value, 900.0, rtol=1e-12)
    grad = jax.grad(lambda t: jnp.sum(form.log_loss(t, jnp.log(n), jnp.log(d))))(extreme)
    assert np.all(np.isfinite(grad))


def test_objective_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    log_n = jnp.asarray(rng.uniform(18, 23, 30))
    log_d = jnp.asarray(rng.uniform(20, 26, 30))
    law = Chinchilla(E=1.8, A=480.0, B=2100.0, alpha=0.35, beta=0.37)
    log_l = jnp.log(law.loss(jnp.exp(log_n), jnp.exp(log_d))) + 0.05 * jnp.asarray(
        rng.standard_normal(30)
    )
    weights = jnp.asarray(rng.integers(0, 3, 30).astype(float))
    theta = ChinchillaForm().theta(law) + 0.01

    @jax.jit
    def f(t):
        return huber_objective(t, ChinchillaForm(), log_n, log_d, log_l, weights, 1e-3)

    # Every residual sits in the linear part of the Huber loss, away from its kinks at ±δ.
    residual = ChinchillaForm().log_loss(theta, log_n, log_d) - log_l
    assert np.min(np.abs(np.abs(residual) - 1e-3)) > 1e-3
    check_grads(f, (theta,), order=2, modes=["fwd", "rev"], eps=1e-6)
    value, grad = numpy_objective(
        np.asarray(theta), np.asarray(log_n), np.asarray(log_d), np.asarray(log_l)
    )
    unweighted = huber_objective(theta, ChinchillaForm(), log_n, log_d, log_l, jnp.ones(30), 1e-3)
    assert float(unweighted) == pytest.approx(value, rel=1e-13)


def test_huber_is_quadratic_inside_and_linear_outside():
    r = jnp.array([-0.01, -1e-3, -5e-4, 0.0, 5e-4, 1e-3, 0.01])
    expected = [1e-3 * (0.01 - 5e-4), 5e-7, 1.25e-7, 0.0, 1.25e-7, 5e-7, 1e-3 * (0.01 - 5e-4)]
    np.testing.assert_allclose(huber(r, 1e-3), expected, rtol=1e-14)


def test_bfgs_minimises_rosenbrock_from_many_starts():
    def rosenbrock(x):
        return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    starts = jnp.asarray(np.random.default_rng(1).uniform(-2, 2, (16, 5)))
    out = jax.jit(jax.vmap(lambda x0: _bfgs(rosenbrock, x0, 1e-10, 2000)))(starts)
    # Every start ends at a local minimum: positive definite Hessian (5-d Rosenbrock has one
    # besides the global minimum at ones, near x1 = -1, where f = 3.93)...
    x, f = np.asarray(out.x), np.asarray(out.value)
    grads = np.asarray(jax.jit(jax.vmap(jax.grad(rosenbrock)))(out.x))
    hessians = np.asarray(jax.jit(jax.vmap(jax.hessian(rosenbrock)))(out.x))
    assert np.all(np.linalg.eigvalsh(hessians) > 0)
    at_global = np.all(np.abs(x - 1.0) < 1e-6, axis=1)
    assert at_global.sum() >= 8
    assert np.all(at_global | (x[:, 0] < -0.9))
    # ...with a zero gradient where f = 0, and, at the other minimum, nothing left that a line
    # search on f can see: the decrease a Newton step would still give, g'H⁻¹g/2 (exact
    # Hessian), is below the rounding of f = 3.93 (eps |f| = 8.7e-16). There the attainable
    # gradient is about sqrt(2 λ eps |f|) along an eigenvalue λ of H (0.6 to 1,440: 3e-8 to
    # 2e-6), and an Armijo test comparing f values that differ in their last bit cannot drive
    # it to 1e-8; one start ended at 1.4e-8, with 3e-19 of decrease left.
    assert np.max(np.abs(grads[at_global])) < 1e-8
    steps = np.linalg.solve(hessians, grads[..., None])[..., 0]
    newton_decrease = 0.5 * np.einsum("bi,bi->b", grads, steps)
    eps = np.finfo(np.float64).eps
    assert np.all(newton_decrease[~at_global] <= eps * np.abs(f[~at_global]))
    assert np.max(np.abs(grads)) < 1e-6


class SharedExponentForm(AbstractLawForm):
    """Chinchilla with α = β: θ = (a, b, e, γ). A form defined outside the library."""

    names: ClassVar[tuple[str, ...]] = COEFFICIENTS
    traces: ClassVar[list[int]] = []

    def log_loss(self, theta, log_n_params, log_n_tokens):
        self.traces.append(1)
        full = jnp.concatenate([theta, theta[3:4]])
        return ChinchillaForm().log_loss(full, log_n_params, log_n_tokens)

    def law(self, theta):
        return ChinchillaForm().law(jnp.concatenate([theta, theta[3:4]]))

    def theta(self, law):
        return ChinchillaForm().theta(law)[:4]

    def starts(self):
        return start_grid([0, 10], [0, 10], [0, 1], [0.5, 1.0])


def test_any_law_form_fits_and_new_values_do_not_recompile(synthetic):
    n, d, _ = synthetic
    true = Chinchilla(E=1.7, A=400.0, B=900.0, alpha=0.3, beta=0.3)
    loss = true.loss(n, d)
    form = SharedExponentForm()
    result = fit(n, d, loss, form=form, n_bootstrap=0)
    got = result.coefficients()
    for name in COEFFICIENTS:
        assert got[name] == pytest.approx(float(getattr(true, name)), rel=1e-6), name
    assert got["alpha"] == got["beta"]
    assert float(result.objective) < 1e-20
    traced = len(form.traces)
    fit(n, d, loss * 1.01, form=form, n_bootstrap=0)
    assert len(form.traces) == traced


def test_float32_fit(synthetic, coverage_fits):
    n, d, losses = synthetic
    point, _, _ = coverage_fits
    as32 = [np.asarray(x, dtype=np.float32) for x in (n, d, losses[0])]
    result = fit(*as32, starts=SMALL_STARTS, n_bootstrap=0)
    assert result.theta.dtype == jnp.float32
    reference = ChinchillaForm().law(point.theta[0])
    for name in COEFFICIENTS:
        assert result.coefficients()[name] == pytest.approx(
            float(getattr(reference, name)), rel=2e-2
        ), name
    assert float(result.objective) == pytest.approx(float(point.objective[0]), rel=1e-3)


def test_fit_rejects_bad_inputs():
    n, d, loss = np.array([1e8, 1e9, 1e10] * 3), np.array([1e10] * 9), np.linspace(3, 2, 9)
    with pytest.raises(ValueError, match="one entry per run"):
        fit(n, d[:5], loss)
    with pytest.raises(ValueError, match="one-dimensional"):
        fit(n.reshape(3, 3), d.reshape(3, 3), loss.reshape(3, 3))
    with pytest.raises(ValueError, match="n_bootstrap"):
        fit(n, d, loss, n_bootstrap=1)
    with pytest.raises(ValueError, match="drop_highest_loss"):
        fit(n, d, loss, drop_highest_loss=9)
    with pytest.raises(ValueError, match="at least 5 runs"):
        fit(n, d, loss, drop_highest_loss=5)
    with pytest.raises(ValueError, match="huber_delta"):
        fit(n, d, loss, huber_delta=0.0)
    with pytest.raises(ValueError, match="starts"):
        fit(n, d, loss, starts=jnp.zeros(5))
    with pytest.raises(RuntimeError, match="loss must be > 0"):
        fit(n, d, -loss)
    with pytest.raises(RuntimeError, match="n_tokens must be finite"):
        fit(n, np.where(np.arange(9) == 3, np.nan, d), loss)


# ============================================================= planning under uncertainty
def _numpy_laws(k=400, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "E": rng.normal(1.82, 0.03, k),
        "A": np.exp(rng.normal(np.log(480), 0.25, k)),
        "B": np.exp(rng.normal(np.log(2100), 0.5, k)),
        "alpha": rng.normal(0.348, 0.015, k),
        "beta": rng.normal(0.366, 0.02, k),
    }


def test_loss_optimal_quantiles_match_numpy_closed_forms():
    c = _numpy_laws()
    laws = laws_from_coefficients(c)
    target = 1.88  # a few samples have E >= 1.88 and can never reach it
    q = (0.05, 0.25, 0.5, 0.75, 0.9)
    got = loss_optimal_quantiles(laws, target, q)
    gap = target - c["E"]
    feasible = gap > 0
    assert 0 < (~feasible).sum() < 0.05 * gap.size
    with np.errstate(invalid="ignore", divide="ignore"):
        n = np.where(
            feasible, (c["A"] * (1 + c["alpha"] / c["beta"]) / gap) ** (1 / c["alpha"]), np.inf
        )
        d = np.where(
            feasible, (c["B"] * (1 + c["beta"] / c["alpha"]) / gap) ** (1 / c["beta"]), np.inf
        )
    # Infeasible samples are +inf, the top of the order: below the top few percent NumPy's
    # quantiles of the finite samples, padded with +inf, are the oracle.
    for key, values in (("n_params", n), ("n_tokens", d), ("train_flops", 6 * n * d)):
        np.testing.assert_allclose(got[key], np.quantile(values, q), rtol=1e-12)
    assert float(got["feasible"]) == pytest.approx(feasible.mean())
    top = loss_optimal_quantiles(laws, target, (1.0,))
    assert np.all(np.isinf(np.asarray(top["n_params"])))
    # Vmapped over targets: one compiled function for every target.
    targets = jnp.array([1.9, 2.0, 2.2])
    batch = jax.vmap(lambda t: loss_optimal_quantiles(laws, t, q)["n_params"])(targets)
    np.testing.assert_allclose(
        batch[1], loss_optimal_quantiles(laws, 2.0, q)["n_params"], rtol=1e-14
    )
    assert np.all(np.diff(np.asarray(batch)[:, 2]) < 0)  # an easier target needs a smaller model


def test_compute_optimal_quantiles_match_numpy_closed_forms():
    c = _numpy_laws(seed=1)
    laws = laws_from_coefficients(c)
    budget = 5.76e23
    q = (0.025, 0.5, 0.975)
    got = compute_optimal_quantiles(laws, budget, q)
    s = c["alpha"] + c["beta"]
    g = (c["alpha"] * c["A"] / (c["beta"] * c["B"])) ** (1 / s)
    n = g * (budget / 6) ** (c["beta"] / s)
    d = (budget / 6) ** (c["alpha"] / s) / g
    loss = c["E"] + c["A"] * n ** -c["alpha"] + c["B"] * d ** -c["beta"]
    np.testing.assert_allclose(got["n_params"], np.quantile(n, q), rtol=1e-12)
    np.testing.assert_allclose(got["n_tokens"], np.quantile(d, q), rtol=1e-12)
    np.testing.assert_allclose(got["loss"], np.quantile(loss, q), rtol=1e-12)
    np.testing.assert_allclose(6 * n * d, budget, rtol=1e-12)
    # float32 laws give float32 plans, to float32 accuracy.
    laws32 = Chinchilla(**{k: jnp.asarray(v, dtype=jnp.float32) for k, v in c.items()})
    got32 = compute_optimal_quantiles(laws32, budget, q)
    assert got32["n_params"].dtype == jnp.float32
    np.testing.assert_allclose(got32["n_params"], got["n_params"], rtol=1e-4)
    plan32 = loss_optimal_quantiles(laws32, 2.0, q)
    np.testing.assert_allclose(
        plan32["train_flops"], loss_optimal_quantiles(laws, 2.0, q)["train_flops"], rtol=1e-4
    )


def test_probability_meets_target_counts_laws():
    c = _numpy_laws(seed=2)
    laws = laws_from_coefficients(c)
    n = np.array([3e10, 7e10, 1.5e11])
    d = np.array([6e11, 1.4e12, 3e12])
    target = 1.95
    got = probability_meets_target(laws, n, d, target)
    loss = (
        c["E"][:, None]
        + c["A"][:, None] * n ** -c["alpha"][:, None]
        + c["B"][:, None] * d ** -c["beta"][:, None]
    )
    np.testing.assert_allclose(got, np.mean(loss <= target, axis=0), rtol=0, atol=1e-15)
    assert 0 < float(got[0]) < float(got[1]) < float(got[2]) <= 1
    # The median law's own optimal plan meets the target for about half the laws.
    single = Chinchilla(**{k: float(np.median(v)) for k, v in c.items()})
    n_c, d_c = single.loss_optimal(target)
    assert 0.2 < float(probability_meets_target(laws, n_c, d_c, target)) < 0.8
    assert float(probability_meets_target(single, n_c * 1.01, d_c * 1.01, target)) == 1.0
    with pytest.raises(RuntimeError, match="n_params must be > 0"):
        probability_meets_target(laws, -1.0, 1e12, target)


def test_law_batches_from_lists_dicts_and_stacks():
    c = {k: v[:5] for k, v in _numpy_laws().items()}
    from_columns = laws_from_coefficients(c)
    from_rows = laws_from_coefficients([{k: float(c[k][i]) for k in c} for i in range(5)])
    stacked = stack_laws([Chinchilla(**{k: float(c[k][i]) for k in c}) for i in range(5)])
    for name in COEFFICIENTS:
        np.testing.assert_array_equal(getattr(from_columns, name), c[name])
        np.testing.assert_array_equal(getattr(from_rows, name), c[name])
        np.testing.assert_array_equal(getattr(stacked, name), c[name])
    with pytest.raises(ValueError, match="alpha"):
        laws_from_coefficients({k: v for k, v in c.items() if k != "alpha"})
    with pytest.raises(ValueError, match="'E'"):
        laws_from_coefficients({**c, "E": -c["E"]})
    with pytest.raises(ValueError, match=r"coefficients\[2\] lacks A, B, alpha, beta"):
        laws_from_coefficients([{k: 1.0 for k in c}] * 2 + [{"E": 1.0}])


# ================================================================================ FIT.json
@pytest.fixture(scope="module")
def small_fit(synthetic):
    # The synthetic runs plus two outliers inserted at rows 4 and 17, dropped by the fit.
    n, d, losses = (np.asarray(x) for x in synthetic)
    rows = [4, 17]
    n = np.insert(n, rows, [1e9, 2e9])
    d = np.insert(d, rows, [2e10, 4e10])
    loss = np.insert(losses[0], rows, [9.0, 8.0])
    return fit(n, d, loss, drop_highest_loss=2, starts=SMALL_STARTS, n_bootstrap=20)


def test_fit_json_round_trip(small_fit, tmp_path):
    path = tmp_path / "FIT.json"
    write_fit_json(small_fit, path)
    record = json.loads(path.read_text())
    assert record["n_runs"] == N_SYNTH_RUNS and record["dropped"] == [4, 18]
    assert record["n_starts"] == SMALL_STARTS.shape[0] and record["n_bootstrap"] == 20
    assert record["huber_delta"] == 1e-3
    assert record["objective"] == float(small_fit.objective)
    assert set(record["standard_errors"]) == set(COEFFICIENTS) == set(record["ci95"])
    law = read_fit_json(path)
    for name in COEFFICIENTS:
        assert float(getattr(law, name)) == small_fit.coefficients()[name]
        low, high = record["ci95"][name]
        samples = small_fit.bootstrap_coefficients()[name]
        assert (low, high) == (np.percentile(samples, 2.5), np.percentile(samples, 97.5))
        assert record["standard_errors"][name] == pytest.approx(np.std(samples, ddof=1), rel=1e-12)
    boot = read_fit_bootstrap(path)
    for name in COEFFICIENTS:
        np.testing.assert_array_equal(getattr(boot, name), small_fit.bootstrap_coefficients()[name])
    assert [p.name for p in tmp_path.iterdir()] == ["FIT.json"]


def test_fit_json_write_is_atomic(small_fit, tmp_path, monkeypatch):
    path = tmp_path / "FIT.json"
    path.write_text('{"old": true}')

    def broken_dump(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(json, "dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        write_fit_json(small_fit, path)
    assert path.read_text() == '{"old": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["FIT.json"]
    monkeypatch.undo()
    write_fit_json(small_fit, path, include_bootstrap=False)
    assert "bootstrap" not in json.loads(path.read_text())
    with pytest.raises(ValueError, match="'bootstrap' is missing"):
        read_fit_bootstrap(path)


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda r: r.pop("alpha"), "'alpha' is missing"),
        (lambda r: r.update(E=-1.0), "'E' must be a finite number > 0"),
        (lambda r: r.update(B="big"), "'B' must be a finite number > 0"),
        (lambda r: r.update(n_runs=0), "'n_runs' must be an integer >= 1"),
        (lambda r: r.update(n_bootstrap=1), "'n_bootstrap'"),
        (lambda r: r.update(huber_delta=0), "'huber_delta'"),
        (lambda r: r.update(objective=float("nan")), "'objective'"),
        (lambda r: r.update(dropped=[-1]), "'dropped'"),
        (lambda r: r["ci95"].update(beta=[0.4, 0.3]), "'ci95.beta'"),
        (lambda r: r["standard_errors"].pop("A"), "'standard_errors.A' is missing"),
        (lambda r: r.update(standard_errors=None), "'standard_errors'"),
        (lambda r: r["bootstrap"].update(E=[1.0]), "'bootstrap'"),
        (lambda r: r.update(fitted_range={"n_params": [2e9, 1e9], "n_tokens": [1.0, 2.0]}),
         "'fitted_range.n_params' must be"),
        (lambda r: r.update(fitted_range=[1, 2]), "'fitted_range' must be an object"),
    ],
)
def test_read_fit_json_names_the_bad_field(small_fit, tmp_path, edit, field):
    record = small_fit.to_record()
    edit(record)
    path = tmp_path / "FIT.json"
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=field):
        read_fit_json(path)


def test_read_fit_json_without_bootstrap(tmp_path):
    record = {k: float(getattr(TRUE_LAW, k)) for k in COEFFICIENTS}
    record.update(
        standard_errors=None,
        ci95=None,
        n_runs=10,
        dropped=[],
        huber_delta=1e-3,
        n_starts=1,
        n_bootstrap=0,
        objective=0.0,
    )
    path = tmp_path / "FIT.json"
    path.write_text(json.dumps(record))
    assert float(read_fit_json(path).beta) == float(TRUE_LAW.beta)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_fit_json(path)


def test_read_runs_columns_and_errors(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("n_params,n_tokens,loss,extra\n1e8,2e9,3.1,x\n2e9,4e10,2.4,y\n")
    runs = read_runs(path)
    np.testing.assert_array_equal(runs.n_tokens, [2e9, 4e10])
    path.write_text("Parameters,Training FLOP,Loss\n1e8,1.2e18,3.1\n")
    np.testing.assert_allclose(read_runs(path).n_tokens, [2e9], rtol=1e-15)
    path.write_text("Parameters,Loss\n1e8,3.1\n")
    with pytest.raises(ValueError, match="no n_tokens column"):
        read_runs(path)
    path.write_text("n_params,n_tokens\n1e8,2e9\n")
    with pytest.raises(ValueError, match="no loss column"):
        read_runs(path)
    path.write_text("n_params,n_tokens,loss\n1e8,2e9,\n")
    with pytest.raises(ValueError, match=r"row 1 \(line 2\): column 'loss' is empty"):
        read_runs(path)


def test_read_runs_names_the_row_and_line_of_every_bad_cell(tmp_path):
    path = tmp_path / "runs.csv"
    # a blank line: data row 3 is on line 5
    path.write_text("n_params,n_tokens,loss\n1e8,2e9,3.1\n2e9,abc,2.4\n\n-5,4e10,inf\n")
    with pytest.raises(ValueError) as info:
        read_runs(path)
    message = str(info.value)
    assert "row 2 (line 3): column 'n_tokens' is not a number ('abc')" in message
    assert "row 3 (line 5): column 'n_params' must be a finite number > 0 ('-5')" in message
    assert "row 3 (line 5): column 'loss' must be a finite number > 0 ('inf')" in message
    path.write_text("n_params;n_tokens;loss\n1e8;2e9;3.1\n")
    with pytest.raises(ValueError, match="semicolon-separated"):
        read_runs(path)
    path.write_text("n_params,n_tokens,loss\n1e8,2e9\n")
    with pytest.raises(ValueError, match="line 2 has 2 fields, the header has 3"):
        read_runs(path)


def test_fit_in_batches_reports_progress_and_records_the_fitted_range(small_fit, synthetic):
    n, d, losses = (np.asarray(x) for x in synthetic)
    n = np.insert(n, [4, 17], [1e9, 2e9])
    d = np.insert(d, [4, 17], [2e10, 4e10])
    loss = np.insert(losses[0], [4, 17], [9.0, 8.0])
    calls = []
    batched = fit(n, d, loss, drop_highest_loss=2, starts=SMALL_STARTS, n_bootstrap=20,
                  bootstrap_batch=7, on_progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, 20), (7, 20), (14, 20), (20, 20)]
    # each resample is refitted alone: only its batch's size may move its last bits
    for name in COEFFICIENTS:
        np.testing.assert_allclose(batched.bootstrap_coefficients()[name],
                                   small_fit.bootstrap_coefficients()[name], rtol=1e-6)
    kept = np.ones(n.size, dtype=bool)
    kept[list(small_fit.dropped)] = False
    record = small_fit.to_record()
    assert record["fitted_range"] == {"n_params": [n[kept].min(), n[kept].max()],
                                      "n_tokens": [d[kept].min(), d[kept].max()]}
    with pytest.raises(ValueError, match="bootstrap_batch must be >= 1"):
        fit(n, d, loss, starts=SMALL_STARTS, n_bootstrap=4, bootstrap_batch=0)
