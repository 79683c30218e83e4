"""Tables that fit the terminal they are printed in, drawn fast.

A view describes its columns (a head, cells, which matter most) and `print_table` lays them
out in the console's width: a cell folds between its parts ("N=5 L=4" onto two lines), never
inside one, so a card name or a number is never cut or split; no column is drawn narrower
than its widest part. When the columns cannot all fit, whole columns are left out, the least
important first, and one line says which and how to see them. `wide` (and a pipe, whose
console is very wide) lays everything out at its natural width.

Rows are written as segments, not through rich's Table: laying out a rich table of 10,000
rows takes seconds.
"""

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions
from rich.segment import Segment
from rich.style import Style

Cell = str | tuple[str, ...]  # one part, or parts that may fold onto separate lines
GAP = 3  # " │ " between columns
EDGE = 2  # a space before the first column and after the last
PROSE_MIN = 12  # a prose column (a note, a reason) is never folded narrower than this


def width_of(text: str) -> int:
    """Terminal cells of `text`: its length when ASCII, as most cells are, which is quick."""
    return len(text) if text.isascii() else cell_len(text)


@dataclass(eq=False)
class Column:
    """One column of a table to fit.

    `priority` 0: always shown; otherwise the column with the highest priority is left out
    first (of equals, the rightmost). `prose`: free text whose words longer than the column
    may be broken; never names or numbers.
    """

    header: str
    cells: Sequence[Cell]
    right: bool = False
    priority: int = 0
    styles: Sequence[str | None] | None = None  # a rich style per cell
    prose: bool = False
    label: str = ""  # what the line of columns left out calls it, when its head alone is unclear
    widest: int = field(init=False, default=0)  # the widest cell on one line
    narrowest: int = field(init=False, default=0)  # the widest part: it must fit on a line

    def __post_init__(self) -> None:
        widest = width_of(self.header)
        narrowest = max((width_of(word) for word in head_words(self.header)), default=0)
        for cell in set(self.cells):  # cells repeat (a parameter's few values): each measured once
            if isinstance(cell, str):
                length = width_of(cell)
                widest, narrowest = max(widest, length), max(narrowest, length)
            elif cell:
                lengths = [width_of(part) for part in cell]
                widest = max(widest, sum(lengths) + len(lengths) - 1)
                narrowest = max(narrowest, *lengths)
        if self.prose:  # folded at any width, but never inside a number
            words = (word for cell in set(self.cells) if isinstance(cell, str) for word in cell.split(" "))
            longest_number = max((width_of(word) for word in words if _is_number(word)), default=0)
            narrowest = max(min(narrowest, max(PROSE_MIN, cell_len(self.header))), longest_number)
        self.widest, self.narrowest = widest, narrowest


# "9223372036854775807", "-4e-3", "1.5e-300,", "264.34K", "46.67ms", "81.8%": not a hash or a date
_NUMBER = re.compile(r"[-+]?(?:\d[\d,_]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?(?:[A-Za-z%]{1,3})?[,;)\]]*")


def _is_number(word: str) -> bool:
    return _NUMBER.fullmatch(word) is not None


def head_words(header: str) -> tuple[str, ...]:
    """What a head folds between: its words, a number kept with the word before it ("bs 8", not "bs" over "8")."""
    words: list[str] = []
    for word in header.split():
        if words and word[0].isdigit():
            words[-1] += f" {word}"
        else:
            words.append(word)
    return tuple(words)


@dataclass
class Fitted:
    columns: list[Column]
    widths: list[int]
    left_out: list[Column]


def _span(widths: Sequence[int]) -> int:
    return sum(widths) + GAP * max(0, len(widths) - 1) + EDGE


def fit(columns: list[Column], width: int | None) -> Fitted:
    """Which columns are shown in `width` characters (None: all, unfolded) and how wide each is."""
    if width is None or _span([column.widest for column in columns]) <= (width or 0):
        return Fitted(columns, [column.widest for column in columns], [])
    kept = list(columns)
    while _span([column.narrowest for column in kept]) > width:
        droppable = [index for index, column in enumerate(kept) if column.priority > 0]
        if not droppable:
            break  # only what is always shown is left: it runs past the edge rather than being cut
        # An empty column goes first, then the least important.
        victim = max(droppable, key=lambda index: (not any(kept[index].cells), kept[index].priority, index))
        kept.pop(victim)
    widths = [column.narrowest for column in kept]
    spare = width - _span(widths)
    # The spare width unfolds the most important columns first.
    for index in sorted(range(len(kept)), key=lambda index: (kept[index].priority, index)):
        if spare <= 0:
            break
        grow = min(spare, kept[index].widest - widths[index])
        widths[index] += grow
        spare -= grow
    shown = {id(column) for column in kept}
    left_out = [column for column in columns if id(column) not in shown and any(column.cells)]
    left_out.sort(key=lambda column: column.priority)  # the most important named first (stable: in screen order)
    return Fitted(kept, widths, left_out)


