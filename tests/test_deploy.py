"""Deployment files: what ships in deploy/ is accepted by the tools that consume it, and the
alert rules match the daemon's alert catalogue and the metrics it exports."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import re
import shlex
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

import aiomqtt
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from quorumwatch.alerting.model import ALERT_NAMES
from quorumwatch.config import load_settings
from quorumwatch.jails.statistics import UNJAIL_DELAY_BUCKETS, JailCounters
from quorumwatch.report import JailReport, ReportBoard, SubnetListing
from tests.builders import chain_settings, collector, report, validator
from tests.services import accepting, eventually_sync, mosquitto_binary
from tests.tools import free_port, require_binary, stop_process

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "rules" / "quorumwatch.rules.yml"
RULES_TESTS = DEPLOY / "rules" / "quorumwatch.rules.test.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
RUNBOOK_URL = "https://github.com/quorumwatch/quorumwatch/blob/main/docs/runbooks.md#"
# Prometheus-only, with their severities: the dead man's switch for the exporter, and a
# Bittensor chain's subnets no longer listed again.
OWN_RULES = {"QuorumwatchDown": "critical", "SubnetListStale": "warning"}
SEVERITIES = {"critical", "warning", "info"}
TARGET_LABELS = {"job", "instance"}  # added by Prometheus to every scraped series
COMPOSE_SERVICES = {"quorumwatch", "prometheus", "alertmanager", "grafana", "mosquitto"}
SIMULATE = "quorumwatch simulate --scenario foundation-2025 --listen 0.0.0.0:8080"
ENTRYPOINT = ["quorumwatch", "run", "--config", "/etc/quorumwatch/config.toml"]

METRIC = re.compile(r"\b(quorumwatch_[A-Za-z0-9_]+)\b(\s*\{([^}]*)\})?")
MATCHER_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
TEMPLATE_LABEL = re.compile(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)")
CATALOGUE_ROW = re.compile(r"^\|\s*`(\w+)`\s*\|\s*(\w+)", re.MULTILINE)
V5 = f"0x{5:040x}"

Json = dict[str, Any]


def run(*args: str, cwd: Path = DEPLOY) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False, timeout=60)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def alert_rules() -> list[Json]:
    document = cast(Json, load_yaml(RULES))
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def templates(rule: Json) -> str:
    return "\n".join(str(value) for value in rule.get("annotations", {}).values())


def metric_matchers(text: str) -> Iterator[tuple[str, set[str]]]:
    """(metric, label names it is filtered on) for each quorumwatch_* reference in `text`."""
    for match in METRIC.finditer(text):
        yield match.group(1), set(MATCHER_LABEL.findall(match.group(3) or ""))


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_anchors() -> list[str]:
    text = RUNBOOKS.read_text(encoding="utf-8")
    return [github_anchor(h) for h in re.findall(r"^#{2,3} (.+)$", text, re.MULTILINE)]


def catalogue_severities() -> dict[str, str]:
    """Alert name → severity, from the alert table in the README (the documented catalogue)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = dict(CATALOGUE_ROW.findall(text))
    return {name: severity for name, severity in rows.items() if name in ALERT_NAMES}


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Sample name → label names, from a real scrape of an analysed chain with jail history
    (a jail storm on), a down one, an Ethereum chain, a Bittensor subnet and the subnet list of
    a Bittensor chain."""
    validators = [
        *(validator(i, 160) for i in range(1, 4)),
        validator(4, 90, name="solo"),
        validator(5, 40, jailed=True),
        validator(6, 10, active=False),
    ]
    jails = JailReport(
        counters=JailCounters(
            jails=1,
            validator_jails=MappingProxyType({V5: 1}),
            unjail_delay_bucket_counts=tuple(0 for _ in UNJAIL_DELAY_BUCKETS),
            unjail_delay_sum=0.0,
            unjail_delay_count=0,
        ),
        windows=MappingProxyType({"1h": 1, "24h": 1, "7d": 1}),
        storm=True,
        jailed_since=MappingProxyType({V5: 900.0}),
        names=MappingProxyType({V5: "validator 5"}),
    )
    entity_of = {f"0x{i:040x}": "Big Operator" for i in range(1, 4)}
    board = ReportBoard()
    board.publish(report(validators, entity_of=entity_of, endpoints_up=(True, False), jails=jails))
    board.publish(report(None, settings=chain_settings(name="down")))
    ethereum = chain_settings(name="ethereum")
    board.publish(report(validators, settings=ethereum, finality_lag_epochs=2))
    subnet = chain_settings(name="tao-sn1")
    kappa = Fraction(32767, 65535)
    board.publish(
        report(validators, settings=subnet, consensus_threshold=kappa, block_authorities=3)
    )
    board.listed(SubnetListing("tao", last_success_at=400.0, failures=1))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector(board, clock=lambda: 1000.0))
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    return labels


# --- Prometheus: configuration and rules -------------------------------------------------------


def test_prometheus_config_passes_promtool() -> None:
    """promtool check config, run in deploy/, accepts prometheus.yml and the rule file it loads."""
    result = run(require_binary("promtool"), "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout + result.stderr


def test_prometheus_config_wires_rules_alertmanager_and_scrape() -> None:
    """prometheus.yml loads the rules, alerts alertmanager:9093 and scrapes job quorumwatch."""
    config = cast(Json, load_yaml(DEPLOY / "prometheus.yml"))
    assert config["rule_files"] == ["rules/quorumwatch.rules.yml"]
    managers = config["alerting"]["alertmanagers"]
    assert [t for m in managers for c in m["static_configs"] for t in c["targets"]] == [
        "alertmanager:9093"
    ]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert [c["targets"] for c in jobs["quorumwatch"]["static_configs"]] == [["quorumwatch:9877"]]


def test_rules_pass_promtool_check() -> None:
    """promtool check rules accepts rules/quorumwatch.rules.yml with its 16 rules."""
    result = run(require_binary("promtool"), "check", "rules", "rules/quorumwatch.rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 16 rules found" in result.stdout


def test_rules_pass_promtool_unit_tests() -> None:
    """promtool test rules passes every case of rules/quorumwatch.rules.test.yml."""
    result = run(require_binary("promtool"), "test", "rules", "rules/quorumwatch.rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rule_names_are_the_catalogue() -> None:
    """The alert names are exactly ALERT_NAMES plus Prometheus's own, each once, in one group."""
    document = cast(Json, load_yaml(RULES))
    assert len(document["groups"]) == 1
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names)), names
    assert set(names) == ALERT_NAMES | OWN_RULES.keys()


