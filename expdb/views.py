"""Terminal views of cards: `list`, `show`, `diff`, `sweep`. Each renders to the rich Console it is given."""

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import replace

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .cards import Card, CardDetails, CardDiff, ParamChange
from .lifecycle import BY_HAND, IMPORTED, PLANNED, RunStatus
from .metrics import PROFILE_COLUMNS, MetricDef, definition, format_number
from .series import Curve
from .sweep import SweepPlan
from .values import format_value, plural

STATUS_STYLES = {
    PLANNED: "dim",
    RunStatus.QUEUED: "cyan",
    RunStatus.RUNNING: "bold cyan",
    RunStatus.FINISHED: "green",
    RunStatus.DIVERGED: "bold red",
    RunStatus.FAILED: "red",
    RunStatus.INTERRUPTED: "yellow",
    RunStatus.CRASHED: "red",
    "not started": "yellow",  # a queued job whose process ended before its run began
}


def format_time(timestamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp)) if timestamp is not None else ""


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def status_text(status: str) -> str:
    return f"[{STATUS_STYLES.get(status, '')}]{status}[/]"


def params_summary(params: dict, keys: list[str]) -> str:
    return " ".join(f"{key}={format_value(params[key])}" for key in keys)


def results_summary(values: dict[str, float], definitions: dict[str, MetricDef]) -> str:
    return " ".join(f"{key}={definition(definitions, key).cell(value)}" for key, value in values.items())


def render_list(
    cards: list[Card],
    hidden: int,
    changed_keys: dict[int, list[str]],
    results: dict[int, dict[str, float]],
    definitions: dict[str, MetricDef],
    console: Console,
) -> None:
    """Cards in the order given; `changed_keys` are the parameters each card sets or changes vs its parent."""
    grid = Table(show_edge=False, header_style="bold")
    for header in ("card", "status", "from", "params", "results", "tags", "created"):
        grid.add_column(header, no_wrap=header in ("card", "status", "created"), overflow="fold")
    for card in cards:
        grid.add_row(
            escape(card.name),
            status_text(card.status),
            escape(card.parent or ""),
            escape(params_summary(card.params, changed_keys[card.id])),
            escape(results_summary(results.get(card.id, {}), definitions)),
            escape(" ".join(card.tags)),
            format_time(card.created_at),
        )
    console.print(grid)
    if hidden:
        console.print(f"[dim]… {plural(hidden, 'older card')} not shown (--all shows every card)[/]")


def _change_text(change: ParamChange, has_parent: bool) -> str:
    if not has_parent or change.inherited:
        return ""
    if change.parent_value is None:
        return "[cyan]new[/]"
    return f"[yellow]was {escape(format_value(change.parent_value))}[/]"


def render_card(details: CardDetails, definitions: dict[str, MetricDef], console: Console, attachments: Sequence = ()) -> None:
    card = details.card
    console.print(f"[bold]{escape(card.name)}[/]  {status_text(card.status)}")
    if card.invalid_reason:
        console.print(
            f"  [red]invalid: {escape(card.invalid_reason)}[/] (left out of tables, plots and reports; `expdb validate` to undo)"
        )
    facts = [
        ("from", card.parent),
        ("forks", ", ".join(details.children)),
        ("runner", card.runner),
        ("tags", " ".join(card.tags)),
        ("created", format_time(card.created_at)),
        ("diverge", ", ".join(f"{key}={value:g}" for key, value in card.diverge.items())),
    ]
    for label, value in facts:
        if value:
            console.print(f"  {label + ':':9}{escape(value)}")

    if details.changes:
        params = Table(title="parameters", title_justify="left", show_edge=False, header_style="bold")
        params.add_column("key")
        params.add_column("value")
        has_parent = card.parent is not None
        if card.parent is not None:
            params.add_column(f"vs {escape(card.parent)}")
        for change in details.changes:
            cells = [escape(change.key), escape(format_value(change.value))]
            style = "dim" if change.inherited else None
            params.add_row(*cells, *([_change_text(change, True)] if has_parent else []), style=style)
        console.print(params)

    if details.runs:
        runs = Table(title="runs", title_justify="left", show_edge=False, header_style="bold")
        for header in ("run", "status", "started", "took", "results", "exit reason"):
            runs.add_column(header, overflow="fold")
        for run in details.runs:
            took = format_duration(run.ended_at - run.started_at) if run.started_at and run.ended_at else ""
            runs.add_row(
                str(run.id),
                status_text(run.status),
                format_time(run.started_at),
                took,
                escape(results_summary(run.metrics, definitions)),
                escape(run.exit_reason or ""),
            )
        console.print(runs)
        for run in details.runs:
            if run.origin == BY_HAND:
                console.print(f"  run {run.id} recorded by hand; source: {escape(run.source or '')}", soft_wrap=True)
            elif run.origin == IMPORTED:
                console.print(f"  run {run.id} imported from {escape(run.source or '')}", soft_wrap=True)

    if details.profile:
        render_profile(details.profile, definitions, console)

    if attachments:
        files = Table(title="attachments", title_justify="left", show_edge=False, header_style="bold")
        for header in ("file", "size", "run", "sha256", "note"):
            files.add_column(header, overflow="fold")
        for attachment in attachments:
            files.add_row(
                escape(attachment.name), format_number(attachment.size, "si1") + "B", str(attachment.run_id or ""),
                attachment.sha256[:12], escape(attachment.note or ""),
            )
        console.print(files)

    if details.notes:
        console.print("[bold]notes[/]")
        for note in details.notes:
            origin = ""
            if note.automatic:
                origin = "expdb" if note.step is None else f"expdb, step {note.step:,}"
            prefix = f"[dim]{format_time(note.created_at)}[/]" + (f" [magenta]{origin}[/]" if origin else "")
            console.print(f"  {prefix}  {escape(note.text)}")
            if note.settings:
                used = ", ".join(f"{key}={value:g}" for key, value in note.settings.items())
                console.print(f"    [dim]with {escape(used)}[/]")


