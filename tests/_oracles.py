"""Independent oracles for the allocation solver, written without `planner`.

- `lifetime_reduction` / `lifetime_reduction_mp`: Sardana et al. (2024)'s one-equation reduction
  of the lifetime problem $\\min 6ND + 2NT$ s.t. $L(N, D) = \\ell$ ("Beyond
  Chinchilla-Optimal"): stationarity
  gives $(B + \\beta B/\\alpha)D^{-\\beta} + (\\beta B T/(3\\alpha))D^{-\\beta-1} + E - \\ell = 0$,
  solved for $D$ by SciPy's `brentq` (float64) or mpmath's `findroot` (40 digits), then $N$
  from the loss constraint.
- `LifetimeGP`, `LossGP`: the same problems as cvxpy geometric programs
  (`Problem.solve(gp=True)`), solved by Clarabel with tolerances tightened to 1e-14.

Notes on the GP oracles, measured (cvxpy 1.9, Clarabel 0.11):

- Clarabel's defaults stop near 1e-4 relative in $N$ and $D$. At 1e-14 it reaches a duality gap
  of about 1e-11 in the logarithm of the objective, where it often stops as "almost solved"
  (cvxpy: `optimal_inaccurate`). The objective is flat at its optimum, so a gap of 1e-11 still
  leaves up to ~1e-5 relative in $N$ and $D$ (the total FLOP stays within ~1e-9). A solve that
  ends `optimal` agreed with the root-finding oracle to 2e-10 in $N$ and $D$ on every one of
  thousands of scenarios tried, so only those are *certified*. An uncertified chunk is
  re-solved in other scalings of its variables (`_SCALINGS`), then each of its scenarios alone
  in every scaling until one is certified; a scenario none certifies is flagged (certified 0).
- A cvxpy solve costs milliseconds of Python per call, so scenarios go `chunk` at a time into
  one program whose objective is the *product* of theirs: in the log variables a GP is solved
  in, that is the sum of their logarithms, so each keeps its own optimum. The problems are
  built once (cvxpy `Parameter`s, DPP) and re-solved.
- Each scenario is solved in scaled variables $n = N/N_r$, $d = D/D_r$ (from a closed-form
  training optimum), so that its numbers are of order one.
"""

from __future__ import annotations

import math
import warnings

import cvxpy as cp
import mpmath
import numpy as np
from scipy import optimize

CLARABEL = dict(
    solver="CLARABEL",
    tol_gap_abs=1e-14,
    tol_gap_rel=1e-14,
    tol_feas=1e-14,
    tol_ktratio=1e-8,
    static_regularization_constant=1e-12,
    max_iter=500,
)
"""Clarabel settings for the GP oracles (see the module notes for what they reach)."""

BIG = 1e30
"""A cap that never binds."""

_SCALINGS = tuple(
    (kn, kd) for kn in (1.0, 1.7, 0.6, 3.0, 0.35, 6.0, 0.15) for kd in (1.0, 0.6, 1.7, 0.3, 3.0)
)
"""Rescalings $(N_r, D_r) \\to (\\kappa_N N_r, \\kappa_D D_r)$ tried, in order, on an
uncertified scenario."""


def lifetime_reduction(coefs, target_loss: float, demand: float) -> tuple[float, float]:
    """`(N*, D*)` of the lifetime problem by `brentq` on the reduction in $\\log D$ (float64)."""
    E, A, B, a, b = (float(c) for c in coefs)
    gap = target_loss - E
    c0, c1 = B + b * B / a, b * B * demand / (3.0 * a)

    def h(y):
        return c0 * math.exp(-b * y) + c1 * math.exp(-(b + 1.0) * y) - gap

    # h decreases in y; at y = log D_c (the T = 0 root) it is >= 0, so just below it > 0.
    lo = math.log(c0 / gap) / b - 1e-9
    hi = lo + 1.0
    while h(hi) > 0:
        hi += 10.0
    y = optimize.brentq(h, lo, hi, xtol=1e-15, rtol=1e-15, maxiter=500)
    d = math.exp(y)
    n = (A / (gap - B * d ** (-b))) ** (1.0 / a)
    return n, d


