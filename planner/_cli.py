"""The `planner` command line."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PLOTS_HINT = 'pip install -e ".[plots]" in a planner checkout'
FIGURE_SUFFIXES = (".png", ".pdf", ".svg")
WIDE_INTERVAL = 10.0
"""`planner fit` warns when a coefficient's 95% interval spans this factor or more."""


def _set_precision(float32: bool, jax_cache: bool = True) -> None:
    """float64 unless `float32`: set before any array is made. Also turns on JAX's persistent
    compilation cache in `compilation_cache_dir` (unless not `jax_cache`: `planner solve`
    keeps its solver whole instead, which a program served by that cache cannot be)."""
    import jax

    jax.config.update("jax_enable_x64", not float32)
    folder = compilation_cache_dir()
    if folder is not None and jax_cache:
        # compiled programs are kept on disk: a later run with the same shapes and JAX
        # version loads them instead of compiling them again (seconds per program)
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


def _solver_store(law, stages, objective, constants=None):
    """Where `planner solve` keeps its compiled solver whole (`shard_batch`'s `store`): the
    cache folder, the solver named by what it closes over; None with the cache off."""
    from ._table import solver_key

    folder = compilation_cache_dir()
    return None if folder is None else (solver_key(law, stages, objective,
                                                   constants=constants), folder)


class _Progress:
    """Work done and its rate on standard error, redrawn in place: `solve` counts scenarios,
    `fit` bootstrap resamples."""

    def __init__(self, enabled: bool, verb: str = "solved", noun: str = "scenarios"):
        self.enabled, self.start = enabled, time.perf_counter()
        self.verb, self.noun = verb, noun

    def update(self, done: int, total: int) -> None:
        if done == 0:  # the work counted starts now
            self.start = time.perf_counter()
        if not self.enabled:
            return
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        end = "\n" if done >= total else ""
        sys.stderr.write(f"\r{self.verb} {done:,}/{total:,} {self.noun} "
                         f"({done / elapsed:,.{0 if done / elapsed >= 10 else 2}f} "
                         f"{self.noun}/s)" + end)
        sys.stderr.flush()


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun if n == 1 else noun + ('es' if noun.endswith('s') else 's')}"


def _stages(args, law):
    stages = []
    if args.pruning:
        from ._techniques.pruning import Pruning

        stages.append(Pruning(law))
    if args.sampling:
        from ._techniques.sampling import RepeatedSampling, SuccessLink

        stages.append(RepeatedSampling(SuccessLink.codex2021(), **_sampling_fields(args)))
    if _priced(args):
        stages.append(_deployment(args))
    return tuple(stages)


def _priced(args) -> bool:
    """Whether plans are priced in dollars: --objective dollars, or a --dollar-budget."""
    return args.objective == "dollars" or getattr(args, "dollar_budget", None) is not None


_SAMPLING_FLAGS = {"selection": "--selection", "verifier_params": "--verifier-params",
                   "verifier_accuracy": "--verifier-accuracy", "plateau": "--plateau"}
"""The options of the repeated-sampling stage: field of `RepeatedSampling` -> flag."""


def _check_sampling_flags(args) -> None:
    """Refuse the sampling options without --sampling, out of their domains, or with a
    selection that does not use them (the checks of `RepeatedSampling`, in the flags' words)."""
    given = [flag for name, flag in _SAMPLING_FLAGS.items() if getattr(args, name) is not None]
    if given and not args.sampling:
        raise ValueError(f"{', '.join(given)} set up repeated sampling: add --sampling")
    selection = args.selection or "verifier"
    if args.verifier_params is not None and not 0 <= args.verifier_params < math.inf:
        raise ValueError(f"--verifier-params must be finite and >= 0, got "
                         f"{args.verifier_params:g}")
    if args.verifier_params and selection == "majority":
        raise ValueError("--selection majority uses no verifier: drop --verifier-params")
    if selection == "reward_model" and args.verifier_accuracy is None:
        raise ValueError("--selection reward_model needs --verifier-accuracy A: the chance, in "
                         "(0, 1], that the reward model picks a correct sample when one exists")
    if args.verifier_accuracy is not None:
        if selection != "reward_model":
            raise ValueError("--verifier-accuracy is used by --selection reward_model only")
        if not 0 < args.verifier_accuracy <= 1:
            raise ValueError(f"--verifier-accuracy must lie in (0, 1], got "
                             f"{args.verifier_accuracy:g}")
    if args.plateau is not None:
        if selection != "filter":
            raise ValueError("--plateau is used by --selection filter only")
        if not 0 < args.plateau <= 1:
            raise ValueError(f"--plateau must lie in (0, 1], got {args.plateau:g}")


def _sampling_fields(args) -> dict:
    """The `RepeatedSampling` fields the sampling options give (none: the defaults)."""
    return {name: getattr(args, name) for name in _SAMPLING_FLAGS
            if getattr(args, name) is not None}


def _add_sampling_flags(parser) -> None:
    from ._techniques.sampling import SELECTIONS

    group = parser.add_argument_group(
        "repeated sampling (with --sampling; the Codex-calibrated link, SuccessLink.codex2021)")
    group.add_argument("--selection", choices=SELECTIONS,
                       help="how the answer is picked from the k samples: verifier (a perfect "
                       "check, pass@k; default), filter (n@k, plateau --plateau), "
                       "reward_model (best-of-k, accuracy --verifier-accuracy) or majority "
                       "(majority voting, no verifier)")
    group.add_argument("--verifier-params", type=float, metavar="N_V",
                       help="parameters of the learned verifier or reward model, whose "
                       "2 N_V FLOP per generated token of every sample are added to "
                       "inference (default 0: a free check)")
    group.add_argument("--verifier-accuracy", type=float, metavar="A",
                       help="with --selection reward_model (required there): the chance, "
                       "in (0, 1], that it picks a correct sample when one exists")
    group.add_argument("--plateau", type=float, metavar="Q",
                       help="with --selection filter: the filter's recall, in (0, 1] "
                       "(default 1)")


def _add_serving_flags(parser, title: str = "serving (with --objective dollars; "
                       "inference_demand counts generated tokens, an optional demand_rate "
                       "column their peak per second)") -> None:
    """The flags of --objective dollars (`planner solve`, `planner allocate`, `planner
    frontier`), in a group named `title`."""
    serving = parser.add_argument_group(title)
    serving.add_argument("--train-hardware", metavar="NAME",
                         help=f"training hardware: {', '.join(HARDWARE)} or a name in "
                         "--hardware-file")
    serving.add_argument("--serve-hardware", metavar="NAME", help="serving hardware, likewise")
    serving.add_argument("--hardware-file", metavar="JSON",
                         help="named hardware of one's own: {NAME: {peak_flops, "
                         "memory_bandwidth, memory_bytes, bytes_per_param, price_per_hour, "
                         "mfu}}")
    serving.add_argument("--train-price", type=float, metavar="USD",
                         help="dollars per training device-hour (overrides the preset's)")
    serving.add_argument("--serve-price", type=float, metavar="USD",
                         help="dollars per serving device-hour (overrides the preset's)")
    serving.add_argument("--max-latency", type=float, metavar="S",
                         help="seconds per generated token at most (the decode step)")
    serving.add_argument("--context-tokens", type=float, default=0.0, metavar="C",
                         help="KV-cache tokens held per sequence (default 0: no cache)")
    serving.add_argument("--prompt-tokens", type=float, default=0.0, metavar="P",
                         help="prompt tokens per request, priced at prefill (default 0)")
    serving.add_argument("--output-tokens", type=float, default=1.0, metavar="O",
                         help="generated tokens per request (default 1)")
    serving.add_argument("--devices-per-replica", type=float, default=1.0, metavar="G",
                         help="devices of one serving replica (default 1)")
    serving.add_argument("--kv-groups", type=float, default=1.0, metavar="G",
                         help="query heads per KV head (grouped-query attention; default 1)")


