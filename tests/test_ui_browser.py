"""`expdb ui` in a real headless Chromium (Debian's, driven by Playwright): what a person sees and does.

Each test saves a screenshot of its page: under pytest's temporary directory, or in the directory
named by $EXPDB_SCREENSHOTS (how the README's pictures were made).
"""

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import wait_until
from ui_study import EVIL, build_markup_study, build_seed_study, build_study

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("no chromium here: apt-get install chromium (.ci/run does)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return build_study(tmp_path_factory.mktemp("browser") / "study.db")


@pytest.fixture(scope="module")
def server(study):
    with serving(study) as base:
        yield base


@contextmanager
def serving(study: Path) -> Iterator[str]:
    """`expdb ui` serving `study` on a free port, until the block ends: its address."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "expdb", "ui", "--db", str(study), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(base + "/api/chips", timeout=5):
                return True
        except OSError:
            return False

    wait_until(up, "the ui server to listen")
    yield base
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert errors == []  # no script failed


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    wanted = os.environ.get("EXPDB_SCREENSHOTS")
    directory = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def cli_output(study, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "expdb", *args, "--db", str(study)], capture_output=True, text=True, check=True
    ).stdout


def wait_for(page, expression: str, timeout_s: float = 60.0) -> None:
    """Polls a JavaScript expression until it holds (Playwright's wait_for_function evaluates its
    predicate with eval, which the pages' Content-Security-Policy forbids, as it should)."""
    deadline = time.monotonic() + timeout_s
    # While a click navigates, the next page's elements are not there yet: not yet, rather than an error.
    guarded = f"(() => {{ try {{ return Boolean({expression}); }} catch (error) {{ return false; }} }})()"
    while not page.evaluate(guarded):
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {expression}")
        page.wait_for_timeout(50)


def first_cards(page) -> list[str]:
    return page.eval_on_selector_all("#study tbody tr", "rows => rows.map(row => row.dataset.card)")


def wait_loaded(page, count: int) -> None:
    wait_for(page, f"Number(document.getElementById('study').dataset.loaded) >= {count}")


def test_study_page_shows_the_example_values_and_copies_what_the_cli_prints(page, server, study, screenshots):
    page.goto(server + "/")
    wait_loaded(page, 1)
    text = page.inner_text("#study")
    for value in ("cvt_io_v2_5", "0.36", "670.32K", "6.934G", "46.67ms", "bndhw", "L = 1 was a mistake"):
        assert value in text
    page.screenshot(path=screenshots / "study.png", full_page=True)
    page.click("#copy-md")
    wait_for(page, "document.getElementById('copied').dataset.format === 'md'")
    assert page.input_value("#copied") == cli_output(study, "table", "--format", "md")


def test_sorting_and_the_filter(page, server):
    page.goto(server + "/")
    wait_loaded(page, 1)
    page.click("th:has-text('IOU@0.50')")
    wait_loaded(page, 2)
    assert first_cards(page)[:2] == ["cvt", "cvt_io_v1_1"]  # best first
    page.click("th:has-text('IOU@0.50')")
    wait_loaded(page, 3)
    assert first_cards(page)[:2] == ["cvt_io_v2_5", "cvt_io_v2_8"]
    page.fill("#where", "N>=5")
    wait_for(page, "document.querySelectorAll('#study tbody tr').length === 4")
    assert sorted(first_cards(page)) == ["cvt_io_v1_1", "cvt_io_v2_1", "cvt_io_v2_2", "cvt_io_v2_7"]
    page.fill("#where", "N>")
    wait_for(page, "document.getElementById('where-error').textContent !== ''")
    assert page.inner_text("#where-error") == "malformed --where 'N>': expected a value after '>' (at the end)"
    page.fill("#where", "")
    page.click("#status-chips .chip:has-text('diverged')")
    wait_for(page, "document.querySelectorAll('#study tbody tr').length === 1")
    assert first_cards(page) == ["curve_c"]


def test_curve_page_draws_a_series_per_card_and_zoom_refetches(page, server, screenshots):
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if "/api/curves" in request.url else None)
    page.goto(server + "/curves?cards=curve_a,curve_b,curve_c&metric=loss,lr&smooth=0.9")
    wait_for(page, "document.getElementById('panels').dataset.draws === '1'")
    panels = page.eval_on_selector_all(".panel", "panels => panels.map(panel => [panel.dataset.metric, panel.dataset.series])")
    assert panels == [["loss", "3"], ["lr", "3"]]
    # uPlot's own count: the x series, then raw and smoothed per card.
    assert page.evaluate("document.querySelectorAll('.panel')[0].querySelectorAll('canvas').length") == 1
    page.screenshot(path=screenshots / "curves.png", full_page=True)
    points_before = int(page.get_attribute(".panel", "data-points"))
    box = page.locator(".panel .u-over").first.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.4, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=5)
    page.mouse.up()
    wait_for(page, "document.getElementById('panels').dataset.lastReason === 'zoom'")
    assert "x0=" in asked[-1] and "x1=" in asked[-1]
    points_after = int(page.get_attribute(".panel", "data-points"))
    assert 0 < points_after < points_before / 5  # the range alone, read at full resolution
    assert page.get_attribute(".panel", "data-series") == "3"
    page.screenshot(path=screenshots / "curves-zoomed.png", full_page=True)


