"""Planning under a fit's uncertainty: quantiles of plans over its bootstrap laws."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_finite, check_positive
from .._laws import Chinchilla
from ._forms import COEFFICIENTS


# ================================================================= planning under uncertainty
def _as_batch(laws: Chinchilla) -> Chinchilla:
    if not isinstance(laws, Chinchilla):
        raise ValueError(
            f"laws must be a Chinchilla law or a batch of them, got {type(laws).__name__}"
        )
    shapes = {jnp.shape(getattr(laws, name)) for name in COEFFICIENTS}
    if len(shapes) != 1:
        raise ValueError(f"laws: every coefficient needs the same shape, got {sorted(shapes)}")
    (shape,) = shapes
    if len(shape) == 0:
        return jax.tree.map(lambda x: x[None], laws)
    if len(shape) != 1 or shape[0] == 0:
        raise ValueError(f"laws must be a batch with coefficients of shape (n,), got {shape}")
    return laws


def stack_laws(laws: Sequence[Chinchilla]) -> Chinchilla:
    """One batched `Chinchilla` (coefficients of shape `(n,)`) from `n` single laws."""
    if len(laws) == 0:
        raise ValueError("stack_laws needs at least one law")
    return jax.tree.map(lambda *xs: jnp.stack(xs), *laws)


def laws_from_coefficients(
    coefficients: Mapping[str, ArrayLike] | Sequence[Mapping[str, float]],
) -> Chinchilla:
    """A batch of `Chinchilla` laws from user-supplied coefficient samples.

    **Arguments:**

    - `coefficients`: either a mapping from each of `E`, `A`, `B`, `alpha`, `beta` to equally
      long sequences, or a sequence of mappings (one law each).

    **Returns:** a `Chinchilla` whose fields have shape `(n,)`.
    """
    if isinstance(coefficients, Mapping):
        columns = coefficients
    else:
        rows = list(coefficients)
        if not rows:
            raise ValueError("coefficients: no laws given")
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise ValueError(f"coefficients[{i}] must be a mapping of coefficient names")
            missing = [k for k in COEFFICIENTS if k not in row]
            if missing:
                raise ValueError(f"coefficients[{i}] lacks {', '.join(missing)}")
        columns = {k: [row[k] for row in rows] for k in COEFFICIENTS}
    values = {}
    for name in COEFFICIENTS:
        if name not in columns:
            raise ValueError(f"coefficients lack {name!r}")
        try:
            v = np.asarray(columns[name], dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"coefficients[{name!r}] must be numbers") from None
        if v.ndim != 1 or v.size == 0:
            raise ValueError(
                f"coefficients[{name!r}] must be a non-empty list, got shape {v.shape}"
            )
        if not np.all(np.isfinite(v) & (v > 0)):
            raise ValueError(f"coefficients[{name!r}] must be finite and > 0")
        values[name] = v
    if len({v.size for v in values.values()}) != 1:
        raise ValueError("coefficients: every coefficient needs the same number of samples")
    return Chinchilla(**{k: jnp.asarray(v) for k, v in values.items()})


def _quantiles(x: Float[Array, " n"], quantiles: Sequence[float]) -> Float[Array, " q"]:
    """Linear-interpolation quantiles (NumPy's default) that treat +inf as a value."""
    xs = jnp.sort(x)
    n = xs.shape[0]
    pos = jnp.asarray(quantiles, dtype=xs.dtype) * (n - 1)
    lo = jnp.floor(pos).astype(jnp.int32)
    hi = jnp.minimum(lo + 1, n - 1)
    frac = pos - lo.astype(xs.dtype)
    a, b = xs[lo], xs[hi]
    return jnp.where(frac == 0, a, jnp.where(jnp.isinf(b), b, a + (b - a) * frac))


def _check_quantiles(quantiles: Sequence[float]) -> tuple[float, ...]:
    q = tuple(float(v) for v in quantiles)
    if not q or not all(0.0 <= v <= 1.0 for v in q):
        raise ValueError(
            f"quantiles must be a non-empty sequence of numbers in [0, 1], got {quantiles!r}"
        )
    return q


def loss_optimal_quantiles(
    laws: Chinchilla,
    target_loss: ArrayLike,
    quantiles: Sequence[float] = (0.025, 0.5, 0.975),
) -> dict[str, Float[Array, " q"]]:
    r"""Quantiles of the training-optimal plan for a target loss over a batch of laws.

    For each law the closed form `Chinchilla.loss_optimal` gives
    $N_c = [A(1 + \alpha/\beta)/(\ell - E)]^{1/\alpha}$,
    $D_c = [B(1 + \beta/\alpha)/(\ell - E)]^{1/\beta}$ and the cost $C = 6 N_c D_c$; a law
    whose $E \ge \ell$ cannot reach the target and counts as $+\infty$.

    **Arguments:**

    - `laws`: a batch of `Chinchilla` laws (e.g. `LawFit.bootstrap`).
    - `target_loss`: the loss $\ell$ to reach.
    - `quantiles`: probabilities in [0, 1].

    **Returns:** a dict with `n_params`, `n_tokens`, `train_flops` (each one value per quantile)
    and `feasible`, the fraction of laws that can reach the target.
    """
    laws = _as_batch(laws)
    q = _check_quantiles(quantiles)
    target = jnp.asarray(target_loss, dtype=laws.E.dtype)
    if target.ndim != 0:
        raise ValueError("target_loss must be a scalar; vmap for several targets")
    return _loss_optimal_quantiles(laws, target, q)


@eqx.filter_jit
def _loss_optimal_quantiles(laws, target, q):
    dtype = laws.E.dtype
    target = check_finite(target, "target_loss")
    feasible = laws.E < target
    safe = jnp.where(feasible, target, laws.E + 1.0)
    n, d = jax.vmap(lambda law, t: law.loss_optimal(t))(laws, safe)
    n = jnp.where(feasible, n, jnp.inf)
    d = jnp.where(feasible, d, jnp.inf)
    return {
        "n_params": _quantiles(n, q),
        "n_tokens": _quantiles(d, q),
        "train_flops": _quantiles(6.0 * n * d, q),
        "feasible": jnp.mean(feasible.astype(dtype)),
    }


def compute_optimal_quantiles(
    laws: Chinchilla,
    train_flops: ArrayLike,
    quantiles: Sequence[float] = (0.025, 0.5, 0.975),
) -> dict[str, Float[Array, " q"]]:
    r"""Quantiles of the training-optimal plan for a compute budget over a batch of laws.

    For each law the closed form `Chinchilla.compute_optimal` gives
    $N^* = G (C/6)^{\beta/(\alpha+\beta)}$, $D^* = (C/6)^{\alpha/(\alpha+\beta)}/G$, and the
    loss it reaches $L(N^*, D^*)$.

    **Arguments:**

    - `laws`: a batch of `Chinchilla` laws.
    - `train_flops`: the budget $C$, > 0.
    - `quantiles`: probabilities in [0, 1].

    **Returns:** a dict with `n_params`, `n_tokens` and `loss`, one value per quantile each.
    """
    laws = _as_batch(laws)
    q = _check_quantiles(quantiles)
    budget = jnp.asarray(train_flops, dtype=laws.E.dtype)
    if budget.ndim != 0:
        raise ValueError("train_flops must be a scalar; vmap for several budgets")
    return _compute_optimal_quantiles(laws, budget, q)


@eqx.filter_jit
def _compute_optimal_quantiles(laws, budget, q):
    budget = check_positive(budget, "train_flops")
    n, d = jax.vmap(lambda law: law.compute_optimal(budget))(laws)
    loss = jax.vmap(lambda law, n_, d_: law.loss(n_, d_))(laws, n, d)
    return {"n_params": _quantiles(n, q), "n_tokens": _quantiles(d, q), "loss": _quantiles(loss, q)}


def probability_meets_target(
    laws: Chinchilla,
    n_params: ArrayLike,
    n_tokens: ArrayLike,
    target_loss: ArrayLike,
) -> Float[Array, ...]:
    r"""Probability that the plan $(N, D)$ reaches `target_loss`, over a batch of laws.

    $$P = \frac{1}{n}\sum_{k=1}^{n} \mathbf{1}\big[L_k(N, D) \le \ell\big]$$

    **Arguments:**

    - `laws`: a batch of `Chinchilla` laws (bootstrap or user-supplied samples, equally
      weighted).
    - `n_params`, `n_tokens`: the plan, > 0 (arrays broadcast: one probability per plan).
    - `target_loss`: $\ell$.

    **Returns:** the fraction of laws under which the plan's loss is at most the target.
    """
    laws = _as_batch(laws)
    dtype = laws.E.dtype
    return _probability_meets_target(
        laws,
        jnp.asarray(n_params, dtype=dtype),
        jnp.asarray(n_tokens, dtype=dtype),
        jnp.asarray(target_loss, dtype=dtype),
    )


@eqx.filter_jit
def _probability_meets_target(laws, n, d, target):
    dtype = laws.E.dtype
    n = check_positive(n, "n_params")
    d = check_positive(d, "n_tokens")
    target = check_finite(target, "target_loss")
    n, d, target = jnp.broadcast_arrays(n, d, target)
    met = jax.vmap(lambda law: law.loss(n, d) <= target)(laws)
    return jnp.mean(met.astype(dtype), axis=0)