def test_rule_severities_match_the_catalogue() -> None:
    """Each catalogue alert's severity label is the README catalogue's; Prometheus's own rules'
    are OWN_RULES'."""
    catalogue = catalogue_severities()
    assert catalogue.keys() == ALERT_NAMES, "README alert table not found or incomplete"
    severities = {rule["alert"]: rule["labels"]["severity"] for rule in alert_rules()}
    # Critical where the chain states its consensus threshold, else warning: promtool's cases
    # check both; the README names the critical one first.
    severities["EntityHasMajority"] = severities["EntityHasMajority"].split("}}")[1].split("{{")[0]
    assert severities == {**catalogue, **OWN_RULES}


def test_rules_have_severity_annotations_and_durations() -> None:
    """Each rule has only a known severity label, a static summary ending in a period, a
    templated description, a runbook_url to its lower-case anchor, and an explicit `for`."""
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"].keys() == {"severity"}, name
        severity = rule["labels"]["severity"]
        assert severity in SEVERITIES or set(re.findall(r"}}(\w+){{", severity)) <= SEVERITIES, name
        annotations = rule["annotations"]
        assert annotations.keys() == {"summary", "description", "runbook_url"}, name
        summary = annotations["summary"]
        assert summary.endswith("."), name
        assert "{{" not in summary, name
        assert "$labels." in annotations["description"], name
        assert annotations["runbook_url"] == RUNBOOK_URL + name.lower(), name
        assert re.fullmatch(r"\d+[smh]", str(rule["for"])), name


def test_runbook_sections_match_rules() -> None:
    """docs/runbooks.md has a section anchor for every rule's runbook_url, and no other."""
    anchors = runbook_anchors()
    wanted = {
        rule["annotations"]["runbook_url"].removeprefix(RUNBOOK_URL) for rule in alert_rules()
    }
    assert len(anchors) == len(set(anchors)), anchors
    assert set(anchors) == wanted


