"""The `expdb` command line: parse, call one library function, render.

Heavy libraries are never imported here: everyday commands start in a fraction of a second.
"""

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from . import cards, interrupts, lifecycle
from .cards import without_gc
from .db import Database
from .errors import ExpdbError, last_line
from .lifecycle import CARD_STATUSES, PLANNED, RunStatus
from .metrics import PROFILE_BUDGET_S, PROFILE_ITERATIONS, PROFILE_WARMUP
from .values import format_value, parse_key_values, plural

if TYPE_CHECKING:
    from .launch import Outcome

# Help text is plain text: "[default: ...]" in it is not rich markup.
app = typer.Typer(
    help="expdb: an experiment notebook that runs. Cards, runs, metrics and the comparison table. "
    "Shell completion: expdb --install-completion (bash, zsh, fish, PowerShell), then a new shell.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
db_app = typer.Typer(help="The database's schema revision: show it, upgrade it.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(db_app, name="db")


def show_version(value: bool) -> None:
    if value:
        from . import __version__

        console.print(f"expdb {__version__}", markup=False)
        raise typer.Exit()


@app.callback()
def options(
    version: Annotated[
        bool | None, typer.Option("--version", help="Print expdb's version and exit.", callback=show_version, is_eager=True)
    ] = None,
) -> None:
    pass


PROGRESS_COLUMNS = 60  # a run's progress bar beside the card's name: bar, step, loss, steps/s, times
TABLE_ROWS = 40  # a screenful of rows in `table`'s terminal view, the rest on request
PARAMS_HELP = "Hyperparameters as --KEY VALUE: ints, floats (4e-3), booleans (true/false), strings, lists ([3, 5])."
# Piped output is not cut to 80 columns, nor a message wrapped: a table written to a file keeps every digit,
# a script reads a message on its line. In a terminal a long message wraps between words, so a number is not
# split (a word wider than the terminal still folds); an error stays one line (soft_wrap).
# No emoji codes: user text (":bug:" in a note, "a:b:3" in an error) is printed as typed.
console = Console(
    highlight=False, emoji=False, width=None if sys.stdout.isatty() else 4096, soft_wrap=not sys.stdout.isatty()
)
errors = Console(stderr=True, highlight=False, emoji=False)


DbOption = Annotated[
    str | None,
    typer.Option("--db", envvar="EXPDB_DB", help="Database: an SQLite file (a path or sqlite:///PATH) or "
                                                 "postgresql+psycopg://USER@HOST/DB [default: ./experiments.db]"),
]


WideOption = Annotated[
    bool, typer.Option("--wide", help="Lay out every column at full width, even past the terminal's edge (a pipe always does).")
]


# Every command that works on several cards picks them the same way (cards.selected_ids).
SELECTION_HELP = (
    "Cards: the names and globs given ('cvt_io_v2_*'), any of them; --tag, --where and --status narrow them "
    "to the cards with all of those; nothing given is every card. In the order named, else oldest first. "
    "A name that is no card, or a selection that matches none, is an error (exit 2)."
)
CardsArgument = Annotated[
    list[str] | None,
    typer.Argument(metavar="CARDS", help="Card names and globs ('cvt_io_v2_*'); none: every card.", show_default=False),
]
TagOption = Annotated[str | None, typer.Option(help="Only the cards with this tag.")]
WhereOption = Annotated[
    str | None,
    typer.Option(help="Only the cards matching this filter over parameters, metrics, name, status, runner, valid and tag, "
                      "e.g. \"N>=5 and shared=true\", \"valid=false\", \"tag=bs\"."),
]
DivergeOption = Annotated[
    list[str],
    typer.Option(
        "--diverge", metavar="KEY=VALUE",
        help="A divergence threshold, e.g. rise_factor=1.5; repeat for several (README: Training trouble).",
    ),
]
StatusOption = Annotated[str | None, typer.Option(help=f"Only the cards with this status: {', '.join(CARD_STATUSES)}.")]


StalledOption = Annotated[
    float,
    typer.Option(
        "--stalled-after", envvar="EXPDB_STALLED_AFTER", min=0, metavar="MINUTES",
        help="Say when a running run has logged no step for this many minutes (hung in CUDA or NCCL?).",
    ),
]


def selection_of(
    names: list[str] | None, tag: str | None, where: str | None, status: str | None, invalid: bool = True
) -> cards.Selection:
    return cards.Selection(tuple(names or ()), tag, where, status, invalid)


# What `table`, `plot` and `report` add to the selection: invalid cards, folded seeds.
ShowInvalidOption = Annotated[
    bool, typer.Option("--all", help="Also the invalid cards, greyed with their reason (in a table never best, never the "
                                     "baseline).")
]
OverOption = Annotated[
    str | None,
    typer.Option(
        "--over",
        help="Fold the cards that differ only in these parameters (comma-separated), e.g. seed: one row per variant in a "
        "table, one mean curve with its band in a plot.",
    ),
]


@contextmanager
def open_db(location: str | None, create: bool = False, upgrade: str = "auto", ask_slurm: bool = False) -> Iterator[Database]:
    """The database, upgraded if it is older, with runs whose process died marked crashed.

    `ask_slurm`: also release the queued runs whose Slurm job ended before it began, which asks Slurm
    (sacct) and may wait for it: only for the commands that launch or watch jobs (`run`, `queue`).
    A refused command that created the database leaves none behind.
    """
    database = Database(location, create=create, upgrade=upgrade)
    if database.upgraded_from:
        kept = f"; the old file is kept as {database.backup_path}" if database.backup_path else ""
        errors.print(
            f"upgraded {database.name} from schema {database.upgraded_from} to {database.revision}{kept}",
            markup=False,
            soft_wrap=True,
        )
    try:
        if not database.read_only:  # marking dead runs crashed is a write; it waits for someone who may write
            lifecycle.reap(database)
        if ask_slurm:
            from .slurm import release_ended_jobs

            release_ended_jobs(database)
        yield database
    except ExpdbError:
        if database.created:
            database.remove()
        raise
    finally:
        database.close()


@app.command(
    short_help="Create a card.",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    help=f"Create a card. {PARAMS_HELP}",
)
def new(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The card's name: letters, digits, '_', '-', '.'.")],
    parent: Annotated[str | None, typer.Option("--from", help="Start from this card's parameters and runner.")] = None,
    runner: Annotated[str | None, typer.Option(help="What trains it: a built-in runner (cvt_io) or "
                                                    "package.module:function.")] = None,
    cmd: Annotated[str | None, typer.Option("--cmd", help="Or a shell command that trains it; {KEY} is replaced by the "
                                                          "parameter.")] = None,
    parse: Annotated[str | None, typer.Option("--parse", help="How to read the command's log: mmdet or regex:PATTERN.")] = None,
    note: Annotated[str | None, typer.Option(help="Why this card exists.")] = None,
    tag: Annotated[list[str], typer.Option(help="A tag; repeat for several.")] = [],
    config: Annotated[str | None, typer.Option(help="Attach this training config (.py or .yaml) to the card.")] = None,
    flatten: Annotated[
        bool,
        typer.Option("--flatten", help="Also make the config's values parameters (model.decoder.num_layers); --KEY VALUE wins."),
    ] = False,
    diverge: DivergeOption = [],
    db: DbOption = None,
) -> None:
    from .divergence import parse_settings

    params, typed = parse_key_values(ctx.args)
    cards.validate_card_input(name, tag, note)
    settings = parse_settings(diverge)
    if runner and cmd:
        raise ExpdbError("give --runner or --cmd, not both: a card is trained by one of them")
    if runner and parse:
        raise ExpdbError("--parse reads the log of a command; a card trained by --runner has none to read")
    for option, value in (("--runner", runner), ("--cmd", cmd), ("--parse", parse)):
        if value is not None and not value.strip():
            raise ExpdbError(f"{option} is empty; give it a value, or leave it out")
    if flatten and config is None:
        raise ExpdbError("--flatten reads the parameters of a config: give it with --config cfg.py")
    if parse:
        from .logparse import make_parser

        make_parser(parse)
    left_out: list[str] = []
    if config is not None:
        from .configs import read_config

        read = read_config(config)
        if flatten:
            params, left_out = {**read.params, **params}, read.left_out
    with open_db(db, create=True) as database, database.transaction():
        card = cards.create_card(
            database, name, params, typed, parent=parent, runner=runner, note=note, tags=tag, command=cmd, parser=parse,
            diverge=settings,
        )
        if config is not None:
            from .attachments import attach

            attach(database, card.name, config, note="the training config")
        changes = [change for change in cards.param_changes(database, card) if not change.inherited]
    summary = " ".join(f"{change.key}={format_value(change.value)}" for change in changes)
    origin = f" from {card.parent}" if card.parent else ""
    if flatten:
        summary = f"{plural(len(changes), 'parameter')} from the config and --KEY VALUE"
    console.print(escape(f"created {card.name}{origin}" + (f": {summary}" if summary else "")))
    if config is not None:
        console.print(escape(f"attached {config}"))
    if left_out:
        console.print(escape(f"not parameters (not literal values, or None): {', '.join(left_out)}"))


@app.command(
    short_help="Create a card per combination of parameter values.",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    help="Create a card for each combination of parameter values, as forks of --from named by their values "
    "(NAME_N3_L4) and tagged NAME. Values as --KEY VALUES: a list 3,5,10 or [3,5],[5,5]; a range START:STOP:N; "
    "a log range 1e-4:1e-2:log5; a single value is set on every card.",
)
def sweep(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The sweep: the start of its cards' names, and their tag.")],
    parent: Annotated[str, typer.Option("--from", help="The base card: each card starts from its parameters and runner.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the cards it would create; create nothing.")] = False,
    max_cards: Annotated[int, typer.Option(help="Refuse a sweep of more cards than this.", min=1)] = 1000,
    note: Annotated[str | None, typer.Option(help="A note on every card: why the sweep exists.")] = None,
    tag: Annotated[list[str], typer.Option(help="Another tag for every card; repeat for several.")] = [],
    wide: WideOption = False,
    db: DbOption = None,
) -> None:
    from .sweep import create_sweep, expand_grid, plan_sweep
    from .values import split_key_values
    from .views import render_sweep

    grid = expand_grid(name, split_key_values(ctx.args), max_cards)
    with open_db(db, create=not dry_run) as database:
        plan = plan_sweep(database, grid, parent, tags=tag, note=note)
        if not dry_run:
            create_sweep(database, plan)
    render_sweep(plan, console, created=not dry_run, wide=wide)


@app.command(
    "list",
    short_help="Cards, their status, what they change, their results.",
    help="Cards with their status, what they change, their latest results: the last 20 of those selected "
    f"(--all: every one). {SELECTION_HELP}",
)
def list_cards(
    names: CardsArgument = None,
    tag: TagOption = None,
    where: WhereOption = None,
    status: StatusOption = None,
    limit: Annotated[int, typer.Option(help="Show the last N cards selected.", min=1)] = 20,
    all_cards: Annotated[bool, typer.Option("--all", help="Show every card selected.")] = False,
    stalled_after: StalledOption = lifecycle.STALLED_AFTER_S / 60,
    wide: WideOption = False,
    db: DbOption = None,
) -> None:
    from .metrics import load_definitions

    with without_gc():
        with open_db(db) as database:
            selected = cards.selected_ids(database, selection_of(names, tag, where, status))
            shown = cards.cards_by_id(database, selected if all_cards else selected[-limit:])
            changed = cards.changed_keys(database, shown)
            results = cards.latest_values(database, [card.id for card in shown])
            definitions = load_definitions(database)
            stalls = lifecycle.stalls(database, stalled_after * 60)
        from .views import render_list, render_stalls

        shown_ids = {card.id for card in shown}
        stalled = {stall.card_id for stall in stalls}
        render_list(shown, len(selected) - len(shown), changed, results, definitions, console, stalled, wide=wide)
        render_stalls([stall for stall in stalls if stall.card_id in shown_ids], time.time(), console)


@app.command(short_help="A card: parameters, runs, results, notes.")
def show(
    name: Annotated[str | None, typer.Argument(help="The card.")] = None,
    env: Annotated[
        str | None,
        typer.Option(
            "--env", metavar="RUN",
            help="Instead, what a run recorded to re-run it (a run id, or a card for its latest run): "
            "command, seed, git commit and uncommitted diff, variables, packages.",
        ),
    ] = None,
    wide: WideOption = False,
    db: DbOption = None,
) -> None:
    """A card: its parameters (and what changed vs its parent), runs, results, notes."""
    from .attachments import attachments_of
    from .metrics import load_definitions
    from .views import render_card

    if (name is None) == (env is None):
        raise ExpdbError("name a card (expdb show CARD), or a run with --env (expdb show --env RUN), one of the two")
    if env is not None:
        from .rerun import run_environment
        from .views import render_environment

        with open_db(db) as database:
            recorded = run_environment(database, env)
        render_environment(recorded, console)
        return
    assert name is not None
    with open_db(db) as database:
        details = cards.card_details(database, name)
        definitions = load_definitions(database)
        files = attachments_of(database, [details.card.id]).get(details.card.id, [])
    render_card(details, definitions, console, files, wide=wide)


@app.command(short_help="Two cards' differing parameters and results.")
def diff(
    a: Annotated[str, typer.Argument(help="The first card.")],
    b: Annotated[str, typer.Argument(help="The second card.")],
    all_params: Annotated[bool, typer.Option("--all", help="Show every parameter, not only the differing ones.")] = False,
    wide: WideOption = False,
    db: DbOption = None,
) -> None:
    """Two cards side by side: the parameters that differ, and both cards' results."""
    from .metrics import load_definitions
    from .views import render_diff

    with open_db(db) as database:
        difference = cards.diff_cards(database, a, b, all_params=all_params)
        definitions = load_definitions(database)
    render_diff(difference, definitions, console, wide=wide)


@app.command(short_help="Two cards side by side, with their curves.")
def compare(
    a: Annotated[str, typer.Argument(help="The first card.")],
    b: Annotated[str, typer.Argument(help="The second card.")],
    curve: Annotated[str, typer.Option(help="The curve drawn for both as a sparkline.")] = "loss",
    width: Annotated[int, typer.Option(help="Characters of each sparkline at most; fewer in a narrow terminal.", min=8)] = 48,
    wide: WideOption = False,
    db: DbOption = None,
) -> None:
    """Two cards side by side: parameters that differ, metrics and profile with changes, their curves as sparklines."""
    from .metrics import load_definitions
    from .series import latest_curve
    from .views import render_curves, render_diff

    check_given(curve=curve)
    with open_db(db) as database:
        difference = cards.diff_cards(database, a, b)
        definitions = load_definitions(database)
        curves = {card.name: latest_curve(database, card.id, curve) for card in (difference.a, difference.b)}
    render_diff(difference, definitions, console, wide=wide)
    render_curves(curves, curve, width, console)


@app.command()
def note(
    name: Annotated[str, typer.Argument(help="The card.")],
    text: Annotated[str, typer.Argument(help="What to write down.")],
    db: DbOption = None,
) -> None:
    """Add a timestamped note to a card."""
    with open_db(db) as database:
        cards.add_note(database, name, text)
    console.print(f"noted on {name}")


@app.command()
def tag(
    name: Annotated[str, typer.Argument(help="The card.")],
    tags: Annotated[list[str], typer.Argument(help="One or more tags.")],
    remove: Annotated[bool, typer.Option("--remove", help="Remove these tags instead.")] = False,
    db: DbOption = None,
) -> None:
    """Tag a card (or untag it with --remove)."""
    with open_db(db) as database:
        card = cards.tag_card(database, name, tags, remove=remove)
    console.print(f"{card.name}: tags {' '.join(card.tags) or '(none)'}")


@app.command(
    "set",
    short_help="Change an unrun card's parameters, or its divergence thresholds.",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def set_params(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The card; its parameters only while it has never run.")],
    diverge: DivergeOption = [],
    db: DbOption = None,
) -> None:
    """Change parameters of a card that has never run, as --KEY VALUE (a card that has run is forked with
    `new --from`), or its divergence thresholds for the runs to come, as --diverge KEY=VALUE."""
    from .divergence import parse_settings

    params, typed = parse_key_values(ctx.args)
    settings = parse_settings(diverge)
    if not params and not settings:
        raise ExpdbError("nothing to set: give parameters as --KEY VALUE, or thresholds as --diverge KEY=VALUE")
    with open_db(db) as database, database.transaction():
        if params:
            cards.set_params(database, name, params, typed)
        if settings:
            cards.set_diverge(database, name, settings)
    changed = [f"{key}={text}" for key, text in typed.items()] + [f"{key}={value:g}" for key, value in settings.items()]
    console.print(escape(f"{name}: " + " ".join(changed)))


@app.command(
    short_help="Delete cards with everything recorded of them.",
    help="Delete cards with their runs, notes, metrics and curves; asks first. Cards: the names and globs given, "
    "any of them; --tag, --where and --status narrow them to the cards with all of those. Nothing given is refused "
    "rather than deleting every card."
)
def rm(
    names: Annotated[list[str] | None, typer.Argument(metavar="CARDS", help="Card names and globs ('scratch_*').")] = None,
    tag: TagOption = None,
    where: WhereOption = None,
    status: StatusOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    db: DbOption = None,
) -> None:
    selection = selection_of(names, tag, where, status)
    if not selection.given:
        raise ExpdbError("name the cards to delete (names or globs), or select them with --tag, --where or --status")
    with open_db(db) as database:
        selected = cards.selected_ids(database, selection)
        if not yes:
            what = cards.removal_summary(database, selected)
            if not sys.stdin.isatty():
                raise ExpdbError(f"rm would delete {what}: confirm with --yes")
            if not confirmed(f"Delete {what}?"):
                console.print("nothing deleted")  # a choice, not an error: exit 0
                return
        orphans = cards.orphaned_forks(database, selected)
        removed = cards.remove_cards(database, selected)
    lost = f"; {', '.join(orphans)} no longer {'have a parent' if len(orphans) > 1 else 'has a parent'}" if orphans else ""
    console.print(escape(f"deleted {', '.join(card.name for card in removed)}{lost}"))


@app.command(short_help="Mark a card's results as not to be used, and why.")
def invalidate(
    name: Annotated[str, typer.Argument(help="The card.")],
    reason: Annotated[str, typer.Option(help="Why its results must not be used.")],
    db: DbOption = None,
) -> None:
    """Mark a card whose results must not be used: tables, plots and reports leave it out (--all shows it greyed)."""
    with open_db(db) as database:
        card = cards.invalidate_card(database, name, reason)
    console.print(Text(f"{card.name} is invalid: {card.invalid_reason}"))


@app.command()
def validate(name: Annotated[str, typer.Argument(help="The card.")], db: DbOption = None) -> None:
    """Undo `expdb invalidate`: the card's results count again."""
    with open_db(db) as database:
        card = cards.validate_card(database, name)
    console.print(Text(f"{card.name} is valid again"))


@app.command()
def rename(
    old: Annotated[str, typer.Argument(help="The card's current name.")],
    new_name: Annotated[str, typer.Argument(metavar="NEW", help="Its new name.")],
    db: DbOption = None,
) -> None:
    """Rename a card; its runs, notes and forks follow it."""
    with open_db(db) as database:
        cards.rename_card(database, old, new_name)
    console.print(f"renamed {old} to {new_name}")


@app.command(
    short_help="The comparison table of the cards' metrics.",
    help="The comparison table: one row per card that has the metrics, only the parameters that differ. "
    f"{SELECTION_HELP} --sort orders the rows otherwise."
)
def table(
    names: CardsArgument = None,
    metric: Annotated[
        list[str],
        typer.Option(
            "--metric",
            "-m",
            help="A metric column: KEY, KEY:max/min/last over its curve, or its convergence: KEY:first>=0.5 (the step where it "
            "first reaches 0.5; @epoch or @samples after it for those), KEY:first<=0.1, KEY:mean@last10%, KEY:auc; "
            "repeat for several [default: every recorded metric].",
        ),
    ] = [],
    where: WhereOption = None,
    sort: Annotated[str | None, typer.Option(help="KEY[:asc|:desc]; metrics sort best first by default.")] = None,
    baseline: Annotated[str | None, typer.Option(help="A card to compare every row with (adds deltas).")] = None,
    params: Annotated[str, typer.Option(help="Hyperparameter columns: differing, all or none.")] = "differing",
    tag: TagOption = None,
    status: StatusOption = None,
    group_by: Annotated[
        str | None, typer.Option("--group-by", help="Fold cards with the same values of these parameters (comma-separated) into "
                                                    "one row.")
    ] = None,
    agg: Annotated[
        str | None, typer.Option("--agg", help="With --group-by or --over: mean, std, count, min, max [default: mean,std,count].")
    ] = None,
    over: OverOption = None,
    spread: Annotated[
        str, typer.Option(help="After a folded row's mean: std, or ci (the half-width of its 95% confidence interval).")
    ] = "std",
    show_invalid: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Everything: every row (the rich format shows the first --limit otherwise), and the invalid cards, "
            "greyed with their reason (never best, never the baseline).",
        ),
    ] = False,
    invalid_baseline: Annotated[bool, typer.Option("--invalid-baseline", help="Allow an invalid card as the baseline.")] = False,
    format: Annotated[str, typer.Option("--format", "-f", help="rich, md, csv, json or latex.")] = "rich",
    conditions: Annotated[
        str | None,
        typer.Option(help="The profiles the Params/FLOPs/Cost-Time columns show, e.g. dtype=fp16,batch=8 (keys: device, "
                          "dtype, batch, input, flags, threads) [default: those most cards have]."),
    ] = None,
    limit: Annotated[
        int, typer.Option(help="The rich format: show the first N rows (the other formats write every row).", min=1)
    ] = TABLE_ROWS,
    wide: WideOption = False,
    db: DbOption = None,
) -> None:
    from .render import FORMATS, write_table
    from .table import comparison

    if format not in FORMATS:
        raise ExpdbError(f"unknown --format {format!r}; use one of: {', '.join(FORMATS)}")
    check_given(metric=metric, sort=sort, baseline=baseline, group_by=group_by, agg=agg, over=over, conditions=conditions)
    metrics = split_options(metric)
    with without_gc():
        with open_db(db) as database:
            found = comparison(
                database, selection_of(names, tag, where, status, show_invalid), metrics, sort=sort, baseline=baseline,
                params=params, group_by=group_by, aggs=agg, over=over, spread=spread, invalid_baseline=invalid_baseline,
                limit=None if show_invalid or format != "rich" else limit, conditions=conditions,
            )
        write_table(found, format, sys.stdout, console, wide=wide)
        del found  # freed while the collector is off: back on, it would first walk the whole table


@app.command(context_settings={"allow_extra_args": True}, short_help="Train cards and record everything.")
def run(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(help="The card to run, or a glob of card names ('cvt_io_v3_*'). After --, a command to run "
                                        "it with.")
    ] = None,
    all_planned: Annotated[bool, typer.Option("--all", help="Run every planned card.")] = False,
    tag: Annotated[str | None, typer.Option(help="Run the planned cards with this tag.")] = None,
    where: Annotated[str | None, typer.Option(help="Run the planned cards matching this filter, as in expdb table.")] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the card's latest run from its last checkpoint; with --all, --tag, --where or a glob, "
                                "also the interrupted cards.")
    ] = False,
    jobs: Annotated[
        int | None, typer.Option(help="A local queue: run this many cards at once, each in its own process [default with "
                                      "--gpus: one per GPU].", min=1)
    ] = None,
    gpus: Annotated[str | None, typer.Option(help="Pin each job of the queue to one of these GPUs, e.g. 0,1,2,3 "
                                                  "(CUDA_VISIBLE_DEVICES).")] = None,
    launcher: Annotated[str, typer.Option(help="local (this machine) or slurm (one cluster job per card, through "
                                               "submitit).")] = "local",
    partition: Annotated[str | None, typer.Option(help="Slurm: the partition.", rich_help_panel="Slurm")] = None,
    gpus_per_job: Annotated[int | None, typer.Option(help="Slurm: GPUs of each job.", min=0, rich_help_panel="Slurm")] = None,
    cpus_per_job: Annotated[int | None, typer.Option(help="Slurm: CPU cores of each "
                                                          "job.", min=1, rich_help_panel="Slurm")] = None,
    mem: Annotated[str | None, typer.Option(help="Slurm: memory of each job, e.g. 64G.", rich_help_panel="Slurm")] = None,
    time_limit: Annotated[
        str | None, typer.Option("--time", help="Slurm: each job's time limit, e.g. 12:00:00 "
                                                "(required).", rich_help_panel="Slurm")
    ] = None,
    slurm_folder: Annotated[
        str | None, typer.Option(help="Slurm: where submitit keeps the jobs' scripts and output [default: slurm/ where the runs "
                                      "keep their files, expdb_runs/DATABASE/].", rich_help_panel="Slurm")
    ] = None,
    requeue: Annotated[
        bool,
        typer.Option(help="Slurm: a job stopped by its time limit checkpoints, is requeued, resumes.", rich_help_panel="Slurm"),
    ] = False,
    queued_run: Annotated[int | None, typer.Option(hidden=True, help="The queued run row this job adopts (expdb.queue).")] = None,
    standby: Annotated[
        bool, typer.Option(hidden=True, help="Get ready, then start when a line arrives on stdin (a queue's next job on a GPU).")
    ] = False,
    on_diverge: Annotated[str, typer.Option(help="stop: end a diverging run; note: only note it.")] = "stop",
    diverge: DivergeOption = [],
    device: Annotated[str, typer.Option(help="auto (CUDA when there is a GPU), cpu, cuda or cuda:N.")] = "auto",
    seed: Annotated[int | None, typer.Option(help="The seed [default: the card's seed parameter, else 0].")] = None,
    profile_budget: Annotated[
        float, typer.Option(help="Seconds of latency timing when the model is profiled before training; 0 skips "
                                 "profiling.", min=0)
    ] = PROFILE_BUDGET_S,
    parse: Annotated[
        str | None, typer.Option("--parse", help="How to read the command's log: mmdet or regex:PATTERN [default: the card's].")
    ] = None,
    db: DbOption = None,
) -> None:
    """Train a card and record everything: profile, curves, metrics, environment, divergence.

    One card named runs whatever its status. A glob, --tag and --where select cards as `expdb list` does
    (the glob's cards, narrowed by --tag and --where), and --all every card; of those, the planned cards
    run, and with --resume the interrupted ones too. Several cards run one after another, or in a local
    queue (--jobs, --gpus), or as Slurm jobs (--launcher slurm).
    """
    from .devices import check_device
    from .divergence import parse_settings
    from .queue import local_slots, run_arguments, select_to_run
    from .runs import check_on_diverge

    settings = parse_settings(diverge)
    check_device(device)  # checked once here, not once a card
    check_on_diverge(on_diverge)
    selection = selection_of([name] if name else None, tag, where, None)
    if all_planned == selection.given:  # --all or a selection: one of the two
        raise ExpdbError("name one card to run, or pass --all for every planned card (or select cards with a glob, --tag or "
                         "--where)")
    slurm_options = {"--partition": partition, "--gpus-per-job": gpus_per_job, "--cpus-per-job": cpus_per_job,
                     "--mem": mem, "--time": time_limit, "--slurm-folder": slurm_folder, "--requeue": requeue or None}
    given = [option for option, value in slurm_options.items() if value is not None]
    if launcher not in ("local", "slurm"):
        raise ExpdbError(f"unknown --launcher {launcher!r}; use local or slurm")
    if launcher == "local" and given:
        raise ExpdbError(f"{given[0]} is for Slurm jobs: add --launcher slurm")
    if launcher == "slurm" and (jobs or gpus):
        raise ExpdbError("--jobs and --gpus are for the local queue; Slurm jobs ask for GPUs with --gpus-per-job")
    queued = launcher == "slurm" or jobs is not None or gpus is not None
    run_args = (
        run_arguments(device=device, on_diverge=on_diverge, profile_budget=profile_budget, seed=seed, diverge=diverge)
        if queued else []
    )
    request = slurm_request(partition, gpus_per_job, cpus_per_job, mem, time_limit) if launcher == "slurm" else None
    from .cpus import thread_budget

    # Measured once, before anything trains: a training of ours would count as load afterwards.
    budget = thread_budget(jobs or 1)
    slots = local_slots(jobs, gpus, budget) if queued and launcher == "local" else []
    # A queue's job (--queued-run) starts at once: the user's own `run` and `queue` ask Slurm.
    with open_db(db, ask_slurm=queued_run is None) as database:
        targets, many = select_to_run(database, selection, resume)
        if (many or queued) and (ctx.args or parse):
            raise ExpdbError(
                "--parse and a command after -- are for one card run here: name it, without --all, --tag, --where, a glob, "
                "--jobs or --launcher"
            )
        if not queued and device not in ("auto", "cpu") and any(card.runner for card in targets):
            from .devices import choose_device

            choose_device(device)  # a GPU this machine lacks: said once, before any card
        if not targets:
            console.print("no planned cards to run")
        elif launcher == "slurm":
            submit_to_slurm(database, targets, request, slurm_folder, run_args, resume, requeue)
            return
        elif queued:
            raise typer.Exit(queue_locally(database, targets, slots, run_args, resume, budget if gpus is None else None))
        with threads_announcer(budget) as announce:
            outcomes = [
                outcome
                for card in targets
                for outcome in run_cards(
                    database, [card], command=ctx.args or None, parser=parse,
                    resume=resume and (not many or card.status != PLANNED), on_diverge=on_diverge, device=device, seed=seed,
                    profile_budget=profile_budget, keep_going=many, queued_run=queued_run,
                    ready=wait_for_the_queue if standby else None, diverge=settings, started=announce,
                )
            ]
    raise typer.Exit(0 if all(outcome is not None and outcome.status == RunStatus.FINISHED for outcome in outcomes) else 1)


