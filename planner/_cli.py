"""The `planner` command line."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _set_precision(float32: bool) -> None:
    """float64 unless `float32`: set before any array is made. Also turns on the compilation
    cache (`compilation_cache_dir`)."""
    import jax

    jax.config.update("jax_enable_x64", not float32)
    folder = compilation_cache_dir()
    if folder is not None:
        # compiled solvers are kept on disk: a later run with the same batch shapes, stages
        # and JAX version loads its program instead of compiling it again (seconds per bucket)
        jax.config.update("jax_compilation_cache_dir", str(folder))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def compilation_cache_dir() -> Path | None:
    """Where the command line keeps compiled programs: `$PLANNER_CACHE_DIR` if set (empty or
    `off` turns the cache off), else `$XDG_CACHE_HOME/planner/jax` (default
    `~/.cache/planner/jax`)."""
    value = os.environ.get("PLANNER_CACHE_DIR")
    if value is not None:
        return None if value.strip().lower() in ("", "0", "off", "none") else Path(value)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "planner" / "jax"


class _Progress:
    """Scenarios solved and scenarios per second on standard error, redrawn in place."""

    def __init__(self, enabled: bool):
        self.enabled, self.start = enabled, time.perf_counter()

    def update(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        end = "\n" if done >= total else ""
        sys.stderr.write(
            f"\rsolved {done:,}/{total:,} scenarios ({done / elapsed:,.0f} scenarios/s)" + end
        )
        sys.stderr.flush()


def _stages(args, law):
    stages = []
    if args.pruning:
        from ._techniques.pruning import Pruning

        stages.append(Pruning(law))
    if args.sampling:
        from ._techniques.sampling import RepeatedSampling, SuccessLink

        stages.append(RepeatedSampling(SuccessLink.codex2021()))
    return tuple(stages)


def _multi_process(args) -> bool:
    return args.distributed or any(
        v is not None for v in (args.coordinator, args.num_processes, args.process_id))


def _join(args) -> None:
    """Join a multi-process run when asked to (before anything computes with JAX)."""
    given = (args.coordinator, args.num_processes, args.process_id)
    if args.distributed and any(v is not None for v in given):
        raise ValueError("give --distributed alone, or --coordinator, --num-processes and "
                         "--process-id")
    if _multi_process(args):
        from ._shard import initialize

        initialize(*given, timeout=args.join_timeout)


def cmd_solve(args) -> int:
    _set_precision(args.float32)
    import jax
    import numpy as np

    from ._compose import Pipeline, Pretraining
    from ._shard import barrier, cpu_devices, shard_batch
    from ._solve import has_score
    from ._sweep import PLAN_COLUMNS, run_sweep
    from ._table import TableError, make_solver

    try:
        if args.cpu_devices is not None or not _multi_process(args):
            try:
                cpu_devices(args.cpu_devices)
            except RuntimeError as error:  # asked for a count after JAX started
                raise ValueError(f"--cpu-devices: {error}") from None
        _join(args)
        law = _law(args)
        stages = _stages(args, law)
        model = Pipeline(Pretraining(law), *stages)
        extra = {"score": has_score(model), "density": "density" in model.variables,
                 "n_samples": "n_samples" in model.variables}
        plan_columns = [c for c in PLAN_COLUMNS if extra.get(c, True)]
        if args.objective == "loss":
            required = ("train_budget",)
        elif args.sampling:
            required = ()
        else:
            required = ("target_loss",)
        progress = _Progress(args.progress or sys.stderr.isatty())
        counts = run_sweep(
            args.scenarios, args.output, law=law,
            make_fn=lambda: shard_batch(make_solver(law, stages, args.objective)),
            plan_columns=plan_columns, required=required, chunk=args.chunk_size,
            dtype=np.float32 if args.float32 else np.float64, resume=args.resume,
            options={"law": args.law, "law_file": args.law_file, "objective": args.objective,
                     "pruning": args.pruning, "sampling": args.sampling,
                     "float32": args.float32,
                     # plans can differ in their last bits with the split (see _shard), so a
                     # resumed run must split its chunks as the first one did
                     "devices": f"{jax.default_backend()}:{jax.local_device_count()}"},
            on_progress=progress.update,
            process_index=jax.process_index(), process_count=jax.process_count(),
            barrier=barrier,
        )
    except (TableError, ValueError, OSError) as error:
        print(f"planner solve: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    total = sum(counts.values())
    summary = ", ".join(f"{v:,} {k}" for k, v in sorted(counts.items()))
    if jax.process_index() == 0:
        print(f"planner solve: {total:,} scenarios -> {args.output}: {summary}",
              file=sys.stderr)
    else:
        print(f"planner solve: process {jax.process_index()} solved {total:,} scenarios: "
              f"{summary or 'none'}", file=sys.stderr)
    return EXIT_OK


def _law(args):
    from ._laws import Chinchilla

    if getattr(args, "law_file", None):
        from ._fit import read_fit_json

        return read_fit_json(args.law_file)
    return Chinchilla.from_preset(args.law)


def cmd_reproduce(args) -> int:
    _set_precision(float32=False)
    from .experiments import run

    return run(args.name, Path(args.output))


def cmd_fit(args) -> int:
    _set_precision(float32=False)
    import jax

    from ._fit import fit, read_runs, write_fit_json

    try:
        runs = read_runs(args.runs)
        result = fit(runs.n_params, runs.n_tokens, runs.loss,
                     drop_highest_loss=args.drop_highest_loss, n_bootstrap=args.bootstrap,
                     huber_delta=args.huber_delta, key=jax.random.key(args.seed))
        write_fit_json(result, args.output, include_bootstrap=not args.no_samples)
    except (ValueError, RuntimeError, OSError) as error:
        print(f"planner fit: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    record = result.to_record(include_bootstrap=False)
    for name in ("E", "A", "B", "alpha", "beta"):
        low, high = record["ci95"][name] if record["ci95"] else (float("nan"),) * 2
        print(f"{name:>5} = {record[name]:.6g}  (95% interval {low:.4g} to {high:.4g})")
    print(f"planner fit: {record['n_runs']} runs -> {args.output}", file=sys.stderr)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from ._laws import PRESETS

    parser = argparse.ArgumentParser(
        prog="planner",
        description="Split compute between training a model and running it.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    solve = sub.add_parser(
        "solve", help="optimal allocations for a table of scenarios",
        description="Solve every row of SCENARIOS (CSV or Parquet) and write PLANS. Input "
        "columns: target_loss (or target_score with --sampling), inference_tokens (lifetime "
        "inference tokens, default 0); optional train_budget, inference_budget, "
        "max_inference_flops, max_params, max_tokens, min_density, and per-row law "
        "coefficients E, A, B, alpha, beta. Output: every input column, then n_params, "
        "n_tokens, train_flops, inference_flops, total_flops, loss, [score, density, "
        "n_samples], status, message.",
    )
    solve.add_argument("scenarios", help="input table (.csv, or .parquet with the extra)")
    solve.add_argument("--output", "-o", required=True, help="output table (.csv or .parquet)")
    law = solve.add_mutually_exclusive_group()
    law.add_argument("--law", default="sardana2024", choices=sorted(PRESETS),
                     help="loss-law preset (default: sardana2024)")
    law.add_argument("--law-file", help="a FIT.json written by `planner fit`")
    solve.add_argument("--objective", default="compute", choices=("compute", "loss"),
                       help="compute: least lifetime FLOP for the target (default); loss: lowest "
                       "loss within train_budget (and inference_budget)")
    solve.add_argument("--pruning", action="store_true", help="also choose a pruning density")
    solve.add_argument("--sampling", action="store_true",
                       help="also choose samples per query (repeated sampling)")
    solve.add_argument("--chunk-size", type=int, default=65536,
                       help="rows solved per batch (bounds memory)")
    solve.add_argument("--resume", action="store_true",
                       help="continue an interrupted run from the finished chunks it left")
    solve.add_argument("--float32", action="store_true",
                       help="solve in float32 (default float64)")
    hosts = solve.add_argument_group(
        "multi-process runs (every process runs the same command; the output's folder must be "
        "on a file system all of them see)")
    hosts.add_argument("--coordinator", metavar="HOST:PORT",
                       help="address of process 0's coordination service")
    hosts.add_argument("--num-processes", type=int, metavar="P", help="number of processes")
    hosts.add_argument("--process-id", type=int, metavar="I", help="this process, in [0, P)")
    hosts.add_argument("--distributed", action="store_true",
                       help="read the three above from the cluster's environment (SLURM, "
                            "Open MPI, Cloud TPU)")
    hosts.add_argument("--join-timeout", type=int, default=300, metavar="SECONDS",
                       help="how long to wait for every process to join (default 300)")
    solve.add_argument("--cpu-devices", type=int, metavar="K",
                       help="CPU devices to split each chunk over (default: one per usable "
                       "core, or one per process in a multi-process run; ignored where JAX "
                       "runs on a GPU or TPU)")
    solve.add_argument("--progress", action="store_true",
                       help="show progress even when standard error is not a terminal")
    solve.set_defaults(func=cmd_solve)

    reproduce = sub.add_parser("reproduce", help="reproduce published results: tables, figures")
    reproduce.add_argument("name", nargs="?", default="default",
                           help="an experiment name, 'default' or 'all'")
    reproduce.add_argument("--output", "-o", default="out", help="output folder")
    reproduce.set_defaults(func=cmd_reproduce)

    fit = sub.add_parser("fit", help="fit a loss law to training runs")
    fit.add_argument("runs", help="table with columns n_params, n_tokens (or train_flops), loss")
    fit.add_argument("--output", "-o", required=True, help="FIT.json to write")
    fit.add_argument("--drop-highest-loss", type=int, default=0, metavar="K",
                     help="leave out the K runs with the highest loss (outliers; Besiroglu et "
                     "al. drop 5 of Hoffmann et al.'s 245)")
    fit.add_argument("--bootstrap", type=int, default=1000, metavar="B",
                     help="bootstrap resamples for standard errors and 95%% intervals")
    fit.add_argument("--seed", type=int, default=0, help="random seed of the bootstrap")
    fit.add_argument("--huber-delta", type=float, default=1e-3,
                     help="Huber loss threshold on log-loss residuals (default 1e-3)")
    fit.add_argument("--no-samples", action="store_true",
                     help="leave the bootstrap samples out of FIT.json")
    fit.set_defaults(func=cmd_fit)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "chunk_size", 1) < 1:
        parser.error("--chunk-size must be >= 1")
    if getattr(args, "cpu_devices", None) is not None and args.cpu_devices < 1:
        parser.error("--cpu-devices must be >= 1")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
