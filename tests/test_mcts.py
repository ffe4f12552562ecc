"""MCTS in Hex: Jones's line, the BNSL, Epoch's saturating model, its spans and calibration."""

import math
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from planner._techniques.mcts import (
    CALIBRATED,
    MCTS,
    JonesFrontier,
    bnsl,
    calibrate_mcts,
    log10_bnsl,
)

JONES = JonesFrontier.jones2021()


def _model(**kw):
    fields = dict(
        train_slope=300.0,
        train_knee=17.0,
        train_sharpness=0.4,
        search_slope=250.0,
        search_knee=2.5,
        search_sharpness=0.2,
        flops_per_node=1e6,
    )
    fields.update(kw)
    return MCTS(**fields)


# ------------------------------------------------------------------------------- Jones line
def test_jones_slope_is_15x_per_10x():
    # Jones 2021: "for each additional 10x of train-time compute, about 15x of test-time
    # compute can be eliminated"; the fitted slope is 1.2 OOM per OOM.
    for elo in (-1500.0, -700.0, -100.0):
        ratio = JONES.test_flops(1e14, elo) / JONES.test_flops(1e15, elo)
        assert float(ratio) == pytest.approx(10.0**1.2, rel=1e-12)
        assert abs(math.log10(15.0) - float(jnp.log10(ratio))) < 0.03
    assert float(JONES.exchange_rate) == pytest.approx(1.2)
    # the same slope as a derivative of the closed form
    dlog = jax.grad(lambda u: jnp.log10(JONES.test_flops(10.0**u, -800.0)))(15.0)
    assert float(dlog) == pytest.approx(-1.2, rel=1e-12)


def test_jones_closed_forms_and_inversions():
    # log10 IC = -1.2 * 15 + 0.004 * (-500) + 29 = 9
    assert float(JONES.test_flops(1e15, -500.0)) == pytest.approx(1e9, rel=1e-12)
    # at fixed training compute, 250 Elo per OOM of test compute
    e0 = JONES.elo(1e15, 1e9)
    e1 = JONES.elo(1e15, 1e10)
    assert float(e0) == pytest.approx(-500.0, abs=1e-9)
    assert float(e1 - e0) == pytest.approx(250.0, rel=1e-12)
    rng = np.random.default_rng(1)
    tc = 10.0 ** rng.uniform(12, 18, 32)
    elo = rng.uniform(-1500, 0, 32)
    ic = JONES.test_flops(tc, elo)
    np.testing.assert_allclose(JONES.train_flops(ic, elo), tc, rtol=1e-10)
    np.testing.assert_allclose(JONES.elo(tc, ic), elo, atol=1e-8)


def test_compute_elo_frontier_and_win_probability():
    gain = JONES.elo_gain(2.0)
    assert float(gain) == pytest.approx(500.0 * math.log10(2.0))
    p = JONES.win_probability(gain)
    assert float(p) == pytest.approx(1.0 / (1.0 + 10.0 ** (-gain / 400.0)))
    # Jones: twice the compute wins "about 2/3" of games
    assert abs(float(p) - 2.0 / 3.0) < 0.04
    assert float(JONES.win_probability(0.0)) == pytest.approx(0.5)
    np.testing.assert_allclose(
        JONES.win_probability(jnp.array([-300.0, 300.0])).sum(), 1.0, rtol=1e-12
    )
    assert float(JONES.elo_gain(10.0)) == pytest.approx(500.0)


# ------------------------------------------------------------------------------------ BNSL
def _np_bnsl(x, a, b, c0, c, d, f):
    # Caballero et al.'s repository, make_figure_1__decomposition_of_bnsl_into_power_law_segments.py
    y = b * x ** (-c0)
    for ci, di, fi in zip(c, d, f, strict=True):
        y = y * (1.0 + (x / di) ** (1.0 / fi)) ** (-ci * fi)
    return a + y


def test_bnsl_matches_caballero_figure_1():
    x = np.logspace(-1, 26, 200)
    params = dict(
        a=1e-3,
        b=4.66e3,
        c0=0.05,
        c=np.array([0.49, -0.811, 2.1]),
        d=np.array([3e6, 1e14, 2e20]),
        f=np.array([1.1, 1.425, 0.05]),
    )
    np.testing.assert_allclose(bnsl(x, **params), _np_bnsl(x, **params), rtol=1e-9)


