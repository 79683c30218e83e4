"""System metrics of a run while it trains, as curves in the `sys/` namespace.

The run's recorder thread calls `SystemSampler.sample` every SAMPLE_INTERVAL_S, off the
training path. What a sample holds:

- `sys/cpu_percent`: CPU use of the run's processes (100 = one core busy), and
  `sys/rss_mb`: their resident memory, through psutil. The run's processes are this process
  and its children (a `--cmd` command and whatever it starts); under torchrun, the agent's
  workers (every local rank).
- `sys/gpuN_util` (% of time a kernel ran) and `sys/gpuN_mem_mb` (memory in use on it, by any
  process) of each GPU the run can use, through NVML's Python binding (nvidia-ml-py), only
  when it is installed and a GPU is there. N is the GPU's number as torch counts it in this
  process (CUDA_VISIBLE_DEVICES applied).

A point's step is the second of the run it was taken at (its wall time, whole): samples
never share a step. Plot them with `--x time`.
"""

import os
from typing import Any

SAMPLE_INTERVAL_S = 5.0
PREFIX = "sys/"
_MB = 1024 * 1024


def _psutil():
    try:
        import psutil
    except ImportError:  # expdb's dependency; a broken install records no CPU curves rather than failing runs
        return None
    return psutil


class _Gpus:
    """NVML handles of the GPUs this process may use, numbered as torch numbers them."""

    def __init__(self, nvml, handles: list):
        self.nvml, self.handles = nvml, handles

    @classmethod
    def open(cls) -> "_Gpus | None":
        try:
            import pynvml
        except ImportError:
            return None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError:  # no driver, no GPU
            return None
        try:
            handles = [_handle(pynvml, name) for name in _visible(pynvml.nvmlDeviceGetCount())]
        except pynvml.NVMLError:
            pynvml.nvmlShutdown()
            return None
        if not handles:
            pynvml.nvmlShutdown()
            return None
        return cls(pynvml, handles)

    def sample(self) -> dict[str, float]:
        nvml, values = self.nvml, {}
        for number, handle in enumerate(self.handles):
            try:
                values[f"{PREFIX}gpu{number}_util"] = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
                values[f"{PREFIX}gpu{number}_mem_mb"] = nvml.nvmlDeviceGetMemoryInfo(handle).used / _MB
            except nvml.NVMLError:  # a GPU that fell off the bus: the others are still worth recording
                continue
        return values

    def close(self) -> None:
        self.nvml.nvmlShutdown()


def _visible(count: int) -> list[str]:
    """The GPUs as CUDA_VISIBLE_DEVICES names them (indices or UUIDs), in torch's order; all of them if unset.

    NVML numbers GPUs in PCI bus order, as CUDA does with CUDA_DEVICE_ORDER=PCI_BUS_ID (what clusters set).
    """
    setting = os.environ.get("CUDA_VISIBLE_DEVICES")
    if setting is None:
        return [str(index) for index in range(count)]
    names = []
    for name in (part.strip() for part in setting.split(",")):
        if not name or (name.isdigit() and int(name) >= count):
            break  # CUDA ignores the rest of the list after an invalid entry
        names.append(name)
    return names


def _handle(nvml, name: str):
    return nvml.nvmlDeviceGetHandleByIndex(int(name)) if name.isdigit() else nvml.nvmlDeviceGetHandleByUUID(name)


def _descendants(pid: int) -> list[int] | None:
    """The processes below `pid`, from Linux's /proc/PID/task/TID/children: psutil finds them by reading every
    process of the machine (milliseconds on a busy one). None where the kernel does not say."""
    if not os.path.exists(f"/proc/self/task/{os.getpid()}/children"):
        return None
    found, waiting = [], [pid]
    while waiting:
        parent = waiting.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:  # it ended meanwhile
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as children:
                    below = [int(text) for text in children.read().split()]
            except OSError:  # a thread that ended meanwhile
                continue
            found.extend(below)
            waiting.extend(below)
    return found


class SystemSampler:
    """Samples the run's processes and GPUs; made and used by the recorder thread only."""

    def __init__(self, gpus: bool):
        psutil = _psutil()
        self._psutil = psutil
        self._root = None
        self._processes: dict[int, Any] = {}  # cpu_percent measures since the previous call on the same object
        if psutil is not None:
            # torchrun's workers are siblings: their agent is the root of the run's processes.
            root_pid = os.getppid() if "TORCHELASTIC_RUN_ID" in os.environ else os.getpid()
            try:
                self._root = psutil.Process(root_pid)
            except psutil.Error:
                self._root = psutil.Process()
        self._gpus = _Gpus.open() if gpus else None

    def sample(self) -> dict[str, float]:
        values = self._processes_sample()
        if self._gpus is not None:
            values.update(self._gpus.sample())
        return values

    def _processes_sample(self) -> dict[str, float]:
        psutil, root = self._psutil, self._root
        if psutil is None or root is None:
            return {}
        pids = _descendants(root.pid)
        if pids is None:
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                return {}
        else:
            tree = [root]
            for pid in pids:
                known = self._processes.get(pid)
                if known is None:
                    try:
                        known = psutil.Process(pid)
                    except psutil.Error:  # it ended meanwhile
                        continue
                tree.append(known)
        cpu = rss = 0.0
        alive = {}
        for process in tree:
            known = self._processes.get(process.pid, process)
            try:
                with known.oneshot():
                    cpu += known.cpu_percent()  # 0.0 the first time a process is seen
                    rss += known.memory_info().rss
            except psutil.Error:  # it ended between the listing and now
                continue
            alive[process.pid] = known
        self._processes = alive
        return {f"{PREFIX}cpu_percent": cpu, f"{PREFIX}rss_mb": rss / _MB}

    def close(self) -> None:
        if self._gpus is not None:
            self._gpus.close()