def test_rule_metrics_are_exported(exported: dict[str, set[str]]) -> None:
    """Every quorumwatch_* name in a rule's expr or annotation queries is in a real scrape."""
    referenced = {
        metric
        for rule in alert_rules()
        for metric, _ in metric_matchers(rule["expr"] + "\n" + templates(rule))
    }
    assert len(referenced) >= 10, referenced
    assert referenced <= exported.keys(), sorted(referenced - exported.keys())


def test_rule_labels_are_exported(exported: dict[str, set[str]]) -> None:
    """Label matchers, by/without/on clauses and $labels templates of each rule only use labels
    its quorumwatch_* metrics carry in a scrape (plus job and instance, which Prometheus adds,
    for clauses and $labels)."""
    for rule in alert_rules():
        name, expr = rule["alert"], rule["expr"]
        carried: set[str] = set()
        for metric, labels in metric_matchers(expr + "\n" + templates(rule)):
            assert labels <= exported.get(metric, set()), (name, metric, labels)
        for metric, _ in metric_matchers(expr):
            carried |= exported.get(metric, set())
        for clause in GROUPING.findall(expr):
            used = {label.strip() for label in clause.split(",") if label.strip()}
            assert used <= carried | TARGET_LABELS, (name, sorted(used - carried))
        used = set(TEMPLATE_LABEL.findall(templates(rule)))
        assert used <= carried | TARGET_LABELS, (name, sorted(used - carried))


def test_rules_aggregate_the_replicas_away() -> None:
    """Each rule but QuorumwatchDown (which watches each replica) has one `max|min without
    (instance) (` aggregation per quorumwatch_* metric reference in its expr, so the replicas of
    an HA pair make one alert."""
    for rule in alert_rules():
        if rule["alert"] == "QuorumwatchDown":
            continue
        expr = " ".join(rule["expr"].split())
        references = len(list(metric_matchers(expr)))
        aggregated = re.findall(r"\b(?:max|min) without \(instance\) \(", expr)
        assert references, rule["alert"]
        assert len(aggregated) == references, (rule["alert"], expr)


def test_rule_unit_tests_cover_every_alert() -> None:
    """The promtool unit tests have, for each alert, a firing case, a not-firing case and, where
    `for` > 0, a not-firing case one evaluation interval before a firing one (pending)."""
    durations = {rule["alert"]: parse_duration(str(rule["for"])) for rule in alert_rules()}
    firing: dict[str, set[float]] = {name: set() for name in durations}
    quiet: dict[str, set[float]] = {name: set() for name in durations}
    document = cast(Json, load_yaml(RULES_TESTS))
    assert document["rule_files"] == ["quorumwatch.rules.yml"]
    step = parse_duration(str(document["evaluation_interval"]))
    for group in document["tests"]:
        for case in group["alert_rule_test"]:
            name, at = case["alertname"], parse_duration(str(case["eval_time"]))
            (firing if case["exp_alerts"] else quiet)[name].add(at)
    for name, duration in durations.items():
        assert firing[name], f"{name}: no firing case"
        assert quiet[name], f"{name}: no not-firing case"
        if duration:
            pending = {at - step for at in firing[name]} & quiet[name]
            assert pending, f"{name}: no pending case one evaluation before firing"


def parse_duration(text: str) -> float:
    """Seconds of a Prometheus duration such as 1h30m, 15m or 0s."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w)", text)
    assert "".join(n + u for n, u in parts) == text, text
    return sum(int(n) * units[u] for n, u in parts)


# --- Alertmanager -------------------------------------------------------------------------------


def test_alertmanager_config_passes_amtool() -> None:
    """amtool check-config accepts deploy/alertmanager.yml."""
    result = run(require_binary("amtool"), "check-config", "alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical"], "critical"),
        (["severity=warning"], "warning"),
        (["severity=info"], "null"),
        (["severity=unknown"], "warning"),
        ([], "warning"),
    ],
)
def test_alertmanager_routes_by_severity(labels: list[str], receiver: str) -> None:
    """amtool config routes test sends critical and warning to webhook receivers, info to null,
    and an alert without a known severity to warning."""
    result = run(
        require_binary("amtool"),
        "config",
        "routes",
        "test",
        "--config.file=alertmanager.yml",
        "alertname=EntityCanControl",
        "chain=hyperliquid",
        *labels,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == [receiver]


def test_alertmanager_receivers_post_to_the_webhook() -> None:
    """The critical and warning receivers post to http://webhook:8080/ with resolutions; the
    route groups by alertname and chain."""
    config = cast(Json, load_yaml(DEPLOY / "alertmanager.yml"))
    assert config["route"]["group_by"] == ["alertname", "chain"]
    receivers = {r["name"]: r for r in config["receivers"]}
    for name in ("critical", "warning"):
        assert receivers[name]["webhook_configs"] == [
            {"url": "http://webhook:8080/", "send_resolved": True}
        ]
    assert receivers["null"].keys() == {"name"}


@pytest.fixture
def am_config() -> Path:
    """The shipped configuration, for conftest's real `alertmanager`."""
    return DEPLOY / "alertmanager.yml"


