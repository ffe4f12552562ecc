r"""Compute accounting: FLOP counts, dollars per phase, and the roofline of serving.

- `train_flops`, `inference_flops`: the dense-transformer FLOP counts $6ND$ of training and
  $2NT$ of inference over $T$ tokens.
- `flops_matched_multiplier`: the test-time compute a small model may spend, at equal total
  FLOP, in place of a model $M$ times larger (Snell et al. 2024).
- `CostModel`: dollars for training, prefill and decode FLOP at a price per GPU-hour, a peak
  FLOP/s and a utilisation (MFU) per phase (Sardana et al. 2024).
- `Hardware`: one accelerator's datasheet numbers, with the decode-step roofline: the time to
  stream the weights from memory against the time to do the arithmetic for a batch.
"""

from __future__ import annotations

from typing import TypeVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from . import _rules
from ._checks import check_at_least, check_positive

_SECONDS_PER_HOUR = 3600.0

_Tree = TypeVar("_Tree")


def _positive(x: Array, name: str) -> list[tuple[Array, str]]:
    return _rules.positive(name).conditions(jnp.asarray(x))


def _unit(x: Array, name: str) -> list[tuple[Array, str]]:
    return _rules.interval(name, 0.0, 1.0).conditions(jnp.asarray(x))


def _raise_unless(tree: _Tree, conditions: list[tuple[Array, str]]) -> _Tree:
    # every condition folded into one branched check: one conditional to compile, however
    # many derivatives a solver or a gradient test takes
    failed = jnp.stack([jnp.any(f) for f, _ in conditions])
    messages = [msg for _, msg in conditions]
    return eqx.branched_error_if(tree, jnp.any(failed), jnp.argmax(failed), messages)


# ------------------------------------------------------------------------------------ FLOP
def train_flops(n_params: ArrayLike, n_tokens: ArrayLike) -> Float[Array, "*shape"]:
    r"""Training FLOP of a dense transformer: $C = 6ND$.

    Two FLOP per parameter per token for the forward pass and four for the backward pass;
    attention over the context is left out, as in the sources.

    **Arguments:**

    - `n_params`: parameters $N$, > 0.
    - `n_tokens`: training tokens $D$, > 0.

    **Returns:** $6ND$.

    **References:** Kaplan et al. 2020, *Scaling Laws for Neural Language Models*
    (arXiv 2001.08361), section 2.1 ($C \approx 6NBS$); Hoffmann et al. 2022, *Training
    Compute-Optimal Large Language Models*, section 3 ($C \approx 6ND$).
    """
    n_params = check_positive(n_params, "n_params")
    n_tokens = check_positive(n_tokens, "n_tokens")
    return 6.0 * n_params * n_tokens


def inference_flops(n_params: ArrayLike, n_tokens: ArrayLike = 1.0) -> Float[Array, "*shape"]:
    r"""Inference FLOP of a dense transformer over $T$ tokens: $2NT$ ($2N$ per token).

    With $T$ a plan's lifetime inference demand in tokens this is the plan's lifetime
    `inference_flops` (`Plan.inference_flops`, the `inference_flops` column of a plans table).
    The same count holds for prompt (prefill) and generated (decode) tokens; what differs
    between them is the utilisation the hardware reaches (see `CostModel`).

    **Arguments:**

    - `n_params`: parameters $N$, > 0.
    - `n_tokens`: tokens processed $T$, > 0 (default 1: the FLOP of one token).

    **Returns:** $2NT$.

    **References:** Kaplan et al. 2020 (arXiv 2001.08361), section 2.1 and Table 1
    ($C_\mathrm{forward} \approx 2N$ per token).
    """
    n_params = check_positive(n_params, "n_params")
    n_tokens = check_positive(n_tokens, "n_tokens")
    return 2.0 * n_params * n_tokens


