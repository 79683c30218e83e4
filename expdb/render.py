"""Renderers of the comparison table. Each takes a rich Console or a text file.

Only the `rich` format goes through rich: a rich table of 10,000 rows takes seconds to
lay out, while the plain formats are written line by line.
"""

import csv
import json
from dataclasses import dataclass
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .metrics import format_number
from .table import Column, ComparisonTable, GroupRow
from .values import format_value

FORMATS = ("rich", "md", "csv", "json", "latex")
SPREAD = " ± "  # between a group's mean and its standard deviation


@dataclass
class Cell:
    text: str  # the value as shown ("0.341 ± 0.012"), unescaped
    delta: str = ""  # the change from the baseline ("-0.11", "+3.2%"), or ""
    best: bool = False


def _number(column: Column, value: float, latex: bool) -> str:
    """Terminal and markdown cells carry short units ("46.67ms"); LaTeX has them in the head."""
    return format_number(value, column.metric.format) if latex else column.metric.cell(value)


def _delta_text(table: ComparisonTable, row, column: Column) -> str:
    delta = table.delta(row, column)
    if delta is None:
        return ""
    if column.is_cost:
        return f"{delta:+.1f}%"
    sign = "+" if delta >= 0 else "-"
    return sign + format_number(abs(delta), column.metric.format)


def _shown_columns(table: ComparisonTable) -> list[Column]:
    """The columns of the text formats: a group's std goes into its mean's cell, "0.341 ± 0.012"."""
    means = {column.key for column in table.columns if column.agg == "mean"}
    return [column for column in table.columns if not (column.agg == "std" and column.key in means)]


def _metric_cell(table: ComparisonTable, row, column: Column, latex: bool) -> Cell:
    value = column.value(row)
    if value is None:
        return Cell("--" if latex else "")
    text = _number(column, value, latex)
    if column.agg == "mean" and any(c.agg == "std" and c.key == column.key for c in table.columns):
        spread = row.number(column.key, "std")
        if spread is not None:
            text += SPREAD + _number(column, spread, latex)
    if column.agg == "mean" and table.counted:
        measured = row.number(column.key, "count")
        if measured is not None and measured < row.count:  # the group's n counts cards, not this metric's values
            text += f" (n={measured:.0f})"
    return Cell(text, _delta_text(table, row, column), table.is_best(row, column))


def _name_cell(table: ComparisonTable, row) -> str:
    return row.name + (" (baseline)" if row is table.baseline else "")


@dataclass
class Layout:
    """The text formats' table: heads, which columns hold numbers, and the cells, row by row."""

    headers: list[str]
    numeric: list[bool]
    rows: list[list[Cell]]


def _layout(table: ComparisonTable, latex: bool = False) -> Layout:
    columns = _shown_columns(table)
    missing = "--" if latex else "-"
    headers = ["Card" if latex else "card"] if not table.group_keys else ["Group" if latex else "group"]
    headers += [*table.param_keys, *(["n"] if table.counted else [])]
    headers += [column.header(with_unit=latex) for column in columns]
    numeric = [False] * (1 + len(table.param_keys)) + [True] * (len(headers) - 1 - len(table.param_keys))
    rows = []
    for row in table.rows:
        cells = [Cell(_name_cell(table, row))]
        for key in table.param_keys:
            value = row.params.get(key)
            cells.append(Cell(missing if value is None and latex else format_value(value)))
        if table.counted and isinstance(row, GroupRow):
            cells.append(Cell(str(row.count)))
        cells += [_metric_cell(table, row, column, latex) for column in columns]
        rows.append(cells)
    return Layout(headers, numeric, rows)


def _joined(cell: Cell) -> str:
    return f"{cell.text} ({cell.delta})" if cell.delta else cell.text


def render_rich(table: ComparisonTable, console: Console) -> None:
    layout = _layout(table)
    grid = Table(show_edge=False, header_style="bold")
    for header, numeric in zip(layout.headers, layout.numeric, strict=True):
        grid.add_column(Text(header), justify="right" if numeric else "left", no_wrap=True)
    for cells in layout.rows:
        # Text cells: shown as written (no markup to parse), and on one line each, which lays out fast.
        grid.add_row(*(Text(_joined(cell), style="bold green" if cell.best else "") for cell in cells))
    console.print(grid)
    if not table.rows:
        console.print("no card has these metrics yet")


