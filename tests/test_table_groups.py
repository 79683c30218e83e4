"""The comparison table's curve values (last point, :min, :max) and groups of cards (--group-by, --agg)."""

import csv
import io
import json

import pytest
from scipy import stats

from expdb.cards import Selection, create_card, select_cards
from expdb.errors import ExpdbError
from expdb.render import write_csv, write_json, write_latex, write_markdown
from expdb.results import record_run
from expdb.runs import begin_run
from expdb.table import build_table

# Three seeds of two variants: N=5 gets 0.30/0.32/0.34 (mean 0.32, std 0.02), N=10 0.40/0.42/0.44.
def comparison(db, metrics=(), where=None, **options):
    """`expdb table` as the library builds it: every card, or those matching `where`."""
    return build_table(db, select_cards(db, Selection(where=where)), metrics, **options)


IOU = {5: [0.30, 0.32, 0.34], 10: [0.40, 0.42, 0.44]}


def define(db, key, label, direction, fmt="g3"):
    with db.transaction() as connection:
        connection.execute(
            "INSERT OR REPLACE INTO metric_def (key, label, unit, direction, format) VALUES (?, ?, '', ?, ?)",
            (key, label, direction, fmt),
        )


def log_curve(db, name, points, **summary):
    run = begin_run(db, name, device="cpu")
    for step, loss in points:
        run.log(step, loss=loss)
    run.summary_metrics.update(summary)
    run.end("finished")


@pytest.fixture
def seeds(db):
    define(db, "iou50", "IOU@0.50", "higher")
    define(db, "loss", "Loss", "lower")
    for n, values in IOU.items():
        for seed, value in enumerate(values):
            create_card(db, f"v{n}_s{seed}", {"N": n, "lr": 0.01, "seed": seed, "wd": 0.1 if n == 5 else 0.2})
            record_run(db, f"v{n}_s{seed}", "finished", {"iou50": value})
    return db


def md(table) -> list[list[str]]:
    out = io.StringIO()
    write_markdown(table, out)
    table_lines = out.getvalue().split("\n\n")[0].splitlines()  # the notes follow a blank line
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table_lines]


def csv_rows(table) -> list[dict]:
    out = io.StringIO()
    write_csv(table, out)
    return list(csv.DictReader(io.StringIO(out.getvalue())))


def json_rows(table) -> list[dict]:
    out = io.StringIO()
    write_json(table, out)
    return json.loads(out.getvalue())


# -- values from curves ---------------------------------------------------------------------


def test_a_card_without_a_summary_shows_its_curves_last_point(db):
    create_card(db, "curve_only", {"N": 1})
    create_card(db, "summarised", {"N": 2})
    log_curve(db, "curve_only", [(0, 2.0), (1, 1.5), (2, 0.7), (3, 0.9)])
    log_curve(db, "summarised", [(0, 2.0), (1, 0.5)], loss=0.25)  # the recorded value wins over the curve
    table = comparison(db, ["loss"])
    assert {row["card"]: float(row["loss"]) for row in csv_rows(table)} == {"curve_only": 0.9, "summarised": 0.25}


def test_a_resumed_run_that_logged_steps_again_shows_the_latest_point_of_the_largest_step(db):
    create_card(db, "resumed", {})
    run = begin_run(db, "resumed", device="cpu")
    for step, loss in [(0, 3.0), (1, 2.0), (2, 1.0)]:
        run.log(step, loss=loss)
    run.end("interrupted")  # one chunk ending at step 2
    run.checkpoint_path.write_bytes(b"")
    run = begin_run(db, "resumed", device="cpu", resume=True)
    run.log(1, loss=5.0)  # the resumed run logs steps 1 and 2 again: a later chunk ending at the same step
    run.log(2, loss=4.0)
    run.end("finished")
    assert db.query("SELECT last_step FROM chunk ORDER BY id") == [(2,), (2,)]
    table = comparison(db, ["loss", "loss:min", "loss:max"])
    assert json_rows(table)[0]["metrics"] == {"loss": 4.0, "loss_min": 3.0, "loss_max": 5.0}


def test_min_max_and_last_over_the_run(db):
    define(db, "iou50", "IOU@0.50", "higher")
    create_card(db, "a", {})
    run = begin_run(db, "a", device="cpu")
    for step, value in [(0, 0.1), (1, 0.5), (2, 0.3)]:
        run.log(step, iou50=value)
    run.end("finished")
    create_card(db, "b", {})
    record_run(db, "b", "finished", {"iou50": 0.45})  # no curve: every reduction is its summary value
    table = comparison(db, ["iou50:max", "iou50:min", "iou50:last", "iou50"])
    header, _, *rows = md(table)
    assert header == ["card", "IOU@0.50 (max)", "IOU@0.50 (min)", "IOU@0.50 (last)", "IOU@0.50"]
    assert rows == [["a", "**0.5**", "0.1", "0.3", "0.3"], ["b", "0.45", "**0.45**", "**0.45**", "**0.45**"]]
    assert csv_rows(table)[0] == {"card": "a", "iou50_max": "0.5", "iou50_min": "0.1", "iou50_last": "0.3", "iou50": "0.3"}


def test_where_and_sort_see_curve_values(db):
    for name, last in [("a", 0.9), ("b", 0.2), ("c", 0.5)]:
        create_card(db, name, {})
        log_curve(db, name, [(0, 1.0), (1, last)])
    table = comparison(db, ["loss"], where="loss < 0.6", sort="loss:desc")
    assert [row["card"] for row in csv_rows(table)] == ["c", "b"]
    table = comparison(db, ["loss:max"], sort="loss:max")
    assert [row["card"] for row in csv_rows(table)] == ["a", "b", "c"]  # all 1.0; ties keep their order


