"""An azure-core HttpTransport straight on urllib3's connection pools: the live reader's HTTP.

azure-core's own RequestsTransport sends every request through requests, which prepares the URL, headers,
hooks, cookies and environment settings again for each one, then parses the answer's headers through the
email package. At the dozens of reads in flight a large tenant needs, that work, not ARM's latency, set the
collection's pace (the client was CPU-bound on one interpreter). This transport sends the same bytes as
requests would, on the same urllib3 pools, and honours what azure-core's transports honour:

- timeouts: ``connection_timeout`` and ``read_timeout``, per transport and per request;
- TLS: ``connection_verify`` (True: requests' CA bundle, or ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` as
  requests reads them; a file or a directory; False) and ``connection_cert`` (a file or (cert, key));
- proxies: the environment's (``HTTPS_PROXY``, ``NO_PROXY``...; read once per origin as requests reads them)
  and a request's own ``proxies`` (azure-core's ProxyPolicy), with basic auth from the proxy URL;
- no retries and no redirects of its own: azure-core's RetryPolicy (429 ``Retry-After``, 5xx, timeouts) and
  RedirectPolicy decide, exactly as over requests;
- streaming (``stream=True``) and content decoding (gzip, deflate...), with the default headers requests sends;
- failures raised as the azure-core exceptions RequestsTransport raises for the same urllib3 errors.

What it does not cover (a SOCKS or plain-http proxy, a request body other than bytes or text, a host that
needs IDNA) goes through azure-core's RequestsTransport instead, built with the same settings.
"""

from __future__ import annotations

import collections
import http.client
import os
import queue
import re
import threading
from collections.abc import Iterator, MutableMapping
from typing import Any
from urllib.parse import unquote

import requests
import requests.auth
import requests.utils
import urllib3
from azure.core.configuration import ConnectionConfiguration
from azure.core.exceptions import (
    DecodeError,
    HttpResponseError,
    IncompleteReadError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline._tools import handle_non_stream_rest_response
from azure.core.pipeline.transport import HttpTransport, RequestsTransport
from azure.core.rest import HttpRequest
from azure.core.rest._http_response_impl import HttpResponseImpl
from azure.core.rest._requests_basic import _CaseInsensitiveDict
from requests.cookies import RequestsCookieJar
from requests.hooks import default_hooks
from requests.sessions import merge_setting
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    InvalidHeader,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.exceptions import DecodeError as Urllib3DecodeError

from plmon.monitor.http_headers import parse_headers as _parse_headers

__all__ = ["Urllib3Transport"]

# Characters requests' requote_uri leaves as they are: a URL made only of these is sent unchanged by requests,
# so it needs none of requests' URL preparation (a '%' may be re-encoded by it, so it is not in the set).
_PLAIN_URL = re.compile(r"https?://[A-Za-z0-9.\-]+(?::[0-9]+)?(?:[/?][A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]*)?")
_NO_RETRIES = urllib3.Retry(total=False, redirect=False, raise_on_status=False)
_REQUESTS_ONLY = object()


class _FastHeadersResponse(http.client.HTTPResponse):
    """http.client's response with the header parser of :mod:`plmon.monitor.http_headers` (the email package's
    feed parser cost about a third of the client's CPU per read); ``begin`` is the stdlib's (3.11-3.13) step for
    step."""

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._read_status()
            if status != http.client.CONTINUE:
                break
            http.client._read_headers(self.fp)
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = _parse_headers(self.fp)
        tr_enc = self.headers.get("transfer-encoding")
        self.chunked = bool(tr_enc and tr_enc.lower() == "chunked")
        if self.chunked:
            self.chunk_left = None
        self.will_close = self._check_close()
        self.length = None
        length = self.headers.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            else:
                if self.length < 0:
                    self.length = None
        if (status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED) or 100 <= status < 200
                or self._method == "HEAD"):
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True


