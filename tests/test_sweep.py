"""Sweeps through the library: values and ranges, the grid and its names, types, collisions, creating."""

import pytest
from conftest import dump

from expdb import cards
from expdb.errors import ExpdbError
from expdb.sweep import (
    create_sweep,
    expand_grid,
    name_part,
    parse_range,
    parse_values,
    plan_sweep,
    split_items,
)
from expdb.values import parse_key_values

MAX = 1000


def exactly(found: list, expected: list) -> bool:
    """Equal, and of the same types: 4 is not 4.0."""
    return found == expected and [type(item) for item in found] == [type(item) for item in expected]


def grid(name: str, **texts: str):
    return expand_grid(name, texts, MAX)


@pytest.fixture
def study(db):
    """cvt (runner cvt_io, no parameters) -> cvt_io_v2_1 (N, L, lr, shape, shared, ks)."""
    cards.create_card(db, "cvt", {}, runner="cvt_io")
    params, typed = parse_key_values(
        ["--N", "10", "--L", "6", "--lr", "4e-3", "--shape", "bdhw", "--shared", "true", "--ks", "[3, 3]"]
    )
    cards.create_card(db, "cvt_io_v2_1", params, typed, parent="cvt")
    return db


# --- values and ranges


@pytest.mark.parametrize(
    "text, items",
    [
        ("3,5,10", ["3", "5", "10"]),
        (" 3 , 5 ", ["3", "5"]),
        ("[3,5],[5,5]", ["[3,5]", "[5,5]"]),
        ("[3, 5], [5, 5]", ["[3, 5]", "[5, 5]"]),
        ("'a,b',c", ["'a,b'", "c"]),
        ("4e-3", ["4e-3"]),
        ("1e-4:1e-2:log5", ["1e-4:1e-2:log5"]),
    ],
)
def test_split_items_minds_brackets_and_quotes(text, items):
    assert split_items(text, "k") == items


@pytest.mark.parametrize(
    "text, message",
    [("3,,5", "has an empty value"), ("3,", "has an empty value"), ("[3,5],[5,5", "unclosed bracket"), ("'a,b", "unclosed")],
)
def test_split_items_rejects(text, message):
    with pytest.raises(ExpdbError, match=message):
        split_items(text, "k")


@pytest.mark.parametrize(
    "text, points",
    [
        ("1:10:4", [1, 4, 7, 10]),  # int ends, whole points: ints
        ("0:100:5", [0, 25, 50, 75, 100]),
        ("10:1:4", [10, 7, 4, 1]),  # descending
        ("1:10:3", [1.0, 5.5, 10.0]),  # int ends, a point between: all floats
        ("0.1:0.9:9", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]),  # no 0.30000000000000004
        ("0:1:4", [0.0, 0.333, 0.667, 1.0]),  # 3 significant digits of the step
        ("1000:1001:3", [1000.0, 1000.5, 1001.0]),
        ("-0.3:0.3:3", [-0.3, 0.0, 0.3]),
        ("1e-4:1e-2:log5", [1e-4, 3.16e-4, 1e-3, 3.16e-3, 1e-2]),
        ("16:256:log5", [16, 32, 64, 128, 256]),  # int ends, whole points: ints
        ("1:1000:log5", [1.0, 5.62, 31.6, 178.0, 1000.0]),
        ("1.2345e-4:1e-2:log3", [1.2345e-4, 1.11e-3, 1e-2]),  # the ends as typed
        ("1e-2:1e-4:log3", [1e-2, 1e-3, 1e-4]),
        ("2:3:2", [2, 3]),
    ],
)
def test_parse_range(text, points):
    assert exactly(parse_range(text, "k", MAX), points)


@pytest.mark.parametrize("text", ["3", "4e-3", "abc", "a:b:c", "regex:x:y", "'1:2:3'", "[1:2:3]", "a:b"])
def test_parse_range_leaves_what_is_no_range(text):
    assert parse_range(text, "k", MAX) is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("1e-4:1e-2:logx", r"--lr '1e-4:1e-2:logx' is not a range: write START:STOP:N .* START:STOP:logN"),
        ("1e-4:1e-2", "is not a range"),
        ("1:2:3:4", "is not a range"),
        ("1:2:x", "is not a range"),
        ("1:2:-3", "is not a range"),
        ("1:2:1", "asks for 1 point"),
        ("1:2:0", "asks for 0 point"),
        ("1:2:log1", "asks for 1 point"),
        ("0:1e-2:log5", "a log range needs ends above 0"),
        ("-1:1:log3", "a log range needs ends above 0"),
        ("1:2:1001", "asks for 1,001 points, more than --max-cards 1,000"),
        ("1:2:log99999999999999999999", "more than --max-cards"),
        ("nan:1:3", "START and STOP must be finite numbers"),
        ("1:inf:3", "START and STOP must be finite numbers"),
        (":1:2", "START and STOP must be finite numbers"),
        ("true:1:2", "START and STOP must be finite numbers"),
        ("x:y:5", "START and STOP must be finite numbers"),
    ],
)
def test_parse_range_rejects(text, message):
    with pytest.raises(ExpdbError, match=message):
        parse_range(text, "lr", MAX)


