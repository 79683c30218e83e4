"""Renderers of the comparison table. Each takes a rich Console or a text file.

Only the `rich` format goes through rich: a rich table of 10,000 rows takes seconds to
lay out, while the plain formats are written line by line.
"""

import csv
import html
import json
from dataclasses import dataclass
from typing import Any, TextIO

from rich.console import Console

from .fit import Column as FitColumn
from .fit import print_table
from .metrics import format_number
from .table import Column, ComparisonTable, GroupRow
from .values import format_value

FORMATS = ("rich", "md", "csv", "json", "latex")
METRIC_PRIORITY, PARAM_PRIORITY, COST_PRIORITY = 1, 2, 3
SPREAD = " ± "  # between a group's mean and its standard deviation


@dataclass
class Cell:
    text: str  # the value as shown ("0.341 ± 0.012"), unescaped
    delta: str = ""  # the change from the baseline ("-0.11", "+3.2%"), or ""
    best: bool = False
    parts: tuple[str, ...] = ()  # where a narrow terminal may fold the text ("0.341", "± 0.012"), if anywhere


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


def _metric_cell(table: ComparisonTable, row, column: Column, latex: bool, spread_shown: bool) -> Cell:
    """`spread_shown`: the table has this column's std, shown in this cell."""
    value = column.value(row)
    if value is None:
        return Cell("--" if latex else "")
    parts = [_number(column, value, latex)]
    if spread_shown:
        spread = row.number(column.key, "std")
        if spread is not None:
            parts.append(SPREAD.lstrip() + _number(column, spread, latex))
    if column.agg == "mean" and table.counted:
        measured = row.number(column.key, "count")
        if measured is not None and measured < row.count:  # the group's n counts cards, not this metric's values
            parts.append(f"(n={measured:.0f})")
    return Cell(" ".join(parts), _delta_text(table, row, column), table.is_best(row, column), tuple(parts))


@dataclass
class Layout:
    """The text formats' table: heads, which columns hold numbers, and the cells, row by row."""

    headers: list[str]
    numeric: list[bool]
    rows: list[list[Cell]]
    priorities: list[int]  # which columns a narrow terminal leaves out first: the highest


def _layout(table: ComparisonTable, latex: bool = False) -> Layout:
    columns = _shown_columns(table)
    missing = "--" if latex else "-"
    headers = ["Card" if latex else "card"] if not table.group_keys else ["Group" if latex else "group"]
    headers += [*table.param_keys, *(["n"] if table.counted else [])]
    headers += [column.header(with_unit=latex) for column in columns]
    numeric = [False] * (1 + len(table.param_keys)) + [True] * (len(headers) - 1 - len(table.param_keys))
    # The card, then the metrics asked for, then the differing parameters, then the costs added unasked.
    priorities = [0, *[PARAM_PRIORITY] * len(table.param_keys), *([METRIC_PRIORITY] if table.counted else [])]
    priorities += [METRIC_PRIORITY if column.requested else COST_PRIORITY for column in columns]
    spreads = {column.key for column in table.columns if column.agg == "std"}
    shown = [(column, column.agg == "mean" and column.key in spreads) for column in columns]
    formatted: dict[tuple, Cell] = {}  # parameters take few distinct values: each is formatted once
    rows = []
    for row in table.rows:
        name = (row.name, "(baseline)") if row is table.baseline else (row.name,)
        cells = [Cell(" ".join(name), parts=name)]
        for key in table.param_keys:
            value = row.params.get(key)
            known = (type(value), value) if not isinstance(value, list) else None
            cell = formatted.get(known) if known else None
            if cell is None:
                cell = Cell(missing if value is None and latex else format_value(value))
                if known:
                    formatted[known] = cell
            cells.append(cell)
        if table.counted and isinstance(row, GroupRow):
            cells.append(Cell(str(row.count)))
        cells += [_metric_cell(table, row, column, latex, spread_shown) for column, spread_shown in shown]
        rows.append(cells)
    return Layout(headers, numeric, rows, priorities)


