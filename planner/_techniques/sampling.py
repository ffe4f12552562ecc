r"""Repeated sampling with filtering: pass@k, n@k, and the link from pretraining loss to success.

Drawing $k$ samples per query and keeping one that passes a check multiplies inference compute
by $k$ and raises the success rate. If a problem's per-sample success probability is $p$,
independent samples solve it with probability $1 - (1 - p)^k$; averaged over problems whose
$p$ follows a Beta distribution, the failure rate is a ratio of Beta functions that falls as a
power law in $k$, the shape behind the coverage law of Brown et al. (2024). A success link maps
the pretraining loss to that Beta distribution, so parameters, tokens and samples meet in one
performance measure.

Every failure rate is computed as its logarithm first, `log_failure`, and the success rate as
`-expm1(log_failure)`, so both $\log(1 - \text{score})$ (what a solver constrains) and the score
itself keep full precision from $k = 1$ to $k = 10^6$ and beyond.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_at_least, check_finite, check_interval, check_positive
from .._compose import AbstractTechnique, Allocation, Outcome, Pipeline
from .._fusion import once
from .pruning import _floor_density

# Stirling series of log Γ: B_{2n} / (2n (2n - 1)) for n = 1..6, from the Bernoulli numbers
# 1/6, -1/30, 1/42, -1/30, 5/66, -691/2730 (Abramowitz & Stegun 6.1.40).
_STIRLING = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360)
# The same Bernoulli numbers in the asymptotic series of ψ, B_{2n} / (2n) (A&S 6.3.18), and of
# ψ', B_{2n} itself (A&S 6.4.12).
_DIGAMMA = (1 / 12, -1 / 120, 1 / 252, -1 / 240, 1 / 132, -691 / 32760)
_TRIGAMMA = (1 / 6, -1 / 30, 1 / 42, -1 / 30, 5 / 66, -691 / 2730)
_SHIFT = 10
"""Arguments are shifted up by this many unit steps, where six terms of each series are exact
to about 1e-15 (the first terms left out are below 1.2e-15 at 10)."""

_ROOT = {32: (1.4616321325302124, -1.203605254910667e-08, 0.5),
         64: (1.4616321449683622, -9.241265521729427e-17, 0.2)}
"""By bits: x̂, the float nearest the positive zero x₀ = 1.4616321449683623412... of ψ; ψ(x̂)
(mpmath); and the radius around x̂ where `_digamma` sums its Taylor series in x - x̂ (exact
there) instead of letting ψ(x + 10) and the shift cancel. (A head-and-tail split of x₀ would
not survive XLA, which folds (x - head) - tail into x - (head + tail).)"""
_ROOT_TAYLOR = (
    0.9676722454476212, -0.4427631689835921, 0.258499760955651, -0.16394270544240652,
    0.10782405069126237, -0.07219956125645471, 0.04880428816414311, -0.03316112647484736,
    0.022597648232218104, -0.01542476590494896, 0.010538791616612175, -0.007204534386356869,
    0.004926781395729853, -0.003369801655439328, 0.002305126326734928, -0.0015769367714301972,
    0.0010788252019162967, -0.0007380709389960052, 0.000504953265834602,
)
"""Taylor coefficients of ψ at x₀, ψ⁽ⁿ⁾(x₀)/n! = (-1)ⁿ⁺¹ ζ(n + 1, x₀) for n = 1..19 (mpmath, 50
digits); truncated, the series errs by under 2e-17 relative within 0.2 of x₀ (float64) and
1e-9 within 0.5 (float32). Both x̂ of `_ROOT` lie within half an ulp of x₀, close enough to
use them."""

_FLOOR = 1e-12
"""Beta parameters and reducible losses are clamped to at least this inside raw formulas."""


# ------------------------------------------------------------------------------------ helpers
def _horner(z: Array, coefficients: tuple[float, ...]) -> Array:
    """$\\sum_n c_n z^n$ for the coefficients $c_0, c_1, \\ldots$, by Horner's rule."""
    out = coefficients[-1]
    for c in reversed(coefficients[:-1]):
        out = out * z + c
    return out


def _bits(*xs: ArrayLike) -> int:
    """64 for float64 arguments, else 32 (float32 and narrower)."""
    return 64 if jnp.finfo(jnp.result_type(*xs)).bits > 32 else 32


@jax.custom_jvp
def _digamma(x: Array) -> Array:
    r"""$\psi(x) = \frac{d}{dx}\log\Gamma(x)$ for $x > 0$, to $10^{-14}$ relative in float64.

    The recurrence $\psi(x + 1) = \psi(x) + 1/x$ shifts the argument to $y = x + 10$,
    $\psi(x) = \psi(y) - \sum_{i<10} \frac{1}{x + i}$, where six terms of the asymptotic series
    $\psi(y) = \log y - \frac{1}{2y} - \sum_n \frac{B_{2n}}{2n\,y^{2n}}$ (A&S 6.3.18) suffice.
    Near the zero $x_0 \approx 1.4616$ the two parts cancel, so within 0.2 of it (0.5 in
    float32) its Taylor series (`_ROOT_TAYLOR`) is summed instead, which keeps the relative
    error that small there too (about $10^{-6}$ in float32). The derivative is `_trigamma`.
    """
    y = x + _SHIFT
    r = 1.0 / y
    z = r * r
    out = jnp.log(y) - 0.5 * r - z * _horner(z, _DIGAMMA)
    out = out - sum(1.0 / (x + i) for i in reversed(range(_SHIFT)))
    root, at_root, radius = _ROOT[_bits(x)]
    d = x - root
    near = jnp.abs(d) < radius
    d = jnp.where(near, d, 0.0)  # keeps the unused polynomial finite
    return once(jnp.where(near, at_root + d * _horner(d, _ROOT_TAYLOR), out))


@_digamma.defjvp
def _digamma_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return _digamma(x), _trigamma(x) * dx


def _trigamma(x: Array) -> Array:
    r"""$\psi'(x)$ for $x > 0$, to $10^{-15}$ relative in float64.

    Shifted as `_digamma` is, $\psi'(x) = \psi'(y) + \sum_{i<10} \frac{1}{(x + i)^2}$ with
    $y = x + 10$ and six terms of $\psi'(y) = \frac1y + \frac{1}{2y^2}
    + \sum_n \frac{B_{2n}}{y^{2n+1}}$ (A&S 6.4.12). Every part is positive, so nothing cancels.
    A plain function: the solver differentiates `_lgamma_diff` twice, which needs $\psi'$
    only as a value; a third derivative would be traced through the series.
    """
    y = x + _SHIFT
    r = 1.0 / y
    z = r * r
    out = r + r * (0.5 * r + z * _horner(z, _TRIGAMMA))
    return once(out + sum((1.0 / (x + i)) ** 2 for i in reversed(range(_SHIFT))))


def _ratios(x: Array, a: Array) -> tuple[Array, Array, Array, Array]:
    r"""$y = x + 10$ and, with $v = y/(y + a)$, $1 - v$, $v^2$ and $1 - v^2$, all without
    cancelling: the pieces of $y^m - (y + a)^m = y^m(1 - v^{-m})$ in the differenced series."""
    y = x + _SHIFT
    w = 1.0 / (x + a + _SHIFT)
    v, f = y * w, a * w
    return y, f, v * v, f * (1.0 + v)


