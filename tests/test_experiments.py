"""The trade-off reproductions: Epoch's summary table, frontiers, combinations, the allocation
rule and joint sampling, each run into a temporary folder (fast settings) and checked against
closed forms and the published tables of LAWS.md."""

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

from planner import Chinchilla, imp_training_factor
from planner._techniques.sampling import SuccessLink
from planner.experiments import (
    EXPERIMENTS,
    allocation_rule,
    combined,
    epoch_tradeoffs,
    frontiers,
    joint_sampling,
)

HOFFMANN = Chinchilla.hoffmann2022()


def rate_point(alpha, beta, rate):
    """LAWS.md §1 closed form, written out independently: (extra training, inference cut)."""
    r = rate + 1.0
    k = math.log10(r * (alpha + beta) / (alpha + r * beta)) / alpha
    return math.log10((alpha + r * beta) / (alpha + beta)) / beta - k, k


@pytest.fixture(scope="module")
def epoch(tmp_path_factory):
    out = tmp_path_factory.mktemp("epoch")
    summary = epoch_tradeoffs.run(out, fast=True)
    data = json.loads((out / "epoch_tradeoffs.json").read_text())
    return out, summary, data


def test_registered():
    assert EXPERIMENTS["epoch_tradeoffs"] == ("epoch_tradeoffs", True)
    for name in ("frontiers", "combined", "allocation_rule", "joint_sampling"):
        assert EXPERIMENTS[name] == (name, False)


def test_epoch_table_files_and_keys(epoch):
    out, _, data = epoch
    for suffix in ("json", "md", "png"):
        assert (out / f"epoch_tradeoffs.{suffix}").stat().st_size > 0
    for name in ("scaling_policy", "pruning", "mcts", "pass_at_k", "n_at_k", "combined"):
        row = data[name]
        for key in ("train_span_oom", "inference_span_oom", "reported_train_span_oom",
                    "reported_inference_span_oom"):
            assert isinstance(row[key], float) and math.isfinite(row[key]), (name, key)
    # the report's table (LAWS.md §0)
    assert (data["scaling_policy"]["reported_train_span_oom"],
            data["scaling_policy"]["reported_inference_span_oom"]) == (1.2, 0.7)
    assert (data["pass_at_k"]["reported_train_span_oom"],
            data["pass_at_k"]["reported_inference_span_oom"]) == (3.0, 6.0)
    assert (data["n_at_k"]["reported_train_span_oom"],
            data["n_at_k"]["reported_inference_span_oom"]) == (1.0, 1.45)


def test_scaling_policy_span(epoch):
    _, _, data = epoch
    sp = data["scaling_policy"]
    hi = rate_point(0.34, 0.28, 6.0)
    lo = rate_point(0.34, 0.28, 1.0 / 6.0)
    # the target and LAWS.md's one-sided numbers (+1.22 / -0.81)
    assert abs(sp["train_span_oom"] - 1.22) <= 0.03
    assert sp["closed_form"]["one_sided_train_span_oom"] == pytest.approx(hi[0], abs=1e-9)
    assert sp["closed_form"]["one_sided_inference_span_oom"] == pytest.approx(hi[1], abs=1e-9)
    assert round(hi[0], 2) == 1.22 and round(hi[1], 2) == 0.81
    # through the solver's frontier, at every target: the closed form, and no effect of scale
    for target, s in sp["solver"].items():
        assert s["optimal"], target
        assert s["train_span_oom"] == pytest.approx(hi[0] - lo[0], abs=1e-5)
        assert s["inference_span_oom"] == pytest.approx(hi[1] - lo[1], abs=1e-5)
        assert s["one_sided_train_span_oom"] == pytest.approx(hi[0], abs=1e-4)
    # the window 1/6..6 reproduces the report's 0.7 inference span
    assert abs(sp["inference_span_oom"] - 0.7) < 0.01


def test_pruning_span(epoch):
    _, _, data = epoch
    pr = data["pruning"]
    assert pr["train_span_oom"] == pytest.approx(math.log10((1 - 0.1) / 0.2), abs=1e-12)
    assert abs(pr["train_span_oom"] - 0.653) <= 0.01
    assert pr["stage_train_span_oom"] == pytest.approx(pr["train_span_oom"], abs=1e-12)
    assert pr["inference_span_oom"] == pytest.approx(1.0)
    assert pr["stage_loss_change"] == pytest.approx(0.0, abs=1e-12)
    # LAWS.md §3's table of training factors
    published = {0.8: 1.00, 0.5: 2.50, 0.2: 4.00, 0.1: 4.50, 0.05: 4.75, 0.8**20: 4.94}
    for row in pr["factors"]:
        assert row["factor"] == pytest.approx(published[min(published,
                                              key=lambda d: abs(d - row["density"]))], abs=5e-3)


