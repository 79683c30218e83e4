"""Folding seeds into variants (--over, --group-by), tests against the baseline and the best, convergence
reductions: known data, the statistics recomputed with scipy here."""

import io
import json

import pytest
from scipy import stats

from expdb.cards import Selection, create_card, invalidate_card, select_cards
from expdb.errors import ExpdbError
from expdb.render import flat_rows, write_json, write_latex, write_markdown
from expdb.results import record_run
from expdb.runs import begin_run
from expdb.table import build_table

# IOU@0.50 of three variants over seeds 0-4: N10 is the baseline, N5 close to it, N3 clearly worse.
IOU = {
    10: [0.571, 0.548, 0.597, 0.560, 0.579],
    5: [0.566, 0.551, 0.583, 0.541, 0.590],
    3: [0.512, 0.490, 0.530, 0.505, 0.521],
}


def define(db, key, label, direction, fmt="g3"):
    with db.transaction() as connection:
        connection.execute(
            "INSERT OR REPLACE INTO metric_def (key, label, unit, direction, format) VALUES (?, ?, '', ?, ?)",
            (key, label, direction, fmt),
        )


@pytest.fixture
def study(db):
    define(db, "iou50", "IOU@0.50", "higher")
    for n, values in IOU.items():
        for seed, value in enumerate(values):
            create_card(db, f"v3_N{n}_seed{seed}", {"N": n, "L": 6, "seed": seed})
            record_run(db, f"v3_N{n}_seed{seed}", "finished", {"iou50": value})
    return db


def table_of(db, **options):
    return build_table(db, select_cards(db, Selection(invalid=False)), ["iou50"], **options)


def md_lines(table) -> tuple[list[list[str]], list[str]]:
    out = io.StringIO()
    write_markdown(table, out)
    body, _, notes = out.getvalue().partition("\n\n")
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in body.splitlines()[2:]], notes.splitlines()


def test_over_seed_folds_each_variant_into_one_row_named_without_its_seed(study):
    table = table_of(study, over="seed")
    assert [row.name for row in table.rows] == ["v3_N10", "v3_N5", "v3_N3"]
    assert [row.count for row in table.rows] == [5, 5, 5]
    assert table.rows[0].stats["iou50"]["std"] == pytest.approx(stats.tstd(IOU[10]))


def test_against_the_baseline_paired_on_seeds_and_holm_corrected(study):
    table = table_of(study, over="seed", baseline="v3_N10")
    rows, notes = md_lines(table)
    assert rows[0][0] == "v3_N10 (baseline)" and rows[0][-1] == ""
    column = next(c for c in table.columns if c.agg == "mean")
    raw = {n: stats.ttest_rel(IOU[n], IOU[10]).pvalue for n in (5, 3)}
    assert raw[3] < raw[5]  # by hand, Holm over two: the smaller times 2, the larger times 1 but not below that
    adjusted = {3: 2 * raw[3], 5: min(1.0, max(2 * raw[3], raw[5]))}
    for row, n in zip(table.rows[1:], (5, 3), strict=True):
        found = table.difference(row, column)
        assert found.test == "paired"
        assert found.p == pytest.approx(raw[n])
        assert found.p_adjusted == pytest.approx(adjusted[n])
    assert rows[2][-1].endswith("†") and not rows[1][-1].endswith("†")
    assert rows[1][-1] == "-0.005 [-0.020, 0.010]"  # mean of the per-seed differences -0.0048, CI half-width 0.0153
    assert any("Holm-corrected over the 2 comparisons" in note and "paired t-test" in note for note in notes)
    assert any(note.startswith("† p < 0.05") or "† p < 0.05" in note for note in notes)


def test_bold_marks_every_row_not_significantly_worse_than_the_best(study):
    rows, notes = md_lines(table_of(study, over="seed"))
    assert [row[-1].startswith("**") for row in rows] == [True, True, False]  # N10 best, N5 within noise, N3 worse
    assert any(note.startswith("Bold: ") for note in notes)


