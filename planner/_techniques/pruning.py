r"""Pruning by iterative magnitude pruning (IMP): what it costs and what it does to the loss.

IMP prunes a fraction $x$ of the remaining weights, retrains, and repeats, so after $n$ rounds
the density (fraction of weights kept) is $d = (1 - x)^n$. Serving the pruned model costs a
factor $d$ of the dense model's inference compute; reaching it costs a multiple of the dense
training compute that depends on how the retraining rounds are counted
(`imp_training_factor`). What pruning does to performance is a law of its own: the error of
IMP-pruned vision networks as a function of density (`rosenfeld_error`, Rosenfeld et al.
2021), and for language models the loss of sparse Transformers as a function of sparsity,
non-zero parameters and tokens (`SparsityLaw`, Frantar et al. 2023). The `Pruning` stage puts
the two together inside a `Pipeline`.
"""

from __future__ import annotations

from typing import ClassVar, Literal, get_args

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_finite, check_interval, check_positive
from .._compose import AbstractTechnique, Allocation, Outcome
from .._laws import Chinchilla

IMPVariant = Literal["final_retrain", "epoch", "dense_rounds"]
"""How the retraining rounds of IMP are counted; see `imp_training_factor`."""

IMP_VARIANTS: tuple[str, ...] = get_args(IMPVariant)
"""Every `IMPVariant`, the default (`"final_retrain"`) first."""


# ------------------------------------------------------------------------------- cost factors
def imp_training_factor(
    density: ArrayLike, rounds_fraction: ArrayLike = 0.2, variant: IMPVariant = "final_retrain"
) -> Float[Array, "..."]:
    r"""Training compute of IMP to density $d$, in multiples of the dense training compute.

    Pruning a fraction $x$ of the remaining weights per round takes
    $n = \log d / \log(1 - x)$ rounds to reach density $d$. Three ways to count the cost:

    - `"epoch"`: Epoch's model, $F = (1 - d)/x$. Training at density $(1-x)^i$ for
      $i = 0, \dots, n-1$ (the dense training, then each retrain before the next pruning
      step) costs in proportion to that density, and the geometric series sums to
      $(1 - d)/x$: bounded by $1/x$ (5×, 0.70 OOM, for $x = 0.2$) however far one prunes. The
      final retrain at density $d$ is not counted, so $F < 1$ for $d > 1 - x$ and $F = 0$ at
      $d = 1$ (no rounds, nothing counted): a dense model for free. That is harmless for
      reading off spans at a given density, but an optimiser would take the free lunch, so the
      `Pruning` stage defaults to the next variant.
    - `"final_retrain"`: the same series with the final retrain at density $d$ counted,
      $F = (1 - d(1 - x))/x = 1 + (1 - d)(1 - x)/x$. It equals 1 at $d = 1$ (no pruning costs
      exactly the dense training), is smooth across it, and is bounded by $1/x$.
    - `"dense_rounds"`: every round costs a full dense training (sparse kernels bring no
      training speed-up), $F = n + 1 = 1 + \log d / \log(1 - x)$, unbounded as $d \to 0$.

    All three are differentiable in $d$ and $x$, with $n$ continuous.

    **Arguments:**

    - `density`: density $d$ of the pruned model, in (0, 1].
    - `rounds_fraction`: fraction $x$ of the remaining weights pruned per round, in (0, 1);
      0.2 is the typical value of the IMP literature that Epoch uses.
    - `variant`: `"final_retrain"` (default), `"epoch"` or `"dense_rounds"`.

    **Returns:** the factor $F$ multiplying the dense training compute.

    **Example:**

    ```python
    imp_training_factor(0.1, variant="epoch")  # 4.5: 10x less inference for 0.65 OOM of training
    ```

    **References:** Villalobos & Atkinson 2023, *Trading Off Compute in Training and
    Inference*, Epoch AI, section on pruning (the `"epoch"` variant and its table:
    0.8 → 1.00, 0.5 → 2.50, 0.2 → 4.00, 0.1 → 4.50, 0.05 → 4.75, $0.8^{20}$ → 4.94);
    Frankle & Carbin 2019, *The Lottery Ticket Hypothesis* (IMP with 20% per round).
    """
    _check_variant(variant)
    d = check_interval(density, "density", 0.0, 1.0, open_low=True)
    return _training_factor(d, _check_rounds_fraction(rounds_fraction), variant)


