"""The cards commands as a user runs them: new, list, show, diff, note, tag, set, rm, rename, and bad input."""

import os
import socket
import sys
import time

import pytest
from conftest import dump, refused

from expdb import cards
from expdb.db import Database, new_uid
from expdb.results import record_run

JOURNEY = [
    ["new", "cvt", "--runner", "cvt_io", "--note", "baseline CvT backbone"],
    ["new", "cvt_io_v2_8", "--from", "cvt", "--N", "3", "--L", "6", "--shape", "bdhw", "--shared", "true",
     "--lr", "4e-3", "--wd", "1e-7", "--steps", "100000"],
    ["new", "cvt_io_v2_9", "--from", "cvt_io_v2_8", "--N", "5", "--L", "4",
     "--note", "does a shallower latent stack hold IOU?"],
    ["note", "cvt_io_v2_9", "gradient explosion: loss shot up, never converged"],
]


def rows(out: str) -> list[list[str]]:
    """The body rows of the tables rich printed, as lists of cells."""
    return [[cell.strip() for cell in line.split("│")] for line in out.splitlines() if "│" in line]


def row(out: str, first: str) -> list[str]:
    (found,) = [cells for cells in rows(out) if cells[0] == first]
    return found


def library(action):
    with Database(create=True) as db:
        return action(db)


@pytest.fixture
def study(cli):
    """The issue's journey, typed at the command line; returns the commands' results."""
    results = [cli(*args) for args in JOURNEY]
    assert [(result.code, result.err) for result in results] == [(0, "")] * len(JOURNEY)
    return results


@pytest.fixture
def busy(study, cli):
    """The journey plus cvt_io_v2_1, which has finished a run."""
    assert cli("new", "cvt_io_v2_1", "--from", "cvt", "--N", "1").code == 0
    library(lambda db: record_run(db, "cvt_io_v2_1", "finished", {"iou50": 0.3}))


def test_journey_says_what_was_created(study):
    assert [result.out.strip() for result in study] == [
        "created cvt",
        "created cvt_io_v2_8 from cvt: N=3 L=6 shape=bdhw shared=true lr=4e-3 wd=1e-7 steps=100000",
        "created cvt_io_v2_9 from cvt_io_v2_8: N=5 L=4",
        "noted on cvt_io_v2_9",
    ]


def test_list_shows_status_changed_params_and_latest_metric(study, cli):
    library(lambda db: record_run(db, "cvt_io_v2_8", "finished", {"iou50": 0.3}))
    result = cli("list")
    assert result.code == 0
    assert [cells[0] for cells in rows(result.out)] == ["cvt", "cvt_io_v2_8", "cvt_io_v2_9"]
    assert row(result.out, "cvt")[1:4] == ["planned", "", ""]
    assert row(result.out, "cvt_io_v2_8")[1:5] == [
        "finished", "cvt", "N=3 L=6 shape=bdhw shared=true lr=4e-3 wd=1e-7 steps=100000", "iou50=0.3"
    ]
    assert row(result.out, "cvt_io_v2_9")[1:5] == ["planned", "cvt_io_v2_8", "N=5 L=4", ""]
    assert "not shown" not in result.out


def test_show_marks_what_changed_vs_parent(study, cli):
    result = cli("show", "cvt_io_v2_9")
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0].split() == ["cvt_io_v2_9", "planned"]
    assert "  from:    cvt_io_v2_8" in lines
    assert "  runner:  cvt_io" in lines  # inherited from cvt
    assert "vs cvt_io_v2_8" in result.out
    assert rows(result.out) == [
        ["N", "5", "was 3"],
        ["L", "4", "was 6"],
        ["shape", "bdhw", ""],
        ["shared", "true", ""],
        ["lr", "4e-3", ""],
        ["wd", "1e-7", ""],
        ["steps", "100000", ""],
    ]
    notes = result.out[result.out.index("notes"):]
    assert notes.index("does a shallower latent stack hold IOU?") < notes.index("gradient explosion: loss shot up")


def test_show_fork_of_a_card_without_params_marks_them_new(study, cli):
    result = cli("show", "cvt_io_v2_8")
    assert "vs cvt" in result.out
    assert row(result.out, "N") == ["N", "3", "new"]
    assert "  forks:   cvt_io_v2_9" in result.out.splitlines()


