import gc
import os

import jax
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


# The command line turns on JAX's persistent compilation cache (`$PLANNER_CACHE_DIR`, default
# `~/.cache/planner/jax`) for the whole process when it runs: a test (or a module-scoped
# fixture) that calls `planner._cli.main` in-process would leave it on for every later test,
# and test processes running beside each other would share one folder. Off for the whole
# session, subprocesses included; the cache has its own test, which names its folder.
os.environ["PLANNER_CACHE_DIR"] = "off"


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop every compiled program after each test module. XLA's CPU backend maps each
    executable's code and data into memory regions of their own, and JAX keeps every program
    it compiled for the life of the process: the whole suite in one process reached Linux's
    limit of 65,530 mappings per process (`vm.max_map_count`; about 10,000 after
    `tests/test_allocate.py` alone), and the next compilation died with a segmentation fault
    in `backend_compile_and_load` (96% through the suite, in `tests/test_solve.py`)."""
    yield
    jax.clear_caches()
    gc.collect()
