"""The operator stack end to end, with real components over loopback.

The daemon polls a simulated chain every 0.25 s. A real Prometheus (the Debian package, with a
temporary data directory) scrapes it every 0.25 s and evaluates the shipped alert rules as often,
and a real Alertmanager routes every alert to a webhook receiver in the test. Each phase
(healthy, breach, recovered) is scraped a few times before the test moves on: it waits for the
scrapes, counted in Prometheus, not for seconds.

Prometheus loads a copy of `deploy/rules/quorumwatch.rules.yml` in which every `for:` and
`keep_firing_for:` is rewritten to `0s`, so an alert fires and resolves within seconds. The
shipped durations are covered by the promtool unit tests, not here.

The scenario: ten validators of equal stake, three of them one entity ("Big Operator", 30%).
At BREACH one validator outside the entity is jailed and the entity grows to 75% (above 2/3).
At RECOVERED the validator is unjailed and the stake is spread evenly again.

Every panel query of every dashboard in `grafana/dashboards/` is run as an instant query twice:
while the breach is active and after recovery. Some panels only have data while something is
jailed or concentrated (a `== 1` filter, the length of a current jail), so each query must return
data in at least one of the two passes.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp
import pytest
from yarl import URL

from quorumwatch.simulator import parse_scenario, start_simulator
from tests.builders import daemon_settings, equal_stakes
from tests.services import (
    Json,
    Webhook,
    api,
    eventually,
    instant,
    prometheus,
    rules_copy,
    running_daemon,
    zero_durations,
)

DASHBOARDS = Path(__file__).resolve().parents[2] / "grafana" / "dashboards"

CHAIN = "hyperliquid"
ENTITY = "Big Operator"
VALIDATORS = [f"0x{i + 1:040x}" for i in range(11)]
OPERATOR = VALIDATORS[:3]  # 3 x 1000 of 11000 = 27%; at BREACH 3 x 7000 of 29000 = 72%
JAILED = VALIDATORS[-1]  # not in the entity; 1000 of 11000 (9%) jailed is no jail storm
HOLD = 1_000_000  # requests per step: the timeline moves only when the test says so
HEALTHY, BREACH, RECOVERED = 0, 1, 2

POLL_SECONDS = 0.25
SCRAPE_INTERVAL = "250ms"  # Prometheus' scrape and rule evaluation interval
ALERT_WAIT = 60.0
STARTUP_WAIT = 30.0
PHASE_SCRAPES = 3  # scrapes of each phase: healthy before the breach, then before panel queries
SCRAPES = 'count_over_time(up{job="quorumwatch"}[1h])'  # how many scrapes Prometheus made
# Panels of metrics that only some kinds export, with the kind: this stack polls Hyperliquid.
# tests/e2e/test_ethereum.py checks the Ethereum metric on a daemon polling that kind.
KIND_SPECIFIC = {
    "quorumwatch_finality_lag_epochs": "ethereum",
    "quorumwatch_block_authorities": "bittensor",
}
DEFAULT_RANGE = "1h"
INTERVAL = "5s"

# Grafana's variable syntaxes: ${name}, ${name:format}, [[name]], $name.
VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")
LABEL_VALUES = re.compile(
    r"^\s*label_values\(\s*(?:(?P<selector>.*)\s*,\s*)?(?P<label>\w+)\s*\)\s*$"
)
RELATIVE = re.compile(r"^now-(\d+)([smhdwy])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def scenario(unjailable_after_ms: int) -> Json:
    """HEALTHY, BREACH (a jailing and an entity above 2/3), RECOVERED; each held until moved."""
    return {
        "name": "operator-stack",
        "steps": [
            {
                "repeat": HOLD,
                "validators": equal_stakes(VALIDATORS),
            },
            {
                "repeat": HOLD,
                "changes": {
                    **{v: {"stake_hype": "7000"} for v in OPERATOR},
                    JAILED: {"jailed": True, "unjailable_after_ms": unjailable_after_ms},
                },
            },
            {
                "changes": {
                    **{v: {"stake_hype": "1000"} for v in OPERATOR},
                    JAILED: {"jailed": False},
                },
            },
        ],
    }


def test_zero_durations_rewrites_every_form() -> None:
    """`for:` and `keep_firing_for:` become 0s whether indented, first in a list item, quoted or
    commented, and nothing else changes."""
    rules = (
        "      - alert: A\n        for: 5m\n        keep_firing_for: '10m'  # hold\n"
        '      - for: "1h"\n        expr: up == 0\n        labels: {severity: warning}\n'
    )
    assert zero_durations(rules) == (
        "      - alert: A\n        for: 0s\n        keep_firing_for: 0s  # hold\n"
        "      - for: 0s\n        expr: up == 0\n        labels: {severity: warning}\n"
    )


# --- the webhook receiver and Alertmanager's routing to it ----------------------------------


@pytest.fixture
def am_config(tmp_path: Path, webhook: Webhook) -> Path:
    """Everything to the webhook, one group per alert, at once, resolutions included."""
    config = {
        "route": {
            "receiver": "webhook",
            "group_by": ["..."],
            "group_wait": "0s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {"name": "webhook", "webhook_configs": [{"url": webhook.url, "send_resolved": True}]}
        ],
    }
    path = tmp_path / "alertmanager.yml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


# --- the daemon and Prometheus --------------------------------------------------------------


@contextlib.asynccontextmanager
async def daemon(store: Path, simulator_url: str) -> AsyncIterator[int]:
    """The daemon in-process, polling every POLL_SECONDS; yields its metrics port."""
    settings = daemon_settings(
        store,
        chains=[
            {
                "name": CHAIN,
                "kind": "hyperliquid",
                "poll_interval_seconds": POLL_SECONDS,
                "endpoints": [{"name": "sim", "url": simulator_url, "timeout_seconds": 2}],
                "entities": [{"name": ENTITY, "validators": OPERATOR}],
            }
        ],
    )
    async with running_daemon(settings) as url:
        port = URL(url).port
        assert port is not None
        yield port


def prometheus_config(metrics_port: int, rules: Path, alertmanager_url: str) -> Json:
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(rules)],
        "alerting": {
            "alertmanagers": [
                {"static_configs": [{"targets": [urlsplit(alertmanager_url).netloc]}]}
            ]
        },
        "scrape_configs": [
            {
                "job_name": "quorumwatch",
                "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}],
            }
        ],
    }


async def scraped(session: aiohttp.ClientSession, base: str, scrapes: int, what: str) -> None:
    """Wait until Prometheus has scraped the daemon `scrapes` more times."""

    async def count() -> int:
        result, _ = await instant(session, base, SCRAPES)
        return int(float(result[0]["value"][1])) if result else 0

    target = await count() + scrapes

    async def done() -> bool:
        return await count() >= target

    await eventually(done, f"{scrapes} scrapes {what}", STARTUP_WAIT, every=0.1)


# --- dashboards ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PanelQuery:
    """One panel target, as written in the dashboard."""

    dashboard: str
    panel: str
    ref: str
    expr: str

    def describe(self) -> str:
        return f"{self.dashboard} / panel {self.panel!r} / target {self.ref}: {self.expr}"


@dataclass(frozen=True)
class Outcome:
    """The query as sent, and None if it returned data, else why not."""

    sent: str
    problem: str | None


def all_panels(panels: list[Json]) -> Iterator[Json]:
    """Panels, with those nested in collapsed rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def dashboards() -> list[tuple[str, Json]]:
    return [
        (path.name, cast(Json, json.loads(path.read_text(encoding="utf-8"))))
        for path in sorted(DASHBOARDS.glob("*.json"))
    ]


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace known variables, as Grafana does; unknown ones are left as written."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        return values.get(name, match.group(0))

    return VARIABLE.sub(replace, expr)


