"""Grafana dashboards: provisionable JSON whose queries match what the daemon exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from quorumwatch.exporter.collector import QuorumwatchCollector
from quorumwatch.monitor import ReportBoard
from tests.builders import chain_settings, report, validator

DASHBOARDS_DIR = Path(__file__).resolve().parents[1] / "grafana" / "dashboards"
DASHBOARD_FILES = sorted(DASHBOARDS_DIR.glob("*.json"))
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_COLUMNS = 24

METRIC = re.compile(r"\b(quorumwatch_[A-Za-z0-9_]+)\b(\s*\{([^}]*)\})?")
MATCHER_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")
LABEL_VALUES = re.compile(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)[^,]*,\s*(\w+)\s*\)")
LEGEND_LABEL = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
RATE_CALL = re.compile(r"\b(?:rate|irate|increase)\s*\(")
RANGE_SELECTOR = re.compile(r"\[([^\]]*)\]")

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


def rate_windows_use_rate_interval(expr: str) -> bool:
    if not RATE_CALL.search(expr):
        return True
    return all(w.strip() == "$__rate_interval" for w in RANGE_SELECTOR.findall(expr))


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Sample name → label names, from a real scrape of an analysed chain and a down one."""
    validators = [
        *(validator(i, 160) for i in range(1, 4)),
        validator(4, 90, name="solo"),
        validator(5, 40, jailed=True),
        validator(6, 10, active=False),
    ]
    entity_of = {f"0x{i:040x}": "Big Operator" for i in range(1, 4)}
    board = ReportBoard()
    board.publish(report(validators, entity_of=entity_of, endpoints_up=(True, False)))
    board.publish(report(None, settings=chain_settings(name="down")))  # rejection counters
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QuorumwatchCollector(board))
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    return labels


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
