"""Wall-clock time of everyday `expdb` commands on databases of 10,000 and 100,000 cards, as whole processes.

It builds the databases once with benchmarks/large_db.py in a temporary directory, then runs
each command as a new process (the `expdb` console script next to sys.executable, or
`python -m expdb` when there is none), `--repeat` times (default 5) after one untimed
warm-up run, and prints min / median / max wall seconds, and the median CPU seconds the
process used (user + system, a forked child's included (expdb/forked.py), so it may exceed the wall
time; on a loaded machine the wall time waits for a core, the CPU time much less), against the
targets of the issues:

    expdb list                          (default view, in an 80x40 terminal)   < 0.5 s  10k and 100k cards
    expdb table                         (default view, in an 80x40 terminal)   < 0.5 s  10k and 100k cards
    expdb table -m iou50                (default view, in an 80x40 terminal)   < 0.5 s  10k and 100k cards
    expdb table --all                   (every row, in an 80x40 terminal)      < 2 s    10k cards
    expdb table --where "N=a and L=b"   (~0.5 % of the cards, piped)           < 0.5 s  10k cards
    expdb table --format csv            (every card, to /dev/null)             < 2 s    100k cards (1.5 s: 10k)
    expdb table -m iou50 --over seed    (piped; in a terminal; --baseline as csv)   < 1 s    10k cards (2,000 variants x 5 seeds)
    python -c pass, expdb --help        (for reference, no target)
    python, 10 million additions        (for reference: the host's speed, to compare figures taken at other times)

"In a terminal" is a pseudo-terminal of 80 columns and 40 lines that this script reads, as a
terminal would: the fitting to its width is in the times. PASS/FAIL is judged on the median
wall time; "close" marks a median above 80 % of its target. The commands are interleaved
(one round runs each command once) so that a burst of load on a shared machine hits them all
alike. Then each command is run once with PYTHONPROFILEIMPORTTIME=1 to check that it imports
none of torch, fvcore, matplotlib or pandas (and to show which heavy libraries it does import).
With --profile LABEL, the command whose label contains LABEL (default: the slowest against its
target) is run once more under -X importtime and once under cProfile, and the biggest imports
and functions are printed.

With --before DIR (a checkout of another version of expdb, e.g. main's, exported with
`git archive main | tar -x -C DIR`), every expdb command is also run with that version (`python -m
expdb` with DIR first on PYTHONPATH), interleaved with this one's (back to back, the other first every
other round), and both are printed side by side, with the median of the round-by-round changes, which a
noisy machine moves less than it moves two medians.
When that version's schema is older, it reads a copy of each database migrated down to its schema.

The commands run with bytecode caching on (PYTHONDONTWRITEBYTECODE is removed from their
environment) so that the warm-up run writes the .pyc files an installed package has: otherwise
every run compiles expdb's modules from source again (about 0.06 s).

Run it from the repository root:

    .venv/bin/python benchmarks/bench_cli.py [--sizes 10000,100000] [--repeat R] [--keep DIR]
           [--profile [LABEL]] [--top K] [--before DIR]

Exit status: 0 when every target passes and nothing forbidden is imported, 1 otherwise.
"""

import argparse
import fcntl
import os
import pty
import re
import resource
import shutil
import statistics
import subprocess
import struct
import sys
import tempfile
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from large_db import build_database, build_seeded_database  # noqa: E402

ADDITIONS = "total = 0\nfor number in range(10_000_000):\n    total += number"
FORBIDDEN = ("torch", "fvcore", "matplotlib", "pandas")
HEAVY = ("sqlalchemy", "alembic", "sqlmodel", "pydantic", "pydantic_core", "numpy", "typer", "click", "rich")  # reported, allowed
CLOSE_FRACTION = 0.8


@dataclass
class Command:
    label: str
    argv: list[str]
    target: float | None  # seconds, or None for a reference figure
    is_expdb: bool = True
    terminal: bool = False  # run in an 80x40 pseudo-terminal, else piped to /dev/null
    env: dict[str, str] = field(default_factory=dict)  # set in its environment (the other version's PYTHONPATH)
    before: bool = False  # the other version's run of the command above it (--before): shown, not judged
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def expdb_prefix() -> list[str]:
    """The console script installed next to this interpreter, else `python -m expdb`."""
    script = Path(sys.executable).with_name("expdb")
    return [str(script)] if script.exists() else [sys.executable, "-m", "expdb"]


