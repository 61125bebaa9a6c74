"""Chain sources: one package per kind; `make_source` builds the kind's source from KINDS."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from quorumwatch.chains.kinds import KINDS

if TYPE_CHECKING:
    from quorumwatch.chains.base import ChainSource
    from quorumwatch.config import ChainSettings
    from quorumwatch.endpoints import EndpointPool


def make_source(
    settings: ChainSettings, pool: EndpointPool, clock: Callable[[], float] = time.time
) -> ChainSource:
    """The source for `settings.kind`, polling through `pool`."""
    return KINDS[settings.kind].source_class()(pool, settings, clock=clock)
