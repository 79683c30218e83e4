"""`expdb run` as a user types it: user runners, shell commands with --parse, --all, --resume, Ctrl-C, bad input."""

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import query, refused, runs_of

from expdb import cards
from expdb.db import Database, new_uid, resolve_location
from expdb.series import read_curve

SCRIPTS = Path(__file__).resolve().parent / "scripts"
MMDET_PRINT = SCRIPTS / "mmdet_print.py"
PY = shlex.quote(sys.executable)
CASCADE_NAN = "loss became NaN at step 300 (last finite 0.8832 at step 250)"
DEADLINE_S = 60.0


@pytest.fixture(autouse=True)
def tiny_runners(monkeypatch):
    """tests/scripts importable (tinyrunners:NAME); sys.path and the module cache restored afterwards."""
    monkeypatch.setattr(sys, "path", [str(SCRIPTS), *sys.path])
    for module in ("mymod", "exploding"):
        monkeypatch.delitem(sys.modules, module, raising=False)


@pytest.fixture
def ctrl_c_reaches_python():
    """SIGINT raised as KeyboardInterrupt, as in a terminal, even when the tests run where it is ignored (a
    background job of a script: then expdb rightly leaves it ignored); restored afterwards."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def only_run(card) -> dict:
    (run,) = runs_of(card)
    return run


def curve(run_id, key="loss"):
    with Database() as db:
        return read_curve(db, run_id, key)


def ctx_facts(run_id) -> dict:
    return json.loads(Path(f"ctx_{run_id}.json").read_text())


def plant_running_run(card="x", pid=None, checkpoint_dir=None):
    """A run row as a live `expdb run` on this machine leaves it (this process's pid unless told)."""
    with Database() as db:
        card_id = db.query_one("SELECT id FROM card WHERE name = ?", (card,))[0]
        with db.transaction() as connection:
            connection.execute(
                "INSERT INTO run (uid, card_id, status, started_at, heartbeat_at, host, pid, checkpoint_dir, env) "
                "VALUES (?, ?, 'running', ?, ?, ?, ?, ?, '{}')",
                (new_uid(), card_id, time.time(), time.time(), socket.gethostname(), pid or os.getpid(), checkpoint_dir),
            )


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def mmdet_cmd(*flags) -> str:
    return " ".join([PY, shlex.quote(str(MMDET_PRINT)), *flags])


# -- user runners ------------------------------------------------------------------------


def test_run_with_a_user_runner_finishes_and_show_has_the_summary(cli, new):
    new("tiny", "--runner", "tinyrunners:finish", "--steps", "20")
    result = cli("run", "tiny")
    assert result.code == 0, result.err
    assert "tiny (run 1) finished" in result.out and "iou50=0.34" in result.out
    run = only_run("tiny")
    assert (run["status"], run["device"], run["seed"], run["exit_reason"]) == ("finished", "cpu", 0, None)
    assert ctx_facts(run["id"])["resume"] is False
    assert list(curve(run["id"]).steps) == list(range(20))
    shown = cli("show", "tiny").out
    assert "finished" in shown and "iou50=0.34" in shown


def test_seed_and_device_options_reach_the_runner(cli, new):
    new("tiny", "--runner", "tinyrunners:finish")
    assert cli("run", "tiny", "--seed", "3", "--device", "cpu").code == 0
    run = only_run("tiny")
    assert (run["seed"], run["device"]) == (3, "cpu")
    assert (ctx_facts(run["id"])["seed"], ctx_facts(run["id"])["device"]) == (3, "cpu")


def test_runner_module_in_the_current_directory_is_found(cli, new, workdir):
    (workdir / "mymod.py").write_text(
        "def train(params, ctx):\n"
        "    for step in range(params['steps']):\n"
        "        ctx.log(step, loss=params['lr'] * step)\n"
        "    ctx.summary(iou50=0.5)\n"
    )
    new("mine", "--runner", "mymod:train", "--lr", "0.5", "--steps", "4")
    result = cli("run", "mine")
    assert result.code == 0, result.err
    run = only_run("mine")
    assert run["status"] == "finished"
    assert list(curve(run["id"]).values) == [0.0, 0.5, 1.0, 1.5]


def test_runner_logging_nan_is_diverged_and_show_prints_the_note(cli, new):
    new("blowup", "--runner", "tinyrunners:nan", "--nan_at", "10")
    result = cli("run", "blowup")
    message = "loss became NaN at step 10 (last finite 1 at step 9)"
    assert f"blowup (run 1) diverged: {message}" in result.out
    run = only_run("blowup")
    assert (run["status"], run["exit_reason"]) == ("diverged", message)
    assert query("SELECT text, automatic, step FROM note") == [(message, 1, 10)]
    assert "done" not in result.out  # the loop was stopped: the runner never reached its summary
    shown = cli("show", "blowup").out
    assert "expdb, step 10" in shown and message in shown


def test_on_diverge_note_lets_the_runner_finish_and_keeps_the_note(cli, new):
    new("noted", "--runner", "tinyrunners:nan", "--nan_at", "10", "--stop_after", "80")
    result = cli("run", "noted", "--on-diverge", "note")
    assert result.code == 0, result.err
    run = only_run("noted")
    assert run["status"] == "finished"
    assert len(curve(run["id"])) == 80
    assert query("SELECT step FROM note WHERE automatic") == [(10,)]
    assert "done=1" in result.out


def test_runner_that_raises_is_failed_with_the_exception_as_exit_reason(cli, new):
    new("broken", "--runner", "tinyrunners:boom")
    result = cli("run", "broken")
    assert "broken (run 1) failed: ValueError: boom at step 0" in result.out
    run = only_run("broken")
    assert (run["status"], run["exit_reason"]) == ("failed", "ValueError: boom at step 0")
    assert list(curve(run["id"]).steps) == [0]
    assert "ValueError: boom at step 0" in cli("show", "broken").out


def test_ctrl_c_that_the_training_code_swallowed_still_ends_the_run_interrupted(cli, new, ctrl_c_reaches_python):
    """Ctrl-C while torch imports sympy: the import machinery caught it, and the code failed later otherwise."""
    new("cut", "--runner", "tinyrunners:swallows_ctrl_c")
    result = cli("run", "cut")
    assert result.code == 130, (result.out, result.err)
    run = only_run("cut")
    assert (run["status"], run["exit_reason"]) == ("interrupted", "interrupted (Ctrl-C)")
    assert list(curve(run["id"]).steps) == [0]


def test_a_ctrl_c_one_run_caught_is_not_the_next_runs(cli, new, ctrl_c_reaches_python):
    new("a_catches", "--runner", "tinyrunners:catches_ctrl_c")
    new("b_breaks", "--runner", "tinyrunners:boom")
    result = cli("run", "--all")
    assert result.code == 1, (result.out, result.err)
    assert only_run("a_catches")["status"] == "finished"
    assert (only_run("b_breaks")["status"], only_run("b_breaks")["exit_reason"]) == ("failed", "ValueError: boom at step 0")


@pytest.mark.parametrize(
    "args",
    [
        ["--runner", "tinyrunners:nan"],
        ["--runner", "tinyrunners:boom"],
        ["--cmd", mmdet_cmd("--exit", "3")],
        ["--cmd", mmdet_cmd("--nan-forever"), "--parse", "mmdet"],
    ],
    ids=["diverged", "failed", "command-failed", "command-diverged"],
)
def test_run_exits_1_when_the_run_does_not_finish(cli, new, args):
    new("bad", *args)
    result = cli("run", "bad")
    assert only_run("bad")["status"] in ("diverged", "failed")
    assert result.code == 1


def test_all_runs_the_planned_cards_only(cli, new):
    for name in ("p1", "done", "p2"):
        new(name, "--runner", "tinyrunners:finish", "--steps", "3")
    assert cli("run", "done").code == 0
    result = cli("run", "--all")
    assert result.code == 0, result.err
    assert "p1 (run 2) finished" in result.out and "p2 (run 3) finished" in result.out
    assert "done" not in result.out
    assert [len(runs_of(name)) for name in ("p1", "done", "p2")] == [1, 1, 1]


def test_all_with_nothing_planned_says_so(cli, new):
    new("done", "--runner", "tinyrunners:finish")
    assert cli("run", "done").code == 0
    result = cli("run", "--all")
    assert (result.code, result.out.strip()) == (0, "no planned cards to run")


def test_resume_continues_the_latest_run_from_its_checkpoint(cli, new):
    new("res", "--runner", "tinyrunners:resumable")
    first = cli("run", "res")
    assert "res (run 1) failed: RuntimeError: node lost" in first.out
    result = cli("run", "res", "--resume")
    assert result.code == 0, result.err
    run = only_run("res")  # the same run, continued
    assert (run["id"], run["status"], run["exit_reason"]) == (1, "finished", None)
    facts = ctx_facts(1)
    assert facts["resume"] is True and facts["checkpoint_exists"] is True
    loss = curve(1)
    assert list(loss.steps) == list(range(10))
    assert list(loss.values) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 106.0, 107.0, 108.0, 109.0]
    assert query("SELECT key, value FROM metric WHERE key = 'iou50'") == [("iou50", 0.5)]