def markdown_table(headers: list[str], rows: list[list[str]], numeric: list[bool] | None = None) -> str:
    """A markdown table, `numeric` columns right-aligned; each cell on one line, its pipes escaped."""

    def line(texts: list[str]) -> str:
        return "| " + " | ".join(" ".join(str(text).split()).replace("|", "\\|") for text in texts) + " |\n"

    rule = "|" + "|".join("---:" if right else "---" for right in numeric or [False] * len(headers)) + "|\n"
    return line(headers) + rule + "".join(line(row) for row in rows)


def write_markdown(table: ComparisonTable, file: TextIO) -> None:
    layout = _layout(table)
    rows = [[f"**{_joined(c)}**" if c.best else _joined(c) for c in cells] for cells in layout.rows]
    file.write(markdown_table(layout.headers, rows, layout.numeric))


def _plain(value) -> object:
    return "" if value is None else json.dumps(value) if isinstance(value, (list, bool)) else value


def _ranked(table: ComparisonTable) -> list[Column]:
    """The columns that have deltas to the baseline."""
    return [column for column in table.columns if column.ranked]


def flat_rows(table: ComparisonTable) -> tuple[list[str], list[list]]:
    """The table as raw values, one column per value (`iou50`; for groups `iou50_mean`, `iou50_std`, `n`):
    what csv writes and what a DataFrame holds."""
    with_deltas = table.baseline is not None
    header = ["group" if table.group_keys else "card", *table.param_keys, *(["n"] if table.counted else [])]
    header += [column.name for column in table.columns]
    if with_deltas:
        header += [column.delta_name for column in _ranked(table)]
    rows = []
    for row in table.rows:
        line = [row.name, *(row.params.get(key) for key in table.param_keys)]
        line += [row.count] if table.counted and isinstance(row, GroupRow) else []
        line += [column.value(row) for column in table.columns]
        if with_deltas:
            line += [table.delta(row, column) for column in _ranked(table)]
        rows.append(line)
    return header, rows


def write_csv(table: ComparisonTable, file: TextIO) -> None:
    writer = csv.writer(file, lineterminator="\n")
    header, rows = flat_rows(table)
    writer.writerow(header)
    writer.writerows([_plain(value) for value in row] for row in rows)


def write_json(table: ComparisonTable, file: TextIO) -> None:
    records = []
    for row in table.rows:
        record: dict[str, Any]
        if isinstance(row, GroupRow):
            record = {"group": row.name, "cards": [member.name for member in row.rows]}
            if table.counted:
                record["n"] = row.count
        else:
            record = {"card": row.name, "status": row.card.status}
        record["params"] = {key: row.params.get(key) for key in table.param_keys}
        record["metrics"] = {column.name: column.value(row) for column in table.columns}
        if table.baseline is not None:
            record["baseline"] = row is table.baseline
            record["deltas"] = {column.delta_name: table.delta(row, column) for column in _ranked(table)}
        records.append(record)
    json.dump(records, file, indent=2)
    file.write("\n")


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(char, char) for char in text)


def write_latex(table: ComparisonTable, file: TextIO, caption: str | None = None) -> None:
    """An IEEE-style booktabs table: caption above, units in parentheses in the head, best in bold."""
    labels = list(dict.fromkeys(column.label for column in table.columns))
    if caption is None:
        listed = ", ".join(labels[:-1]) + " and " + labels[-1] if len(labels) > 1 else "".join(labels)
        caption = f"Comparison of {listed}"
    layout = _layout(table, latex=True)
    spec = "".join("r" if numeric else "l" for numeric in layout.numeric)
    lines = [
        r"% requires \usepackage{booktabs}",
        r"\begin{table}[!t]",
        r"\centering",
        rf"\caption{{{latex_escape(caption)}}}",
        r"\label{tab:expdb}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(latex_escape(header) for header in layout.headers) + r" \\",
        r"\midrule",
    ]
    for cells in layout.rows:
        texts = []
        for cell in cells:
            text = rf"\textbf{{{latex_escape(cell.text)}}}" if cell.best else latex_escape(cell.text)
            texts.append(f"{text} ({latex_escape(cell.delta)})" if cell.delta else text)
        lines.append(" & ".join(texts) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    file.write("\n".join(lines) + "\n")


def write_table(table: ComparisonTable, format: str, file: TextIO, console: Console | None = None) -> None:
    if format == "rich":
        render_rich(table, console or Console(file=file))
    elif format == "md":
        write_markdown(table, file)
    elif format == "csv":
        write_csv(table, file)
    elif format == "json":
        write_json(table, file)
    else:
        write_latex(table, file)