def _log_shift(x: Array, a: Array) -> Array:
    r"""$\sum_{i<10} \log(1 + a/(x + i))$ for $x > 0$, $a \ge 0$, as one `log1p` of a product.

    With $t_i = a/(x + i)$, $q = \prod_i (1 + t_i) - 1$ follows $q \leftarrow q + t_i(1 + q)$,
    which adds only non-negative terms, so $\log(1 + q)$ keeps full relative precision for tiny
    $a$ too. For $x \ge 10^{-12}$ and $a \le 10^6$ the product stays below $10^{67}$: one run of
    ten steps in float64, runs of four and six in float32 (each below $2 \cdot 10^{35}$). Past
    that an overflowing run is clamped to the largest float, which drops a few units of
    $\log a$ from a `_lgamma_diff` of magnitude above $2a$: below rounding.
    """
    largest = jnp.finfo(jnp.result_type(x, a)).max
    runs = ((0, _SHIFT),) if _bits(x, a) == 64 else ((0, 4), (4, _SHIFT))
    total = 0.0
    for start, stop in runs:
        q = a / (x + start)
        for i in range(start + 1, stop):
            q = q + a / (x + i) * (1.0 + q)
        total = total + jnp.log1p(jnp.minimum(q, largest))
    return total


@jax.custom_jvp
def _lgamma_diff(x: Array, a: Array) -> Array:
    r"""$\log\Gamma(x) - \log\Gamma(x + a)$ for $x > 0$, $a \ge 0$, accurate for huge $x$.

    The difference of two `gammaln` values loses about $\log\Gamma(x)\,\epsilon$ to
    cancellation ($10^{-9}$ at $x = 10^6$ in float64, everything in float32). Instead the
    recurrence $\Gamma(x + 1) = x\Gamma(x)$ shifts the argument to $y = x + 10$,
    $\sum_{i<10}\log(1 + a/(x + i))$ (one `log1p` of a product, `_log_shift`), and the Stirling
    series is differenced term by term there: $-(y - \tfrac12)\log(1 + a/y) - a\log(y + a) + a
    + \sum_n c_n [y^{1-2n} - (y+a)^{1-2n}]$, the brackets as $y^{1-2n}(1 - v^{2n-1})$ with
    $v = y/(y + a)$ (`_ratios`) and $1 - v^{2n+1} = v^2(1 - v^{2n-1}) + (1 - v^2)$, sums of
    non-negative terms that need no `expm1`. Relative error below $10^{-14}$, except where the
    value nearly vanishes, around the minimum of Γ at $x_0 \approx 1.4616$ ($\Gamma(x) \approx
    \Gamma(x + a)$ for $x < x_0 < x + a$, or small $a$ with $x$ near $x_0$); there the error
    stays below $5 \cdot 10^{-16}\,a\,(1/x + 3)$ in absolute terms.
    The derivatives are given in closed form (`_lgamma_diff_jvp`) rather than traced through
    the series, which keeps higher-order derivatives small.
    """
    y, f, u, g = _ratios(x, a)
    out = -(y - 0.5) * jnp.log1p(a / y) - a * jnp.log(x + a + _SHIFT) + a
    power, step = 1.0 / y, 1.0 / (y * y)
    for c in _STIRLING:
        out = out + c * power * f  # f = 1 - v^(2n-1)
        power, f = power * step, u * f + g
    return once(_log_shift(x, a) + out)


@jax.custom_jvp
def _digamma_diff(x: Array, a: Array) -> Array:
    r"""$\psi(x) - \psi(x + a)$, the $x$-derivative of `_lgamma_diff`, without cancelling.

    Term by term: $-\sum_{i<10} \frac{a}{(x+i)(x+i+a)}$ from the shift, then with $y = x + 10$
    and $v = y/(y + a)$, $-\log(1 + a/y) - \frac{a}{2y(y+a)}
    - \sum_n \frac{B_{2n}}{2n} y^{-2n} (1 - v^{2n})$ (A&S 6.3.18), with
    $1 - v^{2n+2} = v^2(1 - v^{2n}) + (1 - v^2)$.
    """
    shift = -sum(a / ((x + i) * (x + i + a)) for i in range(_SHIFT))
    y, f, u, g = _ratios(x, a)
    r = 1.0 / y
    e = g  # 1 - v^(2n), from 1 - v²
    out = -jnp.log1p(a / y) - 0.5 * r * f
    step = r * r
    power = step
    for c in _DIGAMMA:
        out = out - c * power * e
        power, e = power * step, u * e + g
    return once(shift + out)


def _trigamma_diff(x: Array, a: Array) -> Array:
    r"""$\psi'(x) - \psi'(x + a)$, the $x$-derivative of `_digamma_diff`, without cancelling.

    Term by term as in `_digamma_diff`: $\sum_{i<10} \frac{a\,(2x + 2i + a)}{(x+i)^2(x+i+a)^2}$
    from the shift, then with $y = x + 10$, $v = y/(y + a)$, $\frac{1 - v}{y}
    + \frac{1 - v^2}{2y^2} + \sum_n B_{2n}\,y^{-2n-1}(1 - v^{2n+1})$ (A&S 6.4.12). A plain
    function, like `_trigamma`.
    """
    shift = 0.0
    for i in range(_SHIFT):
        r, s = 1.0 / (x + i), 1.0 / (x + a + i)
        shift = shift + a * r * s * (r + s)  # r² - s²
    y, f, u, g = _ratios(x, a)
    r = 1.0 / y
    out = r * f + 0.5 * r * r * g
    step = r * r
    power, h = step * r, u * f + g  # 1 - v^(2n+1), from 1 - v
    for c in _TRIGAMMA:
        out = out + c * power * h
        power, h = power * step, u * h + g
    return once(shift + out)


@_digamma_diff.defjvp
def _digamma_diff_jvp(primals, tangents):
    x, a = primals
    dx, da = tangents
    value = _digamma_diff(x, a)
    dx, da = (jnp.broadcast_to(t, value.shape) for t in (dx, da))
    return value, _trigamma_diff(x, a) * dx - _trigamma(x + a) * da


@_lgamma_diff.defjvp
def _lgamma_diff_jvp(primals, tangents):
    x, a = primals
    dx, da = tangents
    # d/da log Γ(x + a) = ψ(x + a): a single value, so `_digamma` is accurate
    value = _lgamma_diff(x, a)
    dx, da = (jnp.broadcast_to(t, value.shape) for t in (dx, da))
    return value, _digamma_diff(x, a) * dx - _digamma(x + a) * da


# Jitted, so that each is traced once per argument shape: a problem with sampling calls them
# hundreds of times through its derivatives, and batching a jitted call reuses one batched
# trace (tracing the four-variable solver: 3.6 s -> 1.8 s). Each returns its value through
# `once`, so that XLA computes a series once rather than in every Hessian entry that reads it
# (compiling that solver: 7.9 s -> 4.8 s; its iterations 1.4x faster).
_digamma, _trigamma, _lgamma_diff, _digamma_diff, _trigamma_diff = (jax.jit(f) for f in (
    _digamma, _trigamma, _lgamma_diff, _digamma_diff, _trigamma_diff))


def _float(*xs: ArrayLike) -> tuple[Array, ...]:
    """The arguments as arrays of one floating dtype (integers become the default float)."""
    arrays = [jnp.asarray(x) for x in xs]
    floats = [x.dtype for x in arrays if jnp.issubdtype(x.dtype, jnp.floating)]
    dtype = jnp.result_type(*floats) if floats else jnp.result_type(float)
    return tuple(x.astype(dtype) for x in arrays)


