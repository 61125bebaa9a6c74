"""Grafana dashboards: provisionable JSON whose queries match what the daemon exports."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.builders import collector, every_kind_board
from tests.tools import require_binary

DASHBOARDS_DIR = Path(__file__).resolve().parents[1] / "grafana" / "dashboards"
DASHBOARD_FILES = sorted(DASHBOARDS_DIR.glob("*.json"))
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_COLUMNS = 24
EXPECTED_UIDS = {"quorumwatch-decentralization", "quorumwatch-jailing", "quorumwatch-api"}
SCHEMA_VERSION = 39
# Grafana's built-in variables a query may use, with a value to render it for promtool.
BUILTIN_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "30s",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}

METRIC = re.compile(r"\b(quorumwatch_[A-Za-z0-9_]+)\b(\s*\{([^}]*)\})?")
MATCHER_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")
LABEL_VALUES = re.compile(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)[^,]*,\s*(\w+)\s*\)")
LEGEND_LABEL = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
RATE_CALL = re.compile(r"\b(?:rate|irate|increase)\s*\(")
RANGE_SELECTOR = re.compile(r"\[([^\]]*)\]")
LABEL_VALUES_QUERY = re.compile(r"label_values\(\s*(.+?)\s*,\s*\w+\s*\)")
# $name, ${name}, ${name:format} and the deprecated [[name]].
TEMPLATE_REF = re.compile(
    r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\}|\$([A-Za-z_][A-Za-z0-9_]*)|\[\[([A-Za-z_][A-Za-z0-9_]*)\]\]"
)

# Exported metric families that no dashboard queries, on purpose, and why. Every other family
# of a scrape is on some panel (test_every_exported_metric_is_on_a_panel).
NOT_ON_A_PANEL: Mapping[str, str] = {
    "quorumwatch_build_info": "the daemon's version, always 1",
    # The daemon's alert delivery, not a chain's: no `chain` label for these per-chain boards.
    "quorumwatch_outbox_events": "alert delivery (MQTT outbox)",
    "quorumwatch_outbox_oldest_event_age_seconds": "alert delivery (MQTT outbox)",
    "quorumwatch_outbox_dropped_events": "alert delivery (MQTT outbox)",
    "quorumwatch_events": "alert delivery: events generated, by alert",
    "quorumwatch_mqtt_connected": "alert delivery (MQTT)",
    "quorumwatch_alertmanager_push_failures": "alert delivery (Alertmanager)",
    "quorumwatch_poll_duration_seconds": "the daemon's own cost; the API board has request latency",
    "quorumwatch_last_success_timestamp_seconds": "Chain up shows each poll; DataStale its age",
    # Per configured chain of "all" subnets, not per subnet: the boards' chain variable lists
    # subnets. The SubnetListStale alert watches the listing.
    "quorumwatch_subnet_list_failures": "the subnet listing (SubnetListStale alerts on it)",
    "quorumwatch_subnet_list_last_success_timestamp_seconds": "the subnet listing"
    " (SubnetListStale alerts on it)",
    "quorumwatch_snapshot_rejections": "answers rejected, by reason: a troubleshooting query"
    " (runbook: EndpointDown, DataStale), absent until a rejection",
    "quorumwatch_endpoints_disagree": "only with compare_endpoints: a check of the API",
    "quorumwatch_stake_tokens": "in each chain's own token; the boards show stake as shares",
    "quorumwatch_holders": "the count behind the concentration indices that are plotted",
    "quorumwatch_largest_stake_ratio": "the top holder's share: Largest entity shares plots each",
    "quorumwatch_shannon_entropy": "a third concentration index, beside the HHI and Gini plotted",
    "quorumwatch_validator_jailed": "the jailing board counts the jailed and times current jails",
    "quorumwatch_validator_jail_risk_ratio": "Cosmos only: a query for one validator",
    "quorumwatch_validator_series_omitted": "bookkeeping of max_validator_series",
}

Json = dict[str, Any]


def load(path: Path) -> Json:
    return cast(Json, json.loads(path.read_text(encoding="utf-8")))


def all_panels(panels: list[Json]) -> Iterator[Json]:
    """Panels, with those nested in collapsed rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def data_panels(dashboard: Json) -> list[Json]:
    return [p for p in all_panels(dashboard.get("panels", [])) if p.get("type") != "row"]