def imp_inference_factor(density: ArrayLike) -> Float[Array, "..."]:
    r"""Inference compute of the pruned model, in multiples of the dense one: $d$.

    Epoch's model counts inference FLOP in proportion to the non-zero weights, which assumes
    kernels that skip the pruned ones.

    **Arguments:**

    - `density`: density $d$ of the pruned model, in (0, 1].

    **Returns:** $d$ itself, as a floating array.

    **References:** Villalobos & Atkinson 2023, *Trading Off Compute in Training and
    Inference*, Epoch AI, section on pruning.
    """
    return _as_float(check_interval(density, "density", 0.0, 1.0, open_low=True))


def _training_factor(density: ArrayLike, rounds_fraction: ArrayLike, variant: str) -> Array:
    # The raw maths of `imp_training_factor`: finite, with finite derivatives, for any finite
    # input, so that it can sit in a solver loop. Density is floored at machine epsilon (below
    # it the first two derivatives of log d overflow) but not capped at 1: the formulas
    # continue smoothly past it, so derivatives at exactly d = 1 are the one-sided ones.
    d = _floor_density(density)
    x = _as_float(rounds_fraction)
    eps = float(jnp.finfo(x.dtype).eps)
    x = jnp.clip(x, eps, 1.0 - eps)
    if variant == "epoch":
        return (1.0 - d) / x
    if variant == "final_retrain":
        # written as 1 + ..., not (1 - d(1 - x))/x, so that it is exactly 1 at d = 1
        return 1.0 + (1.0 - d) * (1.0 - x) / x
    if variant == "dense_rounds":
        return 1.0 + jnp.log(d) / jnp.log1p(-x)
    raise ValueError(_variant_message(variant))


# ------------------------------------------------------------------ performance against density
def rosenfeld_error(
    density: ArrayLike,
    dense_error: ArrayLike,
    plateau_density: ArrayLike,
    gamma: ArrayLike,
    plateau_error: ArrayLike,
) -> Float[Array, "..."]:
    r"""Error of an IMP-pruned network at density $d$ (Rosenfeld et al. 2021).

    $$\hat\epsilon(d) = \epsilon_{np}\left|\frac{d - j\,p\,k}{d - j\,p}\right|^{\gamma}
      = \epsilon_{np}\left(\frac{d^2 + p^2 k^2}{d^2 + p^2}\right)^{\gamma/2},
      \qquad k = \left(\frac{\epsilon^\uparrow}{\epsilon_{np}}\right)^{1/\gamma}$$

    with $j = \sqrt{-1}$ (the complex modulus is evaluated in its real form, in log space). Three
    regimes: flat at the dense error $\epsilon_{np}$ for $d \gg p k$; a power law
    $\epsilon^\uparrow (p/d)^\gamma$, slope $-\gamma$ on log-log axes, for $p \ll d \ll p k$;
    and a plateau at $\epsilon^\uparrow$ (chance-level error) for $d \ll p$.

    Across scales the paper replaces $d$ by the invariant $l^\phi w^\psi d$ (depth $l$,
    width $w$). The error depends on $d$ only through $d/p$, so pass
    $p / (l^\phi w^\psi)$ as `plateau_density` to use that form.

    No preset: the fitted $\epsilon_{np}$, $p$, $\gamma$, $\epsilon^\uparrow$, $\phi$, $\psi$
    were not found in a form that could be checked (Rosenfeld et al. 2021), so every constant is an
    argument.

    **Arguments:**

    - `density`: density $d$, in (0, 1].
    - `dense_error`: error $\epsilon_{np}$ of the unpruned network, > 0.
    - `plateau_density`: $p$, the density below which the error levels off at
      $\epsilon^\uparrow$, > 0.
    - `gamma`: slope $\gamma$ of the power-law region, > 0.
    - `plateau_error`: the high-error plateau $\epsilon^\uparrow$, > 0 (above `dense_error`
      for the usual shape).

    **Returns:** the error $\hat\epsilon(d)$.

    **References:** Rosenfeld, Frankle, Carbin & Shavit 2021, *On the Predictability of
    Pruning Across Scales*, ICML 2021: the functional form $\hat\epsilon$ of the error of
    IMP-pruned networks against density, and the scale invariant $l^\phi w^\psi d$.
    """
    d = check_interval(density, "density", 0.0, 1.0, open_low=True)
    dense_error = check_positive(dense_error, "dense_error")
    plateau_density = check_positive(plateau_density, "plateau_density")
    gamma = check_positive(gamma, "gamma")
    plateau_error = check_positive(plateau_error, "plateau_error")
    return _rosenfeld_error(d, dense_error, plateau_density, gamma, plateau_error)


