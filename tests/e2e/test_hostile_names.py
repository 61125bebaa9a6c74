"""Hostile validator names end to end: simulator → daemon → /metrics, MQTT, logs, `jails`.

Validators name themselves. Here they choose control characters, escape sequences, a forged
log line, 10 kB, bidi overrides, zero-width characters, MQTT wildcards and Prometheus
exposition syntax, and the entity holding more than 2/3 is named like that too. Through the
real daemon, a real Mosquitto and the real CLI: the exposition stays valid with short, clean
labels; MQTT topics stay under the prefix; every log record is one JSON line; the jail table
stays aligned.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import unicodedata
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from quorumwatch import cli
from quorumwatch.cli.jails import EVENT_COLUMNS, MAX_CELL_WIDTH, SUMMARY_COLUMNS
from quorumwatch.labels import MAX_LABEL_LENGTH, safe_text
from quorumwatch.logs import MAX_VALUE_LENGTH, configure_logging
from quorumwatch.simulator import parse_scenario, start_simulator
from tests.builders import address, daemon_settings, exposition, report, validator
from tests.services import BrokerFactory, Subscriber, running_daemon, subscribed
from tests.tools import (
    promtool_findings,
    require_binary,
    split_columns,
    width,
)

CHAIN = "hyperliquid"
PREFIX = "qwhostile/e2e"
FORGED_LINE = '\n{"level":"critical","event":"forged","timestamp":"2026-01-01T00:00:00Z"}\n'


# A fixed corpus: the test is deterministic. Descriptions are served too (the row carries
# them), reversed so that they differ from the names.
HOSTILE_NAMES = {
    address(1): "nul\x00 esc\x1b[31mred\x1b[0m bell\x07 cr\r lf\n del\x7f c1\x85\x9b end",
    address(2): "innocent" + FORGED_LINE,
    address(3): "L" * 10_000,
    address(4): "\u202eevil\u202c \u2066iso\u2067late\u2068first\u2069 \u200fmark\u061c",
    address(5): "zero\u200bwidth\u200c\u200djoin\ufeffbom\u2060wj\u00adshy",
    address(6): 'plus+ hash# slash/ quote" back\\ braces{} dollar$SYS',
    address(7): 'prom"} 1\n# HELP fake x\nfake_metric{a="b"} 2 \\n \\\\ "',
    address(8): "验证者" * 40 + "e\u0301" * 10,
    address(9): "\u2028line sep\u2029para sep\ttab\vvt\fff \x1c\x1d\x1e\x1f",
    address(10): "+/#",
    address(11): "lone \ud800 surrogate",  # sent as the JSON escape: not storable as UTF-8
}
# Three validators of one configured entity hold 90% of the stake: EntityCanControl fires.
ENTITY = 'Big\u202e Op\x1b[2J\n{"level":"critical"} +/# "}\\' + "\u200b" * 5
ENTITY_VALIDATORS = [address(1), address(4), address(6)]
JAILED = [address(2), address(3), address(7)]  # all three jailed, then address(2) unjailed
UNJAILED = address(2)
HEALTHY_POLLS = 3
JAILED_POLLS = 4


def hostile_scenario() -> dict[str, Any]:
    validators = [
        {
            "validator": validator_address,
            "name": name,
            "description": name[::-1],
            "stake": 3000 if validator_address in ENTITY_VALIDATORS else 100,
        }
        for validator_address, name in HOSTILE_NAMES.items()
    ]
    return {
        "name": "hostile-names",
        "steps": [
            {"repeat": HEALTHY_POLLS, "validators": validators},
            {"repeat": JAILED_POLLS, "changes": {v: {"jailed": True} for v in JAILED}},
            {"changes": {UNJAILED: {"jailed": False}}},
        ],
    }


UNSAFE_SEPARATORS = ("Zl", "Zp")


def unsafe_characters(text: str) -> set[str]:
    """Characters no label, topic, payload name or log value may carry: control, format
    (bidi, zero width), surrogate, private-use, unassigned, line and paragraph separators."""
    return {
        c
        for c in text
        if unicodedata.category(c)[0] == "C" or unicodedata.category(c) in UNSAFE_SEPARATORS
    }


def strings_in(document: Any) -> Iterator[str]:
    """Every string in a decoded JSON document, keys included."""
    if isinstance(document, str):
        yield document
    elif isinstance(document, dict):
        for key, value in document.items():
            yield key
            yield from strings_in(value)
    elif isinstance(document, list):
        for item in document:
            yield from strings_in(item)


@contextlib.asynccontextmanager
async def hostile_daemon(store: Path, base_url: str, broker_port: int) -> AsyncIterator[str]:
    """The daemon polling `base_url`, publishing to the broker; yields the /metrics URL."""
    configured = daemon_settings(
        store,
        mqtt={
            "enabled": True,
            "host": "127.0.0.1",
            "port": broker_port,
            "topic_prefix": PREFIX,
            "client_id": "qw-hostile",
        },
        chains=[
            {
                "name": CHAIN,
                "kind": "hyperliquid",
                "poll_interval_seconds": 0.05,
                "endpoints": [{"name": "sim", "url": base_url, "timeout_seconds": 2}],
                "entities": [{"name": ENTITY, "validators": ENTITY_VALIDATORS}],
            }
        ],
    )
    async with running_daemon(configured, stop_within=15) as url:
        yield url


def alert_events(subscriber: Subscriber) -> list[dict[str, Any]]:
    return [m.document for m in subscriber.messages if "/alerts/" in m.topic]


def all_alerts_seen(subscriber: Subscriber) -> bool:
    """EntityCanControl fired, each jailed validator's ValidatorJailed fired, and the
    unjailed one's resolved (so the store holds a whole jail)."""
    seen = {
        (e["alert"], e["status"], e["labels"].get("validator")) for e in alert_events(subscriber)
    }
    wanted = {("EntityCanControl", "firing", None), ("ValidatorJailed", "resolved", UNJAILED)}
    wanted |= {("ValidatorJailed", "firing", v) for v in JAILED}
    return wanted <= seen


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No QUORUMWATCH_* variable of the caller's shell reaches the settings."""
    for key in [k for k in os.environ if k.startswith("QUORUMWATCH_")]:
        monkeypatch.delenv(key)


