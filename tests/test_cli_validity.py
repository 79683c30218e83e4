"""`expdb invalidate` / `validate`: an invalid card is left out of tables, plots and reports, shown greyed
with its reason under --all, never best, never a baseline without --invalid-baseline; --where tests it."""

import json

from conftest import refused


def study(three_cards, cli):
    """three_cards: a_1, a_2, b_1 with iou50 0.3, 0.4, 0.5 (b_1 the best) and loss curves; b_1 made invalid."""
    result = cli("invalidate", "b_1", "--reason", "L = 1 was a mistake")
    assert result.code == 0 and "b_1 is invalid: L = 1 was a mistake" in result.out


def csv_names(cli, *args) -> list[str]:
    result = cli("table", "-m", "iou50", "--format", "csv", *args)
    assert result.code == 0, result.err
    return [line.split(",")[0] for line in result.out.splitlines()[1:]]


def test_an_invalid_card_is_left_out_of_the_table_and_shown_greyed_with_all(cli, three_cards):
    study(three_cards, cli)
    assert csv_names(cli) == ["a_1", "a_2"]
    assert csv_names(cli, "--all") == ["a_1", "a_2", "b_1"]
    shown = cli("table", "-m", "iou50", "--all", "--format", "md").out
    assert "| b_1 (invalid) | 2 | 0.5 |" in shown  # not bold, though it is the highest
    assert "b_1: invalid, L = 1 was a mistake; never marked best." in shown
    assert "**0.4**" in shown
    records = json.loads(cli("table", "-m", "iou50", "--all", "--format", "json").out)
    assert records[-1]["invalid_reason"] == "L = 1 was a mistake"


def test_list_marks_an_invalid_card_as_table_does(cli, three_cards):
    study(three_cards, cli)
    shown = cli("list").out
    assert "b_1 (invalid)" in shown and "a_1 (invalid)" not in shown


def test_where_tests_validity_and_tags(cli, three_cards):
    study(three_cards, cli)
    assert csv_names(cli, "--where", "valid=false") == ["b_1"]
    assert csv_names(cli, "--where", "valid=true and tag=x") == ["a_2"]
    assert csv_names(cli, "--where", "tag!=x") == ["a_1"]
    assert csv_names(cli, "--where", "tag in [x, y]") == ["a_2"]


def test_an_invalid_baseline_needs_the_flag(cli, three_cards):
    study(three_cards, cli)
    refused(cli, ["table", "-m", "iou50", "--baseline", "b_1"], "give --invalid-baseline")
    assert cli("table", "-m", "iou50", "--baseline", "b_1", "--invalid-baseline").code == 0


def test_an_invalid_card_is_left_out_of_plots_and_reports(cli, three_cards, workdir):
    study(three_cards, cli)
    refused(cli, ["plot", "b_1", "-o", "b.png"], "every card selected is invalid (b_1); give --all to include invalid cards")
    assert cli("plot", "b_1", "--all", "-o", "b.png").code == 0  # greyed, its reason in the legend
    result = cli("report", "-m", "iou50", "-o", "report.md", "--curve", "loss")
    assert result.code == 0, result.err
    report = (workdir / "report.md").read_text()
    assert "b_1" not in report
    assert cli("report", "-m", "iou50", "-o", "all.md", "--all").code == 0
    assert "b_1: invalid, L = 1 was a mistake" in (workdir / "all.md").read_text()


def test_validate_undoes_it_and_bad_input_is_one_line(cli, three_cards):
    study(three_cards, cli)
    assert "invalid: L = 1 was a mistake" in cli("show", "b_1").out
    assert cli("validate", "b_1").code == 0
    assert csv_names(cli) == ["a_1", "a_2", "b_1"]
    refused(cli, ["validate", "b_1"], "b_1 is not invalid")
    refused(cli, ["invalidate", "b_1", "--reason", "  "], "say why b_1 is invalid")
    refused(cli, ["invalidate", "b_2", "--reason", "x"], "no card named 'b_2'")
    assert "invalid" not in cli("show", "b_1").out


def test_copy_carries_the_mark(cli, three_cards, workdir):
    study(three_cards, cli)
    target = workdir / "copied.db"
    assert cli("copy", "--to", str(target), "b_1").code == 0
    assert "invalid: L = 1 was a mistake" in cli("show", "b_1", "--db", str(target)).out
