"""`expdb table` through the command line, starting with the researcher's own table."""

import csv
import io
import json
import os

import pytest
from conftest import dump

# The researcher's own results table from their notebook (section 1), copied here as written.
RESEARCHERS_TABLE = [
    ["cvt", "0.36", "670.32K", "6.934G", "46.67ms"],
    ["cvt_io_v1_1", "0.34", "936.94K", "7.438G", "36.91ms"],
    ["cvt_io_v2_1", "0.34", "936.94K", "6.918G", "35.17ms"],
    ["cvt_io_v2_2", "0.328", "936.94K", "6.81G", "33.08ms"],
    ["cvt_io_v2_5", "0.25", "936.94K", "6.78G", "29.8ms"],
    ["cvt_io_v2_7", "0.28", "", "", ""],
    ["cvt_io_v2_8", "0.26", "", "", ""],
]


def markdown_rows(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [[cell.strip().strip("*") for cell in line.strip("|").split("|")] for line in lines]


def test_reproduces_the_researchers_table(cli, example_db):
    result = cli("table", "--metric", "iou50", "--db", str(example_db), "--format", "md")
    assert result.code == 0, result.err
    header, rule, *rows = markdown_rows(result.out)
    assert header == ["card", "N", "L", "shape", "shared", "lr", "IOU@0.50", "Params", "FLOPs (fvcore, MAC)", "Cost-Time"]
    assert [[row[0], *row[6:]] for row in rows] == RESEARCHERS_TABLE
    # The differing hyperparameters; the baseline has no latent array, so its cells are '-'.
    assert rows[0][1:6] == ["-"] * 5
    assert rows[1][1:6] == ["10", "6", "bndhw", "true", "4e-3"]
    assert rows[5][1:6] == ["5", "10", "bdhw", "true", "2e-3"]


def test_rich_table_shows_the_same_figures(cli, example_db):
    result = cli("table", "--metric", "iou50", "--db", str(example_db))
    assert result.code == 0
    for name, *figures in RESEARCHERS_TABLE:
        line = next(line for line in result.out.splitlines() if line.split("│")[0].strip() == name)
        for figure in figures:
            assert figure in line
    assert "cvt_io_v2_3" not in result.out  # no IOU@0.50 was measured for it


def test_where_selects_rows(cli, example_db):
    result = cli("table", "-m", "iou50", "--where", "N>=5 and shared=true", "--db", str(example_db), "-f", "csv")
    assert result.code == 0, result.err
    rows = list(csv.DictReader(io.StringIO(result.out)))
    assert [row["card"] for row in rows] == ["cvt_io_v1_1", "cvt_io_v2_1", "cvt_io_v2_2", "cvt_io_v2_7"]


def test_sort_puts_the_best_first(cli, example_db):
    result = cli("table", "-m", "iou50", "--sort", "iou50", "--db", str(example_db), "-f", "csv", "--params", "none")
    values = [float(row["iou50"]) for row in csv.DictReader(io.StringIO(result.out))]
    assert values == [0.36, 0.34, 0.34, 0.328, 0.28, 0.26, 0.25]
    ascending = cli("table", "-m", "iou50", "--sort", "cost_time:asc", "--db", str(example_db), "-f", "json")
    times = [row["metrics"]["cost_time_ms"] for row in json.loads(ascending.out)]
    assert times[:5] == sorted(times[:5]) and times[5:] == [None, None]


def test_baseline_adds_deltas(cli, example_db):
    result = cli("table", "-m", "iou50", "--baseline", "cvt", "--db", str(example_db), "-f", "json")
    rows = {row["card"]: row for row in json.loads(result.out)}
    assert rows["cvt"]["baseline"] is True
    assert rows["cvt_io_v2_5"]["deltas"]["iou50_delta"] == pytest.approx(0.25 - 0.36)
    assert rows["cvt_io_v2_5"]["deltas"]["cost_time_delta_pct"] == pytest.approx((29.8 - 46.67) / 46.67 * 100)
    md = cli("table", "-m", "iou50", "--baseline", "cvt", "--db", str(example_db), "-f", "md")
    assert "0.25 (-0.11)" in md.out and "29.8ms (-36.1%)" in md.out


def test_a_baseline_without_a_value_says_that_its_column_has_no_differences(cli, example_db):
    planned = cli("table", "-m", "iou50", "--baseline", "cvt_io_v2_9", "--db", str(example_db), "-f", "md").out
    assert "cvt_io_v2_9, the baseline, has no IOU@0.50, Params, FLOPs (fvcore, MAC) or Cost-Time (ms): no row shows" in planned
    unprofiled = cli("table", "-m", "iou50", "--baseline", "cvt_io_v2_8", "--db", str(example_db), "-f", "md").out
    assert "cvt_io_v2_8, the baseline, has no Params, FLOPs (fvcore, MAC) or Cost-Time (ms): no row" in unprofiled
    assert "the baseline" not in cli("table", "-m", "iou50", "--baseline", "cvt", "--db", str(example_db), "-f", "md").out


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("differing", ["N", "L", "shape", "shared", "lr"]),
        ("all", ["steps", "wd", "N", "L", "shape", "shared", "lr"]),
        ("none", []),
    ],
)
def test_params_modes(cli, example_db, mode, expected):
    result = cli("table", "-m", "iou50", "--params", mode, "--db", str(example_db), "-f", "csv")
    header = next(csv.reader(io.StringIO(result.out)))
    assert header == ["card", *expected, "iou50", "params", "flops_mac", "cost_time_ms"]


