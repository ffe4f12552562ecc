"""`planner solve` at its boundaries: malformed tables, bad rows among good ones, statuses.

Most tests call `planner._cli.main` in the test process: the batch solver is compiled once per
set of columns and reused by every table with the same columns, so each run costs milliseconds.
"""

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import planner
from planner._cli import EXIT_OK, EXIT_USAGE, main

# the command line's default law, Chinchilla.sardana2024() (Sardana et al. 2024)
E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.336, 0.283
COLUMNS = ["id", "target_loss", "inference_demand", "train_budget", "inference_budget",
           "max_inference_flops_per_unit", "max_params", "max_tokens", "min_density",
           "E", "A", "B", "alpha", "beta"]
PLAN = ["n_params", "n_tokens", "train_flops", "inference_flops", "total_flops",
        "inference_flops_per_unit", "loss"]


def n_min(loss, a=A, alpha=ALPHA, e=E):
    """The smallest model that reaches `loss` with unlimited data: (A / (L - E))^(1/alpha)."""
    return (a / (loss - e)) ** (1 / alpha)


def d_min(loss, b=B, beta=BETA, e=E):
    return (b / (loss - e)) ** (1 / beta)


def loss_optimal(loss, e=E, a=A, b=B, alpha=ALPHA, beta=BETA):
    """Hoffmann et al. 2022: the least 6ND reaching `loss` is at N_c, D_c."""
    gap = loss - e
    return ((a * (1 + alpha / beta) / gap) ** (1 / alpha),
            (b * (1 + beta / alpha) / gap) ** (1 / beta))


def write_csv(path: Path, header, rows) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def row(**cells) -> list[str]:
    return [str(cells.get(c, "")) for c in COLUMNS]


# ------------------------------------------------------------------------- bad rows in a good file
# Good rows: (id, cells). Every kind of good row the table allows: a bare target, demand, caps
# that bind and caps that do not, a density floor, a row with its own law, empty optional cells.
GOOD = [
    ("plain", dict(target_loss=2.2, inference_demand=0)),
    ("demand", dict(target_loss=2.1, inference_demand=1e13)),
    ("capped", dict(target_loss=2.3, inference_demand=0, max_params=1e9)),
    ("loose", dict(target_loss=2.2, inference_demand=1e11, train_budget=1e30,
                   inference_budget=1e40, max_inference_flops_per_unit=1e20, max_params=1e15,
                   max_tokens=1e18, min_density=0.5)),
    ("inf_cap", dict(target_loss=2.2, inference_demand=0, max_params="inf")),  # no cap
    ("own_law", dict(target_loss=2.3, inference_demand=0, E=1.8172, A=482.01, B=2085.43,
                     alpha=0.3478, beta=0.3658)),
]
# Bad rows: (id, cells, status, words the message must contain besides "row <n>").
BAD = [
    ("text", dict(target_loss="abc"), "invalid_input", ["'target_loss'", "not a number"]),
    ("empty_target", dict(inference_demand=0), "invalid_input", ["'target_loss'", "empty"]),
    ("nan", dict(target_loss=2.2, inference_demand="nan"), "invalid_input",
     ["'inference_demand'", "finite"]),
    ("minus_inf", dict(target_loss=2.2, max_params="-inf"), "invalid_input",
     ["'max_params'", "> 0, or inf for no limit"]),
    ("inf_demand", dict(target_loss=2.2, inference_demand="inf"), "invalid_input",
     ["'inference_demand'", "finite"]),
    ("negative_demand", dict(target_loss=2.2, inference_demand=-5), "invalid_input",
     ["'inference_demand'", ">= 0"]),
    ("negative_size", dict(target_loss=2.2, max_params=-1e9), "invalid_input",
     ["'max_params'", "> 0"]),
    ("zero_tokens", dict(target_loss=2.2, max_tokens=0), "invalid_input", ["'max_tokens'", "> 0"]),
    ("zero_budget", dict(target_loss=2.2, train_budget=0), "invalid_input",
     ["'train_budget'", "> 0"]),
    ("negative_inference_budget", dict(target_loss=2.2, inference_budget=-1), "invalid_input",
     ["'inference_budget'", "> 0"]),
    ("zero_density", dict(target_loss=2.2, min_density=0), "invalid_input",
     ["'min_density'", "(0, 1]"]),
    ("dense_above_one", dict(target_loss=2.2, min_density=1.5), "invalid_input",
     ["'min_density'", "(0, 1]"]),
    ("alpha_zero", dict(target_loss=2.2, alpha=0), "invalid_input", ["'alpha'", "> 0"]),
    ("beta_negative", dict(target_loss=2.2, beta=-0.3), "invalid_input", ["'beta'", "> 0"]),
    ("A_inf", dict(target_loss=2.2, A="inf"), "invalid_input", ["'A'", "finite"]),
    ("E_negative", dict(target_loss=2.2, E=-1), "invalid_input", ["'E'", ">= 0"]),
    ("target_below_E", dict(target_loss=1.5), "infeasible",
     ["'target_loss'", "irreducible", "infeasible"]),
    ("target_at_E", dict(target_loss=E), "infeasible", ["'target_loss'", "irreducible"]),
    ("target_at_own_E", dict(target_loss=2.0, E=2.0), "infeasible", ["'target_loss'", "E = 2"]),
    ("params_below_n_min", dict(target_loss=2.0, max_params=0.5 * n_min(2.0)), "infeasible",
     ["'max_params'", "N_min", "infeasible"]),
    ("tokens_below_d_min", dict(target_loss=2.0, max_tokens=0.9 * d_min(2.0)), "infeasible",
     ["'max_tokens'", "D_min", "infeasible"]),
    ("caps_together", dict(target_loss=2.0, max_params=1.5 * n_min(2.0),
                           max_tokens=1.5 * d_min(2.0)),
     "infeasible", ["'max_params'", "'max_tokens'", "infeasible"]),
    ("budget_too_small", dict(target_loss=2.0, train_budget=1e20), "infeasible",
     ["'train_budget'", "infeasible"]),
    ("inference_cap_too_small", dict(target_loss=2.0, max_inference_flops_per_unit=n_min(2.0)),
     "infeasible", ["'max_inference_flops_per_unit'", "N_min", "infeasible"]),
    ("inference_budget_too_small", dict(target_loss=2.0, inference_demand=1e12,
                                        inference_budget=1e12 * n_min(2.0)),
     "infeasible", ["'inference_budget'", "infeasible"]),
    ("two_problems", dict(target_loss="x", max_tokens=-1), "invalid_input",
     ["'target_loss'", "'max_tokens'"]),
]
# Infeasible only in combination, which no closed form here detects: the token cap forces
# N >= N1 > 1.01 N_min, the inference cap N <= 1.01 N_min. The solver must call it infeasible.
N1 = (A / (2.0 - E - B * (2 * d_min(2.0)) ** -BETA)) ** (1 / ALPHA)
SOLVER_INFEASIBLE = ("solver_infeasible", dict(target_loss=2.0, max_tokens=2 * d_min(2.0),
                                               max_inference_flops_per_unit=2.02 * n_min(2.0)))


