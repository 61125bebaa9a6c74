"""quorumwatch: who could halt or take over a proof-of-stake chain, continuously."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("quorumwatch")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
