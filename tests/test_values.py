"""Typed hyperparameter values: what the user types, how it is stored, how it is shown."""

import pytest

from expdb.errors import ExpdbError
from expdb.values import (
    coerce_like,
    dumps,
    format_value,
    loads,
    loads_many,
    parse_key_values,
    parse_scalar,
    parse_value,
    same,
)


def exactly(value, expected):
    """Equal and of the same type, also inside lists (`5` is not `5.0`, `True` is not `1`)."""
    if isinstance(expected, list):
        return isinstance(value, list) and len(value) == len(expected) and all(map(exactly, value, expected))
    return type(value) is type(expected) and value == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("5", 5),
        ("-3", -3),
        ("+5", 5),
        ("100000", 100000),
        ("4e-3", 0.004),
        ("1e-7", 1e-7),
        ("-1e-3", -0.001),
        ("1E5", 100000.0),
        ("0.5", 0.5),
        (".5", 0.5),
        ("5.", 5.0),
        ("-0.25", -0.25),
        ("true", True),
        ("True", True),
        ("yes", True),
        ("false", False),
        ("NO", False),
        ("bdhw", "bdhw"),
        ("1.2.3", "1.2.3"),
        ("cvt_io", "cvt_io"),
        ('"5"', "5"),  # quotes force a string
        ("'true'", "true"),
    ],
)
def test_parse_scalar_types(text, expected):
    assert exactly(parse_scalar(text), expected)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[3, 5]", [3, 5]),
        ("[3,5]", [3, 5]),
        (" [3, 5] ", [3, 5]),
        ("[]", []),
        ("[ ]", []),
        ("[a, 4e-3, true, -2]", ["a", 0.004, True, -2]),
        ("7", 7),
    ],
)
def test_parse_value_lists(text, expected):
    assert exactly(parse_value(text), expected)


@pytest.mark.parametrize("text", ["[1,2", "[1,,2]", "[1,]", "[,]", "[,1]"])
def test_parse_value_rejects_malformed_lists(text):
    with pytest.raises(ExpdbError, match=r"cannot parse --N"):
        parse_value(text, "N")


def test_parse_key_values_keeps_order_types_and_typed_text():
    params, typed = parse_key_values(
        ["--N", "3", "--L", "6", "--shape", "bdhw", "--shared", "true", "--lr", "4e-3", "--wd", "1e-7", "--steps", "100000"]
    )
    assert list(params) == ["N", "L", "shape", "shared", "lr", "wd", "steps"]
    assert exactly(list(params.values()), [3, 6, "bdhw", True, 0.004, 1e-7, 100000])
    assert typed == {"N": "3", "L": "6", "shape": "bdhw", "shared": "true", "lr": "4e-3", "wd": "1e-7", "steps": "100000"}


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--lr=4e-3"], {"lr": 0.004}),
        (["--N=5", "--L", "4"], {"N": 5, "L": 4}),
        (["--name=a=b"], {"name": "a=b"}),
        (["--ks=[3, 5]"], {"ks": [3, 5]}),
        (["--ks", "[3, 5]"], {"ks": [3, 5]}),
        (["--delta", "-3"], {"delta": -3}),
        (["--lr", "-1e-3"], {"lr": -0.001}),
        (["--delta=-3"], {"delta": -3}),
        (["--a.b", "1", "--c-d", "2", "--_e", "3"], {"a.b": 1, "c-d": 2, "_e": 3}),
        ([], {}),
    ],
)
def test_parse_key_values_forms(args, expected):
    params, _ = parse_key_values(args)
    assert list(params) == list(expected)
    assert all(exactly(params[key], value) for key, value in expected.items())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--N"], "--N needs a value"),
        (["--N", "--L", "4"], "--N needs a value"),
        (["--N", "1", "--N", "2"], "--N is given twice"),
        (["--N", "1", "--N=2"], "--N is given twice"),
        (["--1x", "3"], "invalid parameter name '1x'"),
        (["--a/b", "3"], "invalid parameter name 'a/b'"),
        (["--=5"], "invalid parameter name ''"),
        (["5"], "unexpected argument '5'"),
        (["-N", "5"], "unexpected argument '-N'"),
        (["--"], "unexpected argument '--'"),
        (["--N", "[1,2"], "cannot parse --N"),
    ],
)
def test_parse_key_values_rejects(args, message):
    with pytest.raises(ExpdbError, match=message.replace("[", r"\[")):
        parse_key_values(args)


def test_parse_key_values_rejects_equals_with_no_value():
    with pytest.raises(ExpdbError, match="--N needs a value"):
        parse_key_values(["--N="])


