"""Every mistake a user can make gets one line, exit 2 and an untouched database: the cases a bad-input sweep
found slipping through (tracebacks, driver text, checks left until the card runs)."""

import errno
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import dump, refused

from expdb import cards
from expdb.db import Database, DatabaseError
from expdb.errors import ExpdbError
from expdb.runs import recording_error


@pytest.fixture
def base(cli):
    assert cli("new", "cvt", "--runner", "cvt_io", "--steps", "600").code == 0
    assert cli("new", "own").code == 0


@pytest.mark.parametrize("expression, message", [
    ("(" * 5000 + "N>1" + ")" * 5000, "nested more than 100 levels deep"),
    ("not " * 5000 + "N>1", "nested more than 100 levels deep"),
])
def test_a_where_nested_too_deep_is_one_line(cli, base, expression, message):
    refused(cli, ["list", "--where", expression], message)
    refused(cli, ["table", "--where", expression], message)


@pytest.mark.parametrize("text", ["a:b:c", "nan:1:3", "1:inf:3"])
def test_a_malformed_sweep_range_is_named(cli, base, text):
    refused(cli, ["sweep", "s", "--from", "cvt", "--lr", text], f"--lr {text!r} is not a range")
    if text != "a:b:c":  # a string with colons, when another parameter varies
        refused(cli, ["sweep", "s", "--from", "cvt", "--lr", text, "--N", "3,5"], f"--lr {text!r} is not a range")


def test_a_quoted_string_with_colons_is_a_sweep_value(cli, base):
    result = cli("sweep", "s", "--from", "own", "--cmd_part", '"a:b:c",x', "--dry-run")
    assert result.code == 0 and "would create 2 cards" in result.out, result


@pytest.mark.parametrize("args, message", [
    (["new", "b", "--from", "own", "--seed", "99999999999999999999"], "--seed: '99999999999999999999' does not fit in 64 bits"),
    (["sweep", "s", "--from", "own", "--seed", "1,99999999999999999999"], "does not fit in 64 bits"),
    (["new", "b", "--from", "cvt", "--steps", "-5"], "cvt_io: steps must be >= 0, not -5; the card cannot run as it is"),
    (["sweep", "s", "--from", "cvt", "--steps", "-5,5"], "cvt_io: steps must be >= 0, not -5"),
    (["set", "cvt", "--shape", "xyz"], "cvt_io: shape must be"),
    (["new", "b", "--runner", "nosuch"], "unknown runner 'nosuch'; built-in runners: cvt_io"),
    (["new", "b", "--runner", "not a:module"], "is not package.module:function"),
    (["new", "b", "--from", "own", "--lr", ""], "--lr: an empty value is no parameter"),
    (["new", "b", "--from", "own", "--lr", "inf"], "--lr: 'inf' is not a finite number"),
    (["new", "b", "--from", "own", "--lr", "NaN"], "--lr: 'NaN' is not a finite number"),
    (["set", "own", "--lr", "-inf"], "'-inf' is not a finite number"),
])
def test_what_can_be_checked_when_a_card_is_made_is_checked_then(cli, base, args, message):
    refused(cli, args, message)