def flops_matched_multiplier(
    size_ratio: ArrayLike,
    inference_to_pretraining: ArrayLike,
    train_flops_per_token: ArrayLike = 6.0,
    inference_flops_per_token: ArrayLike = 4.0,
) -> Float[Array, "*shape"]:
    r"""Inference multiplier $X$ that gives a small model the FLOP of an $M\times$ larger one.

    A model of $N$ parameters and one of $MN$ are both pretrained on $D_\text{pre}$ tokens and
    then answer $D_\text{inf}$ inference tokens. Counting $t$ FLOP per parameter per training
    token and $i$ per inference token, the small model may spend $X$ times the large model's
    inference tokens at equal total FLOP:

    $$t\,MN D_\text{pre} + i\,MN D_\text{inf} = t\,N D_\text{pre} + i\,N X D_\text{inf}
      \quad\Longrightarrow\quad
      X = M + \frac{t}{i}\,\frac{D_\text{pre}}{D_\text{inf}}\,(M - 1).$$

    With the defaults $t = 6$ (`train_flops`) and $i = 4$ (a $2N$ generator plus a verifier of
    the same size, `inference_flops` twice), $X = M + 1.5\,(D_\text{pre}/D_\text{inf})(M - 1)$:
    for $M = 14$, 257.75 at $D_\text{inf}/D_\text{pre} = 0.08$, 62.75 at 0.40 and 15.77 at 11.
    $X \ge M$ always (the small model saves pretraining compute too), and $X \to M$ as inference
    dominates. With $i = 2$ (no verifier) the same $X$ holds at twice the ratio. Differentiable
    in every argument.

    **Arguments:**

    - `size_ratio`: $M$, the larger model's parameters over the small one's, >= 1.
    - `inference_to_pretraining`: $D_\text{inf}/D_\text{pre}$, inference tokens over
      pretraining tokens, > 0.
    - `train_flops_per_token`: $t$, FLOP per parameter per training token, > 0 (default 6).
    - `inference_flops_per_token`: $i$, FLOP per parameter per inference token, > 0
      (default 4: generator and verifier).

    **Returns:** $X$, broadcast over the arguments: the small model's inference compute per
    query, in units of the large model's, at which both spend the same total FLOP.

    **Example:** `flops_matched_multiplier(14.0, 0.08)` is 257.75.

    **References:** Snell, Lee, Xu & Kumar 2024, *Scaling LLM Test-Time Compute Optimally can
    be More Effective than Scaling Model Parameters* (arXiv 2408.03314), section "Exchanging
    pretraining and test-time compute" (the FLOPs-matched comparison with a 14× larger model);
    Kaplan et al. 2020 (arXiv 2001.08361), section 2.1, for the $6N$ and $2N$ per token.
    """
    m = check_at_least(size_ratio, "size_ratio", 1.0)
    r = check_positive(inference_to_pretraining, "inference_to_pretraining")
    t = check_positive(train_flops_per_token, "train_flops_per_token")
    i = check_positive(inference_flops_per_token, "inference_flops_per_token")
    return m + (t / i) * (m - 1.0) / r