@app.command(short_help="Run a card again as its latest run ran.")
def rerun(
    name: Annotated[str, typer.Argument(help="The card; it must have run.")],
    device: Annotated[str, typer.Option(help="auto (CUDA when there is a GPU), cpu or cuda.")] = "auto",
    profile_budget: Annotated[
        float, typer.Option(help="Seconds of latency timing when the model is profiled before training; 0 skips it.", min=0)
    ] = PROFILE_BUDGET_S,
    db: DbOption = None,
) -> None:
    """Run a card again as its latest run ran: its parameters and seed (and its command), after saying how this
    environment differs from the one recorded (commit, uncommitted changes, packages, variables)."""
    from .rerun import plan_rerun

    with open_db(db, ask_slurm=True) as database:
        plan = plan_rerun(database, name)
        what = f"{plan.card.name} as run {plan.recorded.run_id} ran (seed {plan.seed})"
        if plan.differences:
            console.print(escape(f"re-running {what}; this environment differs from the recorded one:"))
            for line in plan.differences:
                console.print(escape(f"  {line}"))
        else:
            console.print(escape(f"re-running {what}; the environment is as recorded"))
        from .cpus import thread_budget

        with threads_announcer(thread_budget()) as announce:
            outcomes = run_cards(
                database, [plan.card], command=plan.command, seed=plan.seed, device=device, profile_budget=profile_budget,
                started=announce,
            )
    outcome = outcomes[0]
    raise typer.Exit(0 if outcome is not None and outcome.status == RunStatus.FINISHED else 1)


