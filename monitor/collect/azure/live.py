"""The live ARM reader: the collection plan's reads, sent through the real Azure SDK clients.

Each plan ``kind`` is routed to the SDK that owns it (azure-mgmt-network, -privatedns,
-resource-privatelinks, -resource-subscriptions, -managementgroups, -resource for targets by id) and to
that SDK's api-version. The request goes through the client's own pipeline (ARM challenge auth, retry
with ``Retry-After``, user agent), but the answer is taken as raw JSON rather than as SDK models: models
drop fields they do not know (the old-style privatelinks models do) and can refuse a malformed item the
builder would have tolerated, and then a live scan would diverge from ``scan --from`` of its recording.
Paging is followed here and merged, so the reader answers exactly as a recorded tenant does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import structlog
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    DecodeError,
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.policies import ContentDecodePolicy
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest, HttpResponse

from plmon.monitor import outside_json
from plmon.monitor.collect.azure.api_versions import FALLBACK_TARGET_VERSION, TARGET_VERSIONS, newest_version
from plmon.monitor.collect.azure.budget import BudgetSet
from plmon.monitor.collect.azure.credentials import normalise_endpoint, scope_for
from plmon.monitor.collect.azure.policies import (
    TYPED_OPTION,
    ArmGuardPolicy,
    RequestStats,
    WriteRefused,
    drop_idle_policies,
    use_fast_json,
)
from plmon.monitor.collect.azure.transport import Urllib3Transport, _EnvOnceSession
from plmon.monitor.collect.inventory import Prebuilt
from plmon.monitor.collect.plan import MAX_WORKERS, SUBSCRIPTION_LISTS, ReadError
from plmon.monitor.errors import InputError
from plmon.monitor.http_headers import request_id
from plmon.monitor.model.arm_id import parse_id

__all__ = ["CredentialError", "LiveReader", "LiveSettings"]

log = structlog.get_logger(__name__)

# The api-versions the installed SDKs send for these operations (azure-mgmt-network 33.x,
# azure-mgmt-privatedns 2.x, azure-mgmt-resource-privatelinks 1.0.0b1, -subscriptions 1.x,
# azure-mgmt-managementgroups 2.x, azure-mgmt-resource 26.x).
NETWORK = ("network", "2026-03-01")
PRIVATE_DNS = ("privatedns", "2024-06-01")
PRIVATE_LINKS = ("privatelinks", "2020-05-01")
SUBSCRIPTIONS = ("subscriptions", "2022-12-01")
MANAGEMENT_GROUPS = ("managementgroups", "2023-04-01")
RESOURCES = ("resources", "2025-04-01")

ROUTES: dict[str, tuple[str, str]] = {
    **{kind: NETWORK for kind, type_ in SUBSCRIPTION_LISTS if type_.startswith("Microsoft.Network/")},
    "privateDnsZones": PRIVATE_DNS,
    "resourceManagementPrivateLinks": PRIVATE_LINKS,
    "privateLinkAssociations": PRIVATE_LINKS,
    "privateDnsZoneGroups": NETWORK,
    "virtualNetworkLinks": PRIVATE_DNS,
    "CNAME": PRIVATE_DNS,
    "hubVirtualNetworkConnections": NETWORK,
    "routingIntent": NETWORK,
    "hubRouteTables": NETWORK,
    "subscriptions": SUBSCRIPTIONS,
    "managementGroups": MANAGEMENT_GROUPS,
    "managementGroupDescendants": MANAGEMENT_GROUPS,
}

_MAX_PAGES = 10_000


class CredentialError(InputError):
    """No token could be obtained: every read would fail the same way, so the command stops.

    Said in one line plus a hint (azure-identity's per-credential diagnostics stay at debug level)."""

    hint = ("sign in with `az login` (or give the process a managed identity or AZURE_* service principal "
            "settings), or set PLMON_ARM_TOKEN to a bearer token; PLMON_LOG_LEVEL=debug shows every credential "
            "tried")


@dataclass(frozen=True)
class LiveSettings:
    """How the live reader talks to ARM. Defaults suit a real tenant; tests shorten every wait."""

    arm_endpoint: str | None = None
    ca_bundle: str | None = None
    retry_total: int = 6
    retry_backoff_factor: float = 0.8
    retry_backoff_max: float = 60.0
    read_timeout: float = 60.0
    connection_timeout: float = 10.0
    budget_capacity: float | None = 250   # None: no client-side read budget
    budget_refill: float = 25.0
    # "urllib3": plmon's transport on urllib3's pools (transport.py); "requests": azure-core's RequestsTransport
    # (over the session below), kept as the way back should an environment need what only requests does.
    transport: str = "urllib3"


def _client_classes() -> dict[str, Callable[..., Any]]:
    from azure.mgmt.managementgroups import ManagementGroupsMgmtClient
    from azure.mgmt.network import NetworkManagementClient
    from azure.mgmt.privatedns import PrivateDnsManagementClient
    from azure.mgmt.resource.privatelinks import ResourcePrivateLinkClient
    from azure.mgmt.resource.resources import ResourceManagementClient
    from azure.mgmt.resource.subscriptions import SubscriptionClient

    # Every read names its full path, so one client per SDK serves all subscriptions; the
    # subscription id the constructors insist on is never put in a URL.
    per_sub = "00000000-0000-0000-0000-000000000000"
    return {
        "network": lambda c, **kw: NetworkManagementClient(c, per_sub, **kw),
        "privatedns": lambda c, **kw: PrivateDnsManagementClient(c, per_sub, **kw),
        "privatelinks": lambda c, **kw: ResourcePrivateLinkClient(c, per_sub, **kw),
        "resources": lambda c, **kw: ResourceManagementClient(c, per_sub, **kw),
        "subscriptions": lambda c, **kw: SubscriptionClient(c, **kw),
        "managementgroups": lambda c, **kw: ManagementGroupsMgmtClient(c, **kw),
    }


class _PooledTransport(RequestsTransport):  # type: ignore[misc]
    """azure-core's requests transport keeping up to :data:`~plmon.monitor.collect.plan.MAX_WORKERS` connections,
    over an :class:`_EnvOnceSession`.

    requests keeps 10 connections per host; with more workers than that, every extra read opened (and then
    discarded) a fresh TLS connection, so the grown concurrency spent its time in handshakes.
    """

    def open(self) -> None:
        # RequestsTransport.open() would create a plain requests.Session; the same steps with ours.
        if getattr(self, "session", None) is None and self._session_owner and not self._has_been_opened:
            session = _EnvOnceSession()
            self._init_session(session)
            self.session = session
        super().open()

    def _init_session(self, session: Any) -> None:
        super()._init_session(session)
        for adapter in session.adapters.values():
            adapter.init_poolmanager(MAX_WORKERS, MAX_WORKERS)


class _ArmRequest(HttpRequest):
    """azure-core's rest HttpRequest with its deprecated multipart and body attributes answered directly.

    azure-core's pipeline asks every request for ``multipart_mixed_info`` and ``prepare_multipart_body``, and the
    transport asks for ``data`` and ``files``; a rest request finds each through a ``__getattr__`` fallback that
    builds a list and pads the name on every call (a few percent of the client's CPU per read). Same values.
    """

    @property
    def multipart_mixed_info(self) -> Any:
        return self._multipart_mixed_info

    @multipart_mixed_info.setter
    def multipart_mixed_info(self, value: Any) -> None:  # (the mixin's __setattr__ stores it under the padded name)
        self._multipart_mixed_info = value

    def prepare_multipart_body(self, content_index: int = 0) -> int:
        return self._prepare_multipart_body(content_index)  # type: ignore[no-untyped-call,no-any-return]

    @property
    def data(self) -> Any:
        return self._data

    @property
    def files(self) -> Any:
        return self._files


class LiveReader:
    """An :class:`~plmon.monitor.collect.plan.ArmReader` over live ARM (or anything that answers as ARM does)."""

    def __init__(self, credential: TokenCredential, settings: LiveSettings | None = None) -> None:
        self.settings = settings or LiveSettings()
        self.endpoint = normalise_endpoint(self.settings.arm_endpoint)
        self.credential = credential
        self.stats = RequestStats()
        budget = (BudgetSet(self.settings.budget_capacity, self.settings.budget_refill)
                  if self.settings.budget_capacity else None)
        self.budget = budget   # seeded by a fan-out shard with what the budget's last owner left (issue 15)
        self._guard = ArmGuardPolicy(self.stats, budget)
        self._factories = _client_classes()
        self._clients: dict[str, Any] = {}
        self._prefixes: dict[str, str | None] = {}  # sdk -> what its format_url puts before a plain path
        self._lock = threading.Lock()
        self._versions: dict[str, str] = {}   # namespace/type key -> api-version found by lookup
        self._credential_failure: str | None = None
        self._shared_transport: Urllib3Transport | None = None  # every client's, built by the first client_kwargs()
        self._typed_ok: dict[str, bool] = {}  # sdk -> whether its pipeline has FastJsonDecodePolicy (use_fast_json)
        # Set by decode_typed(): (TYPED_LISTS, decode_unit, decode_target) of plmon.monitor.collect.typed.
        self._typed: tuple[dict[str, str], Callable[[str, bytes], Any], Callable[[bytes], Any]] | None = None

    # -- clients -----------------------------------------------------------------------------------

    def _client(self, sdk: str) -> Any:
        with self._lock:
            if sdk not in self._clients:
                client = self._factories[sdk](self.credential, **self.client_kwargs(self._guard))
                self._typed_ok[sdk] = use_fast_json(client)
                drop_idle_policies(client)
                self._clients[sdk] = client
                self._prefixes[sdk] = _url_prefix(client, self.endpoint)
            return self._clients[sdk]

    def client_kwargs(self, guard: Any) -> dict[str, Any]:
        """What every SDK client plmon builds takes: endpoint, scope, the per-attempt guard policy,
        retry and timeout settings, and the CA bundle. Shared with the Resource Graph client."""
        s = self.settings
        kwargs: dict[str, Any] = {
            "base_url": self.endpoint,
            "credential_scopes": [scope_for(self.endpoint)],
            "per_retry_policies": [guard],
            "retry_total": s.retry_total,
            # azure-core stops after 3 bad statuses by default, whatever retry_total says: a read throttled four
            # times in a row (429s come in bursts) became a gap although ARM asked only to wait Retry-After.
            "retry_status": s.retry_total,
            "retry_backoff_factor": s.retry_backoff_factor,
            "retry_backoff_max": s.retry_backoff_max,
            "read_timeout": s.read_timeout,
            "connection_timeout": s.connection_timeout,
        }
        if s.ca_bundle:
            kwargs["connection_verify"] = s.ca_bundle
        # The transport is built from the same connection settings the client would give its own. plmon's is shared
        # by every client (they all talk to the one ARM endpoint): with a pool per client, each SDK's first reads
        # opened a TLS connection per worker (130 handshakes in a collection of 100 subscriptions at 32 workers,
        # in three waves, each holding the workers up to a second) where one pool needs one per worker.
        connection = {k: v for k, v in kwargs.items() if k.startswith(("connection_", "read_"))}
        if s.transport == "requests":
            kwargs["transport"] = _PooledTransport(**connection)
        else:
            if self._shared_transport is None:
                self._shared_transport = Urllib3Transport(pool_maxsize=MAX_WORKERS, **connection)
            kwargs["transport"] = self._shared_transport
        return kwargs

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def __enter__(self) -> LiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def decode_typed(self) -> None:
        """For a one-shot scan: the bulk lists, zone groups and targets are decoded by the typed decoder
        (:mod:`plmon.monitor.collect.typed`) straight from each answer's bytes, and the plan is handed their units
        (:class:`~plmon.monitor.collect.inventory.Prebuilt`), as :meth:`RecordedTenant.trust_index
        <plmon.monitor.collect.recorded.RecordedTenant.trust_index>` does for a folder.

        Only a one-shot command's plan, which keeps the units as they are, may meet such bodies: a recording or a
        daemon needs the plain ones, so nothing but the scan turns this on. An answer the decoder refuses (an
        escape, a long number, another page to follow, anything unusual) is decoded the generic way, as before."""
        from plmon.monitor.collect import typed

        self._typed = (typed.TYPED_LISTS, typed.decode_unit, typed.decode_target)

    # -- the ArmReader protocol --------------------------------------------------------------------

    def get(self, path: str, *, kind: str) -> Any:
        path = path.strip("/")
        sdk, version = self._route(path, kind)
        return self._read(sdk, path, version, self._typed_decoder(path, kind) if self._typed is not None else None)

    def _typed_decoder(self, path: str, kind: str) -> Callable[[bytes], Any] | None:
        """The typed decoder for this read's answer (see :meth:`decode_typed`), or None for the generic way: a bulk
        list (by its path's ending, as a recorded folder finds it) or a target read by id (a firewall policy, read
        as a target too, is parsed as a list item and stays generic)."""
        assert self._typed is not None
        lists, decode_unit, decode_target = self._typed
        rel = path.lower()
        ending = lists.get(kind)
        if ending is not None and rel.endswith(ending):
            def unit_of(data: bytes) -> Any:
                # A list the answer continues on another page is merged from its pages the generic way.
                unit = None if _NEXT_LINK in data else decode_unit(kind, data)
                return None if unit is None else {"value": Prebuilt(unit)}
            return unit_of
        if kind == "target" and _FIREWALL_POLICY not in rel:
            def target_of(data: bytes) -> Any:
                target = decode_target(data)
                return None if target is None else Prebuilt(target)
            return target_of
        return None

    def _route(self, path: str, kind: str) -> tuple[str, str]:
        if kind != "target" and kind in ROUTES:
            return ROUTES[kind]
        rid = parse_id("/" + path)
        type_key = rid.type_key or ""
        if type_key.startswith("microsoft.network/privatednszones"):
            return PRIVATE_DNS
        if type_key.startswith("microsoft.network/"):
            return NETWORK
        if type_key.startswith("microsoft.authorization/resourcemanagementprivatelinks"):
            return PRIVATE_LINKS
        if type_key in TARGET_VERSIONS:
            return RESOURCES[0], TARGET_VERSIONS[type_key]
        return RESOURCES[0], self._looked_up_version(rid.subscription, rid.type)

    def _looked_up_version(self, subscription: str | None, type_: str | None) -> str:
        """Ask the resource provider which api-versions it serves for this type (once per type)."""
        if not subscription or not type_ or "/" not in type_:
            return FALLBACK_TARGET_VERSION
        namespace, type_path = type_.split("/", 1)
        key = type_.lower()
        with self._lock:
            if key in self._versions:
                return self._versions[key]
        try:
            provider = self._read(RESOURCES[0], f"subscriptions/{subscription}/providers/{namespace}",
                                  RESOURCES[1])
            version = newest_version(provider, type_path) or FALLBACK_TARGET_VERSION
        except ReadError as err:
            log.info("api_version_lookup_failed", namespace=namespace, status=err.status, code=err.code)
            version = FALLBACK_TARGET_VERSION
        with self._lock:
            self._versions.setdefault(key, version)
        return version

    # -- HTTP --------------------------------------------------------------------------------------

    def _read(self, sdk: str, path: str, api_version: str, typed: Callable[[bytes], Any] | None = None) -> Any:
        client = self._client(sdk)
        prefix = self._prefixes.get(sdk)
        if not self._typed_ok.get(sdk):
            typed = None  # (no FastJsonDecodePolicy in its pipeline to take the decoder)
        if prefix is not None and not _URL_SPECIAL.intersection(path):
            url = f"{prefix}{path}?api-version={api_version}"
            body = self._send(client, _ArmRequest("GET", url), typed)
        else:
            url = client._client.format_url("/" + path, endpoint=self.endpoint)
            body = self._send(client, _ArmRequest("GET", url, params={"api-version": api_version}), typed)
        next_link = body.get("nextLink") if isinstance(body, dict) else None
        if not next_link or not isinstance(body.get("value"), list):
            return body
        # A list over several pages: merge them, as a recorded tenant holds it.
        merged = {k: v for k, v in body.items() if k != "nextLink"}
        items = list(body["value"])
        seen: set[str] = set()
        while next_link:
            if not isinstance(next_link, str) or next_link in seen or len(seen) >= _MAX_PAGES:
                raise ReadError(None, "PagingLoop", f"nextLink of /{path} repeats or never ends")
            self._check_next_link(next_link, path)
            seen.add(next_link)
            page = self._send(client, _ArmRequest("GET", next_link))
            if not isinstance(page, dict) or not isinstance(page.get("value"), list):
                raise ReadError(None, "MalformedResponse", f"a page of /{path} has no 'value' array")
            items.extend(page["value"])
            next_link = page.get("nextLink")
        merged["value"] = items
        return merged

    def _check_next_link(self, link: str, path: str) -> None:
        """The bearer token follows a nextLink: only ever to the ARM endpoint it was given for."""
        want, got = urlsplit(self.endpoint), urlsplit(link)
        if got.scheme != "https" or (got.hostname, got.port) != (want.hostname, want.port):
            raise ReadError(None, "ForeignNextLink", f"nextLink of /{path} points outside {self.endpoint}")

    def _send(self, client: Any, request: HttpRequest, typed: Callable[[bytes], Any] | None = None) -> Any:
        if self._credential_failure:
            raise CredentialError(self._credential_failure)
        options = {TYPED_OPTION: typed} if typed is not None else {}
        try:
            # The pipeline response, not only its HTTP response: ContentDecodePolicy already parsed the body.
            # The client request id is a uuid4 given here: RequestIdPolicy's own uuid1 cost ~30 us per read.
            answer = client._client.send_request(request, _return_pipeline_response=True,
                                                 request_id=request_id(), **options)
            response: HttpResponse = answer.http_response
            response.read()
        except ClientAuthenticationError as err:
            self._credential_failure = f"cannot get an Azure token: {err.message.splitlines()[0]}"
            raise CredentialError(self._credential_failure) from None
        except WriteRefused as err:
            raise ReadError(None, "WriteRefused", str(err)) from None
        except ServiceResponseTimeoutError as err:
            raise ReadError(None, "Timeout", _first_line(err)) from None
        except ServiceResponseError as err:
            code = "Timeout" if "timed out" in str(err).lower() else "ResponseError"
            raise ReadError(None, code, _first_line(err)) from None
        except ServiceRequestError as err:
            raise ReadError(None, "ConnectionFailed", _first_line(err)) from None
        status = response.status_code
        if status >= 400:
            code, message = _arm_error(response)
            raise ReadError(status, code, message)
        decoded = _decoded_json(answer, response)
        if decoded is not None:
            return decoded
        try:
            return outside_json.loads(response.text())
        except outside_json.TooDeep:
            raise ReadError(status, "MalformedResponse", "the answer is JSON nested too deeply") from None
        except (ValueError, DecodeError):
            raise ReadError(status, "MalformedResponse", "the answer is not JSON") from None


def _decoded_json(answer: Any, response: HttpResponse) -> Any:
    """The JSON document azure-core's ContentDecodePolicy parsed from a JSON answer, as
    :func:`plmon.monitor.outside_json.loads` would give it; None when it parsed nothing usable (another content
    type, an empty body), and the body is then decoded here.

    The policy is in every SDK client's pipeline and parses every JSON answer; parsing it a second time was
    a tenth of the client's CPU per read. Lone surrogates are mended as outside_json does (only a text with a
    ``\\ud`` escape can hold one); a body nested too deeply never gets here (the policy's parse raises first).
    """
    content_type = (response.content_type or "application/json").split(";")[0].strip().lower()
    if not ContentDecodePolicy.JSON_REGEXP.match(content_type):
        return None
    doc = answer.context.get(ContentDecodePolicy.CONTEXT_NAME)
    if not isinstance(doc, (dict, list)):
        return None
    if isinstance(doc, Prebuilt) or isinstance(doc.get("value") if isinstance(doc, dict) else None, Prebuilt):
        return doc  # built by the typed decoder, which refuses any escape
    if response.encoding in ("utf-8", None):  # an ASCII escape is in the text exactly when it is in the bytes
        body: Any = response.content
        # One scan of the body in the usual case (no escape at all), rather than one per spelling.
        escaped = b"\\u" in body and (b"\\ud" in body or b"\\uD" in body)
    else:
        text = response.text()
        escaped = "\\ud" in text or "\\uD" in text
    if escaped:
        return outside_json.mend_surrogates(doc)
    return doc


# A list answer that continues on another page names it so (a typed decoder would read that page alone).
_NEXT_LINK = b'"nextLink"'
# A firewall policy read by id (kind "target" too) is parsed as a list item, not as a private-link target.
_FIREWALL_POLICY = "/providers/microsoft.network/firewallpolicies/"

# Characters that azure-core's format_url (a format template, urlparse) or its query helper treat specially.
_URL_SPECIAL = frozenset("{}?#;")
_PROBE = "plmon-probe"


def _url_prefix(client: Any, endpoint: str) -> str | None:
    """What ``client._client.format_url("/" + path, endpoint=...)`` puts before a path free of
    :data:`_URL_SPECIAL` characters; None when its base URL is not that plain (a query or a template in it).

    format_url formats the path as a template, parses the URL and joins it to the base URL; its query helper
    parses it again to append ``api-version``. For ARM paths that is the base URL, a slash and the path, then
    ``?api-version=``: written so directly, the reader spares the URL work a few percent of its CPU per read.
    """
    probe = client._client.format_url("/" + _PROBE, endpoint=endpoint)
    prefix = probe[:-len(_PROBE)]
    if not probe.endswith("/" + _PROBE) or _URL_SPECIAL.intersection(prefix):
        return None
    return str(prefix)


def _first_line(err: Exception) -> str:
    text = str(getattr(err, "message", None) or err)
    return text.splitlines()[0] if text else type(err).__name__


def _arm_error(response: HttpResponse) -> tuple[str, str]:
    """The ARM error code and message of a failed answer (``{"error": {"code", "message"}}``)."""
    try:
        body = outside_json.loads(response.text())
    except (ValueError, DecodeError):
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        return error["code"], str(error.get("message") or "")
    return f"Http{response.status_code}", (response.reason or "")
