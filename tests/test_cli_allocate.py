"""`planner allocate`: its plans and summary against `planner.allocate` called directly, bad
rows, infeasible portfolios, exit codes, and files that are never half written.

The tables have four rows and one shared training budget, so that every run reuses the
programs the first one compiles (`planner._cli.main` runs in the test process).
"""

import csv
import json
import math
import os
import re
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from test_cli import read_csv, write_csv
from test_docs import assert_same_plans

import planner
from planner._cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["id", "target_loss", "inference_demand", "weight"]
# four items, each with its own target, demand and weight
GOOD = [("chat", 2.3, 1e12, 1.0), ("code", 2.4, 1e13, 2.0), ("search", 2.5, 1e11, 1.0),
        ("agent", 2.35, 1e12, 0.5)]
# The items use 5.8e21 training FLOP each at its own lifetime optimum, and need at least 2.8e21
# (6 N D at Hoffmann et al.'s compute-optimal N, D for each target): the budget binds, has a
# price, and can be met. The first two alone use 4.3e21 and need 1.8e21: half of it binds too.
BUDGET = 4e21


def run(tmp_path, rows, *flags, name="items", plans="plans.csv"):
    """(exit code, plans rows, summary) of `planner allocate` on `rows`."""
    src = write_csv(tmp_path / f"{name}.csv", COLUMNS, rows)
    out, summary = tmp_path / plans, tmp_path / "summary.json"
    code = main(["allocate", str(src), "-o", str(out), "--summary", str(summary), *flags])
    assert not list(tmp_path.glob("*.parts")) and not list(tmp_path.glob(".*.tmp"))
    return code, (read_csv(out) if out.suffix == ".csv" else out), json.loads(
        summary.read_text())


def direct(rows, budget, weights=None) -> planner.Portfolio:
    """`planner.allocate` on the same items, with the command line's default law."""
    model = planner.Pipeline(planner.Pretraining(planner.Chinchilla.sardana2024()))
    items = planner.Scenario(target_loss=jnp.array([r[1] for r in rows]),
                             inference_demand=jnp.array([r[2] for r in rows]))
    weight = jnp.array([r[3] for r in rows] if weights is None else weights)
    return planner.allocate(model, items, {"train_budget": budget}, weight=weight, throw=False)


def number(cell: str) -> float:
    return float(cell) if cell else math.nan


def assert_sums(plans, summary, weights):
    """The summary's totals are the sums of the plans' columns over the optimal rows (the
    others have no plan), and its objective their weighted lifetime compute."""
    ok = [r for r in plans if r["status"] == "optimal"]
    train = sum(number(r["train_flops"]) for r in ok)
    inference = sum(number(r["inference_flops"]) for r in ok)  # lifetime, per row
    for r in ok:
        assert number(r["inference_flops"]) == pytest.approx(
            number(r["inference_demand"]) * number(r["inference_flops_per_unit"]), rel=1e-12)
    total = sum(number(r["total_flops"]) for r in ok)
    assert summary["train_flops"] == pytest.approx(train, rel=1e-12)
    assert summary["inference_flops"] == pytest.approx(inference, rel=1e-12)
    assert summary["total_flops"] == pytest.approx(total, rel=1e-12)
    assert summary["total_flops"] == pytest.approx(train + inference, rel=1e-12)
    weighted = sum(w * number(r["total_flops"]) for r, w in zip(plans, weights, strict=True)
                   if r["status"] == "optimal")
    assert summary["objective"] == pytest.approx(weighted, rel=1e-12)


