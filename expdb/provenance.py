"""What a run needs to be re-run exactly, recorded in its environment when it starts, and how another
environment differs from it (`expdb rerun`).

Recorded: the git commit, the uncommitted diff of tracked files and the names of untracked
source files (each bounded, and said so when cut), the installed packages and their versions
(importlib.metadata, what `pip freeze` lists), and the environment variables that change
training. The command line, seed and device are columns of the run.
"""

import os
import subprocess
from importlib import metadata
from pathlib import Path

DIFF_LIMIT = 64 * 1024  # characters of `git diff HEAD` kept: enough for a patch, not a vendored dataset
UNTRACKED_LIMIT = 200  # untracked source files named
GIT_TIMEOUT_S = 10
SOURCE_SUFFIXES = frozenset((
    ".py", ".pyx", ".pxd", ".c", ".cc", ".cpp", ".cu", ".cuh", ".h", ".hpp", ".sh", ".yaml", ".yml", ".json", ".toml",
    ".cfg", ".ini", ".txt", ".md", ".ipynb",
))
# Variables that change what a run computes or how fast: devices, thread counts, determinism, kernels.
TRAINING_VARIABLES = (
    "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUBLAS_WORKSPACE_CONFIG",
    "PYTHONHASHSEED", "NCCL_ALGO", "NCCL_PROTO", "TORCH_CUDNN_V8_API_ENABLED", "PYTORCH_CUDA_ALLOC_CONF",
)


def _git(directory: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=directory, capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=True, errors="replace"
    ).stdout


def git_state(directory: Path) -> dict:
    """The commit of the git work tree around `directory`, its dirty flag, its uncommitted diff and untracked
    source files; nothing outside a work tree."""
    try:
        commit = _git(directory, "rev-parse", "HEAD").strip()
        diff = _git(directory, "diff", "HEAD", "--no-color", "--no-ext-diff")
        untracked = [
            name for name in _git(directory, "ls-files", "--others", "--exclude-standard").splitlines()
            if Path(name).suffix in SOURCE_SUFFIXES
        ]
    except (OSError, subprocess.SubprocessError):
        return {}
    state: dict = {"git_commit": commit, "git_dirty": bool(diff)}
    if diff:
        state["git_diff"] = diff[:DIFF_LIMIT]
        if len(diff) > DIFF_LIMIT:
            state["git_diff_cut"] = f"the first {DIFF_LIMIT:,} of {len(diff):,} characters"
    if untracked:
        state["git_untracked"] = untracked[:UNTRACKED_LIMIT]
        if len(untracked) > UNTRACKED_LIMIT:
            state["git_untracked_cut"] = f"the first {UNTRACKED_LIMIT} of {len(untracked)} files"
    return state


def packages() -> dict[str, str]:
    """Every installed distribution and its version, by normalised name, as `pip freeze` would list them."""
    found = {}
    for distribution in metadata.distributions():
        name = distribution.metadata["Name"]
        if name:
            found[name.lower().replace("_", "-")] = distribution.version
    return dict(sorted(found.items()))


def training_variables() -> dict[str, str]:
    return {name: os.environ[name] for name in TRAINING_VARIABLES if name in os.environ}


def capture(directory: Path) -> dict:
    """What to record of this process for a re-run, from the work tree around `directory`."""
    return {**git_state(directory), "packages": packages(), "variables": training_variables()}


def differences(recorded: dict, current: dict) -> list[str]:
    """How the `current` environment (from `capture`) differs from a run's `recorded` one, a line each."""
    lines = []
    if recorded.get("git_commit") and current.get("git_commit") != recorded["git_commit"]:
        now = current.get("git_commit", "no git work tree")
        lines.append(f"git commit: recorded {recorded['git_commit'][:12]}, now {now[:12]}")
    if current.get("git_diff", "") != recorded.get("git_diff", ""):
        if current.get("git_dirty") and not recorded.get("git_dirty"):
            lines.append("the work tree has uncommitted changes; the run had none")
        elif recorded.get("git_dirty") and not current.get("git_dirty"):
            lines.append("the run had uncommitted changes (expdb show --env shows them); the work tree has none")
        else:
            lines.append("uncommitted changes differ from the run's (expdb show --env shows the run's)")
    added = sorted(set(current.get("git_untracked", ())) - set(recorded.get("git_untracked", ())))
    if added:
        lines.append(f"untracked source files the run did not have: {', '.join(added[:5])}" + (" ..." if len(added) > 5 else ""))
    then, now_packages = recorded.get("packages") or {}, current.get("packages") or {}
    if then:
        changed = [f"{name} {then[name]} -> {now_packages.get(name, 'not installed')}"
                   for name in sorted(then) if now_packages.get(name) != then[name]]
        changed += [f"{name} {now_packages[name]} (new)" for name in sorted(set(now_packages) - set(then))]
        if changed:
            lines.append(f"packages: {'; '.join(changed[:8])}" + (f"; and {len(changed) - 8} more" if len(changed) > 8 else ""))
    variables_then, variables_now = recorded.get("variables") or {}, current.get("variables") or {}
    for name in sorted(set(variables_then) | set(variables_now)):
        if variables_then.get(name) != variables_now.get(name):
            lines.append(f"{name}: recorded {variables_then.get(name, '(unset)')}, now {variables_now.get(name, '(unset)')}")
    return lines