@pytest.mark.parametrize(
    "value, previous, text, expected",
    [
        (5, 3, "5", 5),
        (0.001, 0.004, "1e-3", 0.001),
        (1, 0.004, "1", 1.0),  # a float parameter stays a float
        (2.5, 3, "2.5", 2.5),  # an int parameter may become a float
        (5, "bdhw", "5", "5"),  # a string parameter takes what was typed
        (True, "bdhw", "true", "true"),
        (False, True, "false", False),
        ([1, 2], [3, 5], "[1, 2]", [1, 2]),
    ],
)
def test_coerce_like_keeps_type(value, previous, text, expected):
    assert exactly(coerce_like(value, previous, "k", text), expected)


@pytest.mark.parametrize(
    "value, previous, text",
    [
        ("five", 3, "five"),
        (True, 3, "true"),
        (1, True, "1"),
        ("x", 0.004, "x"),
        (True, 0.004, "true"),
        (5, [3, 5], "5"),
        ([1], 3, "[1]"),
    ],
)
def test_coerce_like_refuses_another_kind(value, previous, text):
    with pytest.raises(ExpdbError) as error:
        coerce_like(value, previous, "N", text)
    assert f"--N {text!r}" in str(error.value)
    assert f"(was {format_value(previous)})" in str(error.value)


@pytest.mark.parametrize(
    "value, shown",
    [
        (None, "-"),
        (True, "true"),
        (False, "false"),
        (3, "3"),
        (-3, "-3"),
        (100000, "100000"),
        (0.004, "4e-3"),
        (1e-7, "1e-7"),
        (2.5e-5, "2.5e-5"),
        (-0.004, "-4e-3"),
        (1e-12, "1e-12"),
        (0.01, "0.01"),
        (0.5, "0.5"),
        (1.0, "1.0"),
        (0.0, "0.0"),
        (1e20, "1e20"),
        ("bdhw", "bdhw"),
        ([3, 5], "[3, 5]"),
        ([0.004, True, "a"], "[4e-3, true, a]"),
        ([], "[]"),
    ],
)
def test_format_value(value, shown):
    assert format_value(value) == shown


@pytest.mark.parametrize("value", [0.004, 1e-7, 2.5e-5, 1 / 3 * 1e-3, 0.1 + 0.2, 123.456, -7e-9, 1e20])
def test_format_value_of_float_parses_back_to_the_same_float(value):
    assert exactly(parse_scalar(format_value(value)), value)


@pytest.mark.parametrize(
    "a, b, expected",
    [
        (5, 5, True),
        (5, 5.0, False),
        (True, 1, False),
        (0, False, False),
        ("5", 5, False),
        (0.004, 4e-3, True),
        ([3, 5], [3, 5], True),
        ([3, 5], [5, 3], False),
        (None, None, True),
        (None, 0, False),
    ],
)
def test_same_needs_equal_value_and_type(a, b, expected):
    assert same(a, b) is expected


def test_dumps_loads_round_trip_keeps_types_and_order():
    params = {"N": 3, "L": 6, "lr": 0.004, "steps": 100000, "shared": True, "shape": "bdhw", "ks": [3, 5], "one": 1.0}
    back = loads(dumps(params))
    assert list(back) == list(params)
    assert all(exactly(back[key], value) for key, value in params.items())


def test_a_string_may_end_in_a_bracket():
    assert parse_value("a[1]") == "a[1]"


def test_loads_many_reads_what_loads_reads_exactly():
    texts = [
        dumps({"N": 5, "lr": 4e-3, "shared": True, "ks": [3, 5], "x": 0.1 + 0.2, "s": "é", "n": None}),
        dumps({}),
        dumps({"lr": 1.0, "N": 5.0, "big": 2**63 - 1, "low": -(2**63)}),
    ]
    decoded = loads_many(texts)
    for found, expected in zip(decoded, [loads(text) for text in texts], strict=True):
        assert list(found) == list(expected)  # the typed order
        assert all(exactly(found[key], value) for key, value in expected.items())
    assert loads_many([]) == []


@pytest.mark.parametrize("big", [2**64, -(2**63) - 1, 10**30])
@pytest.mark.parametrize("position", [1, 999, 1000, 2500])  # the texts are scanned a thousand at a time
def test_loads_many_keeps_an_integer_beyond_64_bits_an_integer(big, position):
    """orjson would read it as a float; a card stored through the API, or before parameters were checked, may hold one."""
    texts = [dumps({"N": 1})] * position + [dumps({"seed": big})] + [dumps({"N": 2})] * 3
    assert exactly(loads_many(texts)[position]["seed"], big)


def test_loads_many_reads_a_lone_surrogate_as_json_does():
    assert loads_many([dumps({"N": 1}), '{"s": "\ud800"}']) == [{"N": 1}, {"s": "\ud800"}]


def test_loads_many_refuses_a_text_of_two_objects():
    with pytest.raises(ValueError):
        loads_many(['{"a": 1},{"b": 2}'])
