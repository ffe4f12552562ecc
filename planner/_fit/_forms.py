"""Law forms for fitting (unconstrained coefficients) and the Huber objective."""

from __future__ import annotations

import abc
import itertools
from collections.abc import Sequence
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._laws import AbstractLossLaw, Chinchilla

COEFFICIENTS: tuple[str, ...] = ("E", "A", "B", "alpha", "beta")
"""Names of the `Chinchilla` coefficients, in the order FIT.json and the tables use."""

HUBER_DELTA: float = 1e-3
r"""Huber threshold $\delta$ on log-loss residuals: Hoffmann et al. 2022, App. D.2 ("We use
$\delta = 10^{-3}$"), kept by Besiroglu et al. 2024."""


# ======================================================================================= forms
class AbstractLawForm(eqx.Module):
    r"""A parametric loss law written for fitting: unconstrained coefficients $\theta$.

    A form maps a vector $\theta$ (no bounds, so plain quasi-Newton applies) to the log of the
    predicted loss and to the law it stands for. Any law with this interface can be fitted by
    [`fit`][planner.fitting.fit].

    Concrete forms set `names`, the law's coefficient names (reported by fits and written to
    FIT.json), and implement:

    - `log_loss(theta, log_n_params, log_n_tokens)`: $\log \hat L$, finite for any finite input.
    - `law(theta)`: the law (array fields, so it can be built under `vmap`).
    - `theta(law)`: the inverse of `law`.
    - `starts()`: the default grid of starting points, shape `(n_starts, n_theta)`.
    """

    names: ClassVar[tuple[str, ...]]

    @abc.abstractmethod
    def log_loss(
        self,
        theta: Float[Array, " p"],
        log_n_params: Float[Array, " run"],
        log_n_tokens: Float[Array, " run"],
    ) -> Float[Array, " run"]:
        """Log of the predicted loss of every run."""

    @abc.abstractmethod
    def law(self, theta: Float[Array, " p"]) -> AbstractLossLaw:
        """The law with coefficients `theta`."""

    @abc.abstractmethod
    def theta(self, law: AbstractLossLaw) -> Float[Array, " p"]:
        """The unconstrained coefficients of `law`."""

    @abc.abstractmethod
    def starts(self) -> Float[Array, "start p"]:
        """The default grid of starting points."""


def start_grid(*axes: Sequence[float]) -> Float[Array, "start p"]:
    """Every combination of the values on each axis, one row per starting point.

    **Arguments:**

    - `*axes`: one sequence of values per coefficient of $\\theta$, in $\\theta$'s order.

    **Returns:** an array of shape `(prod(len(axis)), len(axes))`.
    """
    if not axes or any(len(axis) == 0 for axis in axes):
        raise ValueError("start_grid needs at least one axis and no empty axis")
    return jnp.asarray(list(itertools.product(*[[float(v) for v in axis] for axis in axes])))


class ChinchillaForm(AbstractLawForm):
    r"""The Chinchilla law in the log-sum-exp form it is fitted in.

    $$\log \hat L(N, D) = \mathrm{LSE}(a - \alpha \log N,\; b - \beta \log D,\; e)$$

    with $\theta = (a, b, e, \alpha, \beta)$ and $A = e^a$, $B = e^b$, $E = e^e$, so that every
    $\theta$ is a valid law with $A, B, E > 0$.

    **References:**

    Hoffmann et al. 2022, *Training Compute-Optimal Large Language Models*, App. D.2, eq. (11);
    Besiroglu et al. 2024, *Chinchilla Scaling: A replication attempt* (arXiv 2404.10102).
    """

    names: ClassVar[tuple[str, ...]] = COEFFICIENTS

    def log_loss(self, theta, log_n_params, log_n_tokens):
        a, b, e, alpha, beta = theta[0], theta[1], theta[2], theta[3], theta[4]
        u = a - alpha * log_n_params
        v = b - beta * log_n_tokens
        # Max-shifted log-sum-exp: the shift carries no gradient, the softmax weights do.
        m = jax.lax.stop_gradient(jnp.maximum(jnp.maximum(u, v), e))
        return m + jnp.log(jnp.exp(u - m) + jnp.exp(v - m) + jnp.exp(e - m))

    def law(self, theta) -> Chinchilla:
        return Chinchilla(
            E=jnp.exp(theta[2]),
            A=jnp.exp(theta[0]),
            B=jnp.exp(theta[1]),
            alpha=theta[3],
            beta=theta[4],
        )

    def theta(self, law: Chinchilla) -> Float[Array, " 5"]:
        return jnp.stack([jnp.log(law.A), jnp.log(law.B), jnp.log(law.E), law.alpha, law.beta])

    def starts(self) -> Float[Array, "4500 5"]:
        r"""Hoffmann et al.'s grid: $a, b \in \{0, 5, \dots, 25\}$, $e \in \{-1, -0.5, \dots, 1\}$,
        $\alpha, \beta \in \{0, 0.5, \dots, 2\}$; 4,500 starts (Hoffmann et al. 2022, App. D.2)."""
        ab = [5.0 * i for i in range(6)]
        e = [-1.0 + 0.5 * i for i in range(5)]
        exponent = [0.5 * i for i in range(5)]
        return start_grid(ab, ab, e, exponent, exponent)


# =================================================================================== objective
def huber(residual: ArrayLike, delta: ArrayLike = HUBER_DELTA) -> Float[Array, ...]:
    r"""The Huber loss of a residual.

    $$h_\delta(r) = \begin{cases} r^2/2 & |r| \le \delta \\
        \delta(|r| - \delta/2) & |r| > \delta \end{cases}$$

    **References:** Huber 1964, *Robust Estimation of a Location Parameter*.
    """
    r = jnp.asarray(residual)
    a = jnp.abs(r)
    return jnp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def huber_objective(
    theta: Float[Array, " p"],
    form: AbstractLawForm,
    log_n_params: Float[Array, " run"],
    log_n_tokens: Float[Array, " run"],
    log_loss: Float[Array, " run"],
    weights: Float[Array, " run"],
    delta: ArrayLike = HUBER_DELTA,
) -> Float[Array, ""]:
    r"""The fitting objective: summed Huber loss of log-loss residuals.

    $$J(\theta) = \sum_i w_i\, h_\delta\big(\log \hat L_\theta(N_i, D_i) - \log L_i\big)$$

    Weights are 1 for a plain fit and multinomial counts for a bootstrap resample.

    **References:** Hoffmann et al. 2022, App. D.2, eq. (11).
    """
    residual = form.log_loss(theta, log_n_params, log_n_tokens) - log_loss
    return jnp.sum(weights * huber(residual, delta))