def render_profile(profile: dict, definitions: dict[str, MetricDef], console: Console) -> None:
    """A stored profile: the researcher's three figures, how they were measured, what was not counted."""
    figures = {
        key: f"{definition(definitions, key).label} {definition(definitions, key).cell(profile[column])}"
        for key, column in PROFILE_COLUMNS.items()
        if profile[column] is not None
    }
    details = profile["details"]
    if "flops" in figures:
        figures["flops"] += f" ({profile['flops_counter'] or 'counter unknown'}, MAC)"
    if "cost_time" in figures and profile["cost_time_p10_ms"] is not None:
        figures["cost_time"] += f" (p10 {profile['cost_time_p10_ms']:.2f}, p90 {profile['cost_time_p90_ms']:.2f})"
    console.print("[bold]profile[/]  " + escape("  ".join(figures.values())))
    how = [
        f"{label} {profile[field]}"
        for label, field in (
            ("batch", "batch"), ("input", "input_shape"), ("dtype", "dtype"), ("device", "device"),
            ("threads", "threads"), ("warm-up", "warmup"), ("timed", "iterations"),
        )
        if profile[field] is not None
    ]
    if details.get("torch_version"):
        how.append(f"torch {details['torch_version']}")
    if details.get("cudnn_benchmark") is not None:
        how.append(f"cudnn.benchmark {details['cudnn_benchmark']}")
    if how:
        console.print(f"  [dim]{escape(', '.join(how))}[/]")
    if details.get("throughput"):
        console.print(f"  throughput {details['throughput']:,.1f} samples/s at batch {details['throughput_batch']}")
    if profile["params_trainable"] is not None and profile["params_trainable"] != profile["params_total"]:
        console.print(f"  trainable params: {profile['params_trainable']:,} of {profile['params_total']:,}")
    for warning in (details.get("flops_disagreement"), details.get("flops_error")):
        if warning:
            console.print(f"  [yellow]{escape(warning)}[/]")
    if details.get("skipped_ops"):
        skipped = ", ".join(f"{op} x{count}" for op, count in sorted(details["skipped_ops"].items()))
        console.print(f"  [yellow]not counted in FLOPs:[/] {escape(skipped)}")


def render_diff(diff: CardDiff, definitions: dict[str, MetricDef], console: Console) -> None:
    a, b = diff.a.name, diff.b.name
    params = Table(title="parameters", title_justify="left", show_edge=False, header_style="bold")
    for header in ("key", a, b):
        params.add_column(escape(header))
    for key, value_a, value_b in diff.params:
        params.add_row(escape(key), escape(format_value(value_a)), escape(format_value(value_b)))
    if diff.params:
        console.print(params)
    else:
        console.print("same parameters")

    keys = list(dict.fromkeys([*diff.values_a, *diff.values_b]))
    if not keys:
        return
    results = Table(title="results", title_justify="left", show_edge=False, header_style="bold")
    for header in ("metric", a, b, "change"):
        results.add_column(escape(header), justify="left" if header == "metric" else "right")
    for key in keys:
        metric = definition(definitions, key)
        if key == "flops" and diff.flops_counter:
            metric = replace(metric, source=diff.flops_counter)
        value_a, value_b = diff.values_a.get(key), diff.values_b.get(key)
        change = ""
        if value_a is not None and value_b is not None:
            style = "green" if metric.better(value_b, value_a) else "red" if metric.better(value_a, value_b) else ""
            sign = "+" if value_b >= value_a else "-"
            change = sign + metric.cell(abs(value_b - value_a))
            if key in PROFILE_COLUMNS and value_a:
                change += f" ({(value_b - value_a) / value_a * 100:+.1f}%)"
            change = f"[{style}]{escape(change)}[/]" if style else escape(change)
        results.add_row(escape(metric.header(with_unit=False)), metric.cell(value_a), metric.cell(value_b), change)
    console.print(results)


