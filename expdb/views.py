"""Terminal views of cards: `list`, `show`, `diff`, `sweep`. Each renders to the rich Console it is given."""

import math
import statistics
import time
from collections.abc import Collection, Sequence
from dataclasses import replace

from rich.cells import cell_len
from rich.console import Console
from rich.padding import Padding
from rich.text import Text

from .cards import Card, CardDetails, CardDiff, ParamChange
from .conditions import MIN_PASSES, NOISE_SPREAD, is_noisy
from .fit import Column, print_table
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


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def _status_style(status: str) -> str:
    """A status's colour; "stalled" (running, but no step logged for long) is red."""
    return "red" if status == "stalled" else STATUS_STYLES.get(status) or ""


def _line(*parts: str | tuple[str, str] | Text) -> Text:
    """A line of text shown as written: user text in it is never markup or an emoji code."""
    return Text.assemble(*parts)


def _print(console: Console, *parts: str | tuple[str, str] | Text) -> None:
    """A line folded at spaces, not by the terminal mid-word; an indented line's folds keep its indent."""
    line = _line(*parts)
    indent = len(line.plain) - len(line.plain.lstrip(" "))
    console.print(Padding(line[indent:], (0, 0, 0, indent), expand=False) if indent else line)


def params_summary(params: dict, keys: list[str]) -> str:
    return " ".join(param_parts(params, keys))


def param_parts(params: dict, keys: list[str]) -> tuple[str, ...]:
    return tuple(f"{key}={format_value(params[key])}" for key in keys)


def results_parts(values: dict[str, float], definitions: dict[str, MetricDef]) -> tuple[str, ...]:
    return tuple(f"{key}={definition(definitions, key).cell(value)}" for key, value in values.items())


def render_list(
    cards: list[Card],
    hidden: int,
    changed_keys: dict[int, list[str]],
    results: dict[int, dict[str, float]],
    definitions: dict[str, MetricDef],
    console: Console,
    stalled: Collection[int] = (),
    wide: bool = False,
) -> None:
    """Cards in the order given; `changed_keys` are the parameters each card sets or changes vs its parent;
    `stalled`: the ids of the cards whose running run made no progress for long (see `render_stalls`).

    In a narrow terminal the creation time, tags and parent go first, then what the cards change."""
    statuses = ["stalled" if card.id in stalled else card.status for card in cards]
    print_table(
        console,
        [
            Column(
                "card",
                [f"{card.name} (invalid)" if card.invalid_reason else card.name for card in cards],
                styles=["dim" if card.invalid_reason else None for card in cards],
            ),
            Column("status", statuses, styles=[_status_style(status) for status in statuses]),
            Column("from", [card.parent or "" for card in cards], priority=4),
            Column("params", [param_parts(card.params, changed_keys[card.id]) for card in cards], priority=2),
            Column("results", [results_parts(results.get(card.id, {}), definitions) for card in cards], priority=1),
            Column("tags", [tuple(card.tags) for card in cards], priority=3),
            Column("created", [format_time(card.created_at) for card in cards], priority=5),
        ],
        wide=wide,
    )
    if hidden:
        _print(console, (f"… {plural(hidden, 'older card')} not shown (--all shows every card)", "dim"))


def _change_text(change: ParamChange, has_parent: bool) -> tuple[str, str | None]:
    if not has_parent or change.inherited:
        return "", None
    if change.parent_value is None:
        return "new", "cyan"
    return f"was {format_value(change.parent_value)}", "yellow"


