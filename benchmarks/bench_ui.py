"""How fast `expdb ui` shows big curves and a big study, in a real headless Chromium.

    .venv/bin/python benchmarks/bench_ui.py [--runs 10] [--points 1000000] [--cards 10000]

Builds two databases: RUNS runs of POINTS `loss` points each (benchmarks/bench_plot.py's) and
a study of CARDS cards (benchmarks/large_db.py's). Starts `expdb ui` on each (a process of its
own, as a user runs it) and drives Debian's Chromium with Playwright:

- the curve page of all the runs: from the page's request (the navigation's start) to the
  curves drawn, on a fresh server (the curves read from the database) and again (in memory);
- zooms: a dragged range is fetched again at full resolution and drawn; from the mouse's
  release to the curves drawn;
- the study page: from the request to the first 100 rows shown, fresh and again;
- the servers' peak memory (VmHWM of /proc/PID/status).

Targets: curves < 1 s, zoom < 0.3 s, study < 1 s, server < 500 MB.
"""

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_plot import build as build_curves  # noqa: E402
from large_db import build_database  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
TARGETS = {"curves": 1.0, "zoom": 0.3, "study": 1.0, "memory_mb": 500}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`expdb ui --db PATH` in a process of its own."""

    def __init__(self, path: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "expdb", "ui", "--db", str(path), "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.base + "/static/common.js", timeout=5):
                    return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("the ui server did not start")

    def peak_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise SystemExit("no VmHWM in /proc")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


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


def zoom(page, fraction: float, width: float) -> float:
    """Drag over `width` of the plot from `fraction` of its width; seconds from the release to the curves drawn."""
    draws = int(page.get_attribute("#panels", "data-draws"))
    box = page.locator(".panel .u-over").first.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * fraction, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * (fraction + width), y, steps=4)
    released = page.evaluate("performance.now()")
    page.mouse.up()
    wait_for(page, f"Number(document.getElementById('panels').dataset.draws) > {draws}")
    return (page.evaluate("Number(document.getElementById('panels').dataset.doneAt)") - released) / 1000


def study_page(page, url: str) -> float:
    page.goto(url)
    wait_for(page, "Number(document.getElementById('study').dataset.loaded) >= 1")
    return page.evaluate("Number(document.getElementById('study').dataset.doneAt)") / 1000


def verdict(value: float, target: float) -> str:
    return "ok" if value < target else "MISSED"


def figure(what: str, seconds: float, target: str) -> str:
    return f"  {what}: {seconds:.2f} s  [{verdict(seconds, TARGETS[target])}: < {TARGETS[target]} s]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--cards", type=int, default=10_000)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as directory, sync_playwright() as driver:
        curves_db, study_db = Path(directory) / "curves.db", Path(directory) / "study.db"
        started = time.perf_counter()
        build_curves(curves_db, args.runs, args.points)
        build_database(study_db, cards=args.cards)
        print(
            f"built {args.runs} runs x {args.points:,} points and {args.cards:,} cards in {time.perf_counter() - started:.1f} s"
        )
        browser = driver.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(viewport={"width": 1400, "height": 900})

        server = Server(curves_db)
        url = f"{server.base}/curves?tag=bs&metric=loss"
        cold = curve_page(page, url)
        warm = [curve_page(page, url) for _ in range(3)]
        drawn = page.evaluate("Number(document.querySelector('.panel').dataset.drawn)")
        print(f"curve page, {args.runs} runs x {args.points:,} points ({drawn:,} points drawn):")
        print(figure("fresh server (read from the database)", cold, "curves"))
        print(figure("again (curves in memory), median", statistics.median(warm), "curves"))
        zooms = [zoom(page, fraction, width) for fraction, width in ((0.3, 0.4), (0.2, 0.5), (0.4, 0.2), (0.1, 0.3), (0.5, 0.3))]
        shown = page.evaluate("Number(document.querySelector('.panel').dataset.points)")
        print(
            f"  zoom, 5 drags down to {shown:,} points at full resolution: median {statistics.median(zooms):.3f} s, "
            f"slowest {max(zooms):.3f} s  [{verdict(max(zooms), TARGETS['zoom'])}: < {TARGETS['zoom']} s]"
        )
        curves_mb = server.peak_mb()
        server.stop()

        server = Server(study_db)
        cold = study_page(page, server.base + "/")
        warm = [study_page(page, server.base + "/?offset=100") for _ in range(3)]
        total = page.get_attribute("#study", "data-total")
        print(f"study page, {int(total):,} cards, 100 rows a page:")
        print(figure("fresh server", cold, "study"))
        print(figure("next page (table built), median", statistics.median(warm), "study"))
        study_mb = server.peak_mb()
        server.stop()
        browser.close()
        peak = max(curves_mb, study_mb)
        print(
            f"server peak memory: {curves_mb:.0f} MB (curves), {study_mb:.0f} MB (study)  "
            f"[{verdict(peak, TARGETS['memory_mb'])}: < {TARGETS['memory_mb']} MB]"
        )


if __name__ == "__main__":
    main()
