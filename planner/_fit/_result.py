"""`fit`: the point estimate and its bootstrap, as a `LawFit`."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray

from .._checks import check_positive
from .._laws import AbstractLossLaw
from ._forms import HUBER_DELTA, AbstractLawForm, ChinchillaForm
from ._optimise import MultiStartBFGS, bootstrap_weights, huber_fit


# ====================================================================================== result
def _coefficients(law: AbstractLossLaw, names: Sequence[str]) -> dict[str, np.ndarray]:
    return {name: np.asarray(getattr(law, name), dtype=np.float64) for name in names}


class LawFit(eqx.Module):
    """A fitted loss law with its bootstrap distribution.

    **Arguments:**

    - `law`: the point estimate.
    - `theta`: its unconstrained coefficients.
    - `objective`: summed Huber loss at the point estimate.
    - `grad_norm`, `converged`: the gradient norm there and whether it met the tolerance.
    - `start_objective`: the objective every start reached in the first pass.
    - `bootstrap`: the law refitted to each resample, a batch of laws (array fields of shape
      `(n_bootstrap,)`), or `None`.
    - `bootstrap_objective`, `bootstrap_grad_norm`, `bootstrap_converged`: per resample.
    - `names`: coefficient names of the law.
    - `n_runs`: runs used (after dropping).
    - `dropped`: indices (in the input order) of the runs left out.
    - `huber_delta`, `n_starts`, `n_bootstrap`: the settings used.
    - `fitted_range`: the smallest and largest `n_params` and `n_tokens` of the runs used,
      the range within which the law was tested.
    """

    law: AbstractLossLaw
    theta: Float[Array, " p"]
    objective: Float[Array, ""]
    grad_norm: Float[Array, ""]
    converged: Bool[Array, ""]
    start_objective: Float[Array, " start"]
    bootstrap: AbstractLossLaw | None
    bootstrap_objective: Float[Array, " boot"] | None
    bootstrap_grad_norm: Float[Array, " boot"] | None
    bootstrap_converged: Bool[Array, " boot"] | None
    names: tuple[str, ...] = eqx.field(static=True)
    n_runs: int = eqx.field(static=True)
    dropped: tuple[int, ...] = eqx.field(static=True)
    huber_delta: float = eqx.field(static=True)
    n_starts: int = eqx.field(static=True)
    n_bootstrap: int = eqx.field(static=True)
    fitted_range: dict[str, tuple[float, float]] | None = eqx.field(static=True, default=None)

    def coefficients(self) -> dict[str, float]:
        """The point estimate, by coefficient name."""
        return {k: float(v) for k, v in _coefficients(self.law, self.names).items()}

    def bootstrap_coefficients(self) -> dict[str, np.ndarray]:
        """Every resample's coefficients, by name (empty arrays without a bootstrap).

        A resample whose refit is not finite (none in the tests and experiments) is left out,
        so the arrays can be shorter than `n_bootstrap`.
        """
        if self.bootstrap is None:
            return {name: np.zeros((0,)) for name in self.names}
        values = _coefficients(self.bootstrap, self.names)
        finite = np.all([np.isfinite(v) for v in values.values()], axis=0)
        return {name: v[finite] for name, v in values.items()}

    def standard_errors(self) -> dict[str, float]:
        """Bootstrap standard deviation of each coefficient (NaN with fewer than 2 resamples)."""
        out = {}
        for name, values in self.bootstrap_coefficients().items():
            out[name] = float(np.std(values, ddof=1)) if values.size >= 2 else math.nan
        return out

    def interval(self, level: float = 0.95) -> dict[str, tuple[float, float]]:
        """Percentile bootstrap interval of each coefficient at `level` (e.g. 0.95)."""
        if not 0 < level < 1:
            raise ValueError(f"level must lie in (0, 1), got {level}")
        lo, hi = 50 * (1 - level), 50 * (1 + level)
        out = {}
        for name, values in self.bootstrap_coefficients().items():
            if values.size == 0:
                out[name] = (math.nan, math.nan)
            else:
                out[name] = (float(np.percentile(values, lo)), float(np.percentile(values, hi)))
        return out

    def to_record(self, include_bootstrap: bool = True) -> dict[str, Any]:
        """The FIT.json record (see `write_fit_json`)."""
        record: dict[str, Any] = dict(self.coefficients())
        if self.n_bootstrap >= 2:
            record["standard_errors"] = self.standard_errors()
            record["ci95"] = {k: [lo, hi] for k, (lo, hi) in self.interval(0.95).items()}
        else:
            record["standard_errors"] = None
            record["ci95"] = None
        record.update(
            n_runs=self.n_runs,
            dropped=list(self.dropped),
            huber_delta=self.huber_delta,
            n_starts=self.n_starts,
            n_bootstrap=self.n_bootstrap,
            objective=float(self.objective),
            grad_norm=float(self.grad_norm),
            converged=bool(self.converged),
        )
        if self.fitted_range is not None:
            record["fitted_range"] = {k: list(v) for k, v in self.fitted_range.items()}
        if self.bootstrap_converged is not None:
            record["bootstrap_converged"] = float(np.mean(np.asarray(self.bootstrap_converged)))
        if include_bootstrap and self.bootstrap is not None:
            record["bootstrap"] = {k: v.tolist() for k, v in self.bootstrap_coefficients().items()}
        return record


def highest_loss(loss: ArrayLike, k: int) -> np.ndarray:
    """Indices of the `k` runs with the highest loss, ascending (ties broken by input order)."""
    loss = np.asarray(loss)
    if not 0 <= k < loss.size:
        raise ValueError(f"drop_highest_loss must lie in [0, {loss.size}), got {k}")
    order = np.argsort(-loss, kind="stable")
    return np.sort(order[:k])


@eqx.filter_jit
def _refit(form, theta, n, d, ell, weights, delta, solver):
    """One batch of bootstrap refits, started from the point estimate `theta`."""
    return jax.vmap(huber_fit, in_axes=(None, None, None, None, None, 0, None, None))(
        form, theta, n, d, ell, weights, delta, solver)


def fit(
    n_params: ArrayLike,
    n_tokens: ArrayLike,
    loss: ArrayLike,
    *,
    drop_highest_loss: int = 0,
    form: AbstractLawForm | None = None,
    starts: ArrayLike | None = None,
    huber_delta: float = HUBER_DELTA,
    n_bootstrap: int = 1000,
    key: PRNGKeyArray | None = None,
    solver: MultiStartBFGS = MultiStartBFGS(),
    bootstrap_batch: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> LawFit:
    r"""Fit a loss law to training runs by the published method, with bootstrap uncertainty.

    Minimises
    $\sum_i h_\delta\big(\log \hat L_\theta(N_i, D_i) - \log L_i\big)$
    from every starting point as one batch and keeps the best optimum, then refits each of
    `n_bootstrap` resamples of the runs (drawn with replacement, started from the point
    estimate) as a second batch.

    **Arguments:**

    - `n_params`, `n_tokens`, `loss`: one entry per run; all > 0.
    - `drop_highest_loss`: leave out this many runs with the highest loss first (Besiroglu
      et al. drop 5 of the 245 Chinchilla runs).
    - `form`: the law's parametrisation; default `ChinchillaForm()`.
    - `starts`: starting points `(n_starts, n_theta)`; default `form.starts()` (Hoffmann's
      4,500-point grid for Chinchilla).
    - `huber_delta`: $\delta$; default $10^{-3}$.
    - `n_bootstrap`: resamples (0 for none; otherwise at least 2).
    - `key`: PRNG key of the resampling; default `jax.random.key(0)`.
    - `solver`: iteration counts and tolerance.
    - `bootstrap_batch`: refit the resamples this many at a time (each batch one compiled
      solve of the same shape, the last padded); default: all at once, or 50 at a time with
      `on_progress`. A resample's refit does not depend on the others in its batch, only (in
      its last bits) on the batch's size.
    - `on_progress`: called as `on_progress(done, n_bootstrap)` once the point estimate is
      found (`done` 0) and after each batch.

    **Returns:** a [`LawFit`][planner.fitting.LawFit].

    **Example:**

    ```python
    result = planner.fit(n_params, n_tokens, loss, drop_highest_loss=5)
    result.law, result.interval(0.95), result.bootstrap  # batch of laws
    ```

    **References:**

    Hoffmann et al. 2022, *Training Compute-Optimal Large Language Models*, App. D.2;
    Besiroglu et al. 2024, *Chinchilla Scaling: A replication attempt*, arXiv 2404.10102.
    """
    form = ChinchillaForm() if form is None else form
    given = {"n_params": n_params, "n_tokens": n_tokens, "loss": loss}
    dtype = jax.dtypes.canonicalize_dtype(
        np.result_type(np.float32, *(np.asarray(v).dtype for v in given.values()))
    )
    arrays = {}
    for name, value in given.items():
        value = jnp.asarray(np.asarray(value), dtype=dtype)
        if value.ndim != 1:
            raise ValueError(
                f"{name} must be one-dimensional (one entry per run), got shape {value.shape}"
            )
        arrays[name] = check_positive(value, name)
    sizes = {v.shape[0] for v in arrays.values()}
    if len(sizes) != 1:
        raise ValueError(
            "n_params, n_tokens and loss must have one entry per run each, got lengths "
            + ", ".join(str(v.shape[0]) for v in arrays.values())
        )
    if not isinstance(n_bootstrap, int) or n_bootstrap < 0 or n_bootstrap == 1:
        raise ValueError(f"n_bootstrap must be 0 or an integer >= 2, got {n_bootstrap!r}")
    if not huber_delta > 0:
        raise ValueError(f"huber_delta must be > 0, got {huber_delta}")
    dropped = highest_loss(np.asarray(arrays["loss"]), drop_highest_loss)
    keep = np.setdiff1d(np.arange(arrays["loss"].shape[0]), dropped)
    n, d, ell = (arrays[k][keep] for k in ("n_params", "n_tokens", "loss"))
    dtype = ell.dtype
    starts = form.starts() if starts is None else jnp.asarray(starts)
    if starts.ndim != 2 or starts.shape[0] < 1:
        raise ValueError(f"starts must have shape (n_starts, n_theta), got {starts.shape}")
    starts = starts.astype(dtype)
    n_theta = starts.shape[1]
    if keep.size < n_theta:
        raise ValueError(
            f"need at least {n_theta} runs to fit {n_theta} coefficients, got {keep.size}"
        )
    delta = jnp.asarray(huber_delta, dtype=dtype)

    point = huber_fit(form, starts, n, d, ell, None, delta, solver)
    law = form.law(point.theta)

    boot_law = boot_obj = boot_grad = boot_conv = None
    if n_bootstrap:
        key = jax.random.key(0) if key is None else key
        weights = bootstrap_weights(key, keep.size, n_bootstrap).astype(dtype)
        if bootstrap_batch is None:
            bootstrap_batch = n_bootstrap if on_progress is None else 50
        if bootstrap_batch < 1:
            raise ValueError(f"bootstrap_batch must be >= 1, got {bootstrap_batch}")
        size = min(bootstrap_batch, n_bootstrap)
        batches = []
        if on_progress is not None:
            on_progress(0, n_bootstrap)
        for start in range(0, n_bootstrap, size):
            part = weights[start:start + size]
            rows = part.shape[0]
            if rows < size:  # the last batch, padded with copies of its first resample
                part = jnp.concatenate([part, jnp.repeat(part[:1], size - rows, axis=0)])
            out = _refit(form, point.theta[None, :], n, d, ell, part, delta, solver)
            batches.append(jax.tree.map(lambda v, rows=rows: v[:rows], out))
            if on_progress is not None:
                jax.block_until_ready(batches[-1])
                on_progress(min(start + size, n_bootstrap), n_bootstrap)
        resampled = jax.tree.map(lambda *v: jnp.concatenate(v), *batches)
        boot_law = jax.vmap(form.law)(resampled.theta)
        boot_obj, boot_grad, boot_conv = (
            resampled.objective,
            resampled.grad_norm,
            resampled.converged,
        )
    return LawFit(
        law=law,
        theta=point.theta,
        objective=point.objective,
        grad_norm=point.grad_norm,
        converged=point.converged,
        start_objective=point.start_objective,
        bootstrap=boot_law,
        bootstrap_objective=boot_obj,
        bootstrap_grad_norm=boot_grad,
        bootstrap_converged=boot_conv,
        names=tuple(form.names),
        n_runs=int(keep.size),
        dropped=tuple(int(i) for i in dropped),
        huber_delta=float(huber_delta),
        n_starts=int(starts.shape[0]),
        n_bootstrap=int(n_bootstrap),
        fitted_range={"n_params": (float(jnp.min(n)), float(jnp.max(n))),
                      "n_tokens": (float(jnp.min(d)), float(jnp.max(d)))},
    )
