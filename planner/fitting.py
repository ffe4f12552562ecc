"""Fitting loss laws to training runs, and planning under the fit's uncertainty.

`fit` is the entry point (a Huber fit in log space from a grid of starts, with bootstrap
intervals; `planner fit` on the command line); `read_runs` reads a runs table, `write_fit_json`
and `read_fit_json` keep a fit, and the quantile functions plan under its bootstrap laws. See
the [fitting page](../laws/fitting.md).
"""

from ._fit import AbstractLawForm as AbstractLawForm
from ._fit import ChinchillaForm as ChinchillaForm
from ._fit import HuberFitSolution as HuberFitSolution
from ._fit import LawFit as LawFit
from ._fit import MultiStartBFGS as MultiStartBFGS
from ._fit import Runs as Runs
from ._fit import bootstrap_weights as bootstrap_weights
from ._fit import compute_optimal_quantiles as compute_optimal_quantiles
from ._fit import fit as fit
from ._fit import huber_fit as huber_fit
from ._fit import huber_objective as huber_objective
from ._fit import laws_from_coefficients as laws_from_coefficients
from ._fit import loss_optimal_quantiles as loss_optimal_quantiles
from ._fit import probability_meets_target as probability_meets_target
from ._fit import read_fit_bootstrap as read_fit_bootstrap
from ._fit import read_fit_json as read_fit_json
from ._fit import read_runs as read_runs
from ._fit import stack_laws as stack_laws
from ._fit import start_grid as start_grid
from ._fit import write_fit_json as write_fit_json