def test_alertmanager_inhibits_what_can_control_implies(alertmanager: str) -> None:
    """In a real Alertmanager with the shipped config, EntityCanControl suppresses EntityCanHalt
    and the warning EntityHasMajority of the same chain and entity only; a subnet's critical
    EntityHasMajority stays active."""
    alerts = [
        {"labels": {"alertname": alert, "severity": severity, "chain": chain, "entity": e}}
        for alert, severity, chain, e in (
            ("EntityCanControl", "critical", "hyperliquid", "Hyper Foundation"),
            ("EntityCanHalt", "warning", "hyperliquid", "Hyper Foundation"),
            ("EntityHasMajority", "warning", "hyperliquid", "Hyper Foundation"),
            ("EntityCanHalt", "warning", "hyperliquid", "Other"),
            ("EntityHasMajority", "warning", "hyperliquid", "Other"),
            ("EntityCanControl", "critical", "bittensor-sn1", "5Owner"),
            ("EntityHasMajority", "critical", "bittensor-sn1", "5Owner"),
        )
    ]
    request = urllib.request.Request(
        f"{alertmanager}/api/v2/alerts",
        data=json.dumps(alerts).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    states: dict[tuple[str, str, str], str] = {}

    def inhibited() -> bool:
        with urllib.request.urlopen(f"{alertmanager}/api/v2/alerts", timeout=5) as response:
            states.clear()
            states.update(
                (
                    (a["labels"]["alertname"], a["labels"]["chain"], a["labels"]["entity"]),
                    a["status"]["state"],
                )
                for a in json.load(response)
            )
        suppressed = ("EntityCanHalt", "EntityHasMajority")
        return all(
            states.get((alert, "hyperliquid", "Hyper Foundation")) == "suppressed"
            for alert in suppressed
        )

    eventually_sync(inhibited, lambda: f"the inhibition, states {states}", every=0.05)
    assert states == {
        ("EntityCanControl", "hyperliquid", "Hyper Foundation"): "active",
        ("EntityCanHalt", "hyperliquid", "Hyper Foundation"): "suppressed",
        ("EntityHasMajority", "hyperliquid", "Hyper Foundation"): "suppressed",
        ("EntityCanHalt", "hyperliquid", "Other"): "active",
        ("EntityHasMajority", "hyperliquid", "Other"): "active",
        ("EntityCanControl", "bittensor-sn1", "5Owner"): "active",
        ("EntityHasMajority", "bittensor-sn1", "5Owner"): "active",
    }


# --- quorumwatch configuration, image and compose stack ----------------------------------------


def test_compose_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """deploy/config.compose.toml loads, points at the compose services, and leaves paging to
    Prometheus (no direct Alertmanager push that would page twice)."""
    for key in list(os.environ):
        if key.startswith("QUORUMWATCH_"):
            monkeypatch.delenv(key)
    settings = load_settings(DEPLOY / "config.compose.toml")
    assert settings.metrics.host_port == ("0.0.0.0", 9877)
    assert settings.mqtt.enabled
    assert (settings.mqtt.host, settings.mqtt.port) == ("mosquitto", 1883)
    assert settings.mqtt.password is None  # only ever from QUORUMWATCH_MQTT__PASSWORD
    assert settings.alertmanager.url is None  # pages go via Prometheus only: no doubles
    assert [str(e.url) for c in settings.chains for e in c.endpoints] == ["http://simulator:8080/"]
    assert str(settings.storage.path).startswith("/var/lib/quorumwatch/")


def compose() -> Json:
    return cast(Json, load_yaml(DEPLOY / "docker-compose.yml"))


def command_line(value: object) -> str:
    """A compose entrypoint or command, list or string, as one shell line."""
    if isinstance(value, str):
        return value
    return shlex.join(str(part) for part in cast(list[Any], value))


def test_compose_services_and_demo_profile() -> None:
    """docker-compose.yml parses as YAML and has the five services, plus the simulator only in
    profile demo running `quorumwatch simulate` on foundation-2025 at 0.0.0.0:8080."""
    services = cast(Json, compose()["services"])
    assert services.keys() == COMPOSE_SERVICES | {"simulator"}
    for name in COMPOSE_SERVICES:
        assert "profiles" not in services[name], name
    simulator = services["simulator"]
    assert simulator["profiles"] == ["demo"]
    started = [command_line(simulator.get(key, [])) for key in ("entrypoint", "command")]
    assert " ".join(part for part in started if part) == SIMULATE


def test_compose_mounts_exist_and_wire_the_stack() -> None:
    """Every relative bind mount exists; grafana mounts the provisioning and dashboards, and
    quorumwatch, prometheus, alertmanager and mosquitto mount their deploy/ files."""
    services = cast(Json, compose()["services"])
    mounts: dict[str, dict[str, str]] = {}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source, target = str(volume).split(":")[:2]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), (name, source)
            mounts.setdefault(name, {})[target] = source
    assert mounts["grafana"]["/etc/grafana/provisioning"] == "../grafana/provisioning"
    assert mounts["grafana"]["/var/lib/grafana/dashboards"] == "../grafana/dashboards"
    assert mounts["quorumwatch"]["/etc/quorumwatch/config.toml"] == "./config.compose.toml"
    assert mounts["prometheus"]["/etc/prometheus/prometheus.yml"] == "./prometheus.yml"
    assert mounts["prometheus"]["/etc/prometheus/rules"] == "./rules"
    assert mounts["alertmanager"]["/etc/alertmanager/alertmanager.yml"] == "./alertmanager.yml"
    assert mounts["mosquitto"]["/mosquitto/config/mosquitto.conf"] == "./mosquitto.conf"