def test_json_keeps_types(cli, example_db):
    result = cli("table", "-m", "iou50", "--db", str(example_db), "-f", "json")
    first, second = json.loads(result.out)[:2]
    assert first["params"]["N"] is None
    assert second["params"] == {"N": 10, "L": 6, "shape": "bndhw", "shared": True, "lr": 0.004}
    assert second["metrics"]["iou50"] == 0.34


def test_latex_is_an_ieee_booktabs_table(cli, example_db):
    result = cli("table", "-m", "iou50", "--db", str(example_db), "-f", "latex")
    lines = result.out.splitlines()
    assert lines.index(r"\caption{Comparison of IOU@0.50, Params, FLOPs and Cost-Time}") < lines.index(r"\toprule")
    assert r"cvt\_io\_v2\_2" in result.out  # underscores escaped
    assert "Cost-Time (ms)" in result.out  # units in parentheses in the head
    assert r"\textbf{0.36}" in result.out  # best value in bold
    assert " .3" not in result.out  # leading zeros


def test_metrics_given_comma_separated(cli, example_db):
    result = cli("table", "-m", "iou50,cost_time", "--db", str(example_db), "-f", "csv", "--params", "none")
    rows = list(csv.DictReader(io.StringIO(result.out)))
    assert "cvt_io_v2_6" in [row["card"] for row in rows]  # it has a cost-time, though no IOU


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "iou"], "unknown metric 'iou'; did you mean 'iou50'?"),
        (["-m", "iou50,iou"], "unknown metric 'iou'; did you mean 'iou50'?"),  # beside a defined one
        (["-m", "iou50", "-m", "params:max"], "params is measured once per profile; use --metric params"),
        (["-m", "iou50", "--where", "N>="], "malformed --where"),
        (["-m", "iou50", "--where", "NN>=5"], "did you mean 'N'?"),
        (["-m", "iou50", "--sort", "nothing"], "--sort 'nothing'"),
        (["-m", "iou50", "--sort", "iou50:up"], ":asc or :desc"),
        (["-m", "iou50", "--baseline", "cvt_io_v2_10"], "did you mean 'cvt_io_v2_1'?"),
        (["-m", "iou50", "--format", "xlsx"], "unknown --format 'xlsx'"),
        (["-m", "iou50", "--params", "some"], "unknown --params 'some'"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(cli, example_db, args, message):
    before = dump(example_db)
    result = cli("table", *args, "--db", str(example_db))
    assert result.code == 2
    assert result.out == ""
    assert result.err.count("\n") == 1 and result.err.startswith("error: ")
    assert message in result.err
    assert dump(example_db) == before


def test_baseline_keeps_its_values_when_where_leaves_it_out(cli, example_db):
    result = cli("table", "-m", "iou50", "--where", "N>=5", "--baseline", "cvt", "--db", str(example_db), "-f", "json")
    rows = {row["card"]: row for row in json.loads(result.out)}
    assert rows["cvt"]["metrics"]["iou50"] == 0.36
    assert rows["cvt_io_v2_2"]["deltas"]["iou50_delta"] == pytest.approx(0.328 - 0.36)


def test_a_selection_that_matches_nothing_is_one_line(cli, example_db):
    result = cli("table", "-m", "iou50", "--where", "N>100", "--sort", "iou50", "--db", str(example_db))
    assert result.code == 2
    assert result.err == f"error: no card in {example_db} matches --where 'N>100'\n"


def test_selected_cards_without_the_metric_are_one_line(cli, example_db):
    result = cli("table", "-m", "iou50", "cvt_io_v2_6", "--db", str(example_db))
    assert result.code == 2
    assert result.err == "error: no card of the 1 selected has iou50\n"


def test_table_selects_cards_as_every_command_does(cli, three_cards):
    def shown(*args):
        result = cli("table", *args, "-m", "iou50", "-f", "csv")
        assert result.code == 0, result.err
        return [line.split(",")[0] for line in result.out.splitlines()[1:]]

    assert shown("a_*", "--tag", "x") == ["a_2"]
    assert shown() == ["a_1", "a_2", "b_1"]
    assert shown("b_1", "a_*") == ["b_1", "a_1", "a_2"]  # in the order named
    assert shown("--where", "N>=1", "--status", "finished") == ["a_2", "b_1"]
    assert shown("b_1", "a_*", "--sort", "iou50:asc") == ["a_1", "a_2", "b_1"]  # unless sorted


def test_cells_are_shown_as_written_not_as_markup(cli):
    assert cli("new", "a", "--style", "[bold]", "--note", "x").code == 0
    from expdb.db import Database
    from expdb.results import record_run

    with Database() as db:
        record_run(db, "a", "finished", {"iou50": 0.5})
    assert cli("new", "b", "--from", "a", "--style", "[red]").code == 0
    with Database() as db:
        record_run(db, "b", "finished", {"iou50": 0.4})
    result = cli("table", "-m", "iou50")
    assert "[bold]" in result.out and "[red]" in result.out


def test_the_terminal_view_shows_a_screenful_and_says_how_many_more(cli, workdir):
    from expdb.cards import create_card
    from expdb.db import Database
    from expdb.runs import begin_run

    with Database(create=True) as database:
        create_card(database, "unrun", {"N": -1})  # no metric: no row, and not counted
        for index in range(45):
            create_card(database, f"c_{index:02d}", {"N": index})
            run = begin_run(database, f"c_{index:02d}", device="cpu")
            run.summary(iou50=index / 100)
            run.end("finished")

    def names(result) -> list[str]:
        return [line.split("│")[0].strip() for line in result.out.splitlines() if "│" in line]

    shown = cli("table")
    assert names(shown) == [f"c_{index:02d}" for index in range(40)]  # the order asked: oldest first
    assert shown.out.splitlines()[-1] == "… 5 more rows not shown (--all shows every row, --limit N the first N)"
    best = cli("table", "--sort", "iou50", "--limit", "3")
    assert names(best) == ["c_44", "c_43", "c_42"]
    assert "… 42 more rows not shown" in best.out
    with_baseline = cli("table", "--baseline", "c_44", "--limit", "2")
    assert names(with_baseline) == ["c_44 (baseline)", "c_00"] and "… 43 more rows" in with_baseline.out
    assert len(names(cli("table", "--all"))) == 45 and "more rows" not in cli("table", "--all").out
    assert len(cli("table", "--format", "csv").out.splitlines()) == 46  # files get every row


def test_many_cards_are_read_and_written_alike_on_two_cores(cli, three_cards, example_db, monkeypatch):
    """From `forked.FORK_FROM` cards on, a forked child reads the metrics and the profiles while the cards are read,
    and writes half the csv while the other half is written: every format says what one process says, on either
    backend (the child opens its own connection), with a baseline the selection leaves out (its profile read apart)."""
    from expdb import conditions, forked, render, table
    from expdb.db import Database
    from expdb.results import record_run

    if not forked.can_fork():
        pytest.skip("needs Linux and two usable cores, as CI has")
    with Database() as database:  # profiles that cross from the child, as the backend gives their numbers
        record_run(database, "a_1", "finished", {"params": 1000.0, "cost_time": 2.5})
        with database.transaction() as connection:  # b_1's under other conditions, which win: a_1's is left out
            connection.execute(
                "INSERT INTO profile (uid, card_id, created_at, cost_time_ms, device, batch, details) "
                "SELECT 'b_1 on cpu', id, 1e10, 4.0, 'cpu', 8, '{}' FROM card WHERE name = 'b_1'"
            )
    formats = ("csv", "rich", "json", "md")
    studies = (
        (),  # three_cards in the test's database (SQLite or PostgreSQL)
        ("--where", "N >= 1", "--baseline", "a_1"),
        ("--db", str(example_db)),  # the example study
    )

    def tables() -> list:
        return [cli("table", "--all", *study, "--format", shape) for study in studies for shape in formats]

    in_one = tables()
    forks, fork, this_process = [], os.fork, os.getpid()
    monkeypatch.setattr(forked, "FORK_FROM", 2)
    monkeypatch.setattr(os, "fork", lambda: forks.append(this_process) or fork())
    for module, name in ((table, "_read_anew"), (render, "_csv_rows_text")):
        # Only ever in the child: this process doing the child's work (its fallback) fails the test.
        work = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *args, work=work, name=name: work(*args) if os.getpid() != this_process
                            else pytest.fail(f"{name} ran in this process, not in a child"))
    profile_rows = conditions.profile_rows  # here, only for a baseline the selection leaves out
    monkeypatch.setattr(conditions, "profile_rows", lambda db, ids: profile_rows(db, ids) if os.getpid() != this_process
                        or len(ids) == 1 else pytest.fail("the profiles were read again in this process"))
    in_two = tables()
    assert len(forks) == len(studies) * (len(formats) + 1)  # the metrics and profiles of each table, and half a csv
    for one, two in zip(in_one, in_two, strict=True):
        assert two.code == one.code == 0, two.err
        assert two.out == one.out
    assert [len(in_two[index * len(formats)].out.splitlines()) for index in range(3)] == [4, 4, 8]  # rows in both halves
    with_baseline = in_two[len(formats) + formats.index("md")].out  # b_1's profile, from the child, under conditions
    assert "| **4ms** |" in with_baseline and "so left out: a_1" in with_baseline  # that win over a_1's, read here


