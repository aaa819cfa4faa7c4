"""Pseudonymising a recorded tenant so a user can share it (``plmon record --redact``).

Subscription ids, the tenant id, management group, resource group and resource names are replaced by
pseudonyms derived from a per-recording secret salt: the same name (compared case-insensitively, as ARM
compares ids) always gets the same pseudonym, in request paths, ids, ``name`` fields and host names, so
every reference still resolves and the recording scans to the same findings, renamed. Private DNS zone
names are kept: they are public, well-known names (``privatelink.blob.core.windows.net``) the DNS checks
depend on. Pseudonyms cannot be reversed without the salt, which is never written.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import uuid
from pathlib import Path
from typing import Any

__all__ = ["Redactor", "redact_folder"]

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HOST = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_EMBEDDED = re.compile(r"/(?:subscriptions|providers)/[^\s'\"`,;()]+", re.IGNORECASE)
_URL = re.compile(r"(https?://)([A-Za-z0-9.-]+)((?::\d+)?(?:[/?#].*)?)")
_KEEP_NAMES_OF = {"privatednszones"}   # zone names stay: they are the DNS facts the checks test
# A Virtual WAN hub's built-in route tables: platform names the vwan rules test (any other table is custom routing).
_KEEP_NAMES = {("hubroutetables", "defaultroutetable"), ("hubroutetables", "noneroutetable")}
_GUID_KEYS = {"subscriptionid", "tenantid"}


class Redactor:
    """A consistent mapping from identifying names to pseudonyms, learned from ARM ids, then applied."""

    def __init__(self, salt: bytes | None = None) -> None:
        self._salt = salt if salt is not None else secrets.token_bytes(32)
        self.guids: dict[str, str] = {}   # lower-case guid -> pseudonym guid
        self.names: dict[str, str] = {}   # lower-case name -> pseudonym

    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self._salt, f"{kind}:{value.lower()}".encode(), hashlib.sha256).digest()

    # -- learning ----------------------------------------------------------------------------------

    def learn_guid(self, value: str) -> None:
        if _GUID.fullmatch(value) and value.lower() not in self.guids:
            self.guids[value.lower()] = str(uuid.UUID(bytes=self._digest("guid", value)[:16]))

    def learn_name(self, value: str) -> None:
        if not value or _GUID.fullmatch(value):
            self.learn_guid(value)
            return
        if value.lower() not in self.names:
            self.names[value.lower()] = "r" + self._digest("name", value).hex()[:10]

    def learn_path(self, path: str) -> None:
        for value, is_name in _names_in(path):
            if is_name:
                self.learn_name(value)

    def learn(self, data: Any) -> None:
        if isinstance(data, dict):
            for key, value in data.items():
                if isinstance(value, str) and key.lower() in _GUID_KEYS:
                    self.learn_guid(value)
                self.learn(value)
        elif isinstance(data, list):
            for item in data:
                self.learn(item)
        elif isinstance(data, str) and _is_arm_path(data):
            self.learn_path(data)

    # -- applying ----------------------------------------------------------------------------------

    def guid(self, value: str) -> str:
        return self.guids.get(value.lower(), value)

    def path(self, path: str) -> str:
        """An ARM id or request path with every identifying segment replaced."""
        parts = path.split("/")
        for i, (_, is_name) in enumerate(_segments(parts)):
            if is_name and parts[i]:
                parts[i] = self.names.get(parts[i].lower(), self.guid(parts[i]))
        return self._guids_in("/".join(parts))

    def _guids_in(self, text: str) -> str:
        return _GUID.sub(lambda m: self.guids.get(m.group(0).lower(), m.group(0)), text)

    def text(self, value: str, *, is_name: bool = False) -> str:
        if _is_arm_path(value):
            return self.path(value)
        if is_name and value.lower() in self.names:
            # Only a ``name`` field is a name: an enum value that happens to equal one ("Default") stays.
            return self.names[value.lower()]
        if "/subscriptions/" in value.lower() or "/providers/" in value.lower():
            # ids quoted inside messages ("The resource '/subscriptions/...' was not found.")
            value = _EMBEDDED.sub(lambda m: self.path(m.group(0)), value)
        url = _URL.fullmatch(value)
        if url:
            # endpoints such as https://kv1.vault.azure.net/ carry the resource name in the host
            return url.group(1) + self.text(url.group(2)) + self._guids_in(url.group(3))
        if _HOST.fullmatch(value):
            # host names: st1.privatelink.blob.core.windows.net -> r….privatelink.blob.core.windows.net
            value = ".".join(self.names.get(label.lower(), label) for label in value.split("."))
        return self._guids_in(value)

    def apply(self, data: Any, *, is_name: bool = False) -> Any:
        if isinstance(data, dict):
            out = {k: self.apply(v, is_name=k.lower() == "name") for k, v in data.items()}
            if isinstance(out.get("displayName"), str) and "subscriptionId" in data:
                out["displayName"] = "subscription-" + self.guid(str(data["subscriptionId"]))[:8]
            return out
        if isinstance(data, list):
            return [self.apply(v) for v in data]
        if isinstance(data, str):
            return self.text(data, is_name=is_name)
        return data


def _is_arm_path(value: str) -> bool:
    low = value.lower()
    return low.startswith(("/subscriptions/", "/providers/")) and " " not in value


def _segments(parts: list[str]) -> list[tuple[str, bool]]:
    """Each segment of a split ARM path and whether it is a name to pseudonymise."""
    out: list[tuple[str, bool]] = []
    expect_name = False
    in_provider = 0        # 1: next segment is a namespace; 2: alternating type/name below it
    last_type = ""
    for seg in parts:
        low = seg.lower()
        if not seg:
            out.append((seg, False))
            continue
        if low == "providers" and not expect_name:
            in_provider = 1
            out.append((seg, False))
            continue
        if in_provider == 1:
            in_provider = 2
            expect_name = False
            out.append((seg, False))
            continue
        if expect_name:
            keep = last_type in _KEEP_NAMES_OF or (last_type, low) in _KEEP_NAMES
            out.append((seg, not keep))
            expect_name = False
            continue
        last_type = low
        expect_name = True
        out.append((seg, False))
    return out


def _names_in(path: str) -> list[tuple[str, bool]]:
    return _segments(path.split("/"))


def _request_path(rel: str) -> tuple[str, str]:
    """``a/b.error.json`` -> (``/a/b``, ``.error.json``)."""
    for suffix in (".error.json", ".json"):
        if rel.lower().endswith(suffix):
            return "/" + rel[: -len(suffix)], rel[-len(suffix):]
    return "/" + rel, ""


def redact_folder(src: Path, dst: Path, *, salt: bytes | None = None) -> Redactor:
    """Write a pseudonymised copy of the recorded tenant ``src`` into ``dst``."""
    redactor = Redactor(salt)
    files = sorted(p for p in (src / "arm").rglob("*.json")) if (src / "arm").is_dir() else []
    bodies: dict[Path, Any] = {}
    for f in files:
        redactor.learn_path(_request_path(f.relative_to(src / "arm").as_posix())[0])
        bodies[f] = json.loads(f.read_text(encoding="utf-8"))
        redactor.learn(bodies[f])
    manifest = json.loads((src / "manifest.json").read_text(encoding="utf-8")) \
        if (src / "manifest.json").exists() else {}
    if isinstance(manifest.get("tenant_id"), str):
        redactor.learn_guid(manifest["tenant_id"])
    for f, body in bodies.items():
        path, suffix = _request_path(f.relative_to(src / "arm").as_posix())
        target = dst / "arm" / (redactor.path(path).lstrip("/") + suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(redactor.apply(body), indent=1, ensure_ascii=False), encoding="utf-8")
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "manifest.json").write_text(json.dumps(redactor.apply(manifest), indent=1), encoding="utf-8")
    return redactor
