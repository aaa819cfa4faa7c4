"""ARM id parsing: one normalised key, the parts of the id, and no crash on anything real payloads hold."""

from __future__ import annotations

import contextvars
import pickle
import threading
from dataclasses import FrozenInstanceError
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plmon.monitor.collect.builder import build_snapshot
from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.model.arm_id import ArmId, _parse, _parse_general, interning, normalise, parse_id

SUBNET = "/subscriptions/AbC/resourcegroups/RG1/providers/Microsoft.Network/virtualNetworks/Vnet1/subnets/Pe"


def test_full_id_parts() -> None:
    """A subnet id parses into subscription, group, provider, type chain and name, keeping spelling."""
    a = parse_id(SUBNET)
    assert not a.opaque
    assert (a.subscription, a.resource_group, a.provider) == ("AbC", "RG1", "Microsoft.Network")
    assert a.types == ("virtualNetworks", "subnets")
    assert a.names == ("Vnet1", "Pe")
    assert a.type == "Microsoft.Network/virtualNetworks/subnets"
    assert a.type_key == "microsoft.network/virtualnetworks/subnets"
    assert a.name == "Pe"
    assert a.raw == SUBNET and str(a) == SUBNET


def test_casing_gives_one_key() -> None:
    """resourceGroups/resourcegroups, upper-case names and a trailing slash give the same key."""
    variants = [SUBNET, SUBNET.upper(), SUBNET.replace("resourcegroups", "resourceGroups") + "/",
                "  " + SUBNET.lower() + "  ", SUBNET.replace("/subnets/", "//subnets/")]
    keys = {parse_id(v).key for v in variants}
    assert keys == {SUBNET.lower()}
    assert normalise(SUBNET.upper() + "/") == SUBNET.lower()


def test_parent_chain() -> None:
    """A subnet's parent is its virtual network; a top-level resource has no parent."""
    vnet = parse_id(SUBNET).parent
    assert vnet is not None and vnet.key == SUBNET.lower().rsplit("/subnets/", 1)[0]
    assert vnet.type == "Microsoft.Network/virtualNetworks" and vnet.name == "Vnet1"
    assert vnet.parent is None
    conn = parse_id("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/privateLinkServices/pls/"
                    "privateEndpointConnections/c1")
    assert conn.parent is not None and conn.parent.name == "pls"


def test_parent_with_doubled_slash_and_of_collection_id() -> None:
    """A doubled slash before the name does not shift the parent; a collection id's parent is its resource."""
    assert parse_id(SUBNET.replace("/Pe", "//Pe")).parent.key == parse_id(SUBNET).parent.key  # type: ignore[union-attr]
    coll = parse_id("/subscriptions/s/resourceGroups/rg/providers//Microsoft.Authorization/"
                    "resourceManagementPrivateLinks/r1/privateLinkResources")
    assert coll.parent is not None and coll.parent.name == "r1"
    assert coll.parent.type == "Microsoft.Authorization/resourceManagementPrivateLinks"


def test_child_builds_normalised_id() -> None:
    """child() appends a type/name pair and parses the result."""
    vnet = parse_id(SUBNET).parent
    assert vnet is not None
    assert vnet.child("subnets", "PE").key == SUBNET.lower()


def test_provders_typo_is_opaque_not_a_crash() -> None:
    """The '/provders/' typo in Microsoft examples yields an opaque id that keeps its spelling."""
    raw = "/subscriptions/0/resourceGroups/rg1/provders/Microsoft.Network/networkInterfaces/testPe.nic.abcd1234"
    a = parse_id(raw)
    assert a.opaque and a.raw == raw
    assert a.key == raw.lower()
    assert a.type is None and a.parent is None
    assert a.name == "testPe.nic.abcd1234"


def test_bare_guid_is_opaque_with_stable_key() -> None:
    """A bare GUID (RMPL examples) is opaque; its key is its lower-case text so it still matches."""
    a = parse_id("00000000-0000-0000-0000-00000000ABCD")
    b = parse_id(" 00000000-0000-0000-0000-00000000abcd ")
    assert a.opaque and b.opaque and a.key == b.key == "00000000-0000-0000-0000-00000000abcd"
    assert a.name == "00000000-0000-0000-0000-00000000ABCD"
    assert a.subscription is None and a.type is None


