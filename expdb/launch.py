"""Launching a card: find what trains it (a runner or a shell command), run it, record it."""

import importlib
import os
import shlex
import shutil
import string
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from typing import TextIO

from .cards import Card
from .errors import ExpdbError
from .logparse import LineParser, make_parser
from .runs import Run

Runner = Callable[[dict, Run], None]


def builtin_runners() -> list[str]:
    return sorted(
        entry.name[:-3]
        for entry in files("expdb.runners").iterdir()
        if entry.name.endswith(".py") and not entry.name.startswith("_")
    )


def resolve_runner(spec: str) -> Runner:
    """A built-in runner by name (`cvt_io`), or `package.module:function` importable from here."""
    if ":" in spec:
        module_name, _, function_name = spec.partition(":")
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # like `python -m`: the user's own modules, from where they run
    elif spec in builtin_runners():
        module_name, function_name = f"expdb.runners.{spec}", "run"
    else:
        raise ExpdbError(
            f"unknown runner {spec!r}; built-in runners: {', '.join(builtin_runners())}, "
            "or give your own as package.module:function"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - whatever the user's module raises, report it in one line
        last_line = traceback.format_exception_only(type(error), error)[-1].strip()
        raise ExpdbError(f"runner {spec!r} failed to import: {last_line}") from None
    runner = getattr(module, function_name, None)
    if not callable(runner):
        raise ExpdbError(f"runner {spec!r}: {module_name} has no function {function_name!r}")
    return runner


def command_line(template: str, card: Card) -> list[str]:
    """`python train.py --lr {lr}` with the card's parameters filled in, split like a shell would."""
    missing = [
        field for _, field, _, _ in string.Formatter().parse(template) if field and field not in card.params
    ]
    if missing:
        raise ExpdbError(
            f"the command uses {{{missing[0]}}}, but {card.name} has no parameter {missing[0]!r}; "
            f"its parameters: {', '.join(card.params) or 'none'}"
        )
    try:
        args = shlex.split(template.format_map(card.params))
    except ValueError as error:
        raise ExpdbError(f"cannot split the command {template!r}: {error}") from None
    if not args:
        raise ExpdbError("the command is empty")
    if shutil.which(args[0]) is None:
        raise ExpdbError(f"command not found: {args[0]!r} (from the command {template!r})")
    return args


@dataclass
class CommandPlan:
    args: list[str]
    parser: LineParser | None


def plan_command(template: str, parser_spec: str | None, card: Card) -> CommandPlan:
    """Everything that can be wrong with a command is found here, before a run is created."""
    return CommandPlan(command_line(template, card), make_parser(parser_spec) if parser_spec else None)


class CommandFailed(Exception):
    pass


def run_command(run: Run, plan: CommandPlan, echo: TextIO) -> None:
    """Run the command, tee its output to the run's log and `echo`, and log what the parser reads."""
    process = subprocess.Popen(
        plan.args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        env={**os.environ, "EXPDB_RUN_ID": str(run.id), "EXPDB_CARD": run.card.name},
    )
    last_line = ""
    try:
        for line in process.stdout:
            echo.write(line)
            run.write_log(line.rstrip("\n"))
            if line.strip():
                last_line = line.strip()
            record = plan.parser.parse(line) if plan.parser else None
            if record is not None:
                run.log(record.step, epoch=record.epoch, **record.values)
    except BaseException:
        _stop(process)
        raise
    status = process.wait()
    if status != 0:
        raise CommandFailed(f"the command exited with status {status}: {last_line[:200]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

