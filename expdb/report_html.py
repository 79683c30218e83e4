"""`expdb report --format html`: the markdown report as one self-contained HTML file.

The sections are the markdown report's own (`expdb.report`), turned into HTML; the curves are
interactive plots instead of PNGs: their data, reduced as the UI reduces it (EMA on every
point, then min/max buckets), is embedded in the file with uPlot and the UI's drawing script,
inline. The file opens from disk with no server and no network.
"""

import html
import json
import re
import time
from importlib.resources import files
from pathlib import Path

from .cards import Card
from .db import Database
from .outputs import YLim, beside, fill, replace_all, staging
from .report import (
    _default_title,
    _section_cards,
    _section_comparisons,
    _section_environment,
    _section_params,
    _section_problems,
    _section_table,
    report_inputs,
)
from .values import plural
from .views import format_time

REPORT_WIDTH = 1100  # pixels of a plot in the report: its curves are reduced to about this many buckets
# The file's own inline script and style only: it loads nothing, from anywhere.
REPORT_CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"


def _inline(text: str) -> str:
    """Markdown's **bold** and `code`, in text escaped exactly once: the report's markdown escapes the
    HTML in user text already, and unescaping first keeps any text it left alone from running."""
    text = html.escape(html.unescape(text), quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def _table_html(lines: list[str]) -> str:
    def cells(line: str) -> list[str]:
        """The cells of a markdown table row, whose backslashes and pipes are escaped with a backslash."""
        found, cell, escaped = [], [], False
        for char in line.strip():
            if escaped:
                cell.append(char)
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == "|":
                found.append("".join(cell).strip())
                cell = []
            else:
                cell.append(char)
        return found[1:]

    head, rule, *body = lines
    right = [cell.endswith(":") for cell in cells(rule)]

    def row(tag: str, texts: list[str]) -> str:
        return (
            "<tr>"
            + "".join(
                f"<{tag}{' class=num' if index < len(right) and right[index] else ''}>{_inline(text)}</{tag}>"
                for index, text in enumerate(texts)
            )
            + "</tr>"
        )

    return (
        "<table><thead>"
        + row("th", cells(head))
        + "</thead><tbody>"
        + "".join(row("td", cells(line)) for line in body)
        + "</tbody></table>"
    )


def markdown_html(text: str) -> str:
    """The markdown the report's sections write (headings, paragraphs, lists, tables, bold, code) as HTML."""
    out: list[str] = []
    blocks = re.split(r"\n\s*\n", text.strip("\n"))
    for block in blocks:
        lines = block.splitlines()
        if not lines:
            continue
        heading = re.match(r"(#{1,6}) (.*)", lines[0])
        if heading and len(lines) == 1:
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif all(line.startswith("|") for line in lines) and len(lines) >= 2:
            out.append(_table_html(lines))
        elif all(line.startswith("- ") for line in lines):
            out.append("<ul>" + "".join(f"<li>{_inline(line[2:])}</li>" for line in lines) + "</ul>")
        else:
            out.append(f"<p>{_inline(' '.join(lines))}</p>")
    return "\n".join(out)


def _asset(name: str) -> str:
    return (files("expdb.ui") / "static" / name).read_text(encoding="utf-8")


def _script(code: str) -> str:
    """Script text that cannot end its <script> element early."""
    return code.replace("</", "<\\/")


def write_html_report(
    db: Database,
    cards: list[Card],
    output: Path,
    metrics: list[str],
    curves: list[str],
    x: str,
    smooth: float,
    log_y: bool,
    ylim: YLim | None,
    baseline: str | None,
    title: str | None,
    folding: dict,
) -> list[Path]:
    from .ui.data import curves as curve_data  # numpy: only here

    table, definitions, labels, notes, runs, failed, have = report_inputs(db, cards, metrics, baseline, folding)

    plots: list[str] = ["<h2>Curves</h2>"]
    payloads: list[dict] = []
    if smooth > 0:
        plots.append(
            f"<p>Smoothed with an exponential moving average of weight {smooth:g}; the raw curve is drawn faintly behind.</p>"
        )
    for curve in curves:
        plots.append(f"<h3>{html.escape(curve)}</h3>")
        with_curve = [card for card in cards if curve in have[card.id]]
        if not with_curve:
            plots.append(f"<p>No card logged the curve <code>{html.escape(curve)}</code>, so there is no plot of it.</p>")
            continue
        plots.append(f'<div class="curves" data-index="{len(payloads)}"></div>')
        # Folded (--over), mean curves in their bands, as the markdown report draws them.
        payload = curve_data(
            db, with_curve, [curve], x=x, smooth=smooth, log_y=log_y, width=REPORT_WIDTH, over=folding.get("over")
        )
        payloads.append({**payload, "ylim": list(ylim) if ylim else None})
        missing = [card.name for card in cards if curve not in have[card.id]]
        if missing:
            plots.append(
                f"<p>Not drawn, having no <code>{html.escape(curve)}</code> curve: {html.escape(', '.join(missing))}.</p>"
            )

    heading = title or _default_title(cards)
    body = "\n".join(
        [
            f"<h1>{html.escape(html.unescape(heading))}</h1>",
            f"<p>Written by expdb on {html.escape(format_time(time.time()))} from {plural(len(cards), 'card')}.</p>",
            markdown_html(_section_cards(cards, notes, labels, baseline)),
            markdown_html(_section_table(table, cards)),
        markdown_html(_section_comparisons(table)),
            markdown_html(_section_params(cards)),
            "\n".join(plots),
            markdown_html(_section_problems(cards, notes, failed)),
            markdown_html(_section_environment(cards, runs)),
        ]
    )
    # The data as JSON inside a non-executed script element: "<" escaped, so no text can close it.
    data = json.dumps(payloads, allow_nan=False).replace("<", "\\u003c")
    document = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{REPORT_CSP}">
<title>{html.escape(html.unescape(heading))}</title>
<style>{_asset("vendor/uplot/uPlot.min.css")}
{_asset("style.css")}
body {{ max-width: 1200px; margin: 0 auto; padding: 0 16px; }}</style>
</head>
<body>
{body}
<script type="application/json" id="expdb-curves">{data}</script>
<script>{_script(_asset("vendor/uplot/uPlot.iife.min.js"))}</script>
<script>{_script(_asset("chart.js"))}</script>
<script>{_script(_asset("report.js"))}</script>
</body>
</html>
"""

    def write(handle) -> None:
        handle.write(document)

    with staging() as staged:
        staged.append((beside(output), output))
        fill(staged[0][0], write)
        replace_all(staged)
    return [output]
