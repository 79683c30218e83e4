"""The `--where` filter of `expdb table`, e.g. `N>=5 and shared=true`.

A hand-written scanner and recursive-descent parser turn the expression into a predicate;
nothing is ever evaluated as code or SQL. Besides parameters and metrics, a card's `valid`
(`valid=false`) and its tags (`tag=bs`: one of them is bs) can be tested. Grammar (keywords are case-insensitive):

    or_expr  := and_expr ('or' and_expr)*
    and_expr := not_expr ('and' not_expr)*
    not_expr := 'not' not_expr | atom
    atom     := '(' or_expr ')' | KEY OP VALUE | KEY 'in' '[' VALUE (',' VALUE)* ']'
"""

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ExpdbError
from .values import parse_scalar

Predicate = Callable[[Mapping[str, object]], bool]

_KEYWORDS = {"and", "or", "not", "in"}
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
# Longest first, so that '<=' is not read as '<' followed by a value '=...'.
_OPERATORS = ("==", "!=", "<=", ">=", "=", "<", ">")
_OPERATOR_NAMES = "== != < <= > >= in"
# A bare value may not start with an operator or bracket, so `N>=>5` or `N=(5)` is an error, not a string.
_BARE_VALUE = re.compile(r"[^\s()\[\],'\"=!<>][^\s),\]]*")
_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


@dataclass(frozen=True)
class Where:
    """A parsed `--where` expression: call it with a run's values to test them."""

    text: str
    keys: frozenset[str]
    _predicate: Predicate = field(repr=False, compare=False)

    def __call__(self, values: Mapping[str, object]) -> bool:
        return bool(self._predicate(values))


def parse_where(text: str) -> Where:
    """`N>=5 and shared=true` -> a Where; raises ExpdbError with a one-line message if malformed."""
    parser = _Parser(text)
    predicate = parser.parse()
    return Where(text, frozenset(parser.keys), predicate)


def _kind(value: object) -> str:
    # bool is checked first because it is a subclass of int, and True must not equal 1.
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def _equal(actual: object, expected: object) -> bool:
    if isinstance(actual, frozenset):  # a card's tags: `tag=bs` holds when bs is one of them
        return any(_equal(item, expected) for item in actual)
    return _kind(actual) == _kind(expected) and actual == expected


def _compare(op: str, actual: object, expected: object) -> bool:
    """An absent value (None) fails every comparison, `!=` included, like SQL NULL."""
    if actual is None:
        return False
    if op == "==":
        return _equal(actual, expected)
    if op == "!=":
        return not _equal(actual, expected)
    kind = _kind(actual)  # a set of tags has no order: `tag<b` is never true
    return kind in ("number", "str") and kind == _kind(expected) and _ORDERINGS[op](actual, expected)


def _is_in(actual: object, items: tuple) -> bool:
    return actual is not None and any(_equal(actual, item) for item in items)


MAX_DEPTH = 100