def test_solver_infeasible_case_is_infeasible():
    assert N1 > 1.2 * n_min(2.0)


def solve_file(tmp_path, name, rows, *extra) -> list[dict[str, str]]:
    """Solve a table with every column, in chunks of 8 rows (one compilation for all)."""
    src = write_csv(tmp_path / f"{name}.csv", COLUMNS, rows)
    out = tmp_path / f"{name}.out.csv"
    assert main(["solve", str(src), "-o", str(out), "--chunk-size", "8", *extra]) == EXIT_OK
    assert not out.with_name(out.name + ".parts").exists()
    return read_csv(out)


def test_bad_rows_get_their_own_status_and_good_rows_are_solved_as_alone(tmp_path):
    rng = np.random.default_rng(0)
    items = ([(i, c, "optimal", []) for i, c in GOOD] + BAD
             + [(*SOLVER_INFEASIBLE, "infeasible", ["infeasible"])])
    order = rng.permutation(len(items))
    rows = [row(id=items[k][0], **items[k][1]) for k in order]
    out = solve_file(tmp_path, "mixed", rows)  # 4 chunks: row numbers count across chunks
    assert [r["id"] for r in out] == [items[k][0] for k in order]  # order kept, none lost
    by_id = {r["id"]: (n, r) for n, r in enumerate(out, start=1)}

    for ident, _, status, words in items:
        number, result = by_id[ident]
        assert result["status"] == status, (ident, result["message"])
        if status == "optimal":
            assert result["message"] == ""
            assert all(math.isfinite(float(result[c])) for c in PLAN)
            # lifetime inference is 0 without demand; every other value is positive
            assert all(float(result[c]) > 0 for c in PLAN if c != "inference_flops")
            continue
        assert all(result[c] == "" for c in PLAN), ident  # no plan shown for a failed row
        message = result["message"]
        if ident != "solver_infeasible":
            assert f"row {number}:" in message, (ident, message)
        for word in words:
            assert word in message, (ident, word, message)
        if "'max_params'" in words and "N_min" in words:
            assert f"{n_min(2.0):.6g}" in message  # the bound itself, for the user to act on

    # every input cell comes back verbatim
    for result, cells in zip(out, rows, strict=True):
        assert [result[c] for c in COLUMNS] == cells

    # each good row, solved alone (a one-row table) gives the same bytes
    for ident, cells, _, _ in items[: len(GOOD)]:
        alone = solve_file(tmp_path, f"alone_{ident}", [row(id=ident, **cells)])
        assert alone == [by_id[ident][1]], ident


def test_good_rows_match_closed_forms(tmp_path):
    out = {r["id"]: r for r in solve_file(tmp_path, "good", [row(id=i, **c) for i, c in GOOD])}
    # no demand, no binding cap: the training optimum of Hoffmann et al. 2022
    n_c, d_c = loss_optimal(2.2)
    np.testing.assert_allclose(float(out["plain"]["n_params"]), n_c, rtol=1e-7)
    np.testing.assert_allclose(float(out["plain"]["n_tokens"]), d_c, rtol=1e-7)
    np.testing.assert_allclose(float(out["loose"]["loss"]), 2.2, rtol=1e-10)
    # a binding parameter cap: N at the cap, D on the iso-loss curve
    capped = out["capped"]
    np.testing.assert_allclose(float(capped["n_params"]), 1e9, rtol=1e-9)
    d_iso = (B / (2.3 - E - A * 1e9**-ALPHA)) ** (1 / BETA)
    np.testing.assert_allclose(float(capped["n_tokens"]), d_iso, rtol=1e-7)
    # a row with its own law (Besiroglu et al. 2024, Table 1)
    n_c, d_c = loss_optimal(2.3, 1.8172, 482.01, 2085.43, 0.3478, 0.3658)
    np.testing.assert_allclose(float(out["own_law"]["n_params"]), n_c, rtol=1e-7)
    np.testing.assert_allclose(float(out["own_law"]["n_tokens"]), d_c, rtol=1e-7)
    # with demand: the lifetime optimum of Sardana et al. 2024, N* minimising
    # 6 N D(N) + 2 T N along the iso-loss curve D(N), found here on a fine grid
    n = np.geomspace(n_min(2.1) * 1.0001, loss_optimal(2.1)[0], 200_001)
    cost = 6 * n * (B / (2.1 - E - A * n**-ALPHA)) ** (1 / BETA)
    cost += 2 * 1e13 * n
    demand = out["demand"]
    np.testing.assert_allclose(float(demand["n_params"]), n[np.argmin(cost)], rtol=1e-3)
    assert float(demand["total_flops"]) <= cost.min() * (1 + 1e-9)
    assert float(demand["n_params"]) < loss_optimal(2.1)[0]  # demand shrinks the model
    for r in out.values():
        # inference_flops is lifetime: demand x per unit, and with training the total
        np.testing.assert_allclose(
            float(r["inference_flops"]),
            float(r["inference_demand"]) * float(r["inference_flops_per_unit"]), rtol=1e-12)
        np.testing.assert_allclose(float(r["total_flops"]),
                                   float(r["train_flops"]) + float(r["inference_flops"]),
                                   rtol=1e-12)
        np.testing.assert_allclose(float(r["inference_flops_per_unit"]),
                                   2 * float(r["n_params"]), rtol=1e-12)
        np.testing.assert_allclose(float(r["train_flops"]),
                                   6 * float(r["n_params"]) * float(r["n_tokens"]), rtol=1e-12)


