"""Experiment cards through the library: create, fork, find, note, tag, set, rename, remove."""


import pytest
from conftest import dump

from expdb import cards
from expdb.errors import ExpdbError
from expdb.results import record_run
from expdb.values import parse_key_values

V2_8_ARGS = ["--N", "3", "--L", "6", "--shape", "bdhw", "--shared", "true", "--lr", "4e-3", "--wd", "1e-7", "--steps", "100000"]


def new(db, name, args=(), **options):
    """`expdb new NAME ARGS...` as the library sees it."""
    params, typed = parse_key_values(list(args))
    return cards.create_card(db, name, params, typed, **options)


@pytest.fixture
def study(db):
    """The issue's journey: cvt -> cvt_io_v2_8 -> cvt_io_v2_9."""
    new(db, "cvt", runner="cvt_io", note="baseline CvT backbone")
    new(db, "cvt_io_v2_8", V2_8_ARGS, parent="cvt")
    new(db, "cvt_io_v2_9", ["--N", "5", "--L", "4"], parent="cvt_io_v2_8", note="does a shallower latent stack hold IOU?")
    return db


def table_counts(db) -> dict[str, int]:
    tables = ("card", "run", "metric", "note", "tag", "profile")
    return {table: db.query_one(f"SELECT count(*) FROM {table}")[0] for table in tables}


def test_new_card_is_planned_with_params_in_typed_order(db):
    card = new(db, "cvt_io_v2_8", V2_8_ARGS, runner="cvt_io", tags=["ablation", "ablation"])
    assert card.status == "planned"
    assert card.parent is None
    assert list(card.params) == ["N", "L", "shape", "shared", "lr", "wd", "steps"]
    assert card.params == {"N": 3, "L": 6, "shape": "bdhw", "shared": True, "lr": 0.004, "wd": 1e-7, "steps": 100000}
    assert card.tags == ["ablation"]
    assert cards.get_card(db, "cvt_io_v2_8") == card


def test_fork_starts_from_parent_params_and_runner(study):
    child = cards.get_card(study, "cvt_io_v2_9")
    assert child.parent == "cvt_io_v2_8"
    assert child.runner == "cvt_io"  # inherited through cvt_io_v2_8 from cvt
    assert list(child.params) == ["N", "L", "shape", "shared", "lr", "wd", "steps"]  # the parent's order
    assert child.params["N"] == 5 and child.params["L"] == 4 and child.params["shape"] == "bdhw"
    assert cards.get_card(study, "cvt_io_v2_8").params["N"] == 3  # the parent is untouched


def test_fork_appends_new_keys_and_may_change_runner(study):
    fork = new(study, "v10", ["--drop", "0.1", "--N", "7"], parent="cvt_io_v2_9", runner="other:train")
    assert list(fork.params) == ["N", "L", "shape", "shared", "lr", "wd", "steps", "drop"]
    assert fork.runner == "other:train"


@pytest.mark.parametrize(
    "args, key, expected",
    [
        (["--lr", "1"], "lr", 1.0),  # a float stays a float
        (["--lr=2e-3"], "lr", 0.002),
        (["--shape", "5"], "shape", "5"),  # a string stays a string, as typed
        (["--shared", "false"], "shared", False),
    ],
)
def test_fork_keeps_parameter_type(study, args, key, expected):
    # A runner of the user's own: cvt_io itself would refuse the shape "5" (tests/test_cli_errors.py).
    value = new(study, "fork", args, parent="cvt_io_v2_8", runner="mine.train:run").params[key]
    assert type(value) is type(expected) and value == expected


@pytest.mark.parametrize("args", [["--N", "five"], ["--shared", "1"], ["--lr", "fast"], ["--N", "[1, 2]"]])
def test_fork_refuses_another_kind_and_writes_nothing(study, args):
    before = dump(study.path)
    with pytest.raises(ExpdbError, match="give a"):
        new(study, "fork", args, parent="cvt_io_v2_8")
    assert dump(study.path) == before


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("cvt", {}, "a card named 'cvt' exists already"),
        ("bad name", {}, "invalid card name 'bad name'"),
        ("fork", {"parent": "cvt_io_v2_10"}, "no card named 'cvt_io_v2_10'; did you mean"),
        ("fork", {"tags": ["ok", "bad tag"]}, "invalid tag 'bad tag'"),
    ],
)
def test_create_card_refuses_and_writes_nothing(study, name, options, message):
    before = dump(study.path)
    with pytest.raises(ExpdbError, match=message):
        new(study, name, ["--N", "1"], **options)
    assert dump(study.path) == before


@pytest.mark.parametrize("name", ["cvt", "cvt_io_v2.8", "a-b", "_x", "9", "x" * 128])
def test_valid_names(name):
    assert cards.validate_name(name) == name


@pytest.mark.parametrize("name", ["", "bad name", "a/b", ".hidden", "-x", "é", "a;b", "x" * 129, "a\n"])
def test_invalid_names(name):
    with pytest.raises(ExpdbError, match="invalid card name"):
        cards.validate_name(name)