HARDWARE = {"A100": "nvidia_a100_sxm_80gb", "H100": "nvidia_h100_sxm", "H200": "nvidia_h200",
            "TPUv5e": "google_tpu_v5e"}
"""Hardware presets of the command line: name -> `Hardware` constructor."""


def _hardware(name: str, price: float | None, args, flag: str):
    """A `Hardware` by preset name or from --hardware-file, at --*-price if given."""
    import json

    from ._compute import Hardware

    fields = ("peak_flops", "memory_bandwidth", "bytes_per_param", "price_per_hour", "mfu",
              "memory_bytes")
    if args.hardware_file:
        with open(args.hardware_file) as handle:
            table = json.load(handle)
        if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
            raise ValueError(f"--hardware-file {args.hardware_file}: expected a JSON object of "
                             "named hardware, each an object of " + ", ".join(fields))
        if name in table:
            entry = dict(table[name])
            unknown = set(entry) - set(fields)
            missing = {"peak_flops", "memory_bandwidth"} - set(entry)
            if unknown or missing:
                raise ValueError(f"--hardware-file {args.hardware_file}: {name!r} has "
                                 f"unknown fields {sorted(unknown)} or lacks {sorted(missing)}")
            entry.setdefault("bytes_per_param", 2.0)
            entry.setdefault("mfu", 0.5)
            if price is not None:
                entry["price_per_hour"] = price
            if "price_per_hour" not in entry:
                raise ValueError(f"{flag} {name}: give its price_per_hour in the file or "
                                 f"{flag.replace('hardware', 'price')}")
            for key, value in entry.items():
                if not isinstance(value, int | float) or not value > 0:
                    raise ValueError(f"--hardware-file {args.hardware_file}: {name}.{key} must "
                                     f"be a number > 0, got {value!r}")
            return Hardware(**entry)
    if name not in HARDWARE:
        known = sorted(HARDWARE) + (sorted(table) if args.hardware_file else [])
        raise ValueError(f"{flag}: unknown hardware {name!r}; known: {', '.join(known)}")
    make = getattr(Hardware, HARDWARE[name])
    if price is None:
        try:
            return make()
        except TypeError:
            raise ValueError(f"{flag} {name} has no sourced price: give "
                             f"{flag.replace('hardware', 'price')} DOLLARS_PER_HOUR") from None
    return make(price_per_hour=price)


def _check_serving_flags(args) -> None:
    """Refuse serving flags where nothing is priced, and prices without hardware."""
    if not _priced(args) and (args.max_latency is not None
                              or args.train_hardware or args.serve_hardware):
        raise ValueError("--max-latency and the hardware flags price a plan: give "
                         "--objective dollars")
    if _priced(args) and not (args.train_hardware and args.serve_hardware):
        what = ("--objective dollars" if args.objective == "dollars" else "--dollar-budget")
        raise ValueError(f"{what} needs --train-hardware and --serve-hardware")
    if args.max_latency is not None and not 0 < args.max_latency < float("inf"):
        raise ValueError(f"--max-latency must be finite and > 0, got {args.max_latency:g}")


