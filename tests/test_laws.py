"""The Chinchilla loss law against independent oracles.

Oracles: SciPy minimisers and root finders on the raw formula (written out here in plain
Python), the published tables (Villalobos & Atkinson 2023 trade-off
table, Hoffmann et al. 2022 Table A3, Sardana et al. 2024 numbers), and finite differences
(`jax.test_util.check_grads`).
"""

from __future__ import annotations

import functools as ft
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import optimize

from planner import PRESETS, Chinchilla

PRESET_NAMES = sorted(PRESETS)
BUDGETS = (1e20, 5.76e23, 1e26)  # 5.76e23: Chinchilla's own training budget
GAPS = (0.05, 0.25, 0.6)  # target loss minus E, so every preset gets reachable targets


def _coefs(law: Chinchilla) -> tuple[float, float, float, float, float]:
    return tuple(float(getattr(law, k)) for k in ("E", "A", "B", "alpha", "beta"))


def _rel(x, y) -> float:
    return abs(float(x) / float(y) - 1.0)


# ----------------------------------------------------------------- plain-Python oracles
def _log_tokens_on_curve(law: Chinchilla, log_n: float, target: float) -> float:
    """log D with L(N, D) = target, by root finding on the raw formula."""
    E, A, B, a, b = _coefs(law)
    return optimize.brentq(
        lambda y: E + A * math.exp(-a * log_n) + B * math.exp(-b * y) - target,
        0.0,
        400.0,
        xtol=1e-14,
        rtol=1e-15,
    )


def _log_min_params(law: Chinchilla, target: float) -> float:
    """log N with L(N, 1e60) = target: the infinite-data limit of the iso-loss curve."""
    E, A, B, a, b = _coefs(law)
    return optimize.brentq(
        lambda x: E + A * math.exp(-a * x) + B * 1e60 ** (-b) - target,
        0.0,
        400.0,
        xtol=1e-14,
        rtol=1e-15,
    )


def _scipy_loss_optimal(law: Chinchilla, target: float) -> tuple[float, float]:
    """argmin of log(N D) along L(N, D) = target, D found by root finding."""
    x_min = _log_min_params(law, target)
    res = optimize.minimize_scalar(
        lambda x: x + _log_tokens_on_curve(law, x, target),
        bounds=(x_min + 1e-9, x_min + 20.0),
        method="bounded",
        options=dict(xatol=1e-12),
    )
    return math.exp(res.x), math.exp(_log_tokens_on_curve(law, res.x, target))


# ------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("name", PRESET_NAMES)
def test_compute_optimal_matches_scipy(name):
    law = Chinchilla.from_preset(name)
    E, A, B, a, b = _coefs(law)
    for budget in BUDGETS:
        log_c6 = math.log(budget / 6.0)
        res = optimize.minimize_scalar(
            lambda x: A * math.exp(-a * x) + B * math.exp(-b * (log_c6 - x)),
            bracket=(math.log(1e6), math.log(1e15)),
            method="brent",
            options=dict(xtol=1e-14),
        )
        n, d = law.compute_optimal(budget)
        # Brent's method locates a smooth minimum to about sqrt(machine eps): measured <= 7e-8.
        assert _rel(n, math.exp(res.x)) < 1e-6
        assert _rel(d, budget / 6.0 / math.exp(res.x)) < 1e-6
        assert _rel(6.0 * n * d, budget) < 1e-12


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_loss_optimal_matches_scipy(name):
    law = Chinchilla.from_preset(name)
    for gap in GAPS:
        target = float(law.E) + gap
        n_ref, d_ref = _scipy_loss_optimal(law, target)
        n, d = law.loss_optimal(target)
        # measured <= 1.7e-7 (flat minimum, see above)
        assert _rel(n, n_ref) < 1e-6
        assert _rel(d, d_ref) < 1e-6
        assert abs(float(law(n, d)) - target) < 1e-12
        # the loss-optimal point is also the compute-optimal point of its own budget
        n2, d2 = law.compute_optimal(6.0 * n * d)
        assert _rel(n2, n) < 1e-10 and _rel(d2, d) < 1e-10


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_iso_loss_tokens_and_min_params_match_root_finding(name):
    law = Chinchilla.from_preset(name)
    for gap in GAPS:
        target = float(law.E) + gap
        n_min = float(law.min_params(target))
        assert _rel(n_min, math.exp(_log_min_params(law, target))) < 1e-10
        for factor in (1.01, 1.5, 3.0, 30.0):
            n = n_min * factor
            d = law.iso_loss_tokens(n, target)
            assert _rel(d, math.exp(_log_tokens_on_curve(law, math.log(n), target))) < 1e-10
        # the curve runs off to infinite data as N approaches N_min from above
        d_near = [
            float(law.iso_loss_tokens(n_min * (1.0 + eps), target)) for eps in (1e-2, 1e-4, 1e-6)
        ]
        assert d_near[0] < d_near[1] < d_near[2]
        assert math.isfinite(d_near[2])
        # N_min lies exactly k_max OOM below the loss-optimal size
        n_c, _ = law.loss_optimal(target)
        assert abs(math.log10(float(n_c) / n_min) - float(law.max_inference_cut())) < 1e-12


