"""The `expdb` command (also `python -m expdb`).

A command that runs cards handles a cluster's signals from here on, before it imports
anything more (see expdb.interrupts): a job's SIGUSR2 or SIGTERM during start-up stops it
with one line, and never kills it half-way through starting a run.
"""

import sys

from . import interrupts

RUNNING_COMMANDS = ("run", "rerun")


def main() -> None:
    if sys.argv[1:2] and sys.argv[1] in RUNNING_COMMANDS:
        interrupts.install()
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt:  # while Python imported the command line
        why = interrupts.why_stopped()
        print(f"interrupted: {why}" if why else "interrupted", file=sys.stderr)
        sys.exit(130)
    cli_main()


if __name__ == "__main__":
    main()
