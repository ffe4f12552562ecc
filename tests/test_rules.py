"""One table of field rules (`planner._rules`), the same verdict on every path.

Each case below is typed here from the documented domains (README, `Scenario`), not read from
the table: a value and whether it is accepted. Every path must agree with it and with the
others: `solve(..., throw=True)` eagerly and under `jit` (the rule's message), `solve(...,
throw=False)` (the rule's status, NaN plan values), a scenario table's row (the same status, a
message naming the column, the row and the rule's words) and `planner solve` on a file (exit
code and message).
"""

import csv
import math

import equinox as eqx
import jax
import numpy as np
import pytest

from planner import (
    Chinchilla,
    Deployment,
    Hardware,
    Pipeline,
    Pretraining,
    Pruning,
    RepeatedSampling,
    Scenario,
    Status,
    SuccessLink,
    solve,
)
from planner._cli import EXIT_OK, main
from planner._rules import COLUMN_RULES, LAW_RULES, SCENARIO_RULES
from planner._table import ABSENT, TABLE_FIELDS, parse_columns

INF, NAN = math.inf, math.nan
LAW = Chinchilla.sardana2024()
H100 = Hardware.nvidia_h100_sxm()

# (field, value, accepted): the documented domains, typed independently of the table.
CASES = [
    ("target_loss", 2.2, True), ("target_loss", 0.0, False), ("target_loss", -1.0, False),
    ("target_loss", INF, False), ("target_loss", NAN, False),
    ("target_score", 0.5, True), ("target_score", 0.0, False), ("target_score", 1.0, False),
    ("target_score", 1.5, False), ("target_score", NAN, False),
    ("inference_demand", 0.0, True), ("inference_demand", 1e12, True),
    ("inference_demand", -1.0, False), ("inference_demand", INF, False),
    ("inference_demand", NAN, False),
    *[(cap, value, ok) for cap in ("train_budget", "inference_budget",
                                   "max_inference_flops_per_unit", "max_params", "max_tokens",
                                   "max_latency", "max_inference_dollars_per_unit")
      for value, ok in ((INF, True), (0.0, False), (-1.0, False), (-INF, False),
                        (NAN, False))],
    ("min_density", 1.0, True), ("min_density", 0.3, True), ("min_density", 0.0, False),
    ("min_density", 1.5, False), ("min_density", INF, False), ("min_density", NAN, False),
    ("serving_batch", 4.0, True), ("serving_batch", 0.0, False), ("serving_batch", INF, False),
    ("serving_batch", NAN, False),
    ("demand_rate", 0.0, True), ("demand_rate", 500.0, True), ("demand_rate", -1.0, False),
    ("demand_rate", INF, False), ("demand_rate", NAN, False),
]
LAW_CASES = [
    ("E", 0.0, True), ("E", -1.0, False), ("E", INF, False), ("E", NAN, False),
    *[(name, value, ok) for name in ("A", "B", "alpha", "beta")
      for value, ok in ((0.5, True), (0.0, False), (-1.0, False), (INF, False),
                        (NAN, False))],
]


def test_the_cases_cover_every_rule():
    assert {f for f, _, _ in CASES} == set(SCENARIO_RULES)
    assert {f for f, _, _ in LAW_CASES} == set(LAW_RULES)


def expected_message(field, value) -> str:
    rule = {**SCENARIO_RULES, **LAW_RULES}[field]
    if rule.finite and not math.isfinite(value):
        return f"{field} must be finite"
    return rule.message


def model_for(field):
    base = Pretraining(LAW)
    if field == "min_density":
        return Pipeline(base, Pruning(LAW))
    if field == "max_inference_dollars_per_unit":
        return Pipeline(Pretraining(LAW, tokens_per_query=100.0),
                        Deployment(train=H100, serve=H100, context_tokens=1000.0))
    if field == "target_score":
        return Pipeline(Pretraining(LAW, tokens_per_query=1000.0),
                        RepeatedSampling(SuccessLink.codex2021()))
    return Pipeline(base)


def scenario_fields(field, value) -> dict:
    # with a score target, some demand: at none, samples cost nothing and the optimum is
    # unbounded in them
    fields = {"inference_demand": 1e9} if field == "target_score" else {"target_loss": 2.2}
    if field == "serving_batch":
        fields["max_latency"] = 1.0
    fields[field] = value
    return fields


