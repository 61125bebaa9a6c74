"""Ethereum end to end: the beacon-node simulator (2,000 validators, shipped label files) → the
daemon's /metrics, alert state and `run --once`, over SSZ and JSON, checked against coefficients
worked out by hand and recomputed from the simulator's plain-Python sums."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterable, Mapping
from fractions import Fraction
from functools import cache
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from quorumwatch.config import Settings
from quorumwatch.simulator.ethereum import (
    DEFAULT_SEED,
    DEFAULT_VALIDATORS,
    RunningEthereumSimulator,
    shipped_label_files,
    start_ethereum_simulator,
)
from quorumwatch.simulator.ethereum_set import (
    ACTIVE_STATUSES,
    BASE_EPOCH,
    STATUSES,
    TIMELY_TARGET,
    ExpectedStakes,
    Registry,
    build_set,
    expected_stakes,
    read_csv,
    records,
    status_of,
    statuses,
)
from quorumwatch.store import Store
from quorumwatch.store.alerts import firing
from tests.builders import daemon_settings
from tests.services import Samples, eventually, metric, running_daemon, scrape

CHAIN = "ethereum"
ETH = 10**9  # gwei
THRESHOLDS = ("halt", "majority", "control")

# The Nakamoto coefficients of the default set (2,000 validators, seed 1, the shipped label
# files) at its base epoch, worked out by hand once and written here as literals. Stake is the
# effective balance of the 1,867 active validators, all whole ETH: T = 70,687 ETH, so halt
# needs S ≥ T/3 = 23,562⅓, majority S > T/2 = 35,343½, control S > 2T/3 = 47,124⅔ ETH.
# - validator: 22 compounding validators hold 11,649 ETH (2,041 the largest), the other 1,845
#   hold 32 ETH (two slashed ones 31). Halt: 11,649 + 373·32 = 23,585 ≥ 23,562⅓ (372 give
#   23,553): 22 + 373 = 395. Majority: 11,649 + 741·32 = 35,361 (740: 35,329): 763. Control:
#   11,649 + 1,109·32 = 47,137 (1,108: 47,105): 1,131.
# - entity: Lido 19,424 (its vault, built in) + Arbor Custody 6,937 = 26,361 ≥ 23,562⅓, Lido
#   alone is not: 2. The next are Beacon Vault 2,527, Cobalt Exchange 2,163, Atlas Prime 1,926,
#   Harbor Exchange 1,423, Indigo Custody 1,422: six hold 34,400, seven 35,822 > 35,343½: 7.
#   Running on, nineteen hold 46,941 and twenty 47,485 > 47,124⅔: 20.
# - operator: the operators file splits Lido over eight node operators, so Arbor Custody 6,937
#   leads, then Aurora Nodes 3,136, Coral Validators 2,944, Bastion Infra 2,944, Evergreen Nodes
#   2,528, Beacon Vault 2,527, Drift Labs 2,240: seven hold 23,256 < 23,562⅓, with Cobalt
#   Exchange 2,163 eight hold 25,419: 8. Thirteen hold 34,400, fourteen 35,822: 14;
#   twenty-six 46,941, twenty-seven 47,485: 27.
# (Grouped by withdrawal address instead, which the daemon does not export, halt would be 3:
# Lido's vault 19,424 + 3,513 + 1,888 = 24,825.) `test_literals_match_the_simulated_set`
# recomputes all nine from `expected_stakes` with exact integers.
NAKAMOTO: Mapping[str, Mapping[str, int]] = {
    "validator": {"halt": 395, "majority": 763, "control": 1131},
    "entity": {"halt": 2, "majority": 7, "control": 20},
    "operator": {"halt": 8, "majority": 14, "control": 27},
}
TOTAL = 70_687 * ETH
LIDO = 19_424 * ETH
MISSING_TARGET = 1_854 * ETH  # 2 slashed and 56 delinquent validators: no target vote
# The 2,000 by the daemon's statuses: 113 have exited (not in the set); 20 are pending.
SSZ_COUNTS = {"online": 1809, "delinquent": 56, "jailed": 2, "inactive": 20}
# JSON has no participation flags: every active, unslashed validator counts as online.
JSON_COUNTS = {"online": 1865, "delinquent": 0, "jailed": 2, "inactive": 20}


def _nakamoto(stakes: Iterable[int], total: int) -> dict[str, int]:
    """The fewest largest holders meeting each threshold, by a plain sorted loop on integers."""
    found: dict[str, int] = {}
    running = 0
    for count, stake in enumerate(sorted(stakes, reverse=True), start=1):
        running += stake
        reached = {
            "halt": 3 * running >= total,
            "majority": 2 * running > total,
            "control": 3 * running > 2 * total,
        }
        for threshold, met in reached.items():
            if met:
                found.setdefault(threshold, count)
    return found


def _label_paths() -> tuple[Path, Path]:
    labels, operators = shipped_label_files()
    return Path(str(labels)), Path(str(operators))


@cache
def _expected() -> tuple[ExpectedStakes, list[int], int]:
    """The default set's sums per address, entity and operator, its active validators'
    effective balances, and how many of those missed the target vote (slashed included)."""
    built = build_set(DEFAULT_VALIDATORS, DEFAULT_SEED)
    labels, operators = (read_csv(path) for path in _label_paths())
    rows = records(built.registry)
    active = [r for r in rows if status_of(r, built.base_epoch) in ACTIVE_STATUSES]
    missed = sum(1 for r in active if not r.previous_epoch_participation & TIMELY_TARGET)
    facts = expected_stakes(rows, built.base_epoch, labels, operators)
    return facts, [r.effective_balance for r in active], missed


def test_literals_match_the_simulated_set() -> None:
    """The hand-computed coefficients, total, Lido's stake, missing stake and status counts
    equal an exact integer recomputation from the simulator's `expected_stakes`."""
    facts, per_validator, missed = _expected()
    assert facts.total == sum(per_validator) == TOTAL
    assert len(per_validator) == 1867
    assert facts.by_entity["Lido"] == LIDO == max(facts.by_entity.values())
    assert facts.missing_target == MISSING_TARGET
    recomputed = {
        "validator": _nakamoto(per_validator, facts.total),
        "entity": _nakamoto(facts.by_entity.values(), facts.total),
        "operator": _nakamoto(facts.by_operator.values(), facts.total),
    }
    assert recomputed == NAKAMOTO
    assert _nakamoto(facts.by_address.values(), facts.total)["halt"] == 3
    counts = facts.status_counts
    assert counts["active_slashed"] == SSZ_COUNTS["jailed"] == JSON_COUNTS["jailed"]
    pending = counts["pending_initialized"] + counts["pending_queued"]
    assert pending == SSZ_COUNTS["inactive"] == JSON_COUNTS["inactive"]
    assert missed - counts["active_slashed"] == SSZ_COUNTS["delinquent"]
    unslashed = counts["active_ongoing"] + counts["active_exiting"]
    assert unslashed == SSZ_COUNTS["online"] + SSZ_COUNTS["delinquent"] == JSON_COUNTS["online"]


