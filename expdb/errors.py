"""The errors expdb raises on purpose. The CLI prints their message as one line and exits 2."""


class ExpdbError(Exception):
    """A problem the user can fix: bad input, a missing card, a database that cannot be used."""


class DatabaseError(ExpdbError):
    """The database could not be opened, read or written."""


def last_line(error: BaseException) -> str:
    """An exception as one line: its type and message, newlines folded ("ValueError: bad value")."""
    import traceback

    text = traceback.format_exception_only(type(error), error)[-1].strip()
    return " ".join(text.split())
