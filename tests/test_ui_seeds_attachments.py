"""`expdb ui` over a study with seeds, an invalid card and attachments, through Starlette's test client:
the invalid cards' toggle, `--over seed` folding with its statistics, seed bands, attached files served safely.
(The browser sees the same in test_ui_browser.py.)"""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")

from starlette.testclient import TestClient  # noqa: E402

from expdb.stats import t_quantile  # noqa: E402
from expdb.ui.app import ATTACHMENT_CSP, create_app  # noqa: E402
from ui_study import EVIL_SVG, SEED_POINTS, build_seed_study, tiny_png  # noqa: E402

BASE = "http://127.0.0.1:8765"
REASON = "the <b>eval</b> set leaked into training"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return build_seed_study(tmp_path_factory.mktemp("seeds") / "study.db")


@pytest.fixture
def client(study):
    return TestClient(create_app(str(study)), base_url=BASE)


def cli_output(study, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "expdb", *args, "--db", str(study)], capture_output=True, text=True, check=True)
    return done.stdout


def test_invalid_cards_are_hidden_until_asked_for_and_then_carry_their_reason(client):
    hidden = client.get("/api/table", params={"tag": "seeds"}).json()
    assert "fold_bad" not in [row["card"] for row in hidden["rows"]] and hidden["total"] == 6
    shown = client.get("/api/table", params={"tag": "seeds", "all": "1"}).json()
    bad = next(row for row in shown["rows"] if row["card"] == "fold_bad")
    assert bad["invalid"] == REASON and not any(cell["best"] for cell in bad["cells"])  # its 0.9 is never best
    assert f"fold_bad: invalid, {REASON}; never marked best." in shown["notes"]
    assert all(row["invalid"] == "" for row in shown["rows"] if row["card"] != "fold_bad")
    assert client.get("/api/card/fold_bad").json()["invalid"] == REASON
    assert client.get("/api/card/fold_lr1_seed0").json()["invalid"] == ""
    # The curve page and parallel coordinates take the same toggle.
    curves = client.get("/api/curves", params={"tag": "seeds", "metric": "loss"}).json()
    assert "fold_bad" not in [series["card"] for series in curves["panels"][0]["series"]]
    curves = client.get("/api/curves", params={"tag": "seeds", "metric": "loss", "all": "1"}).json()
    assert "fold_bad" in [series["card"] for series in curves["panels"][0]["series"]]


def test_folded_rows_have_n_mean_spread_and_tests_against_the_baseline(client):
    asked = {"tag": "seeds", "metric": "iou50", "over": "seed", "baseline": "fold_lr1", "spread": "ci"}
    page = client.get("/api/table", params=asked).json()
    assert page["folded"] and page["total"] == 2
    heads = [(column["header"], column["sort"]) for column in page["columns"]]
    assert heads == [("variant", None), ("lr", "lr"), ("n", None), ("IOU@0.50", "iou50"), ("vs fold_lr1", None)]
    base, other = page["rows"]
    assert base["variant"] == "fold_lr1" and base["baseline"] and base["card"] is None
    assert base["cards"] == ["fold_lr1_seed0", "fold_lr1_seed1", "fold_lr1_seed2"]
    assert [cell["text"] for cell in base["cells"]] == ["fold_lr1 (baseline)", "1e-3", "3", "0.323 ± 0.007", ""]
    assert [cell["text"] for cell in other["cells"]] == ["fold_lr2", "2e-3", "3", "0.347 ± 0.011", "+0.024 [0.012, 0.036] †"]
    assert other["cells"][3]["best"] and not base["cells"][3]["best"]  # fold_lr1 is significantly worse
    assert any("paired t-test on matching seeds" in note for note in page["notes"])
    assert "± is the half-width of the 95% confidence interval of the mean (t distribution)." in page["notes"]
    std = client.get("/api/table", params={"tag": "seeds", "metric": "iou50", "over": "seed"}).json()
    assert [row["cells"][3]["text"] for row in std["rows"]] == ["0.3230 ± 0.0030", "0.347 ± 0.004"]


def test_a_page_of_one_folded_row_is_marked_best_as_in_the_whole_table(client):
    asked = {"tag": "seeds", "metric": "iou50", "over": "seed", "baseline": "fold_lr1", "limit": 1}
    first = client.get("/api/table", params=asked).json()["rows"][0]
    second = client.get("/api/table", params={**asked, "offset": 1}).json()["rows"][0]
    assert (first["variant"], first["cells"][3]["best"]) == ("fold_lr1", False)
    assert (second["variant"], second["cells"][3]["best"]) == ("fold_lr2", True)


