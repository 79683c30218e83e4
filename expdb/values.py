"""Typed hyperparameter values: parsing what the user types, and showing it back.

A value is an int, a float, a bool, a string or a list of those. They are stored as JSON,
which keeps the type.
"""

import json
import math
import re
from collections.abc import Sequence

import orjson

from .errors import ExpdbError

Value = int | float | bool | str | list

_INT = re.compile(r"[-+]?\d+")
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_NOT_FINITE = {"nan", "inf", "infinity"}
INT_BITS = 64  # an int parameter is stored and used (a seed, a step count) as a signed 64-bit integer
_TRUE = {"true", "yes"}
_FALSE = {"false", "no"}
_EXPONENT_PADDING = re.compile(r"e([-+]?)0*(?=\d)")
KEY_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


def parse_scalar(text: str) -> int | float | bool | str:
    """`5` -> 5, `4e-3` -> 0.004, `true`/`yes` -> True, anything else stays a string."""
    stripped = text.strip()
    lowered = stripped.lower()
    if not stripped:
        raise ExpdbError("an empty value is no parameter: give a value, or '\"\"' for an empty string")
    if lowered.lstrip("+-") in _NOT_FINITE:
        raise ExpdbError(
            f"{text!r} is not a finite number: a parameter is stored as JSON, which has no NaN or infinity; "
            f"for the word, quote it: '\"{stripped}\"'"
        )
    if _INT.fullmatch(stripped):
        number = int(stripped)
        if not -(2 ** (INT_BITS - 1)) <= number < 2 ** (INT_BITS - 1):
            raise ExpdbError(f"{text!r} does not fit in {INT_BITS} bits; an integer parameter lies within +-9.2e18")
        return number
    if _FLOAT.fullmatch(stripped):
        real = float(stripped)
        if math.isinf(real):
            raise ExpdbError(f"{text!r} is too large for a number; write a value below 1e308")
        return real
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    if len(stripped) >= 2 and stripped[0] == stripped[-1] and stripped[0] in "'\"":
        return stripped[1:-1]
    return text


def parse_value(text: str, key: str = "value") -> Value:
    """Like `parse_scalar`, plus lists written `[a, b, c]`."""
    stripped = text.strip()
    if stripped.startswith("["):
        if not stripped.endswith("]"):
            raise ExpdbError(f"cannot parse --{key} {text!r}: a list is written [a, b, c]")
        inner = stripped[1:-1].strip()
        if not inner:
            return []
        items = [item.strip() for item in inner.split(",")]
        if any(not item for item in items):
            raise ExpdbError(f"cannot parse --{key} {text!r}: empty item in the list; write [a, b, c]")
        return [parse_scalar(item) for item in items]
    return parse_scalar(text)


def same(a: Value | None, b: Value | None) -> bool:
    """Equal and of the same type: `true` is not `1`, `5` is not `5.0`."""
    return type(a) is type(b) and a == b


def type_name(value: Value) -> str:
    """`an int`, `a float`: the kind of a value, as the error messages say it."""
    return {bool: "a bool", int: "an int", float: "a float", str: "a str", list: "a list"}[type(value)]


def coerce_like(value: Value, previous: Value, key: str, text: str) -> Value:
    """Keep a parameter's type when it is changed: an int may become a float, nothing else changes kind."""
    if type(value) is type(previous):
        return value
    if type(previous) is float and type(value) is int:
        return float(value)
    if type(previous) is int and type(value) is float:
        return value
    if type(previous) is str:
        return text
    raise ExpdbError(
        f"--{key} {text!r} is {type_name(value)}, but {key} is {type_name(previous)} "
        f"(was {format_value(previous)}); give {type_name(previous)}"
    )


def format_value(value: Value | None) -> str:
    """How a value is shown in tables: 0.004 as `4e-3`, booleans as true/false, a missing one as `-`."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _format_float(value)
    if isinstance(value, list):
        return "[" + ", ".join(format_value(item) for item in value) + "]"
    return str(value)


def plural(count: int, noun: str) -> str:
    """"1 card", "2 cards", "1,204 runs"."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def in_words(words: Sequence[str], conjunction: str = "and") -> str:
    """"a", "a and b", "a, b and c" (or "a, b or c")."""
    return ", ".join(words[:-1]) + f" {conjunction} " + words[-1] if len(words) > 1 else "".join(words)