def _joined(cell: Cell) -> str:
    return f"{cell.text} ({cell.delta})" if cell.delta else cell.text


def render_rich(table: ComparisonTable, console: Console, wide: bool = False) -> None:
    """The table fitted to the console (see expdb.fit), then how many rows were left out, if any."""
    layout = _layout(table)
    columns = []
    for index, (header, numeric, priority) in enumerate(zip(layout.headers, layout.numeric, layout.priorities, strict=True)):
        cells = [row[index] for row in layout.rows]
        columns.append(
            FitColumn(
                header,
                [(*(cell.parts or (cell.text,)), f"({cell.delta})") if cell.delta else cell.parts or cell.text for cell in cells],
                right=numeric,
                priority=priority,
                styles=["bold green" if cell.best else None for cell in cells] if any(cell.best for cell in cells) else None,
            )
        )
    print_table(console, columns, wide=wide)
    hidden = table.total_rows - len(table.rows)
    if hidden > 0:
        console.print(
            f"… {hidden:,} more {'row' if hidden == 1 else 'rows'} not shown (--all shows every row, --limit N the first N)",
            style="dim", markup=False, highlight=False, emoji=False,
        )


def markdown_text(text: object) -> str:
    """User text for a markdown document: on one line, and HTML in it shown as typed, never interpreted."""
    return html.escape(" ".join(str(text).split()), quote=False)


def markdown_table(headers: list[str], rows: list[list[str]], numeric: list[bool] | None = None) -> str:
    """A markdown table, `numeric` columns right-aligned; each cell on one line, its HTML, backslashes and
    pipes escaped, so that every row has as many cells as the header."""
    width = len(headers)
    for row in rows:
        if len(row) != width:
            raise ValueError(f"a markdown row of {len(row)} cells under {width} headers: {row!r}")

    def cell(text: object) -> str:
        return markdown_text(text).replace("\\", "\\\\").replace("|", "\\|")

    def line(texts: list[str]) -> str:
        return "| " + " | ".join(cell(text) for text in texts) + " |\n"

    rule = "|" + "|".join("---:" if right else "---" for right in numeric or [False] * len(headers)) + "|\n"
    return line(headers) + rule + "".join(line(row) for row in rows)


def write_markdown(table: ComparisonTable, file: TextIO) -> None:
    layout = _layout(table)
    rows = [[f"**{_joined(c)}**" if c.best else _joined(c) for c in cells] for cells in layout.rows]
    file.write(markdown_table(layout.headers, rows, layout.numeric))


_AS_IS = frozenset({float, int, str})  # what csv writes as it is: most cells


def _plain(value: object) -> object:
    if value is None:
        return ""
    return ("true" if value else "false") if type(value) is bool else json.dumps(value)


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
    values = [(column.key, column.agg) for column in table.columns]  # looked up once, not per row
    rows = []
    for row in table.rows:
        params = row.params
        line = [row.name, *[params.get(key) for key in table.param_keys]]
        line += [row.count] if table.counted and isinstance(row, GroupRow) else []
        line += [row.number(key, agg) for key, agg in values]
        if with_deltas:
            line += [table.delta(row, column) for column in _ranked(table)]
        rows.append(line)
    return header, rows


def write_csv(table: ComparisonTable, file: TextIO) -> None:
    writer = csv.writer(file, lineterminator="\n")
    header, rows = flat_rows(table)
    writer.writerow(header)
    writer.writerows([value if value.__class__ in _AS_IS else _plain(value) for value in row] for row in rows)


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


def write_table(table: ComparisonTable, format: str, file: TextIO, console: Console | None = None, wide: bool = False) -> None:
    if format == "rich":
        render_rich(table, console or Console(file=file), wide=wide)
    elif format == "md":
        write_markdown(table, file)
    elif format == "csv":
        write_csv(table, file)
    elif format == "json":
        write_json(table, file)
    else:
        write_latex(table, file)
