# Roberts et al. 2026: N, D and samples per query planned under one end-to-end budget.
# Prints the optimum against demand; writes joint_sampling.{json,md,png}.
# Same as `planner reproduce joint_sampling --output DIR`.
from planner.experiments.joint_sampling import main

main()
