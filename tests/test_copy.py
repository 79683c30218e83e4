"""expdb.copy: cards with everything that belongs to them, from one database into another, once."""

import math
import time
import types

import pytest
from conftest import POSTGRES_ADMIN_URL, dump, wait_until

import expdb
import expdb.copy
from expdb import cards, runs
from expdb.copy import COLUMNS, copy_cards
from expdb.db import Database, new_uid, resolve_location
from expdb.errors import ExpdbError
from expdb.results import PROFILE_DETAILS, record_run, store_profile
from expdb.series import read_curve, series_keys

TABLES = ("card", "tag", "run", "metric", "metric_def", "series", "chunk", "profile", "note", "attachment")


@pytest.fixture
def source_location(workdir) -> str:
    """The database copied from: the one commands use (./experiments.db, or EXPDB_DB)."""
    return resolve_location(None)


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.skipif(not POSTGRES_ADMIN_URL, reason="needs EXPDB_TEST_POSTGRES")),
    ]
)
def target_location(request, workdir) -> str:
    """The database copied into: a new SQLite file unless a test makes it first, or a PostgreSQL
    database (a laptop's study copied into the team's server)."""
    if request.param == "postgresql":
        return request.getfixturevalue("new_postgres_database")()
    return str(workdir / "target.db")


@pytest.fixture
def fast_flushes(monkeypatch):
    """Runs write their points every 20 ms, so that tests can make several chunks quickly."""
    monkeypatch.setattr(runs, "FLUSH_INTERVAL_S", 0.02)


# -- a study to copy -------------------------------------------------------------------------


def stored_points(location: str, run_id: int, key: str = "loss") -> int:
    with Database(location) as db:
        return db.query_one(
            "SELECT coalesce(sum(chunk.count), 0) FROM chunk JOIN series ON series.id = chunk.series_id "
            "WHERE series.run_id = ? AND series.key = ?",
            (run_id, key),
        )[0]


def log_points(run, location: str, steps: range, logged: int) -> int:
    """Log loss, lr, epoch and samples at `steps`, and wait until they are stored: one chunk per call."""
    for step in steps:
        run.log(step, loss=1.0 / (step + 1) + logged * 1e-6, lr=4e-3, epoch=step / 100, samples=step * 8)
    logged += len(steps)
    wait_until(lambda: stored_points(location, run.id) == logged, f"{logged} points of run {run.id} stored")
    return logged


def train(location: str, name: str, iou50: float) -> int:
    """A finished run of `name` with curves in three chunks, the third logging steps 150-199 again
    (as a resumed run does), a summary metric, and an automatic note with its step."""
    with expdb.start(name, db=location) as run:
        logged = log_points(run, location, range(0, 200), 0)
        logged = log_points(run, location, range(200, 300), logged)
        log_points(run, location, range(150, 200), logged)
        run.note("lr dropped", step=150)
        run.summary(iou50=iou50)
    return run.id


def make_study(location: str) -> None:
    """cvt -> cvt_io_v3_1 -> cvt_io_v3_2, and a card `other`: with tags, user and automatic notes,
    profiles (one of a run, one measured alone), runs with curves, a failed run, metric definitions."""
    with Database(location, create=True) as db:
        cards.create_card(db, "cvt", {"N": 3, "lr": 4e-3}, runner="cvt_io", note="baseline CvT backbone", tags=["baseline"])
        cards.create_card(db, "cvt_io_v3_1", {"N": 5}, parent="cvt", tags=["cvt_io_v3"])
        cards.create_card(db, "cvt_io_v3_2", {"N": 10, "L": 4}, parent="cvt_io_v3_1", tags=["cvt_io_v3", "latent"])
        cards.create_card(db, "other", {"N": 3}, command="python train.py --N {N}", parser="mmdet", tags=["misc"])
        cards.add_note(db, "cvt_io_v3_2", "does a shallower latent stack hold IOU?")
        record_run(
            db, "cvt", "finished", {"iou50": 0.36, "params": 670_320, "flops": 6.934e9, "cost_time": 46.67},
            started_at=1_700_000_000.0, ended_at=1_700_003_600.0, flops_counter="fvcore",
        )
        measured = types.SimpleNamespace(**{
            **dict.fromkeys((*cards.PROFILE_FIELDS, *PROFILE_DETAILS)),
            "params_total": 936_940, "params_trainable": 936_940, "flops": 6.918e9, "flops_counter": "fvcore",
            "cost_time_ms": 35.17, "cost_time_p10_ms": 34.9, "cost_time_p90_ms": 36.2, "batch": 1, "input_shape": "3x224x224",
            "dtype": "fp32", "device": "cpu", "warmup": 10, "iterations": 50, "threads": 2, "torch_version": "2.13.0",
        })
        store_profile(db, cards.get_card(db, "cvt_io_v3_1").id, None, measured)
        with db.transaction() as connection:
            connection.executemany(
                "INSERT INTO metric_def (key, label, unit, direction, format) VALUES (?, ?, ?, ?, ?)",
                [("dice", "Dice", "", "higher", "g3"), ("grad_norm", "Grad norm", "", None, "g3")],
            )
    train(location, "cvt_io_v3_1", 0.34)
    with pytest.raises(RuntimeError), expdb.start("cvt_io_v3_2", db=location) as run:
        run.log(0, loss=2.5)
        raise RuntimeError("CUDA out of memory")
    train(location, "cvt_io_v3_2", 0.328)


