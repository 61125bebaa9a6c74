"""The command line: `run`, `demo`, `simulate` and `jails`."""

from quorumwatch.cli.app import main

__all__ = ["main"]
