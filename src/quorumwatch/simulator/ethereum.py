"""A loopback aiohttp server that plays an Ethereum beacon node (Fulu) over a simulated set.

It answers `GET /eth/v1/node/syncing`, `GET /eth/v1/beacon/genesis`,
`GET /eth/v1/beacon/states/{state_id}/finality_checkpoints`,
`GET /eth/v2/debug/beacon/states/{state_id}` (SSZ only: `Accept: application/octet-stream`,
header `Eth-Consensus-Version: fulu`; JSON is refused with 406) and
`GET`/`POST /eth/v1/beacon/states/{state_id}/validators` (status and id filters, at most 64
ids in a GET or HTTP 414), in the shapes of the beacon-APIs: every uint64 a decimal string,
balances in gwei. The set comes from `ethereum_set.build_set`; the head slot follows the clock
(12 s slots from a genesis placed so that the set's base epoch is now). Tests flip `faults`
(node syncing, SSZ refused, finality lag), change validators through `update`, and read
`requests` (the last `REQUEST_LOG_LENGTH`). Named presets (`PRESETS`) set the demo's story.
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import NoReturn

import numpy as np
from aiohttp import web
from aiohttp.typedefs import Handler
from numpy.typing import NDArray

from quorumwatch.simulator.ethereum_json import RenderedRegistry, envelope, render_selection
from quorumwatch.simulator.ethereum_set import (
    SECONDS_PER_SLOT,
    SLOTS_PER_EPOCH,
    Registry,
    SimulatedSet,
    build_set,
    hex0x,
    status_codes,
    statuses,
)
from quorumwatch.simulator.ethereum_state import (
    FORK_NAME,
    MAINNET_GENESIS_VALIDATORS_ROOT,
    SLOTS_PER_HISTORICAL_ROOT,
    Chain,
    RegistryParts,
    checkpoint,
    encode_beacon_state,
    encode_registry,
)
from quorumwatch.simulator.serving import REQUEST_LOG_LENGTH, LoopbackServer

DEFAULT_VALIDATORS = 2_000  # the demo's size; the shipped label files are for this set
DEFAULT_SEED = 1
MAX_GET_IDS = 64
# Up to this many selected validators are rendered directly rather than from cached blocks.
_DIRECT_RENDER_ROWS = 4_096
_SSZ = "application/octet-stream"
_STATE_ROOT = re.compile(r"0x[0-9a-fA-F]{64}")
_PUBKEY = re.compile(r"0x[0-9a-fA-F]{96}")


@dataclass(frozen=True, slots=True)
class EthereumPreset:
    """A named demo story: how the set is drawn and how the node behaves from the start."""

    name: str
    description: str
    offline_fraction: float = 0.03
    finality_lag_epochs: int = 2
    ssz_refused: int | None = None


PRESETS: Mapping[str, EthereumPreset] = {
    preset.name: preset
    for preset in (
        EthereumPreset(
            "mainnet",
            "a mainnet-shaped set: Lido near 28 %, 3 % missing the target vote, "
            "finality 2 epochs behind the head",
        ),
        EthereumPreset(
            "finality-stalled",
            "36 % of the active validators miss the target vote: finality is stuck 64 epochs "
            "behind the head and the offline validators leak",
            offline_fraction=0.36,
            finality_lag_epochs=64,
        ),
        EthereumPreset(
            "json-only",
            "the node refuses SSZ states (406): clients must fall back to the JSON validators",
            ssz_refused=406,
        ),
    )
}


def available_presets() -> list[str]:
    return list(PRESETS)


def shipped_label_files() -> tuple[Traversable, Traversable]:
    """`labels.csv` and `operators.csv` for the default set (DEFAULT_VALIDATORS, DEFAULT_SEED);
    `ethereum_set.write_label_files` writes them for any other size."""
    folder = resources.files("quorumwatch.simulator").joinpath("ethereum_labels")
    return folder.joinpath("labels.csv"), folder.joinpath("operators.csv")


@dataclass(slots=True)
class EthereumFaults:
    """Knobs a test may turn while the simulator runs."""

    syncing: bool = False
    sync_distance: int = 1_000  # slots the head lags the clock while syncing
    ssz_refused: int | None = None  # answer SSZ state requests with this status (404/406/…)
    finality_lag_epochs: int = 2
    execution_optimistic: bool = False


@dataclass(frozen=True, slots=True)
class SimRequest:
    method: str
    path: str
    query: str
    accept: str


@dataclass(frozen=True, slots=True)
class StateView:
    """The state a state_id names: its slot, and whether it is finalized."""

    slot: int
    finalized: bool

    @property
    def epoch(self) -> int:
        return self.slot // SLOTS_PER_EPOCH


@dataclass(slots=True)
class _Caches:
    """What was rendered from one version of the registry."""

    json: RenderedRegistry
    ssz_parts: RegistryParts | None = None
    ssz_body: tuple[Chain, list[bytes]] | None = None
    pubkey_order: NDArray[np.intp] | None = None
    sorted_pubkeys: NDArray[np.bytes_] | None = None


class RunningEthereumSimulator(LoopbackServer):
    """A beacon node on `base_url`; see `start_ethereum_simulator`."""

    def __init__(
        self, built: SimulatedSet, preset: EthereumPreset, clock: Callable[[], float]
    ) -> None:
        super().__init__()
        self.built = built
        self.preset = preset
        self.clock = clock
        self.faults = EthereumFaults(
            finality_lag_epochs=preset.finality_lag_epochs, ssz_refused=preset.ssz_refused
        )
        self.base_slot = built.base_epoch * SLOTS_PER_EPOCH
        self.genesis_time = int(clock()) - self.base_slot * SECONDS_PER_SLOT
        self.requests: deque[SimRequest] = deque(maxlen=REQUEST_LOG_LENGTH)
        self.registry_version = 0
        self._caches = _Caches(RenderedRegistry(built.registry))

    @property
    def registry(self) -> Registry:
        return self.built.registry

    def update(self, mutate: Callable[[Registry], None]) -> None:
        """Change the registry (in place, through `mutate`) and serve the result from the
        next request on: what was rendered from the old one is dropped."""
        mutate(self.built.registry)
        self.registry_version += 1
        self._caches = _Caches(RenderedRegistry(self.built.registry))

    def head_slot(self) -> int:
        wall = max(0, int(self.clock() - self.genesis_time) // SECONDS_PER_SLOT)
        return max(0, wall - self.faults.sync_distance) if self.faults.syncing else wall

    def finalized_epoch(self, epoch: int) -> int:
        return max(0, epoch - self.faults.finality_lag_epochs)

    def chain(self, state: StateView) -> Chain:
        return Chain(self.genesis_time, state.slot, self.finalized_epoch(state.epoch))

    def build(self) -> web.Application:
        app = web.Application(middlewares=[self._log])
        app.router.add_get("/eth/v1/node/syncing", self._syncing)
        app.router.add_get("/eth/v1/beacon/genesis", self._genesis)
        states = "/eth/v1/beacon/states/{state_id}"
        app.router.add_get(states + "/finality_checkpoints", self._finality)
        app.router.add_get(states + "/validators", self._validators_get)
        app.router.add_post(states + "/validators", self._validators_post)
        app.router.add_get("/eth/v2/debug/beacon/states/{state_id}", self._debug_state)
        return app

    @web.middleware
    async def _log(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append(
            SimRequest(
                request.method,
                request.path,
                request.rel_url.raw_query_string,
                request.headers.get("Accept", ""),
            )
        )
        return await handler(request)

    # -- node and chain ------------------------------------------------------------------

    async def _syncing(self, request: web.Request) -> web.Response:
        head = self.head_slot()
        distance = self.faults.sync_distance if self.faults.syncing else 0
        return web.json_response(
            {
                "data": {
                    "head_slot": str(head),
                    "sync_distance": str(distance),
                    "is_syncing": self.faults.syncing,
                    "is_optimistic": self.faults.execution_optimistic,
                    "el_offline": False,
                }
            }
        )

    async def _genesis(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "data": {
                    "genesis_time": str(self.genesis_time),
                    "genesis_validators_root": hex0x(MAINNET_GENESIS_VALIDATORS_ROOT),
                    "genesis_fork_version": "0x00000000",
                }
            }
        )

    def resolve(self, state_id: str) -> StateView:
        """The state `state_id` names, or the API's 400 / 404 answer."""
        head = self.head_slot()
        finalized = self.finalized_epoch(head // SLOTS_PER_EPOCH) * SLOTS_PER_EPOCH
        if state_id == "head":
            slot = head
        elif state_id == "finalized":
            slot = finalized
        elif state_id == "justified":
            slot = min(finalized + SLOTS_PER_EPOCH, head)
        elif state_id.isdecimal() and state_id.isascii():
            slot = int(state_id)
            if slot > head or slot < head - SLOTS_PER_HISTORICAL_ROOT:
                _fail(web.HTTPNotFound, "State not found")
        elif state_id == "genesis" or _STATE_ROOT.fullmatch(state_id):
            _fail(web.HTTPNotFound, "State not found")  # no history is kept
        else:
            _fail(web.HTTPBadRequest, f"Invalid state ID: {state_id}")
        return StateView(slot, slot <= finalized)

    async def _finality(self, request: web.Request) -> web.Response:
        state = self.resolve(request.match_info["state_id"])
        chain = self.chain(state)
        return web.json_response(
            {
                "execution_optimistic": self.faults.execution_optimistic,
                "finalized": state.finalized,
                "data": {
                    "previous_justified": _checkpoint_json(chain.previous_justified.epoch),
                    "current_justified": _checkpoint_json(chain.current_justified.epoch),
                    "finalized": _checkpoint_json(chain.finalized.epoch),
                },
            }
        )

    # -- the SSZ state ---------------------------------------------------------------------

    def ssz_state(self, state: StateView) -> list[bytes]:
        """The SSZ body of `state` as buffers; the registry's part is encoded once per
        registry version, the whole body once per state."""
        caches = self._caches
        chain = self.chain(state)
        if caches.ssz_body is not None and caches.ssz_body[0] == chain:
            return caches.ssz_body[1]
        if caches.ssz_parts is None:
            caches.ssz_parts = encode_registry(self.registry, self.built.base_epoch)
        body = encode_beacon_state(chain, caches.ssz_parts)
        caches.ssz_body = (chain, body)
        return body

    async def _debug_state(self, request: web.Request) -> web.StreamResponse:
        state = self.resolve(request.match_info["state_id"])
        if not _accepts_ssz(request.headers.get("Accept", "")):
            _fail(web.HTTPNotAcceptable, "this node serves beacon states as SSZ only")
        if self.faults.ssz_refused is not None:
            return _error(self.faults.ssz_refused, "SSZ state not available")
        body = self.ssz_state(state)
        response = web.StreamResponse(
            headers={"Content-Type": _SSZ, "Eth-Consensus-Version": FORK_NAME}
        )
        response.content_length = sum(len(part) for part in body)
        await response.prepare(request)
        for part in body:
            await response.write(part)
        await response.write_eof()
        return response

    # -- validators --------------------------------------------------------------------------

    async def _validators_get(self, request: web.Request) -> web.StreamResponse:
        state = self.resolve(request.match_info["state_id"])
        ids = _split(request.query.getall("id", []))
        if len(ids) > MAX_GET_IDS:
            _fail(web.HTTPRequestURITooLong, "Too many validator IDs in request")
        wanted = _split(request.query.getall("status", []))
        return await self._validators(request, state, ids, wanted)

    async def _validators_post(self, request: web.Request) -> web.StreamResponse:
        state = self.resolve(request.match_info["state_id"])
        try:
            document = await request.json()
        except ValueError:
            _fail(web.HTTPBadRequest, "Invalid JSON body")
        if not isinstance(document, dict):
            _fail(web.HTTPBadRequest, "The body must be an object")
        ids = _string_list(document.get("ids"), "ids")
        wanted = _string_list(document.get("statuses"), "statuses")
        return await self._validators(request, state, ids, wanted)

    async def _validators(
        self,
        request: web.Request,
        state: StateView,
        ids: list[str] | None,
        wanted: list[str] | None,
    ) -> web.StreamResponse:
        codes = statuses(self.registry, state.epoch)
        selected = np.ones(len(codes), dtype=bool)
        if wanted:
            try:
                chosen = status_codes(wanted)
            except KeyError as exc:
                _fail(web.HTTPBadRequest, f"Invalid validator status: {exc.args[0]}")
            selected &= np.isin(codes, sorted(chosen))
        if ids:
            selected &= self._id_mask(ids)
        head, tail = envelope(
            execution_optimistic=self.faults.execution_optimistic, finalized=state.finalized
        )
        caches = self._caches
        count = int(selected.sum())
        if count <= _DIRECT_RENDER_ROWS:
            rows = render_selection(self.registry, np.flatnonzero(selected), codes)
            return web.Response(body=head + rows + tail, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(head) + caches.json.size(selected) + len(tail)
        await response.prepare(request)
        await response.write(head)
        for piece in caches.json.pieces(selected, codes):
            await response.write(piece)
        await response.write(tail)
        await response.write_eof()
        return response

    def _id_mask(self, ids: Iterable[str]) -> NDArray[np.bool_]:
        """The validators named by index or 0x pubkey; unknown ones are left out, a malformed
        one is a 400."""
        n = len(self.registry)
        mask = np.zeros(n, dtype=bool)
        keys: list[bytes] = []
        for text in ids:
            if text.isdecimal() and text.isascii():
                if int(text) < n:
                    mask[int(text)] = True
            elif _PUBKEY.fullmatch(text):
                keys.append(bytes.fromhex(text[2:]))
            else:
                _fail(web.HTTPBadRequest, f"Invalid validator ID: {text}")
        if keys:
            mask[self._find_pubkeys(keys)] = True
        return mask

    def _find_pubkeys(self, keys: list[bytes]) -> NDArray[np.intp]:
        caches = self._caches
        if caches.pubkey_order is None or caches.sorted_pubkeys is None:
            pubkeys = np.ascontiguousarray(self.registry.validators["pubkey"]).view("S48")
            caches.pubkey_order = np.argsort(pubkeys.ravel(), kind="stable")
            caches.sorted_pubkeys = pubkeys.ravel()[caches.pubkey_order]
        wanted = np.array(keys, dtype="S48")
        found = np.searchsorted(caches.sorted_pubkeys, wanted)
        found = np.minimum(found, len(caches.sorted_pubkeys) - 1)
        hit = caches.sorted_pubkeys[found] == wanted
        indices: NDArray[np.intp] = caches.pubkey_order[found[hit]]
        return indices


def _accepts_ssz(accept: str) -> bool:
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        if media.lower() != _SSZ:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            return True
    return False


def _split(values: Iterable[str]) -> list[str]:
    """Repeated and comma-separated query values, flattened (empty parts dropped)."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _string_list(value: object, name: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        _fail(web.HTTPBadRequest, f"{name} must be a list of strings")
    return list(value)


def _checkpoint_json(epoch: int) -> dict[str, str]:
    return {"epoch": str(epoch), "root": hex0x(checkpoint(epoch).root)}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"code": status, "message": message}, status=status)


def _fail(kind: type[web.HTTPException], message: str) -> NoReturn:
    status = kind.status_code
    raise kind(
        text=json.dumps({"code": status, "message": message}), content_type="application/json"
    )


async def start_ethereum_simulator(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    validators: int = DEFAULT_VALIDATORS,
    seed: int = DEFAULT_SEED,
    preset: str = "mainnet",
    clock: Callable[[], float] = time.time,
) -> RunningEthereumSimulator:
    """Serve the simulated beacon node on host:port (0 picks a free port) until closed."""
    chosen = PRESETS.get(preset)
    if chosen is None:
        raise ValueError(f"unknown preset {preset!r}: choose from {', '.join(PRESETS)}")
    built = build_set(
        validators,
        seed,
        offline_fraction=chosen.offline_fraction,
        finality_lag_epochs=chosen.finality_lag_epochs,
    )
    simulator = RunningEthereumSimulator(built, chosen, clock)
    await simulator.serve(simulator.build(), host, port)
    return simulator
