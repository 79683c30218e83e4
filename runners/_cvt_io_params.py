"""The parameters of the cvt_io runner, checked without torch: `expdb new` checks a card's parameters with
`config` when the card is created, so that a card that cannot run is refused then, not when it runs."""

from __future__ import annotations

import re
import warnings
from typing import Any

DEFAULTS: dict[str, Any] = {
    "N": 0,
    "L": 6,
    "shape": "bdhw",
    "shared": True,
    "latent_hw": 2,
    "lr": 4e-3,
    "wd": 1e-7,
    "warmup": 50,
    "steps": 600,
    "batch": 32,
    "clip": 0.0,
    "dim": 64,
    "depth": 2,
    "heads": 2,
    "image": 48,
    "train_size": 8192,
    "eval_size": 512,
    "data_seed": 0,
    "ckpt_every": 100,
    "amp": "off",
    "prefetch": 2,
    "stop_on_nonfinite": True,
    "seed": None,
}

_INT_KEYS = ("N", "L", "latent_hw", "warmup", "steps", "batch", "dim", "depth", "heads", "image",
             "train_size", "eval_size", "data_seed", "ckpt_every", "prefetch")
AMP_MODES = ("off", "fp16", "bf16")  # fp32, autocast to fp16 (with a GradScaler), autocast to bf16
_FLOAT_KEYS = ("lr", "wd", "clip")
_BOOL_KEYS = ("shared", "stop_on_nonfinite")


# --------------------------------------------------------------------------- parameters


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "no", "0", "off"):
        return False
    raise ValueError(f"cvt_io: {key} must be true or false, not {value!r}")


def _as_int(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"cvt_io: {key} must be an integer, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return _as_int(key, float(value))
        except ValueError:
            pass
    raise ValueError(f"cvt_io: {key} must be an integer, not {value!r}")


def _as_float(key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"cvt_io: {key} must be a number, not {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"cvt_io: {key} must be a number, not {value!r}") from None


def _as_shape(value: Any) -> str:
    letters = re.sub(r"[^a-z]", "", str(value).lower())
    if letters in ("bdhw", "bndhw"):
        return letters
    raise ValueError(f'cvt_io: shape must be "bdhw" ([b, d, H, W]) or "bndhw" ([b, n, d, H, W]), not {value!r}')


def config(params: dict | None) -> dict[str, Any]:
    """The full configuration: ``params`` over DEFAULTS, checked and converted to the right types.

    A key whose value is None takes its default (the baseline card has no N, L, shape...).
    Unknown keys are ignored with a warning.
    """
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        warnings.warn(f"cvt_io: ignoring unknown parameters {', '.join(unknown)}", stacklevel=3)
    cfg = dict(DEFAULTS)
    cfg.update({k: v for k, v in params.items() if k in DEFAULTS and v is not None})
    for key in _INT_KEYS:
        cfg[key] = _as_int(key, cfg[key])
    for key in _FLOAT_KEYS:
        cfg[key] = _as_float(key, cfg[key])
    for key in _BOOL_KEYS:
        cfg[key] = _as_bool(key, cfg[key])
    cfg["shape"] = _as_shape(cfg["shape"])
    cfg["amp"] = str(cfg["amp"]).lower()
    if cfg["amp"] in ("false", "0", "none", "fp32"):
        cfg["amp"] = "off"
    if cfg["amp"] not in AMP_MODES:
        raise ValueError(f'cvt_io: amp must be "off", "fp16" or "bf16", not {cfg["amp"]!r}')
    if cfg["seed"] is not None:
        cfg["seed"] = _as_int("seed", cfg["seed"])
        if cfg["seed"] < 0:  # its data order is drawn by numpy's generators, which take no negative seed
            raise ValueError(f"cvt_io: seed must be >= 0, not {cfg['seed']!r}")
    for key in ("N", "L", "warmup", "steps", "clip", "wd", "data_seed", "prefetch"):
        if cfg[key] < 0:
            raise ValueError(f"cvt_io: {key} must be >= 0, not {cfg[key]!r}")
    for key in ("latent_hw", "batch", "dim", "depth", "heads", "train_size", "eval_size", "ckpt_every"):
        if cfg[key] < 1:
            raise ValueError(f"cvt_io: {key} must be >= 1, not {cfg[key]!r}")
    if cfg["image"] < 16 or cfg["image"] % 8:
        raise ValueError(f"cvt_io: image must be a multiple of 8 and at least 16, not {cfg['image']!r}")
    if cfg["dim"] % cfg["heads"] or (cfg["dim"] // 2) % max(1, cfg["heads"] // 2):
        raise ValueError(f"cvt_io: dim ({cfg['dim']}) and dim // 2 must be divisible by the heads")
    if not cfg["lr"] > 0:
        raise ValueError(f"cvt_io: lr must be > 0, not {cfg['lr']!r}")
    return cfg


def check(params: dict, environ) -> None:
    """What `expdb new` and `expdb run` check before a run exists: the parameters and EXPDB_MAX_STEPS."""
    config(params)
    max_steps(environ)


def max_steps(environ) -> int | None:
    """EXPDB_MAX_STEPS: train at most this many steps whatever the card says (to try a study quickly, and for
    the README's docs test); None when it is not set."""
    text = environ.get("EXPDB_MAX_STEPS", "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"cvt_io: EXPDB_MAX_STEPS must be a whole number of steps above 0, not {text!r}")
    return int(text)
