"""`expdb.open(db)`: a study from a notebook, its tables and curves as pandas DataFrames. Imports pandas."""

from collections.abc import Sequence
from dataclasses import replace

import pandas as pd

from .cards import Selection, get_card, select_cards
from .db import Database
from .errors import ExpdbError
from .render import flat_rows
from .series import latest_curve
from .table import build_table


def _selection(names: Sequence[str] | str, tag: str | None, where: str | None, status: str | None) -> Selection:
    """A name or glob may be given alone, as a string."""
    return Selection((names,) if isinstance(names, str) else tuple(names), tag, where, status)


class Notebook:
    """An expdb database, read from Python. Use it as a context manager, or call `close()`."""

    def __init__(self, location: str | None = None):
        self.db = Database(location)

    def table(
        self,
        metrics: Sequence[str] | str = (),
        names: Sequence[str] | str = (),
        tag: str | None = None,
        where: str | None = None,
        status: str | None = None,
        invalid: bool = False,
        **options,
    ) -> pd.DataFrame:
        """The comparison table of `expdb table` (same options: names and globs, tag, where, status, sort,
        baseline, params, group_by, aggs, over, spread; `invalid`: also the invalid cards, as --all) with raw
        numbers, one row per card (or variant, or group), indexed by its name."""
        selected = select_cards(self.db, replace(_selection(names, tag, where, status), invalid=invalid))
        comparison = build_table(self.db, selected, [metrics] if isinstance(metrics, str) else list(metrics), **options)
        header, rows = flat_rows(comparison)
        return pd.DataFrame(rows, columns=header).set_index(header[0])

    def cards(
        self, names: Sequence[str] | str = (), tag: str | None = None, where: str | None = None, status: str | None = None
    ) -> pd.DataFrame:
        """The cards selected as `expdb list` selects them (every card by default) with their status, parent,
        tags and parameters, one row each, indexed by name."""
        records = [
            {"card": card.name, "status": card.status, "parent": card.parent, "tags": card.tags, **card.params}
            for card in select_cards(self.db, _selection(names, tag, where, status))
        ]
        return pd.DataFrame(records).set_index("card")

    def curve(self, card: str, key: str = "loss") -> pd.DataFrame:
        """A curve of the card's latest run that logged it: step, value, epoch, samples, wall_time (s)."""
        found = latest_curve(self.db, get_card(self.db, card).id, key)
        if found is None:
            raise ExpdbError(f"{card} has no run with a {key!r} curve")
        frame = pd.DataFrame({"step": found.steps, "value": found.values, "wall_time": found.walls})
        if found.epochs is not None:
            frame["epoch"] = found.epochs
        if found.samples is not None:
            frame["samples"] = pd.Series(found.samples).where(lambda samples: samples >= 0)
        return frame

    def curves(self, cards: list[str], key: str = "loss") -> pd.DataFrame:
        """Several cards' curves in one long frame with a `card` column, for plotting or grouping."""
        return pd.concat([self.curve(card, key).assign(card=card) for card in cards], ignore_index=True)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Notebook":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
