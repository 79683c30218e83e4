"""What a person sees in a real terminal: every table view run in a pseudo-terminal of 80 and 120
columns fits it, cuts no card name or number, and says what it left out; user text is shown as typed."""

import fcntl
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios

import pytest
from conftest import EXAMPLE_DB

from expdb.fit import width_of

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
LEFT_OUT = re.compile(r"^left out for width: (.*) \(--wide or a pipe shows them\)$", re.M)


def screen(args: list[str], columns: int, rows: int = 40, cwd=None) -> str:
    """`expdb ARGS` in a pseudo-terminal of this size, as the terminal received it (colours removed)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES", "EXPDB_DB", "NO_COLOR")}
    env["TERM"] = "xterm-256color"
    process = subprocess.Popen(
        [sys.executable, "-m", "expdb", *args], stdin=terminal, stdout=terminal, stderr=terminal, cwd=cwd, env=env
    )
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process has ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=60)
    os.close(controller)
    return ANSI.sub("", b"".join(chunks).decode()).replace("\r\n", "\n")


def piped(args: list[str], cwd=None) -> str:
    """`expdb ARGS` with its output piped: never cut."""
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES", "EXPDB_DB")}
    result = subprocess.run([sys.executable, "-m", "expdb", *args], capture_output=True, text=True, cwd=cwd, env=env, check=True)
    return result.stdout


def parse(text: str, names: set[str] | None = None) -> tuple[list[str], dict[str, dict[str, str]]]:
    """A drawn table as heads and {first cell: {head: cell}}, the lines a head or a cell folds onto joined by
    spaces. A row starts with one of `names` (default: each line is a row, as in a pipe)."""
    lines = text.splitlines()
    rule = next(index for index, line in enumerate(lines) if line.startswith("━"))
    head_lines = [[part.strip() for part in line.split("┃")] for line in lines[:rule] if "┃" in line]
    heads = [" ".join(part for part in column if part) for column in zip(*head_lines, strict=True)]
    rows: list[list[list[str]]] = []
    for line in lines[rule + 1 :]:
        if "│" not in line:
            break
        cells = [part.strip() for part in line.split("│")]
        cells += [""] * (len(heads) - len(cells))  # an empty last cell is not drawn
        if names is None or cells[0] in names or not rows:
            rows.append([[cell] for cell in cells])
        else:
            for column, cell in zip(rows[-1], cells, strict=True):
                column.append(cell)
    table = {}
    for row in rows:
        joined = [" ".join(part for part in column if part) for column in row]
        table[joined[0]] = dict(zip(heads, joined, strict=True))
    return heads, table


def left_out(text: str) -> list[str]:
    found = LEFT_OUT.search(text)
    return found.group(1).split(", ") if found else []


@pytest.fixture
def example(tmp_path):
    target = tmp_path / "example.db"
    shutil.copyfile(EXAMPLE_DB, target)
    return str(target)


VIEWS = [
    ["table", "-m", "iou50"],
    ["table", "-m", "iou50", "--baseline", "cvt"],
    ["table"],
    ["list"],
]


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("view", VIEWS, ids=" ".join)
def test_a_table_fits_the_terminal_and_cuts_nothing(example, view, columns):
    shown = screen([*view, "--db", example], columns)
    whole = piped([*view, "--db", example])
    assert all(width_of(line) <= columns for line in shown.splitlines()), shown
    assert "…" not in shown.replace("… ", "")  # the "… N more" line aside, nothing is cut short
    all_heads, all_rows = parse(whole)
    heads, rows = parse(shown, {name.split()[0] for name in all_rows})
    assert all(heads), shown  # no column without a head, none of zero width
    # Every card is there, every cell as it is in full; what is missing is said.
    assert rows == {name: {head: cells[head] for head in heads} for name, cells in all_rows.items()}
    # An empty column may go unsaid.
    missing = [head for head in all_heads if head not in heads and any(cells[head] for cells in all_rows.values())]
    said = left_out(shown)
    assert said == missing or (said and said[-1].endswith("more") and missing[: len(said) - 1] == said[:-1])
    assert heads[0] == all_heads[0] == "card"


def test_120_columns_show_the_researchers_whole_table(example):
    shown = screen(["table", "-m", "iou50", "--db", example], 120)
    heads, _ = parse(shown)
    assert heads == ["card", "N", "L", "shape", "shared", "lr", "IOU@0.50", "Params", "FLOPs (fvcore, MAC)", "Cost-Time"]
    assert not left_out(shown)


def test_at_80_columns_the_costs_go_before_the_parameters_and_the_metric(example):
    heads, _ = parse(screen(["table", "-m", "iou50", "--baseline", "cvt", "--db", example], 80))
    assert heads[:7] == ["card", "N", "L", "shape", "shared", "lr", "IOU@0.50"]
    heads, _ = parse(screen(["table", "-m", "iou50", "--baseline", "cvt", "--db", example], 50))
    assert heads[0] == "card" and "IOU@0.50" in heads and "Cost-Time" not in heads


def test_wide_lays_every_column_out_past_the_edge(example):
    shown = screen(["table", "-m", "iou50", "--baseline", "cvt", "--wide", "--db", example], 80)
    assert parse(shown) == parse(piped(["table", "-m", "iou50", "--baseline", "cvt", "--db", example]))  # one line a row
    assert not left_out(shown)
    assert max(width_of(line) for line in shown.splitlines()) > 80


def test_list_never_splits_a_parameter(example):
    shown = screen(["list", "--db", example], 80)
    _, rows = parse(shown, set(parse(piped(["list", "--db", example]))[1]))
    assert rows["cvt"]["params"] == "steps=100000 wd=1e-7"
    assert rows["cvt_io_v1_1"]["params"] == "N=10 L=6 shape=bndhw shared=true lr=4e-3"
    for line in shown.splitlines():
        if "│" in line:
            params = line.split("│")[3].split()
            assert all("=" in part for part in params), line  # each a whole KEY=VALUE


@pytest.mark.parametrize(
    "view",
    [
        ["show", "cvt_io_v2_6"], ["show", "cvt"], ["diff", "cvt", "cvt_io_v2_6"], ["compare", "cvt_io_v1_1", "cvt_io_v2_6"],
        ["queue"],
    ],
    ids=" ".join,
)
def test_the_other_views_fit_80_columns(example, view):
    shown = screen([*view, "--db", example], 80)
    assert all(width_of(line) <= 80 for line in shown.splitlines()), shown
    assert "…" not in shown


def test_user_text_is_shown_as_typed(tmp_path):
    db = str(tmp_path / "typed.db")
    assert piped(["new", "x", "--shape", ":x:", "--note", ":bug: [bold]not bold[/] a:b:3", "--db", db])
    piped(["new", "y", "--from", "x", "--path", "/runs/[b]/:smile:", "--db", db])
    shown = screen(["show", "x", "--db", db], 80)
    assert ":bug: [bold]not bold[/] a:b:3" in shown and ":x:" in shown
    listed = screen(["list", "--db", db], 80)
    assert "shape=:x:" in listed and "path=/runs/[b]/:smile:" in listed
    assert ":smile:" in screen(["diff", "x", "y", "--db", db], 80)
    assert "'nope:b:3'" in screen(["show", "nope:b:3", "--db", db], 80)


def test_help_is_not_cut_at_80_columns():
    for command in (["--help"], ["run", "--help"], ["table", "--help"]):
        shown = screen(command, 80)
        assert "…" not in shown and "Usage" in shown
        assert all(width_of(line) <= 80 for line in shown.splitlines()), shown