def lifetime_reduction_mp(coefs, target_loss, demand, dps: int = 40):
    """`(N*, D*, total FLOP)` of the lifetime problem to `dps` digits (mpmath).

    Every argument may be an mpmath number, so `mpmath.diff` of this function gives
    derivatives to about `dps / 2` digits.
    """
    with mpmath.workdps(dps):
        E, A, B, a, b = (mpmath.mpf(c) for c in coefs)
        ell, t = mpmath.mpf(target_loss), mpmath.mpf(demand)
        gap = ell - E
        c0, c1 = B + b * B / a, b * B * t / (3 * a)
        y0 = mpmath.log(c0 / gap) / b

        def h(y):
            return c0 * mpmath.exp(-b * y) + c1 * mpmath.exp(-(b + 1) * y) - gap

        hi = y0 + 1
        while h(hi) > 0:
            hi += 10
        y = mpmath.findroot(h, (y0, hi), solver="anderson") if t > 0 else y0
        y = mpmath.findroot(h, y)  # polish by Newton
        d = mpmath.exp(y)
        n = (A / (gap - B * d ** (-b))) ** (1 / a)
        return n, d, 6 * n * d + 2 * n * t


class _BatchedGP:
    """A GP in scaled variables $n, d$ (one pair per scenario), solved `chunk` scenarios at a
    time with certification and retries (see the module notes).

    Subclasses define `_build(size) -> (problem, n, d, params, dual_constraint)` and
    `_values(kappa, rows) -> (param values, N_r, D_r)`.
    """

    def __init__(self, chunk: int):
        self.chunk = chunk
        self._problems = {chunk: self._build(chunk), 1: self._build(1)}

    def _run(self, size: int, rows: np.ndarray, scaling: tuple[float, float]):
        problem, n, d, params, dual = self._problems[size]
        values, n_r, d_r = self._values(scaling, rows)
        for param, value in zip(params, values, strict=True):
            # padding repeats the first scenario
            param.value = np.concatenate([value, np.full(size - rows.size, value[0])])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                problem.solve(gp=True, **CLARABEL)
            except cp.SolverError:
                return None
        if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
            return None
        k = rows.size
        lam = -np.atleast_1d(dual.dual_value)[:k] if dual is not None else np.zeros(k)
        return (n.value[:k] * n_r, d.value[:k] * d_r, lam, problem.status == cp.OPTIMAL)

    def _solve_all(self, size: int) -> np.ndarray:
        """Rows `N, D, dual, certified` (as 0/1), one column per scenario."""
        out = np.full((4, size), np.nan)
        out[3] = 0.0
        for start in range(0, size, self.chunk):
            rows = np.arange(start, min(start + self.chunk, size))
            for scaling in _SCALINGS[:4]:
                res = self._run(self.chunk, rows, scaling)
                if res is not None and (res[3] or np.isnan(out[0, rows[0]])):
                    out[:3, rows] = res[:3]
                    out[3, rows] = res[3]
                if out[3, rows[0]]:
                    break
        for i in np.flatnonzero(out[3] == 0):
            for scaling in _SCALINGS:
                res = self._run(1, np.array([i]), scaling)
                if res is not None and (res[3] or np.isnan(out[0, i])):
                    out[:3, i] = [r[0] for r in res[:3]]
                    out[3, i] = res[3]
                if out[3, i]:
                    break
        if np.any(np.isnan(out[0])):
            raise RuntimeError("cvxpy oracle: a scenario failed in every scaling")
        return out