def _deployment(args):
    """The `Deployment` stage of --objective dollars, from the serving flags."""
    from ._serving import Deployment, KVCache

    for flag, value, low in (("--context-tokens", args.context_tokens, 0.0),
                             ("--prompt-tokens", args.prompt_tokens, 0.0),
                             ("--output-tokens", args.output_tokens, None),
                             ("--devices-per-replica", args.devices_per_replica, None),
                             ("--kv-groups", args.kv_groups, None)):
        if not (value >= low if low is not None else value > 0) or value == float("inf"):
            raise ValueError(f"{flag} must be finite and {'>= 0' if low is not None else '> 0'}"
                             f", got {value:g}")
    train = _hardware(args.train_hardware, args.train_price, args, "--train-hardware")
    serve = _hardware(args.serve_hardware, args.serve_price, args, "--serve-hardware")
    return Deployment(train=train, serve=serve,
                      prompt_tokens=args.prompt_tokens / args.output_tokens,
                      context_tokens=args.context_tokens, devices=args.devices_per_replica,
                      kv_cache=KVCache(kv_groups=args.kv_groups))


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
    from ._table import TableError, check_output_suffix

    try:
        # everything that can be refused without solving is refused first
        check_output_suffix(args.output)
        _check_score_column(args.scenarios, args.sampling)
        _check_sampling_flags(args)
        if args.objective == "dollars" and args.quantile is not None:
            raise ValueError("--quantile does not combine with --objective dollars")
        _check_serving_flags(args)
        if args.quantile is not None and not args.law_file:
            raise ValueError("--quantile plans under the bootstrap laws of a fit: give "
                             "--law-file FIT.json (written by `planner fit` with its samples)")
    except (TableError, ValueError, OSError) as error:
        print(f"planner solve: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    _set_precision(args.float32, jax_cache=False)
    import jax
    import numpy as np

    from ._compose import Pipeline, Pretraining
    from ._shard import barrier, cpu_devices, shard_batch
    from ._sweep import run_sweep
    from ._table import make_solver

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
        plan_columns = _plan_columns(model)
        if args.objective == "loss":
            required = ("train_budget",)
        elif args.sampling:
            required = ()
        else:
            required = ("target_loss",)
        dtype = np.float32 if args.float32 else np.float64
        constants = ({"max_latency": args.max_latency} if args.max_latency is not None
                     else None)
        if args.quantile is not None:
            from ._quantile import solve_quantile

            counts = solve_quantile(
                args.scenarios, args.output, args.law_file, args.quantile, law=law,
                make_fn=lambda: shard_batch(make_solver(law, stages, args.objective),
                                            store=_solver_store(law, stages, args.objective)),
                plan_columns=plan_columns, required=required, chunk=args.chunk_size,
                dtype=dtype, checks={"needs_target": args.objective != "loss",
                                     "dense_inference": not args.pruning},
                on_progress=_Progress(args.progress or sys.stderr.isatty()).update,
                fitted_range=_fitted_range(args))
        else:
            counts = run_sweep(
                args.scenarios, args.output, law=law,
                make_fn=lambda: shard_batch(
                    make_solver(law, stages, args.objective, constants=constants),
                    store=_solver_store(law, stages, args.objective, constants)),
                plan_columns=plan_columns, required=required, chunk=args.chunk_size,
                dtype=dtype, resume=args.resume,
                options={"law": args.law, "law_file": args.law_file,
                         "objective": args.objective, "pruning": args.pruning,
                         "sampling": args.sampling, **_sampling_fields(args),
                         "float32": args.float32,
                         **({"serving": " ".join(sys.argv[1:])}
                            if args.objective == "dollars" else {}),
                         # plans can differ in their last bits with the split (see _shard), so
                         # a resumed run must split its chunks as the first one did
                         "devices": f"{jax.default_backend()}:{jax.local_device_count()}"},
                on_progress=_Progress(args.progress or sys.stderr.isatty()).update,
                process_index=jax.process_index(), process_count=jax.process_count(),
                barrier=barrier, fitted_range=_fitted_range(args),
            )
    except (TableError, ValueError, OSError) as error:
        print(f"planner solve: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    total = sum(counts.values())
    summary = ", ".join(f"{v:,} {k}" for k, v in sorted(counts.items()))
    if jax.process_index() == 0:
        if total:
            print(f"planner solve: {_plural(total, 'scenario')} -> {args.output}: {summary}",
                  file=sys.stderr)
            _print_status_lines(counts)
        else:
            print(f"planner solve: {args.scenarios} has no scenarios; wrote the header to "
                  f"{args.output}", file=sys.stderr)
        _warn_extrapolated("solve", counts, total)
    else:
        print(f"planner solve: process {jax.process_index()} solved "
              f"{_plural(total, 'scenario')}{': ' + summary if summary else ''}",
              file=sys.stderr)
    return EXIT_OK


def _warn_extrapolated(command: str, counts, total: int) -> None:
    """A warning on standard error for the plans flagged as extrapolations (`SweepCounts`)."""
    from ._sweep import EXTRAPOLATION_FACTOR

    flagged = getattr(counts, "extrapolated", 0)
    if flagged:
        print(f"planner {command}: warning: {_plural(flagged, 'plan')} of {total:,} "
              f"extrapolate{'s' if flagged == 1 else ''}: n_params or n_tokens more than "
              f"{EXTRAPOLATION_FACTOR:g}x the largest the law was fitted on; the law is "
              "untested there (see their message column)", file=sys.stderr)


def _budget_flag(name: str) -> str:
    """The command-line option of a shared budget of `allocate` (`BUDGETS`)."""
    return "--" + name.replace("_", "-")


def cmd_allocate(args) -> int:
    if args.test_time:
        return _allocate_test_time(args)
    if args.sample_budget is not None:
        print("planner allocate: error: --sample-budget is the budget of --test-time: add "
              "--test-time (a table of query classes)", file=sys.stderr)
        return EXIT_USAGE
    from ._allocate import BUDGETS, pricing, unbounded
    from ._table import TableError, check_output_suffix

    budgets = {name: getattr(args, name) for name in BUDGETS if getattr(args, name) is not None}
    try:
        # everything that can be refused without solving is refused first
        check_output_suffix(args.output)
        if Path(args.summary).suffix.lower() != ".json":
            raise ValueError(f"{args.summary}: the summary is written as JSON: name it .json")
        for name, value in budgets.items():
            if not 0 < value < math.inf:
                raise ValueError(f"{_budget_flag(name)} must be finite and > 0, got {value:g}")
        if args.allocate_chunk is not None and args.allocate_chunk < 1:
            raise ValueError(f"--chunk-size must be >= 1, got {args.allocate_chunk}")
        if args.objective == "score" and not args.sampling:
            raise ValueError("--objective score maximises the items' success rates, which needs "
                             "repeated sampling to turn losses into scores: add --sampling")
        for kind in unbounded(args.objective, args.sampling):
            if not set(pricing(kind)) & set(budgets):
                raise ValueError(f"--objective {args.objective} needs a budget on {kind}: give "
                                 f"{' or '.join(_budget_flag(b) for b in pricing(kind))}")
        _check_serving_flags(args)
        _check_score_column(args.items, args.sampling)
        _check_sampling_flags(args)
        paths = {Path(f).resolve() for f in (args.items, args.output, args.summary)}
        if len(paths) < 3:
            raise ValueError("ITEMS, --output and --summary must be three different files")
    except (TableError, ValueError, OSError) as error:
        print(f"planner allocate: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    _set_precision(args.float32)
    import json

    import numpy as np

    from ._allocate import allocate
    from ._compose import Pipeline, Pretraining
    from ._problem import Scenario
    from ._rules import ITEM_RULES
    from ._solve import Status
    from ._sweep import _flag_extrapolation, _format_chunk, write_lines
    from ._table import (
        TableReader,
        _build,
        atomic_write,
        batch_inputs,
        check_columns,
        parse_columns,
        plan_values,
        settle,
    )

    progress = None
    if args.progress or sys.stderr.isatty():
        def progress(line: str) -> None:
            print(f"planner allocate: {line}", file=sys.stderr, flush=True)

    try:
        law = _law(args)
        stages = _stages(args, law)
        plan_columns = _plan_columns(Pipeline(Pretraining(law), *stages))
        compute = args.objective in ("compute", "dollars")  # every item meets its target
        required = ("target_loss",) if compute and not args.sampling else ()
        reader = TableReader(args.items)
        check_columns(reader.columns, required, known=tuple(ITEM_RULES))
        # the table is read and checked in chunks of rows (--chunk-size, or 65536), whose
        # text cells are kept as read (pyarrow string arrays, for a CSV table with pyarrow)
        # to be written back beside the plans: no Python string per cell of a table of
        # millions of rows
        pieces, parsed, first = [], [], 1
        for cells in reader.chunks(args.allocate_chunk or 65536):
            parsed.append(parse_columns(
                cells, law, first, required=required, needs_target=compute,
                dense_inference=not args.pruning, extra=ITEM_RULES))
            pieces.append(cells)
            first += len(parsed[-1][1])
        if not pieces:  # a table of no rows
            pieces = [{name: [] for name in reader.columns}]
            parsed = [parse_columns(pieces[0], law, required=required, needs_target=compute,
                                    dense_inference=not args.pruning, extra=ITEM_RULES)]
        values = {k: np.concatenate([p[0][k] for p in parsed]) for k in parsed[0][0]}
        status = np.concatenate([p[1] for p in parsed])
        messages = [m for p in parsed for m in p[2]]
        sizes = [len(p[1]) for p in parsed]
        del parsed
        n = len(status)
        # rows the table refuses are left out of the portfolio (`allocate` leaves out an item
        # whose weight is not finite and > 0); rows it finds infeasible stay in: no portfolio
        # meets every item's target when one item cannot meet its own
        refused = status == Status.INVALID_INPUT
        portfolio = None
        out = {**{c: np.full(n, np.nan) for c in plan_columns},
               "status": np.full(n, int(Status.INVALID_INPUT))}
        if not refused.all():
            dtype = np.float32 if args.float32 else np.float64
            law_cols, fields = batch_inputs(values, refused, size=n, dtype=dtype, law=law)
            if args.max_latency is not None:
                fields["max_latency"] = np.full(n, args.max_latency, dtype)
            model = _build(law_cols, law, stages)
            weight = np.where(refused, np.nan, values.get("weight", np.ones(n)))
            portfolio = allocate(model, Scenario(**fields), budgets, objective=args.objective,
                                 weight=np.asarray(weight, dtype), progress=progress,
                                 chunk=args.allocate_chunk, throw=False)
            out = {k: np.array(v, dtype=int if k == "status" else np.float64)
                   for k, v in plan_values(portfolio.plans, model).items()}
        out = settle(out, status)
        fitted = _fitted_range(args)
        if fitted is not None:
            messages, _ = _flag_extrapolation(values, out, messages, law, fitted)
        summary = _portfolio_summary(portfolio, out["status"], status, budgets, args.items)
        text = json.dumps(summary, indent=2, allow_nan=False) + "\n"
        del portfolio  # its plans are in `out`: let them go before the plans are written
        # each file is replaced whole (`atomic_write`), the summary last and any earlier one
        # removed first: a SUMMARY.json on disk always describes the PLANS beside it
        Path(args.summary).unlink(missing_ok=True)
        # the plans as `planner solve` writes them, formatted a chunk of rows at a time (a
        # table of millions of rows is more text than one pyarrow string array holds)
        def lines():
            start = 0
            for cells, size in zip(pieces, sizes, strict=True):
                stop = start + size
                yield _format_chunk(cells, {k: v[start:stop] for k, v in out.items()},
                                    plan_columns, messages[start:stop])
                start = stop

        counts = write_lines(args.output, [*reader.columns, *plan_columns, "status", "message"],
                             lines())
        atomic_write(args.summary, lambda tmp: Path(tmp).write_text(text))
    except (TableError, ValueError, OSError) as error:
        print(f"planner allocate: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    _print_counts("allocate", _plural(n, 'item'), args.output, counts)
    _warn_extrapolated("allocate", counts, n)
    if summary["status"] == "optimal":
        unit = "dollar" if "dollar_budget" in summary["prices"] else "FLOP"
        if unit == "dollar" and len(summary["prices"]) > 1:
            unit = "unit of budget (FLOP or dollar)"
        prices = ", ".join(f"{b} {p:.4g}" for b, p in summary["prices"].items())
        print(f"planner allocate: portfolio optimal: objective {summary['objective']:.6g}"
              f"{f'; prices per {unit}: ' + prices if prices else ''} -> {args.summary}",
              file=sys.stderr)
        return EXIT_OK
    print(f"planner allocate: portfolio {summary['status']}: {summary['message']} -> "
          f"{args.summary}", file=sys.stderr)
    return EXIT_FAILED


def _allocate_test_time(args) -> int:
    """`planner allocate CLASSES --test-time`: samples per class of queries under an average
    budget per query (`planner.techniques.allocate_samples`)."""
    from ._allocate import BUDGETS
    from ._rules import CLASS_RULES
    from ._table import TableError, check_output_suffix

    try:
        check_output_suffix(args.output)
        if Path(args.summary).suffix.lower() != ".json":
            raise ValueError(f"{args.summary}: the summary is written as JSON: name it .json")
        if args.sample_budget is None:
            raise ValueError("--test-time needs --sample-budget K, the average samples (or "
                             "sample_cost units) per query")
        if not 0 < args.sample_budget < math.inf:
            raise ValueError(f"--sample-budget must be finite and > 0, got "
                             f"{args.sample_budget:g}")
        others = [_budget_flag(b) for b in BUDGETS if getattr(args, b) is not None]
        others += [flag for flag, on in (("--pruning", args.pruning),
                                         ("--sampling", args.sampling),
                                         ("--law-file", args.law_file),
                                         ("--chunk-size", args.allocate_chunk is not None))
                   if on]
        others += [flag for name, flag in _SAMPLING_FLAGS.items()
                   if name in ("verifier_params", "plateau") and getattr(args, name) is not None]
        if args.selection not in (None, "verifier", "reward_model"):
            raise ValueError(f"--test-time allocates samples selected by a verifier: "
                             f"--selection verifier or reward_model, not {args.selection}")
        if args.selection == "reward_model" and not (
                args.verifier_accuracy is not None and 0 < args.verifier_accuracy <= 1):
            raise ValueError("--selection reward_model needs --verifier-accuracy A in (0, 1]")
        if args.verifier_accuracy is not None and args.selection != "reward_model":
            raise ValueError("--verifier-accuracy is the accuracy of --selection reward_model")
        if others or args.objective != "compute":
            given = others + ([f"--objective {args.objective}"]
                              if args.objective != "compute" else [])
            raise ValueError(f"--test-time allocates samples to query classes under "
                             f"--sample-budget only; {', '.join(given)} belong to a portfolio "
                             "of models")
        paths = {Path(f).resolve() for f in (args.items, args.output, args.summary)}
        if len(paths) < 3:
            raise ValueError("CLASSES, --output and --summary must be three different files")
    except (TableError, ValueError, OSError) as error:
        print(f"planner allocate: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    _set_precision(args.float32)
    import json

    import numpy as np

    from ._solve import STATUS_MESSAGES, Status
    from ._sweep import write_plans
    from ._table import atomic_write, check_columns, parse_columns, read_table, settle
    from ._testtime import allocate_samples

    try:
        table = read_table(args.items)
        check_columns(table, ("pass_at_1",), known=tuple(CLASS_RULES))
        columns = {k: v for k, v in table.items() if k in CLASS_RULES}
        values, status, messages = parse_columns(columns, _law(args), required=("pass_at_1",),
                                                 extra=CLASS_RULES)
        n = len(status)
        refused = status == Status.INVALID_INPUT
        dtype = np.float32 if args.float32 else np.float64
        out = {"n_samples": np.full(n, np.nan), "score": np.full(n, np.nan),
               "status": np.full(n, int(Status.INVALID_INPUT))}
        plan = None
        if n and not refused.all():
            weight = np.where(refused, np.nan, values.get("weight", np.ones(n)))
            plan = allocate_samples(
                np.where(refused, 0.5, values["pass_at_1"]).astype(dtype),
                np.asarray(args.sample_budget, dtype), weight=weight.astype(dtype),
                cost=np.asarray(values.get("sample_cost", np.ones(n)), dtype),
                accuracy=np.asarray(args.verifier_accuracy or 1.0, dtype), throw=False)
            ok = int(plan.status) == Status.OPTIMAL
            out = {"n_samples": np.asarray(plan.n_samples, np.float64),
                   "score": np.asarray(plan.score, np.float64),
                   "status": np.where(ok, np.asarray(plan.class_status),
                                      int(plan.status)).astype(int)}
        out = settle(out, status)
        if plan is None:
            code = Status.INVALID_INPUT
            message = (f"{args.items} has no classes" if not n else
                       "every class is invalid; the message column says why")
        else:
            code = Status(int(plan.status))
            message = "" if code == Status.OPTIMAL else STATUS_MESSAGES[code].split(": ", 1)[-1]
            if code == Status.INFEASIBLE:
                message = ("the budget is below one sample per query (the least the classes "
                           "can use)")
        certified = code == Status.OPTIMAL

        def number(x, answer=True):
            if plan is None or (answer and not certified):
                return None
            x = float(x)
            return x if math.isfinite(x) else None

        summary = {
            "status": code.name.lower(),
            "message": message,
            "objective": number(plan.objective) if plan else None,
            "score": number(plan.objective) if plan else None,
            "uniform_score": number(plan.uniform_score) if plan else None,
            "uniform_samples": number(plan.uniform_samples) if plan else None,
            "efficiency": number(plan.efficiency) if plan else None,
            "prices": {"sample_budget": number(plan.price) if plan else None},
            "budgets": {"sample_budget": float(args.sample_budget)},
            "usage": {"sample_budget": number(plan.usage, answer=False) if plan else None},
            "n_items": n,
            "n_invalid": int(np.sum(out["status"] == Status.INVALID_INPUT)),
            # a class table fixes the model and has no demand: no FLOP totals to report
            "train_flops": None,
            "inference_flops": None,
            "residual": number(plan.residual, answer=False) if plan else None,
            "kkt": number(plan.kkt, answer=False) if plan else None,
            "solves": int(plan.iterations) if plan else 0,
        }
        text = json.dumps(summary, indent=2, allow_nan=False) + "\n"
        Path(args.summary).unlink(missing_ok=True)
        counts = write_plans(args.output, table, out, ["n_samples", "score"], messages)
        atomic_write(args.summary, lambda tmp: Path(tmp).write_text(text))
    except (TableError, ValueError, OSError) as error:
        print(f"planner allocate: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    _print_counts("allocate", _plural(n, 'class'), args.output, counts)
    if certified:
        print(f"planner allocate: samples optimal: score {summary['score']:.6g} against "
              f"{summary['uniform_score']:.6g} uniform ({summary['uniform_samples']:.4g} "
              f"samples per query); efficiency {summary['efficiency']:.4g}; price "
              f"{summary['prices']['sample_budget']:.4g} per unit of budget -> {args.summary}",
              file=sys.stderr)
        return EXIT_OK
    print(f"planner allocate: samples {summary['status']}: {message} -> {args.summary}",
          file=sys.stderr)
    return EXIT_FAILED


def _portfolio_summary(portfolio, codes, table_status, budgets, items) -> dict:
    """SUMMARY.json of `planner allocate` (`portfolio` None when no item was valid): the
    portfolio's status, where the table decides it, and its numbers; `objective` and the
    totals only for an optimal portfolio (as a plans table shows plan values for optimal rows
    only); null for a number that is not finite."""
    import numpy as np

    from ._solve import STATUS_MESSAGES, Status

    def number(x):
        return float(x) if math.isfinite(float(x)) else None

    excluded = codes == Status.INVALID_INPUT
    infeasible = int(np.sum(table_status[~excluded] == Status.INFEASIBLE))
    if portfolio is None:
        status = Status.INVALID_INPUT
        message = (f"{items} has no items" if not len(codes) else
                   "every item is invalid; the message column of the plans says why")
    else:
        status = Status(int(portfolio.status))
        if infeasible:
            # closed forms of a row's law show that no allocation meets that item's own target
            # within its own caps (its message says which): then none meets every item's
            status = Status.INFEASIBLE
        elif status == Status.OPTIMAL and np.any(codes[~excluded] != Status.OPTIMAL):
            status = Status.NOT_CONVERGED  # an item without a certified plan
        message = STATUS_MESSAGES[status].split(": ", 1)[-1]
        if infeasible:
            message = (f"{_plural(infeasible, 'item')} cannot reach "
                       f"{'its' if infeasible == 1 else 'their'} own target within the item's "
                       "own caps; the message column of the plans says why")
    certified = status == Status.OPTIMAL

    def of(name, answer=False):
        """The portfolio's `name` as a JSON number; an answer only when certified."""
        if portfolio is None or (answer and not certified):
            return None
        return number(getattr(portfolio, name))

    train, inference = of("train_flops", answer=True), of("inference_flops", answer=True)
    return {
        "status": status.name.lower(),
        "message": "" if certified else message,
        "objective": of("objective", answer=True),
        "prices": {b: None if portfolio is None else number(portfolio.prices[b])
                   for b in budgets},
        "budgets": {b: float(c) for b, c in budgets.items()},
        "n_items": len(codes),
        "n_invalid": int(np.sum(excluded)),
        "train_flops": train,
        "inference_flops": inference,
        "total_flops": None if train is None or inference is None else train + inference,
        "residual": of("residual"),
        "kkt": of("kkt"),
        "gap": of("gap"),
        "solves": 0 if portfolio is None else portfolio.solves,
    }


def _check_score_column(path, sampling: bool) -> None:
    """Refuse a table with a `target_score` column unless repeated sampling is on."""
    from ._table import TableError, read_header

    if "target_score" in read_header(path) and not sampling:
        raise TableError(f"{path}: column 'target_score' is a score target, which needs "
                         "repeated sampling to turn losses into scores: add --sampling")


def _plan_columns(model) -> list[str]:
    """The plan columns of a plans table for `model` (`PLAN_COLUMNS`, those it has)."""
    from ._serving import deployment_of
    from ._solve import has_score
    from ._sweep import PLAN_COLUMNS, SERVING_COLUMNS

    extra = {"score": has_score(model), "density": "density" in model.variables,
             "n_samples": "n_samples" in model.variables,
             **{c: deployment_of(model) is not None for c in SERVING_COLUMNS}}
    return [c for c in PLAN_COLUMNS if extra.get(c, True)]


def _print_counts(command: str, what: str, output, counts) -> None:
    """`planner COMMAND: WHAT -> OUTPUT: the count of each status`, then a line per status
    (`_print_status_lines`)."""
    found = ", ".join(f"{v:,} {k}" for k, v in sorted(counts.items()))
    print(f"planner {command}: {what} -> {output}{': ' + found if found else ''}",
          file=sys.stderr)
    _print_status_lines(counts)


def _print_status_lines(counts) -> None:
    """One line per status found: its count and what it means (and, for rows that are not
    optimal, where to read why)."""
    from ._solve import STATUS_MESSAGES, Status

    for status in Status:
        found = counts.get(status.name.lower(), 0)
        if not found:
            continue
        meaning = STATUS_MESSAGES[status].split(": ", 1)[-1]
        why = "" if status == Status.OPTIMAL else "; the message column says why, row by row"
        print(f"  {found:,} {status.name.lower()}: {meaning}{why}", file=sys.stderr)


def _fitted_range(args):
    """The range the law of the command line was fitted on, if known."""
    from ._sweep import PRESET_RANGES, FittedRange

    if not getattr(args, "law_file", None):
        return PRESET_RANGES.get(args.law)
    import json

    try:
        record = json.loads(Path(args.law_file).read_text())
        largest = record["fitted_range"]
        return FittedRange(float(largest["n_params"][1]), float(largest["n_tokens"][1]),
                           f"the runs of {Path(args.law_file).name}")
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None  # a FIT.json from before fitted ranges were recorded


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


def _need_pyplot(command: str):
    """matplotlib's pyplot (Agg backend), or None after saying how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"planner {command}: error: figures need matplotlib: {PLOTS_HINT}",
              file=sys.stderr)
        return None
    return plt


def _check_figure_suffix(path: str) -> None:
    suffix = Path(path).suffix.lower()
    if suffix not in FIGURE_SUFFIXES:
        raise ValueError(f"{path}: unknown figure suffix {suffix or '(none)'!r}: write "
                         + ", ".join(FIGURE_SUFFIXES))


def cmd_fit(args) -> int:
    try:
        if args.bootstrap == 1 or args.bootstrap < 0:
            raise ValueError(f"--bootstrap must be 0 (no intervals) or at least 2, got "
                             f"{args.bootstrap}")
        if not args.output.lower().endswith(".json"):
            raise ValueError(f"{args.output}: the fit is written as JSON: name it .json")
        if args.plot:
            _check_figure_suffix(args.plot)
    except ValueError as error:
        print(f"planner fit: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    plt = _need_pyplot("fit") if args.plot else None
    if args.plot and plt is None:
        return EXIT_USAGE
    _set_precision(float32=False)
    import jax

    from ._fit import ChinchillaForm, fit, read_runs, write_fit_json

    progress = _Progress(args.progress or sys.stderr.isatty(), "refitted",
                         "bootstrap resamples")
    try:
        runs = read_runs(args.runs)
        n_runs = int(runs.loss.shape[0]) - args.drop_highest_loss
        if progress.enabled:
            n_starts = ChinchillaForm().starts().shape[0]
            print(f"planner fit: fitting {_plural(n_runs, 'run')} of {args.runs} from "
                  f"{_plural(n_starts, 'start')}, then refitting "
                  f"{_plural(args.bootstrap, 'bootstrap resample')}", file=sys.stderr)
        result = fit(runs.n_params, runs.n_tokens, runs.loss,
                     drop_highest_loss=args.drop_highest_loss, n_bootstrap=args.bootstrap,
                     huber_delta=args.huber_delta, key=jax.random.key(args.seed),
                     on_progress=progress.update)
        write_fit_json(result, args.output, include_bootstrap=not args.no_samples)
    except (ValueError, RuntimeError, OSError) as error:
        print(f"planner fit: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    record = result.to_record(include_bootstrap=False)
    for name in ("E", "A", "B", "alpha", "beta"):
        if record["ci95"]:
            low, high = record["ci95"][name]
            print(f"{name:>5} = {record[name]:.6g}  (95% interval {low:.4g} to {high:.4g})")
        else:
            print(f"{name:>5} = {record[name]:.6g}")
    if not record["ci95"]:
        print("planner fit: no intervals without bootstrap resamples (--bootstrap 0); give "
              "--bootstrap B (B >= 2) for standard errors and 95% intervals", file=sys.stderr)
    else:
        for name in ("E", "A", "B", "alpha", "beta"):
            low, high = record["ci95"][name]
            if low > 0 and high / low >= WIDE_INTERVAL:
                print(f"planner fit: warning: the 95% interval of {name}, {low:.4g} to "
                      f"{high:.4g}, spans {math.log10(high / low):.1f} orders of magnitude: the "
                      "runs do not pin it down (more runs, or runs over a wider range of sizes, "
                      "would)", file=sys.stderr)
            elif low <= 0 < high:
                print(f"planner fit: warning: the 95% interval of {name}, {low:.4g} to "
                      f"{high:.4g}, includes 0: the runs do not pin it down", file=sys.stderr)
    if args.plot:
        try:
            _plot_fit(plt, result, runs, args.plot)
        except (OSError, ValueError) as error:
            print(f"planner fit: error: {error}", file=sys.stderr)
            return EXIT_USAGE
        print(f"planner fit: figure -> {args.plot}", file=sys.stderr)
    print(f"planner fit: {_plural(record['n_runs'], 'run')} -> {args.output}", file=sys.stderr)
    return EXIT_OK


def _plot_fit(plt, result, runs, path: str) -> None:
    """Observed against predicted loss, and loss against training compute with the law's
    compute-optimal frontier."""
    import numpy as np

    n, d, loss = (np.asarray(v, dtype=np.float64) for v in (runs.n_params, runs.n_tokens,
                                                             runs.loss))
    law = result.law
    predicted = np.asarray(law.loss(n, d))
    kept = np.ones(n.shape, dtype=bool)
    kept[list(result.dropped)] = False
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    left.scatter(predicted[kept], loss[kept], s=10, label="runs fitted")
    if (~kept).any():
        left.scatter(predicted[~kept], loss[~kept], s=14, marker="x", label="runs dropped")
    bounds = [min(predicted.min(), loss.min()), max(predicted.max(), loss.max())]
    left.plot(bounds, bounds, "k--", lw=1, label="predicted = observed")
    left.set(xscale="log", yscale="log", xlabel="loss predicted by the fit",
             ylabel="observed loss", title="Fit against runs")
    left.legend()
    flops = 6.0 * n * d
    points = right.scatter(flops, loss, c=np.log10(n), s=10, cmap="viridis")
    fig.colorbar(points, ax=right, label="log10 parameters")
    grid = np.geomspace(flops.min(), flops.max(), 100)
    best = np.asarray([law.loss(*law.compute_optimal(c)) for c in grid], dtype=np.float64)
    right.plot(grid, best, "k-", lw=1.5, label="compute-optimal loss of the fit")
    right.set(xscale="log", yscale="log", xlabel="training FLOP (6ND)", ylabel="loss",
              title=f"E={float(law.E):.3g}, A={float(law.A):.3g}, B={float(law.B):.3g}, "
                    f"α={float(law.alpha):.3g}, β={float(law.beta):.3g}")
    right.legend()
    fig.tight_layout()
    _save(plt, fig, path)


def _save(plt, fig, path: str) -> None:
    from ._table import atomic_write

    suffix = Path(path).suffix.lower().lstrip(".")
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=suffix, dpi=150))
    finally:
        plt.close(fig)


def cmd_frontier(args) -> int:
    from ._table import TableError, check_output_suffix, format_floats

    dollars = args.objective == "dollars"
    try:
        check_output_suffix(args.output)
        if not args.target_loss > 0:
            raise ValueError(f"--target-loss must be > 0, got {args.target_loss}")
        if args.points < 2:
            raise ValueError(f"--points must be at least 2, got {args.points}")
        _check_serving_flags(args)
        given = [f for f, v in (("--min-flops", args.min_flops), ("--max-flops", args.max_flops),
                                ("--min-dollars", args.min_dollars),
                                ("--max-dollars", args.max_dollars))
                 if v is not None and (f.endswith("flops") == dollars)]
        if given:
            instead = "--min-dollars/--max-dollars" if dollars else "--min-flops/--max-flops"
            raise ValueError(f"{', '.join(given)} bound caps in "
                             f"{'FLOP' if dollars else 'dollars'}: with --objective "
                             f"{args.objective} give {instead}")
    except (TableError, ValueError) as error:
        print(f"planner frontier: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    _set_precision(float32=False)
    import numpy as np

    from ._compose import Pipeline, Pretraining
    from ._problem import Costs
    from ._solve import Scenario, Status, frontier, solve
    from ._sweep import write_plans

    try:
        law = _law(args)
        e, a = float(law.E), float(law.A)
        alpha, beta = float(law.alpha), float(law.beta)
        gap = args.target_loss - e
        if gap <= 0:
            raise ValueError(f"--target-loss {args.target_loss:g} is at or below the law's "
                             f"irreducible loss E = {e:g}: no model reaches it")
        # Hoffmann et al. 2022, eq. (2): N_min = (A / (L - E))^(1/alpha) is the least model
        # reaching the target (with unlimited data); N_c the training-optimal one. Inference
        # caps below those of 1.05 N_min are infeasible or nearly, caps above N_c's do not bind.
        n_min = (a / gap) ** (1.0 / alpha)
        n_c = (a * (1.0 + alpha / beta) / gap) ** (1.0 / alpha)
        if dollars:
            model = Pipeline(Pretraining(law), _deployment(args))
            scenario = Scenario(target_loss=args.target_loss, max_latency=args.max_latency)
            per_unit = Scenario(target_loss=args.target_loss, inference_demand=1.0,
                                max_latency=args.max_latency)
            # the ends: the cheapest serving of a model of 1.05 N_min, and of the
            # training-dollar optimum's model, per generated token
            best = solve(model, per_unit, objective=Costs(train_dollars=1.0), throw=False)
            b_law = float(law.B)
            small = 1.05 * n_min  # with the data that reaches the target
            small_d = (b_law / (gap - a / small**alpha)) ** (1.0 / beta)
            ends = []
            for n, d in ((small, small_d), (float(best.allocation.n_params),
                                            float(best.allocation.n_tokens))):
                end = solve(model, per_unit, objective=Costs(inference_dollars=1.0),
                            fixed={"n_params": n, "n_tokens": d}, throw=False)
                if int(end.status) != Status.OPTIMAL:
                    raise ValueError("no default range of caps: the cheapest serving at an "
                                     f"end of the frontier (N = {n:.4g}) was not found "
                                     f"(status {Status(int(end.status)).name}); give "
                                     "--min-dollars and --max-dollars")
                ends.append(float(end.outcome.inference_dollars_per_unit))
            low = args.min_dollars if args.min_dollars is not None else ends[0]
            high = args.max_dollars if args.max_dollars is not None else ends[1]
        else:
            model, scenario = Pipeline(Pretraining(law)), Scenario(target_loss=args.target_loss)
            low = args.min_flops if args.min_flops is not None else 2.0 * n_min * 1.05
            high = args.max_flops if args.max_flops is not None else 2.0 * n_c
        unit = "dollars" if dollars else "FLOP"
        if not 0 < low < high:
            raise ValueError(f"the inference {unit} range must satisfy 0 < min < max, got "
                             f"{low:g} to {high:g}")
        caps = np.geomspace(low, high, args.points)
        plan = frontier(model, scenario, caps, objective=args.objective)
        costs = (("train_dollars", "inference_dollars_per_unit") if dollars
                 else ("train_flops",))
        out = {"n_params": np.asarray(plan.allocation.n_params),
               "n_tokens": np.asarray(plan.allocation.n_tokens),
               **{k: np.asarray(getattr(plan.outcome, k)) for k in costs},
               "loss": np.asarray(plan.outcome.loss),
               "status": np.asarray(plan.status).astype(int)}
        values = ["n_params", "n_tokens", *costs, "loss"]
        for k in values:
            out[k] = np.where(out["status"] == 0, out[k], np.nan)
        cap = "max_inference_dollars_per_unit" if dollars else "max_inference_flops_per_unit"
        columns = {"target_loss": format_floats(np.full(len(caps), float(args.target_loss))),
                   cap: format_floats(np.asarray(caps, dtype=float))}
        counts = write_plans(args.output, columns, out, values, [""] * len(caps))
    except (TableError, ValueError, OSError) as error:
        print(f"planner frontier: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    _print_counts("frontier", f"{_plural(len(caps), 'inference cap')} from {low:.4g} to "
                  f"{high:.4g} {unit} per token", args.output, counts)
    return EXIT_OK


def cmd_plot(args) -> int:
    from ._table import TableError, TableReader, as_list

    try:
        _check_figure_suffix(args.output)
        reader = TableReader(args.plans)
        if "status" not in reader.columns:
            raise TableError(f"{args.plans}: no 'status' column: plot the output of "
                             "`planner solve` or `planner frontier`")
        for name in (args.x, args.y):
            if name is not None and name not in reader.columns:
                raise TableError(f"{args.plans}: no column {name!r} (columns: "
                                 f"{', '.join(reader.columns)})")
        if (args.x is None) != (args.y is None):
            raise ValueError("give --x and --y together")
    except (TableError, ValueError) as error:
        print(f"planner plot: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    plt = _need_pyplot("plot")
    if plt is None:
        return EXIT_USAGE
    import numpy as np

    columns: dict[str, list[str]] = {h: [] for h in reader.columns}
    for chunk in reader.chunks(1 << 16):
        for h in reader.columns:
            columns[h].extend(as_list(chunk[h]))
    ok = np.array([s == "optimal" for s in columns["status"]], dtype=bool)

    def number(name):
        with np.errstate(all="ignore"):
            return np.array([float(v) if v.strip() else np.nan for v in columns[name]])[ok]

    try:
        views = _plot_views(columns, args)
        if not views:
            raise TableError(f"{args.plans}: none of the usual views has its columns; give "
                             "--x and --y")
        if not ok.any():
            raise TableError(f"{args.plans}: no optimal plan to plot")
        fig, axes = plt.subplots(1, len(views), figsize=(5.2 * len(views), 4.4), squeeze=False)
        for ax, (x, y, c, title) in zip(axes[0], views, strict=True):
            xs, ys = number(x), number(y)
            if c is not None:
                points = ax.scatter(xs, ys, c=np.log10(np.maximum(number(c), 1.0)), s=8,
                                    cmap="viridis")
                fig.colorbar(points, ax=ax, label=f"log10 {c}")
            else:
                ax.plot(xs, ys, "o-", ms=4)
            ax.set(xlabel=x, ylabel=y, title=title)
            for axis, values in (("x", xs), ("y", ys)):
                finite = values[np.isfinite(values)]
                if finite.size and finite.min() > 0 and finite.max() / finite.min() > 100:
                    getattr(ax, f"set_{axis}scale")("log")
        shown = int(ok.sum())
        fig.suptitle(f"{Path(args.plans).name}: {_plural(shown, 'optimal plan')}"
                     + (f" ({len(ok) - shown:,} others not shown)" if shown < len(ok) else ""))
        fig.tight_layout()
        _save(plt, fig, args.output)
    except (TableError, ValueError, OSError) as error:
        print(f"planner plot: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"planner plot: {_plural(len(views), 'view')} of {_plural(int(ok.sum()), 'plan')} "
          f"-> {args.output}", file=sys.stderr)
    return EXIT_OK


def _plot_views(columns, args) -> list[tuple[str, str, str | None, str]]:
    """(x, y, colour, title) of each panel: --x/--y, or the usual views the table allows."""
    if args.x is not None:
        return [(args.x, args.y, None, f"{args.y} against {args.x}")]
    have = set(columns)
    if {"max_inference_flops_per_unit", "train_flops"} <= have and "inference_demand" not in have:
        return [("max_inference_flops_per_unit", "train_flops", None,
                 "Least training compute per inference cap"),
                ("n_params", "n_tokens", None, "Allocation along the frontier")]
    demand = "inference_demand" if "inference_demand" in have else None
    views = [("n_params", "n_tokens", demand, "Allocation"),
             ("loss", "total_flops", demand, "Lifetime compute against loss"),
             ("train_flops", "inference_flops", None,
              "Training against lifetime inference compute")]
    return [v for v in views if {v[0], v[1]} <= have]


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("planner")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a checkout
        return "unknown (not installed)"


def _experiments_help() -> str:
    """Every experiment of `planner reproduce`, its first docstring line, and the default set;
    read from the modules' source, so that --help imports none of them."""
    import ast
    import importlib.util

    from .experiments import EXPERIMENTS

    lines = ["experiments:"]
    for name, (module, default) in EXPERIMENTS.items():
        summary = ""
        spec = importlib.util.find_spec(f"planner.experiments.{module}")
        if spec is not None and spec.origin:
            source = Path(spec.origin).read_text()
            doc = ast.get_docstring(ast.parse(source)) or ""
            if not doc:  # a module that opens with a comment instead: its first line
                head = source.split("\n", 1)[0]
                doc = head.lstrip("#").strip() if head.startswith("#") else ""
            summary = " ".join(doc.split("\n\n")[0].split())
        mark = " [default]" if default else ""
        lines.append(f"  {name}{mark}: {summary}" if summary else f"  {name}{mark}")
    chosen = [n for n, (_, d) in EXPERIMENTS.items() if d]
    lines += ["", f"'planner reproduce' with no name runs the default set: {', '.join(chosen)}; "
              "'planner reproduce all' runs every experiment."]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from ._laws import PRESETS

    parser = argparse.ArgumentParser(
        prog="planner",
        description="Split compute between training a model and running it.",
    )
    parser.add_argument("--version", action="version", version=f"planner {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    solve = sub.add_parser(
        "solve", help="optimal allocations for a table of scenarios",
        description="Solve every row of SCENARIOS (CSV or Parquet) and write PLANS. Input "
        "columns: target_loss (or target_score with --sampling), inference_demand (lifetime "
        "inference demand: generated tokens, or queries with --sampling; default 0); optional "
        "train_budget, inference_budget, max_inference_flops_per_unit, max_params, "
        "max_tokens, min_density, and per-row law coefficients E, A, B, alpha, beta. Output: "
        "every input column, then n_params, n_tokens, train_flops, inference_flops "
        "(lifetime), total_flops, inference_flops_per_unit, loss, [score, density, "
        "n_samples], status, message.",
    )
    solve.add_argument("scenarios", help="input table (.csv, or .parquet with the extra)")
    solve.add_argument("--output", "-o", required=True, help="output table (.csv or .parquet)")
    law = solve.add_mutually_exclusive_group()
    law.add_argument("--law", default="sardana2024", choices=sorted(PRESETS),
                     help="loss-law preset (default: sardana2024)")
    law.add_argument("--law-file", help="a FIT.json written by `planner fit`")
    solve.add_argument("--quantile", type=float, metavar="Q",
                       help="with --law-file: solve every row under each bootstrap law of the "
                       "fit and write each plan column's Q quantile over the laws (e.g. 0.975; "
                       "holds the table in memory)")
    solve.add_argument("--objective", default="compute", choices=("compute", "loss", "dollars"),
                       help="compute: least lifetime FLOP for the target (default); loss: lowest "
                       "loss within train_budget (and inference_budget); dollars: least "
                       "lifetime dollars on the hardware given (see the serving flags)")
    _add_serving_flags(solve)
    solve.add_argument("--pruning", action="store_true", help="also choose a pruning density")
    solve.add_argument("--sampling", action="store_true",
                       help="also choose samples per query (repeated sampling)")
    _add_sampling_flags(solve)
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

    from ._allocate import BUDGETS

    alloc = sub.add_parser(
        "allocate", help="many items coupled by shared budgets, solved as one problem",
        description="Solve the items of ITEMS (CSV or Parquet; one row per item, with the "
        "columns of `planner solve` and an optional weight, default 1) as one portfolio "
        "coupled by the shared budgets given (planner.allocate), and write each item's plan to "
        "PLANS (the columns of `planner solve`) and the portfolio (status, objective, the "
        "budgets' prices, totals and the residuals that certify it) to SUMMARY.json. Exit "
        "status 0 when the portfolio is optimal, 1 when it is not, 2 for a usage error or a "
        "malformed table.")
    alloc.add_argument("items", help="input table (.csv, or .parquet with the extra)")
    alloc.add_argument("--output", "-o", required=True, help="plans table (.csv or .parquet)")
    alloc.add_argument("--summary", required=True, metavar="SUMMARY.json",
                       help="the portfolio's status and numbers (JSON)")
    alaw = alloc.add_mutually_exclusive_group()
    alaw.add_argument("--law", default="sardana2024", choices=sorted(PRESETS),
                      help="loss-law preset (default: sardana2024)")
    alaw.add_argument("--law-file", help="a FIT.json written by `planner fit`")
    alloc.add_argument("--objective", default="compute",
                       choices=("compute", "dollars", "loss", "score"),
                       help="compute: every item reaches its target, least weighted lifetime "
                       "FLOP (default); loss: least weighted sum of losses; score: greatest "
                       "weighted sum of success rates (with --sampling); dollars: every "
                       "item reaches its target, least weighted lifetime dollars (with the "
                       "serving flags); loss and score need a budget on training (FLOP or "
                       "dollars), and score one on inference too")
    for name, terms in BUDGETS.items():
        alloc.add_argument(_budget_flag(name), dest=name, type=float, metavar="C",
                           help="shared cap on the items' total " + " + ".join(
                               t.replace("_", " ") for t in terms)
                           + (" (dollars; with the serving flags)" if "train_dollars" in terms
                              else " (FLOP)"))
    _add_serving_flags(alloc)
    alloc.add_argument("--pruning", action="store_true", help="also choose pruning densities")
    alloc.add_argument("--sampling", action="store_true",
                       help="also choose samples per query (repeated sampling)")
    _add_sampling_flags(alloc)
    alloc.add_argument("--test-time", action="store_true",
                       help="ITEMS is a table of query classes (pass_at_1, and optional "
                       "weight and sample_cost columns): allocate samples per class to "
                       "maximise the expected success rate under --sample-budget, and report "
                       "the uniform best-of-N plan and the efficiency against it")
    alloc.add_argument("--sample-budget", type=float, metavar="K",
                       help="with --test-time: the average samples (sample_cost units) per "
                       "query, at least one per query")
    alloc.add_argument("--chunk-size", dest="allocate_chunk", type=int, metavar="N",
                       help="items per batched solve of the price search (bounds its memory; "
                       "the sums over the chunks are exact; default: all items at once)")
    alloc.add_argument("--float32", action="store_true",
                       help="solve in float32 (default float64)")
    alloc.add_argument("--progress", action="store_true",
                       help="show the price search even when standard error is not a terminal")
    alloc.set_defaults(func=cmd_allocate)

    reproduce = sub.add_parser(
        "reproduce", help="reproduce published results: tables, figures",
        description="Reproduce published results: each experiment writes a Markdown table, a "
        "JSON file and a PNG figure into the output folder.",
        epilog=_experiments_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    reproduce.add_argument("name", nargs="?", default="default",
                           help="an experiment name (below), 'default' (the experiments "
                           "marked default) or 'all'")
    reproduce.add_argument("--output", "-o", default="out", help="output folder (default: out)")
    reproduce.set_defaults(func=cmd_reproduce)

    frontier = sub.add_parser(
        "frontier", help="least training compute (or dollars) for each cap on inference",
        description="The Pareto frontier of training against inference compute at a fixed "
        "loss (planner.frontier): for each cap on inference FLOP per token, the least "
        "training compute that reaches --target-loss. Output columns: target_loss, "
        "max_inference_flops_per_unit, n_params, n_tokens, train_flops, loss, status, "
        "message. With --objective dollars, caps on inference dollars per generated token and "
        "the least training dollars: target_loss, max_inference_dollars_per_unit, n_params, "
        "n_tokens, train_dollars, inference_dollars_per_unit, loss, status, message.")
    frontier.add_argument("--target-loss", type=float, required=True, metavar="L",
                          help="the loss every point reaches")
    frontier.add_argument("--output", "-o", required=True, help="output table (.csv or "
                          ".parquet)")
    flaw = frontier.add_mutually_exclusive_group()
    flaw.add_argument("--law", default="sardana2024", choices=sorted(PRESETS),
                      help="loss-law preset (default: sardana2024)")
    flaw.add_argument("--law-file", help="a FIT.json written by `planner fit`")
    frontier.add_argument("--points", type=int, default=25,
                          help="number of caps, log-spaced (default 25)")
    frontier.add_argument("--min-flops", type=float, metavar="C",
                          help="smallest cap, FLOP per token (default: 1.05 x 2 N_min, N_min "
                          "the least model that reaches the target)")
    frontier.add_argument("--max-flops", type=float, metavar="C",
                          help="largest cap, FLOP per token (default: 2 N_c, N_c the "
                          "training-optimal model for the target, above which caps do not "
                          "bind)")
    frontier.add_argument("--objective", choices=("compute", "dollars"), default="compute",
                          help="compute (default): caps on inference FLOP, least training "
                          "FLOP; dollars: caps on inference dollars per generated token, "
                          "least training dollars, priced by the serving flags")
    frontier.add_argument("--min-dollars", type=float, metavar="USD",
                          help="smallest cap with --objective dollars, dollars per generated "
                          "token (default: the cheapest serving of a model of 1.05 N_min)")
    frontier.add_argument("--max-dollars", type=float, metavar="USD",
                          help="largest cap with --objective dollars (default: the cheapest "
                          "serving of the training-dollar optimum's model, above which caps "
                          "do not bind)")
    _add_serving_flags(frontier, "serving (with --objective dollars: the hardware that "
                       "prices training and serving)")
    frontier.set_defaults(func=cmd_frontier)

    plot = sub.add_parser(
        "plot", help="figures of a plans table",
        description="Plot the optimal rows of a table written by `planner solve` (allocation "
        "N against D, lifetime compute against loss, training against lifetime inference "
        "compute; coloured by inference_demand where the table has it) or by `planner "
        "frontier` (the frontier and the allocations along it), or any two columns with --x "
        "and --y. Axes spanning more than a factor of 100 are logarithmic.")
    plot.add_argument("plans", help="a table written by planner solve or planner frontier")
    plot.add_argument("--output", "-o", required=True,
                      help="the figure (" + ", ".join(FIGURE_SUFFIXES) + ")")
    plot.add_argument("--x", metavar="COLUMN", help="column on the horizontal axis")
    plot.add_argument("--y", metavar="COLUMN", help="column on the vertical axis")
    plot.set_defaults(func=cmd_plot)

    fit = sub.add_parser("fit", help="fit a loss law to training runs")
    fit.add_argument("runs", help="table with columns n_params, n_tokens (or train_flops), loss")
    fit.add_argument("--output", "-o", required=True, help="FIT.json to write")
    fit.add_argument("--drop-highest-loss", type=int, default=0, metavar="K",
                     help="leave out the K runs with the highest loss (outliers; Besiroglu et "
                     "al. drop 5 of Hoffmann et al.'s 245)")
    fit.add_argument("--bootstrap", type=int, default=1000, metavar="B",
                     help="bootstrap resamples for standard errors and 95%% intervals "
                     "(default 1000; 0 for none)")
    fit.add_argument("--seed", type=int, default=0, help="random seed of the bootstrap")
    fit.add_argument("--huber-delta", type=float, default=1e-3,
                     help="Huber loss threshold on log-loss residuals (default 1e-3)")
    fit.add_argument("--no-samples", action="store_true",
                     help="leave the bootstrap samples out of FIT.json")
    fit.add_argument("--plot", metavar="FIGURE",
                     help="also draw the fit against the runs (" + ", ".join(FIGURE_SUFFIXES)
                     + "; needs matplotlib)")
    fit.add_argument("--progress", action="store_true",
                     help="show progress even when standard error is not a terminal")
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