@contextmanager
def threads_announcer(budget):
    """What gives this process's trainings the free cores (expdb.cpus) and says how many, once, as the first
    run begins (a refused run prints its error alone); the process's own thread settings come back after."""
    from .cpus import kept_threads, use_threads

    said = []

    def announce() -> None:
        if not said:
            said.append(True)
            use_threads(budget)
            errors.print(budget.describe(), markup=False, soft_wrap=True)

    with kept_threads():
        yield announce


def wait_for_the_queue() -> None:
    """A standby job's start signal: a line on stdin. Its end (no line) means the queue stopped first."""
    if not sys.stdin.readline():
        raise typer.Exit(0)


def slurm_request(partition, gpus_per_job, cpus_per_job, mem, time_limit):
    """What each Slurm job asks for, checked before anything is queued; submitit and sbatch must be here."""
    from .slurm import SlurmRequest, check_mem, check_slurm, parse_time

    check_slurm()
    if time_limit is None:
        raise ExpdbError("--launcher slurm needs --time, each job's time limit, e.g. --time 12:00:00")
    return SlurmRequest(parse_time(time_limit), partition, gpus_per_job, cpus_per_job, check_mem(mem) if mem else None)


def submit_to_slurm(
    database: Database, targets: list[cards.Card], request, folder: str | None, run_args: list[str], resume: bool,
    requeue: bool,
) -> None:
    from pathlib import Path

    from .slurm import SLURM_FOLDER, shared_location, slurm_executor, submit_cards

    if database.dialect.one_machine:
        errors.print(
            f"warning: {shared_location(database)} is an SQLite file: fine for jobs on one machine, but SQLite over a "
            "network file system is not for several machines at once (its locks are unreliable there); "
            "use PostgreSQL: --db postgresql+psycopg://USER@HOST/DB",
            markup=False, soft_wrap=True,
        )
    executor = slurm_executor(Path(folder).resolve() if folder else database.runs_directory / SLURM_FOLDER, request)
    for submitted in submit_cards(database, targets, executor, run_args, resume=resume, requeue=requeue):
        console.print(escape(f"{submitted.card} (run {submitted.run_id}): Slurm job {submitted.job.job_id}"))