def test_resume_after_a_crash_reaps_the_run_and_continues_it(cli, new, workdir):
    new("crashy", "--runner", "tinyrunners:resumable")
    checkpoint = workdir / "expdb_runs" / "run-1" / "checkpoint.pt"
    plant_running_run("crashy", pid=dead_pid(), checkpoint_dir=str(checkpoint.parent))
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text(json.dumps({"step": 5}))
    result = cli("run", "crashy", "--resume")
    assert result.code == 0, result.err
    run = only_run("crashy")
    assert (run["status"], run["pid"]) == ("finished", os.getpid())
    assert list(curve(run["id"]).steps) == [6, 7, 8, 9]


def test_run_selects_cards_as_every_command_does_then_runs_the_planned_ones(cli, new):
    for name, n, tags in (("a_1", 1, []), ("a_2", 2, ["--tag", "x"]), ("b_1", 3, ["--tag", "x"]), ("a_3", 4, ["--tag", "x"])):
        new(name, "--runner", "tinyrunners:finish", "--steps", "3", "--N", str(n), *tags)
    assert cli("run", "a_3").code == 0

    def runs():
        return [len(runs_of(name)) for name in ("a_1", "a_2", "b_1", "a_3")]

    result = cli("run", "a_*", "--tag", "x")
    assert result.code == 0, result.err
    assert runs() == [0, 1, 0, 1]  # a_3 had run already
    assert cli("run", "--where", "N>=2").code == 0
    assert runs() == [0, 1, 1, 1]
    refused(cli, ["run", "a_*", "--tag", "nope"], "matches 'a_*' --tag nope")


