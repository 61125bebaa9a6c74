"""The report board: the latest report and the firing alerts per chain, until it is withdrawn."""

from __future__ import annotations

from quorumwatch.alerting.model import AlertCommit
from quorumwatch.report import ReportBoard
from tests.builders import alert_state, chain_settings, report


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


def test_a_commit_that_changed_no_firing_alert_leaves_the_mapping_as_it_is() -> None:
    """A commit whose firing alerts equal the chain's last ones keeps the very mapping (the
    version /metrics renderings are reused by); one that changes them replaces it, and a first
    commit with none firing adds the chain."""
    board = ReportBoard()
    board.alerts_committed(AlertCommit("hyperliquid", ()))
    assert board.firing == {"hyperliquid": ()}
    firing = alert_state("EntityCanControl")
    board.alerts_committed(AlertCommit("hyperliquid", (firing,)))
    mapping = board.firing
    board.alerts_committed(AlertCommit("hyperliquid", (alert_state("EntityCanControl"),)))
    assert board.firing is mapping
    board.alerts_committed(AlertCommit("hyperliquid", ()))
    assert board.firing is not mapping
    assert board.firing == {"hyperliquid": ()}


def test_withdrawing_a_chain_takes_its_report_and_alerts_off_the_board() -> None:
    """A chain withdrawn leaves the board's reports and firing alerts; other chains stay."""
    board = ReportBoard()
    for chain in ("tao-sn1", "tao-sn2"):
        board.publish(report(None, settings=chain_settings(name=chain)))
        board.alerts_committed(AlertCommit(chain, (alert_state("DataStale", chain=chain),)))
    board.withdraw("tao-sn1")
    assert list(board.reports) == ["tao-sn2"]
    assert list(board.firing) == ["tao-sn2"]
