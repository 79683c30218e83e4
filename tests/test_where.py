import inspect

import pytest

import expdb.where
from expdb.errors import ExpdbError
from expdb.where import parse_where


def matches(text, **values):
    return parse_where(text)(values)


@pytest.mark.parametrize(
    "text, values, expected",
    [
        # 'and' binds tighter than 'or': a=1 or (b=1 and c=1)
        ("a=1 or b=1 and c=1", {"a": 1}, True),
        ("a=1 or b=1 and c=1", {"b": 1}, False),
        ("a=1 or b=1 and c=1", {"b": 1, "c": 1}, True),
        ("(a=1 or b=1) and c=1", {"a": 1}, False),
        ("(a=1 or b=1) and c=1", {"a": 1, "c": 1}, True),
        ("((a=1))", {"a": 1}, True),
        ("not a=1", {"a": 2}, True),
        ("not a=1", {"a": 1}, False),
        ("not not a=1", {"a": 1}, True),
        ("not a=1 and b=1", {"a": 2, "b": 1}, True),  # not binds tighter than and
        ("not (a=1 and b=1)", {"a": 1, "b": 2}, True),
        ("not(a=1)", {"a": 2}, True),
        ("(a=1)and(b=1)", {"a": 1, "b": 1}, True),
        ("a=1 AND b=1 Or c=1", {"c": 1}, True),
        ("NOT a=1", {"a": 2}, True),
        ("a IN [1, 2]", {"a": 2}, True),
    ],
)
def test_grammar(text, values, expected):
    assert parse_where(text)(values) is expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("N==5", True),
        ("N=5", True),
        ("N = 5", True),
        ("N!=5", False),
        ("N!=4", True),
        ("N<5", False),
        ("N<6", True),
        ("N<=5", True),
        ("N<=4", False),
        ("N>5", False),
        ("N>4", True),
        ("N>=5", True),
        ("N >= 6", False),
        ("N<-3", False),
        ("N>-3", True),
    ],
)
def test_operators(text, expected):
    assert matches(text, N=5) is expected


@pytest.mark.parametrize(
    "text, values, expected",
    [
        ("lr=4e-3", {"lr": 0.004}, True),
        ("lr<.5", {"lr": 0.004}, True),
        ("lr=-.5", {"lr": -0.5}, True),
        ("shared=true", {"shared": True}, True),
        ("shared=true", {"shared": "true"}, False),
        ("shared=yes", {"shared": True}, True),
        ("shared=no", {"shared": False}, True),
        ("shared=1", {"shared": True}, False),
        ("N=true", {"N": 1}, False),
        ("shared!=1", {"shared": True}, True),
        ("shared>0", {"shared": True}, False),
        ("N=5", {"N": 5.0}, True),
        ("N=5.0", {"N": 5}, True),
        ("N<5.5", {"N": 5}, True),
        ("name=bdhw", {"name": "bdhw"}, True),
        ("name<c", {"name": "bdhw"}, True),
        ("N>abc", {"N": 5}, False),
        ("name>5", {"name": "abc"}, False),
        ("N='5'", {"N": 5}, False),
        ('N="5"', {"N": "5"}, True),
        ("flag='true'", {"flag": "true"}, True),
        ("flag='true'", {"flag": True}, False),
        ("sizes=3", {"sizes": [3]}, False),
        ("sizes!=3", {"sizes": [3]}, True),
        ("sizes>=3", {"sizes": [3]}, False),
    ],
)
def test_types(text, values, expected):
    assert parse_where(text)(values) is expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("N=5", False),
        ("N!=5", False),
        ("N<5", False),
        ("N in [5]", False),
        ("not N=5", True),
        ("not N!=5", True),
        ("N=5 or M=1", True),
    ],
)
@pytest.mark.parametrize("values", [{"M": 1}, {"M": 1, "N": None}])
def test_absent_keys(text, expected, values):
    assert parse_where(text)(values) is expected


@pytest.mark.parametrize(
    "text, values, expected",
    [
        ("N in [1, 5]", {"N": 5}, True),
        ("N in [1,2]", {"N": 5}, False),
        ("N in [5.0]", {"N": 5}, True),
        ("N in [true]", {"N": 1}, False),
        ("name in [bdhw, 'a b', \"c, d\"]", {"name": "c, d"}, True),
        ("name in ['5']", {"name": 5}, False),
        ("name IN [x]", {"name": "x"}, True),
        ("not name in [x]", {"name": "y"}, True),
    ],
)
def test_in(text, values, expected):
    assert parse_where(text)(values) is expected


