"""ENDPOINTS_BY_IP keys an endpoint IP by (version, integer) (checks/paths.py ``_ip_key``): cheap to hash, and never
the same for two addresses."""

from __future__ import annotations

import ipaddress

from plmon.checks.paths import _ip_key


def test_an_ip_key_is_its_version_and_integer_and_tells_v4_from_v6() -> None:
    """The key of an address is (version, int); an IPv4 and an IPv6 address of the same integer differ."""
    v4, v6 = ipaddress.ip_address("0.0.0.1"), ipaddress.ip_address("::1")
    assert _ip_key(v4) == (4, 1) and _ip_key(v6) == (6, 1) and _ip_key(v4) != _ip_key(v6)
    assert _ip_key(ipaddress.ip_address("10.0.0.5")) == _ip_key(ipaddress.ip_address("10.0.0.5"))