def builtins(dashboard: Json) -> dict[str, str]:
    """Grafana's global variables for an instant query at now over the dashboard's time range."""
    start = str(dashboard.get("time", {}).get("from", ""))
    relative = RELATIVE.match(start)
    range_text = f"{relative.group(1)}{relative.group(2)}" if relative else DEFAULT_RANGE
    range_match = RELATIVE.match(f"now-{range_text}")
    assert range_match is not None
    range_seconds = int(range_match.group(1)) * UNIT_SECONDS[range_match.group(2)]
    now_ms = int(time.time() * 1000)
    interval_seconds = int(INTERVAL.removesuffix("s"))
    return {
        "chain": CHAIN,
        "__rate_interval": "1m",
        "__interval": INTERVAL,
        "__interval_ms": str(interval_seconds * 1000),
        "__range": range_text,
        "__range_s": str(range_seconds),
        "__range_ms": str(range_seconds * 1000),
        "__from": str(now_ms - range_seconds * 1000),
        "__to": str(now_ms),
    }


def first_value(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return None if value is None or value == "" else str(value)


def static_default(variable: Json) -> str | None:
    """The default of a custom, constant, textbox or interval variable."""
    current = first_value(variable.get("current", {}).get("value"))
    if current is not None and current != "$__all":
        return current
    for option in variable.get("options", []):
        if option.get("selected"):
            return first_value(option.get("value"))
    query = str(variable.get("query", ""))
    if variable.get("type") in ("constant", "textbox"):
        return query
    # custom and interval: "a, b, c" or "label : value, ..."
    first = query.split(",", maxsplit=1)[0].strip()
    return first.split(" : ", 1)[-1].strip() if first else None


async def query_variable(
    session: aiohttp.ClientSession, base: str, variable: Json, values: dict[str, str]
) -> tuple[str | None, str | None]:
    """(value, None) for a label_values() query variable, or (None, why not)."""
    query = variable.get("query", "")
    text = str(query.get("query", "") if isinstance(query, dict) else query)
    parsed = LABEL_VALUES.match(substitute(text, values))
    if parsed is None:
        return None, f"cannot resolve query variable {variable.get('name')!r}: {text!r}"
    params: dict[str, str] = {}
    if parsed.group("selector"):
        params["match[]"] = parsed.group("selector").strip()
    label = parsed.group("label")
    found, error = await api(session, f"{base}/api/v1/label/{label}/values", **params)
    if error is not None:
        return None, f"variable {variable.get('name')!r}: {text!r}: {error}"
    if not found:
        return None, f"variable {variable.get('name')!r}: {text!r} has no values"
    if variable.get("includeAll"):
        return str(variable.get("allValue") or ".*"), None
    return str(found[0]), None


async def panel_results(session: aiohttp.ClientSession, base: str) -> dict[PanelQuery, Outcome]:
    """Each panel target of each dashboard, run as an instant query at now."""
    results: dict[PanelQuery, Outcome] = {}
    for name, dashboard in dashboards():
        values = builtins(dashboard)
        unresolved: list[str] = []
        for variable in dashboard.get("templating", {}).get("list", []):
            kind, var_name = variable.get("type"), str(variable.get("name"))
            if var_name in values or kind in ("datasource", "adhoc"):
                continue
            if kind == "query":
                value, error = await query_variable(session, base, variable, values)
            else:
                value = static_default(variable)
                error = None if value is not None else f"variable {var_name!r} has no default"
            if value is not None:
                values[var_name] = value
            if error is not None:
                unresolved.append(error)
        for panel in all_panels(dashboard.get("panels", [])):
            for target in panel.get("targets", []):
                if not target.get("expr"):
                    continue
                raw = str(target["expr"])
                key = PanelQuery(name, str(panel.get("title")), str(target.get("refId")), raw)
                expr = substitute(raw, values)
                result, error = await instant(session, base, expr)
                if error is not None:
                    problem: str | None = f"error {error}"
                elif not result:
                    problem = "empty result" + "".join(f"; {u}" for u in unresolved)
                else:
                    problem = None
                results[key] = Outcome(expr, problem)
    return results


# --- the test --------------------------------------------------------------------------------


async def test_alerts_and_dashboards_through_prometheus(
    prometheus_binary: str, alertmanager: str, webhook: Webhook, tmp_path: Path
) -> None:
    """Through Prometheus and Alertmanager the webhook gets ValidatorJailed (the jailed validator)
    and EntityCanControl (the entity) firing then resolved, and every dashboard panel query
    returns data during the breach or after recovery."""
    rules = rules_copy(tmp_path)
    assert dashboards(), f"no dashboards in {DASHBOARDS}"
    problems: list[str] = []
    unjailable_after_ms = int((time.time() + 5) * 1000)
    async with (
        await start_simulator(parse_scenario(scenario(unjailable_after_ms))) as simulator,
        daemon(tmp_path / "quorumwatch.db", simulator.base_url) as metrics_port,
        prometheus(
            prometheus_binary,
            tmp_path / "prometheus",
            prometheus_config(metrics_port, rules, alertmanager),
        ) as prom,
        aiohttp.ClientSession() as session,
    ):

        async def goto(step: int) -> None:
            async with session.post(f"{simulator.base_url}/_sim/goto?step={step}") as response:
                assert response.status == 200

        async def scraped_up() -> bool:
            result, _ = await instant(
                session, prom, f'quorumwatch_chain_up{{chain="{CHAIN}"}} == 1'
            )
            return bool(result)

        await eventually(scraped_up, "Prometheus to scrape the daemon's chain up", STARTUP_WAIT)
        loaded, error = await api(session, f"{prom}/api/v1/rules", type="alert")
        assert error is None, error
        durations = {
            rule["name"]: rule.get("duration")
            for group in loaded["groups"]
            for rule in group["rules"]
        }
        assert {"ValidatorJailed", "EntityCanControl"} <= durations.keys(), durations
        assert set(durations.values()) == {0}, f"for: not rewritten to 0s: {durations}"
        await scraped(session, prom, PHASE_SCRAPES, "of the healthy chain")

        watched = {
            "ValidatorJailed": {"validator": JAILED},
            "EntityCanControl": {"entity": ENTITY},
        }
        await goto(BREACH)
        fired: dict[str, int] = {}

        async def wait_for(alert: str, status: str, after: int = -1) -> int | None:
            """The payload index, or None (a problem noted) after ALERT_WAIT."""
            labels = watched[alert]
            with contextlib.suppress(pytest.fail.Exception):  # noted below, the test goes on
                await eventually(
                    lambda: webhook.first(alert, status, after, **labels) is not None,
                    f"{status} {alert}",
                    ALERT_WAIT,
                    every=0.1,
                )
            index = webhook.first(alert, status, after, **labels)
            if index is None:
                active, _ = await instant(session, prom, f'ALERTS{{alertname="{alert}"}}')
                problems.append(
                    f"no {status} {alert} {labels} at the webhook within {ALERT_WAIT:.0f} s"
                    f" (Prometheus ALERTS now: {active})"
                )
            return index

        for alert in watched:
            index = await wait_for(alert, "firing")
            if index is not None:
                fired[alert] = index
        await scraped(session, prom, PHASE_SCRAPES, "of the breach")
        during = await panel_results(session, prom)

        await goto(RECOVERED)
        for alert, index in fired.items():
            await wait_for(alert, "resolved", after=index)
        await scraped(session, prom, PHASE_SCRAPES, "after recovery")
        after = await panel_results(session, prom)

        rule_health, _ = await api(session, f"{prom}/api/v1/rules")
        for group in rule_health["groups"] if rule_health else []:
            problems.extend(
                f"rule {rule['name']} is {rule['health']}: {rule.get('lastError')}"
                for rule in group["rules"]
                if rule.get("health") not in ("ok", "unknown")
            )

    for query in sorted(during.keys() | after.keys(), key=PanelQuery.describe):
        if any(metric in query.expr for metric in KIND_SPECIFIC):
            continue
        outcomes = {"during the breach": during.get(query), "after recovery": after.get(query)}
        if all(o is None or o.problem is not None for o in outcomes.values()):
            problems.append(
                f"no data from {query.describe()}"
                + "".join(
                    f"\n    {phase}: {o.sent} -> {o.problem}"
                    for phase, o in outcomes.items()
                    if o is not None
                )
            )
    assert not problems, "\n".join([*problems, webhook.summary()])
