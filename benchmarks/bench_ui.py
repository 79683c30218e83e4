"""How fast `expdb ui` shows big curves and a big study, in a real headless Chromium.

    .venv/bin/python benchmarks/bench_ui.py [--runs 10] [--points 1000000] [--cards 10000] [--repeat 3]
           [--keep DIR] [--before DIR] [--mlflow PYTHON]

Builds two databases: RUNS runs of POINTS `loss` points each (benchmarks/bench_plot.py's) and
a study of CARDS cards (benchmarks/large_db.py's); with --keep DIR they are kept there and
reused by the next run. Starts `expdb ui` on each (a process of its own, as a user runs it, a
fresh one for every "fresh" figure) and drives Debian's Chromium with Playwright:

- the curve page of all the runs: from the page's request (the navigation's start) to the
  curves drawn, on a fresh server (the curves read from the database) and again (in memory);
- zooms: a dragged range (from 2 % to 90 % of the whole plot), "reset zoom" after each, and two
  wheel turns are fetched again at full resolution and drawn; from the mouse's release (the click,
  the wheel: the events' own times in the page) to the curves drawn,
  without smoothing and then with an EMA of 0.9 (computed on every point);
- the study page: from the request to the first 100 rows shown, on a fresh server, and the
  next pages;
- the servers' peak memory (VmHWM of /proc/PID/status).

Every figure comes with the server's CPU time (user + sys) spent meanwhile and the load average,
since the machine may be shared. With --before DIR (another version of expdb, e.g. main's,
exported with `git archive main | tar -x -C DIR`) each figure is also measured with that version's
server (`python -m expdb ui` with DIR first on PYTHONPATH, its own pages and scripts),
interleaved with this one's, and printed beside it.

With --mlflow PYTHON (a Python with MLflow installed, which expdb does not need), the same
1,000,000-point curve is logged into an MLflow store, and the time from the request of MLflow's
metric page to its chart drawn is measured the same way, or how it failed.

Targets: curves < 1 s, zoom < 0.3 s (the slowest), study < 1 s, server < 500 MB.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_plot import build as build_curves  # noqa: E402
from large_db import build_database  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
TARGETS = {"curves": 1.0, "zoom": 0.3, "study": 1.0, "memory_mb": 500}
TICKS = os.sysconf("SC_CLK_TCK")
DRAGS = ((0.3, 0.4), (0.1, 0.8), (0.4, 0.2), (0.05, 0.9), (0.5, 0.3), (0.2, 0.02))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_url(url: str, process: subprocess.Popen, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} stopped: {process.stderr.read().decode(errors='replace') if process.stderr else ''}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not start")


class Server:
    """A web server in a process of its own: its CPU time and peak memory are read from /proc."""

    def __init__(
        self, argv: list[str], ready: str, env: dict[str, str] | None = None, cwd: Path | None = None, what: str = "the ui server"
    ):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        argv = [part.replace("{port}", str(self.port)) for part in argv]
        self.process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **(env or {})}, cwd=cwd
        )
        wait_for_url(self.base + ready, self.process, what)

    @classmethod
    def expdb(cls, path: Path, source: Path | None) -> "Server":
        """`expdb ui --db PATH`; of the version in `source` when given (`python -m` puts its directory first)."""
        env = {"PYTHONPATH": str(source)} if source is not None else None
        argv = [sys.executable, "-m", "expdb", "ui", "--db", str(path), "--port", "{port}"]
        return cls(argv, "/static/common.js", env, cwd=source)

    def processes(self) -> list[int]:
        """The server's process and those it started (MLflow's server runs its workers as children)."""
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except OSError:
                    continue
                children.setdefault(parent, []).append(int(entry.name))
        found, queue = [], [self.process.pid]
        while queue:
            pid = queue.pop()
            found.append(pid)
            queue.extend(children.get(pid, []))
        return found

    def cpu(self) -> float:
        """User + system seconds the server (with its children) has used so far."""
        total = 0
        for pid in self.processes():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        return total / TICKS

    def peak_mb(self) -> float:
        """The peak resident memory (VmHWM) of the server, summed over its processes."""
        total = 0
        for pid in self.processes():
            try:
                lines = Path(f"/proc/{pid}/status").read_text().splitlines()
            except OSError:
                continue
            total += sum(int(line.split()[1]) for line in lines if line.startswith("VmHWM:"))
        return total / 1024

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Figure:
    """Wall seconds of one thing measured again and again, with the server's CPU seconds and the load average."""

    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)

    def add(self, wall: float, cpu: float) -> None:
        self.walls.append(wall)
        self.cpus.append(cpu)
        self.loads.append(os.getloadavg()[0])

    def text(self) -> str:
        if not self.walls:
            return "-"
        spread = f", slowest {max(self.walls):.3f}" if len(self.walls) > 1 else ""
        return (
            f"{statistics.median(self.walls):.3f} s{spread} (server CPU {statistics.median(self.cpus):.2f} s, "
            f"load {statistics.median(self.loads):.1f})"
        )