def test_elo_is_a_bnsl_on_the_win_odds():
    m = _model()
    u = jnp.linspace(10.0, 22.0, 25)
    v = jnp.linspace(0.0, 5.0, 25)
    sigma_t = 400.0 * log10_bnsl(u, 0.0, -300.0 / 400.0, 300.0 / 400.0, 17.0, 0.4)
    sigma_m = 400.0 * log10_bnsl(v, 0.0, -250.0 / 400.0, 250.0 / 400.0, 2.5, 0.2)
    np.testing.assert_allclose(m.elo_raw(u, v), m.E0 + sigma_t + sigma_m, atol=1e-9)
    # the same through the linear-space form, on the win odds 10^(Elo/400)
    odds = bnsl(10.0**u, 0.0, 1.0, -0.75, 0.75, 1e17, 0.4) * bnsl(
        10.0**v, 0.0, 1.0, -0.625, 0.625, 10.0**2.5, 0.2
    )
    np.testing.assert_allclose(m.elo_raw(u, v), m.E0 + 400.0 * jnp.log10(odds), atol=1e-8)


def test_elo_limits():
    m = _model()
    # saturated training and search: perfect play (0); a single node with far too little
    # training: Jones's straight line, slopes s_T and s_M
    assert float(m.elo_raw(40.0, 30.0)) == pytest.approx(0.0, abs=1e-9)
    low = m.elo_raw(jnp.array([10.0, 11.0]), jnp.array([0.0, 0.0]))
    assert float(low[1] - low[0]) == pytest.approx(300.0, rel=1e-6)
    assert float(m(1e10, 1.0)) == pytest.approx(float(low[0]))
    assert float(m.inference_flops_per_unit(64.0)) == pytest.approx(64e6)


# -------------------------------------------------------------------------------- frontier
def test_iso_elo_closed_forms():
    m = _model()
    # search sizes whose search deficit is below the Elo gap, so that training can close it
    cases = {-1200.0: [1.0, 3.0, 30.0, 300.0], -300.0: [30.0, 100.0, 1e3], -40.0: [400.0, 3e3]}
    for elo, nodes in cases.items():
        nodes = jnp.array(nodes)
        tc = m.train_flops_for(nodes, elo)
        np.testing.assert_allclose(m(tc, nodes), elo, atol=1e-7)
        np.testing.assert_allclose(m.nodes_for(tc, elo), nodes, rtol=1e-9)


def test_marginal_rate_is_the_iso_elo_slope():
    m = _model()
    for elo, v in ((-1200.0, 1.0), (-300.0, 2.2), (-60.0, 3.0)):
        slope = jax.grad(lambda v_: jnp.log10(m.train_flops_for(10.0**v_, elo)))(v)
        tc = m.train_flops_for(10.0**v, elo)
        assert float(-slope) == pytest.approx(float(m.marginal_rate(tc, 10.0**v)), rel=1e-8)


def _np_span(m, elo, max_rate=6.0, n=400_001):
    """Brute force: sample the iso-Elo curve densely, difference it numerically."""
    loss = -elo
    t = np.linspace(1e-7, 1 - 1e-7, n)
    s_t, d_t, f_t = (float(x) for x in (m.train_slope, m.train_knee, m.train_sharpness))
    s_m, d_m, f_m = (float(x) for x in (m.search_slope, m.search_knee, m.search_sharpness))
    u = d_t - f_t * np.log10(np.expm1((1 - t) * loss / (s_t * f_t) * np.log(10)))
    v = d_m - f_m * np.log10(np.expm1(t * loss / (s_m * f_m) * np.log(10)))
    rate = np.abs(np.gradient(u, t) / np.gradient(v, t))
    keep = (rate >= 1.0 / max_rate) & (rate <= max_rate) & (v >= 0.0)
    if not keep.any():
        return 0.0, 0.0
    return u[keep].max() - u[keep].min(), v[keep].max() - v[keep].min()


