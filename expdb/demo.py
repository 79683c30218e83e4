"""`expdb demo`: a small study in the spirit of the researcher's notebook, made and run end to end."""

from .cards import card_exists, create_card
from .db import Database
from .errors import ExpdbError
from .values import Value

# (name, parent, params, note): the cvt baseline, latent-array variants, and one learning rate
# far too large, which expdb must catch as it diverges.
DEMO_CARDS: list[tuple[str, str | None, dict[str, Value], str]] = [
    ("cvt", None, {"N": 0, "steps": 400}, "the baseline CvT backbone without a latent array"),
    (
        "cvt_io_v2_1", "cvt", {"N": 10, "L": 6, "shape": "bdhw", "shared": True, "lr": 4e-3},
        "a latent array of 10 latents, 6 shared layers",
    ),
    ("cvt_io_v2_3", "cvt_io_v2_1", {"shared": False}, "the same layers without sharing their weights"),
    ("cvt_io_v2_5", "cvt_io_v2_1", {"N": 3, "L": 1}, "a much smaller latent array"),
    ("cvt_io_blowup", "cvt_io_v2_1", {"lr": 10.0}, "a learning rate far too large: it should diverge"),
]
DEMO_TAG = "demo"


def create_demo(db: Database) -> list[str]:
    """Create the demo's cards; refuses if any of them exists already, before creating any."""
    taken = [name for name, *_ in DEMO_CARDS if card_exists(db, name)]
    if taken:
        raise ExpdbError(
            f"{db.name} has demo cards already ({', '.join(taken)}); run the demo with another --db"
        )
    for name, parent, params, note in DEMO_CARDS:
        create_card(db, name, params, parent=parent, runner="cvt_io" if parent is None else None, note=note, tags=[DEMO_TAG])
    return [name for name, *_ in DEMO_CARDS]
