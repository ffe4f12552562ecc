"""Repeated sampling: estimators, Beta mixtures, coverage law, n@k, success link and the stage.

Oracles: exact binomials (math.comb), numerical integration (scipy.integrate.quad), Monte
Carlo, high-precision Beta functions (mpmath), least-squares refits (scipy.optimize) of the
published points (Chen et al. 2021, Table 1; Li et al. 2022), Beta-binomial tails
(scipy.stats.betabinom) and the regularised incomplete Beta function (scipy.special.betainc)
for majority voting, hand computations of the verifier's FLOP, and finite differences for
every gradient. The special functions
underneath (ψ, ψ' and differences of log Γ) are checked against mpmath at 40 digits, always
under `jit`, which is where XLA gets to rearrange them.
"""

import functools
import itertools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import integrate, optimize, special, stats

from planner import Allocation, Chinchilla, Outcome, Pipeline, Pretraining, Pruning, Scenario, solve
from planner._techniques.sampling import (
    BetaSuccess,
    CoverageLaw,
    FilteredSampling,
    RepeatedSampling,
    SuccessLink,
    _beta_log_failure,
    _digamma,
    _lgamma_diff,
    _log_shift,
    _trigamma,
    codex_code_loss,
    pass_at_k_unbiased,
    score_log_failure,
)

GRAD_KS = (1.0, 1e6)  # k = 1 exactly and a million samples

# --------------------------------------- published points (Chen et al. 2021; Li et al. 2022)
CODEX_N = np.array([12e9, 2.5e9, 300e6])
CODEX_K = np.array([1.0, 10.0, 100.0])
CODEX_PASS = np.array(
    [[28.81, 46.81, 72.31], [21.36, 35.42, 59.50], [13.17, 20.37, 36.27]]
) / 100.0
ALPHACODE_K = np.array([1e3, 1e4, 1e5, 1e6])
ALPHACODE_9B = np.array([16.9, 22.6, 27.1, 30.1]) / 100.0
ALPHACODE_41B = np.array([16.9, 23.9, 28.2, 31.8]) / 100.0


def _np_beta_pass(alpha, beta, k):
    return 1.0 - np.exp(special.betaln(alpha, beta + k) - special.betaln(alpha, beta))


# ------------------------------------------------------------------------ unbiased estimator
@pytest.mark.parametrize(
    "n, c, k, expected, tol",
    [
        (10, 2, 1, 0.2, 1e-12),
        (10, 2, 5, 0.777778, 5e-7),
        (200, 10, 1, 0.05, 1e-12),
        (200, 10, 10, 0.408548, 5e-7),
        (200, 10, 100, 0.999229, 5e-7),
    ],
)
def test_unbiased_oracles(n, c, k, expected, tol):
    assert float(pass_at_k_unbiased(n, c, k)) == pytest.approx(expected, abs=tol)


def test_unbiased_matches_exact_binomials_under_jit_and_vmap():
    rng = np.random.default_rng(1)
    n = rng.integers(1, 600, size=200)
    c = np.array([rng.integers(0, m + 1) for m in n])
    k = np.array([rng.integers(1, m + 1) for m in n])
    exact = np.array([1.0 - math.comb(m - j, i) / math.comb(m, i) for m, j, i in zip(n, c, k)])
    got = jax.jit(jax.vmap(pass_at_k_unbiased))(jnp.asarray(n), jnp.asarray(c), jnp.asarray(k))
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(got, exact, rtol=1e-11, atol=1e-14)
    # n - c < k: certain success
    assert float(pass_at_k_unbiased(10, 8, 3)) == 1.0
    # the product form as printed in the Codex paper
    for m, j, i in zip(n[:20], c[:20], k[:20]):
        product = 1.0 - np.prod(1.0 - i / np.arange(m - j + 1, m + 1)) if m - j >= i else 1.0
        estimate = float(pass_at_k_unbiased(int(m), int(j), int(i)))
        assert estimate == pytest.approx(product, abs=1e-12)


def test_unbiased_float32():
    got = pass_at_k_unbiased(jnp.float32(200), jnp.float32(10), jnp.float32(10))
    assert got.dtype == jnp.float32
    assert float(got) == pytest.approx(0.408548, abs=1e-5)


# --------------------------------------------------------------- ψ, ψ' and log Γ differences
PSI_ZERO = 1.4616321449683622  # the float64 nearest ψ's positive zero
PSI_GRID = np.concatenate([
    np.logspace(-12, 8, 1001),
    np.linspace(1.0, 2.0, 201),
    # next to the zero, and on both sides of the float64 and float32 Taylor bands around it
    PSI_ZERO + np.array([-1e-9, -4e-16, -2e-16, 0.0, 2e-16, 4e-16, 1e-9]),
    PSI_ZERO + np.array([-0.5, -0.2, 0.2, 0.5])[:, None] * (1.0 + np.array([-1e-9, 1e-9])),
], axis=None)


def _mp(f, *columns):
    with mpmath.workdps(40):
        return np.array([float(f(*map(mpmath.mpf, map(float, row)))) for row in zip(*columns)])


def _mp_trigamma(x):
    return mpmath.polygamma(1, x)


def test_digamma_and_trigamma_against_mpmath():
    x = PSI_GRID
    np.testing.assert_allclose(jax.jit(_digamma)(x), _mp(mpmath.digamma, x), rtol=1e-14, atol=0)
    np.testing.assert_allclose(jax.jit(_trigamma)(x), _mp(_mp_trigamma, x), rtol=2e-15, atol=0)


def test_digamma_and_trigamma_float32():
    x = PSI_GRID.astype(np.float32)
    psi, psi1 = jax.jit(_digamma)(x), jax.jit(_trigamma)(x)
    assert psi.dtype == psi1.dtype == jnp.float32
    exact = x.astype(np.float64)  # the oracle at the float32 inputs themselves
    np.testing.assert_allclose(psi, _mp(mpmath.digamma, exact), rtol=1.2e-6, atol=0)
    np.testing.assert_allclose(psi1, _mp(_mp_trigamma, exact), rtol=5e-7, atol=0)


def test_digamma_derivatives():
    x = jnp.array([0.3, PSI_ZERO, 7.0, 300.0])
    np.testing.assert_allclose(jax.vmap(jax.grad(_digamma))(x), _trigamma(x), rtol=1e-15)
    check_grads(_digamma, (x,), order=2, modes=["fwd", "rev"])
    check_grads(_trigamma, (x,), order=1, modes=["fwd", "rev"])


