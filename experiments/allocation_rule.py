# Erdil 2024: training's share of total compute at the optimum is 1/(1 + exchange rate).
# Prints solver optima beside the rule; writes allocation_rule.{json,md,png}.
# Same as `planner reproduce allocation_rule --output DIR`.
from planner.experiments.allocation_rule import main

main()
