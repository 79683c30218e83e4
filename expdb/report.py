"""A study written up: `expdb report`.

`write_report` turns a set of cards into one of two documents:

- markdown (`format="md"`): a self-contained write-up, with a title; what was compared and
  why (each card with the notes its author wrote); the comparison table; the
  hyperparameters that differ; one PNG per curve beside the document, linked by a relative
  path; what went wrong (expdb's own notes: divergences, crashes, failures); and the
  environment each card's latest run ran in;
- LaTeX (`format="latex"`): the comparison table alone, booktabs, caption above;
- HTML (`format="html"`, in `expdb.report_html`): the markdown report's sections in one file
  that opens offline, with interactive plots whose data is embedded.

Every file is written beside its destination under a temporary name and moved into place
only once all of them are ready, so a failure leaves the previous report as it was and no
half-written file. Running it again writes the same file names: the report is updated.

Only the markdown path imports matplotlib (through `expdb.plot`).
"""

import io
import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from .cards import Card, card_exists
from .db import Database
from .errors import ExpdbError
from .lifecycle import RunStatus
from .metrics import PROFILE_COLUMNS, load_definitions
from .outputs import (
    YLim,
    beside,
    check_output,
    check_plot_options,
    fill,
    replace_all,
    staging,
)
from .metrics import format_interval
from .render import markdown_table, markdown_text, write_latex, write_markdown
from .stats import seeds_needed
from .table import ComparisonTable, GroupRow, _did_you_mean, build_table, parse_metric
from .values import format_value, in_words, plural, same
from .views import format_duration, format_time

FORMATS = ("md", "latex", "html")
_UNSAFE_IN_FILE_NAME = re.compile(r"[^A-Za-z0-9_.\-]+")
_NAMES_IN_TITLE = 3


# -- checks --------------------------------------------------------------------------------


def _metrics_by_card(db: Database, cards: list[Card]) -> dict[int, set[str]]:
    """card id -> every metric key it has: recorded summaries, profile columns, and curves of any run."""
    among, ids = db.among("run.card_id", [card.id for card in cards])
    found: dict[int, set[str]] = {card.id: set() for card in cards}
    for card_id, key in db.query(
        f"SELECT DISTINCT run.card_id, metric.key FROM metric JOIN run ON run.id = metric.run_id WHERE {among} "
        f"UNION SELECT DISTINCT run.card_id, series.key FROM series JOIN run ON run.id = series.run_id WHERE {among}",
        ids + ids,
    ):
        found[card_id].add(key)
    columns = ", ".join(f"max(CASE WHEN {column} IS NULL THEN 0 ELSE 1 END)" for column in PROFILE_COLUMNS.values())
    among, ids = db.among("card_id", [card.id for card in cards])
    for card_id, *present in db.query(f"SELECT card_id, {columns} FROM profile WHERE {among} GROUP BY card_id", ids):
        found[card_id].update(key for key, there in zip(PROFILE_COLUMNS, present, strict=True) if there)
    return found


def _who_has_what(cards: list[Card], have: dict[int, set[str]], limit: int = 10) -> str:
    parts = [f"{card.name} has {', '.join(sorted(have[card.id])) or 'no metrics'}" for card in cards[:limit]]
    if len(cards) > limit:
        parts.append(f"and {len(cards) - limit} more cards")
    return "; ".join(parts)


def _check_metrics(db: Database, cards: list[Card], metrics: list[str]) -> None:
    """A metric that none of these cards has is an error that says which cards have which metrics."""
    have = _metrics_by_card(db, cards)
    for text in metrics:
        key, _ = parse_metric(text)
        if not any(key in have[card.id] for card in cards):
            close = _did_you_mean(key, sorted(set().union(*have.values()))).strip()
            hint = f" ({close})" if close else ""
            raise ExpdbError(f"no card of the report has a metric {key!r}{hint}: {_who_has_what(cards, have)}")


