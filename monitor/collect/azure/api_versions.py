"""Which api-version each live read uses.

Reads routed to an SDK client use that SDK's own api-version (so a newer SDK moves them together).
Endpoint targets are arbitrary PaaS types; the table holds the version of each judged type's REST spec
(so reads return the property its public-access rule reads, and ``privateEndpointConnections``); any
other type is resolved once per namespace from ``GET /subscriptions/<s>/providers/<Namespace>``.
"""

from __future__ import annotations

from typing import Any

from plmon.monitor.model.kinds import KINDS

__all__ = ["FALLBACK_TARGET_VERSION", "TARGET_VERSIONS", "newest_version"]

# type key (lower case, full nested type) -> api-version: the kinds table's by-id reads, each the version of
# the REST spec its public-access rule was sourced from (plmon.monitor.model.kinds.ACCESS_RULES).
TARGET_VERSIONS: dict[str, str] = {k.key: k.api_version for k in KINDS if k.api_version}

# Used when a namespace lookup fails: ARM then answers with a clear error that becomes a coverage gap.
FALLBACK_TARGET_VERSION = "2023-01-01"


def newest_version(provider: Any, type_path: str) -> str | None:
    """The newest GA api-version (else the newest preview) a provider body lists for a resource type."""
    types = provider.get("resourceTypes") if isinstance(provider, dict) else None
    for rt in types if isinstance(types, list) else []:
        if not isinstance(rt, dict) or str(rt.get("resourceType", "")).lower() != type_path.lower():
            continue
        versions = [v for v in rt.get("apiVersions") or [] if isinstance(v, str)]
        ga = sorted((v for v in versions if "preview" not in v.lower()), reverse=True)
        if ga or versions:
            return (ga or sorted(versions, reverse=True))[0]
    return None
