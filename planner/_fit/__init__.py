"""Fitting loss laws to training runs, with bootstrap uncertainty, and planning under it.

The published method (Hoffmann et al. 2022, App. D.2; Besiroglu et al. 2024): minimise the
summed Huber loss ($\\delta = 10^{-3}$) of log-loss residuals, with the law written in
log-sum-exp form, by quasi-Newton from a grid of starting points, and keep the best optimum.
Here every start is one member of a single batch (`vmap` over starts, `jit`), and so is every
bootstrap resample: a resample is a vector of multinomial counts used as weights, so all
resamples share one shape and one compiled solve.

One module per concern, every name importable from here:

- `_forms`: law forms in unconstrained coefficients, the Huber objective;
- `_optimise`: the batched multi-start BFGS and the bootstrap weights;
- `_result`: `fit` and its result, `LawFit`;
- `_runs`: reading training runs from a table;
- `_uncertainty`: quantiles of plans over a batch of laws;
- `_json`: FIT.json, written and read back with every field checked.
"""

from ._forms import COEFFICIENTS as COEFFICIENTS
from ._forms import HUBER_DELTA as HUBER_DELTA
from ._forms import AbstractLawForm as AbstractLawForm
from ._forms import ChinchillaForm as ChinchillaForm
from ._forms import huber as huber
from ._forms import huber_objective as huber_objective
from ._forms import start_grid as start_grid
from ._json import read_fit_bootstrap as read_fit_bootstrap
from ._json import read_fit_json as read_fit_json
from ._json import write_fit_json as write_fit_json
from ._optimise import HuberFitSolution as HuberFitSolution
from ._optimise import MultiStartBFGS as MultiStartBFGS
from ._optimise import _bfgs as _bfgs
from ._optimise import bootstrap_weights as bootstrap_weights
from ._optimise import huber_fit as huber_fit
from ._result import LawFit as LawFit
from ._result import fit as fit
from ._result import highest_loss as highest_loss
from ._runs import RUN_COLUMNS as RUN_COLUMNS
from ._runs import Runs as Runs
from ._runs import read_runs as read_runs
from ._uncertainty import compute_optimal_quantiles as compute_optimal_quantiles
from ._uncertainty import laws_from_coefficients as laws_from_coefficients
from ._uncertainty import loss_optimal_quantiles as loss_optimal_quantiles
from ._uncertainty import probability_meets_target as probability_meets_target
from ._uncertainty import stack_laws as stack_laws
