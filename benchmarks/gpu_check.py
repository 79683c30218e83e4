"""Checks the CUDA paths of expdb end to end, printing PASS or FAIL per item; under 5 minutes.

    .venv/bin/python benchmarks/gpu_check.py           # on a machine with a CUDA GPU
    .venv/bin/python benchmarks/gpu_check.py --cpu     # a dry run of the same checks on the CPU

Items:
1. profiles in fp32, fp16 and bf16 against torch.utils.benchmark.Timer on the same model
   (the medians within TIMER_TOLERANCE of each other; a dtype the device does not compute
   natively must be refused in one line instead);
2. the recorded device (the GPU's name), dtype, the parameters' dtype of a bf16 model, and
   the flags (cudnn.benchmark with cudnn_benchmark=True, TF32 as torch has it);
3. the model's state after profiling: every module's mode, every tensor (device, dtype,
   memory format) and requires_grad, and the process-wide torch settings;
4. no GPU memory left behind by a profile (memory_allocated before == after);
5. the built-in runner (runners/cvt_io) on the device: a run stopped half-way and resumed
   from its checkpoint logs the same losses as one uninterrupted run; `expdb run` of it
   records the device, its name, the training throughput (and peak memory on CUDA) and
   puts back the cudnn flags the runner set;
6. the built-in runner with AMP: fp16 with its GradScaler (CUDA) and bf16 (where native) train to
   finite losses, and the checkpoint keeps only the random state of the device used;
7. a script's run (expdb.start) records the device its tensors are on with its name, a CPU script
   the CPU (not the GPU beside it), and system metrics: sys/gpu0_util and sys/gpu0_mem_mb through
   NVML on CUDA (none on the CPU), and one sample costs under 1% of the sampling interval;
8. refused in one line, exit 2, nothing recorded: `expdb run --device cuda:N` past the last GPU
   (on the CPU: --device cuda);
9. a 2-job queue pinned to one GPU (`expdb run --all --gpus 0 --jobs 2`; on the CPU,
   `--jobs 2`): both runs finish on that device, recorded with its name, and their
   profiles are marked as taken while another job shared it.

Exit status: 0 when every item passes, 1 otherwise. Nothing is written outside a
temporary directory.
"""

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402 - after the repository is importable
from torch import nn  # noqa: E402

from expdb.devices import bf16_native, torch_settings  # noqa: E402
from expdb.errors import ExpdbError  # noqa: E402
from expdb.profiler import profile  # noqa: E402

TIMER_TOLERANCE = 0.5  # relative difference of the medians; generous: the two time slightly differently
TINY_RUNNER = {"N": 2, "L": 1, "steps": 6, "batch": 8, "train_size": 64, "eval_size": 16, "image": 16, "dim": 16,
               "depth": 1, "heads": 2, "warmup": 2, "ckpt_every": 3}


class Check:
    def __init__(self) -> None:
        self.results: list[tuple[str, bool]] = []

    def item(self, name: str, passed: bool, detail: str = "", judged: bool = True) -> None:
        """One check's verdict; one not `judged` is shown as INFO and not counted."""
        if judged:
            self.results.append((name, passed))
        verdict = ("PASS" if passed else "FAIL") if judged else "INFO"
        print(f"{verdict}  {name}" + (f"  ({detail})" if detail else ""), flush=True)

    def guarded(self, name: str, check) -> None:
        """Run `check()`, which calls item(); an exception fails `name`."""
        try:
            check()
        except Exception as error:  # noqa: BLE001 - a check that breaks is a FAIL, and the others still run
            traceback.print_exc(limit=3)
            self.item(name, False, f"{type(error).__name__}: {error}")


