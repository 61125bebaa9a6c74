"""The command line: `run`, `demo`, `simulate` and `jails`."""

from quorumwatch.cli.main import main

__all__ = ["main"]
