"""Reproducible runs: what a run records to be re-run (`expdb show --env RUN`), and `expdb rerun CARD`."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import query, refused, runs_of

from expdb import provenance

SCRIPTS = Path(__file__).resolve().parent / "scripts"


@pytest.fixture(autouse=True)
def tiny_runners(monkeypatch):
    monkeypatch.setattr(sys, "path", [str(SCRIPTS), *sys.path])


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repository(workdir):
    """The work directory as a git work tree with one commit of train.py (and of what the tiny runners write, ignored)."""
    git("init", "-q")
    (workdir / "train.py").write_text("lr = 0.1\n")
    (workdir / ".gitignore").write_text("ctx_*.json\n")
    git("add", "train.py", ".gitignore")
    git("commit", "-qm", "first")
    return workdir


def env_of(run_id: int) -> dict:
    return json.loads(query("SELECT env FROM run WHERE id = ?", (run_id,))[0][0])


def test_a_run_records_what_re_running_it_needs(cli, new, repository, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("MKL_NUM_THREADS", "3")  # set, rather than left as an earlier run in this process set it
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    (repository / "train.py").write_text("lr = 0.2\n")  # uncommitted
    (repository / "model.py").write_text("depth = 4\n")  # untracked source
    (repository / "notes.bin").write_bytes(b"\0")  # untracked, not source
    new("tiny", "--runner", "tinyrunners:finish", "--steps", "3")
    assert cli("run", "tiny", "--seed", "7").code == 0
    (run,) = runs_of("tiny")
    env = env_of(run["id"])
    assert env["git_commit"] == git("rev-parse", "HEAD") and env["git_dirty"] is True
    assert "-lr = 0.1\n+lr = 0.2" in env["git_diff"]
    assert env["git_untracked"] == ["model.py"]
    assert env["variables"] == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    assert env["packages"]["torch"].startswith("2.") and "typer" in env["packages"]
    assert run["seed"] == 7 and "expdb run tiny --seed 7" in run["command"]

    shown = cli("show", "--env", str(run["id"]))
    assert shown.code == 0, shown.err
    for text in (f"run {run['id']} of tiny", "seed:    7", env["git_commit"], "(uncommitted changes)", "+lr = 0.2",
                 "OMP_NUM_THREADS=3", "untracked source files", "model.py", f"torch=={env['packages']['torch']}",
                 f"  torch:   {env['torch']}\n"):
        assert text in shown.out
    assert cli("show", "--env", "tiny").out == shown.out  # a card names its latest run


def test_a_diff_too_long_is_cut_and_says_so(cli, new, repository, monkeypatch):
    monkeypatch.setattr(provenance, "DIFF_LIMIT", 40)
    (repository / "train.py").write_text("lr = 0.2\n" * 50)
    new("tiny", "--runner", "tinyrunners:finish", "--steps", "2")
    assert cli("run", "tiny").code == 0
    env = env_of(runs_of("tiny")[0]["id"])
    assert len(env["git_diff"]) == 40 and env["git_diff_cut"].startswith("the first 40 of ")
    assert f"(git diff HEAD) ({env['git_diff_cut']})" in cli("show", "--env", "tiny").out


def test_rerun_starts_a_new_run_with_the_recorded_seed_and_says_what_differs(cli, new, repository, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    new("tiny", "--runner", "tinyrunners:finish", "--steps", "3")
    assert cli("run", "tiny", "--seed", "7").code == 0
    first = runs_of("tiny")[0]
    # Another environment: a new commit, a dirty tree, another thread count, a package that changed since.
    (repository / "train.py").write_text("lr = 0.3\n")
    git("commit", "-qam", "second")
    (repository / "train.py").write_text("lr = 0.4\n")
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    env = env_of(first["id"])
    env["packages"]["typer"] = "0.1.0"
    with_old_typer = json.dumps(env)
    from expdb.db import Database

    with Database() as database, database.transaction() as connection:  # as if recorded before typer was upgraded
        connection.execute("UPDATE run SET env = ? WHERE id = ?", (with_old_typer, first["id"]))

    result = cli("rerun", "tiny")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == f"re-running tiny as run {first['id']} ran (seed 7); this environment differs from the recorded one:"
    assert f"  git commit: recorded {env['git_commit'][:12]}, now {git('rev-parse', 'HEAD')[:12]}" in lines
    assert "  the work tree has uncommitted changes; the run had none" in lines
    assert "  OMP_NUM_THREADS: recorded 3, now 5" in lines
    assert any(line.startswith("  packages: typer 0.1.0 -> ") for line in lines)
    runs = runs_of("tiny")
    assert [(run["status"], run["seed"]) for run in runs] == [("finished", 7), ("finished", 7)]


def test_rerun_in_the_recorded_environment_says_so(cli, new, repository, monkeypatch):
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # chosen here, not left by an earlier run in this process
        monkeypatch.setenv(name, "1")
    new("tiny", "--runner", "tinyrunners:finish", "--steps", "2")
    assert cli("run", "tiny").code == 0
    result = cli("rerun", "tiny")
    assert result.code == 0, result.err
    assert result.out.splitlines()[0] == "re-running tiny as run 1 ran (seed 0); the environment is as recorded"
    (repository / "augment.py").write_text("flip = True\n")
    result = cli("rerun", "tiny")
    assert result.out.splitlines()[1] == "  untracked source files the run did not have: augment.py"


def test_rerun_runs_the_command_a_run_ran(cli, new, workdir):
    new("shell")
    command = [sys.executable, "-c", "print('hello from the command')"]
    assert cli("run", "shell", "--", *command).code == 0
    result = cli("rerun", "shell")
    assert result.code == 0, result.err
    assert result.out.count("hello from the command") == 1
    assert [run["command"] for run in runs_of("shell")] == [shlex.join(command)] * 2


def test_rerun_of_a_card_that_never_ran_is_refused(cli, new):
    new("fresh", "--runner", "tinyrunners:finish")
    refused(cli, ["rerun", "fresh"], "fresh has never run, so no environment was recorded; run it with: expdb run fresh")


def test_rerun_of_a_run_recorded_by_a_script_is_refused(cli, workdir):
    import expdb

    with expdb.start("scripted") as run:
        run.log(0, loss=1.0)
    refused(cli, ["rerun", "scripted"], "scripted's run 1 was recorded by its own script")


def test_show_env_of_a_run_that_is_not_there_is_refused(cli, new):
    new("tiny", "--runner", "tinyrunners:finish")
    refused(cli, ["show", "--env", "99"], "no run 99")
    refused(cli, ["show"], "name a card (expdb show CARD), or a run with --env (expdb show --env RUN)")
    refused(cli, ["show", "--env", "tiny"], "tiny has never run")