def clean_env(**extra: str) -> dict[str, str]:
    unset = ("EXPDB_DB", "PYTHONPROFILEIMPORTTIME", "PYTHONDONTWRITEBYTECODE")
    env = {key: value for key, value in os.environ.items() if key not in unset}
    env.update(extra)
    return env


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(
    argv: list[str], env: dict[str, str] | None = None, stdout=subprocess.DEVNULL
) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    process = subprocess.run(argv, stdout=stdout, stderr=subprocess.PIPE, env=env or clean_env(), text=True)
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"`{' '.join(argv)}` failed with status {process.returncode}:\n{process.stderr}")
    return elapsed, process


def run_in_terminal(
    argv: list[str], columns: int = 80, lines: int = 40, extra: dict[str, str] | None = None
) -> tuple[float, str]:
    """Wall seconds of `argv` writing to a pseudo-terminal of this size, read here as a terminal would; its output."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    env = {
        key: value
        for key, value in clean_env(TERM="xterm-256color", **(extra or {})).items()
        if key not in ("COLUMNS", "LINES")
    }
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdin=terminal, stdout=terminal, stderr=terminal, env=env)
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 1 << 16)
        except OSError:  # the terminal closed: the process has ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    status = process.wait()
    elapsed = time.perf_counter() - started
    os.close(controller)
    output = b"".join(chunks).decode(errors="replace")
    if status != 0:
        raise SystemExit(f"`{' '.join(argv)}` failed with status {status}:\n{output[-2000:]}")
    return elapsed, output


def timed(command: Command) -> None:
    before = _children_cpu()
    if command.terminal:
        elapsed = run_in_terminal(command.argv, extra=command.env)[0]
    else:
        elapsed = run_once(command.argv, env=clean_env(**command.env))[0]
    command.times.append(elapsed)
    command.cpu.append(_children_cpu() - before)


def imported_modules(argv: list[str]) -> dict[str, float]:
    """Top-level package -> seconds spent importing its modules (their own time), for every module imported."""
    _, process = run_once(argv, env=clean_env(PYTHONPROFILEIMPORTTIME="1"))
    modules: dict[str, float] = {}
    for self_us, _, name in _importtime_rows(process.stderr):
        top = name.strip().split(".")[0]
        modules[top] = modules.get(top, 0.0) + self_us / 1e6
    return modules


def _importtime_rows(stderr: str) -> list[tuple[int, int, str]]:
    """(self us, cumulative us, name as printed, indented by nesting) of each `-X importtime` line."""
    rows = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "self [us]" not in line and line.count("|") == 2:
            self_us, cumulative_us, name = line[len("import time:") :].split("|")
            rows.append((int(self_us), int(cumulative_us), name.rstrip()))
    return rows


def count_csv_rows(argv: list[str]) -> int:
    _, process = run_once(argv, stdout=subprocess.PIPE)
    lines = process.stdout.splitlines()
    return max(0, len(lines) - 1)  # minus the header


def with_before(commands: list[Command], before: str | None) -> list[Command]:
    """Each expdb command followed by its twin run with the version of expdb in the folder `before`."""
    if before is None:
        return commands
    prefix = len(expdb_prefix())
    paired = []
    for command in commands:
        paired.append(command)
        if command.is_expdb:
            argv = [sys.executable, "-m", "expdb", *command.argv[prefix:]]
            if "--db" in argv:
                at = argv.index("--db") + 1
                argv[at] = str(_database_for(Path(argv[at]), before))
            paired.append(Command(
                f"  before: {command.label}", argv, command.target,
                is_expdb=False, terminal=command.terminal, env=_before_env(before), before=True,
            ))
    return paired


def _database_for(path: Path, before: str) -> Path:
    """`path`, or when the other version's schema is older, a copy of it migrated down to that schema
    (an expdb refuses a database newer than it)."""
    from expdb.db import SCHEMA_HEAD
    from expdb.migrate import alembic_config

    found = re.search(r'^SCHEMA_HEAD = "(\w+)"', (Path(before) / "expdb" / "db.py").read_text(), re.MULTILINE)
    if found is None or found.group(1) == SCHEMA_HEAD:
        return path
    from alembic import command as alembic
    from sqlalchemy import create_engine

    copy = path.with_name(f"{path.stem}.at{found.group(1)}{path.suffix}")
    shutil.copyfile(path, copy)
    engine = create_engine(f"sqlite:///{copy}")
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        alembic.downgrade(config, found.group(1))
    engine.dispose()
    return copy


def _before_env(before: str) -> dict[str, str]:
    # PYTHONSAFEPATH: `python -m` does not put the current folder (this checkout) first on sys.path.
    return {"PYTHONPATH": str(Path(before).resolve()), "PYTHONSAFEPATH": "1"}


def check_before(before: str) -> None:
    """The --before folder must hold expdb, and `python -m expdb` must run it, not this checkout."""
    env = clean_env(**_before_env(before))
    found = subprocess.run(
        [sys.executable, "-c", "import expdb; print(expdb.__file__)"], env=env, capture_output=True, text=True
    ).stdout.strip()
    if not found.startswith(str(Path(before).resolve())):
        raise SystemExit(f"--before {before}: `python -m expdb` runs {found or 'nothing'}, not a copy in that folder")


def judged(commands: list[Command]) -> bool:
    return all(verdict(command).startswith(("PASS", "(reference)")) for command in commands if not command.before)


def in_round(commands: list[Command], round_: int) -> list[Command]:
    """The order of one round: every other round runs the other version of a command first, so that neither
    version always comes second (after the first has warmed the page cache, or into a burst of load)."""
    ordered = list(commands)
    if round_ % 2:
        for at, command in enumerate(ordered):
            if command.before:
                ordered[at - 1], ordered[at] = command, ordered[at - 1]
    return ordered


def paired(this: Command, before: Command) -> str:
    """This version against the other, round by round (each pair ran back to back): the median change, and in
    how many rounds this one was quicker. Finer than two medians on a noisy machine."""
    changes = [(new - old) / old * 100 for new, old in zip(this.times, before.times, strict=True)]
    quicker = sum(change < 0 for change in changes)
    return f"(before; this {statistics.median(changes):+.0f}%, quicker in {quicker} of {len(changes)})"


def verdict(command: Command, previous: Command | None = None) -> str:
    if command.before:
        return paired(previous, command) if previous is not None else "(before)"
    if command.target is None:
        return "(reference)"
    median = statistics.median(command.times)
    if median >= command.target:
        return "FAIL"
    return "PASS (close)" if median > CLOSE_FRACTION * command.target else "PASS"


def print_table(commands: list[Command]) -> None:
    width = max(len(command.label) for command in commands)
    print(f"{'command':<{width}}  {'min':>7}  {'median':>7}  {'max':>7}  {'cpu':>7}  {'target':>8}  result")
    print("-" * (width + 59))
    for previous, command in zip([None, *commands[:-1]], commands, strict=True):
        low, mid, high = min(command.times), statistics.median(command.times), max(command.times)
        target = f"< {command.target:.1f} s" if command.target is not None else "-"
        cpu = statistics.median(command.cpu)
        result = verdict(command, previous)
        print(f"{command.label:<{width}}  {low:7.3f}  {mid:7.3f}  {high:7.3f}  {cpu:7.3f}  {target:>8}  {result}")


def print_profile(command: Command, workdir: Path, top: int) -> None:
    """The slowest command's biggest imports (-X importtime) and functions (cProfile)."""
    args = command.argv[len(expdb_prefix()) :]
    print(f"\n== profile of `{command.label}` ==")
    _, process = run_once([sys.executable, "-X", "importtime", "-m", "expdb", *args])
    rows = _importtime_rows(process.stderr)
    total = sum(self_us for self_us, _, _ in rows)
    print(f"-- imports: {total / 1e6:.3f} s in total; the biggest by cumulative time (nesting indented) --")
    for self_us, cumulative, name in sorted(rows, key=lambda row: -row[1])[:top]:
        print(f"  {cumulative / 1e6:7.3f} s cumulative  {self_us / 1e6:7.3f} s self  {name}")

    stats_path = workdir / "profile.pstats"
    run_once([sys.executable, "-m", "cProfile", "-o", str(stats_path), "-m", "expdb", *args])
    import pstats

    listings = [
        ("cumulative", (top,), "every function"),
        ("tottime", (top,), "every function"),
        ("cumulative", (r"[/\\]expdb[/\\]", top), "expdb's own functions"),
    ]
    for order, restrictions, what in listings:
        print(f"-- cProfile: {what}, top {top} by {order} --")
        stats = pstats.Stats(str(stats_path), stream=sys.stdout)
        stats.sort_stats(order).print_stats(*restrictions)


