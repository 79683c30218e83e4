"""System metrics while a run trains: CPU and memory of its processes (psutil) as `sys/` curves, sampled by the
recorder thread; GPU curves only where NVML sees a GPU (none here)."""

import sys

import pytest
from conftest import query, runs_of, wait_until

pytest.importorskip("psutil")  # a dependency of expdb; an environment without it records no sys/ curves

import expdb
from expdb import runs, sysmetrics
from expdb.db import Database
from expdb.series import read_curve


@pytest.fixture
def often(monkeypatch):
    """Samples every 50 ms rather than every few seconds, so that a short test sees several."""
    monkeypatch.setattr(runs, "SAMPLE_INTERVAL_S", 0.05)


def curve(run_id: int, key: str):
    with Database() as database:
        return read_curve(database, run_id, key)


def sys_keys(run_id: int) -> list[str]:
    return sorted(key for (key,) in query("SELECT key FROM series WHERE run_id = ? AND key LIKE 'sys/%'", (run_id,)))


def test_a_run_records_its_cpu_and_memory_as_sys_curves(workdir, often):
    with expdb.start("sampled", lr=0.1) as run:
        run.log(1, loss=1.0)
        wait_until(lambda: len(query("SELECT 1 FROM chunk JOIN series ON series.id = chunk.series_id "
                                     "WHERE series.key = 'sys/rss_mb'")) >= 2, "two samples")
    assert sys_keys(run.id) == ["sys/cpu_percent", "sys/rss_mb"]  # no GPU here: no gpu curves
    rss = curve(run.id, "sys/rss_mb")
    assert len(rss) >= 2 and all(value > 10 for value in rss.values)  # this Python process, with torch perhaps
    assert list(rss.steps) == sorted(set(rss.steps))  # a second of the run each, never shared
    assert all(abs(step - wall) < 1 for step, wall in zip(rss.steps, rss.walls, strict=True))
    assert all(value >= 0 for value in curve(run.id, "sys/cpu_percent").values)


def test_system_metrics_can_be_switched_off(workdir, often):
    with expdb.start("quiet", system_metrics=False) as run:
        for step in range(3):
            run.log(step, loss=1.0)
    assert sys_keys(run.id) == []


def test_a_command_run_samples_the_command_too(cli, new, often):
    new("hungry")
    allocate = "import time; block = b'x' * (300 * 2**20); time.sleep(2)"  # 300 MB, written: resident
    result = cli("run", "hungry", "--", sys.executable, "-c", allocate)
    assert result.code == 0, result.err
    run_id = runs_of("hungry")[0]["id"]
    assert max(curve(run_id, "sys/rss_mb").values) > 300  # the child's memory, with expdb's own


def test_the_gpus_a_process_may_use_are_those_cuda_visible_devices_names(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert sysmetrics._visible(2) == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert sysmetrics._visible(2) == ["1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8e2a,0")
    assert sysmetrics._visible(2) == ["GPU-8e2a", "0"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,7,1")  # CUDA stops at the first GPU that is not there
    assert sysmetrics._visible(2) == ["0"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert sysmetrics._visible(2) == []


def test_sys_curves_plot_against_time(cli, workdir, often):
    with expdb.start("drawn") as run:
        run.log(1, loss=1.0)
        wait_until(lambda: len(query("SELECT 1 FROM chunk JOIN series ON series.id = chunk.series_id "
                                     "WHERE series.key = 'sys/cpu_percent'")) >= 2, "two samples")
    result = cli("plot", "drawn", "-m", "sys/cpu_percent", "-m", "sys/rss_mb", "--x", "time", "-o", "sys.png")
    assert result.code == 0, result.err
    assert (workdir / "sys.png").stat().st_size > 0