def test_blank_note_on_new_is_refused_and_nothing_is_stored(db):
    with pytest.raises(ExpdbError, match="the note is empty"):
        new(db, "x", note="   ")
    assert db.query_one("SELECT count(*) FROM card")[0] == 0


def test_param_changes_kinds(study):
    fork = new(study, "fork", ["--N", "7", "--drop", "0.1"], parent="cvt_io_v2_9")
    kinds = [(change.key, change.kind, change.parent_value) for change in cards.param_changes(study, fork)]
    assert kinds == [
        ("N", "changed", 5),
        ("L", "inherited", 4),
        ("shape", "inherited", "bdhw"),
        ("shared", "inherited", True),
        ("lr", "inherited", 0.004),
        ("wd", "inherited", 1e-7),
        ("steps", "inherited", 100000),
        ("drop", "new", None),
    ]


def test_param_changes_of_a_root_card_are_new(db):
    card = new(db, "root", ["--N", "3"])
    assert [(change.kind, change.inherited) for change in cards.param_changes(db, card)] == [("new", False)]


def test_param_change_of_type_only_is_changed(study):
    fork = new(study, "fork", ["--N", "3.0"], parent="cvt_io_v2_8")  # int N becomes float 3.0
    change = next(change for change in cards.param_changes(study, fork) if change.key == "N")
    assert change.kind == "changed"


def test_changed_keys(study):
    shown = cards.select_cards(study)
    by_id = cards.changed_keys(study, shown)
    changed = {card.name: by_id[card.id] for card in shown}
    assert changed == {
        "cvt": [],
        "cvt_io_v2_8": ["N", "L", "shape", "shared", "lr", "wd", "steps"],
        "cvt_io_v2_9": ["N", "L"],
    }


def test_changed_keys_when_parent_is_not_shown(study):
    only = [cards.get_card(study, "cvt_io_v2_9")]
    assert cards.changed_keys(study, only) == {only[0].id: ["N", "L"]}


def test_status_is_latest_runs(study):
    record_run(study, "cvt_io_v2_9", "diverged", {"iou50": 0.01})
    assert cards.get_card(study, "cvt_io_v2_9").status == "diverged"
    record_run(study, "cvt_io_v2_9", "finished", {"iou50": 0.31})
    assert cards.get_card(study, "cvt_io_v2_9").status == "finished"


def test_cards_read_in_bulk_match_each_read_alone(study):
    """cards_by_id looks parents and statuses up apart from the cards: a fork read without its parent still names it,
    a card with two runs has its latest run's status, and the parameters keep their types and order."""
    record_run(study, "cvt_io_v2_8", "diverged", {"iou50": 0.01})
    record_run(study, "cvt_io_v2_8", "finished", {"iou50": 0.31})
    ids = [cards.get_card(study, name).id for name in ("cvt_io_v2_9", "cvt_io_v2_8", "cvt")]
    for chosen in (ids, ids[:1], ids[1:2]):
        bulk = cards.cards_by_id(study, chosen)
        alone = [cards.get_card(study, card.name) for card in bulk]
        assert [card.id for card in bulk] == chosen  # in the order asked
        assert bulk == alone
        assert [list(card.params) for card in bulk] == [list(card.params) for card in alone]
    assert cards.cards_by_id(study, ids[:1])[0].parent == "cvt_io_v2_8"
    assert [card.status for card in cards.cards_by_id(study, ids)] == ["planned", "finished", "planned"]


def test_set_params_on_unrun_card_keeps_types(study):
    params, typed = parse_key_values(["--lr", "1", "--N", "7", "--new", "x"])
    card = cards.set_params(study, "cvt_io_v2_9", params, typed)
    assert card.params["N"] == 7
    assert type(card.params["lr"]) is float and card.params["lr"] == 1.0
    assert list(card.params)[-1] == "new"
    assert cards.get_card(study, "cvt_io_v2_9").params == card.params


def test_set_params_refuses_a_card_that_has_run(study):
    record_run(study, "cvt_io_v2_8", "finished", {"iou50": 0.3})
    before = dump(study.path)
    params, typed = parse_key_values(["--N", "4"])
    with pytest.raises(ExpdbError, match=r"has run.*fork it instead: expdb new NEW_NAME --from cvt_io_v2_8 --N 4"):
        cards.set_params(study, "cvt_io_v2_8", params, typed)
    assert dump(study.path) == before


@pytest.mark.parametrize(
    "name, args, message",
    [
        ("cvt_io_v2_9", [], "nothing to set"),
        ("cvt_io_v2_9", ["--N", "five"], "N is an int"),
        ("cvt_io_v2_10", ["--N", "4"], "did you mean"),
    ],
)
def test_set_params_refuses(study, name, args, message):
    before = dump(study.path)
    params, typed = parse_key_values(args)
    with pytest.raises(ExpdbError, match=message):
        cards.set_params(study, name, params, typed)
    assert dump(study.path) == before


