"""Reproductions of published results: one module per result, each writing a Markdown table, a
machine-readable JSON file and a PNG figure into an output folder.

Run one with `planner reproduce NAME --output DIR` (or `python -m planner.experiments.NAME
--output DIR`), the default set with `planner reproduce`, or everything with
`planner reproduce all`. This package is the experiments' only home: it ships with planner, so
`planner reproduce` works from any install, and the data the experiments read ship in
`planner/data/`.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

# name -> (module, in the default set)
EXPERIMENTS: dict[str, tuple[str, bool]] = {
    "sardana": ("sardana", True),
    "epoch_tradeoffs": ("epoch_tradeoffs", True),
    "frontiers": ("frontiers", False),
    "combined": ("combined", False),
    "allocation_rule": ("allocation_rule", False),
    "joint_sampling": ("joint_sampling", False),
    "fit_chinchilla": ("fit_chinchilla", False),
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
    output.mkdir(parents=True, exist_ok=True)
    for n in names:
        start = time.perf_counter()
        module = importlib.import_module(f"{__name__}.{EXPERIMENTS[n][0]}")
        summary = module.run(output)
        print(f"[{n}] done in {time.perf_counter() - start:.1f} s: {summary}")
    return 0
