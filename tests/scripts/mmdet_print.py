"""Prints MMDetection 2.x training lines (from the real Cascade R-CNN log that diverges at step 300).

python mmdet_print.py [--lr X] [--until-nan] [--nan-forever] [--silent-after-nan SECONDS]
                      [--exit CODE] [--pidfile PATH] [--marker PATH]
"""

import argparse
import os
import sys
import time
from pathlib import Path

HEAD = (
    "2021-01-25 19:25:{:02d},459 - mmdet - INFO - Epoch [1][{}/5455]\t"
    "lr: 4.983e-04, eta: 8:02:25, time: 0.443, data_time: 0.047, memory: 3654, "
)
FINITE = [
    (50, "loss_rpn_cls: 0.1925, loss_rpn_bbox: 0.0304, s0.loss_cls: 0.5629, s0.acc: 87.7969, loss: 1.4106, grad_norm: 10.6679"),
    (100, "loss_rpn_cls: 0.0565, loss_rpn_bbox: 0.0194, s0.loss_cls: 0.2479, s0.acc: 92.6836, loss: 0.8306, grad_norm: 6.3832"),
    (150, "loss_rpn_cls: 0.0738, loss_rpn_bbox: 0.0234, s0.loss_cls: 0.2896, s0.acc: 91.3672, loss: 1.0013, grad_norm: 8.8747"),
    (200, "loss_rpn_cls: 0.0615, loss_rpn_bbox: 0.0221, s0.loss_cls: 0.2475, s0.acc: 93.0781, loss: 0.8342, grad_norm: 7.5786"),
    (250, "loss_rpn_cls: 0.0812, loss_rpn_bbox: 0.0254, s0.loss_cls: 0.2639, s0.acc: 92.2188, loss: 0.8832, grad_norm: 7.2209"),
]
NAN = "loss_rpn_cls: 0.6478, loss_rpn_bbox: 0.0342, s0.loss_cls: nan, s0.acc: 14.7109, loss: nan, grad_norm: nan"

parser = argparse.ArgumentParser()
parser.add_argument("--lr")
parser.add_argument("--until-nan", action="store_true", help="also print the NaN line at step 300")
parser.add_argument("--nan-forever", action="store_true", help="then keep printing NaN lines (at most 60 s)")
parser.add_argument("--silent-after-nan", type=float, default=0.0, help="then sleep this long without output")
parser.add_argument("--exit", type=int, default=0)
parser.add_argument("--pidfile")
parser.add_argument("--marker", help="written when the script reaches its end")
args = parser.parse_args()
if args.pidfile:
    Path(args.pidfile).write_text(str(os.getpid()))
print(f"argv: {' '.join(sys.argv[1:])}", flush=True)
for index, (step, fields) in enumerate(FINITE):
    print(HEAD.format(index, step) + fields, flush=True)
if args.until_nan or args.nan_forever:
    print(HEAD.format(30, 300) + NAN, flush=True)
step, deadline = 300, time.monotonic() + 60
while args.nan_forever and time.monotonic() < deadline:
    step += 50
    print(HEAD.format(31, step) + NAN, flush=True)
    time.sleep(0.02)
time.sleep(args.silent_after_nan)
if args.exit:
    print("RuntimeError: CUDA out of memory", flush=True)
if args.marker:
    Path(args.marker).write_text("reached the end")
sys.exit(args.exit)
