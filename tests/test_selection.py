"""Which cards a command works on: the one rule of `cards.select_cards`, through the library.

Names and globs form one set (any of them); --tag, --where and --status each narrow it (all of
them); nothing given is every card. In the order named, else oldest first.
"""

import pytest
from conftest import dump

from expdb import cards
from expdb.cards import Selection
from expdb.errors import ExpdbError
from expdb.results import record_run


@pytest.fixture
def study(db):
    """a_1, a_2, a_3, b_1, b_2, made in that order; tag `x` on a_2, a_3, b_1; a_3 and b_1 finished."""
    for name, n in (("a_1", 1), ("a_2", 2), ("a_3", 3), ("b_1", 4), ("b_2", 5)):
        cards.create_card(db, name, {"N": n}, tags=["x"] if name in ("a_2", "a_3", "b_1") else [])
    record_run(db, "a_3", "finished", {"iou50": 0.3})
    record_run(db, "b_1", "finished", {"iou50": 0.5})
    return db


def names(db, *given: str, **criteria) -> list[str]:
    return [card.name for card in cards.select_cards(db, Selection(given, **criteria))]


def test_nothing_given_is_every_card_oldest_first(study):
    assert names(study) == ["a_1", "a_2", "a_3", "b_1", "b_2"]
    assert cards.selected_ids(study, Selection()) == [card.id for card in cards.select_cards(study)]


def test_names_and_globs_are_one_set_in_the_order_named(study):
    assert names(study, "b_2", "a_*") == ["b_2", "a_1", "a_2", "a_3"]
    assert names(study, "a_2", "a_*", "a_2") == ["a_2", "a_1", "a_3"]  # each card once, where it first comes
    assert names(study, "*_1", "b_?") == ["a_1", "b_1", "b_2"]
    assert names(study, "[ab]_3") == ["a_3"]


def test_tag_where_and_status_each_narrow(study):
    assert names(study, tag="x") == ["a_2", "a_3", "b_1"]
    assert names(study, where="N>=3") == ["a_3", "b_1", "b_2"]
    assert names(study, where="iou50 > 0.4") == ["b_1"]
    assert names(study, status="finished") == ["a_3", "b_1"]
    assert names(study, "a_*", tag="x") == ["a_2", "a_3"]
    assert names(study, "b_2", "a_*", tag="x", where="N>=2") == ["a_2", "a_3"]
    assert names(study, tag="x", status="planned") == ["a_2"]
    assert names(study, "b_1", "a_*", tag="x", where="N>2", status="finished") == ["b_1", "a_3"]


@pytest.mark.parametrize(
    "given, criteria, message",
    [
        (("a_22",), {}, "no card named 'a_22'; did you mean 'a_2'?"),
        (("a_1", "zz"), {}, "no card named 'zz'; `expdb list` shows the cards"),
        (("c_*",), {}, "no card name matches 'c_*'"),
        (("a_*", "c_*"), {}, "no card name matches 'c_*'"),
        ((), {"tag": "nope"}, "matches --tag nope"),
        (("a_1", "b_*"), {"tag": "x", "status": "planned"}, "matches a_1 'b_*' --tag x --status planned"),
        ((), {"where": "N > 9"}, "matches --where 'N > 9'"),
        ((), {"where": "M > 9"}, "--where mentions 'M'"),
        ((), {"where": "N >"}, "malformed --where"),
        ((), {"status": "done"}, "unknown status 'done'; use one of: planned"),
    ],
)
def test_a_selection_of_no_card_is_refused(study, given, criteria, message):
    with pytest.raises(ExpdbError) as refusal:
        cards.select_cards(study, Selection(given, **criteria))
    assert message in str(refusal.value)


def test_a_selection_that_matches_nothing_names_the_database(study):
    with pytest.raises(ExpdbError, match=r"^no card in \S+ matches 'a_\*' --status diverged$"):
        cards.select_cards(study, Selection(("a_*",), status="diverged"))


def test_an_empty_database_has_nothing_to_select(db):
    with pytest.raises(ExpdbError, match="no cards in .* yet: create one with `expdb new NAME --KEY VALUE`"):
        cards.select_cards(db)


def test_selecting_changes_nothing(study):
    before = dump(study.path)
    names(study, "a_*", tag="x", where="N>1", status="planned")
    assert dump(study.path) == before