def test_empty_optional_cells_mean_no_constraint(tmp_path):
    # the same scenario with empty cap cells and without the cap columns at all
    a = solve_file(tmp_path, "with_columns", [row(id="x", target_loss=2.2,
                                                  inference_demand=1e12)])
    src = write_csv(tmp_path / "bare.csv", ["target_loss", "inference_demand"], [[2.2, 1e12]])
    out = tmp_path / "bare.out.csv"
    assert main(["solve", str(src), "-o", str(out)]) == EXIT_OK
    b = read_csv(out)
    assert a[0]["status"] == b[0]["status"] == "optimal"
    for c in PLAN:
        np.testing.assert_allclose(float(a[0][c]), float(b[0][c]), rtol=1e-9)


# ------------------------------------------------------------------------------- malformed files
def _malformed(tmp_path):
    good = [["2.2", "0"]] * 40
    return {
        "missing_target_column": ("inference_demand\n0\n", "target_loss"),
        "misspelt_column": ("target_los,inference_demand\n2.2,0\n", "target_los"),
        "ragged_row_late": ("target_loss,inference_demand\n"
                            + "".join(",".join(r) + "\n" for r in good) + "2.2,0,7\n",
                            "line 42"),
        "ragged_short_row": ("target_loss,inference_demand\n2.2\n", "line 2"),
        "empty_file": ("", "empty"),
        "blank_header": ("\n2.2,0\n", "header"),
        "duplicate_column": ("target_loss,target_loss\n2.2,2.3\n", "duplicate"),
        "bad_quoting": ('target_loss,inference_demand\n"2.2"x,0\n', "line 2"),
        "not_text": (b"target_loss\n\xff\xfe2.2\n", "UTF-8"),
        "score_without_sampling": ("target_loss,target_score\n2.2,0.5\n", "target_score"),
        # the demand column's old name: it must not pass through as demand 0
        "old_demand_column": ("target_loss,inference_tokens\n2.2,1e12\n",
                              "column 'inference_tokens' is now 'inference_demand'"),
    }


@pytest.mark.parametrize("case", sorted(_malformed(Path("."))))
def test_malformed_file_stops_before_any_work(tmp_path, capsys, case):
    text, words = _malformed(tmp_path)[case]
    src = tmp_path / "in.csv"
    (src.write_bytes if isinstance(text, bytes) else src.write_text)(text)
    out = tmp_path / "out.csv"
    # a chunk of 4 rows: a table that were read lazily would have solved chunks before line 42
    code = main(["solve", str(src), "-o", str(out), "--chunk-size", "4"])
    assert code == EXIT_USAGE
    assert os.listdir(tmp_path) == ["in.csv"]  # no output, no parts, no temporary file
    err = capsys.readouterr().err
    assert "error" in err and words in err, err


def test_missing_file(tmp_path, capsys):
    out = tmp_path / "out.csv"
    assert main(["solve", str(tmp_path / "nope.csv"), "-o", str(out)]) == EXIT_USAGE
    assert "no such file" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_misspelt_column_suggests_the_known_one(tmp_path, capsys):
    src = write_csv(tmp_path / "in.csv", ["target_loss", "max_parmas"], [[2.2, 1e9]])
    assert main(["solve", str(src), "-o", str(tmp_path / "o.csv")]) == EXIT_USAGE
    assert "did you mean 'max_params'" in capsys.readouterr().err


def test_output_may_not_overwrite_input(tmp_path):
    src = write_csv(tmp_path / "in.csv", ["target_loss"], [[2.2]])
    before = src.read_bytes()
    assert main(["solve", str(src), "-o", str(src)]) == EXIT_USAGE
    assert src.read_bytes() == before


