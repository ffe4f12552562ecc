"""Plans as people read them: `print(plan)`, `Plan.to_columns` (and pandas / pyarrow), the
status summary, `print(allocation)` and `planner solve`'s line per status. The numbers shown are
checked against the plan's own arrays, formatted here independently."""

import csv
import importlib.util
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from planner import (
    STATUS_MESSAGES,
    Chinchilla,
    Pipeline,
    Pretraining,
    Pruning,
    Scenario,
    Status,
    solve,
)
from planner._cli import EXIT_OK, main

LAW = Chinchilla.sardana2024()
MODEL = Pipeline(Pretraining(LAW))
BATCH = jax.jit(jax.vmap(lambda s: solve(MODEL, s, throw=False)))


def numbers(line: str) -> list[float]:
    return [float(x) for x in re.findall(r"[-+]?\d+\.?\d*(?:e[-+]\d+)?|nan", line)]


def test_print_a_single_plan_shows_every_value_with_its_unit():
    plan = solve(MODEL, Scenario(target_loss=1.947, inference_demand=2e12))
    text = str(plan)
    lines = text.splitlines()
    assert lines[0] == "Plan: optimal"
    expected = {"n_params": (plan.allocation.n_params, "parameters"),
                "n_tokens": (plan.allocation.n_tokens, "training tokens"),
                "train_flops": (plan.outcome.train_flops, "FLOP"),
                "inference_flops": (plan.inference_flops, "FLOP, lifetime"),
                "total_flops": (plan.total_flops, "FLOP, lifetime"),
                "inference_flops_per_unit": (plan.outcome.inference_flops_per_unit,
                                             "FLOP per unit of demand"),
                "loss": (plan.outcome.loss, "nats per token")}
    assert len(lines) == 1 + len(expected)  # no density or samples: not pruned, one sample
    for line, (name, (value, unit)) in zip(lines[1:], expected.items(), strict=True):
        assert line.split()[0] == name and line.endswith(unit), line
        (shown,) = numbers(line.split(None, 1)[1].replace(unit, ""))
        np.testing.assert_allclose(shown, float(value), rtol=5e-4)
    # Sardana et al. 2024's Table 1 setting, as the README prints it
    assert "2.418e+10" in text and "2.657e+12" in text and "4.823e+23" in text


def test_a_plan_that_is_not_optimal_prints_nan_and_why():
    plan = solve(MODEL, Scenario(target_loss=1.5), throw=False)
    text = str(plan)
    assert text.startswith("Plan: infeasible")
    assert text.count("nan") == 7
    assert STATUS_MESSAGES[Status.INFEASIBLE].split(": ", 1)[1] in text


def test_a_batch_prints_a_table_with_units_and_a_summary():
    targets = np.linspace(1.6, 2.5, 40)  # the first rows lie below E = 1.69: infeasible
    plans = BATCH(Scenario(target_loss=jnp.asarray(targets), inference_demand=1e13).broadcast())
    lines = str(plans).splitlines()
    assert lines[0] == "Plan: batch of 40 (shape (40,))"
    header, units = lines[1].split(), lines[2]
    assert header == ["n_params", "n_tokens", "train_flops", "inference_flops", "total_flops",
                      "inference_flops_per_unit", "loss", "status"]
    for unit in ("parameters", "training tokens", "FLOP, lifetime", "FLOP per unit of demand",
                 "nats per token"):
        assert unit in units
    rows = lines[3:-1]
    assert len(rows) == 21 and rows[10].strip() == "..."  # the first and last ten
    status = np.asarray(plans.status)
    for row in rows[:10] + rows[11:]:
        index, *cells = row.split()
        i = int(index)
        assert cells[-1] == Status(int(status[i])).name.lower()
        shown = [float(c) for c in cells[:-1]]
        np.testing.assert_allclose(shown[0], np.asarray(plans.allocation.n_params)[i],
                                   rtol=5e-4, equal_nan=True)
        np.testing.assert_allclose(shown[6], np.asarray(plans.outcome.loss)[i], rtol=5e-6,
                                   equal_nan=True)
    # the summary counts what np.unique counts
    codes, counts = np.unique(status, return_counts=True)
    for code, count in zip(codes, counts, strict=True):
        assert f"{count:,} {Status(int(code)).name.lower()} (" in lines[-1]
    assert plans.summary() == lines[-1]


def test_to_columns_and_the_optional_tables():
    targets = jnp.asarray([1.6, 1.947, 2.2])
    plans = BATCH(Scenario(target_loss=targets, inference_demand=2e12).broadcast())
    columns = plans.to_columns()
    assert list(columns) == ["n_params", "n_tokens", "train_flops", "inference_flops",
                             "total_flops", "inference_flops_per_unit", "loss", "status"]
    assert list(columns["status"]) == ["infeasible", "optimal", "optimal"]
    np.testing.assert_array_equal(columns["n_params"], np.asarray(plans.allocation.n_params))
    assert np.isnan(columns["total_flops"][0]) and np.all(np.isfinite(columns["loss"][1:]))
    if importlib.util.find_spec("pyarrow") is not None:
        table = plans.to_arrow()
        assert table.column_names == list(columns)
        np.testing.assert_array_equal(table.column("loss").to_numpy(), columns["loss"])
        assert table.column("status").to_pylist() == list(columns["status"])
    if importlib.util.find_spec("pandas") is not None:
        frame = plans.to_pandas()
        np.testing.assert_array_equal(frame["n_tokens"].to_numpy(), columns["n_tokens"])
    else:
        with pytest.raises(ImportError, match="to_columns"):
            plans.to_pandas()


def test_missing_pyarrow_is_an_import_error_that_says_how(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    plan = solve(MODEL, Scenario(target_loss=2.2))
    with pytest.raises(ImportError, match=r'pip install -e "\.\[parquet\]"'):
        plan.to_arrow()


def test_pruned_plans_show_their_density_and_allocations_print_with_units():
    model = Pipeline(Pretraining(LAW), Pruning(LAW))
    plan = solve(model, Scenario(target_loss=2.0, inference_demand=1e15, min_density=0.3))
    columns = plan.to_columns()
    density = float(plan.allocation.density)
    if density < 1.0:  # pruned: the column is shown
        np.testing.assert_allclose(columns["density"], density)
        assert "fraction of weights kept" in str(plan)
    else:
        assert "density" not in columns
    text = str(plan.allocation)
    assert text.startswith(f"n_params {float(plan.allocation.n_params):.4g} parameters, "
                           f"n_tokens {float(plan.allocation.n_tokens):.4g} training tokens")
    assert "Allocation(" not in text


def test_planner_solve_prints_a_line_per_status(tmp_path, capsys):
    path = tmp_path / "s.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["target_loss"])
        writer.writerows([["2.2"], ["1.5"], ["x"], ["2.0"]])
    assert main(["solve", str(path), "--output", str(tmp_path / "p.csv")]) == EXIT_OK
    err = capsys.readouterr().err.splitlines()
    assert "  2 optimal: every KKT residual is below tolerance" in err
    assert ("  1 infeasible: no allocation meets the target within the constraints; the message "
            "column says why, row by row") in err
    assert any(line.startswith("  1 invalid_input: ") for line in err)
