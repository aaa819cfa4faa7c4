"""Remediations are safe to paste: every command argument quoted, prose inert, on tenants with hostile names.

Resource names are chosen by resource owners (and connection requesters in other tenants). Each test tenant
is rewritten so that every resource group and resource name carries spaces, globs, command substitutions,
separators, quotes and backticks; then every line of every finding's remediation must be either a shell
comment or a command whose text is exactly the shell quoting of its argv (so bash sees that argv and
nothing else: no glob, no expansion, no second command).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from checkkit import snapshot_of
from hypothesis import given, settings
from hypothesis import strategies as st
from netkit import NET, Net
from tenantkit import SUB, TENANT, endpoint, sub_list
from vwankit import vwan_tenant

from plmon.checks import registry
from plmon.checks.engine import evaluate
from plmon.checks.finding import Finding
from plmon.checks.remedy import alternative, az, az_head, az_more, chain, fill, lines, note
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.replay.synth import SynthSpec, generate
from plmon.monitor.replay.synth import write_tenant as write_synth

HOSTILE = " $(touch pwned);`id` *'\"|&<>!"
DEMO = Path(__file__).resolve().parents[2] / "monitor" / "demo_tenant"
# Zone names are DNS names fixed by the service, management group names are the tenant's scopes: kept so the
# DNS and association checks still fire.
NOT_RENAMED_TYPES = {"privatednszones", "managementgroups", "hubroutetables"}  # names with a meaning


def _hostile_id(rid: str) -> str:
    """The id with its resource group and every resource name made hostile (types and GUIDs kept)."""
    parts = rid.split("/")
    out = list(parts)
    i = 1
    while i < len(parts):
        seg = parts[i].lower()
        if seg == "resourcegroups" and i + 1 < len(parts):
            out[i + 1] = parts[i + 1] + HOSTILE
            i += 2
        elif seg == "providers" and i + 1 < len(parts):
            i += 2  # namespace
            while i + 1 < len(parts) and parts[i].lower() != "providers":
                if parts[i].lower() not in NOT_RENAMED_TYPES:
                    out[i + 1] = parts[i + 1] + HOSTILE
                i += 2
        else:
            i += 1
    return "/".join(out)


def _is_sub_id(value: Any) -> bool:
    v = value.lower() if isinstance(value, str) else ""
    return (v.startswith("/subscriptions/") and "/resourcegroups/" in v) or \
        v.startswith("/providers/microsoft.management/managementgroups/")


def _hostile(body: Any) -> Any:
    if isinstance(body, dict):
        out = {k: _hostile(v) for k, v in body.items()}
        rid = body.get("id")
        if _is_sub_id(rid) and isinstance(body.get("name"), str) and \
                body["name"].lower() == rid.rstrip("/").rsplit("/", 1)[-1].lower():
            out["name"] = _hostile_id(rid).rsplit("/", 1)[-1]
        return out
    if isinstance(body, list):
        return [_hostile(v) for v in body]
    return _hostile_id(body) if _is_sub_id(body) else body


def hostile_copy(src: Path, dst: Path) -> Path:
    """``src`` recorded tenant rewritten with hostile names, request paths renamed the same way."""
    (dst / "arm").mkdir(parents=True)
    (dst / "manifest.json").write_text((src / "manifest.json").read_text())
    for f in (src / "arm").rglob("*.json"):
        rel = "/" + f.relative_to(src / "arm").as_posix()
        stem, suffix = (rel[:-len(".error.json")], ".error.json") if rel.endswith(".error.json") else \
            (rel[:-len(".json")], ".json")
        target = dst / "arm" / (_hostile_id(stem).lstrip("/") + suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(_hostile(json.loads(f.read_text()))))
    return dst


def _rest_of_catalogue(folder: Path) -> Path:
    """Checks no other test tenant trips: NSG prefix limits and peer tag, dangling, multi-tenant and
    wrong-group-id resource management private links, an endpoint IP hidden on an unreadable NIC."""
    n = Net()
    n.vnet("v", "10.5.0.0/16")
    n.vnet("peer", "10.6.0.0/16").peer("v", "peer", access=False)
    n.subnet("v", "pe", "10.5.3.0/24", nsg="nsg-b", policy="Enabled")
    many = [f"10.9.{i // 250}.{i % 250}" for i in range(501)]
    base = {"direction": "Inbound", "protocol": "Tcp", "destinationAddressPrefix": "*", "sourcePortRange": "*",
            "destinationPortRange": "443"}
    n.nsg("nsg-b", {**base, "name": "huge", "access": "Allow", "priority": 100, "sourceAddressPrefixes": many},
          {**base, "name": "deny-vnet", "access": "Deny", "priority": 200, "sourceAddressPrefix": "VirtualNetwork"})
    n.endpoint("e1", n.storage("st", "e1"), vnet="v", subnet="pe", ip="10.5.3.4", zones=[])
    # a dynamic-IP endpoint whose NIC answers 403, next to an appliance route: route.endpoint-ip-unknown
    n.route_table("rt-v", ("to-nva", "0.0.0.0/0", "VirtualAppliance", "10.5.0.4"))
    n.subnet("v", "app", "10.5.1.0/24", route_table="rt-v")
    n.endpoint("e-dyn", n.storage("st2", "e-dyn"), vnet="v", subnet="pe", ip="10.5.3.9", zones=[])
    nic = f"{NET}/networkInterfaces/e-dyn.nic"
    n.lists["privateEndpoints"][-1]["properties"].update(ipConfigurations=[], customDnsConfigs=[],
                                                         networkInterfaces=[{"id": nic}])
    n.files[nic.strip("/") + ".error"] = {"status": 403, "error": {"code": "AuthorizationFailed", "message": "no"}}
    root = f"/providers/Microsoft.Management/managementGroups/{TENANT}"
    rmpl = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Authorization/resourceManagementPrivateLinks"

    def assoc(name: str, link: str, tenant: str = TENANT) -> dict[str, Any]:
        return {"id": f"{root}/providers/Microsoft.Authorization/privateLinkAssociations/{name}", "name": name,
                "properties": {"privateLink": link, "publicNetworkAccess": "Disabled", "tenantId": tenant,
                               "scope": root}}

    n.files[f"{root}/providers/Microsoft.Authorization/privateLinkAssociations"] = {"value": [
        assoc("gone", f"{rmpl}/missing"), assoc("mine", f"{rmpl}/shared"),
        assoc("theirs", f"{rmpl}/shared", "99999999-9999-9999-9999-999999999999")]}
    n.files[sub_list("resourceManagementPrivateLinks", provider="Microsoft.Authorization")] = {"value": [
        {"id": f"{rmpl}/shared", "name": "shared", "type": "Microsoft.Authorization/resourceManagementPrivateLinks",
         "properties": {"privateEndpointConnections": []}}]}
    n.lists.setdefault("privateEndpoints", []).append(endpoint("pe-rm", f"{rmpl}/shared", group_ids=("blob",)))
    return n.write(folder)


@pytest.fixture(scope="module")
def hostile_findings(tmp_path_factory: pytest.TempPathFactory) -> list[Finding]:
    base = tmp_path_factory.mktemp("tenants")
    sources = [DEMO, _rest_of_catalogue(base / "rest")]
    for seed in (3, 5):  # between them every synthetic defect kind, the appliance ones included
        synth = base / f"synth-{seed}"
        write_synth(generate(SynthSpec(subscriptions=30, endpoints=200, bad_share=1.0, pls=10, seed=seed)), synth)
        sources.append(synth)
    # Virtual WAN hubs (issue 18): the two-hub tenant, and its hub with custom routing for vwan.routing-unknown
    sources += [vwan_tenant(base / "vwan"), vwan_tenant(base / "vwan-custom", hub2_custom_table=True)]
    found: list[Finding] = []
    for i, src in enumerate(sources):
        folder = hostile_copy(src, base / f"hostile-{i}")
        RecordedTenant(folder)  # the copy is a valid recorded tenant
        found.extend(evaluate(snapshot_of(folder)).findings)
    return found


def _argv_of(command: str) -> list[str]:
    """The argv bash would run for ``command`` (a trailing comment dropped), asserting the text is exactly the
    canonical quoting of that argv: any unquoted or double-quoted metacharacter breaks the equality."""
    argv = shlex.split(command, comments=True)
    canonical = " ".join("&&" if a == "&&" else shlex.quote(a) for a in argv)
    assert command == canonical or command.startswith(canonical + "   #"), command
    return argv


def _commands(remediation: str) -> list[list[str]]:
    """Every command line's argv; comment lines must be one line each, and '# or:' alternatives are checked too."""
    out = []
    for line in remediation.split("\n"):
        if line.startswith("#"):
            start = line.find("az ")
            if line.startswith("# or:") and start >= 0:
                out.append(_argv_of(line[start:]))
            continue
        out.append(_argv_of(line))
    return out