def _rosenfeld_error(d, dense_error, plateau_density, gamma, plateau_error) -> Array:
    # log-space form of the complex modulus: finite for any positive input, no d^2 overflow
    d = _floor_density(d)
    floor = float(jnp.finfo(d.dtype).eps)
    e_np, e_up, p, g = (
        jnp.maximum(_as_float(v), floor)
        for v in (dense_error, plateau_error, plateau_density, gamma)
    )
    log_d, log_p = jnp.log(d), jnp.log(p)
    log_pk = log_p + (jnp.log(e_up) - jnp.log(e_np)) / g
    upper = jnp.logaddexp(2.0 * log_d, 2.0 * log_pk)
    lower = jnp.logaddexp(2.0 * log_d, 2.0 * log_p)
    return e_np * jnp.exp(0.5 * g * (upper - lower))


class SparsityLaw(eqx.Module):
    r"""Loss of a sparse model: the sparsity scaling law of Frantar et al. (2023).

    $$L(S, N, D) = \left(a_S (1 - S)^{b_S} + c_S\right)\left(\frac{1}{N}\right)^{b_N}
        + \left(\frac{a_D}{D}\right)^{b_D} + c$$

    with sparsity $S = 1 - d$, $N$ the **non-zero** parameters and $D$ training tokens. At
    equal non-zero count a sparser model is better: it is a larger dense model pruned. Its
    capacity term is that of a dense model $g(d)$ times larger than its non-zero count,

    $$g(d) = m(d)^{-1/b_N}, \qquad m(d) = \frac{a_S d^{b_S} + c_S}{a_S + c_S},$$

    so pruning a dense model of $N$ parameters to density $d$ leaves a model worth a dense one
    of $d\,g(d)\,N$ parameters (`dense_equivalent_fraction`). For T5/C4,
    $g(0.25) = 2.16$: the 75%-sparse model matches a dense one 2.16 times its non-zero
    count, and at most $((a_S + c_S)/c_S)^{1/b_N} = 3.65$ times as $S \to 1$.

    **Arguments:**

    - `a_S`, `b_S`, `c_S`: the sparsity-dependent coefficient of the capacity term.
    - `b_N`: exponent of the non-zero parameter count.
    - `a_D`, `b_D`: scale (tokens) and exponent of the data term.
    - `c`: irreducible loss.

    **Example:**

    ```python
    law = SparsityLaw.frantar2023_t5()
    law.effective_params_multiplier(0.25)   # 2.16
    law.dense_equivalent_fraction(0.25)     # 0.54: a 4x-pruned model is worth 54% of the dense
    ```

    **References:** Frantar, Riquelme, Houlsby, Alistarh & Evci 2023, *Scaling Laws for
    Sparsely-Connected Foundation Models* (arXiv 2309.08520, ICLR 2024), the law $L(S, N, D)$
    and its table of fitted coefficients for ViT/JFT-4B and T5/C4.
    """

    a_S: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    b_S: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    c_S: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    b_N: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    a_D: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    b_D: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    c: Float[Array, ""] = eqx.field(converter=jnp.asarray)

    # ----------------------------------------------------------------------------------- presets
    @classmethod
    def frantar2023_t5(cls) -> SparsityLaw:
        """T5 on C4 (the language fit): a_S 16.8, b_S 0.722, c_S 45.0, b_N 0.245,
        a_D 6.90e8, b_D 0.203, c 0.651.

        Frantar et al. 2023 (arXiv 2309.08520), table of fitted coefficients, row T5/C4, as
        transcribed by a secondary summary of the paper (the primary table could not be consulted).
        Checked against the 48 T5/C4 runs the authors released with their fitting code
        (google-research/jaxpruner, `projects/bigsparse/t5-data.csv`): with $D$ = steps ×
        65,536 tokens (batch 128 × 512, assumed) and the non-zero count at the file's scale 1
        fitted (1.72e8), these constants reproduce the measured validation loss to 1.0% rms
        (2.6% worst) in log loss; leaving the token unit free instead gives 6.1e4 tokens per
        step. Only `a_S/c_S`, `b_S` and `b_N` enter the `Pruning` stage, and those do not
        depend on the units of $N$ and $D$.
        """
        return cls(a_S=16.8, b_S=0.722, c_S=45.0, b_N=0.245, a_D=6.90e8, b_D=0.203, c=0.651)

    @classmethod
    def frantar2023_vit(cls) -> SparsityLaw:
        """ViT on JFT-4B (the vision fit, $D$ in images): a_S 294, b_S 0.821, c_S 468,
        b_N 0.392, a_D 2.37e8, b_D 0.890, c 4.517.

        Frantar et al. 2023 (arXiv 2309.08520), table of fitted coefficients, row ViT/JFT-4B,
        as transcribed by a secondary summary. It agrees with the fit printed by the authors'
        notebook (google-research/jaxpruner, `projects/bigsparse/sparsity-scaling.ipynb`,
        fitted with $N$ in millions and $D$ in billions) once converted to raw units; the
        test suite does that conversion.
        """
        return cls(a_S=294.0, b_S=0.821, c_S=468.0, b_N=0.392, a_D=2.37e8, b_D=0.890, c=4.517)

    # ------------------------------------------------------------------------------------ values
    def loss(
        self, density: ArrayLike, n_nonzero: ArrayLike, n_tokens: ArrayLike
    ) -> Float[Array, "..."]:
        """The loss $L(1 - d, N, D)$, without domain checks."""
        d = _floor_density(density)
        capacity = self.a_S * d**self.b_S + self.c_S
        return capacity * jnp.asarray(n_nonzero) ** (-self.b_N) + (
            self.a_D / jnp.asarray(n_tokens)
        ) ** self.b_D + self.c

    def __call__(
        self, density: ArrayLike, n_nonzero: ArrayLike, n_tokens: ArrayLike
    ) -> Float[Array, "..."]:
        """The loss, raising unless `density` is in (0, 1] and `n_nonzero`, `n_tokens` > 0.

        **Arguments:**

        - `density`: density $d = 1 - S$, in (0, 1].
        - `n_nonzero`: non-zero parameters $N$, > 0.
        - `n_tokens`: training tokens $D$ (images for the ViT fit), > 0.

        **Returns:** the loss $L(S, N, D)$.
        """
        d = check_interval(density, "density", 0.0, 1.0, open_low=True)
        n = check_positive(n_nonzero, "n_nonzero")
        t = check_positive(n_tokens, "n_tokens")
        return self.loss(d, n, t)

    def effective_params_multiplier(self, density: ArrayLike) -> Float[Array, "..."]:
        r"""$g(d) = m(d)^{-1/b_N}$: the dense model, in multiples of the non-zero count, with
        the same capacity term as a model of density $d$.

        **Arguments:**

        - `density`: density $d$, in (0, 1].

        **Returns:** $g(d) \ge 1$, equal to 1 at $d = 1$.
        """
        d = check_interval(density, "density", 0.0, 1.0, open_low=True)
        return jnp.exp(-self._log_capacity_multiplier(d) / self.b_N)

    def dense_equivalent_fraction(self, density: ArrayLike) -> Float[Array, "..."]:
        r"""$d\,g(d)$: pruning a dense model to density $d$ leaves a model worth a dense one
        this fraction of its size.

        **Arguments:**

        - `density`: density $d$, in (0, 1].

        **Returns:** $d\,g(d)$, 1 at $d = 1$ and below 1 for the fitted constants.
        """
        d = check_interval(density, "density", 0.0, 1.0, open_low=True)
        return jnp.exp(self._log_dense_equivalent_fraction(d))

    def _log_capacity_multiplier(self, density: ArrayLike) -> Array:
        # log m(d); exactly 0 at d = 1
        d = _floor_density(density)
        return jnp.log(self.a_S * d**self.b_S + self.c_S) - jnp.log(self.a_S + self.c_S)

    def _log_dense_equivalent_fraction(self, density: ArrayLike) -> Array:
        d = _floor_density(density)
        return jnp.log(d) - self._log_capacity_multiplier(d) / self.b_N


