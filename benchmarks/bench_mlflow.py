"""MLflow's UI on the curve bench_ui.py draws, for `bench_ui.py --mlflow PYTHON` (PYTHON: one with MLflow).

MLflow is not a dependency of expdb: it runs in the interpreter given, in processes of its own.
The 1,000,000 points of bench_0's `loss` are logged into an MLflow SQLite store (kept with the
databases under --keep), `mlflow server` serves it, and the same Chromium opens the run's metric
page. Measured: from the page's request to the curve's line drawn (a Plotly trace with a path),
the points MLflow's page fetched, the server's CPU time and peak memory; or how it failed.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np

from expdb.db import Database
from expdb.series import read_curve

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ui import Server  # noqa: E402

# Runs in MLflow's interpreter: the points logged in batches of 1,000 (MLflow's limit per request).
LOG = """
import json, sys, time
import numpy as np
import mlflow
from mlflow.entities import Metric
points = np.load(sys.argv[2])
mlflow.set_tracking_uri(sys.argv[1])
client = mlflow.MlflowClient()
experiment = client.create_experiment("bench")
run = client.create_run(experiment).info.run_id
started = time.time()
for first in range(0, points.shape[1], 1000):
    batch = points[:, first : first + 1000]
    client.log_batch(run, metrics=[
        Metric("loss", float(value), int(1000 * (started + wall)), int(step)) for step, value, wall in batch.T
    ])
client.set_terminated(run)
print(json.dumps({"experiment": experiment, "run": run}))
"""

DRAWN = """() => [...document.querySelectorAll('.js-plotly-plot .scatterlayer .trace path.js-line')]
    .some((path) => (path.getAttribute('d') || '').length > 100)"""


def export_curve(curves_db: Path, target: Path) -> int:
    """bench_0's loss (steps, values, wall times) as a .npy file MLflow's interpreter reads; its points."""
    with Database(str(curves_db)) as db:
        run_id = db.query_one("SELECT max(run.id) FROM run JOIN card ON card.id = run.card_id WHERE card.name = 'bench_0'")[0]
        curve = read_curve(db, run_id, "loss", axes=("time",))
    columns = [np.frombuffer(curve.steps, np.int64), np.frombuffer(curve.values), np.frombuffer(curve.walls)]
    np.save(target, np.stack([column.astype(np.float64) for column in columns]))
    return len(curve)


def logged_run(python: str, directory: Path, curves_db: Path) -> tuple[str, dict]:
    """The MLflow store holding the curve (logged once, then reused) and its experiment and run ids."""
    store, ids = directory / "mlflow.db", directory / "mlflow-ids.json"
    uri = f"sqlite:///{store}"
    if not ids.exists():
        points = directory / "mlflow-loss.npy"
        count = export_curve(curves_db, points)
        store.unlink(missing_ok=True)
        started = time.perf_counter()
        found = subprocess.run([python, "-c", LOG, uri, str(points)], capture_output=True, text=True, cwd=directory)
        if found.returncode != 0:
            raise RuntimeError(f"logging the curve into MLflow failed: {found.stderr.strip().splitlines()[-1:]}")
        ids.write_text(found.stdout.strip().splitlines()[-1])
        print(f"MLflow: logged {count:,} points in {time.perf_counter() - started:.0f} s")
    return uri, json.loads(ids.read_text())


def compare_mlflow(python: str, directory: Path, points: int, browser, version, curves_db: Path) -> None:
    """Prints how long MLflow's UI takes to draw the curve, beside expdb's fresh figure, or how it failed."""
    version_text = subprocess.run([python, "-c", "import mlflow; print(mlflow.__version__)"], capture_output=True, text=True)
    print(
        f"\nMLflow {version_text.stdout.strip() or '(not importable: ' + version_text.stderr.strip()[-200:] + ')'}, "
        f"the same curve of {points:,} points (bench_0's loss):"
    )
    try:
        uri, ids = logged_run(python, directory, curves_db)
    except RuntimeError as error:
        print(f"  {error}")
        return
    server = Server(
        [
            python,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            uri,
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--workers",
            "1",
        ],
        "/health",
        cwd=directory,
        what="mlflow server",
    )
    from playwright.sync_api import Error as PlaywrightError

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    fetched: list[str] = []
    page.on("response", lambda response: fetched.append(response.url) if "metrics/get-history" in response.url else None)
    # The address MLflow's own "plot chart" links to (getMetricPageRoute in its UI's code).
    search = {
        "runs": [ids["run"]],
        "metric": "loss",
        "experiments": [ids["experiment"]],
        "plot_metric_keys": ["loss"],
        "plot_layout": {},
        "x_axis": "step",
        "y_axis_scale": "linear",
        "line_smoothness": 1,
        "show_point": False,
        "deselected_curves": [],
        "last_linear_y_axis_range": [],
    }
    query = "&".join(
        f"{key}={quote(value if isinstance(value, str) and key in ('x_axis', 'y_axis_scale') else json.dumps(value))}"
        for key, value in search.items()
    )
    url = f"{server.base}/#/metric?{query}"
    cpu = server.cpu()
    started = time.perf_counter()
    try:
        page.goto(url)
        page.wait_for_function(DRAWN, timeout=180_000, polling=20)
        wall = page.evaluate("performance.now()") / 1000
        print(
            f"  MLflow metric page, fresh server: {wall:.2f} s (server CPU {server.cpu() - cpu:.2f} s, "
            f"load {os.getloadavg()[0]:.1f}), peak memory {server.peak_mb():.0f} MB"
        )
        page.screenshot(path=str(directory / "mlflow-drawn.png"))
        shown = len(fetched)
        page.wait_for_timeout(5000)  # what it still fetches once the line is there
        print(
            f"  its requests for the curve until drawn: {shown}, 5 s later: {len(fetched)}; the first: "
            f"{'; '.join(part.split('?', 1)[-1][-100:] for part in fetched[:2])}"
        )
    except PlaywrightError as error:  # a page that never draws (a timeout) or breaks: reported as the result
        print(
            f"  MLflow's page did not draw the curve after {time.perf_counter() - started:.0f} s: "
            f"{type(error).__name__}: {str(error).splitlines()[0]}"
        )
        print(
            f"  its requests for the curve: {len(fetched)}; server CPU {server.cpu() - cpu:.2f} s, "
            f"peak memory {server.peak_mb():.0f} MB"
        )
        page.screenshot(path=str(directory / "mlflow-failed.png"))
    finally:
        page.close()
        server.stop()
    fresh = version.figures["curves fresh"]
    print(f"  expdb ui, {len(fresh.walls)} fresh servers, 10 such curves: {fresh.text()}")