def test_show_root_card(study, cli):
    cvt = cli("show", "cvt")
    assert cvt.out.splitlines()[0].split() == ["cvt", "planned"]
    assert "  runner:  cvt_io" in cvt.out.splitlines()
    assert "baseline CvT backbone" in cvt.out
    assert "parameters" not in cvt.out
    cli("new", "root", "--N", "3")
    root = cli("show", "root").out
    assert rows(root) == [["N", "3"]]
    assert "vs " not in root and "from:" not in root


def test_show_lists_runs_with_results(busy, cli):
    result = cli("show", "cvt_io_v2_1")
    assert result.out.splitlines()[0].split() == ["cvt_io_v2_1", "finished"]
    assert row(result.out, "N") == ["N", "1", "new"]
    run = row(result.out, "1")
    assert run[1] == "finished" and "iou50=0.3" in run


def test_diff_shows_only_differing_params(study, cli):
    result = cli("diff", "cvt_io_v2_8", "cvt_io_v2_9")
    assert result.code == 0
    assert rows(result.out) == [["N", "3", "5"], ["L", "6", "4"]]
    everything = cli("diff", "cvt_io_v2_8", "cvt_io_v2_9", "--all")
    assert [cells[0] for cells in rows(everything.out)] == ["N", "L", "shape", "shared", "lr", "wd", "steps"]
    assert row(everything.out, "lr") == ["lr", "4e-3", "4e-3"]
    assert cli("diff", "cvt_io_v2_9", "cvt_io_v2_9").out.strip() == "same parameters"


def test_diff_compares_results(busy, cli):
    library(lambda db: record_run(db, "cvt_io_v2_9", "diverged", {"iou50": 0.1}))
    result = cli("diff", "cvt_io_v2_1", "cvt_io_v2_9")
    assert row(result.out, "IOU@0.50") == ["IOU@0.50", "0.3", "0.1", "-0.2"]
    assert row(result.out, "N") == ["N", "1", "5"]
    assert row(result.out, "L") == ["L", "-", "4"]


def test_new_parses_typed_values(cli):
    result = cli("new", "x", "--ks", "[3, 5]", "--lr=-1e-3", "--delta", "-2", "--flag", "yes", "--tag", "a", "--tag", "b")
    assert result.code == 0, result.err
    assert result.out.strip() == "created x: ks=[3, 5] lr=-1e-3 delta=-2 flag=true"
    card = library(lambda db: cards.get_card(db, "x"))
    assert card.params == {"ks": [3, 5], "lr": -0.001, "delta": -2, "flag": True}
    assert card.tags == ["a", "b"]


def test_fork_keeps_float_type_from_the_command_line(study, cli):
    assert cli("new", "f", "--from", "cvt_io_v2_8", "--lr", "1").out.strip() == "created f from cvt_io_v2_8: lr=1.0"
    assert row(cli("show", "f").out, "lr") == ["lr", "1.0", "was 4e-3"]


def make_cards(count: int) -> None:
    library(lambda db: [cards.create_card(db, f"c{i:02d}", {"i": i}) for i in range(count)])


@pytest.mark.parametrize(
    "args, count, shown, message",
    [
        ([], 25, range(5, 25), "… 5 older cards not shown (--all shows every card)"),
        ([], 21, range(1, 21), "… 1 older card not shown (--all shows every card)"),
        ([], 20, range(0, 20), None),
        (["--all"], 25, range(0, 25), None),
        (["--limit", "3"], 25, range(22, 25), "… 22 older cards not shown"),
        (["c1*", "--limit", "4"], 25, range(16, 20), "… 6 older cards not shown"),
    ],
)
def test_list_shows_latest_cards_and_counts_the_rest(workdir, cli, args, count, shown, message):
    make_cards(count)
    result = cli("list", *args)
    assert result.code == 0
    assert [cells[0] for cells in rows(result.out)] == [f"c{i:02d}" for i in shown]
    if message:
        assert result.out.strip().splitlines()[-1].startswith(message)
    else:
        assert "not shown" not in result.out


