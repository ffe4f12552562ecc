"""`planner allocate CLASSES --test-time`: samples per class of queries from the command line,
against the closed-form water-filling optimum (`test_testtime.water_filling`), with bad rows,
an infeasible budget, refused options and files that are never half written."""

import json
import math

import numpy as np
import pytest
from scipy import optimize
from test_cli import read_csv, write_csv
from test_testtime import water_filling

from planner._cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main

COLUMNS = ["name", "weight", "pass_at_1", "sample_cost"]
ROWS = [("easy", 0.3, 0.6, 1.0), ("medium", 0.4, 0.12, 1.0), ("hard", 0.2, 0.01, 2.0),
        ("hopeless", 0.1, 0.0, 1.0), ("unknown", 0.2, "", 1.0)]


def run(tmp_path, rows, *flags, plans="plans.csv"):
    src = write_csv(tmp_path / "classes.csv", COLUMNS, rows)
    out, summary = tmp_path / plans, tmp_path / "summary.json"
    code = main(["allocate", str(src), "--test-time", "-o", str(out), "--summary",
                 str(summary), *flags])
    assert not list(tmp_path.glob("*.parts")) and not list(tmp_path.glob(".*.tmp"))
    found = json.loads(summary.read_text()) if summary.exists() else None
    return code, (read_csv(out) if out.exists() else None), found


def test_plans_and_summary_match_the_water_filling_optimum(tmp_path):
    code, plans, summary = run(tmp_path, ROWS, "--sample-budget", "6")
    assert code == EXIT_OK
    good = ROWS[:4]
    p = np.array([r[2] for r in good])
    w = np.array([r[1] for r in good])
    c = np.array([r[3] for r in good])
    k, score, price = water_filling(p, w, c, 6.0)
    assert [row["status"] for row in plans] == ["optimal"] * 4 + ["invalid_input"]
    assert "row 5: column 'pass_at_1' is empty" in plans[4]["message"]
    assert plans[4]["n_samples"] == "" and plans[4]["score"] == ""
    np.testing.assert_allclose([float(r["n_samples"]) for r in plans[:4]], k, rtol=1e-12)
    assert summary["status"] == "optimal" and summary["message"] == ""
    assert summary["score"] == pytest.approx(score, rel=1e-12)
    assert summary["prices"]["sample_budget"] == pytest.approx(price, rel=1e-10)
    assert summary["budgets"] == {"sample_budget": 6.0}
    assert summary["n_items"] == 5 and summary["n_invalid"] == 1

    def uniform_at(budget):
        """The uniform plan's samples per class and score at an average budget."""
        samples = budget * w.sum() / (w * c).sum()
        return samples, np.sum(w * -np.expm1(np.log1p(-p) * samples)) / w.sum()

    uniform_k, uniform = uniform_at(6.0)
    assert summary["uniform_samples"] == pytest.approx(uniform_k, rel=1e-14)
    assert summary["uniform_score"] == pytest.approx(uniform, rel=1e-12)
    assert summary["uniform_score"] < summary["score"] and summary["efficiency"] > 1
    # each class's score is best-of-k with a perfect verifier at its samples
    np.testing.assert_allclose([float(r["score"]) for r in plans[:4]],
                               -np.expm1(np.log1p(-p) * k), rtol=1e-12, atol=1e-300)
    assert summary["objective"] == summary["score"]
    # the efficiency: the budget at which uniform sampling reaches the adaptive score, over 6
    needed = optimize.brentq(lambda b: uniform_at(b)[1] - score, 6.0, 1e6, xtol=1e-14,
                             rtol=1e-15)
    assert summary["efficiency"] == pytest.approx(needed / 6.0, rel=1e-8)
    assert summary["usage"] == {"sample_budget": pytest.approx(6.0, rel=1e-12)}
    assert summary["residual"] <= 1e-12 and summary["kkt"] <= 1e-9
    # a class table fixes the model and has no demand: the FLOP totals are null, not absent
    assert summary["train_flops"] is None and summary["inference_flops"] is None


def test_a_budget_below_one_sample_is_infeasible(tmp_path):
    code, plans, summary = run(tmp_path, ROWS, "--sample-budget", "0.9")
    assert code == EXIT_FAILED
    assert summary["status"] == "infeasible" and "below one sample" in summary["message"]
    assert summary["score"] is None and summary["efficiency"] is None
    assert [row["status"] for row in plans][:4] == ["infeasible"] * 4


@pytest.mark.parametrize("flags, words", [
    ((), "needs --sample-budget"),
    (("--sample-budget", "-2"), "must be finite and > 0"),
    (("--sample-budget", "4", "--train-budget", "1e21"), "--train-budget belong to"),
    (("--sample-budget", "4", "--objective", "loss"), "--objective loss belong to"),
])
def test_refused_before_solving(tmp_path, capsys, flags, words):
    code, plans, summary = run(tmp_path, ROWS, *flags)
    assert code == EXIT_USAGE and plans is None and summary is None
    assert words in capsys.readouterr().err


def test_sample_budget_without_test_time_is_refused(tmp_path, capsys):
    src = write_csv(tmp_path / "items.csv", ["target_loss"], [(2.3,)])
    code = main(["allocate", str(src), "-o", str(tmp_path / "p.csv"), "--summary",
                 str(tmp_path / "s.json"), "--sample-budget", "4"])
    assert code == EXIT_USAGE and "add --test-time" in capsys.readouterr().err


def test_every_class_invalid(tmp_path):
    code, plans, summary = run(tmp_path, [("a", 1.0, 2.0, 1.0), ("b", -1.0, 0.5, 1.0)],
                               "--sample-budget", "3")
    assert code == EXIT_FAILED and summary["status"] == "invalid_input"
    assert "every class is invalid" in summary["message"]
    assert all(math.isnan(float(r["n_samples"] or "nan")) for r in plans)


def test_a_reward_model_sets_the_accuracy(tmp_path):
    code, plans, summary = run(tmp_path, ROWS, "--sample-budget", "6", "--selection",
                               "reward_model", "--verifier-accuracy", "0.8")
    assert code == EXIT_OK
    good = ROWS[:4]
    p, w, c = (np.array([r[j] for r in good]) for j in (2, 1, 3))
    k, score, price = water_filling(p, w, c, 6.0, a=0.8)
    np.testing.assert_allclose([float(r["n_samples"]) for r in plans[:4]], k, rtol=1e-12)
    assert summary["score"] == pytest.approx(score, rel=1e-12)
    assert summary["prices"]["sample_budget"] == pytest.approx(price, rel=1e-10)


@pytest.mark.parametrize("flags, words", [
    (("--selection", "majority"), "--selection verifier or reward_model"),
    (("--selection", "reward_model"), "needs --verifier-accuracy"),
    (("--verifier-accuracy", "0.5"), "is the accuracy of --selection reward_model"),
    (("--verifier-params", "1e9"), "--verifier-params belong to"),
])
def test_selection_flags_refused(tmp_path, capsys, flags, words):
    code, _, _ = run(tmp_path, ROWS, "--sample-budget", "4", *flags)
    assert code == EXIT_USAGE and words in capsys.readouterr().err
