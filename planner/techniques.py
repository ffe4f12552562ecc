"""The catalog of techniques that trade training compute for inference compute.

The pipeline stages (`Pruning`, `RepeatedSampling`, `FilteredSampling`, `MCTS`, also at the
top of `planner`) and the laws, closed forms and calibrations they are built from: pruning
(Rosenfeld et al. 2021's sparsity law, IMP's costs), repeated sampling (pass@k, coverage,
success links; test-time samples per class of queries, `allocate_samples`, and with the
model, `train_to_test`), Monte Carlo Tree Search (Jones 2021's frontiers) and S-curves of
success against compute. Each family has its page under "Laws and techniques".
"""

from ._compute import flops_matched_multiplier as flops_matched_multiplier
from ._techniques.mcts import MCTS as MCTS
from ._techniques.mcts import JonesFrontier as JonesFrontier
from ._techniques.mcts import bnsl as bnsl
from ._techniques.mcts import calibrate_mcts as calibrate_mcts
from ._techniques.mcts import log10_bnsl as log10_bnsl
from ._techniques.pruning import IMP_VARIANTS as IMP_VARIANTS
from ._techniques.pruning import IMPVariant as IMPVariant
from ._techniques.pruning import Pruning as Pruning
from ._techniques.pruning import SparsityLaw as SparsityLaw
from ._techniques.pruning import imp_inference_factor as imp_inference_factor
from ._techniques.pruning import imp_training_factor as imp_training_factor
from ._techniques.pruning import rosenfeld_error as rosenfeld_error
from ._techniques.sampling import SELECTIONS as SELECTIONS
from ._techniques.sampling import BetaSuccess as BetaSuccess
from ._techniques.sampling import CoverageLaw as CoverageLaw
from ._techniques.sampling import FilteredSampling as FilteredSampling
from ._techniques.sampling import RepeatedSampling as RepeatedSampling
from ._techniques.sampling import SuccessLink as SuccessLink
from ._techniques.sampling import codex_code_loss as codex_code_loss
from ._techniques.sampling import pass_at_k_unbiased as pass_at_k_unbiased
from ._techniques.sampling import score_log_failure as score_log_failure
from ._techniques.scurve import AbstractSCurve as AbstractSCurve
from ._techniques.scurve import NAtKSCurve as NAtKSCurve
from ._techniques.scurve import PassAtKSCurve as PassAtKSCurve
from ._techniques.scurve import smoothly_broken_ramp as smoothly_broken_ramp
from ._testtime import JointPlan as JointPlan
from ._testtime import SamplePlan as SamplePlan
from ._testtime import allocate_samples as allocate_samples
from ._testtime import beta_quantile as beta_quantile
from ._testtime import difficulty_classes as difficulty_classes
from ._testtime import train_to_test as train_to_test