def test_two_databases_in_one_folder_never_share_a_run_folder(cli, new, workdir, backend, request):
    """Run 1 of each database has a folder of its own: --resume never loads another study's checkpoint."""
    other = "other.db" if backend == "sqlite" else request.getfixturevalue("new_postgres_database")()
    new("res", "--runner", "tinyrunners:resumable")
    assert cli("run", "res").code == 1  # run 1 crashes after writing its checkpoint
    assert cli("new", "res", "--runner", "tinyrunners:boom", "--db", other).code == 0
    assert cli("run", "res", "--db", other).code == 1  # its run 1 crashes before writing one
    with Database() as first, Database(other) as second:
        first_dir, second_dir = (db.query_one("SELECT checkpoint_dir FROM run WHERE id = 1")[0] for db in (first, second))
        if backend == "sqlite":
            assert (first_dir, second_dir) == (
                str(workdir / "expdb_runs" / "experiments.db" / "run-1"),
                str(workdir / "expdb_runs" / "other.db" / "run-1"),
            )
    assert first_dir != second_dir and Path(first_dir, "checkpoint.pt").is_file()
    refused_resume = cli("run", "res", "--resume", "--db", other)
    assert refused_resume.code == 2 and f"res has no checkpoint at {Path(second_dir, 'checkpoint.pt')}" in refused_resume.err
    assert cli("run", "res", "--resume").code == 0
    assert list(curve(1).steps) == list(range(10))


def test_all_goes_on_after_a_card_that_does_not_finish(cli, new):
    new("first", "--runner", "tinyrunners:boom")
    new("second", "--runner", "tinyrunners:finish")
    cli("run", "--all")
    assert [runs_of(name)[0]["status"] for name in ("first", "second")] == ["failed", "finished"]


