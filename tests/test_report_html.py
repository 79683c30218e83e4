"""`expdb report --format html`: the markdown report's sections as HTML, user text escaped, plots' data embedded."""

import json
import re

import pytest

from expdb.report_html import markdown_html
from ui_study import build_study


def test_markdown_of_the_report_becomes_html():
    text = (
        "## Results\n\n| card | IOU |\n|---|---:|\n| **a** | 0.3 \\| x |\n\n"
        "- **`a`** (finished): no notes.\n- b\n\nA `code` line."
    )
    assert markdown_html(text) == (
        "<h2>Results</h2>\n"
        "<table><thead><tr><th>card</th><th class=num>IOU</th></tr></thead>"
        "<tbody><tr><td><strong>a</strong></td><td class=num>0.3 | x</td></tr></tbody></table>\n"
        "<ul><li><strong><code>a</code></strong> (finished): no notes.</li><li>b</li></ul>\n"
        "<p>A <code>code</code> line.</p>"
    )


def test_user_text_is_escaped():
    assert markdown_html("- a note <script>alert(1)</script> & <img onerror=x>") == (
        "<ul><li>a note &lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;img onerror=x&gt;</li></ul>"
    )


@pytest.fixture
def study(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return build_study(tmp_path / "study.db")


def test_report_is_one_file_with_its_data(cli, study):
    from expdb import cards
    from expdb.db import Database

    with Database(str(study)) as db:
        cards.add_note(db, "curve_a", "</script><script>alert(1)</script>")
    result = cli(
        "report", "--db", str(study), "--tag", "sweep", "--format", "html", "-o", "v3.html", "--curve", "loss", "--ylim", "0:3"
    )
    assert result.code == 0, result.err
    assert result.out.strip() == "wrote v3.html"
    page = (study.parent / "v3.html").read_text()
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script src" not in page and "http://" not in page.split("<script>")[0]
    embedded = re.search(r'<script type="application/json" id="expdb-curves">(.*?)</script>', page, re.S).group(1)
    curves = json.loads(embedded)
    assert [series["card"] for series in curves[0]["panels"][0]["series"]] == ["curve_a", "curve_b"]
    assert curves[0]["ylim"] == [0.0, 3.0]
    assert "<h2>Results</h2>" in page and "<h2>What went wrong</h2>" in page


def test_html_format_needs_an_html_file(cli, study):
    result = cli("report", "--db", str(study), "--format", "html", "-o", "report.md")
    assert result.code == 2 and result.err.strip() == "error: --format html writes a .html file, not 'report.md'"
