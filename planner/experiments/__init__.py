"""The registry of `planner reproduce`: each name runs one script of the repository's top-level
`experiments/` folder, which writes a Markdown table, a machine-readable JSON file and a PNG
figure into an output folder.

The scripts are the experiments' one home. `python experiments/NAME.py --output DIR` runs one
as a script; `planner reproduce NAME --output DIR` imports the same file as
`planner.experiments.NAME` and calls its `run(output)`; the default set runs with
`planner reproduce`, everything with `planner reproduce all`. In a checkout (and an editable
install) this package's `__path__` is the top-level `experiments/` folder; a wheel carries the
scripts inside this package (`force-include` in pyproject.toml), so `planner reproduce` works
from any install. Scripts import one another only as `planner.experiments.NAME`, and
`tests/test_experiments.py` checks that those imports form no cycle. The data they read ship in
`planner/data/`.
"""
from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
SCRIPTS = _HERE if (_HERE / "sardana.py").is_file() else _HERE.parents[1] / "experiments"
"""The folder holding the experiment scripts: this package's own in a wheel, the repository's
top-level `experiments/` in a checkout or an editable install."""
if SCRIPTS != _HERE:
    __path__ = [*__path__, str(SCRIPTS)]  # noqa: F821 (a package's __path__ is set by import)

# name -> (module, in the default set)
EXPERIMENTS: dict[str, tuple[str, bool]] = {
    "sardana": ("sardana", True),
    "epoch_tradeoffs": ("epoch_tradeoffs", True),
    "frontiers": ("frontiers", False),
    "combined": ("combined", False),
    "allocation_rule": ("allocation_rule", False),
    "joint_sampling": ("joint_sampling", False),
    "fit_chinchilla": ("fit_chinchilla", False),
    "snell": ("snell", False),
}


def run(name: str, output: Path) -> int:
    """Run experiment `name` ('default', 'all' or one name) into `output`; an exit code."""
    if name == "all":
        names = list(EXPERIMENTS)
    elif name == "default":
        names = [n for n, (_, default) in EXPERIMENTS.items() if default]
    elif name in EXPERIMENTS:
        names = [name]
    else:
        choices = ", ".join(["default", "all", *EXPERIMENTS])
        print(f"planner reproduce: unknown experiment {name!r}; choose one of {choices}",
              file=sys.stderr)
        return 2
    if not (SCRIPTS / "sardana.py").is_file():
        print(f"planner reproduce: the experiment scripts are missing (looked in {SCRIPTS}); "
              "install planner from its repository or a wheel built from it", file=sys.stderr)
        return 2
    output.mkdir(parents=True, exist_ok=True)
    for n in names:
        start = time.perf_counter()
        module = importlib.import_module(f"{__name__}.{EXPERIMENTS[n][0]}")
        summary = module.run(output)
        print(f"[{n}] done in {time.perf_counter() - start:.1f} s: {summary}")
    return 0
