"""Traced solvers kept on disk (`planner._stored`): a loaded program computes what the traced
one computes, bit for bit, for every law it is given, and a bad or unwritable store only costs
a trace."""

import equinox as eqx
import jax
import numpy as np
import pytest

from planner._laws import Chinchilla
from planner._solve import Solver
from planner._stored import available, fingerprint
from planner._table import batch_inputs, make_solver

pytestmark = pytest.mark.skipif(not available(), reason="flatbuffers is not installed")

LAW = Chinchilla.from_preset("sardana2024")
# the same law with other coefficients: the same program, other numbers
OTHER = eqx.tree_at(lambda law: (law.E, law.A), LAW, (np.float64(1.8), np.float64(500.0)))


def inputs(law, n=256, seed=0):
    rng = np.random.default_rng(seed)
    values = {"target_loss": float(law.E) + rng.uniform(0.05, 0.8, n),
              "inference_demand": 10.0 ** rng.uniform(9, 15, n)}
    return batch_inputs(values, np.zeros(n, dtype=bool), size=n, dtype=np.float64, law=law)


def run(fn, args):
    return {k: np.asarray(v) for k, v in fn(*args).items()}


def assert_identical(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def programs(folder):
    return sorted((folder / "programs").glob("*.jaxexport"))


def no_trace(*args, **kwargs):
    raise AssertionError("traced again instead of loading the stored program")


def test_a_stored_program_is_the_traced_one_and_loads_without_tracing(tmp_path, monkeypatch):
    args = inputs(LAW)
    plain = run(make_solver(LAW, (), "compute"), args)
    assert (plain["status"] == 0).all()
    assert_identical(run(make_solver(LAW, (), "compute", store=tmp_path), args), plain)
    assert len(programs(tmp_path)) == 1
    # a later process: a new solver of the same model loads the file
    monkeypatch.setattr(jax.export, "export", no_trace)
    assert_identical(run(make_solver(LAW, (), "compute", store=tmp_path), args), plain)


def test_the_law_is_an_argument_of_the_program_not_a_constant(tmp_path, monkeypatch):
    """One stored program serves every law of the same form: the coefficients are read when
    it runs, so another law's plans are that law's (the plain solver's, bit for bit)."""
    run(make_solver(LAW, (), "compute", store=tmp_path), inputs(LAW))
    monkeypatch.setattr(jax.export, "export", no_trace)
    args = inputs(OTHER)
    stored = run(make_solver(OTHER, (), "compute", store=tmp_path), args)
    monkeypatch.undo()
    plain = run(make_solver(OTHER, (), "compute"), args)
    assert_identical(stored, plain)
    assert not np.allclose(stored["n_params"], run(make_solver(LAW, (), "compute"), args)[
        "n_params"], equal_nan=True)
    assert len(programs(tmp_path)) == 1


def test_another_solver_configuration_is_another_program(tmp_path):
    args = inputs(LAW)
    run(make_solver(LAW, (), "compute", store=tmp_path), args)
    few = run(make_solver(LAW, (), "compute", Solver(max_steps=2), store=tmp_path), args)
    assert len(programs(tmp_path)) == 2
    assert_identical(few, run(make_solver(LAW, (), "compute", Solver(max_steps=2)), args))
    assert (few["status"] != 0).any()  # two Newton steps certify fewer plans


def test_a_damaged_file_is_traced_again_and_rewritten(tmp_path):
    args = inputs(LAW)
    plain = run(make_solver(LAW, (), "compute"), args)
    run(make_solver(LAW, (), "compute", store=tmp_path), args)
    (path,) = programs(tmp_path)
    path.write_bytes(path.read_bytes()[:100])
    assert_identical(run(make_solver(LAW, (), "compute", store=tmp_path), args), plain)
    assert len(path.read_bytes()) > 100


def test_a_store_that_cannot_be_written_only_costs_a_trace(tmp_path):
    blocked = tmp_path / "store"
    blocked.write_text("a file where the folder would be")
    args = inputs(LAW)
    assert_identical(run(make_solver(LAW, (), "compute", store=blocked), args),
                     run(make_solver(LAW, (), "compute"), args))


def test_fingerprint_names_structure_static_fields_and_values():
    base = fingerprint(LAW, Solver())
    assert base == fingerprint(LAW, Solver())
    assert base != fingerprint(OTHER, Solver())  # a value
    assert base != fingerprint(LAW, Solver(max_steps=3))  # a static field
    assert base != fingerprint((LAW,), Solver())  # the structure
