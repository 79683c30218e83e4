"""benchmarks/gpu_check.py: its dry run on the CPU passes every item (the same checks run on a GPU)."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"


def test_the_gpu_check_dry_run_passes_on_the_cpu():
    result = subprocess.run([sys.executable, str(SCRIPT), "--cpu"], capture_output=True, text=True, timeout=600)
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    verdicts = [line.split()[0] for line in lines[1:-1] if not line.startswith("INFO")]  # INFO: timings, not judged on a CPU
    assert verdicts and set(verdicts) == {"PASS"}, result.stdout
    for item in ("profile bf16 against torch.utils.benchmark.Timer", "model state restored", "process-wide settings restored",
                 "built-in runner resumes to the same losses", "2-job queue on one device finishes",
                 "their profiles say another job shared the device"):
        assert any(item in line for line in lines), item
    assert lines[-1].startswith(f"{len(verdicts)} of {len(verdicts)} passed")