def queue_locally(
    database: Database, targets: list[cards.Card], slots: list, run_args: list[str], resume: bool, budget=None
) -> int:
    """Run the cards in a local queue, a line as each job starts and ends; the exit status (130 when stopped).

    `budget`: the CPU threads of the jobs (expdb.cpus), said once the cards are queued."""
    from collections import Counter

    from .queue import output_directory, queue_runs, run_queue

    queued = queue_runs(database, targets, resume=resume, launcher="local")
    if budget is not None:
        errors.print(budget.describe(), markup=False, soft_wrap=True)
    output = output_directory(database)
    console.print(
        escape(f"queued {plural(len(queued), 'card')} on {', '.join(slot.label for slot in slots)}; "
               f"what the jobs print goes to {output}"),
    )
    result = run_queue(
        database, queued, slots, run_args, output,
        on_start=lambda entry, slot: console.print(escape(f"{slot.label}: {entry.card.name} (run {entry.run_id}) "
                                                          "started")),
        on_end=lambda end: console.print(outcome_line(end, f"{end.slot}: ")),
    )
    counts = ", ".join(f"{count} {status}" for status, count in Counter(end.status for end in result.ends).items())
    if result.stopped:
        left = f"; {len(result.never_started)} never started (planned again)" if result.never_started else ""
        console.print(f"queue stopped: {counts or 'nothing ran'}{left}")
        return 130
    console.print(f"queue done: {counts}")
    return 0 if result.all_finished else 1


