"""Files written whole or not at all, shared by `expdb report` and `expdb plot`.

A file is written beside its destination under a temporary name and moved into place with
`os.replace` only once every file of the batch is ready, so a failure leaves the previous
files as they were and no half-written file. Also the checks of an output path and of the
plot options that must run before matplotlib is imported.

Imports neither torch nor matplotlib.
"""

import math
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .errors import ExpdbError
from .values import in_words

X_AXES = ("step", "epoch", "samples", "time")


def check_output(path: Path, suffixes: Sequence[str] | None = None) -> Path:
    """`path`, if a file can be written there: its directory exists and is writable, it is not a directory
    nor a device or a pipe (which the move into place would replace), and (given `suffixes`, lower case with
    the dot) its suffix is one of them. Else ExpdbError."""
    path = Path(path)
    if suffixes is not None and path.suffix.lower() not in suffixes:
        shown = path.suffix or "no suffix"
        raise ExpdbError(f"cannot write {path}: unknown format {shown!r}; end the file name in {in_words(suffixes, 'or')}")
    if not path.parent.is_dir():
        raise ExpdbError(f"cannot write {path}: directory {path.parent} does not exist")
    if path.is_dir():
        raise ExpdbError(f"cannot write {path}: it is a directory")
    if path.exists() and not path.is_file():
        raise ExpdbError(f"cannot write {path}: it is not a regular file (a device or a pipe); give a file's path")
    if not os.access(path.parent, os.W_OK):
        raise ExpdbError(f"cannot write {path}: the folder {path.parent} is not writable")
    return path


def check_plot_options(x: str, smooth: float) -> None:
    """The x axis and the EMA weight of a plot."""
    if x not in X_AXES:
        raise ExpdbError(f"unknown x axis {x!r}; use one of: {', '.join(X_AXES)}")
    if not 0.0 <= smooth < 1.0:
        raise ExpdbError(f"--smooth must be in [0, 1), not {smooth}")


YLim = tuple[float | None, float | None]


def parse_ylim(text: str | None, log_y: bool = False) -> YLim | None:
    """`--ylim LOW:HIGH` (either side may be left out: `:5`, `0:`) as (low, high); None when not given."""
    if text is None:
        return None
    low_text, sep, high_text = text.partition(":")
    if not sep or ":" in high_text:
        raise ExpdbError(f"--ylim {text!r} is not LOW:HIGH; write e.g. 0:5, or :5 for the top only")
    bounds: list[float | None] = []
    for part in (low_text, high_text):
        if not part.strip():
            bounds.append(None)
            continue
        try:
            value = float(part)
        except ValueError:
            raise ExpdbError(f"--ylim {text!r}: {part!r} is not a number; write e.g. 0:5") from None
        if not math.isfinite(value):
            raise ExpdbError(f"--ylim {text!r}: the limits must be finite numbers")
        bounds.append(value)
    low, high = bounds
    if low is None and high is None:
        raise ExpdbError(f"--ylim {text!r} sets no limit; write e.g. 0:5")
    if low is not None and high is not None and not low < high:
        raise ExpdbError(f"--ylim {text!r}: the lower limit must be below the upper one")
    if log_y and any(bound is not None and bound <= 0 for bound in bounds):
        raise ExpdbError(f"--ylim {text!r} with --log-y: the limits must be above 0")
    return low, high


def _cannot_write(path: Path, error: OSError) -> ExpdbError:
    return ExpdbError(f"cannot write {path}: {error.strerror or error}")


def beside(target: Path, suffix: str = ".tmp") -> Path:
    """A new empty file in the directory of `target`, hidden, named after it."""
    try:
        descriptor, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    except OSError as error:
        raise _cannot_write(target, error) from None
    os.close(descriptor)
    return Path(name)


def fill(path: Path, write: Callable[[IO], object], *, binary: bool = False, shown: Path | None = None) -> None:
    """Write `path` with `write(handle)` and give it the mode a new file gets under the umask.
    An OSError becomes an ExpdbError naming `shown` (default: `path`)."""
    try:
        with open(path, "wb") if binary else open(path, "w", encoding="utf-8", newline="\n") as handle:
            write(handle)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(path, 0o666 & ~umask)
    except OSError as error:
        raise _cannot_write(shown or path, error) from None


def replace_all(pairs: Sequence[tuple[Path, Path]]) -> None:
    """Move each (temporary, target) into place."""
    for temporary, target in pairs:
        try:
            os.replace(temporary, target)
        except OSError as error:
            raise _cannot_write(target, error) from None


@contextmanager
def staging() -> Iterator[list[tuple[Path, Path]]]:
    """A list to append (temporary, target) pairs to; on any exception every temporary is removed."""
    staged: list[tuple[Path, Path]] = []
    try:
        yield staged
    except BaseException:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        raise
