"""The monitoring deployment (deploy/prometheus, deploy/grafana, deploy/compose.yaml) without
containers: the alert rules and the dashboard read only metrics a running engine exposes, every
alert has a severity and says what to do, expressions are PromQL-shaped, and the compose file
fits the repository (mounts that exist, the cluster configs' host names, the engines' settings).
promtool and docker compose run too where they are installed (not in CI)."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from nats.aio.client import Client as NatsClient

from consumers.snapshotting import default_store, take_snapshot
from engine.settings import Settings
from engine.stream import EventLog
from engram.cli.main import build_parser
from tests.histories import realistic_history
from tests.metrics_scrapes import get, metered, scrape
from tests.promql_shape import grafana_to_promql, shape

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "engram.json"
COMPOSE = DEPLOY / "compose.yaml"

PROMETHEUS_OWN = frozenset({"up", "ALERTS"})
"""Series Prometheus itself makes: a target's scrape health, the firing alerts."""
NATS_EXPORTER = frozenset({"gnatsd_healthz_status_value", "gnatsd_varz_connections"})
"""prometheus-nats-exporter's names (its -healthz collector and /varz's `connections`), taken
from its source; not checked against a running exporter here."""
SEVERITIES = frozenset({"warning", "critical"})


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def recorded() -> frozenset[str]:
    return frozenset(rule["record"] for rule in rules() if "record" in rule)