def measured(server: Server, figure: Figure, action, *args) -> None:
    """Runs `action(*args)` (which returns wall seconds), noting the server's CPU time meanwhile."""
    before = server.cpu()
    wall = action(*args)
    figure.add(wall, server.cpu() - before)


def wait_for(page, expression: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {expression}")
        page.wait_for_timeout(5)


def curve_page(page, url: str) -> float:
    """Seconds from the navigation's start to the curves drawn."""
    page.goto(url)
    wait_for(page, "document.getElementById('panels').dataset.draws === '1'")
    return page.evaluate("Number(document.getElementById('panels').dataset.doneAt)") / 1000


# When the page received the mouse's release or the wheel (the event's own time, not when Playwright sent it).
NOTE_INPUT = """for (const kind of ["mouseup", "wheel"])
  document.addEventListener(kind, (event) => { window.benchInput = event.timeStamp; }, { capture: true, passive: true });"""


def drawn_after(page, draws: int) -> float:
    """Seconds from the last input to the curves drawn again."""
    wait_for(page, f"Number(document.getElementById('panels').dataset.draws) > {draws}")
    return page.evaluate("(Number(document.getElementById('panels').dataset.doneAt) - window.benchInput) / 1000")


def drag(page, fraction: float, width: float) -> float:
    """Drag over `width` of the plot from `fraction` of its width; seconds from the release to the curves drawn."""
    draws = int(page.get_attribute("#panels", "data-draws"))
    box = page.locator(".panel .u-over").first.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * fraction, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * (fraction + width), y, steps=4)
    page.mouse.up()
    return drawn_after(page, draws)


def reset(page) -> float:
    """A click on "reset zoom": the whole curves again; seconds from the click to the curves drawn."""
    draws = int(page.get_attribute("#panels", "data-draws"))
    page.click("#reset")
    return drawn_after(page, draws)


def wheel(page) -> float:
    """One turn of the wheel in the middle of the plot; seconds from the turn to the curves drawn."""
    draws = int(page.get_attribute("#panels", "data-draws"))
    box = page.locator(".panel .u-over").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -100)
    return drawn_after(page, draws)


def study_page(page, url: str) -> float:
    page.goto(url)
    wait_for(page, "Number(document.getElementById('study').dataset.loaded) >= 1")
    return page.evaluate("Number(document.getElementById('study').dataset.doneAt)") / 1000


@dataclass
class Version:
    """One version of expdb measured: its figures."""

    label: str
    source: Path | None
    figures: dict[str, Figure] = field(default_factory=dict)
    memory: dict[str, float] = field(default_factory=dict)
    drawn: int = 0

    def figure(self, name: str) -> Figure:
        return self.figures.setdefault(name, Figure())


def measure_curves(version: Version, page, path: Path, fresh_only: bool) -> None:
    server = Server.expdb(path, version.source)
    try:
        url = f"{server.base}/curves?tag=bs&metric=loss"
        measured(server, version.figure("curves fresh"), curve_page, page, url)
        if fresh_only:
            return
        version.drawn = page.evaluate("Number(document.querySelector('.panel').dataset.drawn)")
        for _ in range(3):
            measured(server, version.figure("curves again"), curve_page, page, url)
        for smooth in ("", "&smooth=0.9"):
            name = "zoom, smoothed 0.9" if smooth else "zoom"
            curve_page(page, url + smooth)
            page.evaluate(NOTE_INPUT)
            for fraction, width in DRAGS:  # each from the whole curves: a wide range is the most work
                measured(server, version.figure(name), drag, page, fraction, width)
                measured(server, version.figure(name), reset, page)
            for _ in range(2):
                measured(server, version.figure(name), wheel, page)
    finally:
        version.memory["curves"] = max(version.memory.get("curves", 0.0), server.peak_mb())
        server.stop()


