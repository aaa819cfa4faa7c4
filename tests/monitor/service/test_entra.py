"""Optional Microsoft Entra bearer tokens on the webhook: RS256 tokens from keys generated here, checked
offline against server.entra keys (PEM and JWKS); any failure is a 401 with nothing queued."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from daemonkit import SECRET, config, event, serving, tenant

from plmon.monitor.config import parse_config
from plmon.monitor.errors import InputError
from plmon.monitor.service.entra import EntraVerifier

AUD = "api://plmon-webhook"
ISS = "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0"
PEM_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
JWKS_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _entra(tmp_path) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(JWKS_KEY.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "k2", "use": "sig"}]}))
    return {"audience": AUD, "issuer": [ISS], "public_keys": [_pem(PEM_KEY)], "jwks_file": str(jwks)}


def token(key: Any = PEM_KEY, *, alg: str = "RS256", kid: str | None = None, drop: str = "",
          **claims: Any) -> str:
    now = int(time.time())
    body = {"aud": AUD, "iss": ISS, "iat": now, "nbf": now - 5, "exp": now + 600, "sub": "eventgrid", **claims}
    body.pop(drop, None)
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid} if kid else None)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("entra")
    cfg = config("http://127.0.0.1:9/unused", secret=None, entra=_entra(tmp))
    with serving(tenant(tmp / "t"), cfg, tmp / "state.db") as running:
        yield running


def _accepted(srv) -> float:  # type: ignore[no-untyped-def]
    return srv.daemon.metrics.events_accepted._value.get()


def test_valid_tokens_from_pem_and_jwks_keys_are_accepted(srv):
    """A token signed by the PEM key (no kid) or by the JWKS key (its kid) gets 200 and is queued."""
    for auth in (token(), token(JWKS_KEY, kid="k2"), token(JWKS_KEY)):
        r = srv.post([event()], secret=None, headers={"Authorization": f"Bearer {auth}"})
        assert r.status_code == 200, r.text
        assert r.json()["queued"] == 1


def _hs256_with_public_pem() -> str:
    # Algorithm confusion: the public key used as an HMAC secret. PyJWT refuses to sign with a PEM, so
    # the token is assembled by hand.
    import base64
    import hashlib
    import hmac

    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    now = int(time.time())
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"aud": AUD, "iss": ISS, "exp": now + 600}).encode())
    sig = hmac.new(_pem(PEM_KEY).encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def _bad() -> dict[str, tuple[str | None, str]]:
    """The bad tokens, made when a test runs: made at import, a 10-minute token expired in a slow suite."""
    return {
        "missing": (None, "missing"),
        "not-bearer": ("Basic dXNlcjpwYXNz", "not a Bearer"),
        "garbage": ("Bearer not.a.jwt", "not a JWT"),
        "expired": ("Bearer " + token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200), "expired"),
        "not-yet": ("Bearer " + token(nbf=int(time.time()) + 3600), "not valid yet"),
        "wrong-aud": ("Bearer " + token(aud="api://someone-else"), "wrong audience"),
        "wrong-iss": ("Bearer " + token(iss="https://sts.windows.net/evil/"), "wrong issuer"),
        "no-exp": ("Bearer " + token(drop="exp"), "missing a required claim"),
        "other-key": ("Bearer " + token(OTHER_KEY), "signature"),
        "unknown-kid": ("Bearer " + token(OTHER_KEY, kid="k9"), "signature"),
        "jwks-kid-pem-signed-by-other": ("Bearer " + token(OTHER_KEY, kid="k2"), "signature"),
        "alg-none": ("Bearer " + jwt.encode({"aud": AUD, "iss": ISS, "exp": int(time.time()) + 600}, None,
                                            algorithm="none"), "RS256"),
        "hs256-confusion": ("Bearer " + _hs256_with_public_pem(), "RS256"),
    }


BAD_CASES = sorted(_bad())


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_or_missing_tokens_get_401_and_nothing_is_queued(srv, case):
    """Every way a bearer token can be wrong is a 401 with its reason, and no event is queued."""
    auth, fragment = _bad()[case]
    before = _accepted(srv)
    r = srv.post([event()], secret=None, headers={"Authorization": auth} if auth else {})
    assert r.status_code == 401, r.text
    assert fragment in r.json()["error"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert _accepted(srv) == before


def test_with_secret_and_entra_both_are_required(tmp_path):
    """With server.secret and server.entra configured, the secret alone or the token alone is a 401."""
    cfg = config("http://127.0.0.1:9/unused", entra=_entra(tmp_path))
    with serving(tenant(tmp_path / "t"), cfg, tmp_path / "state.db") as s:
        bearer = {"Authorization": f"Bearer {token()}"}
        assert s.post([event()], secret=None, headers=bearer).status_code == 401
        assert s.post([event()], secret=SECRET).status_code == 401
        assert s.post([event()], secret=SECRET, headers=bearer).status_code == 200


@pytest.mark.parametrize(("entra", "fragment"), [
    ({"audience": AUD, "issuer": ISS}, "jwks_file' or 'public_keys"),
    ({"audience": AUD, "issuer": ISS, "public_keys": ["not a pem"]}, "not a PEM public key"),
    ({"audience": AUD, "issuer": ISS, "jwks_file": "/nonexistent/jwks.json"}, "cannot read"),
    ({"audience": [], "issuer": ISS, "public_keys": [_pem(PEM_KEY)]}, "audience"),
])
def test_bad_entra_config_is_one_input_error(entra, fragment):
    """Missing keys, an unreadable JWKS file or a bad PEM fail at start as an InputError, not at request time."""
    with pytest.raises(InputError) as err:
        EntraVerifier.from_config(parse_config({"server": {"entra": entra}}, env={}).server.entra)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_a_daemon_without_entra_never_imports_pyjwt_or_cryptography() -> None:
    """The server and the Entra module load without PyJWT and cryptography (~12 MB of a daemon's RSS); a daemon
    configured without server.entra never needs them."""
    import subprocess
    import sys

    code = ("import sys; import plmon.monitor.service.server, plmon.monitor.service.entra; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jwt', 'cryptography')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
