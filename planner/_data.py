"""The measurements shipped with the package (`planner/data/`, sources and licences in its
README): Epoch AI's extraction of the Chinchilla runs, Sardana et al.'s MPT runs and the Codex
HumanEval table."""

from __future__ import annotations

import csv
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"

CHINCHILLA_RUNS = "chinchilla_fig4_extracted.csv"
"""Hoffmann et al. 2022, Figure 4, as extracted by Epoch AI (Besiroglu et al. 2024)."""
MPT_RUNS = "mpt_overtraining_runs.csv"
"""Sardana et al. 2024, `trainingresults.csv` of their repository (Apache-2.0)."""
CODEX_TABLE = "codex_humaneval.csv"
"""Chen et al. 2021, Table 1: HumanEval pass@1, @10, @100 of Codex 12M to 12B."""


def data_file(name: str) -> Path:
    """The path of a shipped data file; `FileNotFoundError` naming it if it is missing."""
    path = DATA_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"planner's data file {name!r} is missing from {DATA_DIR}")
    return path


def codex_table() -> dict[str, tuple]:
    """Chen et al. 2021, Table 1, Codex rows: `n_params` and pass@1, @10, @100 (fractions),
    smallest model first."""
    with data_file(CODEX_TABLE).open(newline="") as f:
        rows = list(csv.DictReader(f))
    return {
        "model": tuple(r["model"] for r in rows),
        "n_params": tuple(float(r["n_params"]) for r in rows),
        "samples": (1.0, 10.0, 100.0),
        "pass": tuple((float(r["pass_at_1"]), float(r["pass_at_10"]), float(r["pass_at_100"]))
                      for r in rows),
    }
