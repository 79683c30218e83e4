"""What a profile was measured under, and which of a card's profiles a table shows.

A card keeps its latest profile under each set of conditions (device, dtype, the
parameters' dtype, batch, input shape, CPU threads, flags such as TF32 or channels-last):
`expdb run` profiling at fp32 batch 1 does not replace a deliberate `expdb profile --dtype
fp16 --batch 8`. A table shows one set of conditions in its profile columns: the one most
of its cards have, or the one asked for (`--conditions dtype=fp16,batch=8`); cards measured
only otherwise get no profile figures there, and the table says which.

A Cost-Time is noisy when its p10 to p90 spread is wide (or too few passes were timed to
know it), and a profile taken while another queued job used the same device is shared:
tables mark both.
"""

from dataclasses import dataclass, field

from .db import Database
from .errors import ExpdbError
from .metrics import PROFILE_COLUMNS

NOISE_SPREAD = 0.25  # (p90 - p10) / median above this is a noisy Cost-Time
MIN_PASSES = 5  # fewer timed passes than this leave the spread unknown: noisy too
NOISY, SHARED = "§", "‡"  # the marks a Cost-Time gets in tables († is a significant difference)
MARK_NAMES = {NOISY: "noisy", SHARED: "shared"}
TIMED_KEYS = ("cost_time", "peak_mem")  # the profile columns that depend on the device and dtype
WANTED_KEYS = {  # --conditions KEY -> the Conditions field
    "device": "device", "dtype": "dtype", "batch": "batch", "input": "input_shape", "flags": "flags", "threads": "threads",
}


@dataclass(frozen=True)
class Conditions:
    device: str | None  # "cpu (its model name)" or the GPU's name
    dtype: str | None
    param_dtype: str | None
    batch: int | None
    input_shape: str | None
    threads: int | None
    flags: str  # "" when none is set

    @property
    def recorded(self) -> bool:
        return any(value not in (None, "") for value in (self.device, self.dtype, self.batch, self.input_shape))

    @property
    def device_short(self) -> str:
        """"A100-SXM4-80GB" for "NVIDIA A100-SXM4-80GB", "CPU" for "cpu (AMD EPYC 7B13)"."""
        if not self.device:
            return ""
        if self.device.startswith("cpu"):
            return "CPU"
        return self.device.removeprefix("NVIDIA ").removeprefix("GeForce ")

    def short(self) -> str:
        """What a column head says: "A100-SXM4-80GB, fp16, bs 1"."""
        return ", ".join(part for part in (self.device_short, self.dtype or "", f"bs {self.batch}" if self.batch else "") if part)

    def describe(self) -> str:
        """Everything, for a footnote: "NVIDIA A100-SXM4-80GB, fp16, batch 1, input 3x224x224, flags tf32-cudnn"."""
        if not self.recorded:
            return "conditions not recorded"
        parts = [self.device or "", self.dtype or ""]
        if self.param_dtype and self.param_dtype != self.dtype:
            parts.append(f"{self.param_dtype} parameters")
        parts += [f"batch {self.batch}" if self.batch else "", f"input {self.input_shape}" if self.input_shape else ""]
        threads = f"{self.threads} thread{'s' if self.threads != 1 else ''}" if self.threads else ""
        parts += [threads, f"flags {self.flags}" if self.flags else ""]
        return ", ".join(part for part in parts if part)

    def matches(self, wanted: dict[str, str]) -> bool:
        """`wanted`: field -> text; a device matches by any part of its name ("a100", "cpu"), the rest exactly."""
        for key, text in wanted.items():
            value = getattr(self, WANTED_KEYS[key])
            if key == "device":
                any_gpu = text.lower() == "cuda" and value and not value.startswith("cpu")
                if text.lower() not in (value or "").lower() and not any_gpu:
                    return False
            elif key == "flags":
                if set(filter(None, text.split("+"))) != set(filter(None, (value or "").split(","))):
                    return False
            elif str(value) != text:
                return False
        return True


def is_noisy(median: float | None, p10: float | None, p90: float | None, passes: int | None) -> bool:
    """A Cost-Time whose p10-p90 spread is wide, or timed too few times to know its spread."""
    if median is None or p10 is None or p90 is None:
        return False
    if passes is not None and passes < MIN_PASSES:
        return True
    return median > 0 and (p90 - p10) / median > NOISE_SPREAD


@dataclass(slots=True)
class Measured:
    """A card's latest profile under one set of conditions."""

    id: int
    card_id: int
    conditions: Conditions
    values: dict[str, float]  # profile column key (params, flops, cost_time, peak_mem) -> value
    p10: float | None
    p90: float | None
    iterations: int | None
    shared: bool
    deliberate: bool  # measured by `expdb profile`, not before a run trained
    flops_counter: str | None  # who counted its FLOPs: fvcore, or torch when fvcore could not

    @property
    def noisy(self) -> bool:
        return is_noisy(self.values.get("cost_time"), self.p10, self.p90, self.iterations)

    def marks(self) -> str:
        return (NOISY if self.noisy else "") + (SHARED if self.shared else "")


def card_profiles(db: Database, card_ids: list[int]) -> dict[int, list[Measured]]:
    """card id -> its latest profile under each set of conditions, the latest first."""
    return profiles_of(profile_rows(db, card_ids))