def test_a_screenful_shows_the_first_rows_of_the_whole_table(cli):
    """The rows a terminal shows first are found without reading every card: a card counts by a summary metric of
    any of its runs, by a curve alone, or by a cost in its latest profile; one with only other metrics does not.
    Each screenful is the start of the whole table, and says how many rows it left out."""
    from expdb.cards import create_card
    from expdb.db import Database
    from expdb.results import record_run
    from expdb.runs import begin_run

    with Database(create=True) as database:
        for index, name in enumerate(("by_metric", "other_only", "by_curve", "by_cost", "older_run", "nothing")):
            create_card(database, name, {"N": index})
        record_run(database, "by_metric", "finished", {"iou50": 0.5})
        record_run(database, "other_only", "finished", {"top1": 0.9})
        run = begin_run(database, "by_curve", device="cpu")
        run.log(0, loss=1.0)
        run.log(1, loss=0.5)
        run.end("finished")
        record_run(database, "by_cost", "finished", {"params": 1000.0})
        record_run(database, "older_run", "finished", {"iou50": 0.4})
        record_run(database, "older_run", "crashed", {})

    def names(result) -> list[str]:
        assert result.code == 0, result.err
        return [line.split("│")[0].strip() for line in result.out.splitlines() if "│" in line]

    for metrics, every in (
        (("-m", "iou50", "-m", "loss", "-m", "params"), ["by_metric", "by_curve", "by_cost", "older_run"]),
        (("-m", "iou50"), ["by_metric", "older_run"]),
    ):
        assert names(cli("table", *metrics, "--all")) == every
        first = cli("table", *metrics, "--limit", "1")
        assert names(first) == every[:1]
        assert f"… {len(every) - 1} more row" in first.out


