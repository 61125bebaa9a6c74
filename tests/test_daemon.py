"""The daemon's wiring that needs no process: the metrics registry built from the settings."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest

from quorumwatch.config import load_settings
from quorumwatch.daemon import build_registry
from quorumwatch.report import ReportBoard
from tests.builders import report, validator
from tests.services import parse_samples

CONFIG = """
[[chains]]
name = "quiet"
kind = "hyperliquid"
validator_series = false
endpoints = [{ name = "api", url = "http://127.0.0.1:1" }]

[[chains]]
name = "full"
kind = "hyperliquid"
endpoints = [{ name = "api", url = "http://127.0.0.1:1" }]
"""


def test_validator_series_setting_reaches_the_registry(tmp_path: Path) -> None:
    """`validator_series = false` in the config file leaves that chain without per-validator
    series in the daemon's registry but with its chain series; a chain without the key keeps
    its per-validator series."""
    config = tmp_path / "config.toml"
    config.write_text(CONFIG, encoding="utf-8")
    settings = load_settings(config)
    board = ReportBoard()
    for chain in settings.chains:
        board.publish(report([validator(1, 60), validator(2, 40)], settings=chain))
    samples = parse_samples(generate_latest(build_registry(board, settings.chains)).decode())
    jailed = {
        dict(labels)["chain"] for name, labels in samples if name == "quorumwatch_validator_jailed"
    }
    assert jailed == {"full"}
    assert samples["quorumwatch_chain_up", frozenset({("chain", "quiet")})] == 1
