"""A runner whose start-up waits, as `slowstart:train` (tests/scripts on PYTHONPATH): a cluster's signal can come then.

SLOWSTART=import: importing this module waits (as importing torch takes seconds); SLOWSTART=build: its build()
waits, while the run is profiled. Each writes `waiting_<pid>` once it waits, and goes on once `go` exists (at
most 60 s). train() writes `trained_<pid>` and logs 5 steps.
"""

import os
import time
from pathlib import Path


def _wait(phase: str) -> None:
    if os.environ.get("SLOWSTART") != phase:
        return
    Path(f"waiting_{os.getpid()}").touch()
    deadline = time.monotonic() + 60
    while not Path("go").exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def build(params):
    _wait("build")
    raise RuntimeError("no model to profile here")  # noted on the card; the run goes on


def train(params, ctx):
    Path(f"trained_{os.getpid()}").touch()
    for step in range(5):
        ctx.log(step, loss=1.0 / (step + 1))


_wait("import")