def variables(dashboard: Json) -> list[Json]:
    return cast(list[Json], dashboard.get("templating", {}).get("list", []))


def variable_query(variable: Json) -> str:
    query = variable.get("query", "")
    return str(query.get("query", "") if isinstance(query, dict) else query)


def exprs(dashboard: Json) -> list[str]:
    """Every PromQL expression: panel targets and query-variable queries."""
    targets = [str(t["expr"]) for p in data_panels(dashboard) for t in p.get("targets", [])]
    queries = [variable_query(v) for v in variables(dashboard) if v.get("type") == "query"]
    return targets + queries


def metric_matchers(expr: str) -> Iterator[tuple[str, set[str]]]:
    """(metric, label names it is filtered or grouped on) for each quorumwatch_* reference."""
    for match in METRIC.finditer(expr):
        yield match.group(1), set(MATCHER_LABEL.findall(match.group(3) or ""))
    for metric, label in LABEL_VALUES.findall(expr):
        yield metric, {label}


def template_refs(expr: str) -> set[str]:
    """Names of the template variables an expression refers to."""
    return {next(g for g in m.groups() if g) for m in TEMPLATE_REF.finditer(expr)}


def variable_default(variable: Json) -> str:
    """The value a variable renders to by default: its current value, else its first option."""
    current = variable.get("current") or {}
    if isinstance(current, dict) and current.get("value") not in (None, ""):
        return str(current["value"])
    if variable.get("type") in ("custom", "constant"):
        return variable_query(variable).split(",")[0].strip()
    return str(variable.get("name"))  # a query variable: any label value will do for syntax


def render(expr: str, dashboard: Json) -> str:
    """The expression as Prometheus would receive it with every variable at its default."""
    values = {
        **BUILTIN_VARIABLES,
        **{str(v["name"]): variable_default(v) for v in variables(dashboard)},
    }
    return TEMPLATE_REF.sub(lambda m: values[next(g for g in m.groups() if g)], expr)


def as_promql(expr: str) -> str:
    """The PromQL in an expr: label_values(selector, label) queries the selector."""
    match = LABEL_VALUES_QUERY.fullmatch(expr.strip())
    return match.group(1) if match else expr


def rate_windows_use_rate_interval(expr: str) -> bool:
    if not RATE_CALL.search(expr):
        return True
    return all(w.strip() == "$__rate_interval" for w in RANGE_SELECTOR.findall(expr))


