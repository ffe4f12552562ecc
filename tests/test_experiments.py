"""The trade-off reproductions: Epoch's summary table, frontiers, combinations, the allocation
rule and joint sampling, each run into a temporary folder (fast settings) and checked against
closed forms and the published tables (Villalobos & Atkinson 2023, Chen et al. 2021)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from planner import Chinchilla, imp_training_factor
from planner._techniques.sampling import SuccessLink
from planner.experiments import (
    EXPERIMENTS,
    _combine,
    allocation_rule,
    combined,
    epoch_tradeoffs,
    frontiers,
    joint_sampling,
)

HOFFMANN = Chinchilla.hoffmann2022()


def rate_point(alpha, beta, rate):
    """The Chinchilla law's closed form (Hoffmann et al. 2022), written out independently:
    (extra training, inference cut)."""
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
    for name in ("frontiers", "combined", "allocation_rule", "joint_sampling", "fit_chinchilla"):
        assert EXPERIMENTS[name] == (name, False)


ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "experiments"


def test_experiments_have_one_home():
    """Every registered experiment is a top-level script that opens with a comment saying what
    it shows and prints, and `planner reproduce` imports that very file: no second copy."""
    import importlib

    assert not (ROOT / "experiments" / "__init__.py").exists()  # scripts, not a package
    assert [p.name for p in (ROOT / "planner" / "experiments").glob("*.py")] == ["__init__.py"]
    for name, (module, _) in EXPERIMENTS.items():
        script = SCRIPTS / f"{module}.py"
        text = script.read_text()
        assert text.startswith("# "), name
        assert "Prints" in text.split('"""', 1)[0] or "prints" in text.split('"""', 1)[0], name
        assert "__main__" in text, name
        loaded = importlib.import_module(f"planner.experiments.{module}")
        assert Path(loaded.__file__).resolve() == script.resolve(), name
    # a wheel carries the same scripts inside the package
    # (read as text: tomllib is Python 3.11's, and the project supports 3.10)
    config = (ROOT / "pyproject.toml").read_text().split("\n")
    start = config.index("[tool.hatch.build.targets.wheel.force-include]")
    assert config[start + 1] == '"experiments" = "planner/experiments"'


def test_no_import_cycle_between_experiments():
    """The scripts import one another only as planner.experiments.NAME, and those imports form
    a directed acyclic graph (read from the source, a depth-first search for a back edge)."""
    import ast

    graph = {}
    for script in SCRIPTS.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, (script.name, "relative import")
                if (node.module or "").startswith("planner.experiments."):
                    deps.add(node.module.split(".")[2])
            elif isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] in ("experiments", "_spans", "_common")
                               for a in node.names), script.name
        graph[script.stem] = deps
    # the search sees real edges: the table uses the combination machinery, the combined
    # experiment the table's rows
    assert graph["epoch_tradeoffs"] >= {"_combine", "_spans"}
    assert "epoch_tradeoffs" in graph["combined"]
    state = {}

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(graph[node]):
            assert state.get(dep) != "open", " -> ".join([*path, dep])
            if dep not in state:
                visit(dep, [*path, dep])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_script_runs_on_its_own(tmp_path):
    """`python experiments/sardana.py --output DIR`, from another working folder."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, str(SCRIPTS / "sardana.py"), "--output",
                           str(tmp_path / "out")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "out" / "sardana.json").read_text())
    assert data and (tmp_path / "out" / "sardana.png").stat().st_size > 0
    assert "fraction saved" in done.stdout


# The report's summary table, typed here from Villalobos & Atkinson 2023 (the abstract and the
# table), independently of the experiment's own constants.
REPORT = {"scaling_policy": (1.2, 0.7), "pruning": (1.0, 1.0), "mcts": (1.6, 1.6),
          "pass_at_k": (3.0, 6.0), "n_at_k": (1.0, 1.45)}