def test_plans_and_summary_are_those_of_allocate(tmp_path, capsys):
    code, plans, summary = run(tmp_path, GOOD, "--train-budget", str(BUDGET), "--progress")
    assert code == EXIT_OK
    port = direct(GOOD, BUDGET)
    assert planner.Status(int(port.status)) == planner.Status.OPTIMAL
    assert summary["status"] == "optimal" and summary["message"] == ""
    assert [r["id"] for r in plans] == [r[0] for r in GOOD]
    assert [r["status"] for r in plans] == ["optimal"] * 4
    np.testing.assert_allclose([number(r["n_params"]) for r in plans],
                               np.asarray(port.plans.allocation.n_params), rtol=1e-9)
    np.testing.assert_allclose([number(r["n_tokens"]) for r in plans],
                               np.asarray(port.plans.allocation.n_tokens), rtol=1e-9)
    assert summary["objective"] == pytest.approx(float(port.objective), rel=1e-9)
    assert set(summary["prices"]) == {"train_budget"}
    assert summary["prices"]["train_budget"] == pytest.approx(
        float(port.prices["train_budget"]), rel=1e-9)
    assert summary["prices"]["train_budget"] > 0  # the budget binds
    assert summary["train_flops"] == pytest.approx(BUDGET, rel=1e-9)
    for key in ("residual", "kkt", "gap"):
        assert summary[key] == pytest.approx(float(getattr(port, key)), rel=1e-6, abs=1e-12)
        assert summary[key] < 1e-8
    assert summary["solves"] == port.solves
    assert summary["budgets"] == {"train_budget": BUDGET}
    assert (summary["n_items"], summary["n_invalid"]) == (4, 0)
    assert_sums(plans, summary, [r[3] for r in GOOD])
    err = capsys.readouterr().err
    # --progress: allocate's lines, one per batched solve, then the summary lines
    assert re.search(r"^planner allocate: batched solve 1: train_budget ", err, re.M), err
    assert "planner allocate: 4 items -> " in err and "4 optimal" in err
    assert "portfolio optimal: objective" in err


@pytest.mark.parametrize("flags, budget", [
    (["--objective", "dollars", "--train-budget", str(BUDGET)], {"train_budget": BUDGET}),
    (["--objective", "loss", "--dollar-budget", "2e4"], {"dollar_budget": 2e4}),
])
def test_plans_priced_in_dollars_are_those_of_allocate(tmp_path, capsys, flags, budget):
    """--objective dollars under a FLOP budget, and a dollar budget under the loss objective,
    on H100s for training and serving: the plans, objective and price of `planner.allocate`
    with the `Deployment` the serving flags describe."""
    code, plans, summary = run(tmp_path, GOOD, *flags, "--train-hardware", "H100",
                               "--serve-hardware", "H100")
    assert code == EXIT_OK
    h100 = planner.Hardware.nvidia_h100_sxm()
    model = planner.Pipeline(planner.Pretraining(planner.Chinchilla.sardana2024()),
                             planner.Deployment(train=h100, serve=h100))
    items = planner.Scenario(target_loss=jnp.array([r[1] for r in GOOD]),
                             inference_demand=jnp.array([r[2] for r in GOOD]))
    port = planner.allocate(model, items, budget, objective=flags[1],
                            weight=jnp.array([r[3] for r in GOOD]))
    assert summary["status"] == "optimal"
    np.testing.assert_allclose([number(r["n_params"]) for r in plans],
                               np.asarray(port.plans.allocation.n_params), rtol=1e-9)
    np.testing.assert_allclose([number(r["dollars"]) for r in plans],
                               np.asarray(port.plans.serving.dollars), rtol=1e-9)
    assert summary["objective"] == pytest.approx(float(port.objective), rel=1e-9)
    (name, cap), = budget.items()
    assert summary["prices"][name] == pytest.approx(float(port.prices[name]), rel=1e-9)
    assert summary["prices"][name] > 0
    assert float(port.usage[name]) == pytest.approx(cap, rel=1e-9)
    unit = "dollar" if name == "dollar_budget" else "FLOP"
    assert f"prices per {unit}: {name} " in capsys.readouterr().err


