"""benchmarks/RESULTS.md, one section per benchmark."""

from __future__ import annotations

import pathlib
import re

RESULTS = pathlib.Path(__file__).with_name("RESULTS.md")


def write_section(heading: str, text: str, path: pathlib.Path = RESULTS) -> None:
    """Replace (or append) the section under `heading` in `path`, leaving the others alone."""
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    section = text.rstrip() + "\n\n"
    new, count = pattern.subn(lambda _: section, old)
    if count == 0:
        new = old.rstrip() + "\n\n" + section
    path.write_text(new.rstrip() + "\n")
