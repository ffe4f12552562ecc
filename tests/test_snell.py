"""The FLOPs-matched comparison of Snell et al. 2024 (`planner reproduce snell`): the experiment
runs into a temporary folder, and its numbers are recomputed with SciPy from the Chinchilla and
Codex-link formulas written out here: the Beta quantiles, each level's success, the crossovers,
and the multipliers against the published 257.75 / 62.75 / 15.77."""

import json
import math
import re

import numpy as np
import pytest
from scipy import integrate, special, stats

from planner import SuccessLink
from planner.experiments import EXPERIMENTS, snell
from planner.techniques import beta_quantile, flops_matched_multiplier

# Snell et al. 2024, "Exchanging pretraining and test-time compute": M = 14 and the multiplier at
# D_inf/D_pre = 0.08, 0.40 and 11 as printed (arXiv 2408.03314).
PUBLISHED = {0.08: "257.75", 0.40: "62.75", 11.0: "15.77"}
# Hoffmann et al. 2022, App. D.2 (rounded): E, A, B, alpha, beta
CHINCHILLA = (1.69, 406.4, 410.7, 0.34, 0.28)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("snell")
    summary = snell.run(out)
    data = json.loads((out / "snell.json").read_text())["flops_matched"]
    return out, summary, data


def test_registered_outside_the_default_set():
    assert EXPERIMENTS["snell"] == ("snell", False)


