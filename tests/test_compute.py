"""Compute accounting: FLOP counts, Sardana et al.'s dollar model, and the serving roofline."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy.optimize import brentq, minimize_scalar

from planner._compute import (
    CostModel,
    Hardware,
    flops_matched_multiplier,
    inference_flops,
    train_flops,
)
from planner._laws import Chinchilla

A100 = Hardware.nvidia_a100_sxm_80gb()
H100 = Hardware.nvidia_h100_sxm()


# ------------------------------------------------------------------------------------ FLOP
def test_flop_counts():
    assert float(train_flops(70e9, 1.4e12)) == pytest.approx(5.88e23, rel=1e-12)
    assert float(inference_flops(70e9)) == pytest.approx(1.4e11, rel=1e-12)
    assert float(inference_flops(70e9, 1e3)) == pytest.approx(1.4e14, rel=1e-12)
    # one training token costs three forward passes
    n = jnp.array([1e8, 1e9, 1e10])
    np.testing.assert_allclose(train_flops(n, 1.0), 3.0 * inference_flops(n), rtol=1e-12)


def test_inference_flops_is_a_plans_lifetime_inference():
    """`inference_flops(N, T)` of a plain pretraining plan's N and its demand T is the plan's
    lifetime `inference_flops` (and its column's), not the FLOP of one token."""
    from planner import Pipeline, Pretraining, Scenario, solve

    law = Chinchilla.sardana2024()
    for demand in (2e12, 1e14):
        plan = solve(Pipeline(Pretraining(law)),
                     Scenario(target_loss=1.947, inference_demand=demand))
        n = float(plan.allocation.n_params)
        lifetime = float(inference_flops(n, demand))
        assert float(plan.inference_flops) == pytest.approx(lifetime, rel=1e-12)
        assert float(plan.to_columns()["inference_flops"][0]) == pytest.approx(lifetime,
                                                                                rel=1e-12)
        assert float(plan.outcome.inference_flops_per_unit) == pytest.approx(
            float(inference_flops(n, 1.0)), rel=1e-12)
        assert float(plan.total_flops) == pytest.approx(
            float(train_flops(n, float(plan.allocation.n_tokens))) + lifetime, rel=1e-12)


# ------------------------------------------------------------------- FLOPs-matched test time
# Snell et al. 2024, "Exchanging pretraining and test-time compute": M = 14 and the small
# model's multiplier at three inference-to-pretraining token ratios, as printed (arXiv
# 2408.03314).
SNELL_M = 14.0
SNELL_PUBLISHED = ((0.08, 257.75), (0.40, 62.75), (11.0, 15.77))


@pytest.mark.parametrize("ratio, published", SNELL_PUBLISHED)
def test_flops_matched_multiplier_published(ratio, published):
    x = float(flops_matched_multiplier(SNELL_M, ratio))
    assert round(x, 2) == published
    # and is that close to the printed value, not merely rounded onto it
    assert abs(x - published) <= 0.005


def test_flops_matched_totals_are_equal():
    """Both sides' FLOP, counted with `train_flops` and `inference_flops` (2N per token; the
    verifier is a second 2N), are equal at the multiplier, and not at 1.01 times it."""
    rng = np.random.default_rng(0)
    n = 10.0 ** rng.uniform(7, 11, 40)
    d_pre = 10.0 ** rng.uniform(9, 13, 40)
    m = 10.0 ** rng.uniform(0, 3, 40)
    ratio = 10.0 ** rng.uniform(-3, 3, 40)
    d_inf = ratio * d_pre
    x = np.asarray(flops_matched_multiplier(m, ratio))

    def total(params, inference_tokens):
        return (np.asarray(train_flops(params, d_pre))
                + 2.0 * np.asarray(inference_flops(params, inference_tokens)))

    large, small = total(m * n, d_inf), total(n, x * d_inf)
    np.testing.assert_allclose(small, large, rtol=1e-12)
    assert np.all(total(n, 1.01 * x * d_inf) > large)
    # other per-token counts: t FLOP per training token, i per inference token
    t, i = rng.uniform(2, 8, 40), rng.uniform(1, 6, 40)
    x = np.asarray(flops_matched_multiplier(m, ratio, t, i))
    np.testing.assert_allclose(t * n * d_pre + i * n * x * d_inf,
                               t * m * n * d_pre + i * m * n * d_inf, rtol=1e-12)
    # one model (M = 1) gets no extra samples; without a verifier (i = 2) the default's X
    # holds at twice the ratio
    np.testing.assert_allclose(flops_matched_multiplier(1.0, ratio), 1.0, rtol=1e-15)
    np.testing.assert_allclose(flops_matched_multiplier(m, 2.0 * ratio, 6.0, 2.0),
                               flops_matched_multiplier(m, ratio), rtol=1e-12)


def test_flops_matched_gradient():
    args = (14.0, 0.4, 6.0, 4.0)
    check_grads(flops_matched_multiplier, args, order=2, modes=["fwd", "rev"])
    # against central differences written out, and the closed-form partials
    grad = jax.grad(flops_matched_multiplier, argnums=(0, 1, 2, 3))(*args)
    h = 1e-6
    for k in range(4):
        up = list(args)
        down = list(args)
        up[k] += h
        down[k] -= h
        fd = (float(flops_matched_multiplier(*up))
              - float(flops_matched_multiplier(*down))) / (2 * h)
        assert float(grad[k]) == pytest.approx(fd, rel=1e-7)
    m, r, t, i = args
    assert float(grad[0]) == pytest.approx(1.0 + t / (i * r), rel=1e-14)
    assert float(grad[1]) == pytest.approx(-t * (m - 1.0) / (i * r * r), rel=1e-14)


def test_flops_matched_domain_errors():
    with pytest.raises(Exception, match="size_ratio must be >= 1"):
        jax.jit(lambda m: flops_matched_multiplier(m, 0.1))(0.5)
    with pytest.raises(Exception, match="inference_to_pretraining must be > 0"):
        jax.vmap(lambda r: flops_matched_multiplier(14.0, r))(jnp.array([0.1, 0.0]))
    with pytest.raises(Exception, match="inference_flops_per_token must be > 0"):
        flops_matched_multiplier(14.0, 0.1, 6.0, -4.0)


# --------------------------------------------------------------------------------- dollars
def _np_chinchilla_tokens_from_params(n, alpha=0.336, beta=0.283, A=406.4, B=410.7):
    # beyond-chinchilla, utils.py: chinchilla_tokens_from_params
    g = ((alpha * A) / (beta * B)) ** (1 / (alpha + beta))
    c = 6 * (n / g) ** ((alpha + beta) / beta)
    return ((beta * B) / (alpha * A)) ** (1 / (alpha + beta)) * (c / 6) ** (alpha / (alpha + beta))


def test_sardana_cost_calculator_example():
    # README of nikhilsardana/beyond-chinchilla, cost_calculator.py example: a 30B
    # Chinchilla-optimal model, 1e9 requests of 500 input and 100 output tokens. Printed:
    # train FLOP 2.801e23, train cost $3.146e5, total FLOP 3.161e23, total cost $6.378e5.
    # The script ignores its price flags (cost_per_flop is called without them), so the
    # printed numbers are at its defaults: H100 BF16 at $2.00/h for training, A100-40GB INT8
    # at $1.10/h for inference, MFU 0.5 / 0.5 / 0.01.
    n = 3e10
    d = _np_chinchilla_tokens_from_params(n)
    assert d == pytest.approx(1.556e12, rel=5e-4)
    model = CostModel(
        train_price_per_hour=2.00,
        train_peak_flops=9.89e14,
        train_mfu=0.5,
        inference_price_per_hour=1.10,
        inference_peak_flops=6.24e14,
        prefill_mfu=0.5,
        decode_mfu=0.01,
    )
    train = train_flops(n, d)
    prefill = inference_flops(n, 1e9 * 500)
    decode = inference_flops(n, 1e9 * 100)
    assert float(train) == pytest.approx(2.801e23, rel=5e-4)
    assert float(train + prefill + decode) == pytest.approx(3.161e23, rel=5e-4)
    assert float(model.dollars(train, 0.0, 0.0)) == pytest.approx(3.146e5, rel=5e-4)
    assert float(model.dollars(train, prefill, decode)) == pytest.approx(6.378e5, rel=5e-4)


def test_sardana_cost_optimal_example():
    # README of nikhilsardana/beyond-chinchilla, cost_optimal.py example: loss 1.947, 1e10
    # requests of 1000 input and 250 output tokens, the `sardana2024` hardware. Printed:
    # N 2.053e10, D 3.302e12; 60.23% of the parameters, 182.41% of the tokens and 88.76% of
    # the cost of the equal-loss Chinchilla-optimal model. Oracle: SciPy minimises our
    # dollars along the iso-loss curve.
    law, model = Chinchilla.sardana2024(), CostModel.sardana2024()
    loss, t_in, t_out = 1.947, 1e10 * 1000, 1e10 * 250
    n_c, d_c = (float(x) for x in law.loss_optimal(loss))

    def dollars(log_n):
        n = 10.0**log_n
        d = law.iso_loss_tokens(n, loss)
        return float(model.dollars(6.0 * n * d, 2.0 * n * t_in, 2.0 * n * t_out))

    lo = np.log10(float(law.min_params(loss))) + 1e-6
    best = minimize_scalar(
        dollars, bounds=(lo, np.log10(n_c) + 0.5), method="bounded", options={"xatol": 1e-10}
    )
    n = 10.0**best.x
    d = float(law.iso_loss_tokens(n, loss))
    assert n == pytest.approx(2.053e10, rel=5e-4)
    assert d == pytest.approx(3.302e12, rel=5e-4)
    assert 100 * n / n_c == pytest.approx(60.23, abs=0.01)
    assert 100 * d / d_c == pytest.approx(182.41, abs=0.01)
    assert 100 * best.fun / dollars(np.log10(n_c)) == pytest.approx(88.76, abs=0.01)


def test_dollars_closed_form_and_hardware_route():
    model = CostModel.sardana2024()
    per_train, per_prefill, per_decode = model.dollars_per_flop()
    assert float(per_train) == pytest.approx(1.40 / (3600 * 3.12e14 * 0.5), rel=1e-12)
    assert float(per_prefill) == pytest.approx(0.60 / (3600 * 6.24e14 * 0.4), rel=1e-12)
    assert float(per_decode) == pytest.approx(2.0 * float(per_prefill), rel=1e-12)
    total = model.dollars(1e23, 2e22, 3e21)
    parts = model.dollars(1e23, 0.0, 0.0) + model.dollars(0.0, 2e22, 0.0)
    parts = parts + model.dollars(0.0, 0.0, 3e21)
    assert float(total) == pytest.approx(float(parts), rel=1e-12)
    int8_a100_40gb = Hardware(
        peak_flops=6.24e14, memory_bandwidth=1.555e12, bytes_per_param=1.0,
        price_per_hour=0.60, mfu=0.4,
    )  # fmt: skip
    routed = CostModel.from_hardware(
        Hardware.nvidia_a100_sxm_80gb(price_per_hour=1.40, mfu=0.5), int8_a100_40gb, 0.4, 0.2
    )
    assert float(routed.dollars(1e23, 2e22, 3e21)) == pytest.approx(float(total), rel=1e-12)
    defaults = CostModel.sardana2024_defaults()
    assert float(defaults.dollars(0.0, 0.0, 1e20)) == pytest.approx(
        2.0 / 3600 * 1e20 / (1.978e15 * 0.01), rel=1e-12
    )


# -------------------------------------------------------------------------------- roofline
def test_presets_are_the_datasheet_numbers():
    assert (float(A100.peak_flops), float(A100.memory_bandwidth)) == (312e12, 2.039e12)
    assert (float(H100.peak_flops), float(H100.memory_bandwidth)) == (989e12, 3.35e12)
    assert float(A100.bytes_per_param) == float(H100.bytes_per_param) == 2.0


def test_roofline_terms_closed_forms():
    n = 7e9
    assert float(A100.memory_time(n)) == pytest.approx(7e9 * 2 / 2.039e12, rel=1e-12)
    assert float(A100.memory_time(n, density=0.25)) == pytest.approx(
        0.25 * float(A100.memory_time(n)), rel=1e-12
    )
    assert float(A100.compute_time(n, 32.0)) == pytest.approx(
        2 * 7e9 * 32 / (312e12 * 0.5), rel=1e-12
    )
    memory, compute = A100.roofline(n, 32.0)
    assert float(memory) == pytest.approx(float(A100.memory_time(n)), rel=1e-12)
    assert float(compute) == pytest.approx(float(A100.compute_time(n, 32.0)), rel=1e-12)


@pytest.mark.parametrize("hw", [A100, H100], ids=["a100", "h100"])
def test_crossover_batch_size(hw):
    b_star = hw.crossover_batch_size()
    expected = float(hw.peak_flops * hw.mfu * hw.bytes_per_param / (2 * hw.memory_bandwidth))
    assert float(b_star) == pytest.approx(expected, rel=1e-12)
    n = 13e9
    # the two roofline terms meet at b*: memory-bound below, compute-bound above
    assert float(hw.memory_time(n)) == pytest.approx(float(hw.compute_time(n, b_star)), rel=1e-12)
    below, above = 0.5 * b_star, 2.0 * b_star
    assert float(hw.step_time(n, below)) == pytest.approx(float(hw.memory_time(n)), rel=1e-12)
    assert float(hw.step_time(n, above)) == pytest.approx(
        float(hw.compute_time(n, above)), rel=1e-12
    )
    # throughput grows linearly up to b* and is flat after it
    assert float(hw.throughput(n, below)) == pytest.approx(
        float(below / hw.memory_time(n)), rel=1e-12
    )
    flat = hw.peak_flops * hw.mfu / (2.0 * n)
    assert float(hw.throughput(n, above)) == pytest.approx(float(flat), rel=1e-12)
    assert float(hw.throughput(n, 4.0 * b_star)) == pytest.approx(float(flat), rel=1e-12)
    assert float(hw.dollars_per_token(n, above)) == pytest.approx(
        float(hw.price_per_hour / 3600 / flat), rel=1e-12
    )


@pytest.mark.parametrize("batch", [1.0, 50.0, 400.0])
def test_max_params_against_root_finder(batch):
    latency = 0.030
    for hw in (A100, H100):
        got = float(hw.max_params(latency, batch, density=0.5))
        root = brentq(
            lambda log_n: float(hw.step_time(10.0**log_n, batch, 0.5)) - latency, 6.0, 14.0,
            xtol=1e-14,
        )  # fmt: skip
        assert got == pytest.approx(10.0**root, rel=1e-10)
        memory, compute = hw.roofline(got, batch, 0.5)
        assert max(float(memory), float(compute)) == pytest.approx(latency, rel=1e-12)


# ---------------------------------------------------------------------------- JAX behaviour
def test_check_grads():
    model = CostModel.sardana2024()
    check_grads(
        lambda t, p, d: model.dollars(t, p, d), (1e23, 2e22, 3e21), order=2,
        modes=["fwd", "rev"], eps=1e18,
    )  # fmt: skip
    # every coefficient at once, as relative changes so that one step size suits all
    ones = jax.tree.map(jnp.ones_like, model)

    def scaled(rel):
        return jax.tree.map(jnp.multiply, model, rel).dollars(1e23, 2e22, 3e21)

    check_grads(scaled, (ones,), order=1, modes=["fwd", "rev"])
    log_time = jax.jit(lambda n, b: jnp.log(A100.step_time(10.0**n, b)))
    check_grads(log_time, (10.0, 8.0), order=2, modes=["fwd", "rev"])  # memory-bound
    check_grads(log_time, (10.0, 300.0), order=2, modes=["fwd", "rev"])  # compute-bound
    check_grads(
        lambda n, b: jnp.log(jnp.stack(H100.roofline(10.0**n, b, 0.3))), (9.5, 40.0),
        order=2, modes=["fwd", "rev"],
    )  # fmt: skip
    check_grads(
        lambda log_t: jnp.log(A100.max_params(jnp.exp(log_t), 16.0)),
        (float(np.log(0.02)),),
        order=2,
        modes=["fwd", "rev"],
    )


def test_loop_vmap_jit_agree():
    n = jnp.array([1e9, 7e9, 70e9])
    b = jnp.array([1.0, 64.0, 512.0])
    loop = jnp.stack([H100.throughput(ni, bi) for ni, bi in zip(n, b, strict=True)])
    np.testing.assert_allclose(jax.vmap(H100.throughput)(n, b), loop, rtol=1e-12)
    np.testing.assert_allclose(jax.jit(jax.vmap(H100.throughput))(n, b), loop, rtol=1e-12)
    hws = jax.vmap(lambda p: Hardware.nvidia_a100_sxm_80gb(mfu=p))(jnp.array([0.3, 0.5]))
    got = jax.vmap(lambda hw: hw.crossover_batch_size())(hws)
    want = [float(Hardware.nvidia_a100_sxm_80gb(mfu=p).crossover_batch_size()) for p in (0.3, 0.5)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_no_recompile_on_new_numbers():
    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def cost(model, flops):
        return model.dollars(flops, 0.5 * flops, 0.1 * flops)

    cost(CostModel.sardana2024(), 1e23)
    cost(CostModel.sardana2024_defaults(), 3e22)

    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def serve(hw, n, b):
        return hw.step_time(n, b), hw.max_params(0.05, b)

    serve(A100, 7e9, 8.0)
    serve(H100, 70e9, 256.0)


def test_float32():
    hw32 = jax.tree.map(lambda x: x.astype(jnp.float32), A100)
    got = hw32.step_time(jnp.float32(7e9), jnp.float32(16.0))
    assert got.dtype == jnp.float32
    assert float(got) == pytest.approx(float(A100.step_time(7e9, 16.0)), rel=1e-6)
    cm32 = jax.tree.map(lambda x: x.astype(jnp.float32), CostModel.sardana2024())
    f = jnp.float32(1e23)
    assert float(cm32.dollars(f, f, f)) == pytest.approx(
        float(CostModel.sardana2024().dollars(1e23, 1e23, 1e23)), rel=1e-5
    )


def test_domain_errors_under_jit_and_vmap():
    model = CostModel.sardana2024()
    with pytest.raises(Exception, match="n_params must be > 0"):
        jax.jit(lambda n: train_flops(n, 1e12))(0.0)
    with pytest.raises(Exception, match="n_tokens must be > 0"):
        jax.vmap(lambda t: inference_flops(7e9, t))(jnp.array([1.0, -1.0]))
    with pytest.raises(Exception, match="decode_flops must be >= 0"):
        jax.jit(lambda d: model.dollars(1e23, 0.0, d))(-1.0)
    with pytest.raises(Exception, match="train_flops must be finite"):
        jax.vmap(lambda t: model.dollars(t, 0.0, 0.0))(jnp.array([1e20, jnp.inf]))
    bad = eqx.tree_at(lambda m: m.decode_mfu, model, jnp.asarray(1.5))
    with pytest.raises(Exception, match="decode_mfu must lie in"):
        jax.jit(lambda m: m.dollars(1.0, 1.0, 1.0))(bad)
    with pytest.raises(Exception, match="density must lie in"):
        jax.jit(lambda r: A100.memory_time(7e9, r))(0.0)
    with pytest.raises(Exception, match="batch_size must be > 0"):
        jax.vmap(lambda b: A100.step_time(7e9, b))(jnp.array([4.0, 0.0]))
    with pytest.raises(Exception, match="latency must be > 0"):
        jax.jit(lambda t: H100.max_params(t))(-0.01)
    broken = eqx.tree_at(lambda h: h.memory_bandwidth, A100, jnp.asarray(0.0))
    with pytest.raises(Exception, match="memory_bandwidth must be > 0"):
        jax.jit(lambda h: h.crossover_batch_size())(broken)
    # the raw roofline used in solver loops does not raise
    memory, compute = A100.roofline(7e9, 8.0, 1.0)
    assert np.isfinite(float(memory)) and np.isfinite(float(compute))
