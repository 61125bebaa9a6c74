"""quorumwatch: who could halt or take over a proof-of-stake chain, continuously."""

# The one place the version is written: pyproject.toml reads it from here (hatch), so an
# installed package, a source tree and an editable install all report the same.
__version__ = "0.2.0"

__all__ = ["__version__"]