@app.command(short_help="What is queued and running, where, since when.")
def queue(
    stop: Annotated[bool, typer.Option("--stop", help="Stop the local queues of this machine: their jobs end "
                                                      "interrupted.")] = False,
    stalled_after: StalledOption = lifecycle.STALLED_AFTER_S / 60,
    wide: WideOption = False,
    db: DbOption = None,
) -> None:
    """What is queued and running: where (host, GPU), how it was launched (local queue, Slurm job), since when,
    and which running runs have made no progress for long."""
    from .queue import queue_entries, stop_local_queues
    from .views import render_queue, render_stalls

    with open_db(db, ask_slurm=True) as database:
        if stop:
            stopped = stop_local_queues(database)
            console.print(f"sent SIGTERM to {', '.join(stopped)}" if stopped else "no local queue runs on this machine")
        entries = queue_entries(database)
        stalls = lifecycle.stalls(database, stalled_after * 60)
    render_queue(entries, time.time(), console, {stall.run_id for stall in stalls}, wide=wide)
    render_stalls(stalls, time.time(), console)


def run_cards(database: Database, targets: list[cards.Card], keep_going: bool = False, **options) -> "list[Outcome | None]":
    """Run cards one after another, each with its progress bar and a line saying how it ended.

    `keep_going`: a card that cannot be run is reported and skipped (its outcome is None).
    """
    from .launch import execute

    outcomes: list[Outcome | None] = []
    for card in targets:
        try:
            with run_progress(card) as progress:
                outcome = execute(database, card, progress=progress, **options)
        except ExpdbError as error:
            if not keep_going:
                raise
            errors.print(f"error: {card.name}: {error}", markup=False, soft_wrap=True)
            outcomes.append(None)
            continue
        console.print(outcome_line(outcome))
        outcomes.append(outcome)
    return outcomes


def outcome_line(outcome, prefix: str = ""):
    """How a run ended, as a rich Text: what the run reports is shown as written."""
    from rich.text import Text

    from .views import status_text

    results = " ".join(f"{key}={value:.4g}" for key, value in outcome.summary.items())
    reason = f": {outcome.exit_reason}" if outcome.exit_reason else ""
    line = Text.assemble(prefix, f"{outcome.card} (run {outcome.run_id}) ", status_text(outcome.status), reason)
    return line.append(f"  {results}" if results else "")


@contextmanager
def run_progress(card: cards.Card):
    """A progress bar fed by the run's flusher: step, loss, steps/s, ETA."""
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    steps = card.params.get("steps")
    total = steps if isinstance(steps, int) else None
    # The bar's numbers take about 60 columns: a longer name goes on a line of its own rather than be cut.
    alone = errors.is_terminal and len(card.name) > errors.width - PROGRESS_COLUMNS
    if alone:
        errors.print(card.name, style="bold", markup=False)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("step {task.completed:,.0f}"),
        TextColumn("{task.fields[loss]}"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=errors,
        transient=True,
        disable=not errors.is_terminal,
    )
    task = progress.add_task("" if alone else card.name, total=total, loss="", rate="")
    started = time.monotonic()

    def update(step: int, scalars: dict[str, float]) -> None:
        loss = scalars.get("loss")
        elapsed = time.monotonic() - started
        progress.update(
            task,
            completed=step,
            loss=f"loss {loss:.4g}" if loss is not None else "",
            rate=f"{step / elapsed:,.1f} steps/s" if elapsed > 0 else "",
        )

    with progress:
        yield update