# -- markdown ------------------------------------------------------------------------------


def _listed(names: list[str], limit: int = _NAMES_IN_TITLE) -> str:
    """"a", "a and b", "a, b and c", "a, b, c and 47 more"."""
    if len(names) > limit + 1:
        return ", ".join(names[:limit]) + f" and {len(names) - limit} more"
    return in_words(names)


def _notes(db: Database, cards: list[Card]) -> dict[int, list[tuple]]:
    """card id -> its notes, oldest first: (text, automatic, step, run id, created_at)."""
    found: dict[int, list[tuple]] = {card.id: [] for card in cards}
    among, ids = db.among("card_id", [card.id for card in cards])
    for card_id, text, automatic, step, run_id, created in db.query(
        f"SELECT card_id, text, automatic, step, run_id, created_at FROM note WHERE {among} ORDER BY created_at, id", ids
    ):
        found[card_id].append((text, bool(automatic), step, run_id, created))
    return found


def _latest_runs(db: Database, cards: list[Card]) -> dict[int, dict]:
    """card id -> its latest run: id, status, times, exit reason, host, device, env."""
    columns = ("id", "card_id", "status", "started_at", "ended_at", "exit_reason", "host", "device", "env")
    runs = {}
    among, ids = db.among("card_id", [card.id for card in cards])
    for row in db.query(
        f"SELECT {', '.join(columns)} FROM run WHERE id IN (SELECT max(id) FROM run WHERE {among} GROUP BY card_id)", ids
    ):
        run = dict(zip(columns, row, strict=True))
        try:
            run["env"] = json.loads(run["env"] or "{}")
        except ValueError:
            run["env"] = {}
        runs[run["card_id"]] = run
    return runs


_UNFINISHED = (RunStatus.DIVERGED, RunStatus.FAILED, RunStatus.CRASHED, RunStatus.INTERRUPTED)


def _ended_runs(db: Database, cards: list[Card]) -> dict[int, list[tuple]]:
    """card id -> its runs that ended without finishing (diverged, failed, crashed, interrupted) with their reason."""
    found: dict[int, list[tuple]] = {}
    among, ids = db.among("card_id", [card.id for card in cards])
    for card_id, run_id, status, reason in db.query(
        f"SELECT card_id, id, status, exit_reason FROM run WHERE status IN ({', '.join('?' * len(_UNFINISHED))}) "
        f"AND {among} ORDER BY id",
        [*_UNFINISHED, *ids],
    ):
        found.setdefault(card_id, []).append((run_id, status, reason))
    return found


def _section_cards(cards: list[Card], notes: dict[int, list[tuple]], metric_labels: list[str], baseline: str | None) -> str:
    out = ["## What was compared", ""]
    sentence = f"{plural(len(cards), 'card')}, compared on {_listed(metric_labels, limit=len(metric_labels))}."
    if baseline is not None:
        sentence += f" Differences are against the baseline, `{baseline}`."
    out += [sentence, ""]
    for card in cards:
        head = f"- **`{card.name}`**"
        facts = [card.status] + ([f"forked from `{card.parent}`"] if card.parent else [])
        if card.tags:
            facts.append("tags: " + markdown_text(", ".join(card.tags)))
        written = [markdown_text(text) for text, automatic, *_ in notes[card.id] if not automatic]
        line = f"{head} ({'; '.join(facts)})"
        if written:
            line += ": " + " ".join(text if text.endswith((".", "?", "!")) else text + "." for text in written)
        else:
            line += ": no notes."
        out.append(line)
    return "\n".join(out) + "\n"