def test_tag_and_untag_are_idempotent(study):
    assert cards.tag_card(study, "cvt", ["b", "a", "a"]).tags == ["a", "b"]
    assert cards.tag_card(study, "cvt", ["a"]).tags == ["a", "b"]
    assert cards.tag_card(study, "cvt", ["a", "never"], remove=True).tags == ["b"]
    assert cards.tag_card(study, "cvt", ["a"], remove=True).tags == ["b"]
    assert study.query_one("SELECT count(*) FROM tag")[0] == 1


def test_tag_refuses_bad_tag_and_writes_nothing(study):
    before = dump(study.path)
    with pytest.raises(ExpdbError, match="invalid tag"):
        cards.tag_card(study, "cvt", ["ok", "no way"])
    assert dump(study.path) == before


def test_add_note(study):
    cards.add_note(study, "cvt_io_v2_9", "gradient explosion: loss shot up, never converged")
    texts = [note.text for note in cards.card_details(study, "cvt_io_v2_9").notes]
    assert texts == ["does a shallower latent stack hold IOU?", "gradient explosion: loss shot up, never converged"]


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_add_note_refuses_empty(study, text):
    before = dump(study.path)
    with pytest.raises(ExpdbError, match="the note is empty"):
        cards.add_note(study, "cvt", text)
    assert dump(study.path) == before


def test_rename_keeps_runs_notes_and_forks(study):
    record_run(study, "cvt_io_v2_8", "finished", {"iou50": 0.3})
    cards.add_note(study, "cvt_io_v2_8", "solid")
    cards.tag_card(study, "cvt_io_v2_8", ["keep"])
    renamed = cards.rename_card(study, "cvt_io_v2_8", "v8")
    details = cards.card_details(study, "v8")
    assert renamed.tags == ["keep"] and renamed.parent == "cvt"
    assert [run.metrics for run in details.runs] == [{"iou50": 0.3}]
    assert [note.text for note in details.notes] == ["solid"]
    assert details.children == ["cvt_io_v2_9"]
    assert cards.get_card(study, "cvt_io_v2_9").parent == "v8"
    with pytest.raises(ExpdbError, match="no card named 'cvt_io_v2_8'"):
        cards.get_card(study, "cvt_io_v2_8")


@pytest.mark.parametrize(
    "old, new_name, message",
    [
        ("cvt_io_v2_8", "cvt_io_v2_9", "exists already"),
        ("cvt_io_v2_8", "cvt_io_v2_8", "exists already"),
        ("cvt_io_v2_8", "bad name", "invalid card name"),
        ("cvt_io_v2_10", "x", "did you mean"),
    ],
)
def test_rename_refuses(study, old, new_name, message):
    before = dump(study.path)
    with pytest.raises(ExpdbError, match=message):
        cards.rename_card(study, old, new_name)
    assert dump(study.path) == before


def test_remove_cascades_and_orphans_forks(study):
    record_run(study, "cvt_io_v2_8", "finished", {"iou50": 0.3, "params": 1000, "cost_time": 5.0})
    cards.add_note(study, "cvt_io_v2_8", "solid")
    cards.tag_card(study, "cvt_io_v2_8", ["keep"])
    fork_params = cards.get_card(study, "cvt_io_v2_9").params
    assert table_counts(study) == {"card": 3, "run": 1, "metric": 1, "note": 3, "tag": 1, "profile": 1}
    v2_8 = cards.get_card(study, "cvt_io_v2_8").id
    removed = cards.remove_cards(study, [v2_8, v2_8])
    assert [card.name for card in removed] == ["cvt_io_v2_8"]
    assert table_counts(study) == {"card": 2, "run": 0, "metric": 0, "note": 2, "tag": 0, "profile": 0}
    fork = cards.get_card(study, "cvt_io_v2_9")
    assert fork.parent is None
    assert fork.params == fork_params
    assert [change.kind for change in cards.param_changes(study, fork)] == ["new"] * len(fork_params)


def test_did_you_mean(study):
    new(study, "cvt_io_v2_1", ["--N", "1"], parent="cvt")
    assert str(cards.missing_card_error(study, "cvt_io_v2_10")) == (
        "no card named 'cvt_io_v2_10'; did you mean 'cvt_io_v2_1'?"
    )
    assert str(cards.missing_card_error(study, "resnet50")) == "no card named 'resnet50'; `expdb list` shows the cards"
    with pytest.raises(ExpdbError, match=r"did you mean 'cvt_io_v2_9'\?"):
        cards.get_card(study, "cvt_io_v2_99")


def test_diff_cards_only_differing_params(study):
    record_run(study, "cvt_io_v2_8", "finished", {"iou50": 0.3})
    difference = cards.diff_cards(study, "cvt_io_v2_8", "cvt_io_v2_9")
    assert difference.params == [("N", 3, 5), ("L", 6, 4)]
    assert difference.values_a == {"iou50": 0.3} and difference.values_b == {}
    assert [row[0] for row in cards.diff_cards(study, "cvt_io_v2_8", "cvt_io_v2_9", all_params=True).params] == [
        "N",
        "L",
        "shape",
        "shared",
        "lr",
        "wd",
        "steps",
    ]
    assert cards.diff_cards(study, "cvt", "cvt_io_v2_8").params[0] == ("N", None, 3)
