"""`expdb sweep` as a user runs it: the cards it creates, --dry-run, and bad input."""

import pytest
from conftest import dump, refused

from expdb import cards
from expdb.db import Database

ISSUE_SWEEP = ["sweep", "cvt_io_v3", "--from", "cvt_io_v2_1", "--N", "3,5,10", "--L", "4,6", "--seed", "0,1,2"]


def rows(out: str) -> list[list[str]]:
    """The body rows of the tables rich printed, as lists of cells."""
    return [[cell.strip() for cell in line.split("│")] for line in out.splitlines() if "│" in line]


def library(action):
    with Database() as db:
        return action(db)


@pytest.fixture
def base(cli):
    """cvt (runner cvt_io) -> cvt_io_v2_1, the base card of the sweeps."""
    for args in (
        ["new", "cvt", "--runner", "cvt_io"],
        ["new", "cvt_io_v2_1", "--from", "cvt", "--N", "10", "--L", "6", "--lr", "4e-3", "--shared", "true"],
    ):
        assert cli(*args).code == 0


def test_the_issues_sweep_creates_18_children_of_the_base_named_by_their_values(base, cli):
    result = cli(*ISSUE_SWEEP)
    assert result.code == 0, result.err
    assert result.err == ""
    assert rows(result.out)[:2] == [["cvt_io_v3_N3_L4_seed0", "3", "4", "0"], ["cvt_io_v3_N3_L4_seed1", "3", "4", "1"]]
    assert rows(result.out)[-1] == ["cvt_io_v3_N10_L6_seed2", "10", "6", "2"]
    assert len(rows(result.out)) == 18
    assert result.out.splitlines()[-1] == "created 18 cards from cvt_io_v2_1, tagged cvt_io_v3"
    swept = library(lambda db: cards.select_cards(db, cards.Selection(tag="cvt_io_v3")))
    assert [card.name for card in swept] == [cells[0] for cells in rows(result.out)]
    assert {card.parent for card in swept} == {"cvt_io_v2_1"}
    assert {card.runner for card in swept} == {"cvt_io"}
    card = library(lambda db: cards.get_card(db, "cvt_io_v3_N5_L4_seed1"))
    assert card.params == {"N": 5, "L": 4, "lr": 4e-3, "shared": True, "seed": 1}
    assert card.status == "planned"


def test_the_tag_selects_the_sweep(base, cli):
    assert cli("sweep", "lat", "--from", "cvt_io_v2_1", "--N", "3,5", "--tag", "latent", "--note", "is N=3 enough?").code == 0
    listed = cli("list", "--tag", "lat")
    assert [cells[0] for cells in rows(listed.out)] == ["lat_N3", "lat_N5"]
    assert [cells[5] for cells in rows(listed.out)] == ["lat latent", "lat latent"]
    assert "is N=3 enough?" in cli("show", "lat_N5").out


def test_log_range_with_a_fixed_value(base, cli):
    result = cli("sweep", "lr_scan", "--from", "cvt_io_v2_1", "--lr", "1e-4:1e-2:log5", "--steps", "600")
    assert result.code == 0, result.err
    assert rows(result.out) == [
        ["lr_scan_lr1e-4", "1e-4"],
        ["lr_scan_lr3.16e-4", "3.16e-4"],
        ["lr_scan_lr1e-3", "1e-3"],
        ["lr_scan_lr3.16e-3", "3.16e-3"],
        ["lr_scan_lr0.01", "0.01"],
    ]
    assert result.out.splitlines()[-1] == "created 5 cards from cvt_io_v2_1 with steps=600, tagged lr_scan"
    assert library(lambda db: cards.get_card(db, "lr_scan_lr3.16e-4").params["steps"]) == 600


def test_values_keep_the_base_cards_types(base, cli):
    assert cli("sweep", "t", "--from", "cvt_io_v2_1", "--lr", "1,2", "--ks", "[3,5],[5,5]").code == 0
    card = library(lambda db: cards.get_card(db, "t_lr2_ks5x5"))
    assert card.params["lr"] == 2.0 and type(card.params["lr"]) is float
    assert card.params["ks"] == [5, 5]


def test_dry_run_lists_the_cards_and_changes_nothing(base, cli):
    before = dump()
    result = cli("sweep", "lr_scan", "--from", "cvt_io_v2_1", "--lr", "1e-4:1e-2:log5", "--dry-run")
    assert result.code == 0, result.err
    assert [cells[0] for cells in rows(result.out)] == [
        "lr_scan_lr1e-4", "lr_scan_lr3.16e-4", "lr_scan_lr1e-3", "lr_scan_lr3.16e-3", "lr_scan_lr0.01"
    ]
    assert result.out.splitlines()[-1] == "would create 5 cards from cvt_io_v2_1, tagged lr_scan; --dry-run created nothing"
    assert dump() == before


