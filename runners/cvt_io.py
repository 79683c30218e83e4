"""cvt_io: a small CvT backbone with an optional latent array, on synthetic single-object detection.

The built-in runner for the study of seed-notebook.md, section 1. expdb calls

    run(params, ctx)      train, log a curve point every step, report iou50 and miou
    build(params)         (model in eval mode, example inputs of batch 1) for Params/FLOPs/latency

and ``run`` builds its model through the same code as ``build``.

Model
-----
CvT-style backbone: two stages, each a convolutional token embedding (a strided conv,
then LayerNorm) followed by transformer blocks whose q/k/v projections are depthwise
3x3 convolutions + BatchNorm + a linear map (the keys/values of stage 1 use stride 2, as
in CvT). No positional embedding: the convolutions carry position.

Latent array (N > 0): N learned latents read the stage-2 image tokens with
cross-attention, go through L latent self-attention layers (one module applied L times
when ``shared``, L separate modules otherwise), and the image tokens then read the
latents back (cross-attention, residual) before the head, as in Perceiver IO.

- ``shape = "bdhw"``  ([b, d, H, W]): the latents are N tokens of width d; they read all
  image tokens.
- ``shape = "bndhw"`` ([b, n, d, H, W]): each latent carries its own small s x s spatial
  map (s = ``latent_hw``, reduced to a divisor of the token map size). The image token
  map is cut into s x s regions; the latents at position p read (and are read back by)
  the tokens of region p, and the latent self-attention runs across the n axis at each
  of the s x s positions.

N = 0 (or N absent / None) is the plain "cvt" baseline: no latent modules at all.

Head: LayerNorm, a per-token linear squeeze to 16 channels, flatten (keeps position),
an MLP to 4 numbers: (cx, cy) = 0.5 + o[0:2] and (w, h) = exp(o[2:4] + log 0.25), all
relative to the image size. Loss = L1 on (cx, cy, w, h) + (1 - GIoU). Nothing is
bounded: a far-too-large learning rate (lr = 10) overflows to inf/NaN.

Data
----
Synthetic, generated deterministically in code (numpy): ``image`` x ``image`` RGB images
with a cluttered background (a colour gradient, pixel noise, translucent rectangles and
lines of random colours), 3-6 distractor shapes (squares, disks, triangles, crosses and
rings in eight colours), and exactly one target, a RED DISK, at a random position with a
log-uniform diameter from 8 % to 40 % of the image. No distractor is a red disk (but there
are red squares/triangles/... and disks of other colours, orange and magenta among
them). The target box is the exact pixel extent of the disk.

The training set has ``train_size`` images (image i drawn from seed (data_seed, 1, i)),
visited in a fresh permutation each epoch (drawn from the run seed); the held-out set has
``eval_size`` images from seed (data_seed, 2, i) and does not depend on the run seed, so
every card is evaluated on the same images.

Parameters (card key: default)
-------------------------------
N: 0                 latent vectors; 0 / absent = the cvt baseline
L: 6                 latent self-attention layers (0 allowed: read + write only)
shape: "bdhw"        "bdhw" or "bndhw" (also accepts "[b, d, H, W]", "[b, n, d, H, W]")
shared: true         the L latent self-attention layers share one module
latent_hw: 2         bndhw only: side of each latent's spatial map
lr: 4e-3             peak AdamW learning rate
wd: 1e-7             AdamW weight decay (the study's value)
warmup: 50           linear warm-up steps, then cosine decay to 1 % of lr
steps: 600           optimizer steps
batch: 32            training batch size
clip: 0              max total grad norm for clipping; 0 = no clipping (grad_norm is
                     always the norm before clipping)
dim: 64              width of stage 2 and of the latents (stage 1 is dim // 2)
depth: 2             transformer blocks in stage 2 (stage 1 has one)
heads: 2             attention heads (stage 1 uses max(1, heads // 2))
image: 48            image side in pixels (a multiple of 8)
train_size: 8192     training images (epoch = samples / train_size)
eval_size: 512       held-out images
data_seed: 0         seed of the training and held-out images
ckpt_every: 100      steps between checkpoints
amp: "off"           mixed precision: "fp16" (autocast, with a GradScaler against underflow) or
                     "bf16" (autocast, no scaler needed); bf16 on the CPU too, fp16 where the
                     device runs it (CUDA; the CPU is slow at it)
prefetch: 2          batches generated ahead of time by a background thread (0: in the training
                     loop), so that a GPU does not wait for the CPU to draw images
stop_on_nonfinite: true   stop training at the first non-finite loss (the curve ends with
                     it; the run still evaluates and reports, usually iou50 = 0)
seed: -              used only when ctx.seed is None; otherwise ctx.seed seeds the run
                     (init and training-set order; python, numpy and torch RNGs)

Reports
-------
Every step: ``ctx.log(step, epoch=..., samples=step * batch, loss=..., lr=..., grad_norm=...)``
with step = 1..steps (the number of optimizer steps done), lr = the rate used for that
step, grad_norm = total grad norm before clipping (may be inf/NaN on divergence). At the
end: ``ctx.summary(iou50=..., miou=...)`` on the held-out set (a NaN prediction counts as
IoU 0).

Checkpoints (model, optimizer, scheduler, GradScaler, step, RNG states, params) go to
``ctx.checkpoint_path`` every ``ckpt_every`` steps, when ``ctx.should_stop`` turns True
(then ``run`` returns without a summary) and when training ends; each is written to a
temporary file beside it and moved into place with os.replace. With ``ctx.resume``, the
run restores the checkpoint and continues from its step: the rest of the curve equals an
uninterrupted run's (the batch of a step depends only on the step and the seed). A
missing checkpoint with ``ctx.resume`` starts from step 0, with a warning. The RNG states kept
are the CPU's and, on CUDA, those of the one GPU trained on: a run resumes where fewer GPUs are
visible (``cuda`` is then another physical GPU, which continues its random stream).

Cost: the defaults (the cvt baseline, 180K parameters, 5.8M MACs per image) train in about
40 s on 2 CPU cores (iou50 0.57 with seed 0, 0.63 with seed 1); N = 10, L = 6 takes about
70 s. Checkpoints load with torch.load(weights_only=True).

``EXPDB_MAX_STEPS=N`` in the environment trains at most N steps (a note on the card says so): the
README's docs test (tests/test_readme.py) runs its tour that way.

Determinism: same seed, params and device give the same curve. On CUDA the runner sets
``torch.backends.cudnn.deterministic = True`` and ``benchmark = False``.
"""

