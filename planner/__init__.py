"""planner: split compute between training a model and running it.

The names a plan needs are here: `solve`, `frontier` and `allocate` (many items coupled by
shared budgets, a `Portfolio`), the problem (`Scenario`, `Costs`,
`Problem`), the result (`Plan`, `Status`), the model (`Pipeline`, `Pretraining`, the loss laws
and the techniques one composes), and compute accounting (`Hardware`, `CostModel`, FLOP
counts). The rest lives in three public submodules: `planner.techniques` (the catalog of
techniques and their laws), `planner.fitting` (fitting laws to runs, planning under a fit's
uncertainty) and `planner.distributed` (devices and processes).
"""

import importlib as _importlib

from ._allocate import BUDGETS as BUDGETS
from ._allocate import Portfolio as Portfolio
from ._allocate import allocate as allocate
from ._compose import VARIABLES as VARIABLES
from ._compose import AbstractTechnique as AbstractTechnique
from ._compose import Allocation as Allocation
from ._compose import Outcome as Outcome
from ._compose import Pipeline as Pipeline
from ._compose import Pretraining as Pretraining
from ._compute import CostModel as CostModel
from ._compute import Hardware as Hardware
from ._compute import flops_matched_multiplier as flops_matched_multiplier
from ._compute import inference_flops as inference_flops
from ._compute import train_flops as train_flops
from ._laws import PRESETS as PRESETS
from ._laws import AbstractLossLaw as AbstractLossLaw
from ._laws import Chinchilla as Chinchilla
from ._problem import Costs as Costs
from ._problem import Problem as Problem
from ._serving import Deployment as Deployment
from ._serving import KVCache as KVCache
from ._serving import Serving as Serving
from ._solve import OBJECTIVES as OBJECTIVES
from ._solve import STATUS_MESSAGES as STATUS_MESSAGES
from ._solve import Plan as Plan
from ._solve import Scenario as Scenario
from ._solve import Solver as Solver
from ._solve import Status as Status
from ._solve import constraint_names as constraint_names
from ._solve import frontier as frontier
from ._solve import has_score as has_score
from ._solve import solve as solve
from ._techniques.mcts import MCTS as MCTS
from ._techniques.pruning import Pruning as Pruning
from ._techniques.sampling import FilteredSampling as FilteredSampling
from ._techniques.sampling import RepeatedSampling as RepeatedSampling
from ._techniques.sampling import SuccessLink as SuccessLink

SUBMODULES = ("techniques", "fitting", "distributed")
"""The public submodules, imported on first use (`planner.fitting.fit`)."""

# Names that earlier releases exported here and that now live in a submodule: they still
# resolve (`planner.fit` is `planner.fitting.fit`), so existing code keeps working, but they
# are not part of the top-level API (`__all__`, `dir(planner)`, the API page).
_MOVED = {
    "fitting": ("AbstractLawForm", "ChinchillaForm", "HuberFitSolution", "LawFit",
                "MultiStartBFGS", "Runs", "bootstrap_weights", "compute_optimal_quantiles",
                "fit", "huber_fit", "huber_objective", "laws_from_coefficients",
                "loss_optimal_quantiles", "probability_meets_target", "read_fit_bootstrap",
                "read_fit_json", "read_runs", "stack_laws", "start_grid", "write_fit_json"),
    "distributed": ("barrier", "cpu_devices", "default_dtype", "initialize", "owns_chunk",
                    "shard_batch"),
    "techniques": ("JonesFrontier", "bnsl", "calibrate_mcts", "log10_bnsl", "IMP_VARIANTS",
                   "IMPVariant", "SparsityLaw", "imp_inference_factor", "imp_training_factor",
                   "rosenfeld_error", "SELECTIONS", "BetaSuccess", "CoverageLaw",
                   "codex_code_loss", "pass_at_k_unbiased", "score_log_failure",
                   "AbstractSCurve", "NAtKSCurve", "PassAtKSCurve", "smoothly_broken_ramp"),
}
_HOME = {name: module for module, names in _MOVED.items() for name in names}


def __getattr__(name: str):
    if name in SUBMODULES:
        return _importlib.import_module(f".{name}", __name__)
    if name in _HOME:
        return getattr(_importlib.import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module 'planner' has no attribute {name!r}")


__all__ = [
    "VARIABLES", "AbstractTechnique", "Allocation", "Outcome", "Pipeline", "Pretraining",
    "CostModel", "Hardware", "flops_matched_multiplier", "inference_flops", "train_flops",
    "PRESETS", "AbstractLossLaw", "Chinchilla", "Costs", "Problem", "Deployment", "KVCache",
    "Serving", "OBJECTIVES", "STATUS_MESSAGES", "Plan", "Scenario", "BUDGETS", "Portfolio",
    "allocate", "Solver", "Status", "constraint_names", "frontier", "has_score", "solve", "MCTS",
    "Pruning", "FilteredSampling", "RepeatedSampling", "SuccessLink", *SUBMODULES,
]


def __dir__():
    return sorted(__all__)
