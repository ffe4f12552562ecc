"""Pruning: IMP cost factors, performance-vs-density laws and the `Pruning` stage."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from planner import Allocation, Chinchilla, Pipeline, Pretraining
from planner._techniques.pruning import (
    IMP_VARIANTS,
    Pruning,
    SparsityLaw,
    _rosenfeld_error,
    _training_factor,
    imp_inference_factor,
    imp_training_factor,
    rosenfeld_error,
)

# ------------------------------------------------------------------------------- IMP cost model
# Villalobos & Atkinson 2023 (pruning section): Epoch's training factor (1 - d)/x with
# x = 0.2, and the same in OOM.
EPOCH_TABLE = [
    (0.8, 1.00, 0.0),
    (0.5, 2.50, 0.398),
    (0.2, 4.00, 0.602),
    (0.1, 4.50, 0.653),
    (0.05, 4.75, 0.677),
    (0.8**20, 4.94, 0.694),
]


@pytest.mark.parametrize("density, factor, oom", EPOCH_TABLE)
def test_epoch_table(density, factor, oom):
    f = float(imp_training_factor(density, 0.2, "epoch"))
    assert abs(f - factor) < 0.005
    assert abs(math.log10(f) - oom) < 0.0005


def _closed_form(d, x, variant):
    if variant == "epoch":
        return (1 - d) / x
    if variant == "final_retrain":
        return (1 - d * (1 - x)) / x
    return np.log(d) / np.log(1 - x) + 1


@pytest.mark.parametrize("variant", IMP_VARIANTS)
def test_variants_match_closed_forms(variant):
    d = np.geomspace(1e-6, 1.0, 25)[:, None]
    x = np.array([0.05, 0.2, 0.5, 0.9])[None, :]
    got = jax.jit(imp_training_factor, static_argnums=2)(d, x, variant)
    np.testing.assert_allclose(got, _closed_form(d, x, variant), rtol=1e-12, atol=1e-14)


def test_variant_relations():
    d = np.geomspace(1e-4, 1.0, 9)
    for x in (0.1, 0.2, 0.6):
        epoch = imp_training_factor(d, x, "epoch")
        final = imp_training_factor(d, x, "final_retrain")
        # counting the final retrain adds exactly its cost, d
        np.testing.assert_allclose(final - epoch, d, rtol=1e-12, atol=1e-14)
        # both series are bounded by 1/x
        assert np.all(final <= 1 / x + 1e-12)
        # n whole rounds of dense-cost retraining cost n + 1 dense trainings
        rounds = np.arange(6)
        dense = imp_training_factor((1 - x) ** rounds, x, "dense_rounds")
        np.testing.assert_allclose(dense, rounds + 1, rtol=1e-12)
    # epoch's factor is below 1 for d > 1 - x and 0 at d = 1; the others are 1 at d = 1
    assert float(imp_training_factor(0.9, 0.2, "epoch")) < 1
    assert float(imp_training_factor(1.0, 0.2, "epoch")) == 0.0
    assert float(imp_training_factor(1.0, 0.2, "final_retrain")) == 1.0
    assert float(imp_training_factor(1.0, 0.2, "dense_rounds")) == 1.0
    np.testing.assert_array_equal(imp_inference_factor(d), d)


def test_training_factor_gradients():
    # Raw maths of every variant, at once, at d = 0.05, 0.5, 1 - 1e-9 and exactly 1 (finite
    # differences step past 1, where the formulas continue smoothly) and at d = 1e-6, 1e-12
    # through log d (so that the steps stay positive); derivatives in x are checked too.
    def f(d, log_d, x):
        dd = jnp.concatenate([d, jnp.exp(log_d)])
        return jnp.concatenate([_training_factor(dd, x, v) for v in IMP_VARIANTS])

    d = jnp.array([0.05, 0.5, 1 - 1e-9, 1.0])
    log_d = jnp.log(jnp.array([1e-6, 1e-12]))
    check_grads(jax.jit(f), (d, log_d, 0.2), order=2, modes=["fwd", "rev"], eps=1e-5)


def test_checked_functions_differentiate_like_raw_maths():
    # the checks are identities: the public functions have the raw maths' derivatives in d
    def both(d):
        x, rosenfeld = 0.25, (0.08, 0.01, 1.2, 0.9)
        pairs = [(imp_training_factor(d, x, v), _training_factor(d, x, v)) for v in IMP_VARIANTS]
        pairs.append((rosenfeld_error(d, *rosenfeld), _rosenfeld_error(d, *rosenfeld)))
        checked, raw = zip(*pairs)
        return jnp.stack(checked), jnp.stack(raw)

    def derivatives(d):
        first = jax.vmap(jax.jacfwd(both))(d)
        second = jax.vmap(jax.jacfwd(jax.jacrev(both)))(d)
        return first, second

    first, second = jax.jit(derivatives)(jnp.array([0.05, 0.3, 0.9]))
    for checked, raw in (first, second):
        np.testing.assert_array_equal(checked, raw)
        assert np.all(np.isfinite(checked))


EDGE_DENSITIES = [0.0, 1e-300, 1e-20, 2.3e-16, 1e-9, 0.5, 1 - 1e-9, 1.0]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("variant", IMP_VARIANTS)
def test_training_factor_finite_at_edges(variant, dtype):
    def f(d):
        return _training_factor(d, jnp.asarray(0.2, dtype), variant)

    d = jnp.asarray(EDGE_DENSITIES, dtype)
    value = jax.vmap(f)(d)
    first = jax.vmap(jax.grad(f))(d)
    second = jax.vmap(jax.grad(jax.grad(f)))(d)
    assert value.dtype == dtype
    for out in (value, first, second):
        assert np.all(np.isfinite(out))


# --------------------------------------------------------------------------- Rosenfeld et al.
def _rosenfeld_numpy(d, e_np, p, gamma, e_up):
    # the paper's complex-modulus form, evaluated with numpy complex numbers
    k = (e_up / e_np) ** (1 / gamma)
    return e_np * np.abs((d - 1j * p * k) / (d - 1j * p)) ** gamma


def test_rosenfeld_matches_complex_form():
    rng = np.random.default_rng(0)
    d = rng.uniform(1e-4, 1.0, 64)
    e_np = rng.uniform(0.02, 0.3, 64)
    p = 10 ** rng.uniform(-4, -1, 64)
    gamma = rng.uniform(0.3, 3.0, 64)
    e_up = e_np * rng.uniform(1.5, 20.0, 64)
    got = jax.jit(rosenfeld_error)(d, e_np, p, gamma, e_up)
    np.testing.assert_allclose(got, _rosenfeld_numpy(d, e_np, p, gamma, e_up), rtol=1e-12)


def test_rosenfeld_limits():
    # flat at the dense error for d >> p k; plateau at the upper error for d << p
    e_np, e_up, gamma = 0.05, 0.9, 0.5
    assert np.isclose(float(rosenfeld_error(1.0, e_np, 1e-7, gamma, e_up)), e_np, rtol=1e-6)
    assert np.isclose(float(rosenfeld_error(1e-10, e_np, 1e-2, gamma, e_up)), e_up, rtol=1e-6)
    # slope -gamma in between: at d = p sqrt(k) it is exactly -gamma (k - 1)/(k + 1)
    e_np, e_up, gamma, p = 1e-3, 1.0, 0.5, 1e-9
    k = (e_up / e_np) ** (1 / gamma)

    def log_error(log_d):
        return jnp.log(rosenfeld_error(jnp.exp(log_d), e_np, p, gamma, e_up))

    slope = float(jax.grad(log_error)(math.log(p * math.sqrt(k))))
    assert np.isclose(slope, -gamma * (k - 1) / (k + 1), rtol=1e-9)
    assert abs(slope + gamma) < 1e-5
    # and monotone: pruning never lowers the error when e_up > e_np
    d = jnp.geomspace(1e-12, 1.0, 200)
    assert np.all(np.diff(np.asarray(rosenfeld_error(d, e_np, p, gamma, e_up))) <= 0)


def test_rosenfeld_gradients_and_edges():
    d = jnp.array([0.02, 0.3, 1.0])
    args = (d, 0.08, 0.01, 1.2, 0.9)
    check_grads(jax.jit(_rosenfeld_error), args, order=2, modes=["fwd", "rev"], eps=1e-5)

    def at_edge(d):
        f = _rosenfeld_error
        args = (d, 0.08, 0.01, 1.2, 0.9)
        return f(*args), jax.grad(f)(*args), jax.hessian(f)(*args)

    for out in jax.jit(jax.vmap(at_edge))(jnp.asarray(EDGE_DENSITIES)):
        assert np.all(np.isfinite(out))


# --------------------------------------------------------------------------- Frantar et al.
def test_vit_preset_matches_authors_fit():
    # The coefficients printed by the authors' notebook (jaxpruner, projects/bigsparse,
    # sparsity-scaling.ipynb) for ViT/JFT-4B, fitted with N in millions and D in billions of
    # images as  (a (1/(1-S))^-b + c) N^-bn + e D^-f + g.
    a, b, c, bn = 1.30485411, 0.82101251, 2.07506343, 0.39222675
    e, f, g = 0.27818217, 0.88979104, 4.51669257
    law = SparsityLaw.frantar2023_vit()
    scale = 1e6**bn
    expected = dict(a_S=a * scale, b_S=b, c_S=c * scale, b_N=bn, a_D=1e9 * e ** (1 / f), b_D=f, c=g)
    for name, value in expected.items():
        # the table is rounded to three significant figures
        assert np.isclose(float(getattr(law, name)), value, rtol=5e-3), name
    s, n, dd = 0.75, 2e7, 4e9
    notebook = (a * (1 / (1 - s)) ** -b + c) * (n / 1e6) ** -bn + e * (dd / 1e9) ** -f + g
    assert np.isclose(float(law(1 - s, n, dd)), notebook, rtol=1e-3)


def test_t5_effective_size():
    law = SparsityLaw.frantar2023_t5()
    # the paper's reading of the T5 fit: a 75%-sparse model is worth a dense one 2.16x its
    # non-zero count (as quoted by the summary the constants were taken from)
    assert round(float(law.effective_params_multiplier(0.25)), 2) == 2.16
    # limit S -> 1: ((a_S + c_S)/c_S)^(1/b_N)
    limit = ((16.8 + 45.0) / 45.0) ** (1 / 0.245)
    assert np.isclose(float(law.effective_params_multiplier(1e-12)), limit, rtol=1e-6)
    # closed form of the whole law at a few points
    d, n, t = np.array([1.0, 0.5, 0.125]), np.array([1e8, 3e8, 1e9]), np.array([1e10, 3e10, 1e11])
    expected = (16.8 * d**0.722 + 45.0) * n**-0.245 + (6.90e8 / t) ** 0.203 + 0.651
    np.testing.assert_allclose(law(d, n, t), expected, rtol=1e-12)


@pytest.mark.parametrize("law", [SparsityLaw.frantar2023_t5(), SparsityLaw.frantar2023_vit()])
def test_dense_equivalent_fraction(law):
    d = jnp.geomspace(1e-6, 1.0, 300)
    g = np.asarray(law.effective_params_multiplier(d))
    fraction = np.asarray(law.dense_equivalent_fraction(d))
    a_s, b_s, c_s, b_n = (float(v) for v in (law.a_S, law.b_S, law.c_S, law.b_N))
    g_np = ((a_s + c_s) / (a_s * np.asarray(d) ** b_s + c_s)) ** (1 / b_n)
    np.testing.assert_allclose(g, g_np, rtol=1e-12)
    np.testing.assert_allclose(fraction, np.asarray(d) * g_np, rtol=1e-12)
    assert g[-1] == 1.0 and fraction[-1] == 1.0
    # sparsity is worth more than its non-zero count, but pruning a dense model never helps
    assert np.all(np.diff(g) < 0) and np.all(np.diff(fraction) > 0)
    assert np.all(fraction[:-1] < 1)


# ------------------------------------------------------------------------------ Pruning stage
LAW = Chinchilla.sardana2024()


def _pipeline(variant="final_retrain", rounds_fraction=0.2, law=LAW):
    stage = Pruning(law, rounds_fraction=rounds_fraction, variant=variant)
    return Pipeline(Pretraining(law), stage)


@pytest.mark.parametrize("variant", ["final_retrain", "dense_rounds"])
def test_stage_is_identity_at_full_density(variant):
    allocation = Allocation(n_params=7e9, n_tokens=1.4e11, density=1.0)
    pruned = _pipeline(variant)(allocation)
    dense = Pretraining(LAW)(allocation)
    for name in ("train_flops", "inference_flops_per_unit", "loss", "irreducible_loss"):
        assert float(getattr(pruned, name)) == float(getattr(dense, name)), name
    assert pruned.score is None
    # the epoch variant counts no training at d = 1 (why it is not the default)
    assert float(_pipeline("epoch")(allocation).train_flops) == 0.0


@pytest.mark.parametrize("variant", IMP_VARIANTS)
def test_stage_against_closed_forms(variant):
    n, t, d, x = 7e9, 1.4e11, 0.3, 0.25
    out = _pipeline(variant, x)(Allocation(n_params=n, n_tokens=t, density=d))
    np.testing.assert_allclose(out.train_flops, 6 * n * t * _closed_form(d, x, variant), rtol=1e-12)
    np.testing.assert_allclose(out.inference_flops_per_unit, 2 * n * d, rtol=1e-12)
    # the pruned model is scored as a dense model of d g(d) N parameters
    g = ((16.8 + 45.0) / (16.8 * d**0.722 + 45.0)) ** (1 / 0.245)
    n_equiv = d * g * n
    expected = 1.69 + 406.4 * n_equiv**-0.336 + 410.7 * t**-0.283
    np.testing.assert_allclose(out.loss, expected, rtol=1e-12)
    assert float(out.loss) > float(LAW.loss(n, t))


def test_pruning_interferes_with_overtraining():
    # both act on the parameter term: on one iso-loss curve, the same density costs an
    # overtrained (smaller) model more loss than the training-optimal one
    n_opt, d_opt = LAW.loss_optimal(2.0)
    n_small = n_opt / 4
    d_small = LAW.iso_loss_tokens(n_small, 2.0)
    penalty = []
    for n, t in ((n_opt, d_opt), (n_small, d_small)):
        dense = Pretraining(LAW)(Allocation(n_params=n, n_tokens=t))
        pruned = _pipeline()(Allocation(n_params=n, n_tokens=t, density=0.25))
        np.testing.assert_allclose(dense.loss, 2.0, rtol=1e-12)
        penalty.append(float(pruned.loss - dense.loss))
    fraction = float(SparsityLaw.frantar2023_t5().dense_equivalent_fraction(0.25))
    expected = [406.4 * n**-0.336 * (fraction**-0.336 - 1) for n in (n_opt, n_small)]
    np.testing.assert_allclose(penalty, expected, rtol=1e-9)
    # a 4x smaller model pays 4^alpha times the loss for the same density
    assert np.isclose(penalty[1] / penalty[0], 4**0.336, rtol=1e-9)


def test_stage_jit_vmap_loop_agree():
    rng = np.random.default_rng(1)
    batch = Allocation(
        n_params=10 ** rng.uniform(8, 11, 8),
        n_tokens=10 ** rng.uniform(10, 13, 8),
        density=rng.uniform(0.01, 1.0, 8),
        n_samples=np.ones(8),
        serving_batch=np.ones(8),  # every field batched: vmap maps each leaf's axis 0
        step_time=np.ones(8),
    )
    pipeline = _pipeline()
    vmapped = jax.vmap(pipeline)(batch)
    jitted = jax.jit(jax.vmap(lambda p, a: p(a), in_axes=(None, 0)))(pipeline, batch)
    for i in range(8):
        one = pipeline(jax.tree.map(lambda leaf: leaf[i], batch))
        for name in ("train_flops", "inference_flops_per_unit", "loss"):
            np.testing.assert_allclose(getattr(vmapped, name)[i], getattr(one, name), rtol=1e-13)
            np.testing.assert_allclose(getattr(jitted, name)[i], getattr(one, name), rtol=1e-13)
    # a batch of stages (different rounds fractions) under vmap
    fractions = jnp.array([0.1, 0.2, 0.5])
    stages = jax.vmap(lambda x: Pruning(LAW, rounds_fraction=x))(fractions)
    allocation = Allocation(n_params=1e9, n_tokens=2e10, density=0.2)
    base = Pretraining(LAW)(allocation)
    out = jax.vmap(lambda stage: stage(allocation, base))(stages)
    expected = 6 * 1e9 * 2e10 * (1 - 0.2 * (1 - fractions)) / fractions
    np.testing.assert_allclose(out.train_flops, expected, rtol=1e-12)


def test_changing_numbers_does_not_recompile():
    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def run(pipeline, allocation):
        return pipeline(allocation)

    allocation = Allocation(n_params=7e9, n_tokens=1.4e11, density=0.5)
    run(_pipeline(), allocation)
    run(_pipeline(rounds_fraction=0.3), allocation)
    run(_pipeline(law=Chinchilla.besiroglu2024()), allocation)
    other = Pruning(LAW, sparsity_law=SparsityLaw.frantar2023_vit())
    run(Pipeline(Pretraining(LAW), other), Allocation(n_params=1e9, n_tokens=2e10, density=0.1))
    # the variant is static: changing it is a new program, and the counter notices
    with pytest.raises(RuntimeError, match="traced 2 times"):
        run(_pipeline(variant="dense_rounds"), allocation)


def test_stage_finite_at_edges_and_in_float32():
    pipeline = _pipeline()
    for d in (0.0, 1e-300, 1e-12, 1.0):
        allocation = Allocation(n_params=7e9, n_tokens=1.4e11, density=d)
        out = pipeline(allocation)
        grad = jax.grad(lambda dd: pipeline(Allocation(7e9, 1.4e11, dd)).loss)(d)
        assert all(np.isfinite(v) for v in (out.train_flops, out.inference_flops_per_unit,
                                            out.loss, grad))
    to32 = lambda tree: jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), tree)  # noqa: E731
    law32 = to32(LAW)
    pipeline32 = Pipeline(Pretraining(law32), to32(Pruning(law32)))
    allocation32 = to32(Allocation(n_params=7e9, n_tokens=1.4e11, density=0.3))
    out = eqx.filter_jit(lambda p, a: p(a))(pipeline32, allocation32)
    assert out.loss.dtype == jnp.float32
    np.testing.assert_allclose(out.loss, pipeline(Allocation(7e9, 1.4e11, 0.3)).loss, rtol=1e-5)


# ----------------------------------------------------------------------------------- errors
CHECKED = [
    lambda d: imp_training_factor(d),
    lambda d: imp_training_factor(d, 0.2, "epoch"),
    imp_inference_factor,
    lambda d: rosenfeld_error(d, 0.08, 0.01, 1.2, 0.9),
    lambda d: SparsityLaw.frantar2023_t5()(d, 1e9, 1e10),
    lambda d: SparsityLaw.frantar2023_t5().effective_params_multiplier(d),
    lambda d: SparsityLaw.frantar2023_t5().dense_equivalent_fraction(d),
]


@pytest.mark.parametrize("fn", CHECKED)
def test_density_checked_under_jit_and_vmap(fn):
    jitted, vmapped = eqx.filter_jit(fn), jax.vmap(fn)
    for bad in (0.0, -0.5, 1.0 + 1e-9, float("nan")):
        with pytest.raises(RuntimeError, match="density must"):
            jitted(jnp.asarray(bad))
        with pytest.raises(RuntimeError, match="density must"):
            vmapped(jnp.array([0.5, bad]))
    assert np.all(np.isfinite(vmapped(jnp.array([0.5, 1.0]))))


def test_rounds_fraction_checked():
    jitted = eqx.filter_jit(imp_training_factor)
    vmapped = jax.vmap(imp_training_factor, in_axes=(None, 0))
    for bad in (0.0, 1.0, -0.1, 1.5, float("inf")):
        with pytest.raises(RuntimeError, match="rounds_fraction must"):
            jitted(0.5, jnp.asarray(bad))
        with pytest.raises(RuntimeError, match="rounds_fraction must"):
            vmapped(0.5, jnp.array([0.2, bad]))


def test_structural_errors():
    with pytest.raises(ValueError, match="unknown IMP variant"):
        imp_training_factor(0.5, 0.2, "one_shot")
    with pytest.raises(ValueError, match="unknown IMP variant"):
        Pruning(LAW, variant="one_shot")
    with pytest.raises(ValueError, match="Chinchilla law"):
        Pruning(SparsityLaw.frantar2023_t5())
    assert Pruning.variables == ("density",)
    assert _pipeline().variables == ("n_params", "n_tokens", "density")