@pytest.fixture
def study(source_location, fast_flushes) -> str:
    make_study(source_location)
    return source_location


# -- reading both databases the same way -----------------------------------------------------


def table_rows(db: Database, table: str) -> list[dict]:
    cursor = db.connection.execute(f"SELECT * FROM {table}")
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def snapshot(location: str) -> dict[str, list]:
    """Every row of every table, each column as it is, ids replaced by what they point at (a uid,
    or a curve's run uid and key): equal snapshots hold the same study."""
    with Database(location) as db:
        tables = {table: table_rows(db, table) for table in TABLES}
    card_uid = {row["id"]: row["uid"] for row in tables["card"]}
    run_uid = {row["id"]: row["uid"] for row in tables["run"]}
    curve = {row["id"]: (run_uid[row["run_id"]], row["key"]) for row in tables["series"]}
    refer = {"card_id": card_uid, "parent_id": card_uid, "run_id": run_uid, "series_id": curve}

    def portable(column: str, value):
        if column in refer:
            return refer[column].get(value)
        return bool(value) if column == "automatic" else value

    return {
        table: sorted(
            (tuple(sorted((column, portable(column, value)) for column, value in row.items() if column != "id")) for row in rows),
            key=repr,
        )
        for table, rows in tables.items()
    }


def row_counts(location: str) -> dict[str, int]:
    with Database(location) as db:
        return {table: db.query_one(f"SELECT count(*) FROM {table}")[0] for table in TABLES}


def total_points(location: str) -> int:
    with Database(location) as db:
        return db.query_one("SELECT coalesce(sum(count), 0) FROM chunk")[0]


def card_names(location: str) -> list[str]:
    with Database(location) as db:
        return sorted(cards.card_names(db))


def copy(source: str, target: str, *names: str, **selection):
    with Database(source) as source_db, Database(target, create=True) as target_db:
        return copy_cards(source_db, target_db, cards.Selection(names, **selection))


def runs_by_uid(location: str) -> dict[str, dict]:
    with Database(location) as db:
        return {row["uid"]: row for row in table_rows(db, "run")}


def curves(location: str, run_id: int) -> dict[str, tuple]:
    """Each curve of a run, point for point, as read_curve gives it."""
    with Database(location) as db:
        found = {}
        for key in series_keys(db, run_id):
            curve = read_curve(db, run_id, key)
            found[key] = (list(curve.steps), list(curve.values), list(curve.walls), curve.epochs and list(curve.epochs),
                          curve.samples and list(curve.samples))
        return found


# -- what arrives ----------------------------------------------------------------------------


def test_everything_arrives(study, target_location):
    copied = copy(study, target_location)

    assert snapshot(target_location) == snapshot(study)
    assert (copied.cards, copied.runs, copied.profiles, copied.notes, copied.already) == (4, 4, 2, 4, 0)
    assert copied.points == total_points(study) == 2 * 2 * 350 + 1  # loss and lr of two runs, the failed run's one loss
    source_runs, target_runs = runs_by_uid(study), runs_by_uid(target_location)
    for uid, run in source_runs.items():
        assert curves(target_location, target_runs[uid]["id"]) == curves(study, run["id"])