@pytest.mark.parametrize("elo", [-1500.0, -700.0, -250.0, -60.0, -5.0])
def test_span_against_brute_force(elo):
    m = _model()
    got = m.span(elo)
    want = _np_span(m, elo)
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-4)


def test_sharp_limit_spans_and_collapse():
    # sharpness -> 0: Elo = -s_T (D_T - u)_+ - s_M (D_M - v)_+, whose efficient frontier is
    # the straight segment; spans L/s_T and L/s_M while L < s_M D_M, then (s_M D_M/s_T, D_M)
    m = _model(train_sharpness=1e-3, search_sharpness=1e-3)
    for loss in (400.0, 100.0, 10.0, 1.0):
        span_t, span_i = m.span(-loss)
        assert float(span_t) == pytest.approx(loss / 300.0, abs=5e-3)
        assert float(span_i) == pytest.approx(loss / 250.0, abs=5e-3)
    span_t, span_i = m.span(-1500.0)
    assert float(span_t) == pytest.approx(250.0 * 2.5 / 300.0, abs=5e-3)
    assert float(span_i) == pytest.approx(2.5, abs=5e-3)


def test_frontier_points_lie_on_the_iso_elo_curve():
    m = _model()
    tc, ic = m.frontier(-400.0, n_points=33)
    nodes = ic / m.flops_per_node
    np.testing.assert_allclose(m(tc, nodes), -400.0, atol=1e-7)
    assert np.all(np.diff(np.asarray(tc)) > 0) and np.all(np.diff(np.asarray(ic)) < 0)
    span_t, span_i = m.span(-400.0)
    assert float(jnp.log10(tc[-1] / tc[0])) == pytest.approx(float(span_t), rel=1e-9)
    assert float(jnp.log10(ic[0] / ic[-1])) == pytest.approx(float(span_i), rel=1e-9)
    rates = m.marginal_rate(tc, nodes)
    assert float(rates[0]) == pytest.approx(1.0 / 6.0, rel=1e-6)
    assert float(rates[-1]) == pytest.approx(6.0, rel=1e-6) or float(nodes[-1]) == 1.0


# ----------------------------------------------------------------------------- calibration
def test_calibration_reproduces_the_preset_and_its_reported_gaps(monkeypatch):
    # with SciPy hidden: calibrate_mcts is public and SciPy is not a runtime dependency
    for name in ("scipy", "scipy.optimize"):
        monkeypatch.setitem(sys.modules, name, None)
    fitted, report = calibrate_mcts()
    assert report["success"]
    for name, value in CALIBRATED.items():
        assert float(getattr(fitted, name)) == pytest.approx(value, rel=1e-3), name
    # the gaps the preset's docstring states
    np.testing.assert_allclose(report["low_span"], (1.26, 1.58), atol=0.01)
    np.testing.assert_allclose(report["high_span"], (1.38, 1.00), atol=0.01)
    np.testing.assert_allclose(report["collapse_span"], (0.47, 0.20), atol=0.01)
    assert report["jones_max_gap_oom"] == pytest.approx(0.56, abs=0.01)
    assert report["low_elo_exchange_rate"] == pytest.approx(0.815, abs=0.001)
    # the report's qualitative claims: more inference than training traded at low
    # performance, the reverse at high performance, shrinking towards perfect play
    assert report["low_span"][1] > report["low_span"][0]
    assert report["high_span"][0] > report["high_span"][1]
    assert sum(report["collapse_span"]) < sum(report["high_span"]) < sum(report["low_span"])


# An oracle that is not the code under test: the model's Elo typed from its formula in NumPy
# (Villalobos & Atkinson 2023's additive form with Caballero et al. 2022's smooth breaks), the
# iso-Elo curve traced by bisection on a dense grid and its exchange rate by finite
# differences, and Jones 2021's line typed from the paper (log10 IC = -1.2 log10 TC
# + 0.004 Elo + 29). It checks what CALIBRATED's docstring and calibrate_mcts's report claim.
def _np_deficit(x, slope, knee, sharpness):
    """Elo lost to a finite compute x (log10): s f log10(1 + 10^((D - x)/f))."""
    return slope * sharpness * np.logaddexp(0.0, (knee - x) / sharpness * np.log(10)) / np.log(10)