def _check_integer(x: Array, name: str) -> Array:
    return eqx.error_if(x, x != jnp.round(x), f"{name} must be an integer")


def _check_samples(n_samples: ArrayLike) -> Array:
    return check_at_least(n_samples, "n_samples", 1.0)


def _beta_log_failure(alpha: Array, beta: Array, k: Array) -> Array:
    # B(α, β + k) / B(α, β) = [Γ(β + k) / Γ(α + β + k)] / [Γ(β) / Γ(α + β)]
    return _lgamma_diff(beta + k, alpha) - _lgamma_diff(beta, alpha)


def _safe_samples(n_samples: ArrayLike) -> Array:
    # The Beta formula holds for any k > -β, so k >= 1 needs no clamp (and k = 1 keeps its
    # derivatives); only k <= 0 is mapped to 0, where nothing fails to be sampled.
    k = jnp.asarray(n_samples)
    return jnp.maximum(k, 0.0)


# ------------------------------------------------------------------- unbiased pass@k estimator
def pass_at_k_unbiased(n_generated: ArrayLike, n_correct: ArrayLike, k: ArrayLike) -> Array:
    r"""Unbiased estimate of pass@k from $n$ samples of which $c$ are correct.

    $$\widehat{\text{pass@}k} = 1 - \frac{\binom{n-c}{k}}{\binom{n}{k}}
        = 1 - \prod_{i=n-c+1}^{n}\left(1 - \frac{k}{i}\right),$$

    and 1 when $n - c < k$. The binomial ratio is evaluated as differences of $\log\Gamma$
    (Stirling-differenced for large arguments), so it works under `jit` and `vmap` for any
    integer-valued inputs, given as integer or floating arrays.

    **Arguments:**

    - `n_generated`: samples drawn per problem, $n \ge 1$.
    - `n_correct`: how many of them passed, $0 \le c \le n$.
    - `k`: the $k$ of pass@k, $1 \le k \le n$.

    **Returns:** the estimate, in [0, 1], broadcast over the arguments (floating dtype).

    **Example:** `pass_at_k_unbiased(200, 10, 10)` is about 0.408548.

    **References:** Chen et al. 2021, *Evaluating Large Language Models Trained on Code*
    (arXiv 2107.03374), section 2.1 and Figure 3.
    """
    n, c, k = _float(n_generated, n_correct, k)
    n = _check_integer(check_at_least(n, "n_generated", 1.0), "n_generated")
    c = _check_integer(check_at_least(c, "n_correct", 0.0), "n_correct")
    c = eqx.error_if(c, c > n, "n_correct must be <= n_generated")
    k = _check_integer(_check_samples(k), "k")
    k = eqx.error_if(k, k > n, "k must be <= n_generated")
    wrong = n - c
    certain = wrong < k
    wrong = jnp.where(certain, k, wrong)  # keeps every Γ argument >= 1 in the unused branch
    # C(m, k) / C(n, k) = [Γ(m+1) / Γ(m-k+1)] / [Γ(n+1) / Γ(n-k+1)]
    log_ratio = _lgamma_diff(n - k + 1.0, k) - _lgamma_diff(wrong - k + 1.0, k)
    return jnp.where(certain, 1.0, -jnp.expm1(log_ratio))


# --------------------------------------------------------------------- Beta-distributed success
class BetaSuccess(eqx.Module):
    r"""Independent samples from problems whose per-sample success is Beta-distributed.

    With $p \sim \mathrm{Beta}(\alpha, \beta)$ across problems and $k$ independent samples,

    $$\text{pass@}k = 1 - \mathbb{E}[(1 - p)^k]
        = 1 - \frac{B(\alpha, \beta + k)}{B(\alpha, \beta)},$$

    defined for continuous $k \ge 1$ and differentiable in $\alpha$, $\beta$ and $k$. For large
    $k$ the failure rate falls as a power law,
    $B(\alpha, \beta + k)/B(\alpha, \beta)
    \sim \frac{\Gamma(\alpha+\beta)}{\Gamma(\beta)}k^{-\alpha}$:
    the hardest problems (small $p$) dominate, which is the shape the coverage law
    $\exp(a k^b)$ of Brown et al. (2024) summarises.

    `log_failure` and `pass_at_k` are raw formulas (safe inside a solver loop: $k \le 0$ maps
    to 0 and $\beta$ is clamped to at least $10^{-12}$); `model(k)` is the checked entry point.

    **Arguments:**

    - `alpha`, `beta`: the Beta parameters, > 0; the mean success of one sample is
      $\alpha/(\alpha + \beta)$.

    **References:** the Beta–binomial mixture; Brown et al. 2024, *Large Language Monkeys*
    (arXiv 2407.21787); Chen et al. 2021, section 2.1.
    """

    alpha: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    beta: Float[Array, ""] = eqx.field(converter=jnp.asarray)

    def log_failure(self, n_samples: ArrayLike) -> Float[Array, "*batch"]:
        r"""$\log(1 - \text{pass@}k) = \log B(\alpha, \beta + k) - \log B(\alpha, \beta)$, raw."""
        beta = jnp.maximum(self.beta, _FLOOR)
        return _beta_log_failure(self.alpha, beta, _safe_samples(n_samples))

    def pass_at_k(self, n_samples: ArrayLike) -> Float[Array, "*batch"]:
        """Expected pass@k, raw."""
        return -jnp.expm1(self.log_failure(n_samples))

    def tail(self, n_samples: ArrayLike) -> Float[Array, "*batch"]:
        r"""The failure rate's large-$k$ asymptote.

        $$\frac{\Gamma(\alpha+\beta)}{\Gamma(\beta)}k^{-\alpha}$$
        """
        k = jnp.asarray(n_samples)
        return jnp.exp(gammaln(self.alpha + self.beta) - gammaln(self.beta)) * k ** (-self.alpha)

    def majority_at_k(self, n_samples: ArrayLike) -> Float[Array, "*batch"]:
        r"""Expected success of majority voting over $k$ samples, raw.

        For a problem whose samples are right with probability $p$ and whose wrong answers
        all agree (two answers, the worst case for voting), the majority of $k$ votes is right
        with probability $P(\mathrm{Bin}(k, p) > k/2)$ (Condorcet 1785): it tends to 1 for
        $p > \frac12$ and to 0 for $p < \frac12$ (Chen et al. 2024 find both, easy queries
        gaining and hard ones losing as votes are added). At odd $k$ this is
        $I_p(m, m)$, $m = (k + 1)/2$ (the identity $P(\mathrm{Bin}(k, p) \ge m) =
        I_p(m, k - m + 1)$), which is the continuous extension used for every $k > -1$:

        $$\text{maj@}k = E_{p \sim \mathrm{Beta}(\alpha, \beta)}\big[I_p(m, m)\big]
          \;\to\; P(p > \tfrac12) = 1 - I_{1/2}(\alpha, \beta) \quad (k \to \infty).$$

        Exact at odd $k$; at even $k$, where a tie can occur, it lies between the values at
        $k - 1$ and $k + 1$ ($I_p(m, m)$ is monotone in $m$ for every $p$); broken at random,
        a tie gives exactly the value at $k - 1$. Differentiable in $k$, $\alpha$ and $\beta$
        (computed by `_majority`: within $10^{-13}$ of the Beta-binomial sums for
        $\alpha + \beta \le 10$, $3 \cdot 10^{-10}$ at 20; see `_SERIES_TERMS`). Plateaus at
        `majority_plateau`, unlike pass@k, and where most problems have $p < \frac12$ it
        falls with $k$ (with the Codex link's U-shaped problems, $\kappa = 0.73$, it falls
        from $k = 1$ to $10^6$ at every mean success below one half and rises above: measured
        at means 0.01 to 0.9). Majority voting with many distinct wrong answers
        (plurality) does better than this two-answer bound.

        **References:** Condorcet 1785, *Essai sur l'application de l'analyse à la
        probabilité des décisions rendues à la pluralité des voix* (the jury theorem);
        Chen et al. 2024, *Are More LLM Calls All You Need? Towards Scaling Laws of Compound
        Inference Systems* (arXiv 2403.02419), the binomial vote accuracy of a query by its
        difficulty; Brown et al. 2024 (arXiv 2407.21787), majority voting on MATH near 40%
        while coverage climbs.
        """
        return _majority(self.alpha, self.beta, n_samples)[1]

    def majority_log_failure(self, n_samples: ArrayLike) -> Float[Array, "*batch"]:
        r"""$\log(1 - \text{maj@}k)$ of `majority_at_k`, raw (the failure summed on its own,
        not as one minus the success)."""
        return jnp.log(_majority(self.alpha, self.beta, n_samples)[0])

    def majority_plateau(self) -> Float[Array, "*batch"]:
        r"""$P(p > \frac12) = 1 - I_{1/2}(\alpha, \beta)$: the limit of `majority_at_k`, raw
        (differentiable in $\alpha$ and $\beta$, unlike JAX's `betainc`)."""
        return _majority_plateau(self.alpha, self.beta)

    def __call__(self, n_samples: ArrayLike) -> Float[Array, "*batch"]:
        """Expected pass@k, raising unless `n_samples` >= 1 and `alpha`, `beta` > 0."""
        return self._checked().pass_at_k(_check_samples(n_samples))

    def _checked(self) -> BetaSuccess:
        return BetaSuccess(check_positive(self.alpha, "alpha"), check_positive(self.beta, "beta"))