REPORT_COMBINED = (2.0, 3.0)  # "realistic combined spans 2-3 OOM"
AGREE_OOM = 0.1  # rows that reproduce the report: within this on both axes
# Rows that differ, with the difference measured on the full run (planner - report, OOM) and
# the reason docs/results.md gives; a change of more than KNOWN_OOM either way fails.
KNOWN_OOM = 0.05
KNOWN = {
    # Epoch's IMP cost model is bounded by log10(1/0.2) = 0.70 OOM of training; 10% density
    # costs log10(4.5) = 0.653
    "pruning": (math.log10(4.5) - 1.0, 0.0),
    # the calibration cannot meet Jones's slope and both headlines: 1.381 at Elo -250
    "mcts": (1.381 - 1.6, 1.582 - 1.6),
    # Codex's data reach 72%; the span depends on the unstated per-sample cost growth
    "pass_at_k": (1.803 - 3.0, 3.413 - 6.0),
}


def test_epoch_table_files_and_keys(epoch):
    out, summary, data = epoch
    for suffix in ("json", "md", "png"):
        assert (out / f"epoch_tradeoffs.{suffix}").stat().st_size > 0
    for name in epoch_tradeoffs.TECHNIQUES:
        row = data[name]
        for key in ("train_span_oom", "inference_span_oom", "train_gap_oom",
                    "inference_gap_oom"):
            assert isinstance(row[key], float) and math.isfinite(row[key]), (name, key)
        assert summary[name] == (round(row["train_span_oom"], 3),
                                 round(row["inference_span_oom"], 3))


@pytest.mark.parametrize("name", sorted(REPORT))
def test_spans_against_the_report(epoch, name):
    """Each row against the report's number: within AGREE_OOM, or, for a row known to differ,
    within KNOWN_OOM of the measured difference that docs/results.md explains."""
    _, _, data = epoch
    got = (data[name]["train_span_oom"], data[name]["inference_span_oom"])
    want = REPORT[name]
    if name in KNOWN:
        for g, w, d in zip(got, want, KNOWN[name], strict=True):
            assert g - w == pytest.approx(d, abs=KNOWN_OOM), (name, g, w)
    else:
        for g, w in zip(got, want, strict=True):
            assert abs(g - w) <= AGREE_OOM, (name, g, w)


def test_combined_row_the_reports_way(epoch):
    """Inside the report's 2-3 OOM within 0.5 on both axes, built from the rows: the overtraining
    + lossless-IMP grid plus the 10@k row; the composed solver's joint optimum stays larger."""
    _, _, data = epoch
    comb = data["combined"]
    lo, hi = REPORT_COMBINED
    for key in ("train", "inference"):
        v = comb[f"{key}_span_oom"]
        assert lo - 0.5 <= v <= hi + 0.5, (key, v)
        grid = comb["overtraining_imp_grid"][f"{key}_span_oom"]
        assert v == pytest.approx(grid + data["n_at_k"][f"{key}_span_oom"], abs=1e-12)
        pair = data["scaling_policy"][f"{key}_span_oom"] + data["pruning"][f"{key}_span_oom"]
        assert comb[f"{key}_overlap_oom"] == pytest.approx(pair - grid, abs=1e-12)
        assert -0.02 <= comb[f"{key}_overlap_oom"] <= 0.2
        assert data["joint_optimum"][f"{key}_span_oom"] > hi + 1.0
    # gaps are measured to the range
    assert data["combined"]["train_gap_oom"] == 0.0