def _np_train_for(deficit, c):
    """log10 training FLOP whose deficit is `deficit` (> 0), by bisection (it falls with x)."""
    lo, hi = np.full_like(deficit, -50.0), np.full_like(deficit, 100.0)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        above = _np_deficit(mid, c["train_slope"], c["train_knee"], c["train_sharpness"]) > deficit
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    return 0.5 * (lo + hi)


def _np_spans(c, elo, max_rate=6.0):
    """(training, inference) span of the iso-Elo curve where 1/max_rate <= |d log TC / d log IC|
    <= max_rate, with at least one node (log10 nodes >= 0), at 1 FLOP per node."""
    v = np.linspace(0.0, 12.0, 120001)
    u = _np_train_for(-elo - _np_deficit(v, c["search_slope"], c["search_knee"],
                                          c["search_sharpness"]), c)
    rate = np.abs(np.gradient(u, v))
    eff = (rate >= 1.0 / max_rate) & (rate <= max_rate)
    return float(np.ptp(u[eff])), float(np.ptp(v[eff]))


def test_calibrated_constants_against_an_independent_transcription():
    c = CALIBRATED
    _, report = calibrate_mcts()
    for elo, key, stated in ((-1500.0, "low_span", (1.26, 1.58)), (-250.0, "high_span",
                                                                    (1.38, 1.00)),
                             (-50.0, "collapse_span", (0.47, 0.20))):
        spans = _np_spans(c, elo)
        np.testing.assert_allclose(spans, stated, atol=0.006)  # the docstring's two digits
        np.testing.assert_allclose(spans, report[key], atol=2e-3)  # the fit's own report
    # off Jones's line (OOM of test compute): 0.56 at Elo -250 with one node, < 0.2 elsewhere
    gaps = {}
    for elo in (-1500.0, -1250.0, -1000.0, -750.0, -500.0, -250.0):
        for log_nodes in (0.0, math.log10(64.0)):
            log_tc = (log_nodes - 0.004 * elo - 29.0) / -1.2
            model_elo = -(_np_deficit(log_tc, c["train_slope"], c["train_knee"],
                                      c["train_sharpness"])
                          + _np_deficit(log_nodes, c["search_slope"], c["search_knee"],
                                        c["search_sharpness"]))
            gaps[(elo, log_nodes)] = 0.004 * (model_elo - elo)
    worst = max(gaps, key=lambda k: abs(gaps[k]))
    assert worst == (-250.0, 0.0) and abs(gaps[worst]) == pytest.approx(0.56, abs=0.005)
    assert max(abs(g) for k, g in gaps.items() if k != worst) < 0.2
    assert c["search_slope"] / c["train_slope"] == pytest.approx(0.815, abs=5e-4)
    assert 10 ** c["search_knee"] == pytest.approx(36.0, rel=0.02)  # "search knee at ~36 nodes"


def test_calibrated_preset_node_cost_only_moves_the_frontier():
    unit = MCTS.calibrated(1.0)
    big = MCTS.calibrated(1e8)
    elos = jnp.array([-1500.0, -250.0, -50.0])
    np.testing.assert_allclose(jnp.stack(unit.span(elos)), jnp.stack(big.span(elos)), atol=1e-9)
    # Jones's line sees the same Elo at the same search size whatever the node cost
    reference = float(unit(JONES.train_flops(64.0, -1000.0), 64.0))
    for model in (unit, big):
        tc = JONES.train_flops(64.0 * model.flops_per_node, -1000.0)
        assert float(model(tc, 64.0)) == pytest.approx(reference)
    assert float(big.train_knee) == pytest.approx(CALIBRATED["train_knee"] + 8.0 / -1.2)
    # distance from Jones's line (OOM of test compute): largest at Elo -250 with one node,
    # within 0.2 OOM at every other fitted point
    gaps = {
        (elo, nodes): 0.004 * (float(unit(JONES.train_flops(nodes, elo), nodes)) - elo)
        for elo in (-1500.0, -1250.0, -1000.0, -750.0, -500.0, -250.0)
        for nodes in (1.0, 64.0)
    }
    worst = max(gaps, key=lambda key: abs(gaps[key]))
    assert worst == (-250.0, 1.0) and abs(gaps[worst]) == pytest.approx(0.56, abs=0.01)
    assert max(abs(g) for key, g in gaps.items() if key != worst) < 0.2
    spans = jnp.stack(unit.span(jnp.array([-1500.0, -250.0, -50.0, -1.0])))
    assert np.all(np.diff(np.asarray(spans.sum(0))) < 0)