def _folded(cell: Cell, width: int, prose: bool) -> list[str]:
    """The cell's lines in `width`: parts joined by spaces, folded between them."""
    parts = cell.split(" ") if prose and isinstance(cell, str) else (cell,) if isinstance(cell, str) else cell
    lines: list[str] = []
    line = ""
    for part in parts:
        while prose and width_of(part) > width:  # a word longer than the column: broken, prose only
            if line:
                lines.append(line)
                line = ""
            lines.append(part[:width])
            part = part[width:]
        if not line:
            line = part
        elif width_of(line) + 1 + width_of(part) <= width:
            line = f"{line} {part}"
        else:
            lines.append(line)
            line = part
    lines.append(line)
    return lines


def _pad(text: str, width: int, right: bool) -> str:
    gap = width - width_of(text)
    if gap <= 0:
        return text
    return " " * gap + text if right else text + " " * gap


class _Lines:
    """Segments printed as they are: no wrapping, no cropping, no markup."""

    def __init__(self, segments: list[Segment]) -> None:
        self.segments = segments

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Segment]:
        yield from self.segments


def render(fitted: Fitted, console: Console) -> list[Segment]:
    columns, widths = fitted.columns, fitted.widths
    styles: dict[str, Style] = {}

    def style_of(name: str | None) -> Style | None:
        if not name:
            return None
        if name not in styles:
            styles[name] = console.get_style(name)
        return styles[name]

    bold = Style(bold=True)
    newline = Segment("\n")
    segments: list[Segment] = []
    heads = [_folded(head_words(column.header) or ("",), width, False) for column, width in zip(columns, widths, strict=True)]
    for index in range(max(len(head) for head in heads)):
        texts = [
            _pad(head[index] if index < len(head) else "", width, column.right)
            for head, width, column in zip(heads, widths, columns, strict=True)
        ]
        segments += [Segment(" "), Segment(" ┃ ".join(texts).rstrip(), bold), newline]
    segments += [Segment("╇".join("━" * (width + 2) for width in widths)), newline]

    count = len(columns[0].cells) if columns else 0
    for row in range(count):
        cells = []
        for column, width in zip(columns, widths, strict=True):
            cell = column.cells[row]
            if isinstance(cell, str) and not column.prose and width_of(cell) <= width:
                cells.append([cell])
            else:
                cells.append(_folded(cell, width, column.prose))
        height = max(len(lines) for lines in cells)
        for index in range(height):
            pending = " "
            for position, (column, width, lines) in enumerate(zip(columns, widths, cells, strict=True)):
                text = _pad(lines[index] if index < len(lines) else "", width, column.right)
                if position:
                    pending += " │ "
                style = style_of(column.styles[row]) if column.styles else None
                if style is None:
                    pending += text
                else:
                    segments += [Segment(pending), Segment(text, style)]
                    pending = ""
            segments += [Segment(pending.rstrip()), newline]
    return segments


def print_table(console: Console, columns: list[Column], wide: bool = False, title: str | None = None) -> list[Column]:
    """Fit `columns` to the console (all of them with `wide`), print them; the columns left out.

    A line after the table names the columns left out for width (an empty one goes unsaid), and
    says how to see them.
    """
    fitted = fit(columns, None if wide else console.width)
    if title:
        console.print(title, style="italic", markup=False, highlight=False, emoji=False)
    console.print(_Lines(render(fitted, console)), crop=False, end="")
    if fitted.left_out:
        line = left_out_line(fitted.left_out, console.width)
        console.print(line, style="dim", markup=False, highlight=False, emoji=False, crop=False)
    return fitted.left_out


def left_out_line(left_out: list[Column], width: int) -> str:
    """One line: which columns did not fit, and how to see them; the names cut short to keep it one line."""
    how = " (--wide or a pipe shows them)"
    names = [" ".join((column.label or column.header).split()) for column in left_out]
    for shown in range(len(names), 0, -1):
        rest = len(names) - shown
        line = f"left out for width: {', '.join(names[:shown])}" + (f" and {rest} more" if rest else "") + how
        if cell_len(line) <= width:
            return line
    return f"left out for width: {len(names)} column{'s' if len(names) > 1 else ''}{how}"