def solve_kwargs(fields):
    return {"hardware": H100} if "max_latency" in fields else {}


def model_kind(field) -> str:
    """Which model a field is solved with (`model_for`): fields of one kind share a compiled
    solve."""
    return {"min_density": "pruning", "max_inference_dollars_per_unit": "deployment",
            "target_score": "sampling"}.get(field, "plain")


KINDS = ("plain", "pruning", "deployment", "sampling")
MODELS = {kind: model_for(next(f for f, _, _ in CASES if model_kind(f) == kind))
          for kind in KINDS}


def packed(cases):
    """The `scenario_fields` of `cases` packed into as few scenarios as possible: each scenario
    takes a case whose fields do not clash with the fields it already has (every field is a
    case's own value or the shared target), so each value is solved once and a refused one
    would raise its own rule's message."""
    scenarios = []
    for field, value, _ in cases:
        fields = scenario_fields(field, value)
        for scenario in scenarios:
            if all(scenario["fields"].get(k, v) == v for k, v in fields.items()):
                scenario["fields"].update(fields)
                scenario["cases"].append((field, value))
                break
        else:
            scenarios.append({"fields": dict(fields), "cases": [(field, value)]})
    return scenarios


ACCEPTED = [(kind, scenario) for kind in KINDS for scenario in packed(
    [c for c in CASES if c[2] and model_kind(c[0]) == kind])]


@pytest.mark.parametrize(("field", "value", "accepted"), [c for c in CASES if not c[2]])
def test_eager_throw_raises_the_rules_message(field, value, accepted):
    fields = scenario_fields(field, value)
    with pytest.raises(eqx.EquinoxRuntimeError) as info:
        solve(model_for(field), Scenario(**fields), **solve_kwargs(fields))
    assert str(info.value) == expected_message(field, value)


@pytest.mark.parametrize(("kind", "scenario"), ACCEPTED,
                         ids=[f"{k}-" + "-".join(f"{f}={v:g}" for f, v in s["cases"])
                              for k, s in ACCEPTED])
def test_eager_throw_accepts_the_accepted_values(kind, scenario):
    """Every accepted case is solved eagerly with throw=True, several fields of one model at
    once (`packed`): nothing raises and the plan is OPTIMAL."""
    assert {(f, v) for _, s in ACCEPTED for f, v in s["cases"]} == {
        (f, v) for f, v, ok in CASES if ok}
    fields = scenario["fields"]
    plan = solve(MODELS[kind], Scenario(**fields), **solve_kwargs(fields))
    assert int(plan.status) == Status.OPTIMAL


def batch_rows(kind):
    """One row per case of the fields of `kind`: the case's `scenario_fields` over a base in
    which every other field of the batch has an accepted value that imposes nothing (its
    rule's absent value; the shared loss or score target)."""
    cases = [c for c in CASES if model_kind(c[0]) == kind]
    keys = sorted({k for f, v, _ in cases for k in scenario_fields(f, v)})
    rows = []
    for field, value, ok in cases:
        row = {k: SCENARIO_RULES[k].absent for k in keys}
        rows.append((field, value, ok, {**row, **scenario_fields(field, value)}))
    return rows


@pytest.mark.parametrize("kind", KINDS)
def test_statuses_under_vmap_agree_with_the_cases(kind):
    """throw=False on one batch of the cases of every field solved with one model: accepted
    values OPTIMAL, refused ones the rule's status with NaN in every plan value (and the
    accepted rows unharmed)."""
    rows = batch_rows(kind)
    assert {f for f, _, _, _ in rows} == {f for f, _, _ in CASES if model_kind(f) == kind}
    keys = sorted(rows[0][3])
    fields = {k: np.array([r[k] for *_, r in rows], np.float64) for k in keys}
    kwargs = solve_kwargs(fields)
    model = MODELS[kind]
    plans = jax.jit(jax.vmap(lambda s: solve(model, s, throw=False, **kwargs)))(
        Scenario(**fields).broadcast())
    status = np.asarray(plans.status)
    accepted = np.array([ok for _, _, ok, _ in rows])
    expected = np.array([Status.OPTIMAL if ok else Status[SCENARIO_RULES[f].status]
                         for f, _, ok, _ in rows])
    wrong = [(f, v, Status(int(s)).name) for (f, v, _, _), s, e in zip(rows, status, expected)
             if s != e]
    assert not wrong, wrong
    for leaf in (plans.allocation.n_params, plans.total_flops, plans.outcome.loss):
        leaf = np.asarray(leaf)
        assert np.all(np.isnan(leaf[~accepted]))
        assert np.all(np.isfinite(leaf[accepted]))


