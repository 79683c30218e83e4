"""Launching a card: find what trains it (a runner or a shell command), run it, record it."""

import importlib
import os
import shlex
import shutil
import string
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from typing import TextIO

from . import interrupts
from .cards import Card
from .devices import check_device, choose_device, restored_torch_settings
from .errors import ExpdbError, last_line
from .lifecycle import RunStatus
from .logparse import LineParser, make_parser
from .metrics import PROFILE_BUDGET_S, PROFILE_ITERATIONS, PROFILE_WARMUP
from .runs import ProgressCallback, Run, begin_run
from .values import format_value

Runner = Callable[[dict, Run], None]


def builtin_runners() -> list[str]:
    return sorted(
        entry.name[:-3]
        for entry in files("expdb.runners").iterdir()
        if entry.name.endswith(".py") and not entry.name.startswith("_")
    )


def check_runner(spec: str, params: dict) -> None:
    """What can be known of a card's runner without importing it (which may import torch): a built-in
    runner exists and takes these parameters, in this environment (through its torch-free `_NAME_params.check`);
    a `module:function` is written so. ExpdbError (one line) otherwise."""
    if ":" in spec:
        module_name, _, function_name = spec.partition(":")
        if not (all(part.isidentifier() for part in module_name.split(".")) and function_name.isidentifier()):
            raise ExpdbError(
                f"runner {spec!r} is not package.module:function; or use a built-in runner: {', '.join(builtin_runners())}"
            )
        return
    if spec not in builtin_runners():
        raise ExpdbError(
            f"unknown runner {spec!r}; built-in runners: {', '.join(builtin_runners())}, "
            "or give your own as package.module:function"
        )
    try:
        checker = importlib.import_module(f"expdb.runners._{spec}_params")
    except ModuleNotFoundError:
        return  # a built-in runner without a torch-free check: its parameters are checked when it runs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unknown keys: the runner says so when it runs
        try:
            checker.check(dict(params), os.environ)
        except (ValueError, TypeError) as error:
            raise ExpdbError(f"{' '.join(str(error).split())}; the card cannot run as it is") from None


@dataclass
class ResolvedRunner:
    train: Runner
    build: Callable[[dict], tuple] | None  # the module's build(params) -> (model, example inputs), if it has one


def resolve_runner(spec: str) -> ResolvedRunner:
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
        raise ExpdbError(f"runner {spec!r} failed to import: {last_line(error)}") from None
    runner = getattr(module, function_name, None)
    if not callable(runner):
        raise ExpdbError(f"runner {spec!r}: {module_name} has no function {function_name!r}")
    build = getattr(module, "build", None)
    return ResolvedRunner(runner, build if callable(build) else None)


class ShellValues(dict):
    """Parameters as a command line writes them: 4e-3, true, [3, 5]."""

    def __getitem__(self, key: str) -> str:
        return format_value(super().__getitem__(key))


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
        # Split first, then fill in: a value with spaces or quotes stays one argument.
        args = [argument.format_map(ShellValues(card.params)) for argument in shlex.split(template)]
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
    # Read live, a log's dates are from this year (MMEngine writes them without one).
    parser = make_parser(parser_spec, year=time.localtime().tm_year) if parser_spec else None
    return CommandPlan(command_line(template, card), parser)


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
        # A script inside attaches to this run (expdb.start); EXPDB_RESUME tells it to continue from the checkpoint.
        env={**os.environ, "EXPDB_RUN_ID": str(run.id), "EXPDB_CARD": run.card.name, "EXPDB_RESUME": "1" if run.resume else "0"},
    )
    final_line = ""
    # A command can go quiet once it has diverged: stop it without waiting for its next line.
    watcher = threading.Thread(target=_stop_when_told, args=(run, process), daemon=True)
    watcher.start()
    try:
        assert process.stdout is not None  # started with stdout=PIPE
        for line in process.stdout:
            echo.write(line)
            run.write_log(line.rstrip("\n"))
            if line.strip():
                final_line = line.strip()
            record = plan.parser.parse(line) if plan.parser else None
            if record is not None:
                # A parser names metrics only; epoch is its own field, never a key of values.
                epoch = record.epochs_done if record.epochs_done is not None else record.epoch
                run.log(record.step, epoch=epoch, **record.values)  # type: ignore[arg-type]
    except BaseException:
        _stop(process)
        raise
    status = process.wait()
    run.raise_if_stopped()
    if status != 0:
        said = f": {final_line[:200]}" if final_line else ""
        raise CommandFailed(f"the command exited with status {status}{said}")


def _stop_when_told(run: Run, process: subprocess.Popen) -> None:
    while process.poll() is None:
        if run.should_stop:
            _stop(process)
            return
        time.sleep(0.2)


def _stop(process: subprocess.Popen) -> None:
    # The command stays in this process's group: a queue that stops this job stops its whole group.
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def profile_before_training(run: Run, build: Callable[[dict], tuple], budget_s: float) -> None:
    """Params, FLOPs and Cost-Time of the run's model. A failure here never fails the run: it is noted."""
    try:
        model, inputs = build(dict(run.params))
        run.profile(model, inputs, time_budget_s=budget_s)
    except Exception as error:  # noqa: BLE001 - whatever went wrong, training goes on
        run.note(f"could not profile the model: {last_line(error)}")


@dataclass
class Outcome:
    card: str
    run_id: int
    status: RunStatus
    exit_reason: str | None
    summary: dict[str, float]
    notes: list[str]


