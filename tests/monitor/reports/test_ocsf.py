"""OCSF Detection Finding events: valid against the published OCSF 1.5.0 schema (as the ``ocsf-json-schema`` wheel
ships it, see tests/kit/ocsfkit.py), with the fields issue 16 lists."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ocsfkit import class_schema, event_errors, ocsf
from reportkit import CONFIG, XSS, hostile_tenant

from plmon.checks.passed import passed_results
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.config import parse_config
from plmon.monitor.reports import build_report, render
from plmon.monitor.reports.ocsf import OCSF_VERSION, ocsf_events
from plmon.monitor.reports.sarif import fingerprint
from plmon.monitor.scan import ScanResult, run_scan

DEMO = Path(__file__).resolve().parents[3] / "monitor" / "demo_tenant"


def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(class_schema("detection_finding", frozenset({"cloud"})))


def _scan(folder: Path, config_text: str = "{}") -> tuple[ScanResult, Any]:
    config = parse_config(yaml.safe_load(config_text))
    tenant = RecordedTenant(folder)
    return run_scan(tenant, config, manifest=tenant.manifest), config


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[ScanResult, Any]:
    return _scan(hostile_tenant(tmp_path_factory.mktemp("tenant") / "t"), CONFIG)


@pytest.fixture(scope="module")
def demo_events() -> list[dict[str, Any]]:
    result, config = _scan(DEMO)
    from dataclasses import replace
    result = replace(result, passed=passed_results(result.snapshot, result.evaluation))
    events: list[dict[str, Any]] = json.loads(render(build_report(result, waivers=config.waiver_list()), "ocsf"))
    return events


def test_the_packaged_schema_is_the_published_detection_finding_class() -> None:
    """The registry wheel's schema is OCSF 1.5.0, with Detection Finding (class 2004, findings) and its objects."""
    schema = ocsf()
    assert schema["version"] == OCSF_VERSION == "1.5.0"
    cls = schema["classes"]["detection_finding"]
    assert cls["uid"] == 2004 and cls["category"] == "findings"
    assert {"finding_info", "resource_details", "cloud", "metadata", "remediation"} <= set(schema["objects"])


def test_the_derived_json_schema_rejects_what_ocsf_forbids() -> None:
    """The JSON Schema made from it is strict: a wrong enum value or class/category/type uid, a missing required
    attribute, an undeclared key (top level or nested) or a wrong type are each refused (so a pass of the tests below
    means something)."""
    v = validator()
    good = {"class_uid": 2004, "category_uid": 2, "activity_id": 1, "type_uid": 200401, "time": 1, "severity_id": 3,
            "finding_info": {"uid": "u", "title": "t"}, "cloud": {"provider": "Azure"},
            "metadata": {"version": "1.5.0", "product": {"name": "plmon"}}}
    assert not list(v.iter_errors(good))
    for path, value in ((("severity_id",), 7), (("type_uid",), 200501), (("finding_info", "uid"), None),
                        (("cloud", "invented"), 1), (("time",), "yesterday"), (("metadata", "product"), {}),
                        (("class_uid",), 2003), (("category_uid",), 3), (("invented",), 1), (("activity_id",), None),
                        (("status_id",), 9), (("resources",), [{"uid": "r", "invented": 1}])):
        bad = copy.deepcopy(good)
        holder = bad
        for p in path[:-1]:
            holder = holder[p]
        if value is None:
            del holder[path[-1]]
        else:
            holder[path[-1]] = value
        assert list(v.iter_errors(bad)), path