def test_management_group_ids() -> None:
    """A management group id and an extension resource below it keep the group name."""
    mg = parse_id("/providers/Microsoft.Management/managementGroups/Contoso")
    assert not mg.opaque and mg.management_group == "Contoso" and mg.name == "Contoso"
    assert mg.type == "Microsoft.Management/managementGroups" and mg.subscription is None
    pla = parse_id("/providers/Microsoft.Management/managementGroups/Contoso/providers/"
                   "Microsoft.Authorization/privateLinkAssociations/a1")
    assert pla.management_group == "Contoso"
    assert pla.type == "Microsoft.Authorization/privateLinkAssociations" and pla.name == "a1"
    assert pla.key == pla.raw.lower()


def test_extension_resource_takes_innermost_provider() -> None:
    """A lock on a storage account is typed by the innermost provider."""
    a = parse_id("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st/"
                 "providers/Microsoft.Authorization/locks/l1")
    assert a.type == "Microsoft.Authorization/locks" and a.name == "l1" and a.subscription == "s"


def test_double_slash_in_provider_path() -> None:
    """'providers//Microsoft.Authorization' (a real example) parses as if the slash were single."""
    a = parse_id("/subscriptions/s/resourceGroups/rg/providers//Microsoft.Authorization/"
                 "resourceManagementPrivateLinks/r1")
    assert a.type == "Microsoft.Authorization/resourceManagementPrivateLinks" and a.name == "r1"


def test_bare_scopes() -> None:
    """A subscription or resource group id parses as a scope without a type."""
    s = parse_id("/subscriptions/S1")
    assert not s.opaque and s.subscription == "S1" and s.type is None and s.key == "/subscriptions/s1"
    g = parse_id("/subscriptions/S1/resourceGroups/G")
    assert g.resource_group == "G" and g.type is None


@pytest.mark.parametrize("raw", [None, 42, "", "/", "   ", "/subscriptions", "/subscriptions/s/resourceGroups",
                                 "/subscriptions/s/providers", "/subscriptions/s/foo/bar", "no-slash/x",
                                 "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/"
                                 "providers", "\x00/\u2603", "x" * 100_000, ["a"], {"id": "x"}])
def test_garbage_never_raises(raw: object) -> None:
    """Anything at all parses to an ArmId (opaque when it is not an id), never an exception."""
    a = parse_id(raw)
    assert isinstance(a, ArmId)
    assert a.opaque
    assert isinstance(a.key, str) and a.key == a.key.lower()
    assert a.type is None and a.parent is None


# --- interning ------------------------------------------------------------------------------------

ODD = [SUBNET, SUBNET.upper(), SUBNET + "/", "  " + SUBNET, "00000000-0000-0000-0000-00000000ABCD", "",
       "/subscriptions/s/resourceGroups/rg/provders/Microsoft.Network/networkInterfaces/n",
       "/providers/Microsoft.Management/managementGroups/mg1", "/subscriptions/s", "/subscriptions/s/resourceGroups/r",
       "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/privateEndpoints/pe/providers/"
       "Microsoft.Authorization/locks/l", "/subscriptions/s/resourceGroups/rg/providers/"]


@pytest.mark.parametrize("raw", ODD)
def test_interned_parse_equals_plain_parse(raw: str) -> None:
    """Interning changes only identity: every field of every kind of id is what the plain parse gives."""
    plain = parse_id(raw)
    with interning():
        first, again = parse_id(raw), parse_id(raw)
    assert first == plain and first is again


def test_same_string_same_instance_only_inside_a_scope() -> None:
    """Inside a scope a string is parsed once (equal copies of it too); outside, each call parses anew."""
    copy = "".join(list(SUBNET))  # an equal string that is another object, as each JSON occurrence is
    assert copy is not SUBNET
    with interning() as table:
        a = parse_id(SUBNET)
        assert parse_id(copy) is a and table[SUBNET] is a
        # Another spelling is another raw (kept for output) but the same key.
        upper = parse_id(SUBNET.upper())
        assert upper is not a and upper.raw == SUBNET.upper() and upper.key == a.key
        # parent and child go through parse_id, so they are shared too.
        vnet = a.parent
        assert vnet is not None and a.parent is vnet
        assert vnet.child("subnets", "Pe") is parse_id(vnet.raw + "/subnets/Pe")
    assert parse_id(SUBNET) is not parse_id(SUBNET)
    assert parse_id(SUBNET) == a