# -------------------------------------------------------------------------------- coverage law
class CoverageLaw(eqx.Module):
    r"""The coverage law of Large Language Monkeys: $c(k) = \exp(a\,k^{b})$ with $a, b < 0$.

    Coverage (the fraction of problems solved by any of $k$ samples) rises towards 1 and
    $\log(-\log c)$ is linear in $\log k$ with slope $b$. Two published points fix both
    constants in closed form, $b = \frac{\log(\log c_2 / \log c_1)}{\log(k_2/k_1)}$,
    $a = \log(c_1)\,k_1^{-b}$, which is how the presets are built: they reproduce their two
    points exactly (a fit with zero residual, two equations in two unknowns, not a
    regression on the paper's curves).

    **Arguments:**

    - `a`: < 0, $\log$ coverage at $k = 1$.
    - `b`: < 0, the exponent.

    **References:** Brown et al. 2024, *Large Language Monkeys: Scaling Inference Compute with
    Repeated Sampling* (arXiv 2407.21787): the exponentiated power law they fit to coverage
    curves, and the headline points of the presets.
    """

    a: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    b: Float[Array, ""] = eqx.field(converter=jnp.asarray)

    @classmethod
    def from_points(
        cls, k1: ArrayLike, coverage1: ArrayLike, k2: ArrayLike, coverage2: ArrayLike
    ) -> CoverageLaw:
        r"""The law through $(k_1, c_1)$ and $(k_2, c_2)$; $1 \le k_1 < k_2$, $0 < c_1 < c_2 < 1$.

        Closed form, so the two points are reproduced exactly.
        """
        k1, k2 = _check_samples(k1), _check_samples(k2)
        k2 = eqx.error_if(k2, k2 <= k1, "k2 must exceed k1")
        c1 = check_interval(coverage1, "coverage1", 0.0, 1.0, open_low=True)
        c2 = check_interval(coverage2, "coverage2", 0.0, 1.0, open_low=True)
        c2 = eqx.error_if(c2, (c2 <= c1) | (c2 >= 1.0), "coverage2 must lie in (coverage1, 1)")
        b = jnp.log(jnp.log(c2) / jnp.log(c1)) / jnp.log(k2 / k1)
        return cls(a=jnp.log(c1) * k1 ** (-b), b=b)

    @classmethod
    def brown2024_swebench_lite(cls) -> CoverageLaw:
        """SWE-bench Lite with DeepSeek-Coder-V2-Instruct: 15.9% at $k = 1$, 56% at $k = 250$.

        Brown et al. 2024 (arXiv 2407.21787), abstract; closed-form two-point fit.
        """
        return cls.from_points(1.0, 0.159, 250.0, 0.56)

    @classmethod
    def brown2024_math(cls) -> CoverageLaw:
        """MATH with Llama-3-8B-Instruct: coverage 82.9% at 100 samples, 98.44% at 10,000.

        Brown et al. 2024 (arXiv 2407.21787), where majority voting on the same samples stays
        near 40%; closed-form two-point fit.
        """
        return cls.from_points(100.0, 0.829, 10_000.0, 0.9844)

    def log_coverage(self, n_samples: ArrayLike) -> Float[Array, "*batch"]:
        r"""$\log c(k) = a\,k^b$, raw ($k$ clamped to at least $10^{-12}$)."""
        k = jnp.asarray(n_samples)
        return self.a * jnp.maximum(k, _FLOOR) ** self.b

    def log_failure(self, n_samples: ArrayLike) -> Float[Array, "*batch"]:
        r"""$\log(1 - c(k)) = \log(-\mathrm{expm1}(a k^b))$, raw."""
        return jnp.log(-jnp.expm1(self.log_coverage(n_samples)))

    def coverage(self, n_samples: ArrayLike) -> Float[Array, "*batch"]:
        """Coverage $c(k)$, raw."""
        return jnp.exp(self.log_coverage(n_samples))

    def __call__(self, n_samples: ArrayLike) -> Float[Array, "*batch"]:
        """Coverage, raising unless `n_samples` >= 1 and `a`, `b` < 0."""
        a = eqx.error_if(self.a, ~(self.a < 0), "a must be < 0")
        b = eqx.error_if(self.b, ~(self.b < 0), "b must be < 0")
        return CoverageLaw(a, b).coverage(_check_samples(n_samples))


