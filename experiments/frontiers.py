# Iso-performance contours and Pareto frontiers of each trade-off technique (Epoch AI 2023).
# Prints the span of every contour drawn; writes frontiers.{json,md,png}.
# Same as `planner reproduce frontiers --output DIR`.
from planner.experiments.frontiers import main

main()
