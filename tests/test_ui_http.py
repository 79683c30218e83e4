"""Every endpoint of `expdb ui`, through Starlette's test client (the browser tests are in test_ui_browser.py)."""

import base64
import math
import re
import struct
import subprocess
import sys

import pytest

pytest.importorskip("starlette")

from starlette.testclient import TestClient  # noqa: E402

from expdb import cards, lifecycle  # noqa: E402
from expdb.db import Database  # noqa: E402
from expdb.runs import begin_run  # noqa: E402
from expdb.ui.app import CSP, CSRF_HEADER, create_app  # noqa: E402
from ui_study import build_study  # noqa: E402

BASE = "http://127.0.0.1:8765"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return build_study(tmp_path_factory.mktemp("ui") / "study.db")


@pytest.fixture
def client(study):
    return TestClient(create_app(str(study)), base_url=BASE)


@pytest.fixture
def writable(tmp_path):
    """A study of its own, for the tests that write to it."""
    path = build_study(tmp_path / "study.db")
    return path, TestClient(create_app(str(path)), base_url=BASE)


def numbers(text: str) -> list:
    """A curve's numbers as the page unpacks them: little-endian float64s, NaN and infinities as gaps (None)."""
    raw = base64.b64decode(text)
    return [value if math.isfinite(value) else None for value in struct.unpack(f"<{len(raw) // 8}d", raw)]


def curves(client, **params) -> dict:
    """/api/curves with each series' numbers unpacked."""
    payload = client.get("/api/curves", params=params).json()
    for panel in payload["panels"]:
        for series in panel["series"]:
            for line in (series, series["smooth"]) if series["smooth"] else (series,):
                line["x"], line["y"] = numbers(line["x"]), numbers(line["y"])
    return payload


def csrf_of(client) -> str:
    return re.search(r'name="expdb-csrf" content="([^"]+)"', client.get("/").text).group(1)


def cli_output(study, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "expdb", *args, "--db", str(study)], capture_output=True, text=True, check=True)
    return done.stdout