# ------------------------------------------------------------------------- imperfect selection
class FilteredSampling(eqx.Module):
    r"""n@k with an imperfect filter: the filter passes a solved problem with a fixed probability.

    $$n@k = q \cdot \text{pass@}k,
      \qquad \text{pass@}k = 1 - \frac{B(\alpha, \beta + k)}{B(\alpha, \beta)}$$

    Without a perfect verifier the $n$ submissions are chosen from the $k$ samples by a filter
    (example tests, clustering, voting) that keeps a correct sample, when one exists, with
    probability $q < 1$. Performance then plateaus at $q$ however many samples are drawn, the
    "saturating" archetype of Villalobos & Atkinson (2023); Brown et al. (2024) see majority
    voting on MATH stall near 40% while coverage reaches 98%.

    **Arguments:**

    - `success`: the `BetaSuccess` of single samples.
    - `plateau`: $q \in (0, 1]$, the filter's recall.

    **References:** Li et al. 2022, *Competition-Level Code Generation with AlphaCode*
    (Science 378), for the 10@k solve rates on CodeContests validation that the presets fit;
    Villalobos & Atkinson 2023, *Trading Off Compute in Training and Inference*, Epoch AI.
    """

    success: BetaSuccess
    plateau: Float[Array, ""] = eqx.field(converter=jnp.asarray)

    @classmethod
    def alphacode2022_9b(cls) -> FilteredSampling:
        """AlphaCode 9B, 10@k on CodeContests validation.

        Fitted by this project (least squares in probability) jointly to AlphaCode's 9B and 41B
        10@k points, 16.9/22.6/27.1/30.1% and 16.9/23.9/28.2/31.8% at $k = 10^3 \\ldots 10^6$,
        with one plateau shared by both models (the same filter): 5 constants for 8 points.
        Every point is reproduced within 0.24 percentage points (largest miss 0.238, 41B at
        $k = 10^5$). The constants are the minimum itself, converged by Newton steps: the
        cost is flat along one direction (its Hessian's eigenvalues span 3e-5 to 0.26 in log
        parameters), so a fit stopped early can sit 1e-3 away in β at a cost only 6e-6 higher.
        Li et al. 2022 (AlphaCode), as summarised in Villalobos & Atkinson 2023.
        """
        return cls(BetaSuccess(alpha=0.1334865388, beta=14.81388370), plateau=0.3894054878)

    @classmethod
    def alphacode2022_41b(cls) -> FilteredSampling:
        """AlphaCode 41B, 10@k on CodeContests validation (see `alphacode2022_9b` for the fit)."""
        return cls(BetaSuccess(alpha=0.1614843333, beta=30.34217728), plateau=0.3894054878)

    def log_failure(self, n_samples: ArrayLike) -> Float[Array, "*batch"]:
        r"""$\log(1 - n@k) = \log\big((1 - q) + q\,B(\alpha, \beta+k)/B(\alpha, \beta)\big)$, raw.

        Computed as a log-sum-exp of $\log(1 - q)$ and $\log q + \log(\text{failure})$, with
        $q$ clamped into $[10^{-12}, 1]$; $q = 1$ gives pass@k's log-failure exactly.
        """
        q = jnp.clip(self.plateau, _FLOOR, 1.0)
        return _filtered_log_failure(q, self.success.log_failure(n_samples))

    def n_at_k(self, n_samples: ArrayLike) -> Float[Array, "*batch"]:
        """Expected n@k, raw."""
        return self.plateau * self.success.pass_at_k(n_samples)

    def __call__(self, n_samples: ArrayLike) -> Float[Array, "*batch"]:
        """Expected n@k, raising unless `n_samples` >= 1, `plateau` in (0, 1] and α, β > 0."""
        q = check_interval(self.plateau, "plateau", 0.0, 1.0, open_low=True)
        return FilteredSampling(self.success._checked(), q).n_at_k(_check_samples(n_samples))


def _filtered_log_failure(q: Array, log_failure: Array) -> Array:
    # log((1 - q) + q f); at q = 1 the first term is log(0) = -inf, whose gradient would be
    # infinite, so it is replaced by a finite stand-in there and dropped by the outer where.
    full = q >= 1.0
    q_safe = jnp.where(full, 0.5, q)
    mixed = jnp.logaddexp(jnp.log1p(-q_safe), jnp.log(q_safe) + log_failure)
    return jnp.where(full, log_failure, mixed)


# ---------------------------------------------------------------------- reward-model selection
def _reward_model_log_failure(accuracy: Array, log_failure_k: Array,
                              log_failure_1: Array) -> Array:
    r"""$\log\big(a\,(1 - \text{pass@}k) + (1 - a)(1 - \text{pass@}1)\big)$ from the two
    log-failures: the failure of best-of-$k$ chosen by a reward model of accuracy $a$
    (`RepeatedSampling`, `selection="reward_model"`), whose success is exactly
    $a\cdot\text{pass@}k + (1 - a)\cdot\text{pass@}1$.

    A log-sum-exp, with $a$ clamped into $[10^{-12}, 1]$; at $a = 1$ the second term is
    $\log 0$, replaced by a finite stand-in and dropped (its gradient would be infinite), so
    $a = 1$ gives pass@k's log-failure exactly.
    """
    a = jnp.clip(accuracy, _FLOOR, 1.0)
    full = a >= 1.0
    a_safe = jnp.where(full, 0.5, a)
    mixed = jnp.logaddexp(jnp.log(a_safe) + log_failure_k, jnp.log1p(-a_safe) + log_failure_1)
    return jnp.where(full, log_failure_k, mixed)


def _reward_model_score(accuracy: Array, pass_k: Array, pass_1: Array) -> Array:
    r"""$a\cdot\text{pass@}k + (1 - a)\cdot\text{pass@}1$, $a$ clamped into $[10^{-12}, 1]$:
    the success of best-of-$k$ chosen by a reward model of accuracy $a$ (planner's stated
    model; see `RepeatedSampling`). The one place the form is written, with
    `_reward_model_log_failure` its failure in log form."""
    a = jnp.clip(accuracy, _FLOOR, 1.0)
    return a * pass_k + (1.0 - a) * pass_1


def _beta_log_pass1_failure(alpha: Array, beta: Array) -> Array:
    """$\\log(1 - \\text{pass@}1) = \\log\\frac{\\beta}{\\alpha + \\beta}$, both clamped to at
    least $10^{-12}$."""
    alpha, beta = jnp.maximum(alpha, _FLOOR), jnp.maximum(beta, _FLOOR)
    return jnp.log(beta) - jnp.log(alpha + beta)


# ------------------------------------------------------------------------------ majority voting
_MAJORITY_STEP = 0.2
_MAJORITY_REACH = 18.0
"""The trapezoid rule of `_majority` in $t = u\\sqrt{m}$: nodes $0, \\pm 0.2, \\ldots, \\pm 18$
(181). The integrand is analytic in the strip $|\\operatorname{Im} t| < \\tfrac{\\pi}{2}\\sqrt{m}$,
so the rule's error falls as $e^{-\\pi^2\\sqrt{m}/h}$ times the integrand's size in that strip
(Trefethen & Weideman 2014, *The exponentially convergent trapezoidal rule*, SIAM Review 56),
a size that grows as the Beta distribution of $p$ concentrates (measured: `_SERIES_TERMS`).
The weight left beyond $|t| = 18$ is below $4 e^{-36} \\approx 10^{-15}$ at $m = 1$ ($k = 1$)
and smaller for larger $m$."""
_SERIES_TERMS = 96
"""Terms of the hypergeometric series of the Beta CDF in `_beta_cdf_below_half`: at
$y \\le \\frac12$ the $n$-th term is about $y^n n^{b - 1}$, so 96 terms suffice while $b$ (at
most $\\alpha + \\beta = \\kappa$) is not large. Measured against Beta-binomial sums in mpmath
(30 digits, $k$ = 1 to 1001) and against pass@1 at $k = 1$ (mean success 0.01 to 0.99),
`_majority` errs by at most $10^{-13}$ for $\\alpha + \\beta \\le 10$, $3 \\cdot 10^{-10}$ at 20
and $5 \\cdot 10^{-7}$ at 40, the worst at $k = 1$ (where the quadrature over $X$ is
coarsest)."""