def test_list_filters(busy, cli):
    cli("tag", "cvt_io_v2_9", "shallow")

    def names(*args):
        result = cli("list", *args)
        assert result.code == 0
        return [cells[0] for cells in rows(result.out)]

    assert names("--status", "planned") == ["cvt", "cvt_io_v2_8", "cvt_io_v2_9"]
    assert names("--status", "finished") == ["cvt_io_v2_1"]
    assert names("--tag", "shallow") == ["cvt_io_v2_9"]
    assert names("cvt_io_v2_*") == ["cvt_io_v2_8", "cvt_io_v2_9", "cvt_io_v2_1"]
    assert names("cvt_io_v2_*", "--status", "planned", "--tag", "shallow") == ["cvt_io_v2_9"]


def test_list_filter_matching_nothing_is_refused(busy, cli):
    refused(cli, ["list", "--status", "diverged"], "matches --status diverged")


def test_list_and_rm_select_cards_as_every_command_does(three_cards, cli):
    def listed(*args):
        result = cli("list", *args)
        assert result.code == 0, result.err
        return [cells[0] for cells in rows(result.out)]

    assert listed("a_*", "--tag", "x") == ["a_2"]
    assert listed("b_1", "a_*", "--limit", "2") == ["a_1", "a_2"]  # the last 2 in the order named
    assert listed("--where", "N>=1", "--status", "finished") == ["a_2", "b_1"]
    result = cli("rm", "a_*", "--tag", "x", "--yes")
    assert (result.code, result.out) == (0, "deleted a_2\n")
    assert listed() == ["a_1", "b_1"]
    assert cli("rm", "--where", "N>=1", "--yes").out == "deleted b_1\n"


def test_tag_and_untag(study, cli):
    assert cli("tag", "cvt_io_v2_9", "shallow", "iou").out.strip() == "cvt_io_v2_9: tags iou shallow"
    assert cli("tag", "cvt_io_v2_9", "shallow").out.strip() == "cvt_io_v2_9: tags iou shallow"
    assert cli("tag", "cvt_io_v2_9", "shallow", "iou", "--remove").out.strip() == "cvt_io_v2_9: tags (none)"
    assert cli("tag", "cvt_io_v2_9", "iou", "--remove").code == 0


def test_set_changes_an_unrun_card(study, cli):
    result = cli("set", "cvt_io_v2_9", "--N", "7", "--lr=1e-3")
    assert result.code == 0
    assert result.out.strip() == "cvt_io_v2_9: N=7 lr=1e-3"
    show = cli("show", "cvt_io_v2_9").out
    assert row(show, "N") == ["N", "7", "was 3"]
    assert row(show, "lr") == ["lr", "1e-3", "was 4e-3"]


def test_note_is_shown(study, cli):
    assert cli("note", "cvt", "ran out of memory at batch 64").out.strip() == "noted on cvt"
    assert "ran out of memory at batch 64" in cli("show", "cvt").out


def test_rename_keeps_notes_runs_and_forks(busy, cli):
    assert cli("rename", "cvt_io_v2_8", "v8").out.strip() == "renamed cvt_io_v2_8 to v8"
    assert "  from:    v8" in cli("show", "cvt_io_v2_9").out.splitlines()
    assert "  forks:   cvt_io_v2_9" in cli("show", "v8").out.splitlines()
    cli("rename", "cvt_io_v2_1", "v1")
    assert row(cli("show", "v1").out, "1")[1] == "finished"
    assert cli("show", "cvt_io_v2_8").code == 2


def test_rm_with_yes_deletes_and_forks_keep_params(busy, cli):
    result = cli("rm", "cvt_io_v2_8", "--yes")
    assert result.code == 0
    assert result.out.strip() == "deleted cvt_io_v2_8; cvt_io_v2_9 no longer has a parent"
    show = cli("show", "cvt_io_v2_9").out
    assert "from:" not in show
    assert row(show, "shape") == ["shape", "bdhw"]
    assert cli("show", "cvt_io_v2_8").code == 2


class Terminal:
    def isatty(self):
        return True


@pytest.mark.parametrize("answer", ["y", "", "n", EOFError], ids=["yes", "Enter", "no", "Ctrl-D"])
def test_rm_asks_at_a_terminal(busy, cli, monkeypatch, answer):
    asked = []

    def typed(prompt: str) -> str:
        asked.append(prompt)
        if answer is EOFError:
            raise EOFError
        return answer

    monkeypatch.setattr(sys, "stdin", Terminal())
    monkeypatch.setattr("builtins.input", typed)
    before = dump()
    result = cli("rm", "cvt_io_v2_8", "cvt_io_v2_1")
    assert asked == [
        "Delete 2 cards (cvt_io_v2_8, cvt_io_v2_1) with 1 run; cvt_io_v2_9 will keep its parameters but lose the "
        "parent link? [y/N]: "
    ]
    if answer == "y":
        assert (result.code, result.out.strip()) == (0, "deleted cvt_io_v2_8, cvt_io_v2_1; cvt_io_v2_9 no longer has a parent")
        assert [cells[0] for cells in rows(cli("list").out)] == ["cvt", "cvt_io_v2_9"]
    else:
        assert (result.code, result.out.strip(), result.err) == (0, "nothing deleted", "")  # a choice, not an error
        assert dump() == before


