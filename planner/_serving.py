r"""Serving in dollars and seconds: a plan priced on the hardware it trains and runs on.

`Deployment` is the last stage of a `Pipeline`. It adds two allocation variables, the serving
batch $b$ and the decode step time $t$, and prices the plan: training FLOP at the training
hardware's price, peak and MFU; prompt (prefill) tokens at the serving hardware's prefill MFU;
generated (decode) tokens at the time a decode step takes, $t / b$ seconds of a replica per
token. The solver holds $t$ above the roofline of one replica,

$$t \ge t_\text{mem} = \frac{N\rho B_w + b\,C\,\kappa(N)}{g W}, \qquad
  t \ge t_\text{comp} = \frac{2 N \rho\, b}{g P U},$$

(weights and the KV cache of $b$ sequences of $C$ tokens read once per step, against the
arithmetic of $b$ tokens), below a latency bound $t \le \tau$, and the weights plus the KV cache
within the memory of the replica's $g$ devices, $N\rho B_w + b C \kappa(N) \le g M$. Every one
of these is a posynomial in $(N, D, b, t)$, so with a Chinchilla law the dollar-optimal plan is
the optimum of a geometric program, convex in log variables: the roofline maximum is two smooth
constraints rather than a kink.

Above the ridge a larger batch costs no more per token, so the cheapest batch is not unique
there; of the batches that cost the same the plan reports the smallest, which is also the one
of least latency (`least_batch`).
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ._compose import AbstractTechnique, Allocation, Outcome, Pipeline
from ._compute import Hardware

_SECONDS_PER_HOUR = 3600.0


def _optional(x):
    return None if x is None else jnp.asarray(x)


class KVCache(eqx.Module):
    r"""Bytes of KV cache per token, from $N$ by an architecture convention.

    A dense decoder of $L$ layers of width $d$ has $N \approx 12 L d^2$ non-embedding
    parameters (Kaplan et al. 2020, section 2.1, $N \approx 2 d\,n_\text{layer}(2 d_\text{attn}
    + d_\text{ff})$ with $d_\text{attn} = d$, $d_\text{ff} = 4d$). With a fixed aspect ratio
    $a = d / L$ the shape follows from $N$: $L = (N / 12 a^2)^{1/3}$, $d = a L$. Each token
    keeps a key and a value of width $d / G$ in every layer ($G$ query heads share a KV head
    under grouped-query attention; $G = 1$ is multi-head attention), so

    $$\kappa(N) = \frac{2 L d\, B_\text{kv}}{G} = \frac{2 a B_\text{kv}}{G}
      \left(\frac{N}{12 a^2}\right)^{2/3}\ \text{bytes per token},$$

    a monomial in $N$, which keeps serving a geometric program.

    **Arguments:**

    - `aspect_ratio`: $a = d / L$. Default 128: GPT-3 175B ($d$ 12288, 96 layers; Brown et
      al. 2020, Table 2.1) and LLaMA 7B and 13B (4096 / 32, 5120 / 40; Touvron et al. 2023,
      Table 2); Kaplan et al. 2020 (Figure 5) find the loss within a few percent of its best
      for aspect ratios from about 20 to 200.
    - `kv_groups`: $G$, query heads per KV head (1: multi-head attention; 8 for LLaMA 2 70B,
      64 heads and 8 KV heads, Touvron et al. 2023b).
    - `bytes_per_value`: $B_\text{kv}$, bytes per cached number (2 for BF16).

    **References:** Kaplan et al. 2020, *Scaling Laws for Neural Language Models* (arXiv
    2001.08361); Brown et al. 2020, *Language Models are Few-Shot Learners* (arXiv
    2005.14165); Pope et al. 2022, *Efficiently Scaling Transformer Inference* (arXiv
    2211.05102), section 2 (the KV cache, $2 L d$ numbers per token for multi-head
    attention); Ainslie et al. 2023, *GQA* (arXiv 2305.13245).
    """

    aspect_ratio: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=128.0)
    kv_groups: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=1.0)
    bytes_per_value: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=2.0)

    def shape(self, n_params: ArrayLike) -> tuple[Array, Array]:
        """(layers $L$, width $d$) of a model of $N$ parameters under the convention."""
        a = self.aspect_ratio
        layers = (jnp.asarray(n_params) / (12.0 * a * a)) ** (1.0 / 3.0)
        return layers, a * layers

    def bytes_per_token(self, n_params: ArrayLike) -> Float[Array, "*shape"]:
        r"""$\kappa(N)$: KV-cache bytes per token held."""
        layers, width = self.shape(n_params)
        return 2.0 * layers * width * self.bytes_per_value / self.kv_groups


class Deployment(AbstractTechnique):
    r"""Where a plan runs and what it costs there: the last stage of a `Pipeline`.

    Adds the variables `serving_batch` $b \ge 1$ and `step_time` $t$ (seconds per decode step
    of one replica) and prices the outcome in dollars:

    $$\$_\text{train} = \frac{\text{train FLOP}}{P_t U_t}\cdot\frac{p_t}{3600}, \qquad
      \$_\text{inference} = \underbrace{\frac{2 N\rho\, T_\text{in}}{P_s U_\text{pre}}
      \cdot\frac{p_s}{3600}}_{\text{prefill}} + \underbrace{\frac{\text{IC}}{2 N \rho}
      \cdot\frac{g\, p_s\, t}{3600\, b}}_{\text{decode}}$$

    per unit of demand, with IC the pipeline's inference FLOP per unit ($2N\rho$ per generated
    token, times the samples drawn), $T_\text{in}$ the prompt tokens per unit, $p$ the price
    per device-hour, $P$ the peak FLOP/s, $U$ the MFU, and $g$ devices per replica. Prompt
    and generated tokens are priced apart, as Sardana et al. 2024 do: the prompt runs as large
    matrix products at `prefill_mfu`, generation runs one token per sequence per step, so its
    price follows the roofline of the serving hardware at batch $b$ (see the module page).
    At a batch above the ridge $t = 2N\rho b / (g P_s U_s)$ and a decode token costs
    $2N\rho\,p_s / (3600 P_s U_s)$: the FLOP price at MFU $U_s$, Sardana et al.'s decode
    cost. Below it the weights' reads set the price, and a larger model costs more per token
    than its FLOP say.

    Repeated samples (`RepeatedSampling` before this stage) are decoded in parallel: they
    share a step, so a query's $k$ samples need $b \ge k$ (and their KV cache), not $k$ times
    the latency.

    The two variables are the simplest pair that keeps the problem smooth: the batch is the
    operator's decision, and the step time is the epigraph variable of the roofline maximum
    (`Problem.constraints` holds $t$ above both roofline terms; at the optimum it equals the
    larger). Attention FLOP over the context and communication between a replica's devices
    are not counted; a replica's $g$ devices split weights, cache and work evenly.

    **Arguments:**

    - `train`: the training `Hardware` (its price, peak and `mfu`).
    - `serve`: the serving `Hardware` (price, peak, `mfu` reached in compute-bound decode,
      bandwidth, `bytes_per_param`, and `memory_bytes` for the memory constraint, which is
      left out when `None`).
    - `prompt_tokens`: prompt (prefill) tokens per unit of demand. Default 0.
    - `context_tokens`: tokens of KV cache held per sequence being decoded $C$ (prompt plus
      generated; 0 leaves the cache out). Default 0.
    - `prefill_mfu`: MFU of prefill; default `serve.mfu`.
    - `devices`: devices per serving replica $g$. Default 1.
    - `kv_cache`: the architecture convention of `KVCache`.

    **References:** Sardana, Portes, Doubov & Frankle 2024, *Beyond Chinchilla-Optimal*
    (ICML 2024, arXiv 2401.00448), section 4 (dollars per phase); Pope et al. 2022,
    *Efficiently Scaling Transformer Inference* (arXiv 2211.05102), section 2 (decode is
    bound by reading weights and KV cache at small batch); Williams, Waterman & Patterson
    2009 (the roofline).
    """

    train: Hardware
    serve: Hardware
    prompt_tokens: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=0.0)
    context_tokens: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=0.0)
    prefill_mfu: Float[Array, ""] | None = eqx.field(converter=_optional, default=None)
    devices: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=1.0)
    kv_cache: KVCache = eqx.field(default_factory=KVCache)

    variables: ClassVar[tuple[str, ...]] = ("serving_batch", "step_time")

    # ------------------------------------------------------------------ per-token quantities
    def _prefill_mfu(self) -> Array:
        return self.serve.mfu if self.prefill_mfu is None else self.prefill_mfu

    def weight_bytes(self, allocation: Allocation) -> Array:
        """Bytes of weights one replica holds: $N\\rho B_w$."""
        return allocation.n_params * allocation.density * self.serve.bytes_per_param

    def cache_bytes(self, allocation: Allocation) -> Array:
        """Bytes of KV cache of one sequence: $C\\,\\kappa(N)$."""
        return self.context_tokens * self.kv_cache.bytes_per_token(allocation.n_params)

    def roofline(self, allocation: Allocation) -> tuple[Array, Array]:
        """$(t_\\text{mem}, t_\\text{comp})$ of one decode step of a replica at the
        allocation's batch, in seconds."""
        b = allocation.serving_batch
        g = self.devices
        memory = (self.weight_bytes(allocation) + b * self.cache_bytes(allocation)) / (
            g * self.serve.memory_bandwidth)
        compute = 2.0 * allocation.n_params * allocation.density * b / (
            g * self.serve.peak_flops * self.serve.mfu)
        return memory, compute

    def memory_used(self, allocation: Allocation) -> Array:
        """Bytes one replica holds: weights plus the KV cache of the batch."""
        return self.weight_bytes(allocation) + allocation.serving_batch * self.cache_bytes(
            allocation)

    def memory_available(self) -> Array:
        """$g M$: the memory of a replica's devices."""
        return self.devices * self.serve.memory_bytes

    def __call__(self, allocation: Allocation, outcome: Outcome) -> Outcome:
        active = 2.0 * allocation.n_params * allocation.density
        train = outcome.train_flops * self.train.price_per_hour / (
            _SECONDS_PER_HOUR * self.train.peak_flops * self.train.mfu)
        prefill = active * self.prompt_tokens * self.serve.price_per_hour / (
            _SECONDS_PER_HOUR * self.serve.peak_flops * self._prefill_mfu())
        tokens = outcome.inference_flops_per_unit / active  # tokens generated per unit of demand
        decode = tokens * self.devices * self.serve.price_per_hour * (
            allocation.step_time / allocation.serving_batch) / _SECONDS_PER_HOUR
        return eqx.tree_at(lambda o: (o.train_dollars, o.inference_dollars_per_unit), outcome,
                           (train, prefill + decode), is_leaf=lambda v: v is None)

    def start(self, n_params: Array, density: Array, n_samples: Array,
              max_latency: Array | None = None) -> dict[str, Array]:
        """A starting batch and step time for the solver, inside the constraints where it can
        be: the batch at the ridge, lowered to where the memory is half full and the roofline
        takes half the latency bound, at least the samples; the step time halfway (in log)
        between the roofline's and the bound, at most twice the roofline's."""
        dtype = jnp.result_type(n_params)
        one = jnp.ones((), dtype)
        tiny = jnp.finfo(dtype).tiny
        probe = Allocation(n_params=n_params, n_tokens=one, density=density,
                           serving_batch=one)
        _, compute = self.roofline(probe)  # per unit of batch
        g_w = self.devices * self.serve.memory_bandwidth
        weights_time = self.weight_bytes(probe) / g_w
        cache_time = self.cache_bytes(probe) / g_w
        batch = jnp.maximum(weights_time / compute, one)  # the ridge without the cache
        if self.serve.memory_bytes is not None:
            room = 0.5 * self.memory_available() - self.weight_bytes(probe)
            per = jnp.maximum(self.cache_bytes(probe), tiny)
            batch = jnp.minimum(batch, jnp.maximum(room / per, one))
        if max_latency is not None:
            by_compute = 0.5 * max_latency / compute
            spare = 0.5 * max_latency - weights_time
            by_memory = jnp.where(cache_time > tiny, spare / jnp.maximum(cache_time, tiny),
                                  jnp.inf)
            batch = jnp.minimum(batch, jnp.maximum(jnp.minimum(by_compute, by_memory), one))
        batch = jnp.maximum(batch, n_samples)
        trial = Allocation(n_params=n_params, n_tokens=one, density=density,
                           serving_batch=batch)
        floor = jnp.maximum(*self.roofline(trial))
        step = 2.0 * floor
        if max_latency is not None:
            step = jnp.where(max_latency > floor,
                             jnp.minimum(step, jnp.sqrt(floor * max_latency)), step)
        return {"serving_batch": batch, "step_time": step}