@app.command("import", short_help="Import a run that happened from its training log.")
def import_log(
    format: Annotated[
        str,
        typer.Argument(
            metavar="FORMAT",
            help="mmdet (a text log, .log.json, scalars.json or a work_dir), tensorboard, "
            "hf (a trainer_state.json or output_dir), or regex:PATTERN.",
        ),
    ],
    logfile: Annotated[
        str,
        typer.Argument(
            metavar="PATH", help="The training log, work_dir, folder of TensorBoard event files, or trainer_state.json."
        ),
    ],
    name: Annotated[
        str | None, typer.Option(help="The card the runs belong to; created if it does not exist. Default: the file's name.")
    ] = None,
    parent: Annotated[str | None, typer.Option("--from", help="Fork a card the import creates from this one.")] = None,
    params: Annotated[str | None, typer.Option(help="Read parameters from each event folder's name: 'lr{lr}_bs{batch}'.")] = None,
    diverge: DivergeOption = [],
    db: DbOption = None,
) -> None:
    """Import runs that already happened: their curves, summary metrics (last, and best of validation curves) and
    any divergence. A file imported before adds nothing; a log holding several launches gives a run for each."""
    from .divergence import parse_settings
    from .results import import_log as import_runs

    settings = parse_settings(diverge)
    if name is not None:
        cards.validate_name(name)
    if params is not None and format.strip().lower() != "tensorboard":
        raise ExpdbError(
            "--params reads parameters from TensorBoard event folders' names: use it with `expdb import tensorboard`"
        )
    with open_db(db, create=True) as database:
        imported = import_runs(database, logfile, format, name, parent=parent, params=params, diverge=settings)
    for line in imported.account:
        console.print(escape(line))
    for run in imported.runs:
        if run.already is not None:
            console.print(escape(f"already imported as run {run.already[1]} of {run.already[0]}: nothing added"))
            continue
        console.print(escape(f"imported {run.points:,} points into {run.card} (run {run.run_id}): {run.status}"))
        if run.written_again:
            console.print(
                f"  {run.written_again:,} points read at a step their curve already had (a resumed run?): the later kept",
            )
        for divergence in run.divergences:
            console.print(f"  {escape(divergence.message)}")


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    help="Record the final metrics of a run that happened elsewhere (a paper's table, a colleague's number), as "
    "--KEY VALUE written as the table prints them: 81.8, 670.32K, 6.934G, 34.12ms, 81.8%. A unit must be the metric's "
    "own (`expdb metric define`). params, flops and cost_time go to the card's profile. The run is marked recorded by "
    "hand, with its source, and has no host, git commit or device. The card is created if it does not exist.",
    short_help="Record the final metrics of a run that happened elsewhere.",
)
def record(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The card.")],
    source: Annotated[str, typer.Option(help='Where the numbers come from: "DeiT, Table 1".')],
    parent: Annotated[str | None, typer.Option("--from", help="Fork a card that `record` creates from this one.")] = None,
    db: DbOption = None,
) -> None:
    from .metrics import definition, load_definitions
    from .results import record_by_hand
    from .values import split_key_values

    typed = split_key_values(ctx.args)
    cards.validate_name(name)
    with open_db(db, create=True) as database:
        run_id, values = record_by_hand(database, name, typed, source, parent=parent)
        definitions = load_definitions(database)
    shown = " ".join(f"{key}={definition(definitions, key).cell(value)}" for key, value in values.items())
    console.print(escape(f"recorded run {run_id} of {name} by hand: {shown}"))


metric_app = typer.Typer(
    help="How metrics are shown: label, unit, better direction, digits.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(metric_app, name="metric")


@metric_app.command("define", short_help="How a metric is shown: label, unit, direction, digits.")
def metric_define(
    key: Annotated[str, typer.Argument(help="The metric, as runs record it: top1, val/bbox_mAP.")],
    label: Annotated[str | None, typer.Option(help='The column head: "Top-1".')] = None,
    unit: Annotated[str | None, typer.Option(help="Its unit: %, ms, img/s; cells carry %, ms and s.")] = None,
    higher: Annotated[
        bool | None,
        typer.Option("--higher-is-better/--lower-is-better", help="Which way is better (bolded as best).", show_default=False),
    ] = None,
    digits: Annotated[int | None, typer.Option(help="Decimals shown: 1 gives 81.8.")] = None,
    si: Annotated[bool, typer.Option("--si", help="Show with an SI prefix and --digits decimals: 6.93G.")] = False,
    db: DbOption = None,
) -> None:
    """Define, or change, how a metric is shown; what is not given is kept."""
    from .metrics import define_metric

    direction = None if higher is None else "higher" if higher else "lower"
    with open_db(db, create=True) as database:
        defined = define_metric(database, key, label, unit, direction, digits, si)
    better = f", {defined.direction} is better" if defined.direction else ", no better direction"
    unit_text = f", unit {defined.unit}" if defined.unit else ""
    console.print(escape(f"{defined.key}: {defined.label!r}{unit_text}{better}, format {defined.format}"))


@metric_app.command("list", short_help="The metric definitions, and the metrics without one.")
def metric_list(db: DbOption = None) -> None:
    """The metric definitions, and the metrics runs recorded that have none."""
    from .metrics import load_definitions, metric_keys_in_use
    from .views import render_metric_definitions

    with open_db(db) as database:
        definitions = load_definitions(database)
        used = metric_keys_in_use(database)
    render_metric_definitions(definitions, used, console)


@app.command(short_help="Keep a file with a card or a run.")
def attach(
    name: Annotated[str, typer.Argument(help="The card.")],
    file: Annotated[str, typer.Argument(help="The file: a figure, a config, a checkpoint.")],
    note: Annotated[str | None, typer.Option(help="What it is.")] = None,
    run: Annotated[int | None, typer.Option(help="The card's run it belongs to (a run id from `expdb show`).")] = None,
    max_size: Annotated[str, typer.Option("--max-size", help="Refuse files larger than this: bytes, or 500M, 1G.")] = "1G",
    db: DbOption = None,
) -> None:
    """Keep a file with a card, content-addressed beside the database (or in $EXPDB_ATTACHMENTS)."""
    from .attachments import attach as attach_file
    from .attachments import parse_size

    limit = parse_size(max_size)
    if note is not None:
        cards.validate_note(note)
    with open_db(db) as database:
        attached, new = attach_file(database, name, file, note=note, max_size=limit, run_id=run)
    what = "attached" if new else "already attached, nothing added:"
    line = f"{what} {attached.name} to {name} ({attached.size:,} bytes, sha256 {attached.sha256[:12]})"
    console.print(escape(line))


@app.command(short_help="Create, run and show a small demo study.")
def demo(db: DbOption = None) -> None:
    """Create a small study like the researcher's, run it, print its table and what went wrong."""
    from .demo import DEMO_TAG, create_demo
    from .render import render_rich
    from .table import build_table

    from .cpus import thread_budget

    budget = thread_budget()  # before the first card trains, whose own load would count
    with open_db(db, create=True) as database:
        names = create_demo(database)
        console.print(f"created {len(names)} cards in {database.name}: {', '.join(names)}")
        with threads_announcer(budget) as announce:
            run_cards(database, [cards.get_card(database, name) for name in names], started=announce)
        console.print()
        demo_cards = cards.select_cards(database, cards.Selection(tag=DEMO_TAG))
        render_rich(build_table(database, demo_cards, ["iou50"], baseline="cvt"), console)
        notes = cards.automatic_notes(database, names)
    if notes:
        console.print("\n[bold]what expdb noticed[/]")
        for card_name, text in notes:
            console.print(f"  {escape(card_name)}: {escape(text)}")
    console.print("\nexplore it: expdb list, expdb show cvt_io_blowup, expdb table --metric iou50 --baseline cvt")


@app.command(short_help="Measure a card's model: Params, FLOPs, Cost-Time.")
def profile(
    name: Annotated[str, typer.Argument(help="The card; its runner builds the model (no training).")],
    batch: Annotated[int | None, typer.Option(help="Batch size [default: the runner's example inputs].", min=1)] = None,
    input: Annotated[str | None, typer.Option("--input", help="Input shape without the batch, e.g. 3x224x224.")] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA when there is a GPU), cpu, cuda or cuda:N.")] = "auto",
    dtype: Annotated[str, typer.Option(help="fp32 (the model's own dtype), or fp16 / bf16 through autocast.")] = "fp32",
    warmup: Annotated[
        int, typer.Option(help="Forward passes before timing, at least; warm-up also lasts 100 ms at least.", min=0)
    ] = PROFILE_WARMUP,
    iterations: Annotated[int, typer.Option(help="Timed forward passes at most.", min=1)] = PROFILE_ITERATIONS,
    budget: Annotated[
        float, typer.Option(help="Seconds of warm-up and timing together, at most, above 0 (one pass is timed at least).")
    ] = PROFILE_BUDGET_S,
    cudnn_benchmark: Annotated[
        bool, typer.Option("--cudnn-benchmark", help="CUDA: let cuDNN pick its fastest kernels while timing.")
    ] = False,
    channels_last: Annotated[
        bool, typer.Option("--channels-last", help="Model and 4-D inputs in channels-last memory format (conv nets).")
    ] = False,
    threads: Annotated[int | None, typer.Option(help="CPU threads for timing [default: torch's].", min=1)] = None,
    throughput_batch: Annotated[
        int | None, typer.Option(help="Also measure throughput (samples/s) at this larger batch.", min=1)
    ] = None,
    db: DbOption = None,
) -> None:
    """Measure a card's model: Params, FLOPs (fvcore, MACs) and Cost-Time, and keep them with the card."""
    from .launch import profile_card
    from .metrics import load_definitions
    from .views import render_profile

    check_given(input=input)
    if not budget > 0:
        raise ExpdbError(f"--budget {budget:g}: give the seconds of warm-up and timing, above 0, e.g. --budget 5")
    from .cpus import usable_cores

    cores = usable_cores()
    if threads is not None and threads > cores:
        raise ExpdbError(f"--threads {threads}: this process may use {cores} cores; give at most {cores}")
    with open_db(db) as database:
        card = cards.get_card(database, name)
        profile_card(
            database, card, batch=batch, input_shape=input, device=device, dtype=dtype,
            warmup=warmup, iterations=iterations, budget_s=budget, threads=threads, throughput_batch=throughput_batch,
            cudnn_benchmark=True if cudnn_benchmark else None, channels_last=channels_last,
        )
        measured = cards.latest_profile(database, card.id)
        definitions = load_definitions(database)
    assert measured is not None  # profile_card has just stored it
    render_profile(measured, definitions, console)


