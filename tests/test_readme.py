"""The README is executed, the way sqlite-utils checks its documentation: every command of every ```sh block,
in order, in one fresh folder (with a copy of the example study), exits as its comment says (0, or `# exits N`).

A block fenced ```sh no-run is shown but not run (installing, a GPU, Slurm, a PostgreSQL server). Long trainings
are shortened with EXPDB_MAX_STEPS, which the built-in runner honours and the README documents.
"""

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
SHELLS = {"sh", "bash", "shell"}
NO_RUN = "no-run"
MAX_STEPS = "10"  # blowup (lr 10) diverges at step 2: the tour's `# exits 1` still holds
_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_EXITS = re.compile(r"#.*\bexits (\d+)\b")


@dataclass
class Command:
    line: int  # in the README
    text: str
    expected: int


def shell_blocks(text: str) -> list[tuple[int, bool, str]]:
    """(line of the fence, whether it runs, body) of every fenced shell block, in order."""
    blocks = []
    for match in _FENCE.finditer(text):
        info = match[1].split()
        if info and info[0] in SHELLS:
            blocks.append((text.count("\n", 0, match.start()) + 1, NO_RUN not in info[1:], match[2]))
    return blocks


def commands_of(first_line: int, body: str) -> list[Command]:
    """The block's commands: a line each (a line ending in a backslash goes on), comments and blank lines skipped."""
    found, pending, start = [], "", 0
    for offset, line in enumerate(body.splitlines(), start=first_line + 1):
        if not pending:
            start = offset
            if not line.strip() or line.lstrip().startswith("#"):
                continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = pending + line
        pending = ""
        exits = _EXITS.search(text)
        found.append(Command(start, text, int(exits[1]) if exits else 0))
    return found


def readme_commands() -> list[Command]:
    return [
        command
        for line, runs, body in shell_blocks(README.read_text(encoding="utf-8"))
        if runs
        for command in commands_of(line, body)
    ]


def test_the_parser_finds_blocks_commands_and_exit_statuses():
    text = (
        "intro\n```sh\nexpdb new a   # a card\n# a comment\n\nexpdb run a \\\n  --seed 1   # exits 1: diverged\n```\n"
        "```sh no-run\npip install x\n```\n```python\nimport expdb\n```\n```\nexpdb output, not a command\n```\n"
    )
    blocks = shell_blocks(text)
    assert [(line, runs) for line, runs, _ in blocks] == [(2, True), (9, False)]
    commands = commands_of(blocks[0][0], blocks[0][2])
    assert [(c.line, c.text, c.expected) for c in commands] == [
        (3, "expdb new a   # a card", 0),
        (6, "expdb run a    --seed 1   # exits 1: diverged", 1),
    ]


def test_the_readme_has_a_tour_to_run():
    commands = readme_commands()
    assert len(commands) > 30 and any(c.text.startswith("expdb run ") for c in commands)


@pytest.fixture
def shim(tmp_path):
    """`expdb` on the PATH as the expdb under test (this checkout or the installed package)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "expdb"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m expdb "$@"\n')
    script.chmod(0o755)
    return folder


def test_every_command_of_the_readme_runs_as_written(tmp_path, shim):
    folder = tmp_path / "tour"
    folder.mkdir()
    shutil.copyfile(REPO / "experiments.db.example", folder / "experiments.db.example")
    env = {key: value for key, value in os.environ.items() if not key.startswith("EXPDB_")}
    env.update(PATH=f"{shim}{os.pathsep}{env.get('PATH', '')}", EXPDB_MAX_STEPS=MAX_STEPS, COLUMNS="120")
    for command in readme_commands():
        done = subprocess.run(
            ["bash", "-c", command.text], cwd=folder, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
            timeout=900,
        )
        assert done.returncode == command.expected, (
            f"README.md line {command.line}: `{command.text}` exited {done.returncode}, not {command.expected}\n"
            f"stdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-2000:]}"
        )


def test_every_command_of_the_readme_is_in_a_block_this_test_sees():
    """A command shown as an indented block would be shown but never run."""
    text, outside, fenced = README.read_text(encoding="utf-8"), [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r" {4}(expdb|python|pip) ", line):
            outside.append(f"README.md line {number}: {line.strip()}")
    assert outside == []


def test_the_quoted_table_is_what_the_command_prints(tmp_path):
    """The README quotes the first table of the tour as it prints, piped."""
    text = README.read_text(encoding="utf-8")
    command = "expdb table --metric iou50 --db experiments.db.example"
    quoted = re.search(r"The first prints \(piped, so at full width\):\n\n```\n(.*?)```", text, re.DOTALL)
    assert quoted and f"\n{command}\n" in text[: quoted.start()]
    shutil.copyfile(REPO / "experiments.db.example", tmp_path / "experiments.db.example")
    env = {key: value for key, value in os.environ.items() if not key.startswith("EXPDB_")}
    done = subprocess.run(
        [sys.executable, "-m", "expdb", *command.split()[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout == quoted[1]
