"""The daemon's wiring that needs no process: the metrics registry built from the settings, and
the chains it watches as subnets come and go."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest

from quorumwatch.config import ChainSettings, load_settings, subnet_chain
from quorumwatch.daemon import WatchedChains, build_registry
from quorumwatch.report import ReportBoard
from tests.builders import chain_settings, report, validator, watched_chains
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


ALL_SUBNETS = ChainSettings.model_validate(
    {"name": "tao", "kind": "bittensor", "endpoints": [{"name": "n", "url": "ws://127.0.0.1:1"}]}
)


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
    registry = build_registry(board, watched_chains(settings.chains))
    samples = parse_samples(generate_latest(registry).decode())
    jailed = {
        dict(labels)["chain"] for name, labels in samples if name == "quorumwatch_validator_jailed"
    }
    assert jailed == {"full"}
    assert samples["quorumwatch_chain_up", frozenset({("chain", "quiet")})] == 1


def test_watched_chains_keep_configuration_order_with_subnets_in_place_by_netuid() -> None:
    """Subnets of a chain of "all" subnets, added in any order, are listed in that chain's
    place by netuid (10 after 2) between the configured chains around it; one removed leaves
    the list, but its series settings stay for a scrape still rendering its last report."""
    before = chain_settings(name="before")
    after = chain_settings(name="after", validator_series=False)
    watched = WatchedChains([before, ALL_SUBNETS, after])
    watched.add(after)
    for netuid in (10, 2, 5):
        watched.add(subnet_chain(ALL_SUBNETS, netuid), listed_by=ALL_SUBNETS)
    watched.add(before)
    watched.remove("tao-sn5")
    assert [c.name for c in watched.settings] == ["before", "tao-sn2", "tao-sn10", "after"]
    assert watched.max_series.keys() == {"before", "tao-sn2", "tao-sn5", "tao-sn10", "after"}
    assert watched.without_validator_series == {"after"}