def _section_table(table: ComparisonTable, cards: list[Card]) -> str:
    out = ["## Results", ""]
    if not table.rows:
        return "\n".join(out + ["No card has these metrics yet.", ""])
    buffer = io.StringIO()
    write_markdown(table, buffer)
    out += [buffer.getvalue().rstrip("\n"), ""]
    if any(column.metric.direction for column in table.columns) and len(table.rows) > 1 and not table.grouped:
        out += ["The best value of each metric is in bold.", ""]
    shown = {member.card.id for row in table.rows for member in (row.rows if isinstance(row, GroupRow) else [row])}
    left_out = [card.name for card in cards if card.id not in shown]
    if left_out:
        out += [f"Not in the table, having none of these metrics: {', '.join(f'`{n}`' for n in left_out)}.", ""]
    return "\n".join(out)


def comparison_sentences(table: ComparisonTable) -> list[str]:
    """One plain sentence per folded row against the baseline; for a difference the seeds could not tell
    apart, how many seeds a difference the size of its interval's half-width would need."""
    sentences = []
    base = table.baseline
    for column in [column for column in table.columns if column.agg == "mean"]:
        for row in table.rows:
            found = table.difference(row, column)
            if found is None or base is None:
                continue
            counts = {int(row.number(column.key, "count") or 0), int(base.number(column.key, "count") or 0)}
            seeds = f"{counts.pop()} seeds each" if len(counts) == 1 else f"{' and '.join(map(str, sorted(counts)))} seeds"
            head = f"{row.name} vs {base.name}:"
            if not found.tested:
                difference = column.metric.cell(found.difference)
                why = "one of them has a single seed" if found.reason == "n < 2" else "the seeds gave identical differences"
                sentences.append(f"{head} {difference} {column.label}, untested: {why}.")
                continue
            interval = format_interval(column.metric, found.difference, found.low, found.high)  # type: ignore[arg-type]
            shown, bounds = interval.split(" [", 1)
            test = "paired t-test" if found.test == "paired" else "Welch's t-test"
            p = f"p = {found.p_adjusted:.2g} after Holm's correction, {test}"
            if found.significant:
                sentences.append(f"{head} {shown} {column.label}, 95% CI [{bounds}, distinguishable with {seeds} ({p}).")
                continue
            sentence = f"{head} {shown} {column.label}, 95% CI [{bounds}, not distinguishable with {seeds} ({p})."
            half = (found.high - found.low) / 2  # type: ignore[operator]
            effect = float(f"{half:.1g}")  # a round difference, the size this study could just about see
            needed = seeds_needed(effect, found.std, found.test == "paired") if found.std else None  # type: ignore[arg-type]
            effect_text = column.metric.cell(effect)  # with its unit: 2ms
            if needed is None:
                sentence += f" With this spread, a difference of {effect_text} would need over 1,000 seeds each to be detected."
            else:
                sentence += (
                    f" With this spread, a difference of {effect_text} would need about {needed} seeds each to be detected "
                    "80% of the time (a rough estimate: the spread itself is measured on few seeds)."
                )
            sentences.append(sentence)
    return sentences


def _section_comparisons(table: ComparisonTable) -> str:
    sentences = comparison_sentences(table)
    if not sentences:
        return ""
    return "\n".join(["## Against the baseline", "", *(f"- {sentence}" for sentence in sentences)]) + "\n"


def _section_params(cards: list[Card]) -> str:
    out = ["## Hyperparameters that differ", ""]
    keys = list(dict.fromkeys(key for card in cards for key in card.params))
    first = cards[0].params
    differing = [key for key in keys if any(not same(card.params.get(key), first.get(key)) for card in cards)]
    shared = [key for key in keys if key not in differing]
    if len(cards) == 1:
        out.append("One card only: nothing to differ.")
    elif not differing:
        out.append("All cards have the same hyperparameters.")
    else:
        out.append(f"{plural(len(differing), 'hyperparameter')} {'differs' if len(differing) == 1 else 'differ'} between the "
                   "cards (- where a card has none).")
        out.append("")
        out.append(
            markdown_table(
                ["card", *differing], [[card.name, *(format_value(card.params.get(k)) for k in differing)] for card in cards]
            ).rstrip("\n")
        )
    if shared:
        out += ["", ("Shared by all: " if len(cards) > 1 else "Its hyperparameters: ")
                + ", ".join(markdown_text(f"{key}={format_value(first[key])}") for key in shared) + "."]
    return "\n".join(out) + "\n"