def test_mcts_reversal_and_collapse(epoch):
    _, _, data = epoch
    levels = data["mcts"]["levels"]
    low, high, top = levels["-1500.0"], levels["-250.0"], levels["-50.0"]
    assert low["inference_span_oom"] > low["train_span_oom"]  # low performance: more inference
    assert high["train_span_oom"] > high["inference_span_oom"]  # reversed at high performance
    assert max(top.values()) < 0.5 * min(high.values())  # collapsing near perfect play
    assert -1500 < data["mcts"]["reversal_elo"] < -250
    spans = np.asarray(data["mcts"]["train_spans"])
    assert spans[-1] < 0.1 * spans.max()  # Elo -5: almost nothing left to trade


def test_sampling_fits(epoch):
    _, _, data = epoch
    for name in ("pass_at_k", "n_at_k"):
        fit = data[name]["fit"]
        assert fit["rms_points"] < 3.0, name
        misses = [abs(p["fitted"] - p["observed"]) for p in fit["points"]]
        assert max(misses) * 100 == pytest.approx(fit["max_miss_points"])
    # pass@k: the span grows with the target (non-saturating archetype)
    levels = data["pass_at_k"]["levels"]
    spans = [levels[p]["flop"]["train_span_oom"] for p in ("0.3", "0.5", "0.9", "0.99")]
    assert all(a < b for a, b in zip(spans, spans[1:], strict=False))
    assert data["pass_at_k"]["span_growth_per_oom"] > 0


def test_window_span_against_closed_form():
    # the iso-loss curve sampled densely, its rate in closed form: the window is the formula's
    law = HOFFMANN
    n_c, _ = law.loss_optimal(2.0)
    n = np.geomspace(float(law.min_params(2.0)) * 1.0001, float(n_c), 20001)
    d = np.asarray(law.iso_loss_tokens(jnp.asarray(n), 2.0))
    r = 0.34 * 406.4 * n**-0.34 / (0.28 * 410.7 * d**-0.28)
    span = epoch_tradeoffs.window_span(np.log10(2 * n), np.log10(6 * n * d), r - 1.0)
    hi, lo = rate_point(0.34, 0.28, 6.0), rate_point(0.34, 0.28, 1 / 6)
    assert span["train_span_oom"] == pytest.approx(hi[0] - lo[0], abs=1e-5)
    assert span["inference_span_oom"] == pytest.approx(hi[1] - lo[1], abs=1e-5)
    assert span["ends"]["high_rate"]["bound"] == span["ends"]["low_rate"]["bound"] == "rate"


def test_combined_grid_against_closed_form():
    # overtraining alone through the grid machinery: TC rises by inference_cut_cost(k)
    law, link = HOFFMANN, SuccessLink.codex2021()
    ell = float(combined.loss_for_pass_at_k(law, link, 0.5, 1.0))
    assert float(link.pass_at_k(ell - 1.69, 1.0)) == pytest.approx(0.5, abs=1e-9)
    n_c, d_c = (float(v) for v in law.loss_optimal(ell))
    cuts = np.linspace(0.05, 0.9, 18)
    log_caps = math.log10(2 * n_c * combined.TOKENS_PER_QUERY) - cuts
    options = combined._options(law, link, np.array([1.0]), np.array([1.0]), 0.5)
    f = combined.joint_frontier(law, log_caps, options)
    expected = math.log10(6 * n_c * d_c) + np.asarray(law.inference_cut_cost(jnp.asarray(cuts)))
    np.testing.assert_allclose(f["log_tc"], expected, atol=1e-8)
    n = n_c * 10.0**-cuts
    d = np.asarray(law.iso_loss_tokens(jnp.asarray(n), ell))
    rate = 0.34 * 406.4 * n**-0.34 / (0.28 * 410.7 * d**-0.28) - 1.0
    np.testing.assert_allclose(f["inner_rate"], rate, rtol=1e-6)
    assert f["certified"] == cuts.size


