r"""Epoch's smoothly broken S-curves: performance as a ramp in log inference compute.

Villalobos & Atkinson (2023) model the performance bought by spending more inference compute
per task (more samples, more search) as a straight line in $\log_{10}$ inference compute between
two smooth breaks. The slope, the *exploration value* $b$, grows with training compute. Every
logarithm here is base 10, so $x = \log_{10} IC$ and $t = \log_{10} TC$ are in orders of
magnitude (OOM), and $b$ is performance per OOM of inference compute.
"""

from __future__ import annotations

import abc
from typing import TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_positive

_Curve = TypeVar("_Curve", bound="AbstractSCurve")

_MIN_EXPLORATION = 1e-6
"""Exploration values are clamped to at least this, so $1/b$ and its gradients stay finite."""


def smoothly_broken_ramp(
    x: ArrayLike, x0: ArrayLike, x1: ArrayLike, slope: ArrayLike, d0: ArrayLike, d1: ArrayLike
) -> Float[Array, "*batch"]:
    r"""A line of slope `slope` between two smooth breaks: 0 before `x0`, flat after `x1`.

    $$r(x) = s\left[d_0\,\mathrm{softplus}\!\left(\frac{x - x_0}{d_0}\right)
        - d_1\,\mathrm{softplus}\!\left(\frac{x - x_1}{d_1}\right)\right]$$

    As $d_0, d_1 \to 0$ this tends to $s\cdot(\min(\max(x, x_0), x_1) - x_0)$: zero below
    $x_0$, slope $s$ in between, and the plateau $s(x_1 - x_0)$ above $x_1$. The smoothing
    widths $d_0, d_1$ (in units of $x$) set how sharp each break is. `jax.nn.softplus` is
    evaluated as a log-sum-exp, so the ramp is finite, with finite derivatives of every order,
    for any finite input with $d_0, d_1 > 0$. No domain checks.

    **Arguments:**

    - `x`: where to evaluate (here $\log_{10}$ inference compute).
    - `x0`, `x1`: the two breaks.
    - `slope`: the slope $s$ between them.
    - `d0`, `d1`: smoothing widths of the first and second break, > 0.

    **Returns:** the ramp $r(x)$, broadcast over the arguments.

    **References:** Villalobos & Atkinson 2023, *Trading Off Compute in Training and
    Inference*, Epoch AI (performance model of repeated sampling); the softplus-smoothed break
    is the two-segment case of the smoothly broken power laws of Caballero et al. 2022
    (arXiv 2210.14891) written in log space.
    """
    x, x0, x1, slope, d0, d1 = (jnp.asarray(v) for v in (x, x0, x1, slope, d0, d1))
    return slope * (d0 * jax.nn.softplus((x - x0) / d0) - d1 * jax.nn.softplus((x - x1) / d1))


class AbstractSCurve(eqx.Module):
    r"""Performance as a smoothly broken ramp in $\log_{10}$ inference compute.

    The slope, the exploration value $b(t) = a\,t + A$, is affine in $t = \log_{10} TC$.
    `curve.performance(t, x)` is the raw formula in OOM, safe inside a solver loop;
    `curve(train_flops, inference_flops_per_unit)` is the checked entry point in FLOP (the
    inference FLOP of one task, the unit of demand).
    """

    a: eqx.AbstractVar[Float[Array, ""]]
    A: eqx.AbstractVar[Float[Array, ""]]
    x0: eqx.AbstractVar[Float[Array, ""]]
    d0: eqx.AbstractVar[Float[Array, ""]]
    d1: eqx.AbstractVar[Float[Array, ""]]

    def exploration(self, log_train_flops: ArrayLike) -> Float[Array, "*batch"]:
        r"""The exploration value $b = a\,\log_{10} TC + A$, clamped to at least $10^{-6}$."""
        return jnp.maximum(self.a * jnp.asarray(log_train_flops) + self.A, _MIN_EXPLORATION)

    @abc.abstractmethod
    def plateau(self, log_train_flops: ArrayLike) -> Float[Array, "*batch"]:
        """The performance approached at unlimited inference compute."""

    @abc.abstractmethod
    def performance(
        self, log_train_flops: ArrayLike, log_inference_flops_per_unit: ArrayLike
    ) -> Float[Array, "*batch"]:
        """Performance at $t = \\log_{10} TC$, $x = \\log_{10} IC$, without domain checks."""

    def __call__(
        self, train_flops: ArrayLike, inference_flops_per_unit: ArrayLike
    ) -> Float[Array, "*batch"]:
        """Performance at `train_flops` and `inference_flops_per_unit` (FLOP per task), both
        > 0, checked."""
        train_flops = check_positive(train_flops, "train_flops")
        per_unit = check_positive(inference_flops_per_unit, "inference_flops_per_unit")
        curve = _with_checked_widths(self)
        return curve.performance(jnp.log10(train_flops), jnp.log10(per_unit))