# -------------------------------------------------------------------------- JAX behaviour
def test_check_grads_closed_forms():
    m = _model()
    check_grads(lambda u, v: m.elo_raw(u, v), (15.0, 1.5), order=2, modes=["fwd", "rev"])
    check_grads(
        lambda e: jnp.log10(JONES.test_flops(1e15, e)), (-600.0,), order=2, modes=["fwd", "rev"]
    )
    # the iso-Elo inverse: second order on its formula, first order through the checks
    raw_inverse = lambda e: m._search_inverse(-e - m.deficits(16.0, 0.0)[0])  # noqa: E731
    check_grads(raw_inverse, (-700.0,), order=2, modes=["fwd", "rev"])
    check_grads(lambda e: jnp.log10(m.nodes_for(1e16, e)), (-700.0,), order=1, modes=["fwd", "rev"])
    # with respect to every coefficient of the law at once
    check_grads(lambda mm: mm.elo_raw(16.5, 2.0), (m,), order=1, modes=["fwd", "rev"])


def test_check_grads_spans():
    # bisection plus one Newton step gives exact first derivatives (implicit function)
    m = _model()
    check_grads(lambda e: jnp.stack(m.span(e)), (-300.0,), order=1, modes=["fwd", "rev"])
    check_grads(lambda mm: jnp.stack(mm.span(-300.0)), (m,), order=1, modes=["fwd", "rev"])


def test_gradients_finite_at_domain_edges():
    m = _model()
    # a single node, saturated training, Elo close to perfect play
    g = jax.grad(lambda u, v: m.elo_raw(u, v), argnums=(0, 1))(60.0, 0.0)
    assert all(np.isfinite(float(x)) for x in g)
    g = jax.grad(lambda e: jnp.sum(jnp.stack(m.span(e))))(-1e-6)
    assert np.isfinite(float(g))
    g = jax.grad(lambda e: jnp.sum(jnp.stack(m.span(e))))(-1e5)
    assert np.isfinite(float(g))


def test_loop_vmap_jit_agree():
    m = _model()
    elos = jnp.array([-1400.0, -600.0, -120.0, -8.0])
    loop = jnp.stack([jnp.stack(m.span(e)) for e in elos])
    vmapped = jnp.stack(jax.vmap(lambda e: jnp.stack(m.span(e)))(elos))
    jitted = jax.jit(jax.vmap(lambda mm, e: jnp.stack(mm.span(e)), in_axes=(None, 0)))(m, elos)
    np.testing.assert_allclose(vmapped, loop, rtol=1e-12)
    np.testing.assert_allclose(jitted, loop, rtol=1e-12)
    # a batch of models built under vmap
    slopes = jnp.array([200.0, 300.0, 400.0])
    models = jax.vmap(lambda s: _model(train_slope=s))(slopes)
    batched = jax.vmap(lambda mm: jnp.stack(mm.span(-500.0)))(models)
    for i, s in enumerate(slopes):
        np.testing.assert_allclose(
            batched[i], jnp.stack(_model(train_slope=s).span(-500.0)), rtol=1e-12
        )
    tc = jnp.array([1e13, 1e15, 1e17])
    np.testing.assert_allclose(
        jax.jit(jax.vmap(lambda t: JONES.test_flops(t, -300.0)))(tc),
        [float(JONES.test_flops(t, -300.0)) for t in tc],
        rtol=1e-12,
    )


def test_no_recompile_on_new_numbers():
    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def spans(model, elo):
        return jnp.stack(model.span(elo))

    spans(_model(), -300.0)
    spans(_model(train_slope=280.0, search_knee=1.7), -900.0)

    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def preset_spans(cost, elo):
        return jnp.stack(MCTS.calibrated(cost).span(elo))

    preset_spans(1.0, -20.0)
    preset_spans(3e7, -700.0)

    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def line(jones, tc, elo):
        return jones.test_flops(tc, elo)

    line(JONES, 1e15, -300.0)
    line(
        JonesFrontier(
            train_exponent=-1.1, elo_coefficient=0.005, intercept=28.0, elo_per_oom=450.0
        ),
        1e16,
        -100.0,
    )