def test_card_page_and_a_malicious_note_is_inert(page, server, screenshots):
    page.goto(server + "/card/curve_c")
    page.wait_for_selector("#notes li")
    assert "step 2,000 on the loss curve" in page.inner_text("#notes")
    evil = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
    page.fill("#new-note", evil)
    page.click("#add-note")
    wait_for(page, "document.getElementById('notes').textContent.includes('onerror')")
    assert evil in page.inner_text("#notes")
    assert page.evaluate("window.pwned") is None
    assert page.locator("#notes img, #notes script").count() == 0
    page.screenshot(path=screenshots / "card.png", full_page=True)
    page.click("#notes a")  # the divergence note links to its point of the curve
    wait_for(page, "document.getElementById('panels').dataset.draws === '1'")
    assert "mark=2000" in page.url
    page.screenshot(path=screenshots / "curves-from-note.png", full_page=True)


def test_parallel_coordinates(page, server, screenshots):
    page.goto(server + "/parallel?metric=iou50")
    page.wait_for_selector("svg polyline")
    assert page.get_attribute("svg", "data-lines") == "10"
    assert "IOU@0.50" in page.inner_text("#chart")
    page.screenshot(path=screenshots / "parallel.png", full_page=True)


LIVE_RUN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import expdb

    stop = Path(sys.argv[2])
    with expdb.start("live_run", db=sys.argv[1], lr=0.1) as run:
        step = 0
        while not stop.exists() and step < 200_000:
            run.log(step, loss=1.0 / (step + 1))
            step += 1
            if step % 100 == 0:
                time.sleep(0.05)
    """
)


def test_a_live_runs_points_appear_while_it_logs(page, server, study, tmp_path, screenshots):
    stop = tmp_path / "stop"
    runner = subprocess.Popen([sys.executable, "-c", LIVE_RUN, str(study), str(stop)])
    try:
        from expdb.db import Database

        def logged() -> bool:
            with Database(str(study)) as db:
                return bool(
                    db.query(
                        "SELECT 1 FROM chunk JOIN series ON series.id = chunk.series_id JOIN run ON run.id = series.run_id "
                        "JOIN card ON card.id = run.card_id WHERE card.name = 'live_run'"
                    )
                )

        wait_until(logged, "the live run's first points")
        page.goto(server + "/")
        wait_for(page, "document.getElementById('live').textContent.includes('live_run')")
        assert "running" in page.inner_text("#live")
        page.screenshot(path=screenshots / "study-live.png", full_page=True)
        page.goto(server + "/curves?cards=live_run&metric=loss")
        wait_for(page, "document.getElementById('panels').dataset.draws === '1'")
        first = int(page.get_attribute(".panel", "data-points"))
        wait_for(page, f"Number(document.querySelector('.panel').dataset.points) > {first}")
        assert page.get_attribute("#panels", "data-last-reason") == "live"
    finally:
        stop.touch()
        runner.wait(timeout=60)


def test_html_report_renders_offline(browser, study, tmp_path, screenshots):
    report = tmp_path / "v3.html"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "expdb",
            "report",
            "--db",
            str(study),
            "--tag",
            "sweep",
            "--format",
            "html",
            "-o",
            str(report),
            "--curve",
            "loss",
            "--curve",
            "lr",
            "--smooth",
            "0.6",
        ],
        check=True,
        capture_output=True,
    )
    context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(report.as_uri())
        page.wait_for_selector(".panel .uplot")
        assert page.eval_on_selector_all(".panel", "panels => panels.map(panel => panel.dataset.series)") == ["2", "2"]
        assert "curve_a" in page.inner_text("table") and "0.31" in page.inner_text("table")
        assert asked == [report.as_uri()] and errors == []  # nothing fetched beside the file
        page.screenshot(path=screenshots / "report.png", full_page=True)
    finally:
        context.close()


# -- seeds folded, invalid cards, attachments (the study of build_seed_study) ---------------------


@pytest.fixture(scope="module")
def seed_study(tmp_path_factory):
    return build_seed_study(tmp_path_factory.mktemp("browser-seeds") / "study.db")


@pytest.fixture(scope="module")
def seed_server(seed_study):
    with serving(seed_study) as base:
        yield base


def test_study_page_shows_invalid_cards_on_request_and_folds_seeds(page, seed_server, seed_study, screenshots):
    page.goto(seed_server + "/?tag=seeds")
    wait_loaded(page, 1)
    assert "fold_bad" not in first_cards(page) and len(first_cards(page)) == 6
    page.check("#invalid")
    wait_loaded(page, 2)
    bad = page.locator("#study tbody tr[data-card='fold_bad']")
    assert "invalid" in bad.get_attribute("class")
    assert "invalid: the <b>eval</b> set leaked into training" in bad.inner_text()  # shown as text
    assert page.locator("#study b").count() == 0
    assert "fold_bad: invalid, the <b>eval</b> set leaked into training; never marked best." in page.inner_text("#table-notes")
    page.screenshot(path=screenshots / "study-invalid.png", full_page=True)

    page.check("#fold")
    wait_loaded(page, 3)
    assert first_cards(page) == ["fold_lr1", "fold_lr2", "fold_bad (invalid)"]
    page.select_option("#spread", "ci")
    wait_loaded(page, 4)
    page.click("#study tbody tr[data-card='fold_lr1'] button")
    wait_loaded(page, 5)
    lr2 = page.inner_text("#study tbody tr[data-card='fold_lr2']")
    assert "0.347 ± 0.011" in lr2 and "+0.024 [0.012, 0.036] †" in lr2
    assert page.locator("#study tbody tr[data-card='fold_lr2'] td.best").inner_text() == "0.347 ± 0.011"
    assert "paired t-test on matching seeds" in page.inner_text("#table-notes")
    assert page.locator("#study tbody tr[data-card='fold_lr2'] .variant-cards a").count() == 3  # its cards, linked
    page.screenshot(path=screenshots / "study-folded.png", full_page=True)
    same_view = ["--tag", "seeds", "--all", "--over", "seed", "--spread", "ci", "--baseline", "fold_lr1"]
    page.click("#copy-md")
    wait_for(page, "document.getElementById('copied').dataset.format === 'md'")
    assert page.input_value("#copied") == cli_output(seed_study, "table", *same_view, "--format", "md")
    page.click("#copy-latex")
    wait_for(page, "document.getElementById('copied').dataset.format === 'latex'")
    assert page.input_value("#copied") == cli_output(seed_study, "table", *same_view, "--format", "latex")
    assert "over=seed" in page.url and "all=1" in page.url  # the view is in the address, to share or reload


def test_card_page_shows_attachments_and_none_runs_script(page, seed_server, screenshots, tmp_path):
    page.goto(seed_server + "/card/fold_lr1_seed0")
    page.wait_for_selector("#attachment-list tbody tr")
    wait_for(page, "[...document.querySelectorAll('#attachments img')].every((img) => img.complete && img.naturalWidth > 0)")
    assert page.eval_on_selector_all("#attachments img", "images => images.map(image => image.alt)") == [
        "curve.png",
        "drawing.svg",
    ]
    rows = page.eval_on_selector_all("#attachment-list tbody tr", "rows => rows.map(row => row.innerText.split('\\t'))")
    assert [row[0] for row in rows] == ["curve.png", "drawing.svg", "page.html", "config.py"]
    assert rows[3][1:] == ["10B", "", "the training config"]
    page.screenshot(path=screenshots / "card-attachments.png", full_page=True)
    with page.expect_download() as download:  # an HTML file is downloaded, never shown in the page's origin
        page.click("#attachment-list a:has-text('page.html')")
    saved = tmp_path / "page.html"
    download.value.save_as(saved)
    assert saved.read_text() == "<script>window.pwned=4</script>"
    assert page.evaluate("window.pwned") is None
    svg = page.get_attribute("#attachment-list a:has-text('drawing.svg')", "href")
    page.goto(seed_server + svg)  # the SVG opened on its own: its script is blocked
    page.wait_for_timeout(200)
    assert page.evaluate("window.pwned") is None


def test_curve_page_draws_seed_bands_when_folded(page, seed_server, screenshots):
    page.goto(seed_server + "/curves?tag=seeds&metric=loss&over=seed&smooth=0.6")
    wait_for(page, "document.getElementById('panels').dataset.draws === '1'")
    assert page.is_checked("#fold")
    assert page.get_attribute(".panel", "data-series") == "2" and page.get_attribute(".panel", "data-bands") == "2"
    assert page.inner_text(".panel .legend") == "fold_lr1 (n=3)\nfold_lr2 (n=3)"
    assert page.inner_text(".panel .folded") == "mean over seed; band: 95% CI of the mean"
    page.screenshot(path=screenshots / "curves-folded.png", full_page=True)
    page.uncheck("#fold")
    wait_for(page, "document.getElementById('panels').dataset.draws === '2'")
    assert page.get_attribute(".panel", "data-series") == "6" and page.get_attribute(".panel", "data-bands") == "0"


@pytest.fixture(scope="module")
def markup_server(tmp_path_factory):
    with serving(build_markup_study(tmp_path_factory.mktemp("browser-markup") / "study.db")) as base:
        yield base


def test_markup_in_parameters_curve_keys_and_metrics_is_shown_as_text(page, markup_server, screenshots):
    from urllib.parse import quote

    visits = [
        ("/", "#study", [EVIL["param"], EVIL["metric"]]),
        ("/card/evil_strings", "main", [EVIL["param"], EVIL["curve"], EVIL["metric"]]),
        (f"/curves?cards=evil_strings&metric={quote(EVIL['curve'])}", "#panels", [EVIL["curve"]]),
        (f"/parallel?metric={quote(EVIL['metric'])}", "#chart", [EVIL["param"], EVIL["metric"]]),
    ]
    for path, holder, texts in visits:
        page.goto(markup_server + path)
        wait_for(page, f"document.querySelector('{holder}').textContent.includes('onerror') || "
                       f"document.querySelector('{holder}').textContent.includes('<script>')")
        shown = page.eval_on_selector(holder, "node => node.textContent")
        for text in texts:
            assert text in shown, (path, text)
        assert page.locator(f"{holder} img, {holder} script").count() == 0
        assert page.evaluate("window.pwned") is None
    page.goto(markup_server + "/card/evil_strings")
    page.wait_for_selector("#params td")
    page.screenshot(path=screenshots / "card-markup.png", full_page=True)


def test_parallel_coordinates_of_the_cards_picked_in_the_table(page, server, screenshots):
    page.goto(server + "/")
    wait_loaded(page, 1)
    for name in ("cvt_io_v2_1", "cvt_io_v2_5", "cvt_io_v2_8"):
        page.check(f"#study tbody tr[data-card='{name}'] input[type=checkbox]")
    page.click("#parallel")
    page.wait_for_selector("svg polyline", state="attached")
    page.screenshot(path=screenshots / "parallel-picked.png", full_page=True)
    assert "cards=cvt_io_v2_1%2Ccvt_io_v2_5%2Ccvt_io_v2_8" in page.url
    assert page.get_attribute("svg", "data-lines") == "3"


def test_an_invalid_cards_page_says_so(page, seed_server):
    page.goto(seed_server + "/card/fold_bad")
    page.wait_for_selector("#invalid")
    assert page.inner_text("#invalid").startswith("invalid: the <b>eval</b> set leaked into training")