@pytest.mark.parametrize(
    "text, value",
    [
        ("name='a b'", "a b"),
        ('name="a >= b and c"', "a >= b and c"),
        ("name='(x)'", "(x)"),
        ("name=\"it's\"", "it's"),
        ("name = ' padded '", " padded "),
    ],
)
def test_quoted_strings(text, value):
    assert matches(text, name=value) is True


def test_dotted_and_dashed_keys():
    where = parse_where("optimizer.lr=4e-3 and weight-decay<-1 and _x.y-z=ok")
    assert where.keys == {"optimizer.lr", "weight-decay", "_x.y-z"}
    assert where({"optimizer.lr": 0.004, "weight-decay": -2, "_x.y-z": "ok"}) is True


def test_keys_and_text():
    where = parse_where("N>=5 and (not shared=true or lr in [1, 2])")
    assert where.text == "N>=5 and (not shared=true or lr in [1, 2])"
    assert where.keys == frozenset({"N", "shared", "lr"})


def test_keyword_prefixes_are_keys():
    where = parse_where("order=1 and android=2 or notes=x and index in [1]")
    assert where.keys == {"order", "android", "notes", "index"}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "expected a condition such as N>=5 (the expression is empty)"),
        ("   ", "expected a condition such as N>=5 (the expression is empty)"),
        ("N>=", "expected a value after '>=' (at the end)"),
        ("N >= 5 and", "expected a condition after 'and' (at the end)"),
        ("N >= 5 or", "expected a condition after 'or' (at the end)"),
        ("not", "expected a condition after 'not' (at the end)"),
        ("N 5", "expected an operator (== != < <= > >= in) after 'N' (at character 3)"),
        ("N", "expected an operator (== != < <= > >= in) after 'N' (at the end)"),
        ("N!5", "expected an operator (== != < <= > >= in) after 'N' (at character 2)"),
        ("N>=>5", "expected a value after '>=' (at character 4)"),
        ("N=and", "expected a value after '=' (at character 3)"),
        ("=5", "expected a condition (at character 1)"),
        ("and=5", "expected a condition (at character 1)"),
        ("5=N", "expected a condition (at character 1)"),
        ("()", "expected a condition after '(' (at character 2)"),
        ("(N=5", "expected 'and', 'or' or ')' to close the '(' at character 1 (at the end)"),
        ("(N=5 M=1)", "expected 'and', 'or' or ')' to close the '(' at character 1 (at character 6)"),
        ("N=5)", "expected 'and', 'or' or the end, not an unmatched ')' (at character 4)"),
        ("N=5 M=1", "expected 'and', 'or' or the end after '5' (at character 5)"),
        ("N=5 & M=1", "expected 'and', 'or' or the end after '5' (at character 5)"),
        ("name='abc", "expected \"'\" to close the string at character 6 (at the end)"),
        ('name="abc', "expected '\"' to close the string at character 6 (at the end)"),
        ("name='it''", "expected 'and', 'or' or the end after \"'it'\" (at character 10)"),
        ("N in 5", "expected '[' to start the list of values after 'in' (at character 6)"),
        ("N in []", "expected a value after '[' (at character 7)"),
        ("N in [1,", "expected a value after ',' (at the end)"),
        ("N in [1 2]", "expected ',' or ']' after '1' (at character 9)"),
        ("N in [1", "expected ',' or ']' after '1' (at the end)"),
    ],
)
def test_malformed(text, expected):
    with pytest.raises(ExpdbError) as raised:
        parse_where(text)
    assert str(raised.value) == f"malformed --where {text!r}: {expected}"


def test_malformed_message_is_one_line():
    with pytest.raises(ExpdbError) as raised:
        parse_where("N=1 and\nM")
    assert "\n" not in str(raised.value)
    assert "expected an operator" in str(raised.value)


def test_never_evaluates_code():
    source = inspect.getsource(expdb.where)
    assert "eval(" not in source
    assert "exec(" not in source