def bench_over_seed(workdir: Path, repeat: int, before: str | None = None) -> bool:
    """`expdb table --over seed` on 10,000 cards (2,000 variants x 5 seeds), whole process, < 1 s: folding,
    the statistics of each variant, and the tests that mark every row not worse than the best (scipy)."""
    path = workdir / "seeds.db"
    summary = build_seeded_database(path, variants=2_000, seeds=5)
    expdb = expdb_prefix()
    print(f"\nseeded study: {summary['cards']:,} cards, {summary['variants']:,} variants x {summary['seeds']} seeds, "
          f"built in {summary['seconds_total']:.2f} s")
    first = "v00001"
    folded = [*expdb, "table", "-m", "iou50", "--over", "seed", "--db", str(path)]
    commands = [
        Command("expdb table -m iou50 --over seed", folded, 1.0),
        # In a terminal the rows not worse than the best are bold: their tests need scipy, piped they are not worked out.
        Command("expdb table -m iou50 --over seed, 80x40 terminal", folded, 1.0, terminal=True),
        Command(
            f"expdb table -m iou50 --over seed --baseline {first} --format csv",
            [*expdb, "table", "-m", "iou50", "--over", "seed", "--baseline", first, "--format", "csv", "--db", str(path)],
            1.0,
        ),
    ]
    rows = count_csv_rows(commands[2].argv)
    print(f"the folded table has {rows:,} rows")
    commands = with_before(commands, before)
    for command in commands:
        run_once(command.argv, env=clean_env(**command.env))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    for round_ in range(repeat):
        for command in in_round(commands, round_):
            timed(command)
    print(f"seconds over {repeat} runs (after one warm-up run): wall min, median, max; median CPU (user + system); "
          f"load average before {load}, after {' '.join(f'{x:.2f}' for x in os.getloadavg())}:")
    print_table(commands)
    return judged(commands)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="cards in each database, comma-separated [10000,100000]")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each command [5]")
    parser.add_argument(
        "--profile", nargs="?", const="", metavar="LABEL",
        help="profile the command whose label contains LABEL with -X importtime and cProfile [the slowest against its target]",
    )
    parser.add_argument("--top", type=int, default=25, help="lines of each profile listing [25]")
    parser.add_argument("--keep", metavar="DIR", help="build the databases in DIR and keep them (default: a temp dir)")
    parser.add_argument("--before", metavar="DIR", help="also time the expdb in DIR (a checkout), side by side")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    if min(sizes) < 1 or args.repeat < 1:
        parser.error("--sizes and --repeat must be at least 1")
    args.sizes = sizes

    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="expdb-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        return _bench(args, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _size(cards: int) -> str:
    return f"{cards // 1000}k" if cards % 1000 == 0 else str(cards)


