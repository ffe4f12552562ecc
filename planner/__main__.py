"""`python -m planner`: the `planner` command line."""

import sys

from ._cli import main

sys.exit(main())
