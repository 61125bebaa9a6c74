"""ChainMonitor end to end for `kind = "generic"`: a made-up chain's JSON API over loopback."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from quorumwatch.analysis import Grouping, Threshold
from quorumwatch.config import ChainSettings, EndpointSettings
from quorumwatch.models import ValidatorStatus
from quorumwatch.monitor import ChainMonitor
from quorumwatch.report import ReportBoard
from quorumwatch.simulator.generic import RunningGenericSimulator, start_generic_simulator
from tests.builders import FakeClock

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

WALL = 1_750_000_000.0
UNIT = 10**21  # stakes far beyond 2**53, sent as strings: must stay exact


def _member(op: str, moniker: str, power: int, *, jailed: bool = False, bonded: bool = True) -> Any:
    return {
        "op": op,
        "moniker": moniker,
        "power": str(power * UNIT),
        "jailed": jailed,
        "bonded": bonded,
    }


# Bonded: 40 + 25 + 20 (jailed) + 15 = 100 units; E's 100 units are not bonded.
MADE_UP_CHAIN = {
    "data": {
        "height": 1234,
        "set": [
            _member("v1", "A", 40),
            _member("v2", "B", 25),
            _member("v3", "C", 20, jailed=True),
            _member("v4", "D", 15),
            _member("v5", "E", 100, bonded=False),
        ],
    }
}


@pytest.fixture
async def chain() -> AsyncIterator[RunningGenericSimulator]:
    """The made-up chain's API: `GET /api/validators` answers with `document`."""
    async with await start_generic_simulator(MADE_UP_CHAIN, path="/api/validators") as sim:
        yield sim


async def test_generic_chain_monitored_end_to_end(chain: RunningGenericSimulator) -> None:
    """Nakamoto 1/2/3 (halt/majority/control), online 80 of 100 units and per-validator statuses,
    as computed by hand; an invalid answer then takes the chain down with its reason counted,
    and the next valid answer brings it back."""
    url = chain.base_url
    settings = ChainSettings(
        name="madeup",
        kind="generic",
        poll_interval_seconds=30,
        endpoints=[EndpointSettings(name="api", url=url, timeout_seconds=5)],
        generic={
            "path": "/api/validators",
            "list_path": "data.set",
            "id_field": "op",
            "name_field": "moniker",
            "stake_field": "power",
            "jailed_field": "jailed",
            "active_field": "bonded",
            "token_decimals": 18,
        },
    )
    clock = FakeClock(WALL)
    board = ReportBoard()
    async with aiohttp.ClientSession() as session:
        monitor = ChainMonitor(settings, session, board, clock=clock)
        first = await monitor.poll_once()

        assert first.up is True
        assert first.validator_set is not None
        assert first.validator_set.endpoint == "api"
        assert first.validator_set.to_tokens(UNIT) == 1000.0  # 10**21 base units, 18 decimals
        table = first.validator_set.table
        statuses = {v.address: (v.name, v.status) for v in table.rows(range(len(table)))}
        assert statuses == {
            "v1": ("A", ValidatorStatus.ONLINE),
            "v2": ("B", ValidatorStatus.ONLINE),
            "v3": ("C", ValidatorStatus.JAILED),
            "v4": ("D", ValidatorStatus.ONLINE),
            "v5": ("E", ValidatorStatus.INACTIVE),
        }
        analysis = first.analysis
        assert analysis is not None
        assert analysis.total_stake == 100 * UNIT
        assert analysis.online_stake == 80 * UNIT
        # Ranked 40, 25, 20, 15 of 100: halt needs ≥ 34 (1), majority > 50 (2: 65),
        # control > 66⅔ (3: 85). Each validator is its own entity: the same by entity.
        for grouping in (Grouping.VALIDATOR, Grouping.ENTITY):
            assert dict(analysis.groupings[grouping].nakamoto) == {
                Threshold.HALT: 1,
                Threshold.MAJORITY: 2,
                Threshold.CONTROL: 3,
            }
        assert first.totals is not None
        assert first.totals.validators[ValidatorStatus.ONLINE] == 3
        assert first.totals.stake[ValidatorStatus.JAILED] == 20 * UNIT
        assert first.totals.stake[ValidatorStatus.INACTIVE] == 100 * UNIT

        chain.document = {"data": {"set": [{**_member("v1", "A", 1), "power": "1e21"}]}}
        clock.now += 30
        second = await monitor.poll_once()
        assert second.up is False
        assert second.analysis is None
        assert second.validator_set is None
        assert dict(second.rejections) == {"wrong_type": 1}
        assert second.last_success_at == WALL
        assert second.failures[0].startswith("api: invalid_payload (wrong_type")

        chain.document = MADE_UP_CHAIN
        clock.now += 30
        third = await monitor.poll_once()
        assert third.up is True
        assert third.analysis is not None
        assert third.analysis.total_stake == 100 * UNIT
        assert board.reports["madeup"] is third
    assert chain.requests == 3