def panel_targets() -> Iterator[tuple[str, str]]:
    """(panel title, PromQL) of every panel's targets and of the dashboard's query variables."""
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], grafana_to_promql(target["expr"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", variable["definition"])
            assert inner, f"variable {variable['name']}: {variable['definition']}"
            yield f"${variable['name']}", inner.group(1)


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    parts = re.findall(r"(\d+)(ms|[smhdw])", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * units[u] for n, u in parts)


def cli_verbs() -> frozenset[str]:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return frozenset(sub.choices)


# -- the alert rules ----------------------------------------------------------------------------


def test_every_alert_has_a_severity_a_summary_a_runbook_and_a_for() -> None:
    """Each alert: severity warning or critical, a summary and a description saying what to do,
    a `for` of at least a minute (no page on one bad scrape), a unique name."""
    found = alerts()
    assert len(found) >= 10
    names = [a["alert"] for a in found]
    assert len(names) == len(set(names))
    for alert in found:
        name = alert["alert"]
        assert alert["labels"]["severity"] in SEVERITIES, name
        assert len(alert["annotations"]["summary"]) > 20, name
        assert "What to do" in alert["annotations"]["description"], name
        assert seconds(alert["for"]) >= 60, name


def test_the_runbooks_name_real_engram_commands() -> None:
    """Every `engram <verb>` an annotation tells the operator to run is a sub-command of the
    CLI, and most runbooks name one."""
    verbs = cli_verbs()
    naming = 0
    for alert in alerts():
        text = " ".join(alert["annotations"].values())
        named = re.findall(r"`engram ([a-z][a-z-]*)", text)
        assert set(named) <= verbs, (alert["alert"], set(named) - verbs)
        naming += bool(named)
    assert naming >= len(alerts()) - 2


def test_the_issue_asks_for_these_alerts() -> None:
    """Issue 17 point 3: lag (warning and critical), dead letters increasing, a degraded
    projection, no snapshot for too long, query p99 over 100 ms, NATS disconnected, memory over
    budget per namespace, and the engine down."""

    def severities(predicate: Any) -> set[str]:
        return {a["labels"]["severity"] for a in alerts() if predicate(a["expr"])}

    def reads(name: str) -> Any:
        return lambda expr: name in shape(expr).metrics

    assert severities(reads("engram_projection_lag_events")) == {"warning", "critical"}
    assert severities(reads("engram_dead_letters_total"))
    assert severities(reads("engram_projection_degraded")) == {"critical"}
    assert severities(reads("engram_snapshot_age_seconds"))
    assert severities(
        lambda e: (
            "histogram_quantile(0.99" in e
            and "engram_query_duration_seconds_bucket" in shape(e).metrics
            and re.search(r"\)\s*> 0\.1\b", e) is not None
        )
    )
    assert severities(reads("engram_nats_connected")) == {"critical"}
    budget = "namespace:engram_memory_budget_used:ratio"
    assert severities(reads(budget)) == {"warning", "critical"}
    (ratio,) = (r for r in rules() if r.get("record") == budget)
    assert {"engram_memory_rows", "engram_memory_vector_disk_bytes"} <= shape(ratio["expr"]).metrics
    assert severities(lambda e: re.fullmatch(r'up\{job="engram"\} == 0', e.strip())) == {"critical"}


def test_expressions_are_promql_shaped() -> None:
    """Every rule's and every panel's expression has balanced brackets and calls only PromQL
    functions; recording rules are named level:metric:operations."""
    for rule in rules():
        assert shape(rule["expr"]).problems == (), rule
    for title, expr in panel_targets():
        assert shape(expr).problems == (), (title, expr)
    for name in recorded():
        assert re.fullmatch(r"[a-z_]+:[a-z_]+(:[a-z_]+)?", name), name


def test_the_shape_check_can_fail() -> None:
    """The checker itself: a lost bracket, a misspelt function and a metric inside a label list
    or a matcher are told apart."""
    assert shape("sum(rate(x[5m])").problems
    assert shape("histogram_quantil(0.9, x)").problems == ("unknown function histogram_quantil",)
    found = shape('max by (instance) (a{job="b"}) > on (c) group_left (d) e offset 5m or f')
    assert found.metrics == {"a", "e", "f"} and found.functions == {"max"}


async def test_every_name_the_rules_and_the_dashboard_read_is_exposed_by_an_engine(
    event_log: EventLog, settings: Settings, nc: NatsClient, tmp_path: Path
) -> None:
    """The names come from a real engine's /metrics (after events, a snapshot and a /healthz,
    so the conditional series exist too): no alert or panel reads a name it does not serve,
    besides Prometheus' own series, the rules' recorded names and the NATS exporter's."""
    await event_log.append_many(realistic_history(0, 20))
    async with metered(settings, nc, tmp_path / "engine") as engine:
        snapshotter = settings.model_copy(update={"data_dir": tmp_path / "snapshotter"})
        await take_snapshot(nc, snapshotter, default_store(event_log.js, settings))
        assert (await get(engine, "/healthz")).status_code == 200
        exposition = await scrape(engine)
    exposed: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    for family in exposition.families:
        exposed.update(family.name + s for s in suffixes.get(family.type, ("",)))
        exposed.update(sample.name for sample in family.samples)
    assert "engram_snapshot_age_seconds" in exposed and "engram_event_loop_lag_seconds" in exposed
    allowed = exposed | recorded() | PROMETHEUS_OWN | NATS_EXPORTER
    for rule in rules():
        missing = shape(rule["expr"]).metrics - allowed
        assert not missing, (rule.get("alert") or rule.get("record"), missing)
    for title, expr in panel_targets():
        assert not shape(expr).metrics - allowed, (title, shape(expr).metrics - allowed)


# -- the dashboard ------------------------------------------------------------------------------


def test_the_dashboard_has_a_datasource_variable_and_the_panels_the_issue_asks_for() -> None:
    """deploy/grafana/engram.json: valid JSON, a Prometheus datasource variable every panel
    uses, unique panel ids, and panels for ingest rate, lag, query latency p50/p99 per verb,
    dead letters, snapshot age, memory per namespace, NATS connection and degraded projections."""
    dashboard = json.loads(DASHBOARD.read_text())
    (variable,) = (v for v in dashboard["templating"]["list"] if v["type"] == "datasource")
    assert variable["query"] == "prometheus"
    source = {"type": "prometheus", "uid": "${" + variable["name"] + "}"}
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == source, panel["title"]
            assert all(t["datasource"] == source for t in panel["targets"]), panel["title"]
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
    exprs = [expr for _, expr in panel_targets()]
    read = set().union(*(shape(expr).metrics for expr in exprs))
    assert {
        "engram_stream_last_sequence",
        "engram_projection_lag_events",
        "engram_query_duration_seconds_bucket",
        "engram_dead_letters_total",
        "engram_snapshot_age_seconds",
        "engram_memory_rows",
        "engram_nats_connected",
        "engram_projection_degraded",
    } <= read
    latency = [e for e in exprs if "engram_query_duration_seconds_bucket" in e]
    for quantile in ("0.5", "0.99"):
        assert any(f"histogram_quantile({quantile}, sum by (verb, le)" in e for e in latency)


# -- prometheus.yml and the compose file --------------------------------------------------------


def default(value: str) -> str:
    """A compose value with ``${VAR:-default}`` read as its default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def compose() -> dict[str, Any]:
    document: dict[str, Any] = load_yaml(COMPOSE)
    return document


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (a repository path for bind mounts, else a volume name)."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        found[target] = source
    return found


def host(url: str) -> str:
    return re.sub(r"^\w+://|:\d+$", "", url.split("/")[2] if "://" in url else url)


def test_compose_runs_the_shipped_cluster_configs_under_their_host_names() -> None:
    """Three official nats images, each on deploy/cluster/nats-<n>.conf (the configs the loopback
    test renders), named as the configs' server_name and routes name them, with the config's
    store directory on a volume."""
    services = compose()["services"]
    nodes = [f"engram-nats-{n}" for n in (1, 2, 3)]
    for n, node in enumerate(nodes, start=1):
        service = services[node]
        assert default(service["image"]).startswith("nats:"), service["image"]
        config_path = service["command"][service["command"].index("--config") + 1]
        conf = mounts(service)[config_path]
        assert (DEPLOY / conf).resolve() == (DEPLOY / "cluster" / f"nats-{n}.conf")
        text = (DEPLOY / conf).read_text()
        assert f'server_name: "{node}"' in text
        routes = re.findall(r'"nats://([\w-]+):6222"', text)
        assert sorted(routes) == nodes
        (store,) = re.findall(r'store_dir: "([^"]+)"', text)
        assert store in mounts(service) and mounts(service)[store] in compose()["volumes"]


def test_compose_engines_run_serve_with_metrics_on_an_r3_stream_of_the_cluster() -> None:
    """Both engines: built by deploy/Dockerfile, `engram serve --metrics 0.0.0.0:9464` as the
    CLI parses it, settings that load (R3, every node's URL), their own data volume; Prometheus
    scrapes exactly those ports, and the NATS exporters the three nodes."""
    document = compose()
    services = document["services"]
    engines = ["engine-1", "engine-2"]
    scrape = {job["job_name"]: job for job in load_yaml(PROMETHEUS)["scrape_configs"]}
    targets: set[str] = set()
    for name in engines:
        service = services[name]
        assert (ROOT / service["build"]["dockerfile"]).is_file()
        assert (DEPLOY / service["build"]["context"]).resolve() == ROOT
        args = build_parser().parse_args(service["command"])
        assert args.verb == "serve" and args.metrics == "0.0.0.0:9464"
        environ = {k: str(v) for k, v in service["environment"].items() if v is not None}
        loaded = Settings.load(environ)
        assert loaded.stream.replicas == 3
        urls = str(loaded.nats.url).split(",")
        assert {host(u) for u in urls} == {f"engram-nats-{n}" for n in (1, 2, 3)}
        data = mounts(service)[environ["ENGRAM_DATA_DIR"]]
        assert data in document["volumes"]
        targets.add(f"{name}:{args.metrics.rsplit(':', 1)[1]}")
    assert mounts(services["engine-1"]) != mounts(services["engine-2"])
    scraped = {t for c in scrape["engram"]["static_configs"] for t in c["targets"]}
    assert scraped == targets
    exporters = {}
    for name, service in services.items():
        if "prometheus-nats-exporter" in default(service["image"]):
            exporters[name] = host(service["command"][-1])
            assert "-healthz" in service["command"] and "-varz" in service["command"]
    assert sorted(exporters.values()) == [f"engram-nats-{n}" for n in (1, 2, 3)]
    nats_targets = {t for c in scrape["nats"]["static_configs"] for t in c["targets"]}
    assert nats_targets == {f"{name}:7777" for name in exporters}


def test_compose_mounts_exist_and_prometheus_and_grafana_find_their_files() -> None:
    """Every bind mount's source exists in the repository and every named volume is declared;
    host ports are distinct; depends_on names services; Prometheus gets its rule file beside its
    config (rule_files is relative); Grafana's provisioning points at the dashboard's mount and
    at the Prometheus service."""
    document = compose()
    services = document["services"]
    ports: list[str] = []
    for name, service in services.items():
        for source in mounts(service).values():
            if source.startswith("."):
                assert (DEPLOY / source).exists(), (name, source)
            else:
                assert source in document["volumes"], (name, source)
        ports += [str(p).split(":")[0] for p in service.get("ports", [])]
        assert set(service.get("depends_on", [])) <= set(services), name
    assert len(ports) == len(set(ports))
    prometheus = mounts(services["prometheus"])
    config_dir = PurePosixPath("/etc/prometheus")
    assert prometheus[str(config_dir / "prometheus.yml")] == "./prometheus/prometheus.yml"
    for rule_file in load_yaml(PROMETHEUS)["rule_files"]:
        assert (PROMETHEUS.parent / rule_file).is_file()
        assert prometheus[str(config_dir / rule_file)] == f"./prometheus/{rule_file}"
    grafana = mounts(services["grafana"])
    provisioning = DEPLOY / grafana["/etc/grafana/provisioning"]
    (provider,) = load_yaml(provisioning / "dashboards" / "engram.yml")["providers"]
    dashboard_in = {t: s for t, s in grafana.items() if s == "./grafana/engram.json"}
    assert [str(PurePosixPath(t).parent) for t in dashboard_in] == [provider["options"]["path"]]
    (datasource,) = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert host(datasource["url"]) == "prometheus" and datasource["type"] == "prometheus"
    assert services["prometheus"]["ports"] == ["9090:9090"]


def test_the_dockerfile_copies_what_exists_and_the_context_lets_it_through() -> None:
    """deploy/Dockerfile copies sources that exist, and the root .dockerignore lets each in."""
    text = (DEPLOY / "Dockerfile").read_text()
    ignore = (ROOT / ".dockerignore").read_text().split()
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", text, flags=re.MULTILINE)
    sources = [s for line in copied for s in line.split()]
    assert {"pyproject.toml", "engine", "projections", "consumers", "engram"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source
        assert f"!{source}" in ignore or f"!{source}/" in ignore, source


# -- the real tools, where installed (not in CI) ------------------------------------------------


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_checks_and_unit_tests_pass() -> None:
    """promtool check rules / check config, and the rule unit tests of alerts_test.yml."""
    for argv in (
        ("check", "rules", str(ALERTS)),
        ("check", "config", str(PROMETHEUS)),
        ("test", "rules", str(ALERT_TESTS)),
    ):
        done = run("promtool", *argv)
        assert done.returncode == 0, done.stdout + done.stderr


def compose_command() -> list[str] | None:
    if shutil.which("docker") and run("docker", "compose", "version").returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


@pytest.mark.skipif(compose_command() is None, reason="neither docker compose nor docker-compose")
def test_docker_compose_validates_the_file() -> None:
    """`docker compose config` accepts deploy/compose.yaml (no daemon needed)."""
    command = compose_command()
    assert command is not None
    done = run(*command, "-f", str(COMPOSE), "config", "-q")
    assert done.returncode == 0, done.stdout + done.stderr
