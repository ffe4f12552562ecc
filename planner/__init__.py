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