def _settings(
    store: Path, sim: RunningEthereumSimulator, encoding: str, state: str = "head"
) -> Settings:
    """The daemon watching the simulator once (the next poll would be a minute later)."""
    labels, operators = _label_paths()
    return daemon_settings(
        store,
        chains=[
            {
                "name": CHAIN,
                "kind": "ethereum",
                "poll_interval_seconds": 60,
                "endpoints": [{"name": "beacon", "url": sim.base_url, "timeout_seconds": 10}],
                "ethereum": {
                    "state": state,
                    "encoding": encoding,
                    "labels_file": str(labels),
                    "operators_file": str(operators),
                },
            }
        ],
    )


async def _first_poll(session: aiohttp.ClientSession, url: str) -> Samples:
    """/metrics once the daemon's first poll has published the chain up."""
    seen: list[Samples] = []

    async def up() -> bool:
        seen.append(await scrape(session, url))
        return metric(seen[-1], "quorumwatch_chain_up", chain=CHAIN) == 1

    await eventually(up, "the ethereum chain up on /metrics")
    return seen[-1]


def _coefficients(samples: Samples) -> dict[str, dict[str, float | None]]:
    return {
        grouping: {
            threshold: metric(
                samples,
                "quorumwatch_nakamoto_coefficient",
                chain=CHAIN,
                grouping=grouping,
                threshold=threshold,
            )
            for threshold in THRESHOLDS
        }
        for grouping in NAKAMOTO
    }


