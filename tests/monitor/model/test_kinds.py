"""The kinds table: every type whose public access plmon judges is read at its spec's api-version and watched."""

from __future__ import annotations

import json
import typing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from daemonkit import config, event
from tenantkit import SUB, endpoint, provider_connection, sub_list, write_tenant

from plmon.checks.public_access import RULES
from plmon.monitor.collect.azure.api_versions import TARGET_VERSIONS
from plmon.monitor.collect.plan import LISTED_TARGET_TYPES, SUBSCRIPTION_LISTS
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.events.parse import ResourceEvent
from plmon.monitor.events.relevance import (
    is_relevant,
    is_relevant_operation,
    operation_name_contains_filters,
    operation_name_filters,
    resource_to_reread,
)
from plmon.monitor.model.arm_id import parse_id
from plmon.monitor.model.kinds import KINDS, RECORDS, judged_types, kind_of
from plmon.monitor.model.snapshot import INDEX_SOURCES, Resource, Snapshot
from plmon.monitor.service.daemon import Daemon
from plmon.monitor.state.intake import SqliteIntake
from plmon.monitor.state.sqlite import SqliteStore
from plmon.monitor.state.store import FindingState

RG = f"/subscriptions/{SUB}/resourceGroups/rg1/providers"
PUBLIC_CHECK = "public-access.enabled-with-private-endpoint"


def _event(operation: str, uri: str) -> ResourceEvent:
    return ResourceEvent(
        id="e", event_type="Microsoft.Resources.ResourceWriteSuccess", subject=parse_id(uri),
        time=datetime(2024, 5, 1, tzinfo=UTC), source="", schema="eventgrid", operation_name=operation,
        resource=parse_id(uri))


def _passes_event_grid(operation: str) -> bool:
    """What Event Grid lets through with the filters `plmon deploy event-filters` generates."""
    op = operation.lower()
    begins = any(op.startswith(v.lower()) for chunk in operation_name_filters() for v in chunk)
    contains = any(v.lower() in op for chunk in operation_name_contains_filters() for v in chunk)
    return begins or contains


def _target_id(type_: str, name: str = "t1") -> str:
    """A resource id of ``type_`` (nested types get a parent name per level)."""
    provider, *types = type_.split("/")
    return f"{RG}/{provider}/" + "/".join(f"{t}/{name}" for t in types)


@pytest.mark.parametrize("type_", sorted(RULES[k].type for k in RULES))
def test_every_judged_type_is_watched(type_: str) -> None:
    """A write or delete of a judged type passes the Event Grid filters, counts as relevant and re-reads it."""
    uri = _target_id(type_)
    for verb in ("write", "delete"):
        op = f"{type_}/{verb}"
        assert _passes_event_grid(op), op
        assert is_relevant_operation(op) and is_relevant(_event(op, uri)), op
    assert resource_to_reread(_event(f"{type_}/write", uri)).key == parse_id(uri).key
    conn = f"{uri}/privateEndpointConnections/c1"
    assert resource_to_reread(_event(f"{type_}/privateEndpointConnections/write", conn)).key == parse_id(uri).key


@pytest.mark.parametrize("key", sorted(RULES))
def test_every_judged_type_is_read_with_its_spec_api_version(key: str) -> None:
    """Live reads of a judged type ask for the api-version whose REST spec its public-access rule was taken from."""
    rule = RULES[key]
    kind = kind_of(rule.type)
    assert kind is not None and kind.judged and kind.listed_as is None
    assert TARGET_VERSIONS[key] == rule.api_version
    assert f"/{rule.api_version}/" in rule.spec and rule.type.split("/")[0].lower() in rule.spec.lower()
    assert rule.spec.startswith("specification/") and rule.spec.endswith(".json") and rule.values
    assert not rule.example or rule.example.startswith("examples/")