BAD_INPUT = [
    # unknown cards, with a did-you-mean
    (["show", "cvt_io_v2_10"], "no card named 'cvt_io_v2_10'; did you mean 'cvt_io_v2_1'?"),
    (["show", "resnet50"], "no card named 'resnet50'; `expdb list` shows the cards"),
    (["diff", "cvt_io_v2_8", "cvt_io_v2_10"], "did you mean 'cvt_io_v2_1'?"),
    (["note", "cvt_io_v2_10", "x"], "did you mean 'cvt_io_v2_1'?"),
    (["tag", "cvt_io_v2_10", "x"], "did you mean 'cvt_io_v2_1'?"),
    (["rename", "cvt_io_v2_10", "x"], "did you mean 'cvt_io_v2_1'?"),
    (["set", "cvt_io_v2_10", "--N", "1"], "did you mean 'cvt_io_v2_1'?"),
    (["rm", "--yes", "cvt", "cvt_io_v2_10"], "did you mean 'cvt_io_v2_1'?"),
    (["rm", "--yes", "cvt", "zz*"], "no card name matches 'zz*'"),
    (["rm", "--yes", "cvt*", "--tag", "nope"], "matches 'cvt*' --tag nope"),
    # new: names, parents, values
    (["new", "cvt_io_v2_8"], "a card named 'cvt_io_v2_8' exists already"),
    (["new", "bad name"], "invalid card name 'bad name'"),
    (["new", "a/b"], "invalid card name 'a/b'"),
    (["new", ".x"], "invalid card name '.x'"),
    (["new", "x" * 129], "invalid card name"),
    (["new", "x", "--from", "cvt_io_v2_10"], "no card named 'cvt_io_v2_10'; did you mean 'cvt_io_v2_1'?"),
    (["new", "x", "--N", "[1,2"], "cannot parse --N '[1,2': a list is written [a, b, c]"),
    (["new", "x", "--N", "[1,,2]"], "cannot parse --N"),
    (["new", "x", "--N"], "--N needs a value"),
    (["new", "x", "--lr", "1e400"], "'1e400' is too large for a number"),
    (["new", "x", "--N", "--L", "4"], "--N needs a value"),
    (["new", "x", "--from", "cvt_io_v2_8", "--N", "five"], "--N 'five' is a str, but N is an int (was 3)"),
    (["new", "x", "--from", "cvt_io_v2_8", "--shared", "1"], "shared is a bool"),
    (["new", "x", "--N", "1", "--N", "2"], "--N is given twice"),
    (["new", "x", "--1x", "2"], "invalid parameter name '1x'"),
    (["new", "x", "stray"], "unexpected argument 'stray'"),
    (["new", "x", "--tag", "bad tag"], "invalid tag 'bad tag'"),
    # set
    (["set", "cvt_io_v2_9", "--N", "[1,2"], "cannot parse --N"),
    (["set", "cvt_io_v2_9", "--N"], "--N needs a value"),
    (["set", "cvt_io_v2_9", "--N", "five"], "--N 'five' is a str, but N is an int (was 5)"),
    (["set", "cvt_io_v2_9"], "nothing to set"),
    (["set", "cvt_io_v2_1", "--N", "4"], "fork it instead: expdb new NEW_NAME --from cvt_io_v2_1 --N 4"),
    # list, note, rename, tag, rm
    (["list", "--status", "done"], "unknown status 'done'; use one of: planned, queued, running, finished"),
    (["list", "--limit", "0"], "--limit"),
    (["note", "cvt_io_v2_9", ""], "the note is empty"),
    (["note", "cvt_io_v2_9", "   "], "the note is empty"),
    (["rename", "cvt_io_v2_9", "cvt_io_v2_8"], "a card named 'cvt_io_v2_8' exists already"),
    (["rename", "cvt_io_v2_9", "bad name"], "invalid card name"),
    (["tag", "cvt", "ok", "bad tag"], "invalid tag 'bad tag'"),
    (["rm", "cvt_io_v2_8"], "rm would delete 1 card (cvt_io_v2_8) with 0 runs; cvt_io_v2_9 will keep"),
    (["rm", "cvt_io_v2_1"], "with 1 run: confirm with --yes"),
    # missing arguments and other usage errors
    (["new"], "`expdb new` needs NAME"),
    (["show"], "name a card (expdb show CARD), or a run with --env (expdb show --env RUN), one of the two"),
    (["diff", "cvt"], "`expdb diff` needs B (the second card): expdb diff A B"),
    (["note", "cvt_io_v2_9"], "`expdb note` needs TEXT"),
    (["tag", "cvt"], "`expdb tag` needs TAGS"),
    (["rename", "cvt"], "`expdb rename` needs NEW"),
    (["rm", "--yes"], "name the cards to delete (names or globs), or select them with --tag, --where or --status"),
    (["set"], "`expdb set` needs NAME"),
    (["show", "cvt", "--bogus"], "`expdb show` has no option --bogus"),
    (["frobnicate"], "No such command"),
]