class LifetimeGP(_BatchedGP):
    """$\\min 6ND + 2NT$ s.t. $AN^{-\\alpha} + BD^{-\\beta} \\le \\ell - E$ (and, with `caps`,
    $N \\le N_{cap}$, $D \\le D_{cap}$, $2N \\le IC_{cap}$): a cvxpy GP for one law, batched
    over scenarios with $T > 0$.

    Scaled by the training optimum $N_r, D_r$ of the target (times $\\kappa_N$, $\\kappa_D$):
    $\\min nd + \\tau n$, $\\tau = T/(3D_r)$, s.t. $k_N n^{-\\alpha} + k_D d^{-\\beta} \\le 1$,
    $k_N = AN_r^{-\\alpha}/(\\ell - E)$, $k_D = BD_r^{-\\beta}/(\\ell - E)$, caps divided by the
    scales.
    """

    def __init__(self, coefs, *, caps: bool = False, chunk: int = 10):
        _, self.A, self.B, self.a, self.b = (float(c) for c in coefs)
        self.caps = caps
        super().__init__(chunk)

    def _build(self, size):
        n, d = cp.Variable(size, pos=True), cp.Variable(size, pos=True)
        tau, k_n, k_d, max_n, max_d = (cp.Parameter(size, pos=True) for _ in range(5))
        total = cp.multiply(n, d) + cp.multiply(tau, n)
        loss = cp.multiply(k_n, n ** (-self.a)) + cp.multiply(k_d, d ** (-self.b)) <= 1.0
        constraints = [loss] + ([n <= max_n, d <= max_d] if self.caps else [])
        params = (tau, k_n, k_d, max_n, max_d) if self.caps else (tau, k_n, k_d)
        return cp.Problem(cp.Minimize(cp.prod(total)), constraints), n, d, params, loss

    def _values(self, scaling, rows):
        A, B, a, b = self.A, self.B, self.a, self.b
        gap = self._gap[rows]
        n_r = scaling[0] * (A * (1.0 + a / b) / gap) ** (1.0 / a)
        d_r = scaling[1] * (B * (1.0 + b / a) / gap) ** (1.0 / b)
        values = [self._demand[rows] / (3.0 * d_r), A * n_r ** (-a) / gap, B * d_r ** (-b) / gap]
        if self.caps:
            values += [self._max_n[rows] / n_r, self._max_d[rows] / d_r]
        return values, n_r, d_r

    def solve(self, gap, demand, max_params=None, max_tokens=None, max_inference=None):
        """Rows `N*, D*, total, d log total / d log gap, certified` (one column per scenario).

        The fourth row is the dual of the loss constraint, negated (envelope theorem); the
        last is 1 where Clarabel certified the solve `optimal`, else 0. Caps need `caps=True`.
        """
        if not self.caps and any(c is not None for c in (max_params, max_tokens, max_inference)):
            raise ValueError("build LifetimeGP(caps=True) to impose caps")
        self._gap, self._demand = np.asarray(gap, float), np.asarray(demand, float)
        size = self._gap.size
        self._max_n = np.full(size, BIG)
        if max_params is not None:
            self._max_n = np.minimum(self._max_n, np.asarray(max_params, float))
        if max_inference is not None:
            self._max_n = np.minimum(self._max_n, np.asarray(max_inference, float) / 2.0)
        self._max_d = np.full(size, BIG) if max_tokens is None else np.asarray(max_tokens, float)
        n, d, lam, certified = self._solve_all(size)
        total = 6.0 * n * d + 2.0 * n * self._demand
        return np.stack([n, d, total, lam, certified])


