"""What every chain source provides: one complete validator set per fetch, or why not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from quorumwatch.models import ValidatorSet


@dataclass(frozen=True, slots=True)
class FetchResult:
    """A complete validator set, or why none could be had this poll."""

    validator_set: ValidatorSet | None
    failures: tuple[str, ...] = ()
    rejection_reasons: tuple[str, ...] = ()


class Source(Protocol):
    async def fetch(self) -> FetchResult:
        """A complete set through the endpoint pool (failover included); never a partial one."""
        ...