def test_welch_when_the_seeds_differ(study):
    for seed, value in enumerate([0.60, 0.62, 0.58]):
        create_card(study, f"v3_N20_seed{seed + 10}", {"N": 20, "L": 6, "seed": seed + 10})
        record_run(study, f"v3_N20_seed{seed + 10}", "finished", {"iou50": value})
    table = table_of(study, over="seed", baseline="v3_N10")
    column = next(c for c in table.columns if c.agg == "mean")
    found = table.difference(table.rows[-1], column)
    assert found.test == "welch"
    assert found.p == pytest.approx(stats.ttest_ind([0.60, 0.62, 0.58], IOU[10], equal_var=False).pvalue)


def test_one_seed_gets_no_test_and_the_table_says_why(study):
    create_card(study, "v3_N20_seed0", {"N": 20, "L": 6, "seed": 0})
    record_run(study, "v3_N20_seed0", "finished", {"iou50": 0.6})
    rows, notes = md_lines(table_of(study, over="seed", baseline="v3_N10"))
    assert rows[-1][-1] == "+0.029 (n &lt; 2)"  # markdown shows the escaped < as typed
    assert any(note.startswith("n < 2:") for note in notes)


def test_raw_numbers_in_csv_and_json(study):
    table = table_of(study, over="seed", baseline="v3_N10", params="none")
    header, rows = flat_rows(table)
    record = dict(zip(header, rows[2], strict=True))
    assert record["variant"] == "v3_N3" and record["iou50_n"] == 5
    half = stats.t.ppf(0.975, 4) * stats.sem(IOU[3])
    mean = sum(IOU[3]) / 5
    assert (record["iou50_ci_low"], record["iou50_ci_high"]) == pytest.approx((mean - half, mean + half))
    assert record["iou50_p"] == pytest.approx(stats.ttest_rel(IOU[3], IOU[10]).pvalue)
    assert record["iou50_test"] == "paired"
    out = io.StringIO()
    write_json(table, out)
    assert json.loads(out.getvalue())[2]["statistics"]["iou50_p_holm"] == pytest.approx(record["iou50_p_holm"])


def test_latex_writes_spreads_in_math_without_siunitx(study):
    out = io.StringIO()
    write_latex(table_of(study, over="seed", baseline="v3_N10", params="none"), out)
    text = out.getvalue()
    assert r"{\boldmath $0.571 \pm 0.019$}" in text  # std 0.01864: two digits
    assert r"^\dagger$" in text and "siunitx" not in text and "SI{" not in text


def test_spread_ci_shows_the_half_width(study):
    rows, notes = md_lines(table_of(study, over="seed", spread="ci", params="none"))
    half = stats.t.ppf(0.975, 4) * stats.sem(IOU[10])
    assert rows[0][-1] == f"**0.571 ± {half:.3f}**"
    assert notes[0].startswith("± is the half-width of the 95% confidence interval")


def test_group_by_refuses_a_group_that_mixes_another_parameter(study):
    create_card(study, "v3_N5_lr", {"N": 5, "L": 8, "seed": 9})
    record_run(study, "v3_N5_lr", "finished", {"iou50": 0.7})
    with pytest.raises(ExpdbError) as caught:
        table_of(study, group_by="N")
    assert "the group N=5 mixes cards that differ in L" in str(caught.value)
    assert "add L to --group-by" in str(caught.value)
    # split by it, it works; and --over never mixes them
    assert [row.name for row in table_of(study, group_by="N,L").rows] == ["N=3, L=6", "N=5, L=6", "N=5, L=8", "N=10, L=6"]
    assert [row.count for row in table_of(study, over="seed").rows] == [5, 5, 5, 1]


def test_group_by_orders_groups_numerically(study):
    assert [row.name for row in table_of(study, group_by="N").rows] == ["N=3", "N=5", "N=10"]


def test_an_invalid_card_is_never_best_never_a_silent_baseline(study):
    create_card(study, "lucky", {"N": 99, "L": 6, "seed": 0})
    record_run(study, "lucky", "finished", {"iou50": 0.99})
    invalidate_card(study, "lucky", "L = 1 was a mistake")
    everything = build_table(study, select_cards(study, Selection()), ["iou50"])
    lucky = next(row for row in everything.rows if row.name == "lucky")
    column = everything.columns[0]
    assert not everything.is_best(lucky, column)
    assert everything.best[column.name] == pytest.approx(0.597)
    with pytest.raises(ExpdbError) as caught:
        build_table(study, select_cards(study, Selection()), ["iou50"], baseline="lucky")
    assert "--invalid-baseline" in str(caught.value)
    allowed = build_table(study, select_cards(study, Selection()), ["iou50"], baseline="lucky", invalid_baseline=True)
    assert allowed.baseline.name == "lucky"
    folded = build_table(study, select_cards(study, Selection()), ["iou50"], over="seed")
    assert folded.rows[-1].name == "lucky (invalid)" and not folded.is_best(folded.rows[-1], folded.columns[0])