def test_curves_arrive_point_for_point_and_a_step_logged_again_keeps_its_later_value(study, target_location, monkeypatch):
    monkeypatch.setattr(expdb.copy, "CHUNK_PAGE", 2)  # each curve's three chunks come in two pages
    copy(study, target_location)

    with Database(study) as db:
        run_id = db.query_one("SELECT max(run.id) FROM run JOIN card ON card.id = run.card_id WHERE card.name = 'cvt_io_v3_1'")[0]
        uid = db.query_one("SELECT uid FROM run WHERE id = ?", (run_id,))[0]
    copied = curves(target_location, runs_by_uid(target_location)[uid]["id"])
    assert copied == curves(study, run_id)
    steps, values, _walls, epochs, samples = copied["loss"]
    assert steps == list(range(300))
    assert values[160] == 1.0 / 161 + 300e-6  # from the third chunk, which logged step 160 again
    assert epochs[299] == 2.99 and samples[299] == 2392
    assert not any(math.isnan(value) for value in values)


def test_lineage_holds_in_a_target_with_other_cards(study, target_location):
    with Database(target_location, create=True) as db:
        for name in ("theirs_1", "theirs_2", "theirs_3"):
            cards.create_card(db, name, {"N": 1})

    copied = copy(study, target_location, "cvt_io_v3_2")

    assert copied.ancestors == ["cvt", "cvt_io_v3_1"]
    assert (copied.cards, copied.runs) == (3, 4)  # the ancestors come whole, with their runs
    with Database(target_location) as db:
        assert cards.get_card(db, "cvt_io_v3_2").parent == "cvt_io_v3_1"
        assert cards.get_card(db, "cvt_io_v3_1").parent == "cvt"
        assert cards.get_card(db, "cvt").parent is None
        assert cards.get_card(db, "cvt_io_v3_2").tags == ["cvt_io_v3", "latent"]
        assert cards.get_card(db, "cvt_io_v3_2").params == {"N": 10, "lr": 4e-3, "L": 4}
    assert card_names(target_location) == ["cvt", "cvt_io_v3_1", "cvt_io_v3_2", "theirs_1", "theirs_2", "theirs_3"]


def test_an_ancestor_the_target_has_does_not_come_again(study, target_location):
    copy(study, target_location, "cvt")
    copied = copy(study, target_location, "cvt_io_v3_2")
    assert copied.ancestors == ["cvt_io_v3_1"]
    assert card_names(target_location) == ["cvt", "cvt_io_v3_1", "cvt_io_v3_2"]


def test_metric_definitions_the_target_lacks_arrive_and_its_own_stay(study, target_location):
    with Database(target_location, create=True) as db, db.transaction() as connection:
        connection.execute(
            "INSERT INTO metric_def (key, label, unit, direction, format) VALUES ('dice', 'Dice score', '', 'higher', 'f2')"
        )
    copy(study, target_location, "cvt")
    with Database(target_location) as db:
        found = dict(db.query("SELECT key, label FROM metric_def WHERE key IN ('dice', 'grad_norm', 'iou50')"))
    assert found == {"dice": "Dice score", "grad_norm": "Grad norm", "iou50": "IOU@0.50"}


# -- twice, and later ------------------------------------------------------------------------


def test_copying_twice_copies_nothing_twice(study, target_location):
    copy(study, target_location, "cvt_io_v3_2")
    copy(study, target_location)
    counts = row_counts(target_location)

    again = copy(study, target_location)

    assert row_counts(target_location) == counts == row_counts(study)
    assert (again.cards, again.runs, again.updated_runs, again.points, again.profiles, again.notes) == (0, 0, 0, 0, 0, 0)
    assert again.already == 4
    assert snapshot(target_location) == snapshot(study)


