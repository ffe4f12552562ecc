# Sardana et al. 2024: the lifetime-compute optimum vs inference demand, and the 13B/2T example.
# Prints the reproduced table beside the published one; writes sardana.{json,md,png}.
# Same as `planner reproduce sardana --output DIR`.
from planner.experiments.sardana import main

main()