def test_writes_its_three_files(result):
    out, summary, data = result
    for name in ("snell.md", "snell.json", "snell.png", "snell_joint.png"):
        assert (out / name).stat().st_size > 0
    for name in ("snell.png", "snell_joint.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "snell.md").read_text()
    assert text.startswith("# ") and "## FLOPs-matched comparison" in text
    assert "## Train-to-test jointly" in text
    assert set(summary) == {f"small wins at {r:g}" for r in PUBLISHED}


def table_rows(text: str, first_header: str) -> dict[str, list[str]]:
    """The rows of the Markdown table whose first column is `first_header`, by first cell."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def test_table_lists_the_published_multipliers(result):
    out, _, data = result
    rows = table_rows((out / "snell.md").read_text(), "D_inf/D_pre")
    for ratio, printed in PUBLISHED.items():
        assert rows[f"{ratio:g}"][0] == printed
        # the JSON holds the unrounded value, within the printed precision
        j = data["ratios"].index(ratio)
        assert abs(data["n_samples"][j] - float(printed)) <= 0.005
    # and the sweep is the formula, written out: X = M + 1.5 (D_pre/D_inf)(M - 1)
    r = np.array(data["ratios"])
    np.testing.assert_allclose(data["n_samples"], 14.0 + 1.5 * 13.0 / r, rtol=1e-13)
    assert r.min() == pytest.approx(0.01) and r.max() == pytest.approx(100.0)


def beta_parameters(n_params: float, n_tokens: float) -> tuple[float, float]:
    """Chinchilla's reducible loss and the Codex link's Beta, written out independently."""
    e, a, b, alpha, beta = CHINCHILLA
    reducible = a * n_params**-alpha + b * n_tokens**-beta
    link = SuccessLink.codex2021()
    z = float(link.intercept) + float(link.slope) * math.log(reducible)
    mean = 1.0 / (1.0 + math.exp(-z))
    kappa = float(link.concentration)
    return mean * kappa, (1.0 - mean) * kappa


@pytest.fixture(scope="module")
def betas():
    n = 2e9  # the documented setting: N = 2e9 at 20 tokens per parameter, M = 14
    return {"small": beta_parameters(n, 20 * n), "large": beta_parameters(14 * n, 20 * n)}


def test_setting_is_the_documented_one(result, betas):
    _, _, data = result
    for name in ("small", "large"):
        got = data["setting"][name]
        assert (got["alpha"], got["beta"]) == pytest.approx(betas[name], rel=1e-12)
    # both reducible losses within the Codex calibration's range, as the docstring claims
    low, high = data["setting"]["calibration_reducible_loss"]
    for name in ("small", "large"):
        assert low < data["setting"][name]["reducible_loss"] < high


@pytest.mark.parametrize("a, b", [(0.0974, 0.628), (0.163, 0.562), (0.5, 0.5), (2.0, 5.0),
                                  (0.05, 3.0), (3.0, 0.05)])
def test_beta_quantile_agrees_with_scipy(a, b):
    u = np.r_[1e-9, 1e-4, np.linspace(0.01, 0.99, 99), 1 - 1e-4, 1 - 1e-9]
    ours = np.asarray(beta_quantile(a, b, u))
    np.testing.assert_allclose(ours, stats.beta.ppf(u, a, b), rtol=1e-12, atol=1e-10)


def test_beta_quantile_keeps_relative_precision_in_both_tails():
    # the experiment's two Betas: the hardest questions' p lies far below 1e-9, the easiest
    # questions' 1 - p below 1e-4
    for a, b in ((0.0974, 0.628), (0.163, 0.562)):
        u = np.array([1e-3, 0.01, 0.1])
        low = np.asarray(beta_quantile(a, b, u))
        assert np.all(low < 1e-3)
        np.testing.assert_allclose(low, stats.beta.ppf(u, a, b), rtol=1e-12)
        high = np.asarray(beta_quantile(a, b, 1.0 - u))
        # 1 - p is the quantile of Beta(b, a) at 1 - u; p holds it to 1e-16 absolute
        np.testing.assert_allclose(1.0 - high, stats.beta.ppf(u, b, a), rtol=1e-9)


def level_mean_pass_at_1(a, b, u_low, u_high):
    """E[p | u in level] in closed form: E[p 1{q_lo < p < q_hi}] = mu [I(q; a+1, b)]."""
    q_lo, q_hi = stats.beta.ppf([u_low, u_high], a, b)
    mass = special.betainc(a + 1, b, q_hi) - special.betainc(a + 1, b, q_lo)
    return a / (a + b) * mass / (u_high - u_low)


def level_mean_best_of(a, b, u_low, u_high, x):
    """E[1 - (1 - p)^X | u in level], by adaptive quadrature of SciPy's quantile over u."""
    def f(u):
        return -math.expm1(x * math.log1p(-stats.beta.ppf(u, a, b)))

    value, _ = integrate.quad(f, u_low, u_high, epsabs=0.0, epsrel=1e-11, limit=200)
    return value / (u_high - u_low)


def test_level_success_recomputed_with_scipy(result, betas):
    _, _, data = result
    assert data["levels"] == [1, 2, 3, 4, 5]
    for i, (u_low, u_high) in enumerate(data["quantile_edges"]):
        assert (u_low, u_high) == pytest.approx((0.8 - 0.2 * i, 1.0 - 0.2 * i), abs=1e-15)
        for name in ("small", "large"):
            expected = level_mean_pass_at_1(*betas[name], u_low, u_high)
            assert data[f"{name}_pass_at_1"][i] == pytest.approx(expected, rel=1e-8)
        for ratio in PUBLISHED:
            j = data["ratios"].index(ratio)
            x = data["n_samples"][j]
            expected = level_mean_best_of(*betas["small"], u_low, u_high, x)
            assert data["small_best_of_x"][i][j] == pytest.approx(expected, rel=1e-8)
            assert data["small_wins"][i][j] == (expected > data["large_pass_at_1"][i])


def test_crossovers_are_ties(result, betas):
    """At X* the small model's best-of-X equals the large model's pass@1 (SciPy), and the
    ratio of the tie gives that X back through `flops_matched_multiplier`."""
    _, _, data = result
    for i, (u_low, u_high) in enumerate(data["quantile_edges"]):
        x_star = data["crossover_samples"][i]
        large = level_mean_pass_at_1(*betas["large"], u_low, u_high)
        assert level_mean_best_of(*betas["small"], u_low, u_high, x_star) == pytest.approx(
            large, rel=1e-7)
        r_star = data["crossover_ratio"][i]
        if r_star is None:  # a win at every ratio: X* below M
            assert x_star < 14.0
        else:
            assert float(flops_matched_multiplier(14.0, r_star)) == pytest.approx(x_star, rel=1e-9)


def test_markdown_states_each_level_winner(result):
    out, _, data = result
    rows = table_rows((out / "snell.md").read_text(), "D_inf/D_pre")
    for ratio in PUBLISHED:
        j = data["ratios"].index(ratio)
        for i, cell in enumerate(rows[f"{ratio:g}"][1:]):
            side, size = re.fullmatch(r"(small|large) \+(\S+) pp", cell).groups()
            diff = data["small_best_of_x"][i][j] - data["large_pass_at_1"][i]
            assert side == ("small" if diff > 0 else "large")
            assert float(size) == pytest.approx(abs(diff) * 100, rel=5e-3)


def test_train_to_test_rows_spend_the_budget_and_move_into_overtraining(result):
    """Each joint plan spends the budget exactly (6ND + 2N T k̄ = C, recomputed here) and is
    stationary; across demand the model shrinks, trains longer per parameter and samples
    less, and its success falls (more queries share the same budget)."""
    out, _, _ = result
    joint = json.loads((out / "snell.json").read_text())["train_to_test"]
    rows = joint["rows"]
    for r in rows:
        spent = 6 * r["n_params"] * r["n_tokens"] + 2 * r["n_params"] * r["demand"] * r[
            "mean_samples"]
        assert spent == pytest.approx(joint["compute"], rel=1e-12)
        assert np.mean(r["samples"]) == pytest.approx(r["mean_samples"], rel=1e-9)
        assert r["gradient"] <= 1e-9
    for a, b in zip(rows, rows[1:]):
        assert b["n_params"] < a["n_params"]
        assert b["tokens_per_param"] > a["tokens_per_param"]
        assert b["mean_samples"] < a["mean_samples"]
        assert b["score"] < a["score"]