def test_folded_rows_sort_and_a_bad_fold_is_one_line(client):
    page = client.get("/api/table", params={"tag": "seeds", "over": "seed", "sort": "iou50:asc"}).json()
    assert [row["variant"] for row in page["rows"]] == ["fold_lr1", "fold_lr2"]
    page = client.get("/api/table", params={"tag": "seeds", "over": "seed", "sort": "iou50"}).json()
    assert [row["variant"] for row in page["rows"]] == ["fold_lr2", "fold_lr1"]
    response = client.get("/api/table", params={"tag": "seeds", "over": "sed"})
    assert response.status_code == 400 and response.json()["error"].startswith("--over 'sed': no shown card has a parameter")


@pytest.mark.parametrize(
    "asked, cli_args",
    [
        ({"all": "1"}, ["--all"]),
        (
            {"over": "seed", "baseline": "fold_lr1", "spread": "ci"},
            ["--over", "seed", "--baseline", "fold_lr1", "--spread", "ci"],
        ),
        ({"over": "seed", "all": "1", "sort": "iou50"}, ["--over", "seed", "--all", "--sort", "iou50"]),
    ],
)
@pytest.mark.parametrize("fmt", ["md", "latex"])
def test_copy_gives_what_the_cli_prints_for_the_same_view(client, study, asked, cli_args, fmt):
    text = client.get("/api/table", params={"tag": "seeds", "format": fmt, **asked}).text
    assert text == cli_output(study, "table", "--tag", "seeds", "--format", fmt, *cli_args)


def test_card_lists_its_attachments(client):
    files = client.get("/api/card/fold_lr1_seed0").json()["attachments"]
    assert [(file["name"], file["image"], file["note"]) for file in files] == [
        ("curve.png", True, "the loss, drawn by hand"),
        ("drawing.svg", True, "an SVG with a script"),
        ("page.html", False, ""),
        ("config.py", False, "the training config"),
    ]
    assert files[3]["size"] == "10B" and all(file["url"] == f"/api/attachment/{file['id']}" for file in files)
    assert client.get("/api/card/fold_lr2_seed0").json()["attachments"] == []


def test_a_runs_long_environment_is_apart_from_its_short_facts(client):
    run = client.get("/api/card/fold_lr1_seed0").json()["runs"][0]
    assert run["environment"]["python"] and "packages" not in run["environment"] and "argv" not in run["environment"]
    packages = run["environment_long"]["packages"].splitlines()
    assert any(line.startswith("starlette==") for line in packages)


def test_attachments_are_served_by_id_with_their_type_and_never_run(client):
    files = {file["name"]: file["url"] for file in client.get("/api/card/fold_lr1_seed0").json()["attachments"]}
    png = client.get(files["curve.png"])
    assert png.status_code == 200 and png.content == tiny_png()
    assert png.headers["content-type"] == "image/png" and png.headers["content-disposition"] == 'inline; filename="curve.png"'
    svg = client.get(files["drawing.svg"])
    assert svg.content == EVIL_SVG and svg.headers["content-type"] == "image/svg+xml"
    # Opened on its own, its script is blocked: no script source at all, and a sandbox.
    assert svg.headers["content-security-policy"] == ATTACHMENT_CSP
    assert "sandbox" in ATTACHMENT_CSP and "script-src" not in ATTACHMENT_CSP and "default-src 'none'" in ATTACHMENT_CSP
    page = client.get(files["page.html"])
    assert page.headers["content-disposition"] == 'attachment; filename="page.html"'  # downloaded, not shown
    config = client.get(files["config.py"])
    assert config.text == "lr = 1e-3\n" and config.headers["content-disposition"] == 'attachment; filename="config.py"'
    for response in (png, svg, page, config):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-security-policy"] == ATTACHMENT_CSP


