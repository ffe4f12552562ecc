"""Epoch's smoothly broken S-curves against a NumPy oracle, their limits and their gradients."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from planner._techniques.scurve import NAtKSCurve, PassAtKSCurve, smoothly_broken_ramp


def _np_softplus(z):
    return np.logaddexp(0.0, z)


def _np_pass_at_k(a, A, x0, d0, d1, t, x):
    b = a * t + A
    return b * (d0 * _np_softplus((x - x0) / d0) - d1 * _np_softplus((x - 1.0 / b - x0) / d1))


def _np_n_at_k(a, A, x0, x1, d0, d1, t, x):
    b = a * t + A
    return b * (d0 * _np_softplus((x - x0) / d0) - d1 * _np_softplus((x - x1) / d1))


def _pass_curve():
    return PassAtKSCurve(a=0.02, A=-0.2, x0=12.0, d0=0.3, d1=0.4)


def _n_curve():
    return NAtKSCurve(a=0.01, A=-0.1, x0=12.0, x1=16.0, d0=0.5, d1=0.7)


def test_matches_numpy_oracle():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, A = rng.uniform(0.005, 0.05), rng.uniform(-0.3, 0.1)
        x0, x1 = rng.uniform(8, 14), rng.uniform(15, 20)
        d0, d1 = rng.uniform(0.05, 1.0, size=2)
        t, x = rng.uniform(20, 26), rng.uniform(5, 25)
        if a * t + A <= 0:
            continue
        got = PassAtKSCurve(a=a, A=A, x0=x0, d0=d0, d1=d1).performance(t, x)
        np.testing.assert_allclose(got, _np_pass_at_k(a, A, x0, d0, d1, t, x), rtol=1e-12)
        got = NAtKSCurve(a=a, A=A, x0=x0, x1=x1, d0=d0, d1=d1).performance(t, x)
        np.testing.assert_allclose(got, _np_n_at_k(a, A, x0, x1, d0, d1, t, x), rtol=1e-12)


def test_sharp_limit_is_clipped_line():
    # d -> 0: b * (clip(x, x0, x1) - x0), with x1 = x0 + 1/b for pass@k.
    x = jnp.linspace(5.0, 30.0, 101)
    t = 24.0
    sharp = PassAtKSCurve(a=0.02, A=-0.2, x0=12.0, d0=1e-4, d1=1e-4)
    b = 0.02 * t - 0.2
    expected = b * (np.clip(np.asarray(x), 12.0, 12.0 + 1.0 / b) - 12.0)
    np.testing.assert_allclose(sharp.performance(t, x), expected, atol=1e-4)
    assert float(sharp.performance(t, 40.0)) == pytest.approx(1.0, abs=1e-9)

    sharp_n = NAtKSCurve(a=0.01, A=-0.1, x0=12.0, x1=16.0, d0=1e-4, d1=1e-4)
    b = 0.01 * t - 0.1
    expected = b * (np.clip(np.asarray(x), 12.0, 16.0) - 12.0)
    np.testing.assert_allclose(sharp_n.performance(t, x), expected, atol=1e-4)


def test_plateaus():
    t = jnp.array([21.0, 23.0, 25.0])
    far = jnp.full_like(t, 60.0)
    np.testing.assert_allclose(_pass_curve().performance(t, far), 1.0, rtol=1e-12)
    np.testing.assert_allclose(_pass_curve().plateau(t), 1.0)
    n = _n_curve()
    np.testing.assert_allclose(n.performance(t, far), (0.01 * t - 0.1) * 4.0, rtol=1e-12)
    np.testing.assert_allclose(n.plateau(t), (0.01 * np.asarray(t) - 0.1) * 4.0, rtol=1e-12)
    # below the first break performance vanishes
    assert float(n.performance(24.0, -40.0)) == pytest.approx(0.0, abs=1e-12)


def test_ramp_monotone_with_equal_widths():
    # slope b[sigmoid((x - x0)/d) - sigmoid((x - x1)/d)] > 0 whenever x1 > x0
    x = jnp.linspace(4.0, 20.0, 161)
    slope = jax.vmap(jax.grad(smoothly_broken_ramp), in_axes=(0, None, None, None, None, None))
    assert bool(jnp.all(slope(x, 10.0, 14.0, 0.2, 0.5, 0.5) > 0))


def test_more_training_more_performance():
    # b grows with log TC: more training makes every sampling budget more valuable.
    t = jnp.linspace(21.0, 26.0, 11)
    for curve in (_pass_curve(), _n_curve()):
        p = curve.performance(t, 14.0)
        assert bool(jnp.all(jnp.diff(p) > 0))


@pytest.mark.parametrize("make", [_pass_curve, _n_curve])
@pytest.mark.parametrize("x", [12.0, 13.7, 16.0, 40.0, -30.0])
def test_gradients(make, x):
    curve = make()
    check_grads(lambda t, x: curve.performance(t, x), (24.0, x), order=2, modes=["fwd", "rev"])
    params, static = eqx.partition(curve, eqx.is_array)

    def of_params(p):
        return eqx.combine(p, static).performance(24.0, x)

    # `a` enters multiplied by t = 24, so the default finite-difference step is too coarse
    check_grads(of_params, (params,), order=2, modes=["fwd", "rev"], eps=1e-6)


def test_finite_at_extremes():
    # b clamps when a*t + A <= 0; huge and tiny x stay finite with finite gradients.
    curve = _pass_curve()
    value_and_grad = jax.jit(jax.value_and_grad(curve.performance, argnums=(0, 1)))
    hessian = jax.jit(jax.hessian(curve.performance, argnums=(0, 1)))
    for t in (0.0, 5.0, 24.0, 60.0):
        for x in (-1e4, 0.0, 12.0, 1e4):
            value, grads = value_and_grad(t, x)
            leaves = [value, *grads, *jax.tree_util.tree_leaves(hessian(t, x))]
            assert all(bool(jnp.isfinite(v)) for v in leaves), (t, x)


def test_loop_vmap_jit_agree():
    a = jnp.array([0.01, 0.02, 0.03])
    A = jnp.array([-0.1, -0.2, -0.5])
    x0 = jnp.array([11.0, 12.0, 13.0])
    d = jnp.array([0.2, 0.4, 0.6])
    x1 = x0 + 4.0

    def build(a, A, x0, x1, d):
        return NAtKSCurve(a=a, A=A, x0=x0, x1=x1, d0=d, d1=d), PassAtKSCurve(a, A, x0, d, d)

    def f(a, A, x0, x1, d):
        n, p = build(a, A, x0, x1, d)
        return n.performance(24.0, 14.5), p.performance(24.0, 14.5)

    loop = [f(*(v[i] for v in (a, A, x0, x1, d))) for i in range(3)]
    vm = jax.vmap(f)(a, A, x0, x1, d)
    jt = jax.jit(jax.vmap(f))(a, A, x0, x1, d)
    for j in range(2):
        np.testing.assert_allclose(vm[j], [r[j] for r in loop], rtol=1e-13)
        np.testing.assert_allclose(jt[j], vm[j], rtol=1e-13)


def test_new_numbers_do_not_recompile():
    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def f(curve, train, inference):
        return curve(train, inference)

    f(_n_curve(), 1e24, 1e14)
    f(NAtKSCurve(a=0.012, A=-0.15, x0=11.0, x1=15.5, d0=0.4, d1=0.6), 3e23, 1e15)
    f(_n_curve(), 2e24, 1e13)


def test_float32():
    curve = PassAtKSCurve(*(jnp.float32(v) for v in (0.02, -0.2, 12.0, 0.3, 0.4)))
    out = curve(jnp.float32(1e24), jnp.float32(1e14))
    assert out.dtype == jnp.float32
    expected = _np_pass_at_k(0.02, -0.2, 12.0, 0.3, 0.4, 24.0, 14.0)
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_checks_raise_under_jit_and_vmap():
    n = _n_curve()
    call = jax.jit(lambda c, tc, ic: c(tc, ic))
    with pytest.raises(Exception, match="inference_flops_per_unit must be > 0"):
        call(n, 1e24, 0.0)
    with pytest.raises(Exception, match="train_flops must be > 0"):
        jax.vmap(call, in_axes=(None, 0, None))(n, jnp.array([1e24, -1.0]), 1e14)
    with pytest.raises(Exception, match="d0 must be > 0"):
        call(PassAtKSCurve(a=0.02, A=-0.2, x0=12.0, d0=0.0, d1=0.4), 1e24, 1e14)
    with pytest.raises(Exception, match="x1 must exceed x0"):
        call(NAtKSCurve(a=0.01, A=-0.1, x0=12.0, x1=11.0, d0=0.5, d1=0.5), 1e24, 1e14)
    # plateau 0.01*t - 0.1 times 4 OOM reaches 1 at t = 35
    with pytest.raises(Exception, match="plateau"):
        jax.vmap(call, in_axes=(None, 0, None))(n, jnp.array([1e24, 1e36]), 1e14)
    np.testing.assert_allclose(call(n, 1e24, 1e14), n.performance(24.0, 14.0), rtol=1e-12)
