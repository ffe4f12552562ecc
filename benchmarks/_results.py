"""benchmarks/RESULTS.md, one section per benchmark, and the machine a benchmark ran on."""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import platform
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


def machine(packages: tuple[str, ...]) -> dict[str, str]:
    """The CPU (model, usable and logical cores, memory), JAX's backend, and the versions of
    `packages` and Python: what a benchmark's figures hold for."""
    import jax

    from planner._shard import usable_cores

    cpu = platform.processor() or "unknown"
    memory = "unknown memory"
    try:
        cpu = next(line.split(":", 1)[1].strip()
                   for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
        memory = next(f"{int(line.split()[1]) / 2**20:.0f} GiB memory"
                      for line in pathlib.Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal"))
    except (OSError, StopIteration):
        pass
    versions = {name: importlib.metadata.version(name) for name in packages}
    return {
        "cpu": f"{cpu}, {usable_cores()} usable cores ({os.cpu_count()} logical), {memory}",
        "backend": f"{jax.default_backend()} ({jax.devices()[0].device_kind})",
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items())
        + f", Python {platform.python_version()}",
    }
