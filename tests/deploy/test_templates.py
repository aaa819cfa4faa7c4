"""The deployment files: Event Grid filters from the relevance table, Bicep structure (no Bicep compiler is
installable here), Dockerfile, systemd unit and Kubernetes manifest lint, and the entry point they all run."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml
from click.testing import CliRunner
from daemonkit import tenant
from yamllint import linter
from yamllint.config import YamlLintConfig

from plmon.monitor.cli import cli
from plmon.monitor.config import ScaleConfig, load_config, parse_config
from plmon.monitor.events.relevance import MAX_FILTER_VALUES, operation_name_contains_filters, operation_name_filters
from plmon.monitor.state.scaleout import INVENTORY_CONTAINER_ENV, SHARD_QUEUE_ENV, container_name, queue_name

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BICEP = DEPLOY / "bicep"
PLMON = Path(sys.executable).parent / "plmon"
SECRETS = {"PLMON_SERVER_SECRET": "srv-secret", "PLMON_WEBHOOK_URL": "http://127.0.0.1:9/hook",
           "PLMON_WEBHOOK_SECRET": "hook-secret"}


def _filters_json() -> str:
    result = CliRunner().invoke(cli, ["deploy", "event-filters"])
    assert result.exit_code == 0, result.output
    return result.output


def test_event_filters_cover_the_relevance_table_within_limits() -> None:
    """`plmon deploy event-filters` emits every relevance prefix once, at most 25 values per event subscription."""
    doc = json.loads(_filters_json())
    subs = doc["parameters"]["eventFilters"]["value"]
    assert all(len(s["values"]) <= MAX_FILTER_VALUES for s in subs)
    assert all(s["key"] == "data.operationName" for s in subs)
    begins = [v for s in subs if s["operator"] == "StringBeginsWith" for v in s["values"]]
    assert begins == [v for chunk in operation_name_filters() for v in chunk]
    contains = [v for s in subs if s["operator"] == "StringContains" for v in s["values"]]
    assert contains == [v for chunk in operation_name_contains_filters() for v in chunk]
    assert len({s["name"] for s in subs}) == len(subs)
    only = json.loads(CliRunner().invoke(cli, ["deploy", "event-filters", "--values-only"]).output)
    assert only == subs


def test_committed_filter_parameters_match_the_cli() -> None:
    """deploy/bicep/event-filters.parameters.json is exactly what the CLI prints (regenerate when the table changes)."""
    assert (BICEP / "event-filters.parameters.json").read_text() == _filters_json()


def test_deploy_cli_rejects_bad_options() -> None:
    """A wrong option is one line and exit 2, not a traceback."""
    proc = subprocess.run([str(PLMON), "deploy", "event-filters", "--nope"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "--nope" in proc.stderr


def _params(text: str) -> set[str]:
    return set(re.findall(r"^param (\w+) ", text, re.M))


def test_bicep_structure() -> None:
    """The templates declare what the deployment needs (Flex plan, identity, MG-scope Reader, KV references,
    dead-lettering) and use every parameter they declare; the filter objects' fields match the CLI's."""
    main, eg, mg = ((BICEP / n).read_text() for n in ("main.bicep", "eventgrid.bicep", "mg-reader.bicep"))
    for text in (main, eg, mg):
        for p in _params(text):
            assert len(re.findall(rf"\b{p}\b", text)) >= 2, f"param {p} declared but not used"
        assert text.count("{") == text.count("}") and text.count("[") == text.count("]")
    assert "targetScope = 'managementGroup'" in mg and "acdd72a7-3385-48ef-bd42-f606fba81ae7" in mg  # Reader
    assert "name: 'FC1'" in main and "tier: 'FlexConsumption'" in main and "functionAppConfig" in main
    assert "Microsoft.ManagedIdentity/userAssignedIdentities" in main
    assert main.count("@Microsoft.KeyVault(") == 2 and "keyVaultReferenceIdentity" in main
    assert "allowSharedKeyAccess: false" in main
    assert "module eventGrid 'eventgrid.bicep'" in main
    module_args = set(re.findall(r"^    (\w+): ", main.split("module eventGrid", 1)[1].split("\n}\n", 1)[0], re.M))
    assert module_args <= _params(eg)
    assert "deadLetterDestination" in eg and "Microsoft.EventGrid/systemTopics" in eg
    assert "if (createTopic)" in eg  # an existing system topic is reused: one per subscription
    fields = set(re.findall(r"\bf\.(\w+)", eg))
    assert fields == set(json.loads(_filters_json())["parameters"]["eventFilters"]["value"][0])
    # The queue and app-setting names the Function app reads are the ones Bicep sets.
    app = (DEPLOY / "azure-function" / "function_app.py").read_text()
    for setting in ("PLMON_COLLECTION_SCHEDULE", "PLMON_EVENT_QUEUE", "PLMON_QUEUE"):
        assert setting in app and f"'{setting}" in main


def test_dockerfile_rules() -> None:
    """The image is slim, runs as a numeric non-root user, keeps state on a volume and checks /healthz."""
    text = (DEPLOY / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms and all(f.endswith("-slim") or f.endswith("-slim AS build") or "slim" in f for f in froms)
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert 'VOLUME ["/var/lib/plmon"]' in text and "PLMON_STATE_URL=sqlite:////var/lib/plmon/" in text
    assert "HEALTHCHECK" in text and "/healthz" in text
    for src in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for path in src.split():
            assert (ROOT / path).exists(), f"COPY source {path} missing"


def test_systemd_unit_verifies() -> None:
    """systemd-analyze verify accepts the unit (ExecStart pointed at this venv's plmon)."""
    text = (DEPLOY / "plmon.service").read_text()
    assert "DynamicUser=yes" in text and "StateDirectory=plmon" in text and "RestartPreventExitStatus=2" in text
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze missing: apt-get install systemd"
    unit = Path(os.environ.get("TMPDIR", "/tmp")) / f"plmon-test-{os.getpid()}.service"
    unit.write_text(text.replace("/usr/local/bin/plmon", str(PLMON)).replace("EnvironmentFile=", "EnvironmentFile=-"))
    try:
        proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    finally:
        unit.unlink()
    problems = [line for line in proc.stderr.splitlines() if unit.name in line]
    assert proc.returncode == 0 and problems == [], proc.stderr


def test_kubernetes_manifest() -> None:
    """The Deployment probes /healthz and /readyz on the served port, runs non-root, and takes secrets from a Secret."""
    path = DEPLOY / "kubernetes" / "plmon.yaml"
    docs = {d["kind"]: d for d in yaml.safe_load_all(path.read_text())}
    assert {"Secret", "ConfigMap", "Deployment", "Service", "PersistentVolumeClaim", "ServiceAccount"} <= set(docs)
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    [c] = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    port = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["envFrom"] == [{"secretRef": {"name": docs["Secret"]["metadata"]["name"]}}]
    cfg = parse_config(yaml.safe_load(docs["ConfigMap"]["data"]["plmon.yaml"]),
                       env={**SECRETS, "PLMON_STATE_URL": "sqlite:///x.db"})
    assert cfg.server.port == port["http"] == 8080
    assert set(docs["Secret"]["stringData"]) == set(SECRETS)


def test_yaml_files_lint_clean() -> None:
    """yamllint finds nothing in the deployment YAML."""
    conf = YamlLintConfig("{extends: default, rules: {line-length: {max: 120}, document-start: disable, "
                          "comments: {min-spaces-from-content: 1}}}")
    for path in (DEPLOY / "kubernetes" / "plmon.yaml", DEPLOY / "kubernetes" / "plmon-shared.yaml",
                 DEPLOY / "plmon.yaml", DEPLOY / "azure-function" / "plmon.yaml"):
        problems = list(linter.run(path.read_text(), conf, str(path)))
        assert problems == [], f"{path}: {problems}"


# Built-in role definition ids (the same in every Azure cloud).
STORAGE_ROLES = {"b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
                 "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
                 "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor"}


def _bicep_var(text: str, name: str) -> str:
    m = re.search(rf"^var {name} = '([^']+)'$", text, re.M)
    assert m, f"var {name} missing"
    return m.group(1)


def test_bicep_scaleout_storage_settings_and_roles() -> None:
    """Issue 15: main.bicep creates the inventory container and the shard queue under the names plmon derives from
    the Function's state.url prefix, passes them in the app settings wiring.py reads, and the identity holds the
    blob, queue and table data roles on that account (and no broader storage role)."""
    main = (BICEP / "main.bicep").read_text()
    cfg = load_config(DEPLOY / "azure-function" / "plmon.yaml", env={**SECRETS, "PLMON_STATE_ACCOUNT": "acct"})
    prefix = cfg.state.url.rsplit("/", 1)[1]
    assert cfg.shared
    container, queue = _bicep_var(main, "inventoryContainerName"), _bicep_var(main, "shardQueueName")
    assert (container, queue) == (container_name(prefix), queue_name(prefix)) == ("plmon-inventory", "plmon-shards")
    assert re.search(r"resource inventoryContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@[^']+'"
                     r" = \{\n  parent: blobService\n  name: inventoryContainerName\n", main)
    assert re.search(r"resource shardQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@[^']+' = \{\n"
                     r"  parent: queueService\n  name: shardQueueName\n", main)
    assert f"{{ name: '{INVENTORY_CONTAINER_ENV}', value: inventoryContainer.name }}" in main
    assert f"{{ name: '{SHARD_QUEUE_ENV}', value: shardQueue.name }}" in main
    # The storage roles: assigned to the identity, scoped to this account, all three data planes.
    block = main.split("resource storageRoles ", 1)[1].split("\n}]\n", 1)[0]
    assigned = {r for r in STORAGE_ROLES if r in main}
    assert assigned == set(STORAGE_ROLES)
    assert all(f"roles.{k}" in block for k in ("storageBlobDataOwner", "storageQueueDataContributor",
                                                "storageTableDataContributor"))
    assert "scope: storage\n" in block and "principalId: identity.properties.principalId" in block
    # Least privilege: no control-plane or account-key role on the storage account.
    for broad in ("17d1049b-9a84-46fb-8f53-869881c3d3ab",   # Storage Account Contributor
                  "81a9662b-bebf-436f-a333-f67b29880f12",   # Storage Account Key Operator Service Role
                  "b24988ac-6180-42a0-ab88-20f7382dd24c",   # Contributor
                  "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"):  # Owner
        assert broad not in main


def _shared_manifest() -> dict[str, dict]:  # type: ignore[type-arg]
    path = DEPLOY / "kubernetes" / "plmon-shared.yaml"
    docs = list(yaml.safe_load_all(path.read_text()))
    kinds = [d["kind"] for d in docs]
    assert len(kinds) == len(set(kinds))
    return {d["kind"]: d for d in docs}


def test_kubernetes_shared_variant_runs_three_replicas() -> None:
    """plmon-shared.yaml: 3 replicas on a Table store, no ReadWriteOnce volume, each replica named after its pod (the
    lease holder and event claimer), ready on /readyz, a PodDisruptionBudget that keeps two up during a drain."""
    docs = _shared_manifest()
    assert {"Secret", "ConfigMap", "Deployment", "Service", "ServiceAccount", "PodDisruptionBudget"} <= set(docs)
    assert "PersistentVolumeClaim" not in docs
    assert "ReadWriteOnce" not in (DEPLOY / "kubernetes" / "plmon-shared.yaml").read_text()
    dep = docs["Deployment"]["spec"]
    assert dep["replicas"] == 3
    assert dep["strategy"]["type"] == "RollingUpdate" and dep["strategy"]["rollingUpdate"]["maxUnavailable"] == 1
    pod = dep["template"]["spec"]
    assert all("persistentVolumeClaim" not in v for v in pod["volumes"])
    [c] = pod["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert env["PLMON_INSTANCE_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert pod["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["envFrom"] == [{"secretRef": {"name": docs["Secret"]["metadata"]["name"]}}]
    assert dep["template"]["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    labels = dep["selector"]["matchLabels"]
    pdb = docs["PodDisruptionBudget"]
    assert pdb["apiVersion"] == "policy/v1" and pdb["spec"]["selector"]["matchLabels"] == labels
    assert 1 <= pdb["spec"]["minAvailable"] < dep["replicas"]
    assert docs["Service"]["spec"]["selector"] == labels
    cfg = parse_config(yaml.safe_load(docs["ConfigMap"]["data"]["plmon.yaml"]),
                       env={**SECRETS, "PLMON_STATE_ACCOUNT": env["PLMON_STATE_ACCOUNT"]["value"]})
    assert cfg.state.url.startswith("azuretables://") and cfg.shared
    assert cfg.server.port == {p["name"]: p["containerPort"] for p in c["ports"]}["http"]


def _scale_blocks() -> dict[str, tuple[dict, dict[str, str]]]:  # type: ignore[type-arg]
    """Every shipped config with the environment it is deployed with."""
    tables = {**SECRETS, "PLMON_STATE_ACCOUNT": "acct", "PLMON_STATE_URL": "azuretables://acct/plmon"}
    out = {}
    for path in (DEPLOY / "plmon.yaml", DEPLOY / "azure-function" / "plmon.yaml"):
        out[str(path.relative_to(ROOT))] = (yaml.safe_load(path.read_text()), tables)
    for path in (DEPLOY / "kubernetes" / "plmon.yaml", DEPLOY / "kubernetes" / "plmon-shared.yaml"):
        cm = next(d for d in yaml.safe_load_all(path.read_text()) if d["kind"] == "ConfigMap")
        out[str(path.relative_to(ROOT))] = (yaml.safe_load(cm["data"]["plmon.yaml"]), tables)
    return out


def test_shipped_scale_blocks_parse_with_their_defaults() -> None:
    """Every scale: key in the shipped configs (commented-out ones too) is one monitor/config.py parses, with the
    default value it documents; deploy/plmon.yaml's block still parses on SQLite (ignored there)."""
    defaults = ScaleConfig()
    seen = 0
    for name, (data, env) in _scale_blocks().items():
        if "scale" not in data:
            continue
        seen += 1
        cfg = parse_config(data, env=env)
        assert set(data["scale"]) <= set(ScaleConfig.model_fields), name
        for key in data["scale"]:
            if key != "shared_inventory":
                assert getattr(cfg.scale, key) == getattr(defaults, key), f"{name}: scale.{key} is not the default"
    assert seen >= 3
    text = (DEPLOY / "plmon.yaml").read_text()
    scale = text.split("\nscale:\n", 1)[1]
    uncommented = re.sub(r"^  # (\w+:)", r"  \1", scale, flags=re.M)
    data = yaml.safe_load("scale:\n" + uncommented)
    assert "shared_inventory" in data["scale"]
    assert parse_config(data | {"state": {"url": "azuretables://acct/plmon"}}).shared
    on_sqlite = yaml.safe_load(text)
    assert not parse_config(on_sqlite, env={**SECRETS, "PLMON_STATE_URL": "sqlite:///x.db"}).shared


def test_deploy_docs_name_files_that_exist() -> None:
    """Every deploy/ file docs/deploy.md and the README name exists, and the docs name both Kubernetes variants."""
    for doc in (ROOT / "docs" / "deploy.md", ROOT / "README.md"):
        text = doc.read_text()
        for ref in set(re.findall(r"`(deploy/[\w./-]+\.\w+)`", text)):
            assert (ROOT / ref).exists(), f"{doc.name} names {ref}"
    text = (ROOT / "docs" / "deploy.md").read_text()
    assert "`deploy/kubernetes/plmon.yaml`" in text and "`deploy/kubernetes/plmon-shared.yaml`" in text


def test_kubernetes_shared_variant_serves_as_a_named_replica(tmp_path: Path) -> None:
    """The shared variant's config and pod environment, started as its container starts (plmon serve, the pod's
    name as PLMON_INSTANCE_ID) on Azurite instead of the account (a connection string: no workload identity here):
    ready on /readyz, which names the replica and its schedule lease, and a clean exit on SIGTERM."""
    import azurite

    docs = _shared_manifest()
    [c] = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    pod_env = {e["name"]: e.get("value", "plmon-7d9f-abcde") for e in c["env"]}  # the fieldRef: a pod's name
    text = docs["ConfigMap"]["data"]["plmon.yaml"]
    assert 'url: "azuretables://${PLMON_STATE_ACCOUNT}/plmon"' in text
    prefix = azurite.unique_prefix()
    (tmp_path / "plmon.yaml").write_text(text.replace("azuretables://${PLMON_STATE_ACCOUNT}/plmon",
                                                      f"azuretables:///{prefix}"))
    port = _free_port()
    env = {**os.environ, **SECRETS, **pod_env, "PLMON_TABLES_CONNECTION_STRING": azurite.connection_string()}
    args = [str(PLMON), *[a.replace("/etc/plmon/plmon.yaml", str(tmp_path / "plmon.yaml")) for a in c["args"]],
            "--from", str(tenant(tmp_path / "t")), "--host", "127.0.0.1", "--port", str(port)]
    with _serving(args, env, f"http://127.0.0.1:{port}{c['readinessProbe']['httpGet']['path']}", 60) as ready:
        body = ready.json()
        assert body["instance"] == "plmon-7d9f-abcde"
        assert body["schedule"]["holder"] == "plmon-7d9f-abcde" and body["blob"] == "ok"


@contextmanager
def _serving(args: list[str], env: dict[str, str], ready_url: str, seconds: float) -> Iterator[httpx.Response]:
    """``plmon serve`` as the deployment runs it, once ``ready_url`` answers 200 (that answer); on leaving,
    SIGTERM, and the process must exit 0 (a drained shutdown, as the orchestrator expects)."""
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + seconds
        ready = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(ready_url, timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        assert ready is not None and ready.status_code == 200, proc.stderr.read() if proc.poll() is not None else ""
        yield ready
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    assert proc.returncode == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_container_entry_point_serves_health(tmp_path: Path) -> None:
    """The command the image, unit and manifest run (plmon serve with deploy/plmon.yaml) becomes healthy and
    ready, passes the Dockerfile's own HEALTHCHECK command, and exits 0 on SIGTERM."""
    port = _free_port()
    text = (DEPLOY / "Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    health = json.loads(re.search(r"CMD (\[\"python\".*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    env = {**os.environ, **SECRETS, "PLMON_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}"}
    args = [str(PLMON), *[a.replace("/etc/plmon/plmon.yaml", str(DEPLOY / "plmon.yaml")) for a in cmd],
            "--from", str(tenant(tmp_path / "t")), "--host", "127.0.0.1", "--port", str(port)]
    with _serving(args, env, f"http://127.0.0.1:{port}/readyz", 30):
        check = [sys.executable if health[0] == "python" else health[0],
                 *[a.replace("127.0.0.1:8080", f"127.0.0.1:{port}") for a in health[1:]]]
        assert subprocess.run(check, timeout=30).returncode == 0, shlex.join(check)


# --- Azure Monitor Logs / Sentinel (issue 16 item 2) ------------------------------------------------

SENTINEL = DEPLOY / "sentinel"


def _monitor_columns() -> list[tuple[str, str]]:
    text = (BICEP / "monitor.bicep").read_text()
    return re.findall(r"^  \{ name: '(\w+)', type: '(\w+)' \}$", text, re.M)


def test_monitor_bicep_declares_the_rows_plmon_sends() -> None:
    """monitor.bicep's table and DCR stream declare exactly the channel's columns, the DCR routes the stream to the
    workspace, and plmon's identity gets Monitoring Metrics Publisher on the DCR itself."""
    from plmon.alerts.azure_monitor import COLUMNS

    text = (BICEP / "monitor.bicep").read_text()
    for p in _params(text):
        assert len(re.findall(rf"\b{p}\b", text)) >= 2, f"param {p} declared but not used"
    assert text.count("{") == text.count("}") and text.count("[") == text.count("]")
    assert _monitor_columns() == list(COLUMNS)
    assert "var tableName = 'PlmonFindings_CL'" in text and "var streamName = 'Custom-${tableName}'" in text
    assert "Microsoft.OperationalInsights/workspaces/tables@" in text and "columns: [for c in columns:" in text
    assert "type: c.type == 'datetime' ? 'dateTime' : c.type" in text  # the table's spelling of the date type
    dcr = text.split("resource rule 'Microsoft.Insights/dataCollectionRules@", 1)[1].split("\n}\n", 1)[0]
    assert "kind: 'Direct'" in dcr  # its own logs ingestion endpoint: no separate DCE
    assert "'${streamName}': {\n        columns: columns" in dcr and "outputStream: streamName" in dcr
    assert "workspaceResourceId: workspace.id" in dcr
    role = text.split("resource publisher 'Microsoft.Authorization/roleAssignments@", 1)[1].split("\n}\n", 1)[0]
    assert "scope: rule" in role and "monitoringMetricsPublisher" in role and "principalId: principalId" in role
    assert "var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'" in text
    for output in ("logsIngestionEndpoint", "dcrImmutableId", "stream"):
        assert re.search(rf"^output {output} string = ", text, re.M)


def test_main_bicep_wires_the_monitor_module_behind_a_parameter() -> None:
    """main.bicep deploys monitor.bicep only when logAnalyticsWorkspaceId is set, in the workspace's resource group,
    with every parameter monitor.bicep requires, and outputs the channel's endpoint and rule id."""
    main, monitor = (BICEP / "main.bicep").read_text(), (BICEP / "monitor.bicep").read_text()
    assert "param logAnalyticsWorkspaceId string = ''" in main
    assert "module monitor 'monitor.bicep' = if (!empty(logAnalyticsWorkspaceId))" in main
    block = main.split("module monitor 'monitor.bicep'", 1)[1].split("\n}\n", 1)[0]
    assert "scope: resourceGroup(split(logAnalyticsWorkspaceId, '/')[2], split(logAnalyticsWorkspaceId, '/')[4])" \
        in block
    args = set(re.findall(r"^    (\w+): ", block, re.M))
    required = set(re.findall(r"^param (\w+) \w+$", monitor, re.M))  # no default value
    assert required <= args <= _params(monitor)
    assert "principalId: identity.properties.principalId" in block
    for output in ("logsIngestionEndpoint", "dcrImmutableId"):
        assert f"monitor.outputs.{output}" in main


def _kql_names(query: str) -> tuple[set[str], set[str]]:
    """(PascalCase names a query reads, names it defines), strings and comments aside; KQL's own functions and
    operators are lower-case, so every PascalCase name must be a column of the table or one the query defines."""
    code = re.sub(r'"[^"]*"', '""', re.sub(r"//[^\n]*", "", query))
    return set(re.findall(r"\b[A-Z]\w*\b", code)), set(re.findall(r"\b(\w+)\s*=(?!=)", code))


def test_sentinel_queries_and_rule_read_only_columns_of_the_table() -> None:
    """deploy/sentinel/: every query and the analytics rule read PlmonFindings_CL's real columns, and the rule maps
    the resource entity and custom details to columns its query projects."""
    from plmon.alerts.azure_monitor import COLUMNS

    columns = {name for name, _ in COLUMNS} | {"PlmonFindings_CL"}
    queries = [q for q in (SENTINEL / "queries.kql").read_text().split("\n\n") if "PlmonFindings_CL\n|" in q]
    assert len(queries) >= 4
    template = json.loads((SENTINEL / "analytics-rule.json").read_text())
    [rule] = template["resources"]
    assert rule["type"] == "Microsoft.SecurityInsights/alertRules" and rule["kind"] == "Scheduled"
    props = rule["properties"]
    for query in [*queries, props["query"]]:
        used, defined = _kql_names(query)
        assert used <= columns | defined, f"unknown columns {sorted(used - columns - defined)} in:\n{query}"
    projected = set(re.findall(r"\b\w+\b", props["query"].split("| project", 1)[1]))
    assert {m["columnName"] for e in props["entityMappings"] for m in e["fieldMappings"]} <= projected
    assert set(props["customDetails"].values()) <= projected
    assert {"queryFrequency", "queryPeriod", "triggerOperator", "triggerThreshold", "severity"} <= set(props)
    assert template["parameters"].keys() == {"workspaceName", "enabled"}


def test_monitor_docs_name_the_deploy_files() -> None:
    """docs/alerts.md names the Bicep module and the Sentinel files, and they exist."""
    text = (ROOT / "docs" / "alerts.md").read_text()
    refs = set(re.findall(r"`(deploy/[\w./-]+\.\w+)`", text))
    assert {"deploy/bicep/monitor.bicep", "deploy/sentinel/queries.kql", "deploy/sentinel/analytics-rule.json"} <= refs
    for ref in refs:
        assert (ROOT / ref).exists(), ref