def _format_float(value: float) -> str:
    """Shortest exact form; below 0.01 in the e-notation researchers write learning rates in (4e-3)."""
    text = repr(value)
    if value != 0 and abs(value) < 1e-2:
        text = next(
            candidate for digits in range(17) if float(candidate := f"{value:.{digits}e}") == value
        )
    return _EXPONENT_PADDING.sub(r"e\1", text).replace("e+", "e")


def dumps(params: dict[str, Value]) -> str:
    return json.dumps(params, separators=(",", ":"), allow_nan=False)  # in the order given: N before L, as typed


def loads(text: str) -> dict[str, Value]:
    return json.loads(text)


_DIGITS_AS_ZEROS = bytes(48 if 48 <= byte <= 57 else 32 for byte in range(256))  # every digit a "0", anything else a space
_SCANNED_TOGETHER = 1000  # texts joined for one scan: a few hundred KB, memory reused from one scan to the next


def loads_many(texts: list[str]) -> list[dict[str, Value]]:
    """`loads` of each text, by orjson: 100,000 cards' parameters in half the time. Where orjson would read
    otherwise, json reads them all: orjson makes an integer beyond 64 bits a float, so when a run of 19 digits
    or more appears anywhere (looked for in C, over a thousand texts at a time); and it refuses a lone surrogate."""
    if not any(_has_long_number(texts[start : start + _SCANNED_TOGETHER]) for start in range(0, len(texts), _SCANNED_TOGETHER)):
        try:
            return [orjson.loads(text) for text in texts]
        except orjson.JSONDecodeError:
            pass
    return [loads(text) for text in texts]


def _has_long_number(texts: list[str]) -> bool:
    """Whether a run of 19 digits or more is in `texts`."""
    return b"0" * 19 in "\n".join(texts).encode(errors="surrogatepass").translate(_DIGITS_AS_ZEROS)


def parse_key_values(args: list[str]) -> tuple[dict[str, Value], dict[str, str]]:
    """`--N 5 --lr=4e-3` -> ({'N': 5, 'lr': 0.004}, {'N': '5', 'lr': '4e-3'}): values and what was typed."""
    typed = split_key_values(args)
    return {key: parse_value_of(key, text) for key, text in typed.items()}, typed


def parse_value_of(key: str, text: str) -> Value:
    """`parse_value`, its errors naming the parameter: "--lr: 'inf' is not a finite number..."."""
    try:
        return parse_value(text, key)
    except ExpdbError as error:
        message = str(error)
        raise ExpdbError(message if f"--{key}" in message else f"--{key}: {message}") from None


def split_key_values(args: list[str]) -> dict[str, str]:
    """`--N 5 --lr=4e-3` -> {'N': '5', 'lr': '4e-3'}: what was typed for each parameter, not yet parsed."""
    typed: dict[str, str] = {}
    position = 0
    while position < len(args):
        arg = args[position]
        if not arg.startswith("--") or arg == "--":
            raise ExpdbError(f"unexpected argument {arg!r}: parameters are given as --KEY VALUE")
        key, has_value, text = arg[2:].partition("=")
        if has_value and not text:
            raise ExpdbError(f"--{key} needs a value: --{key} VALUE")
        if not has_value:
            position += 1
            if position >= len(args) or (args[position].startswith("--") and len(args[position]) > 2):
                raise ExpdbError(f"--{key} needs a value: --{key} VALUE")
            text = args[position]
        if not KEY_PATTERN.fullmatch(key):
            raise ExpdbError(
                f"invalid parameter name {key!r}: start with a letter or '_', then letters, digits, '_', '.' or '-'"
            )
        if key in typed:
            raise ExpdbError(f"--{key} is given twice; give it once")
        typed[key] = text
        position += 1
    return typed