def test_a_run_still_running_is_left_for_the_copy_after_it_ends(study, target_location):
    with Database(study) as db:
        cards.create_card(db, "live", {"N": 7})
        run = runs.begin_run(db, "live", device="cpu")
        logged = log_points(run, study, range(0, 100), 0)
        run.note("halfway", step=50)
        uid = db.query_one("SELECT uid FROM run WHERE id = ?", (run.id,))[0]

        first = copy(study, target_location)
        assert first.running == ["live"]
        assert uid not in runs_by_uid(target_location)  # nothing there would beat its heartbeat
        with Database(target_location) as target:
            assert cards.get_card(target, "live").status == "planned"
            assert target.query("SELECT text FROM note WHERE text = 'halfway'") == []  # the run's note waits with it

        log_points(run, study, range(100, 250), logged)
        run.summary(iou50=0.31)
        run.end("finished")

    later = copy(study, target_location)

    assert (later.runs, later.updated_runs, later.points, later.running) == (1, 0, 2 * 250, [])
    assert snapshot(target_location) == snapshot(study)  # status, end, heartbeat, metrics, curves, notes
    assert row_counts(target_location) == row_counts(study)


def test_a_run_the_target_knows_more_about_is_left_alone(study, target_location):
    uid = new_uid()
    with Database(study) as db, db.transaction() as connection:
        card_id = cards.get_card(db, "other").id
        connection.execute(
            "INSERT INTO run (uid, card_id, status, started_at, heartbeat_at, env) VALUES (?, ?, 'interrupted', ?, ?, '{}')",
            (uid, card_id, time.time() - 7200, time.time() - 3600),
        )
    copy(study, target_location, "other")
    with Database(target_location) as target, target.transaction() as connection:
        # Resumed and finished there, since.
        connection.execute("UPDATE run SET status = 'finished', heartbeat_at = ? WHERE uid = ?", (time.time(), uid))

    again = copy(study, target_location, "other")

    assert (again.updated_runs, again.running) == (0, [])
    assert runs_by_uid(target_location)[uid]["status"] == "finished"


# -- refused, with nothing written -----------------------------------------------------------


def test_a_different_card_with_the_same_name_refuses_the_whole_copy(study, target_location):
    with Database(target_location, create=True) as db:
        cards.create_card(db, "cvt_io_v3_1", {"N": 5})
        cards.create_card(db, "other", {"N": 3})
    before = dump(target_location), dump(study)

    with pytest.raises(ExpdbError, match=r"other experiments named cvt_io_v3_1, other .*expdb rename cvt_io_v3_1"):
        copy(study, target_location)

    assert (dump(target_location), dump(study)) == before


def test_a_card_edited_after_an_earlier_copy_refuses_the_copy(study, target_location):
    copy(study, target_location)
    with Database(study) as db:
        cards.set_params(db, "other", {"N": 4})
    before = dump(target_location)

    with pytest.raises(ExpdbError, match=r"^other differs between .+ and .+ in parameters, runner or command .*expdb set"):
        copy(study, target_location)

    assert dump(target_location) == before


def test_a_copy_that_fails_halfway_writes_nothing(study, target_location, monkeypatch):
    with Database(target_location, create=True) as db:
        cards.create_card(db, "theirs", {"N": 1})
    before = dump(target_location)
    copy_curves = expdb.copy._copy_curves
    calls = []

    def fail_on_the_third_run(*args):
        calls.append(args)
        if len(calls) == 3:
            raise OSError("disk full")
        return copy_curves(*args)

    monkeypatch.setattr(expdb.copy, "_copy_curves", fail_on_the_third_run)
    with pytest.raises(OSError):
        copy(study, target_location)
    assert dump(target_location) == before


def test_only_the_selection_and_its_missing_ancestors_are_copied(study, target_location):
    copied = copy(study, target_location, where="N>=10")
    assert card_names(target_location) == ["cvt", "cvt_io_v3_1", "cvt_io_v3_2"]
    assert copied.ancestors == ["cvt", "cvt_io_v3_1"]


# -- the schema ----------------------------------------------------------------------------------


def test_every_column_of_the_schema_is_copied():
    """A column added to the schema must be added to the copy too (or this test says why not)."""
    from expdb.models import SQLModel

    tables = SQLModel.metadata.tables
    for table, columns in COLUMNS.items():
        not_copied = {"id", "series_id"} if table == "chunk" else {"id"}
        assert set(tables[table].columns.keys()) - not_copied == set(columns), table
    # The tables copied by hand in expdb.copy, column by column.
    assert set(tables["tag"].columns.keys()) == {"card_id", "name"}
    assert set(tables["metric"].columns.keys()) == {"run_id", "key", "value", "step"}
    assert set(tables["series"].columns.keys()) == {"id", "run_id", "key"}
    assert set(tables) == set(TABLES), "a new table: should expdb copy copy it?"