def _log_beta(alpha: Array, beta: Array) -> Array:
    """$\\log B(\\alpha, \\beta)$ from `gammaln`: the arguments of majority voting are at
    most $\\kappa$, where nothing cancels (and JAX's own derivatives keep its graph small)."""
    return gammaln(alpha) + gammaln(beta) - gammaln(alpha + beta)


def _beta_cdf_below_half(log_y: Array, log_1my: Array, a: Array, b: Array,
                         log_beta: Array) -> Array:
    r"""$I_y(a, b)$, the $\mathrm{Beta}(a, b)$ CDF at $y \le \frac12$, from $\log y$,
    $\log(1 - y)$ and $\log B(a, b)$, by the hypergeometric series (A&S 26.5.4)

    $$I_y(a, b) = \frac{y^a (1 - y)^b}{a\,B(a, b)}
      \sum_{n \ge 0} \frac{(a + b)_n}{(a + 1)_n}\,y^n,$$

    summed to `_SERIES_TERMS` terms. Every term is positive, so nothing cancels, and every
    operation has a derivative in $a$ and $b$ (which JAX's `betainc` lacks).
    """
    j = jnp.arange(_SERIES_TERMS - 1, dtype=log_y.dtype).reshape((1,) * a.ndim + (-1,))
    a_, b_ = a[..., None], b[..., None]
    # log of the n-th term's ratio to the previous one: log((a + b + j)/(a + 1 + j)) + log y
    steps = jnp.log1p((b_ - 1.0) / (a_ + 1.0 + j)) + log_y[..., None]
    terms = jnp.exp(jnp.cumsum(steps, axis=-1))
    total = 1.0 + jnp.sum(terms, axis=-1)
    return jnp.exp(a * log_y + b * log_1my - jnp.log(a) - log_beta) * total


def _majority(alpha: ArrayLike, beta: ArrayLike, n_samples: ArrayLike) -> tuple[Array, Array]:
    r"""(failure, success) of majority voting over $k$ samples, $p \sim
    \mathrm{Beta}(\alpha, \beta)$, raw: see `BetaSuccess.majority`.

    With $m = (k + 1)/2$, $I_p(m, m) = P(X \le p)$ for $X \sim \mathrm{Beta}(m, m)$
    independent of $p$, so the success is $E_X[1 - I_X(\alpha, \beta)]$: the CDF of $p$
    (`_beta_cdf_below_half`, on the side of $\frac12$ where the series converges) averaged over
    $X$. With $X = \sigma(2u)$ the density of $u$ is $\propto \operatorname{sech}^{2m} u$,
    smooth with tails $e^{-2m|u|}$; the average is a trapezoid sum in $t = u\sqrt{m}$ (see
    `_MAJORITY_STEP`), weights normalised to sum to 1. Failure and success are summed apart, so
    each keeps its precision where it is small.
    """
    alpha, beta, k = jnp.broadcast_arrays(*_float(alpha, beta, n_samples))
    alpha, beta = jnp.maximum(alpha, _FLOOR), jnp.maximum(beta, _FLOOR)
    m = 0.5 * (_safe_samples(k) + 1.0)
    count = round(_MAJORITY_REACH / _MAJORITY_STEP)
    t = _MAJORITY_STEP * jnp.arange(-count, count + 1, dtype=alpha.dtype)
    t = t.reshape((1,) * m.ndim + (-1,))
    u = t / jnp.sqrt(m)[..., None]
    # log sech^{2m}(u) = -m log(1 + sinh²u): accurate where u is tiny (large m)
    weights = jax.nn.softmax(-m[..., None] * jnp.log1p(jnp.sinh(u) ** 2), axis=-1)
    below = t <= 0.0  # X = σ(2u) <= 1/2: the series in X; above, in 1 - X with a, b swapped
    a = jnp.where(below, alpha[..., None], beta[..., None])
    b = jnp.where(below, beta[..., None], alpha[..., None])
    a, b = jnp.broadcast_arrays(a, b)
    du = 2.0 * jnp.abs(u)
    cdf = _beta_cdf_below_half(jax.nn.log_sigmoid(-du), jax.nn.log_sigmoid(du), a, b,
                               _log_beta(alpha, beta)[..., None])
    failure = jnp.sum(weights * jnp.where(below, cdf, 1.0 - cdf), axis=-1)
    success = jnp.sum(weights * jnp.where(below, 1.0 - cdf, cdf), axis=-1)
    return failure, success


_majority = jax.jit(_majority)  # traced once per shape, as the special functions above


def _majority_plateau(alpha: ArrayLike, beta: ArrayLike) -> Array:
    r"""$P(p > \frac12) = 1 - I_{1/2}(\alpha, \beta)$, raw: majority voting's limit."""
    alpha, beta = _float(alpha, beta)
    alpha, beta = jnp.maximum(alpha, _FLOOR), jnp.maximum(beta, _FLOOR)
    half = jnp.log(jnp.asarray(0.5, alpha.dtype))
    alpha, beta = jnp.broadcast_arrays(alpha, beta)
    return 1.0 - _beta_cdf_below_half(jnp.full_like(alpha, half), jnp.full_like(alpha, half),
                                      alpha, beta, _log_beta(alpha, beta))


# --------------------------------------------------------------------------------- success link
def codex_code_loss(n_params: ArrayLike) -> Float[Array, "*batch"]:
    r"""Codex's test loss on held-out Python code as a power law in parameters.

    $$L(N) = \left(\frac{N}{5.92 \times 10^{7}}\right)^{-0.13}$$

    with $N$ the (non-embedding) parameter count, fitted by Chen et al. to Codex models from
    12M to 12B parameters. The law has no irreducible term, so all of it is reducible loss.

    **References:** Chen et al. 2021, *Evaluating Large Language Models Trained on Code*
    (arXiv 2107.03374), Figure 4 (test loss against non-embedding parameters).
    """
    return (check_positive(n_params, "n_params") / 5.92e7) ** (-0.13)


