"""A data-parallel training loop for torchrun (gloo, CPU): python -m torch.distributed.run --nproc_per_node 2
ddp_train.py CARD [all]. Every rank calls expdb.start; `all` asks the other ranks to add their curves."""

import sys

import torch
import torch.distributed as dist

import expdb

card, all_ranks = sys.argv[1], "all" in sys.argv[2:]
dist.init_process_group("gloo")
rank = dist.get_rank()
with expdb.start(card, all_ranks=all_ranks, lr=0.1) as run:
    for step in range(5):
        gradient = torch.full((1,), float(rank + 1))
        dist.all_reduce(gradient)  # the ranks really train together
        run.log(step, loss=float(gradient) / (step + 1), rank_seen=float(rank))
    run.summary(final=float(rank))
    print(f"rank {rank}: {type(run).__name__} {run.id}", flush=True)
dist.barrier()
dist.destroy_process_group()
