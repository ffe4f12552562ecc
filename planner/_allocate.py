r"""Large allocation problems: many items (models a lab trains and serves, classes of queries)
solved as one problem, coupled by shared budgets and, optionally, by one shared model.

**The method: price coordination.** A portfolio of items $i$ with allocations $x_i$ minimises
$\sum_i f_i(x_i)$ (weighted lifetime FLOP, loss or failure rate) subject to each item's own
constraints and shared budgets $\sum_i S_{bi}(x_i) \le C_b$ (training FLOP, lifetime inference
FLOP, ...). Each budget gets a price $p_b \ge 0$; at given prices the items decouple into the
problems `planner.solve` already solves exactly, $\min_{x_i} f_i(x_i) + \sum_b p_b S_{bi}(x_i)$
(a `Costs` objective), and the prices maximise the concave dual
$q(p) = \sum_i \min_{x_i}[\dots] - \sum_b p_b C_b$, whose gradient is the budgets' excess
$\sum_i S_{bi} - C_b$ (Danskin). Every problem here is a geometric program in log variables, so
the dual optimum is the primal optimum (Boyd & Vandenberghe 2004, §5.5; Everett 1963).

The prices are found in log units $u_b = \log p_b$ on an active set of budgets, by Newton's
method on $\log \sum_i S_{bi}(e^u) = \log C_b$, whose Jacobian is the forward-mode derivative of
the items' optimal usage with respect to the prices (the implicit function theorem through
each item's KKT conditions, as `solve`'s gradients are). Every iteration is one batched solve
of all items. The active set is chosen by enumeration, smallest first and starting with the
budgets the unpriced plans overrun; a set is accepted when its prices are positive, every
other budget holds, and every item is certified. Any `optax.GradientTransformation` can run
first on the dual (`optimizer=`; `optax.lbfgs` gets the dual's `value`, `grad` and
`value_fn`), as a global phase before the Newton polish; it is one compiled program over all
items (`chunk` bounds the Newton search's memory, not its). Newton alone is the default: both
reach the prices in a handful of batched solves, and Newton's forward derivatives make each
a little dearer but need no step size (compared in `benchmarks/RESULTS.md`, "Engines").

**Shared variables** (`shared=`): one model, trained once, serves every item (query classes
with their own samples per query). Its training variables $\theta$ are then outer variables:
the reduced objective $\Phi(\theta) = f_0(\theta) + \sum_i \min_{x_i} f_i(x_i; \theta)$ is
minimised by an optax optimiser (L-BFGS by default) whose gradient is exact by the implicit
function theorem through every item's solve; training FLOP are counted once. It is solved for
the `"compute"` objective without budgets (`planner.techniques.train_to_test` chooses one
model and the samples of query classes under one lifetime budget).

**Certificate.** A portfolio is `OPTIMAL` only when every item is certified (`solve`'s KKT
residuals), every active budget is met to `tol` relative, no other budget is exceeded by more
than `tol` relative, and (shared variables) the reduced gradient is below `10 tol`. The prices are
$-\partial(\text{optimum})/\partial C_b$, in objective units per unit of budget (FLOP): the
marginal value of one more FLOP of training or inference.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from ._alm import descend, optax_init, optax_step
from ._compose import Allocation, Pipeline
from ._problem import Costs, Scenario, _check_structure, _validate
from ._solve import Plan, Solver, Status, solve

if TYPE_CHECKING:
    import optax

BUDGETS: dict[str, dict[str, float]] = {
    "train_budget": {"train_flops": 1.0},
    "inference_budget": {"inference_flops": 1.0},
    "compute_budget": {"train_flops": 1.0, "inference_flops": 1.0},
    "dollar_budget": {"train_dollars": 1.0, "inference_dollars": 1.0},
}
"""The shared budgets a portfolio can have, each a linear combination of the items' additive
resources (`planner.RESOURCES`): total training FLOP, total lifetime inference FLOP, their
sum, and the dollars of training and lifetime serving (items priced by a `Deployment`
stage). Another additive resource becomes a budget by one more entry here."""

PORTFOLIO_OBJECTIVES: tuple[str, ...] = ("compute", "dollars", "loss", "score")
_TARGETED = ("compute", "dollars")
"""Objectives under which every item meets its own target, so unpriced plans are bounded."""

# The resources an objective weighs by each item's weight.
_BASE = {"compute": ("train_flops", "inference_flops"),
         "dollars": ("train_dollars", "inference_dollars"), "loss": ("loss",),
         "score": ("failure",)}
_GRADIENT_TOL = 10.0
"""The shared model's reduced gradient is certified at this many times `tol`: it is exact up
to the items' own KKT residuals (the solver's 1e-10 in float64), which leave about 1e-9 of
the objective in it (measured: 1.9e-9 where the line search can no longer decrease the
objective)."""
_NEWTON_STEP = 3.0      # the largest Newton step in log price (a factor e^3)
_PRICE_RANGE = 60.0     # log-price distance from the start beyond which a search has failed
_STALLED = 1e3          # a Newton step this long means the usage does not answer the price
_STEP_BITS = 32         # significant bits of a Newton step in log price (`_coarse`)


class Portfolio(eqx.Module):
    """The solution of a coupled allocation problem.

    **Arguments:**

    - `plans`: one `Plan` per item (a leading item axis), each optimal for its item at the
      budgets' prices (a bad item has its own `status` and is left out of the sums).
    - `status`: a `Status` for the whole portfolio; only `OPTIMAL` is certified.
    - `objective`: the optimum: $\\sum_i w_i (TC_i + IC_i)$ for `"compute"`, the same in
      dollars for `"dollars"`, $\\sum_i w_i L_i$ for `"loss"`,
      $\\sum_i w_i\\,\\text{score}_i$ for `"score"`.
    - `prices`: per budget, $-d\\,\\text{optimum}/d\\,C$ (for `"score"`, $+d/dC$): what one
      more unit of the budget is worth, in objective units per unit of budget (FLOP or
      dollars); 0 for a slack budget.
    - `usage`: per budget, what the plans use of it.
    - `train_flops`, `inference_flops`: totals over the items (training once with a shared
      model; inference over each item's lifetime demand).
    - `residual`: the largest relative budget residual: $|S_b - C_b|/C_b$ for a priced budget,
      $\\max(S_b - C_b, 0)/C_b$ for the others.
    - `kkt`: the largest KKT residual of the items (and, with shared variables, the reduced
      gradient of the shared model).
    - `gap`: the relative duality gap $|\\sum_b p_b (S_b - C_b)|/|q|$, $q$ the sum of the
      items' objectives with their budgets' prices (the dual's scale).
    - `shared`: the shared variables' values (natural units), empty without a shared model.
    - `solves`: batched solves of all items the search used.
    """

    plans: Plan
    status: Int[Array, ""]
    objective: Float[Array, ""]
    prices: dict[str, Array]
    usage: dict[str, Array]
    train_flops: Float[Array, ""]
    inference_flops: Float[Array, ""]
    residual: Float[Array, ""]
    kkt: Float[Array, ""]
    gap: Float[Array, ""]
    shared: dict[str, Array]
    solves: int = eqx.field(static=True)


class _Items(eqx.Module):
    """Everything the items' solves depend on, with a leading item axis (`model` leaves with
    no item axis are shared by every item)."""

    model: Pipeline
    scenario: Scenario
    weight: Array
    valid: Array
    fixed: dict[str, Array]


def _model_axes(model: Pipeline):
    return jax.tree.map(lambda leaf: 0 if jnp.ndim(leaf) >= 1 else None, model)


def _costs(objective: str, budgets: tuple[str, ...], weight: Array, prices: Array,
           shared: bool) -> Costs:
    """An item's objective at the budgets' prices: its own resources weighted by its weight,
    each budget's resources by the budget's price (training FLOP left out with a shared model:
    they belong to the model, counted once)."""
    terms: dict[str, Array] = {}
    for r in _BASE[objective]:
        if not (shared and r == "train_flops"):
            terms[r] = weight
    for b, name in enumerate(budgets):
        for r, coef in BUDGETS[name].items():
            if shared and r == "train_flops":
                continue
            terms[r] = terms.get(r, jnp.zeros_like(weight)) + coef * prices[b]
    return Costs(**terms)


def _item_plans(objective, budgets, items: _Items, prices: Array, solver: Solver) -> Plan:
    shared = bool(items.fixed)

    def one(model, scenario, weight, fixed):
        costs = _costs(objective, budgets, weight, prices, shared)
        return solve(model, scenario, objective=costs, solver=solver, fixed=fixed,
                     throw=False)

    axes = (_model_axes(items.model), 0, 0, None)
    fixed = {k: jnp.exp(v) for k, v in items.fixed.items()}
    return jax.vmap(one, in_axes=axes)(items.model, items.scenario, items.weight, fixed)


def _resources(plans: Plan, scenario: Scenario) -> dict[str, Array]:
    out = plans.outcome
    found = {"train_flops": out.train_flops,
             "inference_flops": scenario.inference_demand * out.inference_flops_per_unit,
             "loss": out.loss - out.irreducible_loss}
    if out.score is not None:
        found["failure"] = 1.0 - out.score
    if out.train_dollars is not None:
        found["train_dollars"] = out.train_dollars
        found["inference_dollars"] = scenario.inference_demand * out.inference_dollars_per_unit
    return found


def _two_sum(a: Array, b: Array) -> tuple[Array, Array]:
    """`a + b` rounded, and its rounding error (Knuth's TwoSum: exact, with additions only,
    so no multiply-add can be contracted into it)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _dd_add(a_hi, a_lo, b_hi, b_lo) -> tuple[Array, Array]:
    """The sum of two double-length numbers (hi + lo), as one; an infinite or NaN `hi` has
    `lo` 0, so that infinities add up as in a plain sum (not to NaN)."""
    s, e = _two_sum(a_hi, b_hi)
    e = jnp.where(jnp.isfinite(s), e + (a_lo + b_lo), 0.0)
    hi = s + e
    return hi, jnp.where(jnp.isfinite(hi), e - (hi - s), 0.0)


def _dd_tree(hi: Array, lo: Array) -> tuple[Array, Array]:
    """The double-length sum over the leading axis (a pairwise tree, zero-padded to a power
    of two)."""
    n = hi.shape[0]
    size = 1 << max(n - 1, 0).bit_length()
    if size != n:
        pad = jnp.zeros((size - n, *hi.shape[1:]), hi.dtype)
        hi, lo = jnp.concatenate([hi, pad]), jnp.concatenate([lo, pad])
    while hi.shape[0] > 1:
        hi, lo = _dd_add(hi[0::2], lo[0::2], hi[1::2], lo[1::2])
    return hi[0], lo[0]


def _item_sum(values: Array, axis_name: str | None = None) -> Array:
    r"""The sum of `values` over the item axis (the leading one), over every device of the
    mesh axis `axis_name` too when given (inside `shard_map`).

    It is accumulated in double length (`_dd_tree`, then across the devices' partial sums,
    gathered in device order) and rounded once: its error before that rounding is about
    $\log_2 n \cdot 2^{-104}$ of $\sum |x_i|$, so the result is the exact sum correctly
    rounded unless the exact sum lies that close to a rounding boundary. Unlike a plain
    sum's rounding, it then does not depend on how the items are split between devices and
    processes (nor does the search's next step, which would amplify a last-bit difference
    through the items' solver tolerance; see `_coarse` for the derivatives)."""
    hi, lo = _dd_tree(values, jnp.zeros_like(values))
    if axis_name is not None:
        hi, lo = _dd_tree(jax.lax.all_gather(hi, axis_name), jax.lax.all_gather(lo, axis_name))
    return hi + lo


def _usage(budgets, res, valid, axis_name=None) -> Array:
    """(B,) each budget's use by the valid items."""
    dtype = res["train_flops"].dtype
    usage = []
    for name in budgets:
        total = jnp.zeros((), dtype)
        for r, coef in BUDGETS[name].items():
            total = total + coef * _item_sum(jnp.where(valid, res[r], 0.0), axis_name)
        usage.append(total)
    return jnp.stack(usage) if usage else jnp.zeros((0,), dtype)


class _Sums(eqx.Module):
    """What the price search needs from a batch of items at given prices, summed over them."""

    usage: Array     # (B,) each budget's use
    jacobian: Array  # (B, B): d usage / d log price (0 in an unpriced budget's)
    value: Array     # the reported optimum (the items' part)
    dual: Array      # sum of the items' priced objectives (for the dual and the gap)
    train: Array
    inference: Array
    kkt: Array       # the largest KKT residual of a valid item
    bad: Array       # valid items not certified
    infeasible: Array  # valid items infeasible on their own (at any prices)


def _evaluate(objective: str, budgets: tuple[str, ...], tangents: bool, items: _Items,
              prices: Array, solver: Solver,
              axis_name: str | None = None) -> tuple[_Sums, Plan]:
    """The items' plans at `prices` and their `_Sums`; with `tangents`, also the forward-mode
    derivative of the budgets' usage in every log price (implicit, through every item's KKT
    conditions), one compilation whatever budgets the search prices. With `axis_name`
    (inside `shard_map`), the float sums are over every device of that mesh axis
    (`_item_sum`); the counts and the KKT residual are this device's."""
    dtype = prices.dtype
    nb = len(budgets)

    def usage_at(u):
        plans = _item_plans(objective, budgets, items, jnp.exp(u), solver)
        res = _resources(plans, items.scenario)
        counted = items.valid & (plans.status != Status.INFEASIBLE)
        return _usage(budgets, res, counted, axis_name), (plans, res)

    if tangents and nb:
        # a zero price is log price -inf: its column is 0, as the derivative in a slack
        # budget's price is not used
        u0 = jnp.log(prices)
        basis = jnp.eye(nb, dtype=dtype)
        usage, jac, (plans, res) = jax.vmap(
            lambda t: jax.jvp(usage_at, (u0,), (t,), has_aux=True), out_axes=(None, 0, None)
        )(basis)
        jac = jnp.where(prices[:, None] > 0, jac, 0.0).T
    else:
        plans = _item_plans(objective, budgets, items, prices, solver)
        res = _resources(plans, items.scenario)
        usage = _usage(budgets, res, items.valid & (plans.status != Status.INFEASIBLE),
                       axis_name)
        jac = jnp.zeros((nb, nb), dtype)
    # an item infeasible on its own has no plan to add up (it makes the portfolio infeasible)
    valid, w = items.valid & (plans.status != Status.INFEASIBLE), items.weight

    def total(values):
        return _item_sum(jnp.where(valid, values, 0.0), axis_name)

    costs = _costs(objective, budgets, w, prices, False).terms()
    dual = total(sum(c * res[r] for r, c in costs.items()))
    if objective in _TARGETED:
        train, inference = _BASE[objective]
        value = total(w * res[train] + w * res[inference])
    elif objective == "loss":
        value = total(w * plans.outcome.loss)
    else:
        value = total(w * plans.outcome.score)
    kkt = jnp.maximum(jnp.maximum(plans.stationarity, plans.feasibility),
                      plans.complementarity)
    sums = _Sums(
        usage=usage, jacobian=jac, value=value, dual=dual,
        train=total(res["train_flops"]), inference=total(res["inference_flops"]),
        kkt=jnp.max(jnp.where(valid, kkt, 0.0), initial=0.0),
        bad=jnp.sum(valid & (plans.status != Status.OPTIMAL)),
        infeasible=jnp.sum(items.valid & (plans.status == Status.INFEASIBLE)),
    )
    return sums, plans


_evaluate_jit = eqx.filter_jit(_evaluate)

_AXIS = "items"  # the item axis of the device mesh
_ROWS, _WHOLE = jax.sharding.PartitionSpec(_AXIS), jax.sharding.PartitionSpec()


def _split(items: _Items):
    """`items`' arrays, their partition specs over the mesh (per-item leaves by rows, the
    others whole), and the rest of `items`."""
    dynamic, static = eqx.partition(items, eqx.is_array)
    return dynamic, jax.tree.map(lambda v: _ROWS if v.ndim >= 1 else _WHOLE, dynamic), static


def _evaluate_sharded(objective: str, budgets: tuple[str, ...], tangents: bool, items: _Items,
                      prices: Array, solver: Solver,
                      mesh: jax.sharding.Mesh) -> tuple[_Sums, Plan]:
    """`_evaluate` with the items split over the devices of `mesh` by `jax.shard_map`: each
    device solves its own rows (its solver loops stop when its rows are solved, with no
    collective inside them) and the `_Sums` are reduced across the devices, across
    processes too when the mesh spans several: the float sums by `_item_sum` (so they are
    the one-device sums), the counts by `psum`, the KKT residual by `pmax`. The sums come
    back replicated, the plans split by rows."""
    dynamic, specs, static = _split(items)

    def local(dynamic, prices):
        sums, plans = _evaluate(objective, budgets, tangents, eqx.combine(dynamic, static),
                                prices, solver, _AXIS)
        sums = eqx.tree_at(lambda t: (t.kkt, t.bad, t.infeasible), sums, (
            jax.lax.pmax(sums.kkt, _AXIS), jax.lax.psum(sums.bad, _AXIS),
            jax.lax.psum(sums.infeasible, _AXIS)))
        return sums, plans

    return jax.shard_map(local, mesh=mesh, in_specs=(specs, _WHOLE),
                         out_specs=(_WHOLE, _ROWS), check_vma=False)(dynamic, prices)


_evaluate_sharded_jit = eqx.filter_jit(_evaluate_sharded)


_GROWING = {"training": frozenset({"train_flops", "train_dollars"}),
            "inference": frozenset({"inference_flops", "inference_dollars"})}
"""What a loss or score objective can spend without limit, by kind, in FLOP or dollars."""


def unbounded(objective: str, samples: bool) -> tuple[str, ...]:
    """The kinds of `_GROWING` that a budget must price for the objective to have an optimum:
    training for a loss or score; also inference for a score that samples per query buy
    (`samples`: pass@k rises towards 1 with k)."""
    if objective in _TARGETED:
        return ()
    if objective == "score" and samples:
        return ("training", "inference")
    return ("training",)


def pricing(kind: str) -> list[str]:
    """The budgets (of `BUDGETS`) that price a kind of `_GROWING`."""
    return [name for name, terms in BUDGETS.items() if _GROWING[kind] & set(terms)]


def _admissible(kinds: tuple[str, ...], active: tuple[int, ...],
                budgets: tuple[str, ...]) -> bool:
    """Whether pricing the budgets in `active` (only) bounds every item (`unbounded`)."""
    priced = {budgets[b] for b in active}
    return all(priced & set(pricing(kind)) for kind in kinds)


class _Search:
    """The host loop around the jitted batched solves: the items in chunks (each a jitted
    call), the price search, and the bookkeeping of solves and progress.

    With `devices` (two or more) every batched solve splits each chunk's items over them
    (`_evaluate_sharded`). The devices may belong to several processes of a `jax.distributed`
    run: every process then runs this same loop on the same items (SPMD), places only the
    rows of its own devices, and gets the same replicated sums from the one compiled program,
    so every process takes the same Newton steps."""

    def __init__(self, objective, budgets, capacity, items: _Items, solver, tol, chunk,
                 progress, devices=None):
        self.objective, self.budgets, self.capacity = objective, budgets, capacity
        self.items, self.solver, self.tol, self.chunk = items, solver, tol, chunk
        self.progress = progress
        self.mesh = None
        if devices is not None and len(devices) >= 2:
            self.mesh = jax.sharding.Mesh(np.array(list(devices)), (_AXIS,))
        # whether the devices span processes: each process holds only its devices' rows
        # of a piece's plans, gathered for the result
        self.spans = self.mesh is not None and any(
            d.process_index != jax.process_index() for d in self.mesh.devices.flat)
        self.n = items.weight.shape[0]
        self.valid = np.asarray(items.valid)
        self.solves = 0
        self.named = np.zeros(self.n, bool)  # items that alone exceed a budget
        self.last = None  # (prices, sums, plans in pieces) of the last batched solve

    def _place(self, value, spec):
        """`value` (the same on every process) as an array over the mesh: each process
        copies in only the blocks of its own devices."""
        host = np.asarray(value)
        sharding = jax.sharding.NamedSharding(self.mesh, spec)
        return jax.make_array_from_callback(host.shape, sharding,
                                            lambda index: host[index])

    def chunks(self):
        """The item axis in pieces of `chunk` rows (the last padded with invalid copies of
        the first row, so every piece compiles to one shape), each placed on the mesh's
        devices with its item axis split between them (padded to a multiple of their
        number). Yields (piece, its first row, its rows)."""
        size = self.n if self.chunk is None else min(self.chunk, self.n)
        if self.mesh is not None:
            size = -(-size // self.mesh.size) * self.mesh.size
        for start in range(0, self.n, size):
            stop = min(start + size, self.n)
            piece = jax.tree.map(lambda v: v[start:stop] if jnp.ndim(v) >= 1 else v,
                                 self.items)
            rows = stop - start
            if rows < size:
                pad = size - rows
                piece = jax.tree.map(
                    lambda v: jnp.concatenate([v, jnp.repeat(v[:1], pad, axis=0)])
                    if jnp.ndim(v) >= 1 else v, piece)
                piece = eqx.tree_at(lambda t: t.valid, piece,
                                    piece.valid.at[rows:].set(False))
            if self.mesh is not None:
                piece = jax.tree.map(
                    lambda v: self._place(v, _ROWS if jnp.ndim(v) >= 1 else _WHOLE), piece)
            yield piece, start, rows

    def _host(self, tree):
        """`tree` (arrays of a batched solve) as numpy arrays; with devices in several
        processes, gathered whole on every process first (one compiled all-gather: a
        collective, which every process reaches in the same order)."""
        if self.spans:
            replicated = jax.sharding.NamedSharding(self.mesh, _WHOLE)
            tree = jax.jit(lambda t: t, out_shardings=replicated)(tree)
        return jax.tree.map(np.asarray, tree)

    def __call__(self, prices: np.ndarray) -> _Sums:
        """`_Sums` (numpy) of all items at `prices`, with the derivatives of their usage (one
        compiled program serves every call); the plans are kept (`self.last`)."""
        total, pieces = None, []
        self.last = None  # the previous solve's plans are let go before the next ones are made
        p = jnp.asarray(prices, self.items.weight.dtype)
        if self.mesh is not None:
            p = self._place(p, _WHOLE)
        for piece, _, rows in self.chunks():
            if self.mesh is None:
                sums, piece_plans = _evaluate_jit(self.objective, self.budgets, True, piece,
                                                  p, self.solver)
            else:
                sums, piece_plans = _evaluate_sharded_jit(
                    self.objective, self.budgets, True, piece, p, self.solver, self.mesh)
            sums = jax.tree.map(np.asarray, sums)  # replicated: every process has them
            if total is None:
                total = sums
            else:
                total = _Sums(*(np.maximum(a, b) if name == "kkt" else a + b for name, a, b
                                in zip(_SUMS_FIELDS, jax.tree.leaves(total),
                                       jax.tree.leaves(sums), strict=True)))
            pieces.append((piece_plans, rows))
        self.last = (np.array(prices, float), total, pieces)
        self.solves += 1
        if self.progress is not None:
            shown = ", ".join(f"{name} {p_b:.4g} uses {s / c:.6f} of it" for name, p_b, s, c
                              in zip(self.budgets, prices, total.usage, self.capacity,
                                     strict=True))
            self.progress(f"batched solve {self.solves}: {shown or 'no budget priced'}")
        return total

    def result(self, prices: np.ndarray) -> tuple[_Sums, Plan]:
        """`_Sums` and the items' plans at `prices`, from the last batched solve when it was
        at these prices. With devices in several processes, the plans are gathered and
        returned whole on every process, on its default device."""
        if self.last is None or not np.array_equal(self.last[0], prices):
            self(prices)
        _, total, pieces = self.last
        if self.spans:
            pieces = [(jax.tree.map(jnp.asarray, self._host(pl)), rows) for pl, rows in pieces]
        if len(pieces) == 1:
            plans = jax.tree.map(lambda v, r=pieces[0][1]: v[:r], pieces[0][0])
        else:
            plans = jax.tree.map(lambda *v: jnp.concatenate(v),
                                 *(jax.tree.map(lambda v, r=r: v[:r], pl) for pl, r in pieces))
        return total, plans

    def infeasible_items(self) -> np.ndarray:
        """(n,) the valid items the last batched solve found infeasible on their own."""
        _, _, pieces = self.last
        found = [self._host(pl.status)[:rows] == Status.INFEASIBLE for pl, rows in pieces]
        return np.concatenate(found) & self.valid

    def least(self, direction: np.ndarray) -> np.ndarray:
        """(n,) each valid item's least use of the budgets weighed by `direction` (>= 0) that
        still meets its own targets and constraints (0 for an invalid item)."""
        resources = tuple(sorted({r for name in self.budgets for r in BUDGETS[name]}))
        coefs = np.array([sum(d * BUDGETS[name].get(r, 0.0) for d, name
                              in zip(direction, self.budgets, strict=True)) for r in resources])
        coefs = jnp.asarray(coefs, self.items.weight.dtype)
        found = []
        for piece, start, rows in self.chunks():
            if self.mesh is None:
                value = _least_usage_jit(resources, coefs, piece, self.solver)
            else:
                value = _least_usage_sharded_jit(resources, self._place(coefs, _WHOLE), piece,
                                                 self.solver, self.mesh)
            value = self._host(value)[:rows]
            found.append(np.where(self.valid[start:start + rows], value, 0.0))
        self.solves += 1
        found = np.concatenate(found)
        if self.progress is not None:
            share = found.sum() / (direction @ self.capacity)
            self.progress(f"batched solve {self.solves}: the items' least use of "
                          f"{self._weighed(direction)} is {share:.6f} of it")
        return found

    def _weighed(self, direction) -> str:
        return " + ".join(name if d == 1 else f"{d:.4g} {name}"
                          for d, name in zip(direction, self.budgets, strict=True) if d > 0)

    def short(self, direction: np.ndarray) -> bool:
        """Whether the budgets are infeasible by the certificate of `direction` $d \\ge 0$:
        the items' least total of $d \\cdot S$ exceeds $d \\cdot C$ (no allocation meets every
        target within the budgets, since one would use at most $d \\cdot C$). A unit
        direction also names the items that alone exceed their budget."""
        direction = np.asarray(direction, float)
        scenario = self.items.scenario
        if not np.any(direction > 0) or (scenario.target_loss is None
                                         and scenario.target_score is None):
            return False  # without targets the least use is nothing: every budget is met
        direction = direction / np.max(direction)
        least = self.least(direction)
        if np.count_nonzero(direction) == 1:
            b = int(np.argmax(direction))
            self.named |= least > self.capacity[b]
        return bool(least.sum() > float(direction @ self.capacity) * (1.0 + self.tol))

    def residuals(self, sums: _Sums, prices: np.ndarray, active) -> np.ndarray:
        """Per budget: |S - C|/C when priced, max(S - C, 0)/C otherwise."""
        excess = (sums.usage - self.capacity) / self.capacity
        priced = np.zeros(len(self.budgets), bool)
        priced[list(active)] = True
        return np.where(priced, np.abs(excess), np.maximum(excess, 0.0))

    def newton(self, active, start: np.ndarray, max_iterations: int):
        """Newton's method on log usage = log capacity in the active log prices from `start`
        (full price vector). Returns (prices, sums, outcome) with outcome one of
        "optimal", "diverged", "inactive", "failed"."""
        idx = list(active)
        prices = np.zeros(len(self.budgets))
        prices[idx] = start[idx]
        u = np.log(prices[idx])
        u_start = u.copy()
        bracket = [-np.inf, np.inf]  # one budget: usage decreases in its price
        sums = None
        for _ in range(max_iterations):
            prices[idx] = np.exp(u)
            sums = self(prices)
            if sums.infeasible > 0:
                return prices, sums, "item"
            if sums.bad > 0:
                if len(idx) == 1 and np.isfinite(bracket[0]) and np.isfinite(bracket[1]):
                    u = 0.5 * (bracket[0] + bracket[1])
                    continue
                return prices, sums, "failed"
            residual = self.residuals(sums, prices, active)
            f = np.log(sums.usage[idx]) - np.log(self.capacity[idx])
            if np.max(np.abs(f), initial=0.0) <= self.tol:
                return prices, sums, ("optimal" if np.all(residual <= self.tol)
                                      else "inactive")
            jac = sums.jacobian[np.ix_(idx, idx)] / sums.usage[idx][:, None]
            try:
                step = _coarse(np.linalg.solve(jac, f))
            except np.linalg.LinAlgError:
                # singular: the usage does not answer the prices in some direction, a step
                # of unbounded length (as below)
                if np.any(f > 0) and self.short(prices):
                    return prices, sums, "short"
                return prices, sums, "failed"
            largest = np.max(np.abs(step))
            if not np.isfinite(largest):
                return prices, sums, "failed"
            if largest > _STALLED and np.any(f > 0):
                # the usage hardly answers the prices: are the budgets, weighed by them, below
                # the least the items can use while meeting their own targets?
                if self.short(prices):
                    return prices, sums, "short"
            if largest > _NEWTON_STEP:
                step = step * (_NEWTON_STEP / largest)
            new = u - step
            if len(idx) == 1:
                # one budget: its usage falls as its price rises, so keep a bracket
                if f[0] > 0:
                    bracket[0] = max(bracket[0], u[0])
                else:
                    bracket[1] = min(bracket[1], u[0])
                if not bracket[0] < new[0] < bracket[1]:
                    if np.all(np.isfinite(bracket)):
                        new = np.array([0.5 * (bracket[0] + bracket[1])])
                    else:
                        new = u + (_NEWTON_STEP if f[0] > 0 else -_NEWTON_STEP)
            u = new
            if np.any(u - u_start > _PRICE_RANGE):
                return prices, sums, "diverged"
            if np.any(u - u_start < -_PRICE_RANGE):
                return prices, sums, "inactive"
        return prices, sums, "failed"


def _coarse(step: np.ndarray) -> np.ndarray:
    """`step` rounded to `_STEP_BITS` significant bits.

    The last bits of a Newton step carry the rounding of the items' derivatives, which
    depends on how XLA compiled the batched solve (on one device or split over several,
    where it contracts multiply-adds differently), and a step that differs in its last bit
    moves the next prices, and through the items' solver tolerance their plans, by far more
    than rounding. Rounded, the steps of two such searches are the same unless one falls
    within its last bits of a boundary of the coarser grid (a chance of about $2^{-19}$ a
    step); $2^{-32}$ relative
    is far below what a Newton step needs (the search stops at `tol`, and near the root a
    step's own error is larger)."""
    mantissa, exponent = np.frexp(step)
    return np.ldexp(np.round(mantissa * 2.0 ** _STEP_BITS) / 2.0 ** _STEP_BITS, exponent)


_SUMS_FIELDS = ("usage", "jacobian", "value", "dual", "train", "inference", "kkt", "bad",
                "infeasible")


def _is_traced(tree) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(tree))


def _subsets(n: int, first: set[int]) -> list[tuple[int, ...]]:
    """Nonempty subsets of range(n): those containing `first` before the others, then by
    size."""
    sets = [s for k in range(1, n + 1) for s in itertools.combinations(range(n), k)]
    return sorted(sets, key=lambda s: (not first <= set(s), len(s)))


def allocate(
    model: Pipeline,
    items: Scenario,
    budgets: dict[str, ArrayLike] | None = None,
    *,
    objective: str = "compute",
    weight: ArrayLike | None = None,
    shared: Sequence[str] = (),
    solver: Solver = Solver(),
    optimizer: optax.GradientTransformation | None = None,
    optimizer_steps: int = 50,
    max_iterations: int = 40,
    tol: float | None = None,
    chunk: int | None = None,
    devices: Sequence[jax.Device] | None = None,
    progress: Callable[[str], None] | None = None,
    throw: bool = True,
) -> Portfolio:
    r"""The optimal allocation of a portfolio of items coupled by shared budgets.

    Problems, by `objective`:

    - `"compute"`: every item meets its own target (`target_loss` or `target_score`);
      minimise $\sum_i w_i (TC_i + T_i\,IC_i)$ within the budgets (a training budget below the
      items' separate optima pushes them to smaller, inference-heavier or pruned plans);
    - `"dollars"`: the same in dollars, $\sum_i w_i (\$_{\text{train},i} +
      \$_{\text{inference},i})$, each item priced by the `Deployment` stage the model ends
      with (its hardware, serving batch, latency and memory);
    - `"loss"`: minimise $\sum_i w_i L_i$ within the budgets;
    - `"score"`: maximise $\sum_i w_i\,\text{score}_i$ within the budgets.

    The method (price coordination, Newton on the log prices, certification) is described in
    the module `planner._allocate` and in the docs' "Large allocation problems" page.

    **Arguments:**

    - `model`: a `Pipeline`; an array leaf with a leading axis is per item (each item its own
      law, say), a scalar leaf is common to all.
    - `items`: a `Scenario` whose fields have a leading item axis (broadcast to one length).
    - `budgets`: limits by name, from `BUDGETS` (`"train_budget"`, `"inference_budget"`,
      `"compute_budget"` in FLOP; `"dollar_budget"` in dollars, with a `Deployment` stage); a
      loss or score objective needs one that prices training, and a score with samples per
      query one that prices inference too.
    - `objective`: one of `PORTFOLIO_OBJECTIVES`.
    - `weight`: per-item weights (default 1): queries' shares, models' importance.
    - `shared`: the names of variables common to every item, one model trained once that
      serves every item: the model's training variables (`("n_params", "n_tokens")`, with
      `"density"` when it prunes); the items keep the others (samples per query).
    - `solver`: the `Solver` of the items' problems.
    - `optimizer`: an optax transformation run first on the dual in log prices (with a
      shared model: on the shared variables, where the default is `optax.lbfgs()`); the
      Newton search on the prices follows and certifies. Its dual step is compiled once
      per problem structure and optimizer object: pass the same object to reuse it.
    - `optimizer_steps`: its steps.
    - `max_iterations`: Newton iterations per active set of budgets.
    - `tol`: relative tolerance of the budgets (and, times 10, of a shared model's reduced
      gradient); default 1e-9 in float64, 1e-4 in float32.
    - `chunk`: items per jitted batched solve (default all at once); the sums over chunks
      are exact, so this trades memory for nothing but dispatch.
    - `devices`: devices to split the item axis over (e.g. `jax.local_devices()`): each
      batched solve of the price search runs each device's items on that device
      (`jax.shard_map`) and the budgets' sums are reduced across them in the same compiled
      program. The sums are accumulated in double length and the Newton steps rounded to 32
      bits, so the search does not depend on the split: the portfolio is the one-device
      portfolio to rounding (bit for bit where measured, on 2 to 4 CPU devices). In one
      process the plans come back split over the devices. The devices may span
      the processes of a `jax.distributed` run (`devices=jax.devices()` after
      `planner.distributed.initialize`): every process then calls `allocate` with the same
      arguments (SPMD), copies in only its own devices' rows, and receives the same sums
      from the compiled program, reduced across processes; the price search on the host
      takes the same steps in each, and every process returns the same `Portfolio`, with
      every item's plan gathered onto its own default device (host-usable arrays). The
      `optimizer=` phase runs unsplit, on each process's default device.
    - `progress`: called with a line after every batched solve.
    - `throw`: raise unless the portfolio is `OPTIMAL`.

    **Returns:** a `Portfolio`.

    Differentiable with `jax.grad`/`jax.jacfwd` (not under `jit`: the price search is a host
    loop) with respect to the budgets, the weights, the items and the model: the prices are
    differentiated by the implicit function theorem on the budget equations, the plans
    through their KKT conditions.

    **References:** Everett 1963, *Generalized Lagrange multiplier method for solving problems
    of optimum allocation of resources*, Operations Research 11(3); Boyd & Vandenberghe 2004,
    *Convex Optimization*, §5.5 and §4.5 (geometric programs).
    """
    budgets = dict(budgets or {})
    if objective not in PORTFOLIO_OBJECTIVES:
        raise ValueError(f"objective must be one of {PORTFOLIO_OBJECTIVES}, got {objective!r}")
    unknown = set(budgets) - set(BUDGETS)
    if unknown:
        raise ValueError(f"unknown budgets {sorted(unknown)}: the budgets are {sorted(BUDGETS)}")
    if not isinstance(items, Scenario):
        raise ValueError("items must be a Scenario with a leading item axis")
    if not isinstance(model, Pipeline):
        raise ValueError("model must be a Pipeline")
    names = tuple(name for name in BUDGETS if name in budgets)
    shared = tuple(shared)
    if shared:
        training = tuple(v for v in model.base.variables) + tuple(
            v for v in model.variables if v == "density")
        if set(shared) != set(training):
            raise ValueError(f"shared must be the model's training variables {training}, "
                             f"got {shared}")
        if objective != "compute" or names:
            raise ValueError("a shared model is solved for objective='compute' without "
                             f"budgets (got objective={objective!r}, budgets {list(names)})")
    for kind in unbounded(objective, "n_samples" in model.variables):
        if not set(pricing(kind)) & set(names):
            raise ValueError(f"objective={objective!r} needs a budget on {kind}: give "
                             f"{' or '.join(pricing(kind))}"
                             + (" (samples per query raise the score without limit)"
                                if kind == "inference" else ""))
    items = items.broadcast()
    leaves = jax.tree.leaves(items)
    if leaves[0].ndim != 1:
        raise ValueError(f"items must have one leading item axis, got shape {leaves[0].shape}")
    n = leaves[0].shape[0]
    if n == 0:
        raise ValueError("items is empty")
    dtype = jnp.result_type(*leaves)
    for leaf in jax.tree.leaves(model):
        if eqx.is_array(leaf) and jnp.ndim(leaf) >= 1 and jnp.shape(leaf)[0] != n:
            raise ValueError(f"a per-item model leaf has {jnp.shape(leaf)[0]} rows, "
                             f"the items {n}")
    weight = jnp.ones(n, dtype) if weight is None else jnp.broadcast_to(
        jnp.asarray(weight, dtype), (n,))
    capacity = {name: jnp.asarray(budgets[name], dtype) for name in names}
    for name, c in capacity.items():
        if c.shape != () or not bool(jax.lax.stop_gradient(c) > 0) or not bool(
                jnp.isfinite(jax.lax.stop_gradient(c))):
            raise ValueError(f"budget {name} must be one finite number > 0, got {budgets[name]}")
    probe = jax.tree.map(lambda v: v[0] if jnp.ndim(v) >= 1 else v, model)
    _check_structure(probe, jax.tree.map(lambda v: v[0], items),
                     _costs(objective, names, jnp.ones((), dtype),
                            jnp.ones(len(names), dtype), bool(shared)), None)
    if tol is None:
        tol = 1e-9 if jnp.dtype(dtype) == jnp.float64 else 1e-4

    invalid, infeasible = jax.vmap(_validate, in_axes=(_model_axes(model), 0))(model, items)
    invalid = invalid | ~(jnp.isfinite(weight) & (weight > 0))
    data = _Items(model=model, scenario=items, weight=jnp.where(invalid, 1.0, weight),
                  valid=~invalid, fixed={})
    if shared:
        portfolio = _allocate_shared(objective, names, capacity, data, shared, solver,
                                     optimizer, optimizer_steps, tol, progress, infeasible)
        if throw:
            portfolio = eqx.error_if(portfolio, portfolio.status != Status.OPTIMAL,
                                     "no optimal portfolio: inspect Portfolio.status "
                                     "(allocate with throw=False)")
        return portfolio
    portfolio = _price_search(objective, names, capacity, data, solver, optimizer,
                              optimizer_steps, max_iterations, tol, chunk, progress,
                              infeasible, devices=devices)
    if throw:
        portfolio = eqx.error_if(portfolio, portfolio.status != Status.OPTIMAL,
                                 "no optimal portfolio: inspect Portfolio.status "
                                 "(allocate with throw=False)")
    return portfolio


def _price_search(objective, names, capacity, data: _Items, solver, optimizer,
                  optimizer_steps, max_iterations, tol, chunk, progress, infeasible,
                  devices=None) -> Portfolio:
    """Find the budgets' prices, certify, and build the `Portfolio` (differentiable in the
    data when it is traced)."""
    traced = _is_traced((data, capacity))
    kinds = unbounded(objective, "n_samples" in data.model.variables)
    frozen = jax.lax.stop_gradient(data)
    cap = np.array([float(jax.lax.stop_gradient(capacity[b])) for b in names])
    search = _Search(objective, names, cap, frozen, solver, tol, chunk, progress, devices)
    dtype = data.weight.dtype
    total_weight = float(np.sum(np.where(np.asarray(frozen.valid), np.asarray(frozen.weight),
                                         0.0)))
    start = (np.ones(len(names)) if objective in _TARGETED
             else 0.1 * max(total_weight, 1.0) / np.maximum(cap, 1e-300))
    status, prices, active, sums = Status.NOT_CONVERGED, np.zeros(len(names)), (), None
    # items that cannot meet their own targets whatever the prices: named, left out of the
    # sums, and the portfolio is infeasible
    unreachable = np.asarray(infeasible & frozen.valid)
    first: set[int] = set()
    if not np.asarray(frozen.valid).any():
        status = Status.INVALID_INPUT
    elif unreachable.any():
        status = Status.INFEASIBLE
    else:
        if objective in _TARGETED:
            sums = search(prices)
            # a budget in the objective's own units starts at price 1; another (dollars
            # against FLOP) at the unpriced plans' objective per unit of the budget they use
            own = set(_BASE[objective])
            start = np.array([1.0 if set(BUDGETS[b]) <= own | {"train_flops",
                                                                "inference_flops"}
                              and objective == "compute" or set(BUDGETS[b]) <= own
                              else float(sums.value) / max(float(sums.usage[k]), 1e-300)
                              for k, b in enumerate(names)])
            residual = search.residuals(sums, prices, ())
            if sums.bad == 0 and np.all(residual <= tol):
                status = Status.OPTIMAL
            elif sums.infeasible > 0:
                status = Status.INFEASIBLE
            first = {b for b in range(len(names)) if sums.usage[b] > cap[b]}
        if status == Status.NOT_CONVERGED and optimizer is not None and names:
            start, first = _dual_phase(objective, names, cap, frozen, solver, optimizer,
                                       optimizer_steps, start, search)
        if status == Status.NOT_CONVERGED:
            for candidate in _subsets(len(names), first):
                if not _admissible(kinds, candidate, names):
                    continue
                p, s, outcome = search.newton(candidate, start, max_iterations)
                if outcome in ("short", "item"):
                    status, prices, active, sums = Status.INFEASIBLE, p, candidate, s
                    break
                if outcome == "optimal":
                    status, prices, active, sums = Status.OPTIMAL, p, candidate, s
                    break
                if sums is None or outcome == "diverged":
                    prices, active, sums = p, candidate, s
                if outcome == "inactive":
                    # the candidate's equations hold but another budget is overrun: a larger
                    # set starts from these prices
                    start = np.where(p > 0, p, start)
        if search.last is not None and search.last[1].infeasible > 0:
            status = Status.INFEASIBLE
            unreachable = search.infeasible_items()
        elif status != Status.OPTIMAL and names:
            # a certificate of infeasibility, from the direction the prices ran off to or
            # from each budget alone (which also names the items that alone exceed one);
            # without one the search has failed
            certified = status == Status.INFEASIBLE or (np.any(prices > 0)
                                                         and search.short(prices))
            certified = any([search.short(d) for d in np.eye(len(names))]) or certified
            status = Status.INFEASIBLE if certified else Status.NOT_CONVERGED
            unreachable = search.named
    # the plans at the prices found (differentiable in the data when it is traced)
    prices_j = jnp.asarray(prices, dtype)
    if traced:
        prices_j = _implicit_prices(objective, names, active, data, capacity, prices_j, solver,
                                    sums)
        final, plans = _evaluate(objective, names, False, data, prices_j, solver)
        search.solves += 2
    else:
        final, plans = search.result(prices)
        final = jax.tree.map(jnp.asarray, final)
    plans = _mark(plans, jnp.asarray(unreachable), Status.INFEASIBLE)
    plans = _mark(plans, ~jnp.asarray(np.asarray(frozen.valid) | unreachable),
                  Status.INVALID_INPUT)
    cap_j = jnp.stack([capacity[b] for b in names]) if names else jnp.zeros((0,), dtype)
    excess = (final.usage - cap_j) / cap_j
    priced = jnp.asarray([b in active for b in range(len(names))], bool)
    residual = jnp.max(jnp.where(priced, jnp.abs(excess), jnp.maximum(excess, 0.0)),
                       initial=0.0)
    value = final.value
    gap = jnp.abs(jnp.sum(prices_j * (final.usage - cap_j))) / jnp.maximum(
        jnp.abs(final.dual), jnp.finfo(dtype).tiny)
    if status == Status.OPTIMAL and not (float(jax.lax.stop_gradient(residual)) <= tol
                                         and int(jax.lax.stop_gradient(final.bad)) == 0):
        status = Status.NOT_CONVERGED
    return Portfolio(
        plans=plans, status=jnp.asarray(status), objective=value,
        prices={b: prices_j[k] for k, b in enumerate(names)},
        usage={b: final.usage[k] for k, b in enumerate(names)},
        train_flops=final.train, inference_flops=final.inference, residual=residual,
        kkt=final.kkt, gap=gap, shared={}, solves=search.solves,
    )


def _mark(plans: Plan, rows: Array, status: Status) -> Plan:
    """`plans` with `rows` given `status` and, like every plan that is not optimal, no
    numbers (NaN)."""
    def blank(v):
        return jnp.where(rows.reshape(rows.shape + (1,) * (v.ndim - 1)), jnp.nan, v)

    plans = eqx.tree_at(lambda p: (p.allocation, p.outcome, p.inference_flops, p.total_flops),
                        plans, jax.tree.map(blank, (plans.allocation, plans.outcome,
                                                    plans.inference_flops, plans.total_flops)))
    return eqx.tree_at(lambda p: p.status, plans, jnp.where(rows, status, plans.status))


def _implicit_prices(objective, names, active, data, capacity, prices, solver,
                     sums) -> Array:
    """The prices found, as a function of the (traced) data: the implicit function theorem on
    the active budgets' equations $\\log S_b(e^u; \\theta) = \\log C_b$, with the Jacobian of
    the search's last Newton iterate (its value is unchanged)."""
    if not active:
        return prices
    index = jnp.asarray(active, jnp.int32)
    frozen = jax.lax.stop_gradient(prices)
    cap = jnp.stack([capacity[names[b]] for b in active])

    def equations(u):
        p = frozen.at[index].set(jnp.exp(u))
        s, _ = _evaluate(objective, names, False, data, p, solver)
        return jnp.log(s.usage[index]) - jnp.log(cap)

    u = jnp.log(frozen[index])
    rows = list(active)
    jac = jnp.asarray(sums.jacobian[np.ix_(rows, rows)] / sums.usage[rows][:, None],
                      prices.dtype)
    correction = -jnp.linalg.solve(jac, equations(u))
    u = u + correction - jax.lax.stop_gradient(correction)
    return frozen.at[index].set(jnp.exp(u))


def _dual(objective, names, solver, items: _Items, cap: Array, u: Array) -> Array:
    """The dual function $q(e^u)$ in log prices; its gradient (`jax.grad`) is Danskin's, the
    budgets' excess, with no derivative of the items' solves."""
    p = jnp.exp(u)
    sums, _ = _evaluate(objective, names, False, items, jax.lax.stop_gradient(p), solver)
    usage = jax.lax.stop_gradient(sums.usage)
    return (jax.lax.stop_gradient(sums.dual) + jnp.sum((p - jax.lax.stop_gradient(p)) * usage)
            - jnp.sum(p * cap))


def _dual_step(objective, names, solver, optimizer, items: _Items, cap: Array, scale: Array,
               u: Array, state):
    """One step of `optimizer` on the negated dual, scaled by `scale` (`optax_step`)."""
    import optax  # here, not at the top: `planner solve` never loads it

    def value_fn(v):
        return -_dual(objective, names, solver, items, cap, v) / scale

    return optax_step(optax.with_extra_args_support(optimizer), value_fn, u, state)


# compiled once per problem structure and optimizer object (the data are arguments)
_dual_jit = eqx.filter_jit(_dual)
_dual_step_jit = eqx.filter_jit(_dual_step)


def _dual_phase(objective, names, cap, items, solver, optimizer, steps, start,
                search) -> tuple[np.ndarray, set[int]]:
    """`steps` of an optax transformation minimising the negated dual $-q(e^u)$ in log prices
    (`_dual`). Returns the prices reached and the budgets they leave binding."""
    import optax  # here, not at the top: `planner solve` never loads it

    cap_j = jnp.asarray(cap, items.weight.dtype)
    u = jnp.log(jnp.asarray(start, items.weight.dtype))
    scale = jnp.abs(_dual_jit(objective, names, solver, items, cap_j, u))
    state = optax_init(optax.with_extra_args_support(optimizer), u)
    for k in range(steps):
        u, state, _, _ = _dual_step_jit(objective, names, solver, optimizer, items, cap_j,
                                        scale, u, state)
        search.solves += 1
        if search.progress is not None:
            shown = ", ".join(f"{name} {p:.4g}" for name, p in zip(names, np.exp(np.asarray(u)),
                                                                     strict=True))
            search.progress(f"dual step {k + 1} ({search.solves} batched solves): {shown}")
    prices = np.exp(np.asarray(u))
    sums = search(prices)
    binding = {b for b in range(len(names)) if sums.usage[b] >= cap[b] * (1.0 - 1e-3)}
    return prices, binding


def _least_usage(resources: tuple[str, ...], coefs: Array, items: _Items,
                 solver: Solver) -> Array:
    """Each item's least $\\sum_r c_r\\,\\text{resource}_r$ that still meets its own targets."""
    def one(model, scenario):
        costs = Costs(**dict(zip(resources, coefs, strict=True)))
        plan = solve(model, scenario, objective=costs, solver=solver, throw=False)
        res = _resources(plan, scenario)
        return sum(c * res[r] for r, c in zip(resources, coefs, strict=True))

    return jax.vmap(one, in_axes=(_model_axes(items.model), 0))(items.model, items.scenario)


_least_usage_jit = eqx.filter_jit(_least_usage)


def _least_usage_sharded(resources: tuple[str, ...], coefs: Array, items: _Items,
                         solver: Solver, mesh: jax.sharding.Mesh) -> Array:
    """`_least_usage` with the items split over the devices of `mesh` (no collective)."""
    dynamic, specs, static = _split(items)

    def local(dynamic, coefs):
        return _least_usage(resources, coefs, eqx.combine(dynamic, static), solver)

    return jax.shard_map(local, mesh=mesh, in_specs=(specs, _WHOLE), out_specs=_ROWS,
                         check_vma=False)(dynamic, coefs)


_least_usage_sharded_jit = eqx.filter_jit(_least_usage_sharded)


def _allocate_shared(objective, names, capacity, data: _Items, shared, solver, optimizer,
                     steps, tol, progress, infeasible) -> Portfolio:
    """One model, trained once, serves every item: its training variables $\\theta$ are outer
    variables, the items keep the others. The reduced objective
    $\\Phi(\\theta) = TC(\\theta) + \\sum_i w_i \\min_{x_i} T_i IC_i(x_i; \\theta)$ (each item's
    targets met) is minimised in $\\log\\theta$ by an optax transformation (`optax.lbfgs()` by
    default), its gradient exact by implicit differentiation through every item's solve (the
    envelope theorem: the items' multipliers price $\\theta$)."""
    dtype = data.weight.dtype
    valid = np.asarray(data.valid & ~infeasible)
    if not valid.any():
        raise ValueError("no valid item to plan a shared model for")
    first = int(np.argmax(valid))
    probe = jax.tree.map(lambda v: v[first] if jnp.ndim(v) >= 1 else v, data.model)
    data = eqx.tree_at(lambda t: t.valid, data, jnp.asarray(valid))

    def plans_at(u):
        fixed = {name: u[j] for j, name in enumerate(shared)}
        items = _Items(model=data.model, scenario=data.scenario, weight=data.weight,
                       valid=data.valid, fixed=fixed)
        return _item_plans(objective, (), items, jnp.zeros((0,), dtype), solver)

    def train_at(u):
        values = dict(zip(shared, jnp.exp(u), strict=True))
        return probe(Allocation(**values)).train_flops

    def reduced(u):
        plans = plans_at(u)
        res = _resources(plans, data.scenario)
        infer = jnp.sum(jnp.where(data.valid, data.weight * res["inference_flops"], 0.0))
        return train_at(u) + infer, plans

    # the start: each item's own optimum, their weighted geometric mean
    alone = eqx.filter_jit(lambda d: _item_plans(objective, (), d, jnp.zeros((0,), dtype),
                                                 solver))(data)
    ok = valid & (np.asarray(alone.status) == Status.OPTIMAL)
    if not ok.any():
        ok = valid
    w = np.where(ok, np.asarray(data.weight), 0.0)
    u0 = np.array([np.sum(w * np.log(np.asarray(getattr(alone.iterate, name)))) / w.sum()
                   for name in shared])
    u = jnp.asarray(u0, dtype)
    # one compiled program: the reduced objective, its gradient and the items' plans
    evaluate = jax.jit(jax.value_and_grad(reduced, has_aux=True))
    (value, plans), grad = evaluate(u)
    scale = abs(float(value))

    def value_and_grad(u):
        (value, _), grad = evaluate(u)
        return value / scale, grad / scale

    def value_fn(u):
        return reduced(u)[0] / scale

    def report(k, value, largest):
        if progress is not None:
            progress(f"shared model step {k}: objective {value * scale:.12g}, "
                     f"reduced gradient {largest:.3g}")

    u, evaluations = descend(value_and_grad, value_fn, u, optimizer=optimizer, steps=steps,
                             tol=_GRADIENT_TOL * tol, report=report)
    solves = 1 + evaluations
    (total, plans), grad = evaluate(u)
    grad = grad / scale
    solves += 1
    kkt_items = jnp.maximum(jnp.maximum(plans.stationarity, plans.feasibility),
                            plans.complementarity)
    kkt_items = jnp.max(jnp.where(data.valid, kkt_items, 0.0), initial=0.0)
    reduced_grad = jnp.max(jnp.abs(grad))
    bad = int(np.sum(valid & (np.asarray(plans.status) != Status.OPTIMAL)))
    status = (Status.INFEASIBLE if bool(np.any(np.asarray(infeasible & data.valid)))
              else Status.OPTIMAL if bad == 0 and float(reduced_grad) <= _GRADIENT_TOL * tol
              else Status.NOT_CONVERGED)
    res = _resources(plans, data.scenario)
    train = train_at(u)
    plans = _mark(plans, ~jnp.asarray(valid), Status.INVALID_INPUT)
    zero = jnp.zeros((), dtype)
    return Portfolio(
        plans=plans, status=jnp.asarray(status), objective=total, prices={}, usage={},
        train_flops=train,
        inference_flops=jnp.sum(jnp.where(data.valid, res["inference_flops"], 0.0)),
        residual=zero, kkt=jnp.maximum(kkt_items, reduced_grad), gap=zero,
        shared={name: jnp.exp(u[j]) for j, name in enumerate(shared)}, solves=solves)
