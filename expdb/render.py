"""Renderers of the comparison table. Each takes a rich Console or a text file.

Only the `rich` format goes through rich: a rich table of 10,000 rows takes seconds to
lay out, while the plain formats are written line by line.
"""

import csv
import json
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .metrics import MetricDef, format_number
from .table import COST_KEYS, ComparisonTable, Row
from .values import format_value

FORMATS = ("rich", "md", "csv", "json", "latex")


def _delta_text(table: ComparisonTable, row: Row, metric: MetricDef) -> str:
    delta = table.delta(row, metric.key)
    if delta is None:
        return ""
    if metric.key in COST_KEYS:
        return f"{delta:+.1f}%"
    sign = "+" if delta >= 0 else "-"
    return sign + format_number(abs(delta), metric.format)


def _metric_cell(table: ComparisonTable, row: Row, metric: MetricDef) -> str:
    text = metric.cell(row.values.get(metric.key))
    delta = _delta_text(table, row, metric)
    return f"{text} ({delta})" if delta else text


def _is_best(table: ComparisonTable, row: Row, metric: MetricDef) -> bool:
    value = row.values.get(metric.key)
    return value is not None and table.best.get(metric.key) == value and len(table.rows) > 1


def _name_cell(table: ComparisonTable, row: Row) -> str:
    return f"{row.card.name} (baseline)" if row is table.baseline else row.card.name


def _headers(table: ComparisonTable) -> list[str]:
    return ["card", *table.param_keys, *(metric.header(with_unit=False) for metric in table.metrics)]


def _text_rows(table: ComparisonTable) -> list[list[str]]:
    return [
        [
            _name_cell(table, row),
            *(format_value(row.card.params.get(key)) for key in table.param_keys),
            *(_metric_cell(table, row, metric) for metric in table.metrics),
        ]
        for row in table.rows
    ]


def render_rich(table: ComparisonTable, console: Console) -> None:
    grid = Table(show_edge=False, header_style="bold")
    for index, header in enumerate(_headers(table)):
        grid.add_column(escape(header), justify="left" if index <= len(table.param_keys) else "right", no_wrap=index == 0)
    best_columns = range(1 + len(table.param_keys), 1 + len(table.param_keys) + len(table.metrics))
    for row, cells in zip(table.rows, _text_rows(table)):
        styled = [escape(cell) for cell in cells]
        for column, metric in zip(best_columns, table.metrics):
            if _is_best(table, row, metric):
                styled[column] = f"[bold green]{styled[column]}[/]"
        grid.add_row(*styled)
    console.print(grid)
    if not table.rows:
        console.print("no card matches" if table.filtered else "no card has these metrics yet")


def write_markdown(table: ComparisonTable, file: TextIO) -> None:
    headers = _headers(table)
    file.write("| " + " | ".join(headers) + " |\n")
    file.write("|" + "|".join("---" if i <= len(table.param_keys) else "---:" for i in range(len(headers))) + "|\n")
    for row, cells in zip(table.rows, _text_rows(table)):
        for offset, metric in enumerate(table.metrics):
            column = 1 + len(table.param_keys) + offset
            if _is_best(table, row, metric):
                cells[column] = f"**{cells[column]}**"
        file.write("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |\n")


def _column_key(metric: MetricDef) -> str:
    """Machine-readable column names carry the unit: `cost_time_ms`, `flops_mac`."""
    return f"{metric.key}_{metric.unit.lower()}" if metric.unit else metric.key


def _delta_key(metric: MetricDef) -> str:
    return f"{metric.key}_delta_pct" if metric.key in COST_KEYS else f"{metric.key}_delta"


def _plain(value) -> object:
    return "" if value is None else json.dumps(value) if isinstance(value, (list, bool)) else value


def write_csv(table: ComparisonTable, file: TextIO) -> None:
    writer = csv.writer(file, lineterminator="\n")
    with_deltas = table.baseline is not None
    header = ["card", *table.param_keys, *(_column_key(m) for m in table.metrics)]
    if with_deltas:
        header += [_delta_key(m) for m in table.metrics]
    writer.writerow(header)
    for row in table.rows:
        line = [row.card.name, *(_plain(row.card.params.get(k)) for k in table.param_keys)]
        line += [_plain(row.values.get(m.key)) for m in table.metrics]
        if with_deltas:
            line += [_plain(table.delta(row, m.key)) for m in table.metrics]
        writer.writerow(line)


def write_json(table: ComparisonTable, file: TextIO) -> None:
    records = []
    for row in table.rows:
        record = {
            "card": row.card.name,
            "status": row.card.status,
            "params": {key: row.card.params.get(key) for key in table.param_keys},
            "metrics": {_column_key(m): row.values.get(m.key) for m in table.metrics},
        }
        if table.baseline is not None:
            record["baseline"] = row is table.baseline
            record["deltas"] = {_delta_key(m): table.delta(row, m.key) for m in table.metrics}
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
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(char, char) for char in text)


def write_latex(table: ComparisonTable, file: TextIO, caption: str | None = None) -> None:
    """An IEEE-style booktabs table: caption above, units in parentheses in the head, best in bold."""
    labels = [metric.label for metric in table.metrics]
    if caption is None:
        listed = ", ".join(labels[:-1]) + " and " + labels[-1] if len(labels) > 1 else "".join(labels)
        caption = f"Comparison of {listed}"
    spec = "l" * (1 + len(table.param_keys)) + "r" * len(table.metrics)
    headers = ["Card", *table.param_keys, *(metric.header(with_unit=True) for metric in table.metrics)]
    lines = [
        r"% requires \usepackage{booktabs}",
        r"\begin{table}[!t]",
        r"\centering",
        rf"\caption{{{latex_escape(caption)}}}",
        r"\label{tab:expdb}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(latex_escape(header) for header in headers) + r" \\",
        r"\midrule",
    ]
    for row in table.rows:
        cells = [latex_escape(_name_cell(table, row))]
        for key in table.param_keys:
            value = row.card.params.get(key)
            cells.append("--" if value is None else latex_escape(format_value(value)))
        for metric in table.metrics:
            value = row.values.get(metric.key)
            text = latex_escape(format_number(value, metric.format)) if value is not None else "--"
            delta = _delta_text(table, row, metric)
            if _is_best(table, row, metric):
                text = rf"\textbf{{{text}}}"
            cells.append(f"{text} ({latex_escape(delta)})" if delta else text)
        lines.append(" & ".join(cells) + r" \\")
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