def test_overtraining_imp_grid_against_closed_form():
    """The grid's span against an envelope built from the Chinchilla closed form ΔTC(k) and
    Epoch's IMP factors (1-d)/0.2, its rate from the lower convex hull, written here."""
    a, b = 0.34, 0.28
    kmax = math.log10((a + b) / b) / a
    k = np.linspace(-1.0, kmax * 0.9999, 40001)
    dtc = np.where(k > 0, -np.log10((a + b) / a - (b / a) * 10 ** (a * np.maximum(k, 0)))
                   / b - np.maximum(k, 0), 0.0)
    densities = np.r_[0.8 ** np.arange(0, 11), 0.1]
    factors = np.where(densities < 1, (1 - densities) / 0.2, 1.0)
    xs, ys = [], []
    for d, f in zip(densities, factors, strict=True):
        xs.append(-k + math.log10(d))
        ys.append(dtc + math.log10(f))
    x, y = np.concatenate(xs), np.concatenate(ys)
    order = np.argsort(x)
    x, y = x[order], y[order]
    hull = []
    for i in range(x.size):
        while len(hull) >= 2:
            p, q = hull[-2], hull[-1]
            if (x[q] - x[p]) * (y[i] - y[p]) - (y[q] - y[p]) * (x[i] - x[p]) <= 0:
                hull.pop()
            else:
                break
        hull.append(i)
    hx, hy = x[hull], y[hull]
    slope = -np.diff(hy) / np.diff(hx)
    def at(rate):  # the hull's point where its slope crosses `rate`
        j = int(np.argmax(slope <= rate))
        return hx[j], hy[j]
    (x6, y6), (x1, y1) = at(6.0), at(1 / 6)
    grid = _combine.overtraining_imp_grid(fast=True)
    assert grid["train_span_oom"] == pytest.approx(y6 - y1, abs=0.02)
    assert grid["inference_span_oom"] == pytest.approx(x1 - x6, abs=0.02)


def test_mcts_row_is_the_reports_levels_and_the_peak_is_the_floor_switch(epoch):
    _, _, data = epoch
    mc = data["mcts"]
    assert mc["train_span_oom"] == mc["levels"]["-250.0"]["train_span_oom"]
    assert mc["inference_span_oom"] == mc["levels"]["-1500.0"]["inference_span_oom"]
    peak = mc["peak"]
    # the sweep's peak sits next to where the one-node floor hands the 6:1 end to the rate
    # bound, within one step of the sweep (20 Elo on the fast grid)
    assert abs(peak["max_train_span_elo"] - peak["switch_elo"]) <= 21.0
    assert peak["max_train_span_oom"] > mc["train_span_oom"] + 0.3
    # and it is not the sharpness bound: from 0.05 to 0.5 OOM it moves by less than 0.05
    by = [v["max_train_span_oom"] for v in peak["by_search_sharpness"].values()]
    assert max(by) - min(by) < 0.05


def test_least_squares_against_scipy():
    """The S-curve fitter (Levenberg-Marquardt, no SciPy at run time) reaches SciPy's cost."""
    from scipy.optimize import least_squares as scipy_lsq

    t, x, y = epoch_tradeoffs._sample_data(epoch_tradeoffs.CODEX_PARAMS,
                                           epoch_tradeoffs.CODEX_SAMPLES,
                                           epoch_tradeoffs.CODEX_PASS,
                                           epoch_tradeoffs.CODEX_TOKENS)
    tj, xj, yj = map(jnp.asarray, (t, x, y))

    def residual(th):
        curve = epoch_tradeoffs.PassAtKSCurve(a=th[0], A=th[1], x0=th[2], d0=jnp.exp(th[3]),
                                              d1=jnp.exp(th[3]))
        return curve.performance(tj, xj) - yj

    # from each start the experiment uses a stationary point (the two methods may end in
    # different local minima from one start), and the experiment's fit is no worse than the
    # best SciPy finds from all of them
    starts = [(0.05, -1.0, x0, lw) for x0 in (-3.0, -2.0, -1.0, 0.0) for lw in (-2.0, -1.0, 0.0)]
    best = math.inf
    for start in starts:
        mine = epoch_tradeoffs.least_squares(residual, start)
        if not np.all(np.isfinite(residual(jnp.asarray(start)))):
            assert not mine.success
            continue
        ref = scipy_lsq(lambda th: np.asarray(residual(jnp.asarray(th))), start,
                        xtol=1e-14, ftol=1e-14, gtol=1e-14)
        assert mine.grad_max < 1e-6 or not mine.success  # stationary where it claims success
        best = min(best, ref.cost)
    curve, _ = epoch_tradeoffs.fit_pass_at_k()
    theta = jnp.asarray([curve.a, curve.A, curve.x0, jnp.log(curve.d0)])
    assert 0.5 * float(jnp.sum(residual(theta) ** 2)) <= best * (1 + 1e-8)