def test_presets_by_name():
    assert set(PRESETS) == {
        "hoffmann2022",
        "hoffmann2022-unrounded",
        "besiroglu2024",
        "sardana2024",
    }
    assert _coefs(Chinchilla.from_preset("hoffmann2022")) == (1.69, 406.4, 410.7, 0.34, 0.28)
    # the unrounded constants round to the paper's
    unrounded = _coefs(Chinchilla.hoffmann2022_unrounded())
    rounded = _coefs(Chinchilla.hoffmann2022())
    assert unrounded[:3] == pytest.approx(rounded[:3], rel=3e-3)
    assert unrounded[3:] == pytest.approx(rounded[3:], abs=0.005)
    with pytest.raises(ValueError, match="unknown law preset 'chinchilla'"):
        Chinchilla.from_preset("chinchilla")


# ----------------------------------------------------------- Sardana et al. 2024 numbers
def test_sardana_numbers():
    law = Chinchilla.sardana2024()
    assert round(float(law(70e9, 1e12)), 4) == 1.9473
    n, d = law.loss_optimal(1.947)
    assert _rel(n, 3.408115e10) < 1e-6
    assert _rel(d, 1.810293e12) < 1e-6


# ---------------------------------------------------------------- the ΔTC(k) trade-off
K_VALUES = (0.2, 0.5, 0.7, 0.8, 0.9, 1.0)
# The Chinchilla closed form's ΔTC in OOM (Villalobos & Atkinson 2023, overtraining);
# None = impossible (k >= k_max)
DELTA_TC = {
    "hoffmann2022": (0.033, 0.278, 0.725, 1.158, 1.967, 4.93),
    "sardana2024": (0.033, 0.278, 0.727, 1.163, 1.987, 5.30),
    "besiroglu2024": (0.040, 0.366, 1.156, 2.627, None, None),
}


@pytest.mark.parametrize("name", sorted(DELTA_TC))
def test_inference_cut_cost_table(name):
    law = Chinchilla.from_preset(name)
    k_max = float(law.max_inference_cut())
    for k, expected in zip(K_VALUES, DELTA_TC[name]):
        if expected is None:
            assert k >= k_max
            with pytest.raises(
                eqx.EquinoxRuntimeError, match="cut_oom must be < max_inference_cut"
            ):
                law.inference_cut_cost(k)
        else:
            assert k < k_max
            assert abs(float(law.inference_cut_cost(k)) - expected) < 0.005
    if name == "besiroglu2024":
        assert round(k_max, 3) == 0.834
        with pytest.raises(eqx.EquinoxRuntimeError, match="cut_oom must be < max_inference_cut"):
            law.inference_cut_cost(k_max)


@pytest.mark.parametrize("name", sorted(DELTA_TC))
def test_inference_cut_cost_along_iso_loss_curve(name):
    """Walk the iso-loss curve numerically; ΔTC depends on neither the target nor A, B, E."""
    law = Chinchilla.from_preset(name)
    k_max = float(law.max_inference_cut())
    for gap in (0.1, 0.4):
        target = float(law.E) + gap
        n_c, d_c = (float(x) for x in law.loss_optimal(target))
        for k in (0.0, 0.2, 0.5, 0.7, 0.8, 0.95 * k_max, k_max - 1e-3):
            n = n_c * 10.0**-k
            log_d = _log_tokens_on_curve(law, math.log(n), target)
            dtc = (math.log(n) + log_d - math.log(n_c * d_c)) / math.log(10.0)
            assert abs(float(law.inference_cut_cost(k)) - dtc) < 1e-8
            # and through the library's own iso-loss curve
            d = float(law.iso_loss_tokens(n, target))
            assert abs(math.log10(n * d / (n_c * d_c)) - dtc) < 1e-8


