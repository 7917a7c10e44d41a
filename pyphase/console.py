"""The `pyphase` console script and `python -m pyphase`: `coldstart.start` for the packages the
command will import, before anything has imported them (typer included), then the CLI
(`cli.console`: `cli.main` with its fast exit). A Ctrl-C before the CLI is imported is its one line
and exit 130 too (`interrupted`), not a traceback."""

from __future__ import annotations

import sys
from typing import NoReturn

# Exit code of a run stopped by Ctrl-C (128 + SIGINT, as shells report it; typer's own code for it).
INTERRUPTED = 130


def interrupted() -> NoReturn:
    """Ctrl-C: one line saying so (on a line of its own, after a progress bar), what is kept, and
    exit INTERRUPTED. A sweep keeps its finished runs and checkpoints, so the same command resumes."""
    resumes = len(sys.argv) > 1 and sys.argv[1] == "train"
    sys.stderr.write(("\n" if sys.stderr.isatty() else "")
                     + "pyphase: interrupted" + ("; finished runs and checkpoints are kept: the same command "
                                                 "resumes" if resumes else "") + "\n")
    sys.stderr.flush()
    sys.exit(INTERRUPTED)


def main() -> None:
    try:
        from pyphase import coldstart

        coldstart.start(coldstart.packages_for(sys.argv[1:]))
        from pyphase.cli import console
    except KeyboardInterrupt:
        interrupted()
    console()
