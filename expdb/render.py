"""Renderers of the comparison table. Each takes a rich Console or a text file.

Only the `rich` format goes through rich: a rich table of 10,000 rows takes seconds to
lay out, while the plain formats are written line by line.
"""

import csv
import html
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

from . import forked
from .conditions import MARK_NAMES
from .fit import Column as FitColumn
from .fit import print_table
from .metrics import format_interval, format_number, format_with_spread
from .table import SIGNIFICANT, Column, ComparisonTable, GroupRow, footnotes
from .values import format_value, in_words

FORMATS = ("rich", "md", "csv", "json", "latex")
METRIC_PRIORITY, PARAM_PRIORITY, COST_PRIORITY = 1, 2, 3


@dataclass
class Cell:
    text: str  # the value as shown ("0.341 ± 0.012"), unescaped
    delta: str = ""  # the change from the baseline ("-0.11", "+3.2%"), or ""
    best: bool = False
    parts: tuple[str, ...] = ()  # where a narrow terminal may fold the text ("0.341", "± 0.012"), if anywhere
    math: bool = False  # `text` is LaTeX already ("$0.308 \\pm 0.008$"), not to be escaped


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


def _metric_cell(table: ComparisonTable, row, column: Column, latex: bool, marks_best: bool = True) -> Cell:
    value = column.value(row)
    if value is None:
        return Cell("--" if latex else "")
    text = _number(column, value, latex)
    spread = _spread(table, row, column)
    if spread:
        text = format_with_spread(column.metric, value, spread, latex)
    if column.agg == "mean" and table.counted:
        measured = row.number(column.key, "count")
        if measured is not None and measured < row.count:  # the group's n counts cards, not this metric's values
            text += f" (n={measured:.0f})"
    math = latex and bool(spread)
    if column.agg in ("", "mean"):  # noisy, shared: explained under the table
        marks = row.marks.get(column.key, "")
        text += latex_escape(marks) if math else marks
    delta = "" if table.grouped and column.agg == "mean" else _delta_text(table, row, column)
    return Cell(text, delta, marks_best and table.is_best(row, column), math=math)


def _name_cell(table: ComparisonTable, row) -> str:
    name = row.name + (" (baseline)" if row is table.baseline else "")
    return f"{name} (invalid)" if row.invalid_reason and not table.grouped else name  # the reason: under the table


# -- folded rows: spreads and tests against the baseline -------------------------------------


def _spread(table: ComparisonTable, row, column: Column) -> float | None:
    """What follows a folded row's mean: its std, or its 95% CI half-width (`table.spread`)."""
    if column.agg != "mean" or not any(c.agg == "std" and c.key == column.key for c in table.columns):
        return None
    std = row.number(column.key, "std")
    if not std:
        return None
    if table.spread == "ci":
        from .stats import ci_half_width

        return ci_half_width(std, int(row.number(column.key, "count")))
    return std


def _tested(table: ComparisonTable) -> list[Column]:
    """The mean columns that get a column of differences to the baseline."""
    if table.baseline is None or not table.grouped:
        return []
    return [column for column in table.columns if column.agg == "mean" and table.differences and any(
        table.difference(row, column) for row in table.rows)]


def _test_header(table: ComparisonTable) -> str:
    """Short, as it stands right after the metric's own column."""
    return f"vs {table.baseline.name}"  # type: ignore[union-attr]


def _test_cell(table: ComparisonTable, row, column: Column, latex: bool) -> Cell:
    difference = table.difference(row, column)
    if difference is None:
        return Cell("")
    if not difference.tested:
        number = difference.difference
        shown = format_number(number, column.metric.format) if latex else column.metric.cell(number)
        return Cell(f"{'+' if difference.difference >= 0 else ''}{shown} ({difference.reason})")
    text = format_interval(column.metric, difference.difference, difference.low, difference.high, latex)  # type: ignore[arg-type]
    if difference.significant:
        text = text[:-1] + "^\\dagger$" if latex else f"{text} {SIGNIFICANT}"
    elif not latex:
        text += "  "  # the marker's room: right-aligned intervals line up
    return Cell(text, math=latex)


