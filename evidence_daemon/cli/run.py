"""``run``: the dock-station daemon; ``station.run_daemon`` wires it."""

from __future__ import annotations

import argparse

from ..config import Config
from ..station import run_daemon
from .exit_codes import ExitCode


def cmd_run(config: Config, args: argparse.Namespace) -> ExitCode:
    return ExitCode(run_daemon(config, udev=not args.no_udev))
