"""Kept so that ``python -m serving.experiment_log export ...`` keeps working: the experiment log lives in
``experiments/`` now (``rlportfolio experiments export``)."""

import sys

from experiments.log_export import main

if __name__ == "__main__":
    sys.exit(main())