@pytest.mark.sqlite_only  # about the database file
def test_dry_run_does_not_create_the_database(workdir, cli):
    result = cli("sweep", "s", "--from", "cvt", "--N", "3,5", "--dry-run")
    assert result.code == 2
    assert result.err.startswith("error: no expdb database at experiments.db")
    assert not (workdir / "experiments.db").exists()


def test_a_refused_sweep_on_a_fresh_machine_leaves_no_database(workdir, cli):
    result = cli("sweep", "s", "--from", "cvt", "--N", "3,5")
    assert result.code == 2
    assert result.err == "error: no card named 'cvt'; `expdb list` shows the cards\n"
    assert not (workdir / "experiments.db").exists()


def test_max_cards_can_be_raised(base, cli):
    args = ["sweep", "s", "--from", "cvt_io_v2_1", "--N", "3,5,10"]
    assert "more than --max-cards 2" in cli(*args, "--max-cards", "2").err
    assert cli(*args, "--max-cards", "3").code == 0


def test_collisions_name_the_existing_cards(base, cli):
    assert cli(*ISSUE_SWEEP).code == 0
    before = dump()
    result = cli(*ISSUE_SWEEP[:-2], "--seed", "0,1,2,3")
    assert result.code == 2
    assert result.err == (
        "error: 18 of sweep cvt_io_v3's 24 card names exist already (cvt_io_v3_N3_L4_seed0, cvt_io_v3_N3_L4_seed1, "
        "cvt_io_v3_N3_L4_seed2, cvt_io_v3_N3_L6_seed0, cvt_io_v3_N3_L6_seed1, ...); "
        "pick another sweep name, or remove those cards with `expdb rm`\n"
    )
    assert dump() == before


SWEEP = ["sweep", "s", "--from", "cvt_io_v2_1"]
BAD_INPUT = [
    (["sweep", "s", "--from", "cvt_io_v2_10", "--N", "3,5"], "no card named 'cvt_io_v2_10'; did you mean 'cvt_io_v2_1'?"),
    ([*SWEEP, "--lr", "1e-4:1e-2:logx"], "--lr '1e-4:1e-2:logx' is not a range: write START:STOP:N"),
    ([*SWEEP, "--lr", "1e-4:1e-2"], "is not a range"),
    ([*SWEEP, "--N", "1:10:1"], "--N '1:10:1' asks for 1 point(s): a range has at least 2"),
    ([*SWEEP, "--lr", "0:1e-2:log5"], "a log range needs ends above 0"),
    ([*SWEEP, "--lr", "2e-3"], "sweep s varies nothing: give a parameter several values"),
    (SWEEP, "sweep s varies nothing"),
    ([*SWEEP, "--N", "1:40:40", "--L", "1:30:30"], "would create 1,200 cards (40 N x 30 L), more than --max-cards 1,000"),
    ([*SWEEP, "--N", "3,5", "--N", "7"], "--N is given twice; give it once"),
    ([*SWEEP, "--N", "3,3"], "two cards of sweep s would be named 's_N3'"),
    ([*SWEEP, "--N", "3,five"], "--N 'five' is a str, but N is an int (was 10)"),
    ([*SWEEP, "--N", "3,,5"], "--N '3,,5' has an empty value"),
    ([*SWEEP, "--ks", "[3,5],[5,5"], "has an unclosed bracket"),
    ([*SWEEP, "--N", "3,5", "--tag", "bad tag"], "invalid tag 'bad tag'"),
    ([*SWEEP, "--N", "3,5", "--note", " "], "the note is empty"),
    (["sweep", "bad/name", "--from", "cvt_io_v2_1", "--N", "3,5"], "invalid card name 'bad/name'"),
    (["sweep", "s", "--N", "3,5"], "`expdb sweep` needs --from PARENT"),
    ([*SWEEP, "--N", "3,5", "stray"], "unexpected argument 'stray'"),
    ([*SWEEP, "--N", "3,5", "--max-cards", "0"], "--max-cards"),
]


@pytest.mark.parametrize("args, message", BAD_INPUT, ids=[" ".join(args[1:])[:50] for args, _ in BAD_INPUT])
def test_bad_input_is_one_error_line_and_creates_nothing(base, cli, args, message):
    assert refused(cli, args, message).out == ""