class SuccessLink(eqx.Module):
    r"""From pretraining loss to the distribution of per-sample success across problems.

    $$p \sim \mathrm{Beta}(\mu\kappa, (1 - \mu)\kappa), \qquad
      \operatorname{logit}\mu = \theta_0 + \theta_1 \log(L - E)$$

    The mean success of one sample, $\mu$ (pass@1), is logistic in the log of the reducible
    loss $L - E$; the concentration $\kappa$ sets how unequal problems are (small $\kappa$: most
    problems are either easy or hopeless, so pass@k climbs slowly, as a power law in $k$). Then
    pass@k $= 1 - B(\mu\kappa, (1-\mu)\kappa + k)/B(\mu\kappa, (1-\mu)\kappa)$ (`BetaSuccess`).

    Why the log of the *reducible* loss: the family is closed under rescaling the loss by a
    power law ($L - E \mapsto s (L - E)^\gamma$ only changes $\theta_0, \theta_1$), so a link
    calibrated on one model family's loss transfers to another law's reducible loss up to such
    a rescaling, and $\mu \to 1$ as the loss approaches its floor when $\theta_1 < 0$. Using
    it with a different loss law (Chinchilla's, say) equates that law's reducible loss with
    the calibration's: an assumption to be stated with any result.

    Raw methods clamp the reducible loss and the Beta parameters to at least $10^{-12}$;
    `link(reducible_loss, n_samples)` is the checked entry point.

    **Arguments:**

    - `intercept`: $\theta_0$.
    - `slope`: $\theta_1$ (negative: lower loss, higher success).
    - `concentration`: $\kappa > 0$.

    **References:** Chen et al. 2021 (Codex) for the calibration data; the Beta–binomial model
    of pass@k as in `BetaSuccess`.
    """

    intercept: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    slope: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    concentration: Float[Array, ""] = eqx.field(converter=jnp.asarray)

    @classmethod
    def codex2021(cls) -> SuccessLink:
        r"""Calibrated on Codex's HumanEval pass@1/@10/@100 (Chen et al. 2021, Table 1).

        Fitted by this project: least squares in probability to the 9 points 12B
        28.81/46.81/72.31%, 2.5B 21.36/35.42/59.50%, 300M 13.17/20.37/36.27%, with the
        reducible loss of each model given by `codex_code_loss` (Figure 4 of the paper,
        $N$ = 12e9, 2.5e9, 3e8). Largest miss 5.57 percentage points (12B pass@10: 52.38%
        against 46.81%); every point within 5.6. The gap is the model's, not the fit's: Codex
        reports each pass@k at its own best temperature (0.2 for pass@1, 0.8 for pass@100), so
        no single distribution of $p$ per model matches all three; a separate two-constant Beta
        fit per model still misses by up to 4.9 points.
        """
        return cls(intercept=-2.649630035, slope=-2.403433021, concentration=0.7252569787)

    def beta_params(self, reducible_loss: ArrayLike) -> tuple[Array, Array]:
        r"""$(\alpha, \beta) = (\mu\kappa, (1 - \mu)\kappa)$ at `reducible_loss`, raw."""
        r = jnp.asarray(reducible_loss)
        z = self.intercept + self.slope * jnp.log(jnp.maximum(r, _FLOOR))
        # κ·σ(±z) keeps both tails accurate where μ or 1 − μ is tiny
        alpha = self.concentration * jax.nn.sigmoid(z)
        beta = self.concentration * jax.nn.sigmoid(-z)
        return alpha, beta

    def mean(self, reducible_loss: ArrayLike) -> Float[Array, "*batch"]:
        """$\\mu$: the expected success of one sample (pass@1), raw."""
        alpha, _ = self.beta_params(reducible_loss)
        return alpha / self.concentration

    def success(self, reducible_loss: ArrayLike) -> BetaSuccess:
        """The `BetaSuccess` of a model at `reducible_loss` (raw: no checks)."""
        return BetaSuccess(*self.beta_params(reducible_loss))

    def log_failure(
        self, reducible_loss: ArrayLike, n_samples: ArrayLike
    ) -> Float[Array, "*batch"]:
        r"""$\log(1 - \text{pass@}k)$, raw."""
        return self.success(reducible_loss).log_failure(n_samples)

    def pass_at_k(self, reducible_loss: ArrayLike, n_samples: ArrayLike) -> Float[Array, "*batch"]:
        """Expected pass@k, raw."""
        return -jnp.expm1(self.log_failure(reducible_loss, n_samples))

    def __call__(self, reducible_loss: ArrayLike, n_samples: ArrayLike) -> Float[Array, "*batch"]:
        """Expected pass@k, raising unless `reducible_loss` > 0, `n_samples` >= 1, κ > 0."""
        link = SuccessLink(
            check_finite(self.intercept, "intercept"),
            check_finite(self.slope, "slope"),
            check_positive(self.concentration, "concentration"),
        )
        r = check_positive(reducible_loss, "reducible_loss")
        return link.pass_at_k(r, _check_samples(n_samples))


# ------------------------------------------------------------------------------------- stage
SELECTIONS: tuple[str, ...] = ("verifier", "filter", "reward_model", "majority")
"""How `RepeatedSampling` picks its answer: a perfect verifier (pass@k), an imperfect filter
whose success plateaus (n@k), a reward model of stated accuracy (best-of-k), or majority
voting (no verifier; plateaus)."""


def _optional(x):
    return None if x is None else jnp.asarray(x)


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


