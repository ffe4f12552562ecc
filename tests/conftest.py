import os

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


# The command line turns on JAX's persistent compilation cache (`$PLANNER_CACHE_DIR`, default
# `~/.cache/planner/jax`) for the whole process when it runs: a test (or a module-scoped
# fixture) that calls `planner._cli.main` in-process would leave it on for every later test,
# and test processes running beside each other would share one folder. Off for the whole
# session, subprocesses included; the cache has its own test, which names its folder.
os.environ["PLANNER_CACHE_DIR"] = "off"