def test_score_objective_is_that_of_allocate(tmp_path, capsys):
    """--objective score --sampling under a training and an inference budget: each item's
    N, D and samples per query, the objective and both prices of `planner.allocate` with the
    command line's law and success link."""
    rows = [("chat", 1e12, 1.0), ("code", 1e13, 2.0), ("search", 1e11, 1.0)]
    src = write_csv(tmp_path / "items.csv", ["id", "inference_demand", "weight"], rows)
    budgets = {"train_budget": 4e21, "inference_budget": 1e21}
    out, summary = tmp_path / "plans.csv", tmp_path / "summary.json"
    assert main(["allocate", str(src), "-o", str(out), "--summary", str(summary), "--objective",
                 "score", "--sampling", "--train-budget", "4e21", "--inference-budget",
                 "1e21"]) == EXIT_OK
    plans, summary = read_csv(out), json.loads(summary.read_text())
    model = planner.Pipeline(planner.Pretraining(planner.Chinchilla.sardana2024()),
                             planner.RepeatedSampling(planner.SuccessLink.codex2021()))
    port = planner.allocate(model, planner.Scenario(inference_demand=jnp.array(
        [r[1] for r in rows])), budgets, objective="score", weight=jnp.array([r[2] for r in rows]))
    assert summary["status"] == "optimal" and [r["status"] for r in plans] == ["optimal"] * 3
    for column, values in (("n_params", port.plans.allocation.n_params),
                           ("n_tokens", port.plans.allocation.n_tokens),
                           ("n_samples", port.plans.allocation.n_samples),
                           ("score", port.plans.outcome.score)):
        np.testing.assert_allclose([number(r[column]) for r in plans], np.asarray(values),
                                   rtol=1e-9)
    assert summary["objective"] == pytest.approx(float(port.objective), rel=1e-9)
    assert summary["objective"] == pytest.approx(
        sum(r[2] * number(p["score"]) for r, p in zip(rows, plans, strict=True)), rel=1e-12)
    for name, cap in budgets.items():
        assert summary["prices"][name] == pytest.approx(float(port.prices[name]), rel=1e-9)
        assert summary["prices"][name] > 0
    assert summary["train_flops"] == pytest.approx(4e21, rel=1e-9)
    assert summary["inference_flops"] == pytest.approx(1e21, rel=1e-9)


def test_bad_rows_are_marked_and_left_out(tmp_path, capsys):
    rows = [GOOD[0], ("negative_demand", 2.3, -5, 1.0), GOOD[1], ("zero_weight", 2.4, 1e11, 0)]
    code, plans, summary = run(tmp_path, rows, "--train-budget", str(BUDGET / 2))
    assert code == EXIT_OK  # bad rows do not decide the exit status (as in planner solve)
    assert [r["status"] for r in plans] == ["optimal", "invalid_input", "optimal",
                                            "invalid_input"]
    assert plans[1]["message"] == "row 2: column 'inference_demand' must be >= 0 (-5)"
    assert plans[3]["message"] == "row 4: column 'weight' must be > 0 (0)"
    for bad in (plans[1], plans[3]):
        assert all(bad[c] == "" for c in ("n_params", "n_tokens", "train_flops", "loss"))
    assert (summary["status"], summary["n_items"], summary["n_invalid"]) == ("optimal", 4, 2)
    # the good rows share the whole budget: the bad ones are not in the sums
    assert summary["train_flops"] == pytest.approx(BUDGET / 2, rel=1e-9)
    assert_sums(plans, summary, [1.0, 0.0, 2.0, 0.0])
    # allocate leaves out the items whose weight is not a number > 0: the same portfolio
    port = direct([GOOD[0], GOOD[0], GOOD[1], GOOD[1]], BUDGET / 2,
                  weights=[1.0, math.nan, 2.0, math.nan])
    assert summary["objective"] == pytest.approx(float(port.objective), rel=1e-9)
    assert summary["prices"]["train_budget"] == pytest.approx(
        float(port.prices["train_budget"]), rel=1e-9)
    for i in (0, 2):
        assert number(plans[i]["n_params"]) == pytest.approx(
            float(port.plans.allocation.n_params[i]), rel=1e-9)
    assert "2 invalid_input" in capsys.readouterr().err


def test_infeasible_train_budget_exits_1(tmp_path, capsys):
    code, plans, summary = run(tmp_path, GOOD, "--train-budget", "1e15")
    assert code == EXIT_FAILED
    assert summary["status"] == "infeasible"
    assert summary["message"]
    # no optimum: no objective and no totals, as a row that is not optimal has no plan
    assert summary["objective"] is None and summary["train_flops"] is None
    assert summary["residual"] > 1  # the budget is overrun many times over
    assert not any(r["status"] == "optimal" and r["n_params"] == "" for r in plans)
    assert "portfolio infeasible" in capsys.readouterr().err


