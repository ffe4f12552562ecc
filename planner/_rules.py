"""The rules of every input field, in one table.

Each `Rule` says what values a field accepts, the message that names a value it refuses, the
status a refused value gives a scenario, and the two values that stand for the field where it
has no value of its own: `absent` (imposes nothing: no cap, no demand) and `stand_in` (the
value of the easy, feasible problem solved in place of a refused scenario, or a padding row,
whose result is thrown away). Everything that checks a field is derived from this table:

- `solve(..., throw=True)` raises `Rule.conditions`' message (eagerly, or under `jit` through
  `eqx.error_if`): `planner._problem._check_values`;
- `solve(..., throw=False)` marks the scenario with `Rule.status` (`Rule.violated`, traced):
  `planner._problem._validate`, which also solves `Rule.stand_in` in its place;
- a table row gets `Rule.status` and the message of `Rule.failures` with its column and row
  (`planner._table.parse_columns`), empty cells take `Rule.absent` and padding rows
  `Rule.stand_in`;
- the argument checks of the FLOP, dollar and hardware functions (`planner._checks`).

Beside the field rules, the one infeasibility every path decides without solving: a target loss
at or below the law's irreducible loss (`below_irreducible`).
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

_INF = math.inf
_F32 = np.finfo(np.float32)


@dataclasses.dataclass(frozen=True)
class Rule:
    """The values one field accepts: `low` < x (or <= with `low_closed`), x < `high` (or <= with
    `high_closed`), and finite unless `finite` is False (then +inf is accepted where `high` is
    inf: an infinite cap is no cap). NaN is never accepted.

    **Arguments:**

    - `name`: the field (a `Scenario` field, a law coefficient or a function's argument).
    - `low`, `high`, `low_closed`, `high_closed`, `finite`: the domain.
    - `status`: the `Status` name a scenario with a refused value gets.
    - `absent`: the value that imposes nothing (None: the field has no such value).
    - `stand_in`: the value solved in place of a refused scenario or a padding row. For
      `target_loss` it is added to the law's irreducible loss (`relative_to_irreducible`).
    """

    name: str
    low: float = -_INF
    high: float = _INF
    low_closed: bool = False
    high_closed: bool = False
    finite: bool = True
    status: str = "INVALID_INPUT"
    absent: float | None = None
    stand_in: float = 1.0
    relative_to_irreducible: bool = False

    @property
    def requirement(self) -> str:
        """The domain in words: 'must be > 0', 'must lie in (0, 1]', 'must be >= 1'."""
        if self.low > -_INF and self.high < _INF:
            return (f"must lie in {'[' if self.low_closed else '('}{self.low:g}, "
                    f"{self.high:g}{']' if self.high_closed else ')'}")
        if self.low > -_INF:
            return f"must be {'>=' if self.low_closed else '>'} {self.low:g}"
        if self.high < _INF:
            return f"must be {'<=' if self.high_closed else '<'} {self.high:g}"
        return "must be a number"

    @property
    def domain_text(self) -> str:
        """`requirement`, and where infinity is accepted, that it means no limit."""
        if not self.finite and self.high == _INF:
            return f"{self.requirement}, or inf for no limit"
        return self.requirement

    @property
    def message(self) -> str:
        """The message of a value outside the domain; with `finite`, an infinite or NaN value
        has its own message, `finite_message`."""
        return f"{self.name} {self.domain_text}"

    @property
    def finite_message(self) -> str:
        return f"{self.name} must be finite"

    def outside(self, x, xp=jnp):
        """Where a finite or infinite (not NaN) `x` is outside the domain."""
        below = x < self.low if self.low_closed else x <= self.low
        above = x > self.high if self.high_closed else x >= self.high
        if self.high == _INF:
            above = xp.zeros_like(below) if self.finite else x > self.high
        return below | above

    def violated(self, x, xp=jnp):
        """Where `x` is refused (NaN, infinite where `finite`, or outside the domain)."""
        bad = self.outside(x, xp) | xp.isnan(x)
        if self.finite:
            bad = bad | xp.isinf(x)
        return bad

    def conditions(self, x) -> list[tuple]:
        """`(failed, message)` pairs for `planner._checks.check_all`: with `finite`, "must be
        finite" first (NaN and infinities), then the domain."""
        if self.finite:
            return [(~jnp.isfinite(x), self.finite_message), (self.outside(x), self.message)]
        return [(self.outside(x) | jnp.isnan(x), self.message)]

    def failures(self, x: np.ndarray) -> list[tuple[np.ndarray, str]]:
        """`(failed, requirement)` pairs for a NumPy array of numbers, as `conditions` but
        without the field's name, each failing only where no earlier pair does: one
        requirement per refused value."""
        with np.errstate(invalid="ignore"):
            if self.finite:
                nonfinite = ~np.isfinite(x)
                return [(nonfinite, "must be finite"),
                        (self.outside(x, np) & ~nonfinite, self.domain_text)]
            return [(self.outside(x, np) | np.isnan(x), self.domain_text)]


def _cap(name: str, stand_in: float = _INF) -> Rule:
    return Rule(name, low=0.0, finite=False, absent=_INF, stand_in=stand_in)


# Stand-ins: an easy, feasible problem (every row costs its own iterations, so not one that
# runs to the step limit): a loss target 0.5 above E, no caps, and a training budget well above
# the 9e18 FLOP that loss E + 0.5 needs under Hoffmann et al. 2022's law (for the loss
# objective). Absent values never bind, in float32 as in float64: no cap, no demand, a density
# or score floor of float32's smallest normal number, a loss target of float32's largest.
SCENARIO_RULES: dict[str, Rule] = {rule.name: rule for rule in (
    Rule("target_loss", low=0.0, absent=float(_F32.max), stand_in=0.5,
         relative_to_irreducible=True),
    Rule("target_score", low=0.0, high=1.0, absent=float(_F32.tiny), stand_in=0.5),
    Rule("inference_demand", low=0.0, low_closed=True, absent=0.0, stand_in=0.0),
    _cap("train_budget", stand_in=1e22),
    _cap("inference_budget"),
    _cap("max_inference_flops_per_unit"),
    _cap("max_params"),
    _cap("max_tokens"),
    Rule("min_density", low=0.0, high=1.0, high_closed=True, absent=float(_F32.tiny),
         stand_in=0.5),
    _cap("max_latency"),
    Rule("serving_batch", low=0.0, absent=1.0, stand_in=1.0),
    _cap("max_inference_dollars_per_unit"),
    Rule("demand_rate", low=0.0, low_closed=True, absent=0.0, stand_in=0.0),
)}
"""The rule of every `Scenario` field, by field name."""

# Stand-ins: Hoffmann et al. 2022's fit (Table A3 / eq. 10, rounded as in their paper).
LAW_RULES: dict[str, Rule] = {rule.name: rule for rule in (
    Rule("E", low=0.0, low_closed=True, stand_in=1.69),
    Rule("A", low=0.0, stand_in=406.4),
    Rule("B", low=0.0, stand_in=410.7),
    Rule("alpha", low=0.0, stand_in=0.34),
    Rule("beta", low=0.0, stand_in=0.28),
)}
"""The rule of every Chinchilla law coefficient (a table's law columns), by name."""

COLUMN_RULES: dict[str, Rule] = {**SCENARIO_RULES, **LAW_RULES}
"""The rules by the column names of a scenario table (a column is named after its field)."""

RENAMED_COLUMNS: dict[str, str] = {"inference_tokens": "inference_demand"}
"""Columns of a scenario table that have a new name, by their old name: a table that still
has one is refused with a message naming the new one (an unknown column is otherwise passed
through untouched, and this one would silently mean no demand)."""

ITEM_RULES: dict[str, Rule] = {"weight": Rule("weight", low=0.0, absent=1.0, stand_in=1.0)}
"""The rules of the columns an item table has beside a scenario table's (`planner allocate`):
an item's `weight` in the portfolio's objective, finite and > 0 (what `allocate` accepts), 1
where the cell is empty."""

CLASS_RULES: dict[str, Rule] = {
    "weight": Rule("weight", low=0.0, absent=1.0, stand_in=1.0),
    "pass_at_1": Rule("pass_at_1", low=0.0, high=1.0, low_closed=True, high_closed=True),
    "sample_cost": Rule("sample_cost", low=0.0, absent=1.0, stand_in=1.0),
}
"""The columns of a class table (`planner allocate --test-time`, `planner.allocate_samples`):
each class's share of the queries, `weight`, finite and > 0 (1 where empty); the success
probability of one sample, `pass_at_1`, in [0, 1] (required); and the cost of one sample,
`sample_cost`, finite and > 0 (1 where empty: a budget in samples)."""


def positive(name: str) -> Rule:
    """A finite number > 0."""
    return Rule(name, low=0.0)


def at_least(name: str, low: float) -> Rule:
    """A finite number >= `low`."""
    return Rule(name, low=low, low_closed=True)


def interval(name: str, low: float, high: float, *, open_low: bool = True) -> Rule:
    """A finite number in (low, high] (or [low, high])."""
    return Rule(name, low=low, high=high, low_closed=not open_low, high_closed=True)


INFEASIBLE_TARGET = ("no optimal plan: target_loss is at or below the irreducible loss E of "
                     "the law: no allocation reaches it (infeasible)")
"""The message of `below_irreducible` where the numbers are not known (under `jit`)."""


def below_irreducible(target: float, irreducible: float, field: str = "target_loss") -> str:
    """Why a target loss at or below the law's irreducible loss is infeasible, with numbers;
    `field` names it (a table says "row 3: column 'target_loss'")."""
    return (f"{field} ({target:g}) is at or below the irreducible loss E = {irreducible:g}: "
            "no allocation reaches it (infeasible)")


MARGIN = 1e-9
"""Relative margin within which a closed-form bound is not trusted to decide infeasibility:
values this close to the boundary are left to the solver, so no feasible scenario is refused."""


def infeasible_reasons(values: dict[str, np.ndarray], coef: dict[str, np.ndarray],
                       rows: np.ndarray, dense_inference: bool,
                       row: Callable[[int], str] = lambda i: "", columns: bool = True,
                       ) -> dict[int, list[str]]:
    r"""Why no allocation reaches the `target_loss` of each of `rows` where none can, from
    closed forms of the row's Chinchilla law, which no stage beats (stages may raise the loss
    or the training compute, never lower them): a target at or below `E`; caps on parameters
    and tokens under which even the largest model allowed misses the target; a `train_budget`
    below the least training compute that reaches it; and (with `dense_inference`: inference
    costs at least $2N$ FLOP per unit of demand) inference caps below $2 N_{\min}$.

    **Arguments:**

    - `values`: numbers by table column (a `Scenario` field's name); absent caps are left out
      or infinite.
    - `coef`: the law's `E, A, B, alpha, beta` per row.
    - `rows`: the rows to test.
    - `dense_inference`: see above.
    - `row`: the prefix naming row `i` in a message (a table's "row 3: ").
    - `columns`: name fields as a table's columns ("column 'max_params'") or as fields.

    **Returns:** the messages of each infeasible row, by row index.
    """
    def name(field):
        return f"column {field!r}" if columns else field

    def names(a, b):
        return f"columns {a!r} and {b!r}" if columns else f"{a} and {b}"

    n = len(rows)
    reasons: dict[int, list[str]] = collections.defaultdict(list)
    target = values["target_loss"]
    gap = target - coef["E"]
    with np.errstate(all="ignore"):
        below = rows & (gap <= 0)
        for i in np.flatnonzero(below):
            reasons[i].append(row(i) + below_irreducible(target[i], coef["E"][i],
                                                         name("target_loss")))
        rows = rows & ~below
        a, b, alpha, beta = coef["A"], coef["B"], coef["alpha"], coef["beta"]
        # Hoffmann et al. 2022 eq. (2): L(N, D) = E + A N^-alpha + B D^-beta falls in N and D,
        # so within caps the lowest loss is at the caps, and N_min = (A / gap)^(1/alpha) is the
        # least N reaching the target with unlimited data; the least 6ND is at loss_optimal.
        n_min = (a / gap) ** (1.0 / alpha)
        d_min = (b / gap) ** (1.0 / beta)
        cap_n = values.get("max_params", np.full(n, _INF))
        cap_d = values.get("max_tokens", np.full(n, _INF))
        param_term = a * cap_n ** -alpha
        data_term = b * cap_d ** -beta
        short = rows & (param_term + data_term > gap * (1.0 + MARGIN))
        for i in np.flatnonzero(short):
            if data_term[i] == 0:
                reasons[i].append(
                    row(i) + f"{name('max_params')} ({cap_n[i]:g}) is at or below N_min = "
                    f"{n_min[i]:.6g}, the smallest model that reaches target_loss "
                    f"{target[i]:g} with unlimited data (infeasible)")
            elif param_term[i] == 0:
                reasons[i].append(
                    row(i) + f"{name('max_tokens')} ({cap_d[i]:g}) is at or below D_min = "
                    f"{d_min[i]:.6g}, the fewest tokens that reach target_loss {target[i]:g} "
                    "at any model size (infeasible)")
            else:
                lowest = coef["E"][i] + param_term[i] + data_term[i]
                reasons[i].append(
                    row(i) + f"{names('max_params', 'max_tokens')} ({cap_n[i]:g}, "
                    f"{cap_d[i]:g}) allow no loss below {lowest:.6g}, above target_loss "
                    f"{target[i]:g} (infeasible)")
        if "train_budget" in values:
            n_c = (a * (1.0 + alpha / beta) / gap) ** (1.0 / alpha)
            d_c = (b * (1.0 + beta / alpha) / gap) ** (1.0 / beta)
            c_min = 6.0 * n_c * d_c
            budget = values["train_budget"]
            for i in np.flatnonzero(rows & (budget < c_min * (1.0 - MARGIN))):
                reasons[i].append(
                    row(i) + f"{name('train_budget')} ({budget[i]:g}) is below {c_min[i]:.6g} "
                    f"FLOP, the least training compute that reaches target_loss {target[i]:g} "
                    "(infeasible)")
        if dense_inference:
            per_unit = {}
            if "max_inference_flops_per_unit" in values:
                per_unit["max_inference_flops_per_unit"] = values["max_inference_flops_per_unit"]
            if "inference_budget" in values and "inference_demand" in values:
                demand = values["inference_demand"]
                per_unit["inference_budget"] = np.where(
                    demand > 0, values["inference_budget"] / np.where(demand > 0, demand, 1.0),
                    _INF)
            for field, cap in per_unit.items():
                for i in np.flatnonzero(rows & (cap < 2.0 * n_min * (1.0 - MARGIN))):
                    reasons[i].append(
                        row(i) + f"{name(field)} ({values[field][i]:g}) allows {cap[i]:.6g} "
                        f"FLOP per token, below 2 N_min = {2.0 * n_min[i]:.6g} for the "
                        f"smallest model that reaches target_loss {target[i]:g} (infeasible)")
    return reasons