def test_an_event_is_judged_by_the_class_version_and_profiles_it_claims() -> None:
    """event_errors() validates as a consumer would, from the event's own class_uid, metadata.version and profiles:
    another class, an unpublished version or a profile's attribute without the profile are refused."""
    good = {"class_uid": 2004, "category_uid": 2, "activity_id": 1, "type_uid": 200401, "time": 1, "severity_id": 3,
            "finding_info": {"uid": "u", "title": "t"}, "cloud": {"provider": "Azure"},
            "metadata": {"version": "1.5.0", "product": {"name": "plmon"}, "profiles": ["cloud"]}}
    assert event_errors(good) == []
    assert event_errors({**good, "class_uid": 2003})  # Compliance Finding: needs `compliance`, other type_uids
    assert event_errors({**good, "class_uid": 99}) == ["class_uid: 99 is not an OCSF 1.5.0 class"]
    assert event_errors({**good, "metadata": {**good["metadata"], "version": "1.5.1"}})
    assert any("'cloud' was unexpected" in e for e in event_errors({**good, "metadata": {**good["metadata"],
                                                                                          "profiles": []}}))


def test_every_event_of_the_demo_tenant_validates(demo_events: list[dict[str, Any]]) -> None:
    """Every event (findings and pass results of the demo tenant) is a valid OCSF 1.5.0 Detection Finding."""
    errors = [(e["finding_info"]["uid"], err) for e in demo_events for err in event_errors(e)]
    assert not errors, errors[:5]
    assert {(e["class_uid"], e["metadata"]["version"], tuple(e["metadata"]["profiles"])) for e in demo_events} == \
        {(2004, OCSF_VERSION, ("cloud",))}
    assert {e["status_code"] for e in demo_events} == {"FAIL", "PASS"}


def test_events_carry_the_fields_issue_16_lists(hostile: tuple[ScanResult, Any]) -> None:
    """One event per open or waived finding: class/category/activity/type ids, epoch-ms time, severity_id, status,
    finding_info (stable uid, title, desc), the ARM id as resource uid with type and region, Azure as cloud
    provider, product and OCSF version in metadata, the remediation; waived findings are Suppressed."""
    result, config = hostile
    events = ocsf_events(build_report(result, waivers=config.waiver_list()))
    assert not [err.message for e in events for err in validator().iter_errors(e)]
    ev = result.evaluation
    assert len(events) == len(ev.findings) + len(ev.waived)
    by_uid = {e["finding_info"]["uid"]: e for e in events}
    for f in ev.findings:
        e = by_uid[fingerprint(f)]
        assert (e["class_uid"], e["category_uid"], e["activity_id"], e["type_uid"]) == (2004, 2, 1, 200401)
        assert e["time"] == int(result.snapshot.taken_at.timestamp() * 1000)
        assert e["severity_id"] == {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}[f.severity.value]
        assert e["status_id"] == 1 and e["status_code"] == "FAIL"
        assert (e["finding_info"]["title"], e["finding_info"]["desc"]) == (f.title, f.message)
        assert e["resources"][0]["uid"] == f.resource_id and e["resources"][0]["type"].startswith("Microsoft.")
        assert e["cloud"]["provider"] == "Azure"
        assert e["metadata"]["product"]["name"] == "plmon" and e["metadata"]["version"] == OCSF_VERSION
        assert e["remediation"]["desc"] == f.remediation
    for w in ev.waived:
        e = by_uid[fingerprint(w.finding)]
        assert e["status_id"] == 3 and w.waiver.reason in e["status_detail"]
    regions = {e["resources"][0].get("region") for e in events if "/privateEndpoints/" in e["resources"][0]["uid"]}
    assert regions == {"westeurope"}  # from the endpoint's record, also for a finding about its connection
    assert any(json.dumps(XSS, ensure_ascii=False)[1:-1] in json.dumps(e, ensure_ascii=False) for e in events)


def test_finding_uid_is_stable_across_runs_and_id_spelling(hostile: tuple[ScanResult, Any],
                                                            tmp_path: Path) -> None:
    """finding_info.uid depends only on the check and the case-normalised ARM id: a second scan gives the same."""
    result, config = hostile
    first = {e["finding_info"]["uid"] for e in ocsf_events(build_report(result, waivers=config.waiver_list()))}
    again, _ = _scan(hostile_tenant(tmp_path / "t"), CONFIG)
    second = {e["finding_info"]["uid"] for e in ocsf_events(build_report(again, waivers=config.waiver_list()))}
    assert first == second and len(first) == len(result.evaluation.findings) + len(result.evaluation.waived)
