"""Loss laws: pretraining loss as a function of parameters and training tokens."""

import abc
import math

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ._checks import check_all, check_at_least, check_positive, domain_conditions

# A Python float, so that it takes the dtype of the law (float32 or float64) and does not
# depend on whether x64 was enabled when this module was imported.
_LOG10 = math.log(10.0)


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
    def hoffmann2022(cls) -> "Chinchilla":
        """Rounded constants of the paper body: E 1.69, A 406.4, B 410.7, α 0.34, β 0.28.

        Hoffmann et al. 2022, Appendix D.2 (Approach 3).
        """
        return cls(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)

    @classmethod
    def hoffmann2022_unrounded(cls) -> "Chinchilla":
        """Unrounded Approach-3 constants, as used by Epoch AI's replication code.

        E = e^0.5267228, A = e^6.0073404, B = e^6.0179186, α 0.33917084, β 0.2849083.
        Besiroglu et al. 2024 (arXiv 2404.10102), repository epoch-research/analyzing-chinchilla.
        """
        return cls(
            E=math.exp(0.5267228),
            A=math.exp(6.0073404),
            B=math.exp(6.0179186),
            alpha=0.33917084,
            beta=0.2849083,
        )

    @classmethod
    def besiroglu2024(cls) -> "Chinchilla":
        """Epoch AI's replication: E 1.8172, A 482.01, B 2085.43, α 0.3478, β 0.3658.

        Besiroglu et al. 2024, *Chinchilla Scaling: A replication attempt* (arXiv 2404.10102),
        Table 1; standard errors 0.03, 124.58, 1293.23, 0.02, 0.02.
        """
        return cls(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)

    @classmethod
    def sardana2024(cls) -> "Chinchilla":
        """Defaults of Sardana et al. 2024: E 1.69, A 406.4, B 410.7, α 0.336, β 0.283.

        Sardana et al. 2024, *Beyond Chinchilla-Optimal* (ICML 2024), repository
        nikhilsardana/beyond-chinchilla, `utils.py`.
        """
        return cls(E=1.69, A=406.4, B=410.7, alpha=0.336, beta=0.283)

    @classmethod
    def from_preset(cls, name: str) -> "Chinchilla":
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
        n_params, n_tokens = jnp.asarray(n_params), jnp.asarray(n_tokens)
        return check_all(
            self.loss(n_params, n_tokens),
            *domain_conditions(n_params, "n_params", n_params <= 0, "must be > 0"),
            *domain_conditions(n_tokens, "n_tokens", n_tokens <= 0, "must be > 0"),
        )

    # ------------------------------------------------------------------------------ closed forms
    def compute_optimal(
        self, train_flops: ArrayLike
    ) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
        r"""Training-optimal $(N^*, D^*)$ for a budget $C = 6ND$.

        $N^* = G (C/6)^{\beta/(\alpha+\beta)}$, $D^* = (C/6)^{\alpha/(\alpha+\beta)}/G$ with
        $G = (\alpha A / (\beta B))^{1/(\alpha+\beta)}$ (Hoffmann et al. 2022, eq. 4).

        **Arguments:**

        - `train_flops`: the training budget $C$ in FLOP, > 0.

        **Returns:** `(n_params, n_tokens)` minimising $L(N, D)$ on $6ND = C$.
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

        **Arguments:**

        - `target_loss`: the loss $\ell$ to reach, > `E`.

        **Returns:** `(n_params, n_tokens)` minimising $6ND$ on $L(N, D) = \ell$.
        """
        gap = self._gap(target_loss)
        n = (self.A * (1.0 + self.alpha / self.beta) / gap) ** (1.0 / self.alpha)
        d = (self.B * (1.0 + self.beta / self.alpha) / gap) ** (1.0 / self.beta)
        return n, d

    def min_params(self, target_loss: ArrayLike) -> Float[Array, "..."]:
        r"""The smallest model that reaches `target_loss`, with infinite data.

        $N_{\min} = (A/(\ell - E))^{1/\alpha}$; the iso-loss curve is defined for $N > N_{\min}$.

        **Arguments:**

        - `target_loss`: the loss $\ell$ to reach, > `E`.

        **Returns:** $N_{\min}$.
        """
        return (self.A / self._gap(target_loss)) ** (1.0 / self.alpha)

    def iso_loss_tokens(self, n_params: ArrayLike, target_loss: ArrayLike) -> Float[Array, "..."]:
        r"""Tokens that bring `n_params` parameters to `target_loss`.

        $D(N) = [B / (\ell - E - A N^{-\alpha})]^{1/\beta}$, defined for $N > N_{\min}$.

        **Arguments:**

        - `n_params`: model size $N$, > `min_params(target_loss)`.
        - `target_loss`: the loss $\ell$ to reach, > `E`.

        **Returns:** the tokens $D$ with $L(N, D) = \ell$.
        """
        n_params = jnp.asarray(n_params)
        gap, target_conditions = self._gap_conditions(target_loss)
        rest = gap - self.A * n_params ** (-self.alpha)
        rest = check_all(
            rest,
            *domain_conditions(n_params, "n_params", n_params <= 0, "must be > 0"),
            *target_conditions,
            (rest <= 0, "n_params must exceed min_params(target_loss) on the iso-loss curve"),
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

        **Arguments:**

        - `cut_oom`: the inference cut $k$ in OOM, $0 \le k <$ `max_inference_cut()`.

        **Returns:** $\Delta TC(k)$ in OOM.

        **References:**

        Villalobos & Atkinson 2023, *Trading Off Compute in Training and Inference*, Epoch AI.
        """
        k = jnp.asarray(cut_oom)
        k = check_all(
            k,
            *domain_conditions(k, "cut_oom", k < 0, "must be >= 0"),
            (k >= self.max_inference_cut(), "cut_oom must be < max_inference_cut()"),
        )
        a, b = self.alpha, self.beta
        # log1p/expm1: for small k the result (~k^2) is a difference of two terms ~k, which the
        # plain form computes with an absolute error ~1e-16 (relative 1e-4 at k = 1e-6)
        log_inner = jnp.log1p(-(b / a) * jnp.expm1(a * k * _LOG10))
        return -log_inner / (b * _LOG10) - k

    def max_inference_cut(self) -> Float[Array, ""]:
        r"""$k_{\max} = \frac{1}{\alpha}\log_{10}\frac{\alpha+\beta}{\beta}$: the smallest model
        reaching the target (at infinite data) is $10^{k_{\max}}$ times smaller than the
        training-optimal one."""
        return jnp.log((self.alpha + self.beta) / self.beta) / (self.alpha * _LOG10)

    def marginal_rate_point(
        self, rate: ArrayLike = 6.0
    ) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
        r"""Where the iso-loss curve's exchange rate $|d\log TC/d\log IC|$ reaches `rate`.

        Along the curve $d\log TC/d\log IC = 1 - r$ with
        $r = \alpha A N^{-\alpha} / (\beta B D^{-\beta})$; the rate $R$ is reached at
        $r = R + 1$, an inference cut of
        $k = \frac{1}{\alpha}\log_{10}\frac{r(\alpha+\beta)}{\alpha + r\beta}$
        and extra training
        $\Delta TC = \frac{1}{\beta}\log_{10}\frac{\alpha + r\beta}{\alpha+\beta} - k$.

        **Arguments:**

        - `rate`: the exchange rate $R \ge 0$ (6 is the report's "efficient exchange" limit).

        **Returns:** `(train_oom, inference_cut_oom)`.

        **References:**

        Villalobos & Atkinson 2023, *Trading Off Compute in Training and Inference*, Epoch AI.
        """
        rate = check_at_least(rate, "rate", 0.0)
        if jnp.issubdtype(rate.dtype, jnp.integer):  # a rate of 6 is natural to write
            rate = rate.astype(jnp.result_type(self.alpha))
        a, b = self.alpha, self.beta
        # with r = rate + 1: log[(a + r b)/(a + b)] = log1p(rate b/(a + b)), accurate near 0
        log_train = jnp.log1p(rate * b / (a + b))
        k = (jnp.log1p(rate) - log_train) / (a * _LOG10)
        dtc = log_train / (b * _LOG10) - k
        return dtc, k

    def _gap_conditions(self, target_loss: ArrayLike) -> tuple[Float[Array, "..."], tuple]:
        target_loss = jnp.asarray(target_loss)
        gap = target_loss - self.E
        conditions = domain_conditions(
            target_loss, "target_loss", gap <= 0, "must exceed the irreducible loss E"
        )
        return gap, conditions

    def _gap(self, target_loss: ArrayLike) -> Float[Array, "..."]:
        gap, conditions = self._gap_conditions(target_loss)
        return check_all(gap, *conditions)


PRESETS: dict[str, str] = {
    "hoffmann2022": "hoffmann2022",
    "hoffmann2022-unrounded": "hoffmann2022_unrounded",
    "besiroglu2024": "besiroglu2024",
    "sardana2024": "sardana2024",
}
"""Law presets by command-line name, mapped to their `Chinchilla` constructor."""
