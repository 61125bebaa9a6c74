"""The command line: `run`, `demo`, `simulate` and `jails`, and SIGTERM while it starts."""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType

__all__ = ["main", "sigterm_by_default", "sigterm_received"]


class _StartUp:
    sigterm = False  # SIGTERM came before a command took it over


_start_up = _StartUp()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. SIGTERM before the command takes it over is noted, not fatal.

    Imports and the configuration take about a second before the daemon's event loop handles
    SIGTERM; at its default, a stop then (systemd's, say) killed the process by the signal.
    Noted instead, it makes a long-running command stop as soon as it can, with exit 0.
    Nothing is raised from the handler: an exception at an arbitrary point of an import (a C
    extension's among them) can fail in ways no caller can clean up after.
    """
    _start_up.sigterm = False
    # Only the main thread can set a handler, and only it runs one; a command run from
    # another thread (tests do) leaves signals alone.
    previous = signal.signal(signal.SIGTERM, _note_sigterm) if _main_thread() else None
    try:
        from quorumwatch.cli.app import main as run_command

        return run_command(argv)
    finally:
        if previous is not None:  # None: not set (or not from Python): nothing to restore
            signal.signal(signal.SIGTERM, previous)


def sigterm_received() -> bool:
    """Whether SIGTERM came while the command line was starting."""
    return _start_up.sigterm


def sigterm_by_default() -> None:
    """For a command that runs once: SIGTERM ends it by the signal, as it always has; one
    that came while it was starting ends it now."""
    if not _main_thread():
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if _start_up.sigterm:
        signal.raise_signal(signal.SIGTERM)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _note_sigterm(signum: int, frame: FrameType | None) -> None:
    _start_up.sigterm = True