# -- shell commands ------------------------------------------------------------------------


def test_cmd_with_mmdet_parser_records_the_curves(cli, new):
    new("mm", "--cmd", mmdet_cmd(), "--parse", "mmdet")
    result = cli("run", "mm")
    assert result.code == 0, result.err
    run = only_run("mm")
    assert run["status"] == "finished"
    loss = curve(run["id"])
    assert list(loss.steps) == [50, 100, 150, 200, 250]
    assert list(loss.values) == [1.4106, 0.8306, 1.0013, 0.8342, 0.8832]
    assert list(curve(run["id"], "s0.acc").values)[0] == 87.7969
    assert "Epoch [1][250/5455]" in Path(run["log_path"]).read_text()  # the command's output is teed to the log


def test_cmd_divergence_is_detected_and_the_command_stopped(cli, new, workdir):
    pidfile = workdir / "child.pid"
    new("cascade", "--cmd", mmdet_cmd("--nan-forever", "--pidfile", str(pidfile)), "--parse", "mmdet")
    result = cli("run", "cascade")
    assert f"cascade (run 1) diverged: {CASCADE_NAN}" in result.out
    run = only_run("cascade")
    assert (run["status"], run["exit_reason"]) == ("diverged", CASCADE_NAN)
    assert query("SELECT text, step FROM note WHERE automatic") == [(CASCADE_NAN, 300)]
    assert list(curve(run["id"]).steps)[:6] == [50, 100, 150, 200, 250, 300]
    with pytest.raises(ProcessLookupError):
        os.kill(int(pidfile.read_text()), 0)  # stopped and reaped


def test_cmd_that_goes_quiet_after_diverging_is_stopped(cli, new, workdir):
    marker = workdir / "survived"
    new("quiet", "--cmd", mmdet_cmd("--until-nan", "--silent-after-nan", "10", "--marker", str(marker)), "--parse", "mmdet")
    cli("run", "quiet")
    assert only_run("quiet")["status"] == "diverged"
    assert not marker.exists()


def test_cmd_param_templating_reaches_the_command_line(cli, new):
    new("lr", "--lr", "4e-3", "--cmd", mmdet_cmd("--lr", "{lr}"))
    result = cli("run", "lr")
    assert result.code == 0, result.err
    assert "argv: --lr 4e-3" in result.out
    assert "argv: --lr 4e-3" in Path(only_run("lr")["log_path"]).read_text()


def test_cmd_param_templating_works_after_double_dash_too(cli, new):
    new("dash_lr", "--lr", "0.5")
    result = cli("run", "dash_lr", "--", sys.executable, str(MMDET_PRINT), "--lr", "{lr}")
    assert result.code == 0, result.err
    assert "argv: --lr 0.5" in result.out


def test_cmd_param_with_spaces_reaches_the_command_as_one_argument(cli, new):
    new("listy", "--strides", "[3, 5]", "--cmd", mmdet_cmd("--lr", "{strides}"))
    result = cli("run", "listy")
    assert result.code == 0, result.err
    assert "argv: --lr [3, 5]" in result.out


def test_cmd_run_records_the_command_line_that_ran(cli, new):
    new("lr", "--lr", "4e-3", "--cmd", mmdet_cmd("--lr", "{lr}"))
    assert cli("run", "lr").code == 0
    assert only_run("lr")["command"].endswith("--lr 4e-3")


def test_cmd_that_exits_non_zero_is_failed_with_its_status(cli, new):
    new("oom", "--cmd", mmdet_cmd("--exit", "3"), "--parse", "mmdet")
    result = cli("run", "oom")
    reason = "the command exited with status 3: RuntimeError: CUDA out of memory"
    assert f"oom (run 1) failed: {reason}" in result.out
    run = only_run("oom")
    assert (run["status"], run["exit_reason"]) == ("failed", reason)
    assert len(curve(run["id"])) == 5  # what it logged before failing is kept


