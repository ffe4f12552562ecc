"""Loss laws: pretraining loss as a function of parameters and training tokens."""

from __future__ import annotations

import abc

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ._checks import check_finite, check_positive

_LOG10 = jnp.log(10.0)


class AbstractLossLaw(eqx.Module):
    """A pretraining loss law $L(N, D)$.

    Concrete laws are pure: `law.loss(n_params, n_tokens)` is the formula and nothing else, so
    it can sit inside a solver loop; `law(n_params, n_tokens)` is the checked entry point for
    users and raises on inputs outside the domain.
    """

    @abc.abstractmethod
    def loss(self, n_params: ArrayLike, n_tokens: ArrayLike) -> Float[Array, "..."]:
        """The loss, without domain checks."""

    @property
    @abc.abstractmethod
    def irreducible(self) -> Float[Array, ""]:
        """The loss no allocation can go below."""

    @abc.abstractmethod
    def __call__(self, n_params: ArrayLike, n_tokens: ArrayLike) -> Float[Array, "..."]:
        """The loss, raising on `n_params <= 0` or `n_tokens <= 0`."""


class Chinchilla(AbstractLossLaw):
    r"""The Chinchilla loss law.

    $$L(N, D) = E + \frac{A}{N^\alpha} + \frac{B}{D^\beta}$$

    with $N$ parameters and $D$ training tokens. Every coefficient is an array, so a batch of
    laws (a bootstrap, a prior over coefficients) is built and solved under `jax.vmap`, and new
    values never recompile.

    **Arguments:**

    - `E`: irreducible loss (nats per token).
    - `A`, `alpha`: scale and exponent of the parameter term.
    - `B`, `beta`: scale and exponent of the data term.

    **Example:**

    ```python
    law = Chinchilla.hoffmann2022()
    law(70e9, 1.4e12)            # Chinchilla itself: about 1.94
    law.compute_optimal(5.76e23) # (N*, D*) for Chinchilla's budget
    ```

    **References:**

    Hoffmann et al. 2022, *Training Compute-Optimal Large Language Models*, eq. (2) and App. D.2.
    """

    E: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    A: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    B: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    alpha: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    beta: Float[Array, ""] = eqx.field(converter=jnp.asarray)

    # ----------------------------------------------------------------------------------- presets
    @classmethod
    def hoffmann2022(cls) -> Chinchilla:
        """Rounded constants of the paper body: E 1.69, A 406.4, B 410.7, α 0.34, β 0.28.

        Hoffmann et al. 2022, Appendix D.2 (Approach 3).
        """
        return cls(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)

    @classmethod
    def hoffmann2022_unrounded(cls) -> Chinchilla:
        """Unrounded Approach-3 constants, as used by Epoch AI's replication code.

        E = e^0.5267228, A = e^6.0073404, B = e^6.0179186, α 0.33917084, β 0.2849083.
        Besiroglu et al. 2024 (arXiv 2404.10102), repository epoch-research/analyzing-chinchilla.
        """
        return cls(
            E=float(jnp.exp(0.5267228)),
            A=float(jnp.exp(6.0073404)),
            B=float(jnp.exp(6.0179186)),
            alpha=0.33917084,
            beta=0.2849083,
        )

    @classmethod
    def besiroglu2024(cls) -> Chinchilla:
        """Epoch AI's replication: E 1.8172, A 482.01, B 2085.43, α 0.3478, β 0.3658.

        Besiroglu et al. 2024, *Chinchilla Scaling: A replication attempt* (arXiv 2404.10102),
        Table 1; standard errors 0.03, 124.58, 1293.23, 0.02, 0.02.
        """
        return cls(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)

    @classmethod
    def sardana2024(cls) -> Chinchilla:
        """Defaults of Sardana et al. 2024: E 1.69, A 406.4, B 410.7, α 0.336, β 0.283.

        Sardana et al. 2024, *Beyond Chinchilla-Optimal* (ICML 2024), repository
        nikhilsardana/beyond-chinchilla, `utils.py`.
        """
        return cls(E=1.69, A=406.4, B=410.7, alpha=0.336, beta=0.283)

    @classmethod
    def from_preset(cls, name: str) -> Chinchilla:
        """A preset by the name the command line uses (see `PRESETS`)."""
        try:
            return getattr(cls, PRESETS[name])()
        except KeyError:
            raise ValueError(
                f"unknown law preset {name!r}; choose one of {', '.join(sorted(PRESETS))}"
            ) from None

    # ------------------------------------------------------------------------------------ values
    @property
    def irreducible(self) -> Float[Array, ""]:
        return self.E

    def loss(self, n_params: ArrayLike, n_tokens: ArrayLike) -> Float[Array, "..."]:
        return self.E + self.A * n_params ** (-self.alpha) + self.B * n_tokens ** (-self.beta)

    def __call__(self, n_params: ArrayLike, n_tokens: ArrayLike) -> Float[Array, "..."]:
        n_params = check_positive(n_params, "n_params")
        n_tokens = check_positive(n_tokens, "n_tokens")
        return self.loss(n_params, n_tokens)

    # ------------------------------------------------------------------------------ closed forms
    def compute_optimal(
        self, train_flops: ArrayLike
    ) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
        r"""Training-optimal $(N^*, D^*)$ for a budget $C = 6ND$.

        $N^* = G (C/6)^{\beta/(\alpha+\beta)}$, $D^* = (C/6)^{\alpha/(\alpha+\beta)}/G$ with
        $G = (\alpha A / (\beta B))^{1/(\alpha+\beta)}$ (Hoffmann et al. 2022, eq. 4).
        """
        c = check_positive(train_flops, "train_flops") / 6.0
        s = self.alpha + self.beta
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / s)
        return g * c ** (self.beta / s), c ** (self.alpha / s) / g

    def loss_optimal(
        self, target_loss: ArrayLike
    ) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
        r"""Training-optimal $(N_c, D_c)$ reaching `target_loss` with least $6ND$.

        $N_c = [A(1 + \alpha/\beta)/(\ell - E)]^{1/\alpha}$,
        $D_c = [B(1 + \beta/\alpha)/(\ell - E)]^{1/\beta}$.
        """
        gap = self._gap(target_loss)
        n = (self.A * (1.0 + self.alpha / self.beta) / gap) ** (1.0 / self.alpha)
        d = (self.B * (1.0 + self.beta / self.alpha) / gap) ** (1.0 / self.beta)
        return n, d

    def min_params(self, target_loss: ArrayLike) -> Float[Array, "..."]:
        r"""$N_{\min} = (A/(\ell - E))^{1/\alpha}$: no model this small reaches `target_loss`."""
        return (self.A / self._gap(target_loss)) ** (1.0 / self.alpha)

    def iso_loss_tokens(self, n_params: ArrayLike, target_loss: ArrayLike) -> Float[Array, "..."]:
        r"""Tokens that bring `n_params` parameters to `target_loss`.

        $D(N) = [B / (\ell - E - A N^{-\alpha})]^{1/\beta}$, defined for $N > N_{\min}$.
        """
        n_params = check_positive(n_params, "n_params")
        rest = self._gap(target_loss) - self.A * n_params ** (-self.alpha)
        rest = eqx.error_if(
            rest, rest <= 0, "n_params must exceed min_params(target_loss) on the iso-loss curve"
        )
        return (self.B / rest) ** (1.0 / self.beta)

    def inference_cut_cost(self, cut_oom: ArrayLike) -> Float[Array, "..."]:
        r"""Extra training compute (OOM) for cutting inference compute by `cut_oom` OOM.

        Starting at the training optimum for any target loss and moving along the iso-loss
        curve to a model $10^k$ times smaller,
        $\Delta TC(k) = -\frac{1}{\beta}\log_{10}\!\left[\frac{\alpha+\beta}{\alpha}
        - \frac{\beta}{\alpha}10^{\alpha k}\right] - k$.
        Independent of $A$, $B$, $E$ and the target, which is why the trade-off has no scale
        effect (Villalobos & Atkinson 2023). Defined for $0 \le k < k_{\max}$.
        """
        k = check_finite(cut_oom, "cut_oom")
        k = eqx.error_if(k, k < 0, "cut_oom must be >= 0")
        k = eqx.error_if(k, k >= self.max_inference_cut(), "cut_oom must be < max_inference_cut()")
        a, b = self.alpha, self.beta
        inner = (a + b) / a - (b / a) * 10.0 ** (a * k)
        return -jnp.log(inner) / (b * _LOG10) - k

    def max_inference_cut(self) -> Float[Array, ""]:
        r"""$k_{\max} = \frac{1}{\alpha}\log_{10}\frac{\alpha+\beta}{\beta}$: the smallest model
        reaching the target (at infinite data) is $10^{k_{\max}}$ times smaller than the
        training-optimal one."""
        return jnp.log((self.alpha + self.beta) / self.beta) / (self.alpha * _LOG10)

    def marginal_rate_point(self, rate: ArrayLike = 6.0) -> tuple[Float[Array, ""], Float[Array, ""]]:
        r"""Where the iso-loss curve's exchange rate $|d\log TC/d\log IC|$ reaches `rate`.

        Along the curve $d\log TC/d\log IC = 1 - r$ with
        $r = \alpha A N^{-\alpha} / (\beta B D^{-\beta})$; the rate $R$ is reached at
        $r = R + 1$, an inference cut of $k = \frac{1}{\alpha}\log_{10}\frac{r(\alpha+\beta)}{\alpha + r\beta}$
        and extra training $\Delta TC = \frac{1}{\beta}\log_{10}\frac{\alpha + r\beta}{\alpha+\beta} - k$.

        **Returns:** `(train_oom, inference_cut_oom)`.
        """
        r = jnp.asarray(rate) + 1.0
        a, b = self.alpha, self.beta
        k = jnp.log(r * (a + b) / (a + r * b)) / (a * _LOG10)
        dtc = jnp.log((a + r * b) / (a + b)) / (b * _LOG10) - k
        return dtc, k

    def _gap(self, target_loss: ArrayLike) -> Float[Array, "..."]:
        gap = check_finite(target_loss, "target_loss") - self.E
        return eqx.error_if(gap, gap <= 0, "target_loss must exceed the irreducible loss E")


PRESETS: dict[str, str] = {
    "hoffmann2022": "hoffmann2022",
    "hoffmann2022-unrounded": "hoffmann2022_unrounded",
    "besiroglu2024": "besiroglu2024",
    "sardana2024": "sardana2024",
}
"""Law presets by command-line name, mapped to their `Chinchilla` constructor."""