def _counts(samples: Samples) -> dict[str, float | None]:
    return {
        status: metric(samples, "quorumwatch_validators", chain=CHAIN, status=status)
        for status in SSZ_COUNTS
    }


def _has_margin(samples: Samples) -> bool:
    return any(
        name == "quorumwatch_liveness_margin_ratio" and ("chain", CHAIN) in labels
        for name, labels in samples
    )


def _check_set(samples: Samples) -> None:
    """What both encodings agree on: coefficients, Lido's share, finality lag."""
    facts, per_validator, _ = _expected()
    assert _coefficients(samples) == NAKAMOTO
    assert _coefficients(samples) == {
        "validator": _nakamoto(per_validator, facts.total),
        "entity": _nakamoto(facts.by_entity.values(), facts.total),
        "operator": _nakamoto(facts.by_operator.values(), facts.total),
    }
    share = Fraction(LIDO, TOTAL)
    lido = metric(samples, "quorumwatch_entity_stake_ratio", chain=CHAIN, entity="Lido")
    largest = metric(samples, "quorumwatch_largest_stake_ratio", chain=CHAIN, grouping="entity")
    assert lido == pytest.approx(float(share), rel=0, abs=1e-9)
    assert largest == lido  # Lido is the largest entity
    assert metric(samples, "quorumwatch_finality_lag_epochs", chain=CHAIN) == 2


@pytest.mark.parametrize("encoding", ["ssz", "json"])
async def test_daemon_exports_hand_computed_coefficients(tmp_path: Path, encoding: str) -> None:
    """Over either encoding /metrics gives the literal (and recomputed) coefficients per
    grouping and threshold, Lido's share, finality lag 2 and the status counts; SSZ has
    delinquents and a liveness margin, JSON neither."""
    async with (
        await start_ethereum_simulator() as sim,
        running_daemon(_settings(tmp_path / "qw.db", sim, encoding)) as url,
        aiohttp.ClientSession() as session,
    ):
        samples = await _first_poll(session, url)
    _check_set(samples)
    paths = {request.path for request in sim.requests}
    ssz_path = "/eth/v2/debug/beacon/states/head"
    json_path = "/eth/v1/beacon/states/head/validators"
    if encoding == "ssz":
        assert (ssz_path in paths, json_path in paths) == (True, False)
        assert _counts(samples) == SSZ_COUNTS
        margin = metric(samples, "quorumwatch_liveness_margin_ratio", chain=CHAIN)
        exact = Fraction(3 * (TOTAL - MISSING_TARGET) - 2 * TOTAL, 3 * TOTAL)
        assert margin == pytest.approx(float(exact), rel=0, abs=1e-9)
    else:
        assert (ssz_path in paths, json_path in paths) == (False, True)
        assert _counts(samples) == JSON_COUNTS
        assert not _has_margin(samples)  # who attested is unknown: no margin, not a guess


async def test_finality_stalled_fires_finality_lagging(tmp_path: Path) -> None:
    """With finality 64 epochs behind, the lag metric shows 64 and FinalityLagging fires. The
    lightest faithful route: the daemon counts the committed event on /metrics
    (`quorumwatch_events_total`) and its store holds the firing alert, which is what MQTT and
    Alertmanager would be handed (their delivery is tested in test_alert_delivery.py)."""
    store = tmp_path / "qw.db"
    async with (
        await start_ethereum_simulator(preset="finality-stalled") as sim,
        running_daemon(_settings(store, sim, "ssz")) as url,
        aiohttp.ClientSession() as session,
    ):
        seen: list[Samples] = []

        async def fired() -> bool:
            seen.append(await scrape(session, url))
            labels = {"alert": "FinalityLagging", "status": "firing"}
            return metric(seen[-1], "quorumwatch_events_total", **labels) == 1

        await eventually(fired, "a FinalityLagging firing event on /metrics")
    assert metric(seen[-1], "quorumwatch_finality_lag_epochs", chain=CHAIN) == 64
    with Store(store, read_only=True) as reader:
        (lagging,) = [s for s in firing(reader, CHAIN) if s.alert == "FinalityLagging"]
    assert (lagging.severity, lagging.value, lagging.threshold) == ("critical", 64.0, 5.0)