def test_command_after_double_dash_runs_the_card(cli, new):
    new("dash", "--parse", "mmdet")
    result = cli("run", "dash", "--", sys.executable, str(MMDET_PRINT), "--lr", "7")
    assert result.code == 0, result.err
    assert "argv: --lr 7" in result.out
    run = only_run("dash")
    assert run["status"] == "finished"
    assert run["command"] == shlex.join([sys.executable, str(MMDET_PRINT), "--lr", "7"])
    assert len(curve(run["id"])) == 5


@pytest.mark.parametrize("profiled", [True, False], ids=["profiled", "silent"])
def test_cmd_records_the_device_its_script_shows_and_no_guess_otherwise(cli, new, profiled):
    from expdb.runs import cpu_name

    script = shlex.quote(str(SCRIPTS / "attach_device.py"))
    new("x", "--cmd", f"{PY} {script}" + (" --profile" if profiled else ""))
    result = cli("run", "x")
    assert result.code == 0, result.err
    run = only_run("x")
    wanted = ("cpu", cpu_name()) if profiled else (None, None)  # expdb run itself cannot know what the command uses
    assert (run["device"], json.loads(run["env"]).get("device_name")) == wanted


# -- Ctrl-C and SIGTERM in a real process ----------------------------------------------------


def signal_expdb_run(workdir, signum):
    """`expdb run` of a runner that logs forever, sent `signum` once it has flushed; returns (code, stderr)."""
    path = resolve_location(None)
    with Database(path, create=True) as db:
        cards.create_card(db, "endless", {}, runner="tinyrunners:forever")
    process = subprocess.Popen(
        [sys.executable, "-m", "expdb", "run", "endless", "--db", path],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SCRIPTS), os.environ.get("PYTHONPATH")]))},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal would start it
    )
    deadline = time.monotonic() + DEADLINE_S
    while not query("SELECT count(*) FROM chunk")[0][0]:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no flush from expdb run"
        time.sleep(0.05)
    process.send_signal(signum)
    _, err = process.communicate(timeout=DEADLINE_S)
    return process.returncode, err


@pytest.mark.parametrize(
    "signum, reason",
    [(signal.SIGINT, "interrupted (Ctrl-C)"), (signal.SIGTERM, "terminated (SIGTERM)")],
    ids=["SIGINT", "SIGTERM"],
)
def test_signal_to_expdb_run_marks_the_run_interrupted_and_keeps_its_points(workdir, signum, reason):
    signal_expdb_run(workdir, signum)
    run = only_run("endless")
    assert (run["status"], run["exit_reason"]) == ("interrupted", reason)
    steps = list(curve(run["id"]).steps)
    assert steps and steps == list(range(len(steps)))


def test_ctrl_c_to_expdb_run_exits_130(workdir):
    code, err = signal_expdb_run(workdir, signal.SIGINT)
    assert code == 130
    assert "interrupted" in err


# -- a cluster's signal while `expdb run` starts ----------------------------------------------


def start_slowly(workdir, phase: str, *args: str) -> subprocess.Popen:
    """`expdb run slow` (runner slowstart:train), once it waits in `phase`: importing its runner, or building
    the model to profile while its run exists."""
    path = resolve_location(None)
    with Database(path, create=True) as db:
        cards.create_card(db, "slow", {}, runner="slowstart:train")
    process = subprocess.Popen(
        [sys.executable, "-m", "expdb", "run", "slow", "--db", path, *args],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "SLOWSTART": phase,
             "PYTHONPATH": os.pathsep.join(filter(None, [str(SCRIPTS), os.environ.get("PYTHONPATH")]))},
    )
    deadline = time.monotonic() + DEADLINE_S
    while not (workdir / f"waiting_{process.pid}").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "expdb run never reached its start-up's wait"
        time.sleep(0.02)
    return process


SIGNALS_AT_START = [
    pytest.param(signal.SIGUSR2, "the cluster's time limit is near (SIGUSR2)", id="SIGUSR2"),
    pytest.param(signal.SIGTERM, "terminated (SIGTERM)", id="SIGTERM"),
]


@pytest.mark.parametrize("signum, said", SIGNALS_AT_START)
def test_a_signal_while_the_runner_is_imported_stops_expdb_run_in_one_line_with_nothing_recorded(workdir, signum, said):
    process = start_slowly(workdir, "import")
    process.send_signal(signum)
    _, err = process.communicate(timeout=DEADLINE_S)
    assert (process.returncode, err) == (130, f"interrupted: {said}, before a run began\n")
    assert query("SELECT count(*) FROM run") == [(0,)]


