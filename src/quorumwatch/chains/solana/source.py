"""Solana source: the vote-account set over JSON-RPC, through the endpoint pool.

Endpoints are tried in configured order. On each, `getEpochInfo` comes first: a cheap
freshness probe, so the large `getVoteAccounts` answer is only fetched from a node that
answers and is not behind an epoch already seen; a failure of either fails the endpoint
and the next one is tried.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from quorumwatch.chains.base import FetchResult
from quorumwatch.chains.solana.parse import TOKEN_DECIMALS, parse_epoch_info, parse_vote_accounts
from quorumwatch.endpoints import Answer, Endpoint, EndpointPool, Outcome
from quorumwatch.models import ValidatorSet

if TYPE_CHECKING:
    from quorumwatch.config import ChainSettings

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


class SolanaSource:
    """The vote-account set from the first endpoint that answers both requests validly."""

    def __init__(
        self,
        pool: EndpointPool,
        settings: ChainSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._clock = clock
        self._latest_epoch: int | None = None  # the highest epoch any endpoint reported

    async def fetch(self) -> FetchResult:
        candidates = self._pool.available()
        failures = [
            f"{e.name}: waiting out Retry-After"
            for e in self._pool.endpoints
            if e not in candidates
        ]
        rejections: list[str] = []
        for endpoint in candidates:
            problem = await self._probe(endpoint, rejections)
            if problem:
                failures.append(f"{endpoint.name}: {problem}")
                continue
            answer = await self._pool.post_json(
                endpoint, RPC_PATH, VOTE_ACCOUNTS_REQUEST, parse_vote_accounts
            )
            if answer.outcome is Outcome.OK and answer.value is not None:
                return FetchResult(
                    ValidatorSet(
                        validators=answer.value,
                        token_decimals=TOKEN_DECIMALS,
                        endpoint=endpoint.name,
                        fetched_at=self._clock(),
                    ),
                    tuple(failures),
                    tuple(rejections),
                )
            failures.append(f"{endpoint.name}: {_describe(answer)}")
            if answer.data_error is not None:
                rejections.append(answer.data_error.reason)
        return FetchResult(None, tuple(failures), tuple(rejections))

    async def _probe(self, endpoint: Endpoint, rejections: list[str]) -> str:
        """Empty when the endpoint reports a current epoch, else what is wrong."""
        answer = await self._pool.post_json(
            endpoint, RPC_PATH, EPOCH_INFO_REQUEST, parse_epoch_info
        )
        if answer.outcome is not Outcome.OK or answer.value is None:
            if answer.data_error is not None:
                rejections.append(answer.data_error.reason)
            return _describe(answer)
        epoch = answer.value
        latest = self._latest_epoch
        if latest is not None and epoch < latest:
            endpoint.up = False
            log.warning("endpoint behind", endpoint=endpoint.name, epoch=epoch, latest=latest)
            return f"stale: epoch {epoch} behind {latest}"
        self._latest_epoch = epoch
        return ""


def _describe(answer: Answer[Any]) -> str:
    detail = f" ({answer.error})" if answer.error else ""
    return f"{answer.outcome}{detail}"