async def test_once_json_reports_every_grouping(tmp_path: Path) -> None:
    """`run --once --format json` exits 1 (one endpoint: a single point of failure, nothing
    worse) with the literal coefficients for validator, entity and operator, Lido largest."""
    labels, operators = _label_paths()
    async with await start_ethereum_simulator() as sim:
        config = tmp_path / "quorumwatch.toml"
        config.write_text(
            f'[[chains]]\nname = "{CHAIN}"\nkind = "ethereum"\n'
            f'[[chains.endpoints]]\nname = "beacon"\nurl = "{sim.base_url}"\n'
            "timeout_seconds = 10\n"
            f"[chains.ethereum]\nlabels_file = {json.dumps(str(labels))}\n"
            f"operators_file = {json.dumps(str(operators))}\n"
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "quorumwatch", "run", "--once", "--config", str(config),
            "--format", "json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 1, stderr.decode()
    document = json.loads(stdout)
    assert document["status"] == "WARNING"
    (chain,) = document["chains"]
    assert chain["reasons"] == ["only 1 endpoint healthy: a single point of failure"]
    assert chain["nakamoto"] == NAKAMOTO
    assert chain["largest_entity"]["name"] == "Lido"
    assert chain["largest_entity"]["stake_ratio"] == pytest.approx(LIDO / TOTAL, rel=0, abs=1e-9)
    assert chain["validators"] == SSZ_COUNTS  # auto read the SSZ state
    assert chain["liveness_margin_ratio"] is not None


async def test_auto_falls_back_to_json_when_ssz_is_refused(tmp_path: Path) -> None:
    """With encoding auto and a node refusing SSZ (406), the chain is up from the JSON
    validators: same coefficients, no delinquents, no liveness margin."""
    async with (
        await start_ethereum_simulator(preset="json-only") as sim,
        running_daemon(_settings(tmp_path / "qw.db", sim, "auto")) as url,
        aiohttp.ClientSession() as session,
    ):
        samples = await _first_poll(session, url)
    _check_set(samples)
    asked = [(r.path, r.accept) for r in sim.requests if "/states/head" in r.path]
    assert asked[-2:] == [
        ("/eth/v2/debug/beacon/states/head", "application/octet-stream"),
        ("/eth/v1/beacon/states/head/validators", "application/json"),
    ]
    assert _counts(samples) == JSON_COUNTS
    assert not _has_margin(samples)
    assert metric(samples, "quorumwatch_endpoint_up", chain=CHAIN, endpoint="beacon") == 1


@pytest.mark.parametrize("encoding", ["ssz", "json"])
async def test_finalized_state_is_read_at_its_own_epoch(tmp_path: Path, encoding: str) -> None:
    """With state = "finalized" (two epochs behind the head), a validator activated three
    epochs back is active in that state over either encoding: the JSON validators are
    classified at the finalized state's epoch, not at the older checkpoint that state holds."""
    async with await start_ethereum_simulator() as sim:
        codes = statuses(sim.registry, BASE_EPOCH)
        online = (sim.registry.previous_epoch_participation & TIMELY_TARGET) != 0
        ongoing = np.flatnonzero((codes == STATUSES.index("active_ongoing")) & online)
        late = int(ongoing[0])

        def activate_late(registry: Registry) -> None:
            registry.validators["activation_epoch"][late] = BASE_EPOCH - 3

        sim.update(activate_late)
        settings = _settings(tmp_path / "qw.db", sim, encoding, state="finalized")
        async with running_daemon(settings) as url, aiohttp.ClientSession() as session:
            samples = await _first_poll(session, url)
    assert _coefficients(samples) == NAKAMOTO
    assert _counts(samples) == (SSZ_COUNTS if encoding == "ssz" else JSON_COUNTS)
    assert metric(samples, "quorumwatch_finality_lag_epochs", chain=CHAIN) == 2