@pytest.mark.parametrize("x", [1e-12, 1.0, 1e6])
@pytest.mark.parametrize("a", [1e-6, 0.3, 5.0])
def test_lgamma_diff_and_derivatives_against_mpmath(x, a):
    # log Γ(x) - log Γ(x + a); gradient ψ(x) - ψ(x + a), -ψ(x + a); Hessian from ψ'
    def closed_forms(x, a):
        xa = x + a
        return [mpmath.loggamma(x) - mpmath.loggamma(xa), mpmath.digamma(x) - mpmath.digamma(xa),
                -mpmath.digamma(xa), mpmath.polygamma(1, x) - mpmath.polygamma(1, xa),
                -mpmath.polygamma(1, xa)]

    with mpmath.workdps(40):
        value, dx, da, dxx, daa = (float(v) for v in closed_forms(mpmath.mpf(x), mpmath.mpf(a)))

    def f(xa):
        return _lgamma_diff(xa[0], xa[1])

    xa = jnp.array([x, a])
    assert float(jax.jit(f)(xa)) == pytest.approx(value, rel=1e-14)
    np.testing.assert_allclose(jax.jit(jax.grad(f))(xa), [dx, da], rtol=1e-14)
    np.testing.assert_allclose(jax.jit(jax.hessian(f))(xa), [[dxx, daa], [daa, daa]], rtol=1e-14)