from __future__ import annotations

import math
import os
import queue
import random
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._cvt_io_params import config, max_steps

AMP_DTYPES = {"off": None, "fp16": torch.float16, "bf16": torch.bfloat16}  # _cvt_io_params.AMP_MODES


# --------------------------------------------------------------------------- data

# name -> RGB; "red" is the target's colour (with disks only).
_COLOURS = np.array(
    [
        [0.90, 0.10, 0.10],  # red
        [0.15, 0.80, 0.20],  # green
        [0.15, 0.30, 0.95],  # blue
        [0.95, 0.90, 0.15],  # yellow
        [0.15, 0.85, 0.90],  # cyan
        [0.90, 0.15, 0.85],  # magenta
        [0.95, 0.55, 0.10],  # orange
        [0.95, 0.95, 0.95],  # white
    ],
    dtype=np.float32,
)
_RED = 0
_SQUARE, _DISK, _TRIANGLE, _CROSS, _RING = range(5)
_TARGET = (_DISK, _RED)


def _shape_mask(kind: int, cx: float, cy: float, r: float, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    dx, dy = xx - cx, yy - cy
    if kind == _SQUARE:
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    if kind == _DISK:
        return dx * dx + dy * dy <= r * r
    if kind == _TRIANGLE:  # upright isosceles
        return (dy <= r) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.5)
    if kind == _CROSS:
        t = max(r * 0.35, 0.8)
        return ((np.abs(dx) <= r) & (np.abs(dy) <= t)) | ((np.abs(dy) <= r) & (np.abs(dx) <= t))
    # ring
    d2 = dx * dx + dy * dy
    return (d2 <= r * r) & (d2 >= (r * 0.55) ** 2)