@pytest.mark.parametrize("name", sorted(DELTA_TC))
def test_small_cuts_and_rates_keep_their_precision(name):
    """Series at the training optimum (k, R -> 0), with s = alpha + beta and L = ln 10:
    ΔTC(k) = s L k^2 / 2 + O(k^3); the rate R is reached at k = R / (s L) + O(R^2) for
    ΔTC = R^2 / (2 s L) + O(R^3). Both are differences of near-equal terms when computed."""
    law = Chinchilla.from_preset(name)
    s, ln10 = float(law.alpha + law.beta), math.log(10.0)
    for small in (1e-6, 1e-8):
        assert _rel(law.inference_cut_cost(small), s * ln10 * small**2 / 2) < 1e-5
        dtc, k = law.marginal_rate_point(small)
        assert _rel(k, small / (s * ln10)) < 1e-5
        assert _rel(dtc, small**2 / (2 * s * ln10)) < 1e-5


def test_marginal_rate_point_six_to_one():
    law = Chinchilla.hoffmann2022()
    dtc, k = (float(x) for x in law.marginal_rate_point(6))
    assert abs(dtc - 1.22) < 0.005
    assert abs(k - 0.811) < 0.0005
    assert abs(float(law.inference_cut_cost(k)) - dtc) < 1e-12
    assert [float(x) for x in law.marginal_rate_point(0.0)] == pytest.approx([0.0, 0.0], abs=1e-15)

    # The rate itself: d log TC / d log IC = -6 there (IC = 2N, so d log IC = d log N).
    target = 1.9
    n_c, d_c = law.loss_optimal(target)
    log_n = float(jnp.log(n_c)) - k * math.log(10.0)

    def log_tc(log_n):
        n = jnp.exp(log_n)
        return jnp.log(6.0 * n * law.iso_loss_tokens(n, target))

    assert abs(float(jax.grad(log_tc)(log_n)) + 6.0) < 1e-9
    h = 1e-5
    fd = (
        (h + _log_tokens_on_curve(law, log_n + h, target))
        - (-h + _log_tokens_on_curve(law, log_n - h, target))
    ) / (2 * h)
    assert abs(fd + 6.0) < 1e-6


# ------------------------------------------------------------------ Hoffmann Table A3
TABLE_A3 = {  # parameters -> tokens at the compute-optimal frontier, Hoffmann et al. 2022
    400e6: 9.2e9,
    1e9: 27.1e9,
    10e9: 410.1e9,
    67e9: 4.1e12,
    175e9: 12.0e12,
    280e9: 20.1e12,
    520e9: 43.5e12,
    1e12: 94.1e12,
    10e12: 1425.5e12,
}


def _frontier_tokens(law: Chinchilla, n: float) -> float:
    """Tokens paired with `n` by compute_optimal, found by root finding on the budget."""
    log_c = optimize.brentq(
        lambda lc: math.log(float(law.compute_optimal(math.exp(lc))[0])) - math.log(n),
        math.log(1e15),
        math.log(1e35),
        xtol=1e-14,
        rtol=1e-15,
    )
    _, d = law.compute_optimal(math.exp(log_c))
    # first-order condition of the budget problem: alpha A N^-alpha = beta B D^-beta
    E, A, B, a, b = _coefs(law)
    d_foc = (b * B * n**a / (a * A)) ** (1.0 / b)
    assert _rel(d, d_foc) < 1e-9
    return float(d)


def test_table_a3():
    sardana = Chinchilla.sardana2024()
    rounded = Chinchilla.hoffmann2022()
    ratio_sardana = [_frontier_tokens(sardana, n) / d for n, d in TABLE_A3.items()]
    ratio_rounded = [_frontier_tokens(rounded, n) / d for n, d in TABLE_A3.items()]
    # measured: 0.985 (67B, whose 4.1T is rounded to 2 digits) to 1.098 (280B)
    assert 0.98 < min(ratio_sardana) and max(ratio_sardana) < 1.10
    # measured: 1.57 (400M) to 2.22 (10T): the rounded exponents overshoot 1.5-2x and more
    assert 1.5 < min(ratio_rounded) and max(ratio_rounded) < 2.25
    assert sum(r > 1.9 for r in ratio_rounded) >= 4


