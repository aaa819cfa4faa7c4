"""The control catalogues a report names: titles for the ids that checks carry in ``controls=``.

The mapping itself lives beside each check (``@check(controls=...)``); this module only knows what
the ids mean, so a report can print "NS-2 Secure cloud native services with network controls" and
group findings by control. An id it does not know is shown as written, never dropped.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["CATALOGUES", "control_title", "framework_of", "sort_controls"]

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