class PassAtKSCurve(AbstractSCurve):
    r"""Epoch's S-curve for pass@k (cheap, perfect verification): rises to 1.

    $$P = b\left[d_0\,\mathrm{softplus}\!\left(\frac{x - x_0}{d_0}\right)
        - d_1\,\mathrm{softplus}\!\left(\frac{x - 1/b - x_0}{d_1}\right)\right],
        \qquad b = a\,t + A$$

    with $x = \log_{10} IC$ and $t = \log_{10} TC$ in OOM. The second break sits $1/b$ OOM
    after the first, so the line of slope $b$ climbs exactly from 0 to 1: performance saturates
    at 1, and a model with more training compute (larger $b$) gets there with fewer OOM of
    samples. This is the "non-saturating span that grows with scale" archetype of the report.

    **Arguments:**

    - `a`: growth of the exploration value per OOM of training compute.
    - `A`: exploration value at $TC = 1$ FLOP ($t = 0$).
    - `x0`: $\log_{10}$ inference compute where performance starts to rise.
    - `d0`, `d1`: smoothing widths (OOM) of the two breaks, > 0.

    No preset: the report does not publish its fitted constants (Villalobos & Atkinson 2023,
    repeated-sampling section).

    **References:** Villalobos & Atkinson 2023, *Trading Off Compute in Training and
    Inference*, Epoch AI, section on repeated sampling.
    """

    a: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    A: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    x0: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    d0: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    d1: Float[Array, ""] = eqx.field(converter=jnp.asarray)

    def plateau(self, log_train_flops: ArrayLike) -> Float[Array, "*batch"]:
        """1 at every training compute: perfect verification eventually solves everything."""
        return jnp.ones_like(self.exploration(log_train_flops))

    def performance(
        self, log_train_flops: ArrayLike, log_inference_flops_per_unit: ArrayLike
    ) -> Float[Array, "*batch"]:
        b = self.exploration(log_train_flops)
        x1 = self.x0 + 1.0 / b
        return smoothly_broken_ramp(log_inference_flops_per_unit, self.x0, x1, b, self.d0,
                                    self.d1)


class NAtKSCurve(AbstractSCurve):
    r"""Epoch's S-curve for n@k (selection without a perfect verifier): plateaus below 1.

    $$P = b\left[d_0\,\mathrm{softplus}\!\left(\frac{x - x_0}{d_0}\right)
        - d_1\,\mathrm{softplus}\!\left(\frac{x - x_1}{d_1}\right)\right],
        \qquad b = a\,t + A$$

    Like `PassAtKSCurve`, but the second break $x_1$ is a free constant, so performance levels
    off at $b\,(x_1 - x_0)$, which the model requires to be below 1: submitting only $n$ of $k$
    samples caps what more samples can buy. This is the "saturating with shrinking span"
    archetype of the report.

    **Arguments:**

    - `a`, `A`: exploration value $b = a\,t + A$ as in `PassAtKSCurve`.
    - `x0`, `x1`: $\log_{10}$ inference compute of the two breaks, $x_1 > x_0$.
    - `d0`, `d1`: smoothing widths (OOM) of the two breaks, > 0.

    No preset: the report does not publish its fitted constants (Villalobos & Atkinson 2023,
    repeated-sampling section).

    **References:** Villalobos & Atkinson 2023, *Trading Off Compute in Training and
    Inference*, Epoch AI, section on repeated sampling (10@k, from AlphaCode).
    """

    a: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    A: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    x0: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    x1: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    d0: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    d1: Float[Array, ""] = eqx.field(converter=jnp.asarray)

    def plateau(self, log_train_flops: ArrayLike) -> Float[Array, "*batch"]:
        """$b\\,(x_1 - x_0)$: the performance approached with unlimited samples."""
        return self.exploration(log_train_flops) * (self.x1 - self.x0)

    def performance(
        self, log_train_flops: ArrayLike, log_inference_flops_per_unit: ArrayLike
    ) -> Float[Array, "*batch"]:
        b = self.exploration(log_train_flops)
        return smoothly_broken_ramp(log_inference_flops_per_unit, self.x0, self.x1, b, self.d0,
                                    self.d1)

    def __call__(
        self, train_flops: ArrayLike, inference_flops_per_unit: ArrayLike
    ) -> Float[Array, "*batch"]:
        """Performance at `train_flops` and `inference_flops_per_unit` (FLOP per task), both
        > 0, checked.

        Also raises unless $x_1 > x_0$ and the plateau $b(x_1 - x_0)$ is below 1.
        """
        train_flops = check_positive(train_flops, "train_flops")
        per_unit = check_positive(inference_flops_per_unit, "inference_flops_per_unit")
        curve = _with_checked_widths(self)
        x1 = eqx.error_if(curve.x1, curve.x1 <= curve.x0, "x1 must exceed x0")
        curve = eqx.tree_at(lambda c: c.x1, curve, x1)
        log_train = jnp.log10(train_flops)
        too_high = curve.plateau(log_train) >= 1.0
        log_train = eqx.error_if(log_train, too_high, "the n@k plateau b*(x1 - x0) must be below 1")
        return curve.performance(log_train, jnp.log10(per_unit))


def _with_checked_widths(curve: _Curve) -> _Curve:
    # eqx.error_if only fires when its output is used, so the checked widths replace the fields
    d0 = check_positive(curve.d0, "d0")
    d1 = check_positive(curve.d1, "d1")
    return eqx.tree_at(lambda c: (c.d0, c.d1), curve, (d0, d1))