def _paint(img: np.ndarray, kind: int, cx: float, cy: float, r: float, colour: np.ndarray, coords: np.ndarray):
    """Paint a shape into img [3, H, W] in place; returns its pixel box (x0, y0, x1, y1) or None if empty."""
    size = img.shape[-1]
    x0, x1 = max(0, int(cx - r) - 1), min(size, int(cx + r) + 2)
    y0, y1 = max(0, int(cy - r) - 1), min(size, int(cy + r) + 2)
    if x0 >= x1 or y0 >= y1:
        return None
    mask = _shape_mask(kind, cx, cy, r, coords[None, x0:x1], coords[y0:y1, None])
    if not mask.any():
        return None
    window = img[:, y0:y1, x0:x1]
    window[:, mask] = colour[:, None]
    cols, rows = np.nonzero(mask.any(axis=0))[0], np.nonzero(mask.any(axis=1))[0]
    return x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1


def make_image(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One image [3, size, size] (float32, 0..1) and its target box (x0, y0, x1, y1) in 0..1."""
    coords = np.arange(size, dtype=np.float32) + 0.5
    xx, yy = coords[None, :], coords[:, None]
    # background: a colour gradient
    c0, c1 = rng.uniform(0.15, 0.75, size=(2, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / size
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    img = (c0[:, None, None] + (c1 - c0)[:, None, None] * ramp[None]).astype(np.float32)
    # clutter: translucent rectangles and lines of random colours
    for _ in range(rng.integers(3, 7)):
        colour = rng.uniform(0, 1, size=3).astype(np.float32)
        alpha = rng.uniform(0.25, 0.6)
        if rng.uniform() < 0.5:
            x0, x1 = np.sort(rng.uniform(0, size, 2))
            y0, y1 = np.sort(rng.uniform(0, size, 2))
            window = img[:, int(y0 + 0.5) : int(y1 + 0.5), int(x0 + 0.5) : int(x1 + 0.5)]
            window *= np.float32(1 - alpha)
            window += np.float32(alpha) * colour[:, None, None]
        else:
            p = rng.uniform(0, size, 2)
            theta = rng.uniform(0, np.pi)
            dist = np.abs((xx - p[0]) * np.sin(theta) - (yy - p[1]) * np.cos(theta))
            mask = dist <= rng.uniform(0.5, 1.5)
            img[:, mask] = np.float32(1 - alpha) * img[:, mask] + np.float32(alpha) * colour[:, None]
    # distractors: any shape/colour combination but the target's
    for _ in range(rng.integers(3, 7)):
        while True:
            kind, colour_id = int(rng.integers(5)), int(rng.integers(len(_COLOURS)))
            if (kind, colour_id) != _TARGET:
                break
        r = size * rng.uniform(0.05, 0.18)
        cx, cy = rng.uniform(0, size, 2)
        colour = np.clip(_COLOURS[colour_id] + rng.normal(0, 0.05, 3), 0, 1).astype(np.float32)
        _paint(img, kind, cx, cy, r, colour, coords)
    # the target: a red disk, log-uniform diameter 8 %..40 % of the image, fully inside
    diameter = size * math.exp(rng.uniform(math.log(0.08), math.log(0.40)))
    r = diameter / 2
    cx, cy = rng.uniform(r, size - r, 2)
    colour = np.clip(_COLOURS[_RED] + rng.normal(0, 0.05, 3), 0, 1).astype(np.float32)
    box = _paint(img, _DISK, cx, cy, r, colour, coords)
    if box is None:  # cannot happen with diameter >= 0.08 * 16 px, but keep the box defined
        img[:, int(cy), int(cx)] = colour
        box = (int(cx), int(cy), int(cx) + 1, int(cy) + 1)
    box = np.array(box, dtype=np.float32) / size
    # pixel noise
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(0.06)
    return np.clip(img, 0, 1, out=img), box


def make_images(data_seed: int, split: int, indices, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (normalized, [n, 3, size, size]) and boxes ([n, 4], xyxy in 0..1) of a split."""
    images, boxes = [], []
    for i in indices:
        img, box = make_image(np.random.default_rng([data_seed, split, int(i)]), size)
        images.append(img)
        boxes.append(box)
    x = (torch.from_numpy(np.stack(images)) - 0.5) / 0.25
    return x, torch.from_numpy(np.stack(boxes))


class TrainStream:
    """The batch of every step, from the step number alone (so resuming needs no data state)."""

    def __init__(self, cfg: dict, seed: int):
        self.cfg, self.seed = cfg, seed
        self._perm_epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, 3, epoch]).permutation(self.cfg["train_size"])
            self._perm_epoch = epoch
        return self._perm

    def batch(self, step_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of step ``step_index + 1`` (step_index counts from 0)."""
        size, b = self.cfg["train_size"], self.cfg["batch"]
        indices = []
        for sample in range(step_index * b, (step_index + 1) * b):
            epoch, pos = divmod(sample, size)
            indices.append(self._permutation(epoch)[pos])
        return make_images(self.cfg["data_seed"], 1, indices, self.cfg["image"])


# --------------------------------------------------------------------------- model


class Mlp(nn.Sequential):
    def __init__(self, dim: int, ratio: int = 2):
        super().__init__(nn.Linear(dim, dim * ratio), nn.GELU(), nn.Linear(dim * ratio, dim))


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head attention of q [B, Tq, d] over k, v [B, Tk, d] -> [B, Tq, d]."""
    b, tq, d = q.shape
    tk = k.shape[1]
    q = q.reshape(b, tq, heads, d // heads).transpose(1, 2)
    k = k.reshape(b, tk, heads, d // heads).transpose(1, 2)
    v = v.reshape(b, tk, heads, d // heads).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v)  # expdb.profiler counts its matrix products
    return out.transpose(1, 2).reshape(b, tq, d)


class ConvEmbed(nn.Module):
    """CvT's convolutional token embedding: a strided conv, then LayerNorm over channels."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [b, c, H, W] -> [b, d, H', W']
        x = self.proj(x)
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvProjection(nn.Module):
    """CvT's q/k/v projection: depthwise 3x3 conv + BatchNorm, then a pointwise linear map."""

    def __init__(self, dim: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, stride, 1, groups=dim, bias=False)
        self.bn = nn.BatchNorm2d(dim)
        self.linear = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [b, d, H, W] -> [b, T, d]
        x = self.bn(self.conv(x))
        return self.linear(x.flatten(2).transpose(1, 2))


class ConvBlock(nn.Module):
    """A CvT transformer block: convolutional-projection attention, then an MLP (pre-norm)."""

    def __init__(self, dim: int, heads: int, kv_stride: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.k, self.v = ConvProjection(dim, 1), ConvProjection(dim, kv_stride), ConvProjection(dim, kv_stride)
        self.out = nn.Linear(dim, dim)
        self.mlp = Mlp(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [b, d, H, W]
        b, d, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        y = self.norm1(tokens).transpose(1, 2).reshape(b, d, h, w).contiguous()
        tokens = tokens + self.out(_attend(self.q(y), self.k(y), self.v(y), self.heads))
        tokens = tokens + self.mlp(self.norm2(tokens))
        return tokens.transpose(1, 2).reshape(b, d, h, w)


class CrossAttention(nn.Module):
    """Pre-norm cross-attention of queries over a context, optionally followed by an MLP; residual."""

    def __init__(self, dim: int, heads: int, mlp: bool = True):
        super().__init__()
        self.heads = heads
        self.norm_q, self.norm_kv = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.kv, self.out = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim) if mlp else None
        self.mlp = Mlp(dim) if mlp else None

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        k, v = self.kv(self.norm_kv(context)).chunk(2, dim=-1)
        x = x + self.out(_attend(self.q(self.norm_q(x)), k, v, self.heads))
        if self.mlp is not None and self.norm_mlp is not None:
            x = x + self.mlp(self.norm_mlp(x))
        return x


class SelfAttention(nn.Module):
    """A pre-norm transformer block over a token sequence [B, T, d] (the latent self-attention)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = Mlp(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        x = x + self.out(_attend(q, k, v, self.heads))
        return x + self.mlp(self.norm2(x))


class LatentArray(nn.Module):
    """N latents read the token map, L latent self-attention layers, then the tokens read the latents."""

    def __init__(self, dim: int, heads: int, n: int, layers: int, shared: bool, shape: str, grid: int, latent_hw: int):
        super().__init__()
        self.shape, self.n, self.layers = shape, n, layers
        if shape == "bndhw":
            # each latent carries an s x s map; s divides the token map's side
            self.s = max(k for k in range(1, min(latent_hw, grid) + 1) if grid % k == 0)
            self.latents = nn.Parameter(torch.randn(n, dim, self.s, self.s) * 0.02)
        else:
            self.s = 1
            self.latents = nn.Parameter(torch.randn(n, dim) * 0.02)
        self.read = CrossAttention(dim, heads, mlp=True)
        self.blocks = nn.ModuleList(SelfAttention(dim, heads) for _ in range(1 if shared else layers))
        self.write = CrossAttention(dim, heads, mlp=False)

    def _blocks(self):
        for i in range(self.layers):
            yield self.blocks[0] if len(self.blocks) == 1 else self.blocks[i]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [b, d, H, W] -> [b, d, H, W]
        b, d, h, w = x.shape
        s = self.s
        if self.shape == "bndhw":
            # regions: [b*s*s, (h/s)*(w/s), d]; latents at each position: [b*s*s, n, d]
            rh, rw = h // s, w // s
            tokens = x.reshape(b, d, s, rh, s, rw).permute(0, 2, 4, 3, 5, 1).reshape(b * s * s, rh * rw, d)
            z = self.latents.permute(2, 3, 0, 1).reshape(1, s * s, self.n, d).expand(b, -1, -1, -1)
            z = z.reshape(b * s * s, self.n, d)
        else:
            tokens = x.flatten(2).transpose(1, 2)
            z = self.latents.unsqueeze(0).expand(b, -1, -1)
        z = self.read(z, tokens)
        for block in self._blocks():
            z = block(z)  # bndhw: attention across n at each of the s*s positions
        tokens = self.write(tokens, z)
        if self.shape == "bndhw":
            return tokens.reshape(b, s, s, rh, rw, d).permute(0, 5, 1, 3, 2, 4).reshape(b, d, h, w)
        return tokens.transpose(1, 2).reshape(b, d, h, w)


class CvTIO(nn.Module):
    """The CvT backbone, the optional latent array and the box head; forward gives (cx, cy, w, h)."""

    def __init__(self, cfg: dict):
        super().__init__()
        dim, heads = cfg["dim"], cfg["heads"]
        dim1, heads1 = dim // 2, max(1, heads // 2)
        grid = cfg["image"] // 8
        self.embed1 = ConvEmbed(3, dim1, 7, 4)
        self.stage1 = nn.Sequential(ConvBlock(dim1, heads1, kv_stride=2))
        self.embed2 = ConvEmbed(dim1, dim, 3, 2)
        self.stage2 = nn.Sequential(*(ConvBlock(dim, heads, kv_stride=1) for _ in range(cfg["depth"])))
        self.latent = (
            LatentArray(dim, heads, cfg["N"], cfg["L"], cfg["shared"], cfg["shape"], grid, cfg["latent_hw"])
            if cfg["N"] > 0
            else None
        )
        self.head_norm = nn.LayerNorm(dim)
        self.squeeze = nn.Linear(dim, 16)
        self.head = nn.Sequential(nn.GELU(), nn.Linear(16 * grid * grid, 128), nn.GELU(), nn.Linear(128, 4))
        last = self.head[-1]
        assert isinstance(last, nn.Linear)
        nn.init.normal_(last.weight, std=1e-3)
        nn.init.zeros_(last.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stage2(self.embed2(self.stage1(self.embed1(images))))
        if self.latent is not None:
            x = self.latent(x)
        tokens = self.squeeze(self.head_norm(x.flatten(2).transpose(1, 2)))
        o = self.head(tokens.flatten(1))
        centre = 0.5 + o[:, :2]
        size = torch.exp(o[:, 2:] + math.log(0.25))
        return torch.cat([centre, size], dim=1)


def _make_model(cfg: dict) -> CvTIO:
    return CvTIO(cfg)


def build(params: dict) -> tuple[nn.Module, tuple]:
    """The model for ``params`` in eval mode and example inputs (one image) for profiling.

    The weights are initialized from ``params['seed']`` (default 0); they do not matter for
    Params, FLOPs or latency. Runs on CPU; move both to a device yourself.
    """
    cfg = config(params)
    seed = cfg["seed"] if cfg["seed"] is not None else 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _make_model(cfg)
    images, _ = make_images(cfg["data_seed"], 2, [0], cfg["image"])
    return model.eval(), (images,)


# --------------------------------------------------------------------------- loss and metrics


def _xyxy(cxcywh: torch.Tensor) -> torch.Tensor:
    c, s = cxcywh[:, :2], cxcywh[:, 2:]
    return torch.cat([c - s / 2, c + s / 2], dim=1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and GIoU of matching xyxy boxes [n, 4]."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt, rb = torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    union = area_a + area_b - inter
    iou = inter / union.clamp(min=1e-9)
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).clamp(min=0).prod(dim=1)
    giou = iou - (hull - union) / hull.clamp(min=1e-9)
    return iou, giou


def box_loss(pred: torch.Tensor, target_xyxy: torch.Tensor) -> torch.Tensor:
    """Mean L1 on (cx, cy, w, h) + mean (1 - GIoU)."""
    target = torch.cat([(target_xyxy[:, :2] + target_xyxy[:, 2:]) / 2, target_xyxy[:, 2:] - target_xyxy[:, :2]], dim=1)
    _, giou = box_iou(_xyxy(pred), target_xyxy)
    return (pred - target).abs().sum(dim=1).mean() + (1 - giou).mean()


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, boxes: torch.Tensor, device: str, chunk: int = 128) -> tuple[float, float]:
    """(iou50, miou) of the model on a held-out set; a non-finite prediction counts as IoU 0."""
    was_training = model.training
    model.eval()
    ious = []
    for i in range(0, len(images), chunk):
        pred = model(images[i : i + chunk].to(device))
        iou, _ = box_iou(_xyxy(pred.float()), boxes[i : i + chunk].to(device))
        ious.append(torch.nan_to_num(iou, nan=0.0, posinf=0.0, neginf=0.0).clamp(0, 1).cpu())
    model.train(was_training)
    iou = torch.cat(ious)
    return float((iou >= 0.5).float().mean()), float(iou.mean())


# --------------------------------------------------------------------------- training


def _lr_factor(cfg: dict):
    warmup, steps = cfg["warmup"], cfg["steps"]

    def factor(i: int) -> float:  # i = optimizer steps done so far
        if i < warmup:
            return (i + 1) / (warmup + 1)
        progress = min(1.0, (i - warmup) / max(1, steps - warmup))
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state(device: str) -> dict:
    np_state: tuple = np.random.get_state(legacy=True)  # type: ignore[assignment]  # the tuple form, with legacy=True
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.device(device).type == "cuda":
        # Only the GPU trained on: a resume may see fewer GPUs (another CUDA_VISIBLE_DEVICES), and the
        # other GPUs' states were never used.
        state["cuda_device"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: str) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if torch.device(device).type == "cuda" and "cuda_device" in state:
        torch.cuda.set_rng_state(state["cuda_device"], device)


def _save(path: Path, model, optimizer, scheduler, scaler, step: int, cfg: dict, seed: int, device: str) -> None:
    state = {
        "format": "expdb.cvt_io/1",
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": _rng_state(device),
        "config": cfg,
        "seed": seed,
    }
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _load(path: Path) -> dict:
    # on the CPU: RNG states must stay CPU tensors; load_state_dict moves the rest to the device
    return torch.load(path, map_location="cpu", weights_only=True)


class Prefetcher:
    """The batches of steps `start`, `start + 1`, ... drawn by a background thread, `depth` ahead of the training loop,
    so that a GPU does not wait while the CPU draws images (numpy releases the GIL for much of it). On CUDA they
    arrive in pinned memory, for an asynchronous copy."""

    def __init__(self, stream: TrainStream, start: int, depth: int, pin: bool):
        self._stream, self._pin = stream, pin
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(start,), name="cvt_io-data", daemon=True)
        self._thread.start()

    def _fill(self, step: int) -> None:
        while not self._closed.is_set():
            try:
                images, boxes = self._stream.batch(step)
                if self._pin:
                    images, boxes = images.pin_memory(), boxes.pin_memory()
                item: Any = (images, boxes)
            except BaseException as error:  # noqa: BLE001 - raised in the training loop, where it can be seen
                item = error
            while not self._closed.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return
            step += 1

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._closed.set()
        self._thread.join()


def run(params: dict, ctx) -> None:
    """Train the model for ``params`` and report through ``ctx`` (see the module docstring)."""
    cfg = config(params)
    cap = max_steps(os.environ)
    if cap is not None and cap < cfg["steps"]:
        ctx.note(f"trained {cap} of its {cfg['steps']} steps: EXPDB_MAX_STEPS={cap}")
        cfg["steps"] = cap
    device = str(getattr(ctx, "device", "cpu") or "cpu")
    device_type = torch.device(device).type
    ctx_seed = getattr(ctx, "seed", None)
    seed = int(ctx_seed) if ctx_seed is not None else (cfg["seed"] if cfg["seed"] is not None else 0)
    if device_type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    amp_dtype = AMP_DTYPES[cfg["amp"]]

    _seed_everything(seed)
    model = _make_model(cfg).to(device).train()
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and not n.endswith("latents")]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim > 1 and not n.endswith("latents"))]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg["wd"]}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg["lr"]
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(cfg))
    # fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none. Disabled, it is a no-op.
    scaler = torch.amp.GradScaler(device_type, enabled=cfg["amp"] == "fp16")

    path = Path(ctx.checkpoint_path)
    start = 0
    if getattr(ctx, "resume", False):
        if path.exists():
            state = _load(path)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if "scaler" in state:
                scaler.load_state_dict(state["scaler"])
            _set_rng_state(state["rng"], device)
            start = int(state["step"])
            if state.get("seed", seed) != seed:
                warnings.warn(f"cvt_io: checkpoint was trained with seed {state['seed']}, resuming with {seed}", stacklevel=2)
        else:
            warnings.warn(f"cvt_io: no checkpoint at {path}; starting from step 0", stacklevel=2)

    stream = TrainStream(cfg, seed)
    eval_images, eval_boxes = make_images(cfg["data_seed"], 2, range(cfg["eval_size"]), cfg["image"])
    batch, steps = cfg["batch"], cfg["steps"]
    params_list = [p for group in optimizer.param_groups for p in group["params"]]
    pinned = device_type == "cuda"
    prefetcher = Prefetcher(stream, start, cfg["prefetch"], pinned) if cfg["prefetch"] and start < steps else None

    def save(step: int) -> None:
        _save(path, model, optimizer, scheduler, scaler, step, cfg, seed, device)

    step = start
    try:
        while step < steps:
            if ctx.should_stop:
                save(step)
                return
            images, boxes = prefetcher.next() if prefetcher is not None else stream.batch(step)
            images, boxes = images.to(device, non_blocking=pinned), boxes.to(device, non_blocking=pinned)
            lr = optimizer.param_groups[0]["lr"]
            with torch.autocast(device_type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss = box_loss(model(images), boxes)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)  # the norm and the clipping are of the true gradients
            grad_norm = torch.nn.utils.clip_grad_norm_(params_list, cfg["clip"] if cfg["clip"] > 0 else float("inf"))
            scale = scaler.get_scale()
            scaler.step(optimizer)  # skipped when fp16 gradients overflowed; the scale then shrinks
            scaler.update()
            if scaler.get_scale() >= scale:  # as HF's Trainer: the schedule follows the steps the optimizer took
                scheduler.step()
            step += 1
            loss_value, grad_value = torch.stack([loss.detach().float(), grad_norm.float()]).tolist()
            extra: dict[str, float] = {"grad_norm": grad_value}
            if scaler.is_enabled():
                # An overflowed fp16 step is skipped, not diverged: its inf gradient norm is left out of the curve.
                extra = {"loss_scale": scaler.get_scale(), **({"grad_norm": grad_value} if math.isfinite(grad_value) else {})}
            ctx.log(step, epoch=step * batch / cfg["train_size"], samples=step * batch, loss=loss_value, lr=lr, **extra)
            if cfg["stop_on_nonfinite"] and not math.isfinite(loss_value):
                break
            if step % cfg["ckpt_every"] == 0 and step < steps:
                save(step)
    finally:
        if prefetcher is not None:
            prefetcher.close()
    save(step)
    iou50, miou = evaluate(model, eval_images, eval_boxes, device)
    ctx.summary(iou50=iou50, miou=miou)
