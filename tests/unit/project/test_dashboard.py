"""The Grafana dashboard (deploy/grafana/signal-rag.json) and its provisioning by the
Compose `observability` profile (docker/grafana/) stay true to the bot.

Every PromQL query of the dashboard, in panels and in variables, is parsed with
promql-parser (a PromQL grammar: a typo fails here instead of drawing an empty panel) and
may select only series the bot exposes, listed as the Prometheus rules test in
test_docs.py lists them: a `BotMetrics` whose instruments have counted once, read back from
its exposition; plus Prometheus's own `up` and `ALERTS`. The label names a query selects or
groups by must be ones the metric carries: the labels column of the metrics table in
docs/operations.md (the code attaches labels at call sites across the service;
test_docs.py keeps that table complete), plus the scrape's `job` and `instance` and a
histogram bucket's `le`.

Grafana itself cannot run here (no image registry). The JSON is read through the dashboard
models of grafana-foundation-sdk for Grafana 11.3 (the compose file's image), generated from
Grafana's own dashboard and panel schemas: a key they do not know (a misspelt `fieldConfig`,
a panel option of another version) is dropped on the way, and the test fails on any key
lost. The rest is a structural check of the JSON and of the files the compose file mounts.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import promql_parser
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "deploy" / "grafana" / "signal-rag.json"
DATASOURCES = ROOT / "docker" / "grafana" / "datasources.yml"
PROVIDERS = ROOT / "docker" / "grafana" / "dashboards.yml"
COMPOSE = ROOT / "docker-compose.yml"
OPERATIONS = ROOT / "docs" / "operations.md"
RULES = ROOT / "docs" / "prometheus-rules.yml"
PANEL_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SCRAPE_LABELS = {"job", "instance"}
# Series Prometheus makes itself: the scrape's health, and the state of its alert rules
PROMETHEUS_SERIES = {"up": set(SCRAPE_LABELS),
                     "ALERTS": {"alertname", "alertstate", "severity"} | SCRAPE_LABELS}
# Grafana's global variables, replaced by a duration of the right form before parsing
GRAFANA_DURATIONS = {"__rate_interval": "1m", "__interval": "1m", "__range": "6h"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
Node = TypeVar("Node", bound=promql_parser.Expr)


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def exposed() -> set[str]:
    """Sample names in the bot's exposition once every instrument has a value."""
    from opentelemetry.metrics import Counter, Histogram
    from prometheus_client.parser import text_string_to_metric_families

    from agent.observability.metrics import BotMetrics

    metrics = BotMetrics()
    metrics.dependencies = lambda: {"model": True}
    for instrument in vars(metrics).values():
        if isinstance(instrument, Counter):
            instrument.add(1)
        elif isinstance(instrument, Histogram):
            instrument.record(0.1)
    text = metrics.exposition().decode()
    metrics.shutdown()
    return {sample.name for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name.startswith("signal_rag_")}


