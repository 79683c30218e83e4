"""Logs through expdb.start until a signal ends it: python api_forever.py DB CARD LAST_STEP_FILE."""

import signal
import sys
import time
from pathlib import Path

import expdb

signal.signal(signal.SIGINT, signal.default_int_handler)  # even if the parent ignores Ctrl-C
database, card, last_file = sys.argv[1:4]
last = -1
try:
    with expdb.start(card, db=database, lr=0.01) as run:
        step, deadline = 0, time.monotonic() + 120
        while time.monotonic() < deadline:
            run.log(step, loss=1.0 / (step + 1))
            last = step
            step += 1
            time.sleep(0.002)
finally:
    Path(last_file).write_text(str(last))
