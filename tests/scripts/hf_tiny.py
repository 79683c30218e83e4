"""A tiny regression model trained by the HuggingFace Trainer on the CPU, reporting to ExpdbCallback.

As a script (python hf_tiny.py DB CARD FAIL_AT) it fails in training step FAIL_AT and lets the error end it.
"""

import math
import sys

import torch
from torch import nn
from transformers import Trainer, TrainingArguments

from expdb.integrations.hf import ExpdbCallback


class Tiny(nn.Module):
    def __init__(self, fail_at: int | None = None, nan_from: int | None = None):
        super().__init__()
        self.net = nn.Linear(4, 1)
        self.fail_at, self.nan_from, self.calls = fail_at, nan_from, 0

    def forward(self, x, labels=None):
        if self.training:
            self.calls += 1
            if self.calls == self.fail_at:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        out = self.net(x)
        loss = nn.functional.mse_loss(out, labels)
        if self.training and self.nan_from is not None and self.calls >= self.nan_from:
            loss = loss * math.nan
        return {"loss": loss, "logits": out}


def dataset():
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    return [{"x": row, "labels": row.sum(0, keepdim=True)} for row in x]


def trainer(callback, output_dir, *, lr=0.05, epochs=2, fail_at=None, nan_from=None) -> Trainer:
    args = TrainingArguments(
        output_dir=output_dir, learning_rate=lr, per_device_train_batch_size=8, num_train_epochs=epochs, logging_steps=1,
        eval_strategy="epoch", save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
    )
    return Trainer(
        model=Tiny(fail_at, nan_from), args=args, train_dataset=dataset(), eval_dataset=dataset(), callbacks=[callback]
    )


if __name__ == "__main__":
    database, card, fail_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    trainer(ExpdbCallback(card, db=database), "out", fail_at=fail_at).train()