@pytest.fixture(scope="module")
def documented_labels() -> dict[str, set[str]]:
    """Metric name (counters with `_total`, histograms without suffix) → its label names,
    from the metrics table of docs/operations.md."""
    labels: dict[str, set[str]] = {}
    for line in OPERATIONS.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`signal_rag_"):
            continue
        names = re.findall(r"`(signal_rag_[a-z_]+)`", cells[0])
        outside_parentheses = re.sub(r"\([^)]*\)", "", cells[2])
        for name in names:
            labels[name] = set(re.findall(r"`([a-z_]+)`", outside_parentheses))
    assert len(labels) >= 15, "the metrics table of docs/operations.md was not found"
    return labels


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that is not a row, rows' nested (collapsed) panels included."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in variables(dashboard).values():
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            match = re.fullmatch(r"label_values\((.+),\s*([a-zA-Z_]\w*)\)", text.strip())
            assert match, f"variable {variable['name']}: only label_values(selector, label)"
            selector, label = match.groups()
            yield f"variable {variable['name']}", f"count by ({label}) ({selector})"


def substitute(expr: str, dashboard: dict[str, Any]) -> str:
    """Grafana's variables replaced by values of their form (a dashboard variable by its
    name as a label value: `$instance` → `var_instance`); an unknown one fails."""
    known = variables(dashboard)

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in GRAFANA_DURATIONS:
            return GRAFANA_DURATIONS[name]
        if name not in known:
            raise ValueError(f"unknown variable ${name}")
        return f"var_{name}"
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def nodes(expr: promql_parser.Expr, kind: type[Node]) -> list[Node]:
    """Every node of one kind in a parsed query (a range's selector included)."""
    found: list[Node] = []

    def visit(node: promql_parser.Expr) -> bool:
        if isinstance(node, kind):
            found.append(node)
        return True
    promql_parser.walk(expr, pre_visit=visit)
    return found


def family(name: str) -> str:
    """The metric a sample name belongs to: `x_total` and `x_bucket` are `x`'s."""
    for suffix in ("_total", "_created", *HISTOGRAM_SUFFIXES):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def problems(dashboard: dict[str, Any], exposed: set[str],
             documented: dict[str, set[str]]) -> list[str]:
    """What is wrong with the dashboard's queries: unparsable PromQL, series the bot does not
    expose, label names its metrics do not carry, an ALERTS filter that matches no rule."""
    rules = [r["alert"] for g in _load(RULES)["groups"] for r in g["rules"]]

    def allowed_labels(name: str) -> set[str] | None:
        if name in PROMETHEUS_SERIES:
            return PROMETHEUS_SERIES[name]
        if name not in exposed:
            return None
        for suffix in HISTOGRAM_SUFFIXES:
            base = name.removesuffix(suffix)
            if base != name and base in documented:
                return documented[base] | SCRAPE_LABELS | ({"le"} if suffix == "_bucket"
                                                            else set())
        return documented.get(name, set()) | SCRAPE_LABELS

    found: list[str] = []
    for where, query in queries(dashboard):
        try:
            text = substitute(query, dashboard)
        except ValueError as error:
            found.append(f"{where}: {error}")
            continue
        try:
            expr = promql_parser.parse(text)
        except ValueError as error:
            found.append(f"{where}: not PromQL: {error}")
            continue
        for selector in nodes(expr, promql_parser.VectorSelector):
            name = selector.name
            if name is None:
                found.append(f"{where}: a selector without a metric name")
                continue
            allowed = allowed_labels(name)
            if allowed is None:
                found.append(f"{where}: {name} is not exposed by the bot")
                continue
            for matcher in selector.matchers.matchers:
                if matcher.name not in allowed:
                    found.append(f"{where}: {name} has no label {matcher.name!r}")
                if name == "ALERTS" and matcher.name == "alertname" and not any(
                        re.fullmatch(matcher.value, rule) for rule in rules):
                    found.append(f"{where}: alertname {matcher.value!r} matches no rule "
                                 "in docs/prometheus-rules.yml")
        for aggregation in nodes(expr, promql_parser.AggregateExpr):
            modifier = aggregation.modifier
            if modifier is None or modifier.type != promql_parser.AggModifierType.By:
                continue
            for selector in nodes(aggregation.expr, promql_parser.VectorSelector):
                allowed = allowed_labels(selector.name or "") or set()
                for label in set(modifier.labels) - allowed:
                    found.append(f"{where}: by ({label}) but {selector.name} has no such "
                                 "label")
    return found


def test_every_query_uses_only_series_and_labels_the_bot_exposes(
        dashboard, exposed, documented_labels) -> None:
    assert sum(1 for _ in queries(dashboard)) >= 20
    assert problems(dashboard, exposed, documented_labels) == []


@pytest.mark.parametrize(("change", "expected"), [
    (lambda e: e.replace("signal_rag_messages_received_total",
                         "signal_rag_messages_recieved_total", 1),
     "signal_rag_messages_recieved_total is not exposed"),
    (lambda e: e.replace("sum by (route)", "sum by (reason)", 1),
     "by (reason) but signal_rag_messages_answered_total has no such label"),
    (lambda e: e.replace('route="answered"', 'outcome="answered"', 1),
     "signal_rag_messages_answered_total has no label 'outcome'"),
    (lambda e: e.replace("[$__range]", "[$__ragne]", 1), "unknown variable $__ragne"),
    (lambda e: e.replace("rate(", "rate((", 1), "not PromQL"),
    (lambda e: e.replace('alertname=~"SignalRag.*"', 'alertname=~"SignalRAG.*"', 1),
     "matches no rule"),
], ids=["metric", "by-label", "matcher-label", "variable", "syntax", "alert-name"])
def test_the_query_check_catches_each_kind_of_mistake(
        dashboard, exposed, documented_labels, change: Callable[[str], str],
        expected: str) -> None:
    broken = copy.deepcopy(dashboard)
    target = next(target for panel in panels(broken) for target in panel["targets"]
                  if change(target["expr"]) != target["expr"])
    target["expr"] = change(target["expr"])
    found = problems(broken, exposed, documented_labels)
    assert any(expected in p for p in found), found


def test_every_metric_the_bot_exposes_is_on_the_dashboard(dashboard, exposed) -> None:
    """A metric added to the bot shows up here as a gap, not later as a missing panel."""
    used = {family(s.name or "") for _, text in queries(dashboard)
            for s in nodes(promql_parser.parse(substitute(text, dashboard)),
                           promql_parser.VectorSelector)}
    missing = sorted({family(name) for name in exposed} - used)
    assert not missing, f"add a panel for: {missing}"


def keys_lost(original: Any, decoded: Any, path: str = "") -> list[str]:
    """Paths of the keys of `original` missing from `decoded`."""
    lost: list[str] = []
    if isinstance(original, dict) and isinstance(decoded, dict):
        for key, value in original.items():
            if key not in decoded:
                lost.append(f"{path}.{key}")
            else:
                lost += keys_lost(value, decoded[key], f"{path}.{key}")
    elif isinstance(original, list) and isinstance(decoded, list):
        for i, (item, back) in enumerate(zip(original, decoded, strict=True)):
            lost += keys_lost(item, back, f"{path}[{i}]")
    return lost


def through_grafana_schema(dashboard: dict[str, Any]) -> Any:
    """The dashboard decoded by Grafana 11.3's models (panel options and Prometheus queries
    by their plugins' schemas) and encoded back."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard

    register_default_plugins()
    return json.loads(json.dumps(Dashboard.from_json(dashboard), cls=JSONEncoder))


def test_grafanas_dashboard_schema_knows_every_key(dashboard) -> None:
    assert keys_lost(dashboard, through_grafana_schema(dashboard)) == []


def test_the_schema_check_catches_a_misspelt_key(dashboard) -> None:
    broken = copy.deepcopy(dashboard)
    stat, timeseries = (next(p for p in panels(broken) if p["type"] == kind)
                        for kind in ("stat", "timeseries"))
    stat["options"]["colourMode"] = stat["options"].pop("colorMode")
    timeseries["fieldConfig"]["defaults"]["custom"]["stack"] = "normal"
    timeseries["targets"][0]["legend"] = timeseries["targets"][0].pop("legendFormat")
    lost = keys_lost(broken, through_grafana_schema(broken))
    assert [p.rsplit(".", 1)[1] for p in lost] == ["colourMode", "stack", "legend"], lost


def test_every_query_of_the_bots_metrics_keeps_to_its_job_and_the_chosen_bots(
        dashboard) -> None:
    """With several bots (or other jobs) in one Prometheus, no panel mixes them silently."""
    [job] = _load(ROOT / "docker" / "prometheus.yml")["scrape_configs"]
    wanted = {("job", "MatchOp.Equal", job["job_name"]), ("instance", "MatchOp.Re", "var_instance")}
    for where, text in queries(dashboard):
        if where.startswith("variable"):
            continue
        for selector in nodes(promql_parser.parse(substitute(text, dashboard)),
                              promql_parser.VectorSelector):
            if selector.name == "ALERTS":  # an aggregate rule's alert has no instance
                continue
            matchers = {(m.name, str(m.op), m.value) for m in selector.matchers.matchers}
            assert wanted <= matchers, (where, selector.name, matchers)


def test_every_panel_has_a_title_a_datasource_and_queries(dashboard) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    ids += [p["id"] for row in dashboard["panels"] for p in row.get("panels", [])]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in dashboard["panels"]:
        assert panel.get("title", "").strip(), panel
    for panel in panels(dashboard):
        where = panel["title"]
        assert panel["type"] in {"timeseries", "stat", "state-timeline"}, where
        assert panel["datasource"] == PANEL_DATASOURCE, where
        assert panel.get("description", "").strip(), where
        targets = panel["targets"]
        assert targets, where
        assert len({t["refId"] for t in targets}) == len(targets), where
        for target in targets:
            assert target["datasource"] == PANEL_DATASOURCE, where
            assert target["expr"].strip(), where


def test_panels_fit_the_grid_without_overlapping(dashboard) -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0 and grid["y"] >= 0
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, (panel["title"], taken.get((x, y)))
                taken[x, y] = panel["title"]


def test_the_dashboard_is_read_only_and_identified(dashboard) -> None:
    assert dashboard["uid"] == "signal-rag" and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert dashboard["editable"] is False
    assert "id" not in dashboard or dashboard["id"] is None  # Grafana assigns it
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows[:2] == ["Traffic", "Latency"], rows


def test_the_datasource_variable_defaults_to_the_provisioned_prometheus(dashboard) -> None:
    [source] = _load(DATASOURCES)["datasources"]
    assert source["type"] == "prometheus" and source["access"] == "proxy"
    variable = variables(dashboard)["datasource"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    assert variable["current"]["value"] == source["uid"]
    # the profile's Prometheus, on the port it listens on in the compose network
    compose = _load(COMPOSE)
    assert source["url"] == "http://prometheus:9090"
    assert any(p.endswith(":9090") for p in compose["services"]["prometheus"]["ports"])
    interval = _load(ROOT / "docker" / "prometheus.yml")["global"]["scrape_interval"]
    assert source["jsonData"]["timeInterval"] == interval


def _grafana() -> dict[str, Any]:
    service: dict[str, Any] = _load(COMPOSE)["services"]["grafana"]
    return service


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path → host path of the service's bind mounts."""
    mounts = {}
    for volume in service["volumes"]:
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            mounts[target] = source
    return mounts


def test_the_provisioning_files_point_at_files_that_exist() -> None:
    service = _grafana()
    assert service["profiles"] == ["observability"]
    mounts = _mounts(service)
    for target, source in mounts.items():
        assert (ROOT / source).is_file(), source
        assert f"{source}:{target}:ro" in service["volumes"], "mounted read-only"
    assert mounts["/etc/grafana/provisioning/datasources/signal-rag.yml"] == \
        "./docker/grafana/datasources.yml"
    assert mounts["/etc/grafana/provisioning/dashboards/signal-rag.yml"] == \
        "./docker/grafana/dashboards.yml"
    [provider] = _load(PROVIDERS)["providers"]
    assert provider["type"] == "file" and provider["allowUiUpdates"] is False
    folder = provider["options"]["path"].rstrip("/")
    dashboards = {t: s for t, s in mounts.items() if t.startswith(folder + "/")}
    assert dashboards == {f"{folder}/signal-rag.json": "./deploy/grafana/signal-rag.json"}
    home = service["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home in dashboards
    assert "prometheus" in service["depends_on"]


def test_grafana_reports_nothing_outside_and_nobody_edits() -> None:
    env = _grafana()["environment"]
    for key in ("GF_ANALYTICS_REPORTING_ENABLED", "GF_ANALYTICS_CHECK_FOR_UPDATES",
                "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES", "GF_ANALYTICS_FEEDBACK_LINKS_ENABLED",
                "GF_NEWS_NEWS_FEED_ENABLED", "GF_SNAPSHOTS_EXTERNAL_ENABLED",
                "GF_PUBLIC_DASHBOARDS_ENABLED", "GF_USERS_ALLOW_SIGN_UP",
                "GF_AUTH_BASIC_ENABLED", "GF_PLUGINS_PLUGIN_ADMIN_ENABLED"):
        assert env[key] == "false", key
    for key in ("GF_SECURITY_DISABLE_GRAVATAR", "GF_PLUGINS_PUBLIC_KEY_RETRIEVAL_DISABLED",
                "GF_PLUGINS_PREINSTALL_DISABLED", "GF_AUTH_DISABLE_LOGIN_FORM"):
        assert env[key] == "true", key
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert not {"GF_INSTALL_PLUGINS", "GF_PLUGINS_PREINSTALL"} & set(env)