def _commands(expdb: list[str], cards: int, path: Path, rare_where: str) -> list[Command]:
    """The commands timed on a database of `cards` cards, with the targets of the issues."""
    db = ["--db", str(path)]
    size = _size(cards)
    commands = [
        Command(f"expdb list, 80x40 terminal ({size})", [*expdb, "list", *db], 0.5, terminal=True),
        Command(f"expdb table, 80x40 terminal ({size})", [*expdb, "table", *db], 0.5, terminal=True),
        Command(f"expdb table -m iou50, 80x40 terminal ({size})", [*expdb, "table", "-m", "iou50", *db], 0.5, terminal=True),
        Command(f"expdb table --format csv > /dev/null ({size})", [*expdb, "table", "--format", "csv", *db],
                2.0 if cards > 10_000 else 1.5),
    ]
    if cards <= 10_000:
        commands += [
            Command(f"expdb table --all, 80x40 terminal ({size})", [*expdb, "table", "--all", *db], 2.0, terminal=True),
            Command(f'expdb table --where "{rare_where}" ({size})', [*expdb, "table", "--where", rare_where, *db], 0.5),
        ]
    return commands


def _bench(args: argparse.Namespace, workdir: Path) -> int:
    expdb = expdb_prefix()
    if args.before:
        check_before(args.before)
    commands = [
        Command("python -c pass", [sys.executable, "-c", "pass"], None, is_expdb=False),
        # The host's speed at each round, for comparing figures taken at other times: no expdb in it.
        Command("python, 10 million additions", [sys.executable, "-c", ADDITIONS], None, is_expdb=False),
        Command("expdb --help", [*expdb, "--help"], None),
    ]
    for cards in args.sizes:
        path = workdir / f"large_{cards}.db"
        summary = build_database(path, cards=cards, overwrite=True)
        print(
            f"database: {summary['cards']:,} cards ({summary['forks']:,} forks), {summary['runs']:,} runs, "
            f"{summary['metrics']:,} metrics, {summary['profiles']:,} profiles; {summary['bytes'] / 1e6:.1f} MB, "
            f"built in {summary['seconds_total']:.2f} s"
        )
        where = summary["rare_where"]
        selected = count_csv_rows([*expdb, "table", "--where", where, "--format", "csv", "--db", str(path)])
        print(f"  --where {where!r} selects {selected} of {summary['cards']:,} cards")
        commands += _commands(expdb, cards, path, where)
    commands = with_before(commands, args.before)
    python = f"Python {sys.version.split()[0]} at {os.path.realpath(sys.executable)}"
    print(f"running: {' '.join(expdb)}  ({python}, {os.cpu_count()} cores, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})")

    for command in commands:  # warm-up: page cache, .pyc files
        timed(command)
        command.times.clear()
        command.cpu.clear()
    for round_ in range(args.repeat):
        for command in in_round(commands, round_):
            timed(command)

    print(f"\nseconds over {args.repeat} runs (after one warm-up run): wall min, median, max; median CPU (user + system):")
    print_table(commands)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    print("\nimports (PYTHONPROFILEIMPORTTIME=1, one run each):")
    clean = True
    for command in commands:
        if not command.is_expdb:
            continue
        modules = imported_modules(command.argv)
        forbidden = [name for name in FORBIDDEN if name in modules]
        heavy = [f"{name} {modules[name]:.3f}" for name in HEAVY if name in modules]
        total = sum(modules.values())
        status = "FAIL: imports " + ", ".join(forbidden) if forbidden else f"ok: none of {', '.join(FORBIDDEN)}"
        clean = clean and not forbidden
        print(f"  {command.label}: {status}")
        print(f"      all imports {total:.3f} s; of which {', '.join(heavy) or 'no heavy libraries'}")

    if args.profile is not None:
        targeted = [command for command in commands if command.target is not None and not command.before]
        if args.profile:
            chosen = [command for command in targeted if args.profile in command.label]
        else:
            chosen = [max(targeted, key=lambda c: statistics.median(c.times) / c.target)]
        for command in chosen:
            print_profile(command, workdir, args.top)

    passed = judged(commands)
    passed = bench_over_seed(workdir, args.repeat, args.before) and passed
    print(f"\n{'all targets met' if passed else 'some targets missed'}; "
          f"{'no forbidden imports' if clean else 'forbidden imports found'}")
    return 0 if passed and clean else 1


if __name__ == "__main__":
    sys.exit(main())
