"""The one exception type for user mistakes.

The CLI turns a `UserError` into a one-line message and exit status 2; anything else is a bug and
keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: the message says what was wrong and how to fix it."""


def choose(kind: str, name: str, table: dict):
    """Return `table[name]`, or fail with the list of valid names."""
    if name not in table:
        raise UserError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(table))}")
    return table[name]


def short_reason(e: Exception, limit: int = 100) -> str:
    """An exception's message on one line, cut after whole words near `limit` characters (" ..."
    marks the cut); the exception's type name when the message is empty."""
    text = ""
    for word in str(e).split():
        if len(text) + len(word) > limit:
            return text + " ..."
        text = f"{text} {word}".strip()
    return text or type(e).__name__
