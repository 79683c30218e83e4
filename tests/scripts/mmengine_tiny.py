"""A tiny regression model, dataset and metric registered in MMEngine, for the ExpdbVisBackend test's config."""

import torch
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, METRICS, MODELS
from torch import nn
from torch.utils.data import Dataset


@MODELS.register_module()
class TinyRegressor(BaseModel):
    def __init__(self, width: int = 4):
        super().__init__()
        self.net = nn.Linear(width, 1)

    def forward(self, x, y, mode="tensor"):
        out = self.net(x)
        if mode == "loss":
            return {"loss": nn.functional.mse_loss(out, y)}
        return list(zip(out, y, strict=True))


@DATASETS.register_module()
class TinyRegression(Dataset):
    """y = the sum of x, from a fixed seed."""

    def __init__(self, size: int = 32, width: int = 4):
        self.x = torch.randn(size, width, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return {"x": self.x[index], "y": self.x[index].sum(0, keepdim=True)}


@METRICS.register_module()
class TinyMSE(BaseMetric):
    def process(self, data_batch, data_samples):
        self.results.extend(float(((out - y) ** 2).mean()) for out, y in data_samples)

    def compute_metrics(self, results):
        return {"mse": sum(results) / len(results)}