async def test_hostile_names_stay_contained_in_metrics_mqtt_logs_and_jail_tables(
    tmp_path: Path,
    broker_factory: BrokerFactory,
    capsys: pytest.CaptureFixture[str],
    clean_environment: None,
) -> None:
    """Hostile names leave /metrics valid, MQTT topics safe, logs one line, jail tables aligned."""
    require_binary("promtool")  # checked before anything starts
    broker = broker_factory()
    store = tmp_path / "qw.db"
    configure_logging("debug", json_lines=True)
    async with (
        await start_simulator(parse_scenario(hostile_scenario())) as simulator,
        subscribed(broker.port, "#") as subscriber,
        hostile_daemon(store, simulator.base_url, broker.port) as metrics_url,
        aiohttp.ClientSession() as session,
    ):
        await subscriber.wait(all_alerts_seen, "the hostile alerts over MQTT")
        async with session.get(metrics_url) as response:
            assert response.status == 200
            exposition = await response.text()
    logs = capsys.readouterr().err

    check_exposition(exposition)
    check_mqtt(subscriber)
    check_logs(logs)
    check_jail_tables(tmp_path, store, capsys)


def check_exposition(text: str) -> None:
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    for sample in samples:
        for label, value in sample.labels.items():
            assert len(value) <= MAX_LABEL_LENGTH, (sample.name, label, value)
            assert not unsafe_characters(value), (sample.name, label, value)
    jailed = {
        (s.labels["validator"], s.labels["name"], s.labels["entity"])
        for s in samples
        if s.name == "quorumwatch_validator_jailed" and s.value == 1
    }
    assert jailed == {(v, safe_text(HOSTILE_NAMES[v]), v) for v in JAILED if v != UNJAILED}
    entities = {
        s.labels["entity"]
        for s in samples
        if s.name == "quorumwatch_entity_can_control" and s.value == 1
    }
    assert entities == {safe_text(ENTITY)}
    assert not any(s.name.startswith("fake") for s in samples)  # no injected series
    assert promtool_findings(text) == set()


_TOPIC_LEVEL = re.compile(r"[a-z0-9_.-]{1,64}")