def test_every_remediation_command_quotes_every_argument(hostile_findings: list[Finding]) -> None:
    """On hostile tenants every command line is exactly the quoting of its argv, and names stay one argument."""
    commands = [argv for f in hostile_findings for argv in _commands(f.remediation)]
    assert commands
    for argv in commands:
        for cmd in " ".join(argv).split(" && "):
            assert cmd.startswith("az "), argv
        for arg in argv:
            # a hostile name is never split across arguments nor cut: the whole marker or none of it
            assert HOSTILE in arg or "$(touch" not in arg, argv
    assert any(HOSTILE in arg for argv in commands for arg in argv)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_runs_exactly_the_quoted_argv_and_nothing_else(hostile_findings: list[Finding], tmp_path: Path) -> None:
    """Pasted into bash (az a function that prints its arguments), the remediations run only their own argv:
    no file made by $(touch pwned), no second command, every hostile name one argument."""
    script = ["az() { printf '%s\\037' \"$@\"; printf '\\036'; }"]
    expected: list[list[str]] = []
    for f in hostile_findings:
        script.append(f.remediation)
        for line in f.remediation.split("\n"):
            if line.startswith("#"):
                continue
            command: list[str] = []
            for arg in [*shlex.split(line, comments=True), "&&"]:
                if arg == "&&":
                    expected.append(command[1:])
                    command = []
                else:
                    command.append(arg)
    out = subprocess.run(["bash", "--noprofile", "--norc", "-s"], input="\n".join(script) + "\n", cwd=tmp_path,
                         text=True, capture_output=True, check=True, timeout=60)
    got = [c.split("\x1f")[:-1] for c in out.stdout.split("\x1e")[:-1]]
    assert got == expected and out.stderr == ""
    assert list(tmp_path.iterdir()) == []