def _image_name(stem: str, curve: str) -> str:
    return f"{stem}_{_UNSAFE_IN_FILE_NAME.sub('_', curve)}.png"


def _section_problems(cards: list[Card], notes: dict[int, list[tuple]], failed: dict[int, list[tuple]]) -> str:
    """Every run that did not finish, with its reason, and expdb's own notes (divergences) under their run."""
    out = ["## What went wrong", ""]
    lines = []
    for card in cards:
        automatic = [(text, step, run_id) for text, is_automatic, step, run_id, _ in notes[card.id] if is_automatic]
        listed: set[int] = set()
        for run_id, status, reason in failed.get(card.id, []):
            listed.add(run_id)
            steps = [step for _, step, note_run in automatic if note_run == run_id and step is not None]
            where = f"run {run_id}" + (f", step {steps[0]:,}" if steps else "")
            why = f": {markdown_text(reason)}" if reason else ", no reason recorded"
            lines.append(f"- **`{card.name}`** ({where}): {status}{why}")
            lines += [
                f"  - step {step:,}: {markdown_text(text)}" if step is not None else f"  - {markdown_text(text)}"
                for text, step, note_run in automatic
                if note_run == run_id and " ".join(text.split()) != " ".join((reason or "").split())
            ]
        for text, step, run_id in automatic:
            if run_id in listed:
                continue
            parts = (f"run {run_id}" if run_id else "", f"step {step:,}" if step is not None else "")
            where = ", ".join(part for part in parts if part)
            lines.append(f"- **`{card.name}`**" + (f" ({where})" if where else "") + f": {markdown_text(text)}")
    out += lines or ["Nothing: every run finished, and expdb noted no divergence."]
    return "\n".join(out) + "\n"


def _commit_text(env: dict) -> str:
    commit = env.get("git_commit")
    if not commit:
        return "-"
    return commit[:10] + (" (dirty)" if env.get("git_dirty") else "")


def _section_environment(cards: list[Card], runs: dict[int, dict]) -> str:
    out = ["## Environment", "", "The latest run of each card.", ""]
    headers = ["card", "run", "status", "started", "ended", "duration", "host", "device", "torch", "CUDA", "git commit"]
    rows = []
    for card in cards:
        run = runs.get(card.id)
        if run is None:
            rows.append([card.name, "-", "never run", *["-"] * (len(headers) - 3)])
            continue
        env = run["env"]
        started, ended = run["started_at"], run["ended_at"]
        duration = format_duration(ended - started) if started is not None and ended is not None else "-"
        device = env.get("device_name") or run["device"] or "-"
        if run["device"] and env.get("device_name") and run["device"] not in ("cpu",):
            device = f"{env['device_name']} ({run['device']})"
        rows.append([
            card.name,
            str(run["id"]),
            run["status"],
            format_time(started) or "-",
            format_time(ended) or ("still running" if run["status"] == RunStatus.RUNNING else "-"),
            duration,
            run["host"] or "-",
            device,
            env.get("torch") or "-",
            env.get("cuda") or ("none" if env.get("torch") else "-"),
            _commit_text(env),
        ])
    out.append(markdown_table(headers, rows).rstrip("\n"))
    return "\n".join(out) + "\n"


def _default_title(cards: list[Card]) -> str:
    return f"Comparison of {_listed([card.name for card in cards])}"


