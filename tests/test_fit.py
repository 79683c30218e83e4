"""expdb.fit: which columns a width keeps, and how cells fold, on their own."""

import io

from rich.console import Console

from expdb.fit import Column, fit, head_words, left_out_line, print_table, width_of


def columns() -> list[Column]:
    return [
        Column("card", ["cvt_io_v2_1", "cvt_io_v2_10"]),
        Column("params", [("N=5", "L=4", "shape=bdhw"), ("N=10",)], priority=2),
        Column("iou50", ["0.341", "0.25"], right=True, priority=1),
        Column("cost", ["46.67ms", "33.08ms"], right=True, priority=3),
        Column("tags", ["", ""], priority=1),
    ]


def test_everything_fits_unfolded_when_there_is_room():
    fitted = fit(columns(), 200)
    assert [column.header for column in fitted.columns] == ["card", "params", "iou50", "cost", "tags"]
    assert fitted.widths == [12, 18, 5, 7, 4]  # "N=5 L=4 shape=bdhw" on one line
    assert fit(columns(), None).widths == fitted.widths


def test_cells_fold_between_their_parts_before_a_column_goes():
    fitted = fit(columns(), 46)
    assert [column.header for column in fitted.columns] == ["card", "params", "iou50", "cost"]  # the empty one first
    assert fitted.widths[1] == 11 and not fitted.left_out  # "shape=bdhw" still whole


def test_the_least_important_columns_go_first_and_the_card_never():
    assert [column.header for column in fit(columns(), 30).columns] == ["card", "iou50"]
    assert [column.header for column in fit(columns(), 30).left_out] == ["params", "cost"]
    narrowest = fit(columns(), 5)
    assert [column.header for column in narrowest.columns] == ["card"]
    assert narrowest.widths == [12]  # past the edge rather than cut


def test_a_table_is_drawn_with_every_name_whole():
    console = Console(file=io.StringIO(), width=64, color_system=None)
    left = print_table(console, [*columns(), Column("notes", ["a" * 40, ""], priority=4)])
    lines = console.file.getvalue().splitlines()
    assert lines[0].split("┃")[0].strip() == "card" and "cvt_io_v2_10" in lines[-2]
    assert lines[-1] == "left out for width: notes (--wide or a pipe shows them)"
    assert [column.header for column in left] == ["notes"]


def test_prose_breaks_a_word_longer_than_its_column():
    console = Console(file=io.StringIO(), width=30, color_system=None)
    print_table(console, [Column("run", ["7"]), Column("exit reason", ["see /a/very/long/path/to/the/log/file.txt"], prose=True)])
    lines = console.file.getvalue().splitlines()
    assert all(len(line) <= 30 for line in lines)
    folded = [line.split("│")[1].strip() for line in lines[2:]]
    assert folded[0] == "see" and "".join(folded[1:]) == "/a/very/long/path/to/the/log/file.txt"


def test_the_left_out_line_stays_one_line():
    many = [Column(f"parameter_{index}", ["1"], priority=1) for index in range(30)]
    line = left_out_line(many, 80)
    assert len(line) <= 80 and line.startswith("left out for width: parameter_0") and "more (--wide" in line


def test_the_left_out_line_names_the_most_important_first():
    shown = columns()[:4] + [Column("a_name_too_long_for_any_terminal_line" * 3, ["x"], priority=1)]
    fitted = fit(shown, 15)
    assert [column.header for column in fitted.left_out][:3] == ["iou50", shown[4].header, "params"]
    assert left_out_line(fitted.left_out, 70) == "left out for width: iou50 and 3 more (--wide or a pipe shows them)"
    assert left_out_line(fitted.left_out[1:2], 60) == "left out for width: 1 column (--wide or a pipe shows them)"


def test_a_head_folds_between_words_never_before_a_number():
    console = Console(file=io.StringIO(), width=18, color_system=None)  # "fp32, bs" would fit a line, "fp32, bs 8)" not
    print_table(console, [Column("card", ["a"]), Column("Cost-Time (CPU, fp32, bs 8)", ["2.63ms"], right=True, priority=1)])
    head = console.file.getvalue().split("━")[0].splitlines()
    assert all(width_of(line) <= 18 for line in head) and head[-1].endswith(" bs 8)"), head
    assert head_words("FLOPs (fvcore, bs 8, MAC)") == ("FLOPs", "(fvcore,", "bs 8,", "MAC)")


def test_prose_never_breaks_a_number():
    number = "1.2345678901234566e-300"
    console = Console(file=io.StringIO(), width=30, color_system=None)
    print_table(console, [Column("key", ["a_long_parameter_name"]), Column("value", [f"about {number}"], prose=True)])
    assert number in console.file.getvalue()
    digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  # a word, not a number: it folds
    console = Console(file=io.StringIO(), width=30, color_system=None)
    print_table(console, [Column("key", ["sha"]), Column("value", [digest], prose=True)])
    assert all(width_of(line) <= 30 for line in console.file.getvalue().splitlines())