def test_compose_services_run_unprivileged() -> None:
    """Every service sets a non-root `user`, drops all capabilities, sets no-new-privileges and
    publishes its ports on loopback only."""
    for name, service in cast(Json, compose()["services"]).items():
        user = str(service.get("user", "0")).split(":")[0]
        assert user not in ("", "0", "root"), name
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_compose_file_passes_docker_compose_config() -> None:
    """Debian's docker-compose validates docker-compose.yml, with and without profile demo."""
    binary = require_binary("docker-compose")
    for profile in ([], ["--profile", "demo"]):
        result = run(binary, "-f", "deploy/docker-compose.yml", *profile, "config", "-q", cwd=ROOT)
        assert result.returncode == 0, result.stdout + result.stderr


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dockerfile_runs_quorumwatch_as_non_root() -> None:
    """The image builds on python:3.11-slim from files that exist, runs as a numeric non-root
    user, exposes 9877, checks /metrics, and runs `quorumwatch run --config ...`."""
    instructions = dockerfile_instructions()
    values = {key: [v for k, v in instructions if k == key] for key, _ in instructions}
    assert all(image.startswith("python:3.11-slim") for image in values["FROM"])
    for copy in values["COPY"]:
        if not copy.startswith("--from="):
            for source in copy.split()[:-1]:
                assert (ROOT / source).exists(), source
    user = values["USER"][-1]
    assert re.fullmatch(r"[1-9]\d*(:\d+)?", user), user
    assert [k for k, _ in instructions].index("USER") > max(
        i for i, (k, _) in enumerate(instructions) if k == "RUN"
    )
    assert values["EXPOSE"] == ["9877"]
    assert "http://127.0.0.1:9877/metrics" in values["HEALTHCHECK"][0]
    assert json.loads(values["ENTRYPOINT"][-1]) == ENTRYPOINT


# --- Mosquitto ----------------------------------------------------------------------------------