SPARK_LEVELS = "▁▂▃▄▅▆▇█"


def sparkline(values, width: int) -> str:
    """A curve in `width` characters: each the mean of its share of the points, NaN-free, scaled to its range."""
    finite = [value for value in values if math.isfinite(value)]
    if not finite:
        return ""
    buckets = min(width, len(finite))
    means = [
        statistics.fmean(finite[index * len(finite) // buckets : (index + 1) * len(finite) // buckets])
        for index in range(buckets)
    ]
    low, high = min(means), max(means)
    span = high - low or 1.0
    return "".join(SPARK_LEVELS[round((mean - low) / span * (len(SPARK_LEVELS) - 1))] for mean in means)


def render_curves(curves: dict[str, Curve | None], key: str, width: int, console: Console) -> None:
    """One sparkline per card of the curve `key`, with its first, lowest and last values."""
    if not any(curves.values()):
        console.print(f"no {escape(key)} curve to compare")
        return
    console.print(f"[bold]{escape(key)}[/]")
    label_width = max(len(name) for name in curves)
    for name, curve in curves.items():
        if curve is None or not any(math.isfinite(value) for value in curve.values):
            console.print(f"  {escape(name.ljust(label_width))}  [dim](no {escape(key)} curve)[/]")
            continue
        finite = [value for value in curve.values if math.isfinite(value)]
        summary = f"{format_number(finite[0], 'g4')} → {format_number(finite[-1], 'g4')}, min {format_number(min(finite), 'g4')}"
        steps = f"steps {curve.steps[0]:,}–{curve.steps[-1]:,}"
        console.print(f"  {escape(name.ljust(label_width))}  {sparkline(curve.values, width)}  [dim]{summary}; {steps}[/]")


def render_sweep(plan: SweepPlan, console: Console, created: bool) -> None:
    """The sweep's cards with the values they vary, then how many were created (or would be, for --dry-run)."""
    grid = Table(show_edge=False, header_style="bold")
    grid.add_column("card", no_wrap=True)
    for key in plan.varying:
        grid.add_column(escape(key), no_wrap=True)
    for card in plan.cards:
        grid.add_row(escape(card.name), *(escape(format_value(card.params[key])) for key in plan.varying))
    console.print(grid)
    fixed = params_summary(plan.fixed, list(plan.fixed))
    what = f"{len(plan.cards):,} cards from {plan.base}" + (f" with {fixed}" if fixed else "") + f", tagged {' '.join(plan.tags)}"
    console.print(escape(f"created {what}" if created else f"would create {what}; --dry-run created nothing"), soft_wrap=True)


def render_queue(entries: list, moment: float, console: Console) -> None:
    """What is queued and running (expdb.queue.QueueEntry each): where, how it was launched, since when (ages at `moment`)."""
    if not entries:
        console.print("nothing queued or running")
        return
    grid = Table(show_edge=False, header_style="bold")
    for column in ("card", "run", "status", "host", "where", "launcher", "job", "queued", "started"):
        grid.add_column(column, no_wrap=True, justify="right" if column == "run" else "left")

    def age(timestamp: float | None) -> str:
        return f"{format_duration(max(0.0, moment - timestamp))} ago" if timestamp is not None else ""

    for entry in entries:
        grid.add_row(
            escape(entry.card), str(entry.run_id), status_text(entry.status), escape(entry.host or ""), escape(entry.where),
            escape(entry.launcher or ""), escape(entry.job_id or ""), age(entry.queued_at),
            age(entry.started_at) if entry.status == RunStatus.RUNNING else "",
        )
    console.print(grid)
    running = sum(entry.status == RunStatus.RUNNING for entry in entries)
    console.print(f"{running} running, {len(entries) - running} queued")


def render_metric_definitions(definitions: dict[str, MetricDef], used: dict[str, int], console: Console) -> None:
    """The defined metrics, then the keys runs recorded without a definition."""
    table = Table(show_edge=False, header_style="bold")
    for header in ("key", "label", "unit", "better", "format", "runs"):
        table.add_column(header, overflow="fold")
    for key in sorted(definitions):
        found = definitions[key]
        runs = f"{used.get(key, 0):,}"
        cells = (escape(key), escape(found.label), escape(found.unit), found.direction or "", found.format, runs)
        table.add_row(*cells)
    for key in sorted(set(used) - set(definitions)):
        table.add_row(escape(key), "", "", "", "", f"{used[key]:,}", style="dim")
    console.print(table)
    undefined = len(set(used) - set(definitions))
    if undefined:
        console.print(f"{plural(undefined, 'metric')} recorded without a definition (dim): `expdb metric define KEY ...`")