@dataclass
class Layout:
    """The text formats' table: heads, which columns hold numbers, and the cells, row by row."""

    headers: list[str]
    numeric: list[bool]
    rows: list[list[Cell]]
    priorities: list[int]  # which columns a narrow terminal leaves out first: the highest
    dimmed: list[bool]  # per row: an invalid card, shown greyed
    notes: list[str]  # printed under the table
    # per head: the metric column it shows, and whether it holds that column's test against the baseline;
    # None for the name, parameters and n (what the UI sorts each head by)
    sources: list[tuple[Column, bool] | None]


def _first_header(table: ComparisonTable, latex: bool) -> str:
    head = "group" if table.group_keys else "variant" if table.over else "card"
    return head.capitalize() if latex else head


def _layout(table: ComparisonTable, latex: bool = False, marks_best: bool = True) -> Layout:
    """`marks_best`: False leaves every cell unmarked, without the tests that find the best of folded rows."""
    columns = _shown_columns(table)
    tested = _tested(table)
    missing = "--" if latex else "-"
    headers = [_first_header(table, latex)]
    headers += [*table.param_keys, *(["n"] if table.counted else [])]
    # The card, then the metrics asked for (and their tests), then the differing parameters, then the costs added unasked.
    priorities = [0, *[PARAM_PRIORITY] * len(table.param_keys), *([METRIC_PRIORITY] if table.counted else [])]
    sources: list[tuple[Column, bool] | None] = [None] * len(headers)
    for column in columns:
        priority = METRIC_PRIORITY if column.requested else COST_PRIORITY  # a column's test goes with it
        headers.append(column.header(with_unit=latex))
        priorities.append(priority)
        sources.append((column, False))
        if column in tested:
            headers.append(_test_header(table))
            priorities.append(priority)
            sources.append((column, True))
    numeric = [False] * (1 + len(table.param_keys)) + [True] * (len(headers) - 1 - len(table.param_keys))
    formatted: dict[tuple, Cell] = {}  # parameters take few distinct values: each is formatted once
    rows = []
    for row in table.rows:
        name = _name_cell(table, row)
        # "cvt (baseline)" may fold between the name and what follows it, never inside the name.
        cells = [Cell(name, parts=tuple(part if index == 0 else f"({part}" for index, part in enumerate(name.split(" ("))))]
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
        for column in columns:
            cells.append(_metric_cell(table, row, column, latex, marks_best))
            if column in tested:
                cells.append(_test_cell(table, row, column, latex))
        rows.append(cells)
    return Layout(
        headers, numeric, rows, priorities, [bool(row.invalid_reason) for row in table.rows], footnotes(table), sources
    )


def _joined(cell: Cell) -> str:
    return f"{cell.text} ({cell.delta})" if cell.delta else cell.text


def _parts(cell: Cell) -> str | tuple[str, ...]:
    """What a narrow terminal may fold onto lines of their own: a name and "(baseline)", a value and its delta."""
    if cell.delta:
        return (*(cell.parts or (cell.text,)), f"({cell.delta})")
    return cell.parts or cell.text


def render_rich(table: ComparisonTable, console: Console, wide: bool = False) -> None:
    """The table fitted to the console (see expdb.fit), then how many rows were left out, if any."""
    # Without a color system (piped) rich writes no style: the best need not be worked out (scipy's tests, folded).
    layout = _layout(table, marks_best=console.color_system is not None or console.record)
    columns = []
    rows = list(zip(layout.rows, layout.dimmed, strict=True))
    heads = zip(layout.headers, layout.numeric, layout.priorities, layout.sources, strict=True)
    for index, (header, numeric, priority, source) in enumerate(heads):
        cells = [(row[index], dimmed) for row, dimmed in rows]
        columns.append(
            FitColumn(
                header,
                [_parts(cell) for cell, _ in cells],
                right=numeric,
                priority=priority,
                styles=["bold green" if cell.best else "dim" if dimmed else None for cell, dimmed in cells],
                label=f"{source[0].header(with_unit=False)} {header}" if source and source[1] else "",  # "Params vs cvt"
            )
        )
    print_table(console, columns, wide=wide)
    for note in layout.notes:
        console.print(Text(note, style="dim"))
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
    if layout.notes:
        file.write("\n" + "".join(f"{note}  \n" for note in layout.notes[:-1]) + layout.notes[-1] + "\n")


