"""Which identity and which ARM endpoint a live collection uses.

``PLMON_ARM_TOKEN`` (a token from ``az account get-access-token``, CI, a replay server) wins over
DefaultAzureCredential, so a user can always say exactly which identity reads. The token's value is
never logged or echoed: :class:`StaticTokenCredential` does not even show it in its repr.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import AccessToken, TokenCredential

from plmon.monitor.errors import InputError

__all__ = ["PUBLIC_ARM", "StaticTokenCredential", "arm_credential", "cloud_name", "normalise_endpoint",
           "scope_for"]

PUBLIC_ARM = "https://management.azure.com"
TOKEN_ENV = "PLMON_ARM_TOKEN"

_CLOUDS = {
    "management.azure.com": "AzureCloud",
    "management.usgovcloudapi.net": "AzureUSGovernment",
    "management.chinacloudapi.cn": "AzureChinaCloud",
}


class StaticTokenCredential:
    """A bearer token given as a string; it is used until ARM refuses it (no refresh is possible)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "StaticTokenCredential(<redacted>)"

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        # The real expiry is unknown; an hour ahead keeps azure-core from asking again per request.
        return AccessToken(self._token, int(time.time()) + 3600)

    def close(self) -> None:
        pass


def normalise_endpoint(url: str | None) -> str:
    """The ARM base URL without a trailing slash; only https is accepted (a bearer token travels)."""
    if not url:
        return PUBLIC_ARM
    parts = urlsplit(url.strip())
    if parts.scheme != "https" or not parts.netloc:
        raise InputError(f"--arm-endpoint must be an https URL, got {url!r}")
    return f"https://{parts.netloc}{parts.path.rstrip('/')}"


def scope_for(endpoint: str) -> str:
    """The token scope of an ARM endpoint: the audience is the endpoint itself."""
    return f"{normalise_endpoint(endpoint)}/.default"


def cloud_name(endpoint: str) -> str:
    host = (urlsplit(normalise_endpoint(endpoint)).hostname or "").lower()
    return _CLOUDS.get(host, "Custom")


def arm_credential(env: Mapping[str, str]) -> TokenCredential:
    """``PLMON_ARM_TOKEN`` when ``env`` (the environment :mod:`plmon.monitor.wiring` read) sets it, otherwise
    DefaultAzureCredential (created lazily: it is slow)."""
    token = (env.get(TOKEN_ENV) or "").strip()
    if token:
        if token.lower().startswith("bearer "):
            token = token[7:].strip()
        return StaticTokenCredential(token)
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(exclude_interactive_browser_credential=True)