@pytest.mark.parametrize(
    "path", ["/api/attachment/999", "/api/attachment/-1", "/api/attachment/..%2F..%2Fstudy.db", "/api/attachment/curve.png"]
)
def test_only_an_attachment_id_reads_a_file(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert "SQLite" not in response.text and "lr = 1e-3" not in response.text


def test_unknown_and_missing_attachments_are_one_line(tmp_path):
    study = build_seed_study(tmp_path / "study.db")
    client = TestClient(create_app(str(study)), base_url=BASE)
    assert client.get("/api/attachment/999").json() == {
        "error": "no attachment 999: `expdb show CARD` lists a card's attachments"
    }
    for stored in (tmp_path / "expdb_files").rglob("*"):
        if stored.is_file() and stored.read_bytes() == b"lr = 1e-3\n":
            stored.unlink()
    url = client.get("/api/card/fold_lr1_seed0").json()["attachments"][3]["url"]
    response = client.get(url)
    assert response.status_code == 404 and response.json()["error"].startswith("the content of config.py (")


def test_a_token_guards_attachments_too(study):
    client = TestClient(create_app(str(study), token="s3cret", allowed_hosts=["*"]), base_url="http://10.0.0.5:8765")
    assert client.get("/api/attachment/1").status_code == 401
    assert client.get("/api/attachment/1", params={"token": "s3cret"}).content == tiny_png()


def seed_values(study: Path, variant: str) -> np.ndarray:
    """The seeds' loss curves of `variant`, one row each, as logged."""
    from expdb.db import Database
    from expdb.series import read_curve

    rows = []
    with Database(str(study)) as db:
        for seed in range(3):
            (run_id,) = db.query_one(
                "SELECT run.id FROM run JOIN card ON card.id = run.card_id WHERE card.name = ?", (f"{variant}_seed{seed}",)
            )
            rows.append(list(read_curve(db, run_id, "loss").values))
    return np.array(rows)


def test_folded_curves_are_means_in_their_band(client, study):
    payload = client.get("/api/curves", params={"tag": "seeds", "metric": "loss", "over": "seed"}).json()
    assert payload["folded"] == {"over": ["seed"], "band": "ci"}
    series = payload["panels"][0]["series"]
    assert [item["label"] for item in series] == ["fold_lr1 (n=3)", "fold_lr2 (n=3)"]
    lr1 = series[0]
    assert len(lr1["runs"]) == 3 and lr1["run"] is None  # the page watches its seeds' runs while they run
    values = seed_values(study, "fold_lr1")
    assert lr1["x"] == list(range(SEED_POINTS)) and lr1["y"] == pytest.approx(values.mean(axis=0).tolist())
    half = values.std(axis=0, ddof=1) * t_quantile(0.975, 2) / np.sqrt(3)
    assert lr1["band"]["low"] == pytest.approx((values.mean(axis=0) - half).tolist())
    assert lr1["band"]["high"] == pytest.approx((values.mean(axis=0) + half).tolist())
    std = client.get("/api/curves", params={"tag": "seeds", "metric": "loss", "over": "seed", "band": "std"}).json()
    high = std["panels"][0]["series"][0]["band"]["high"]
    assert high == pytest.approx((values.mean(axis=0) + values.std(axis=0, ddof=1)).tolist())


def test_a_folded_zoom_is_the_range_at_full_resolution_smoothed_on_every_point(client, study):
    from expdb.plot import ema

    asked = {"tag": "seeds", "metric": "loss", "over": "seed", "x0": 200, "x1": 240, "smooth": 0.9}
    lr2 = client.get("/api/curves", params=asked).json()["panels"][0]["series"][1]
    assert lr2["x"] == list(range(199, 242))
    smoothed = np.array([ema(row, 0.9) for row in seed_values(study, "fold_lr2")])
    assert lr2["smooth"]["y"] == pytest.approx(smoothed.mean(axis=0)[199:242].tolist())
    assert lr2["band"]["x"] == lr2["smooth"]["x"]  # the band goes with the smoothed mean


def test_a_diverged_seed_is_drawn_on_its_own_and_not_averaged(client):
    payload = client.get("/api/curves", params={"cards": "curve_a,curve_c", "metric": "loss", "over": "seed"}).json()
    series = payload["panels"][0]["series"]
    assert [(item["label"], item.get("dotted", False)) for item in series] == [
        ("curve_a (n=1)", False),
        ("curve_c (diverged: not averaged in)", True),
    ]
    assert series[0]["band"] is None and series[1]["scale"][1] < 3  # its explosion does not set the scale
    assert client.get("/api/curves", params={"over": "seed", "band": "p90"}).json() == {
        "error": "unknown band 'p90'; use one of: ci, std"
    }


def test_the_html_report_folds_its_curves_as_the_markdown_report(cli, study, tmp_path):
    output = tmp_path / "seeds.html"
    result = cli(
        "report", "--db", str(study), "--tag", "seeds", "--over", "seed", "--format", "html", "-o", str(output), "--curve", "loss"
    )
    assert result.code == 0, result.err
    embedded = re.search(r'<script type="application/json" id="expdb-curves">(.*?)</script>', output.read_text(), re.S).group(1)
    series = json.loads(embedded)[0]["panels"][0]["series"]
    assert [item["label"] for item in series] == ["fold_lr1 (n=3)", "fold_lr2 (n=3)"] and all(item["band"] for item in series)