@pytest.mark.parametrize("signum, said", SIGNALS_AT_START)
def test_a_signal_while_the_run_is_profiled_ends_it_interrupted_before_it_trains(workdir, signum, said):
    process = start_slowly(workdir, "build", "--profile-budget", "0.1")
    process.send_signal(signum)
    (workdir / "go").touch()
    _, err = process.communicate(timeout=DEADLINE_S)
    run = only_run("slow")
    assert (run["status"], run["exit_reason"]) == ("interrupted", said)
    assert not (workdir / f"trained_{process.pid}").exists()
    assert process.returncode == (1 if signum == signal.SIGUSR2 else 130), err


def test_a_signal_while_the_run_row_is_written_waits_and_ends_the_run_interrupted(cli, new, monkeypatch):
    """SIGTERM between the run row's insert and the training: the run ends interrupted, never left running."""
    from expdb import lifecycle

    started = lifecycle.start

    def start_then_signalled(*args, **kwargs):
        row = started(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to this (main) thread at once
        return row

    monkeypatch.setattr(lifecycle, "start", start_then_signalled)
    handler = signal.getsignal(signal.SIGTERM)
    new("x", "--runner", "tinyrunners:finish")
    result = cli("run", "x", "--profile-budget", "0")
    assert (result.code, result.err.splitlines()[-1]) == (130, "interrupted: terminated (SIGTERM)")
    run = only_run("x")
    assert (run["status"], run["exit_reason"]) == ("interrupted", "terminated (SIGTERM)")
    assert signal.getsignal(signal.SIGTERM) is handler  # put back after the run


# -- bad input -------------------------------------------------------------------------------


def bad(case_id, card_args, setup, args, message):
    return pytest.param(card_args, setup, args, message, id=case_id)


RUNNER = ["--runner", "tinyrunners:finish"]
BAD_RUNS = [
    # an unknown built-in runner is refused when the card is made (tests/test_cli_errors.py)
    bad("runner-import-raises", ["--runner", "exploding:train"], "exploding", ["run", "x"],
        "runner 'exploding:train' failed to import: RuntimeError: no GPU in this module"),
    bad("runner-function-missing", ["--runner", "tinyrunners:nosuch"], None, ["run", "x"], "has no function 'nosuch'"),
    bad("command-not-found", ["--cmd", "no-such-trainer-xyz --lr 1"], None, ["run", "x"],
        "command not found: 'no-such-trainer-xyz'"),
    bad("param-missing", ["--lr", "0.1", "--cmd", mmdet_cmd("--wd", "{wd}")], None, ["run", "x"],
        "uses {wd}, but x has no parameter 'wd'; its parameters: lr"),
    bad("already-running", RUNNER, "running", ["run", "x"], "x is already running (run 1)"),
    bad("resume-never-ran", RUNNER, None, ["run", "x", "--resume"], "--resume: x has never run"),
    bad("resume-no-checkpoint", RUNNER, "ran", ["run", "x", "--resume"], "--resume: x has no checkpoint"),
    bad("device-cuda-no-gpu", RUNNER, None, ["run", "x", "--device", "cuda"], "no CUDA GPU is visible"),
    bad("device-unknown", RUNNER, None, ["run", "x", "--device", "tpu"], "unknown --device 'tpu'"),
    bad("on-diverge-unknown", RUNNER, None, ["run", "x", "--on-diverge", "ignore"],
        "unknown --on-diverge 'ignore'; use one of: stop, note"),
    bad("no-name-no-all", RUNNER, None, ["run"], "name one card to run, or pass --all"),
    bad("name-and-all", RUNNER, None, ["run", "x", "--all"], "name one card to run, or pass --all"),
    bad("unknown-card", RUNNER, None, ["run", "nosuch"], "no card named 'nosuch'"),
    bad("no-runner-no-command", [], None, ["run", "x"], "x has no runner or command"),
    bad("device-unknown-with-cmd", ["--cmd", mmdet_cmd()], None, ["run", "x", "--device", "tpu"], "unknown --device 'tpu'"),
]


@pytest.mark.parametrize("card_args, setup, args, message", BAD_RUNS)
def test_bad_run_input_is_one_error_line_exit_2_and_writes_nothing(cli, new, workdir, card_args, setup, args, message):
    new("x", *card_args)
    if setup == "exploding":
        (workdir / "exploding.py").write_text("raise RuntimeError('no GPU in this module')\n")
    elif setup == "running":
        plant_running_run()
    elif setup == "ran":
        assert cli("run", "x").code == 0
    refused(cli, args, message)
    assert query("SELECT count(*) FROM run WHERE status = 'running'")[0][0] == (1 if setup == "running" else 0)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["run", "nosuch"], id="refused-before-the-progress-bar"),
        pytest.param(["run", "x"], id="refused-inside-the-progress-bar"),
    ],
)
def test_run_error_is_exactly_one_line_on_stderr(cli, new, args):
    new("x", "--runner", "tinyrunners:nosuch")
    result = cli(*args)
    assert result.code == 2
    assert result.err.startswith("error:") and result.err.count("\n") == 1, repr(result.err)


