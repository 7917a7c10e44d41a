"""The one exception type the CLI turns into a one-line message and exit code 2."""


class PyphaseError(Exception):
    """A problem with the user's input (bad option, missing or malformed file, unknown experiment).

    The message is one line that says what is wrong and, where possible, how to fix it.
    """


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type's name if it has none), for a one-line error."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def shown(value: object, *, quote: bool = False) -> str:
    """A value for a one-line error: an integer with thousands separators, or by its size past 30
    digits (a TOML or JSON integer can have thousands); anything else as str (repr with `quote`)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}" if abs(value) < 10**30 else f"an integer of {len(str(abs(value)))} digits"
    return repr(value) if quote else str(value)