def test_subprocess_exit_code_and_no_output(tmp_path):
    # the installed entry point: a malformed table exits 2 before JAX is even used
    src = write_csv(tmp_path / "in.csv", ["target_los"], [[2.2]])
    out = tmp_path / "out.csv"
    done = subprocess.run([sys.executable, "-m", "planner._cli", "solve", str(src), "-o",
                           str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "target_los" in done.stderr
    assert not out.exists()


def test_cpu_devices_must_be_positive_and_set_before_jax_starts(tmp_path, capsys):
    src = write_csv(tmp_path / "in.csv", ["target_loss"], [[2.2]])
    out = tmp_path / "out.csv"
    with pytest.raises(SystemExit) as stop:
        main(["solve", str(src), "-o", str(out), "--cpu-devices", "0"])
    assert stop.value.code == EXIT_USAGE
    assert "--cpu-devices must be >= 1" in capsys.readouterr().err
    # in this process JAX has started: a count can no longer be given, and nothing is written
    # (a count other than the one it started with: an earlier test may have started it with
    # one device per core, which JAX accepts again as no change)
    import jax
    import jax.numpy as jnp

    jnp.zeros(1).block_until_ready()
    other = str(jax.local_device_count() + 1)
    assert main(["solve", str(src), "-o", str(out), "--cpu-devices", other]) == EXIT_USAGE
    assert "--cpu-devices: cpu_devices must run before JAX starts" in capsys.readouterr().err
    assert not out.exists()


def test_header_only_table_gives_header_only_output(tmp_path):
    src = write_csv(tmp_path / "in.csv", ["target_loss", "inference_demand"], [])
    out = tmp_path / "out.csv"
    assert main(["solve", str(src), "-o", str(out)]) == EXIT_OK
    header = out.read_text().splitlines()
    assert header == ["target_loss,inference_demand,n_params,n_tokens,train_flops,"
                      "inference_flops,total_flops,inference_flops_per_unit,loss,status,"
                      "message"]


def test_blank_lines_and_byte_order_mark_are_tolerated(tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes("\ufefftarget_loss,inference_demand\n2.2,0\n\n2.3,0\n\n".encode())
    out = tmp_path / "out.csv"
    assert main(["solve", str(src), "-o", str(out)]) == EXIT_OK
    rows = read_csv(out)
    assert [r["target_loss"] for r in rows] == ["2.2", "2.3"]
    assert [r["status"] for r in rows] == ["optimal", "optimal"]


# ----------------------------------------------------------------------- objectives and techniques
def test_loss_objective_rows(tmp_path):
    header = ["train_budget", "inference_demand"]
    src = write_csv(tmp_path / "in.csv", header,
                    [["5.76e23", "0"], ["", "0"], ["-1", "0"], ["1e-30", "0"], ["1e30", "0"]])
    out = tmp_path / "out.csv"
    assert main(["solve", str(src), "-o", str(out), "--objective", "loss"]) == EXIT_OK
    rows = read_csv(out)
    assert [r["status"] for r in rows] == ["optimal", "invalid_input", "invalid_input",
                                           "optimal", "optimal"]
    assert "row 2: column 'train_budget' is empty" in rows[1]["message"]
    assert "row 3: column 'train_budget' must be > 0" in rows[2]["message"]
    for r in (rows[0], rows[3], rows[4]):
        # Hoffmann et al. 2022 eq. (4): N* = G (C/6)^(b/(a+b)), D* = (C/6)^(a/(a+b)) / G
        c = float(r["train_budget"]) / 6
        g = (ALPHA * A / (BETA * B)) ** (1 / (ALPHA + BETA))
        np.testing.assert_allclose(float(r["n_params"]), g * c ** (BETA / (ALPHA + BETA)),
                                   rtol=1e-7)
        np.testing.assert_allclose(float(r["n_tokens"]), c ** (ALPHA / (ALPHA + BETA)) / g,
                                   rtol=1e-7)


def test_pruning_rows_use_their_own_law_in_every_stage(tmp_path):
    """With pruning, a row's law columns reach the pruning stage too (its penalty is priced in
    the row's A N^-alpha): a row giving Besiroglu et al.'s constants solves exactly as the
    same row, with empty law cells, under `--law besiroglu2024`."""
    header = ["target_loss", "inference_demand", "E", "A", "B", "alpha", "beta"]
    besiroglu = [1.8172, 482.01, 2085.43, 0.3478, 0.3658]  # Besiroglu et al. 2024, Table 1

    def run(name, cells, *extra):
        src = write_csv(tmp_path / f"{name}.csv", header, [[2.3, 1e15, *cells]])
        out = tmp_path / f"{name}.out.csv"
        assert main(["solve", str(src), "-o", str(out), "--pruning", *extra]) == EXIT_OK
        return read_csv(out)[0]

    own = run("own", besiroglu)
    preset = run("preset", [""] * 5, "--law", "besiroglu2024")
    default = run("default", [""] * 5)
    assert own["status"] == preset["status"] == default["status"] == "optimal", own["message"]
    plan = ["n_params", "n_tokens", "density", "total_flops", "loss"]
    assert [own[c] for c in plan] == [preset[c] for c in plan]
    assert float(own["density"]) < 1  # pruning is worth something with this much demand
    assert own["n_params"] != default["n_params"]  # and the law matters


def test_sampling_solves_score_targets(tmp_path):
    """`--sampling` builds the repeated-sampling stage and meets each row's target score."""
    src = write_csv(tmp_path / "in.csv", ["target_score", "inference_demand"],
                    [[0.5, 1e9], [1.5, 1e9]])
    out = tmp_path / "out.csv"
    assert main(["solve", str(src), "-o", str(out), "--sampling"]) == EXIT_OK
    rows = read_csv(out)
    assert rows[0]["status"] == "optimal", rows[0]["message"]
    assert float(rows[0]["score"]) >= 0.5 * (1 - 1e-9)
    assert float(rows[0]["n_samples"]) >= 1
    assert rows[1]["status"] == "invalid_input"
    assert "row 2: column 'target_score' must lie in (0, 1)" in rows[1]["message"]


def test_verifier_flags_add_the_verifiers_flops(tmp_path):
    """`--selection reward_model --verifier-params N_V --verifier-accuracy A`: each plan meets
    its score and pays (2 N + 2 N_V) k FLOP per query, from its own N and k."""
    nv = 1e9
    src = write_csv(tmp_path / "in.csv", ["target_score", "inference_demand"], [[0.35, 1e12]])
    out = tmp_path / "out.csv"
    flags = ["--sampling", "--selection", "reward_model", "--verifier-params", str(nv),
             "--verifier-accuracy", "0.9"]
    assert main(["solve", str(src), "-o", str(out), *flags]) == EXIT_OK
    plan = read_csv(out)[0]
    assert plan["status"] == "optimal", plan["message"]
    n, k = float(plan["n_params"]), float(plan["n_samples"])
    assert k > 1 and float(plan["score"]) == pytest.approx(0.35, rel=1e-9)
    per_query = (2 * n + 2 * nv) * k
    assert float(plan["inference_flops_per_unit"]) == pytest.approx(per_query, rel=1e-15)
    assert float(plan["inference_flops"]) == pytest.approx(1e12 * per_query, rel=1e-15)
    assert float(plan["total_flops"]) == pytest.approx(
        float(plan["train_flops"]) + 1e12 * per_query, rel=1e-15)


def test_sampling_flags_build_the_stage():
    from planner import Chinchilla
    from planner._cli import _stages, build_parser

    def stage(*flags):
        args = build_parser().parse_args(["solve", "in.csv", "-o", "out.csv", *flags])
        return _stages(args, Chinchilla.sardana2024())[-1]

    plain = stage("--sampling")
    assert (plain.selection, float(plain.verifier_params), plain.verifier_accuracy) == (
        "verifier", 0.0, None)
    rm = stage("--sampling", "--selection", "reward_model", "--verifier-params", "7e9",
               "--verifier-accuracy", "0.8")
    assert (rm.selection, float(rm.verifier_params), float(rm.verifier_accuracy)) == (
        "reward_model", 7e9, 0.8)
    filtered = stage("--sampling", "--selection", "filter", "--plateau", "0.4")
    assert (filtered.selection, float(filtered.plateau)) == ("filter", 0.4)
    assert stage("--sampling", "--selection", "majority").selection == "majority"


@pytest.mark.parametrize("command", ["solve", "allocate"])
@pytest.mark.parametrize("flags, message", [
    (["--verifier-params", "1e9"], "--verifier-params set up repeated sampling: add --sampling"),
    (["--sampling", "--verifier-params", "-1"], "--verifier-params must be finite and >= 0"),
    (["--sampling", "--verifier-params", "nan"], "--verifier-params must be finite and >= 0"),
    (["--sampling", "--selection", "reward_model"], "needs --verifier-accuracy"),
    (["--sampling", "--selection", "reward_model", "--verifier-accuracy", "1.5"],
     "--verifier-accuracy must lie in (0, 1]"),
    (["--sampling", "--selection", "reward_model", "--verifier-accuracy", "0"],
     "--verifier-accuracy must lie in (0, 1]"),
    (["--sampling", "--verifier-accuracy", "0.9"],
     "--verifier-accuracy is used by --selection reward_model only"),
    (["--sampling", "--selection", "majority", "--verifier-params", "1e9"],
     "--selection majority uses no verifier"),
    (["--sampling", "--plateau", "0.5"], "--plateau is used by --selection filter only"),
    (["--sampling", "--selection", "filter", "--plateau", "0"], "--plateau must lie in (0, 1]"),
])
def test_sampling_flags_are_refused_before_solving(tmp_path, capsys, command, flags, message):
    src = write_csv(tmp_path / "in.csv", ["target_score"], [[0.5]])
    out = tmp_path / "out.csv"
    extra = ["--summary", str(tmp_path / "summary.json")] if command == "allocate" else []
    if "--sampling" not in flags:  # a score column would be refused first, for its own reason
        src = write_csv(tmp_path / "in.csv", ["target_loss"], [[2.2]])
    assert main([command, str(src), "-o", str(out), *extra, *flags]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err, err
    assert not out.exists()


def test_sardana_table_through_the_command_line(tmp_path):
    """The six rows of Sardana et al. (2024)'s table (`test_solve.SARDANA_TABLE`)
    through `planner solve` with its default law: N*, D* and lifetime FLOP within 1e-6
    relative of the published 7-digit numbers; T = 0 gives the training optimum."""
    from test_solve import SARDANA_TABLE

    src = write_csv(tmp_path / "sardana.csv", ["target_loss", "inference_demand"],
                    [[ell, t] for ell, t, *_ in SARDANA_TABLE])
    out = tmp_path / "plans.csv"
    assert main(["solve", str(src), "-o", str(out)]) == EXIT_OK
    rows = read_csv(out)
    assert len(rows) == len(SARDANA_TABLE)
    for got, (_, t, n_c, d_c, n_star, d_star, total, _) in zip(rows, SARDANA_TABLE, strict=True):
        assert got["status"] == "optimal"
        for column, published in (("n_params", n_star), ("n_tokens", d_star),
                                  ("total_flops", total)):
            assert abs(float(got[column]) / published - 1) <= 1e-6, (column, got, published)
        if t == 0:
            assert abs(float(got["n_params"]) / n_c - 1) <= 1e-6
            assert abs(float(got["n_tokens"]) / d_c - 1) <= 1e-6


# --------------------------------------------------------------------------- commands and messages
def test_version_and_python_m_planner(capsys):
    import importlib.metadata

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"planner {importlib.metadata.version('planner')}"
    done = subprocess.run([sys.executable, "-m", "planner", "--version"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("planner "), done.stderr


def test_reproduce_help_lists_every_experiment_and_the_default_set(capsys):
    from planner.experiments import EXPERIMENTS

    with pytest.raises(SystemExit):
        main(["reproduce", "--help"])
    text = capsys.readouterr().out
    defaults = [n for n, (_, default) in EXPERIMENTS.items() if default]
    for name, (_, default) in EXPERIMENTS.items():
        line = next(x for x in text.splitlines() if x.strip().startswith(name))
        assert ("[default]" in line) == default, line
        assert len(line.split(":", 1)[1].strip()) > 10, line  # a description, not just a name
    assert f"runs the default set: {', '.join(defaults)}" in " ".join(text.split())


@pytest.mark.parametrize("name", ["out.xlsx", "out", "out.CSV.txt"])
def test_unknown_output_suffix_is_refused_before_any_work(tmp_path, capsys, name):
    src = write_csv(tmp_path / "in.csv", ["target_loss"], [[2.2]])
    assert main(["solve", str(src), "-o", str(tmp_path / name)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "unknown output suffix" in err and ".csv, .parquet or .pq" in err, err
    assert os.listdir(tmp_path) == ["in.csv"]


def test_parquet_output_without_pyarrow_is_refused_before_solving(tmp_path, capsys,
                                                                  monkeypatch):
    import planner._sweep

    src = write_csv(tmp_path / "in.csv", ["target_loss"], [[2.2]])
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # import fails

    def never(*args, **kwargs):
        raise AssertionError("solved before refusing")

    monkeypatch.setattr(planner._sweep, "run_sweep", never)
    assert main(["solve", str(src), "-o", str(tmp_path / "out.parquet")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert 'writing Parquet needs pyarrow: pip install -e ".[parquet]"' in err, err
    assert os.listdir(tmp_path) == ["in.csv"]


def test_score_target_without_sampling_says_to_add_it(tmp_path, capsys):
    src = write_csv(tmp_path / "in.csv", ["target_score"], [[0.5]])
    assert main(["solve", str(src), "-o", str(tmp_path / "out.csv")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "'target_score'" in err and "add --sampling" in err, err


def test_semicolon_separated_file_is_named_as_such(tmp_path, capsys):
    src = tmp_path / "in.csv"
    src.write_text("target_loss;inference_demand\n2.2;0\n")
    assert main(["solve", str(src), "-o", str(tmp_path / "out.csv")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "semicolon-separated" in err and "'target_loss;inference_demand'" in err, err


def test_summaries_count_in_words(tmp_path, capsys):
    src = write_csv(tmp_path / "one.csv", ["target_loss"], [[2.2]])
    assert main(["solve", str(src), "-o", str(tmp_path / "one_out.csv")]) == EXIT_OK
    err = capsys.readouterr().err
    assert "planner solve: 1 scenario -> " in err and ": 1 optimal" in err, err
    empty = write_csv(tmp_path / "empty.csv", ["target_loss"], [])
    assert main(["solve", str(empty), "-o", str(tmp_path / "empty_out.csv")]) == EXIT_OK
    err = capsys.readouterr().err
    assert "has no scenarios; wrote the header to" in err, err
    assert not any(line.rstrip().endswith(":") for line in err.splitlines()), err


def test_plans_far_outside_the_fitted_range_are_flagged(tmp_path, capsys):
    from planner._sweep import EXTRAPOLATION_FACTOR, PRESET_RANGES

    # the example: a target 1e-4 above E, certified optimal at an absurd scale
    src = write_csv(tmp_path / "in.csv", ["target_loss"], [[E + 1e-4], [2.2]])
    out = tmp_path / "out.csv"
    assert main(["solve", str(src), "-o", str(out)]) == EXIT_OK
    far, near = read_csv(out)
    fitted = PRESET_RANGES["sardana2024"]
    assert far["status"] == "optimal" and near["status"] == "optimal"
    assert float(far["n_params"]) > EXTRAPOLATION_FACTOR * fitted.n_params
    ratio = float(far["n_params"]) / fitted.n_params
    assert far["message"].startswith(f"extrapolated: n_params {float(far['n_params']):.3g} is "
                                     f"{ratio:.3g}x the largest model"), far["message"]
    assert "Hoffmann et al. 2022" in far["message"]
    assert float(near["n_params"]) < EXTRAPOLATION_FACTOR * fitted.n_params
    assert near["message"] == ""
    err = capsys.readouterr().err
    assert "warning: 1 plan of 2 extrapolates" in err, err
    # a row with its own law is not judged by the preset's range
    own = write_csv(tmp_path / "own.csv", ["target_loss", "E", "A", "B", "alpha", "beta"],
                    [[E + 1e-4, E, A, B, ALPHA, BETA * (1 + 1e-12)]])
    assert main(["solve", str(own), "-o", str(tmp_path / "own_out.csv")]) == EXIT_OK
    assert read_csv(tmp_path / "own_out.csv")[0]["message"] == ""


def test_frontier_command(tmp_path, capsys):
    out = tmp_path / "frontier.csv"
    assert main(["frontier", "--target-loss", "2.1", "--points", "6", "-o", str(out)]) == EXIT_OK
    rows = read_csv(out)
    assert len(rows) == 6 and all(r["status"] == "optimal" for r in rows)
    caps = [float(r["max_inference_flops_per_unit"]) for r in rows]
    n_c, _ = loss_optimal(2.1)
    assert caps[0] == pytest.approx(1.05 * 2 * n_min(2.1), rel=1e-12)
    assert caps[-1] == pytest.approx(2 * n_c, rel=1e-12)
    train = [float(r["train_flops"]) for r in rows]
    assert all(a > b for a, b in zip(train, train[1:]))  # a looser cap never costs more
    for r, cap in zip(rows, caps):
        assert float(r["loss"]) == pytest.approx(2.1, rel=1e-9)
        assert 2 * float(r["n_params"]) <= cap * (1 + 1e-9)
    # at the loosest cap the frontier meets the training optimum of Hoffmann et al. (flat
    # there: the cost to within 1e-9, the size, at the cap's edge, to the solver's tolerance)
    n_c, d_c = loss_optimal(2.1)
    assert float(rows[-1]["train_flops"]) == pytest.approx(6 * n_c * d_c, rel=1e-9)
    assert float(rows[-1]["n_params"]) == pytest.approx(n_c, rel=1e-4)
    assert "6 inference caps" in capsys.readouterr().err
    assert main(["frontier", "--target-loss", "1.5", "-o", str(out)]) == EXIT_USAGE
    assert "irreducible loss E = 1.69" in capsys.readouterr().err


def test_frontier_command_in_dollars(tmp_path, capsys):
    """`planner frontier --objective dollars`: caps on inference dollars per generated token
    from the cheapest serving of a 1.05 N_min model to that of the training optimum; the first
    point is that small model, the last the training-FLOP optimum of the closed form (training
    dollars are FLOP at a price), and every point is `planner.frontier`'s."""
    out = tmp_path / "dollars.csv"
    serving = ["--train-hardware", "H100", "--serve-hardware", "H100", "--max-latency", "0.03",
               "--context-tokens", "1250", "--prompt-tokens", "1000", "--output-tokens", "250"]
    assert main(["frontier", "--target-loss", "2.1", "--objective", "dollars", "--points", "5",
                 *serving, "-o", str(out)]) == EXIT_OK
    rows = read_csv(out)
    assert len(rows) == 5 and all(r["status"] == "optimal" for r in rows)
    caps = [float(r["max_inference_dollars_per_unit"]) for r in rows]
    n = [float(r["n_params"]) for r in rows]
    assert n[0] == pytest.approx(1.05 * n_min(2.1), rel=1e-6)
    # the training optimum is flat: its cost to 1e-9, its size to the solver's tolerance
    n_c, d_c = loss_optimal(2.1)
    assert n[-1] == pytest.approx(n_c, rel=1e-4)
    h100 = planner.Hardware.nvidia_h100_sxm()
    per_flop = float(h100.price_per_hour) / (3600 * float(h100.peak_flops) * float(h100.mfu))
    assert float(rows[-1]["train_dollars"]) == pytest.approx(per_flop * 6 * n_c * d_c, rel=1e-9)
    train = [float(r["train_dollars"]) for r in rows]
    assert all(a > b for a, b in zip(train, train[1:]))
    for r, cap in zip(rows, caps):
        assert float(r["inference_dollars_per_unit"]) <= cap * (1 + 1e-9)
    model = planner.Pipeline(
        planner.Pretraining(planner.Chinchilla.sardana2024()),
        planner.Deployment(train=h100, serve=h100, prompt_tokens=4.0, context_tokens=1250.0))
    line = planner.frontier(model, planner.Scenario(target_loss=2.1, max_latency=0.03),
                            np.array(caps), objective="dollars")
    np.testing.assert_allclose(line.allocation.n_params, n, rtol=1e-12)
    assert "5 inference caps" in capsys.readouterr().err
    assert main(["frontier", "--target-loss", "2.1", "--objective", "dollars",
                 "-o", str(out)]) == EXIT_USAGE
    assert "needs --train-hardware and --serve-hardware" in capsys.readouterr().err
    assert main(["frontier", "--target-loss", "2.1", "--max-dollars", "1e-6",
                 "-o", str(out)]) == EXIT_USAGE
    assert "with --objective compute give --min-flops/--max-flops" in capsys.readouterr().err


def test_plot_command(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    src = write_csv(tmp_path / "in.csv", ["target_loss", "inference_demand"],
                    [[2.2, 0], [2.1, 1e12], [2.0, 1e13], [-1, 0]])
    plans = tmp_path / "plans.csv"
    assert main(["solve", str(src), "-o", str(plans)]) == EXIT_OK
    capsys.readouterr()
    figure = tmp_path / "plans.png"
    assert main(["plot", str(plans), "-o", str(figure)]) == EXIT_OK
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "3 views of 3 plans" in capsys.readouterr().err
    assert main(["plot", str(plans), "-o", str(tmp_path / "xy.svg"), "--x", "n_params",
                 "--y", "loss"]) == EXIT_OK
    assert (tmp_path / "xy.svg").read_text().lstrip().startswith("<?xml")
    assert main(["plot", str(plans), "-o", str(figure), "--x", "size", "--y", "loss"]) \
        == EXIT_USAGE
    assert "no column 'size'" in capsys.readouterr().err
    assert main(["plot", str(src), "-o", str(figure)]) == EXIT_USAGE
    assert "no 'status' column" in capsys.readouterr().err
    assert main(["plot", str(plans), "-o", str(tmp_path / "fig.bmp")]) == EXIT_USAGE
    assert "unknown figure suffix '.bmp'" in capsys.readouterr().err


def _fit_json(path: Path, laws: list[tuple[float, ...]]) -> Path:
    """A FIT.json whose bootstrap holds `laws` (E, A, B, alpha, beta each)."""
    import json

    names = ("E", "A", "B", "alpha", "beta")
    columns = {k: [law[i] for law in laws] for i, k in enumerate(names)}
    record = {k: float(np.median(v)) for k, v in columns.items()}
    record.update(standard_errors={k: float(np.std(v, ddof=1)) for k, v in columns.items()},
                  ci95={k: [min(v), max(v)] for k, v in columns.items()}, n_runs=10,
                  dropped=[], huber_delta=1e-3, n_starts=1, n_bootstrap=len(laws),
                  objective=0.0, bootstrap=columns,
                  fitted_range={"n_params": [1e8, 1e10], "n_tokens": [1e9, 1e11]})
    path.write_text(json.dumps(record))
    return path


def test_solve_quantile_is_the_quantile_of_the_plans_under_each_law(tmp_path, capsys):
    laws = [(E, A, B, ALPHA, BETA), (E + 0.02, A, B, ALPHA, BETA), (E - 0.03, A * 1.1, B, ALPHA,
                                                                     BETA * 1.01)]
    fit_json = _fit_json(tmp_path / "FIT.json", laws)
    scenarios = [[2.2, 0], [2.1, 1e12], [1.67, 0]]  # the last: below two laws' E
    src = write_csv(tmp_path / "in.csv", ["target_loss", "inference_demand"], scenarios)
    out = tmp_path / "q.csv"
    assert main(["solve", str(src), "-o", str(out), "--law-file", str(fit_json),
                 "--quantile", "0.75"]) == EXIT_OK
    got = read_csv(out)
    # the same scenarios under each law, as rows with their own law columns
    each = write_csv(tmp_path / "each.csv", ["target_loss", "inference_demand", "E", "A", "B",
                                             "alpha", "beta"],
                     [[*s, *law] for s in scenarios[:2] for law in laws])
    assert main(["solve", str(each), "-o", str(tmp_path / "each_out.csv")]) == EXIT_OK
    plans = read_csv(tmp_path / "each_out.csv")
    for i, row in enumerate(got[:2]):
        assert row["status"] == "optimal" and row["message"] == ""
        for col in PLAN:
            values = [float(p[col]) for p in plans[3 * i:3 * i + 3]]
            assert float(row[col]) == pytest.approx(np.quantile(values, 0.75), rel=1e-9), col
    assert got[2]["status"] == "infeasible"
    assert got[2]["message"].startswith("2 of 3 bootstrap laws: infeasible (law 1: row 3: ")
    assert "3 scenarios" in capsys.readouterr().err
    assert main(["solve", str(src), "-o", str(out), "--quantile", "0.5"]) == EXIT_USAGE
    assert "give --law-file" in capsys.readouterr().err
    assert main(["solve", str(each), "-o", str(out), "--law-file", str(fit_json),
                 "--quantile", "0.5"]) == EXIT_USAGE
    assert "give a law per row" in capsys.readouterr().err
    assert main(["solve", str(src), "-o", str(out), "--law-file", str(fit_json),
                 "--quantile", "1.5"]) == EXIT_USAGE
    assert "--quantile must lie in [0, 1]" in capsys.readouterr().err


def _runs_csv(path: Path, n_runs: int = 24) -> Path:
    rng = np.random.default_rng(3)
    n = np.exp(rng.uniform(np.log(7e7), np.log(1.6e10), n_runs))
    d = n * np.exp(rng.uniform(np.log(2.0), np.log(200.0), n_runs))
    loss = (E + A * n ** -ALPHA + B * d ** -BETA) * np.exp(0.01 * rng.standard_normal(n_runs))
    return write_csv(path, ["n_params", "n_tokens", "loss"], zip(n, d, loss))


def test_fit_without_bootstrap_prints_no_intervals_and_draws_its_figure(tmp_path, capsys):
    runs = _runs_csv(tmp_path / "runs.csv")
    assert main(["fit", str(runs), "-o", str(tmp_path / "bad.json"), "--bootstrap", "1"]) \
        == EXIT_USAGE
    assert "--bootstrap must be 0 (no intervals) or at least 2, got 1" in capsys.readouterr().err
    args = ["fit", str(runs), "-o", str(tmp_path / "FIT.json"), "--bootstrap", "0"]
    if __import__("importlib").util.find_spec("matplotlib"):
        args += ["--plot", str(tmp_path / "fit.png")]
    assert main(args) == EXIT_OK
    captured = capsys.readouterr()
    assert "nan" not in captured.out and "interval" not in captured.out, captured.out
    assert len(captured.out.splitlines()) == 5
    assert "no intervals without bootstrap resamples" in captured.err
    if "--plot" in args:
        assert (tmp_path / "fit.png").read_bytes()[:4] == b"\x89PNG"
    bad = tmp_path / "bad.csv"
    bad.write_text("n_params,n_tokens,loss\n1e8,2e9,3.1\n1e9,x,2.5\n")
    assert main(["fit", str(bad), "-o", str(tmp_path / "F.json")]) == EXIT_USAGE
    assert "row 2 (line 3): column 'n_tokens' is not a number ('x')" in capsys.readouterr().err


def test_fit_warns_of_intervals_spanning_orders_of_magnitude(tmp_path, capsys, monkeypatch):
    import planner._fit as fitting

    runs = _runs_csv(tmp_path / "runs.csv")
    real_fit = fitting.fit
    seen = {}

    def quick_fit(*args, on_progress=None, **kwargs):
        # a few starts: the warning, not the optimiser, is under test
        out = real_fit(*args, starts=fitting.ChinchillaForm().starts()[::450],
                       on_progress=on_progress, **kwargs)
        seen["intervals"] = out.interval(0.95)
        return out

    monkeypatch.setattr(fitting, "fit", quick_fit)
    assert main(["fit", str(runs), "-o", str(tmp_path / "FIT.json"), "--bootstrap", "8",
                 "--progress"]) == EXIT_OK
    err = capsys.readouterr().err
    assert "refitted 8/8 bootstrap resamples" in err
    for name, (low, high) in seen["intervals"].items():
        wide = high / low >= 10
        assert (f"warning: the 95% interval of {name}," in err) == wide, (name, low, high, err)


# ---------------------------------------------------------------------------------- file paths
def _solve_both_ways(tmp_path, monkeypatch, src, *flags) -> tuple[bytes, bytes]:
    """The output of `planner solve` through pyarrow and through the csv module."""
    import planner._arrowio as arrowio

    outputs = []
    for fast in (True, False):
        monkeypatch.setattr(arrowio, "AVAILABLE", fast)
        out = tmp_path / f"out_{fast}.csv"
        assert main(["solve", str(src), "-o", str(out), "--chunk-size", "4", *flags]) == EXIT_OK
        outputs.append(out.read_bytes())
    return outputs[0], outputs[1]


def test_pyarrow_and_csv_module_paths_write_the_same_bytes(tmp_path, monkeypatch):
    pytest.importorskip("pyarrow")
    rows = [row(id=f"id {i}", target_loss=2.0 + 0.05 * i, inference_demand=10.0 ** (i + 8))
            for i in range(7)]
    rows += [row(id="ünï", target_loss="abc"), row(id="blank", inference_demand=0),
             row(id="tiny", target_loss=E + 1e-4, inference_demand=0),
             row(id="below", target_loss=1.5, max_params=1e9),
             row(id="mixed", target_loss=" 2.2", inference_demand="1e12 ")]
    src = write_csv(tmp_path / "in.csv", COLUMNS, rows)
    fast, slow = _solve_both_ways(tmp_path, monkeypatch, src)
    assert fast == slow
    text = fast.decode()
    assert '"' in text  # messages with commas are quoted, the same way on both paths
    assert "extrapolated" in text and "invalid_input" in text and "infeasible" in text
    # a quoted table is read by the csv module on both paths, and written the same
    quoted = write_csv(tmp_path / "quoted.csv", ["id", "target_loss"],
                       [['say "hi", twice', 2.2], ["line\nbreak", 2.3], ["plain", 2.4]])
    fast, slow = _solve_both_ways(tmp_path, monkeypatch, quoted)
    assert fast == slow
    assert read_csv(tmp_path / "out_True.csv")[1]["id"] == "line\nbreak"


def _float_cases() -> np.ndarray:
    rng = np.random.default_rng(5)
    return np.concatenate([
        rng.lognormal(0, 30, 20000) * rng.choice([-1, 1], 20000),
        10.0 ** rng.uniform(-10, 20, 20000), np.round(rng.uniform(0, 1e6, 2000)),
        rng.standard_normal(20000).view(np.int64).view(np.float64),
        10.0 ** np.arange(-30, 30), [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, 2.0 ** 60,
                                     1.7976931348623157e308, 1.9999999999994695, 2.0, 1e16 - 2,
                                     123456789012345.6, 9999999999.5, 1e10, 1e-6, 9.99e-7,
                                     1e-5, 3e-7, -1.5e-7, 100.0, 0.1]])


def test_float_text_is_the_shortest_that_reads_back():
    """Oracle: `float` reads each text back as the same double, its significant digits are as
    many as `repr`'s (the shortest), and the notation follows the documented ranges."""
    from planner._table import format_floats

    values = _float_cases()
    texts = format_floats(values)
    for value, text in zip(values.tolist(), texts, strict=True):
        if not math.isfinite(value):
            assert text == ""
            continue
        assert float(text) == value and str(math.copysign(1, float(text)))[0] == \
            str(math.copysign(1, value))[0], (value, text)
        mantissa = text.lstrip("-").partition("e")[0]
        want = repr(abs(value)).partition("e")[0].replace(".", "").lstrip("0").rstrip("0")
        assert mantissa.replace(".", "").lstrip("0").rstrip("0") == want, (value, text)
        positional = value == 0 or 1e-6 <= abs(value) < 1e10
        assert ("e" not in text) == positional, (value, text)
        assert not text.endswith(".0") and ("e" in text or "." not in text or
                                             not text.endswith("0")), (value, text)
    # worked by hand from the definition
    assert texts[-13:] == ["1.9999999999994695", "2", "9.999999999999998e+15",
                           "1.234567890123456e+14", "9999999999.5", "1e+10", "0.000001",
                           "9.99e-7", "0.00001", "3e-7", "-1.5e-7", "100", "0.1"]


def test_arrow_float_text_is_the_python_paths():
    arrowio = pytest.importorskip("planner._arrowio")
    if not arrowio.AVAILABLE:
        pytest.skip("pyarrow is not installed")
    from planner._table import format_floats

    values = _float_cases()
    assert arrowio.format_floats(values).to_pylist() == format_floats(values)


def test_compiled_solver_is_cached_between_runs(tmp_path):
    """The second run loads the compiled solver the first kept, runs it (the file is left as
    it was: a program that failed to run would have been compiled and written again) and
    writes the same bytes as a run with no cache at all (each run in its own process, with the
    command line's default devices: one per core). No run imports optax, which only the
    optax phases and `allocate` use (a tenth of a second of every command line's start)."""
    from planner._stored import SUFFIX

    src = write_csv(tmp_path / "in.csv", ["target_loss", "inference_demand"],
                    [[2.2, 1e12], [1.95, 3e15], [2.5, 0]])
    cache = tmp_path / "cache"

    def kept():  # a program written again is a new file (it is renamed into place)
        return {p.name: (p.stat().st_ino, p.read_bytes()) for p in cache.rglob(f"*{SUFFIX}")}

    outputs, states = [], []
    for i, folder in enumerate([cache, cache, "off"]):
        out = tmp_path / f"out{i}.csv"
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "planner", "solve",
                               str(src), "-o", str(out)], capture_output=True, text=True,
                              timeout=300, env={**os.environ, "PLANNER_CACHE_DIR": str(folder)})
        assert done.returncode == 0, done.stderr[-2000:]
        imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                    if line.startswith("import time:")}
        assert "jax" in imported and "optax" not in imported
        outputs.append(out.read_bytes())
        states.append(kept())
    assert len(states[0]) == 1 and states[1] == states[0]
    assert outputs[0] == outputs[1] == outputs[2]
