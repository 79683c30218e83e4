"""The errors expdb raises on purpose. The CLI prints their message as one line and exits 2."""


class ExpdbError(Exception):
    """A problem the user can fix: bad input, a missing card, a database that cannot be used."""


class DatabaseError(ExpdbError):
    """The database could not be opened, read or written."""


def last_line(error: BaseException, *, typed: bool = True, lines: str = "all", limit: int | None = None) -> str:
    """An exception as one line: its type and message, whitespace folded ("ValueError: bad value").

    Of a message of several lines, `lines="first"` keeps the first (a database's: the rest quote
    the SQL back) and `lines="last"` the last (torch's: the rest are context). `typed=False`
    leaves out the type where the message is the whole story (a database's), but for an empty
    message. `limit`: at most so many characters, "..." ending a longer line.
    """
    import traceback

    message = [part for part in str(error).splitlines() if part.strip()]
    if lines != "all" and len(message) > 1:
        text = message[0] if lines == "first" else message[-1]
        text = f"{type(error).__name__}: {text}" if typed else text
    elif typed:
        text = traceback.format_exception_only(type(error), error)[-1]
    else:
        text = str(error) if message else type(error).__name__
    text = " ".join(text.split())
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."