def test_beta_log_failure_hessian_against_high_precision():
    # what the solver evaluates: full Hessians in (alpha, beta, k), forward over reverse, vmapped
    rng = np.random.default_rng(3)
    alpha = np.concatenate([[0.3, 1e-3, 0.05, 5.0], 10 ** rng.uniform(-3, -0.15, 20)])
    beta = np.concatenate([[2.0, 0.7, 1e-9, 0.5], 10 ** rng.uniform(-3, -0.15, 20)])
    k = np.concatenate([[1.0, 1e4, 37.0, 1e6], 10 ** rng.uniform(0, 4, 20)])

    def exact(a, b, k):
        t = [mpmath.polygamma(1, z) for z in (b + k, a + b + k, b, a + b)]
        h_aa, h_bk = t[3] - t[1], t[0] - t[1]
        return [[h_aa, h_aa, -t[1]], [h_aa, h_bk - t[2] + t[3], h_bk], [-t[1], h_bk, h_bk]]

    with mpmath.workdps(40):
        want = np.array([[[float(v) for v in row] for row in exact(*map(mpmath.mpf, p))]
                         for p in zip(alpha, beta, k)])
    hessian = jax.jit(jax.vmap(jax.hessian(_beta_log_failure, argnums=(0, 1, 2))))
    got = np.moveaxis(np.array(hessian(alpha, beta, k)), 2, 0)
    np.testing.assert_allclose(got, want, rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_shift_is_one_log1p_that_does_not_overflow(dtype):
    # Σ_{i<10} log1p(a/(x + i)) as log1p of a product, across x >= 1e-12 and a <= 1e6
    x = np.array([1e-12, 1e-12, 1e-12, 1.0, 1.0, 37.5, 1e6, 1e8], dtype)
    a = np.array([1e6, 1.0, 1e-12, 1e6, 1e-6, 0.3, 5.0, 1e-6], dtype)
    got = jax.jit(_log_shift)(x, a)
    assert got.dtype == dtype and bool(jnp.all(jnp.isfinite(got)))
    want = _mp(lambda x, a: mpmath.fsum(mpmath.log1p(a / (x + i)) for i in range(10)), x, a)
    np.testing.assert_allclose(got, want, rtol=2e-15 if dtype == np.float64 else 1e-6)
    # far past that range a product overflows and is clamped; log Γ(x) - log Γ(x + a) stays
    # finite and right, the shift being a vanishing part of it
    big = np.array([1e12, 1e30, 1e30 if dtype == np.float32 else 1e300], dtype)
    tiny = np.full(3, 1e-12, dtype)
    got = jax.jit(_lgamma_diff)(tiny, big)
    want = _mp(lambda x, a: mpmath.loggamma(x) - mpmath.loggamma(x + a), tiny, big)
    np.testing.assert_allclose(got, want, rtol=1e-15 if dtype == np.float64 else 1e-6)


# --------------------------------------------------------------------------- Beta mixtures
@pytest.mark.parametrize("alpha, beta", [(0.3, 2.0), (0.05, 0.4), (2.5, 7.0), (0.8, 40.0)])
@pytest.mark.parametrize("k", [1.0, 2.5, 10.0, 300.0])
def test_beta_pass_at_k_against_quadrature(alpha, beta, k):
    # E[(1-p)^k] under Beta(alpha, beta); for alpha < 1 substitute p = u^(1/alpha) so that the
    # integrable singularity at 0 becomes smooth, else break the range at the integrand's peak
    if alpha < 1:
        def integrand(u):
            return (1.0 - u ** (1.0 / alpha)) ** (beta + k - 1.0) / alpha

        points = None
    else:
        def integrand(p):
            return p ** (alpha - 1.0) * (1.0 - p) ** (beta + k - 1.0)

        peak = (alpha - 1.0) / (alpha + beta + k - 2.0)
        points = [peak, min(0.5, 10.0 * peak + 1e-3)]
    value, _ = integrate.quad(integrand, 0.0, 1.0, points=points, limit=400, epsabs=0.0,
                              epsrel=1e-12)
    failure = value / special.beta(alpha, beta)
    got = BetaSuccess(alpha, beta)(k)
    np.testing.assert_allclose(1.0 - got, failure, rtol=1e-9)


def test_beta_pass_at_k_against_monte_carlo():
    rng = np.random.default_rng(2)
    alpha, beta = 0.4, 3.0
    p = rng.beta(alpha, beta, size=400_000)
    model = BetaSuccess(alpha, beta)
    for k in (1.0, 5.0, 50.0, 5000.0):
        solved = 1.0 - (1.0 - p) ** k
        err = solved.std() / np.sqrt(p.size)
        assert abs(float(model(k)) - solved.mean()) < 4.0 * err


def test_beta_log_failure_against_high_precision():
    mpmath.mp.dps = 40
    for alpha, beta, k in [(0.3, 2.0, 1.0), (0.1, 0.5, 1e6), (3.0, 5.0, 7.9), (0.7, 12.0, 1e3),
                           (5.0, 0.5, 1e9), (1e-3, 1e-2, 1.0)]:
        a, b, kk = (mpmath.mpf(v) for v in (alpha, beta, k))
        exact = mpmath.log(mpmath.beta(a, b + kk) / mpmath.beta(a, b))
        got = BetaSuccess(alpha, beta).log_failure(k)
        # beta + k is rounded to float64 inside; its error times digamma bounds the tolerance
        assert float(got) == pytest.approx(float(exact), rel=1e-13, abs=alpha * 1e-15 * k / beta)


def test_beta_power_law_tail():
    model = BetaSuccess(0.35, 2.0)
    k = jnp.array([1e4, 1e6, 1e8])
    failure = jnp.exp(model.log_failure(k))
    ratio = failure / model.tail(k)
    np.testing.assert_allclose(ratio, 1.0, atol=1e-3)
    assert float(abs(ratio[2] - 1.0)) < float(abs(ratio[0] - 1.0))
    # local log-log slope tends to -alpha
    slope = jax.grad(lambda logk: model.log_failure(jnp.exp(logk)))(jnp.log(1e8))
    assert float(slope) == pytest.approx(-0.35, abs=1e-6)


def test_beta_log_failure_keeps_precision_near_certainty():
    # failure ~ 1e-29: 1 - score rounds to 0, its logarithm does not
    model = BetaSuccess(5.0, 0.5)
    assert float(model.pass_at_k(1e6)) == 1.0
    lf = float(model.log_failure(1e6))
    assert lf == pytest.approx(float(jnp.log(model.tail(1e6))), rel=1e-5)
    assert np.isfinite(lf) and lf < -60


# ----------------------------------------------------------------------------- coverage law
def test_coverage_presets_reproduce_their_points_exactly():
    swe = CoverageLaw.brown2024_swebench_lite()
    np.testing.assert_allclose(swe(jnp.array([1.0, 250.0])), [0.159, 0.56], rtol=1e-13)
    math_ = CoverageLaw.brown2024_math()
    np.testing.assert_allclose(math_(jnp.array([100.0, 10_000.0])), [0.829, 0.9844], rtol=1e-13)
    for law in (swe, math_):
        assert float(law.a) < 0 and float(law.b) < 0


def test_coverage_closed_form_is_the_log_log_line():
    # log(-log c) = log(-a) + b log k: a straight line through the two points
    for (k1, c1, k2, c2), law in [
        ((1.0, 0.159, 250.0, 0.56), CoverageLaw.brown2024_swebench_lite()),
        ((100.0, 0.829, 1e4, 0.9844), CoverageLaw.brown2024_math()),
    ]:
        slope, intercept = np.polyfit(np.log([k1, k2]), np.log(-np.log([c1, c2])), 1)
        assert float(law.b) == pytest.approx(slope, rel=1e-12)
        assert float(law.a) == pytest.approx(-np.exp(intercept), rel=1e-12)
    law = CoverageLaw.brown2024_math()
    k = jnp.array([1.0, 1e3, 1e6])
    np.testing.assert_allclose(law.log_failure(k), np.log1p(-np.asarray(law.coverage(k))),
                               rtol=1e-9)


def test_coverage_is_monotone_and_tends_to_one():
    law = CoverageLaw.brown2024_swebench_lite()
    c = law(jnp.logspace(0, 12, 49))
    assert bool(jnp.all(jnp.diff(c) > 0)) and float(c[-1]) > 0.99


# ------------------------------------------------------------------ n@k with an imperfect filter
def _fit_alphacode():
    def model(la, lb, lq, k):
        a, b = np.exp(la), np.exp(lb)
        return special.expit(lq) * _np_beta_pass(a, b, k)

    def residuals(th):
        return np.concatenate([
            model(th[0], th[1], th[4], ALPHACODE_K) - ALPHACODE_9B,
            model(th[2], th[3], th[4], ALPHACODE_K) - ALPHACODE_41B,
        ])

    best = None
    for la, lb, lq in itertools.product((-4.0, -2.0, 0.0), (0.0, 3.0, 6.0, 9.0), (-2.0, 0.0, 2.0)):
        with np.errstate(all="ignore"):  # far starts overflow on the way in
            fit = optimize.least_squares(residuals, [la, lb, la, lb, lq], method="lm",
                                         xtol=1e-15, ftol=1e-15, gtol=1e-15)
        if best is None or fit.cost < best.cost:
            best = fit
    # Levenberg-Marquardt stops on its step size in this cost's flat valley (the Hessian's
    # eigenvalues span 3e-5 to 0.26), up to 1e-3 from the minimum in beta: Newton steps with
    # the exact Hessian of the same cost (a jax.scipy transcription of the residuals) finish it,
    # converging quadratically.
    def cost(th):
        def model(la, lb):
            a, b = jnp.exp(la), jnp.exp(lb)
            return jax.scipy.special.expit(th[4]) * -jnp.expm1(
                jax.scipy.special.betaln(a, b + ALPHACODE_K) - jax.scipy.special.betaln(a, b))
        r = jnp.concatenate([model(th[0], th[1]) - ALPHACODE_9B, model(th[2], th[3])
                             - ALPHACODE_41B])
        return 0.5 * jnp.sum(r * r)

    grad, hess = jax.jit(jax.grad(cost)), jax.jit(jax.hessian(cost))
    theta = jnp.asarray(best.x)
    for _ in range(20):
        step = -jnp.linalg.solve(hess(theta), grad(theta))
        theta = theta + step
        if float(jnp.max(jnp.abs(step))) < 1e-13:
            break
    assert float(jnp.max(jnp.abs(step))) < 1e-13 and float(cost(theta)) <= best.cost
    assert bool(jnp.all(jnp.linalg.eigvalsh(hess(theta)) > 0))
    theta = np.asarray(theta)
    return np.exp(theta[:4]), special.expit(theta[4])


def test_alphacode_presets_are_the_least_squares_fit():
    (a9, b9, a41, b41), q = _fit_alphacode()
    nine, big = FilteredSampling.alphacode2022_9b(), FilteredSampling.alphacode2022_41b()
    np.testing.assert_allclose(
        [nine.success.alpha, nine.success.beta, big.success.alpha, big.success.beta, nine.plateau],
        [a9, b9, a41, b41, q], rtol=1e-8)
    assert float(big.plateau) == float(nine.plateau)


def test_alphacode_points_within_stated_error():
    k = jnp.asarray(ALPHACODE_K)
    miss = np.concatenate([
        np.asarray(FilteredSampling.alphacode2022_9b()(k)) - ALPHACODE_9B,
        np.asarray(FilteredSampling.alphacode2022_41b()(k)) - ALPHACODE_41B,
    ]) * 100.0
    assert np.abs(miss).max() < 0.24  # stated in the docstring
    assert np.abs(miss).max() > 0.23  # and not loosely: the largest miss is 0.238
    assert int(np.abs(miss).argmax()) == 6  # 41B at k = 1e5


def test_alphacode_needs_the_plateau():
    # with a perfect filter (q = 1) the best Beta fit misses by over half a point
    def residuals(th):
        return _np_beta_pass(np.exp(th[0]), np.exp(th[1]), ALPHACODE_K) - ALPHACODE_41B

    fit = optimize.least_squares(residuals, [-2.0, 5.0], method="lm")
    assert np.abs(fit.fun).max() * 100 > 0.5


def test_filtered_plateau_and_log_failure():
    model = FilteredSampling.alphacode2022_9b()
    q = float(model.plateau)
    assert float(model(1e30)) == pytest.approx(q, rel=1e-3)
    k = jnp.array([1.0, 1e3, 1e6])
    np.testing.assert_allclose(model.log_failure(k), np.log1p(-np.asarray(model.n_at_k(k))),
                               rtol=1e-12)
    # q = 1 is pass@k
    perfect = FilteredSampling(model.success, 1.0)
    np.testing.assert_allclose(perfect.log_failure(k), model.success.log_failure(k), rtol=1e-14)


# -------------------------------------------------------------------------------- success link
def test_codex_code_loss_law():
    n = jnp.array([12e9, 2.5e9, 300e6])
    np.testing.assert_allclose(codex_code_loss(n), (CODEX_N / 5.92e7) ** -0.13, rtol=1e-14)
    assert float(codex_code_loss(5.92e7)) == pytest.approx(1.0)


def _codex_model(th):
    reducible = (CODEX_N / 5.92e7) ** -0.13
    z = th[0] + th[1] * np.log(reducible)
    kappa = np.exp(th[2])
    alpha, beta = kappa * special.expit(z), kappa * special.expit(-z)
    return _np_beta_pass(alpha[:, None], beta[:, None], CODEX_K[None, :])


def test_codex_link_is_the_least_squares_fit():
    best = None
    for start in itertools.product((-4.0, -1.0, 2.0), (-8.0, -3.0, 0.0, 3.0), (-2.0, 0.0, 2.0)):
        with np.errstate(all="ignore"):
            try:
                fit = optimize.least_squares(lambda th: (_codex_model(th) - CODEX_PASS).ravel(),
                                             start, method="lm", xtol=1e-15, ftol=1e-15,
                                             gtol=1e-15)
            except ValueError:  # a start that overflows before the first step
                continue
        if np.isfinite(fit.cost) and (best is None or fit.cost < best.cost):
            best = fit
    link = SuccessLink.codex2021()
    stored = [float(link.intercept), float(link.slope), float(np.log(link.concentration))]
    np.testing.assert_allclose(stored, best.x, rtol=1e-6)
    stored_cost = 0.5 * np.sum((_codex_model(np.array(stored)) - CODEX_PASS) ** 2)
    assert stored_cost == pytest.approx(best.cost, rel=1e-9)


def test_codex_points_within_stated_error():
    link = SuccessLink.codex2021()
    reducible = codex_code_loss(jnp.asarray(CODEX_N))[:, None]
    got = np.asarray(link(reducible, jnp.asarray(CODEX_K)[None, :]))
    miss = (got - CODEX_PASS) * 100.0
    assert np.abs(miss).max() < 5.6  # stated in the docstring
    assert np.abs(miss).max() > 5.5
    assert np.unravel_index(np.abs(miss).argmax(), miss.shape) == (0, 1)  # 12B pass@10
    # pass@1 is the mean success
    np.testing.assert_allclose(got[:, 0], link.mean(reducible[:, 0]), rtol=1e-12)


def test_link_monotone_in_loss_and_samples():
    link = SuccessLink.codex2021()
    loss = jnp.linspace(0.2, 1.5, 27)
    assert bool(jnp.all(jnp.diff(link(loss, 10.0)) < 0))
    k = jnp.logspace(0, 6, 25)
    assert bool(jnp.all(jnp.diff(link(0.6, k)) > 0))


# ----------------------------------------------------------------------------------- gradients
def test_gradients_of_every_law():
    # one function of every law's constants, evaluated at k = 1 exactly and k = 1e6 at once,
    # so that one second-order check (forward and reverse) covers them all; pass@k and n@k are
    # -expm1 of (and q times) what is checked, the stage test below covers them too
    def laws(beta_law, coverage, link, filtered, ks):
        out = [BetaSuccess(*beta_law).log_failure(ks)]
        law = CoverageLaw(*coverage)
        out += [law.log_failure(ks), law.coverage(ks)]
        theta0, theta1, kappa, reducible = link
        out += [SuccessLink(theta0, theta1, kappa).pass_at_k(reducible, ks)]
        alpha, beta, q = filtered
        out += [FilteredSampling(BetaSuccess(alpha, beta), q).log_failure(ks)]
        return jnp.stack(out)

    swe = CoverageLaw.brown2024_swebench_lite()
    codex = SuccessLink.codex2021()
    args = (
        jnp.array([0.3, 2.0]),
        jnp.stack([swe.a, swe.b]),
        jnp.stack([codex.intercept, codex.slope, codex.concentration, jnp.asarray(0.6)]),
        jnp.array([0.13, 14.8, 0.39]),
        jnp.array(GRAD_KS),
    )
    assert bool(jnp.all(jnp.isfinite(laws(*args))))
    check_grads(laws, args, order=2, modes=["fwd", "rev"])


# ------------------------------------------------------------------------ batches, tracing
def test_loop_vmap_jit_agree_on_a_batch_of_links():
    theta0 = jnp.array([-2.6, -1.0, 0.5, -3.0])
    theta1 = jnp.array([-2.4, -1.5, -3.0, -0.5])
    kappa = jnp.array([0.7, 2.0, 0.2, 10.0])
    reducible = jnp.array([0.5, 0.3, 0.9, 0.4])
    k = jnp.array([1.0, 37.5, 1e6, 250.0])

    def f(t0, t1, kap, r, n):
        link = SuccessLink(t0, t1, kap)
        return link.pass_at_k(r, n), link.log_failure(r, n)

    loop = [f(theta0[i], theta1[i], kappa[i], reducible[i], k[i]) for i in range(4)]
    vm = jax.vmap(f)(theta0, theta1, kappa, reducible, k)
    jt = jax.jit(jax.vmap(f))(theta0, theta1, kappa, reducible, k)
    for j in range(2):
        np.testing.assert_allclose(vm[j], [r[j] for r in loop], rtol=1e-13)
        np.testing.assert_allclose(jt[j], vm[j], rtol=1e-13)
    # a vmapped batch of links built from arrays equals each link built alone
    links = jax.vmap(SuccessLink)(theta0, theta1, kappa)
    np.testing.assert_allclose(jax.vmap(lambda lk, r, n: lk(r, n))(links, reducible, k), vm[0],
                               rtol=1e-13)


def _pipeline(selection="verifier", plateau=1.0, link=None):
    link = SuccessLink.codex2021() if link is None else link
    return Pipeline(Pretraining(Chinchilla.sardana2024()),
                    RepeatedSampling(link, plateau=plateau, selection=selection))


def test_new_numbers_do_not_recompile():
    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def run(model, allocation):
        out = model(allocation)
        return out.score, out.inference_flops_per_unit, score_log_failure(model, allocation)

    run(_pipeline("filter", 0.4), Allocation(7e9, 1.4e11, n_samples=10.0))
    run(_pipeline("filter", 0.6, SuccessLink(-1.0, -2.0, 3.0)), Allocation(1e9, 2e10, 1.0, 1e6))
    run(_pipeline("filter", 0.5), Allocation(3e10, 6e11, 1.0, 1.0))


# ------------------------------------------------------------------------------------ the stage
def test_stage_in_a_pipeline():
    law = Chinchilla.sardana2024()
    plain = Pipeline(Pretraining(law))
    model = _pipeline()
    base = plain(Allocation(7e9, 1.4e11))
    for k in (1.0, 10.0, 1e3, 1e6):
        out = model(Allocation(7e9, 1.4e11, n_samples=k))
        assert float(out.inference_flops_per_unit) == pytest.approx(
            k * float(base.inference_flops_per_unit), rel=1e-14)
        assert float(out.train_flops) == float(base.train_flops)
        assert float(out.loss) == float(base.loss)
        reducible = float(base.loss - base.irreducible_loss)
        expected = float(SuccessLink.codex2021()(reducible, k))
        assert float(out.score) == pytest.approx(expected, rel=1e-14)

    scores_k = jax.vmap(lambda k: model(Allocation(7e9, 1.4e11, n_samples=k)).score)(
        jnp.logspace(0, 6, 13))
    assert bool(jnp.all(jnp.diff(scores_k) > 0))
    # larger models at 20 tokens per parameter: lower loss, higher score at every k
    n = jnp.logspace(8, 12, 9)
    outs = jax.vmap(lambda n: model(Allocation(n, 20.0 * n, n_samples=100.0)))(n)
    assert bool(jnp.all(jnp.diff(outs.loss) < 0)) and bool(jnp.all(jnp.diff(outs.score) > 0))
    assert model.variables == ("n_params", "n_tokens", "n_samples")


def test_filter_selection_plateaus():
    q = 0.39
    model = _pipeline("filter", q)
    verifier = _pipeline()
    for k in (1.0, 100.0, 1e6):
        a = Allocation(7e9, 1.4e11, n_samples=k)
        assert float(model(a).score) == pytest.approx(q * float(verifier(a).score), rel=1e-14)
    assert float(model(Allocation(7e10, 1.4e12, n_samples=1e12)).score) < q
    with pytest.raises(ValueError, match="selection"):
        RepeatedSampling(SuccessLink.codex2021(), selection="plurality")


def test_log_failure_of_the_stage():
    for selection in ("verifier", "filter"):
        model = _pipeline(selection, 0.39)
        a = Allocation(7e9, 1.4e11, n_samples=300.0)
        lf = score_log_failure(model, a)
        assert float(lf) == pytest.approx(float(jnp.log1p(-model(a).score)), rel=1e-12)
    # near certainty: log1p(-score) is -inf, the stage's log-failure is not
    sure = _pipeline(link=SuccessLink(8.0, -1.0, 50.0))
    a = Allocation(7e10, 1.4e12, n_samples=1e6)
    assert float(sure(a).score) == 1.0
    assert np.isfinite(float(score_log_failure(sure, a)))
    with pytest.raises(ValueError, match="RepeatedSampling"):
        score_log_failure(Pipeline(Pretraining(Chinchilla.sardana2024())), a)


def test_stage_gradients():
    verifier, filtered = _pipeline(), _pipeline("filter", 0.39)

    def f(log_n, log_d, ks):
        # n_samples at k = 1 exactly and 1e6, in raw units (not log): the solver's variable
        a = Allocation(jnp.exp(log_n), jnp.exp(log_d), 1.0, ks)
        out_v, out_f = verifier(a), filtered(a)
        return jnp.stack([out_v.score, out_f.score, jnp.log(out_v.inference_flops_per_unit),
                          score_log_failure(verifier, a), score_log_failure(filtered, a)])

    args = (jnp.log(7e9), jnp.log(1.4e11), jnp.array(GRAD_KS))
    assert bool(jnp.all(jnp.isfinite(f(*args))))
    check_grads(f, args, order=2, modes=["fwd", "rev"])


def test_stage_never_raises_and_stays_finite():
    model = _pipeline("filter", 0.39)
    law = Chinchilla.sardana2024()

    def f(k, n):
        return model(Allocation(n, 20.0 * n, 1.0, k)).score

    for k, n in [(0.0, 7e9), (-3.0, 7e9), (1e12, 7e9), (1.0, 1e30), (1e6, 1e-3)]:
        value, grads = jax.value_and_grad(f, argnums=(0, 1))(k, n)
        assert all(bool(jnp.isfinite(v)) for v in (value, *grads)), (k, n)
    # a loss at its floor (reducible loss 0) is clamped, not log(0)
    at_floor = RepeatedSampling(SuccessLink.codex2021())
    out = at_floor(Allocation(1.0, 1.0, 1.0, 10.0),
                   Outcome(1.0, 1.0, law.irreducible, law.irreducible))
    assert bool(jnp.isfinite(out.score))


def test_float32_stage():
    link = SuccessLink(*(jnp.float32(v) for v in (-2.649630035, -2.403433021, 0.7252569787)))
    for k in (1.0, 1e6):
        got = link.pass_at_k(jnp.float32(0.6), jnp.float32(k))
        assert got.dtype == jnp.float32
        want = SuccessLink.codex2021().pass_at_k(0.6, k)
        assert float(got) == pytest.approx(float(want), rel=2e-5)
    assert BetaSuccess(jnp.float32(0.3), jnp.float32(2.0))(jnp.float32(1e6)).dtype == jnp.float32


# ---------------------------------------------------------------------------- domain checks
def test_checked_functions_raise_for_k_below_one_under_jit_and_vmap():
    swe = CoverageLaw.brown2024_swebench_lite()
    checked = {
        "beta": lambda k: BetaSuccess(0.3, 2.0)(k),
        "coverage": lambda k: swe(k),
        "link": lambda k: SuccessLink.codex2021()(0.6, k),
        "filtered": lambda k: FilteredSampling.alphacode2022_9b()(k),
        "unbiased": lambda k: pass_at_k_unbiased(100.0, 5.0, k),
    }
    ks = jnp.array([3.0, 0.5])
    for name, f in checked.items():
        assert bool(jnp.isfinite(jax.jit(f)(2.0))), name
        with pytest.raises(Exception, match="must be >= 1"):
            jax.jit(f)(0.5)
        with pytest.raises(Exception, match="must be >= 1"):
            jax.jit(jax.vmap(f))(ks)


def test_other_domain_checks():
    f = jax.jit(pass_at_k_unbiased)
    with pytest.raises(Exception, match="n_correct must be <= n_generated"):
        f(10, 11, 1)
    with pytest.raises(Exception, match="k must be <= n_generated"):
        f(10, 2, 11)
    with pytest.raises(Exception, match="n_generated must be an integer"):
        f(10.5, 2.0, 1.0)
    with pytest.raises(Exception, match="reducible_loss must be > 0"):
        jax.jit(lambda r: SuccessLink.codex2021()(r, 10.0))(0.0)
    with pytest.raises(Exception, match="plateau must lie in"):
        jax.jit(lambda q: FilteredSampling(BetaSuccess(0.3, 2.0), q)(10.0))(1.5)
    with pytest.raises(Exception, match="alpha must be > 0"):
        jax.jit(lambda a: BetaSuccess(a, 2.0)(10.0))(-0.1)
    with pytest.raises(Exception, match="b must be < 0"):
        jax.jit(lambda b: CoverageLaw(-1.0, b)(10.0))(0.2)
    with pytest.raises(Exception, match="coverage2 must lie in"):
        CoverageLaw.from_points(1.0, 0.5, 10.0, 0.4)


# ------------------------------------------------- the selection rules and the verifier's compute
LAW = Chinchilla.sardana2024()
# (alpha, beta): the Codex link's shape (kappa 0.73, U-shaped), a skewed one, one with most mass
# above 1/2, and a concentrated one (alpha + beta = 10, the range the docstring states)
MAJORITY_BETAS = [(0.19, 0.54), (0.05, 0.4), (0.8, 0.3), (2.5, 7.0), (6.0, 4.0)]


def _sampler(selection="verifier", **fields):
    return RepeatedSampling(SuccessLink.codex2021(), selection=selection, **fields)


def test_verifier_flops_are_the_generators_plus_the_verifiers():
    """Per token: (2 N rho + 2 N_v) k, the verifier not pruned; N_v = 0 is today's k IC
    bit for bit; with tokens_per_query T every one of the T tokens is scored."""
    n, d, nv = 7e9, 1.4e11, 1.3e9
    for density in (1.0, 0.37):
        for k in (1.0, 12.5, 1e4):
            a = Allocation(n, d, density, k)
            model = Pipeline(Pretraining(LAW), Pruning(LAW), _sampler(verifier_params=nv))
            assert float(model(a).inference_flops_per_unit) == (2.0 * n * density + 2.0 * nv) * k
            free = Pipeline(Pretraining(LAW), Pruning(LAW), _sampler())
            bare = Pipeline(Pretraining(LAW), Pruning(LAW))(a)
            assert float(free(a).inference_flops_per_unit) == float(
                bare.inference_flops_per_unit) * k
            tokens = 250.0
            per_query = Pipeline(Pretraining(LAW, tokens_per_query=tokens), Pruning(LAW),
                                 _sampler(verifier_params=nv))
            assert float(per_query(a).inference_flops_per_unit) == pytest.approx(
                (2.0 * n * density + 2.0 * nv) * tokens * k, rel=4e-16)
    # the verifier costs the same with every selection that may use one
    a = Allocation(n, d, 1.0, 30.0)
    for selection, extra in (("filter", {"plateau": 0.4}),
                             ("reward_model", {"verifier_accuracy": 0.8})):
        model = Pipeline(Pretraining(LAW), _sampler(selection, verifier_params=nv, **extra))
        assert float(model(a).inference_flops_per_unit) == (2.0 * n + 2.0 * nv) * 30.0


def test_solved_plan_costs_exactly_the_generator_plus_the_verifier():
    """A solved plan with its generator pruned to half density (held there: at this demand
    Frantar's sparsity law would not prune) and a verifier: its inference FLOP per token are
    (2 N d + 2 N_v) k from the plan's own N, d, k, and its total adds demand times that."""
    nv, demand, density = 2e9, 3e12, 0.5
    model = Pipeline(Pretraining(LAW), Pruning(LAW), _sampler(verifier_params=nv))
    plan = solve(model, Scenario(target_score=0.4, inference_demand=demand),
                 fixed={"density": density})
    n, k = float(plan.allocation.n_params), float(plan.allocation.n_samples)
    per_token = (2.0 * n * density + 2.0 * nv) * k
    assert float(plan.allocation.density) == density
    assert float(plan.outcome.inference_flops_per_unit) == pytest.approx(per_token, rel=4e-16)
    assert float(plan.total_flops) == pytest.approx(
        float(plan.outcome.train_flops) + demand * per_token, rel=4e-16)
    assert k > 1.0 and float(plan.outcome.score) == pytest.approx(0.4, rel=1e-9)


def test_reward_model_selection_against_its_formula():
    """a pass@k + (1 - a) pass@1, with pass@k from SciPy's Beta functions: the score and its
    log-failure; a = 1 is pass@k exactly, and every a gives pass@1 at k = 1."""
    link = SuccessLink.codex2021()
    reducible = 0.45
    alpha, beta = (float(v) for v in link.beta_params(reducible))
    outcome = Outcome(1.0, 1.0, LAW.irreducible + reducible, LAW.irreducible)
    for a in (1e-3, 0.37, 0.9, 1.0):
        stage = RepeatedSampling(link, selection="reward_model", verifier_accuracy=a)
        for k in (1.0, 3.0, 250.0, 1e6):
            allocation = Allocation(1.0, 1.0, 1.0, k)
            pass_k, pass_1 = _np_beta_pass(alpha, beta, k), alpha / (alpha + beta)
            want = a * pass_k + (1.0 - a) * pass_1
            assert float(stage(allocation, outcome).score) == pytest.approx(want, rel=1e-13)
            log_failure = float(stage.log_failure(allocation, outcome))
            assert log_failure == pytest.approx(math.log1p(-want), rel=1e-12)
        one = Allocation(1.0, 1.0, 1.0, 1.0)
        assert float(stage(one, outcome).score) == pytest.approx(alpha / (alpha + beta),
                                                                  rel=1e-13)
    perfect = RepeatedSampling(link, selection="reward_model", verifier_accuracy=1.0)
    at = Allocation(1.0, 1.0, 1.0, 1e3)
    assert float(perfect.log_failure(at, outcome)) == float(
        RepeatedSampling(link).log_failure(at, outcome))


@pytest.mark.parametrize("alpha, beta", MAJORITY_BETAS)
def test_majority_against_the_beta_binomial(alpha, beta):
    """At odd k, E_p[P(Bin(k, p) > k/2)] = scipy.stats.betabinom.sf(k // 2, k, alpha, beta),
    and at small k also quad of scipy.stats.binom over the Beta density (its endpoint
    singularities as quad's algebraic weight); at even k, between its odd neighbours."""
    success = BetaSuccess(alpha, beta)
    # scipy's Beta-binomial sum itself errs by up to 1.4e-11 at k = 10001 (5,000 terms) and
    # 8e-13 at k = 1001, measured against mpmath at 30 digits, where the quadrature errs
    # by 3e-15 or less
    ks = np.array([1, 3, 5, 9, 25, 101, 1001, 10001])
    tolerance = np.where(ks > 1001, 3e-11, np.where(ks > 101, 2e-12, 1e-13))
    got = np.asarray(success.majority_at_k(jnp.asarray(ks, jnp.float64)))
    want = stats.betabinom.sf(ks // 2, ks, alpha, beta)
    assert np.all(np.abs(got - want) <= tolerance)
    failure = np.exp(np.asarray(success.majority_log_failure(jnp.asarray(ks, jnp.float64))))
    assert np.all(np.abs(failure - (1.0 - want)) <= tolerance)
    assert float(success.majority_at_k(1.0)) == pytest.approx(alpha / (alpha + beta), rel=1e-13)
    for k in (3, 25):
        b = special.beta(alpha, beta)

        def vote(p, k=k):
            return stats.binom.sf(k // 2, k, p)

        low = integrate.quad(lambda p: vote(p) * (1 - p) ** (beta - 1), 0.0, 0.5,
                             weight="alg", wvar=(alpha - 1, 0.0), epsabs=1e-15)[0]
        high = integrate.quad(lambda p: vote(p) * p ** (alpha - 1), 0.5, 1.0,
                              weight="alg", wvar=(0.0, beta - 1), epsabs=1e-15)[0]
        assert float(success.majority_at_k(float(k))) == pytest.approx((low + high) / b,
                                                                        abs=1e-11)
    even = np.array([2.0, 10.0, 100.0])
    mid = np.asarray(success.majority_at_k(jnp.asarray(even)))
    below, above = (stats.betabinom.sf((even + s) // 2, even + s, alpha, beta) for s in (-1, 1))
    assert np.all(np.minimum(below, above) <= mid) and np.all(mid <= np.maximum(below, above))


@pytest.mark.parametrize("alpha, beta", MAJORITY_BETAS)
def test_majority_plateaus_at_the_mass_above_one_half(alpha, beta):
    """`majority_plateau` is 1 - I_{1/2}(alpha, beta) (scipy.special.betainc), and majority
    voting approaches it, the gap shrinking as 1/k; pass@k does not plateau."""
    success = BetaSuccess(alpha, beta)
    plateau = 1.0 - special.betainc(alpha, beta, 0.5)
    assert float(success.majority_plateau()) == pytest.approx(plateau, rel=1e-13, abs=1e-15)
    ks = np.array([1e2, 1e4, 1e6, 1e8])
    gaps = np.abs(np.asarray(success.majority_at_k(jnp.asarray(ks))) - plateau)
    ratios = gaps[1:] / gaps[:-1]
    assert np.all((ratios > 1 / 120) & (ratios < 1 / 80))  # 100x fewer per 100x samples
    assert gaps[-1] * ks[-1] == pytest.approx(gaps[-2] * ks[-2], rel=1e-3)
    assert float(success.pass_at_k(1e8)) > plateau + 0.15


def test_codex_link_majority_plateaus_below_coverage():
    """The Codex link's problems are U-shaped (kappa 0.73): majority voting stays near its
    plateau P(p > 1/2) while pass@k climbs, as Brown et al. 2024 see on MATH (majority near
    40% while coverage reaches 98%)."""
    link = SuccessLink.codex2021()
    success = link.success(0.3)
    plateau = 1.0 - special.betainc(*(float(v) for v in link.beta_params(0.3)), 0.5)
    majority = np.asarray(success.majority_at_k(jnp.array([1.0, 1e2, 1e4])))
    coverage = np.asarray(success.pass_at_k(jnp.array([1.0, 1e2, 1e4])))
    assert np.all(np.abs(majority[1:] - plateau) < 0.01)
    assert coverage[-1] > plateau + 0.2 and majority[0] == pytest.approx(coverage[0])


def _check_against_differences(f, points, rtol=1e-6):
    """The jitted Jacobian of `f` (reverse mode) against central differences of `f`, and its
    jitted Hessian (forward over reverse, as the solver takes it) against central differences
    of the Jacobian: one compilation each (jax.test_util.check_grads compiles its every nested
    derivative again, which for the quadrature of majority voting takes minutes)."""
    value, jac, hess = jax.jit(f), jax.jit(jax.jacrev(f)), jax.jit(jax.jacfwd(jax.jacrev(f)))

    def differences(g, x):
        h = 1e-5 * np.maximum(1.0, np.abs(np.asarray(x)))
        cols = [(np.asarray(g(x + h[i] * e)) - np.asarray(g(x - h[i] * e))) / (2 * h[i])
                for i, e in enumerate(np.eye(x.size))]
        return np.stack(cols, axis=-1)

    for x in points if isinstance(points, list) else [points]:
        np.testing.assert_allclose(jac(x), differences(value, x), rtol=rtol, atol=rtol)
        np.testing.assert_allclose(hess(x), differences(jac, x), rtol=rtol, atol=rtol)


def test_selection_gradients():
    """First and second derivatives against central differences: the solver's constraint
    (the log-failure) of the reward-model rule and the log of the FLOP with a verifier, in
    log N, log D and k, at k = 1 exactly and k = 1e6; and the majority's log-failure (what its
    stage constrains, through the link's smooth alpha and beta) and plateau in alpha, beta and
    k, at k = 1, a fractional k and k = 1e6."""
    rm = Pipeline(Pretraining(LAW), _sampler("reward_model", verifier_accuracy=0.7,
                                             verifier_params=1e9))

    def f(x):
        a = Allocation(jnp.exp(x[0]), jnp.exp(x[1]), 1.0, x[2])
        return jnp.stack([score_log_failure(rm, a), jnp.log(rm(a).inference_flops_per_unit)])

    for k in GRAD_KS:
        _check_against_differences(f, jnp.array([math.log(7e9), math.log(1.4e11), k]))

    def g(x):
        success = BetaSuccess(x[0], x[1])
        return jnp.stack([success.majority_log_failure(x[2]), success.majority_plateau()])

    _check_against_differences(g, [jnp.array([0.3, 2.0, k]) for k in (1.0, 6.5, 1e6)])


def test_new_selections_never_raise_and_stay_finite():
    for stage in (_sampler("reward_model", verifier_accuracy=0.6, verifier_params=1e9),
                  _sampler("majority")):
        model = Pipeline(Pretraining(LAW), stage)

        @jax.jit
        @functools.partial(jax.value_and_grad, argnums=(0, 1))
        def f(k, n, model=model):
            a = Allocation(n, 20.0 * n, 1.0, k)
            return model(a).score + score_log_failure(model, a)

        for k, n in [(0.0, 7e9), (-3.0, 7e9), (1e12, 7e9), (1.0, 1e30), (1e6, 1e-3)]:
            value, grads = f(k, n)
            assert all(bool(jnp.isfinite(v)) for v in (value, *grads)), (stage.selection, k, n)


def test_selection_fields_are_checked():
    link = SuccessLink.codex2021()
    with pytest.raises(ValueError, match="verifier_params must be finite and >= 0"):
        RepeatedSampling(link, verifier_params=-1.0)
    with pytest.raises(ValueError, match="verifier_params must be finite and >= 0"):
        RepeatedSampling(link, verifier_params=float("nan"))
    for bad in (0.0, -0.2, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"verifier_accuracy must lie in \(0, 1\]"):
            RepeatedSampling(link, selection="reward_model", verifier_accuracy=bad)
    with pytest.raises(ValueError, match="needs verifier_accuracy"):
        RepeatedSampling(link, selection="reward_model")
    for selection in ("verifier", "filter", "majority"):
        with pytest.raises(ValueError, match="used by selection='reward_model' only"):
            RepeatedSampling(link, selection=selection, verifier_accuracy=0.9)
    with pytest.raises(ValueError, match="majority' uses no verifier"):
        RepeatedSampling(link, selection="majority", verifier_params=1e9)
    # traced values are not checked (the stage's maths never raises inside a solver)
    built = jax.vmap(lambda v: RepeatedSampling(link, verifier_params=v))(jnp.array([1.0, 2.0]))
    assert built.verifier_params.shape == (2,)


def test_planner_chooses_between_a_bigger_generator_and_a_verifier():
    """The issue's decision at one score target: majority voting (no learned verifier, no
    extra FLOP) against best-of-k by a reward model of N_v = 1e8 parameters (stated accuracy
    0.9). Each plan's total is 6 N D + T (2 N + 2 N_v) k by hand from its own N, D, k; the
    voting plan needs the bigger generator, and the verifier's plan is the cheaper, by these
    hand totals. A verifier of 2e10 parameters would not be: its own FLOP at one sample,
    T 2 N_v, already exceed the voting plan's total."""
    demand, target, small, large = 1e12, 0.35, 1e8, 2e10
    scenario = Scenario(target_score=target, inference_demand=demand)
    voting = solve(Pipeline(Pretraining(LAW), _sampler("majority")), scenario)
    verified = solve(Pipeline(Pretraining(LAW), _sampler("reward_model", verifier_accuracy=0.9,
                                                         verifier_params=small)), scenario)

    def hand(plan, nv):
        n, d, k = (float(getattr(plan.allocation, v)) for v in ("n_params", "n_tokens",
                                                                 "n_samples"))
        return 6.0 * n * d + demand * (2.0 * n + 2.0 * nv) * k

    totals = {"voting": hand(voting, 0.0), "verifier": hand(verified, small)}
    for plan, total, nv in ((voting, totals["voting"], 0.0),
                            (verified, totals["verifier"], small)):
        n, k = float(plan.allocation.n_params), float(plan.allocation.n_samples)
        assert float(plan.outcome.inference_flops_per_unit) == pytest.approx(
            (2.0 * n + 2.0 * nv) * k, rel=4e-16)
        assert float(plan.total_flops) == pytest.approx(total, rel=1e-14)
        assert float(plan.outcome.score) == pytest.approx(target, rel=1e-9)
    assert float(verified.allocation.n_params) < float(voting.allocation.n_params)
    assert float(verified.allocation.n_samples) > 1.0
    assert totals["verifier"] < totals["voting"] < demand * 2.0 * large