def test_all_skips_a_card_it_cannot_run_and_goes_on(cli, new):
    new("first", "--runner", "tinyrunners:finish")
    new("nothing")  # no runner, no command
    new("third", "--runner", "tinyrunners:finish")
    result = cli("run", "--all")
    assert result.code == 1
    assert "error: nothing: nothing has no runner or command" in result.err
    assert [runs_of(name)[0]["status"] for name in ("first", "third")] == ["finished", "finished"]
    assert runs_of("nothing") == []


def test_all_refuses_options_that_are_for_one_card(cli, new):
    new("x", *RUNNER)
    result = cli("run", "--all", "--parse", "mmdet")  # --resume goes with a selection: it continues its interrupted cards
    assert result.code == 2 and "are for one card" in result.err


def test_a_command_given_at_run_time_is_parsed_with_parse(cli, new):
    new("later")
    result = cli("run", "later", "--parse", "mmdet", "--", *shlex.split(mmdet_cmd()))
    assert result.code == 0, result.err
    assert len(curve(only_run("later")["id"])) > 0


def test_rename_then_resume_finds_the_checkpoint(cli, new, workdir):
    new("before", "--runner", "tinyrunners:resumable")
    assert cli("run", "before").code != 0  # resumable writes its checkpoint, then fails
    assert cli("rename", "before", "after").code == 0
    result = cli("run", "after", "--resume")
    assert result.code == 0, result.err
    assert only_run("after")["status"] == "finished"


def test_a_seed_that_is_not_an_int_is_refused(cli, new):
    new("x", *RUNNER, "--seed", "abc")
    result = cli("run", "x")
    assert result.code == 2 and "a seed is an int" in result.err
    assert runs_of("x") == []



def test_a_run_resumed_by_hand_forgets_the_queue_that_ran_it_before(cli, new):
    """`expdb queue --stop` finds queues by the job id on their runs: a run resumed by hand must not
    keep an old queue's pid there."""
    new("res", "--runner", "tinyrunners:resumable")
    assert cli("run", "res").code == 1  # "node lost", with a checkpoint
    with Database() as db, db.transaction() as connection:
        connection.execute("UPDATE run SET launcher = 'local', job_id = '99999', queued_at = 1.0")
    assert cli("run", "res", "--resume").code == 0
    (run,) = runs_of("res")
    assert (run["status"], run["launcher"], run["job_id"], run["queued_at"]) == ("finished", None, None, None)


def test_a_queued_card_is_not_run_by_hand(cli, new):
    new("x", "--runner", "tinyrunners:finish")
    with Database() as db, db.transaction() as connection:
        connection.execute(
            "INSERT INTO run (uid, card_id, status, queued_at, launcher, env) VALUES (?, ?, 'queued', 1.0, 'slurm', '{}')",
            (new_uid(), cards.get_card(db, "x").id),
        )
    refused(cli, ["run", "x"], "x is queued (run 1)")


def test_a_seed_beyond_64_bits_is_refused(cli, new):
    new("x", "--runner", "tinyrunners:finish")
    refused(cli, ["run", "x", "--seed", str(2**63)], "does not fit in 64 bits")