class ConvNet(nn.Module):
    """A small conv net with a BatchNorm, enough work per pass for a GPU timing to mean something."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1, stride=2), nn.BatchNorm2d(64), nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1, stride=2), nn.ReLU(),
        )
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


def check_dtypes(check: Check, device: str, batch: int, side: int) -> None:
    from torch.utils.benchmark import Timer

    target = torch.device(device)
    for dtype, torch_dtype in (("fp32", None), ("fp16", torch.float16), ("bf16", torch.bfloat16)):
        name = f"profile {dtype} against torch.utils.benchmark.Timer"

        def one(dtype=dtype, torch_dtype=torch_dtype, name=name) -> None:
            model, x = ConvNet(), torch.randn(batch, 3, side, side)
            try:
                measured = profile(model, x, device=device, dtype=dtype, time_budget_s=2.0)
            except ExpdbError as error:
                refused = "\n" not in str(error) and (
                    (dtype == "bf16" and not bf16_native(target)) or (dtype == "fp16" and target.type == "cpu")
                )
                check.item(name, refused, f"refused: {error}")
                return
            reference_model, reference_x = ConvNet().to(target).eval(), x.to(target)
            code = "with torch.inference_mode(), ctx():\n    model(x)"
            ctx = (lambda: torch.autocast(target.type, dtype=torch_dtype)) if torch_dtype else torch.inference_mode
            timer = Timer(code, globals={"torch": torch, "model": reference_model, "x": reference_x, "ctx": ctx})
            reference_ms = timer.blocked_autorange(min_run_time=1.0).median * 1000
            ours = measured.cost_time_ms or 0.0
            apart = abs(ours - reference_ms) / reference_ms
            detail = f"expdb {ours:.3f} ms over {measured.iterations} passes, Timer {reference_ms:.3f} ms"
            # On a shared CPU, the dry run's timings say nothing of the GPU's: shown, not judged.
            check.item(name, apart <= TIMER_TOLERANCE, detail, judged=target.type == "cuda")

        check.guarded(name, one)


def check_recorded(check: Check, device: str) -> None:
    target = torch.device(device)
    expected_name = torch.cuda.get_device_name(target) if target.type == "cuda" else None
    model, x = ConvNet(), torch.randn(1, 3, 32, 32)
    cuda = target.type == "cuda"
    measured = profile(model, x, device=device, time_budget_s=0.5, cudnn_benchmark=True if cuda else None)
    device_ok = measured.device == expected_name if cuda else measured.device.startswith("cpu (")
    check.item("recorded device", device_ok, measured.device)
    check.item("recorded dtype of an fp32 model", measured.dtype == "fp32" and measured.param_dtype == "fp32")
    if cuda:
        flags_ok = (measured.cudnn_benchmark is True and "cudnn.benchmark" in measured.flags
                    and measured.tf32_matmul == torch.backends.cuda.matmul.allow_tf32
                    and measured.tf32_cudnn == torch.backends.cudnn.allow_tf32)
    else:
        flags_ok = measured.cudnn_benchmark is None and measured.threads == torch.get_num_threads()
    check.item("recorded flags", flags_ok, measured.flags or "none")
    if bf16_native(target):
        half = profile(ConvNet().to(torch.bfloat16), x, device=device, time_budget_s=0.5)
        check.item("a bf16 model is recorded as bf16", half.dtype == "bf16" and half.param_dtype == "bf16")
    else:
        check.item("a bf16 model is recorded as bf16", True, "skipped: bf16 is not native here")


def check_state(check: Check, device: str) -> None:
    model = ConvNet().train()
    model.features[1].eval()  # a frozen BatchNorm
    model.features[0].requires_grad_(False)
    tensors = {
        name: (tensor, tensor.data_ptr(), tensor.device, tensor.dtype)
        for name, tensor in model.state_dict(keep_vars=True).items()
    }
    modes = [module.training for module in model.modules()]
    grads = [p.requires_grad for p in model.parameters()]
    settings = torch_settings()
    profile(model, torch.randn(1, 3, 32, 32), device=device, time_budget_s=0.3, channels_last=True,
            cudnn_benchmark=True if device.startswith("cuda") else None, threads=None if device.startswith("cuda") else 1)
    same_tensors = all(
        model.state_dict(keep_vars=True)[name] is tensor and tensor.data_ptr() == pointer
        and tensor.device == where and tensor.dtype == dtype
        for name, (tensor, pointer, where, dtype) in tensors.items()
    )
    same_flags = modes == [module.training for module in model.modules()]
    same_flags = same_flags and grads == [p.requires_grad for p in model.parameters()]
    check.item("model state restored (modes, tensors, requires_grad)", same_tensors and same_flags)
    check.item("process-wide settings restored", torch_settings() == settings)


def check_memory(check: Check, device: str) -> None:
    if not device.startswith("cuda"):
        check.item("no GPU memory left behind", True, "skipped: no GPU")
        return
    target = torch.device(device)
    # A first profile creates what torch keeps per device for good (cuBLAS/cuDNN workspaces): the second must add nothing.
    profile(ConvNet(), torch.randn(8, 3, 64, 64), device=device, time_budget_s=0.3)
    torch.cuda.synchronize(target)
    before = torch.cuda.memory_allocated(target)
    measured = profile(ConvNet(), torch.randn(8, 3, 64, 64), device=device, time_budget_s=0.5)
    torch.cuda.synchronize(target)
    after = torch.cuda.memory_allocated(target)
    detail = f"{before} -> {after} bytes; forward peak {measured.peak_mem_bytes} bytes"
    check.item("no GPU memory left behind", after == before, detail)


class Context:
    """What runners/cvt_io needs of a run: a device, a seed, a checkpoint, log() and should_stop."""

    def __init__(self, device: str, checkpoint: Path, resume: bool, stop_after: int | None) -> None:
        self.device, self.seed, self.checkpoint_path, self.resume = device, 0, checkpoint, resume
        self.stop_after = stop_after
        self.losses: dict[int, float] = {}

    @property
    def should_stop(self) -> bool:
        return self.stop_after is not None and len(self.losses) >= self.stop_after

    def log(self, step: int, **values) -> None:
        self.losses[step] = values["loss"]

    def summary(self, **metrics) -> None:
        pass


def check_runner_resume(check: Check, device: str, folder: Path) -> None:
    from runners import cvt_io

    whole = Context(device, folder / "whole.pt", resume=False, stop_after=None)
    cvt_io.run(dict(TINY_RUNNER), whole)
    first = Context(device, folder / "resumed.pt", resume=False, stop_after=3)
    cvt_io.run(dict(TINY_RUNNER), first)
    second = Context(device, folder / "resumed.pt", resume=True, stop_after=None)
    cvt_io.run(dict(TINY_RUNNER), second)
    resumed = {**first.losses, **second.losses}
    same = sorted(resumed) == sorted(whole.losses) and all(
        abs(resumed[step] - whole.losses[step]) <= 1e-4 * max(1.0, abs(whole.losses[step])) for step in whole.losses
    )
    check.item("built-in runner resumes to the same losses", same, f"steps {sorted(first.losses)} then {sorted(second.losses)}")


def expdb_command(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "EXPDB_DB": str(folder / "check.db"), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "expdb", *args]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=240)


def query(folder: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(folder / "check.db") as connection:
        return connection.execute(sql).fetchall()


def expected_device_name(device: str) -> str:
    from expdb.runs import cpu_name

    return torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else cpu_name()


def new_cards(folder: Path, names: list[str]) -> None:
    for name in names:
        options = [item for key, value in TINY_RUNNER.items() for item in (f"--{key}", str(value))]
        result = expdb_command(folder, "new", name, "--runner", "cvt_io", *options)
        if result.returncode:
            raise RuntimeError(result.stderr.strip())


def check_expdb_run(check: Check, device: str, folder: Path) -> None:
    from expdb.db import Database
    from expdb.launch import execute

    new_cards(folder, ["single"])
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = True, False  # the runner sets the opposite on CUDA
    settings = torch_settings()
    with Database(str(folder / "check.db")) as db:
        from expdb.cards import get_card

        outcome = execute(db, get_card(db, "single"), device=device, profile_budget=0.3)
    check.item("expdb run of the built-in runner finishes", outcome.status == "finished", outcome.exit_reason or "")
    check.item("settings the runner set are put back", torch_settings() == settings)
    ((recorded, env),) = query(folder, "SELECT device, env FROM run WHERE id = (SELECT max(id) FROM run)")
    wanted = f"cuda:{torch.device(device).index or 0}" if device.startswith("cuda") else "cpu"
    name = json.loads(env).get("device_name")
    check.item("run records its device and the device's name", recorded == wanted and name == expected_device_name(device),
               f"{recorded}, {name}")
    (profiled,) = query(folder, "SELECT device FROM profile WHERE run_id = (SELECT max(id) FROM run)")
    name = expected_device_name(device)
    wanted_name = name if device.startswith("cuda") else f"cpu ({name})"
    check.item("the run's profile records the device used", profiled[0] == wanted_name, profiled[0])
    metrics = dict(query(folder, "SELECT key, value FROM metric WHERE run_id = (SELECT max(id) FROM run)"))
    wanted_keys = {"throughput", "train_peak_mem"} if device.startswith("cuda") else {"throughput"}
    check.item("run records training throughput" + (" and peak memory" if device.startswith("cuda") else ""),
               wanted_keys <= set(metrics), ", ".join(f"{key} {metrics[key]:.4g}" for key in sorted(wanted_keys & set(metrics))))


def check_amp(check: Check, device: str, folder: Path) -> None:
    from runners import cvt_io

    target = torch.device(device)
    for amp in ("fp16", "bf16"):
        name = f"built-in runner with --amp {amp}"
        if amp == "fp16" and target.type != "cuda":
            check.item(name, True, "skipped: fp16 AMP is for CUDA")
            continue
        if amp == "bf16" and not bf16_native(target):
            check.item(name, True, "skipped: bf16 is not native here")
            continue
        context = Context(device, folder / f"amp_{amp}.pt", resume=False, stop_after=None)
        cvt_io.run({**TINY_RUNNER, "amp": amp}, context)
        saved = torch.load(folder / f"amp_{amp}.pt", map_location="cpu", weights_only=False)
        finite = bool(context.losses) and all(torch.isfinite(torch.tensor(loss)) for loss in context.losses.values())
        scaler_ok = (amp != "fp16") or bool(saved.get("scaler"))
        rng = saved.get("rng", {})
        one_device = all(key in ("python", "numpy", "torch", "cuda_device") for key in rng) and (
            ("cuda_device" in rng) == (target.type == "cuda"))
        check.item(name, finite and scaler_ok and one_device,
                   f"losses {min(context.losses.values()):.4g} to {max(context.losses.values()):.4g}; "
                   f"GradScaler state {'kept' if saved.get('scaler') else 'none'}; random states {sorted(rng)}")


def check_script_run(check: Check, device: str, folder: Path) -> None:
    import expdb
    from expdb.sysmetrics import SAMPLE_INTERVAL_S, SystemSampler

    path = str(folder / "check.db")
    x = torch.randn(256, 256, device=device)
    with expdb.start("script_on_device", db=path) as run:
        deadline = time.monotonic() + SAMPLE_INTERVAL_S * 1.5  # long enough for a system sample
        step = 0
        while time.monotonic() < deadline:
            x = torch.tanh(x @ x.T / 256)
            run.log(step, loss=x.mean())  # a tensor, logged as it is: where the script trains
            step += 1
    with expdb.start("script_on_cpu", db=path) as cpu_run:
        cpu_run.log(0, loss=torch.zeros(()))
    rows = dict((name, (recorded, json.loads(env).get("device_name"))) for name, recorded, env in query(
        folder, "SELECT card.name, run.device, run.env FROM run JOIN card ON card.id = run.card_id "
                "WHERE card.name LIKE 'script_on_%'"))
    wanted = f"cuda:{torch.device(device).index or 0}" if device.startswith("cuda") else "cpu"
    check.item("a script's run records the device its tensors are on",
               rows["script_on_device"] == (wanted, expected_device_name(wanted)), str(rows["script_on_device"]))
    check.item("a CPU script records the CPU, not a GPU beside it",
               rows["script_on_cpu"] == ("cpu", expected_device_name("cpu")), str(rows["script_on_cpu"]))
    keys = {key for (key,) in query(folder, f"SELECT key FROM series WHERE run_id = {run.id} AND key LIKE 'sys/%'")}
    if device.startswith("cuda"):
        try:
            import pynvml  # noqa: F401 - only whether it is there
        except ImportError:
            check.item("system metrics of the GPU (NVML)", False, "nvidia-ml-py is not installed: pip install 'expdb[gpu]'")
        else:
            check.item("system metrics of the GPU (NVML)", {"sys/gpu0_util", "sys/gpu0_mem_mb"} <= keys, ", ".join(sorted(keys)))
    else:
        check.item("system metrics of the CPU, no GPU curves", {"sys/cpu_percent", "sys/rss_mb"} <= keys
                   and not any(key.startswith("sys/gpu") for key in keys), ", ".join(sorted(keys)))
    sampler = SystemSampler(gpus=device.startswith("cuda"))
    sampler.sample()
    spent = []
    for _ in range(20):
        started = time.thread_time()
        sampler.sample()
        spent.append(time.thread_time() - started)
    sampler.close()
    each = sorted(spent)[len(spent) // 2]
    check.item("one system sample costs under 1% of the interval", each <= SAMPLE_INTERVAL_S / 100,
               f"{each * 1000:.2f} ms CPU every {SAMPLE_INTERVAL_S:g} s = {each / SAMPLE_INTERVAL_S * 100:.4f}%")


def check_refusals(check: Check, device: str, folder: Path) -> None:
    new_cards(folder, ["refused"])
    missing = f"cuda:{torch.cuda.device_count()}" if device.startswith("cuda") else "cuda"
    before = query(folder, "SELECT count(*) FROM run")
    result = expdb_command(folder, "run", "refused", "--device", missing)
    one_line = result.returncode == 2 and result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    check.item(f"--device {missing} refused in one line, nothing recorded",
               one_line and query(folder, "SELECT count(*) FROM run") == before, result.stderr.strip())


def check_queue(check: Check, device: str, folder: Path) -> None:
    new_cards(folder, ["q1", "q2"])
    slots = ["--gpus", "0", "--jobs", "2"] if device.startswith("cuda") else ["--jobs", "2", "--device", "cpu"]
    started = time.perf_counter()
    result = expdb_command(folder, "run", "q*", *slots, "--profile-budget", "0.3")
    seconds = time.perf_counter() - started
    rows = query(folder, "SELECT card.name, run.status, run.device, run.env FROM run JOIN card ON card.id = run.card_id "
                         "WHERE card.name IN ('q1', 'q2') ORDER BY card.name")
    finished = result.returncode == 0 and [row[1] for row in rows] == ["finished", "finished"]
    detail = f"{seconds:.1f} s" + (f"; {result.stderr.strip()[-200:]}" if not finished else "")
    check.item("2-job queue on one device finishes", finished, detail)
    wanted = "cuda:0" if device.startswith("cuda") else "cpu"
    names = {json.loads(env).get("device_name") for *_, env in rows}
    pinned = all(row[2] == wanted for row in rows) and names == {expected_device_name("cuda:0" if wanted != "cpu" else "cpu")}
    if device.startswith("cuda"):
        pinned = pinned and all(json.loads(env).get("cuda_visible_devices") == "0" for *_, env in rows)
    check.item("queued runs record the pinned device and its name", pinned, f"{[row[2] for row in rows]}, {names}")
    shared = query(folder, "SELECT shared FROM profile JOIN card ON card.id = profile.card_id WHERE card.name IN ('q1', 'q2')")
    all_shared = len(shared) == 2 and all(row[0] for row in shared)
    check.item("their profiles say another job shared the device", all_shared, str(shared))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="dry run on the CPU (no GPU needed)")
    parser.add_argument("--device", default="cuda", help="the GPU to check, cuda or cuda:N [default: cuda]")
    options = parser.parse_args()
    if options.cpu:
        device = "cpu"
    elif not torch.cuda.is_available():
        print("no CUDA GPU here: run with --cpu for a dry run")
        return 1
    else:
        device = options.device
    check = Check()
    started = time.perf_counter()
    print(f"expdb GPU check on {device} ({expected_device_name(device)}), torch {torch.__version__}", flush=True)
    with tempfile.TemporaryDirectory(prefix="expdb-gpu-check-") as temporary:
        folder = Path(temporary)
        batch, side = (32, 64) if device.startswith("cuda") else (2, 32)
        check.guarded("profiles against Timer", lambda: check_dtypes(check, device, batch, side))
        check.guarded("recorded device, dtype and flags", lambda: check_recorded(check, device))
        check.guarded("model and process state restored", lambda: check_state(check, device))
        check.guarded("no GPU memory left behind", lambda: check_memory(check, device))
        check.guarded("built-in runner resumes to the same losses", lambda: check_runner_resume(check, device, folder))
        check.guarded("expdb run of the built-in runner", lambda: check_expdb_run(check, device, folder))
        check.guarded("built-in runner with AMP", lambda: check_amp(check, device, folder))
        check.guarded("a script's run: device and system metrics", lambda: check_script_run(check, device, folder))
        check.guarded("bad devices refused", lambda: check_refusals(check, device, folder))
        check.guarded("2-job queue on one device", lambda: check_queue(check, device, folder))
    failed = [name for name, passed in check.results if not passed]
    print(f"{len(check.results) - len(failed)} of {len(check.results)} passed in {time.perf_counter() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
