"""The schema: the SQLModel tables that Alembic's migrations in `migrations/` create.

These classes are the single source of truth for the schema; a test checks that the
migrations produce exactly these tables. Everyday commands read and write the tables
through `expdb.db` with plain SQL (importing SQLAlchemy alone costs about 0.3 s here,
more than half of `expdb list`'s budget), so this module is imported only by migrations
and tests.

Times are float seconds since the epoch, and JSON is stored as text, so that SQLite and
PostgreSQL hold the same values.
"""

from sqlalchemy import BigInteger, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


class Card(SQLModel, table=True):
    """An experiment: a named, typed set of hyperparameters, forked from a parent."""

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(max_length=32, unique=True, index=True)  # the same row in every database it is copied to
    name: str = Field(max_length=128, unique=True)
    parent_id: int | None = Field(default=None, foreign_key="card.id", ondelete="SET NULL", index=True)
    runner: str | None = Field(default=None, max_length=256)
    command: str | None = Field(default=None, sa_type=Text)  # a shell command, with {param} placeholders
    parser: str | None = Field(default=None, max_length=1024)  # how to read its log: mmdet, regex:...
    params: str = Field(default="{}", sa_type=Text)  # JSON object: key -> typed value
    created_at: float
    diverge: str | None = Field(default=None, sa_type=Text)  # JSON object: its --diverge settings
    invalid_reason: str | None = Field(default=None, sa_type=Text)  # set: the card's results must not be used
    invalidated_at: float | None = None


class Tag(SQLModel, table=True):
    card_id: int = Field(foreign_key="card.id", ondelete="CASCADE", primary_key=True)
    name: str = Field(max_length=128, primary_key=True, index=True)


class Run(SQLModel, table=True):
    """One execution of a card; the latest run gives the card its status."""

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(max_length=32, unique=True, index=True)  # the same row in every database it is copied to
    card_id: int = Field(foreign_key="card.id", ondelete="CASCADE", index=True)
    status: str = Field(max_length=16, index=True)  # queued running finished diverged failed interrupted crashed
    started_at: float | None = None
    ended_at: float | None = None
    heartbeat_at: float | None = None
    exit_reason: str | None = Field(default=None, sa_type=Text)
    command: str | None = Field(default=None, sa_type=Text)
    log_path: str | None = Field(default=None, sa_type=Text)
    checkpoint_dir: str | None = Field(default=None, sa_type=Text)
    host: str | None = Field(default=None, max_length=255)
    pid: int | None = None  # with host: a running run whose process is gone has crashed
    device: str | None = Field(default=None, max_length=128)
    seed: int | None = Field(default=None, sa_type=BigInteger)
    env: str = Field(default="{}", sa_type=Text)  # JSON: torch/CUDA versions, git commit and dirty flag, argv
    queued_at: float | None = None  # set when a queue or a cluster launcher planned this run
    launcher: str | None = Field(default=None, max_length=16)  # local, slurm; None for a run started by hand
    job_id: str | None = Field(default=None, max_length=64)  # the cluster's job id
    progress_step: int | None = Field(default=None, sa_type=BigInteger)  # the last step the run logged
    progress_at: float | None = None  # when it was logged: a run whose progress stops while it beats is hung
    origin: str | None = Field(default=None, max_length=16)  # "imported" from a log, "by-hand"; None: run here
    source: str | None = Field(default=None, sa_type=Text)  # the file imported, or a citation ("DeiT, Table 1")
    source_hash: str | None = Field(default=None, max_length=64, index=True)  # sha256 of the file(s) imported


class Note(SQLModel, table=True):
    """Timestamped text on a card, by the user or by expdb itself (automatic, with its step)."""

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(max_length=32, unique=True, index=True)  # the same row in every database it is copied to
    card_id: int = Field(foreign_key="card.id", ondelete="CASCADE", index=True)
    run_id: int | None = Field(default=None, foreign_key="run.id", ondelete="SET NULL")
    created_at: float
    text: str = Field(sa_type=Text)
    automatic: bool = False
    step: int | None = Field(default=None, sa_type=BigInteger)
    settings: str | None = Field(default=None, sa_type=Text)  # JSON: the thresholds behind an automatic note


