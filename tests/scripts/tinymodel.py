"""A runner with a model expdb can build and profile (`tinymodel:run`), and one whose build fails."""

import torch
from torch import nn

WIDTH = 16


def build(params):
    """Two bias-free linear layers on `features` numbers: features * WIDTH + WIDTH MACs at batch 1."""
    features = params.get("features", 8)
    model = nn.Sequential(nn.Linear(features, WIDTH, bias=False), nn.ReLU(), nn.Linear(WIDTH, 1, bias=False)).eval()
    return model, (torch.zeros(1, features),)


def run(params, ctx):
    model, inputs = build(params)
    for step in range(5):
        ctx.log(step, loss=1.0 / (step + 1))
    ctx.summary(acc=0.5)


def run_setting_flags(params, ctx):
    """Sets process-wide torch flags, as a runner on a GPU does, and never puts them back."""
    torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic = not torch.backends.cudnn.deterministic
    torch.set_float32_matmul_precision("medium")
    torch.use_deterministic_algorithms(not torch.are_deterministic_algorithms_enabled(), warn_only=True)
    torch.set_num_threads(1)
    run(params, ctx)