class RepeatedSampling(AbstractTechnique):
    r"""Draw $k$ samples per query and keep one, picked by a selection rule.

    Inference compute per unit of demand is multiplied by $k$ (`n_samples`), plus the
    verifier's; the loss is unchanged and the outcome gains a score, the expected success
    rate, with $(\alpha, \beta)$ from `link` at the reducible loss $L - E$ of the model served:

    - `selection="verifier"` (perfect verification): pass@k
      $= 1 - B(\alpha, \beta + k)/B(\alpha, \beta)$ (Chen et al. 2021);
    - `selection="filter"` (no perfect verifier): n@k $= q\cdot$pass@k, plateauing at
      $q$ = `plateau` (Li et al. 2022, AlphaCode);
    - `selection="reward_model"`: best-of-$k$ chosen by a reward model of accuracy
      $a$ = `verifier_accuracy`,
      $$a\cdot\text{pass@}k + (1 - a)\cdot\text{pass@}1;$$
    - `selection="majority"`: majority voting, no verifier at all:
      `BetaSuccess.majority_at_k`, $E_p[I_p(\frac{k+1}{2}, \frac{k+1}{2})]$, plateauing at
      $P(p > \frac12)$ (Condorcet 1785; Chen et al. 2024).

    **The reward model.** The form is planner's stated model, not a published law: with
    probability $a$ the reward model picks a correct sample whenever one of the $k$ exists
    (it behaves as a perfect verifier), otherwise it picks one of the $k$ at random (it adds
    nothing to one sample). So $a = 1$ is pass@k, $a \to 0$ is pass@1, and every $a$ gives
    pass@1 at $k = 1$; the success plateaus at $a$ plus $(1 - a)$ pass@1 as $k$ grows. The
    value of $a$ belongs to the reward model and the task and has to be measured: on held-out
    problems, with best-of-$k$, pass@1 and pass@$k$ of the same samples,
    $a = (\text{best-of-}k - \text{pass@}1)/(\text{pass@}k - \text{pass@}1)$. This project
    found no source giving all three for one set of samples (Lightman et al. 2023 report
    best-of-1860 on MATH, 78.2% with a process reward model against 72.4% with an outcome
    one, but, in the text read here, not the coverage of those samples), so $a$ has no default:
    `verifier_accuracy` is required with this selection, and refused with the others.

    **The verifier's compute.** A learned verifier or reward model of $N_v$ =
    `verifier_params` parameters scores every generated token of every sample in one forward
    pass, $2N_v$ FLOP per token (the $2N$ per token of Kaplan et al. 2020; Snell et al. 2024
    count a generator and a verifier of the same size as $4N$ per token). Inference FLOP per
    unit of demand become

    $$IC \to k\,\Big(IC + 2N_v\,\frac{IC}{2N\rho}\Big),$$

    with $IC$ the FLOP entering the stage and $IC/(2N\rho)$ the generated tokens per unit of
    demand ($N$ parameters at density $\rho$, `Deployment`'s reading): per token, $(2N\rho +
    2N_v)\,k$. A pruning stage before this one prunes the generator's FLOP, not the
    verifier's. $N_v = 0$ (the default) is a free check, the cost of which is left out, as in
    pass@k with unit tests; majority voting needs no verifier, so it refuses $N_v > 0$. The
    verifier is paid for at every $k$, $k = 1$ included: a plan without it is a pipeline
    without it. A `Deployment` stage after this one prices every FLOP of the stage as decode
    tokens of the generator (it reads $IC/(2N\rho)$ as tokens decoded), not as the verifier's
    forward pass.

    The stage never raises: $k \le 0$ counts as 0 samples and the reducible loss is clamped to
    at least $10^{-12}$, so it stays finite, with finite derivatives, from $k = 1$ (exactly) to
    $k = 10^6$ and beyond. For a constraint on $\log(1 - \text{score})$ use `log_failure`, which
    never forms $1 - \text{score}$ (or `score_log_failure(pipeline, allocation)`). Fields are
    checked where they are built (outside `jit`): `verifier_params` finite and $\ge 0$,
    `verifier_accuracy` in $(0, 1]$.

    **Arguments:**

    - `link`: the `SuccessLink` from loss to per-sample success.
    - `plateau`: $q \in (0, 1]$, used by `selection="filter"` only.
    - `selection`: one of `SELECTIONS` (static: changing it recompiles).
    - `verifier_params`: $N_v \ge 0$, parameters of the learned verifier or reward model
      (default 0: a free check).
    - `verifier_accuracy`: $a \in (0, 1]$, required by `selection="reward_model"` and
      refused by the others.

    **Example:**

    ```python
    sampling = RepeatedSampling(SuccessLink.codex2021())
    model = Pipeline(Pretraining(Chinchilla.sardana2024()), sampling)
    out = model(Allocation(n_params=7e9, n_tokens=1.4e11, n_samples=100.0))
    out.score  # expected pass@100
    ```

    **References:** Villalobos & Atkinson 2023, *Trading Off Compute in Training and
    Inference*, Epoch AI (repeated sampling: inference ×k); Chen et al. 2021 (pass@k);
    Li et al. 2022 (n@k, AlphaCode); Lightman et al. 2023, *Let's Verify Step by Step*
    (arXiv 2305.20050), best-of-N with reward models; Snell et al. 2024, *Scaling LLM
    Test-Time Compute Optimally can be More Effective than Scaling Model Parameters* (arXiv
    2408.03314), a verifier's FLOP; Condorcet 1785 and Chen et al. 2024 (arXiv 2403.02419),
    majority voting (see `BetaSuccess.majority_at_k`).
    """

    link: SuccessLink
    plateau: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=1.0)
    selection: str = eqx.field(static=True, default="verifier")
    verifier_params: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=0.0)
    verifier_accuracy: Float[Array, ""] | None = eqx.field(converter=_optional, default=None)

    variables: ClassVar[tuple[str, ...]] = ("n_samples",)

    def __check_init__(self):
        if self.selection not in SELECTIONS:
            raise ValueError(
                f"selection must be one of {', '.join(map(repr, SELECTIONS))}, "
                f"got {self.selection!r}"
            )
        if not isinstance(self.link, SuccessLink):
            raise ValueError(f"link must be a SuccessLink, got {type(self.link).__name__}")
        if self.selection == "reward_model" and self.verifier_accuracy is None:
            raise ValueError("selection='reward_model' needs verifier_accuracy: the probability "
                             "a in (0, 1] that the reward model picks a correct sample when "
                             "one exists (no published value sets a default)")
        if self.selection != "reward_model" and self.verifier_accuracy is not None:
            raise ValueError(f"verifier_accuracy is used by selection='reward_model' only, "
                             f"not {self.selection!r}")
        nv = self.verifier_params
        if _concrete(nv):
            if not bool(jnp.all(jnp.isfinite(nv) & (nv >= 0))):
                raise ValueError(f"verifier_params must be finite and >= 0, got {nv}")
            if self.selection == "majority" and bool(jnp.any(nv != 0)):
                raise ValueError("selection='majority' uses no verifier: verifier_params must "
                                 f"be 0, got {nv}")
        a = self.verifier_accuracy
        if a is not None and _concrete(a) and not bool(jnp.all((a > 0) & (a <= 1))):
            raise ValueError(f"verifier_accuracy must lie in (0, 1], got {a}")

    def _plateau(self) -> Array:
        return jnp.clip(self.plateau, _FLOOR, 1.0)

    def _select(self, allocation: Allocation, outcome: Outcome) -> tuple[Array, Array]:
        """(log-failure, score) of the selection rule."""
        reducible = outcome.loss - outcome.irreducible_loss
        success = self.link.success(reducible)
        k = allocation.n_samples
        if self.selection == "majority":
            failure, score = _majority(success.alpha, success.beta, k)
            return jnp.log(failure), score
        log_failure = success.log_failure(k)
        pass_k = -jnp.expm1(log_failure)  # full precision at small and large scores
        if self.selection == "filter":
            q = self._plateau()
            return _filtered_log_failure(q, log_failure), q * pass_k
        if self.selection == "reward_model":
            a = jnp.asarray(self.verifier_accuracy, log_failure.dtype)
            log_failure_1 = _beta_log_pass1_failure(success.alpha, success.beta)
            return (_reward_model_log_failure(a, log_failure, log_failure_1),
                    _reward_model_score(a, pass_k, -jnp.expm1(log_failure_1)))
        return log_failure, pass_k

    def log_failure(self, allocation: Allocation, outcome: Outcome) -> Float[Array, ""]:
        r"""$\log(1 - \text{score})$ of this stage, given the `outcome` entering it."""
        return self._select(allocation, outcome)[0]

    def inference_flops_per_unit(self, allocation: Allocation,
                                 outcome: Outcome) -> Float[Array, ""]:
        r"""FLOP per unit of demand after the stage: $k\,(IC + 2N_v\,IC/(2N\rho))$, with $IC$
        the `outcome`'s (the generator's, pruned or not) and $IC/(2N\rho)$ its generated
        tokens per unit of demand (the density floored as `Pruning` floors it)."""
        generator = outcome.inference_flops_per_unit
        active = 2.0 * allocation.n_params * _floor_density(allocation.density)
        tokens = generator / jnp.where(active > 0, active, 1.0)
        verifier = 2.0 * jnp.asarray(self.verifier_params, jnp.result_type(tokens)) * tokens
        return (generator + verifier) * _safe_samples(allocation.n_samples)

    def __call__(self, allocation: Allocation, outcome: Outcome) -> Outcome:
        return Outcome(
            train_flops=outcome.train_flops,
            inference_flops_per_unit=self.inference_flops_per_unit(allocation, outcome),
            loss=outcome.loss,
            irreducible_loss=outcome.irreducible_loss,
            score=self._select(allocation, outcome)[1],
        )


def score_log_failure(pipeline: Pipeline, allocation: Allocation) -> Float[Array, ""]:
    r"""$\log(1 - \text{score})$ of `pipeline` at `allocation`, without forming $1 - \text{score}$.

    Runs the pipeline and returns the `log_failure` of its last `RepeatedSampling` stage
    (stages after it must leave the score alone). Use it for constraints on the failure rate
    where the score may come within $10^{-16}$ of 1 and `log1p(-score)` would lose it.

    **Raises:** `ValueError` if the pipeline has no `RepeatedSampling` stage.
    """
    stages = pipeline.techniques
    last = max((i for i, t in enumerate(stages) if isinstance(t, RepeatedSampling)), default=None)
    if last is None:
        raise ValueError("pipeline has no RepeatedSampling stage, so no score to take")
    outcome = pipeline.base(allocation)
    for technique in stages[:last]:
        outcome = technique(allocation, outcome)
    return stages[last].log_failure(allocation, outcome)
