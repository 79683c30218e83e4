"""A script run by `expdb run CARD` (--cmd) that attaches to its run; with --profile, it profiles a CPU model."""

import os
import sys

import expdb

with expdb.start(os.environ["EXPDB_CARD"]) as run:
    if "--profile" in sys.argv:
        import torch

        run.profile(torch.nn.Linear(4, 2), torch.randn(1, 4), time_budget_s=0.05)
    run.log(0, loss=1.0)
