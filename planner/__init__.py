"""planner: split compute between training a model and running it."""

from ._laws import PRESETS as PRESETS
from ._laws import AbstractLossLaw as AbstractLossLaw
from ._laws import Chinchilla as Chinchilla
from ._compose import VARIABLES as VARIABLES
from ._compose import AbstractTechnique as AbstractTechnique
from ._compose import Allocation as Allocation
from ._compose import Outcome as Outcome
from ._compose import Pipeline as Pipeline
from ._compose import Pretraining as Pretraining
from ._solve import OBJECTIVES as OBJECTIVES
from ._solve import STATUS_MESSAGES as STATUS_MESSAGES
from ._solve import Plan as Plan
from ._solve import Scenario as Scenario
from ._solve import Solver as Solver
from ._solve import Status as Status
from ._solve import constraint_names as constraint_names
from ._solve import has_score as has_score
from ._solve import solve as solve
from ._solve import frontier as frontier
from ._techniques.pruning import IMP_VARIANTS as IMP_VARIANTS
from ._techniques.pruning import IMPVariant as IMPVariant
from ._techniques.pruning import Pruning as Pruning
from ._techniques.pruning import SparsityLaw as SparsityLaw
from ._techniques.pruning import imp_inference_factor as imp_inference_factor
from ._techniques.pruning import imp_training_factor as imp_training_factor
from ._techniques.pruning import rosenfeld_error as rosenfeld_error