# -- groups ---------------------------------------------------------------------------------


def test_seeds_of_a_variant_fold_into_one_row_with_mean_std_and_n(seeds):
    table = comparison(seeds, ["iou50"], group_by="N")
    header, rule, *rows = md(table)
    # N groups; wd is constant within each group and differs between them; lr is the same everywhere, seed differs within.
    assert header == ["group", "N", "wd", "n", "IOU@0.50"]
    assert rule == ["---", "---", "---", "---:", "---:"]
    assert rows == [["N=5", "5", "0.1", "3", "0.320 ± 0.020"], ["N=10", "10", "0.2", "3", "**0.420 ± 0.020**"]]
    records = csv_rows(table)
    assert list(records[0]) == ["group", "N", "wd", "n", "iou50_mean", "iou50_std", "iou50_n", "iou50_ci_low", "iou50_ci_high"]
    assert float(records[1]["iou50_ci_low"]) == pytest.approx(0.42 - stats.t.ppf(0.975, 2) * 0.02 / 3**0.5)
    assert float(records[1]["iou50_mean"]) == pytest.approx(0.42)
    assert float(records[1]["iou50_std"]) == pytest.approx(0.02)
    assert records[1]["n"] == "3"
    first = json_rows(table)[0]
    assert first["group"] == "N=5" and first["cards"] == ["v5_s0", "v5_s1", "v5_s2"] and first["n"] == 3
    assert first["params"] == {"N": 5, "wd": 0.1}
    assert first["metrics"]["iou50_mean"] == pytest.approx(0.32)


def test_a_group_of_one_has_no_std(seeds):
    create_card(seeds, "v20_s0", {"N": 20, "lr": 0.01, "seed": 0, "wd": 0.3})
    record_run(seeds, "v20_s0", "finished", {"iou50": 0.5})
    table = comparison(seeds, ["iou50"], group_by=["N"], params="none")
    assert md(table)[-1] == ["N=20", "1", "**0.5**"]
    assert csv_rows(table)[-1] == {
        "group": "N=20", "n": "1", "iou50_mean": "0.5", "iou50_std": "", "iou50_n": "1", "iou50_ci_low": "", "iou50_ci_high": ""
    }


def test_chosen_aggregates_and_several_group_keys(seeds):
    table = comparison(seeds, ["iou50"], group_by="N,lr", aggs="min,max", params="none")
    header, _, *rows = md(table)
    assert header == ["group", "IOU@0.50 min", "IOU@0.50 max"]
    assert rows == [["N=5, lr=0.01", "0.3", "0.34"], ["N=10, lr=0.01", "**0.4**", "**0.44**"]]
    assert list(csv_rows(table)[0]) == ["group", "iou50_min", "iou50_max"]


def test_baseline_deltas_are_to_the_baseline_cards_group_mean(seeds):
    table = comparison(seeds, ["iou50"], group_by="N", baseline="v5_s1", params="none")
    assert md(table)[2:] == [["N=5 (baseline)", "3", "0.320 ± 0.020", ""], ["N=10", "3", "**0.420 ± 0.020**", "+0.1 (no spread)"]]
    records = json_rows(table)
    assert [record["baseline"] for record in records] == [True, False]
    assert records[1]["deltas"] == {"iou50_mean_delta": pytest.approx(0.1)}
    assert csv_rows(table)[1]["iou50_mean_delta"] != ""


def test_sort_groups_by_their_means(seeds):
    table = comparison(seeds, ["iou50"], group_by="N", sort="iou50")
    assert [row.name for row in table.rows] == ["N=10", "N=5"]


def test_latex_shows_mean_plus_minus_std(seeds):
    table = comparison(seeds, ["iou50"], group_by="N", params="none")
    out = io.StringIO()
    write_latex(table, out)
    assert r"Group & n & IOU@0.50 \\" in out.getvalue()
    assert r"N=10 & 3 & {\boldmath $0.420 \pm 0.020$} \\" in out.getvalue()


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metrics": ["iou50:best"]}, "unknown reduction 'best'; use one of: last, min, max"),
        ({"group_by": "n"}, "--group-by 'n'"),
        ({"group_by": "seeed"}, "did you mean 'seed'?"),
        ({"group_by": "N", "aggs": "median"}, "unknown --agg 'median'; use one of: mean, std, count, min, max"),
        ({"aggs": "mean"}, "--group-by"),
        ({"metrics": ["flops:max"]}, "flops"),
        ({"sort": "iou50:best"}, ":asc or :desc"),
    ],
)
def test_bad_input_is_one_line(seeds, kwargs, message):
    kwargs.setdefault("metrics", ["iou50"])
    with pytest.raises(ExpdbError) as caught:
        comparison(seeds, **kwargs)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_mean_over_fewer_cards_than_the_group_says_how_many(example_db):
    from expdb.db import Database

    with Database(str(example_db)) as db:
        table = comparison(db, ["iou50"], group_by="shape", over="N,L,lr", params="none")
        out = io.StringIO()
        write_markdown(table, out)
    lines = {line.split("|")[1].strip(): line for line in out.getvalue().split("\n\n")[0].splitlines()[2:]}
    # shape=bdhw holds 5 cards with IOU@0.50, 3 of them with a measured Cost-Time.
    assert "| 5 |" in lines["shape=bdhw"] and "(n=3)" in lines["shape=bdhw"]
