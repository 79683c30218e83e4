"""The device a run records is the device it trained on: a script's run learns it from the model it profiles or the
tensors it logs, and records nothing rather than a guess (a CPU script on a GPU machine is not a GPU run)."""

import json
import sys
from pathlib import Path

import pytest
import torch

import expdb
from expdb.db import Database, resolve_location
from expdb.runs import cpu_name

A100 = "NVIDIA A100-SXM4-80GB"


@pytest.fixture
def path(workdir):
    return resolve_location(None)


@pytest.fixture
def gpu_machine(monkeypatch):
    """torch as it is on a machine with one GPU, an A100, that nothing here computes on."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: A100)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 90100)


def recorded(path, run_id) -> tuple:
    with Database(path) as db:
        device, env = db.query_one("SELECT device, env FROM run WHERE id = ?", (run_id,))
        profiled = [row[0] for row in db.query("SELECT device FROM profile WHERE run_id = ?", (run_id,))]
    return device, json.loads(env).get("device_name"), profiled


def test_a_cpu_script_on_a_gpu_machine_is_recorded_on_the_cpu_its_model_is_on(path, gpu_machine):
    with expdb.start("cpu_script", db=path) as run:
        assert run.device is None  # a GPU is there, but where the script trains is not known yet
        run.profile(torch.nn.Linear(4, 2), torch.randn(1, 4), time_budget_s=0.05)
        run.log(0, loss=1.0)
    assert recorded(path, run.id) == ("cpu", cpu_name(), [f"cpu ({cpu_name()})"])


def test_a_tensor_logged_as_it_is_says_where_the_script_trains(path, gpu_machine):
    with expdb.start("tensor_script", db=path) as run:
        run.log(0, loss=torch.tensor(0.5))
    assert recorded(path, run.id) == ("cpu", cpu_name(), [])


def test_a_script_that_never_shows_its_device_records_none_rather_than_the_gpu(path, gpu_machine, cli):
    with expdb.start("float_script", db=path) as run:
        run.log(0, loss=0.5)
    assert recorded(path, run.id) == (None, None, [])
    shown = cli("show", "--env", str(run.id), "--db", path)
    assert "  device:  unknown\n" in shown.out


def test_a_script_on_a_machine_without_a_gpu_trains_on_the_cpu(path):
    assert not torch.cuda.is_available()
    with expdb.start("no_gpu", db=path) as run:
        run.log(0, loss=0.5)
    assert recorded(path, run.id) == ("cpu", cpu_name(), [])


def test_a_runner_run_on_the_cpu_of_a_gpu_machine_records_the_cpu(cli, monkeypatch, gpu_machine, path):
    monkeypatch.setattr(sys, "path", [str(Path(__file__).resolve().parent / "scripts"), *sys.path])
    assert cli("new", "r", "--runner", "tinyrunners:finish").code == 0
    result = cli("run", "r", "--device", "cpu", "--profile-budget", "0")
    assert result.code == 0, result.err
    with Database(path) as db:
        (run_id,) = db.query_one("SELECT max(id) FROM run")
    assert recorded(path, run_id)[:2] == ("cpu", cpu_name())
