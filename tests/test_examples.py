"""Every script in examples/ runs, exits 0, and prints what docs/examples.md shows.

The scripts run as a user runs them (`python examples/NAME.py`, a fresh interpreter each),
two at a time. Their output is compared with the page's "Output" block after the script
(numbers to a relative 1e-4); the GPU example prints timings and its device, so its lines are
checked for shape, and for the count of optimal plans.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_docs import fenced_blocks, same_output

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
PAGE = ROOT / "docs" / "examples.md"


def shown_outputs() -> dict[str, tuple[str, str]]:
    """Example file name -> (title of its output block, the output shown)."""
    blocks = fenced_blocks(PAGE.read_text())
    shown = {}
    for (lang, _, body), (next_lang, attrs, output) in zip(blocks, blocks[1:]):
        include = re.fullmatch(r'\s*--8<-- "examples/([\w.]+)"\s*', body)
        if lang == "python" and include and next_lang == "text":
            shown[include[1]] = (attrs, output)
    return shown


@pytest.fixture(scope="module")
def runs() -> dict[str, subprocess.CompletedProcess]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def run(path):
        return path.name, subprocess.run([sys.executable, str(path)], capture_output=True,
                                         text=True, cwd=ROOT, env=env, timeout=300)

    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        return dict(pool.map(run, EXAMPLES))


def test_every_example_is_on_the_page_with_its_output():
    assert {p.name for p in EXAMPLES} == set(shown_outputs())
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_opens_with_what_it_shows_and_stays_short(path):
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# ") and len(lines[0]) > 20
    assert len(lines) <= 40


@pytest.mark.parametrize(
    "path", [p for p in EXAMPLES if p.name != "run_on_gpu.py"], ids=lambda p: p.name
)
def test_example_prints_what_the_page_shows(path, runs):
    proc = runs[path.name]
    assert proc.returncode == 0, proc.stderr
    attrs, expected = shown_outputs()[path.name]
    assert attrs == 'title="Output"'
    assert same_output(proc.stdout, expected), f"printed\n{proc.stdout}\npage shows\n{expected}"


def test_run_on_gpu_reports_its_device_and_solves_every_scenario(runs):
    import jax

    proc = runs["run_on_gpu.py"]
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    platform = jax.devices()[0].platform
    assert re.fullmatch(rf"device: {platform} \(.+\)", lines[0]), lines[0]
    assert re.fullmatch(r"plans on: .+", lines[1]), lines[1]
    assert lines[2] == "20000 of 20000 scenarios optimal"
    assert re.fullmatch(r"\d+\.\d\d s after compilation, \d+\.\d us per scenario", lines[3])


def test_sweep_counts_infeasible_rows_by_the_closed_form(runs):
    """The sweep's INFEASIBLE count, from Chinchilla's closed forms: a target at or below E,
    or one whose smallest model N_min = (A / (loss - E))^(1/alpha) exceeds the 3e10 cap."""
    e, a, alpha = 1.69, 406.4, 0.336  # Sardana et al. 2024's constants
    targets = [1.65 + i * (2.4 - 1.65) / 39 for i in range(40)]
    infeasible = sum(t <= e or (a / (t - e)) ** (1 / alpha) > 3e10 for t in targets) * 50
    line = next(s for s in runs["sweep_grid.py"].stdout.splitlines() if "infeasible:" in s)
    assert int(line.split()[0]) == infeasible == 450
    assert not any(math.isclose(t, e) for t in targets)  # no target on the boundary
