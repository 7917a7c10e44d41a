"""The one exception type the CLI turns into a one-line message and exit code 2."""


class PyphaseError(Exception):
    """A problem with the user's input (bad option, missing or malformed file, unknown experiment).

    The message is one line that says what is wrong and, where possible, how to fix it.
    """