def test_codex_table_is_chen_et_al_table_1():
    """The shipped table against Chen et al. 2021, Table 1 (the Codex rows, in percent),
    typed here a second time."""
    from planner._data import codex_table

    table = codex_table()
    published = {12e6: (2.00, 3.62, 8.58), 25e6: (3.21, 7.10, 12.89), 42e6: (5.06, 8.80, 15.55),
                 85e6: (8.22, 12.81, 22.40), 300e6: (13.17, 20.37, 36.27),
                 679e6: (16.22, 25.70, 40.95), 2.5e9: (21.36, 35.42, 59.50),
                 12e9: (28.81, 46.81, 72.31)}
    assert list(table["n_params"]) == list(published)
    np.testing.assert_allclose(np.asarray(table["pass"]),
                               np.asarray(list(published.values())) / 100, rtol=0, atol=1e-12)
    assert len(epoch_tradeoffs.CODEX_PARAMS) == 8


def test_scaling_policy_span(epoch):
    _, _, data = epoch
    sp = data["scaling_policy"]
    hi = rate_point(0.34, 0.28, 6.0)
    lo = rate_point(0.34, 0.28, 1.0 / 6.0)
    # the report's 1.2 and the closed form's one-sided numbers (+1.22 / -0.81)
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
    # Epoch's IMP training factors (1 - d)/0.2 (Villalobos & Atkinson 2023, pruning section)
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
    ell = float(_combine.loss_for_pass_at_k(law, link, 0.5, 1.0))
    assert float(link.pass_at_k(ell - 1.69, 1.0)) == pytest.approx(0.5, abs=1e-9)
    n_c, d_c = (float(v) for v in law.loss_optimal(ell))
    cuts = np.linspace(0.05, 0.9, 18)
    log_caps = math.log10(2 * n_c * _combine.TOKENS_PER_QUERY) - cuts
    options = _combine._options(law, link, np.array([1.0]), np.array([1.0]), 0.5)
    f = _combine.joint_frontier(law, log_caps, options)
    expected = math.log10(6 * n_c * d_c) + np.asarray(law.inference_cut_cost(jnp.asarray(cuts)))
    np.testing.assert_allclose(f["log_tc"], expected, atol=1e-8)
    n = n_c * 10.0**-cuts
    d = np.asarray(law.iso_loss_tokens(jnp.asarray(n), ell))
    rate = 0.34 * 406.4 * n**-0.34 / (0.28 * 410.7 * d**-0.28) - 1.0
    np.testing.assert_allclose(f["inner_rate"], rate, rtol=1e-6)
    assert f["certified"] == cuts.size


def test_combined_experiment_reports_the_report_method_row(tmp_path, epoch, capsys):
    """combined.{json,png} carry the report-method row, the same as the Epoch table's (fast
    settings in both), and the output points to docs/results.md for the joint optimum's gap."""
    combined.run(tmp_path, fast=True)
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "combined.json").read_text())["combined"]
    _, _, table = epoch
    for key in ("train_span_oom", "inference_span_oom"):
        assert data[key] == pytest.approx(table["combined"][key], abs=1e-9)
        assert data["joint_optimum"][key] > REPORT_COMBINED[1] + 1.0
    assert "joint optimum of the composed solver" in out and "see docs/results.md" in out
    assert (tmp_path / "combined.png").stat().st_size > 0


def test_overtraining_plus_mcts_adds():
    res = _combine.mcts_combinations(fast=True)
    joint = _combine._span(res["joint"])
    alone = _combine._span_safe(res["alone"])
    ot = _combine._overtraining_alone(HOFFMANN)
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