def test_combined_spans(epoch):
    _, _, data = epoch
    comb = data["combined"]
    ot = comb["alone"]["overtraining"]
    # a joint frontier offers every plan of its parts, so it trades at least as far
    joint = comb["joint"]["overtraining + pruning + 10@k"]
    assert joint["train_span_oom"] > ot["train_span_oom"]
    assert joint["inference_span_oom"] > ot["inference_span_oom"]
    assert comb["train_span_oom"] == joint["train_span_oom"]
    # Epoch's own forms added up land in the report's 2-3 OOM
    parts = ("scaling_policy", "pruning", "n_at_k")
    assert comb["epoch_form_sum"]["train_span_oom"] == pytest.approx(
        sum(data[p]["train_span_oom"] for p in parts))


def test_overtraining_plus_mcts_adds():
    res = combined.mcts_combinations(fast=True)
    joint = combined._span(res["joint"])
    alone = combined._span_safe(res["alone"])
    ot = combined._overtraining_alone(HOFFMANN)
    # different mechanisms (node count, node cost): a Minkowski sum in log space, spans add
    assert joint["train_span_oom"] == pytest.approx(
        alone["train_span_oom"] + ot["train_span_oom"], abs=0.06)
    assert joint["inference_span_oom"] == pytest.approx(
        alone["inference_span_oom"] + ot["inference_span_oom"], abs=0.06)


def test_allocation_rule(tmp_path):
    summary = allocation_rule.run(tmp_path)
    data = json.loads((tmp_path / "allocation_rule.json").read_text())
    assert (tmp_path / "allocation_rule.png").stat().st_size > 0
    for target, r in data["chinchilla"].items():
        assert r["all_optimal"]
        share, rate = np.asarray(r["train_share"]), np.asarray(r["rate_closed_form"])
        np.testing.assert_allclose(share, 1 / (1 + rate), atol=1e-8)
        assert summary[target] == pytest.approx(0.5, abs=1e-3)
        # the frontier's multiplier is the same rate, where the cap binds
        front = np.asarray(r["rate_frontier"], float)
        big = rate > 0.05
        np.testing.assert_allclose(front[big], rate[big], rtol=1e-4)
    for check in data["power"]:
        assert check["ratio_scan"] == pytest.approx(check["p"] / check["q"], rel=2e-3)


def test_joint_sampling(tmp_path):
    joint_sampling.run(tmp_path, fast=True)
    data = json.loads((tmp_path / "joint_sampling.json").read_text())
    for target, r in data.items():
        g, one = r["joint"], r["one_sample"]
        dn, dn1 = np.asarray(g["tokens_per_param"]), np.asarray(one["tokens_per_param"])
        # counting every sample's inference pushes the model past the training optimum for the
        # loss it is trained to (closed form), and further as demand grows
        n_c, d_c = HOFFMANN.loss_optimal(jnp.asarray(g["loss"]))
        assert np.all(dn > np.asarray(d_c / n_c) * (1 + 1e-6))
        assert np.all(dn >= dn1 * (1 - 1e-6)) or np.any(np.asarray(g["n_samples"]) > 1)
        assert dn[-1] > 10 * dn[0]
        # the joint plan is never dearer than its k = 1 special case or the no-inference plan
        total = np.asarray(g["total_flops"])
        assert np.all(total <= np.asarray(one["total_flops"]) * (1 + 1e-9))
        assert np.all(total <= np.asarray(r["ignoring_inference"]["total_flops"]) * (1 + 1e-9))


def test_frontiers(tmp_path):
    frontiers.run(tmp_path, fast=True)
    data = json.loads((tmp_path / "frontiers.json").read_text())
    hi, lo = rate_point(0.34, 0.28, 6.0), rate_point(0.34, 0.28, 1 / 6)
    for ell in frontiers.LOSSES[1::2]:
        s = data["spans"][f"scaling loss {ell}"]
        assert s["train_span_oom"] == pytest.approx(hi[0] - lo[0], abs=2e-3)
    # the pruning contours are Epoch's cost model: 10% density costs F(0.1) with the final
    # retrain counted
    assert data["contours"]["pruning"]["epoch_factor_at_10pct"] == pytest.approx(
        float(imp_training_factor(0.1, variant="epoch")))
    assert (tmp_path / "frontiers.png").stat().st_size > 0
