"""`expdb copy --to URL` / `--from URL`: a study from one database into another, selected like `table` selects."""

from pathlib import Path

import pytest
from conftest import dump, wait_until
from test_copy import (
    card_names,
    make_study,
    row_counts,
    snapshot,
    stored_points,
)

from expdb import cards, runs
from expdb.db import Database, display_name, resolve_location


@pytest.fixture
def here(workdir, fast_flushes) -> str:
    """The current database (./experiments.db, or EXPDB_DB), with the study of test_copy in it."""
    make_study(resolve_location(None))
    return resolve_location(None)


@pytest.fixture
def target_location(workdir) -> str:
    """The other database: a new SQLite file unless a test makes it first."""
    return str(workdir / "other.db")


@pytest.fixture
def fast_flushes(monkeypatch):
    """Runs write their points every 20 ms, so that the study is made quickly."""
    monkeypatch.setattr(runs, "FLUSH_INTERVAL_S", 0.02)


def test_copy_to_a_new_database_and_again(cli, here, target_location):
    result = cli("copy", "--to", target_location)

    assert result.code == 0, result.err
    assert result.out.startswith("copied 4 cards, 4 runs, 1,401 points, 2 profiles, 4 notes from ")
    assert result.out.splitlines()[0].endswith(f" to {target_location}")
    assert snapshot(target_location) == snapshot(here)
    shown = cli("show", "cvt_io_v3_2", "--db", target_location)
    assert "from:    cvt_io_v3_1" in shown.out and "finished" in shown.out and "failed" in shown.out

    again = cli("copy", "--to", target_location)

    assert again.code == 0, again.err
    assert again.out == f"nothing new to copy: 4 cards already in {target_location}, up to date\n"
    assert row_counts(target_location) == row_counts(here)


def test_copy_from_another_database_by_tag(cli, workdir, fast_flushes, target_location):
    make_study(target_location)  # the cluster's database, say

    result = cli("copy", "--from", target_location, "--tag", "cvt_io_v3")

    assert result.code == 0, result.err
    assert result.out.startswith("copied 3 cards, 4 runs, 1,401 points, 2 profiles, 4 notes from ")
    assert "with the ancestors the target lacked, so that lineage holds: cvt\n" in result.out
    assert card_names(resolve_location(None)) == ["cvt", "cvt_io_v3_1", "cvt_io_v3_2"]
    table = cli("table", "--metric", "iou50", "--tag", "cvt_io_v3", "--format", "csv")
    assert table.code == 0, table.err
    assert [line.split(",")[0] for line in table.out.splitlines()[1:]] == ["cvt_io_v3_1", "cvt_io_v3_2"]


@pytest.mark.parametrize(
    "selection, copied",
    [
        (["cvt_io_v3_*"], ["cvt", "cvt_io_v3_1", "cvt_io_v3_2"]),
        (["--where", "N>=10"], ["cvt", "cvt_io_v3_1", "cvt_io_v3_2"]),
        (["--where", "N<5"], ["cvt", "other"]),
        (["--status", "planned"], ["other"]),
        (["other", "cvt"], ["cvt", "other"]),
    ],
    ids=" ".join,
)
def test_copy_what_is_selected(cli, here, target_location, selection, copied):
    result = cli("copy", "--to", target_location, *selection)
    assert result.code == 0, result.err
    assert card_names(target_location) == copied


def test_copy_selects_cards_as_every_command_does(cli, three_cards, target_location):
    assert cli("copy", "--to", target_location, "a_*", "--tag", "x").code == 0
    assert card_names(target_location) == ["a_2"]
    assert cli("copy", "--to", target_location, "--where", "N>=1", "--status", "finished").code == 0
    assert card_names(target_location) == ["a_2", "b_1"]


def test_a_running_run_is_left_for_the_copy_after_it_ends(cli, here, target_location):
    with Database(here) as db:
        cards.create_card(db, "live", {"N": 7})
        run = runs.begin_run(db, "live", device="cpu")
        run.log(0, loss=1.0)
        run.log(1, loss=0.9)
        wait_until(lambda: stored_points(here, run.id) == 2, "two points stored")

        first = cli("copy", "--to", target_location, "live")
        assert first.code == 0, first.err
        assert "still running, their runs not copied: live; copy again once it has ended" in first.out
        again = cli("copy", "--to", target_location, "live")
        assert again.out.splitlines()[0].startswith("nothing new to copy: 1 card already in ")
        assert again.out.splitlines()[1] == "still running, their runs not copied: live; copy again once it has ended"

        run.log(2, loss=0.8)
        run.end("finished")

    later = cli("copy", "--to", target_location, "live")

    assert later.code == 0, later.err
    assert later.out.startswith("copied 0 cards, 1 run, 3 points, 0 profiles, 0 notes from ")
    assert "(1 card already there)" in later.out
    with Database(target_location) as db:
        assert cards.get_card(db, "live").status == "finished"


def test_a_card_of_the_same_name_in_the_target_refuses_the_copy(cli, here, target_location):
    assert cli("new", "cvt_io_v3_1", "--N", "5", "--db", target_location).code == 0
    before = dump(here), dump(target_location)

    result = cli("copy", "--to", target_location, "cvt_io_v3_*")

    assert result.code == 2
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert result.err.startswith(f"error: {target_location} has other experiments named cvt_io_v3_1 ")
    assert "expdb rename cvt_io_v3_1 NEW_NAME" in result.err
    assert (dump(here), dump(target_location)) == before


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give --to URL (copy this database's cards there) or --from URL (copy its cards here), one of the two"),
        (["--to", "TARGET", "--from", "TARGET"], "give --to URL"),
        (["--from", "missing.db"], "no expdb database at missing.db to copy from"),
        (["--to", "TARGET", "--tag", "nope"], "no card in HERE matches --tag nope"),
        (["--to", "TARGET", "--where", "N>99"], "no card in HERE matches --where 'N>99'"),
        (["--to", "TARGET", "cvt_io_v3_22"], "no card named 'cvt_io_v3_22'; did you mean 'cvt_io_v3_2'?"),
        (["--to", "TARGET", "--where", "depth>3"], "--where mentions 'depth'"),
        (["--to", "TARGET", "--status", "done"], "unknown status 'done'"),
        (["--to", "HERE"], "HERE is both the source and the target"),
        (["--from", "HERE"], "HERE is both the source and the target"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(cli, here, target_location, args, message):
    named = {"TARGET": target_location, "HERE": here}
    before = dump(here)

    result = cli("copy", *(named.get(arg, arg) for arg in args))

    assert result.code == 2
    assert result.err.startswith("error: ") and result.err.count("\n") == 1, result.err
    assert message.replace("HERE", display_name(here)) in result.err
    assert dump(here) == before
    assert not Path(target_location).exists()


@pytest.mark.sqlite_only
@pytest.mark.parametrize("spelling", ["./experiments.db", "sqlite:///{workdir}/experiments.db", "{workdir}/experiments.db"])
def test_the_same_file_however_spelled_is_not_copied_onto_itself(cli, here, workdir, spelling):
    result = cli("copy", "--to", spelling.format(workdir=workdir))
    assert result.code == 2
    assert "is both the source and the target" in result.err


@pytest.mark.sqlite_only
def test_without_a_database_here_there_is_nothing_to_copy(cli, workdir, target_location):
    result = cli("copy", "--to", target_location)
    assert result.code == 2
    assert result.err == "error: no expdb database at experiments.db to copy from\n"
    assert not Path(target_location).exists() and not (workdir / "experiments.db").exists()