def test_an_item_that_cannot_reach_its_own_target_makes_the_portfolio_infeasible(tmp_path):
    rows = [GOOD[0], ("below_E", 1.6, 1e11, 1.0), GOOD[2], GOOD[3]]
    code, plans, summary = run(tmp_path, rows, "--train-budget", str(BUDGET))
    assert code == EXIT_FAILED
    assert summary["status"] == "infeasible" and summary["n_invalid"] == 0
    assert "1 item cannot reach its own target" in summary["message"]
    assert plans[1]["status"] == "infeasible"
    assert "irreducible loss" in plans[1]["message"]
    assert summary["objective"] is None
    port = direct(rows, BUDGET)
    assert planner.Status(int(port.status)) == planner.Status.INFEASIBLE


@pytest.mark.parametrize("rows", [[("x", "abc", 1e11, 1), ("y", 2.3, 1e11, "nan")], []],
                         ids=["every_row_invalid", "no_rows"])
def test_no_valid_row_is_invalid_input(tmp_path, rows):
    code, plans, summary = run(tmp_path, rows, "--train-budget", "1e21")
    assert code == EXIT_FAILED
    assert summary["status"] == "invalid_input"
    assert (summary["n_items"], summary["n_invalid"]) == (len(rows), len(rows))
    assert summary["objective"] is None and summary["prices"] == {"train_budget": None}
    assert summary["solves"] == 0
    assert [r["status"] for r in plans] == ["invalid_input"] * len(rows)