def report_inputs(db: Database, cards: list[Card], metrics: list[str], baseline: str | None, folding: dict) -> tuple:
    """What the markdown and HTML reports are written from: the comparison table, the metric definitions,
    the metrics' labels, the cards' notes, latest and ended runs, and which metrics each card has."""
    table = build_table(db, cards, metrics, baseline=baseline, **folding)
    definitions = load_definitions(db)
    labels = list(dict.fromkeys(column.metric.label for column in table.columns if column.requested))  # asked for, or all
    notes, runs, failed = _notes(db, cards), _latest_runs(db, cards), _ended_runs(db, cards)
    return table, definitions, labels, notes, runs, failed, _metrics_by_card(db, cards)


def _write_markdown_report(
    db: Database, cards: list[Card], output: Path, metrics: list[str], curves: list[str],
    x: str, smooth: float, log_y: bool, ylim: YLim | None, baseline: str | None, title: str | None, folding: dict,
) -> list[Path]:
    from .plot import plot_curves  # matplotlib: only here

    table, definitions, labels, notes, runs, failed, have = report_inputs(db, cards, metrics, baseline, folding)

    with staging() as staged:  # (temporary, target)
        plots = ["## Curves", ""]
        if smooth > 0:
            plots += [f"Smoothed with an exponential moving average of weight {smooth:g}; the raw curve is drawn faintly "
                      "behind.", ""]
        for curve in curves:
            plots += [f"### {curve}", ""]
            with_curve = [card for card in cards if curve in have[card.id]]
            if not with_curve:
                plots += [f"No card logged the curve `{curve}`, so there is no plot of it.", ""]
                continue
            image = output.parent / _image_name(output.stem, curve)
            temporary = beside(image, suffix=".png")
            staged.append((temporary, image))
            result = plot_curves(
                db, with_curve, [curve], temporary, x=x, smooth=smooth, log_y=log_y, ylim=ylim, over=folding.get("over")
            )
            plots += [f"![{curve}]({quote(image.name)})", ""]
            missing = [card.name for card in cards if curve not in have[card.id]]
            if missing:
                plots += [f"Not drawn, having no `{curve}` curve: {', '.join(f'`{n}`' for n in missing)}.", ""]
            for warning in result.warnings:
                if "no run with a" not in warning:
                    plots += [f"Note: {markdown_text(warning)}.", ""]
            clipped = sorted({line.card for line in result.lines if line.clipped})
            if clipped:
                plots += [
                    f"The y range is that of the healthy data; {', '.join(f'`{name}`' for name in clipped)} "
                    f"{'goes' if len(clipped) == 1 else 'go'} beyond it (diverged, or outside --ylim), "
                    "drawn at its edge from the triangle on.", "",
                ]

        files = _section_attachments(db, cards, output, staged)
        when = format_time(time.time())
        document = [
            f"# {markdown_text(title) if title else _default_title(cards)}",
            "",
            f"Written by expdb on {when} from {plural(len(cards), 'card')}.",
            "",
            _section_cards(cards, notes, labels, baseline),
            _section_table(table, cards),
            _section_comparisons(table),
            _section_params(cards),
            "\n".join(plots),
            _section_problems(cards, notes, failed),
            files,
            _section_environment(cards, runs),
        ]
        temporary = beside(output)
        staged.append((temporary, output))
        fill(temporary, lambda handle: handle.write("\n".join(document).rstrip("\n") + "\n"))
        replace_all(staged)
    return [output] + [target for _, target in staged if target != output]