class LossGP(_BatchedGP):
    """$\\min AN^{-\\alpha} + BD^{-\\beta}$ s.t. $6ND \\le C$, $2NT \\le I$: the best loss
    within a training and a lifetime inference budget, as a cvxpy GP batched over scenarios.

    Scaled like `LifetimeGP`, by the training optimum $N_r, D_r$ of the budget $C$:
    $\\min k_N n^{-\\alpha} + k_D d^{-\\beta}$ s.t. $nd \\le 6N_rD_r/C$,
    $n \\le I/(2TN_r)$.
    """

    def __init__(self, coefs, chunk: int = 10):
        _, self.A, self.B, self.a, self.b = (float(c) for c in coefs)
        super().__init__(chunk)

    def _build(self, size):
        n, d = cp.Variable(size, pos=True), cp.Variable(size, pos=True)
        k_n, k_d, max_nd, max_n = (cp.Parameter(size, pos=True) for _ in range(4))
        reducible = cp.multiply(k_n, n ** (-self.a)) + cp.multiply(k_d, d ** (-self.b))
        problem = cp.Problem(
            cp.Minimize(cp.prod(reducible)), [cp.multiply(n, d) <= max_nd, n <= max_n]
        )
        return problem, n, d, (k_n, k_d, max_nd, max_n), None

    def _values(self, scaling, rows):
        A, B, a, b = self.A, self.B, self.a, self.b
        c = self._budget[rows]
        g = (a * A / (b * B)) ** (1.0 / (a + b))
        n_r = scaling[0] * g * (c / 6.0) ** (b / (a + b))
        d_r = scaling[1] * (c / 6.0) ** (a / (a + b)) / g
        values = [
            A * n_r ** (-a),
            B * d_r ** (-b),
            c / (6.0 * n_r * d_r),
            self._per_token[rows] / (2.0 * n_r),
        ]
        return values, n_r, d_r

    def solve(self, train_budget, inference_budget, demand):
        """Rows `N*, D*, certified` (one column per scenario)."""
        self._budget = np.asarray(train_budget, float)
        self._per_token = np.asarray(inference_budget, float) / np.asarray(demand, float)
        n, d, _, certified = self._solve_all(self._budget.size)
        return np.stack([n, d, certified])