COEFFICIENTS = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.336, "beta": 0.283}


def law_case_target(field) -> float:
    return 2.2 if field != "E" else 0.5


@pytest.fixture(scope="module")
def law_batch():
    """throw=False on one batch of every law case (one compiled solve)."""
    laws = {k: np.array([value if f == k else v for f, value, _ in LAW_CASES])
            for k, v in COEFFICIENTS.items()}
    targets = np.array([law_case_target(f) for f, _, _ in LAW_CASES])
    plans = jax.jit(jax.vmap(lambda law, t: solve(
        Pipeline(Pretraining(Chinchilla(**law))), Scenario(target_loss=t), throw=False)))(
        laws, targets)
    return np.asarray(plans.status), np.asarray(plans.allocation.n_params)


@pytest.mark.parametrize(("field", "value", "accepted"), LAW_CASES)
def test_law_coefficients_eager_and_batched(field, value, accepted, law_batch):
    law = Chinchilla(**{**COEFFICIENTS, field: value})
    scenario = Scenario(target_loss=law_case_target(field))
    status, n_params = (x[LAW_CASES.index((field, value, accepted))] for x in law_batch)
    if accepted:
        assert status == Status.OPTIMAL and np.isfinite(n_params)
        return
    with pytest.raises(eqx.EquinoxRuntimeError) as info:
        solve(Pipeline(Pretraining(law)), scenario)
    assert str(info.value) == expected_message(field, value)
    assert status == Status[LAW_RULES[field].status]
    assert np.isnan(n_params)


JIT_CASES = [("target_loss", NAN), ("max_params", -1.0), ("max_latency", 0.0),
             ("min_density", 2.0)]
# one scenario structure per model, so that the plain cases share one compiled solve
JIT_BASE = {"plain": {"target_loss": 2.2, "max_params": INF, "max_latency": INF},
            "pruning": {"target_loss": 2.2, "min_density": 1.0}}


@pytest.fixture(scope="module")
def jitted_solves():
    return {kind: eqx.filter_jit(lambda s, kind=kind: solve(
        MODELS[kind], s, **solve_kwargs(JIT_BASE[kind]))) for kind in JIT_BASE}