_AS_IS = frozenset({float, int, str, type(None)})  # what csv writes as it is (None as an empty cell): most cells


def _csv_text() -> Callable[[object], str]:
    """How csv writes a value it does not write as it is: booleans as true/false, lists as JSON. The few distinct
    lists of a study are encoded once each, known by their repr (which, unlike ==, tells [1] from [True] and [1.0])."""
    encoded: dict[str, str] = {}

    def plain(value: object) -> str:
        if value.__class__ is bool:
            return "true" if value else "false"
        known = repr(value)
        if known not in encoded:
            encoded[known] = json.dumps(value)
        return encoded[known]

    return plain


def _ranked(table: ComparisonTable) -> list[Column]:
    """The columns that have deltas to the baseline."""
    return [column for column in table.columns if column.ranked]


def flat_header(table: ComparisonTable) -> list[str]:
    """The names of `flat_rows`' columns."""
    return flat_rows(table, slice(0))[0]


def flat_rows(table: ComparisonTable, part: slice = slice(None)) -> tuple[list[str], list[list]]:
    """The table as raw values, one column per value (`iou50`; for groups `iou50_mean`, `iou50_std`, `n`):
    what csv writes and what a DataFrame holds. `part`: only these rows, under the whole table's header."""
    with_deltas = table.baseline is not None
    header = [_first_header(table, False), *table.param_keys, *(["n"] if table.counted else [])]
    header += [column.name for column in table.columns]
    if with_deltas:
        header += [column.delta_name for column in _ranked(table)]
    header += [name for column in _means(table) for name in _raw_names(table, column)]
    shows_invalid = any(row.invalid_reason for row in table.rows)
    header += ["invalid_reason"] if shows_invalid else []
    # Looked up once, not per row: a table may have 100,000 rows.
    values = [(column.key, column.agg) for column in table.columns]
    keys = [key for key, _ in values]
    param_keys, ranked, means = table.param_keys, _ranked(table), _means(table)
    rows = []
    for row in table.rows[part]:
        line = [row.name, *map(row.params.get, param_keys)]
        if isinstance(row, GroupRow):
            line += [row.count] if table.counted else []
            line += [row.number(key, agg) for key, agg in values]
        else:  # a card's row: its number of a column is its value
            line += map(row.values.get, keys)
        if with_deltas:
            line += [table.delta(row, column) for column in ranked]
        if means:
            line += [value for column in means for value in _raw_values(table, row, column)]
        if shows_invalid:
            line.append(row.invalid_reason)
        rows.append(line)
    return header, rows


def _means(table: ComparisonTable) -> list[Column]:
    return [column for column in table.columns if column.agg == "mean"] if table.grouped else []


def _raw_names(table: ComparisonTable, column: Column) -> list[str]:
    """Folded rows' raw statistics of a metric: n, the 95% CI of the mean, and against the baseline the
    CI of the difference, the p-value before and after Holm's correction, and which test."""
    names = [f"{column.key}_n", f"{column.key}_ci_low", f"{column.key}_ci_high"]
    if table.baseline is not None:
        names += [f"{column.key}_{name}" for name in ("delta_ci_low", "delta_ci_high", "p", "p_holm", "test")]
    return names