# ------------------------------------------------------------------------------- dollars
class CostModel(eqx.Module):
    r"""Dollars for training, prefill and decode compute (Sardana et al. 2024, section 4).

    $$\$ = \sum_{\text{phase}} \frac{\text{FLOP}_\text{phase}}{P_\text{phase}\,U_\text{phase}}
          \cdot \frac{\text{price}_\text{phase}}{3600}$$

    with $P$ the peak FLOP/s of the phase's hardware (in the phase's number format), $U$ the
    model FLOP utilisation it reaches and price in dollars per GPU-hour. Prefill (prompt
    tokens) runs as large matrix products and reaches a high $U$; decode (generated tokens)
    reads every weight for a few tokens at a time and reaches a low one, so the same $2N$
    FLOP per token cost more when generated.

    **Arguments:**

    - `train_price_per_hour`, `train_peak_flops`, `train_mfu`: training hardware's dollars
      per GPU-hour, peak FLOP/s, and utilisation in (0, 1].
    - `inference_price_per_hour`, `inference_peak_flops`: the same for inference hardware.
    - `prefill_mfu`, `decode_mfu`: utilisation when processing input and output tokens.

    **References:** Sardana, Portes, Doubov & Frankle 2024, *Beyond Chinchilla-Optimal:
    Accounting for Inference in Language Model Scaling Laws* (ICML 2024, arXiv 2401.00448),
    section on real-world cost; repository nikhilsardana/beyond-chinchilla,
    `cost_calculator.py` (`cost`, `total_cost`).
    """

    train_price_per_hour: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    train_peak_flops: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    train_mfu: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    inference_price_per_hour: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    inference_peak_flops: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    prefill_mfu: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    decode_mfu: Float[Array, ""] = eqx.field(converter=jnp.asarray)

    @classmethod
    def sardana2024(cls) -> CostModel:
        """Sardana et al.'s worked example: A100s, MFU 50% / 40% / 20%.

        Training on A100-80GB at $1.40 per GPU-hour in BF16 (312 TFLOP/s peak) at 50% MFU;
        inference on A100-40GB at $0.60 per GPU-hour in INT8 (624 TOPS peak), 40% MFU for
        prefill and 20% for decode. The example's demand is 10^10 requests of 1000 input and
        250 output tokens, and its answer for a model of loss 1.947 is 60.23% of the
        parameters, 182.41% of the tokens and 88.76% of the cost of the equal-loss
        Chinchilla-optimal model. Repository nikhilsardana/beyond-chinchilla, `README.md`
        (`cost_optimal.py` example); peaks from its `cost_calculator.py`
        (`A100_FP16_OPS = 3.12e14`, `A100_INT8_OPS = 6.24e14`).
        """
        return cls(
            train_price_per_hour=1.40,
            train_peak_flops=3.12e14,
            train_mfu=0.5,
            inference_price_per_hour=0.60,
            inference_peak_flops=6.24e14,
            prefill_mfu=0.4,
            decode_mfu=0.2,
        )

    @classmethod
    def sardana2024_defaults(cls) -> CostModel:
        """The defaults of Sardana et al.'s calculators: H100s at $2.00 per GPU-hour.

        Training in BF16 (989 TFLOP/s peak) at 50% MFU; inference in FP8 (1978 TFLOP/s peak)
        at 50% MFU for prefill and 1% for decode; the calculators' default requests have 70
        input and 215 output tokens (LMSys averages). Repository
        nikhilsardana/beyond-chinchilla, `cost_calculator.py` and `cost_optimal.py`
        (`H100_DEFAULT_COST`, `H100_FP16_OPS`, `H100_FP8_OPS`, argument defaults).
        """
        return cls(
            train_price_per_hour=2.00,
            train_peak_flops=9.89e14,
            train_mfu=0.5,
            inference_price_per_hour=2.00,
            inference_peak_flops=1.978e15,
            prefill_mfu=0.5,
            decode_mfu=0.01,
        )

    @classmethod
    def from_hardware(
        cls,
        train: Hardware,
        inference: Hardware,
        prefill_mfu: ArrayLike,
        decode_mfu: ArrayLike,
    ) -> CostModel:
        """A cost model from two `Hardware` (training at `train.mfu`) and inference MFUs."""
        return cls(
            train_price_per_hour=train.price_per_hour,
            train_peak_flops=train.peak_flops,
            train_mfu=train.mfu,
            inference_price_per_hour=inference.price_per_hour,
            inference_peak_flops=inference.peak_flops,
            prefill_mfu=prefill_mfu,
            decode_mfu=decode_mfu,
        )

    def dollars_per_flop(
        self,
    ) -> tuple[Float[Array, ""], Float[Array, ""], Float[Array, ""]]:
        r"""Dollars per FLOP of training, prefill and decode: $\text{price}/(3600\,P\,U)$."""
        train = self.train_price_per_hour / (
            _SECONDS_PER_HOUR * self.train_peak_flops * self.train_mfu
        )
        per_second = self.inference_price_per_hour / _SECONDS_PER_HOUR
        prefill = per_second / (self.inference_peak_flops * self.prefill_mfu)
        decode = per_second / (self.inference_peak_flops * self.decode_mfu)
        return train, prefill, decode

    def dollars_raw(
        self, train_flops: ArrayLike, prefill_flops: ArrayLike, decode_flops: ArrayLike
    ) -> Float[Array, "*shape"]:
        """`dollars` without domain checks (for solver loops)."""
        train, prefill, decode = self.dollars_per_flop()
        return train * train_flops + prefill * prefill_flops + decode * decode_flops

    def dollars(
        self, train_flops: ArrayLike, prefill_flops: ArrayLike, decode_flops: ArrayLike
    ) -> Float[Array, "*shape"]:
        r"""Total dollars for the three phases' FLOP.

        **Arguments:**

        - `train_flops`: training FLOP (e.g. $6ND$), >= 0.
        - `prefill_flops`: FLOP spent on input tokens ($2N$ each), >= 0.
        - `decode_flops`: FLOP spent on output tokens ($2N$ each), >= 0.

        **Returns:** dollars, broadcast over the arguments.
        """
        flops = tuple(jnp.asarray(f) for f in (train_flops, prefill_flops, decode_flops))
        conditions = []
        for name in ("train_price_per_hour", "train_peak_flops"):
            conditions += _positive(getattr(self, name), name)
        for name in ("inference_price_per_hour", "inference_peak_flops"):
            conditions += _positive(getattr(self, name), name)
        for name in ("train_mfu", "prefill_mfu", "decode_mfu"):
            conditions += _unit(getattr(self, name), name)
        for value, name in zip(
            flops, ("train_flops", "prefill_flops", "decode_flops"), strict=True
        ):
            conditions += _rules.at_least(name, 0.0).conditions(value)
        model, flops = _raise_unless((self, flops), conditions)
        return model.dollars_raw(*flops)


