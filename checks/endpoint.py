"""Endpoint checks: the state of the private endpoint and Private Link Service resources themselves."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from plmon.checks.finding import Issue, Severity
from plmon.checks.registry import NIST_800_53, Evidences, check
from plmon.checks.remedy import az
from plmon.checks.units import each
from plmon.monitor.model.snapshot import Snapshot, lower

TROUBLESHOOT = "https://learn.microsoft.com/azure/private-link/troubleshoot-private-endpoint-connectivity"


@check(
    id="endpoint.provisioning-failed", title="Private endpoint or Private Link Service failed to provision",
    severity=Severity.HIGH,
    rationale="A resource in provisioning state Failed is not in the configuration its owner asked "
              "for; traffic may not flow and later updates may fail.",
    remediation="Re-apply the resource's configuration, or delete and recreate it.",
    references=(TROUBLESHOOT,),
    controls=("MCSB PV-2",),
    reads=("private_endpoints", "private_link_services"),
    over=("private_endpoints", "private_link_services"),
    frameworks=(
        Evidences(NIST_800_53, "CM-6",
                  "CM-6 c: a resource in provisioning state Failed deviates, unapproved, from the "
                  "configuration set for it"),
    ),
)
def provisioning_failed(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    for pe in each(snap, "private_endpoints"):
        if lower(pe.provisioning_state) == "failed":
            yield Issue(pe.id, f"Private endpoint {pe.name} is in provisioning state Failed.",
                        {"provisioningState": pe.provisioning_state},
                        az("network", "private-endpoint", "update", "--ids", pe.id.raw,
                           comment="re-applies the last configuration; delete and recreate if it fails again"))
    for pls in each(snap, "private_link_services"):
        if lower(pls.provisioning_state) == "failed":
            yield Issue(pls.id, f"Private Link Service {pls.name} is in provisioning state Failed.",
                        {"provisioningState": pls.provisioning_state},
                        az("network", "private-link-service", "update", "--ids", pls.id.raw,
                           comment="re-applies the last configuration"))