def test_every_check_with_a_command_was_exercised(hostile_findings: list[Finding]) -> None:
    """The hostile tenants trip every check in the registry, so no remediation escapes the quoting test."""
    assert {f.check_id for f in hostile_findings} == set(registry.all_checks())


def test_multi_port_rule_star_is_quoted() -> None:
    """The reported case: the '*' port range of nsg.multi-port-range-rule reaches az as '*', not a glob."""
    line = az("network", "nsg", "rule", "update", "--source-port-ranges", "*", comment="then add one rule")
    assert _argv_of(line)[-1] == "*" and "'*'" in line


def test_prose_stays_readable_and_inert() -> None:
    """Plain ids stay unquoted; notes are one comment line whatever the text; table templates are re-quoted."""
    rid = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st1"
    assert az("storage", "account", "show", "--ids", rid) == f"az storage account show --ids {rid}"
    assert note("name\nrm -rf ~") == "# name\\x0arm -rf ~"
    assert fill('az x --ids "{id}" --flag v', id="a b$(x)") == "az x --ids 'a b$(x)' --flag v"
    text = lines(note("first:"), chain(az("a"), az("b")), alternative(az("c", "x\n$(y)")))
    assert text == "# first:\naz a && az b\n# or: az c 'x\\x0a$(y)'"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")), max_size=6))
def test_any_argument_survives_the_shell_round_trip(args: list[str]) -> None:
    """Whatever text a name holds, the shell splits az's line back into exactly the arguments given."""
    assert shlex.split(az(*args)) == ["az", *args]


def test_a_repeated_argument_is_quoted_as_shlex_quotes_it_each_time() -> None:
    """The quoting kept per distinct text gives what shlex.join gives, the first time and after."""
    args = ["network", "route-table", HOSTILE, "--name", "", "a b", HOSTILE]
    for _ in range(2):
        assert az(*args) == shlex.join(["az", *args])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")), max_size=4),
       st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")), max_size=4))
def test_a_line_from_its_quoted_front_is_the_whole_az_line(front: list[str], rest: list[str]) -> None:
    """az_more on az_head's front gives exactly az's line for the front and the rest together."""
    assert az_more(az_head(*front), *rest) == az(*front, *rest)
