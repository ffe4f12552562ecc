import jax
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True)
def _no_compilation_cache(monkeypatch):
    """The command line turns on JAX's persistent compilation cache (`$PLANNER_CACHE_DIR`,
    default `~/.cache/planner/jax`) for the whole process when it runs: a test that calls
    `planner._cli.main` in-process would leave it on for every later test, and processes
    running beside each other would share one folder. Tests compile into their own process;
    the cache has its own test, which names its folder."""
    monkeypatch.setenv("PLANNER_CACHE_DIR", "off")
