"""The CLI's subcommands; each module's `register` adds one (or a few) to the parser.

To add a command: write `connector/commands/<name>.py` with
`register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None`
and list it here.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from connector.commands import backups, control, demo, doctor, pair, run, sim_server, status, worker

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

COMMANDS: list[Registrar] = [
    run.register,
    pair.register,
    status.register,
    worker.register,
    sim_server.register,
    backups.register,
    control.register,
    doctor.register,
    demo.register,
]