def test_csv_writes_each_value_as_typed(cli):
    """Booleans as true/false, lists as JSON (each list kind apart: [1] is not [true] nor [1.0]), a missing value or
    metric as an empty cell, numbers and strings as they are."""
    from expdb.cards import create_card
    from expdb.db import Database
    from expdb.results import record_run

    params = [
        {"ks": [1], "on": True, "lr": 4e-3, "name": "a,b"},
        {"ks": [True], "on": False, "lr": 1.0, "name": 'say "hi"'},
        {"ks": [1.0], "on": True, "lr": 1},
        {"ks": [1], "on": 1, "lr": 0.5, "name": "x"},
    ]
    with Database(create=True) as database:
        for index, card_params in enumerate(params):
            create_card(database, f"c{index}", card_params)
            record_run(database, f"c{index}", "finished", {"iou50": 0.5 + index / 10, **({"loss": 0.1} if index else {})})
    result = cli("table", "-m", "iou50", "-m", "loss", "-f", "csv", "--params", "all")
    assert result.code == 0, result.err
    assert list(csv.reader(io.StringIO(result.out))) == [
        ["card", "ks", "on", "lr", "name", "iou50", "loss"],
        ["c0", "[1]", "true", "0.004", "a,b", "0.5", ""],
        ["c1", "[true]", "false", "1.0", 'say "hi"', "0.6", "0.1"],
        ["c2", "[1.0]", "true", "1", "", "0.7", "0.1"],
        ["c3", "[1]", "1", "0.5", "x", "0.8", "0.1"],
    ]