def portfolio_gp(coefs, weight, demand, *, objective: str, target=None, train_budget=None,
                 inference_budget=None) -> dict:
    """A portfolio of items coupled by shared budgets, as one geometric program for cvxpy.

    Items $i$ with laws $L_i = E_i + A_iN_i^{-\\alpha_i} + B_iD_i^{-\\beta_i}$ (rows of `coefs`:
    E, A, B, alpha, beta), weights $w_i$ and lifetime demands $T_i$ (tokens):

    - `objective="compute"`: $\\min \\sum_i w_i(6N_iD_i + 2N_iT_i)$ s.t. $L_i \\le \\ell_i$;
    - `objective="loss"`: $\\min \\sum_i w_iL_i$;

    both s.t. $\\sum_i 6N_iD_i \\le C_{train}$ and $\\sum_i 2N_iT_i \\le C_{inf}$ where given.
    The GP is written in its convex form (Boyd, Kim, Vandenberghe & Hassibi 2007, §2.5): log
    variables $x_i = \\log(N_i/N_{r,i})$, $y_i = \\log(D_i/D_{r,i})$ scaled by each item's
    Chinchilla training optimum (for its target, or for an equal share of the training
    budget), each posynomial as the log-sum-exp of its monomials' logarithms, the objective
    divided by its value at the reference point. (`Problem.solve(gp=True)` builds the same
    program, but expands the 300-item sums element by element: 16 s of canonicalisation.)
    Solved by Clarabel at the tolerances of `CLARABEL`. Returns N, D (per item), the
    objective, the budgets' prices (the duals of the log budget constraints are
    $-\\partial\\log(\\text{optimum})/\\partial\\log C$, turned into objective units per FLOP)
    and whether Clarabel certified the solve `optimal`.
    """
    coefs = np.asarray(coefs, float)
    E, A, B, a, b = coefs.T
    w, T = np.asarray(weight, float), np.asarray(demand, float)
    k = E.size
    g = (a * A / (b * B)) ** (1.0 / (a + b))
    if target is not None:
        gap = np.asarray(target, float) - E
        n_r = (A * (1.0 + a / b) / gap) ** (1.0 / a)
        d_r = (B * (1.0 + b / a) / gap) ** (1.0 / b)
    else:
        c = np.full(k, float(train_budget) / k)
        n_r = g * (c / 6.0) ** (b / (a + b))
        d_r = (c / 6.0) ** (a / (a + b)) / g
    x, y = cp.Variable(k), cp.Variable(k)
    constraints, budgets = [], {}
    if target is not None:
        terms = cp.vstack([np.log(A * n_r ** (-a) / gap) - cp.multiply(a, x),
                           np.log(B * d_r ** (-b) / gap) - cp.multiply(b, y)])
        constraints.append(cp.log_sum_exp(terms, axis=0) <= 0.0)
    if objective == "compute":
        logs = (np.log(w * 6.0 * n_r * d_r), np.log(w * 2.0 * n_r * T))
        monomials = (logs[0] + x + y, logs[1] + x)
        offset = 0.0
    else:
        logs = (np.log(w * A * n_r ** (-a)), np.log(w * B * d_r ** (-b)))
        monomials = (logs[0] - cp.multiply(a, x), logs[1] - cp.multiply(b, y))
        offset = float(np.sum(w * E))
    # the log objective at the reference point, taken out so the program's value is O(1)
    shift = float(np.log(np.sum(np.exp(logs[0])) + np.sum(np.exp(logs[1]))))
    log_value = cp.log_sum_exp(cp.hstack(monomials))
    uses = {"train_budget": (np.log(6.0 * n_r * d_r) + x + y, train_budget),
            "inference_budget": (np.log(2.0 * n_r * T) + x, inference_budget)}
    for name, (log_use, cap) in uses.items():
        if cap is not None:
            budgets[name] = cp.log_sum_exp(log_use) <= float(np.log(cap))
            constraints.append(budgets[name])
    problem = cp.Problem(cp.Minimize(log_value - shift), constraints)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        problem.solve(**CLARABEL)
    if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        return {"status": problem.status}
    optimum = float(np.exp(problem.value + shift))
    prices = {name: float(c.dual_value) * optimum / float(uses[name][1])
              for name, c in budgets.items()}
    used = {name: float(np.sum(np.exp(uses[name][0].value))) for name in budgets}
    slack = [name for name in budgets if used[name] < (1.0 - 1e-6) * float(uses[name][1])]
    if slack:
        # A slack budget leaves Clarabel inaccurate (1e-4 in N); a convex program's optimum
        # is unchanged by dropping a constraint its solution without it still meets.
        kept = {name: (uses[name][1] if name not in slack else None) for name in uses}
        reduced = portfolio_gp(coefs, weight, demand, objective=objective, target=target,
                               **kept)
        N, D = reduced["N"], reduced["D"]
        if (np.sum(6.0 * N * D) <= (train_budget or np.inf)
                and np.sum(2.0 * N * T) <= (inference_budget or np.inf)):
            return {**reduced, "prices": {**reduced["prices"],
                                          **{name: 0.0 for name in slack}}}
    return {"status": problem.status, "certified": problem.status == cp.OPTIMAL,
            "N": np.exp(x.value) * n_r, "D": np.exp(y.value) * d_r,
            "objective": optimum + offset, "prices": prices}


_KV_ASPECT = 128.0  # KVCache's width over depth


def _kv_coefficient(groups: float) -> float:
    """KV-cache bytes per token per N^(2/3): `KVCache`'s convention (N = 12 L d^2, d/L = 128,
    2-byte entries, `groups` query heads per KV head)."""
    return 2 * _KV_ASPECT * 2.0 / groups * (1 / (12 * _KV_ASPECT**2)) ** (2 / 3)


def _train_dollars_per_flop(row: dict) -> float:
    """Training at MFU 0.5 (`tests/test_serving.py::_model`'s training hardware)."""
    return row["train_price"] / (3600 * row["train_peak"] * 0.5)


