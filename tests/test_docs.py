"""The documentation site: it builds with `mkdocs build --strict` without the network, it
documents every public name, and every number it prints is one the code computes.

Every ```python block of a page runs, in page order, in one fresh interpreter per page; a block
followed by a ```text title="Output" block must print that text (numbers to a relative 1e-4,
everything else exactly). Blocks that include an example file (`--8<--`) are left to
`test_examples.py`, which checks the example's output against the page instead.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

FENCE = re.compile(r"^```(?P<lang>[\w-]*)(?P<attrs>[^\n]*)\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def fenced_blocks(text: str) -> list[tuple[str, str, str]]:
    """`(language, attributes, body)` of every top-level fenced block, in order."""
    return [(m["lang"], m["attrs"].strip(), m["body"]) for m in FENCE.finditer(text)]


def runnable(page: Path) -> list[tuple[str, str | None]]:
    """`(code, expected output or None)` for each ```python block of `page` to run."""
    blocks = fenced_blocks(page.read_text())
    out = []
    for i, (lang, _, body) in enumerate(blocks):
        if lang != "python" or body.lstrip().startswith("--8<--"):
            continue
        expected = None
        if i + 1 < len(blocks):
            nxt_lang, nxt_attrs, nxt_body = blocks[i + 1]
            if nxt_lang == "text" and 'title="Output"' in nxt_attrs:
                expected = nxt_body
        out.append((body, expected))
    return out


def same_output(got: str, expected: str, rtol: float = 1e-4) -> bool:
    """Equal text with numbers equal to a relative `rtol` (printed digits may round apart)."""
    got_lines, exp_lines = got.strip().splitlines(), expected.strip().splitlines()
    if len(got_lines) != len(exp_lines):
        return False
    for g, e in zip(got_lines, exp_lines, strict=True):
        if NUMBER.sub("#", g).rstrip() != NUMBER.sub("#", e).rstrip():
            return False
        for a, b in zip(NUMBER.findall(g), NUMBER.findall(e), strict=True):
            x, y = float(a), float(b)
            if not math.isclose(x, y, rel_tol=rtol, abs_tol=1e-300):
                return False
    return True


# Runs the blocks of one page in one namespace; prints one JSON list of their outputs.
_RUNNER = r"""
import contextlib, io, json, sys, traceback
blocks = json.loads(sys.stdin.read())
namespace = {"__name__": "__main__"}
outputs = []
for i, code in enumerate(blocks):
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            exec(compile(code, f"<block {i + 1}>", "exec"), namespace)
    except BaseException:
        outputs.append({"error": traceback.format_exc(), "stdout": buffer.getvalue()})
        break
    outputs.append({"stdout": buffer.getvalue()})
print("@@OUTPUTS@@" + json.dumps(outputs))
"""


def run_blocks(blocks: list[str], cwd: Path) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER], input=json.dumps(blocks), capture_output=True,
        text=True, cwd=cwd, env=env, timeout=300,
    )
    marker = proc.stdout.rfind("@@OUTPUTS@@")
    assert marker >= 0, f"the runner failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout[marker + len("@@OUTPUTS@@"):])


PAGES = sorted(p for p in DOCS.rglob("*.md") if runnable(p))


@pytest.fixture(scope="module")
def page_outputs(tmp_path_factory) -> dict[Path, list[dict]]:
    """Every page's blocks run once, two pages at a time (one per core of a small runner)."""
    def run(page):
        cwd = tmp_path_factory.mktemp(page.stem)
        return page, run_blocks([code for code, _ in runnable(page)], cwd)

    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        return dict(pool.map(run, PAGES))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_page_code_prints_what_the_page_shows(page, page_outputs):
    outputs = page_outputs[page]
    for i, ((code, expected), result) in enumerate(zip(runnable(page), outputs), start=1):
        assert "error" not in result, f"block {i} of {page.name} raised:\n{result['error']}"
        if expected is not None:
            assert same_output(result["stdout"], expected), (
                f"block {i} of {page.name} printed\n{result['stdout']}\nbut the page shows\n"
                f"{expected}"
            )
    assert len(outputs) == len(runnable(page))


def test_same_output_compares_numbers_and_text():
    assert same_output("N* = 2.4184e+10 (optimal)\n", "N* = 2.41840e+10 (optimal)")
    assert not same_output("N* = 2.4184e+10 (optimal)", "N* = 2.4284e+10 (optimal)")
    assert not same_output("N* = 2.4184e+10 (optimal)", "N* = 2.4184e+10 (infeasible)")
    assert not same_output("a\nb", "a")


# ---------------------------------------------------------------------------------- the site
def test_site_builds_strict_without_network(tmp_path):
    """`mkdocs build --strict`: any warning (a broken link or cross-reference, a docstring
    mkdocstrings cannot render, a page missing from the nav) fails. Proxies point at a closed
    port, so a build step that reached for the network would fail too."""
    dead = "http://127.0.0.1:9"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", HTTP_PROXY=dead, HTTPS_PROXY=dead,
               http_proxy=dead, https_proxy=dead, ALL_PROXY=dead, NO_PROXY="", no_proxy="")
    mkdocs = [sys.executable, "-m", "mkdocs"]
    site = tmp_path / "site"
    proc = subprocess.run(
        [*mkdocs, "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(site)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert "WARNING" not in log, log
    api = (site / "api" / "index.html").read_text()
    for name, module in public_names().items():
        assert f'id="planner.{name}"' in api or f'id="{module}.{name}"' in api, (
            f"{name} has no entry in the built API reference"
        )
    # formulas reach the page as arithmatex spans for MathJax
    assert 'class="arithmatex"' in (site / "laws" / "chinchilla" / "index.html").read_text()


def public_names() -> dict[str, str]:
    """Every name re-exported by planner/__init__.py, with the module it comes from."""
    tree = ast.parse((ROOT / "planner" / "__init__.py").read_text())
    names = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            for alias in node.names:
                names[alias.asname or alias.name] = "planner." + (node.module or "")
    return names


def test_api_page_documents_every_public_name():
    text = (DOCS / "api.md").read_text()
    entries = set(re.findall(r"^::: ([\w.]+)", text, re.M))
    missing = [
        name for name, module in public_names().items()
        if f"planner.{name}" not in entries and f"{module}.{name}" not in entries
    ]
    assert not missing, f"docs/api.md lacks `::: planner.NAME` for {missing}"
    assert len(public_names()) >= 30


def test_nav_lists_every_page_and_only_existing_ones():
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    # mkdocs.yml may carry !!python/name tags; none is needed to read the nav
    Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda *a: None)
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=Loader)

    def pages(nav):
        for item in nav:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            if isinstance(value, list):
                yield from pages(value)
            else:
                yield value

    listed = set(pages(config["nav"]))
    on_disk = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert listed == on_disk


def test_status_table_is_status_messages():
    """The statuses table in concepts.md is `STATUS_MESSAGES`, row for row."""
    from planner import STATUS_MESSAGES, Status

    text = (DOCS / "concepts.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| (\d+) \| (.+?) \|", text, re.M)
    table = {name: (int(code), message) for name, code, message in rows}
    assert set(table) == {s.name for s in Status}
    for status, message in STATUS_MESSAGES.items():
        assert table[status.name] == (int(status), message)


def test_cli_page_shows_what_planner_solve_writes(tmp_path):
    """The scenarios.csv and plans.csv shown in cli.md: the second is what `planner solve`
    writes for the first (numbers to a relative 1e-9, statuses and messages exactly)."""
    import csv
    import io

    from planner._cli import main

    shown = {attrs: body for lang, attrs, body in fenced_blocks((DOCS / "cli.md").read_text())
             if lang == "text"}
    (tmp_path / "scenarios.csv").write_text(shown['title="scenarios.csv"'])
    code = main(["solve", str(tmp_path / "scenarios.csv"), "--output",
                 str(tmp_path / "plans.csv")])
    assert code == 0
    got = list(csv.reader(io.StringIO((tmp_path / "plans.csv").read_text())))
    want = list(csv.reader(io.StringIO(shown['title="plans.csv"'])))
    assert got[0] == want[0]
    assert len(got) == len(want)
    plan_columns = {"n_params", "n_tokens", "train_flops", "inference_flops", "total_flops",
                    "loss"}
    for g_row, w_row in zip(got[1:], want[1:], strict=True):
        for header, g, w in zip(got[0], g_row, w_row, strict=True):
            if header in plan_columns and g and w:
                assert math.isclose(float(g), float(w), rel_tol=1e-9), (header, g, w)
            else:
                assert g == w, (header, g, w)