@pytest.mark.parametrize("path", ["/", "/card/cvt_io_v2_9", "/curves", "/parallel"])
def test_pages_are_shells_with_a_policy_against_inline_script(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
    assert "<script>" not in response.text  # scripts only by src
    assert 'name="expdb-csrf"' in response.text


def test_static_files_include_the_vendored_uplot(client):
    response = client.get("/static/vendor/uplot/uPlot.iife.min.js")
    assert response.status_code == 200 and "uPlot" in response.text
    assert "MIT" in client.get("/static/vendor/uplot/LICENSE").text


def test_table_shows_the_example_values(client):
    page = client.get("/api/table").json()
    headers = [column["header"] for column in page["columns"]]
    assert headers[0] == "card" and "IOU@0.50" in headers and "Params" in headers
    rows = {row["card"]: row for row in page["rows"]}
    cvt = rows["cvt"]
    texts = [cell["text"] for cell in cvt["cells"]]
    assert "0.36" in texts and "670.32K" in texts and "46.67ms" in texts
    assert cvt["note"] == "the baseline CvT backbone without a latent array"
    assert rows["curve_a"]["tags"] == ["sweep"] and rows["curve_c"]["status"] == "diverged"


def test_table_sorts_pages_and_filters(client):
    page = client.get("/api/table", params={"sort": "iou50:asc", "limit": 3}).json()
    assert [row["card"] for row in page["rows"]] == ["cvt_io_v2_5", "cvt_io_v2_8", "cvt_io_v2_7"]
    assert page["total"] == 10 and page["limit"] == 3
    second = client.get("/api/table", params={"sort": "iou50:asc", "limit": 3, "offset": 3}).json()
    assert [row["card"] for row in second["rows"]] == ["curve_a", "curve_b", "curve_c"]
    filtered = client.get("/api/table", params={"where": "N>=5"}).json()
    assert {row["card"] for row in filtered["rows"]} == {"cvt_io_v1_1", "cvt_io_v2_1", "cvt_io_v2_2", "cvt_io_v2_7"}
    tagged = client.get("/api/table", params={"tag": "sweep"}).json()
    assert [row["card"] for row in tagged["rows"]] == ["curve_a", "curve_b"]
    diverged = client.get("/api/table", params={"status": "diverged"}).json()
    assert [row["card"] for row in diverged["rows"]] == ["curve_c"]


def test_a_bad_filter_is_one_line_for_the_page(client):
    response = client.get("/api/table", params={"where": "N>"})
    assert response.status_code == 400
    assert response.json() == {"error": "malformed --where 'N>': expected a value after '>' (at the end)"}


def test_baseline_adds_deltas(client):
    page = client.get("/api/table", params={"baseline": "cvt"}).json()
    assert page["rows"][0]["card"] == "cvt" and page["rows"][0]["baseline"]
    row = next(row for row in page["rows"] if row["card"] == "cvt_io_v2_5")
    deltas = [cell["delta"] for cell in row["cells"] if cell["delta"]]
    assert "-0.11" in deltas


@pytest.mark.parametrize("fmt", ["md", "latex"])
def test_copy_gives_what_the_cli_prints(client, study, fmt):
    text = client.get("/api/table", params={"format": fmt, "where": "N>=3", "baseline": "cvt", "sort": "iou50"}).text
    assert text == cli_output(study, "table", "--format", fmt, "--where", "N>=3", "--baseline", "cvt", "--sort", "iou50")


def test_chips(client):
    chips = client.get("/api/chips").json()
    assert chips["tags"] == ["sweep"] and "diverged" in chips["statuses"] and chips["curves"] == ["loss", "lr"]


def test_card_has_params_beside_its_parent_and_its_lineage(client):
    card = client.get("/api/card/cvt_io_v2_9").json()
    changes = {param["key"]: (param["value"], param["parent"], param["kind"]) for param in card["params"]}
    assert changes["N"] == ("5", "3", "changed") and changes["lr"] == ("4e-3", "4e-3", "inherited")
    assert card["lineage"]["ancestors"] == ["cvt", "cvt_io_v1_1", "cvt_io_v2_1", "cvt_io_v2_8"]
    root = client.get("/api/card/cvt").json()["lineage"]["tree"]
    assert root["name"] == "cvt" and [child["name"] for child in root["children"]] == ["cvt_io_v1_1"]


def test_card_has_runs_notes_with_steps_and_profile(client):
    card = client.get("/api/card/curve_c").json()
    assert card["runs"][0]["status"] == "diverged" and "at step 2,000" in card["runs"][0]["exit_reason"]
    automatic = [note for note in card["notes"] if note["automatic"]]
    assert automatic and automatic[0]["step"] == 2000
    assert card["curves"] == ["loss", "lr"]
    profiled = client.get("/api/card/cvt").json()["profile"]
    assert profiled["params_total"] == "670320" and profiled["device"]


def test_unknown_card_is_one_line(client):
    response = client.get("/api/card/cvt_io_v2_10")
    assert response.status_code == 400 and response.json()["error"].startswith("no card named 'cvt_io_v2_10'")


def test_curves_are_reduced_and_zoom_reads_full_resolution(client):
    payload = curves(client, cards="curve_a,curve_b,curve_c", metric="loss,lr", width=200)
    assert [panel["metric"] for panel in payload["panels"]] == ["loss", "lr"]
    loss = payload["panels"][0]["series"]
    assert [series["card"] for series in loss] == ["curve_a", "curve_b", "curve_c"]
    assert all(len(series["x"]) <= 2 * 200 + 2 < series["points"] for series in loss)
    zoomed = curves(client, cards="curve_a", metric="loss", width=200, x0=100, x1=300)
    series = zoomed["panels"][0]["series"][0]
    assert series["x"] == list(range(99, 302))  # every point of the range, and one on either side


def test_curves_keep_every_spike_and_a_diverged_run_does_not_set_the_scale(client):
    series = curves(client, cards="curve_c", metric="loss", width=100)["panels"][0]["series"][0]
    assert max(value for value in series["y"] if value is not None) > 1e5  # the explosion is drawn
    assert series["scale"][1] < 3  # but the y scale is the run's before it
    assert series["divergences"] == [{"step": 2000, "x": 2000.0, "y": 1000.0}]
    assert series["lr_drops"] == [1500.0]


def test_curves_smooth_on_every_point_and_read_other_axes(client):
    from expdb.plot import ema

    payload = curves(client, cards="curve_a", metric="loss", smooth=0.9, x0=0, x1=0.01, x="epoch")
    series = payload["panels"][0]["series"][0]
    assert payload["x_label"] == "epoch" and series["x"][:3] == series["smooth"]["x"][:3] == [0.0, 0.001, 0.002]
    # From the first point on, so the smoothed points of this range are those of the whole curve.
    assert series["smooth"]["y"] == pytest.approx(list(ema(series["y"], 0.9)))
    # A zoom late in the curve smooths with the points before it too.
    whole = curves(client, cards="curve_a", metric="loss", width=4000)["panels"][0]["series"][0]
    assert len(whole["y"]) == whole["points"] == 3000
    late = curves(client, cards="curve_a", metric="loss", smooth=0.9, x0=2500, x1=2510)
    assert late["panels"][0]["series"][0]["smooth"]["y"] == pytest.approx(list(ema(whole["y"], 0.9)[2499:2512]))


def test_curves_by_tag_and_bad_options(client):
    payload = client.get("/api/curves", params={"tag": "sweep", "metric": "loss"}).json()
    assert [series["card"] for series in payload["panels"][0]["series"]] == ["curve_a", "curve_b"]
    assert client.get("/api/curves", params={"x": "wall"}).json()["error"].startswith("unknown x axis 'wall'")
    assert client.get("/api/curves", params={"smooth": "1"}).json()["error"] == "smoothing must be in [0, 1), not 1.0"
    assert client.get("/api/curves", params={"x0": "left"}).json()["error"] == "x0='left' is not a number"


def test_live_shows_running_runs_with_progress(writable):
    path, client = writable
    assert client.get("/api/live").json() == {"runs": []}
    with Database(str(path)) as db:
        cards.create_card(db, "live_one", {"lr": 0.1})
        run = begin_run(db, "live_one", device="cpu")
        run.log(0, loss=1.0)
        run.log(41, loss=0.5)
        run._flush(db, {})
        found = client.get("/api/live").json()["runs"]
        assert [(entry["card"], entry["status"], entry["step"], entry["points"]) for entry in found] == [
            ("live_one", "running", 41, 2)
        ]
        run.end(lifecycle.RunStatus.FINISHED)
    assert client.get("/api/live").json() == {"runs": []}


def test_notes_and_tags_need_the_csrf_token(writable):
    path, client = writable
    evil = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    assert client.post("/api/card/cvt/notes", json={"text": evil}).status_code == 403
    headers = {CSRF_HEADER: csrf_of(client)}
    assert client.post("/api/card/cvt/notes", json={"text": evil}, headers={CSRF_HEADER: "guess"}).status_code == 403
    other_site = client.post("/api/card/cvt/notes", json={"text": evil}, headers={**headers, "origin": "http://evil.example"})
    assert other_site.status_code == 403
    form = client.post(
        "/api/card/cvt/notes", content=b"text=hi", headers={**headers, "content-type": "application/x-www-form-urlencoded"}
    )
    assert form.status_code == 415
    assert client.post("/api/card/cvt/notes", json={"text": evil}, headers=headers).json() == {"ok": True}
    assert client.get("/api/card/cvt").json()["notes"][-1]["text"] == evil  # stored as written; the page shows it as text
    assert client.post("/api/card/cvt/tags", json={"add": ["v3", "best"]}, headers=headers).json() == {"tags": ["best", "v3"]}
    assert client.post("/api/card/cvt/tags", json={"remove": ["best"]}, headers=headers).json() == {"tags": ["v3"]}


def test_bad_changes_are_one_line(writable):
    _, client = writable
    headers = {CSRF_HEADER: csrf_of(client)}
    assert (
        client.post("/api/card/cvt/notes", json={"text": "  "}, headers=headers).json()["error"].startswith("the note is empty")
    )
    assert client.post("/api/card/cvt/notes", json=["x"], headers=headers).json() == {
        "error": "the request body must be a JSON object"
    }
    assert (
        client.post("/api/card/nope/notes", json={"text": "x"}, headers=headers)
        .json()["error"]
        .startswith("no card named 'nope'")
    )
    assert (
        client.post("/api/card/cvt/tags", json={"add": ["a b"]}, headers=headers).json()["error"].startswith("invalid tag 'a b'")
    )
    assert client.post("/api/card/cvt/tags", json={"add": "x"}, headers=headers).json() == {
        "error": 'tags are {"add": [...], "remove": [...]}'
    }


def test_reading_is_read_only(client):
    assert client.post("/api/table").status_code == 405
    assert client.delete("/api/card/cvt").status_code == 405


def test_a_token_guards_every_request(study):
    client = TestClient(create_app(str(study), token="s3cret", allowed_hosts=["*"]), base_url="http://10.0.0.5:8765")
    for path in ("/", "/api/table", "/static/common.js", "/api/card/cvt"):
        response = client.get(path)
        assert response.status_code == 401 and response.headers["content-security-policy"] == CSP
    assert client.get("/", params={"token": "wrong"}).status_code == 401
    assert client.get("/", params={"token": "s3cret"}).status_code == 200
    assert client.get("/api/table").status_code == 200  # the cookie set by the first visit


def test_loopback_server_answers_only_loopback_names(study):
    client = TestClient(create_app(str(study)), base_url="http://attacker.example:8765")
    assert client.get("/api/table").status_code == 400  # a DNS-rebinding page cannot read the study
