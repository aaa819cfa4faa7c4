"""The control catalogues a report names: titles for the ids that checks carry in ``controls=`` and ``frameworks=``.

The mapping itself lives beside each check (``@check(controls=..., frameworks=...)``, each framework mapping with its
justification); this module only knows what the ids mean, so a report can print "NS-2 Secure cloud native services
with network controls" and group findings by control or by framework requirement. An MCSB id it does not know is
shown as written, never dropped; a framework requirement without a title here fails a test.

:data:`FRAMEWORKS` holds the versioned frameworks ``--compliance`` takes, and of each only the requirements some
check evidences: a requirement no check evidences is one plmon cannot speak to, so it is not listed as if it were
tested (Prowler lists those as manual; plmon leaves them to the auditor's own list).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from plmon.checks.registry import CIS_AZURE, ISO_27001, NIST_800_53, PCI_DSS

__all__ = ["CATALOGUES", "FRAMEWORKS", "Framework", "control_title", "framework_of", "requirement_key",
           "sort_controls"]

# Microsoft cloud security benchmark v1 (the successor of Azure Security Benchmark v3).
MCSB = {
    "NS-1": "Establish network segmentation boundaries",
    "NS-2": "Secure cloud native services with network controls",
    "NS-3": "Deploy firewall at the edge of enterprise network",
    "NS-4": "Deploy intrusion detection/intrusion prevention systems (IDS/IPS)",
    "NS-5": "Deploy DDOS protection",
    "NS-6": "Deploy web application firewall",
    "NS-7": "Simplify network security configuration",
    "NS-8": "Detect and disable insecure services and protocols",
    "NS-9": "Connect on-premises or cloud network privately",
    "NS-10": "Ensure Domain Name System (DNS) security",
    "AM-1": "Track asset inventory and their risks",
    "AM-2": "Use only approved services",
    "DP-3": "Encrypt sensitive data in transit",
    "PV-2": "Audit and enforce secure configurations",
    "LT-3": "Enable logging for security investigation",
}

CATALOGUES = {
    "MCSB": ("Microsoft cloud security benchmark v1", MCSB),
    "CIS": ("CIS Microsoft Azure Foundations Benchmark", {}),
}


def framework_of(control: str) -> str:
    """``MCSB NS-2`` -> ``MCSB``; an id without a known prefix is its own framework."""
    prefix = control.split(" ", 1)[0]
    return prefix if prefix in CATALOGUES else "other"


def control_title(control: str) -> str:
    """The control's title when the catalogue knows it, else an empty string."""
    prefix, _, local = control.partition(" ")
    catalogue = CATALOGUES.get(prefix)
    return catalogue[1].get(local, "") if catalogue else ""


def sort_controls(controls: Iterable[str]) -> list[str]:
    """MCSB first, then CIS, then others; numeric parts compared as numbers (NS-2 before NS-10)."""
    order = {name: i for i, name in enumerate(CATALOGUES)}

    def key(c: str) -> tuple[int, str, tuple[int | str, ...]]:
        prefix, _, local = c.partition(" ")
        parts = tuple(int(p) if p.isdigit() else p for p in local.replace("-", ".").split("."))
        return order.get(prefix, len(order)), prefix, parts
    return sorted(set(controls), key=key)


@dataclass(frozen=True, slots=True)
class Framework:
    """A versioned framework: its id (what ``--compliance`` takes), name, version, source and requirement titles."""

    id: str
    name: str
    version: str
    source: str
    requirements: Mapping[str, str]


FRAMEWORKS: dict[str, Framework] = {f.id: f for f in (
    Framework(NIST_800_53, "NIST SP 800-53", "Revision 5",
              "https://csrc.nist.gov/pubs/sp/800/53/r5/upd1/final", {
                  "AC-4": "Information Flow Enforcement",
                  "AC-17(3)": "Remote Access | Managed Access Control Points",
                  "CA-3": "Information Exchange",
                  "CA-7": "Continuous Monitoring",
                  "CA-9": "Internal System Connections",
                  "CM-6": "Configuration Settings",
                  "CM-7": "Least Functionality",
                  "CM-8": "System Component Inventory",
                  "SC-6": "Resource Availability",
                  "SC-7": "Boundary Protection",
              }),
    Framework(CIS_AZURE, "CIS Microsoft Azure Foundations Benchmark", "v5.0.0",
              "https://www.cisecurity.org/benchmark/azure", {
                  "8.3.7": "Ensure Public Network Access is Disabled (Key Vault)",
                  "9.3.2.1": "Ensure Private Endpoints are used to access Storage Accounts",
                  "9.3.2.2": "Ensure that 'Public Network Access' is 'Disabled' for storage accounts",
              }),
    Framework(ISO_27001, "ISO/IEC 27001", "2022, Annex A", "https://www.iso.org/standard/27001", {
        "A.5.15": "Access control",
        "A.8.20": "Networks security",
        "A.8.22": "Segregation of networks",
    }),
    Framework(PCI_DSS, "PCI DSS", "v4.0", "https://www.pcisecuritystandards.org/document_library/", {
        "1.3.1": "Inbound traffic to the CDE is restricted to only traffic that is necessary; all other traffic is "
                 "specifically denied",
        "1.4.2": "Inbound traffic from untrusted networks to trusted networks is restricted",
    }),
)}


def requirement_key(requirement: str) -> tuple[str | int, ...]:
    """Sort key for requirement ids of any framework: numeric parts as numbers (CM-6 < CM-8 < CA-9 by family,
    9.3.2.1 < 9.3.2.2, A.8.9 < A.8.20, AC-17(3) after AC-17)."""
    parts = re.split(r"[.\-()]+", requirement)
    return tuple(p for part in parts if part for p in ((0, int(part)) if part.isdigit() else (1, part)))