# --------------------------------------------------------------------------- gradients
# Checked eagerly, one law at a time: eager primitives are compiled once and shared by every
# derivative order and law, where a jitted function is compiled again for each of the ~20
# derivative programs check_grads builds (measured 2x slower).
GRAD_LAWS = ("hoffmann2022", "besiroglu2024")


def _strong(*args):
    """Arguments as 0-d float64 arrays (not weakly typed Python floats), so eager primitives
    compile for one dtype signature instead of a weak/strong mix (measured 25% faster)."""
    return tuple(
        Chinchilla(*map(np.asarray, _coefs(a))) if isinstance(a, Chinchilla) else np.asarray(a)
        for a in args
    )


def _assert_finite_derivatives(f, args):
    """Values, first and second directional derivatives, forward and reverse, are finite.

    A NaN anywhere in a Jacobian or Hessian propagates into its product with a dense random
    direction, so this covers every entry. (check_grads alone would not tell: it compares with
    `assert_allclose`, for which NaN equals NaN.)
    """
    rng = np.random.RandomState(1)
    rand = lambda x: np.asarray(rng.randn(*np.shape(x)), dtype=np.float64)  # noqa: E731
    tangent = jax.tree.map(rand, args)
    forward = jax.jvp(ft.partial(jax.jvp, f), (args, tangent), jax.tree.map(rand, (args, args)))

    def f_vjp(*a):
        out, pullback = jax.vjp(f, *a)
        return pullback(out)

    first, pullback = jax.vjp(f_vjp, *args)
    reverse = (first, pullback(jax.tree.map(rand, first)))
    for leaf in jax.tree.leaves((forward, reverse)):
        assert bool(jnp.all(jnp.isfinite(leaf)))


def _differentiable_interior(log_n, log_d, log_c, target, log_n_iso, rate, law):
    n_star, d_star = law.compute_optimal(jnp.exp(log_c))
    n_c, d_c = law.loss_optimal(target)
    return jnp.stack(
        [
            law(jnp.exp(log_n), jnp.exp(log_d)),
            jnp.log(n_star),
            jnp.log(d_star),
            jnp.log(n_c),
            jnp.log(d_c),
            jnp.log(law.iso_loss_tokens(jnp.exp(log_n_iso), target)),
            *law.marginal_rate_point(rate),
        ]
    )


def _checked(log_n, log_d, log_c, target, log_n_iso, rate, law):
    # two checked methods suffice: every domain check goes through the same check_all
    iso = law.iso_loss_tokens(jnp.exp(log_n_iso), target)
    return law(jnp.exp(log_n), jnp.exp(log_d)) + jnp.log(iso)


_checked_grad = jax.grad(_checked, argnums=(0, 1, 3, 4, 6))
_checked_grad_jitted = jax.jit(_checked_grad)


def _differentiable_edges(log_n_iso, target, cut, law):
    return jnp.stack(
        [jnp.log(law.iso_loss_tokens(jnp.exp(log_n_iso), target)), law.inference_cut_cost(cut)]
    )


def _differentiable_small_cut(log_cut, law):
    # ΔTC ~ k^2 near 0: scaled by 1/k^2 at k = 1e-6 so that check_grads' tolerances bite
    return law.inference_cut_cost(jnp.exp(log_cut)) * 1e12