class Metric(SQLModel, table=True):
    """A final scalar of a run, such as iou50."""

    # Holds the value too: reading a study's metrics in run order needs this index alone (migration 0009).
    __table_args__ = (Index("ix_metric_run_key_value", "run_id", "key", "value"),)

    run_id: int = Field(foreign_key="run.id", ondelete="CASCADE", primary_key=True)
    key: str = Field(max_length=128, primary_key=True)
    value: float
    step: int | None = Field(default=None, sa_type=BigInteger)  # where it was taken: the last or best point


class MetricDef(SQLModel, table=True):
    """How a metric is shown: `iou50` as "IOU@0.50", higher is better, three significant digits."""

    __tablename__ = "metric_def"

    key: str = Field(max_length=128, primary_key=True)
    label: str = Field(max_length=128)
    unit: str = Field(default="", max_length=32)
    direction: str | None = Field(default=None, max_length=8)  # higher, lower, or None
    format: str = Field(default="g4", max_length=16)  # see expdb.metrics.format_number


class Profile(SQLModel, table=True):
    """A card's model complexity: Params, FLOPs, Cost-Time, and how they were measured.

    Measured before a run trains (then `run_id` is that run) or on its own by `expdb profile`.
    """

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(max_length=32, unique=True, index=True)  # the same row in every database it is copied to
    card_id: int = Field(foreign_key="card.id", ondelete="CASCADE", index=True)
    run_id: int | None = Field(default=None, foreign_key="run.id", ondelete="SET NULL")
    created_at: float
    params_total: int | None = Field(default=None, sa_type=BigInteger)
    params_trainable: int | None = Field(default=None, sa_type=BigInteger)
    flops: float | None = None
    flops_counter: str | None = Field(default=None, max_length=32)  # fvcore (MACs) or torch
    cost_time_ms: float | None = None
    cost_time_p10_ms: float | None = None
    cost_time_p90_ms: float | None = None
    batch: int | None = None
    input_shape: str | None = Field(default=None, max_length=128)
    dtype: str | None = Field(default=None, max_length=16)
    device: str | None = Field(default=None, max_length=128)
    warmup: int | None = None
    iterations: int | None = None
    threads: int | None = None
    param_dtype: str | None = Field(default=None, max_length=32)  # the model's parameters: fp32, bf16, ...
    flags: str | None = Field(default=None, max_length=256)  # settings that change a timing: "cudnn.benchmark,tf32-cudnn"
    peak_mem_bytes: int | None = Field(default=None, sa_type=BigInteger)  # of one forward pass
    shared: bool | None = None  # another job used the device meanwhile
    details: str = Field(default="{}", sa_type=Text)  # JSON: torch version, skipped operators, cross-check, ...


class Series(SQLModel, table=True):
    """One curve of a run, such as its loss."""

    __table_args__ = (UniqueConstraint("run_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", ondelete="CASCADE")
    key: str = Field(max_length=128)


class Chunk(SQLModel, table=True):
    """Consecutive points of one curve, as packed little-endian arrays (see expdb.series).

    A row per point would cost about 30 bytes and cap ingest near 250,000 points/s here;
    a chunk costs under 10 bytes a point and takes over a million points/s.
    """

    id: int | None = Field(default=None, primary_key=True)
    series_id: int = Field(foreign_key="series.id", ondelete="CASCADE", index=True)
    first_step: int = Field(sa_type=BigInteger)
    last_step: int = Field(sa_type=BigInteger)
    count: int
    step_data: bytes = Field(sa_type=LargeBinary)  # int64 steps, zlib
    value_data: bytes = Field(sa_type=LargeBinary)  # float64 values, zlib
    wall_data: bytes = Field(sa_type=LargeBinary)  # float64 seconds since the run started, zlib
    epoch_data: bytes | None = Field(default=None, sa_type=LargeBinary)  # float64, NaN where not given
    samples_data: bytes | None = Field(default=None, sa_type=LargeBinary)  # int64, -1 where not given


class Attachment(SQLModel, table=True):
    """A file kept with a card (and the run it belongs to, if any); its content is stored by its hash."""

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(max_length=32, unique=True, index=True)  # the same row in every database it is copied to
    card_id: int = Field(foreign_key="card.id", ondelete="CASCADE", index=True)
    run_id: int | None = Field(default=None, foreign_key="run.id", ondelete="SET NULL")
    name: str = Field(max_length=255)  # the file's name when it was attached
    size: int = Field(sa_type=BigInteger)
    sha256: str = Field(max_length=64)
    note: str | None = Field(default=None, sa_type=Text)
    created_at: float
