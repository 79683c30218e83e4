"""Training configs as typed parameters: `model.decoder.num_layers = 6` from an MMDetection `.py` config or a YAML file.

A Python config is never run. Its top-level assignments are read with `ast`: literals (numbers,
strings, booleans, None), lists, tuples, dicts and `dict(key=...)` calls of those, names assigned
earlier in the file (`data_root`), and `+` between strings or numbers (`data_root + 'train/'`).
Anything else (a function call, a comprehension, an import) is left out and counted, never
evaluated. `_base_` files are not merged: `_base_` stays a parameter that names them, so two
configs built on different bases still differ there. A YAML file is read with `yaml.safe_load`.

Flattening: nested dicts become dotted keys (`model.decoder.num_layers`), a list of plain values
stays a list (`[3, 5]`), a list holding dicts is numbered (`train_pipeline.0.type`). None values
are left out (a parameter has no null) and counted.
"""

import ast
import operator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ExpdbError
from .values import KEY_PATTERN, Value

_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
MAX_CONFIG_BYTES = 4 << 20  # a config is text; anything larger is not one


class _NotLiteral(Exception):
    """An expression that is not read without running code."""


@dataclass
class ConfigValues:
    params: dict[str, Value]
    left_out: list[str] = field(default_factory=list)  # keys whose value is not a literal, or is None


def _literal(node: ast.expr, names: dict[str, object]) -> object:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(item, names) for item in node.elts]
    if isinstance(node, ast.Dict):
        if any(key is None for key in node.keys):
            raise _NotLiteral  # {**base, ...}
        return {_literal(key, names): _literal(value, names) for key, value in zip(node.keys, node.values, strict=True)}  # type: ignore[arg-type]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        if any(keyword.arg is None for keyword in node.keywords):
            raise _NotLiteral  # dict(**base)
        return {keyword.arg: _literal(keyword.value, names) for keyword in node.keywords}
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        operand = _literal(node.operand, names)
        if isinstance(operand, (int, float)) and not isinstance(operand, bool):
            return -operand
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _literal(node.left, names), _literal(node.right, names)
        if isinstance(left, str) == isinstance(right, str) and not isinstance(left, (dict, list)):
            try:
                return _OPERATORS[type(node.op)](left, right)
            except (TypeError, ZeroDivisionError):
                raise _NotLiteral from None
    raise _NotLiteral


def _python_config(text: str, path: Path) -> tuple[dict[str, object], list[str]]:
    try:
        tree = ast.parse(text, filename=str(path))
    except SyntaxError as error:
        raise ExpdbError(f"{path} is not valid Python (line {error.lineno}): {error.msg}") from None
    names: dict[str, object] = {}
    left_out = []
    for statement in tree.body:
        if not isinstance(statement, ast.Assign) or len(statement.targets) != 1 or not isinstance(statement.targets[0], ast.Name):
            continue
        name = statement.targets[0].id
        try:
            names[name] = _literal(statement.value, names)
        except _NotLiteral:
            left_out.append(name)
    return names, left_out


def _yaml_config(text: str, path: Path) -> dict[str, object]:
    import yaml

    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ExpdbError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(loaded, dict):
        raise ExpdbError(f"{path} is not a YAML mapping of settings: its top level is a {type(loaded).__name__}")
    return loaded


def _flatten(prefix: str, value: object, params: dict[str, Value], left_out: list[str]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, params, left_out)
    elif isinstance(value, (list, tuple)):
        if all(isinstance(item, (bool, int, float, str)) for item in value):
            params[prefix] = list(value)
        else:
            for index, item in enumerate(value):
                _flatten(f"{prefix}.{index}", item, params, left_out)
    elif isinstance(value, (bool, int, float, str)):
        params[prefix] = value
    else:
        left_out.append(prefix)


def read_config(file: str | Path) -> ConfigValues:
    """The flattened parameters of a `.py` or `.yaml`/`.yml` config. ExpdbError (one line) if unreadable."""
    path = Path(file)
    if not path.is_file():
        raise ExpdbError(f"no such config file: {path}")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ExpdbError(f"{path} is larger than a config ({MAX_CONFIG_BYTES >> 20} MB): attach it with `expdb attach` instead")
    text = path.read_text(encoding="utf-8", errors="replace")
    suffix = path.suffix.lower()
    if suffix == ".py":
        values, left_out = _python_config(text, path)
    elif suffix in (".yaml", ".yml"):
        values, left_out = _yaml_config(text, path), []
    else:
        raise ExpdbError(f"cannot read the config {path}: expected a .py (MMDetection, MMEngine) or .yaml file")
    params: dict[str, Value] = {}
    _flatten("", values, params, left_out)
    bad = [key for key in params if not KEY_PATTERN.fullmatch(key)]
    for key in bad:
        del params[key]
    return ConfigValues(params, left_out + bad)