def mosquitto_conf_for_test(directory: Path, port: int) -> Path:
    """deploy/mosquitto.conf with the listener on 127.0.0.1:`port` and paths under `directory`."""
    text = (DEPLOY / "mosquitto.conf").read_text(encoding="utf-8")
    for shipped, local in (
        ("listener 1883\n", f"listener {port} 127.0.0.1\n"),
        ("password_file /mosquitto/config/passwd\n", f"password_file {directory}/passwd\n"),
        ("persistence_location /mosquitto/data/\n", f"persistence_location {directory}/\n"),
    ):
        assert shipped in text, shipped
        text = text.replace(shipped, local)
    path = directory / "mosquitto.conf"
    path.write_text(f"user {getpass.getuser()}\n{text}")  # as root, stay root
    return path


def start_mosquitto(config: Path, port: int) -> subprocess.Popen[bytes]:
    """Mosquitto on `config`, once it accepts connections on `port`; its log next to `config`."""
    log = config.with_suffix(".log")
    with log.open("wb") as output:
        process = subprocess.Popen(
            [mosquitto_binary(), "-c", str(config)], stdout=output, stderr=subprocess.STDOUT
        )
    try:
        accepting("mosquitto", process, port, log, 10)
    except BaseException:
        stop_process(process, timeout=10)
        raise
    return process


async def test_mosquitto_conf_requires_a_password_and_persists(tmp_path: Path) -> None:
    """A real Mosquitto on deploy/mosquitto.conf refuses anonymous clients and a wrong password,
    accepts a user from the password file, and writes its persistence file on shutdown."""
    passwd = require_binary("mosquitto_passwd")
    created = run(passwd, "-c", "-b", str(tmp_path / "passwd"), "quorumwatch", "s3cret")
    assert created.returncode == 0, created.stderr
    port = free_port()
    config = mosquitto_conf_for_test(tmp_path, port)
    process = await asyncio.to_thread(start_mosquitto, config, port)
    try:
        for username, password in ((None, None), ("quorumwatch", "wrong")):
            with pytest.raises(aiomqtt.MqttError):
                async with aiomqtt.Client(
                    "127.0.0.1", port, username=username, password=password, timeout=5
                ):
                    pass
        async with aiomqtt.Client(
            "127.0.0.1", port, username="quorumwatch", password="s3cret", timeout=5
        ) as client:
            await client.publish("quorumwatch/status", '{"state":"online"}', qos=1, retain=True)
    finally:
        await asyncio.to_thread(stop_process, process, 10)
    assert (tmp_path / "mosquitto.db").is_file(), config.with_suffix(".log").read_text()


# --- systemd ------------------------------------------------------------------------------------


def test_systemd_unit_runs_unprivileged_and_stops_on_config_errors() -> None:
    """The unit uses a dynamic user, sandboxing, and does not restart on exit code 3."""
    unit = (DEPLOY / "quorumwatch.service").read_text()
    for directive in (
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "RestartPreventExitStatus=3",
        "CapabilityBoundingSet=\n",
    ):
        assert directive in unit


def test_readme_jails_command_reads_the_store_of_the_systemd_unit() -> None:
    """The README's `jails` command for a systemd host reads the store the unit's environment
    gives the daemon, with the unit's binary and config."""
    unit = (DEPLOY / "quorumwatch.service").read_text(encoding="utf-8")
    [environment] = re.findall(r"^Environment=(QUORUMWATCH_STORAGE__PATH=\S+)$", unit, re.M)
    [start] = re.findall(r"^ExecStart=(\S+) run (--config \S+)$", unit, re.M)
    command = f"sudo env {environment} {start[0]} jails {start[1]}\n"
    assert command in (ROOT / "README.md").read_text(encoding="utf-8")


def test_systemd_unit_passes_systemd_analyze(tmp_path: Path) -> None:
    """systemd-analyze verify reports nothing on the unit (ExecStart pointed at an existing
    binary), and its offline security exposure is at most 2.0."""
    analyze = require_binary("systemd-analyze")
    shipped = "ExecStart=/opt/quorumwatch/bin/quorumwatch "
    unit = (DEPLOY / "quorumwatch.service").read_text(encoding="utf-8")
    assert shipped in unit
    path = tmp_path / "quorumwatch.service"
    path.write_text(unit.replace(shipped, f"ExecStart={sys.executable} "))
    verify = run(analyze, "verify", str(path), cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stderr.strip() == "", verify.stderr
    security = run(
        analyze,
        "security",
        "--offline=true",
        "--threshold=20",
        "--no-pager",
        str(path),
        cwd=tmp_path,
    )
    assert security.returncode == 0, security.stdout[-3000:] + security.stderr