@pytest.mark.parametrize("args, message", [
    (["new", "b", "--from", "cvt", "--seed", "-1"], "cvt_io: seed must be >= 0, not -1"),
    (["sweep", "s", "--from", "cvt", "--seed", "-1,1"], "cvt_io: seed must be >= 0, not -1"),
    (["new", "b", "--cmd", ""], "--cmd is empty"),
    (["new", "b", "--runner", " "], "--runner is empty"),
    (["set", "own", "--diverge", "spike_factor=inf"], "spike_factor takes a finite number below 2^63"),
    (["set", "own", "--diverge", "window=99999999999999999999999"], "window takes a finite number below 2^63"),
    (["record", "r1", "--source", "paper", "--iou50", "1e999"], "it is beyond the largest number a float holds"),
    (["new", "b", "--runner", "cvt_io", "--parse", "mmdet"], "--parse reads the log of a command; a card trained by"),
    (["table", "-m", "iou50", "-m", ""], "--metric is empty"),
    (["report", "own", "--curve", ""], "--curve is empty"),
    (["table", "--sort", ""], "--sort is empty"),
    (["table", "--group-by", ","], "--group-by is empty"),
    (["table", "--conditions", ",,"], "--conditions is empty"),
    (["plot", "--over", " "], "--over is empty"),
    (["compare", "cvt", "own", "--curve", ""], "--curve is empty"),
    (["list", "--db", ""], "--db is empty"),
    (["copy", "--to", ""], "--to is empty"),
    (["attach", "own", "notes.txt", "--max-size", "nan"], "--max-size 'nan' must be at least one byte"),
    (["attach", "own", "notes.txt", "--max-size", "0.5"], "--max-size '0.5' must be at least one byte"),
    (["run", "--all", "--device", "tpu"], "unknown --device 'tpu'"),
    (["run", "--all", "--on-diverge", "bogus"], "unknown --on-diverge 'bogus'"),
    (["run", "cvt", "--seed", "-1"], "cvt_io: seed must be >= 0, not -1"),
    (["run", "cvt", "--parse", "mmdet"], "--parse reads the log of a command; cvt is trained by its runner cvt_io"),
    (["profile", "cvt", "--budget", "0"], "--budget 0: give the seconds of warm-up and timing, above 0"),
    (["profile", "cvt", "--threads", "100000"], "--threads 100000: this process may use"),
    (["profile", "cvt", "--input", ""], "--input is empty"),
    (["tag", "own", "x" * 200], "use up to 128 letters"),
])
def test_what_a_sweep_of_mistakes_let_through_is_one_line(cli, base, args, message):
    refused(cli, args, message)


def test_a_curve_reduction_of_a_metric_without_a_curve_says_so(cli, base):
    assert cli("record", "own", "--source", "paper", "--score", "0.5").code == 0
    refused(cli, ["table", "-m", "score:auc"], "has score:auc (a reduction reads the curve, and no run logged score as one)")


def test_a_bad_max_steps_stops_a_run_before_it_exists(cli, base, monkeypatch):
    monkeypatch.setenv("EXPDB_MAX_STEPS", "abc")
    refused(cli, ["run", "cvt"], "EXPDB_MAX_STEPS must be a whole number of steps above 0, not 'abc'")


def test_a_pipe_is_not_imported(cli, base, workdir):
    os.mkfifo(workdir / "train.log")
    refused(cli, ["import", "mmdet", "train.log"], "train.log is neither a file nor a folder (a pipe or a device)")


def test_a_word_that_looks_like_a_number_can_be_quoted(cli, base):
    assert cli("new", "b", "--from", "own", "--lr", '"inf"').code == 0
    assert cards.get_card(Database(), "b").params["lr"] == "inf"


def test_a_user_runner_is_checked_for_its_form_only(cli):
    assert cli("new", "mine", "--runner", "mypackage.train:run").code == 0  # importable where it runs, not here


@pytest.mark.parametrize("args, message", [
    (["compare", "cvt"], "`expdb compare` needs B (the second card): expdb compare A B"),
    (["list", "--stat", "x"], "`expdb list` has no option --stat; did you mean --status?"),
    (["note", "cvt", "x", "--he"], "`expdb note` has no option --he; did you mean --help?"),
    (["note", "cvt", "x", "--zzzzzz"], "`expdb note` has no option --zzzzzz; `expdb note --help` lists its options"),
])
def test_usage_errors_say_what_would_be_right(cli, base, args, message):
    result = refused(cli, args, message)
    assert "Possible options" not in result.err and "Missing argument" not in result.err


def test_a_lost_race_for_a_name_is_one_line(cli, base, monkeypatch):
    """Two processes create the same name at once: the one that inserts second is told so, in words."""
    real = cards.card_exists
    calls = []

    def looked_too_early(db, name):
        calls.append(name)
        return False if len(calls) == 1 else real(db, name)  # the first look sees no card, as the loser of a race would

    monkeypatch.setattr(cards, "card_exists", looked_too_early)
    refused(cli, ["new", "own"], "a card named 'own' was just created by someone else; pick another name")