def test_float32():
    m32 = jax.tree.map(lambda x: x.astype(jnp.float32), _model())
    m64 = _model()
    e = jnp.float32(-400.0)
    np.testing.assert_allclose(jnp.stack(m32.span(e)), jnp.stack(m64.span(-400.0)), rtol=1e-4)
    np.testing.assert_allclose(
        m32(jnp.float32(1e16), jnp.float32(20.0)), m64(1e16, 20.0), rtol=1e-5
    )
    j32 = jax.tree.map(lambda x: x.astype(jnp.float32), JONES)
    np.testing.assert_allclose(
        j32.test_flops(jnp.float32(1e15), jnp.float32(-500.0)), 1e9, rtol=1e-4
    )


def test_domain_errors_under_jit_and_vmap():
    m = _model()
    with pytest.raises(Exception, match="train_flops must be > 0"):
        jax.jit(lambda tc: JONES.test_flops(tc, -300.0))(-1.0)
    with pytest.raises(Exception, match="test_flops must be > 0"):
        jax.vmap(lambda ic: JONES.elo(1e15, ic))(jnp.array([1e9, 0.0]))
    with pytest.raises(Exception, match="compute_ratio must be > 0"):
        jax.jit(lambda r: JONES.elo_gain(r))(0.0)
    with pytest.raises(Exception, match="train_flops must be > 0"):
        jax.vmap(lambda tc, n: m(tc, n))(jnp.array([1e15, -1e15]), jnp.array([4.0, 4.0]))
    with pytest.raises(Exception, match="n_nodes must be >= 1"):
        jax.jit(lambda n: m(1e15, n))(0.5)
    with pytest.raises(Exception, match="elo must be < 0"):
        jax.jit(lambda e: m.span(e))(0.0)
    with pytest.raises(Exception, match="elo must be < 0"):
        jax.vmap(lambda e: m.span(e))(jnp.array([-10.0, 5.0]))
    with pytest.raises(Exception, match="no search reaches this elo"):
        jax.jit(lambda tc: m.nodes_for(tc, -100.0))(1e10)
    with pytest.raises(Exception, match="flops_per_node must be > 0"):
        jax.jit(MCTS.calibrated)(0.0)
    # the raw forms used in solver loops stay finite instead of raising
    assert np.isfinite(float(m.elo_raw(-5.0, -3.0)))
    assert np.all(np.isfinite(np.asarray(jnp.stack(m.span_raw(1e-9)))))


@pytest.mark.parametrize("bounded", [False, True])
def test_bounded_least_squares_against_scipy(bounded):
    """planner._lsq (calibrate_mcts's solver) against scipy.optimize.least_squares on
    Rosenbrock's residuals, unbounded (optimum (1, 1)) and with the box [-2, 0.5] x [-1, 2]
    (optimum on the bound x0 = 0.5, x1 = 0.25)."""
    from scipy.optimize import least_squares as scipy_least_squares

    from planner._lsq import least_squares

    def residual(x):
        return jnp.stack([10.0 * (x[1] - x[0] ** 2), 1.0 - x[0]])

    lower, upper = (np.array([-2.0, -1.0]), np.array([0.5, 2.0])) if bounded else (None, None)
    ours = least_squares(residual, np.array([-1.2, 1.0]), lower, upper)
    theirs = scipy_least_squares(
        lambda x: np.asarray(residual(jnp.asarray(x))), np.array([-1.2, 1.0]),
        bounds=(lower, upper) if bounded else (-np.inf, np.inf), xtol=1e-15, ftol=1e-15,
        gtol=1e-15)
    assert ours.success
    np.testing.assert_allclose(ours.x, theirs.x, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.cost, theirs.cost, rtol=1e-8, atol=1e-20)
    np.testing.assert_allclose(ours.x, [0.5, 0.25] if bounded else [1.0, 1.0], atol=1e-8)