class _Parser:
    """Scans on demand, because what a token is depends on where it is: `4e-3` is a value, `lr` a key."""

    def __init__(self, text: str):
        self.text = text
        self.position = 0
        self.previous: str | None = None  # the last token read, quoted in errors as "after ..."
        self.keys: set[str] = set()
        self.depth = 0  # parentheses and `not`s open around the current token

    def parse(self) -> Predicate:
        if not self.text.strip():
            raise ExpdbError(
                f"malformed --where {self.text!r}: expected a condition such as N>=5 (the expression is empty)"
            )
        predicate = self.or_expr()
        if self.peek(")"):
            raise self.error("'and', 'or' or the end, not an unmatched ')'", after=False)
        if not self.at_end():
            raise self.error("'and', 'or' or the end")
        return predicate

    def or_expr(self) -> Predicate:
        operands = [self.and_expr()]
        while self.take_keyword("or"):
            operands.append(self.and_expr())
        if len(operands) == 1:
            return operands[0]
        return lambda values: any(operand(values) for operand in operands)

    def and_expr(self) -> Predicate:
        operands = [self.not_expr()]
        while self.take_keyword("and"):
            operands.append(self.not_expr())
        if len(operands) == 1:
            return operands[0]
        return lambda values: all(operand(values) for operand in operands)

    def nested(self) -> None:
        """One level deeper; Python's stack (and a reader) gives out long before MAX_DEPTH is useful."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpdbError(
                f"malformed --where: nested more than {MAX_DEPTH} levels deep (parentheses and 'not'); write it flatter"
            )

    def not_expr(self) -> Predicate:
        if self.take_keyword("not"):
            self.nested()
            operand = self.not_expr()
            self.depth -= 1
            return lambda values: not operand(values)
        return self.atom()

    def atom(self) -> Predicate:
        self.skip_space()
        opened_at = self.position + 1
        if self.take("("):
            self.nested()
            inner = self.or_expr()
            self.depth -= 1
            if not self.take(")"):
                raise self.error(f"'and', 'or' or ')' to close the '(' at character {opened_at}", after=False)
            return inner
        key = self.take_key()
        if key is None:
            raise self.error("a condition")
        self.keys.add(key)
        if self.take_keyword("in"):
            items = self.value_list()
            return lambda values: _is_in(values.get(key), items)
        op = self.take_operator()
        if op is None:
            raise self.error(f"an operator ({_OPERATOR_NAMES})")
        expected = self.take_value()
        if op == "=":
            op = "=="
        return lambda values: _compare(op, values.get(key), expected)

    def value_list(self) -> tuple:
        if not self.take("["):
            raise self.error("'[' to start the list of values")
        items = [self.take_value()]
        while not self.take("]"):
            if not self.take(","):
                raise self.error("',' or ']'")
            items.append(self.take_value())
        return tuple(items)

    def take_value(self) -> object:
        self.skip_space()
        start = self.position
        quote = self.text[start : start + 1]
        if quote in ("'", '"'):
            end = self.text.find(quote, start + 1)
            if end < 0:
                self.position = len(self.text)
                raise self.error(f"{quote!r} to close the string at character {start + 1}", after=False)
            return parse_scalar(self.consume(end + 1 - start))
        match = _BARE_VALUE.match(self.text, start)
        if match is None or match.group().lower() in _KEYWORDS:
            raise self.error("a value")
        return parse_scalar(self.consume(len(match.group())))

    def take_key(self) -> str | None:
        word = self.peek_word()
        if word is None or word.lower() in _KEYWORDS:
            return None
        return self.consume(len(word))

    def take_keyword(self, keyword: str) -> bool:
        word = self.peek_word()
        if word is None or word.lower() != keyword:
            return False
        self.consume(len(word))
        return True

    def take_operator(self) -> str | None:
        self.skip_space()
        for op in _OPERATORS:
            if self.text.startswith(op, self.position):
                return self.consume(len(op))
        return None

    def take(self, literal: str) -> bool:
        if not self.peek(literal):
            return False
        self.consume(len(literal))
        return True

    def peek(self, literal: str) -> bool:
        self.skip_space()
        return self.text.startswith(literal, self.position)

    def peek_word(self) -> str | None:
        self.skip_space()
        match = _WORD.match(self.text, self.position)
        return match.group() if match else None

    def consume(self, length: int) -> str:
        token = self.text[self.position : self.position + length]
        self.position += length
        self.previous = token
        return token

    def skip_space(self) -> None:
        while self.position < len(self.text) and self.text[self.position].isspace():
            self.position += 1

    def at_end(self) -> bool:
        self.skip_space()
        return self.position >= len(self.text)

    def error(self, expected: str, *, after: bool = True) -> ExpdbError:
        message = f"malformed --where {self.text!r}: expected {expected}"
        if after and self.previous is not None:
            message += f" after {self.previous!r}"
        message += " (at the end)" if self.at_end() else f" (at character {self.position + 1})"
        return ExpdbError(message)