def render_card(
    details: CardDetails, definitions: dict[str, MetricDef], console: Console, attachments: Sequence = (), wide: bool = False
) -> None:
    card = details.card
    _print(console, (card.name, "bold"), "  ", status_text(card.status))
    if card.invalid_reason:
        _print(
            console, "  ", (f"invalid: {card.invalid_reason}", "red"),
            " (left out of tables, plots and reports; `expdb validate` to undo)",
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
            _print(console, f"  {label + ':':9}", value)

    if details.changes:
        has_parent = card.parent is not None
        inherited = ["dim" if change.inherited else None for change in details.changes]
        columns = [
            Column("key", [change.key for change in details.changes], styles=inherited),
            Column("value", [format_value(change.value) for change in details.changes], styles=inherited, prose=True),
        ]
        if has_parent:
            changes = [_change_text(change, True) for change in details.changes]
            columns.append(
                Column(f"vs {card.parent}", [text for text, _ in changes], styles=[style for _, style in changes], priority=1)
            )
        print_table(console, columns, wide=wide, title="parameters")

    if details.runs:
        runs = details.runs
        took = [format_duration(run.ended_at - run.started_at) if run.started_at and run.ended_at else "" for run in runs]
        print_table(
            console,
            [
                Column("run", [str(run.id) for run in runs], right=True),
                Column("status", [run.status for run in runs], styles=[STATUS_STYLES.get(run.status) for run in runs]),
                Column("started", [format_time(run.started_at) for run in runs], priority=3),
                Column("took", took, priority=3),
                Column("results", [results_parts(run.metrics, definitions) for run in runs], priority=1),
                Column("exit reason", [run.exit_reason or "" for run in runs], priority=2, prose=True),
            ],
            wide=wide,
            title="runs",
        )
        for run in details.runs:
            if run.origin == BY_HAND:
                _print(console, f"  run {run.id} recorded by hand; source: {run.source or ''}")
            elif run.origin == IMPORTED:
                _print(console, f"  run {run.id} imported from {run.source or ''}")

    if details.profile:
        render_profile(details.profile, definitions, console)

    if attachments:
        print_table(
            console,
            [
                Column("file", [attachment.name for attachment in attachments]),
                Column("size", [format_number(attachment.size, "si1") + "B" for attachment in attachments], right=True),
                Column("run", [str(attachment.run_id or "") for attachment in attachments], priority=2),
                Column("sha256", [attachment.sha256[:12] for attachment in attachments], priority=3),
                Column("note", [attachment.note or "" for attachment in attachments], priority=1, prose=True),
            ],
            wide=wide,
            title="attachments",
        )

    if details.notes:
        _print(console, ("notes", "bold"))
        for note in details.notes:
            origin = ""
            if note.automatic:
                origin = f" expdb, step {note.step:,}" if note.step is not None else " expdb"
            _print(console, "  ", (format_time(note.created_at), "dim"), (origin, "magenta"), "  ", note.text)
            if note.settings:
                used = ", ".join(f"{key}={value:g}" for key, value in note.settings.items())
                _print(console, ("    with " + used, "dim"))


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
    _print(console, ("profile", "bold"), "  " + "  ".join(figures.values()))
    how = [
        f"{label} {profile[field]}"
        for label, field in (
            ("batch", "batch"), ("input", "input_shape"), ("dtype", "dtype"), ("parameters", "param_dtype"),
            ("device", "device"), ("threads", "threads"), ("flags", "flags"),
        )
        if profile[field] not in (None, "")
    ]
    if profile["iterations"] is not None:
        seconds = f" in {details['timing_s']:.2f} s" if details.get("timing_s") is not None else ""
        how.append(f"{profile['warmup']} warm-up and {profile['iterations']} timed passes{seconds}")
    if details.get("torch_version"):
        how.append(f"torch {details['torch_version']}")
    if how:
        _print(console, "  ", (", ".join(how), "dim"))
    if is_noisy(profile["cost_time_ms"], profile["cost_time_p10_ms"], profile["cost_time_p90_ms"], profile["iterations"]):
        _print(
            console,
            (f"  noisy: the p10-p90 spread is over {NOISE_SPREAD:.0%} of the median, or under {MIN_PASSES} passes were timed",
             "yellow"),
        )
    if profile["shared"]:
        _print(console, ("  profiled while another job shared the device", "yellow"))
    if details.get("throughput"):
        _print(console, f"  throughput {details['throughput']:,.1f} samples/s at batch {details['throughput_batch']}")
    if profile["params_trainable"] is not None and profile["params_trainable"] != profile["params_total"]:
        _print(console, f"  trainable params: {profile['params_trainable']:,} of {profile['params_total']:,}")
    for warning in (details.get("flops_disagreement"), details.get("flops_error")):
        if warning:
            _print(console, "  ", (warning, "yellow"))
    if details.get("skipped_ops"):
        skipped = ", ".join(f"{op} x{count}" for op, count in sorted(details["skipped_ops"].items()))
        _print(console, "  ", ("not counted in FLOPs:", "yellow"), " ", skipped)


def render_diff(diff: CardDiff, definitions: dict[str, MetricDef], console: Console, wide: bool = False) -> None:
    a, b = diff.a.name, diff.b.name
    if diff.params:
        print_table(
            console,
            [
                Column("key", [key for key, _, _ in diff.params]),
                Column(a, [format_value(value) for _, value, _ in diff.params], prose=True),
                Column(b, [format_value(value) for _, _, value in diff.params], prose=True),
            ],
            wide=wide,
            title="parameters",
        )
    else:
        _print(console, "same parameters")

    keys = list(dict.fromkeys([*diff.values_a, *diff.values_b]))
    if not keys:
        return
    labels, cells_a, cells_b, changes, styles = [], [], [], [], []
    for key in keys:
        metric = definition(definitions, key)
        if key == "flops" and diff.flops_counter:
            metric = replace(metric, source=diff.flops_counter)
        value_a, value_b = diff.values_a.get(key), diff.values_b.get(key)
        change: tuple[str, ...] = ()
        style = None
        if value_a is not None and value_b is not None:
            style = "green" if metric.better(value_b, value_a) else "red" if metric.better(value_a, value_b) else None
            sign = "+" if value_b >= value_a else "-"
            change = (sign + metric.cell(abs(value_b - value_a)),)
            if key in PROFILE_COLUMNS and value_a:
                change += (f"({(value_b - value_a) / value_a * 100:+.1f}%)",)
        labels.append(metric.header(with_unit=False))
        cells_a.append(metric.cell(value_a))
        cells_b.append(metric.cell(value_b))
        changes.append(change)
        styles.append(style)
    print_table(
        console,
        [
            Column("metric", labels, prose=True),
            Column(a, cells_a, right=True),
            Column(b, cells_b, right=True),
            Column("change", changes, right=True, styles=styles, priority=1),
        ],
        wide=wide,
        title="results",
    )


SPARK_LEVELS = "▁▂▃▄▅▆▇█"
SPARK_MIN = 8  # characters of a sparkline, however narrow the terminal


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
    """One sparkline per card of the curve `key`, with its first, lowest and last values.

    The sparklines are narrowed to fit the terminal, and a summary that does not fit beside its
    sparkline goes on the next line."""
    if not any(curves.values()):
        _print(console, f"no {key} curve to compare")
        return
    _print(console, (key, "bold"))
    label_width = max(cell_len(name) for name in curves)
    width = max(SPARK_MIN, min(width, console.width - label_width - 4))
    for name, curve in curves.items():
        label = "  " + name + " " * (label_width - cell_len(name))
        if curve is None or not any(math.isfinite(value) for value in curve.values):
            _print(console, label, "  ", (f"(no {key} curve)", "dim"))
            continue
        finite = [value for value in curve.values if math.isfinite(value)]
        summary = f"{format_number(finite[0], 'g4')} → {format_number(finite[-1], 'g4')}, min {format_number(min(finite), 'g4')}"
        summary += f"; steps {curve.steps[0]:,}–{curve.steps[-1]:,}"
        line = _line(label, "  ", sparkline(curve.values, width))
        if line.cell_len + 2 + cell_len(summary) <= console.width:
            console.print(line.append("  ").append(summary, "dim"), soft_wrap=True)
        else:
            console.print(line, soft_wrap=True)
            console.print(_line(" " * (label_width + 4), (summary, "dim")))


def render_sweep(plan: SweepPlan, console: Console, created: bool, wide: bool = False) -> None:
    """The sweep's cards with the values they vary, then how many were created (or would be, for --dry-run)."""
    columns = [Column("card", [card.name for card in plan.cards])]
    columns += [Column(key, [format_value(card.params[key]) for card in plan.cards], priority=1) for key in plan.varying]
    print_table(console, columns, wide=wide)
    fixed = params_summary(plan.fixed, list(plan.fixed))
    what = f"{len(plan.cards):,} cards from {plan.base}" + (f" with {fixed}" if fixed else "") + f", tagged {' '.join(plan.tags)}"
    _print(console, f"created {what}" if created else f"would create {what}; --dry-run created nothing")


def render_stalls(stalls: list, moment: float, console: Console) -> None:
    """A line for each running run that made no progress for long (expdb.lifecycle.Stall each)."""
    for stall in stalls:
        idle = format_duration(max(0.0, moment - stall.progress_at))
        since = f"for {idle} (the last was step {stall.step:,})" if stall.step is not None else f"in the {idle} since it started"
        _print(
            console,
            f"{stall.card} (run {stall.run_id}) is stalled: no step logged {since}, though its process is alive "
            "(hung in CUDA or NCCL?)",
        )


def render_queue(
    entries: list, moment: float, console: Console, stalled: Collection[int] = (), wide: bool = False
) -> None:
    """What is queued and running (expdb.queue.QueueEntry each): where, how it was launched, since when (ages at `moment`).

    In a narrow terminal the launcher, the job id, the host and the ages go first."""
    if not entries:
        _print(console, "nothing queued or running")
        return

    def age(timestamp: float | None) -> str:
        return f"{format_duration(max(0.0, moment - timestamp))} ago" if timestamp is not None else ""

    statuses = ["stalled" if entry.run_id in stalled else entry.status for entry in entries]
    print_table(
        console,
        [
            Column("card", [entry.card for entry in entries]),
            Column("run", [str(entry.run_id) for entry in entries], right=True),
            Column("status", statuses, styles=[_status_style(status) for status in statuses]),
            Column("host", [entry.host or "" for entry in entries], priority=3),
            Column("where", [entry.where for entry in entries], priority=1),
            Column("launcher", [entry.launcher or "" for entry in entries], priority=4),
            Column("job", [entry.job_id or "" for entry in entries], priority=4),
            Column("queued", [age(entry.queued_at) for entry in entries], priority=2),
            Column(
                "started",
                [age(entry.started_at) if entry.status == RunStatus.RUNNING else "" for entry in entries],
                priority=2,
            ),
        ],
        wide=wide,
    )
    running = sum(entry.status == RunStatus.RUNNING for entry in entries)
    _print(console, f"{running} running, {len(entries) - running} queued")


def render_environment(recorded, console: Console) -> None:
    """What a run recorded for a re-run (expdb.rerun.RunEnvironment): command, seed, git state with its diff,
    the variables that change training, and the installed packages."""
    env = recorded.env
    status = (recorded.status, _status_style(recorded.status))
    _print(console, (f"run {recorded.run_id}", "bold"), f" of {recorded.card}  ", status)
    facts = [
        ("command", recorded.command),
        ("cwd", env.get("cwd")),
        ("seed", None if recorded.seed is None else str(recorded.seed)),
        ("device", " ".join(part for part in (recorded.device, env.get("device_name") and f"({env['device_name']})") if part)
         or "unknown"),
        ("host", recorded.host),
        ("started", format_time(recorded.started_at) if recorded.started_at else None),
        ("python", env.get("python")),
        ("torch", env.get("torch") and ", ".join(  # "2.13.0+cpu", "2.4.1, CUDA 12.1, cuDNN 90100"
            [env["torch"], *(f"{name} {env[key]}" for key, name in (("cuda", "CUDA"), ("cudnn", "cuDNN")) if env.get(key))]
        )),
        ("git", env.get("git_commit", "not a git work tree") + (" (uncommitted changes)" if env.get("git_dirty") else "")),
    ]
    for label, value in facts:
        if value:
            _print(console, f"  {label + ':':9}{value}")
    variables = env.get("variables") or {}
    _print(console, ("variables", "bold"), ("" if variables else " (none of those that change training was set)", "dim"))
    for name, value in variables.items():
        _print(console, f"  {name}={value}")
    if env.get("git_untracked"):
        cut = f" ({env['git_untracked_cut']})" if env.get("git_untracked_cut") else ""
        _print(console, ("untracked source files", "bold"), cut)
        for name in env["git_untracked"]:
            _print(console, f"  {name}")
    if env.get("git_diff"):
        cut = f" ({env['git_diff_cut']})" if env.get("git_diff_cut") else ""
        _print(console, ("uncommitted changes", "bold"), f" (git diff HEAD){cut}")
        console.print(Text(env["git_diff"].rstrip("\n")), soft_wrap=True)
    packages = env.get("packages") or {}
    if packages:
        _print(console, ("packages", "bold"), f" ({len(packages)})")
        console.print(Text("\n".join(f"  {name}=={version}" for name, version in packages.items())), soft_wrap=True)
    else:
        _print(console, ("packages: not recorded (a run from before expdb recorded them)", "dim"))


def render_metric_definitions(definitions: dict[str, MetricDef], used: dict[str, int], console: Console) -> None:
    """The defined metrics, then the keys runs recorded without a definition."""
    keys = sorted(definitions) + sorted(set(used) - set(definitions))
    defined = [definitions.get(key) for key in keys]
    print_table(
        console,
        [
            Column("key", keys, styles=[None if found else "dim" for found in defined]),
            Column("label", [found.label if found else "" for found in defined], priority=1),
            Column("unit", [found.unit if found else "" for found in defined], priority=2),
            Column("better", [(found.direction or "") if found else "" for found in defined], priority=1),
            Column("format", [found.format if found else "" for found in defined], priority=3),
            Column("runs", [f"{used.get(key, 0):,}" for key in keys], right=True),
        ],
    )
    undefined = len(set(used) - set(definitions))
    if undefined:
        _print(console, f"{plural(undefined, 'metric')} recorded without a definition (dim): `expdb metric define KEY ...`")
