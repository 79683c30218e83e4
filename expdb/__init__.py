"""expdb: an experiment notebook that runs.

    import expdb
    with expdb.start("detr3d_bs8", batch=8, aux_loss=True) as run:
        for step, batch in enumerate(loader):
            ...
            run.log(step, loss=loss.item(), lr=lr)
        run.summary(iou50=0.34)
"""

from .api import start
from .errors import ExpdbError
from .runs import RunStopped

__version__ = "0.1.0"
__all__ = ["ExpdbError", "RunStopped", "start"]