def dollar_gp(rows: list[dict], law, *, train_budget: float | None = None,
              flop_price: float = 0.0, weight=None) -> dict | None:
    """Serving in dollars as one cvxpy geometric program: items served by `Deployment` stages
    (rows as made by `tests/test_serving.py::_scenarios`: hardware, prices, prompt and context,
    devices, grouped-query factor, latency SLO, memory), each at its loss target, minimising
    the weighted sum of their lifetime dollars, plus `flop_price` per training FLOP, with the
    items' total training FLOP at most `train_budget` if given. Each item is its scaled
    (N, D, b, t): the roofline's max is two posynomial constraints (memory-bound and
    compute-bound step time) and the memory a third. One row is the single-plan problem.

    **Returns:** `None` where Clarabel says infeasible; else its status, the optimum's dollars
    (the objective without the FLOP price), the budget's price in dollars per FLOP, and each
    item's `n`, `d`, `b`, `t` as arrays.
    """
    e, a_law, b_law = float(law.E), float(law.A), float(law.B)
    alpha, beta = float(law.alpha), float(law.beta)
    weight = np.ones(len(rows)) if weight is None else np.asarray(weight, float)
    dollars, constraints, train, found = 0, [], 0, []
    for w_i, row in zip(weight, rows, strict=True):
        g, bw_dev, m = row["devices"], row["bandwidth"], row["memory"]
        bw, c, tau = row["bytes"], row["context"], row["latency"]
        kappa = _kv_coefficient(row["groups"])  # bytes/token = kappa N^(2/3)
        gap = row["target_loss"] - e
        nr = (a_law * (1 + alpha / beta) / gap) ** (1 / alpha)  # scales: variables near 1
        dr = (b_law * (1 + beta / alpha) / gap) ** (1 / beta)
        tr = nr * bw / (g * bw_dev)
        n, d, b, t = (cp.Variable(pos=True) for _ in range(4))
        train_cost = _train_dollars_per_flop(row)
        prefill = row["price"] / (3600 * row["peak"] * row["mfu"])
        item = (train_cost * 6 * nr * dr * n * d
                + row["demand"] * g * row["price"] / 3600 * row["tokens_per_query"] * tr * t / b)
        if row["prompt"] > 0:
            item = item + row["demand"] * prefill * 2 * nr * row["prompt"] * n
        dollars = dollars + w_i * item
        read = nr * n * bw + b * c * kappa * nr ** (2 / 3) * n ** (2 / 3) if c > 0 else nr * n * bw
        constraints += [
            a_law * nr**-alpha * n**-alpha / gap + b_law * dr**-beta * d**-beta / gap <= 1,
            read / (g * bw_dev * tr * t) <= 1,
            2 * nr * n * b / (g * row["peak"] * row["mfu"] * tr * t) <= 1,
            tr * t / tau <= 1,
            read / (g * m) <= 1,
            1 / b <= 1,
        ]
        train = train + 6 * nr * dr * n * d
        found.append((nr * n, dr * d, b, tr * t))
    objective = dollars + flop_price * train if flop_price > 0 else dollars
    if train_budget is not None:
        constraints.append(train / train_budget <= 1)
    problem = cp.Problem(cp.Minimize(objective), constraints)
    problem.solve(gp=True, **CLARABEL)
    if problem.status in ("infeasible", "infeasible_inaccurate"):
        return None
    # a GP's dual of a constraint `h <= 1` is d log(optimum) / d log(bound)
    price = (constraints[-1].dual_value * problem.value / train_budget
             if train_budget is not None else 0.0)
    values = {k: np.array([v[j].value for v in found]) for j, k in enumerate("ndbt")}
    return {"status": problem.status, "dollars": float(dollars.value), "price": price,
            **values}