def test_parse_values_mixes_lists_ranges_and_typed_values():
    assert parse_values("N", "3,5,10", MAX) == [(3, "3"), (5, "5"), (10, "10")]
    assert parse_values("ks", "[3,5],[5, 5]", MAX) == [([3, 5], "[3,5]"), ([5, 5], "[5, 5]")]
    assert parse_values("N", "1,2:10:5", MAX) == [(1, "1"), (2, "2"), (4, "4"), (6, "6"), (8, "8"), (10, "10")]
    assert parse_values("lr", "1e-4:1e-3:log3", MAX) == [(1e-4, "1e-4"), (3.16e-4, "3.16e-4"), (1e-3, "1e-3")]
    assert parse_values("shared", "true", MAX) == [(True, "true")]
    assert parse_values("shape", "bdhw,bndhw", MAX) == [("bdhw", "bdhw"), ("bndhw", "bndhw")]


# --- names


@pytest.mark.parametrize(
    "key, value, part",
    [
        ("N", 3, "N3"),
        ("seed", 0, "seed0"),
        ("lr", 1e-4, "lr1e-4"),
        ("lr", 3.16e-4, "lr3.16e-4"),
        ("lr", 0.01, "lr0.01"),
        ("lr", 1.0, "lr1"),  # a whole float named like the int: lr1 whether 1 was typed or a range made 1.0
        ("wd", 1e20, "wd1e20"),
        ("delta", -3, "delta-3"),
        ("shape", "bdhw", "shape-bdhw"),  # a '-' where the key would run into the value
        ("shared", True, "shared-true"),
        ("w1", 0.5, "w1-0.5"),
        ("ks", [3, 5], "ks3x5"),
        ("opt.lr", 2e-3, "opt.lr2e-3"),
        ("path", "data/coco 2017", "path-data-coco-2017"),  # only what card names allow
    ],
)
def test_name_part(key, value, part):
    assert name_part(key, value) == part
    cards.validate_name(part)


# --- the grid


def test_grid_is_the_product_named_by_the_varying_values_in_the_order_given():
    made = grid("cvt_io_v3", N="3,5,10", L="4,6", seed="0,1,2")
    assert made.varying == ["N", "L", "seed"]
    assert len(made.cards) == 18
    names = [card.name for card in made.cards]
    assert names[:4] == ["cvt_io_v3_N3_L4_seed0", "cvt_io_v3_N3_L4_seed1", "cvt_io_v3_N3_L4_seed2", "cvt_io_v3_N3_L6_seed0"]
    assert names[-1] == "cvt_io_v3_N10_L6_seed2"
    assert len(set(names)) == 18
    assert made.cards[-1].params == {"N": 10, "L": 6, "seed": 2}
    assert made.cards[-1].typed == {"N": "10", "L": "6", "seed": "2"}


def test_a_single_value_is_set_on_every_card_but_not_named():
    made = grid("lr_scan", steps="600", lr="1e-4:1e-2:log5", shared="true")
    assert made.varying == ["lr"]
    assert [card.name for card in made.cards] == [
        "lr_scan_lr1e-4", "lr_scan_lr3.16e-4", "lr_scan_lr1e-3", "lr_scan_lr3.16e-3", "lr_scan_lr0.01"
    ]
    assert all(list(card.params) == ["steps", "lr", "shared"] for card in made.cards)
    assert all(card.params["steps"] == 600 and card.params["shared"] is True for card in made.cards)
    assert [card.params["lr"] for card in made.cards] == [1e-4, 3.16e-4, 1e-3, 3.16e-3, 1e-2]


def test_list_values_sweep_as_lists():
    made = grid("k", ks="[3,5],[5,5]")
    assert [(card.name, card.params["ks"]) for card in made.cards] == [("k_ks3x5", [3, 5]), ("k_ks5x5", [5, 5])]


@pytest.mark.parametrize(
    "texts, message",
    [
        ({"N": "3", "lr": "4e-3"}, "sweep s varies nothing: give a parameter several values, as --N 3,5,10"),
        ({}, "sweep s varies nothing"),
        ({"N": "3,3"}, r"two cards of sweep s would be named 's_N3' \(N=3 and N=3\)"),
        ({"lr": "1,1.0"}, r"would be named 's_lr1' \(lr=1 and lr=1.0\)"),
        ({"shape": "a b,a/b"}, "would be named 's_shape-a-b'"),
        ({"lr": "1:1.0001:log5"}, "would be named"),  # 3 significant digits cannot tell them apart
        ({"N": "1:100:100", "L": "1:11:11"}, r"would create 1,100 cards \(100 N x 11 L\), more than --max-cards 1,000"),
        ({"N": "[1,,2]"}, "cannot parse --N"),
        ({"name": "x" * 130 + ",y"}, "invalid card name"),
    ],
)
def test_grid_rejects(texts, message):
    with pytest.raises(ExpdbError, match=message):
        expand_grid("s", texts, MAX)


def test_grid_rejects_a_bad_sweep_name():
    with pytest.raises(ExpdbError, match="invalid card name 'a b'"):
        grid("a b", N="3,5")


