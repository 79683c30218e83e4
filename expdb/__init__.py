"""expdb: an experiment notebook that runs.

    import expdb
    with expdb.start("detr3d_bs8", batch=8, aux_loss=True) as run:
        for step, batch in enumerate(loader):
            ...
            run.log(step, loss=loss.item(), lr=lr)
        run.summary(iou50=0.34)
"""

import os
import sys
from importlib.machinery import PathFinder

from .errors import ExpdbError


class _CheckoutFinder:
    """In a source checkout, `expdb.runners` and `expdb.migrations` are the repository's top-level
    runners/ and migrations/: an install puts them inside the package (pyproject's package-dir)."""

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname in ("expdb.runners", "expdb.migrations"):
            return PathFinder.find_spec(fullname, [cls.root])  # looks up the last name part in root
        return None


if not os.path.isdir(os.path.join(__path__[0], "runners")) and os.path.isfile(
    os.path.join(_CheckoutFinder.root, "runners", "__init__.py")
):
    # First, so that an expdb installed elsewhere (an editable install of another checkout) does not win.
    sys.meta_path.insert(0, _CheckoutFinder)

__version__ = "0.1.0"
__all__ = ["ExpdbError", "RunStopped", "open", "profile", "start"]


def start(name: str, **options):
    """Record a run of the card `name` (created with the given parameters if it does not exist):
    `with expdb.start("detr3d_bs8", batch=8) as run: run.log(step, loss=...)`. See `expdb.api.start`."""
    from .api import start as start_run

    return start_run(name, **options)


def __getattr__(name: str):
    if name == "RunStopped":  # imported on use: `import expdb` stays light for the command line
        from .runs import RunStopped

        return RunStopped
    raise AttributeError(f"module 'expdb' has no attribute {name!r}")


def open(db: str | None = None):  # noqa: A001 - expdb.open(db), as the notebook reads it
    """The database at `db` (default: --db's default) for a notebook: `.table(...)`, `.cards()`,
    `.curve(card, key)` and `.curves(cards, key)` as pandas DataFrames. Imports pandas."""
    from .notebook import Notebook

    return Notebook(db)


def profile(model, inputs, **options):
    """Params, FLOPs (fvcore, MACs) and Cost-Time of any model on example inputs: an `expdb.profiler.Profile`.

    Options: device, dtype (fp32/fp16/bf16), warmup, iterations, time_budget_s, threads,
    throughput_batch. Imports torch and fvcore.
    """
    from .profiler import profile as measure

    return measure(model, inputs, **options)