def deployment_of(model: Pipeline) -> Deployment | None:
    """The pipeline's `Deployment` stage, or `None`."""
    found = [t for t in model.techniques if isinstance(t, Deployment)]
    return found[0] if found else None


def least_batch(model: Pipeline, allocation: Allocation) -> Allocation:
    r"""The allocation with the smallest batch that serves at the same price per token.

    With $u = t/b$ the seconds of a replica per generated token at the optimum and
    $a = N\rho B_w/(gW)$, $k = C\kappa/(gW)$ the per-step and per-sequence read times, any
    batch with $a/b + k \le u$ (and $2N\rho/(gPU) \le u$, which the optimum already meets)
    serves at $u$; the smallest is $b = a / (u - k)$, raised to the lower bounds ($1$, and
    the samples per query). Latency and memory only grow with $b$, so the result is feasible
    whenever the solver's point is, and its step time $b u$ is the least latency at the
    optimal price.
    """
    deployment = deployment_of(model)
    u = allocation.step_time / allocation.serving_batch
    g_w = deployment.devices * deployment.serve.memory_bandwidth
    a = deployment.weight_bytes(allocation) / g_w
    k = deployment.cache_bytes(allocation) / g_w
    spare = u - k
    tiny = jnp.finfo(jnp.result_type(u)).tiny
    batch = jnp.where(spare > tiny, a / jnp.where(spare > tiny, spare, 1.0),
                      allocation.serving_batch)
    lower = jnp.maximum(jnp.ones_like(batch), allocation.n_samples
                        if "n_samples" in model.variables else jnp.ones_like(batch))
    batch = jnp.clip(batch, lower, allocation.serving_batch)
    return eqx.tree_at(lambda x: (x.serving_batch, x.step_time), allocation,
                       (batch, batch * u))