def _section_attachments(db: Database, cards: list[Card], output: Path, staged: list[tuple[Path, Path]]) -> str:
    """Images shown, other files linked, each copied to `<output stem>_files/<card>/` beside the report."""
    from .attachments import attachments_of, content_path, store_directory

    found = attachments_of(db, [card.id for card in cards])
    if not found:
        return ""
    store = store_directory(db)
    lines = ["## Attachments", ""]
    for card in cards:
        if card.id not in found:
            continue
        lines += [f"### {card.name}", ""]
        folder = output.parent / f"{output.stem}_files" / card.name
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ExpdbError(f"cannot write {folder}: {error.strerror or error}") from None
        for attachment in found[card.id]:
            target = folder / attachment.name
            temporary = beside(target, suffix=Path(attachment.name).suffix)
            staged.append((temporary, target))
            source = content_path(store, attachment.sha256)
            if not source.is_file():
                raise ExpdbError(f"the content of {card.name}'s attachment {attachment.name} is missing from {store}")
            fill(temporary, _writer_of(source), binary=True, shown=target)
            link = quote(f"{output.stem}_files/{card.name}/{attachment.name}")
            note = f": {attachment.note}" if attachment.note else ""
            if attachment.is_image:
                lines += [f"![{attachment.name}]({link})", "", f"*{attachment.name}*{note}", ""]
            else:
                lines += [f"- [{attachment.name}]({link}) ({attachment.size:,} bytes){note}"]
        lines.append("")
    return "\n".join(lines)


def _writer_of(source: Path):
    def write(handle) -> None:
        handle.write(source.read_bytes())

    return write


def _write_latex_report(
    db: Database, cards: list[Card], output: Path, metrics: list[str], baseline: str | None, title: str | None, folding: dict
) -> list[Path]:
    table = build_table(db, cards, metrics, baseline=baseline, **folding)
    if not table.rows:
        raise ExpdbError(f"none of the cards has {', '.join(metrics) or 'a recorded metric'}: nothing to put in a table")
    buffer = io.StringIO()
    write_latex(table, buffer, caption=title)
    with staging() as staged:
        staged.append((beside(output), output))
        fill(staged[0][0], lambda handle: handle.write(buffer.getvalue()))
        replace_all(staged)
    return [output]


# -- the entry point -----------------------------------------------------------------------


def write_report(
    db: Database,
    cards: list[Card],
    output: Path,
    *,
    metrics: Sequence[str],
    curves: Sequence[str] = ("loss",),
    x: str = "step",
    smooth: float = 0.0,
    log_y: bool = False,
    ylim: YLim | None = None,
    baseline: str | None = None,
    title: str | None = None,
    format: str = "md",
    over: str | list[str] | None = None,
    spread: str = "std",
    invalid_baseline: bool = False,
) -> list[Path]:
    """Write a report on `cards` to `output`; returns the files written, the document first.

    "md": the document and one `<output stem>_<curve>.png` per curve beside it (a curve no card
    has gets a sentence instead). "latex": the comparison table alone. A baseline that is not
    among `cards` is added to them. `over` (seed): folded rows and mean curves, tested against the
    baseline (a card or a variant's name), with a sentence per comparison. Raises ExpdbError, with
    nothing written, on bad input.
    """
    if format not in FORMATS:
        raise ExpdbError(f"unknown report format {format!r}; use one of: {', '.join(FORMATS)}")
    if not cards:
        raise ExpdbError("no cards to report on: name some cards, or select them with a tag that cards have")
    output = Path(output)
    check_output(output)
    metrics = list(dict.fromkeys(metrics))
    curves = list(dict.fromkeys(curves))
    check_plot_options(x, smooth)  # before matplotlib is imported
    cards = list({card.id: card for card in cards}.values())
    folding: dict = {"invalid_baseline": invalid_baseline}
    if over:
        folding.update(over=over, spread=spread)
    if baseline is not None and not any(card.name == baseline for card in cards) and (not over or card_exists(db, baseline)):
        from .cards import get_card

        cards.insert(0, get_card(db, baseline))
    _check_metrics(db, cards, metrics)
    if format == "latex":
        return _write_latex_report(db, cards, output, metrics, baseline, title, folding)
    if format == "html":
        from .report_html import write_html_report

        return write_html_report(db, cards, output, metrics, curves, x, smooth, log_y, ylim, baseline, title, folding)
    return _write_markdown_report(db, cards, output, metrics, curves, x, smooth, log_y, ylim, baseline, title, folding)