def _raw_values(table: ComparisonTable, row, column: Column) -> list:
    from .stats import ci_half_width

    mean, std, n = row.number(column.key, "mean"), row.number(column.key, "std"), row.number(column.key, "count")
    half = ci_half_width(std, int(n)) if std is not None and n else None
    values = [int(n) if n is not None else None, *((mean - half, mean + half) if half is not None else (None, None))]
    if table.baseline is not None:
        found = table.difference(row, column)
        values += [found.low, found.high, found.p, found.p_adjusted, found.test] if found else [None] * 5
    return values


def write_csv(table: ComparisonTable, file: TextIO) -> None:
    csv.writer(file, lineterminator="\n").writerow(flat_header(table))
    if not forked.worth_a_child(len(table.rows)):
        _write_csv_rows(table, slice(None), file)
        return
    half = len(table.rows) // 2
    with forked.in_child(partial(_csv_rows_text, table, slice(half, None))) as second_half:
        _write_csv_rows(table, slice(0, half), file)  # while the child writes the second half
        file.write(second_half())


def _csv_rows_text(table: ComparisonTable, part: slice) -> str:
    text = io.StringIO()
    _write_csv_rows(table, part, text)
    return text.getvalue()


def _write_csv_rows(table: ComparisonTable, part: slice, file: TextIO) -> None:
    _, rows = flat_rows(table, part)
    plain = _csv_text()
    # Of 3 million cells, only those of the columns that hold a boolean or a list are looked at one by one.
    # Which columns: from the rows' few distinct sequences of types, read row by row, as rows lie in memory.
    signatures = {(*map(type, line),) for line in rows}
    for index in sorted({index for types in signatures for index, kind in enumerate(types) if kind not in _AS_IS}):
        for line in rows:
            value = line[index]
            if value.__class__ not in _AS_IS:
                line[index] = plain(value)
    csv.writer(file, lineterminator="\n").writerows(rows)


def write_json(table: ComparisonTable, file: TextIO) -> None:
    records = []
    for row in table.rows:
        record: dict[str, Any]
        if isinstance(row, GroupRow):
            record = {_first_header(table, False): row.name, "cards": [member.name for member in row.rows]}
            if table.counted:
                record["n"] = row.count
        else:
            record = {"card": row.name, "status": row.card.status}
        record["params"] = {key: row.params.get(key) for key in table.param_keys}
        record["metrics"] = {column.name: column.value(row) for column in table.columns}
        if row.marks:
            record["marks"] = {key: [MARK_NAMES[mark] for mark in marks] for key, marks in row.marks.items()}
        if table.baseline is not None:
            record["baseline"] = row is table.baseline
            record["deltas"] = {column.delta_name: table.delta(row, column) for column in _ranked(table)}
        if _means(table):
            record["statistics"] = {
                name: value
                for column in _means(table)
                for name, value in zip(_raw_names(table, column), _raw_values(table, row, column), strict=True)
            }
        if row.invalid_reason:
            record["invalid_reason"] = row.invalid_reason
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
    "†": r"$^\dagger$",
    "‡": r"\textsuperscript{\ddag}",
    "§": r"\textsuperscript{\S}",
    "≥": r"$\geq$",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(char, char) for char in text)


def write_latex(table: ComparisonTable, file: TextIO, caption: str | None = None) -> None:
    """An IEEE-style booktabs table: caption above, units in parentheses in the head, best in bold."""
    labels = list(dict.fromkeys(column.label for column in table.columns))
    if caption is None:
        caption = f"Comparison of {in_words(labels)}"
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
            text = cell.text if cell.math else latex_escape(cell.text)
            if cell.best:  # \textbf does not reach into math
                text = rf"{{\boldmath {text}}}" if cell.math else rf"\textbf{{{text}}}"
            texts.append(f"{text} ({latex_escape(cell.delta)})" if cell.delta else text)
        lines.append(" & ".join(texts) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [rf"\par\smallskip{{\footnotesize {latex_escape(note)}}}" for note in layout.notes]
    lines.append(r"\end{table}")
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