def test_scope_is_dropped_at_exit_and_nested_scopes_share_it() -> None:
    """A scope's table dies with it (nothing outlives a build); a nested scope uses the outer table."""
    with interning() as outer:
        a = parse_id(SUBNET)
        with interning() as inner:
            assert inner is outer and parse_id(SUBNET) is a
        assert parse_id(SUBNET) is a  # the inner exit did not drop the outer table
    with interning() as fresh:
        assert not fresh and parse_id(SUBNET) is not a


def test_scope_ends_on_error() -> None:
    """An exception inside the scope still closes it."""
    with pytest.raises(RuntimeError), interning():
        parse_id(SUBNET)
        raise RuntimeError("boom")
    assert parse_id(SUBNET) is not parse_id(SUBNET)


def test_threads_in_the_scope_share_one_instance_per_string() -> None:
    """Threads running in the scope's context all get the one instance per string; other threads see no scope."""
    raws = [f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v{i % 50}"
            for i in range(2000)]
    got: list[list[ArmId]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def work(slot: int) -> None:
        start.wait()
        got[slot] = [parse_id("".join(list(r))) for r in raws]  # equal strings, distinct objects

    with interning() as table:
        threads = [threading.Thread(target=contextvars.copy_context().run, args=(work, n)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(table) == 50
        for r, *ids in zip(raws, *got, strict=True):
            assert all(i is table[r] for i in ids)
        outside: list[ArmId] = []
        t = threading.Thread(target=lambda: outside.extend(parse_id(SUBNET) for _ in range(2)))
        t.start()
        t.join()
        assert outside[0] is not outside[1] and SUBNET not in table


def test_a_build_shares_ids_between_resources_and_references() -> None:
    """build_snapshot interns: an endpoint's subnet reference is the subnet's own id object, and no table
    outlives the build."""
    folder = Path(__file__).resolve().parents[3] / "monitor" / "demo_tenant"
    reader = RecordedTenant(folder)
    snap = build_snapshot(collect(reader, manifest=reader.manifest, workers=2))
    refs = [(pe.subnet_id, snap.subnets[pe.subnet_id.key].id) for pe in snap.private_endpoints.values()
            if pe.subnet_id is not None and pe.subnet_id.key in snap.subnets]
    same = [(ref, own) for ref, own in refs if ref.raw == own.raw]
    assert len(same) >= 3
    assert all(ref is own for ref, own in same)
    assert parse_id(SUBNET) is not parse_id(SUBNET)


NON_ASCII = ["/subscriptions/ΑΣ/resourceGroups/ΣΑΣ/providers/P/t/ΑΣ//ς/x",
             "/subscriptions/İ/resourceGroups/ẞ/providers/P/t/n"]


@pytest.mark.parametrize("raw", [*ODD, *NON_ASCII])
def test_key_is_the_normalised_raw(raw: str) -> None:
    """A parsed id's key, built from its segments, is exactly normalise(raw), whatever the letters (final sigma)."""
    a = parse_id(raw)
    assert a.key == (raw.strip().lower() if a.opaque else normalise(raw))
    assert raw not in NON_ASCII or not a.opaque


# --- the parse's shortcut -----------------------------------------------------------------------------

_SEGMENT = st.one_of(st.sampled_from(["subscriptions", "Subscriptions", "resourceGroups", "resourcegroups",
                                      "providers", "PROVIDERS", "Microsoft.Network", "subnets", "", " ", "ΑΣ",
                                      "İ", "ς", "a b", "x\t"]),
                     st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6))
_SHAPED = st.builds(lambda sub, rg, rest: "/subscriptions/" + "/".join([sub, "resourceGroups", rg, "providers", *rest]),
                    _SEGMENT, _SEGMENT, st.lists(_SEGMENT, max_size=7))


@given(st.one_of(_SHAPED, st.lists(_SEGMENT, max_size=10).map("/".join), st.text(max_size=40)))
@settings(max_examples=400, deadline=None)
def test_shortcut_parse_equals_general_parse(raw: str) -> None:
    """Proves: the shortcut for the common id shape gives exactly what the general parse gives, field by field,
    for ids of every shape and spelling (empty and blank segments, other casings, nested providers, sigma)."""
    assert _parse(raw) == _parse_general(raw)
    for common in (SUBNET.replace("resourcegroups", "resourceGroups"), SUBNET + "/x/y", SUBNET + "/x"):
        assert _parse(common) == _parse_general(common)


# --- one string per id ------------------------------------------------------------------------------------

@given(st.one_of(_SHAPED, st.lists(_SEGMENT, max_size=10).map("/".join), st.text(max_size=40)))
@settings(max_examples=400, deadline=None)
def test_raw_is_the_spelling_parsed(raw: str) -> None:
    """Proves: whether an id keeps its spelling or rebuilds it from its segments, ``raw`` is the string parsed."""
    a = parse_id(raw)
    assert a.raw == raw
    assert str(a) == a.raw


def test_canonical_id_keeps_one_string() -> None:
    """Proves: an id in ARM's usual spelling keeps only its key (raw rebuilt, equal), and an all-lower-case id shares
    one string for both; any other spelling keeps its own."""
    canonical = SUBNET.replace("resourcegroups", "resourceGroups")
    a = parse_id(canonical)
    assert a._raw is None and a.raw == canonical and a.key == canonical.lower()
    lower = parse_id(SUBNET.lower())
    assert lower.raw is lower.key
    assert parse_id(SUBNET)._raw == SUBNET  # "resourcegroups": not the canonical spelling


def test_ids_compare_hash_and_pickle_by_value() -> None:
    """Proves: ids equal by value whatever they store (rebuilt or kept raw), hash alike, stay immutable and
    round-trip through pickle and repr's fields."""
    canonical = SUBNET.replace("resourcegroups", "resourceGroups")
    fast, general = _parse(canonical), _parse_general(canonical)
    assert fast._raw is None and general._raw == canonical
    assert fast == general and hash(fast) == hash(general) and len({fast, general}) == 1
    assert fast != parse_id(SUBNET) and fast != canonical
    assert pickle.loads(pickle.dumps(fast)) == fast
    assert "raw='" + canonical + "'" in repr(fast)
    with pytest.raises(FrozenInstanceError):
        fast.key = "x"  # type: ignore[misc]


def test_adopt_gives_the_scopes_instance_or_an_equal_id_kept_in_the_scope() -> None:
    """Proves: an id handed back by another process (its raw spelling and slots) is the scope's instance when the scope
    parsed that string, else an id equal to parse_id's that the scope then returns for the string."""
    from plmon.monitor.model.arm_id import adopt

    raw = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/a"
    odd = "/subscriptions/s1/resourcegroups/rg/providers/Microsoft.Network/virtualNetworks/w"
    slots = {r: tuple(getattr(parse_id(r), s) for s in ArmId.__slots__) for r in (raw, odd)}
    assert adopt(raw, *slots[raw]) == parse_id(raw)  # outside a scope: equal, not kept
    with interning():
        mine = parse_id(raw)
        assert adopt(raw, *slots[raw]) is mine
        theirs = adopt(odd, *slots[odd])
        assert theirs == _parse(odd) and parse_id(odd) is theirs and theirs.raw == odd


def test_adopt_canonical_rebuilds_the_same_id_from_its_segments() -> None:
    """Proves: an id spelled canonically, handed back as its segments alone, is the scope's instance when the scope
    parsed that string, else an id equal to parse_id's (same spelling, same key) that the scope then returns."""
    from plmon.monitor.model.arm_id import adopt_canonical

    one = "/subscriptions/S1/resourceGroups/RG/providers/Microsoft.Network/networkInterfaces/Nic-1"
    two = one + "/ipConfigurations/IpConfig1"
    deep = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/a/b/c/d/e/f"

    def segments(raw: str) -> tuple[Any, ...]:
        parsed = parse_id(raw)
        assert parsed._raw is None  # canonical: the only ids sent this way
        return parsed.subscription, parsed.resource_group, parsed.provider, parsed.types, parsed.names

    for raw in (one, two, deep):
        back = adopt_canonical(*segments(raw))
        assert back == parse_id(raw) and back.raw == raw and back.key == raw.lower()
    with interning():
        mine = parse_id(one)
        assert adopt_canonical(*segments(one)) is mine
        theirs = adopt_canonical(*segments(two))
        assert parse_id(two) is theirs