def test_max_cards_is_the_limit():
    assert len(expand_grid("s", {"N": "1:10:10", "L": "1:10:10"}, 100).cards) == 100
    with pytest.raises(ExpdbError, match="more than --max-cards 99"):
        expand_grid("s", {"N": "1:10:10", "L": "1:10:10"}, 99)


# --- against the database


def test_plan_keeps_the_base_cards_types(study):
    plan = plan_sweep(study, grid("t", lr="1,2", N="3,5", shape="1,2", ks="[3,5],[5,5]", new="1,2.5"), "cvt_io_v2_1")
    first, last = plan.cards[0], plan.cards[-1]
    assert first.name == "t_lr1_N3_shape1_ks3x5_new1"
    assert exactly([first.params[key] for key in ("lr", "N", "shape", "ks", "new")], [1.0, 3, "1", [3, 5], 1])  # lr is a float
    assert exactly([last.params[key] for key in ("lr", "N", "shape", "new")], [2.0, 5, "2", 2.5])


def test_plan_refuses_a_value_of_another_type(study):
    with pytest.raises(ExpdbError, match="--shared '1' is an int, but shared is a bool"):
        plan_sweep(study, grid("t", shared="true,1"), "cvt_io_v2_1")


def test_plan_tags_with_the_sweep_name_first_each_once(study):
    plan = plan_sweep(study, grid("t", N="3,5"), "cvt_io_v2_1", tags=["latent", "t", "latent"], note="why")
    assert plan.tags == ["t", "latent"]
    assert plan.note == "why"
    assert plan.base == "cvt_io_v2_1"


def test_plan_refuses_a_missing_base_with_did_you_mean(study):
    with pytest.raises(ExpdbError, match=r"no card named 'cvt_io_v2_10'; did you mean 'cvt_io_v2_1'\?"):
        plan_sweep(study, grid("t", N="3,5"), "cvt_io_v2_10")


def test_plan_refuses_names_that_exist_and_lists_them(study):
    for name in ("t_N1", "t_N2", "t_N3", "t_N4", "t_N5", "t_N6", "other"):
        cards.create_card(study, name, {})
    with pytest.raises(ExpdbError) as refused:
        plan_sweep(study, grid("t", N="1:10:10"), "cvt_io_v2_1")
    assert str(refused.value) == (
        "6 of sweep t's 10 card names exist already (t_N1, t_N2, t_N3, t_N4, t_N5, ...); "
        "pick another sweep name, or remove those cards with `expdb rm`"
    )


@pytest.mark.parametrize("tags, note, message", [(["bad tag"], None, "invalid tag 'bad tag'"), ([], " ", "the note is empty")])
def test_plan_refuses_bad_tags_and_notes(study, tags, note, message):
    with pytest.raises(ExpdbError, match=message):
        plan_sweep(study, grid("t", N="3,5"), "cvt_io_v2_1", tags=tags, note=note)


def test_create_makes_children_of_the_base_like_new_from(study):
    plan = plan_sweep(study, grid("t", N="3,5", L="4,6", lr="2e-3"), "cvt_io_v2_1", tags=["latent"], note="grid over N, L")
    created = create_sweep(study, plan)
    assert [card.name for card in created] == ["t_N3_L4", "t_N3_L6", "t_N5_L4", "t_N5_L6"]
    card = cards.get_card(study, "t_N5_L4")
    assert card.parent == "cvt_io_v2_1"
    assert card.runner == "cvt_io"  # inherited through cvt_io_v2_1 from cvt
    assert card.params == {"N": 5, "L": 4, "lr": 2e-3, "shape": "bdhw", "shared": True, "ks": [3, 3]}
    assert card.tags == ["latent", "t"]
    assert [note.text for note in cards.card_details(study, "t_N5_L4").notes] == ["grid over N, L"]
    assert [card.name for card in cards.select_cards(study, cards.Selection(tag="t"))] == [
        "t_N3_L4",
        "t_N3_L6",
        "t_N5_L4",
        "t_N5_L6",
    ]


def test_create_is_all_or_nothing(study, monkeypatch):
    before = dump()
    plan = plan_sweep(study, grid("t", N="1,2,3,4"), "cvt_io_v2_1")
    create_card = cards.create_card

    def fails_on_the_third(db, name, *args, **options):
        if name == "t_N3":
            raise ExpdbError("a card named 't_N3' exists already")  # as if another process had just made it
        return create_card(db, name, *args, **options)

    monkeypatch.setattr(cards, "create_card", fails_on_the_third)
    with pytest.raises(ExpdbError, match="'t_N3' exists already"):
        create_sweep(study, plan)
    assert dump() == before


def test_a_log_range_over_the_whole_float_range_is_spaced_in_logs():
    assert parse_range("1e-300:1e300:log3", "x", 1000) == [1e-300, 1.0, 1e300]


def test_a_range_whose_points_overflow_is_one_error():
    with pytest.raises(ExpdbError, match="beyond a float's range"):
        parse_range("-1e308:1e308:3", "x", 1000)