def check_mqtt(subscriber: Subscriber) -> None:
    assert subscriber.messages
    for message in subscriber.messages:
        assert message.topic.startswith(PREFIX + "/"), message.topic
        levels = message.topic.removeprefix(PREFIX + "/").split("/")
        assert all(_TOPIC_LEVEL.fullmatch(level) for level in levels), message.topic
        for text in strings_in(message.document):
            assert not unsafe_characters(text), (message.topic, text)
    events = alert_events(subscriber)
    for event in events:
        if event["alert"] == "ValidatorJailed":
            jailed = event["labels"]["validator"]
            name = safe_text(HOSTILE_NAMES[jailed])
            assert event["description"] == f"Validator {name} ({jailed}) is jailed."
        if event["alert"] == "EntityCanControl":
            assert event["labels"]["entity"] == safe_text(ENTITY)
            assert event["description"].startswith(f"Entity {safe_text(ENTITY)} holds ")
    firing = [m for m in subscriber.messages if m.topic == f"{PREFIX}/{CHAIN}/firing"]
    assert firing
    assert {s["labels"].get("entity") for s in firing[-1].document} >= {safe_text(ENTITY)}


def check_logs(text: str) -> None:
    records = [json.loads(line) for line in text.splitlines()]
    assert records
    assert all(isinstance(record, dict) for record in records)
    for record in records:
        for value in strings_in(record):
            assert not unsafe_characters(value), value
            assert len(value) <= MAX_VALUE_LENGTH
    assert not [r for r in records if r.get("event") == "forged"]
    assert {r["level"] for r in records} <= {"debug", "info", "warning", "error"}
    logged = {
        (r["validator"], r["name"], r["kind"])
        for r in records
        if r.get("event") == "validator event"
    }
    expected = {(v, safe_text(HOSTILE_NAMES[v], MAX_VALUE_LENGTH), "jailed") for v in JAILED}
    expected.add((UNJAILED, safe_text(HOSTILE_NAMES[UNJAILED], MAX_VALUE_LENGTH), "unjailed"))
    assert logged == expected


def check_jail_tables(tmp_path: Path, store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "jails.toml"
    config.write_text(
        f"[storage]\npath = {json.dumps(str(store))}\n"
        f'[[chains]]\nname = "{CHAIN}"\nkind = "hyperliquid"\n'
        '[[chains.endpoints]]\nname = "sim"\nurl = "http://127.0.0.1:9"\n'
    )
    for columns, extra in ((SUMMARY_COLUMNS, []), (EVENT_COLUMNS, ["--events"])):
        assert cli.main(["jails", "--config", str(config), "--since", "all", *extra]) == 0
        table = capsys.readouterr().out.rstrip("\n")
        cells = split_columns(table, columns)  # asserts every column starts at one offset
        rows = cells[1:]
        assert len(table.split("\n")) == len(rows) + 1
        by_validator = columns.index("validator")
        by_name = columns.index("name")
        if columns == SUMMARY_COLUMNS:
            assert sorted(row[by_validator] for row in rows) == sorted(JAILED)
        else:
            kinds = sorted((row[by_validator], row[columns.index("event")]) for row in rows)
            assert kinds == sorted([*((v, "jailed") for v in JAILED), (UNJAILED, "unjailed")])
        for row in rows:
            cell = row[by_name]
            assert width(cell) <= MAX_CELL_WIDTH
            assert not unsafe_characters(cell), cell
            assert safe_text(HOSTILE_NAMES[row[by_validator]]).startswith(cell.removesuffix("…"))


# --- any name, at unit level --------------------------------------------------------------------

# Any code point, lone surrogates included (Hypothesis leaves them out by default).
_ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=300)


@settings(max_examples=150, deadline=None)
@given(names=st.lists(_ANY_TEXT, min_size=1, max_size=4), entity=_ANY_TEXT)
def test_any_names_give_a_parseable_exposition_with_capped_clean_labels(
    names: list[str], entity: str
) -> None:
    """Any names give a parseable exposition whose labels are the capped, clean safe_text."""
    validators = [validator(i, 100, name=name) for i, name in enumerate(names, 1)]
    entity_of = {validators[0].address: entity} if entity else {}
    text = exposition(report(validators, entity_of=entity_of))
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    for sample in samples:
        for value in sample.labels.values():
            assert len(value) <= MAX_LABEL_LENGTH
            assert not unsafe_characters(value), value
    exported = {
        s.labels["validator"]: s.labels["name"]
        for s in samples
        if s.name == "quorumwatch_validator_jailed"
    }
    assert exported == {v.address: safe_text(v.name) for v in validators}