def measure_study(version: Version, page, path: Path, fresh_only: bool) -> None:
    server = Server.expdb(path, version.source)
    try:
        measured(server, version.figure("study fresh"), study_page, page, server.base + "/")
        if fresh_only:
            return
        for offset in (100, 200, 9900):
            measured(server, version.figure("study next page"), study_page, page, f"{server.base}/?offset={offset}")
    finally:
        version.memory["study"] = max(version.memory.get("study", 0.0), server.peak_mb())
        server.stop()


TARGET_OF = {
    "curves fresh": "curves",
    "curves again": "curves",
    "zoom": "zoom",
    "zoom, smoothed 0.9": "zoom",
    "study fresh": "study",
    "study next page": "study",
}


def verdict(figure: Figure, target: str) -> str:
    # The slowest counts: a target is met when every repeat meets it.
    worst = max(figure.walls)
    return f"[{'ok' if worst < TARGETS[target] else 'MISSED'}: < {TARGETS[target]} s]"


def report(versions: list[Version], args) -> None:
    print(f"\n{args.runs} runs x {args.points:,} points ({versions[0].drawn:,} points drawn), {args.cards:,} cards:")
    width = max(len(name) for name in TARGET_OF) + 2
    for name, target in TARGET_OF.items():
        for version in versions:
            if name in version.figures:
                label = name if version is versions[0] else ""
                tail = f"  {verdict(version.figures[name], target)}" if version is versions[-1] else ""
                print(f"  {label:<{width}}{version.label:>7}: {version.figures[name].text()}{tail}")
    for version in versions:
        peak = max(version.memory.values())
        mark = f"[{'ok' if peak < TARGETS['memory_mb'] else 'MISSED'}: < {TARGETS['memory_mb']} MB]"
        shown = ", ".join(f"{what} {mb:.0f} MB" for what, mb in version.memory.items())
        print(f"  {'server peak memory':<{width}}{version.label:>7}: {shown}  {mark if version is versions[-1] else ''}")


def build(directory: Path, args) -> tuple[Path, Path]:
    curves_db = directory / f"curves-{args.runs}x{args.points}.db"
    study_db = directory / f"study-{args.cards}.db"
    started = time.perf_counter()
    if not curves_db.exists():
        build_curves(curves_db, args.runs, args.points)
    if not study_db.exists():
        build_database(study_db, cards=args.cards)
    print(f"databases ready in {time.perf_counter() - started:.1f} s: {curves_db.name}, {study_db.name}")
    return curves_db, study_db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--cards", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="fresh servers per page and version (default 3)")
    parser.add_argument("--keep", type=Path, help="build the databases in DIR, or reuse those already there")
    parser.add_argument("--before", type=Path, help="also measure the expdb in DIR (a checkout), side by side")
    parser.add_argument("--mlflow", help="a Python with MLflow: also measure MLflow's UI on the same curve")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with ExitStack() as stack:
        directory = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        directory.mkdir(parents=True, exist_ok=True)
        curves_db, study_db = build(directory, args)
        driver = stack.enter_context(sync_playwright())
        browser = driver.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        versions = ([Version("before", args.before.resolve())] if args.before else []) + [Version("now", None)]
        print(f"load average at the start: {' '.join(f'{load:.1f}' for load in os.getloadavg())} ({os.cpu_count()} CPUs)")
        for attempt in range(args.repeat):
            for version in versions:  # interleaved, so that both see the same load
                measure_curves(version, page, curves_db, fresh_only=attempt > 0)
                measure_study(version, page, study_db, fresh_only=attempt > 0)
        report(versions, args)
        if args.mlflow:
            from bench_mlflow import compare_mlflow

            compare_mlflow(args.mlflow, directory, args.points, browser, versions[-1], curves_db)
        browser.close()


if __name__ == "__main__":
    main()