LogYOption = Annotated[bool, typer.Option("--log-y", help="Logarithmic y axis.")]
YlimOption = Annotated[
    str | None,
    typer.Option(
        "--ylim",
        metavar="LOW:HIGH",
        help="The y range, e.g. 0:5, or :5 for the top only; points outside are clipped and marked. "
        "Default: the healthy data (a diverged run's points past its divergence do not set it).",
    ),
]


def confirmed(question: str) -> bool:
    """A yes or no at the terminal, no by default; the end of input (Ctrl-D) is a no, Ctrl-C interrupts."""
    try:
        answer = input(f"{question} [y/N]: ")
    except EOFError:
        print()
        return False
    return answer.strip().lower() in ("y", "yes")


def check_given(**options: str | list[str] | None) -> None:
    """An option given empty (`--sort ''`, `--group-by ,`, one `-m ''` of several) is a mistake, not the option
    left out."""
    for name, value in options.items():
        for given in [value] if isinstance(value, str) else value or []:
            if not given.replace(",", "").strip():
                raise ExpdbError(f"--{name.replace('_', '-')} is empty; give it a value, or leave it out")


def split_options(options: list[str]) -> list[str]:
    """`-m a -m b,c` -> [a, b, c]."""
    return [item.strip() for option in options for item in option.split(",") if item.strip()]


@app.command(
    short_help="Curves of several runs laid over each other.",
    help="Curves of several runs laid over each other, on an axis where they compare (divergences and lr drops marked). "
    f"{SELECTION_HELP}"
)
def plot(
    names: CardsArgument = None,
    tag: TagOption = None,
    where: WhereOption = None,
    status: StatusOption = None,
    metric: Annotated[list[str], typer.Option("--metric", "-m", help="A curve; repeat for one subplot each.")] = ["loss"],
    x: Annotated[str, typer.Option(help="x axis: step, epoch, samples (seen so far) or time.")] = "step",
    smooth: Annotated[float, typer.Option(help="EMA weight in [0, 1), computed on every point; the raw curve stays "
                                               "faint.")] = 0.0,
    log_y: LogYOption = False,
    ylim: YlimOption = None,
    output: Annotated[str, typer.Option("--output", "-o", help="The image: .png, .svg or .pdf.")] = "plot.png",
    title: Annotated[str | None, typer.Option(help="A title above the plot.")] = None,
    over: OverOption = None,
    band: Annotated[
        str, typer.Option(help="With --over, the band around each mean curve: ci (95% CI of the mean) or std.")
    ] = "ci",
    show_invalid: ShowInvalidOption = False,
    db: DbOption = None,
) -> None:
    from pathlib import Path

    from .outputs import parse_ylim
    from .plot import plot_curves

    metrics = split_options(metric)
    check_given(metric=metric, over=over)
    limits = parse_ylim(ylim, log_y)
    with open_db(db) as database:
        chosen = cards.select_cards(database, selection_of(names, tag, where, status, show_invalid))
        result = plot_curves(
            database, chosen, metrics, Path(output), x=x, smooth=smooth, log_y=log_y, ylim=limits, title=title, over=over,
            band=band,
        )
    for warning in result.warnings:
        errors.print(f"warning: {warning}", markup=False, soft_wrap=True)
    console.print(escape(f"wrote {result.path}"))