class Serving(eqx.Module):
    """What a priced plan costs and how it serves (`Plan.serving`).

    **Arguments:**

    - `train_dollars`: dollars of training.
    - `inference_dollars`: dollars of the lifetime inference demand.
    - `dollars`: their sum.
    - `serving_batch`: sequences per decode step of a replica (the least batch that serves
      at the optimal price; see `least_batch`).
    - `latency`: seconds per generated token of one sequence (the decode step time).
    - `memory`: bytes one replica holds (weights and the batch's KV cache).
    - `replicas`: replicas that serve the scenario's `demand_rate` (continuous: round up to
      deploy), 0 without one.
    - `devices`: devices in all, `replicas` times the devices per replica.
    """

    train_dollars: Float[Array, ""]
    inference_dollars: Float[Array, ""]
    dollars: Float[Array, ""]
    serving_batch: Float[Array, ""]
    latency: Float[Array, ""]
    memory: Float[Array, ""]
    replicas: Float[Array, ""]
    devices: Float[Array, ""]


def serving_report(model: Pipeline, allocation: Allocation, outcome: Outcome,
                   demand: Array, demand_rate: Array | None) -> Serving:
    """The `Serving` report of a priced allocation."""
    deployment = deployment_of(model)
    train = outcome.train_dollars
    inference = demand * outcome.inference_dollars_per_unit
    # seconds of one replica per unit of demand, from its dollars: price g p / 3600 per second
    per_second = deployment.devices * deployment.serve.price_per_hour / _SECONDS_PER_HOUR
    seconds = outcome.inference_dollars_per_unit / per_second
    replicas = (jnp.zeros_like(train) if demand_rate is None else demand_rate * seconds)
    return Serving(train_dollars=train, inference_dollars=inference, dollars=train + inference,
                   serving_batch=allocation.serving_batch, latency=allocation.step_time,
                   memory=deployment.memory_used(allocation), replicas=replicas,
                   devices=replicas * deployment.devices)
