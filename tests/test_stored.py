"""Compiled solvers kept on disk whole (`shard_batch(..., store=)`, `planner._stored`): a
loaded program computes what the traced one computes, bit for bit; it is named by everything it
closes over, so another law or solver configuration is another program; a damaged file or a
store that cannot be written only costs a compile."""

import equinox as eqx
import jax
import numpy as np

from planner._laws import Chinchilla
from planner._shard import shard_batch
from planner._solve import Solver
from planner._stored import SUFFIX, fingerprint
from planner._table import batch_inputs, make_solver, solver_key

LAW = Chinchilla.from_preset("sardana2024")
# the same law with other coefficients
OTHER = eqx.tree_at(lambda law: (law.E, law.A), LAW, (np.float64(1.8), np.float64(500.0)))


def inputs(law, n=256, seed=0):
    rng = np.random.default_rng(seed)
    values = {"target_loss": float(law.E) + rng.uniform(0.05, 0.8, n),
              "inference_demand": 10.0 ** rng.uniform(9, 15, n)}
    return batch_inputs(values, np.zeros(n, dtype=bool), size=n, dtype=np.float64, law=law)


def solver(law, folder, solver_=Solver()):
    """`planner solve`'s solver of `law` on this process's devices, kept in `folder`."""
    return shard_batch(make_solver(law, (), "compute", solver_),
                       store=(solver_key(law, (), "compute", solver_), folder))


def run(fn, args):
    return {k: np.asarray(v) for k, v in fn(*args).items()}


def assert_identical(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def programs(folder):
    return sorted((folder / "programs").glob(f"*{SUFFIX}"))


def no_trace(*args, **kwargs):
    raise AssertionError("traced again instead of loading the stored program")


def test_a_stored_program_is_the_plain_one_and_loads_without_tracing(tmp_path, monkeypatch):
    args = inputs(LAW)
    plain = run(shard_batch(make_solver(LAW, (), "compute")), args)
    assert (plain["status"] == 0).all()
    assert_identical(run(solver(LAW, tmp_path), args), plain)
    assert len(programs(tmp_path)) == 1
    # a later process: a new solver of the same model loads the file, traces nothing
    monkeypatch.setattr(jax, "make_jaxpr", no_trace)
    assert_identical(run(solver(LAW, tmp_path), args), plain)


def test_another_law_or_configuration_is_another_program(tmp_path):
    args = inputs(LAW)
    run(solver(LAW, tmp_path), args)
    other = run(solver(OTHER, tmp_path), args)
    assert_identical(other, run(shard_batch(make_solver(OTHER, (), "compute")), args))
    assert not np.allclose(other["n_params"], run(solver(LAW, tmp_path), args)["n_params"])
    few = run(solver(LAW, tmp_path, Solver(max_steps=2)), args)
    assert_identical(few, run(shard_batch(make_solver(LAW, (), "compute",
                                                      Solver(max_steps=2))), args))
    assert (few["status"] != 0).any()  # two Newton steps certify fewer plans
    assert len(programs(tmp_path)) == 3


def test_a_damaged_file_is_compiled_again_and_rewritten(tmp_path):
    args = inputs(LAW)
    plain = run(shard_batch(make_solver(LAW, (), "compute")), args)
    run(solver(LAW, tmp_path), args)
    (path,) = programs(tmp_path)
    path.write_bytes(path.read_bytes()[:100])
    assert_identical(run(solver(LAW, tmp_path), args), plain)
    assert len(path.read_bytes()) > 100


def test_a_stored_program_that_cannot_run_is_compiled_again(tmp_path, monkeypatch):
    """XLA can load a file and still fail to run it (a program it had itself loaded from a
    cache serialises without its code, see below): the first run of a loaded program is
    checked, and a failure removes the file and compiles the program afresh."""
    import planner._stored as stored

    args = inputs(LAW)
    plain = run(shard_batch(make_solver(LAW, (), "compute")), args)
    run(solver(LAW, tmp_path), args)
    (path,) = programs(tmp_path)
    real = stored.load

    def broken(file):
        program, consts, tree = real(file)

        def fails(*a):
            raise jax.errors.JaxRuntimeError("NOT_FOUND: Function fusion not found")

        return fails, consts, tree

    monkeypatch.setattr(stored, "load", broken)
    assert_identical(run(solver(LAW, tmp_path), args), plain)
    monkeypatch.undo()
    assert programs(tmp_path) == [path]  # written again
    assert_identical(run(solver(LAW, tmp_path), args), plain)


def test_a_store_that_cannot_be_written_only_costs_a_compile(tmp_path):
    blocked = tmp_path / "store"
    blocked.write_text("a file where the folder would be")
    args = inputs(LAW)
    assert_identical(run(solver(LAW, blocked), args),
                     run(shard_batch(make_solver(LAW, (), "compute")), args))


def test_the_folder_keeps_the_programs_used_last_within_its_size(tmp_path, monkeypatch):
    """Stale programs are never loaded, only left behind: saving one trims the folder to
    `MAX_BYTES`, removing the files used longest ago first; loading a program marks it used."""
    import os

    import planner._stored as stored

    args = inputs(LAW)
    run(solver(OTHER, tmp_path / "probe"), args)  # the size OTHER's program will take
    (probe,) = programs(tmp_path / "probe")
    run(solver(LAW, tmp_path), args)
    (law_program,) = programs(tmp_path)
    stale = []
    for i in range(3):  # older to newer, all used after LAW's program
        fake = law_program.with_name(f"stale-{i}{SUFFIX}")
        fake.write_bytes(bytes(1000))
        os.utime(fake, ns=(0, 10**12 + (i + 1) * 10**9))
        stale.append(fake)
    os.utime(law_program, ns=(0, 10**12))
    run(solver(LAW, tmp_path), args)  # loaded: now the one used last
    assert law_program.stat().st_mtime_ns > 2 * 10**12
    budget = law_program.stat().st_size + probe.stat().st_size + 1500
    monkeypatch.setattr(stored, "MAX_BYTES", budget)
    run(solver(OTHER, tmp_path), args)  # saved: the folder trimmed to one stale file
    kept = programs(tmp_path)
    assert len(kept) == 3 and law_program in kept and stale[-1] in kept
    assert not stale[0].exists() and not stale[1].exists()
    assert sum(p.stat().st_size for p in kept) <= budget


def test_a_program_served_by_jax_persistent_cache_is_not_kept(tmp_path):
    """XLA serialises an executable it loaded from JAX's persistent compilation cache without
    its code: `compile_to_keep` says not to keep one (two processes sharing a JAX cache; the
    second is served by it)."""
    script = (
        "import sys, jax, jax.numpy as jnp\n"
        "from planner._stored import compile_to_keep\n"
        f"jax.config.update('jax_compilation_cache_dir', {str(tmp_path / 'jax')!r})\n"
        "jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)\n"
        "jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)\n"
        "f = jax.jit(lambda x: jnp.sin(x) * jnp.arange(64.0) + 1)\n"
        "compiled, keep = compile_to_keep(f.lower(jnp.zeros(64)))\n"
        "print(keep)\n")
    import subprocess
    import sys

    kept = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           check=True, timeout=300).stdout.split()[-1] for _ in range(2)]
    assert kept == ["True", "False"]


def test_fingerprint_names_structure_static_fields_and_values():
    base = fingerprint(LAW, Solver())
    assert base == fingerprint(LAW, Solver())
    assert base != fingerprint(OTHER, Solver())  # a value
    assert base != fingerprint(LAW, Solver(max_steps=3))  # a static field
    assert base != fingerprint((LAW,), Solver())  # the structure