# ------------------------------------------------------------------------------ hardware
class Hardware(eqx.Module):
    r"""One accelerator: its datasheet peak, memory bandwidth, price and the MFU it reaches.

    Serving a dense model of $N$ parameters at density $\rho$ (fraction of weights kept) and
    batch size $b$, one decode step (one token for each of $b$ sequences) takes the longer of

    $$t_\text{mem} = \frac{N \rho\,B}{W}, \qquad t_\text{comp} = \frac{2 N \rho\, b}{P\,U},$$

    streaming the $N\rho B$ bytes of weights at bandwidth $W$, and the $2N\rho$ FLOP per
    token at peak $P$ and utilisation $U$ (the roofline model). Latency per token is that step
    time; throughput is $b$ tokens per step. Below the crossover batch
    $b^* = P U B / (2W)$ decoding is memory-bound and batching is free. The KV cache, attention
    over the context and communication between devices are not counted.

    **Arguments:**

    - `peak_flops`: dense peak FLOP/s in the number format served (not the "with sparsity"
      figure).
    - `memory_bandwidth`: bytes per second of device memory.
    - `bytes_per_param`: bytes per weight (2 for BF16/FP16, 1 for INT8/FP8).
    - `price_per_hour`: dollars per GPU-hour.
    - `mfu`: fraction of `peak_flops` reached in compute-bound work, in (0, 1].
    - `memory_bytes`: bytes of device memory (for the memory constraint of serving,
      `planner.Deployment`), or `None` (no memory constraint).

    **References:** Williams, Waterman & Patterson 2009, *Roofline: an insightful visual
    performance model for multicore architectures*, CACM 52(4); Pope et al. 2022,
    *Efficiently Scaling Transformer Inference* (arXiv 2211.05102): at small batch sizes,
    generating tokens is limited by the time to load the weights from memory.
    """

    peak_flops: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    memory_bandwidth: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    bytes_per_param: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    price_per_hour: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    mfu: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    memory_bytes: Float[Array, ""] | None = eqx.field(
        converter=lambda x: None if x is None else jnp.asarray(x), default=None)

    # ------------------------------------------------------------------------------- presets
    @classmethod
    def nvidia_a100_sxm_80gb(cls, price_per_hour: float = 1.50, mfu: float = 0.5) -> Hardware:
        """NVIDIA A100 SXM 80GB in BF16: 312 TFLOP/s dense, 2.039 TB/s HBM2e, 2 bytes/weight.

        NVIDIA A100 Tensor Core GPU datasheet (nvidia-a100-datasheet-us-nvidia-1758950-r4):
        BF16 Tensor Core 312 TFLOPS (624 with sparsity), GPU memory bandwidth 2,039 GB/s for
        the 80GB SXM part, GPU memory 80GB (taken as 80e9 bytes). Default price $1.50 per
        GPU-hour and MFU 0.5: Sardana et al.'s defaults (`A100_80_DEFAULT_COST`, training
        MFU; repository nikhilsardana/beyond-chinchilla, `cost_calculator.py`).
        """
        return cls(
            peak_flops=312e12,
            memory_bandwidth=2.039e12,
            bytes_per_param=2.0,
            price_per_hour=price_per_hour,
            mfu=mfu,
            memory_bytes=80e9,
        )

    @classmethod
    def nvidia_h100_sxm(cls, price_per_hour: float = 2.00, mfu: float = 0.5) -> Hardware:
        """NVIDIA H100 SXM in BF16: 989 TFLOP/s dense, 3.35 TB/s HBM3, 2 bytes/weight.

        NVIDIA H100 Tensor Core GPU datasheet: BF16 Tensor Core 1,979 TFLOPS *with sparsity*
        (989 dense; 989.4 in the Hopper architecture whitepaper), GPU memory bandwidth
        3.35 TB/s and GPU memory 80GB (80e9 bytes) for the SXM part. Default price $2.00
        per GPU-hour and MFU 0.5: Sardana et al.'s defaults (`H100_DEFAULT_COST`, training
        MFU; repository nikhilsardana/beyond-chinchilla, `cost_calculator.py`).
        """
        return cls(
            peak_flops=989e12,
            memory_bandwidth=3.35e12,
            bytes_per_param=2.0,
            price_per_hour=price_per_hour,
            mfu=mfu,
            memory_bytes=80e9,
        )

    @classmethod
    def nvidia_h200(cls, price_per_hour: float, mfu: float = 0.5) -> Hardware:
        """NVIDIA H200 SXM in BF16: 989 TFLOP/s dense, 4.8 TB/s HBM3e, 141GB, 2 bytes/weight.

        NVIDIA H200 Tensor Core GPU datasheet: BF16 Tensor Core 1,979 TFLOPS *with sparsity*
        (989 dense: the same Hopper compute as the H100 SXM), GPU memory 141GB (141e9 bytes),
        bandwidth 4.8 TB/s. No price is given: no source this package cites quotes one, so
        `price_per_hour` (dollars per GPU-hour) is required. MFU default 0.5 as for the H100.
        """
        return cls(
            peak_flops=989e12,
            memory_bandwidth=4.8e12,
            bytes_per_param=2.0,
            price_per_hour=price_per_hour,
            mfu=mfu,
            memory_bytes=141e9,
        )

    @classmethod
    def google_tpu_v5e(cls, price_per_hour: float, mfu: float = 0.5) -> Hardware:
        """Google Cloud TPU v5e, one chip, in BF16: 197 TFLOP/s, 819 GB/s HBM2, 16GB.

        Cloud TPU documentation, "TPU v5e", key chip specifications: peak compute per chip
        (bf16) 197 TFLOPs, HBM2 capacity and bandwidth 16 GB, 819 GBps. No price is given
        here (prices vary by region and commitment), so `price_per_hour` (dollars per
        chip-hour) is required. MFU default 0.5 as for the GPU presets.
        """
        return cls(
            peak_flops=197e12,
            memory_bandwidth=819e9,
            bytes_per_param=2.0,
            price_per_hour=price_per_hour,
            mfu=mfu,
            memory_bytes=16e9,
        )

    # ------------------------------------------------------------------------------ roofline
    def roofline(
        self, n_params: ArrayLike, batch_size: ArrayLike = 1.0, density: ArrayLike = 1.0
    ) -> tuple[Float[Array, "*shape"], Float[Array, "*shape"]]:
        r"""The two roofline terms $(t_\text{mem}, t_\text{comp})$ in seconds, unchecked.

        For a solver loop: holding a decode step to a latency bound $\tau$ is the pair of
        smooth constraints $t_\text{mem} \le \tau$ and $t_\text{comp} \le \tau$, which together
        say $\max(t_\text{mem}, t_\text{comp}) \le \tau$.
        """
        weights = jnp.asarray(n_params) * jnp.asarray(density)
        memory = weights * self.bytes_per_param / self.memory_bandwidth
        compute = 2.0 * weights * jnp.asarray(batch_size) / (self.peak_flops * self.mfu)
        return memory, compute

    def memory_time(self, n_params: ArrayLike, density: ArrayLike = 1.0) -> Float[Array, "*shape"]:
        r"""Seconds to read the weights once: $t_\text{mem} = N\rho B / W$."""
        hw, (n_params, _, density) = self._checked(n_params, 1.0, density)
        return hw.roofline(n_params, 1.0, density)[0]

    def compute_time(
        self, n_params: ArrayLike, batch_size: ArrayLike = 1.0, density: ArrayLike = 1.0
    ) -> Float[Array, "*shape"]:
        r"""Seconds of arithmetic for one decode step: $t_\text{comp} = 2N\rho b/(PU)$."""
        hw, (n_params, batch_size, density) = self._checked(n_params, batch_size, density)
        return hw.roofline(n_params, batch_size, density)[1]

    def step_time(
        self, n_params: ArrayLike, batch_size: ArrayLike = 1.0, density: ArrayLike = 1.0
    ) -> Float[Array, "*shape"]:
        r"""Seconds per decode step, $\max(t_\text{mem}, t_\text{comp})$: the latency per token."""
        hw, (n_params, batch_size, density) = self._checked(n_params, batch_size, density)
        return jnp.maximum(*hw.roofline(n_params, batch_size, density))

    def throughput(
        self, n_params: ArrayLike, batch_size: ArrayLike = 1.0, density: ArrayLike = 1.0
    ) -> Float[Array, "*shape"]:
        r"""Tokens per second at batch size $b$: $b / \max(t_\text{mem}, t_\text{comp})$."""
        return jnp.asarray(batch_size) / self.step_time(n_params, batch_size, density)

    def dollars_per_token(
        self, n_params: ArrayLike, batch_size: ArrayLike = 1.0, density: ArrayLike = 1.0
    ) -> Float[Array, "*shape"]:
        r"""Dollars per generated token: $\text{price}/3600 \cdot \text{step time} / b$."""
        step = self.step_time(n_params, batch_size, density)
        return self.price_per_hour / _SECONDS_PER_HOUR * step / jnp.asarray(batch_size)

    def crossover_batch_size(self) -> Float[Array, ""]:
        r"""$b^* = P U B / (2W)$: the batch where decoding turns from memory- to compute-bound."""
        hw, _ = self._checked()
        return hw.peak_flops * hw.mfu * hw.bytes_per_param / (2.0 * hw.memory_bandwidth)

    def max_params(
        self, latency: ArrayLike, batch_size: ArrayLike = 1.0, density: ArrayLike = 1.0
    ) -> Float[Array, "*shape"]:
        r"""The largest $N$ whose decode step takes at most `latency` seconds (closed form).

        $$N_{\max} = \min\!\left(\frac{\tau W}{\rho B}, \frac{\tau P U}{2 \rho b}\right)$$

        **Arguments:**

        - `latency`: the bound $\tau$ on seconds per token, > 0.
        - `batch_size`: sequences decoded together $b$, > 0.
        - `density`: fraction of weights kept $\rho$, in (0, 1].
        """
        hw, (latency, batch_size, density) = self._checked(
            None, batch_size, density, latency=latency
        )
        by_memory = latency * hw.memory_bandwidth / (density * hw.bytes_per_param)
        by_compute = latency * hw.peak_flops * hw.mfu / (2.0 * density * batch_size)
        return jnp.minimum(by_memory, by_compute)

    def _checked(
        self,
        n_params: ArrayLike | None = None,
        batch_size: ArrayLike = 1.0,
        density: ArrayLike = 1.0,
        *,
        latency: ArrayLike | None = None,
    ) -> tuple[Hardware, tuple[Array, Array, Array]]:
        # the fields, then whichever of latency / n_params is given, batch size and density
        conditions = []
        for name in ("peak_flops", "memory_bandwidth", "bytes_per_param", "price_per_hour"):
            conditions += _positive(getattr(self, name), name)
        conditions += _unit(self.mfu, "mfu")
        first = jnp.asarray(1.0)
        for value, name in ((n_params, "n_params"), (latency, "latency")):
            if value is not None:
                first = jnp.asarray(value)
                conditions += _positive(first, name)
        batch_size, density = jnp.asarray(batch_size), jnp.asarray(density)
        conditions += _positive(batch_size, "batch_size")
        conditions += _unit(density, "density")
        return _raise_unless((self, (first, batch_size, density)), conditions)