# -- convergence ----------------------------------------------------------------------------


@pytest.fixture
def curves(db):
    define(db, "iou50", "IOU@0.50", "higher")
    for name, rate in [("fast", 0.1), ("slow", 0.05)]:
        create_card(db, name, {"rate": rate})
        run = begin_run(db, name, device="cpu")
        for step in range(0, 101, 10):  # iou rises linearly to rate * step / 10; epochs are steps / 20
            run.log(step, epoch=step / 20, iou50=min(1.0, rate * step / 10), loss=1.0 - step / 100)
        run.end("finished")
    return db


def test_convergence_reductions(curves):
    table = build_table(
        curves,
        select_cards(curves, Selection()),
        ["iou50:first>=0.5", "iou50:first>=0.5@epoch", "loss:first<=0.1", "loss:mean@last10%", "loss:auc", "iou50:first>=2"],
    )
    header, rows = flat_rows(table)
    fast, slow = (dict(zip(header, row, strict=True)) for row in rows)
    assert fast["iou50_first_ge_0.5_step"] == 50 and slow["iou50_first_ge_0.5_step"] == 100
    assert fast["iou50_first_ge_0.5_epoch"] == 2.5
    assert fast["loss_first_le_0.1_step"] == 90
    assert fast["loss_mean_last10pct"] == pytest.approx(0.05)  # the points at steps 90 and 100
    assert fast["loss_auc"] == pytest.approx(50.0)  # a straight line from 1 to 0 over 100 steps
    assert fast["iou50_first_ge_2_step"] is None  # never reached
    rows_md = io.StringIO()
    write_markdown(table, rows_md)
    assert "IOU@0.50 (first&gt;=0.5, step)" in rows_md.getvalue()  # markdown shows the escaped > as typed
    assert "IOU@0.50 (first&gt;=0.5, epoch)" in rows_md.getvalue()  # the axis said once
    assert "**50**" in rows_md.getvalue()  # earlier is better
    by_crossing = build_table(curves, select_cards(curves, Selection()), ["iou50:first>=0.5"], sort="iou50:first>=0.5")
    assert [row.name for row in by_crossing.rows] == ["fast", "slow"]  # earliest first


def test_a_bad_reduction_names_the_ones_there_are(curves):
    with pytest.raises(ExpdbError) as caught:
        build_table(curves, select_cards(curves, Selection()), ["iou50:first=0.5"])
    assert "first>=X" in str(caught.value) and "auc" in str(caught.value)


def test_the_api_dataframe_folds_seeds_and_reduces_curves(study, curves):
    import expdb

    with expdb.open() as notebook:
        folded = notebook.table("iou50", over="seed", baseline="v3_N10", where="seed>=0")
        converged = notebook.table(["iou50:first>=0.5", "loss:auc"], names=["fast", "slow"])
    assert folded.loc["v3_N3", "iou50_p"] == pytest.approx(stats.ttest_rel(IOU[3], IOU[10]).pvalue)
    assert folded.loc["v3_N5", "iou50_n"] == 5
    assert converged.loc["slow", "iou50_first_ge_0.5_step"] == 100
    assert converged.loc["fast", "loss_auc"] == pytest.approx(50.0)


def test_a_folded_rows_marks_come_in_one_order_whatever_its_cards_order():
    from expdb.cards import Card
    from expdb.conditions import NOISY, SHARED
    from expdb.table import GroupRow, Row

    card = Card(1, "a_seed0", None, None, None, None, {}, 0.0, "finished")
    shared_first = [Row(card, {}, {"cost_time": SHARED}), Row(card, {}, {"cost_time": NOISY + SHARED})]
    noisy_first = [Row(card, {}, {"cost_time": NOISY}), Row(card, {}, {"cost_time": SHARED})]
    assert GroupRow("a", {}, shared_first, {}).marks == GroupRow("a", {}, noisy_first, {}).marks == {"cost_time": NOISY + SHARED}