def test_the_flops_heading_names_the_counter_of_the_profiles_shown(cli):
    """A card's latest profile under other conditions, counted by torch, is not the one the table shows: the
    FLOPs shown were all counted by fvcore, and the heading says so; once a shown figure is torch's, it names none."""
    from expdb.cards import create_card
    from expdb.db import Database
    from expdb.results import record_run

    with Database(create=True) as database:
        for name in ("a", "b"):
            create_card(database, name, {"N": len(name) + ord(name)})
            record_run(database, name, "finished", {"iou50": 0.5, "flops": 2e9}, flops_counter="fvcore")
        with database.transaction() as connection:  # a later profile of a at batch 8, by torch: one card of two
            connection.execute(
                "INSERT INTO profile (uid, card_id, created_at, flops, flops_counter, batch, details) "
                "SELECT 'later', id, 1e10, 3e9, 'torch', 8, '{}' FROM card WHERE name = 'a'"
            )

    def flops_heading() -> str:
        result = cli("table", "-m", "iou50", "-m", "flops", "-f", "md")
        assert result.code == 0, result.err
        return next(cell.strip() for cell in result.out.splitlines()[0].split("|") if "FLOPs" in cell)

    assert flops_heading() == "FLOPs (fvcore, MAC)"
    with Database() as database:
        record_run(database, "b", "finished", {"iou50": 0.5, "flops": 2e9}, flops_counter="torch")
    assert flops_heading() == "FLOPs (MAC)"


def test_the_left_out_note_names_only_cards_in_the_table(cli):
    """A card measured under other conditions but without the requested metric is not in the table: the note
    under it names only the shown cards measured otherwise, sorted or not."""
    from expdb.cards import create_card
    from expdb.db import Database
    from expdb.results import record_run

    with Database(create=True) as database:
        measured = {"a": {"iou50": 0.5}, "b": {"iou50": 0.6}, "e": {"iou50": 0.7}, "c": {"iou50": 0.4}, "d": {"loss": 1}}
        for name, metrics in measured.items():
            create_card(database, name, {"N": ord(name)})
            record_run(database, name, "finished", {**metrics, "flops": 2e9}, flops_counter="fvcore")
        with database.transaction() as connection:  # c and d measured at batch 8 only: the others are the most
            connection.execute("UPDATE profile SET batch = 8 WHERE card_id IN (SELECT id FROM card WHERE name IN ('c', 'd'))")
    for sort in ([], ["--sort", "iou50"]):
        result = cli("table", "-m", "iou50", *sort, "-f", "md")
        assert result.code == 0, result.err
        assert "Measured only under other conditions, so left out: c (--conditions picks others)." in result.out
    on_screen = cli("table", "-m", "iou50", "--sort", "iou50", "--limit", "2")  # c, the worst, is not among the first two
    assert "e " in on_screen.out and "so left out" not in on_screen.out, on_screen.out


def test_every_metric_by_default_means_every_metric_of_the_shown_cards(cli):
    from expdb.cards import create_card
    from expdb.db import Database
    from expdb.results import record_run

    with Database(create=True) as database:
        for name, metrics in {"a": {"iou50": 0.5}, "b": {"iou50": 0.6}, "other": {"top1": 70.0}}.items():
            create_card(database, name, {"N": ord(name[0])}, tags=["other"] if name == "other" else ["ab"])
            record_run(database, name, "finished", metrics)
    result = cli("table", "--tag", "ab", "-f", "csv")
    assert result.code == 0, result.err
    assert result.out.splitlines()[0] == "card,N,iou50"
    assert cli("table", "-f", "csv").out.splitlines()[0] == "card,N,iou50,top1"