@pytest.mark.parametrize(("field", "value"), JIT_CASES)
def test_throw_under_jit_raises_the_same_message(field, value, jitted_solves):
    kind = model_kind(field)
    fields = {**JIT_BASE[kind], **scenario_fields(field, value)}
    assert set(fields) == set(JIT_BASE[kind])
    run = jitted_solves[kind]
    with pytest.raises(eqx.EquinoxRuntimeError, match=expected_message(field, value)
                       .replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        jax.block_until_ready(run(Scenario(**fields)))


def test_infinite_latency_bound_is_no_bound_everywhere():
    """The drift the table ended: max_latency=inf passed the eager check and was refused by
    the traced one. Now it is no bound: the plan is the plan without it."""
    free = solve(Pipeline(Pretraining(LAW)), Scenario(target_loss=2.2, inference_demand=1e12))
    bounded = solve(Pipeline(Pretraining(LAW)),
                    Scenario(target_loss=2.2, inference_demand=1e12, max_latency=INF),
                    hardware=H100)
    np.testing.assert_allclose(bounded.allocation.n_params, free.allocation.n_params,
                               rtol=1e-9)


def test_a_target_at_or_below_E_names_E_on_every_path(tmp_path):
    with pytest.raises(eqx.EquinoxRuntimeError,
                       match=r"target_loss \(1.5\) is at or below the irreducible loss "
                             r"E = 1.69"):
        solve(Pipeline(Pretraining(LAW)), Scenario(target_loss=1.5))
    run = eqx.filter_jit(lambda s: solve(Pipeline(Pretraining(LAW)), s))
    with pytest.raises(eqx.EquinoxRuntimeError, match="at or below the irreducible loss E"):
        jax.block_until_ready(run(Scenario(target_loss=1.5)))
    plan = solve(Pipeline(Pretraining(LAW)), Scenario(target_loss=1.5), throw=False)
    assert int(plan.status) == Status.INFEASIBLE
    assert np.isnan(float(plan.total_flops))
    _, status, messages = parse_columns({"target_loss": ["1.5"]}, LAW)
    assert status[0] == Status.INFEASIBLE
    assert ("row 1: column 'target_loss' (1.5) is at or below the irreducible loss E = 1.69"
            in messages[0])


def test_infeasible_solve_names_the_cap_in_python():
    """A cap below the closed-form minimum: the eager error names the cap and N_min, as the
    command line's message does."""
    n_min = (406.4 / (2.0 - 1.69)) ** (1 / 0.336)
    with pytest.raises(eqx.EquinoxRuntimeError, match=r"max_params \(.*\) is at or below N_min"):
        solve(Pipeline(Pretraining(LAW)), Scenario(target_loss=2.0, max_params=0.5 * n_min))


# ----------------------------------------------------------------------------- tables and CLI
TABLE_CASES = [(f, v, ok) for f, v, ok in CASES if f in TABLE_FIELDS] + LAW_CASES


def test_table_columns_are_the_rules():
    assert set(TABLE_FIELDS) | set(LAW_RULES) <= set(COLUMN_RULES)
    for column, absent in ABSENT.items():
        # an absent value is accepted by its own rule: it never makes a row invalid
        assert not COLUMN_RULES[column].violated(np.array([absent]), np)[0], column
    for rule in (*SCENARIO_RULES.values(), *LAW_RULES.values()):
        assert not rule.violated(np.array([rule.stand_in]), np)[0], rule.name


@pytest.mark.parametrize(("column", "value", "accepted"), TABLE_CASES)
def test_a_table_row_gets_the_rules_status_and_message(column, value, accepted):
    cells = {"target_loss": ["2.2"], column: [repr(value)]}
    _, status, messages = parse_columns(cells, LAW, dense_inference=column != "min_density")
    rule = COLUMN_RULES[column]
    if accepted:
        assert status[0] == -1 and messages[0] == "", messages[0]
        return
    assert status[0] == Status[rule.status]
    words = "must be finite" if rule.finite and not math.isfinite(value) else rule.domain_text
    assert messages[0] == f"row 1: column {column!r} {words} ({value:g})"


def test_planner_solve_writes_every_rules_message(tmp_path, capsys):
    """One file with a row per refused table case: exit code 0, each row invalid_input with
    the message of its column's rule; the accepted rows are optimal."""
    cases = [(c, v, ok) for c, v, ok in TABLE_CASES if c not in ("target_score", "min_density")]
    columns = sorted({c for c, _, _ in cases} | {"target_loss"})
    path = tmp_path / "rules.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for column, value, _ in cases:
            cells = {"target_loss": 2.2, column: value}
            if column == "E" and value == 0.0:
                cells["target_loss"] = 0.5
            writer.writerow(["" if c not in cells else repr(cells[c]) for c in columns])
    out = tmp_path / "plans.csv"
    assert main(["solve", str(path), "--output", str(out)]) == EXIT_OK
    rows = list(csv.DictReader(open(out, newline="")))
    for number, ((column, value, accepted), result) in enumerate(zip(cases, rows), start=1):
        if accepted:
            assert result["status"] == "optimal", (column, value, result["message"])
            continue
        assert result["status"] == "invalid_input", (column, value)
        rule = COLUMN_RULES[column]
        words = "must be finite" if rule.finite and not math.isfinite(value) else \
            rule.domain_text
        assert f"row {number}: column {column!r} {words}" in result["message"]
        assert result["n_params"] == ""  # no plan values on a refused row
    err = capsys.readouterr().err
    refused = sum(not ok for _, _, ok in cases)
    assert f"{refused:,} invalid_input" in err
