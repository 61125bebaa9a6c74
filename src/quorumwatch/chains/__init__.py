"""Chain sources: one package per kind; `make_source` picks the kind's source."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quorumwatch.chains.base import Source
    from quorumwatch.config import ChainSettings
    from quorumwatch.endpoints import EndpointPool


def make_source(
    settings: ChainSettings, pool: EndpointPool, clock: Callable[[], float] = time.time
) -> Source:
    """The source for `settings.kind`, polling through `pool`."""
    if settings.kind == "hyperliquid":
        from quorumwatch.chains.hyperliquid.source import HyperliquidSource

        return HyperliquidSource(
            pool,
            max_clock_skew_seconds=settings.max_clock_skew_seconds,
            clock=clock,
            compare=settings.compare_endpoints,
        )
    if settings.kind == "solana":
        from quorumwatch.chains.solana.source import SolanaSource

        return SolanaSource(pool, settings, clock=clock)
    if settings.kind == "cosmos":
        from quorumwatch.chains.cosmos.source import CosmosSource

        return CosmosSource(pool, settings, clock=clock)
    from quorumwatch.chains.generic.source import GenericSource

    return GenericSource(pool, settings, clock=clock)
