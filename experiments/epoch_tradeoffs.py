# Villalobos & Atkinson 2023 (Epoch AI): the summary table of training-inference trade-off spans.
# Prints each technique's spans beside the report's; writes epoch_tradeoffs.{json,md,png}.
# Same as `planner reproduce epoch_tradeoffs --output DIR`.
from planner.experiments.epoch_tradeoffs import main

main()