@pytest.mark.parametrize("args, message", BAD_INPUT, ids=[" ".join(args)[:40] for args, _ in BAD_INPUT])
def test_bad_input_is_one_error_line_and_changes_nothing(busy, cli, args, message):
    assert refused(cli, args, message).out == ""


def test_unknown_card_error_is_exactly_the_did_you_mean_line(busy, cli):
    assert cli("show", "cvt_io_v2_10").err == "error: no card named 'cvt_io_v2_10'; did you mean 'cvt_io_v2_1'?\n"


@pytest.mark.sqlite_only
def test_list_on_a_fresh_machine_says_there_is_no_database(workdir, cli):
    result = cli("list")
    assert result.code == 2
    assert result.err.startswith("error: no expdb database at experiments.db")
    assert not (workdir / "experiments.db").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["new", "bad name"],
        ["new", "x", "--from", "cvt"],
        ["new", "x", "--N", "[1,2"],
        ["new", "x", "--N"],
    ],
)
def test_refused_new_on_a_fresh_machine_leaves_no_database(workdir, cli, args):
    result = cli(*args)
    assert result.code == 2 and result.err.startswith("error: ")
    assert not (workdir / "experiments.db").exists()


def test_rm_refuses_a_running_card(busy, cli):
    with Database() as db:
        card_id = db.query_one("SELECT id FROM card WHERE name = 'cvt_io_v2_9'")[0]
        with db.transaction() as connection:
            connection.execute(
                "INSERT INTO run (uid, card_id, status, heartbeat_at, host, pid, env) "
                "VALUES (?, ?, 'running', ?, ?, ?, '{}')",
                (new_uid(), card_id, time.time(), socket.gethostname(), os.getpid()),
            )
    before = dump()
    result = cli("rm", "--yes", "cvt_io_v2_9")
    assert result.code == 2 and "cvt_io_v2_9 is running" in result.err
    assert dump() == before


def test_list_refuses_an_empty_file_and_leaves_it_empty(cli, workdir):
    (workdir / "empty.db").write_bytes(b"")
    result = cli("list", "--db", "empty.db")
    assert result.code == 2 and "no expdb database at empty.db" in result.err
    assert (workdir / "empty.db").read_bytes() == b""


def test_a_refused_first_card_in_an_empty_file_leaves_it_empty(cli, workdir):
    (workdir / "empty.db").write_bytes(b"")
    assert cli("new", "x", "--from", "nosuch", "--db", "empty.db").code == 2
    assert (workdir / "empty.db").read_bytes() == b""


def test_a_long_message_is_one_line_in_a_pipe(cli):
    """Scripts read what `rm` deleted on its line, however many cards it names."""
    with Database(create=True) as database:
        for index in range(300):
            cards.create_card(database, f"a_rather_long_scratch_card_name_{index:03d}", {})
    result = cli("rm", "a_rather_long_scratch_card_name_*", "--yes")
    assert result.code == 0, result.err
    assert len(result.out) > 4096 and result.out.count("\n") == 1 and result.out.startswith("deleted ")
