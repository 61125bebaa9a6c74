"""The report board: the latest report and the firing alerts per chain."""

from __future__ import annotations

from quorumwatch.alerting.model import AlertCommit
from quorumwatch.report import ReportBoard
from tests.builders import alert_state


def test_the_board_keeps_each_chains_firing_alerts_from_its_last_commit() -> None:
    """A commit replaces its own chain's firing alerts with those it holds firing (pending
    ones left out) and leaves other chains' alone."""
    board = ReportBoard()
    other = alert_state("DataStale", chain="other")
    board.alerts_committed(AlertCommit("other", (other,)))
    board.alerts_committed(AlertCommit("hyperliquid", (alert_state("EntityCanHalt"),)))
    firing = alert_state("EntityCanControl")
    pending = alert_state("EntityCanHalt", entity="e2", firing=False)
    board.alerts_committed(AlertCommit("hyperliquid", (pending, firing)))
    assert board.firing == {"hyperliquid": (firing,), "other": (other,)}
