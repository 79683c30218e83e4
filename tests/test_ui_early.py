"""`expdb ui` starts reading what a page will ask for when the page itself is requested, and the
page's request then waits for that reading instead of doing it again."""

import threading

import pytest

pytest.importorskip("starlette")

from starlette.testclient import TestClient  # noqa: E402

from expdb.ui import data  # noqa: E402
from expdb.ui.app import create_app  # noqa: E402
from ui_study import build_study  # noqa: E402

BASE = "http://127.0.0.1:8765"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return build_study(tmp_path_factory.mktemp("ui-early") / "study.db")


def counted(monkeypatch, name: str, started: threading.Event | None = None) -> list:
    """Calls of data.NAME, noted (and `started` set) before each runs, slowed so that the page's request comes meanwhile."""
    calls: list = []
    original = getattr(data, name)

    def wrapper(*args, **kwargs):
        calls.append(args)
        if started is not None:
            started.set()
        threading.Event().wait(0.2)
        return original(*args, **kwargs)

    monkeypatch.setattr(data, name, wrapper)
    return calls


def test_the_curve_page_reads_its_curves_once(study, monkeypatch):
    started = threading.Event()
    reads = counted(monkeypatch, "_read_line", started)
    client = TestClient(create_app(str(study)), base_url=BASE)
    assert client.get("/curves?cards=curve_a,curve_b&metric=loss,lr").status_code == 200
    assert started.wait(10)  # the page's early read has begun
    payload = client.get("/api/curves?cards=curve_a,curve_b&metric=loss,lr&width=400").json()
    assert [len(panel["series"]) for panel in payload["panels"]] == [2, 2]
    assert sorted((card.name, metric) for _, card, metric, *_ in reads) == [
        ("curve_a", "loss"),
        ("curve_a", "lr"),
        ("curve_b", "loss"),
        ("curve_b", "lr"),
    ]


def test_the_study_page_builds_its_table_once(study, monkeypatch):
    started = threading.Event()
    builds = counted(monkeypatch, "build_table", started)
    client = TestClient(create_app(str(study)), base_url=BASE)
    assert client.get("/?where=N>=4").status_code == 200
    assert started.wait(10)
    page = client.get("/api/table?where=N>=4").json()
    assert page["total"] > 0 and len(builds) == 1  # the table the page's early build made


def test_a_mistake_in_the_address_is_reported_by_the_page_request(study):
    client = TestClient(create_app(str(study)), base_url=BASE)
    assert client.get("/?where=N>>4").status_code == 200  # the early build fails quietly
    response = client.get("/api/table?where=N>>4")
    assert response.status_code == 400 and "error" in response.json()