def test_the_plan_lists_and_judged_types_come_from_one_table() -> None:
    """The plan's per-subscription lists are the table's listed kinds, its judged types the rules', each type once."""
    assert tuple((k.listed_as, k.type) for k in KINDS if k.listed_as) == SUBSCRIPTION_LISTS
    assert set(judged_types()) == {r.type for r in RULES.values()}
    assert len({k.key for k in KINDS}) == len(KINDS)



def _resource_collections() -> set[str]:
    """The Snapshot fields that map keys to resources, read from its type hints (not from the table)."""
    out = set()
    for name, hint in typing.get_type_hints(Snapshot).items():
        args = typing.get_args(hint)
        if len(args) == 2 and isinstance(args[1], type) and issubclass(args[1], Resource):
            out.add(name)
    return out


def test_every_snapshot_collection_of_resources_has_a_row() -> None:
    """The table names every collection of resources the snapshot holds, and only those: a new collection without
    a row would be neither counted in "resources evaluated" nor declarable by a check."""
    assert set(RECORDS) == _resource_collections()
    assert len(RECORDS) == len(set(RECORDS))
    fields = set(typing.get_type_hints(Snapshot))
    assert all(index in fields and set(sources) <= set(RECORDS) for index, sources in INDEX_SOURCES.items())


def test_listed_target_types_come_from_the_table() -> None:
    """The providers the plan never reads by id once their list was read are the table's listed provider rows,
    exactly the two the plan used to keep by hand, each one of the plan's lists."""
    assert LISTED_TARGET_TYPES == {
        "microsoft.network/privatelinkservices": "privateLinkServices",
        "microsoft.authorization/resourcemanagementprivatelinks": "resourceManagementPrivateLinks",
    }
    assert set(LISTED_TARGET_TYPES.values()) <= {kind for kind, _ in SUBSCRIPTION_LISTS}


WORKSPACE = f"{RG}/Microsoft.Synapse/workspaces/ws1"
PE1 = f"{RG}/Microsoft.Network/privateEndpoints/pe1"


def _workspace(public: str) -> dict[str, Any]:
    """A Synapse workspace as GetWorkspace.json (2021-06-01) shows it, with publicNetworkAccess set."""
    return {"id": WORKSPACE, "name": "ws1", "type": "Microsoft.Synapse/workspaces", "location": "East US",
            "properties": {"provisioningState": "Succeeded", "publicNetworkAccess": public,
                           "connectivityEndpoints": {"sql": "ws1.sql.azuresynapse.net"},
                           "privateEndpointConnections": [provider_connection(WORKSPACE, PE1)]}}


def test_synapse_write_event_is_acted_on_not_ignored(tmp_path: Path) -> None:
    """A Microsoft.Synapse/workspaces/write re-reads the workspace and resolves its finding; never irrelevant."""
    folder = write_tenant(tmp_path / "t", {sub_list("privateEndpoints"): {"value": [endpoint("pe1", WORKSPACE)]},
                                           WORKSPACE.strip("/"): _workspace("Enabled")})
    db = tmp_path / "state.db"
    d = Daemon(config("http://127.0.0.1:9/unused"), RecordedTenant(folder), SqliteStore(db), SqliteIntake(db),
               channels={})
    d.full_collection()
    assert d.store.get_finding(PUBLIC_CHECK, WORKSPACE.lower()).state == FindingState.OPEN
    (folder / "arm" / f"{WORKSPACE.strip('/')}.json").write_text(json.dumps(_workspace("Disabled")))
    d.accept(json.dumps([event(WORKSPACE, op="Microsoft.Synapse/workspaces/write",
                               when=datetime.now(UTC) + timedelta(seconds=1))]).encode(), "application/json")
    report = d.process_pending()
    assert report.events == 1 and report.ignored == 0 and report.rereads == 1
    assert d.store.get_finding(PUBLIC_CHECK, WORKSPACE.lower()).state == FindingState.RESOLVED
    assert 'reason="irrelevant_operation"' not in d.metrics.render().decode()
