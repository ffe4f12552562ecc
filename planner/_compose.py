"""Composition: techniques chained into one map from an allocation to costs and performance."""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._laws import AbstractLossLaw

VARIABLES: tuple[str, ...] = ("n_params", "n_tokens", "density", "n_samples", "serving_batch",
                              "step_time")
"""Every allocation variable, in the order solvers lay them out."""


class Allocation(eqx.Module):
    """How compute is spent: the controls a plan chooses.

    **Arguments:**

    - `n_params`: parameters $N$ of the (dense) model trained.
    - `n_tokens`: training tokens $D$.
    - `density`: fraction of weights kept after pruning, in (0, 1]; 1 means no pruning.
    - `n_samples`: samples drawn per query, $k \\ge 1$ (continuous); 1 means one sample.
    - `serving_batch`: sequences decoded together in one step of a serving replica,
      $b \\ge 1$ (continuous; a variable once a `Deployment` stage is in the pipeline).
    - `step_time`: seconds one decode step of a replica takes, at least the roofline's
      (a variable with `Deployment`: the time per step the serving schedule allows).
    """

    n_params: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    n_tokens: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    density: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=1.0)
    n_samples: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=1.0)
    serving_batch: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=1.0)
    step_time: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=1.0)

    def __str__(self) -> str:
        """The values with their units, e.g. `n_params 2.418e+10 parameters, n_tokens
        2.657e+12 training tokens` (batched values as arrays); `density` and `n_samples` are
        left out where they are 1 (no pruning, one sample)."""
        import numpy as np

        from ._display import UNITS

        parts = []
        for name in ("n_params", "n_tokens", "density", "n_samples"):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if name in ("density", "n_samples") and np.all(value == 1.0):
                continue
            text = (f"{float(value):.4g}" if value.ndim == 0
                    else np.array2string(value, precision=4, threshold=8))
            parts.append(f"{name} {text} {UNITS[name]}")
        return ", ".join(parts)


class Outcome(eqx.Module):
    """What an allocation buys.

    **Arguments:**

    - `train_flops`: total training FLOP, every technique's extra training included.
    - `inference_flops_per_unit`: inference FLOP per unit of inference demand (per generated
      token for plain pretraining, per query once a stage turns tokens into queries); a
      scenario's lifetime inference FLOP are its `inference_demand` times this.
    - `loss`: pretraining loss of the model that is served.
    - `irreducible_loss`: the floor `loss` approaches; targets at or below it are infeasible.
    - `score`: task success rate in [0, 1] once a stage defines one (repeated sampling), else
      `None`.
    - `train_dollars`, `inference_dollars_per_unit`: dollars of training and of one unit of
      inference demand once a stage prices the plan on hardware (`Deployment`), else `None`.
    """

    train_flops: Float[Array, ""]
    inference_flops_per_unit: Float[Array, ""]
    loss: Float[Array, ""]
    irreducible_loss: Float[Array, ""]
    score: Float[Array, ""] | None = None
    train_dollars: Float[Array, ""] | None = None
    inference_dollars_per_unit: Float[Array, ""] | None = None


class AbstractTechnique(eqx.Module):
    """One stage of a `Pipeline`.

    A technique reads the allocation variables it controls (named in `variables`) and maps the
    running `Outcome` to a new one. Stages run in order, so two techniques that act on the same
    quantity (two multipliers of the parameter term, say) interact through it and do not simply
    add, while techniques acting on different quantities multiply costs, so their spans in OOM
    add: the two cases of combination in Villalobos & Atkinson (2023).
    """

    variables: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def __call__(self, allocation: Allocation, outcome: Outcome) -> Outcome:
        """The outcome after this stage."""


class Pretraining(eqx.Module):
    r"""The base stage: a dense model of $N$ parameters trained on $D$ tokens.

    Training costs $6ND$ FLOP and inference $2N$ FLOP per token (Kaplan et al. 2020,
    Hoffmann et al. 2022), times `tokens_per_query` when demand is counted in queries.

    **Arguments:**

    - `law`: the loss law $L(N, D)$.
    - `tokens_per_query`: generated tokens per unit of demand (1: demand counts tokens).
    """

    law: AbstractLossLaw
    tokens_per_query: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=1.0)

    variables: ClassVar[tuple[str, ...]] = ("n_params", "n_tokens")

    def __call__(self, allocation: Allocation) -> Outcome:
        n, d = allocation.n_params, allocation.n_tokens
        tokens = jnp.asarray(self.tokens_per_query, jnp.result_type(n))
        return Outcome(
            train_flops=6.0 * n * d,
            inference_flops_per_unit=2.0 * n * tokens,
            loss=self.law.loss(n, d),
            irreducible_loss=self.law.irreducible,
        )


class Pipeline(eqx.Module):
    """Techniques composed into one model, like `optax.chain`, but as a pytree.

    `Pipeline(Pretraining(law), Pruning(...), RepeatedSampling(...))` maps an `Allocation` to an
    `Outcome`. Every number inside is an array leaf, so the pipeline can be batched with `vmap`,
    differentiated, and passed through `jit` without recompiling when only numbers change.

    **Arguments:**

    - `base`: the `Pretraining` stage.
    - `*techniques`: further stages, applied in order.
    """

    base: Pretraining
    techniques: tuple[AbstractTechnique, ...]

    def __init__(self, base: Pretraining, *techniques: AbstractTechnique):
        if not isinstance(base, Pretraining):
            raise ValueError("the first stage of a Pipeline must be Pretraining(law)")
        for t in techniques:
            if not isinstance(t, AbstractTechnique):
                raise ValueError(f"{t!r} is not a technique (an AbstractTechnique)")
        self.base = base
        self.techniques = tuple(techniques)

    @property
    def law(self) -> AbstractLossLaw:
        return self.base.law

    @property
    def variables(self) -> tuple[str, ...]:
        """The allocation variables this pipeline controls, in `VARIABLES` order."""
        used = set(self.base.variables).union(*(t.variables for t in self.techniques))
        return tuple(v for v in VARIABLES if v in used)

    def __call__(self, allocation: Allocation) -> Outcome:
        outcome = self.base(allocation)
        for technique in self.techniques:
            outcome = technique(allocation, outcome)
        return outcome

