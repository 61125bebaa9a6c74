"""Chain kinds: each kind's facts in one registry, `KINDS`, that config, CLI and factory read.

A kind's source class and simulator are named by import path and imported on first use:
reading the registry (to validate a configuration, say) imports neither aiohttp nor a source.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, cast

from quorumwatch.chains.ethereum.labels import is_key

if TYPE_CHECKING:
    from quorumwatch.chains.base import ChainSource
    from quorumwatch.config import ChainSettings
    from quorumwatch.simulator.serving import LoopbackServer

KindName = Literal["hyperliquid", "cosmos", "solana", "generic", "ethereum", "bittensor"]

_MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of chain API: what its configuration takes, and what serves and reads it."""

    name: KindName
    # The endpoint URL keys its endpoints take, and no other: `url`, or `lcd` and `rpc`.
    url_roles: tuple[str, ...]
    # The answer size limit when max_response_bytes is not set: a few times the largest real
    # answer, so a growing set fits while a runaway or hostile answer is cut off before it
    # fills memory.
    max_response_bytes: int
    # Display decimals of a stake: fixed, or read from the chain's settings.
    token_decimals: int | Callable[[ChainSettings], int]
    # "module:ClassName" of its ChainSource.
    source: str
    # "module:function" that starts its loopback simulator.
    simulator: str
    # The [chains.<section>] table it requires, and that no other kind takes.
    section: str | None = None
    # The section may be left out: its defaults then apply.
    section_optional: bool = False
    # What `quorumwatch simulate --kind <name>` prints ({url}, {scenario}); None: the
    # simulator needs more than `simulate` can give, and the kind is not offered there.
    simulate_banner: str | None = None
    # Its simulator plays a scenario, passed first (`simulate --scenario`).
    plays_scenarios: bool = False
    # What a `[[chains.entities]]` member must be, where not the kind's validator id: a check
    # and its description for the config error.
    entity_member: tuple[Callable[[str], bool], str] | None = None
    # The URL schemes its endpoints take.
    url_schemes: tuple[str, ...] = ("http", "https")
    # Its validator set authors and finalizes the blocks, so BFT's lines apply to its stake:
    # 1/3 halts the chain, more than 2/3 controls it. A Bittensor subnet's validators author
    # none (Aura authorities do): there the majority over Yuma's kappa is the line that decides.
    validators_author_blocks: bool = True

    def decimals(self, settings: ChainSettings) -> int:
        """Display decimals of the stakes of the chain configured by `settings`."""
        if isinstance(self.token_decimals, int):
            return self.token_decimals
        return self.token_decimals(settings)

    def source_class(self) -> type[ChainSource]:
        return cast("type[ChainSource]", _load(self.source))

    def simulator_starter(self) -> Callable[..., Awaitable[LoopbackServer]]:
        """The simulator's start function: (scenario if it plays them, host=, port=)."""
        return cast("Callable[..., Awaitable[LoopbackServer]]", _load(self.simulator))


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _generic_decimals(settings: ChainSettings) -> int:
    assert settings.generic is not None  # ChainSource checks its section first
    return settings.generic.token_decimals


def _cosmos_decimals(settings: ChainSettings) -> int:
    """Those of the bond denom less those of power_reduction: stakes are in voting power."""
    from quorumwatch.chains.cosmos.source import display_decimals

    assert settings.cosmos is not None  # ChainSource checks its section first
    return display_decimals(settings.cosmos.token_exponent, settings.cosmos.power_reduction)


_ALL = (
    Kind(
        name="hyperliquid",
        url_roles=("url",),
        # validatorSummaries for the ~30-200 validators of the set is well under 1 MiB.
        max_response_bytes=4 * _MIB,
        token_decimals=8,  # base units per HYPE: 10**8
        source="quorumwatch.chains.hyperliquid.source:HyperliquidSource",
        simulator="quorumwatch.simulator.server:start_simulator",
        simulate_banner="simulating {scenario}: POST {url}/info",
        plays_scenarios=True,
    ),
    Kind(
        name="cosmos",
        url_roles=("lcd", "rpc"),  # the REST gateway and CometBFT RPC
        # The answer is read a page at a time, and a page holds at most 100-200 validators.
        max_response_bytes=8 * _MIB,
        token_decimals=_cosmos_decimals,
        source="quorumwatch.chains.cosmos.source:CosmosSource",
        simulator="quorumwatch.simulator.cosmos:start_cosmos_simulator",
        section="cosmos",
        simulate_banner="simulating cosmos: lcd and rpc at {url}",
    ),
    Kind(
        name="solana",
        url_roles=("url",),
        # getVoteAccounts is one answer for the whole cluster: on mainnet ~1,500 accounts,
        # each with its epochCredits history, make a few MB.
        max_response_bytes=32 * _MIB,
        token_decimals=9,  # lamports per SOL: 10**9
        source="quorumwatch.chains.solana.source:SolanaSource",
        simulator="quorumwatch.simulator.solana:start_solana_simulator",
        simulate_banner="simulating solana: JSON-RPC at {url}",
    ),
    Kind(
        name="generic",
        url_roles=("url",),
        # An unknown API: the generous limit every kind had before.
        max_response_bytes=16 * _MIB,
        token_decimals=_generic_decimals,  # [chains.generic] token_decimals
        source="quorumwatch.chains.generic.source:GenericSource",
        # Serves a document it is given: `simulate` has none to give.
        simulator="quorumwatch.simulator.generic:start_generic_simulator",
        section="generic",
    ),
    Kind(
        name="ethereum",
        url_roles=("url",),  # a beacon node's base URL
        # The SSZ BeaconState is about 2.7 MB plus 139 B per validator (~160 MB at 1.1M); the
        # JSON validators answer about 500 B per validator (~550 MB at 1.1M): room for both.
        max_response_bytes=1024 * _MIB,
        token_decimals=9,  # gwei per ETH: 10**9
        source="quorumwatch.chains.ethereum.source:EthereumSource",
        simulator="quorumwatch.simulator.ethereum:start_ethereum_simulator",
        section="ethereum",
        section_optional=True,
        entity_member=(is_key, "a 0x withdrawal address (20 bytes) or public key (48 bytes)"),
        simulate_banner="simulating ethereum: beacon API at {url}",
    ),
    Kind(
        name="bittensor",
        url_roles=("url",),  # a subtensor node's WebSocket JSON-RPC
        url_schemes=("ws", "wss"),
        # The V15 metadata is ~300 KB; a full 256-UID selective metagraph of the few fields
        # read is ~40 KB: room for runtimes to grow, while a runaway answer is cut off.
        max_response_bytes=16 * _MIB,
        token_decimals=9,  # rao per TAO (and per alpha): 10**9
        source="quorumwatch.chains.bittensor.source:BittensorSource",
        simulator="quorumwatch.simulator.bittensor:start_bittensor_simulator",
        section="bittensor",
        section_optional=True,  # netuids = "all" by default
        simulate_banner="simulating bittensor: WebSocket JSON-RPC at {url}",
        validators_author_blocks=False,
    ),
)

# In this order wherever kinds are listed: config errors, `simulate --kind` choices.
KINDS: Mapping[str, Kind] = MappingProxyType({kind.name: kind for kind in _ALL})