# ------------------------------------------------------------------------------------ the stage
class Pruning(AbstractTechnique):
    r"""IMP to density $d$ as a `Pipeline` stage.

    Reads `allocation.density` and maps the running outcome to

    $$TC \to F(d)\,TC, \qquad IC \to d\,IC, \qquad
      L \to L + \left(M(d) - 1\right) A N^{-\alpha}, \qquad
      M(d) = \left(d\,g(d)\right)^{-\alpha},$$

    where $F$ is `imp_training_factor` (the `variant` field; `"final_retrain"` by default, so
    that $F(1) = 1$ and the stage is the identity at $d = 1$: the `"epoch"` variant makes the
    dense model free to train, which an optimiser would exploit), $A N^{-\alpha}$ is the
    parameter term of the pipeline's `Chinchilla` law at the dense size $N$, and $d\,g(d)$ is
    `SparsityLaw.dense_equivalent_fraction`: the pruned model is scored as a dense model of
    $d\,g(d)\,N$ parameters, $g(d) = m(d)^{-1/b_N}$,
    $m(d) = (a_S d^{b_S} + c_S)/(a_S + c_S)$ (Frantar's sparsity multiplier of the capacity
    term, normalised so that $m(1) = 1$).

    Why $(d\,g(d))^{-\alpha}$ and not $m(d)$ alone: Frantar's $N$ counts non-zero weights, so
    $m(d) \le 1$ says a sparse model beats a dense one *with as many non-zero weights*. Here
    $N$ is the dense size the plan trains; multiplying its parameter term by $m(d)$ would make
    pruning lower the loss while cutting inference, for free. Converting through the
    dense-equivalent size keeps Frantar's transferable finding (a sparse model is worth $g(d)$
    times its non-zero count: sparsity acts as a multiplier on model size) and prices it with
    the pipeline's own exponent $\alpha$. $M(1) = 1$ exactly, $M$ is smooth, and it grows as
    $d$ falls: with the T5/C4 constants a 10%-density model is worth a dense one of 27.6% of the
    size, not 10%.

    Pruning and overtraining pull the same lever: both shrink the (effective) parameter count
    that serving pays for, and both pay for it in the parameter term $A N^{-\alpha}$, which
    only more tokens can buy back. The penalty here is proportional to that term at the
    allocation's $N$, so after overtraining (small $N$, the parameter term already large and
    the data term already expensive to push down) the same density costs more loss and more
    tokens to recover. That is why the spans of the two techniques (Villalobos & Atkinson 2023:
    1.2/0.7 OOM and ~0.7/1 OOM) do not add, and the pipeline does not add them: the penalty is
    computed on the running allocation, not as a fixed offset.

    The maths is raw: no check raises inside a solver loop. Density is floored at machine
    epsilon; every output is finite, with finite derivatives, for any finite positive input.

    **Arguments:**

    - `law`: the pipeline's `Chinchilla` law (the one in `Pretraining`); its parameter term
      is what pruning penalises. Pass the same law to both stages.
    - `sparsity_law`: where $a_S$, $b_S$, $c_S$, $b_N$ come from; default
      `SparsityLaw.frantar2023_t5()`.
    - `rounds_fraction`: fraction $x$ of the remaining weights pruned per IMP round, in
      (0, 1); default 0.2.
    - `variant`: how IMP rounds are counted (static): `"final_retrain"` (default), `"epoch"`
      or `"dense_rounds"`; see `imp_training_factor`.

    **Example:**

    ```python
    law = Chinchilla.sardana2024()
    pipeline = Pipeline(Pretraining(law), Pruning(law))
    pipeline(Allocation(n_params=7e9, n_tokens=1.4e11, density=0.5))
    ```

    **References:** Villalobos & Atkinson 2023, *Trading Off Compute in Training and
    Inference*, Epoch AI (IMP cost model, spans, interference of techniques sharing a
    mechanism); Frantar et al. 2023, *Scaling Laws for Sparsely-Connected Foundation Models*
    (arXiv 2309.08520) (the sparsity multiplier); Frantar et al. 2025, *Compression Scaling
    Laws: Unifying Sparsity and Quantization* (sparsity as an effective-parameter multiplier).
    """

    law: Chinchilla
    sparsity_law: SparsityLaw = eqx.field(default_factory=SparsityLaw.frantar2023_t5)
    rounds_fraction: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=0.2)
    variant: IMPVariant = eqx.field(static=True, default="final_retrain")

    variables: ClassVar[tuple[str, ...]] = ("density",)

    def __check_init__(self):
        if not isinstance(self.law, Chinchilla):
            raise ValueError(
                f"Pruning needs the pipeline's Chinchilla law as `law` (its parameter term "
                f"A*N^-alpha is what pruning penalises); got {type(self.law).__name__}"
            )
        if not isinstance(self.sparsity_law, SparsityLaw):
            raise ValueError(f"sparsity_law must be a SparsityLaw; got {self.sparsity_law!r}")
        _check_variant(self.variant)

    def __call__(self, allocation: Allocation, outcome: Outcome) -> Outcome:
        d = _floor_density(allocation.density)
        train_factor = _training_factor(d, self.rounds_fraction, self.variant)
        log_fraction = self.sparsity_law._log_dense_equivalent_fraction(d)
        penalty = jnp.expm1(-self.law.alpha * log_fraction)
        return Outcome(
            train_flops=outcome.train_flops * train_factor,
            inference_flops_per_unit=outcome.inference_flops_per_unit * d,
            loss=outcome.loss + penalty * _param_term(self.law, allocation.n_params),
            irreducible_loss=outcome.irreducible_loss,
            score=outcome.score,
        )


def _param_term(law: Chinchilla, n_params: ArrayLike) -> Array:
    # A N^-alpha: the part of the Chinchilla loss that pruning (and overtraining) moves
    return law.A * jnp.asarray(n_params) ** (-law.alpha)


# ------------------------------------------------------------------------------------- helpers
def _as_float(x: ArrayLike) -> Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(float)


def _floor_density(density: ArrayLike) -> Array:
    d = _as_float(density)
    return jnp.maximum(d, float(jnp.finfo(d.dtype).eps))


def _check_rounds_fraction(rounds_fraction: ArrayLike) -> Array:
    x = check_finite(rounds_fraction, "rounds_fraction")
    return eqx.error_if(x, (x <= 0) | (x >= 1), "rounds_fraction must lie in (0, 1)")


def _variant_message(variant: object) -> str:
    return f"unknown IMP variant {variant!r}; choose one of {', '.join(IMP_VARIANTS)}"


def _check_variant(variant: object) -> None:
    if variant not in IMP_VARIANTS:
        raise ValueError(_variant_message(variant))