@app.command(
    short_help="A markdown or HTML report of a study, or its LaTeX table.",
    help="A self-contained markdown or HTML report of a study, or its table for an IEEE paper; re-running updates it. "
    f"{SELECTION_HELP}"
)
def report(
    names: CardsArgument = None,
    tag: TagOption = None,
    where: WhereOption = None,
    status: StatusOption = None,
    output: Annotated[str, typer.Option("--output", "-o", help="The report: a .md file (PNGs beside it), one .html "
                                                               "file, or a .tex table.")] = "report.md",
    format: Annotated[
        str | None, typer.Option("--format", "-f", help="md (a report with plots), html (one file, interactive plots, "
                                                        "opens offline) or latex (an IEEE table) [default: from -o's suffix].")
    ] = None,
    metric: Annotated[list[str], typer.Option("--metric", "-m", help="A metric column; repeat [default: every recorded "
                                                                     "metric].")] = [],
    curve: Annotated[list[str], typer.Option(help="A curve to plot; repeat for several.")] = ["loss"],
    x: Annotated[str, typer.Option(help="x axis of the plots: step, epoch, samples or time.")] = "step",
    smooth: Annotated[float, typer.Option(help="EMA weight of the plots, in [0, 1).")] = 0.0,
    log_y: LogYOption = False,
    ylim: YlimOption = None,
    baseline: Annotated[str | None, typer.Option(help="A card to compare every row with.")] = None,
    title: Annotated[str | None, typer.Option(help="The report's title (the table's caption in LaTeX).")] = None,
    over: OverOption = None,
    spread: Annotated[str, typer.Option(help="With --over, after each mean: std or ci.")] = "std",
    show_invalid: ShowInvalidOption = False,
    invalid_baseline: Annotated[bool, typer.Option("--invalid-baseline", help="Allow an invalid card as the baseline.")] = False,
    db: DbOption = None,
) -> None:
    from pathlib import Path

    from .outputs import parse_ylim
    from .report import write_report

    metrics = split_options(metric)
    check_given(metric=metric, curve=curve, over=over, baseline=baseline)
    limits = parse_ylim(ylim, log_y)
    suffixes = {".md": "md", ".markdown": "md", ".tex": "latex", ".html": "html", ".htm": "html"}
    suffix_format = suffixes.get(Path(output).suffix.lower())
    if suffix_format is None:
        raise ExpdbError(f"cannot write {output}: unknown format {Path(output).suffix or 'no suffix'!r}; end the file name "
                         "in .md, .html or .tex")
    if format is not None and format != suffix_format and format in ("md", "latex", "html"):
        wanted = {"md": ".md", "latex": ".tex", "html": ".html"}[format]
        raise ExpdbError(f"--format {format} writes a {wanted} file, not {output!r}")
    with open_db(db) as database:
        chosen = cards.select_cards(database, selection_of(names, tag, where, status, show_invalid))
        written = write_report(
            database, chosen, Path(output), metrics=metrics, curves=curve, x=x, smooth=smooth, log_y=log_y, ylim=limits,
            baseline=baseline, title=title, format=format or suffix_format, over=over, spread=spread,
            invalid_baseline=invalid_baseline,
        )
    for path in written:
        console.print(escape(f"wrote {path}"))


@app.command(
    "copy",
    short_help="Copy cards to or from another database.",
    help="Copy cards with their runs, curves, profiles and notes to another database or from one; twice copies "
    f"nothing twice. {SELECTION_HELP} The cards are selected in the database copied from.",
)
def copy_command(
    names: CardsArgument = None,
    to: Annotated[str | None, typer.Option("--to", help="Copy from this database (--db) to this one: a path or a URL.")] = None,
    origin: Annotated[str | None, typer.Option("--from", help="Copy from this database, a path or a URL, into this one "
                                                              "(--db).")] = None,
    tag: TagOption = None,
    where: WhereOption = None,
    status: StatusOption = None,
    db: DbOption = None,
) -> None:
    from .copy import check_locations, copy_cards, render_copied
    from .db import resolve_location

    for option, value in (("--to", to), ("--from", origin)):
        if value is not None and not value.strip():
            raise ExpdbError(f"{option} is empty; give a database: a path, or postgresql+psycopg://USER@HOST/DB")
    here = resolve_location(db)
    if to is not None and origin is None:
        source, target = here, to
    elif origin is not None and to is None:
        source, target = origin, here
    else:
        raise ExpdbError("give --to URL (copy this database's cards there) or --from URL (copy its cards here), one of the two")
    check_locations(source, target)
    with open_db(source) as source_db, open_db(target, create=True) as target_db:
        copied = copy_cards(source_db, target_db, selection_of(names, tag, where, status))
    render_copied(copied, console)


@app.command(
    short_help="The study in a browser.",
    help="The study in a browser: table, cards, curves, parallel coordinates, live runs. Ctrl-C stops it.",
)
def ui(
    host: Annotated[
        str, typer.Option(help="Address to listen on. Anything but loopback prints a token that every request must carry.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    db: DbOption = None,
) -> None:
    from .ui.serve import serve

    with open_db(db) as database:  # a missing or too new database stops here, with one line
        location = database.location
    serve(location, host, port, console)


@db_app.command("current", short_help="The database's schema revision.")
def db_current(db: DbOption = None) -> None:
    """Print the database's schema revision and whether it is the newest."""
    from .db import SCHEMA_HEAD

    with Database(db, upgrade="no") as database:
        older = f"older than this expdb's {SCHEMA_HEAD}: run `expdb db upgrade`"
        state = "current" if database.revision == SCHEMA_HEAD else older
        console.print(f"{database.name}: schema {database.revision} ({state})")


@db_app.command("upgrade", short_help="Bring the database to the newest schema.")
def db_upgrade(db: DbOption = None) -> None:
    """Bring the database to the newest schema (an SQLite file after a backup copy beside it)."""
    with open_db(db, upgrade="yes") as database:
        if not database.upgraded_from:
            console.print(f"{database.name}: schema {database.revision}, nothing to upgrade")


def command():
    """The click command of `app`, its flags shown without a type (`--all`, not `--all <bool>`), its arguments
    in capitals (`expdb new NAME`, as the README writes them)."""
    from typer.core import TyperArgument, TyperGroup, TyperOption

    root = typer.main.get_command(app)
    commands = [root]
    while commands:
        current = commands.pop()
        for param in current.params:
            if isinstance(param, TyperOption) and param.is_flag:
                param.metavar = ""
            elif isinstance(param, TyperArgument) and param.name and not param.metavar:
                param.metavar = param.name.upper()
        if isinstance(current, TyperGroup):
            commands += current.commands.values()
    return root


def usage_message(error) -> str:
    """Click's usage errors in expdb's words: what was wrong and what would be right, on one line."""
    import difflib

    from typer._click.exceptions import MissingParameter, NoSuchOption

    ctx = getattr(error, "ctx", None)
    names: list[str] = []
    level = ctx
    while level is not None:
        names.insert(0, level.info_name or "")
        level = level.parent
    path = " ".join(["expdb", *names[1:]])  # "expdb", however it was started (python -m expdb)
    where = f"`{path}`"
    if isinstance(error, MissingParameter) and error.param is not None and ctx is not None:
        def shown(param) -> str:
            if param.param_type_name == "argument":
                return (param.metavar or param.name or "").strip("{}").upper()
            return f"{param.opts[0]} {(param.name or '').upper()}"

        required = [shown(param) for param in ctx.command.params if param.required]
        about = getattr(error.param, "help", None)
        said = f" ({about[0].lower()}{about[1:].rstrip('.')})" if about else ""
        return f"{where} needs {shown(error.param)}{said}: {path} {' '.join(required)}"
    if isinstance(error, NoSuchOption):
        close = difflib.get_close_matches(error.option_name, list(error.possibilities or ()), n=1)
        hint = f"; did you mean {close[0]}?" if close else f"; `{path} --help` lists its options"
        return f"{where} has no option {error.option_name}{hint}"
    return f"{error.format_message()} (see --help)"


def main() -> None:
    """The console script: user errors become one line on stderr and exit status 2."""
    from typer._click.exceptions import ClickException, NoArgsIsHelpError

    try:
        code = command()(standalone_mode=False, prog_name="expdb")  # a typer.Exit inside a command comes back as its code
    except ExpdbError as error:
        errors.print(f"error: {error}", markup=False, soft_wrap=True)
        sys.exit(2)
    except NoArgsIsHelpError as help_page:
        help_page.show()
        sys.exit(2)
    except ClickException as error:
        errors.print(f"error: {usage_message(error)}", markup=False, soft_wrap=True)
        sys.exit(2)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        code = 130
    except Exception as error:  # noqa: BLE001 - a bug of expdb's: one line, the traceback on request
        if os.environ.get("EXPDB_DEBUG"):
            raise
        errors.print(
            f"internal error: {last_line(error)} (this is a bug in expdb; EXPDB_DEBUG=1 shows the traceback)",
            markup=False,
            soft_wrap=True,
        )
        sys.exit(1)
    if code == 130:  # Ctrl-C; or SIGTERM, a cluster's SIGUSR2: then it says which (expdb.interrupts)
        why = interrupts.why_stopped()
        errors.print(f"interrupted: {why}" if why else "interrupted", markup=False, soft_wrap=True)
    if isinstance(code, int) and code:
        sys.exit(code)