def dollar_item_optimum(row: dict, law, flop_price: float = 0.0) -> dict:
    """The single-plan dollar problem of `dollar_gp` (one row), reduced to one variable and
    minimised by SciPy: at a model size N the loss target gives D, and the cheapest decode
    token is at the largest batch the memory and the latency SLO allow (per-token time over
    batch falls as the batch grows), so the dollars are a function of log N alone, unimodal
    (the partial minimum of a geometric program), minimised by bounded Brent to 1e-12 in
    log N (two searches, the second in a window about the first). `flop_price` adds that many
    dollars per training FLOP.

    **Returns:** `n`, `d`, `dollars` (without the FLOP price), `train_flops` and `per_token`,
    the seconds of one decode step per sequence in it.
    """
    e, a_law, b_law = float(law.E), float(law.A), float(law.B)
    alpha, beta = float(law.alpha), float(law.beta)
    g, w, m = row["devices"], row["bandwidth"], row["memory"]
    bw, c, tau = row["bytes"], row["context"], row["latency"]
    peak = row["peak"] * row["mfu"]
    kappa = _kv_coefficient(row["groups"])
    gap = row["target_loss"] - e
    train_cost = _train_dollars_per_flop(row)
    decode = row["demand"] * row["tokens_per_query"] * g * row["price"] / 3600
    prefill = row["demand"] * row["prompt"] * 2 * row["price"] / (3600 * row["peak"]
                                                                    * row["mfu"])

    def largest_batch(n):
        cache = c * kappa * n ** (2 / 3)  # bytes per sequence in the batch
        bounds = [tau * g * peak / (2 * n)]  # compute-bound step within the SLO
        if c > 0:
            bounds += [(g * m - n * bw) / cache, (tau * g * w - n * bw) / cache]
        elif n * bw > min(g * m, tau * g * w):
            return 0.0
        return min(bounds)

    def model_term(n):  # the loss's parameter term, A / N^alpha
        return a_law / n**alpha

    def plan(log_n):
        n = math.exp(log_n)
        d = (b_law / (gap - model_term(n))) ** (1 / beta)
        batch = largest_batch(n)
        per_token = max((n * bw / batch + c * kappa * n ** (2 / 3)) / (g * w),
                        2 * n / (g * peak))
        dollars = train_cost * 6 * n * d + decode * per_token + prefill * n
        return n, d, dollars, per_token

    low = math.log((a_law / gap) ** (1 / alpha)) + 1e-9  # the target needs N above this
    high = optimize.brentq(lambda x: largest_batch(math.exp(x)) - 1.0, low, low + 30,
                           xtol=1e-14) if largest_batch(math.exp(low + 30)) < 1 else low + 30
    def cost(x):
        n, d, dollars, _ = plan(x)
        return dollars + flop_price * 6 * n * d

    # Brent's bounded search stops within sqrt(eps) |x| of the minimum (4e-7 at log N = 24):
    # a second search in a window about the first, in the offset from its centre, is exact to
    # 1e-12 in log N
    x = optimize.minimize_scalar(cost, bounds=(low, high), method="bounded",
                                 options={"xatol": 1e-10, "maxiter": 2000}).x
    window = (max(low, x - 1e-4) - x, min(high, x + 1e-4) - x)
    x = x + optimize.minimize_scalar(lambda y: cost(x + y), bounds=window, method="bounded",
                                     options={"xatol": 1e-12, "maxiter": 2000}).x
    n, d, dollars, per_token = plan(x)
    return {"n": n, "d": d, "dollars": dollars, "train_flops": 6 * n * d,
            "per_token": per_token}


def dollar_portfolio_optimum(rows: list[dict], law, train_budget: float) -> dict:
    """A portfolio of `dollar_item_optimum` items under one training-FLOP budget, by its dual:
    the price per FLOP at which the items' own optima use exactly the budget (Brent's root in
    log price), and the items' plans there.

    **Returns:** `price`, `dollars` (the sum), and `n`, `d` as arrays.
    """
    def used(log_price):
        price = math.exp(log_price)
        return sum(dollar_item_optimum(r, law, price)["train_flops"] for r in rows)

    log_price = optimize.brentq(lambda u: math.log(used(u) / train_budget), -120.0, 0.0,
                                xtol=1e-13, rtol=1e-15)
    price = math.exp(log_price)
    plans = [dollar_item_optimum(r, law, price) for r in rows]
    return {"price": price, "dollars": sum(p["dollars"] for p in plans),
            "n": np.array([p["n"] for p in plans]), "d": np.array([p["d"] for p in plans])}