def test_parquet_plans(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    code, path, summary = run(tmp_path, GOOD, "--train-budget", str(BUDGET),
                              plans="plans.parquet")
    assert code == EXIT_OK
    table = pq.read_table(path).to_pydict()
    assert table["status"] == ["optimal"] * 4
    assert sum(table["train_flops"]) == pytest.approx(summary["train_flops"], rel=1e-12)


# ------------------------------------------------------------------- refusals and failed runs
@pytest.mark.parametrize("flags, words", [
    (["--train-budget", "-1"], "--train-budget must be finite and > 0"),
    (["--compute-budget", "inf"], "--compute-budget must be finite and > 0"),
    (["--objective", "loss", "--inference-budget", "1e22"],
     "--objective loss needs a budget on training: give --train-budget or --compute-budget "
     "or --dollar-budget"),
    (["--objective", "score", "--train-budget", "1e22"], "add --sampling"),
    (["--objective", "score", "--sampling", "--train-budget", "1e22"],
     "--objective score needs a budget on inference: give --inference-budget or "
     "--compute-budget or --dollar-budget"),
    (["--summary", "summary.txt"], "name it .json"),
    (["--objective", "dollars"], "--objective dollars needs --train-hardware"),
    (["--objective", "loss", "--dollar-budget", "1e6"], "--dollar-budget needs --train-hardware"),
    (["--max-latency", "0.05", "--train-budget", "1e22"], "give --objective dollars"),
])
def test_bad_options_are_refused_before_any_work(tmp_path, capsys, flags, words):
    src = write_csv(tmp_path / "items.csv", COLUMNS, GOOD)
    args = ["allocate", str(src), "-o", str(tmp_path / "plans.csv")]
    if "--summary" not in flags:
        args += ["--summary", str(tmp_path / "summary.json")]
    assert main(args + [f if f != "summary.txt" else str(tmp_path / f) for f in flags]) \
        == EXIT_USAGE
    assert words in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["items.csv"]


@pytest.mark.parametrize("text, words", [
    ("id,target_loss,weigth\na,2.3,1\n", "did you mean 'weight'?"),
    ("id,target_loss\na,2.3\nb,2.4,5\n", "line 3 has 3 fields"),
    ("id,inference_demand\na,1e11\n", "missing required column 'target_loss'"),
    ("id,target_loss,inference_tokens\na,2.3,1e11\n",
     "column 'inference_tokens' is now 'inference_demand'"),
])
def test_malformed_table_writes_nothing(tmp_path, capsys, text, words):
    src = tmp_path / "items.csv"
    src.write_text(text)
    code = main(["allocate", str(src), "-o", str(tmp_path / "plans.csv"), "--summary",
                 str(tmp_path / "summary.json"), "--train-budget", "1e21"])
    assert code == EXIT_USAGE
    assert words in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["items.csv"]  # no output, no parts, no temporary file


def test_a_failed_write_leaves_no_half_written_file(tmp_path, monkeypatch, capsys):
    """A write that fails half way (here: the disk fills while the plans are written) leaves
    the earlier plans whole, no temporary file, and no summary that would describe other plans
    than those on disk."""
    import planner._sweep

    src = write_csv(tmp_path / "items.csv", COLUMNS, GOOD)
    out, summary = tmp_path / "plans.csv", tmp_path / "summary.json"
    out.write_text("earlier plans\n")
    summary.write_text("{}\n")

    def half(handle, text):
        handle.write(bytes(text)[:40])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(planner._sweep, "_write", half)
    code = main(["allocate", str(src), "-o", str(out), "--summary", str(summary),
                 "--train-budget", str(BUDGET)])
    monkeypatch.undo()
    assert code == EXIT_USAGE
    assert "No space left on device" in capsys.readouterr().err
    assert out.read_text() == "earlier plans\n"
    assert sorted(os.listdir(tmp_path)) == ["items.csv", "plans.csv"]


def test_a_failed_solve_writes_nothing(tmp_path, monkeypatch, capsys):
    import planner._allocate

    def fails(*args, **kwargs):
        raise ValueError("the solve failed")

    monkeypatch.setattr(planner._allocate, "allocate", fails)
    src = write_csv(tmp_path / "items.csv", COLUMNS, GOOD)
    code = main(["allocate", str(src), "-o", str(tmp_path / "plans.csv"), "--summary",
                 str(tmp_path / "summary.json"), "--train-budget", str(BUDGET)])
    assert code == EXIT_USAGE
    assert "the solve failed" in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["items.csv"]


# ------------------------------------------------------------------------- the documentation
def cli_blocks() -> dict[str, str]:
    """The text blocks of docs/cli.md by title."""
    text = (ROOT / "docs" / "cli.md").read_text()
    fence = re.compile(r'^```(\w+) title="([^"]+)"\n(.*?)^```', re.M | re.S)
    return {m[2]: m[3] for m in fence.finditer(text)}


def test_cli_page_shows_what_planner_allocate_writes(tmp_path, capsys, monkeypatch):
    """The items.csv, portfolio.csv and summary.json shown in cli.md: the last two are what
    `planner allocate` writes for the first, run with the command shown (numbers to a relative
    1e-9, certificates below tolerance, the rest exactly), and it prints the lines shown."""
    blocks = cli_blocks()
    page = (ROOT / "docs" / "cli.md").read_text()
    command = re.search(r"^planner allocate items\.csv .*$", page, re.M)[0]
    (tmp_path / "items.csv").write_text(blocks["items.csv"])
    monkeypatch.chdir(tmp_path)
    code = main(command.split()[1:])
    assert code == EXIT_OK
    with open(tmp_path / "portfolio.csv", newline="") as handle:
        got = list(csv.reader(handle))
    assert_same_plans(got, list(csv.reader(blocks["portfolio.csv"].splitlines())))

    def same(g, w, key=""):
        if isinstance(w, dict):
            assert set(g) == set(w), key
            for k in w:
                same(g[k], w[k], k)
        elif isinstance(w, float) and key not in ("residual", "kkt", "gap"):
            assert math.isclose(g, w, rel_tol=1e-9), (key, g, w)
        elif key in ("residual", "kkt", "gap"):  # certificates: below tolerance
            assert g < 1e-8 and w < 1e-8, (key, g, w)
        elif key == "solves":  # how the search got there, not the answer
            assert g > 0 and w > 0
        else:
            assert g == w, (key, g, w)

    same(json.loads((tmp_path / "summary.json").read_text()),
         json.loads(blocks["summary.json"]))
    lines = capsys.readouterr().err.strip().splitlines()
    assert "\n".join(lines) in page
