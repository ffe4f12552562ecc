"""Writing experiment outputs: JSON, Markdown tables and figures, each atomically."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from planner._table import atomic_write


def _plain(value):
    """JSON-ready: arrays as (nested) lists, numpy and JAX scalars as floats, non-finite
    floats as null."""
    if isinstance(value, np.ndarray | jax.Array):
        return _plain(np.asarray(value).tolist())
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | bool) or value is None:
        return value
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if isinstance(value, int):
        return value
    return x if math.isfinite(x) else None


def write_json(path: Path, data: dict) -> None:
    text = json.dumps(_plain(data), indent=2) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.5g}" if abs(v) < 1e4 or v == 0 else f"{v:.5e}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, title: str, body: str) -> None:
    text = f"# {title}\n\n{body}"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def save_figure(fig, path: Path) -> None:
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=130, format="png"))


def pyplot():
    """matplotlib's pyplot on a file-only backend (the 'plots' extra)."""
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - depends on the extra
        raise SystemExit("figures need the 'plots' extra: pip install 'planner[plots]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def command_line(run, description: str | None) -> None:
    """`python experiments/NAME.py [--output DIR]`: run one experiment into DIR."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--output", default="out")
    run(Path(parser.parse_args().output))
