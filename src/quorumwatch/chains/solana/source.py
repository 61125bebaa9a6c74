"""Solana source: the vote-account set over JSON-RPC, through the endpoint pool.

Endpoints are tried in configured order. On each, `getEpochInfo` and `getBlockTime` of
its slot come first: cheap freshness probes, so the large `getVoteAccounts` answer is only
fetched from a node that answers, is not behind an epoch already seen, and whose newest
block is dated near our clock; any failure fails the endpoint and the next one is tried.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from quorumwatch.chains.base import (
    ChainSource,
    EndpointRejectedError,
    VersionedSet,
    value_of,
)
from quorumwatch.chains.solana.parse import (
    EpochInfo,
    parse_block_time,
    parse_epoch_info,
    parse_vote_accounts,
)

if TYPE_CHECKING:
    from quorumwatch.endpoints import Endpoint

RPC_PATH = ""  # JSON-RPC is served at the endpoint URL itself
COMMITMENT = "confirmed"  # as solana-exporter: voted on by a supermajority, not yet rooted
VOTE_ACCOUNTS_REQUEST = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "getVoteAccounts",
    "params": [{"commitment": COMMITMENT}],
}
EPOCH_INFO_REQUEST = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "getEpochInfo",
    "params": [{"commitment": COMMITMENT}],
}

log = structlog.get_logger(__name__)


class SolanaSource(ChainSource):
    """The vote-account set from the first endpoint that answers both requests validly."""

    kind = "solana"
    _latest_epoch: int | None = None  # the highest epoch any endpoint reported

    async def _attempt(self, endpoint: Endpoint) -> VersionedSet:
        info = await self._check_epoch(endpoint)
        await self._check_block_time(endpoint, info.absolute_slot)
        table = value_of(
            await self._pool.post_json(
                endpoint, RPC_PATH, VOTE_ACCOUNTS_REQUEST, parse_vote_accounts
            )
        )
        return VersionedSet(table, info.epoch)

    async def _check_epoch(self, endpoint: Endpoint) -> EpochInfo:
        """Reject an endpoint that fails getEpochInfo or reports an epoch already passed."""
        info = value_of(
            await self._pool.post_json(endpoint, RPC_PATH, EPOCH_INFO_REQUEST, parse_epoch_info)
        )
        latest = self._latest_epoch
        if latest is not None and info.epoch < latest:
            log.warning("endpoint behind", endpoint=endpoint.name, epoch=info.epoch, latest=latest)
            raise EndpointRejectedError(f"stale: epoch {info.epoch} behind {latest}")
        self._latest_epoch = info.epoch
        return info

    async def _check_block_time(self, endpoint: Endpoint, slot: int) -> None:
        """Reject an endpoint whose newest block is dated far from our clock, either way."""
        request = {"jsonrpc": "2.0", "id": 1, "method": "getBlockTime", "params": [slot]}
        block_time = value_of(
            await self._pool.post_json(endpoint, RPC_PATH, request, parse_block_time)
        )
        if block_time.seconds is None:
            # A skipped slot has no time; the epoch check above still guards freshness.
            self._pool.record_clock_skew(endpoint, None)
            return
        self._check_clock(endpoint, block_time.seconds, subject="block")
