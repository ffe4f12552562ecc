# Overtraining + pruning + repeated sampling, and overtraining + MCTS, solved jointly.
# Prints joint spans beside the sums of the parts; writes combined.{json,md,png}.
# Same as `planner reproduce combined --output DIR`.
from planner.experiments.combined import main

main()
