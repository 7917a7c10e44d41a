"""The `pyphase` console script and `python -m pyphase`: `coldstart.start` for the packages the
command will import, before anything has imported them (typer included), then the CLI
(`cli.console`: `cli.main` with its fast exit)."""

from __future__ import annotations

import sys


def main() -> None:
    from pyphase import coldstart

    coldstart.start(coldstart.packages_for(sys.argv[1:]))
    from pyphase.cli import console

    console()
