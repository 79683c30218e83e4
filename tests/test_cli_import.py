"""`expdb import FORMAT LOGFILE --name NAME [--from BASE]`: runs that already happened, from real training logs."""

from pathlib import Path

import pytest
from conftest import dump, query

from expdb.db import Database
from expdb.series import read_curve

DATA = Path(__file__).resolve().parent / "data"
CASCADE = DATA / "real-logs" / "mmdet2-cascade-nan.log"
MMENGINE = DATA / "real-logs" / "mmengine-deepspeed.log"
SAMPLE = DATA / "mmdet-sample.log"
CASCADE_NAN = "loss became NaN at step 300 (last finite 0.8832 at step 250)"


def runs_of(card):
    return query(
        "SELECT run.id, run.status, run.exit_reason FROM run JOIN card ON card.id = run.card_id "
        "WHERE card.name = ? ORDER BY run.id",
        (card,),
    )


def curve(run_id, key="loss"):
    with Database() as db:
        return read_curve(db, run_id, key)


def test_cascade_log_imports_diverged_with_the_nan_note(cli):
    result = cli("import", "mmdet", str(CASCADE), "--name", "cascade")
    assert result.code == 0, result.err
    assert "into cascade (run 1): diverged" in result.out and CASCADE_NAN in result.out
    assert runs_of("cascade") == [(1, "diverged", CASCADE_NAN)]
    assert query("SELECT text, automatic, step FROM note") == [(CASCADE_NAN, 1, 300)]
    loss = curve(1)
    assert list(loss.steps) == [50, 100, 150, 200, 250, 300, 350, 400]
    assert list(loss.values)[:5] == [1.4106, 0.8306, 1.0013, 0.8342, 0.8832]
    assert "expdb, step 300" in cli("show", "cascade").out


@pytest.mark.parametrize("log, steps", [(MMENGINE, 19), (SAMPLE, 2)], ids=["mmengine", "mmdet-sample"])
def test_finite_logs_import_finished_with_their_points(cli, log, steps):
    result = cli("import", "mmdet", str(log), "--name", "imported")
    assert result.code == 0, result.err
    assert "(run 1): finished" in result.out
    points = int(result.out.split("imported ")[1].split(" points")[0].replace(",", ""))
    assert points > 0
    assert runs_of("imported") == [(1, "finished", None)]
    assert len(curve(1)) == steps
    assert query("SELECT count(*) FROM note")[0][0] == 0


def test_imported_run_records_where_it_came_from(cli):
    assert cli("import", "mmdet", str(CASCADE), "--name", "cascade").code == 0
    command, log_path, started_at, ended_at = query("SELECT command, log_path, started_at, ended_at FROM run")[0]
    assert command == f"imported from {CASCADE.resolve()}" and log_path == str(CASCADE.resolve())
    assert ended_at - started_at == pytest.approx(117.187)  # 19:25:44,459 to 19:27:41,646: its training lines


def test_import_from_forks_the_new_card(cli):
    assert cli("new", "base", "--lr", "0.02", "--runner", "cvt_io").code == 0
    result = cli("import", "mmdet", str(SAMPLE), "--name", "detr3d", "--from", "base")
    assert result.code == 0, result.err
    shown = cli("show", "detr3d").out
    assert "from:    base" in shown and "lr" in shown
    assert "forks:   detr3d" in cli("show", "base").out


def test_importing_into_an_existing_card_adds_a_run(cli):
    assert cli("import", "mmdet", str(CASCADE), "--name", "cascade").code == 0
    result = cli("import", "mmdet", str(SAMPLE), "--name", "cascade")
    assert result.code == 0, result.err
    assert "(run 2): finished" in result.out
    assert runs_of("cascade") == [(1, "diverged", CASCADE_NAN), (2, "finished", None)]
    assert query("SELECT count(*) FROM card")[0][0] == 1


BAD_IMPORTS = [
    pytest.param(["json", str(SAMPLE), "--name", "x"], "unknown log format 'json'", id="unknown-format"),
    pytest.param(["mmdet", "no_training_lines.log", "--name", "x"], "no MMDetection progress lines", id="no-training-lines"),
    pytest.param(["mmdet", "missing.log", "--name", "x"], "no such log file: missing.log", id="missing-file"),
    pytest.param(["mmdet", "empty", "--name", "x"], "no training log in the folder empty", id="folder-without-log"),
    pytest.param(["mmdet", str(SAMPLE), "--name", "bad name"], "invalid card name 'bad name'", id="bad-name"),
    pytest.param(["mmdet", str(SAMPLE), "--name", "x", "--from", "nosuch"], "no card named 'nosuch'", id="unknown-parent"),
    pytest.param(["regex:zzz (?P<loss>\\S+)", str(SAMPLE), "--name", "x"], "matches the --parse regex", id="regex-matching-nothing"),
]


@pytest.fixture
def no_training_lines(workdir):
    (workdir / "no_training_lines.log").write_text(
        "2021-01-25 19:25:22,220 - mmdet - INFO - workflow: [('train', 1)], max: 12 epochs\nhello\n"
    )
    (workdir / "empty").mkdir()


@pytest.mark.parametrize("args, message", BAD_IMPORTS)
def test_bad_import_is_one_error_line_exit_2_and_writes_nothing(cli, no_training_lines, args, message):
    assert cli("new", "existing").code == 0
    before = dump()
    result = cli("import", *args)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.err
    assert dump() == before


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["json", str(SAMPLE), "--name", "x"], id="unknown-format"),
        pytest.param(["mmdet", "no_training_lines.log", "--name", "x"], id="no-training-lines"),
        pytest.param(["mmdet", "missing.log", "--name", "x"], id="missing-file"),
        pytest.param(["mmdet", str(SAMPLE), "--name", "x", "--from", "nosuch"], id="unknown-parent"),
    ],
)
def test_refused_first_import_leaves_no_database(cli, workdir, no_training_lines, args):
    assert cli("import", *args).code == 2
    assert not (workdir / "experiments.db").exists()