@pytest.mark.parametrize("name", GRAD_LAWS)
def test_grads_interior(name):
    """Inputs in log space (N ~ 1e10 takes no absolute step); law coefficients as they are."""
    law = Chinchilla.from_preset(name)
    target = float(law.E) + 0.25
    args = _strong(
        math.log(70e9),
        math.log(1.4e12),
        math.log(5.76e23),
        target,
        math.log(3.0 * float(law.min_params(target))),
        6.0,
        law,
    )
    # eps 1e-4 fails at 3e-5 relative: the third derivative in alpha of log N* is ~1e5
    check_grads(_differentiable_interior, args, order=2, modes=["fwd", "rev"], eps=1e-6)
    _assert_finite_derivatives(_differentiable_interior, args)

    # under jit the domain checks are runtime conditionals; they must not change the gradient
    eager = jax.tree.leaves(_checked_grad(*args))
    jitted = jax.tree.leaves(_checked_grad_jitted(*args))
    for e, j in zip(eager, jitted):
        assert jnp.allclose(j, e, rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("name", GRAD_LAWS)
def test_grads_at_domain_edges(name):
    """N = N_min (1 + 1e-6), and cuts of k_max (1 - 1e-6) and of 1e-6 OOM."""
    law = Chinchilla.from_preset(name)
    target = float(law.E) + 0.25
    # l - E - A N^-alpha is ~1e-7 here and k_max moves with alpha, so finite-difference steps
    # must stay far below 1e-7; between truncation (eps >= 1e-10) and roundoff in that small
    # difference (eps <= 1e-11) the finite differences agree to 1e-5 at best (measured).
    args = _strong(
        math.log(float(law.min_params(target)) * (1.0 + 1e-6)),
        target,
        float(law.max_inference_cut()) * (1.0 - 1e-6),
        law,
    )
    check_grads(
        _differentiable_edges, args, order=2, modes=["fwd", "rev"], eps=3e-11, atol=3e-5, rtol=3e-5
    )
    _assert_finite_derivatives(_differentiable_edges, args)
    args = _strong(math.log(1e-6), law)
    check_grads(_differentiable_small_cut, args, order=2, modes=["fwd", "rev"], eps=1e-4)
    _assert_finite_derivatives(_differentiable_small_cut, args)
    # at the training optimum the exchange starts at rate 0: dΔTC/dk = 0 at k = 0, finite
    grad_at_0 = jax.grad(lambda k, law: law.inference_cut_cost(k))(0.0, law)
    assert abs(float(grad_at_0)) < 1e-15


# ------------------------------------------------------------- batches and compilation
def _everything(law, n_params, n_tokens, train_flops, target, n_iso, cut, rate):
    """Every method of one law: the function compared across loop, jit and vmap."""
    n_star, d_star = law.compute_optimal(train_flops)
    n_c, d_c = law.loss_optimal(target)
    return dict(
        loss=law(n_params, n_tokens),
        raw_loss=law.loss(n_params, n_tokens),
        n_star=n_star,
        d_star=d_star,
        n_c=n_c,
        d_c=d_c,
        n_min=law.min_params(target),
        iso=law.iso_loss_tokens(n_iso, target),
        cut=law.inference_cut_cost(cut),
        k_max=law.max_inference_cut(),
        rate=jnp.stack(law.marginal_rate_point(rate)),
    )


# eqx.filter_jit rather than jax.jit: its runtime errors are EquinoxRuntimeError with the message
_everything_jitted = eqx.filter_jit(_everything)
_everything_batched = eqx.filter_jit(jax.vmap(_everything))


@ft.cache
def _law_batch():
    """The four presets plus Besiroglu et al. at +-1 standard error (their Table 1)."""
    coefs = [_coefs(Chinchilla.from_preset(p)) for p in PRESET_NAMES]
    central = _coefs(Chinchilla.besiroglu2024())
    se = (0.03, 124.58, 1293.23, 0.02, 0.02)
    coefs += [tuple(c + s * sign for c, s in zip(central, se)) for sign in (1.0, -1.0)]
    columns = [jnp.array(col) for col in zip(*coefs)]
    return jax.vmap(lambda E, A, B, alpha, beta: Chinchilla(E, A, B, alpha, beta))(*columns)


def _batch_inputs(batch):
    m = batch.E.shape[0]
    spread = jnp.linspace(0.0, 1.0, m)
    target = batch.E + 0.2 + 0.1 * spread
    return (
        7e10 * 10.0**spread,
        1.4e12 * 10.0**spread,
        5.76e23 * 10.0**spread,
        target,
        (2.0 + spread) * jax.vmap(Chinchilla.min_params)(batch, target),
        0.2 + 0.5 * spread,
        6.0 * (1.0 + spread),
    )


def test_loop_vmap_jit_agree():
    batch = _law_batch()
    stacked = jax.tree.map(
        lambda *x: jnp.stack(x), *(Chinchilla.from_preset(p) for p in PRESET_NAMES)
    )
    for field in ("E", "A", "B", "alpha", "beta"):
        assert jnp.array_equal(getattr(batch, field)[:4], getattr(stacked, field))
    inputs = _batch_inputs(batch)
    looped = [
        _everything(jax.tree.map(lambda x: x[i], batch), *(x[i] for x in inputs))
        for i in range(batch.E.shape[0])
    ]
    looped = jax.tree.map(lambda *x: jnp.stack(x), *looped)
    jitted = [
        _everything_jitted(jax.tree.map(lambda x: x[i], batch), *(x[i] for x in inputs))
        for i in range(batch.E.shape[0])
    ]
    jitted = jax.tree.map(lambda *x: jnp.stack(x), *jitted)
    vmapped = _everything_batched(batch, *inputs)
    for key in looped:
        assert bool(jnp.all(jnp.isfinite(looped[key])))
        assert jnp.allclose(jitted[key], looped[key], rtol=1e-13, atol=0.0), key
        assert jnp.allclose(vmapped[key], looped[key], rtol=1e-13, atol=0.0), key


def test_new_numbers_do_not_recompile():
    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def f(law, train_flops, target):
        return law.compute_optimal(train_flops), law.loss_optimal(target), law.max_inference_cut()

    hoffmann = Chinchilla.hoffmann2022()
    besiroglu = Chinchilla.besiroglu2024()
    first = f(hoffmann, 5.76e23, 2.0)
    second = f(besiroglu, 1e25, 2.1)
    assert _rel(first[0][0], hoffmann.compute_optimal(5.76e23)[0]) < 1e-14
    assert _rel(second[0][0], besiroglu.compute_optimal(1e25)[0]) < 1e-14
    assert _rel(second[1][1], besiroglu.loss_optimal(2.1)[1]) < 1e-14
    assert float(second[2]) == float(besiroglu.max_inference_cut())
    # laws built from arrays (as a vmap slice is) share a trace too
    batch = _law_batch()
    g = jax.jit(eqx.debug.assert_max_traces(lambda law: law.max_inference_cut(), max_traces=1))
    for i in range(3):
        law = jax.tree.map(lambda x: x[i], batch)
        assert float(g(law)) == pytest.approx(float(law.max_inference_cut()), rel=1e-14)


# ---------------------------------------------------------------------------- errors
NAN = float("nan")
INF = float("inf")
BAD = [  # (method, arguments, message), for the rounded Hoffmann law (E = 1.69)
    ("__call__", (0.0, 1.4e12), "n_params must be > 0"),
    ("__call__", (-7e10, 1.4e12), "n_params must be > 0"),
    ("__call__", (NAN, 1.4e12), "n_params must be finite"),
    ("__call__", (7e10, 0.0), "n_tokens must be > 0"),
    ("__call__", (7e10, NAN), "n_tokens must be finite"),
    ("__call__", (7e10, INF), "n_tokens must be finite"),
    ("compute_optimal", (0.0,), "train_flops must be > 0"),
    ("compute_optimal", (-1e23,), "train_flops must be > 0"),
    ("compute_optimal", (NAN,), "train_flops must be finite"),
    ("loss_optimal", (1.69,), "target_loss must exceed the irreducible loss E"),
    ("loss_optimal", (1.5,), "target_loss must exceed the irreducible loss E"),
    ("loss_optimal", (NAN,), "target_loss must be finite"),
    ("min_params", (1.69,), "target_loss must exceed the irreducible loss E"),
    ("min_params", (NAN,), "target_loss must be finite"),
    ("iso_loss_tokens", (1e10, 1.69), "target_loss must exceed the irreducible loss E"),
    ("iso_loss_tokens", (1e10, NAN), "target_loss must be finite"),
    ("iso_loss_tokens", (0.0, 2.0), "n_params must be > 0"),
    ("iso_loss_tokens", (NAN, 2.0), "n_params must be finite"),
    ("iso_loss_tokens", (1e6, 2.0), r"n_params must exceed min_params\(target_loss\)"),
    ("inference_cut_cost", (-0.1,), "cut_oom must be >= 0"),
    ("inference_cut_cost", (1.1,), r"cut_oom must be < max_inference_cut\(\)"),
    ("inference_cut_cost", (NAN,), "cut_oom must be finite"),
    ("marginal_rate_point", (-1.0,), "rate must be >= 0"),
    ("marginal_rate_point", (NAN,), "rate must be finite"),
]


@pytest.mark.parametrize("name, args, message", BAD)
def test_domain_errors_eagerly(name, args, message):
    with pytest.raises(eqx.EquinoxRuntimeError, match=message):
        getattr(Chinchilla.hoffmann2022(), name)(*args)


# (argument of _everything, bad value, message), checked under jit and under vmap
BAD_UNDER_JIT = [
    ("n_params", 0.0, "n_params must be > 0"),
    ("n_params", NAN, "n_params must be finite"),
    ("n_tokens", -1.0, "n_tokens must be > 0"),
    ("n_tokens", INF, "n_tokens must be finite"),
    ("train_flops", 0.0, "train_flops must be > 0"),
    ("train_flops", NAN, "train_flops must be finite"),
    ("target", 1.69, "target_loss must exceed the irreducible loss E"),
    ("target", 1.0, "target_loss must exceed the irreducible loss E"),
    ("target", NAN, "target_loss must be finite"),
    ("n_iso", 0.0, "n_params must be > 0"),
    ("n_iso", NAN, "n_params must be finite"),
    ("n_iso", 1e6, r"n_params must exceed min_params\(target_loss\)"),
    ("cut", -0.1, "cut_oom must be >= 0"),
    ("cut", 1.1, r"cut_oom must be < max_inference_cut\(\)"),
    ("cut", NAN, "cut_oom must be finite"),
    ("rate", -1.0, "rate must be >= 0"),
    ("rate", NAN, "rate must be finite"),
]
_ARGS = ("n_params", "n_tokens", "train_flops", "target", "n_iso", "cut", "rate")


@pytest.mark.parametrize("arg, value, message", BAD_UNDER_JIT)
def test_domain_errors_under_jit_and_vmap(arg, value, message):
    """Reuses the programs compiled for test_loop_vmap_jit_agree: new values, no new trace."""
    batch = _law_batch()
    inputs = list(_batch_inputs(batch))
    at = _ARGS.index(arg)
    h = PRESET_NAMES.index("hoffmann2022")  # E = 1.69
    law = jax.tree.map(lambda x: x[h], batch)
    single = [x[h] for x in inputs]
    single[at] = jnp.asarray(value, dtype=jnp.float64)  # same signature as valid values
    with pytest.raises(eqx.EquinoxRuntimeError, match=message):
        _everything_jitted(law, *single)
    # one bad element in a batch of otherwise valid arguments
    inputs[at] = inputs[at].at[h].set(value)
    with pytest.raises(eqx.EquinoxRuntimeError, match=message):
        _everything_batched(batch, *inputs)


def test_domain_error_under_plain_jax_jit():
    """Plain `jax.jit` (not `eqx.filter_jit`) stops too, with the message in a wrapped error."""
    law = Chinchilla.hoffmann2022()
    f = jax.jit(lambda law, n_params: law(n_params, 1.4e12))
    assert bool(jnp.isfinite(f(law, 7e10)))
    with pytest.raises(Exception, match="n_params must be > 0"):
        f(law, -7e10)


# --------------------------------------------------------------------------- float32
def test_float32():
    batch64 = jax.tree.map(lambda x: x.astype(jnp.float32).astype(jnp.float64), _law_batch())
    batch32 = jax.tree.map(lambda x: x.astype(jnp.float32), batch64)
    inputs32 = tuple(x.astype(jnp.float32) for x in _batch_inputs(batch64))
    inputs64 = tuple(x.astype(jnp.float64) for x in inputs32)
    out32 = _everything_batched(batch32, *inputs32)
    out64 = _everything_batched(batch64, *inputs64)
    worst = {}
    for key in out64:
        assert out32[key].dtype == jnp.float32, key
        err = jnp.abs(out32[key].astype(jnp.float64) / out64[key] - 1.0)
        worst[key] = float(jnp.max(err))
    # Same (float32-representable) coefficients and inputs in both: this is arithmetic error only.
    # Measured worst: 2.5e-6 (compute_optimal's D*: float32 rounding of log(C/6) ~ 53, scaled
    # by alpha/(alpha + beta)); 1e-6 for D_c, ΔTC and the iso-loss tokens, 4e-8 for the loss.
    assert max(worst.values()) < 1e-5, worst
    # an integer rate takes the law's dtype
    law32 = jax.tree.map(lambda x: x[0], batch32)
    assert all(x.dtype == jnp.float32 for x in law32.marginal_rate_point(6))
    # a preset (Python-number coefficients) keeps float32 inputs in float32
    law = Chinchilla.hoffmann2022()
    value = law(jnp.float32(7e10), jnp.float32(1.4e12))
    assert value.dtype == jnp.float32
    assert _rel(value, law(7e10, 1.4e12)) < 1e-6