def execute(
    db,
    card: Card,
    *,
    command: list[str] | None = None,
    parser: str | None = None,
    resume: bool = False,
    on_diverge: str = "stop",
    device: str = "auto",
    seed: int | None = None,
    progress: ProgressCallback | None = None,
    echo: TextIO | None = None,
    profile_budget: float = PROFILE_BUDGET_S,
    queued_run: int | None = None,
    ready: Callable[[], None] | None = None,
    diverge: dict[str, float] | None = None,
    started: Callable[[], None] | None = None,
) -> Outcome:
    """Run one card to its end and record it. Everything that can be refused is refused before the run exists.

    `queued_run`: the card's queued run row to adopt (see expdb.queue) rather than a new one.
    `ready`: called once the runner is imported and the device chosen, right before the run
    begins: a queue's next job waits there, warm, for its GPU to be free. `started`: called once the run
    exists, everything checked, before it trains.

    KeyboardInterrupt (Ctrl-C, SIGTERM) propagates after the run is marked interrupted.
    """
    template = shlex.join(command) if command else card.command
    if template:
        plan = plan_command(template, parser or card.parser, card)
        chosen = None if check_device(device) == "auto" else device  # the command picks its own device
        template = shlex.join(plan.args)
        train = lambda run: run_command(run, plan, echo or sys.stdout)  # noqa: E731
    elif card.runner:
        if parser:
            raise ExpdbError(f"--parse reads the log of a command; {card.name} is trained by its runner {card.runner}")
        # The seed it will run with, and EXPDB_MAX_STEPS too: what is wrong is said before the run exists.
        check_runner(card.runner, {**card.params, **({} if seed is None else {"seed": seed})})
        runner = resolve_runner(card.runner)
        chosen = choose_device(device)

        def train(run: Run) -> None:
            with restored_torch_settings():  # what the runner sets (cudnn flags, TF32, threads) ends with its run
                if runner.build is not None and profile_budget:
                    profile_before_training(run, runner.build, profile_budget)
                if not run.should_stop:  # asked to stop (SIGUSR2) while it was profiled: it ends interrupted
                    runner.train(dict(card.params), run)

    else:
        raise ExpdbError(
            f"{card.name} has no runner or command: create it with --runner NAME or --cmd \"...\", "
            f"or give the command: expdb run {card.name} -- python train.py ..."
        )
    if ready is not None:
        ready()
    with interrupts.handled():
        # A signal while the run row is written waits, and acts once the run can end interrupted.
        interrupts.hold()
        try:
            run = begin_run(
                db, card.name, device=chosen, seed=seed, resume=resume, on_diverge=on_diverge,
                command=template, progress=progress, queued_run=queued_run, diverge=diverge,
            )
        except BaseException:
            interrupts.release()
            raise
        with interrupts.training(run):
            try:
                try:
                    if started is not None:
                        started()
                finally:
                    interrupts.release()  # what came meanwhile acts here: SIGTERM raises, SIGUSR2 asks the run to stop
                if not run.should_stop:
                    train(run)
            except CommandFailed as failure:
                run.end(RunStatus.FAILED, str(failure))
            except BaseException as error:  # noqa: BLE001 - every ending is recorded; Ctrl-C goes on up
                # Ctrl-C caught on its way up (an import cut short, say) and the code failing later: still Ctrl-C.
                stop = error if isinstance(error, KeyboardInterrupt) else interrupts.raised_into(run)
                run.end_from_exception(stop or error)
                if stop is not None:
                    raise stop from None if stop is error else error
            else:
                run.end(RunStatus.FINISHED)
    noted = [event.message for event in run.divergences + run.trends]
    return Outcome(card.name, run.id, run.status, run.exit_reason, run.summary_metrics, noted)


def profile_card(
    db,
    card: Card,
    *,
    batch: int | None = None,
    input_shape: str | None = None,
    device: str = "auto",
    dtype: str = "fp32",
    warmup: int = PROFILE_WARMUP,
    iterations: int = PROFILE_ITERATIONS,
    budget_s: float = PROFILE_BUDGET_S,
    threads: int | None = None,
    throughput_batch: int | None = None,
    cudnn_benchmark: bool | None = None,
    channels_last: bool = False,
) -> None:
    """Build the card's model with its runner (no training), measure it, and keep the profile with the card."""
    if not card.runner:
        raise ExpdbError(f"{card.name} has no runner, so expdb cannot build its model; profile it from your code with "
                         "run.profile(model, inputs)")
    runner = resolve_runner(card.runner)
    if runner.build is None:
        raise ExpdbError(f"runner {card.runner!r} has no build(params) function, so expdb cannot build its model")
    from .profiler import inputs_like, parse_input_shape, profile
    from .results import store_profile

    shape = parse_input_shape(input_shape) if input_shape else None
    chosen = choose_device(device)
    try:
        model, example = runner.build(dict(card.params))
    except Exception as error:  # noqa: BLE001 - the runner's own failure, in one line
        raise ExpdbError(f"runner {card.runner!r} cannot build the model of {card.name}: {last_line(error)}") from None
    try:
        inputs = inputs_like(example, batch=batch, shape=shape)
    except (RuntimeError, MemoryError) as error:  # more than the memory holds
        raise ExpdbError(
            f"cannot make the inputs of {card.name}: {last_line(error)}; give a smaller --batch or --input"
        ) from None
    measured = profile(
        model, inputs, device=chosen, dtype=dtype,
        warmup=warmup, iterations=iterations, time_budget_s=budget_s, threads=threads, throughput_batch=throughput_batch,
        cudnn_benchmark=cudnn_benchmark, channels_last=channels_last,
    )
    store_profile(db, card.id, None, measured)