def profile_rows(db: Database, card_ids: list[int]) -> list[tuple]:
    """Every profile of these cards as `profiles_of` takes them, the latest first: numbers and text only (a forked
    child can hand them over)."""
    restrict, ids = "", list[object]()  # every card: the whole table
    if not db.every_row("card", card_ids):
        among, ids = db.among("card_id", card_ids)
        restrict = f" WHERE {among}"
    columns = ", ".join(PROFILE_COLUMNS.values())
    return db.query(
        f"SELECT id, card_id, device, dtype, param_dtype, batch, input_shape, threads, flags, {columns}, "
        f"cost_time_p10_ms, cost_time_p90_ms, iterations, shared, run_id, flops_counter FROM profile{restrict} ORDER BY id DESC",
        ids,
    )


def profiles_of(rows: list[tuple]) -> dict[int, list[Measured]]:
    """`card_profiles` of the rows `profile_rows` read."""
    found: dict[int, list[Measured]] = {}
    known: dict[tuple, Conditions] = {}  # a study has few sets of conditions: each made once
    keys, count = tuple(PROFILE_COLUMNS), len(PROFILE_COLUMNS)
    for profile_id, card_id, device, dtype, param_dtype, batch, input_shape, threads, flags, *rest in rows:
        fields = (device, dtype, param_dtype, batch, input_shape, threads, flags or "")
        conditions = known.get(fields) or known.setdefault(fields, Conditions(*fields))
        card = found.get(card_id)
        if card is not None and any(measured.conditions is conditions for measured in card):
            continue  # an older profile under the same conditions (each set of conditions is one object)
        figures, (p10, p90, iterations, shared, run_id, flops_counter) = rest[:count], rest[count:]
        values = {key: value for key, value in zip(keys, figures, strict=True) if value is not None}
        measured = Measured(profile_id, card_id, conditions, values, p10, p90, iterations, bool(shared), run_id is None,
                            flops_counter)
        if card is None:
            found[card_id] = [measured]
        else:
            card.append(measured)
    return found


def parse_wanted(text: str | None) -> dict[str, str]:
    """`--conditions "device=a100,dtype=fp16,batch=8"` -> {"device": "a100", ...}; flags joined by +."""
    wanted: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or key not in WANTED_KEYS or not value.strip():
            raise ExpdbError(
                f"--conditions {text!r}: expected KEY=VALUE pairs separated by commas, KEY one of "
                f"{', '.join(WANTED_KEYS)}, as in --conditions dtype=fp16,batch=8"
            )
        wanted[key] = value.strip()
    return wanted


@dataclass
class Choice:
    """The profile each card shows in a table, under one set of conditions."""

    conditions: Conditions | None
    chosen: dict[int, Measured] = field(default_factory=dict)  # card id -> its profile under `conditions`
    otherwise: list[int] = field(default_factory=list)  # card ids with profiles only under other conditions


def choose(profiles: dict[int, list[Measured]], wanted_text: str | None = None) -> Choice:
    """The conditions most cards have a profile under (of those matching `wanted_text`); of equally
    many, those of a deliberate `expdb profile`, then the latest measured; and each card's profile under them."""
    wanted = parse_wanted(wanted_text)
    under: dict[Conditions, list[Measured]] = {}  # a card has one profile under each set of conditions
    for card in profiles.values():
        for measured in card:
            found = under.get(measured.conditions)
            if found is None:
                under[measured.conditions] = [measured]
            else:
                found.append(measured)
    candidates = {conditions: found for conditions, found in under.items() if conditions.matches(wanted)}
    if not candidates:
        if wanted and profiles:
            available = sorted(conditions.describe() for conditions in under)
            raise ExpdbError(
                f"--conditions {wanted_text!r}: no shown card has a profile so measured; there are: {'; '.join(available)}"
            )
        return Choice(None, otherwise=[])
    most = max(map(len, candidates.values()))
    tied = [conditions for conditions, found in candidates.items() if len(found) == most]
    conditions = max(tied, key=lambda tie: max((measured.deliberate, measured.id) for measured in candidates[tie]))
    chosen = {measured.card_id: measured for measured in candidates[conditions]}
    return Choice(conditions, chosen, [card_id for card_id in profiles if card_id not in chosen])


def fill_rows(rows: list, wanted_text: str | None, profiles: dict[int, list[Measured]]) -> Choice:
    """Put each row's profile under the chosen conditions into `row.values` (and its marks into `row.marks`).
    `profiles`: the `card_profiles` of the rows' cards."""
    choice = choose(profiles, wanted_text)
    chosen = choice.chosen
    for row in rows:
        measured = chosen.get(row.card.id)
        if measured is None:
            continue
        row.values.update(measured.values)
        if measured.marks() and "cost_time" in measured.values:
            row.marks["cost_time"] = measured.marks()
    return choice


def footnotes(choice: Choice, rows: list, shown_keys: set[str]) -> list[str]:
    """What a table says under it about its profile columns: the conditions, which of its `rows`' cards were
    measured only otherwise, the marks."""
    if choice.conditions is None or not shown_keys & set(PROFILE_COLUMNS):
        return []
    notes = [f"Profiles: {choice.conditions.describe()}."]
    otherwise = set(choice.otherwise)
    left_out = sorted({row.card.name for row in rows if row.card.id in otherwise}) if otherwise else []
    if left_out:
        names = ", ".join(left_out)
        notes.append(f"Measured only under other conditions, so left out: {names} (--conditions picks others).")
    marks = "".join(row.marks.get("cost_time", "") for row in rows) if "cost_time" in shown_keys else ""
    if NOISY in marks:
        notes.append(
            f"{NOISY} Cost-Time p10-p90 spread over {NOISE_SPREAD:.0%} of the median, or under {MIN_PASSES} passes timed: noisy."
        )
    if SHARED in marks:
        notes.append(f"{SHARED} profiled while another job shared the device.")
    return notes