class _HTTPConnection(HTTPConnection):
    response_class = _FastHeadersResponse


class _HTTPSConnection(HTTPSConnection):
    response_class = _FastHeadersResponse


class _IdleConnections:
    """The pool's idle connections, newest first, without a lock: what urllib3 asks of its ``LifoQueue``.

    urllib3 takes a connection with ``get(block=False)`` and gives it back with ``put(block=False)``; the queue's
    condition variable, taken twice per read by dozens of workers, formed a convoy (a tenth of the client's
    interpreter time went to releasing it). ``deque.append`` and ``pop`` are atomic, and a pool that never
    blocks needs nothing else: an empty deque means "open a new connection", a full one "close this one".
    ``put`` may overshoot ``maxsize`` by the few workers racing it, which only keeps a few more idle sockets.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: collections.deque[Any] = collections.deque()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        try:
            return self._items.pop()
        except IndexError:
            raise queue.Empty from None

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if self.maxsize > 0 and len(self._items) >= self.maxsize:
            raise queue.Full
        self._items.append(item)

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items


def _fresh_timeout(timeout: Any) -> urllib3.Timeout:
    """A copy of a :class:`urllib3.Timeout` for one request (urllib3 clones it so each request has its own
    connect clock), without revalidating values that were validated when the original was built."""
    fresh: urllib3.Timeout = object.__new__(urllib3.Timeout)
    fresh.__dict__.update(timeout.__dict__)
    fresh._start_connect = None
    return fresh


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection
    QueueCls = _IdleConnections  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.block = False  # _IdleConnections never blocks (urllib3's default, which plmon never changes)

    def _get_timeout(self, timeout: Any) -> urllib3.Timeout:
        if type(timeout) is urllib3.Timeout:
            return _fresh_timeout(timeout)
        return super()._get_timeout(timeout)


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection
    QueueCls = _IdleConnections  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.block = False

    def _get_timeout(self, timeout: Any) -> urllib3.Timeout:
        if type(timeout) is urllib3.Timeout:
            return _fresh_timeout(timeout)
        return super()._get_timeout(timeout)


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class _Urllib3Response(HttpResponseImpl):
    """An azure-core rest response over a urllib3 response (``internal_response``)."""

    def __init__(self, request: HttpRequest, response: urllib3.BaseHTTPResponse, content: bytes | None,
                 block_size: int) -> None:
        headers = _CaseInsensitiveDict(response.headers)
        super().__init__(request=request, internal_response=response, status_code=response.status,
                         headers=headers, reason=response.reason or "", content_type=headers.get("content-type"),
                         block_size=block_size, stream_download_generator=_StreamDownload)
        if content is not None:
            self._content = content
        charset = _plain_charset(headers.get("content-type"))
        if charset is not None:
            # What azure-core's get_charset_encoding finds for such a header, without building an email Message
            # for it (that was a few percent of the client's CPU per read: every JSON answer is decoded to text).
            self._encoding = charset


def _plain_charset(content_type: str | None) -> str | None:
    """``utf-8`` for ``<type>; charset=utf-8`` (ARM's every answer), the one charset parameter unquoted, as
    email's ``get_param`` reads it; None for anything else (azure-core then parses the header itself)."""
    if not content_type or '"' in content_type:
        return None
    _, sep, params = content_type.partition(";")
    name, eq, value = params.partition("=")
    if sep and eq and ";" not in value and name.strip().lower() == "charset" and value.strip() == "utf-8":
        return "utf-8"
    return None


class _StreamDownload:
    """azure-core's stream download generator over a urllib3 response, raising what RequestsTransport's raises."""

    def __init__(self, pipeline: Any, response: _Urllib3Response, *, decompress: bool = True) -> None:
        self.pipeline = pipeline
        self.request = response.request
        self.response = response
        internal: urllib3.BaseHTTPResponse = response._internal_response
        self._internal = internal
        self._chunks = internal.stream(response._block_size, decode_content=decompress)
        self.content_length = int(response.headers.get("Content-Length", 0))

    def __len__(self) -> int:
        return self.content_length

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self._internal.release_conn()
            raise
        except Exception as err:
            self._internal.release_conn()
            raise _body_error(err, streamed=True) from err
        if not chunk:
            self._internal.release_conn()
            raise StopIteration
        return chunk


def _body_error(err: Exception, *, streamed: bool) -> Exception:
    """The azure-core error RequestsTransport raises when reading an answer's body fails this way.

    Read whole (``stream=False``), the body is read inside requests and its errors take azure-core's ``send``
    mapping (a read timeout there is a ServiceRequestError); streamed, they take its stream generator's."""
    if isinstance(err, ProtocolError):
        if "IncompleteRead" in str(err):
            return IncompleteReadError(err, error=err)
        return HttpResponseError(err, error=err)
    if isinstance(err, Urllib3DecodeError):
        return DecodeError(err, error=err) if streamed else ServiceResponseError(err, error=err)
    if isinstance(err, ReadTimeoutError):
        return ServiceResponseTimeoutError(err, error=err) if streamed else ServiceRequestError(err, error=err)
    if isinstance(err, SSLError):
        return ServiceResponseError(err, error=err) if streamed else ServiceRequestError(err, error=err)
    return err


def _send_error(err: Exception) -> Exception:
    """The azure-core error RequestsTransport raises for this urllib3 error of a request (requests' adapter
    mapping, then azure-core's)."""
    if isinstance(err, NewConnectionError):
        return ServiceRequestError(err, error=err)
    if isinstance(err, ConnectTimeoutError):
        return ServiceRequestTimeoutError(err, error=err)
    if isinstance(err, ReadTimeoutError):
        return ServiceResponseTimeoutError(err, error=err)
    if isinstance(err, ProtocolError):
        return ServiceResponseError(err, error=err)
    if isinstance(err, (ProxyError, SSLError, ClosedPoolError, OSError)):
        return ServiceRequestError(err, error=err)
    if isinstance(err, InvalidHeader):
        return ServiceResponseError(err, error=err)
    return err


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL, cheaply (what requests' proxy and netrc lookups depend on)."""
    scheme, sep, rest = url.partition("://")
    return scheme.lower() + sep + rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].lower()


class _NoAuth(requests.auth.AuthBase):
    """Stands for "no netrc entry" so requests does not look the netrc file up again (it leaves the request as is)."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


_NO_AUTH = _NoAuth()


class _EnvOnceSession(requests.Session):
    """A requests session that reads the environment's proxy, CA bundle and netrc settings once per origin.

    requests reads them again for every request (``trust_env``): the proxy variables by walking the whole
    ``os.environ`` twice, the netrc files by stat-ing them. That was a fifth of the client's CPU per ARM read
    and made collection CPU-bound long before ARM's limits. The answers are the same as requests' own (same
    functions, same precedence), taken when an origin is first used; the environment is not expected to change
    during a collection.
    """

    def __init__(self) -> None:
        super().__init__()
        self._env_proxies: dict[tuple[str, str | None], dict[str, str]] = {}
        self._netrc: dict[str, Any] = {}
        self._env_verify: Any = None   # the CA bundle the environment names (requests' own lookup), once known
        self._env_verify_known = False

    def _netrc_auth(self, url: str) -> Any:
        origin = _origin(url)
        if origin not in self._netrc:
            self._netrc[origin] = requests.utils.get_netrc_auth(origin)
        return self._netrc[origin]

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        if self.trust_env and not request.auth and not self.auth:
            request.auth = self._netrc_auth(str(request.url)) or _NO_AUTH
        return super().prepare_request(request)

    def request(self, method: str, url: str, headers: Any = None, data: Any = None,  # type: ignore[override]
                files: Any = None, verify: Any = None, timeout: Any = None, cert: Any = None,
                allow_redirects: bool = True, proxies: Any = None, stream: Any = None,
                **kwargs: Any) -> requests.Response:
        """What azure-core's transport sends (no cookies, auth, params or hooks of its own), prepared directly.

        requests' :meth:`~requests.Session.prepare_request` merges cookies, params, auth and hooks through
        generic helpers (a runtime Protocol check per merge) that cost more than the read's own HTTP work.
        When none of them can contribute (this session holds no cookies, params, auth or hooks, and the origin
        has no netrc entry), the request is prepared with exactly what they would have merged; otherwise, and
        for anything else, it is requests' own path.
        """
        if (kwargs or not isinstance(url, str) or self.cookies or self.params
                or self.auth or self.hooks.get("response") != [] or len(self.hooks) != 1
                or (self.trust_env and self._netrc_auth(url))):
            return super().request(method, url, headers=headers, data=data, files=files, verify=verify,
                                   timeout=timeout, cert=cert, allow_redirects=allow_redirects, proxies=proxies,
                                   stream=stream, **kwargs)
        merged = CaseInsensitiveDict(self.headers)
        merged.update(headers or {})
        for name in [name for name, value in merged.items() if value is None]:
            del merged[name]
        prep = requests.PreparedRequest()
        prep.prepare(method=method.upper(), url=url, files=files, data=data or {}, json=None, headers=merged,
                     params=None, auth=None, cookies=RequestsCookieJar(), hooks=default_hooks())
        settings = self.merge_environment_settings(prep.url, proxies or {}, stream, verify, cert)
        return self.send(prep, timeout=timeout, allow_redirects=allow_redirects, **settings)

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any,
                                   cert: Any) -> dict[str, Any]:
        if not self.trust_env:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        # requests' own steps (sessions.Session.merge_environment_settings), with the lookups remembered.
        no_proxy = proxies.get("no_proxy") if proxies is not None else None
        key = (_origin(str(url)), no_proxy)
        if key not in self._env_proxies:
            self._env_proxies[key] = requests.utils.get_environ_proxies(str(url), no_proxy=no_proxy)
        if proxies is not None:
            for k, v in self._env_proxies[key].items():
                proxies.setdefault(k, v)
        if verify is True or verify is None:
            if not self._env_verify_known:
                # requests' own reading of REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE: True when neither is set.
                found = super().merge_environment_settings(url, {}, None, True, None)["verify"]
                self._env_verify, self._env_verify_known = (None if found is True else found), True
            verify = self._env_verify or verify
        merged = (merge_setting(proxies, self.proxies) if self.proxies or proxies is None  # as merge_setting would
                  else {k: v for k, v in proxies.items() if v is not None})
        return {"proxies": merged, "stream": merge_setting(stream, self.stream),
                "verify": merge_setting(verify, self.verify), "cert": merge_setting(cert, self.cert)}


class Urllib3Transport(HttpTransport):  # type: ignore[type-arg]
    """azure-core's HttpTransport on urllib3 pools (see the module docstring for what it honours)."""

    def __init__(self, *, pool_maxsize: int = 10, use_env_settings: bool = True, **kwargs: Any) -> None:
        self.connection_config = ConnectionConfiguration(**kwargs)
        self._pool_maxsize = pool_maxsize
        self._use_env = use_env_settings
        self._kwargs = dict(kwargs)
        # requests' environment lookups (proxies, CA bundle variables), remembered per origin.
        self._env = _EnvOnceSession()
        self._env.trust_env = use_env_settings
        # requests' default headers, by lower-case name (as its CaseInsensitiveDict keys them)
        self._default_items = {name.lower(): (name, value) for name, value in requests.utils.default_headers().items()}
        self._managers: dict[tuple[Any, ...], urllib3.PoolManager] = {}
        self._timeouts: dict[tuple[Any, Any], urllib3.Timeout] = {}
        self._settings: dict[tuple[str, str, Any, Any], Any] = {}  # -> a pool, or _REQUESTS_ONLY
        self._lock = threading.Lock()
        self._fallback: RequestsTransport | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------------

    def open(self) -> None:
        if self._closed:
            raise ValueError("HTTP transport has already been closed.")

    def close(self) -> None:
        with self._lock:
            managers, self._managers, self._settings = list(self._managers.values()), {}, {}
            fallback, self._fallback = self._fallback, None
        for manager in managers:
            manager.clear()
        if fallback is not None:
            fallback.close()

    def __enter__(self) -> Urllib3Transport:
        self.open()
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()

    # -- sending -----------------------------------------------------------------------------------

    def send(self, request: Any, *, proxies: MutableMapping[str, str] | None = None,
             **kwargs: Any) -> Any:
        self.open()
        url = request.url
        data = getattr(request, "data", None)
        body: bytes | None
        if isinstance(data, bytes) or data is None:
            body = data
        elif isinstance(data, str):
            body = data.encode("utf-8")
        else:
            body = None
        if (not isinstance(request, HttpRequest) or getattr(request, "files", None)
                or (data is not None and body is None)):
            return self._fallback_send(request, proxies, kwargs)
        if _PLAIN_URL.fullmatch(url) is None:
            url = _requote(url)
        stream = bool(kwargs.pop("stream", False))
        config = self.connection_config
        connect = kwargs.pop("connection_timeout", config.timeout)
        read = kwargs.pop("read_timeout", config.read_timeout)
        verify = kwargs.pop("connection_verify", config.verify)
        cert = kwargs.pop("connection_cert", config.cert)
        if kwargs or isinstance(connect, tuple):
            return self._fallback_send(request, proxies, {"stream": stream, "connection_timeout": connect,
                                                          "read_timeout": read, "connection_verify": verify,
                                                          "connection_cert": cert, **kwargs})
        scheme, _, after = url.partition("://")
        origin, _, rest = after.partition("/")
        origin, query_sep, query = origin.partition("?")
        pool = self._pool(scheme.lower(), origin, proxies, verify, cert)
        if pool is None:
            return self._fallback_send(request, proxies, {"stream": stream, "connection_timeout": connect,
                                                          "read_timeout": read, "connection_verify": verify,
                                                          "connection_cert": cert})
        target = ("/" + rest if not query_sep else "/?" + query).split("#", 1)[0]
        # requests' merge of its default headers with the request's (case-insensitive: the request's name and
        # value win, in the default's place; None removes), on a plain dict rather than a CaseInsensitiveDict copy.
        merged = self._default_items.copy()
        for name, value in request.headers.items():
            merged[name.lower()] = (name, value)
        headers = {name: value for name, value in merged.values() if value is not None}
        try:
            response = pool.urlopen(request.method, target, body=body, headers=headers,
                                    redirect=False, assert_same_host=False, retries=_NO_RETRIES,
                                    timeout=self._timeout(connect, read), preload_content=False,
                                    decode_content=False, enforce_content_length=True)
        except Exception as err:
            raise _send_error(err) from err
        content: bytes | None = None
        if not stream:
            try:
                content = response.read(decode_content=True)
            except Exception as err:
                response.release_conn()
                raise _body_error(err, streamed=False) from err
            response.release_conn()
        answer = _Urllib3Response(request, response, content, config.data_block_size)
        if not stream:
            handle_non_stream_rest_response(answer)  # as RequestsTransport leaves a read answer: consumed, closed
        return answer

    def _timeout(self, connect: Any, read: Any) -> urllib3.Timeout:
        key = (connect, read)
        found = self._timeouts.get(key)
        if found is None:
            found = self._timeouts[key] = urllib3.Timeout(connect=connect, read=read)
        return found

    def _pool(self, scheme: str, origin: str, proxies: MutableMapping[str, str] | None, verify: Any,
              cert: Any) -> HTTPConnectionPool | None:
        """The connection pool for this origin and these settings; None when only requests can send to it.

        Found once per (origin, settings) and remembered: the environment lookups, the pool manager's key
        normalisation and the URL parse are the same for every read of a collection."""
        key = (scheme, origin.lower(), repr(sorted(proxies.items())) if proxies else None, repr((verify, cert)))
        found = self._settings.get(key)
        if found is not None and (found is _REQUESTS_ONLY or found.pool is not None):  # (not closed)
            return None if found is _REQUESTS_ONLY else found
        manager = self._manager(scheme, origin, proxies, verify, cert)
        pool: Any = _REQUESTS_ONLY
        if manager is not None:
            parsed = urllib3.util.parse_url(f"{scheme}://{origin}")
            pool = manager.connection_from_host(parsed.host, parsed.port, scheme)
        with self._lock:
            self._settings[key] = pool
        return None if pool is _REQUESTS_ONLY else pool

    def _manager(self, scheme: str, origin: str, proxies: MutableMapping[str, str] | None, verify: Any,
                 cert: Any) -> urllib3.PoolManager | None:
        """The pool manager for these settings; None when only requests can send to this origin."""
        settings = self._env.merge_environment_settings(f"{scheme}://{origin}/", dict(proxies or {}), None,
                                                        verify, cert)
        proxy = requests.utils.select_proxy(f"{scheme}://{origin}/", settings["proxies"])
        manager: urllib3.PoolManager | None
        if proxy is not None and (scheme != "https" or not proxy.lower().startswith(("http://", "https://"))):
            manager = None  # SOCKS proxies and plain-http requests through a proxy: requests' own path
        else:
            manager = self._pool_manager(proxy, settings["verify"], settings["cert"])
        return manager

    def _pool_manager(self, proxy: str | None, verify: Any, cert: Any) -> urllib3.PoolManager:
        key = (proxy, repr(verify), repr(cert))
        with self._lock:
            if key in self._managers:
                return self._managers[key]
            tls: dict[str, Any] = {}
            if verify is False:
                tls["cert_reqs"] = "CERT_NONE"
            else:
                tls["cert_reqs"] = "CERT_REQUIRED"
                bundle = requests.utils.DEFAULT_CA_BUNDLE_PATH if verify is True or verify is None else verify
                if os.path.isdir(bundle):
                    tls["ca_cert_dir"] = bundle
                else:
                    tls["ca_certs"] = bundle
            if cert:
                tls["cert_file"], tls["key_file"] = (cert[0], cert[1]) if not isinstance(cert, str) else (cert, None)
            manager: urllib3.PoolManager
            if proxy is None:
                manager = urllib3.PoolManager(num_pools=10, maxsize=self._pool_maxsize, **tls)
            else:
                headers = {}
                auth = requests.utils.get_auth_from_url(proxy)
                if auth[0]:
                    headers = urllib3.make_headers(proxy_basic_auth=f"{unquote(auth[0])}:{unquote(auth[1])}")
                manager = urllib3.ProxyManager(proxy, num_pools=10, maxsize=self._pool_maxsize,
                                               proxy_headers=headers, **tls)
            manager.pool_classes_by_scheme = _POOLS  # type: ignore[assignment]
            self._managers[key] = manager
            return manager

    def _fallback_send(self, request: Any, proxies: MutableMapping[str, str] | None, kwargs: dict[str, Any]) -> Any:
        with self._lock:
            if self._fallback is None:
                self._fallback = RequestsTransport(**self._kwargs)
            fallback = self._fallback
        return fallback.send(request, proxies=proxies, **kwargs)


def _requote(url: str) -> str:
    """The URL as requests would send it (its own preparation: IDNA host, re-quoted path and query)."""
    prep = requests.PreparedRequest()
    prep.prepare_url(url, None)
    return str(prep.url)