@pytest.fixture(scope="module")
def scraped() -> dict[str, dict[str, set[str]]]:
    """Metric family → its sample names → their label names, from a real scrape of a daemon
    watching one chain of every kind, with jail history, a down chain and both alert sinks (so
    that every family the collector makes is there)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector(every_kind_board(time.time())))
    families: dict[str, dict[str, set[str]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        samples = families.setdefault(family.name, {})
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return families


@pytest.fixture(scope="module")
def exported(scraped: dict[str, dict[str, set[str]]]) -> dict[str, set[str]]:
    """Sample name → label names, from that scrape."""
    return {name: labels for samples in scraped.values() for name, labels in samples.items()}


@pytest.fixture(params=DASHBOARD_FILES, ids=lambda p: p.stem)
def dashboard(request: pytest.FixtureRequest) -> Json:
    return load(cast(Path, request.param))


def test_dashboards_exist_and_parse() -> None:
    """At least one dashboard JSON exists under grafana/dashboards and each parses to an object."""
    assert DASHBOARD_FILES
    for path in DASHBOARD_FILES:
        assert isinstance(json.loads(path.read_text(encoding="utf-8")), dict), path


def test_uids_fixed_and_unique() -> None:
    """Each dashboard has a literal 8-40 char uid of [A-Za-z0-9_-], unique across files."""
    uids = [load(path).get("uid") for path in DASHBOARD_FILES]
    for uid in uids:
        assert isinstance(uid, str), uids
        assert re.fullmatch(r"[A-Za-z0-9_-]{8,40}", uid), uid
    assert len(set(uids)) == len(uids)


def test_no_export_for_sharing_placeholders() -> None:
    """No dashboard file contains `${DS_` or `__inputs`, which file provisioning never resolves."""
    for path in DASHBOARD_FILES:
        text = path.read_text(encoding="utf-8")
        assert "${DS_" not in text, path
        assert "__inputs" not in text, path


def test_datasource_variable_used_everywhere(dashboard: Json) -> None:
    """A datasource-type `datasource` variable exists; every panel and target uses it."""
    by_name = {v.get("name"): v for v in variables(dashboard)}
    assert by_name.get("datasource", {}).get("type") == "datasource"
    assert by_name["datasource"].get("query") == "prometheus"
    for variable in variables(dashboard):
        if "datasource" in variable:
            assert variable["datasource"] == DATASOURCE, variable.get("name")
    for panel in data_panels(dashboard):
        assert panel.get("datasource") == DATASOURCE, panel.get("title")
        assert panel.get("targets"), panel.get("title")
        for target in panel["targets"]:
            assert target.get("datasource") == DATASOURCE, (panel.get("title"), target)


def test_panels_have_title_description_and_unit(dashboard: Json) -> None:
    """Every non-row panel has a non-empty title, description and fieldConfig.defaults.unit."""
    for panel in data_panels(dashboard):
        title = panel.get("title")
        assert title
        assert str(panel.get("description", "")).strip(), title
        assert panel.get("fieldConfig", {}).get("defaults", {}).get("unit"), title


def test_grid_positions_fit_and_do_not_overlap(dashboard: Json) -> None:
    """Top-level gridPos rectangles lie within 24 columns and no two of them overlap."""
    rects: list[tuple[str, int, int, int, int]] = []
    for panel in dashboard.get("panels", []):
        pos = panel["gridPos"]
        x, y, w, h = (int(pos[k]) for k in ("x", "y", "w", "h"))
        assert min(x, y) >= 0, panel.get("title")
        assert min(w, h) > 0, panel.get("title")
        assert x + w <= GRID_COLUMNS, panel.get("title")
        rects.append((str(panel.get("title")), x, y, w, h))
    for i, (a, ax, ay, aw, ah) in enumerate(rects):
        for b, bx, by, bw, bh in rects[i + 1 :]:
            overlap = ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah
            assert not overlap, (a, b)


@pytest.mark.parametrize(
    ("expr", "ok"),
    [
        ("rate(x_total[5m])", False),
        ("sum(increase(x_total[1h]))", False),
        ("rate(x_total[$__rate_interval])", True),
        ("x_ratio", True),
    ],
)
def test_rate_interval_checker(expr: str, ok: bool) -> None:
    """The rate checker rejects fixed windows in rate/irate/increase and accepts the variable."""
    assert rate_windows_use_rate_interval(expr) is ok


def test_rates_use_rate_interval(dashboard: Json) -> None:
    """Every rate(/irate(/increase( expression uses only [$__rate_interval] windows."""
    for expr in exprs(dashboard):
        assert rate_windows_use_rate_interval(expr), expr


def test_metrics_are_exported(dashboard: Json, exported: dict[str, set[str]]) -> None:
    """Every quorumwatch_* name in any expr or variable query is a sample name of a real scrape."""
    referenced = {metric for expr in exprs(dashboard) for metric, _ in metric_matchers(expr)}
    assert referenced
    assert referenced <= exported.keys(), sorted(referenced - exported.keys())


def test_every_exported_metric_is_on_a_panel(scraped: dict[str, dict[str, set[str]]]) -> None:
    """Every metric family of a scrape is queried by some dashboard, unless NOT_ON_A_PANEL lists
    it; every family listed there is exported and on no dashboard."""
    referenced = {
        metric
        for path in DASHBOARD_FILES
        for expr in exprs(load(path))
        for metric, _ in metric_matchers(expr)
    }
    shown = {family for family, samples in scraped.items() if samples.keys() & referenced}
    assert NOT_ON_A_PANEL.keys() <= scraped.keys(), sorted(NOT_ON_A_PANEL.keys() - scraped.keys())
    assert not shown & NOT_ON_A_PANEL.keys(), sorted(shown & NOT_ON_A_PANEL.keys())
    missing = scraped.keys() - shown - NOT_ON_A_PANEL.keys()
    assert not missing, sorted(missing)


def test_matchers_use_exported_labels(dashboard: Json, exported: dict[str, set[str]]) -> None:
    """Each expr's label matchers (and label_values label) are labels its metric has in a scrape."""
    for expr in exprs(dashboard):
        for metric, labels in metric_matchers(expr):
            carried = exported.get(metric, set())
            assert labels <= carried, (expr, sorted(labels - carried))


def test_legends_use_exported_labels(dashboard: Json, exported: dict[str, set[str]]) -> None:
    """Each {{label}} in a legendFormat is carried by every quorumwatch_* metric of its expr."""
    for panel in data_panels(dashboard):
        for target in panel.get("targets", []):
            wanted = set(LEGEND_LABEL.findall(str(target.get("legendFormat", ""))))
            for metric, _ in metric_matchers(str(target["expr"])):
                carried = exported.get(metric, set())
                assert wanted <= carried, (target["expr"], sorted(wanted - carried))


def test_expected_dashboards() -> None:
    """The committed dashboards are exactly the three expected uids, with unique titles."""
    dashboards = [load(path) for path in DASHBOARD_FILES]
    uids = [d.get("uid") for d in dashboards]
    assert sorted(str(uid) for uid in uids) == sorted(EXPECTED_UIDS)
    titles = [d.get("title") for d in dashboards]
    assert len(set(titles)) == len(titles), titles  # unique within the provisioned folder


def test_schema_version_and_panel_ids(dashboard: Json) -> None:
    """Every dashboard has the house schemaVersion, a null id and unique panel ids."""
    assert dashboard.get("schemaVersion") == SCHEMA_VERSION
    assert dashboard.get("id") is None
    ids = [p.get("id") for p in all_panels(dashboard.get("panels", []))]
    assert all(isinstance(i, int) for i in ids), ids
    assert len(set(ids)) == len(ids), ids


def test_chain_variable_from_label_values(dashboard: Json) -> None:
    """A `chain` query variable takes its values from label_values(quorumwatch_*, chain)."""
    by_name = {v.get("name"): v for v in variables(dashboard)}
    chain = by_name.get("chain", {})
    assert chain.get("type") == "query"
    assert re.fullmatch(r"label_values\(quorumwatch_\w+,\s*chain\)", variable_query(chain))


def test_template_references_defined(dashboard: Json) -> None:
    """Every $var in an expr is a variable of the dashboard or a Grafana built-in."""
    names = {str(v.get("name")) for v in variables(dashboard)}
    assert len(names) == len(variables(dashboard))
    for expr in exprs(dashboard):
        unknown = template_refs(expr) - names - BUILTIN_VARIABLES.keys()
        assert not unknown, (expr, sorted(unknown))


def test_custom_variables_default_to_an_option(dashboard: Json) -> None:
    """A custom variable (such as `slo`) defaults to one of its own options."""
    for variable in variables(dashboard):
        if variable.get("type") != "custom":
            continue
        options = [o.strip() for o in variable_query(variable).split(",")]
        assert variable_default(variable) in options, variable.get("name")
        listed = [str(o.get("value")) for o in variable.get("options", [])]
        assert not listed or listed == options, variable.get("name")


def test_slo_variable() -> None:
    """The API dashboard has an `slo` custom variable defaulting to 0.99, used in its queries."""
    api = load(DASHBOARDS_DIR / "quorumwatch-api.json")
    slo = {v.get("name"): v for v in variables(api)}["slo"]
    assert slo.get("type") in ("custom", "constant")
    assert variable_default(slo) == "0.99"
    options = [float(o) for o in variable_query(slo).split(",")]
    assert all(0 < o < 1 for o in options), options
    assert any("slo" in template_refs(expr) for expr in exprs(api))


def test_tables_join_instant_queries(dashboard: Json) -> None:
    """A table with several queries runs them as instant table queries and merges them."""
    for panel in data_panels(dashboard):
        targets = panel.get("targets", [])
        if panel.get("type") != "table" or len(targets) < 2:
            continue
        for target in targets:
            assert target.get("instant") is True, (panel.get("title"), target["refId"])
            assert target.get("format") == "table", (panel.get("title"), target["refId"])
        ids = [t.get("id") for t in panel.get("transformations", [])]
        assert {"merge", "joinByField"} & set(ids), panel.get("title")


def test_exprs_parse_with_promtool(tmp_path: Path) -> None:
    """Every expr, rendered with default variable values, is valid PromQL to promtool."""
    promtool = require_binary("promtool")
    rules = [
        {
            "record": f"dashboard:{path.stem.replace('-', '_')}:{i}",
            "expr": render(as_promql(expr), board),
        }
        for path in DASHBOARD_FILES
        for board in [load(path)]
        for i, expr in enumerate(exprs(board))
    ]
    rule_file = tmp_path / "dashboard-exprs.yml"
    rule_file.write_text(json.dumps({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(rule_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
