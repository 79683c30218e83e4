"""`--diverge KEY=VALUE` on new, set, run and import: a card's and a run's divergence thresholds."""

from pathlib import Path

from conftest import dump, query
from test_cli_db import assert_one_line_error

from expdb.queue import run_arguments

DATA = Path(__file__).resolve().parent / "data"
CASCADE = DATA / "real-logs" / "mmdet2-cascade-nan.log"


def test_a_cards_thresholds_are_kept_shown_and_inherited_by_its_forks(cli):
    assert cli("new", "a", "--runner", "cvt_io", "--diverge", "rise_factor=1.5", "--diverge", "warmup=0").code == 0
    assert "diverge: rise_factor=1.5, warmup=0" in cli("show", "a").out
    assert cli("new", "b", "--from", "a", "--diverge", "warmup=5").code == 0
    assert "diverge: rise_factor=1.5, warmup=5" in cli("show", "b").out


def test_set_changes_thresholds_even_after_a_run(cli):
    assert cli("import", "mmdet", str(CASCADE), "--name", "cascade").code == 0
    result = cli("set", "cascade", "--diverge", "explode_factor=1000")
    assert result.code == 0, result.err
    assert "diverge: explode_factor=1000" in cli("show", "cascade").out
    assert_one_line_error(cli("set", "cascade"), "nothing to set", "--diverge KEY=VALUE")


def test_import_applies_its_thresholds_and_notes_them(cli):
    result = cli("import", "mmdet", str(CASCADE), "--name", "cascade", "--diverge", "flat_at=0.5")
    assert result.code == 0, result.err
    assert query("SELECT settings FROM note") == [(None,)]  # a NaN has no threshold
    assert "flat_at" not in cli("show", "cascade").out


def test_a_queue_passes_the_thresholds_to_each_job():
    arguments = run_arguments(device="cpu", on_diverge="stop", profile_budget=0.0, seed=None, diverge=["warmup=0"])
    assert arguments[-2:] == ["--diverge", "warmup=0"]


def test_bad_thresholds_are_one_line_and_change_nothing(cli):
    assert cli("new", "a", "--runner", "cvt_io").code == 0
    before = dump()
    for args, expected in [
        (["new", "b", "--diverge", "rise=2"], "--diverge 'rise=2': write KEY=VALUE with KEY one of spike_factor"),
        (["new", "b", "--diverge", "rise_factor"], "write KEY=VALUE"),
        (["new", "b", "--diverge", "rise_factor=high"], "rise_factor takes a number, e.g. rise_factor=1.25"),
        (["new", "b", "--diverge", "rise_factor=0.9"], "rise_factor must be above 1"),
        (["new", "b", "--diverge", "flat_at=2"], "flat_at is a fraction between 0 and 1"),
        (["new", "b", "--diverge", "warmup=1.5"], "warmup takes a whole number"),
        (["set", "a", "--diverge", "window=0"], "window must be at least 1"),
        (["run", "a", "--diverge", "sustain=x"], "sustain takes a whole number"),
        (["import", "mmdet", str(CASCADE), "--name", "c", "--diverge", "nope=1"], "write KEY=VALUE"),
    ]:
        assert_one_line_error(cli(*args), expected)
    assert dump() == before
