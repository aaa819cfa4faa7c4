"""Microsoft Entra bearer tokens on the webhook, validated offline against configured keys.

Event Grid can deliver to a webhook with an Entra access token (``Authorization: Bearer``) for an app
registration the operator chooses. The token is an RS256 JWT; it is accepted only when its signature
verifies with one of the keys from ``server.entra`` (a JWKS file and/or PEM public keys) and ``exp``,
``nbf`` (when present), ``aud`` and ``iss`` hold. Keys are loaded once at start, so no request waits on
(or can be made to trigger) a network fetch; rotating keys means updating the file and restarting.
Only RS256 is allowed: ``none`` and HMAC algorithms, where a public key could be abused as a shared
secret, are refused by PyJWT before any key is tried.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plmon.monitor import outside_json
from plmon.monitor.config import EntraConfig
from plmon.monitor.errors import InputError

# PyJWT and cryptography are imported where a token or key is handled, never by a daemon without server.entra:
# they are ~12 MB of its RSS (issue 14's 600 MB target at 100k resources).
if TYPE_CHECKING:
    import jwt
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

__all__ = ["BadToken", "EntraVerifier"]

_ALGORITHMS = ["RS256"]
# Entra access tokens are a few KB; anything much larger is not one and is not worth decoding.
_MAX_TOKEN = 16 * 1024


class BadToken(Exception):
    """The request's bearer token is missing or invalid; ``reason`` is one line, safe for a 401 body."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class EntraVerifier:
    def __init__(self, keys: Mapping[str | None, list[RSAPublicKey]], audience: tuple[str, ...],
                 issuer: tuple[str, ...], leeway: float) -> None:
        self._keys, self.audience, self.issuer, self.leeway = keys, audience, issuer, leeway
        self._all = [k for ks in keys.values() for k in ks]

    @classmethod
    def from_config(cls, cfg: EntraConfig) -> EntraVerifier:
        """Load every configured key now; a bad file or PEM is an :class:`InputError` (exit 2 at start)."""
        from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        keys: dict[str | None, list[RSAPublicKey]] = {}
        for i, pem in enumerate(cfg.public_keys):
            try:
                key = load_pem_public_key(pem.encode())
            except (ValueError, TypeError) as err:
                raise InputError(f"server.entra.public_keys[{i}]: not a PEM public key ({err})") from None
            if not isinstance(key, RSAPublicKey):
                raise InputError(f"server.entra.public_keys[{i}]: not an RSA key (tokens are RS256)")
            keys.setdefault(None, []).append(key)
        if cfg.jwks_file is not None:
            for kid, key in _jwks(cfg.jwks_file):
                keys.setdefault(kid, []).append(key)
        return cls(keys, cfg.audience, cfg.issuer, cfg.leeway.total_seconds())

    def verify(self, authorization: str | None) -> dict[str, Any]:
        """The token's claims; raises :class:`BadToken` for anything but a valid RS256 token."""
        import jwt

        if not authorization:
            raise BadToken("missing Authorization: Bearer token (server.entra is configured)")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise BadToken("Authorization is not a Bearer token")
        if len(token) > _MAX_TOKEN:
            raise BadToken("bearer token is too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise BadToken("bearer token is not a JWT") from None
        if header.get("alg") not in _ALGORITHMS:
            raise BadToken("bearer token is not signed with RS256")
        kid = header.get("kid")
        # A kid the JWKS names picks its keys; PEMs (no kid) are always candidates.
        candidates = (self._keys.get(kid, []) + self._keys.get(None, [])) if isinstance(kid, str) else self._all
        if not candidates:
            raise BadToken("bearer token is signed with a key that is not configured")
        last: jwt.InvalidTokenError | None = None
        for key in candidates:
            try:
                return jwt.decode(token, key, algorithms=_ALGORITHMS, audience=list(self.audience),
                                  issuer=list(self.issuer), leeway=self.leeway,
                                  options={"require": ["exp", "iss", "aud"]})
            except jwt.InvalidSignatureError as err:
                last = err
                continue
            except jwt.InvalidTokenError as err:
                raise BadToken(f"bearer token rejected: {_reason(err)}") from None
        raise BadToken(f"bearer token rejected: {_reason(last) if last else 'no key verifies it'}")


def _reason(err: jwt.InvalidTokenError) -> str:
    import jwt

    kinds = {jwt.ExpiredSignatureError: "expired", jwt.ImmatureSignatureError: "not valid yet (nbf)",
             jwt.InvalidAudienceError: "wrong audience", jwt.InvalidIssuerError: "wrong issuer",
             jwt.MissingRequiredClaimError: "missing a required claim (exp, iss, aud)",
             jwt.InvalidSignatureError: "signature does not verify with any configured key"}
    for kind, text in kinds.items():
        if isinstance(err, kind):
            return text
    return "invalid token"


def _jwks(path: Path) -> list[tuple[str | None, RSAPublicKey]]:
    import jwt

    try:
        doc = outside_json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise InputError(f"server.entra.jwks_file {path}: cannot read ({err.strerror})") from None
    except (UnicodeDecodeError, ValueError):
        raise InputError(f"server.entra.jwks_file {path}: not a JSON document") from None
    items = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(items, list) or not items:
        raise InputError(f"server.entra.jwks_file {path}: needs a non-empty 'keys' array (a JWKS document)")
    out: list[tuple[str | None, RSAPublicKey]] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or item.get("kty") != "RSA":
            continue  # Entra publishes RSA keys only; anything else cannot verify RS256
        try:
            key = jwt.PyJWK(item, algorithm="RS256").key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as err:
            raise InputError(f"server.entra.jwks_file {path}: key {i} is not a usable RSA key ({err})") from None
        kid = item.get("kid") if isinstance(item.get("kid"), str) else None
        out.append((kid, key))
    if not out:
        raise InputError(f"server.entra.jwks_file {path}: no RSA key in it")
    return out