def test_a_lost_race_inside_a_sweep_is_one_line(db, monkeypatch):
    cards.create_card(db, "base", {})
    cards.create_card(db, "taken", {})
    monkeypatch.setattr(cards, "card_exists", lambda *_: False)
    with pytest.raises(ExpdbError, match="was just created by someone else"):
        with db.transaction():
            cards.create_card(db, "fresh", {})
            cards.create_card(db, "taken", {})
    assert [card.name for card in cards.select_cards(db, cards.Selection())] == ["base", "taken"]


def test_a_database_that_is_not_a_file_is_one_line(cli):
    refused(cli, ["new", "x", "--db", "/dev/null"], "/dev/null is not a regular file")
    refused(cli, ["list", "--db", "/dev/null"], "/dev/null is not a regular file")


def as_another_user(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`expdb ARGS` without write access to `cwd`'s read-only folders: as nobody when this is root (whom
    permissions do not stop)."""
    command = [sys.executable, "-m", "expdb", *args]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot drop write access")
        command = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, "EXPDB_DB": ""}, timeout=120)


@pytest.fixture
def open_tmp():
    """A folder everyone may enter (pytest's own are private to this user, and another user is needed here)."""
    path = Path(tempfile.mkdtemp(prefix="expdb-ro-"))
    path.chmod(0o755)
    yield path
    for inner in path.rglob("*"):
        if inner.is_dir():
            inner.chmod(0o755)
    shutil.rmtree(path)


@pytest.mark.sqlite_only
def test_a_database_in_a_read_only_folder_can_be_read_and_says_why_it_cannot_be_written(open_tmp):
    tmp_path = open_tmp
    folder = tmp_path / "study"
    folder.mkdir()
    with Database(str(folder / "study.db"), create=True) as db:
        cards.create_card(db, "cvt", {"N": 3})
    folder.chmod(0o555)
    try:
        before = sorted(folder.iterdir())
        listed = as_another_user(["list", "--db", "study/study.db"], tmp_path)
        assert listed.returncode == 0 and "cvt" in listed.stdout, listed
        written = as_another_user(["note", "cvt", "x", "--db", "study/study.db"], tmp_path)
        assert written.returncode == 2 and written.stderr.strip().splitlines() == [
            "error: cannot write to study/study.db: the folder study is not writable (SQLite writes its journal beside the file)"
        ], written
        made = as_another_user(["new", "x", "--db", "study/new.db"], tmp_path)
        assert made.returncode == 2 and "error: cannot create study/new.db: the folder study is not writable" in made.stderr
        assert sorted(folder.iterdir()) == before
    finally:
        folder.chmod(0o755)
    with sqlite3.connect(folder / "study.db") as connection:
        assert connection.execute("SELECT count(*) FROM note").fetchone()[0] == 0


def test_a_full_disk_during_a_run_says_so():
    full = recording_error(DatabaseError("writing to experiments.db failed: database or disk is full"))
    assert "the disk is full; free some space" in full and "log() takes numbers" not in full
    assert "the disk is full" in recording_error(OSError(errno.ENOSPC, "No space left on device"))
    assert recording_error(TypeError("must be real number, not str")).endswith("(log() takes numbers)")


@pytest.mark.parametrize(
    "args", [["table"], ["table", "-m", "iou50"], ["table", "--where", "N>100"], ["table", "--format", "csv"]]
)
def test_a_table_with_nothing_to_show_is_one_line_and_exit_2(cli, base, args):
    result = cli(*args)
    assert result.code == 2 and result.out == "" and len(result.err.strip().splitlines()) == 1, result
    assert result.err.startswith("error: ") and "no card" in result.err
    before = dump()
    assert cli(*args).code == 2 and dump() == before
